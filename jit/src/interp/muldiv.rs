//! MUL, IMUL (one, two and three operands), DIV and IDIV (SDM Vol. 2A/2B). Division raises #DE
//! on a zero divisor and on a quotient that does not fit, before changing anything. Multiply
//! flags are recorded lazily (CF = OF = "the high half is significant"); division leaves the
//! (undefined) flags unchanged.

use iced_x86::{Instruction, Mnemonic as M};
use vcpu::state::gpr;

use super::operand::{gpr_write_sized, mask, op_size, read_op, reg_write, sext};
use super::{Exec, Flow};
use crate::context::JitContext;
use crate::exception::Fault;
use crate::flags::kind;
use crate::runtime::Runtime;

pub(super) fn multiply(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let bits = 8 * size;
    let m = mask(size);
    let signed = insn.mnemonic() == M::Imul;
    if insn.op_count() == 1 {
        let src = read_op(ctx, rt, insn, 0, size)? & m;
        let acc = ctx.cpu.gpr[gpr::RAX] & m;
        let (low, high, significant) = if signed {
            let p = i128::from(sext(acc, size) as i64) * i128::from(sext(src, size) as i64);
            let low = (p as u64) & m;
            let high = ((p >> bits) as u64) & m;
            (low, high, p != i128::from(sext(low, size) as i64))
        } else {
            let p = u128::from(acc) * u128::from(src);
            let low = (p as u64) & m;
            let high = ((p >> bits) as u64) & m;
            (low, high, high != 0)
        };
        if size == 1 {
            reg_write(&mut ctx.cpu, iced_x86::Register::AX, (high << 8) | low);
        } else {
            gpr_write_sized(&mut ctx.cpu, gpr::RAX, size, low);
            gpr_write_sized(&mut ctx.cpu, gpr::RDX, size, high);
        }
        ctx.flags
            .set(kind::MUL, size, acc, src, low, u64::from(significant));
        return Ok(Flow::Next);
    }
    // IMUL r, r/m (two operands) or IMUL r, r/m, imm (three).
    let (a, b) = if insn.op_count() == 2 {
        (
            read_op(ctx, rt, insn, 0, size)?,
            read_op(ctx, rt, insn, 1, size)?,
        )
    } else {
        (
            read_op(ctx, rt, insn, 1, size)?,
            read_op(ctx, rt, insn, 2, size)?,
        )
    };
    let p = i128::from(sext(a, size) as i64) * i128::from(sext(b, size) as i64);
    let low = (p as u64) & m;
    let significant = p != i128::from(sext(low, size) as i64);
    reg_write(&mut ctx.cpu, insn.op_register(0), low);
    ctx.flags
        .set(kind::MUL, size, a, b, low, u64::from(significant));
    Ok(Flow::Next)
}

pub(super) fn divide(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let bits = 8 * size;
    let m = mask(size);
    let divisor = read_op(ctx, rt, insn, 0, size)? & m;
    if divisor == 0 {
        return Err(Fault::de());
    }
    let (lo, hi) = if size == 1 {
        let ax = ctx.cpu.gpr[gpr::RAX] & 0xffff;
        (ax & 0xff, ax >> 8)
    } else {
        (ctx.cpu.gpr[gpr::RAX] & m, ctx.cpu.gpr[gpr::RDX] & m)
    };
    let dividend = (u128::from(hi) << bits) | u128::from(lo);
    let (q, r) = if insn.mnemonic() == M::Div {
        let q = dividend / u128::from(divisor);
        let r = dividend % u128::from(divisor);
        if q > u128::from(m) {
            return Err(Fault::de());
        }
        (q as u64, r as u64)
    } else {
        // Sign-extend the 2*bits-wide dividend to i128.
        let shift = 128 - 2 * bits;
        let n = ((dividend << shift) as i128) >> shift;
        let d = i128::from(sext(divisor, size) as i64);
        let (Some(q), Some(r)) = (n.checked_div(d), n.checked_rem(d)) else {
            return Err(Fault::de());
        };
        let min = -(1i128 << (bits - 1));
        let max = (1i128 << (bits - 1)) - 1;
        if q < min || q > max {
            return Err(Fault::de());
        }
        (q as u64 & m, r as u64 & m)
    };
    if size == 1 {
        reg_write(&mut ctx.cpu, iced_x86::Register::AX, (r << 8) | q);
    } else {
        gpr_write_sized(&mut ctx.cpu, gpr::RAX, size, q);
        gpr_write_sized(&mut ctx.cpu, gpr::RDX, size, r);
    }
    Ok(Flow::Next)
}
