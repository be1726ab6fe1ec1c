//! Specialised PUSH r16/r32, POP r16/r32, near CALL rel16/rel32 and RET of 16 and 32-bit
//! operand size, through the same `StackCursor` as the generic executors (SS.B choosing SP or
//! ESP, the stack segment's limit and rights, 64-bit mode's flat stack for the 16-bit forms
//! there), with the operand size known at decode instead of asked of iced at run time.

use iced_x86::{Code, Instruction};

use super::{get, set, Handler};
use crate::context::JitContext;
use crate::interp::control::check_target;
use crate::interp::stack::StackCursor;
use crate::interp::{ip_mask, Exec, Flow};
use crate::runtime::Runtime;

/// The specialised executor of a 16/32-bit stack instruction, if `code` is one.
pub(super) fn handler(code: Code) -> Option<Handler> {
    Some(match code {
        Code::Push_r16 => push::<2>,
        Code::Push_r32 => push::<4>,
        Code::Pop_r16 => pop::<2>,
        Code::Pop_r32 => pop::<4>,
        Code::Call_rel16 => call::<2>,
        Code::Call_rel32_32 => call::<4>,
        Code::Retnw => ret::<2>,
        Code::Retnd => ret::<4>,
        _ => return None,
    })
}

/// PUSH of an `S`-byte general register.
fn push<const S: u32>(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let v = get::<S>(&ctx.cpu, insn.op0_register());
    let mut st = StackCursor::from_ss(ctx);
    st.push(ctx, rt, S, v)?;
    st.commit(ctx);
    Ok(Flow::Next)
}

/// POP into an `S`-byte general register (after the stack pointer moved: POP SP/ESP loads
/// the popped value).
fn pop<const S: u32>(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let mut st = StackCursor::from_ss(ctx);
    let v = st.pop(ctx, rt, S)?;
    st.commit(ctx);
    set::<S>(&mut ctx.cpu, insn.op0_register(), v);
    Ok(Flow::Next)
}

/// Near CALL rel with an `S`-byte return address: the target is checked before the push.
fn call<const S: u32>(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let ret = insn.next_ip() & ip_mask(ctx);
    let mut st = StackCursor::from_ss(ctx);
    let target = check_target(ctx, ctx.cpu.cs(), insn.near_branch_target())?;
    st.push(ctx, rt, S, ret)?;
    st.commit(ctx);
    ctx.cpu.rip = target;
    Ok(Flow::Jump)
}

/// Near RET popping an `S`-byte return address.
fn ret<const S: u32>(ctx: &mut JitContext, rt: &mut Runtime, _: &Instruction) -> Exec {
    let mut st = StackCursor::from_ss(ctx);
    let target = st.pop(ctx, rt, S)?;
    let target = check_target(ctx, ctx.cpu.cs(), target)?;
    st.commit(ctx);
    ctx.cpu.rip = target;
    Ok(Flow::Jump)
}
