//! Regions (see `crate::region`): loops over several basic blocks translated into one function
//! must agree with the interpreter, including at faults, budgets, kicks and writes to their own
//! code. The blocks get hot after a few runs (a threshold above 0), so that a hot block's
//! successors are in the block table and join its region. Programs are assembled with nasm
//! (`bits 32`, `org 0x1000`); the source is beside each byte string.

use std::time::Duration;

use vcpu::state::gpr;
use vcpu::{Vcpu, VmExit};

use super::tests::{
    buses, differential_at, flat32, long64, paged_fault_runs_at, ram, random_insn,
    randomize_registers, Rng, FAULT_HLT, HLT, HOLE,
};
use crate::dispatch::{JitConfig, JitVcpu};

const HALTED: VmExit = VmExit::Halted {
    interrupts_enabled: false,
};

#[test]
fn two_block_loop_runs_inside_one_function() {
    //   mov ecx, 1000
    //   xor eax, eax
    // L: dec ecx
    //   jz out
    //   add eax, ecx
    //   jmp L
    // out: hlt
    let code = [
        0xb9, 0xe8, 0x03, 0x00, 0x00, 0x31, 0xc0, 0x49, 0x74, 0x04, 0x01, 0xc8, 0xeb, 0xf9, HLT,
    ];
    let t = differential_at(&code, flat32(), 0, 8);
    assert_eq!(t.exit, HALTED);
    assert_eq!(t.state.gpr[gpr::RAX], (1..1000).sum::<u64>());
    let st = t.vcpu.stats();
    // L's region holds the ADD block, which jumps back to L inside the function.
    assert!(st.region_blocks >= 1, "{st:?}");
    assert!(st.self_loops >= 1, "{st:?}");
}

#[test]
fn fault_in_a_later_iteration_of_a_region_loop_is_precise() {
    //   sub esp, 8
    //   mov ebx, HOLE-64
    //   xor esi, esi
    // L: add ebx, 4
    //   jmp M
    // M: cmp esi, 100
    //   mov eax, [ebx]        ; faults once EBX reaches HOLE (16th iteration)
    //   inc esi
    //   jmp L
    let code = [
        0x83, 0xec, 0x08, 0xbb, 0xc0, 0xff, 0x04, 0x00, 0x31, 0xf6, 0x83, 0xc3, 0x04, 0xeb, 0x00,
        0x83, 0xfe, 0x64, 0x8b, 0x03, 0x46, 0xeb, 0xf3,
    ];
    assert_eq!(HOLE, 0x50000, "the code embeds HOLE-64");
    // `paged_fault_runs_at` compares the state and the fault frame (error code, EIP, CS,
    // EFLAGS with the flags of the CMP before the read) with the interpreter's.
    let (st, stack, stats) = paged_fault_runs_at(&code, 4);
    assert!(stats.region_blocks >= 1, "{stats:?}");
    assert_eq!(st.cr2, HOLE);
    assert_eq!(st.gpr[gpr::RBX], HOLE);
    assert_eq!(st.gpr[gpr::RSI], 15);
    assert_eq!(st.rip, FAULT_HLT + 1);
    assert_eq!(&stack[4..8], &0x1012u32.to_le_bytes(), "EIP of the read");
}

