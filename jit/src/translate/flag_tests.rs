//! Differential tests of the flag-heavy inline translations (ADC/SBB, SETcc, shifts and
//! rotates by an immediate or CL): every case runs translated and interpreter-only, and after
//! each case its results, RFLAGS (through PUSHFQ, which reads the stored lazy record) and all
//! sixteen conditions (through SETcc right after the instruction, which evaluates the pending
//! record inline) are stored in memory, so a wrong flag in any single case makes the compared
//! memory differ. The flags before each instruction come from a list of setups covering every
//! lazy kind, both in the same block (pending) and from the previous block (stored).

use vcpu::state::{gpr, rflags};
use vcpu::{CpuState, VmExit};

use super::tests::{differential, long64, ram, run_mode, Outcome, CODE, HLT};

/// Where the per-case slots start (the code lives below, from `CODE`).
const OUT: u64 = 0x5000;
/// End of the slot area (the stack is at 0xa000).
const OUT_END: u64 = 0x9800;
/// Slot: rax, [rdi+8] (the memory operand), rbx, rflags, then 16 condition bytes.
const SLOT: u64 = 48;
/// Code bytes per program (the cases, HLT and the store subroutine must end below `OUT`).
const CODE_BUDGET: usize = (OUT - CODE) as usize - 64;

/// One case: registers, a flag setup, optionally a block boundary, the instruction(s) tested.
#[derive(Debug, Clone)]
struct Case {
    rax: u64,
    rbx: u64,
    rcx: u64,
    setup: &'static [u8],
    /// A `jmp +0` between setup and op: the op sees flags stored by the previous block.
    split: bool,
    op: Vec<u8>,
}

/// Flag setups, one per lazy kind (and a few values of each): they use only r12.
const SETUPS: [&[u8]; 16] = [
    &[0x48, 0x39, 0xd8], // cmp rax, rbx
    &[0x48, 0x39, 0xc3], // cmp rbx, rax
    &[0xf9],             // stc (interpreted: materialised flags)
    &[0xf8],             // clc
    // mov r12, 0x8000000000000001; shl r12, 1 (CF = 1)
    &[0x49, 0xbc, 1, 0, 0, 0, 0, 0, 0, 0x80, 0x49, 0xd1, 0xe4],
    // mov r12, 2; shr r12, 1 (CF = 0)
    &[0x49, 0xbc, 2, 0, 0, 0, 0, 0, 0, 0, 0x49, 0xd1, 0xec],
    // mov r12d, -1; add r12d, 1 (CF = ZF = 1)
    &[0x41, 0xbc, 0xff, 0xff, 0xff, 0xff, 0x41, 0x83, 0xc4, 0x01],
    // mov r12d, 0xf; stc; inc r12 (CF kept, AF = 1)
    &[0x41, 0xbc, 0x0f, 0, 0, 0, 0xf9, 0x49, 0xff, 0xc4],
    // mov r12d, 0x10; dec r12d (AF = 1, PF = 1)
    &[0x41, 0xbc, 0x10, 0, 0, 0, 0x41, 0xff, 0xcc],
    // mov r12, 2^33; imul r12, r12, 2^30 (CF = OF = 1)
    &[
        0x49, 0xbc, 0, 0, 0, 0, 2, 0, 0, 0, 0x4d, 0x69, 0xe4, 0, 0, 0, 0x40,
    ],
    &[0xf9, 0x49, 0x83, 0xd4, 0x00], // stc; adc r12, 0
    &[0xf9, 0x45, 0x19, 0xe4],       // stc; sbb r12d, r12d (-1, CF = 1)
    // mov r12, 0x8000000000000001; rol r12, 1 (eager flags)
    &[0x49, 0xbc, 1, 0, 0, 0, 0, 0, 0, 0x80, 0x49, 0xd1, 0xc4],
    &[0x48, 0x85, 0xc0], // test rax, rax
    &[0x49, 0xf7, 0xdc], // neg r12
    // mov r12b, 0x81; sar r12b, cl (CL may be 0: flags of the mov's predecessor)
    &[0x41, 0xb4, 0x81, 0x41, 0xd2, 0xfc],
];

