//! SSE/SSE2 data movement (SDM Vol. 1 10.4.1, 11.4.1; Vol. 2 per instruction): whole-register
//! moves (aligned, unaligned, non-temporal), MOVD/MOVQ between XMM, general registers and
//! memory, scalar MOVSS/MOVSD, the half-register moves, the sign-mask extractions and
//! MASKMOVDQU.

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use super::lanes::{u32s, u64s, u8s};
use super::{read, write, xmm, xmm_of};
use crate::context::JitContext;
use crate::interp::operand::{linear, mask, reg_read};
use crate::interp::{Exec, Flow};
use crate::runtime::Runtime;

pub(super) fn handles(m: M) -> bool {
    matches!(
        m,
        M::Movaps
            | M::Movups
            | M::Movapd
            | M::Movupd
            | M::Movdqa
            | M::Movdqu
            | M::Lddqu
            | M::Movntps
            | M::Movntpd
            | M::Movntdq
            | M::Movntdqa
            | M::Movd
            | M::Movq
            | M::Movss
            | M::Movsd
            | M::Movlps
            | M::Movlpd
            | M::Movhps
            | M::Movhpd
            | M::Movhlps
            | M::Movlhps
            | M::Movmskps
            | M::Movmskpd
            | M::Pmovmskb
            | M::Maskmovdqu
    )
}

const LOW64: u128 = u64::MAX as u128;
const LOW32: u128 = u32::MAX as u128;

pub(super) fn execute(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    m: M,
) -> Option<Exec> {
    Some(run(ctx, rt, insn, m))
}

fn dst_is_xmm(insn: &Instruction) -> bool {
    insn.op_kind(0) == OpKind::Register && insn.op_register(0).is_xmm()
}

fn run(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction, m: M) -> Exec {
    match m {
        M::Movaps
        | M::Movups
        | M::Movapd
        | M::Movupd
        | M::Movdqa
        | M::Movdqu
        | M::Lddqu
        | M::Movntps
        | M::Movntpd
        | M::Movntdq
        | M::Movntdqa => {
            let v = read(ctx, rt, insn, 1)?;
            write(ctx, rt, insn, 0, v)?;
        }
        M::Movd | M::Movq => {
            let width = if m == M::Movd { LOW32 } else { LOW64 };
            let v = read(ctx, rt, insn, 1)? & width;
            // To an XMM register the value is zero-extended; to a general register or memory
            // the low doubleword/quadword is stored.
            write(ctx, rt, insn, 0, v)?;
        }
        M::Movss | M::Movsd => {
            let width = if m == M::Movss { LOW32 } else { LOW64 };
            let v = read(ctx, rt, insn, 1)? & width;
            if dst_is_xmm(insn) && insn.op_kind(1) == OpKind::Register {
                let d = xmm_of(insn, 0);
                let merged = (xmm(ctx, d) & !width) | v;
                super::set_xmm(ctx, d, merged);
            } else {
                write(ctx, rt, insn, 0, v)?;
            }
        }
        M::Movlps | M::Movlpd | M::Movhps | M::Movhpd | M::Movhlps | M::Movlhps => {
            let high_dst = matches!(m, M::Movhps | M::Movhpd | M::Movlhps);
            let src = read(ctx, rt, insn, 1)?;
            let part =
                if m == M::Movhlps || (matches!(m, M::Movhps | M::Movhpd) && !dst_is_xmm(insn)) {
                    src >> 64
                } else {
                    src & LOW64
                };
            if dst_is_xmm(insn) {
                let d = xmm_of(insn, 0);
                let old = xmm(ctx, d);
                let v = if high_dst {
                    (old & LOW64) | (part << 64)
                } else {
                    (old & !LOW64) | part
                };
                super::set_xmm(ctx, d, v);
            } else {
                write(ctx, rt, insn, 0, part)?;
            }
        }
        M::Movmskps | M::Movmskpd | M::Pmovmskb => {
            let src = read(ctx, rt, insn, 1)?;
            let bits: u64 = match m {
                M::Movmskps => u32s(src)
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| u64::from(x >> 31) << i)
                    .sum(),
                M::Movmskpd => u64s(src)
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| (x >> 63) << i)
                    .sum(),
                _ => u8s(src)
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| u64::from(x >> 7) << i)
                    .sum(),
            };
            write(ctx, rt, insn, 0, u128::from(bits))?;
        }
        M::Maskmovdqu => maskmovdqu(ctx, rt, insn)?,
        _ => return Err(crate::exception::Fault::ud()),
    }
    Ok(Flow::Next)
}

/// MASKMOVDQU xmm1, xmm2: store the bytes of xmm1 whose mask byte in xmm2 has its top bit set
/// to DS:rDI (segment overridable). Every selected byte is checked before any is stored.
fn maskmovdqu(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
) -> Result<(), crate::exception::Fault> {
    let (data, sel) = (
        u8s(xmm(ctx, xmm_of(insn, 1))),
        u8s(xmm(ctx, xmm_of(insn, 2))),
    );
    let asize: u32 = match insn.op_kind(0) {
        OpKind::MemorySegDI => 2,
        OpKind::MemorySegRDI => 8,
        _ => 4,
    };
    let base = reg_read(&ctx.cpu, iced_x86::Register::RDI) & mask(asize);
    let seg = insn.memory_segment();
    let addr = |ctx: &JitContext, i: u64| linear(ctx, seg, base.wrapping_add(i) & mask(asize));
    if sel.iter().any(|&s| s & 0x80 != 0) {
        super::probe_write(ctx, rt, addr(ctx, 0), 16)?;
    }
    for i in 0..16 {
        if sel[i] & 0x80 != 0 {
            let la = addr(ctx, i as u64);
            crate::mem::write(ctx, rt, la, 1, u64::from(data[i]))?;
        }
    }
    Ok(())
}
