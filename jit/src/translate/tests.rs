//! Differential tests: the same guest code runs translated and interpreter-only, and the final
//! `CpuState` and memory must agree. Small machines are built in code (RAM at 0, code placed by
//! hand-encoded bytes, HLT or the debug exit port to stop).

use devices::{Buses, DebugExit, PlatformRequest};
use vcpu::state::{cr0, gpr, rflags};
use vcpu::{CpuState, GuestRam, RegionKind, RegionSpec, Segment, SegmentIndex, Vcpu, VmExit};

use crate::dispatch::{JitConfig, JitVcpu};

const RAM: u64 = 0x10_0000;
pub(super) const CODE: u64 = 0x1000;
pub(super) const DATA: u64 = 0x8000;
pub(super) const STACK_TOP: u64 = 0xa000;
/// Where real-mode exception handlers point.
pub(super) const FAULT_HLT: u64 = 0xf00;

pub(super) fn ram() -> GuestRam {
    GuestRam::new(&[RegionSpec {
        base: 0,
        size: RAM,
        kind: RegionKind::Ram,
    }])
    .unwrap()
}

pub(super) fn flat32() -> CpuState {
    let mut s = CpuState::reset();
    s.cr0 |= cr0::PE;
    let code = Segment::from_descriptor(0x08, 0x0000_ffff, 0x00cf_9a00);
    let data = Segment::from_descriptor(0x10, 0x0000_ffff, 0x00cf_9200);
    for (i, seg) in s.seg.iter_mut().enumerate() {
        *seg = if i == SegmentIndex::Cs as usize {
            code
        } else {
            data
        };
    }
    s.rip = CODE;
    s.gpr[gpr::RSP] = STACK_TOP;
    s
}

fn real16() -> CpuState {
    let mut s = CpuState::reset();
    for seg in s.seg.iter_mut() {
        *seg = Segment::real_mode(0);
    }
    s.seg[SegmentIndex::Cs as usize].attr |= 0x8;
    s.rip = CODE;
    s.gpr[gpr::RSP] = STACK_TOP;
    s
}

/// 64-bit mode: 4-level paging identity-mapping the first 2 MiB with one large page (PML4
/// 0x70000, PDPT 0x71000, PD 0x72000, outside the compared memory), flat 64-bit CS.
pub(super) fn long64(ram: &GuestRam) -> CpuState {
    ram.write_host(0x70000, &(0x71000u64 | 7).to_le_bytes())
        .unwrap();
    ram.write_host(0x71000, &(0x72000u64 | 7).to_le_bytes())
        .unwrap();
    ram.write_host(0x72000, &0x87u64.to_le_bytes()).unwrap();
    let mut s = flat32();
    s.seg[SegmentIndex::Cs as usize] = Segment::from_descriptor(0x08, 0x0000_ffff, 0x00af_9a00);
    s.cr0 |= cr0::PG;
    s.cr3 = 0x70000;
    s.cr4 |= crate::mem::CR4_PAE;
    s.efer = vcpu::state::efer::LME | vcpu::state::efer::LMA;
    s
}

pub(super) fn buses() -> Buses {
    let mut b = Buses::new();
    let req = b.requests();
    b.io.insert(
        u64::from(devices::debug::DEBUG_EXIT_PORT),
        devices::debug::DEBUG_EXIT_LEN,
        Box::new(DebugExit::new(req)),
    )
    .unwrap();
    b
}

/// The outcome of one run: how it ended, the state, and RAM below 1 MiB's first 64 KiB.
pub(super) struct Outcome {
    pub exit: VmExit,
    pub state: CpuState,
    pub mem: Vec<u8>,
    pub vcpu: JitVcpu,
}

pub(super) fn run_mode(code: &[u8], state: CpuState, translate: bool) -> Outcome {
    run_mode_at(code, state, translate, 0)
}

/// [`run_mode`] translating blocks once they ran `hot_threshold` times (a threshold above 0
/// lets regions form: a block's successors are in the block table when it gets hot).
pub(super) fn run_mode_at(
    code: &[u8],
    state: CpuState,
    translate: bool,
    hot_threshold: u32,
) -> Outcome {
    let ram = ram();
    if state.efer & vcpu::state::efer::LMA != 0 {
        long64(&ram);
    }
    ram.write_host(CODE, code).unwrap();
    // Real-mode exceptions land on a HLT at 0000:0F00 (every IVT entry points there).
    ram.write_host(FAULT_HLT, &[HLT]).unwrap();
    for v in 0..256u64 {
        ram.write_host(v * 4, &(FAULT_HLT as u32).to_le_bytes())
            .unwrap();
    }
    let config = JitConfig {
        translate,
        hot_threshold,
        ..JitConfig::default()
    };
    let mut v = JitVcpu::with_config(ram, state, config).unwrap();
    v.set_instruction_budget(Some(200_000));
    let mut b = buses();
    let exit = v.run(&mut b).unwrap();
    let mut mem = vec![0u8; 0x10000];
    v.ram().read(0, &mut mem).unwrap();
    Outcome {
        exit,
        state: v.state().unwrap(),
        mem,
        vcpu: v,
    }
}

/// Run translated and interpreted; assert they agree; return the translated outcome.
pub(super) fn differential(code: &[u8], state: CpuState, flag_mask: u64) -> Outcome {
    differential_at(code, state, flag_mask, 0)
}

/// [`differential`] with the translated run's hot threshold (see [`run_mode_at`]).
pub(super) fn differential_at(
    code: &[u8],
    state: CpuState,
    flag_mask: u64,
    hot_threshold: u32,
) -> Outcome {
    let t = run_mode_at(code, state, true, hot_threshold);
    let i = run_mode(code, state, false);
    assert_eq!(t.exit, i.exit, "exit differs");
    let mut ts = t.state;
    let mut is = i.state;
    ts.rflags &= !flag_mask;
    is.rflags &= !flag_mask;
    // The TSC follows host time (crate::tsc), so the two runs read different values.
    ts.tsc = 0;
    is.tsc = 0;
    assert_eq!(
        ts, is,
        "state differs: translated {:x?}\ninterpreted {:x?}",
        ts.gpr, is.gpr
    );
    if t.mem != i.mem {
        let at = t.mem.iter().zip(&i.mem).position(|(a, b)| a != b).unwrap();
        panic!(
            "memory differs at {at:#x}: {:#x} vs {:#x}",
            t.mem[at], i.mem[at]
        );
    }
    assert_eq!(
        t.vcpu.instructions(),
        i.vcpu.instructions(),
        "instruction counts differ"
    );
    t
}

pub(super) const HLT: u8 = 0xf4;

#[test]
fn counted_loop_runs_inside_the_generated_function() {
    // mov ecx, 1000; xor eax, eax; L: add eax, ecx; loop L; hlt
    let code = [
        0xb9, 0xe8, 0x03, 0, 0, 0x31, 0xc0, 0x01, 0xc8, 0xe2, 0xfc, HLT,
    ];
    let t = differential(&code, flat32(), 0);
    assert_eq!(
        t.exit,
        VmExit::Halted {
            interrupts_enabled: false
        }
    );
    assert_eq!(t.state.gpr[gpr::RAX], 500_500);
    let st = t.vcpu.stats();
    assert!(st.self_loops >= 1, "{st:?}");
    assert!(st.blocks_compiled >= 2, "{st:?}");
}

/// mov ecx, 1000; mov eax, 0xdeadbeef
/// L: shr eax, 1; jnc N; xor eax, 0xedb88320
/// N: dec ecx; jnz L; hlt
/// Three blocks calling each other through constant exits: the hot ones get linked.
const CRC_BITS: [u8; 24] = [
    0xb9, 0xe8, 0x03, 0, 0, 0xb8, 0xef, 0xbe, 0xad, 0xde, 0xd1, 0xe8, 0x73, 0x05, 0x35, 0x20, 0x83,
    0xb8, 0xed, 0xff, 0xc9, 0x75, 0xf3, HLT,
];

/// CRC_BITS' result, computed on the host.
fn crc_bits_eax() -> u64 {
    let mut eax: u32 = 0xdead_beef;
    for _ in 0..1000 {
        let carry = eax & 1 != 0;
        eax >>= 1;
        if carry {
            eax ^= 0xedb8_8320;
        }
    }
    u64::from(eax)
}