/// `mov [rdi], rax; mov [rdi+16], rbx; pushfq; pop rcx; mov [rdi+24], rcx; add rdi, 48; ret`
const STORE_SUB: [u8; 20] = [
    0x48, 0x89, 0x07, 0x48, 0x89, 0x5f, 0x10, 0x9c, 0x59, 0x48, 0x89, 0x4f, 0x18, 0x48, 0x83, 0xc7,
    0x30, 0xc3, 0x90, 0x90,
];

fn case_code(c: &Case, code: &mut Vec<u8>, calls: &mut Vec<usize>) {
    for (opcode, v) in [(0xb8u8, c.rax), (0xbb, c.rbx), (0xb9, c.rcx)] {
        code.extend_from_slice(&[0x48, opcode]);
        code.extend_from_slice(&v.to_le_bytes());
    }
    code.extend_from_slice(&[0x48, 0x89, 0x5f, 0x08]); // mov [rdi+8], rbx
    code.extend_from_slice(c.setup);
    if c.split {
        code.extend_from_slice(&[0xeb, 0x00]);
    }
    code.extend_from_slice(&c.op);
    for cc in 0..16u8 {
        code.extend_from_slice(&[0x0f, 0x90 | cc, 0x47, 32 + cc]); // setcc [rdi+32+cc]
    }
    code.push(0xe8);
    calls.push(code.len());
    code.extend_from_slice(&[0; 4]);
}

/// The slots of one run.
struct Slot {
    rax: u64,
    mem: u64,
    rbx: u64,
    rflags: u64,
    conds: [u8; 16],
}

fn slot(t: &Outcome, i: usize) -> Slot {
    let at = OUT as usize + i * SLOT as usize;
    let q = |o: usize| u64::from_le_bytes(t.mem[at + o..at + o + 8].try_into().unwrap());
    Slot {
        rax: q(0),
        mem: q(8),
        rbx: q(16),
        rflags: q(24),
        conds: t.mem[at + 32..at + 48].try_into().unwrap(),
    }
}

/// Run `cases` (in as many programs as the code and slot areas need) translated and
/// interpreted, asserting they agree; returns each case's slot from the translated runs.
fn run_cases(cases: &[Case]) -> Vec<Slot> {
    let max_slots = ((OUT_END - OUT) / SLOT) as usize;
    let mut slots = Vec::with_capacity(cases.len());
    let mut start = 0;
    while start < cases.len() {
        // mov edi, OUT
        let mut code = vec![0xbf];
        code.extend_from_slice(&(OUT as u32).to_le_bytes());
        let mut calls = Vec::new();
        let mut end = start;
        while end < cases.len() && end - start < max_slots {
            let before = code.len();
            case_code(&cases[end], &mut code, &mut calls);
            if code.len() > CODE_BUDGET {
                code.truncate(before);
                calls.pop();
                break;
            }
            end += 1;
        }
        assert!(end > start, "a case does not fit in a program");
        code.push(HLT);
        let sub = code.len();
        code.extend_from_slice(&STORE_SUB);
        for &at in &calls {
            let rel = (sub as i64 - (at as i64 + 4)) as i32;
            code[at..at + 4].copy_from_slice(&rel.to_le_bytes());
        }
        let t = std::panic::catch_unwind(|| differential(&code, long64(&ram()), 0)).unwrap_or_else(
            |_| panic!("cases {start}..{end} disagree: {:02x?}", &cases[start..end]),
        );
        assert_eq!(
            t.exit,
            VmExit::Halted {
                interrupts_enabled: false
            }
        );
        slots.extend((0..end - start).map(|i| slot(&t, i)));
        start = end;
    }
    slots
}

/// Assert that `op` (64-bit mode) is translated inline: a block of `op; hlt` sends only the
/// HLT to the interpreter.
fn assert_inline(op: &[u8]) {
    let mut code = op.to_vec();
    code.push(HLT);
    let mut s: CpuState = long64(&ram());
    s.gpr[gpr::RDI] = OUT;
    s.gpr[gpr::RCX] = 3;
    // A memory operand at [rsi] reads the (non-zero) code bytes; RDX (the reset signature)
    // cleared so that DIV takes its inline path and the block ends at the HLT.
    s.gpr[gpr::RSI] = CODE;
    s.gpr[gpr::RDX] = 0;
    let t = run_mode(&code, s, true);
    let st = t.vcpu.stats();
    // A first access misses the TLB: the interpreter runs the instruction and a second block
    // (the HLT alone) follows. Either way each compiled block interprets only its HLT.
    assert_eq!(
        st.interpreted_insns, st.blocks_compiled,
        "{op:02x?} is not inline: {st:?}"
    );
}

