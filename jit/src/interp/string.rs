//! String instructions: MOVS, STOS, LODS, CMPS, SCAS, INS, OUTS with REP/REPE/REPNE
//! (SDM Vol. 1 7.3.9, Vol. 2B REP). A repeated instruction runs in one step, but each
//! iteration commits rCX/rSI/rDI only after its memory accesses succeeded, so a fault leaves
//! the registers at the faulting iteration and re-executing the instruction resumes it. Long
//! repetitions stop after [`ITERATIONS_PER_STEP`] iterations with rip still on the instruction
//! so the dispatcher can take interrupts, as hardware does between iterations.

use iced_x86::{Instruction, OpKind, Register};
use vcpu::state::{gpr, rflags};

use super::operand::{
    check_segment, gpr_write_sized, linear, mask, reg_read, reg_write, segment_is_flat,
};
use super::system::{check_io_permission, port_in, port_out};
use super::{Exec, Flow};
use crate::context::{tlb_index, JitContext, PAGE_MASK};
use crate::exception::Fault;
use crate::flags::kind;
use crate::mem;
use crate::runtime::Runtime;

/// Guest page size.
const PAGE_BYTES: u64 = 1 << crate::context::PAGE_SHIFT;

/// Iterations one `step` performs before yielding.
pub const ITERATIONS_PER_STEP: u32 = 1 << 16;

/// Per-instruction constants of a string instruction.
#[derive(Clone, Copy)]
struct Str {
    /// Element size in bytes.
    size: u32,
    /// Address size in bytes (SI/DI, ESI/EDI or RSI/RDI; also CX/ECX/RCX).
    asize: u32,
    /// Signed element step (DF).
    delta: u64,
}

impl Str {
    fn of(ctx: &JitContext, insn: &Instruction) -> Self {
        let mut asize = 4;
        for i in 0..insn.op_count().min(2) {
            asize = match insn.op_kind(i) {
                OpKind::MemorySegSI | OpKind::MemoryESDI => 2,
                OpKind::MemorySegESI | OpKind::MemoryESEDI => 4,
                OpKind::MemorySegRSI | OpKind::MemoryESRDI => 8,
                _ => continue,
            };
            break;
        }
        let size = (insn.memory_size().size() as u32).clamp(1, 8);
        let delta = if ctx.cpu.rflags & rflags::DF != 0 {
            0u64.wrapping_sub(u64::from(size))
        } else {
            u64::from(size)
        };
        Self { size, asize, delta }
    }
    fn si(&self, ctx: &JitContext, insn: &Instruction) -> u64 {
        linear(
            ctx,
            insn.memory_segment(),
            ctx.cpu.gpr[gpr::RSI] & mask(self.asize),
        )
    }
    fn di(&self, ctx: &JitContext) -> u64 {
        linear(ctx, Register::ES, ctx.cpu.gpr[gpr::RDI] & mask(self.asize))
    }
    /// The source element's linear address after the segment checks (`check_segment`).
    fn si_checked(&self, ctx: &JitContext, insn: &Instruction) -> Result<u64, Fault> {
        let off = ctx.cpu.gpr[gpr::RSI] & mask(self.asize);
        check_segment(ctx, insn.memory_segment(), off, self.size, false)?;
        Ok(self.si(ctx, insn))
    }
    /// The destination element's linear address (ES:rDI) after the segment checks.
    fn di_checked(&self, ctx: &JitContext, write: bool) -> Result<u64, Fault> {
        let off = ctx.cpu.gpr[gpr::RDI] & mask(self.asize);
        check_segment(ctx, Register::ES, off, self.size, write)?;
        Ok(self.di(ctx))
    }
    fn advance(&self, ctx: &mut JitContext, reg: usize) {
        let v = ctx.cpu.gpr[reg].wrapping_add(self.delta);
        gpr_write_sized(&mut ctx.cpu, reg, self.asize, v);
    }
}

fn accumulator(size: u32) -> Register {
    match size {
        1 => Register::AL,
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    }
}

/// Which repeat condition applies after each iteration.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// REP: until rCX is 0.
    Count,
    /// REPE/REPZ: also stop when ZF = 0.
    WhileEqual,
    /// REPNE/REPNZ: also stop when ZF = 1.
    WhileNotEqual,
}