#[test]
fn conditions_after_shifts_use_the_last_bit_shifted_out() {
    // For each shift: mov eax, 0x92345687; <shift>; jnc +1; inc ecx; add ecx, ecx
    //                 mov eax, 0x92345687; <shift>; ja +1; inc edx; add edx, edx
    // then the same with js/jp into esi/edi.
    let shifts: [[u8; 3]; 14] = [
        [0xc0, 0xe0, 7],
        [0xc0, 0xe0, 8],
        [0xc0, 0xe0, 9],
        [0xc0, 0xe8, 3],
        [0xc0, 0xe8, 9],
        [0xc0, 0xf8, 1],
        [0xc0, 0xf8, 20],
        [0xc1, 0xe0, 1],
        [0xc1, 0xe0, 31],
        [0xc1, 0xe8, 31],
        [0xc1, 0xe8, 4],
        [0xc1, 0xf8, 31],
        [0x66, 0xd1, 0xe8],
        [0xc1, 0xe0, 4],
    ];
    let mut code = vec![0x31, 0xc9, 0x31, 0xd2, 0x31, 0xf6, 0x31, 0xff];
    for sh in &shifts {
        for (jcc, inc, add) in [
            (0x73, 0x41, [0x01, 0xc9]),
            (0x77, 0x42, [0x01, 0xd2]),
            (0x78, 0x46, [0x01, 0xf6]),
            (0x7a, 0x47, [0x01, 0xff]),
        ] {
            code.extend_from_slice(&[0xb8, 0x87, 0x56, 0x34, 0x92]);
            code.extend_from_slice(sh);
            code.extend_from_slice(&[jcc, 0x01, inc]);
            code.extend_from_slice(&add);
        }
    }
    code.push(HLT);
    let t = differential(&code, flat32(), 0);
    assert_eq!(
        t.exit,
        VmExit::Halted {
            interrupts_enabled: false
        }
    );
}

#[test]
fn carry_from_the_previous_block_is_read_from_the_stored_record() {
    // For each flag-setting instruction and operand pair:
    //   mov eax, A; mov ebx, B; <op>; jmp +0; inc esi; jc +1; inc ecx; rol ecx, 1
    //   mov eax, A; mov ebx, B; <op>; jmp +0; jnc +1; inc edx; rol edx, 1
    let ops: [&[u8]; 13] = [
        &[0x01, 0xd8],       // add eax, ebx
        &[0x28, 0xd8],       // sub al, bl
        &[0x66, 0x39, 0xd8], // cmp ax, bx
        &[0x21, 0xd8],       // and eax, ebx
        &[0x11, 0xd8],       // adc eax, ebx
        &[0x19, 0xd8],       // sbb eax, ebx
        &[0xf9],             // stc
        &[0x0f, 0xaf, 0xc3], // imul eax, ebx
        &[0xd1, 0xe8],       // shr eax, 1
        &[0xc0, 0xe0, 0x03], // shl al, 3
        &[0xf7, 0xd8],       // neg eax
        &[0x43],             // inc ebx
        &[0x4b],             // dec ebx
    ];
    let pairs: [(u32, u32); 3] = [(0xffff_ffff, 2), (1, 2), (0x7000_0005, 0x3000_0003)];
    let mut code = vec![0x31, 0xc9, 0x31, 0xd2, 0x31, 0xf6];
    for op in ops {
        for (a, b) in pairs {
            for tail in [
                &[0x46, 0x72, 0x01, 0x41, 0xd1, 0xc1][..],
                &[0x73, 0x01, 0x42, 0xd1, 0xc2][..],
            ] {
                code.push(0xb8);
                code.extend_from_slice(&a.to_le_bytes());
                code.push(0xbb);
                code.extend_from_slice(&b.to_le_bytes());
                code.extend_from_slice(op);
                code.extend_from_slice(&[0xeb, 0x00]);
                code.extend_from_slice(tail);
            }
        }
    }
    code.push(HLT);
    let t = differential(&code, flat32(), 0);
    assert_eq!(
        t.exit,
        VmExit::Halted {
            interrupts_enabled: false
        }
    );
    assert_ne!(t.state.gpr[gpr::RCX], 0);
    assert_ne!(t.state.gpr[gpr::RDX], 0);
}

/// IMUL forms with products that fit and that do not, each followed by JO into a bit of ESI
/// (the condition helper) and by `setc` into the low byte of EDI, which is then rotated.
fn imul_code(ops: &[&[u8]]) -> Vec<u8> {
    let pairs: [(u64, u64); 4] = [
        (3, 5),
        (0xffff_fffe, 7),
        (0x7fff_ffff_0001_2345, 0x1_0000),
        (0x8000, 0xffff_ffff_ffff_8000),
    ];
    let mut code = vec![0x31, 0xf6, 0x31, 0xff];
    for op in ops {
        for (a, b) in pairs {
            // mov rax/eax, a; mov rbx/ebx, b (64-bit: REX.W B8/BB + imm64; 32-bit: imm32)
            code.extend_from_slice(&[0x48, 0xb8]);
            code.extend_from_slice(&a.to_le_bytes());
            code.extend_from_slice(&[0x48, 0xbb]);
            code.extend_from_slice(&b.to_le_bytes());
            code.extend_from_slice(op);
            // jno +2; inc esi; setc cl; add edi, ecx; rol edi, 3; add esi, esi
            code.extend_from_slice(&[0x71, 0x02, 0xff, 0xc6, 0x0f, 0x92, 0xc1, 0x01, 0xcf]);
            code.extend_from_slice(&[0xc1, 0xc7, 0x03, 0x01, 0xf6]);
        }
    }
    code.push(HLT);
    code
}

#[test]
fn imul_two_and_three_operand_forms_agree_with_the_interpreter() {
    let ops: [&[u8]; 7] = [
        &[0x0f, 0xaf, 0xc3],                         // imul eax, ebx
        &[0x66, 0x0f, 0xaf, 0xc3],                   // imul ax, bx
        &[0x48, 0x0f, 0xaf, 0xc3],                   // imul rax, rbx
        &[0x6b, 0xc3, 0x81],                         // imul eax, ebx, -127
        &[0x69, 0xc3, 0x45, 0x23, 0x01, 0x00],       // imul eax, ebx, 0x12345
        &[0x48, 0x69, 0xd3, 0x00, 0x00, 0x00, 0x80], // imul rdx, rbx, -2^31
        &[0x66, 0x6b, 0xd0, 0x7f],                   // imul dx, ax, 127
    ];
    let t = differential(&imul_code(&ops), long64(&ram()), 0);
    assert_eq!(
        t.exit,
        VmExit::Halted {
            interrupts_enabled: false
        }
    );
    assert_ne!(t.state.gpr[gpr::RSI], 0);
    assert_ne!(t.state.gpr[gpr::RDI], 0);
}

#[test]
fn blocks_chain_directly_and_agree_with_the_interpreter() {
    let t = differential(&CRC_BITS, flat32(), 0);
    assert_eq!(t.state.gpr[gpr::RAX], crc_bits_eax());
    let st = t.vcpu.stats();
    assert!(st.linked >= 2, "{st:?}");
}

/// mov ecx, 500; xor eax, eax; L: call F; dec ecx; jnz L; hlt; F: add eax, ecx; ret
const CALL_RET_LOOP: [u8; 20] = [
    0xb9, 0xf4, 0x01, 0, 0, 0x31, 0xc0, 0xe8, 5, 0, 0, 0, 0xff, 0xc9, 0x75, 0xf7, HLT, 0x01, 0xc8,
    0xc3,
];

#[test]
fn returns_continue_through_the_jump_cache_without_the_dispatcher() {
    for state in [flat32(), long64(&ram())] {
        let t = differential(&CALL_RET_LOOP, state, 0);
        assert_eq!(t.state.gpr[gpr::RAX], (1..=500).sum::<u64>());
        let st = t.vcpu.stats();
        // 1500 block transitions; the returns among them stay in generated code.
        assert!(st.dispatched < 100, "{st:?}");
    }
}

