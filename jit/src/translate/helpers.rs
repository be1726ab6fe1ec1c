//! The Rust functions generated code calls.
//!
//! All take the `*mut JitContext` the block was entered with; `ctx.runtime` points to the
//! [`Runtime`] for the duration of `JitVcpu::run`. Generated code has stored its cached
//! registers, the lazy flags and `cpu.rip` (the current instruction) before calling, so the
//! helpers see exact architectural state and faults are precise. A fault is delivered here
//! (through the IDT/IVT, leaving `cpu.rip` at the handler) and reported by returning 1, after
//! which generated code leaves the block without touching guest state. Memory accesses that miss
//! the inline TLB path leave the block and have the dispatcher run their whole instruction
//! through [`jit_resume_interp`].

use iced_x86::Instruction;

use crate::context::JitContext;
use crate::interp::{self, Step};
use crate::runtime::Runtime;

use super::HelperTable;

/// The helper addresses to bake into generated code.
pub fn table() -> HelperTable {
    HelperTable {
        interp: jit_interp as *const () as usize,
        condition: jit_condition as *const () as usize,
        resume: jit_resume_interp as *const () as usize,
    }
}

/// # Safety
/// `ctx` must be the context the dispatcher entered the block with; its runtime pointer valid.
unsafe fn parts<'a>(ctx: *mut JitContext) -> (&'a mut JitContext, &'a mut Runtime) {
    // SAFETY: the dispatcher passes a unique `&mut JitContext` to the block and sets `runtime`
    // to a `&mut Runtime` it holds for the whole call; the two do not overlap.
    unsafe {
        let ctx = &mut *ctx;
        let rt = &mut *ctx.runtime;
        (ctx, rt)
    }
}

/// Interpret one instruction. Returns 1 when the block must end (branch, fault, exit request,
/// or a write that asked for the block to end), 0 to continue with the next instruction.
///
/// # Safety
/// Called from generated code with a valid context and a pointer to a live `Instruction`.
pub unsafe extern "C" fn jit_interp(ctx: *mut JitContext, insn: *const Instruction) -> u32 {
    // SAFETY: see `parts`; `insn` points into the block's boxed instruction slice, which lives
    // as long as the block's code.
    let (ctx, rt, insn) = unsafe {
        let (c, r) = parts(ctx);
        (c, r, &*insn)
    };
    super::fallback_stats::record(insn);
    match interp::step(ctx, rt, insn) {
        Step::Continue if ctx.exit.exit_block == 0 && ctx.exit.exit_run == 0 => 0,
        _ => 1,
    }
}

/// Interpret the instruction at `ctx.resume_insn` (clearing it) and count it; return 0 (back
/// to the dispatcher). Generated code returns this function's address after storing its
/// registers, flags, `cpu.rip` (that instruction's ip) and the count of the instructions before
/// it: the dispatcher then calls it (`JitVcpu::execute`).
///
/// # Safety
/// Called as a block function with a valid context whose `resume_insn` points to a live
/// `Instruction` (the block's, kept as long as its code).
pub unsafe extern "C" fn jit_resume_interp(ctx: *mut JitContext) -> u64 {
    // SAFETY: see `parts`; generated code stored a pointer into its block's instruction slice.
    let (ctx, rt, insn) = unsafe {
        let (c, r) = parts(ctx);
        let insn = std::mem::take(&mut c.resume_insn) as usize as *const Instruction;
        (c, r, &*insn)
    };
    super::fallback_stats::record(insn);
    interp::step(ctx, rt, insn);
    ctx.icount += 1;
    0
}

/// Condition code `cc` (0..15) evaluated over the stored lazy flags. Returns 0 or 1.
///
/// # Safety
/// Called from generated code with a valid context.
pub unsafe extern "C" fn jit_condition(ctx: *mut JitContext, cc: u32) -> u32 {
    // SAFETY: only the plain-data part of the context is read.
    let ctx = unsafe { &*ctx };
    u32::from(crate::interp::cond::holds(
        &ctx.flags,
        cc as u8,
        ctx.cpu.rflags,
    ))
}