/// Run `body` once, or as the REP prefix says. `body` performs one iteration and updates
/// rSI/rDI; it returns the ZF the iteration produced (for REPE/REPNE).
fn run(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    s: Str,
    compares: bool,
    bulk: Option<Bulk>,
    mut body: impl FnMut(&mut JitContext, &mut Runtime) -> Result<bool, Fault>,
) -> Exec {
    let repeat = if insn.has_repne_prefix() {
        if compares {
            Repeat::WhileNotEqual
        } else {
            Repeat::Count
        }
    } else if insn.has_rep_prefix() {
        if compares {
            Repeat::WhileEqual
        } else {
            Repeat::Count
        }
    } else {
        body(ctx, rt)?;
        return Ok(Flow::Next);
    };
    let m = mask(s.asize);
    let mut done = 0u64;
    while done < u64::from(ITERATIONS_PER_STEP) {
        let cx = ctx.cpu.gpr[gpr::RCX] & m;
        if cx == 0 {
            return Ok(Flow::Next);
        }
        let zf = body(ctx, rt)?;
        let cx = cx.wrapping_sub(1) & m;
        gpr_write_sized(&mut ctx.cpu, gpr::RCX, s.asize, cx);
        done += 1;
        let stop = cx == 0
            || match repeat {
                Repeat::Count => false,
                Repeat::WhileEqual => !zf,
                Repeat::WhileNotEqual => zf,
            };
        if stop {
            return Ok(Flow::Next);
        }
        if ctx.exit.exit_run != 0 {
            break;
        }
        if let Some(bulk) = bulk {
            let limit = u64::from(ITERATIONS_PER_STEP) - done.min(u64::from(ITERATIONS_PER_STEP));
            done += bulk(ctx, insn, &s, limit);
        }
    }
    // Not finished: stay on the instruction and let the dispatcher look around.
    ctx.cpu.rip = insn.ip();
    Ok(Flow::Jump)
}

/// A bulk continuation of REP MOVS/STOS: performs up to `limit` further iterations while
/// source and destination stay inside pages the TLB already maps (RAM, writable, no code),
/// updating rCX/rSI/rDI, and returns how many it did (0 when it cannot help).
type Bulk = fn(&mut JitContext, &Instruction, &Str, u64) -> u64;

/// How many whole elements fit before linear address `la` leaves its page and before the
/// offset register `off` wraps at the address size.
fn room(la: u64, off: u64, s: &Str) -> u64 {
    let size = u64::from(s.size);
    let in_page = (PAGE_BYTES - (la & !PAGE_MASK)) / size;
    let before_wrap = (mask(s.asize) - off) / size + 1;
    in_page.min(before_wrap)
}

/// The host address of `la` if the TLB maps its page for `write` (or reading).
fn host(ctx: &JitContext, la: u64, write: bool) -> Option<*mut u8> {
    let e = &ctx.tlb[tlb_index(la)];
    let tag = if write { e.write_tag } else { e.read_tag };
    (tag == la & PAGE_MASK).then(|| la.wrapping_add(e.addend) as *mut u8)
}

/// Iterations the bulk path may do now: ascending (DF = 0), count left, destination room.
fn bulk_count(ctx: &JitContext, s: &Str, limit: u64) -> u64 {
    // Only flat segments: the element-wise path checks limits and rights.
    if ctx.cpu.rflags & rflags::DF != 0 || !segment_is_flat(ctx, Register::ES, true) {
        return 0;
    }
    let cx = ctx.cpu.gpr[gpr::RCX] & mask(s.asize);
    let di = ctx.cpu.gpr[gpr::RDI] & mask(s.asize);
    cx.min(limit).min(room(s.di(ctx), di, s))
}

fn commit_bulk(ctx: &mut JitContext, s: &Str, n: u64, regs: &[usize]) {
    let bytes = n * u64::from(s.size);
    for &r in regs {
        let v = ctx.cpu.gpr[r].wrapping_add(bytes);
        gpr_write_sized(&mut ctx.cpu, r, s.asize, v);
    }
    let cx = ctx.cpu.gpr[gpr::RCX].wrapping_sub(n);
    gpr_write_sized(&mut ctx.cpu, gpr::RCX, s.asize, cx);
}

fn bulk_stos(ctx: &mut JitContext, _insn: &Instruction, s: &Str, limit: u64) -> u64 {
    let n = bulk_count(ctx, s, limit);
    let Some(dst) = host(ctx, s.di(ctx), true).filter(|_| n > 0) else {
        return 0;
    };
    let v = ctx.cpu.gpr[gpr::RAX].to_le_bytes();
    let size = s.size as usize;
    for i in 0..n as usize {
        // SAFETY: the TLB write tag maps the whole destination page to RAM and `n` elements
        // stay inside it (`room`).
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), dst.add(i * size), size) };
    }
    commit_bulk(ctx, s, n, &[gpr::RDI]);
    n
}