#[test]
fn indirect_calls_and_jumps_agree_with_the_interpreter_and_stay_in_generated_code() {
    //  0: mov ecx, 300; xor eax, eax; mov rbx, F; mov esi, DATA; mov [rsi], rbx;
    //     lea rdx, [rip+J]
    // 32: L: call rbx; call [rsi]; nop x5; jmp rdx
    // 43: J: dec ecx; jnz L; hlt
    // 48: F: add eax, ecx; ret
    let mut code = vec![0xb9, 0x2c, 0x01, 0, 0, 0x31, 0xc0, 0x48, 0xbb];
    code.extend_from_slice(&(CODE + 48).to_le_bytes());
    code.push(0xbe);
    code.extend_from_slice(&(DATA as u32).to_le_bytes());
    code.extend_from_slice(&[0x48, 0x89, 0x1e]);
    code.extend_from_slice(&[0x48, 0x8d, 0x15, 43 - 32, 0, 0, 0]);
    code.extend_from_slice(&[0xff, 0xd3, 0xff, 0x16, 0x90, 0x90, 0x90, 0x90, 0x90]);
    code.extend_from_slice(&[0xff, 0xe2]);
    code.extend_from_slice(&[0xff, 0xc9, 0x75, (32i8 - 47) as u8, HLT]);
    code.extend_from_slice(&[0x01, 0xc8, 0xc3]);
    assert_eq!(code.len(), 51);
    let t = differential(&code, long64(&ram()), 0);
    assert_eq!(
        t.exit,
        VmExit::Halted {
            interrupts_enabled: false
        }
    );
    assert_eq!(t.state.gpr[gpr::RAX], 2 * (1..=300).sum::<u64>());
    let st = t.vcpu.stats();
    // 1800 block transitions, all but a few in generated code.
    assert!(st.dispatched < 100, "{st:?}");
}

#[test]
fn blocks_chain_directly_under_paging() {
    let t = differential(&CRC_BITS, long64(&ram()), 0);
    assert_eq!(t.state.gpr[gpr::RAX], crc_bits_eax());
    let st = t.vcpu.stats();
    assert!(st.linked >= 2, "{st:?}");
}

#[test]
fn dec_jnz_loop_with_memory_and_flags() {
    // mov ecx, 50; mov ebx, DATA
    // L: add dword [ebx], ecx; inc dword [ebx+4]; cmp ecx, 25; jne skip; mov [ebx+8], ecx
    // skip: dec ecx; jnz L; hlt
    let mut code = vec![0xb9, 50, 0, 0, 0, 0xbb];
    code.extend_from_slice(&(DATA as u32).to_le_bytes());
    let l = code.len();
    code.extend_from_slice(&[
        0x01, 0x0b, 0xff, 0x43, 0x04, 0x83, 0xf9, 25, 0x75, 0x03, 0x89, 0x4b, 0x08,
    ]);
    code.extend_from_slice(&[0x49, 0x75]);
    let rel = l as i64 - (code.len() as i64 + 1);
    code.push(rel as u8);
    code.push(HLT);
    let t = differential(&code, flat32(), 0);
    let word = |o: usize| {
        u32::from_le_bytes(
            t.mem[DATA as usize + o..DATA as usize + o + 4]
                .try_into()
                .unwrap(),
        )
    };
    assert_eq!(word(0), (1..=50).sum::<u32>());
    assert_eq!(word(4), 50);
    assert_eq!(word(8), 25);
}

#[test]
fn x87_and_mmx_blocks_run_through_the_interpreter_helper() {
    // fninit; mov ecx, 10; fld1
    // L: fadd st0, st0; fld1; faddp st1; dec ecx; jnz L      (x = 2x + 1, ten times: 2047)
    // fistp dword [DATA]; movd mm1, [DATA]; paddd mm1, mm1; movq [DATA+8], mm1; emms; hlt
    let mut code = vec![0xdb, 0xe3, 0xb9, 10, 0, 0, 0, 0xd9, 0xe8];
    let l = code.len();
    code.extend_from_slice(&[0xd8, 0xc0, 0xd9, 0xe8, 0xde, 0xc1, 0x49, 0x75]);
    let rel = l as i64 - (code.len() as i64 + 1);
    code.push(rel as u8);
    code.extend_from_slice(&[0xdb, 0x1d]);
    code.extend_from_slice(&(DATA as u32).to_le_bytes());
    code.extend_from_slice(&[0x0f, 0x6e, 0x0d]);
    code.extend_from_slice(&(DATA as u32).to_le_bytes());
    code.extend_from_slice(&[0x0f, 0xfe, 0xc9, 0x0f, 0x7f, 0x0d]);
    code.extend_from_slice(&(DATA as u32 + 8).to_le_bytes());
    code.extend_from_slice(&[0x0f, 0x77, HLT]);
    let t = differential(&code, flat32(), 0);
    let word = |o: usize| {
        u32::from_le_bytes(
            t.mem[DATA as usize + o..DATA as usize + o + 4]
                .try_into()
                .unwrap(),
        )
    };
    assert_eq!(word(0), 2047);
    assert_eq!(word(8), 4094);
    // EMMS left every register empty.
    assert_eq!(t.state.fx.0[vcpu::FxArea::FTW], 0);
}

#[test]
fn call_and_ret_through_the_stack() {
    // call f; hlt; f: mov eax, 42; push eax; pop edx; ret
    let code = [
        0xe8, 0x01, 0, 0, 0, HLT, 0xb8, 42, 0, 0, 0, 0x50, 0x5a, 0xc3,
    ];
    let t = differential(&code, flat32(), 0);
    assert_eq!(t.state.gpr[gpr::RAX], 42);
    assert_eq!(t.state.gpr[gpr::RDX], 42);
    assert_eq!(t.state.gpr[gpr::RSP], STACK_TOP);
    assert_eq!(t.state.rip, CODE + 6);
}

#[test]
fn real_mode_16bit_code() {
    // mov ax, 0x800; mov ds, ax; mov bx, 0x10; mov cx, 5
    // L: mov [bx], cx; add bx, 2; push cx; pop dx; shl dx, 3; loop L
    // mov al, [0x12]; movsx si, al; hlt
    let mut code = vec![
        0xb8, 0x00, 0x08, 0x8e, 0xd8, 0xbb, 0x10, 0x00, 0xb9, 0x05, 0x00,
    ];
    let l = code.len();
    code.extend_from_slice(&[
        0x89, 0x0f, 0x83, 0xc3, 0x02, 0x51, 0x5a, 0xc1, 0xe2, 0x03, 0xe2,
    ]);
    let rel = l as i64 - (code.len() as i64 + 1);
    code.push(rel as u8);
    code.extend_from_slice(&[0xa0, 0x12, 0x00, 0x0f, 0xbe, 0xf0, HLT]);
    let t = differential(&code, real16(), 0);
    assert_eq!(t.state.gpr[gpr::RDX] & 0xffff, 8);
    assert_eq!(t.mem[0x8010..0x801a], [5, 0, 4, 0, 3, 0, 2, 0, 1, 0]);
    assert_eq!(t.state.gpr[gpr::RSI] & 0xffff, 4);
}

#[test]
fn jcc_after_every_alu_op_and_size() {
    // For each ALU op (add, sub, and, or, xor, cmp, test, inc, dec, neg) at 8/16/32 bits and
    // each condition code: set registers, op, jcc over "inc edi", then store edi.
    // mov esi, DATA: every outcome is stored to [esi] and esi advances.
    let mut code = vec![0xbe];
    code.extend_from_slice(&(DATA as u32).to_le_bytes());
    let values: [(u32, u32); 4] = [
        (5, 7),
        (0x7fff_ffff, 1),
        (0x80, 0x80),
        (0xffff_ffff, 0xffff_ffff),
    ];
    let ops: [&[u8]; 10] = [
        &[0x01, 0xd8], // add eax, ebx
        &[0x29, 0xd8], // sub eax, ebx
        &[0x21, 0xd8], // and eax, ebx
        &[0x09, 0xd8], // or eax, ebx
        &[0x31, 0xd8], // xor eax, ebx
        &[0x39, 0xd8], // cmp eax, ebx
        &[0x85, 0xd8], // test eax, ebx
        &[0xff, 0xc0], // inc eax
        &[0xff, 0xc8], // dec eax
        &[0xf7, 0xd8], // neg eax
    ];
    for (a, b) in values {
        for op in ops {
            for prefix in [None, Some(0x66u8), Some(0)] {
                for cc in 0..16u8 {
                    code.push(0xb8);
                    code.extend_from_slice(&a.to_le_bytes());
                    code.push(0xbb);
                    code.extend_from_slice(&b.to_le_bytes());
                    match prefix {
                        Some(0) => {
                            // 8-bit form: opcode - 1 for the 01/29/21/09/31/39/85 group, FE/F6.
                            let first = match op[0] {
                                0xff => 0xfe,
                                0xf7 => 0xf6,
                                o => o - 1,
                            };
                            code.extend_from_slice(&[first, op[1]]);
                        }
                        Some(p) => {
                            code.push(p);
                            code.extend_from_slice(op);
                        }
                        None => code.extend_from_slice(op),
                    }
                    // jcc +1; inc edi; mov [esi], edi; add esi, 4
                    code.extend_from_slice(&[0x70 + cc, 0x01, 0x47, 0x89, 0x3e, 0x83, 0xc6, 0x04]);
                }
            }
        }
    }
    code.push(HLT);
    differential(&code, flat32(), 0);
}

