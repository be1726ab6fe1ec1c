//! Specialised SETcc and CMOVcc on general registers and 64-bit flat memory, with the
//! condition read from the lazy flags by `interp::cond`; the same effects as
//! `interp::data::setcc` and `interp::data::cmovcc` (SDM Vol. 2B SETcc, Vol. 2A CMOVcc).

use iced_x86::Instruction;
use vcpu::state::efer;

use super::{form, get, set, source, store, Handler, MEM, REG, SEG};
use crate::context::JitContext;
use crate::interp::cond;
use crate::interp::data::cc_nibble;
use crate::interp::operand::op_size;
use crate::interp::{Exec, Flow};
use crate::runtime::Runtime;

/// The specialised executor of a SETcc (`set`) or CMOVcc, if its forms have one.
pub(super) fn handler(insn: &Instruction, long: bool, set: bool) -> Option<Handler> {
    if set {
        return match form(insn, 0, long)? {
            REG => Some(setcc::<REG>),
            MEM => Some(setcc::<MEM>),
            SEG => Some(setcc::<SEG>),
            _ => None,
        };
    }
    if form(insn, 0, long)? != REG {
        return None;
    }
    let size = op_size(insn, 0, 0);
    match form(insn, 1, long)? {
        REG => sized!(size => S, cmovcc::<S, REG>),
        MEM => sized!(size => S, cmovcc::<S, MEM>),
        SEG => sized!(size => S, cmovcc::<S, SEG>),
        _ => None,
    }
}

/// SETcc r/m8: 1 if the condition holds, else 0.
fn setcc<const DST: u8>(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let v = u64::from(cond::holds(&ctx.flags, cc_nibble(insn), ctx.cpu.rflags));
    store::<1, DST>(ctx, rt, insn, v)?;
    Ok(Flow::Next)
}

/// CMOVcc r, r/m: the source is read (and may fault) whatever the condition; a 32-bit
/// destination in IA-32e mode is written (its upper half cleared) even when the move does not
/// happen.
fn cmovcc<const S: u32, const SRC: u8>(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
) -> Exec {
    let v = source::<S, SRC>(ctx, rt, insn)?;
    let dest = insn.op0_register();
    if cond::holds(&ctx.flags, cc_nibble(insn), ctx.cpu.rflags) {
        set::<S>(&mut ctx.cpu, dest, v);
    } else if S == 4 && ctx.cpu.efer & efer::LMA != 0 {
        let kept = get::<4>(&ctx.cpu, dest);
        set::<4>(&mut ctx.cpu, dest, kept);
    }
    Ok(Flow::Next)
}