fn bulk_movs(ctx: &mut JitContext, insn: &Instruction, s: &Str, limit: u64) -> u64 {
    if !segment_is_flat(ctx, insn.memory_segment(), false) {
        return 0;
    }
    let src_la = s.si(ctx, insn);
    let si = ctx.cpu.gpr[gpr::RSI] & mask(s.asize);
    let n = bulk_count(ctx, s, limit).min(room(src_la, si, s));
    let (Some(dst), Some(src)) = (host(ctx, s.di(ctx), true), host(ctx, src_la, false)) else {
        return 0;
    };
    let size = s.size as usize;
    let mut element = [0u8; 8];
    for i in 0..n as usize {
        // SAFETY: both pages are mapped by TLB entries (RAM/ROM for the source, writable RAM
        // for the destination) and `n` elements stay inside both pages. Elements are copied one
        // at a time through a buffer, so overlapping moves behave as on hardware.
        unsafe {
            std::ptr::copy_nonoverlapping(src.add(i * size), element.as_mut_ptr(), size);
            std::ptr::copy_nonoverlapping(element.as_ptr(), dst.add(i * size), size);
        }
    }
    commit_bulk(ctx, s, n, &[gpr::RSI, gpr::RDI]);
    n
}

/// MOVSD/CMPSD with an XMM operand: the SSE2 instructions sharing the string mnemonics.
fn is_sse_form(insn: &Instruction) -> bool {
    (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Register)
}

pub(super) fn movs(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    if is_sse_form(insn) {
        return Err(Fault::ud()); // MOVSD xmm (SSE2) shares the mnemonic
    }
    let s = Str::of(ctx, insn);
    run(ctx, rt, insn, s, false, Some(bulk_movs), |ctx, rt| {
        let src = s.si_checked(ctx, insn)?;
        let v = mem::read(ctx, rt, src, s.size)?;
        let dst = s.di_checked(ctx, true)?;
        mem::write(ctx, rt, dst, s.size, v)?;
        s.advance(ctx, gpr::RSI);
        s.advance(ctx, gpr::RDI);
        Ok(false)
    })
}

pub(super) fn stos(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let s = Str::of(ctx, insn);
    let v = reg_read(&ctx.cpu, accumulator(s.size));
    run(ctx, rt, insn, s, false, Some(bulk_stos), |ctx, rt| {
        let dst = s.di_checked(ctx, true)?;
        mem::write(ctx, rt, dst, s.size, v)?;
        s.advance(ctx, gpr::RDI);
        Ok(false)
    })
}

pub(super) fn lods(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let s = Str::of(ctx, insn);
    run(ctx, rt, insn, s, false, None, |ctx, rt| {
        let src = s.si_checked(ctx, insn)?;
        let v = mem::read(ctx, rt, src, s.size)?;
        reg_write(&mut ctx.cpu, accumulator(s.size), v);
        s.advance(ctx, gpr::RSI);
        Ok(false)
    })
}

pub(super) fn cmps(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    if is_sse_form(insn) {
        return Err(Fault::ud()); // CMPSD xmm (SSE2) shares the mnemonic
    }
    let s = Str::of(ctx, insn);
    let m = mask(s.size);
    run(ctx, rt, insn, s, true, None, |ctx, rt| {
        let src = s.si_checked(ctx, insn)?;
        let a = mem::read(ctx, rt, src, s.size)?;
        let dst = s.di_checked(ctx, false)?;
        let b = mem::read(ctx, rt, dst, s.size)?;
        let r = a.wrapping_sub(b) & m;
        ctx.flags.set(kind::SUB, s.size, a, b, r, 0);
        s.advance(ctx, gpr::RSI);
        s.advance(ctx, gpr::RDI);
        Ok(r == 0)
    })
}

pub(super) fn scas(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let s = Str::of(ctx, insn);
    let m = mask(s.size);
    let a = reg_read(&ctx.cpu, accumulator(s.size));
    run(ctx, rt, insn, s, true, None, |ctx, rt| {
        let dst = s.di_checked(ctx, false)?;
        let b = mem::read(ctx, rt, dst, s.size)?;
        let r = a.wrapping_sub(b) & m;
        ctx.flags.set(kind::SUB, s.size, a, b, r, 0);
        s.advance(ctx, gpr::RDI);
        Ok(r == 0)
    })
}

pub(super) fn ins(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let s = Str::of(ctx, insn);
    let port = ctx.cpu.gpr[gpr::RDX] as u16;
    check_io_permission(ctx, rt, port, s.size)?;
    run(ctx, rt, insn, s, false, None, |ctx, rt| {
        let dst = s.di_checked(ctx, true)?;
        // Translate first so a fault does not swallow a port read.
        mem::linear_to_phys(ctx, rt, dst, mem::Access::Write)?;
        let v = port_in(rt, port, s.size);
        mem::write(ctx, rt, dst, s.size, v)?;
        s.advance(ctx, gpr::RDI);
        Ok(false)
    })
}

pub(super) fn outs(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let s = Str::of(ctx, insn);
    let port = ctx.cpu.gpr[gpr::RDX] as u16;
    check_io_permission(ctx, rt, port, s.size)?;
    run(ctx, rt, insn, s, false, None, |ctx, rt| {
        let src = s.si_checked(ctx, insn)?;
        let v = mem::read(ctx, rt, src, s.size)?;
        port_out(ctx, rt, port, s.size, v);
        s.advance(ctx, gpr::RSI);
        Ok(false)
    })
}