const PAIRS: [(u64, u64); 4] = [
    (u64::MAX, 0),
    (0x8000_0000_8000_8080, 0x7fff_ffff_7fff_7f7f),
    (0x1234_5678_9abc_def0, 0x0fed_cba9_8765_4321),
    (0, 0),
];

/// ADC and SBB forms: registers of every size (AH too), memory either side, immediates.
fn adc_sbb_ops() -> Vec<Vec<u8>> {
    let mut ops = Vec::new();
    // (r/m8, r8), (r/m, r), (r, r/m), (AL/eAX, imm) base opcodes and the /digit of 80/83.
    for (base, digit) in [(0x10u8, 2u8), (0x18, 3)] {
        let rm = base + 1;
        let r_rm = base + 3;
        let acc_imm = base + 5;
        ops.extend([
            vec![base, 0xd8],                                // al, bl
            vec![base, 0xdc],                                // ah, bl
            vec![0x66, rm, 0xd8],                            // ax, bx
            vec![rm, 0xd8],                                  // eax, ebx
            vec![0x48, rm, 0xd8],                            // rax, rbx
            vec![0x48, 0x83, 0xc0 | digit << 3, 0xfd],       // rax, -3
            vec![acc_imm, 0xff, 0xff, 0xff, 0x7f],           // eax, 0x7fffffff
            vec![0x80, 0xc3 | digit << 3, 0x80],             // bl, 0x80
            vec![base, 0x5f, 0x08],                          // [rdi+8], bl
            vec![0x48, rm, 0x47, 0x08],                      // [rdi+8], rax
            vec![0x48, r_rm, 0x47, 0x08],                    // rax, [rdi+8]
            vec![0x66, 0x83, 0x47 | digit << 3, 0x08, 0x05], // word [rdi+8], 5
            vec![rm, 0xc0],                                  // eax, eax
            vec![0x48, rm, 0xd8, 0x48, rm, 0xc3],            // rax, rbx; rbx, rax (a chain)
        ]);
    }
    ops
}

#[test]
fn adc_and_sbb_agree_with_the_interpreter_for_every_form_and_carry_source() {
    let ops = adc_sbb_ops();
    for op in &ops {
        assert_inline(op);
    }
    let mut cases = Vec::new();
    for op in &ops {
        for (p, &(a, b)) in PAIRS.iter().enumerate() {
            for (i, setup) in SETUPS.iter().enumerate() {
                cases.push(Case {
                    rax: a,
                    rbx: b,
                    rcx: 0,
                    setup,
                    split: (i + p) % 2 == 1,
                    op: op.clone(),
                });
            }
        }
    }
    let slots = run_cases(&cases);
    // Spot checks against the SDM on the host: STC/CLC then `adc rax, rbx` / `sbb rax, rbx`.
    for (c, s) in cases.iter().zip(&slots) {
        let carry_in = match c.setup {
            [0xf9] => 1u64,
            [0xf8] => 0,
            _ => continue,
        };
        let (a, b) = (c.rax, c.rbx);
        let (r, cf, of) = match c.op.as_slice() {
            [0x48, 0x11, 0xd8] => {
                let wide = u128::from(a) + u128::from(b) + u128::from(carry_in);
                let r = wide as u64;
                (r, wide >> 64 != 0, (!(a ^ b) & (a ^ r)) >> 63 != 0)
            }
            [0x48, 0x19, 0xd8] => {
                let r = a.wrapping_sub(b).wrapping_sub(carry_in);
                let cf = u128::from(a) < u128::from(b) + u128::from(carry_in);
                (r, cf, ((a ^ b) & (a ^ r)) >> 63 != 0)
            }
            _ => continue,
        };
        assert_eq!(s.rax, r, "{c:x?}");
        assert_eq!(s.rflags & rflags::CF != 0, cf, "CF {c:x?}");
        assert_eq!(s.rflags & rflags::OF != 0, of, "OF {c:x?}");
        assert_eq!(s.rflags & rflags::ZF != 0, r == 0, "ZF {c:x?}");
        assert_eq!(s.conds[2], u8::from(cf), "setb {c:x?}");
        assert_eq!(s.conds[0], u8::from(of), "seto {c:x?}");
    }
}