#[test]
fn flags_set_in_one_region_block_are_consumed_in_the_next() {
    //   mov ecx, 300
    //   xor eax, eax / xor edx, edx / xor edi, edi / xor esi, esi
    // L: mov ebx, ecx
    //   and ebx, 7
    //   cmp ebx, 3
    //   jmp M
    // M: adc eax, 0           ; CF of the CMP, across an edge
    //   setc dl
    //   add edi, edx
    //   mov ebx, ecx
    //   shr ebx, 1
    //   jmp N
    // N: sbb edi, 0           ; CF of the shift
    //   mov ebx, ecx
    //   rol ebx, 3
    //   jmp P
    // P: setc dl              ; CF of the rotate (flags computed eagerly)
    //   add edi, edx
    //   cmovb si, cx          ; CF of the ADD
    //   mov ebx, ecx
    //   sub ebx, 150
    //   jmp Q
    // Q: sete dl              ; ZF, SF, SF^OF of the SUB
    //   movzx ebp, dl
    //   sets dl
    //   lea ebp, [ebp+edx*2]
    //   setl dl
    //   lea ebp, [ebp+edx*4]
    //   add edi, ebp
    //   setbe dl              ; CF/ZF of the ADD
    //   add esi, edx
    //   dec ecx
    //   jnz L
    //   hlt
    let code = [
        0xb9, 0x2c, 0x01, 0x00, 0x00, 0x31, 0xc0, 0x31, 0xd2, 0x31, 0xff, 0x31, 0xf6, 0x89, 0xcb,
        0x83, 0xe3, 0x07, 0x83, 0xfb, 0x03, 0xeb, 0x00, 0x83, 0xd0, 0x00, 0x0f, 0x92, 0xc2, 0x01,
        0xd7, 0x89, 0xcb, 0xd1, 0xeb, 0xeb, 0x00, 0x83, 0xdf, 0x00, 0x89, 0xcb, 0xc1, 0xc3, 0x03,
        0xeb, 0x00, 0x0f, 0x92, 0xc2, 0x01, 0xd7, 0x66, 0x0f, 0x42, 0xf1, 0x89, 0xcb, 0x81, 0xeb,
        0x96, 0x00, 0x00, 0x00, 0xeb, 0x00, 0x0f, 0x94, 0xc2, 0x0f, 0xb6, 0xea, 0x0f, 0x98, 0xc2,
        0x8d, 0x6c, 0x55, 0x00, 0x0f, 0x9c, 0xc2, 0x8d, 0x6c, 0x95, 0x00, 0x01, 0xef, 0x0f, 0x96,
        0xc2, 0x01, 0xd6, 0x49, 0x75, 0xad, HLT,
    ];
    let t = differential_at(&code, flat32(), 0, 8);
    assert_eq!(t.exit, HALTED);
    // ADC adds CF = (ecx & 7) < 3 for ecx = 300..1.
    let carries = (1..=300u64).filter(|c| c & 7 < 3).count() as u64;
    assert_eq!(t.state.gpr[gpr::RAX], carries);
    let st = t.vcpu.stats();
    assert!(st.region_blocks >= 3, "{st:?}");
}

/// `L: inc eax; jmp M; M: inc ebx; jmp L` at 0x1000 (two blocks looping forever), hot after 4
/// runs.
fn endless_two_block_loop() -> JitVcpu {
    let mem = ram();
    mem.write_host(0x1000, &[0x40, 0xeb, 0x00, 0x43, 0xeb, 0xfa])
        .unwrap();
    let config = JitConfig {
        hot_threshold: 4,
        ..JitConfig::default()
    };
    JitVcpu::with_config(mem, flat32(), config).unwrap()
}

/// The state of [`endless_two_block_loop`] where it stopped is one it passes through: two
/// instructions per block run, the ip at a block start, EAX one ahead of EBX at most.
fn assert_consistent(v: &mut JitVcpu) {
    let s = v.state().unwrap();
    let (a, b) = (s.gpr[gpr::RAX], s.gpr[gpr::RBX]);
    assert_eq!(v.instructions(), 2 * (a + b), "eax {a} ebx {b}");
    match s.rip {
        0x1000 => assert_eq!(a, b),
        0x1003 => assert_eq!(a, b + 1),
        ip => panic!("stopped at {ip:#x}"),
    }
}

#[test]
fn budgets_and_kicks_stop_a_region_loop_at_a_block_boundary() {
    let mut v = endless_two_block_loop();
    let mut b = buses();
    v.set_instruction_budget(Some(100_000));
    assert_eq!(v.run(&mut b).unwrap(), VmExit::BudgetSpent);
    // The back edge checks the limit once per iteration (two blocks, four instructions).
    assert!((100_000..100_004).contains(&v.instructions()));
    assert_consistent(&mut v);
    let st = v.stats();
    assert!(st.region_blocks >= 1 && st.self_loops >= 1, "{st:?}");

    // A kick from another thread while the loop runs without a budget.
    v.set_instruction_budget(None);
    let kicker = v.kicker();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        kicker.kick();
    });
    assert_eq!(v.run(&mut b).unwrap(), VmExit::Kicked);
    t.join().unwrap();
    assert!(v.instructions() > 100_004);
    assert_consistent(&mut v);

    // And it continues from there.
    let before = v.instructions();
    v.set_instruction_budget(Some(1000));
    assert_eq!(v.run(&mut b).unwrap(), VmExit::BudgetSpent);
    assert!(v.instructions() >= before + 1000);
    assert_consistent(&mut v);
}