#[test]
fn self_modifying_code_patches_the_next_instruction() {
    // mov byte [CODE+8], 5 ; (the immediate of the next instruction) ; mov al, 1 ; hlt
    let mut code = vec![0xc6, 0x05];
    code.extend_from_slice(&((CODE + 8) as u32).to_le_bytes());
    code.push(5);
    code.extend_from_slice(&[0xb0, 0x01, HLT]);
    assert_eq!(code[7], 0xb0);
    let t = differential(&code, flat32(), 0);
    assert_eq!(t.state.gpr[gpr::RAX] & 0xff, 5);
}

#[test]
fn hot_loop_rewritten_while_running() {
    // ecx = 300; L: add eax, 1 (83 c0 01); cmp ecx, 100; jne skip; mov byte [L+2], 3; skip:
    // dec ecx; jnz L; hlt. The loop adds 1 while ecx runs 300..=100 (201 times), then 3.
    let mut code = vec![0xb9, 0x2c, 0x01, 0, 0, 0x31, 0xc0];
    let l = code.len();
    code.extend_from_slice(&[0x83, 0xc0, 0x01, 0x83, 0xf9, 100, 0x75, 0x07, 0xc6, 0x05]);
    code.extend_from_slice(&((CODE + l as u64 + 2) as u32).to_le_bytes());
    code.push(3);
    code.extend_from_slice(&[0x49, 0x75]);
    let rel = l as i64 - (code.len() as i64 + 1);
    code.push(rel as u8);
    code.push(HLT);
    let t = differential(&code, flat32(), 0);
    assert_eq!(t.state.gpr[gpr::RAX], 201 + 99 * 3);
    assert!(t.vcpu.stats().blocks_invalidated >= 1);

    // A self-looping block that patches its own first instruction every iteration:
    // mov ecx, 20; xor eax, eax; L: add eax, 1 (83 c0 imm8); mov [L+2], cl; dec ecx; jnz L; hlt
    let mut code = vec![0xb9, 20, 0, 0, 0, 0x31, 0xc0];
    let l = code.len();
    code.extend_from_slice(&[0x83, 0xc0, 0x01, 0x88, 0x0d]);
    code.extend_from_slice(&((CODE + l as u64 + 2) as u32).to_le_bytes());
    code.extend_from_slice(&[0x49, 0x75]);
    let rel = l as i64 - (code.len() as i64 + 1);
    code.push(rel as u8);
    code.push(HLT);
    let t = differential(&code, flat32(), 0);
    // First iteration adds 1, iteration k (ecx = 21 - k) adds the ecx stored the time before.
    assert_eq!(t.state.gpr[gpr::RAX], 1 + (2..=20).sum::<u64>());
}

#[test]
fn budget_kick_and_device_request() {
    // jmp $
    let mem = ram();
    mem.write_host(CODE, &[0xeb, 0xfe]).unwrap();
    let mut v = JitVcpu::with_config(
        mem,
        flat32(),
        JitConfig {
            hot_threshold: 0,
            ..JitConfig::default()
        },
    )
    .unwrap();
    let mut b = buses();
    v.set_instruction_budget(Some(10_000));
    assert_eq!(v.run(&mut b).unwrap(), VmExit::BudgetSpent);
    assert!(v.instructions() >= 10_000);
    v.set_instruction_budget(None);
    v.kicker().kick();
    assert_eq!(v.run(&mut b).unwrap(), VmExit::Kicked);

    // mov al, 7; out 0xf4, al; hlt
    let ram2 = ram();
    ram2.write_host(CODE, &[0xb0, 0x07, 0xe6, 0xf4, HLT])
        .unwrap();
    let mut v = JitVcpu::new(ram2, flat32()).unwrap();
    let mut b = buses();
    assert_eq!(v.run(&mut b).unwrap(), VmExit::DeviceRequest);
    assert_eq!(
        b.take_request(),
        Some(PlatformRequest::DebugExit { value: 7 })
    );
    assert_eq!(
        v.run(&mut b).unwrap(),
        VmExit::Halted {
            interrupts_enabled: false
        }
    );
}

/// A small deterministic generator (xorshift64*).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// Registers random code may write: not ESP (stack) or EBX (scratch base).
const DST: [u8; 6] = [0, 1, 2, 5, 6, 7];
/// 8-bit destinations that leave BL/BH alone: AL CL DL AH CH DH.
const DST8: [u8; 6] = [0, 1, 2, 4, 5, 6];

/// Random values in the first eight general registers (`width` masks them) and the status
/// flags, except RSP (the stack), RBX (the data area random instructions address) and RSI (a
/// small index into it).
pub(super) fn randomize_registers(s: &mut CpuState, r: &mut Rng, width: u64) {
    for (i, g) in s.gpr.iter_mut().enumerate().take(8) {
        *g = match i {
            gpr::RSP => STACK_TOP,
            gpr::RBX => DATA,
            gpr::RSI => r.below(8),
            _ => r.next() & width,
        };
    }
    s.rflags = rflags::FIXED1 | (r.next() & rflags::STATUS);
}

/// One random instruction over registers and [ebx+disp8] (32-bit addressing; `real` code gets
/// an address-size prefix from the caller and operand-size prefixes for 32-bit immediates).
pub(super) fn random_insn(r: &mut Rng, code: &mut Vec<u8>, real: bool, long: bool) {
    let start = code.len();
    random_insn_body(r, code, real);
    // In 64-bit mode, REX.W on half of them (not before 66, which must come first, nor on
    // MOV r, imm32, which REX.W turns into MOV r, imm64).
    let first = code[start];
    if long && r.below(2) == 0 && first != 0x66 && !(0xb8..=0xbf).contains(&first) {
        code.insert(start, 0x48);
    }
}