#[test]
fn setcc_into_registers_and_memory_agrees_with_the_interpreter() {
    let mut cases = Vec::new();
    for cc in 0..16u8 {
        let set = 0x90 | cc;
        // setcc al; setcc ah; setcc [rdi+8]; setcc r11b; mov bl, r11b
        let op = vec![
            0x0f, set, 0xc0, 0x0f, set, 0xc4, 0x0f, set, 0x47, 0x08, 0x41, 0x0f, set, 0xc3, 0x44,
            0x88, 0xdb,
        ];
        assert_inline(&op);
        for &(a, b) in &PAIRS[1..3] {
            for (i, setup) in SETUPS.iter().enumerate() {
                cases.push(Case {
                    rax: a,
                    rbx: b,
                    rcx: u64::from(cc),
                    setup,
                    split: i % 2 == usize::from(cc % 2),
                    op: op.clone(),
                });
            }
        }
    }
    let slots = run_cases(&cases);
    // `cmp rax, rbx; setcc al`: AL is the condition on the comparison of the two values.
    for (c, s) in cases.iter().zip(&slots) {
        if c.setup != SETUPS[0] {
            continue;
        }
        let cc = c.rcx as usize;
        let (a, b) = (c.rax, c.rbx);
        let want = [
            ((a as i64).checked_sub(b as i64)).is_none(),
            a < b,
            a == b,
            a <= b,
            (a.wrapping_sub(b) as i64) < 0,
            (a.wrapping_sub(b) as u8).count_ones().is_multiple_of(2),
            (a as i64) < (b as i64),
            (a as i64) <= (b as i64),
        ][cc / 2]
            ^ (cc % 2 == 1);
        assert_eq!(s.rax & 0xff, u64::from(want), "cc {cc:#x} {c:x?}");
        assert_eq!(s.rax >> 8 & 0xff, u64::from(want), "ah, cc {cc:#x}");
        assert_eq!(s.mem & 0xff, u64::from(want), "mem, cc {cc:#x}");
        assert_eq!(s.rbx & 0xff, u64::from(want), "r11b, cc {cc:#x}");
        assert_eq!(s.conds[cc], u8::from(want), "probe, cc {cc:#x}");
    }
}

/// Destinations: (prefix, is 8-bit, modrm rm bits or memory).
#[derive(Debug, Clone, Copy)]
enum Dest {
    Reg {
        prefix: Option<u8>,
        byte: bool,
        rm: u8,
    },
    Mem {
        prefix: Option<u8>,
        byte: bool,
    },
}

const DESTS: [Dest; 8] = [
    Dest::Reg {
        prefix: None,
        byte: true,
        rm: 0,
    }, // al
    Dest::Reg {
        prefix: None,
        byte: true,
        rm: 4,
    }, // ah
    Dest::Reg {
        prefix: Some(0x66),
        byte: false,
        rm: 0,
    }, // ax
    Dest::Reg {
        prefix: None,
        byte: false,
        rm: 0,
    }, // eax
    Dest::Reg {
        prefix: Some(0x48),
        byte: false,
        rm: 0,
    }, // rax
    Dest::Mem {
        prefix: None,
        byte: true,
    }, // byte [rdi+8]
    Dest::Mem {
        prefix: Some(0x66),
        byte: false,
    }, // word [rdi+8]
    Dest::Mem {
        prefix: Some(0x48),
        byte: false,
    }, // qword [rdi+8]
];

/// Count forms.
#[derive(Debug, Clone, Copy)]
enum Count {
    Cl,
    One,
    Imm(u8),
}

fn shift_op(digit: u8, dest: Dest, count: Count) -> Vec<u8> {
    let (prefix, byte) = match dest {
        Dest::Reg { prefix, byte, .. } | Dest::Mem { prefix, byte } => (prefix, byte),
    };
    let mut op: Vec<u8> = prefix.into_iter().collect();
    let (opcode, imm) = match count {
        Count::Cl => (0xd2, None),
        Count::One => (0xd0, None),
        Count::Imm(n) => (0xc0, Some(n)),
    };
    op.push(opcode + u8::from(!byte));
    match dest {
        Dest::Reg { rm, .. } => op.push(0xc0 | digit << 3 | rm),
        Dest::Mem { .. } => op.extend_from_slice(&[0x47 | digit << 3, 0x08]),
    }
    op.extend(imm);
    op
}