#[test]
fn region_writing_into_its_own_code_leaves_and_sees_the_new_code() {
    //   mov ecx, 100
    //   xor eax, eax
    // L: add eax, strict byte 1   ; the immediate at L+2 = 0x1009
    //   jmp M
    // M: mov edi, 0x8000
    //   mov ebx, L+2
    //   cmp ecx, 50
    //   cmovb edi, ebx            ; below 50, the store goes into L's immediate
    //   mov byte [edi], 3
    //   dec ecx
    //   jnz L
    //   hlt
    let code = [
        0xb9, 0x64, 0x00, 0x00, 0x00, 0x31, 0xc0, 0x83, 0xc0, 0x01, 0xeb, 0x00, 0xbf, 0x00, 0x80,
        0x00, 0x00, 0xbb, 0x09, 0x10, 0x00, 0x00, 0x83, 0xf9, 0x32, 0x0f, 0x42, 0xfb, 0xc6, 0x07,
        0x03, 0x49, 0x75, 0xe5, HLT,
    ];
    let t = differential_at(&code, flat32(), 0, 8);
    assert_eq!(t.exit, HALTED);
    // ADD adds 1 for ecx = 100..=49 (the store at 49 follows that iteration's ADD), then 3.
    assert_eq!(t.state.gpr[gpr::RAX], 52 + 3 * 48);
    let st = t.vcpu.stats();
    assert!(st.region_blocks >= 1, "{st:?}");
    assert!(st.blocks_invalidated >= 1, "{st:?}");
}

#[test]
fn straight_line_successors_are_translated_alone() {
    //   mov ecx, 100
    // L: inc eax
    //   jmp B
    // B: inc ebx
    //   call F                ; calls end a region's path
    //   dec ecx
    //   jnz L
    //   hlt
    // F: ret
    // No region of hot blocks holds a loop (the only cycle passes through CALL and RET), so
    // every block is translated alone.
    let code = [
        0xb9, 0x64, 0x00, 0x00, 0x00, 0x40, 0xeb, 0x00, 0x43, 0xe8, 0x04, 0x00, 0x00, 0x00, 0x49,
        0x75, 0xf4, HLT, 0xc3,
    ];
    let t = differential_at(&code, flat32(), 0, 8);
    assert_eq!(t.exit, HALTED);
    assert_eq!((t.state.gpr[gpr::RAX], t.state.gpr[gpr::RBX]), (100, 100));
    let st = t.vcpu.stats();
    assert!(st.blocks_compiled >= 3, "{st:?}");
    assert_eq!(st.region_blocks, 0, "{st:?}");
}

/// `n` random instructions (they never write EBX, the data pointer, nor ESP).
fn random_run(r: &mut Rng, code: &mut Vec<u8>, n: usize, long: bool) {
    for _ in 0..n {
        random_insn(r, code, false, long);
    }
}

#[test]
fn random_multi_block_loops_agree_with_the_interpreter() {
    random_multi_block_loops(0x2545_f491_4f6c_dd1d, false);
}

#[test]
fn random_64bit_multi_block_loops_agree_with_the_interpreter() {
    random_multi_block_loops(0x9e37_79b9_7f4a_7c15, true);
}

fn random_multi_block_loops(seed: u64, long: bool) {
    // mov dword [COUNTER], 20
    // L: <10 random>; jcc A; <5 random>; jmp B
    // A: <5 random>
    // B: <5 random>; dec dword [COUNTER]; jnz L; hlt
    // The loop's blocks get hot after 4 runs and form regions whose edges carry random
    // registers and flags; every branch direction depends on the random flags.
    const COUNTER: u32 = 0x9000;
    let mut r = Rng(seed);
    let mut regions = 0;
    // [disp32] is RIP-relative in 64-bit mode; a SIB byte without base and index makes it
    // absolute in both.
    let absolute = [0x04, 0x25];
    let dec_absolute = [0x0c, 0x25];
    for case in 0..60 {
        let mut code = vec![0xc7];
        code.extend_from_slice(&absolute);
        code.extend_from_slice(&COUNTER.to_le_bytes());
        code.extend_from_slice(&20u32.to_le_bytes());
        let l = code.len();
        random_run(&mut r, &mut code, 10, long);
        let cc = 0x70 | r.below(16) as u8;
        let jcc_at = code.len();
        code.extend_from_slice(&[cc, 0]);
        random_run(&mut r, &mut code, 5, long);
        let jmp_at = code.len();
        code.extend_from_slice(&[0xeb, 0]);
        let a = code.len();
        random_run(&mut r, &mut code, 5, long);
        let b = code.len();
        random_run(&mut r, &mut code, 5, long);
        code.push(0xff);
        code.extend_from_slice(&dec_absolute);
        code.extend_from_slice(&COUNTER.to_le_bytes());
        let jnz_at = code.len();
        code.extend_from_slice(&[0x75, 0]);
        code.push(HLT);
        let rel = |from: usize, to: usize| {
            let d = to as i64 - (from as i64 + 2);
            assert!((-128..128).contains(&d), "case {case}: branch too far");
            d as i8 as u8
        };
        code[jcc_at + 1] = rel(jcc_at, a);
        code[jmp_at + 1] = rel(jmp_at, b);
        code[jnz_at + 1] = rel(jnz_at, l);
        let (mut s, width) = if long {
            (long64(&ram()), u64::MAX)
        } else {
            (flat32(), 0xffff_ffff)
        };
        randomize_registers(&mut s, &mut r, width);
        let t = std::panic::catch_unwind(|| differential_at(&code, s, 0, 4).vcpu.stats());
        match t {
            Ok(st) => regions += st.region_blocks,
            Err(_) => panic!("case {case} failed; code {code:02x?}"),
        }
    }
    assert!(regions >= 30, "regions formed: {regions}");
}