fn random_insn_body(r: &mut Rng, code: &mut Vec<u8>, real: bool) {
    let alu = [0x00u8, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38];
    let disp = (r.below(28) * 4) as u8;
    match r.below(20) {
        0..=3 => {
            // ALU r/m, r or r, r/m at 8/16/32 bits, register or memory.
            let size = r.below(3);
            if size == 1 {
                code.push(0x66);
            }
            let base = r.pick(&alu) + if size == 0 { 0 } else { 1 };
            let to_reg = r.below(2) == 0;
            let reg = if size == 0 {
                r.pick(&DST8)
            } else {
                r.pick(&DST)
            };
            code.push(base + if to_reg { 2 } else { 0 });
            if r.below(2) == 0 {
                let rm = if size == 0 {
                    r.pick(&DST8)
                } else {
                    r.pick(&DST)
                };
                code.push(0xc0 | (reg << 3) | rm);
            } else {
                code.extend_from_slice(&[0x43 | (reg << 3), disp]);
            }
        }
        4..=5 => {
            // ALU r/m32, imm8/imm32 (group 1).
            let op = r.below(8) as u8;
            let mem = r.below(2) == 0;
            let imm32 = r.below(2) == 0;
            if imm32 && real {
                // imm32 needs a 32-bit operand size in 16-bit code.
                code.push(0x66);
            }
            code.push(if imm32 { 0x81 } else { 0x83 });
            if mem {
                code.extend_from_slice(&[0x43 | (op << 3), disp]);
            } else {
                code.push(0xc0 | (op << 3) | r.pick(&DST));
            }
            if imm32 {
                code.extend_from_slice(&(r.next() as u32).to_le_bytes());
            } else {
                code.push(r.next() as u8);
            }
        }
        6 => {
            // test r/m, r
            code.extend_from_slice(&[0x85, 0xc0 | (r.pick(&DST) << 3) | r.pick(&DST)]);
        }
        7 => {
            // inc/dec/neg/not on a register or memory
            let (op, ext) = r.pick(&[
                (0xffu8, 0u8),
                (0xff, 1),
                (0xf7, 3),
                (0xf7, 2),
                (0xfe, 0),
                (0xf6, 3),
            ]);
            code.push(op);
            if r.below(2) == 0 {
                code.extend_from_slice(&[0x43 | (ext << 3), disp]);
            } else {
                let rm = if op & 1 == 0 {
                    r.pick(&DST8)
                } else {
                    r.pick(&DST)
                };
                code.push(0xc0 | (ext << 3) | rm);
            }
        }
        8..=9 => {
            // shl/shr/sar by an immediate or by 1, 8 or 32 bits.
            let ext = r.pick(&[4u8, 5, 7]);
            let byte = r.below(3) == 0;
            let by_one = r.below(4) == 0;
            let op = match (byte, by_one) {
                (true, true) => 0xd0,
                (true, false) => 0xc0,
                (false, true) => 0xd1,
                (false, false) => 0xc1,
            };
            code.push(op);
            if r.below(3) == 0 {
                code.extend_from_slice(&[0x43 | (ext << 3), disp]);
            } else {
                let rm = if byte { r.pick(&DST8) } else { r.pick(&DST) };
                code.push(0xc0 | (ext << 3) | rm);
            }
            if !by_one {
                code.push(r.below(40) as u8);
            }
        }
        10..=11 => {
            // mov forms
            match r.below(4) {
                0 => code.extend_from_slice(&[0x89, 0xc0 | (r.pick(&DST) << 3) | r.pick(&DST)]),
                1 => {
                    if real {
                        code.push(0x66);
                    }
                    code.push(0xb8 + r.pick(&DST));
                    code.extend_from_slice(&(r.next() as u32).to_le_bytes());
                }
                2 => code.extend_from_slice(&[0x89, 0x43 | (r.pick(&DST) << 3), disp]),
                _ => code.extend_from_slice(&[0x8b, 0x43 | (r.pick(&DST) << 3), disp]),
            }
        }
        12 => {
            // movzx/movsx from a byte or word register or memory
            let op = r.pick(&[0xb6u8, 0xb7, 0xbe, 0xbf]);
            code.extend_from_slice(&[0x0f, op]);
            if r.below(2) == 0 {
                code.extend_from_slice(&[0x43 | (r.pick(&DST) << 3), disp]);
            } else {
                code.push(0xc0 | (r.pick(&DST) << 3) | r.pick(&DST));
            }
        }
        13 => {
            // lea r, [ebx + esi*4 + disp8]
            code.extend_from_slice(&[0x8d, 0x44 | (r.pick(&DST) << 3), 0xb3, disp]);
        }
        14 => {
            // push r; pop r
            code.push(0x50 + r.pick(&[0u8, 1, 2, 3, 5, 6, 7]));
            code.push(0x58 + r.pick(&DST));
        }
        15 => {
            // adc/sbb (interpreted: mixes lazy flags across inline and helper code)
            code.extend_from_slice(&[
                r.pick(&[0x11u8, 0x19]),
                0xc0 | (r.pick(&DST) << 3) | r.pick(&DST),
            ]);
        }
        16 => {
            // setcc r8 (interpreted)
            code.extend_from_slice(&[0x0f, 0x90 + r.below(16) as u8, 0xc0 | r.pick(&DST8)]);
        }
        _ => {
            // jcc over a 2-byte instruction
            code.extend_from_slice(&[
                0x70 + r.below(16) as u8,
                0x02,
                0x89,
                0xc0 | (r.pick(&DST) << 3) | r.pick(&DST),
            ]);
        }
    }
}

/// Random programs in 32-bit protected mode (`real == false`) or in real mode, where every
/// instruction gets an address-size prefix so the same [ebx+disp8] encodings apply and the
/// operand-size prefix selects 32-bit operands instead of 16-bit ones.
fn random_programs(seed: u64, cases: usize, mode: Mode) {
    let real = mode == Mode::Real;
    let mut r = Rng(seed);
    for case in 0..cases {
        let mut code = Vec::new();
        for _ in 0..40 {
            if real {
                code.push(0x67);
            }
            random_insn(&mut r, &mut code, real, mode == Mode::Long64);
        }
        code.push(HLT);
        let mut s = match mode {
            Mode::Real => real16(),
            Mode::Flat32 | Mode::Long64 | Mode::Compat32 => flat32(),
        };
        if mode == Mode::Long64 {
            s = long64(&ram());
        }
        if mode == Mode::Compat32 {
            s = long64(&ram());
            s.seg[SegmentIndex::Cs as usize] = flat32().seg[SegmentIndex::Cs as usize];
        }
        let width = if mode == Mode::Long64 {
            u64::MAX
        } else {
            0xffff_ffff
        };
        randomize_registers(&mut s, &mut r, width);
        // Flags the SDM leaves undefined (OF after multi-bit shifts, AF after logic and shifts)
        // need no mask: translated code and the interpreter share one lazy-flags record, so
        // even those agree bit for bit.
        let undefined = 0;
        let t = std::panic::catch_unwind(|| {
            differential(&code, s, undefined);
        });
        if t.is_err() {
            panic!("case {case} failed; code {code:02x?}");
        }
    }
}

#[test]
fn random_instruction_sequences_agree_with_the_interpreter() {
    random_programs(0x9e37_79b9_7f4a_7c15, 150, Mode::Flat32);
}

#[test]
fn random_64bit_sequences_agree_with_the_interpreter() {
    random_programs(0x5851_f42d_4c95_7f2d, 150, Mode::Long64);
}

#[test]
fn random_compatibility_mode_sequences_agree_with_the_interpreter() {
    random_programs(0x1405_7b7e_f767_814f, 100, Mode::Compat32);
}

#[test]
fn random_real_mode_sequences_agree_with_the_interpreter() {
    random_programs(0x2545_f491_4f6c_dd1d, 100, Mode::Real);
}

/// Throughput of a memory-and-ALU loop, translated and interpreted. Prints numbers; run with
/// `cargo test -p jit --release -- --ignored --nocapture throughput`.
#[test]
#[ignore = "timing only, prints numbers"]
fn throughput() {
    // mov ecx, 5_000_000; mov ebx, DATA
    // L: mov eax, [ebx]; add eax, ecx; mov [ebx], eax; xor edx, eax; dec ecx; jnz L; hlt
    let mut code = vec![0xb9];
    code.extend_from_slice(&5_000_000u32.to_le_bytes());
    code.push(0xbb);
    code.extend_from_slice(&(DATA as u32).to_le_bytes());
    code.extend_from_slice(&[
        0x8b, 0x03, 0x01, 0xc8, 0x89, 0x03, 0x31, 0xc2, 0x49, 0x75, 0xf5, HLT,
    ]);
    for translate in [true, false] {
        let ram = ram();
        ram.write_host(CODE, &code).unwrap();
        let config = JitConfig {
            translate,
            ..JitConfig::default()
        };
        let mut v = JitVcpu::with_config(ram, flat32(), config).unwrap();
        let t0 = std::time::Instant::now();
        let exit = v.run(&mut buses()).unwrap();
        let dt = t0.elapsed();
        assert_eq!(
            exit,
            VmExit::Halted {
                interrupts_enabled: false
            }
        );
        println!(
            "translate={translate}: {} instructions in {dt:?} = {:.1} MIPS",
            v.instructions(),
            v.instructions() as f64 / dt.as_secs_f64() / 1e6
        );
    }
}

/// The page 32-bit paging leaves unmapped in [`paged_fault_runs`].
pub(super) const HOLE: u64 = 0x50000;

