//! Bit test and scan: BT, BTS, BTR, BTC (register and immediate bit offsets; a register offset
//! into memory addresses a bit string, SDM Vol. 1 3.4.6 and Vol. 2A BT) and BSF/BSR.

use iced_x86::{Instruction, Mnemonic as M, OpKind};
use vcpu::state::rflags;

use super::operand::{mask, op_size, read_op, sext, Place};
use super::{Exec, Flow};
use crate::context::JitContext;
use crate::flags::kind;
use crate::runtime::Runtime;

pub(super) fn bit_test(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let bits = 8 * size;
    let offset = read_op(ctx, rt, insn, 1, size)?;
    let (place, bit) = match insn.op_kind(0) {
        OpKind::Memory if insn.op_kind(1) == OpKind::Register => {
            // Signed bit offset: the operand-sized unit it falls in, then the bit inside it.
            let signed = sext(offset, size) as i64;
            let unit = signed.div_euclid(i64::from(bits));
            let bit = signed.rem_euclid(i64::from(bits)) as u32;
            let delta = unit.wrapping_mul(i64::from(size)) as u64;
            (Place::mem_plus(ctx, insn, delta), bit)
        }
        _ => (Place::of(ctx, insn, 0)?, (offset as u32) & (bits - 1)),
    };
    let v = place.read(ctx, rt, size)? & mask(size);
    let cf = (v >> bit) & 1 != 0;
    let new = match insn.mnemonic() {
        M::Bts => Some(v | (1 << bit)),
        M::Btr => Some(v & !(1 << bit)),
        M::Btc => Some(v ^ (1 << bit)),
        _ => None,
    };
    if let Some(n) = new {
        place.write(ctx, rt, size, n)?;
    }
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    if cf {
        ctx.cpu.rflags |= rflags::CF;
    } else {
        ctx.cpu.rflags &= !rflags::CF;
    }
    Ok(Flow::Next)
}

/// BSF/BSR: ZF = (source == 0) and the destination is left unchanged then; the other flags
/// (undefined) are those of a logic operation on the source, as QEMU computes them.
pub(super) fn bit_scan(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let src = read_op(ctx, rt, insn, 1, size)? & mask(size);
    if src != 0 {
        let index = if matches!(insn.mnemonic(), M::Bsf | M::Tzcnt) {
            src.trailing_zeros()
        } else {
            63 - src.leading_zeros()
        };
        Place::of(ctx, insn, 0)?.write(ctx, rt, size, u64::from(index))?;
    }
    ctx.flags.set(kind::LOGIC, size, src, 0, src, 0);
    Ok(Flow::Next)
}