#[test]
fn carry_kept_by_inc_dec_arrives_along_every_kind_of_edge() {
    // C keeps CF through DEC and adds it with ADC; its predecessors leave CF in every way a
    // region edge can carry it (`Tx::pass_carry`): a shift, an ADD, a MUL record, eagerly
    // computed rotate flags, an interpreted BT, CMC, and a CMP. M is a loop head keeping CF
    // through INC, entered from outside (after STC) and along its own back edge.
    //   mov ecx, 400 / xor eax, eax / xor edi, edi / xor esi, esi / mov ebx, 0x9e3779b9
    // L: mov edx, ecx / and edx, 7 / jz P0
    //   cmp edx, 1 / je P1 / cmp edx, 2 / je P2 / cmp edx, 3 / je P3
    //   cmp edx, 4 / je P4 / cmp edx, 5 / je P5
    //   cmp edx, 7 / jmp C
    // P0: shr ebx, 1 / jmp C
    // P1: add ebx, 0x9e3779b9 / jmp C
    // P2: imul edx, ebx, 7 / jmp C
    // P3: rol ebx, 5 / jmp C
    // P4: bt ebx, 3 / jmp C
    // P5: cmc / jmp C
    // C: dec esi / adc edi, ecx / dec ecx / jnz L
    //   mov ecx, 300 / stc
    // M: inc esi / adc edi, 0 / shr ebx, 1 / dec ecx / jnz M
    //   hlt
    let code = [
        0xb9, 0x90, 0x01, 0x00, 0x00, 0x31, 0xc0, 0x31, 0xff, 0x31, 0xf6, 0xbb, 0xb9, 0x79, 0x37,
        0x9e, 0x89, 0xca, 0x83, 0xe2, 0x07, 0x74, 0x1e, 0x83, 0xfa, 0x01, 0x74, 0x1d, 0x83, 0xfa,
        0x02, 0x74, 0x20, 0x83, 0xfa, 0x03, 0x74, 0x20, 0x83, 0xfa, 0x04, 0x74, 0x20, 0x83, 0xfa,
        0x05, 0x74, 0x21, 0x83, 0xfa, 0x07, 0xeb, 0x1f, 0xd1, 0xeb, 0xeb, 0x1b, 0x81, 0xc3, 0xb9,
        0x79, 0x37, 0x9e, 0xeb, 0x13, 0x6b, 0xd3, 0x07, 0xeb, 0x0e, 0xc1, 0xc3, 0x05, 0xeb, 0x09,
        0x0f, 0xba, 0xe3, 0x03, 0xeb, 0x03, 0xf5, 0xeb, 0x00, 0x4e, 0x11, 0xcf, 0x49, 0x75, 0xb6,
        0xb9, 0x2c, 0x01, 0x00, 0x00, 0xf9, 0x46, 0x83, 0xd7, 0x00, 0xd1, 0xeb, 0x49, 0x75, 0xf7,
        HLT,
    ];
    for threshold in [2, 8] {
        let t = differential_at(&code, flat32(), 0, threshold);
        assert_eq!(t.exit, HALTED);
        let st = t.vcpu.stats();
        assert!(st.region_blocks >= 3, "{st:?}");
        assert!(st.self_loops >= 1, "{st:?}");
    }
}