const CL_COUNTS: [u64; 14] = [0, 1, 2, 7, 8, 9, 16, 17, 31, 32, 33, 63, 64, 0x141];
const IMM_COUNTS: [u8; 11] = [1, 3, 7, 8, 9, 16, 17, 31, 32, 33, 63];
const SHIFT_VALUES: [u64; 2] = [0x8123_4567_89ab_cdef, 0x7fed_cba9_7765_4321];

fn shift_cases(digits: &[u8]) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut k = 0usize;
    let mut push = |op: Vec<u8>, rcx: u64, cases: &mut Vec<Case>| {
        for v in SHIFT_VALUES {
            // Setups and block boundaries in turn (16 setups, 2 splits: every pairing over
            // 32 consecutive cases).
            let setup = SETUPS[k % SETUPS.len()];
            let split = (k / SETUPS.len()) % 2 == 1;
            k += 1;
            cases.push(Case {
                rax: v,
                rbx: v.rotate_left(17),
                rcx,
                setup,
                split,
                op: op.clone(),
            });
        }
    };
    for &digit in digits {
        for dest in DESTS {
            for n in CL_COUNTS {
                push(shift_op(digit, dest, Count::Cl), n, &mut cases);
            }
            for n in IMM_COUNTS {
                push(shift_op(digit, dest, Count::Imm(n)), 0, &mut cases);
            }
            push(shift_op(digit, dest, Count::One), 0, &mut cases);
        }
    }
    cases
}

#[test]
fn shifts_by_cl_and_immediate_agree_with_the_interpreter() {
    for digit in [4, 5, 7] {
        for dest in DESTS {
            for count in [Count::Cl, Count::One, Count::Imm(5)] {
                assert_inline(&shift_op(digit, dest, count));
            }
        }
    }
    let cases = shift_cases(&[4, 5, 7]);
    let slots = run_cases(&cases);
    // 64-bit register forms checked on the host: result and CF for non-zero counts; a zero
    // count keeps the setup's flags (those of the same run's interpreter, already compared).
    for (c, s) in cases.iter().zip(&slots) {
        let [0x48, opcode, modrm, rest @ ..] = c.op.as_slice() else {
            continue;
        };
        if *modrm & 0xc7 != 0xc0 {
            continue;
        }
        let n = match (opcode, rest) {
            (0xd3, []) => c.rcx & 0x3f,
            (0xd1, []) => 1,
            (0xc1, [n]) => u64::from(*n) & 0x3f,
            _ => continue,
        };
        if n == 0 {
            assert_eq!(s.rax, c.rax, "count 0 keeps the value");
            continue;
        }
        let a = c.rax;
        let (r, cf) = match modrm >> 3 & 7 {
            4 => (a << n, a >> (64 - n) & 1),
            5 => (a >> n, a >> (n - 1) & 1),
            _ => (((a as i64) >> n) as u64, ((a as i64) >> (n - 1)) as u64 & 1),
        };
        assert_eq!(s.rax, r, "{c:x?}");
        assert_eq!(s.rflags & rflags::CF, cf, "CF {c:x?}");
        assert_eq!(u64::from(s.conds[2]), cf, "setb {c:x?}");
        assert_eq!(s.rflags & rflags::ZF != 0, r == 0, "ZF {c:x?}");
    }
}

#[test]
fn rotates_by_cl_and_immediate_agree_with_the_interpreter() {
    for digit in [0, 1] {
        for dest in DESTS {
            for count in [Count::Cl, Count::One, Count::Imm(5)] {
                assert_inline(&shift_op(digit, dest, count));
            }
        }
    }
    let cases = shift_cases(&[0, 1]);
    let slots = run_cases(&cases);
    // 64-bit register rotates on the host: result, CF, OF; SF/ZF/AF/PF are the setup's.
    for (c, s) in cases.iter().zip(&slots) {
        let [0x48, opcode, modrm, rest @ ..] = c.op.as_slice() else {
            continue;
        };
        if *modrm & 0xc7 != 0xc0 {
            continue;
        }
        let n = match (opcode, rest) {
            (0xd3, []) => c.rcx & 0x3f,
            (0xd1, []) => 1,
            (0xc1, [n]) => u64::from(*n) & 0x3f,
            _ => continue,
        };
        if n == 0 {
            continue;
        }
        let a = c.rax;
        let (r, cf, of) = if modrm >> 3 & 7 == 0 {
            let r = a.rotate_left(n as u32);
            (r, r & 1, (r >> 63) ^ (r & 1))
        } else {
            let r = a.rotate_right(n as u32);
            (r, r >> 63, (r >> 63) ^ (r >> 62 & 1))
        };
        assert_eq!(s.rax, r, "{c:x?}");
        assert_eq!(s.rflags & rflags::CF, cf, "CF {c:x?}");
        assert_eq!(s.rflags >> 11 & 1, of, "OF {c:x?}");
        assert_eq!(u64::from(s.conds[0]), of, "seto {c:x?}");
    }
}

