//! Specialised SHL/SAL, SHR, SAR (lazy flags) and ROL, ROR (CF and OF materialised) by an
//! immediate (the implicit 1 included) or by CL, on general registers and 64-bit flat memory;
//! the same effects as `interp::shift::shift` (SDM Vol. 2B SAL/SAR/SHL/SHR, RCL/RCR/ROL/ROR).

use iced_x86::{Instruction, Mnemonic as M, OpKind};
use vcpu::state::gpr;

use super::{form, get, load_dest, set, store_dest, Handler, IMM, MEM, REG, SEG};
use crate::context::JitContext;
use crate::flags::kind;
use crate::interp::operand::op_size;
use crate::interp::operand::{mask, sext, sign_bit};
use crate::interp::shift::set_cf_of;
use crate::interp::{Exec, Flow};
use crate::runtime::Runtime;

/// Shift and rotate operations (const parameters of [`shift`]).
const SHL: u8 = 0;
const SHR: u8 = 1;
const SAR: u8 = 2;
const ROL: u8 = 3;
const ROR: u8 = 4;

/// The specialised executor of a shift or rotate, if its forms have one.
pub(super) fn handler(insn: &Instruction, long: bool) -> Option<Handler> {
    match insn.mnemonic() {
        M::Shl | M::Sal => with_op::<SHL>(insn, long),
        M::Shr => with_op::<SHR>(insn, long),
        M::Sar => with_op::<SAR>(insn, long),
        M::Rol => with_op::<ROL>(insn, long),
        M::Ror => with_op::<ROR>(insn, long),
        _ => None,
    }
}

fn with_op<const OP: u8>(insn: &Instruction, long: bool) -> Option<Handler> {
    let dst = form(insn, 0, long)?;
    // The count: CL (a register operand) or an immediate.
    let cnt = match insn.op_kind(1) {
        OpKind::Register => REG,
        OpKind::Immediate8 => IMM,
        _ => return None,
    };
    let size = op_size(insn, 0, 0);
    macro_rules! pick {
        ($d:expr, $c:expr) => {
            if long {
                sized!(size => S, shift::<OP, S, $d, $c, true>)
            } else {
                sized!(size => S, shift::<OP, S, $d, $c, false>)
            }
        };
    }
    match (dst, cnt) {
        (REG, REG) => pick!(REG, REG),
        (REG, IMM) => pick!(REG, IMM),
        (MEM, REG) => pick!(MEM, REG),
        (MEM, IMM) => pick!(MEM, IMM),
        (SEG, REG) => pick!(SEG, REG),
        (SEG, IMM) => pick!(SEG, IMM),
        _ => None,
    }
}

/// One shift or rotate of an `S`-byte destination of form `DST` by a count of form `CNT`
/// (`LONG`: 64-bit code). A masked count of 0 touches nothing, except that in 64-bit mode a
/// 32-bit register destination is written back, clearing its upper half.
fn shift<const OP: u8, const S: u32, const DST: u8, const CNT: u8, const LONG: bool>(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
) -> Exec {
    let raw = if CNT == REG {
        ctx.cpu.gpr[gpr::RCX] as u32
    } else {
        u32::from(insn.immediate8())
    };
    let n = raw & if S == 8 { 0x3f } else { 0x1f };
    if n == 0 {
        if DST == REG && S == 4 && LONG {
            let r = insn.op0_register();
            let v = get::<4>(&ctx.cpu, r);
            set::<4>(&mut ctx.cpu, r, v);
        }
        return Ok(Flow::Next);
    }
    let bits = 8 * S;
    let m = mask(S);
    let (a, dest) = load_dest::<S, DST>(ctx, rt, insn)?;
    let r = match OP {
        SHL => {
            if n >= 64 {
                0
            } else {
                (a << n) & m
            }
        }
        SHR => a >> n,
        SAR => ((sext(a, S) as i64) >> n.min(63)) as u64 & m,
        ROL => {
            let k = n % bits;
            if k == 0 {
                a
            } else {
                ((a << k) | (a >> (bits - k))) & m
            }
        }
        _ => {
            let k = n % bits;
            if k == 0 {
                a
            } else {
                ((a >> k) | (a << (bits - k))) & m
            }
        }
    };
    store_dest::<S>(ctx, rt, insn, dest, r)?;
    let msb = |v: u64| v & sign_bit(S) != 0;
    match OP {
        SHL => ctx.flags.set(kind::SHL, S, a, u64::from(n), r, 0),
        SHR => ctx.flags.set(kind::SHR, S, a, u64::from(n), r, 0),
        SAR => ctx.flags.set(kind::SAR, S, a, u64::from(n), r, 0),
        ROL => {
            let cf = r & 1 != 0;
            set_cf_of(ctx, cf, msb(r) != cf);
        }
        _ => {
            let second = r & (sign_bit(S) >> 1) != 0;
            set_cf_of(ctx, msb(r), msb(r) != second);
        }
    }
    Ok(Flow::Next)
}
