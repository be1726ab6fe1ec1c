//! Differential tests of the inline SSE integer instructions (`sse.rs`): every translated form
//! runs translated and interpreter-only from random XMM contents, and the states (XMM registers
//! in the FXSAVE image included) and memory must agree; the faults stay the interpreter's.

use vcpu::state::{cr0, gpr};
use vcpu::{CpuState, FxArea, VmExit};

use super::tests::{differential, flat32, long64, ram, Rng, DATA, HLT};

/// CR4.OSFXSR: SSE instructions execute (SDM Vol. 3A 2.5).
const OSFXSR: u64 = 1 << 9;

/// ModRM for two registers (`reg` field, `rm` field), low three bits of each.
fn rr(reg: u8, rm: u8) -> u8 {
    0xc0 | (reg & 7) << 3 | (rm & 7)
}

/// ModRM for `reg` and `[ebx]` / `[rbx]` with an 8-bit displacement.
fn rbx_disp8(reg: u8) -> u8 {
    0x40 | (reg & 7) << 3 | 3
}

/// Where [`record`] keeps results, from EBX.
const RESULTS: u32 = 0x100;

/// `movdqu [ebx + RESULTS + 16 * slot], xmm`: every intermediate result reaches the compared
/// memory, so a later instruction overwriting the register cannot hide a wrong one.
fn record(code: &mut Vec<u8>, xmm: u8, slot: &mut u32) {
    code.extend_from_slice(&[0xf3, 0x0f, 0x7f, 0x80 | (xmm & 7) << 3 | 3]);
    code.extend_from_slice(&(RESULTS + 16 * *slot).to_le_bytes());
    *slot += 1;
}

/// `66 0F op /r` with two XMM registers (0-7), its result recorded.
fn p66(code: &mut Vec<u8>, op: u8, dst: u8, src: u8, slot: &mut u32) {
    code.extend_from_slice(&[0x66, 0x0f, op, rr(dst, src)]);
    record(code, dst, slot);
}

/// `66 0F op /ext ib`: a shift of XMM `x` by `count`, its result recorded.
fn shift(code: &mut Vec<u8>, op: u8, ext: u8, x: u8, count: u8, slot: &mut u32) {
    code.extend_from_slice(&[0x66, 0x0f, op, rr(ext, x), count]);
    record(code, x, slot);
}

/// A state in `base`'s mode with SSE enabled, random XMM registers and EBX pointing at DATA.
fn sse_state(base: CpuState, r: &mut Rng) -> CpuState {
    let mut s = base;
    s.cr4 |= OSFXSR;
    for b in s.fx.0[FxArea::XMM0..FxArea::XMM0 + 256].iter_mut() {
        *b = r.next() as u8;
    }
    // Equal lanes for the compares: XMM2's low half repeats XMM1's.
    let (x1, x2) = (FxArea::XMM0 + 16, FxArea::XMM0 + 32);
    let low: Vec<u8> = s.fx.0[x1..x1 + 8].to_vec();
    s.fx.0[x2..x2 + 8].copy_from_slice(&low);
    for i in [gpr::RAX, gpr::RCX, gpr::RDX, gpr::RSI, gpr::RDI] {
        s.gpr[i] = r.next();
    }
    s.gpr[gpr::RBX] = DATA;
    s
}