/// Run `code` translated and interpreted under 32-bit paging that identity-maps the first
/// 4 MiB except page `HOLE`; #PF goes through an interrupt gate to a HLT at 0x0f00. Asserts
/// both halt, the translated run compiled a block, and they agree; returns the translated
/// state and the 16 bytes below `STACK_TOP - 8` (the fault frame).
fn paged_fault_runs(code: &[u8]) -> (CpuState, [u8; 16]) {
    let (st, stack, _) = paged_fault_runs_at(code, 0);
    (st, stack)
}

/// [`paged_fault_runs`] translating blocks once they ran `hot_threshold` times.
/// Also returns the translated run's statistics.
pub(super) fn paged_fault_runs_at(
    code: &[u8],
    hot_threshold: u32,
) -> (CpuState, [u8; 16], crate::dispatch::JitStats) {
    const PD: u64 = 0x20000;
    const PT: u64 = 0x21000;
    const IDT: u64 = 0x30000;
    const GDT: u64 = 0x31000;
    let mut s = flat32();
    s.cr0 |= cr0::PG;
    s.cr3 = PD;
    s.gdtr = vcpu::DescriptorTable {
        base: GDT,
        limit: 0x17,
    };
    s.idtr = vcpu::DescriptorTable {
        base: IDT,
        limit: 0x7ff,
    };
    let setup = |ram: &GuestRam| {
        ram.write_host(PD, &((PT as u32) | 3).to_le_bytes())
            .unwrap();
        for page in 0..1024u64 {
            let pte = if page << 12 == HOLE {
                0
            } else {
                ((page << 12) | 3) as u32
            };
            ram.write_host(PT + page * 4, &pte.to_le_bytes()).unwrap();
        }
        let gdt: [u32; 6] = [0, 0, 0x0000_ffff, 0x00cf_9a00, 0x0000_ffff, 0x00cf_9200];
        for (i, d) in gdt.iter().enumerate() {
            ram.write_host(GDT + 4 * i as u64, &d.to_le_bytes())
                .unwrap();
        }
        // Gate 14: 32-bit interrupt gate, selector 0x08, offset FAULT_HLT.
        let low = (0x08u32 << 16) | (FAULT_HLT as u32 & 0xffff);
        let high = (FAULT_HLT as u32 & 0xffff_0000) | 0x8e00;
        ram.write_host(IDT + 14 * 8, &low.to_le_bytes()).unwrap();
        ram.write_host(IDT + 14 * 8 + 4, &high.to_le_bytes())
            .unwrap();
    };
    let mut results = Vec::new();
    for translate in [true, false] {
        let ram = ram();
        ram.write_host(CODE, code).unwrap();
        ram.write_host(FAULT_HLT, &[HLT]).unwrap();
        setup(&ram);
        let config = JitConfig {
            translate,
            hot_threshold,
            ..JitConfig::default()
        };
        let mut v = JitVcpu::with_config(ram, s, config).unwrap();
        assert_eq!(
            v.run(&mut buses()).unwrap(),
            VmExit::Halted {
                interrupts_enabled: false
            }
        );
        let mut st = v.state().unwrap();
        st.tsc = 0; // host time (crate::tsc)
        let mut stack = [0u8; 16];
        v.ram().read(STACK_TOP - 24, &mut stack).unwrap();
        results.push((st, stack, v.stats()));
    }
    let (t, i) = (&results[0], &results[1]);
    assert!(
        t.2.blocks_compiled >= 1,
        "the faulting block was translated"
    );
    assert_eq!(t.0, i.0);
    assert_eq!(t.1, i.1);
    (t.0, t.1, t.2)
}

#[test]
fn page_fault_in_translated_access_is_precise() {
    // sub esp, 8; mov eax, 5; mov ebx, [HOLE]; hlt
    // The faulting block has already changed ESP and EAX.
    let mut code = vec![0x83, 0xec, 0x08, 0xb8, 5, 0, 0, 0, 0x8b, 0x1d];
    code.extend_from_slice(&(HOLE as u32).to_le_bytes());
    code.push(HLT);
    let (st, stack) = paged_fault_runs(&code);
    assert_eq!(st.cr2, HOLE);
    assert_eq!(st.rip, FAULT_HLT + 1);
    assert_eq!(st.gpr[gpr::RAX], 5);
    // sub esp, 8, then error code, EIP, CS, EFLAGS pushed by the delivery.
    assert_eq!(st.gpr[gpr::RSP], STACK_TOP - 8 - 16);
    assert_eq!(&stack[4..8], &((CODE + 8) as u32).to_le_bytes());
}

#[test]
fn access_crossing_from_a_cached_page_into_an_unmapped_one_faults() {
    // sub esp, 8; mov ebx, [HOLE-8] (fills the TLB entry of the page below the hole);
    // mov ecx, [HOLE-2] (same entry's tag, but its last bytes are in the hole): #PF.
    let mut code = vec![0x83, 0xec, 0x08, 0x8b, 0x1d];
    code.extend_from_slice(&((HOLE - 8) as u32).to_le_bytes());
    code.extend_from_slice(&[0x8b, 0x0d]);
    code.extend_from_slice(&((HOLE - 2) as u32).to_le_bytes());
    code.push(HLT);
    let (st, stack) = paged_fault_runs(&code);
    assert!((HOLE - 2..=HOLE).contains(&st.cr2), "cr2 {:#x}", st.cr2);
    assert_eq!(st.rip, FAULT_HLT + 1);
    assert_eq!(&stack[4..8], &((CODE + 9) as u32).to_le_bytes());
}

#[test]
fn interrupt_shadow_and_single_step_match_the_interpreter() {
    // sti; mov ax, 1; pushf; mov bp, sp; or word [bp+0], 0x100 (TF); popf; nop; inc ax; hlt
    let code = [
        0xfb, 0xb8, 0x01, 0x00, 0x9c, 0x89, 0xe5, 0x81, 0x4e, 0x00, 0x00, 0x01, 0x9d, 0x90, 0x40,
        HLT,
    ];
    let t = differential(&code, real16(), 0);
    assert_eq!(t.state.interrupt_shadow, 0);
    // With TF set the dispatcher runs blocks through the interpreter, so single-step traps are
    // exactly the interpreter's (which does not raise them yet: ax = 2 then).
    assert!(t.state.rflags & rflags::TF != 0);
}

/// The processor mode random programs run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Real,
    Flat32,
    Long64,
    /// 32-bit code under IA-32e mode.
    Compat32,
}

#[test]
fn loop_in_64bit_mode_is_translated() {
    // mov rcx, 1000; xor eax, eax; mov ebx, DATA
    // L: add rax, rcx; mov [rbx], rax; push rax; pop rdx; dec rcx; jnz L; hlt
    let mut code = vec![0x48, 0xc7, 0xc1, 0xe8, 0x03, 0, 0, 0x31, 0xc0, 0xbb];
    code.extend_from_slice(&(DATA as u32).to_le_bytes());
    let l = code.len();
    code.extend_from_slice(&[
        0x48, 0x01, 0xc8, 0x48, 0x89, 0x03, 0x50, 0x5a, 0x48, 0xff, 0xc9,
    ]);
    let rel = l as i64 - (code.len() as i64 + 2);
    code.extend_from_slice(&[0x75, rel as u8, HLT]);
    let t = differential(&code, long64(&ram()), 0);
    assert_eq!(t.state.gpr[gpr::RAX], 500_500);
    assert_eq!(t.state.gpr[gpr::RDX], 500_500);
    assert_eq!(t.state.gpr[gpr::RSP], STACK_TOP);
    assert_eq!(
        &t.mem[DATA as usize..DATA as usize + 8],
        &500_500u64.to_le_bytes()
    );
    let st = t.vcpu.stats();
    assert!(st.blocks_compiled >= 2 && st.inline_insns > 0, "{st:?}");
}

#[test]
fn translated_ret_to_a_non_canonical_address_faults_at_the_ret() {
    // mov rax, 0x8000_0000_0000_0000; push rax; ret
    // No IDT is set up, so the #GP escalates to a triple fault with the state at the RET.
    let mut code = vec![0x48, 0xb8];
    code.extend_from_slice(&0x8000_0000_0000_0000u64.to_le_bytes());
    code.extend_from_slice(&[0x50, 0xc3]);
    let t = differential(&code, long64(&ram()), 0);
    assert!(matches!(t.exit, VmExit::TripleFault { .. }), "{:?}", t.exit);
    assert_eq!(t.state.rip, CODE + 11);
    assert_eq!(t.state.gpr[gpr::RSP], STACK_TOP - 8);
    assert!(t.vcpu.stats().blocks_compiled >= 1);
}

