//! The Rust functions generated code calls.
//!
//! All take the `*mut JitContext` the block was entered with; `ctx.runtime` points to the
//! [`Runtime`] for the duration of `JitVcpu::run`. Generated code has stored its cached
//! registers, the lazy flags and `cpu.rip` (the current instruction) before calling, so the
//! helpers see exact architectural state and faults are precise. A fault is delivered here
//! (through the IDT/IVT, leaving `cpu.rip` at the handler) and reported by returning 1, after
//! which generated code leaves the block without touching guest state.

use iced_x86::Instruction;

use crate::context::JitContext;
use crate::exception;
use crate::flags::condition;
use crate::interp::{self, Step};
use crate::mem;
use crate::runtime::Runtime;

use super::HelperTable;

/// The helper addresses to bake into generated code.
pub fn table() -> HelperTable {
    HelperTable {
        interp: jit_interp as *const () as usize,
        read: jit_read as *const () as usize,
        write: jit_write as *const () as usize,
        condition: jit_condition as *const () as usize,
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

/// Split the packed `(seg << 8) | size` argument of the memory helpers.
fn unpack(seg_size: u32) -> (usize, u32) {
    (((seg_size >> 8) as usize).min(5), seg_size & 0xff)
}

/// The linear address of `seg:ea`, or `None` when the access breaks the segment limit (SDM
/// Vol. 3A 5.3; the inline path checks the same condition). 64-bit mode has no limits and only
/// FS/GS have a base (SDM Vol. 3A 3.4.4).
fn linear(ctx: &JitContext, seg: usize, ea: u64, size: u32) -> Option<u64> {
    const FS: usize = 4;
    if ctx.cpu.mode() == vcpu::ExecMode::Long64 {
        let base = if seg >= FS { ctx.cpu.seg[seg].base } else { 0 };
        let la = base.wrapping_add(ea);
        // A non-canonical address faults (#GP, or #SS for the stack): the interpreter decides.
        return crate::paging::is_canonical(la).then_some(la);
    }
    let s = &ctx.cpu.seg[seg];
    if ea + u64::from(size) - 1 > u64::from(s.limit) {
        return None;
    }
    Some(s.base.wrapping_add(ea) & mem::linear_mask(ctx))
}

/// Read `size` bytes at `seg:ea` into `*out`. Returns 1 when the block must end: a fault was
/// delivered, or the access broke the segment limit and the interpreter ran the instruction.
///
/// # Safety
/// Called from generated code with a valid context, a pointer to the live current instruction,
/// and `out` pointing to 8 writable bytes.
pub unsafe extern "C" fn jit_read(
    ctx: *mut JitContext,
    insn: *const Instruction,
    ea: u64,
    seg_size: u32,
    out: *mut u64,
) -> u32 {
    // SAFETY: see `parts`.
    let (ctx, rt) = unsafe { parts(ctx) };
    let (seg, size) = unpack(seg_size);
    let Some(la) = linear(ctx, seg, ea, size) else {
        // SAFETY: `insn` points into the block's boxed instructions (see `jit_interp`).
        interp::step(ctx, rt, unsafe { &*insn });
        return 1;
    };
    match mem::read(ctx, rt, la, size) {
        Ok(v) => {
            // SAFETY: `out` is the block's 8-byte stack slot.
            unsafe { out.write(v) };
            0
        }
        Err(f) => {
            exception::deliver_fault(ctx, rt, f);
            1
        }
    }
}

/// Write `size` bytes of `value` at `seg:ea`. Returns 1 when the block must end now (as for
/// [`jit_read`]). A write to a code page or a device request sets `exit_block`, which generated
/// code checks after the instruction.
///
/// # Safety
/// Called from generated code with a valid context and a pointer to the live current
/// instruction.
pub unsafe extern "C" fn jit_write(
    ctx: *mut JitContext,
    insn: *const Instruction,
    ea: u64,
    seg_size: u32,
    value: u64,
) -> u32 {
    // SAFETY: see `parts`.
    let (ctx, rt) = unsafe { parts(ctx) };
    let (seg, size) = unpack(seg_size);
    let Some(la) = linear(ctx, seg, ea, size) else {
        // SAFETY: `insn` points into the block's boxed instructions (see `jit_interp`).
        interp::step(ctx, rt, unsafe { &*insn });
        return 1;
    };
    match mem::write(ctx, rt, la, size, value) {
        Ok(()) => 0,
        Err(f) => {
            exception::deliver_fault(ctx, rt, f);
            1
        }
    }
}

/// Condition code `cc` (0..15) evaluated over the stored lazy flags. Returns 0 or 1.
///
/// # Safety
/// Called from generated code with a valid context.
pub unsafe extern "C" fn jit_condition(ctx: *mut JitContext, cc: u32) -> u32 {
    // SAFETY: only the plain-data part of the context is read.
    let ctx = unsafe { &*ctx };
    u32::from(condition(cc as u8, ctx.flags.status(ctx.cpu.rflags)))
}