/// Every translated form, registers XMM0-XMM7, memory through EBX/RBX.
fn every_form() -> Vec<u8> {
    let mut c = Vec::new();
    let slot = &mut 0;
    // Packed arithmetic, logic, compares.
    for (op, d, s) in [
        (0xfc, 0, 1), // paddb
        (0xfd, 1, 2), // paddw
        (0xfe, 2, 3), // paddd
        (0xd4, 3, 4), // paddq
        (0xf8, 4, 5), // psubb
        (0xf9, 5, 6), // psubw
        (0xfa, 6, 7), // psubd
        (0xfb, 7, 0), // psubq
        (0xdb, 0, 1), // pand
        (0xdf, 1, 2), // pandn
        (0xeb, 2, 3), // por
        (0xef, 3, 4), // pxor
        (0x74, 4, 4), // pcmpeqb (all ones)
        (0x75, 1, 2), // pcmpeqw
        (0x76, 2, 1), // pcmpeqd
        (0x60, 5, 6), // punpcklbw
        (0x61, 6, 7), // punpcklwd
        (0x62, 7, 0), // punpckldq
        (0x6c, 0, 1), // punpcklqdq
        (0x68, 1, 2), // punpckhbw
        (0x69, 2, 3), // punpckhwd
        (0x6a, 3, 4), // punpckhdq
        (0x6d, 4, 5), // punpckhqdq
    ] {
        p66(&mut c, op, d, s, slot);
    }
    // pshufb xmm5, xmm6; pshufd xmm6, xmm7, 0x1b; pshufd xmm7, xmm7, 0xb1
    c.extend_from_slice(&[0x66, 0x0f, 0x38, 0x00, rr(5, 6)]);
    record(&mut c, 5, slot);
    c.extend_from_slice(&[0x66, 0x0f, 0x70, rr(6, 7), 0x1b]);
    record(&mut c, 6, slot);
    c.extend_from_slice(&[0x66, 0x0f, 0x70, rr(7, 7), 0xb1]);
    record(&mut c, 7, slot);
    // Shifts by immediates, counts inside and beyond the lane width.
    for (op, ext) in [
        (0x71, 2), // psrlw
        (0x71, 4), // psraw
        (0x71, 6), // psllw
        (0x72, 2), // psrld
        (0x72, 4), // psrad
        (0x72, 6), // pslld
        (0x73, 2), // psrlq
        (0x73, 3), // psrldq
        (0x73, 6), // psllq
        (0x73, 7), // pslldq
    ] {
        for (x, count) in [
            (0u8, 0u8),
            (1, 1),
            (2, 7),
            (3, 12),
            (4, 16),
            (5, 33),
            (6, 200),
        ] {
            shift(&mut c, op, ext, x, count, slot);
        }
    }
    // movdqa [ebx], xmm1; movdqu [ebx+3], xmm2; movaps [ebx+0x20], xmm3; movups [ebx+0x31], xmm4
    c.extend_from_slice(&[0x66, 0x0f, 0x7f, 0x0b]);
    c.extend_from_slice(&[0xf3, 0x0f, 0x7f, rbx_disp8(2), 3]);
    c.extend_from_slice(&[0x0f, 0x29, rbx_disp8(3), 0x20]);
    c.extend_from_slice(&[0x0f, 0x11, rbx_disp8(4), 0x31]);
    // movdqa xmm5, [ebx]; movdqu xmm6, [ebx+3]; paddd xmm7, [ebx+0x20]; pshufb xmm0, [ebx]
    c.extend_from_slice(&[0x66, 0x0f, 0x6f, 0x2b]);
    c.extend_from_slice(&[0xf3, 0x0f, 0x6f, rbx_disp8(6), 3]);
    c.extend_from_slice(&[0x66, 0x0f, 0xfe, rbx_disp8(7), 0x20]);
    c.extend_from_slice(&[0x66, 0x0f, 0x38, 0x00, 0x03]);
    for x in [5, 6, 7, 0] {
        record(&mut c, x, slot);
    }
    // movdqa xmm1, xmm2; movaps xmm2, xmm3
    c.extend_from_slice(&[0x66, 0x0f, 0x6f, rr(1, 2)]);
    c.extend_from_slice(&[0x0f, 0x28, rr(2, 3)]);
    // movd xmm3, eax; movd ecx, xmm4; movd [ebx+0x40], xmm5; movd xmm6, [ebx+0x21]
    c.extend_from_slice(&[0x66, 0x0f, 0x6e, rr(3, 0)]);
    c.extend_from_slice(&[0x66, 0x0f, 0x7e, rr(4, 1)]);
    c.extend_from_slice(&[0x66, 0x0f, 0x7e, rbx_disp8(5), 0x40]);
    c.extend_from_slice(&[0x66, 0x0f, 0x6e, rbx_disp8(6), 0x21]);
    // movq xmm7, [ebx+8]; movq [ebx+0x50], xmm0; movq xmm1, xmm2; movq xmm3, xmm4 (66 0F D6)
    c.extend_from_slice(&[0xf3, 0x0f, 0x7e, rbx_disp8(7), 8]);
    c.extend_from_slice(&[0x66, 0x0f, 0xd6, rbx_disp8(0), 0x50]);
    c.extend_from_slice(&[0xf3, 0x0f, 0x7e, rr(1, 2)]);
    c.extend_from_slice(&[0x66, 0x0f, 0xd6, rr(4, 3)]);
    // pmovmskb edx, xmm5; pmovmskb esi, xmm0 (all ones from pcmpeqb above, then shuffled)
    c.extend_from_slice(&[0x66, 0x0f, 0xd7, rr(2, 5)]);
    c.extend_from_slice(&[0x66, 0x0f, 0xd7, rr(6, 0)]);
    c.push(HLT);
    c
}