#[test]
fn sse_instructions_in_a_translated_loop_agree_with_the_interpreter() {
    // mov ecx, 100; pxor xmm0, xmm0; mov eax, 1
    // L: movd xmm1, eax; paddd xmm0, xmm1; pshufd xmm2, xmm0, 0; add eax, ecx
    //    pextrw ebx, xmm2, 0; loop L
    // movd edx, xmm0; hlt
    let code = [
        0xb9, 0x64, 0x00, 0x00, 0x00, 0x66, 0x0f, 0xef, 0xc0, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x66,
        0x0f, 0x6e, 0xc8, 0x66, 0x0f, 0xfe, 0xc1, 0x66, 0x0f, 0x70, 0xd0, 0x00, 0x01, 0xc8, 0x66,
        0x0f, 0xc5, 0xda, 0x00, 0xe2, 0xea, 0x66, 0x0f, 0x7e, 0xc2, HLT,
    ];
    let mut state = flat32();
    state.cr4 |= crate::interp::sse::CR4_OSFXSR;
    let t = differential(&code, state, 0);
    // The sum of eax over the iterations: eax runs 1, 101, 200, ... (adding 100, 99, ...).
    let mut eax = 1u32;
    let mut sum = 0u32;
    for ecx in (1..=100u32).rev() {
        sum = sum.wrapping_add(eax);
        eax = eax.wrapping_add(ecx);
    }
    assert_eq!(t.state.gpr[gpr::RDX], u64::from(sum));
    assert_eq!(t.state.gpr[gpr::RBX], u64::from(sum & 0xffff));
    let st = t.vcpu.stats();
    assert!(st.blocks_compiled >= 1, "{st:?}");
    // MOVD, PADDD and PSHUFD are translated inline (`sse.rs`); PEXTRW, the one SSE
    // instruction of the loop body that is not, goes to the interpreter helper.
    assert!(
        st.interpreted_insns >= 1,
        "PEXTRW goes to the interpreter helper: {st:?}"
    );
    assert!(st.inline_insns >= 6, "{st:?}");
}

#[test]
fn cmovcc_agrees_with_the_interpreter_for_every_condition_and_size() {
    // 64-bit mode. For each condition and each (a, b) pair: cmp rax, rbx; then CMOVcc into
    // ecx (32-bit: upper half cleared even when not moving), r9 (64-bit), r8w (16-bit, from
    // memory at [rsi]) and bx (16-bit, from a register), each destination preset to all ones;
    // the results are stored at [rdi] and rdi advances.
    let mut code = vec![0x48, 0xc7, 0xc7];
    code.extend_from_slice(&(DATA as u32).to_le_bytes()); // mov rdi, DATA
    code.extend_from_slice(&[0x48, 0xc7, 0xc6]);
    code.extend_from_slice(&((DATA + 0x8000) as u32).to_le_bytes()); // mov rsi, DATA + 0x8000
    code.extend_from_slice(&[0x48, 0xba]);
    code.extend_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes()); // mov rdx, imm64
    for (a, b) in [(5u32, 7u32), (7, 5), (0x8000_0000, 1), (3, 3)] {
        for cc in 0..16u8 {
            code.push(0xb8);
            code.extend_from_slice(&a.to_le_bytes()); // mov eax, a
            code.push(0xbb);
            code.extend_from_slice(&b.to_le_bytes()); // mov ebx, b
            code.extend_from_slice(&[0x48, 0xc7, 0xc1, 0xff, 0xff, 0xff, 0xff]); // mov rcx, -1
            code.extend_from_slice(&[0x49, 0xc7, 0xc1, 0xff, 0xff, 0xff, 0xff]); // mov r9, -1
            code.extend_from_slice(&[0x49, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff]); // mov r8, -1
            code.extend_from_slice(&[0x48, 0x39, 0xd8]); // cmp rax, rbx
            code.extend_from_slice(&[0x0f, 0x40 | cc, 0xca]); // cmovcc ecx, edx
            code.extend_from_slice(&[0x4c, 0x0f, 0x40 | cc, 0xca]); // cmovcc r9, rdx
            code.extend_from_slice(&[0x66, 0x44, 0x0f, 0x40 | cc, 0x06]); // cmovcc r8w, [rsi]
            code.extend_from_slice(&[0x66, 0x0f, 0x40 | cc, 0xda]); // cmovcc bx, dx
            code.extend_from_slice(&[0x48, 0x89, 0x0f]); // mov [rdi], rcx
            code.extend_from_slice(&[0x4c, 0x89, 0x4f, 0x08]); // mov [rdi+8], r9
            code.extend_from_slice(&[0x4c, 0x89, 0x47, 0x10]); // mov [rdi+16], r8
            code.extend_from_slice(&[0x48, 0x89, 0x5f, 0x18]); // mov [rdi+24], rbx
            code.extend_from_slice(&[0x48, 0x83, 0xc7, 0x20]); // add rdi, 32
        }
    }
    code.push(HLT);
    let r = ram();
    let mut s = long64(&r);
    s.gpr[gpr::RAX] = 0;
    let t = differential(&code, s, 0);
    let st = t.vcpu.stats();
    assert!(st.inline_insns > 0, "{st:?}");
    // The first case (5 < 7, condition o: not taken) kept rcx's preset but cleared its upper
    // half; condition b (taken) moved rdx's low half into ecx.
    let at = |i: usize| u64::from_le_bytes(t.mem[DATA as usize + i..][..8].try_into().unwrap());
    assert_eq!(
        at(0),
        0xffff_ffff,
        "cmovo ecx not taken: upper half cleared"
    );
    assert_eq!(at(8), u64::MAX, "cmovo r9 not taken");
    assert_eq!(at(2 * 32), 0x5566_7788, "cmovb ecx taken");
    assert_eq!(at(2 * 32 + 8), 0x1122_3344_5566_7788, "cmovb r9 taken");
    assert_eq!(at(2 * 32 + 24) & 0xffff, 0x7788, "cmovb bx taken");
}

#[test]
fn movsxd_agrees_with_the_interpreter() {
    // 64-bit mode: movsxd rax, ecx / movsxd rbx, [rsi] / movsxd edx, ecx (no REX.W: a plain
    // 32-bit move), for a negative and a positive source; results stored at DATA.
    let mut code = vec![0x48, 0xc7, 0xc6];
    code.extend_from_slice(&((DATA + 0x8000) as u32).to_le_bytes()); // mov rsi, DATA + 0x8000
    code.extend_from_slice(&[0x48, 0xc7, 0xc7]);
    code.extend_from_slice(&(DATA as u32).to_le_bytes()); // mov rdi, DATA
    for v in [0x8000_0001u32, 0x7fff_fffe] {
        code.push(0xb9);
        code.extend_from_slice(&v.to_le_bytes()); // mov ecx, v
        code.extend_from_slice(&[0x89, 0x0e]); // mov [rsi], ecx
        code.extend_from_slice(&[0x48, 0xc7, 0xc2, 0xff, 0xff, 0xff, 0xff]); // mov rdx, -1
        code.extend_from_slice(&[0x48, 0x63, 0xc1]); // movsxd rax, ecx
        code.extend_from_slice(&[0x48, 0x63, 0x1e]); // movsxd rbx, [rsi]
        code.extend_from_slice(&[0x63, 0xd1]); // movsxd edx, ecx
        code.extend_from_slice(&[0x48, 0x89, 0x07]); // mov [rdi], rax
        code.extend_from_slice(&[0x48, 0x89, 0x5f, 0x08]); // mov [rdi+8], rbx
        code.extend_from_slice(&[0x48, 0x89, 0x57, 0x10]); // mov [rdi+16], rdx
        code.extend_from_slice(&[0x48, 0x83, 0xc7, 0x18]); // add rdi, 24
    }
    code.push(HLT);
    let t = differential(&code, long64(&ram()), 0);
    let at = |i: usize| u64::from_le_bytes(t.mem[DATA as usize + i..][..8].try_into().unwrap());
    assert_eq!(at(0), 0xffff_ffff_8000_0001);
    assert_eq!(at(8), 0xffff_ffff_8000_0001);
    assert_eq!(at(16), 0x8000_0001, "32-bit form zero-extends");
    assert_eq!(at(24), 0x7fff_fffe);
}