#[test]
fn shift_by_cl_of_zero_in_32bit_code_keeps_the_upper_half_and_flags() {
    // Outside 64-bit mode a count of 0 writes nothing; in 64-bit mode `shl eax, cl` with
    // CL = 0 still clears RAX[63:32] (the interpreter's rule, from QEMU). Both via the
    // differential: flat 32-bit code `cmp eax, ebx; shl eax, cl; setb dl; jmp +0; rol eax,
    // cl; setc dh; hlt` with CL = 0 and CL = 32 (masked to 0 too).
    for cl in [0u64, 32] {
        let code = [
            0x39, 0xd8, 0xd3, 0xe0, 0x0f, 0x92, 0xc2, 0xeb, 0x00, 0xd3, 0xc0, 0x0f, 0x92, 0xc6, HLT,
        ];
        let mut s = super::tests::flat32();
        s.gpr[gpr::RAX] = 1;
        s.gpr[gpr::RBX] = 2;
        s.gpr[gpr::RCX] = cl;
        let t = differential(&code, s, 0);
        assert_eq!(t.state.gpr[gpr::RAX], 1);
        assert_eq!(t.state.gpr[gpr::RDX] & 0xffff, 0x0101, "CF of the cmp kept");
    }
    let mut code = vec![0x48, 0xb8];
    code.extend_from_slice(&0x1234_5678_9abc_def0u64.to_le_bytes()); // mov rax, imm64
    code.extend_from_slice(&[0xd3, 0xe0, 0x48, 0x89, 0xc3, 0xd3, 0xc0, HLT]); // shl eax, cl; mov rbx, rax; rol eax, cl
    let mut s = long64(&ram());
    s.gpr[gpr::RCX] = 0;
    let t = differential(&code, s, 0);
    assert_eq!(t.state.gpr[gpr::RBX], 0x9abc_def0, "upper half cleared");
    assert_eq!(t.state.gpr[gpr::RAX], 0x9abc_def0);
}

/// Run `body` for each (rax, rdx, rcx) triple in 64-bit mode, storing RAX, RDX and RCX after
/// each at [rdi] and advancing; returns the translated outcome after the differential check.
fn accumulator_program(triples: &[(u64, u64, u64)], body: &[u8]) -> Outcome {
    let mut code = vec![0xbf];
    code.extend_from_slice(&(OUT as u32).to_le_bytes()); // mov edi, OUT
    code.extend_from_slice(&[0xbe]);
    code.extend_from_slice(&((OUT_END - 8) as u32).to_le_bytes()); // mov esi, OUT_END - 8
    for &(rax, rdx, rcx) in triples {
        for (opcode, v) in [(0xb8u8, rax), (0xba, rdx), (0xb9, rcx)] {
            code.extend_from_slice(&[0x48, opcode]);
            code.extend_from_slice(&v.to_le_bytes());
        }
        code.extend_from_slice(&[0x48, 0x89, 0x0e]); // mov [rsi], rcx
        code.extend_from_slice(body);
        // mov [rdi], rax; mov [rdi+8], rdx; mov [rdi+16], rcx; add rdi, 24
        code.extend_from_slice(&[0x48, 0x89, 0x07, 0x48, 0x89, 0x57, 0x08, 0x48, 0x89, 0x4f]);
        code.extend_from_slice(&[0x10, 0x48, 0x83, 0xc7, 0x18]);
    }
    code.push(HLT);
    differential(&code, long64(&ram()), 0)
}