fn assert_all_inline(t: &super::tests::Outcome) {
    let st = t.vcpu.stats();
    // The HLT ending a compiled block is the only instruction left to the interpreter (a TLB
    // miss leaves the function and the rest of the code becomes a block of its own; a long
    // block ends at the instruction cap without one).
    assert!(st.interpreted_insns <= st.blocks_compiled, "{st:?}");
    assert!(st.inline_insns >= 7, "{st:?}");
}

/// [`every_form`] from four random starting states in `base`'s mode.
fn every_form_agrees(base: impl Fn() -> CpuState, seed: u64) {
    let mut r = Rng(seed);
    for _ in 0..4 {
        let t = differential(&every_form(), sse_state(base(), &mut r), 0);
        assert_halted(&t);
        assert_all_inline(&t);
    }
}

fn assert_halted(t: &super::tests::Outcome) {
    assert_eq!(
        t.exit,
        VmExit::Halted {
            interrupts_enabled: false
        }
    );
}

#[test]
fn every_form_agrees_with_the_interpreter_in_32bit_mode() {
    every_form_agrees(flat32, 0x5eed_55e2);
}

#[test]
fn every_form_agrees_with_the_interpreter_in_64bit_mode() {
    every_form_agrees(|| long64(&ram()), 0x64_55e2);
}

#[test]
fn xmm8_to_15_and_64bit_moves_agree_with_the_interpreter() {
    let mut r = Rng(0x1515);
    let s = sse_state(long64(&ram()), &mut r);
    let code = [
        // paddd xmm9, xmm14 (REX.RB); pxor xmm8, xmm1 (REX.R); psrlq xmm15, 3 (REX.B)
        0x66, 0x45, 0x0f, 0xfe, 0xce, 0x66, 0x44, 0x0f, 0xef, 0xc1, 0x66, 0x41, 0x0f, 0x73, 0xd7,
        3, // movq xmm10, rax (66 REX.WR 0F 6E); movq rcx, xmm9 (66 REX.WR 0F 7E /r, rm=rcx)
        0x66, 0x4c, 0x0f, 0x6e, 0xd0, 0x66, 0x4c, 0x0f, 0x7e, 0xc9,
        // movdqu xmm11, [rbx+5]; movdqa [rbx+0x60], xmm15
        0xf3, 0x44, 0x0f, 0x6f, 0x5b, 5, 0x66, 0x44, 0x0f, 0x7f, 0x7b, 0x60, HLT,
    ];
    let t = differential(&code, s, 0);
    assert_halted(&t);
    assert_all_inline(&t);
}

#[test]
fn faults_are_the_interpreters() {
    let mut r = Rng(0xfa17);
    // movdqa xmm0, [ebx+4] and paddd xmm0, [ebx+8]: misaligned, #GP(0) at the MOVDQA.
    let misaligned = [0x66, 0x0f, 0x6f, 0x43, 4, 0x66, 0x0f, 0xfe, 0x43, 8, HLT];
    let s = sse_state(flat32(), &mut r);
    let t = differential(&misaligned, s, 0);
    assert_ne!(
        t.exit,
        VmExit::Halted {
            interrupts_enabled: false
        },
        "the MOVDQA did not fault"
    );
    // paddd xmm1, xmm2 with CR0.TS (#NM), with CR0.EM (#UD) and without CR4.OSFXSR (#UD).
    let paddd = [0x66, 0x0f, 0xfe, rr(1, 2), HLT];
    let changes: [fn(&mut CpuState); 3] = [
        |s| s.cr0 |= cr0::TS,
        |s| s.cr0 |= cr0::EM,
        |s| s.cr4 &= !OSFXSR,
    ];
    for change in changes {
        let mut s = sse_state(flat32(), &mut r);
        change(&mut s);
        let t = differential(&paddd, s, 0);
        assert_ne!(
            t.exit,
            VmExit::Halted {
                interrupts_enabled: false
            },
            "the PADDD did not fault"
        );
        let x1 = FxArea::XMM0 + 16;
        assert_eq!(
            t.state.fx.0[x1..x1 + 16],
            s.fx.0[x1..x1 + 16],
            "XMM1 changed"
        );
    }
}

#[test]
fn pause_is_translated_inline() {
    // mov ecx, 100; l: pause; dec ecx; jnz l; hlt
    let code = [0xb9, 100, 0, 0, 0, 0xf3, 0x90, 0x49, 0x75, 0xfb, HLT];
    let t = differential(&code, flat32(), 0);
    assert_eq!(t.state.gpr[gpr::RCX], 0);
    assert_all_inline(&t);
}