#[test]
fn bare_displacement_operands_in_64bit_mode_are_inline() {
    // 64-bit mode, GS base 0x5000: [disp32] (sign-extended), gs:[disp32] (the kernel's per-CPU
    // accesses), [disp32] under an address-size prefix and MOV's moffs64, loads and stores.
    let ops: [&[u8]; 7] = [
        &[0x48, 0x8b, 0x04, 0x25, 0x00, 0x60, 0, 0], // mov rax, [0x6000]
        &[0x48, 0x89, 0x04, 0x25, 0x08, 0x60, 0, 0], // mov [0x6008], rax
        &[0x65, 0x48, 0x8b, 0x1c, 0x25, 0x00, 0x01, 0, 0], // mov rbx, gs:[0x100]
        &[0x65, 0x48, 0x01, 0x1c, 0x25, 0x10, 0x01, 0, 0], // add gs:[0x110], rbx
        &[0x67, 0x8b, 0x0c, 0x25, 0x10, 0x60, 0, 0], // mov ecx, [0x6010] (addr32)
        &[0x48, 0xa1, 0x18, 0x60, 0, 0, 0, 0, 0, 0], // mov rax, [0x6018] (moffs64)
        &[0x48, 0xa3, 0x20, 0x60, 0, 0, 0, 0, 0, 0], // mov [0x6020], rax (moffs64)
    ];
    let state = || {
        let mut s = long64(&ram());
        s.seg[SegmentIndex::Gs as usize].base = 0x5000;
        s
    };
    for op in ops {
        let mut code = op.to_vec();
        code.push(HLT);
        let t = run_mode(&code, state(), true);
        let st = t.vcpu.stats();
        // As in `flag_tests::assert_inline`: a TLB miss adds a block holding only the HLT.
        assert_eq!(
            st.interpreted_insns, st.blocks_compiled,
            "{op:02x?} is not inline: {st:?}"
        );
    }
    let mut code = Vec::new();
    // Preset the data: mov rax, imm64; mov [0x6000], rax; mov [0x5100], rax (via gs); ...
    for (i, v) in [
        0x1111_2222_3333_4444u64,
        0x8765_4321_0fed_cba9,
        0x0123_4567_89ab_cdef,
    ]
    .iter()
    .enumerate()
    {
        code.extend_from_slice(&[0x48, 0xb8]);
        code.extend_from_slice(&v.to_le_bytes());
        let disp = 0x6000u32 + 0x10 * i as u32;
        code.extend_from_slice(&[0x48, 0x89, 0x04, 0x25]);
        code.extend_from_slice(&disp.to_le_bytes());
        code.extend_from_slice(&[0x48, 0x89, 0x04, 0x25]);
        code.extend_from_slice(&(disp - 0x6000 + 0x5100).to_le_bytes());
        code.extend_from_slice(&[0x48, 0x89, 0x04, 0x25]);
        code.extend_from_slice(&(disp + 8).to_le_bytes());
    }
    for op in ops {
        code.extend_from_slice(op);
    }
    code.push(HLT);
    let t = differential(&code, state(), 0);
    let at = |a: usize| u64::from_le_bytes(t.mem[a..a + 8].try_into().unwrap());
    assert_eq!(t.state.gpr[gpr::RBX], 0x1111_2222_3333_4444, "gs:[0x100]");
    assert_eq!(
        at(0x5110),
        0x8765_4321_0fed_cba9u64.wrapping_add(0x1111_2222_3333_4444),
        "gs add"
    );
    assert_eq!(t.state.gpr[gpr::RCX], 0x0fed_cba9, "addr32 load");
    assert_eq!(at(0x6020), t.state.gpr[gpr::RAX], "moffs64 store");
}

#[test]
fn fault_in_a_later_iteration_of_a_self_loop_sees_the_loop_registers() {
    // mov ebx, HOLE-16; xor esi, esi
    // L: mov eax, [ebx]; add ebx, 4; inc esi; jmp L
    // L..jmp is a self-looping block keeping EBX and ESI in SSA values around the loop; the
    // read faults in its fifth iteration, whose state must include the earlier iterations'.
    let mut code = vec![0xbb];
    code.extend_from_slice(&((HOLE - 16) as u32).to_le_bytes());
    code.extend_from_slice(&[0x31, 0xf6, 0x8b, 0x03, 0x83, 0xc3, 0x04, 0x46, 0xeb, 0xf8]);
    // (The fault frame, compared with the interpreter's by `paged_fault_runs`, is not at the
    // place the helper reads, since this code does not move ESP first.)
    let (st, _) = paged_fault_runs(&code);
    assert_eq!(st.cr2, HOLE);
    assert_eq!(st.gpr[gpr::RBX], HOLE);
    assert_eq!(st.gpr[gpr::RSI], 4);
    assert_eq!(st.rip, FAULT_HLT + 1);
}

#[test]
fn low_halves_of_64bit_results_read_as_32bit_registers() {
    // `Tx::zext` computes the low half of a 64-bit ADD, SUB, IMUL, shift, XOR, OR, AND result
    // read as a 32-bit register with a 32-bit operation (`Tx::narrow32`); a left shift by 32
    // or more must still give 0.
    //   mov rax, 0x123456789abcdef0 / mov rbx, 0xfedcba9876543219
    //   mov rcx, rax / add rcx, rbx / mov edx, ecx
    //   mov rcx, rax / sub rcx, rbx / mov esi, ecx
    //   mov rcx, rax / imul rcx, rbx / mov edi, ecx
    //   mov rcx, rax / shl rcx, 40 / mov r8d, ecx
    //   mov rcx, rax / shl rcx, 3 / mov r9d, ecx
    //   mov rcx, rax / xor rcx, rbx / mov r10d, ecx
    //   mov rcx, rax / or rcx, rbx / mov r11d, ecx
    //   mov rcx, rax / and rcx, rbx / mov r12d, ecx
    //   lea r13d, [rax + rbx*4 + 0x7fff0000]
    //   hlt
    let code = [
        0x48, 0xb8, 0xf0, 0xde, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12, 0x48, 0xbb, 0x19, 0x32, 0x54,
        0x76, 0x98, 0xba, 0xdc, 0xfe, 0x48, 0x89, 0xc1, 0x48, 0x01, 0xd9, 0x89, 0xca, 0x48, 0x89,
        0xc1, 0x48, 0x29, 0xd9, 0x89, 0xce, 0x48, 0x89, 0xc1, 0x48, 0x0f, 0xaf, 0xcb, 0x89, 0xcf,
        0x48, 0x89, 0xc1, 0x48, 0xc1, 0xe1, 0x28, 0x41, 0x89, 0xc8, 0x48, 0x89, 0xc1, 0x48, 0xc1,
        0xe1, 0x03, 0x41, 0x89, 0xc9, 0x48, 0x89, 0xc1, 0x48, 0x31, 0xd9, 0x41, 0x89, 0xca, 0x48,
        0x89, 0xc1, 0x48, 0x09, 0xd9, 0x41, 0x89, 0xcb, 0x48, 0x89, 0xc1, 0x48, 0x21, 0xd9, 0x41,
        0x89, 0xcc, 0x44, 0x8d, 0xac, 0x98, 0x00, 0x00, 0xff, 0x7f, HLT,
    ];
    let t = differential(&code, long64(&ram()), 0);
    let (a, b) = (0x1234_5678_9abc_def0u64, 0xfedc_ba98_7654_3219u64);
    let low = |v: u64| v & 0xffff_ffff;
    let g = &t.state.gpr;
    assert_eq!(g[gpr::RDX], low(a.wrapping_add(b)));
    assert_eq!(g[gpr::RSI], low(a.wrapping_sub(b)));
    assert_eq!(g[gpr::RDI], low(a.wrapping_mul(b)));
    assert_eq!(g[8], 0, "shl by 40");
    assert_eq!(g[9], low(a << 3));
    assert_eq!(g[10], low(a ^ b));
    assert_eq!(g[11], low(a | b));
    assert_eq!(g[12], low(a & b));
    assert_eq!(g[13], low(a.wrapping_add(b << 2).wrapping_add(0x7fff_0000)));
}
