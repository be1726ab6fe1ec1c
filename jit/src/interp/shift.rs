//! Shifts and rotates: SHL/SAL, SHR, SAR (lazy flags), ROL, ROR, RCL, RCR, SHLD, SHRD (eager
//! flags). Counts are masked to 5 bits (6 for 64-bit operands); a masked count of 0 changes
//! nothing, not even flags (SDM Vol. 2B SAL/SAR/SHL/SHR, RCL/RCR/ROL/ROR, SHLD, SHRD).
//! Undefined flags follow Intel hardware where it is cheap: OF of multi-bit rotates uses the
//! 1-bit formula on the result, AF is cleared.

use iced_x86::{Instruction, Mnemonic as M, OpKind};
use vcpu::state::rflags;

use super::operand::{mask, op_size, read_op, reg_read, reg_write, sext, sign_bit, Place};
use super::{Exec, Flow};
use crate::context::JitContext;
use crate::flags::{kind, parity_even};
use crate::runtime::Runtime;

/// SF, ZF and PF of a result.
pub(super) fn szp(r: u64, size: u32) -> u64 {
    let r = r & mask(size);
    let mut f = 0;
    if r & sign_bit(size) != 0 {
        f |= rflags::SF;
    }
    if r == 0 {
        f |= rflags::ZF;
    }
    if parity_even(r) {
        f |= rflags::PF;
    }
    f
}

/// The shift count operand (CL or an immediate, including the implicit 1), masked.
fn count(ctx: &JitContext, insn: &Instruction, i: u32, size: u32) -> u32 {
    let raw = match insn.op_kind(i) {
        OpKind::Register => ctx.cpu.gpr[vcpu::state::gpr::RCX] as u32,
        _ => insn.immediate8() as u32,
    };
    raw & if size == 8 { 0x3f } else { 0x1f }
}

/// Replace CF and OF in materialised flags.
pub(super) fn set_cf_of(ctx: &mut JitContext, cf: bool, of: bool) {
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    let f = &mut ctx.cpu.rflags;
    *f &= !(rflags::CF | rflags::OF);
    if cf {
        *f |= rflags::CF;
    }
    if of {
        *f |= rflags::OF;
    }
}

/// A shift by a masked count of 0 leaves flags and value alone, but in 64-bit mode a 32-bit
/// register destination is still written, which clears its upper half (as QEMU and the
/// processors do for every 32-bit register write, SDM Vol. 1 3.4.1.1).
fn zero_extend_unchanged_dest(ctx: &mut JitContext, insn: &Instruction, size: u32) {
    if size == 4 && insn.op_kind(0) == OpKind::Register && ctx.cpu.mode() == vcpu::ExecMode::Long64
    {
        let r = insn.op_register(0);
        let v = reg_read(&ctx.cpu, r);
        reg_write(&mut ctx.cpu, r, v);
    }
}

pub(super) fn shift(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let n = count(ctx, insn, 1, size);
    if n == 0 {
        zero_extend_unchanged_dest(ctx, insn, size);
        return Ok(Flow::Next);
    }
    let bits = 8 * size;
    let m = mask(size);
    let dest = Place::of(ctx, insn, 0)?;
    let a = dest.read(ctx, rt, size)? & m;
    let msb = |v: u64| v & sign_bit(size) != 0;
    match insn.mnemonic() {
        M::Shl | M::Sal => {
            let r = if n >= 64 { 0 } else { (a << n) & m };
            dest.write(ctx, rt, size, r)?;
            ctx.flags.set(kind::SHL, size, a, u64::from(n), r, 0);
        }
        M::Shr => {
            let r = if n >= 64 { 0 } else { a >> n };
            dest.write(ctx, rt, size, r)?;
            ctx.flags.set(kind::SHR, size, a, u64::from(n), r, 0);
        }
        M::Sar => {
            let r = ((sext(a, size) as i64) >> n.min(63)) as u64 & m;
            dest.write(ctx, rt, size, r)?;
            ctx.flags.set(kind::SAR, size, a, u64::from(n), r, 0);
        }
        M::Rol => {
            let k = n % bits;
            let r = if k == 0 {
                a
            } else {
                ((a << k) | (a >> (bits - k))) & m
            };
            dest.write(ctx, rt, size, r)?;
            let cf = r & 1 != 0;
            set_cf_of(ctx, cf, msb(r) != cf);
        }
        M::Ror => {
            let k = n % bits;
            let r = if k == 0 {
                a
            } else {
                ((a >> k) | (a << (bits - k))) & m
            };
            dest.write(ctx, rt, size, r)?;
            let second = r & (sign_bit(size) >> 1) != 0;
            set_cf_of(ctx, msb(r), msb(r) != second);
        }
        _ => {
            // RCL / RCR rotate through CF: a (bits + 1)-bit rotation.
            let k = match size {
                1 => n % 9,
                2 => n % 17,
                _ => n,
            };
            if k == 0 {
                return Ok(Flow::Next);
            }
            let cf_in = u128::from(ctx.flags.carry(ctx.cpu.rflags));
            let width = bits + 1;
            let wmask = (1u128 << width) - 1;
            let v = (cf_in << bits) | u128::from(a);
            let rotated = if insn.mnemonic() == M::Rcl {
                ((v << k) | (v >> (width - k))) & wmask
            } else {
                ((v >> k) | (v << (width - k))) & wmask
            };
            let r = (rotated as u64) & m;
            let cf = (rotated >> bits) & 1 != 0;
            dest.write(ctx, rt, size, r)?;
            let of = if insn.mnemonic() == M::Rcl {
                msb(r) != cf
            } else {
                msb(r) != (r & (sign_bit(size) >> 1) != 0)
            };
            set_cf_of(ctx, cf, of);
        }
    }
    Ok(Flow::Next)
}

/// SHLD / SHRD. 16-bit counts above 16 shift through dest:src:dest, as Intel processors do.
pub(super) fn double_shift(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let n = count(ctx, insn, 2, size);
    if n == 0 {
        zero_extend_unchanged_dest(ctx, insn, size);
        return Ok(Flow::Next);
    }
    let bits = 8 * size;
    let m = mask(size);
    let dest = Place::of(ctx, insn, 0)?;
    let d = dest.read(ctx, rt, size)? & m;
    let s = read_op(ctx, rt, insn, 1, size)? & m;
    let (d128, s128) = (u128::from(d), u128::from(s));
    let left = insn.mnemonic() == M::Shld;
    let (v, width) = if size == 2 {
        ((d128 << 32) | (s128 << 16) | d128, 48)
    } else if left {
        ((d128 << bits) | s128, 2 * bits)
    } else {
        ((s128 << bits) | d128, 2 * bits)
    };
    let (r, cf) = if left {
        (
            (v >> (width - bits - n)) as u64 & m,
            (v >> (width - n)) & 1 != 0,
        )
    } else {
        ((v >> n) as u64 & m, (v >> (n - 1)) & 1 != 0)
    };
    dest.write(ctx, rt, size, r)?;
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    let mut f = szp(r, size);
    if cf {
        f |= rflags::CF;
    }
    if (r ^ d) & sign_bit(size) != 0 {
        f |= rflags::OF;
    }
    ctx.cpu.rflags = (ctx.cpu.rflags & !rflags::STATUS) | f;
    Ok(Flow::Next)
}