#[test]
fn div_agrees_with_the_interpreter_on_its_fast_and_slow_paths() {
    let forms: [&[u8]; 4] = [
        &[0x48, 0xf7, 0xf1], // div rcx
        &[0xf7, 0xf1],       // div ecx
        &[0x48, 0xf7, 0x36], // div qword [rsi]
        &[0xf7, 0x36],       // div dword [rsi]
    ];
    for f in forms {
        assert_inline(f);
    }
    // (rax, rdx, divisor): RDX = 0 (inline), RDX != 0 with a fitting quotient (the cold
    // interpreter path for 64-bit, inline for 32-bit when EDX < divisor), upper halves that
    // 32-bit DIV ignores.
    let triples = [
        (100, 0, 7),
        (u64::MAX, 0, 1),
        (u64::MAX, 0, u64::MAX),
        (0x1234_5678_9abc_def0, 0, 0x1_0000_0001),
        (0, 5, 7),
        (0xffff_ffff, 6, 7),
        (
            0xaaaa_aaaa_0000_0010,
            0xbbbb_bbbb_0000_0002,
            0xcccc_cccc_0000_0003,
        ),
    ];
    for f in forms {
        let t = accumulator_program(&triples, f);
        let at = |i: usize| {
            let a = OUT as usize + 8 * i;
            u64::from_le_bytes(t.mem[a..a + 8].try_into().unwrap())
        };
        if f[0] == 0x48 {
            assert_eq!((at(0), at(1)), (14, 2), "{f:02x?}: 100 / 7");
            assert_eq!((at(3), at(4)), (u64::MAX, 0), "{f:02x?}: max / 1");
        } else {
            assert_eq!((at(0), at(1)), (14, 2), "{f:02x?}: 100 / 7");
            // 6:0xffffffff / 7 = (7 * 2^32 - 1) / 7 = 0xffffffff rest 6
            assert_eq!((at(15), at(16)), (0xffff_ffff, 6), "{f:02x?}");
        }
    }
    // Divide errors (#DE with no IDT: both runs end the same way) and the overflowing
    // 32-bit quotient.
    for (rax, rdx, rcx, form) in [
        (1u64, 0u64, 0u64, forms[0]),
        (1, 0, 0, forms[1]),
        (0, 7, 7, forms[1]),
        (0, 1u64 << 32, 1, forms[1]),
    ] {
        accumulator_program(&[(rax, rdx, rcx)], form);
    }
}

#[test]
fn accumulator_sign_extension_and_bswap_agree_with_the_interpreter() {
    let forms: [&[u8]; 8] = [
        &[0x66, 0x98],       // cbw
        &[0x98],             // cwde
        &[0x48, 0x98],       // cdqe
        &[0x66, 0x99],       // cwd
        &[0x99],             // cdq
        &[0x48, 0x99],       // cqo
        &[0x0f, 0xc9],       // bswap ecx
        &[0x48, 0x0f, 0xc9], // bswap rcx
    ];
    for f in forms {
        assert_inline(f);
    }
    let triples = [
        (0x1234_5678_9abc_de80, u64::MAX, 0x0102_0304_0506_0708),
        (0xfedc_ba98_7654_3210, 0x5555, 0x8000_0000_0000_00ff),
        (0x0000_0000_8000_7f7f, 0x1111_1111_1111_1111, 0x1234),
    ];
    for f in forms {
        let t = accumulator_program(&triples, f);
        let at = |i: usize| {
            let a = OUT as usize + 8 * i;
            u64::from_le_bytes(t.mem[a..a + 8].try_into().unwrap())
        };
        match f {
            [0x48, 0x98] => assert_eq!(at(0), 0xffff_ffff_9abc_de80, "cdqe"),
            [0x98] => assert_eq!(at(0), 0xffff_de80, "cwde"),
            [0x66, 0x98] => assert_eq!(at(0), 0x1234_5678_9abc_ff80, "cbw"),
            [0x99] => assert_eq!((at(1), at(4)), (0xffff_ffff, 0), "cdq"),
            [0x48, 0x99] => assert_eq!((at(1), at(4)), (0, u64::MAX), "cqo"),
            [0x66, 0x99] => assert_eq!((at(1), at(4)), (u64::MAX, 0), "cwd"),
            [0x0f, 0xc9] => assert_eq!(at(2), 0x0807_0605, "bswap ecx"),
            _ if f == [0x48, 0x0f, 0xc9] => assert_eq!(at(2), 0x0807_0605_0403_0201),
            _ => {}
        }
    }
}
