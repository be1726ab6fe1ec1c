//! SSE through SSE4.2 in the interpreter: the XMM registers and MXCSR, kept in the FXSAVE image
//! `CpuState::fx` so that they move to KVM and into snapshots unchanged.
//!
//! This module decides whether an instruction belongs to the SIMD extensions ([`execute`]),
//! applies the checks every SSE instruction shares (SDM Vol. 3A 13.1 and 2.5; Vol. 2 per
//! instruction, "SIMD Floating-Point Exceptions" and Table 2-21 "Type 4" etc.: CR0.EM or
//! CR4.OSFXSR clear -> #UD, CR0.TS -> #NM, a misaligned 16-byte operand -> #GP(0)), and reads and
//! writes XMM operands through the interpreter's own effective-address and memory helpers.
//! The instruction groups live in submodules: moves ([`data`]), packed integers ([`int`]),
//! floating point ([`fp`]), conversions ([`convert`]), state save/restore ([`state`]) and the
//! SSE3/SSSE3/SSE4 additions ([`ext`]), and MMX with the SSE forms on MM registers ([`mmx`]).

mod convert;
mod data;
mod ext;
mod fp;
mod int;
mod lanes;
mod mmx;
pub mod state;
#[cfg(test)]
mod tests;

use iced_x86::{EncodingKind, Instruction, Mnemonic as M, OpKind, Register};
use vcpu::state::cr0;
use vcpu::FxArea;

use super::operand::{mem_linear, mem_linear_plus};
use super::Exec;
use crate::context::JitContext;
use crate::exception::{Fault, NM_VECTOR};
use crate::mem::{self, Access};
use crate::runtime::Runtime;

/// CR4.OSFXSR: the OS supports FXSAVE/FXRSTOR and SSE (SDM Vol. 3A 2.5).
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.OSXMMEXCPT: the OS handles #XM; otherwise unmasked SIMD exceptions raise #UD.
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// CR4.OSXSAVE: XSAVE/XRSTOR/XGETBV/XSETBV are enabled (SDM Vol. 3A 2.5).
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// #XM, the SIMD floating-point exception (SDM Vol. 3A 6.15, Interrupt 19).
pub const XM_VECTOR: u8 = 19;

/// CPUID.01H:EDX bits of what this module implements (SDM Vol. 2A CPUID, Table 3-11).
pub mod cpuid_edx {
    /// CLFLUSH.
    pub const CLFSH: u32 = 1 << 19;
    pub const MMX: u32 = 1 << 23;
    /// FXSAVE/FXRSTOR and CR4.OSFXSR.
    pub const FXSR: u32 = 1 << 24;
    pub const SSE: u32 = 1 << 25;
    pub const SSE2: u32 = 1 << 26;
    pub const ALL: u32 = CLFSH | MMX | FXSR | SSE | SSE2;
}

/// CPUID.01H:ECX bits of what this module implements (SDM Vol. 2A CPUID, Table 3-10).
pub mod cpuid_ecx {
    pub const SSE3: u32 = 1 << 0;
    pub const SSSE3: u32 = 1 << 9;
    pub const SSE4_1: u32 = 1 << 19;
    pub const SSE4_2: u32 = 1 << 20;
    pub const POPCNT: u32 = 1 << 23;
    pub const XSAVE: u32 = 1 << 26;
    /// Mirrors CR4.OSXSAVE.
    pub const OSXSAVE: u32 = 1 << 27;
    pub const ALL: u32 = SSE3 | SSSE3 | SSE4_1 | SSE4_2 | POPCNT | XSAVE;
}

/// CPUID.01H:EBX[15:8]: CLFLUSH line size in 8-byte units (64 bytes).
pub const CPUID_CLFLUSH_LINE: u32 = 8 << 8;

/// The CPUID.01H ECX value, OSXSAVE reflecting CR4.
pub fn cpuid1_ecx(cr4: u64) -> u32 {
    let os = if cr4 & CR4_OSXSAVE != 0 {
        cpuid_ecx::OSXSAVE
    } else {
        0
    };
    cpuid_ecx::ALL | os
}

/// Whether `insn` has an XMM register operand (to tell SSE MOVSD/CMPSD from the string ones).
pub fn uses_xmm(insn: &Instruction) -> bool {
    (0..insn.op_count())
        .any(|i| insn.op_kind(i) == OpKind::Register && insn.op_register(i).is_xmm())
}

/// Execute `insn` if it belongs to SSE..SSE4.2, FXSAVE/XSAVE or POPCNT/CRC32; `None` when it is
/// none of these (the caller raises #UD).
pub(super) fn execute(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Option<Exec> {
    if insn.encoding() != EncodingKind::Legacy {
        return None;
    }
    if mmx::is_mmx(insn) {
        return Some(mmx::execute(ctx, rt, insn));
    }
    let m = insn.mnemonic();
    if let Some(r) = state::execute(ctx, rt, insn, m) {
        return Some(r);
    }
    if let Some(r) = ext::execute_no_simd_state(ctx, rt, insn, m) {
        return Some(r);
    }
    let group: fn(&mut JitContext, &mut Runtime, &Instruction, M) -> Option<Exec> =
        if data::handles(m) {
            data::execute
        } else if int::handles(m) {
            int::execute
        } else if fp::handles(m) {
            fp::execute
        } else if convert::handles(m) {
            convert::execute
        } else if ext::handles(m) {
            ext::execute
        } else {
            return None;
        };
    if let Err(f) = check_available(ctx, insn) {
        return Some(Err(f));
    }
    group(ctx, rt, insn, m)
}

/// The checks common to SSE instructions (SDM Vol. 2A 2.5.1, Table 2-21 and Vol. 3A 13.1.4):
/// LOCK -> #UD, CR0.EM -> #UD, CR4.OSFXSR clear -> #UD, then CR0.TS -> #NM.
pub(crate) fn check_available(ctx: &JitContext, insn: &Instruction) -> Result<(), Fault> {
    if insn.has_lock_prefix() || ctx.cpu.cr0 & cr0::EM != 0 || ctx.cpu.cr4 & CR4_OSFXSR == 0 {
        return Err(Fault::ud());
    }
    if ctx.cpu.cr0 & cr0::TS != 0 {
        return Err(Fault::new(NM_VECTOR));
    }
    Ok(())
}

/// XMM register number of an iced register (XMM0..XMM15; REX-extended ones included).
#[inline]
pub(crate) fn xmm_num(r: Register) -> usize {
    r.number() & 15
}

#[inline]
pub(crate) fn xmm(ctx: &JitContext, n: usize) -> u128 {
    let o = FxArea::XMM0 + 16 * n;
    u128::from_le_bytes(ctx.cpu.fx.0[o..o + 16].try_into().unwrap_or([0; 16]))
}

#[inline]
pub(crate) fn set_xmm(ctx: &mut JitContext, n: usize, v: u128) {
    let o = FxArea::XMM0 + 16 * n;
    ctx.cpu.fx.0[o..o + 16].copy_from_slice(&v.to_le_bytes());
}

#[inline]
pub(crate) fn mxcsr(ctx: &JitContext) -> u32 {
    ctx.cpu.fx.u32_at(FxArea::MXCSR)
}

#[inline]
pub(crate) fn set_mxcsr(ctx: &mut JitContext, v: u32) {
    ctx.cpu.fx.0[FxArea::MXCSR..FxArea::MXCSR + 4].copy_from_slice(&v.to_le_bytes());
}

/// Whether a 16-byte memory operand of this instruction must be 16-byte aligned: all legacy SSE
/// m128 operands are, except those of the explicitly unaligned instructions (SDM Vol. 1 11.6.7).
fn needs_alignment(m: M) -> bool {
    !matches!(
        m,
        M::Movups
            | M::Movupd
            | M::Movdqu
            | M::Lddqu
            | M::Pcmpestri
            | M::Pcmpestri64
            | M::Pcmpestrm
            | M::Pcmpestrm64
            | M::Pcmpistri
            | M::Pcmpistrm
    )
}

/// Read `size` bytes (up to 16) at linear address `la`, zero-extended.
pub(crate) fn read_mem(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    size: u32,
) -> Result<u128, Fault> {
    let wrap = mem::linear_mask(ctx);
    match size {
        16 => {
            let lo = mem::read(ctx, rt, la, 8)?;
            let hi = mem::read(ctx, rt, la.wrapping_add(8) & wrap, 8)?;
            Ok(u128::from(lo) | (u128::from(hi) << 64))
        }
        1 | 2 | 4 | 8 => Ok(u128::from(mem::read(ctx, rt, la, size)?)),
        _ => Err(Fault::ud()),
    }
}

/// Write the low `size` bytes (up to 16) of `v` at `la`. A 16-byte store checks that both ends
/// are writable before storing anything, so a page fault leaves memory unchanged.
pub(crate) fn write_mem(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    size: u32,
    v: u128,
) -> Result<(), Fault> {
    let wrap = mem::linear_mask(ctx);
    match size {
        16 => {
            probe_write(ctx, rt, la, 16)?;
            mem::write(ctx, rt, la, 8, v as u64)?;
            mem::write(ctx, rt, la.wrapping_add(8) & wrap, 8, (v >> 64) as u64)
        }
        1 | 2 | 4 | 8 => mem::write(ctx, rt, la, size, v as u64),
        _ => Err(Fault::ud()),
    }
}

/// Make sure the first and last byte of `len` bytes at `la` may be written (at most two pages
/// for the sizes used here), raising the page fault a store would.
pub(crate) fn probe_write(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    len: u64,
) -> Result<(), Fault> {
    let wrap = mem::linear_mask(ctx);
    let last = la.wrapping_add(len - 1) & wrap;
    if last >> crate::context::PAGE_SHIFT != la >> crate::context::PAGE_SHIFT {
        mem::linear_to_phys(ctx, rt, la, Access::Write)?;
        // The fault address is the first byte on the second page.
        let second = last & !((1u64 << crate::context::PAGE_SHIFT) - 1);
        mem::linear_to_phys(ctx, rt, second, Access::Write)?;
    }
    Ok(())
}

/// The linear address of the memory operand, #GP(0) when it must be `align`-byte aligned and is
/// not.
pub(crate) fn mem_addr(ctx: &JitContext, insn: &Instruction, align: u64) -> Result<u64, Fault> {
    let la = mem_linear(ctx, insn);
    if align > 1 && la & (align - 1) != 0 {
        return Err(Fault::gp(0));
    }
    Ok(la)
}

/// Byte size of operand `i`: an XMM register is 16, a general register its width, memory the
/// instruction's memory size.
pub(crate) fn opnd_size(insn: &Instruction, i: u32) -> u32 {
    match insn.op_kind(i) {
        OpKind::Register => {
            let r = insn.op_register(i);
            if r.is_xmm() {
                16
            } else {
                r.size() as u32
            }
        }
        OpKind::Memory => insn.memory_size().size() as u32,
        _ => 1,
    }
}

/// Read operand `i`: an XMM or general register, or memory of the instruction's memory size
/// (zero-extended to 128 bits; 16-byte operands checked for alignment).
pub(crate) fn read(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    i: u32,
) -> Result<u128, Fault> {
    match insn.op_kind(i) {
        OpKind::Register => {
            let r = insn.op_register(i);
            if r.is_xmm() {
                Ok(xmm(ctx, xmm_num(r)))
            } else {
                Ok(u128::from(super::operand::reg_read(&ctx.cpu, r)))
            }
        }
        OpKind::Memory => {
            let size = insn.memory_size().size() as u32;
            let align = if size == 16 && needs_alignment(insn.mnemonic()) {
                16
            } else {
                1
            };
            super::operand::check_mem_operand(ctx, insn, 0, size, false)?;
            let la = mem_addr(ctx, insn, align)?;
            read_mem(ctx, rt, la, size)
        }
        _ => Ok(u128::from(insn.immediate(i))),
    }
}

/// Write operand `i`: a whole XMM register, a general register (32-bit writes zero-extend) or
/// memory of the instruction's memory size.
pub(crate) fn write(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    i: u32,
    v: u128,
) -> Result<(), Fault> {
    match insn.op_kind(i) {
        OpKind::Register => {
            let r = insn.op_register(i);
            if r.is_xmm() {
                set_xmm(ctx, xmm_num(r), v);
            } else {
                super::operand::reg_write(&mut ctx.cpu, r, v as u64);
            }
            Ok(())
        }
        OpKind::Memory => {
            let size = insn.memory_size().size() as u32;
            let align = if size == 16 && needs_alignment(insn.mnemonic()) {
                16
            } else {
                1
            };
            super::operand::check_mem_operand(ctx, insn, 0, size, true)?;
            let la = mem_addr(ctx, insn, align)?;
            write_mem(ctx, rt, la, size, v)
        }
        _ => Err(Fault::ud()),
    }
}

/// The XMM register number of operand `i`, which must be a register.
pub(crate) fn xmm_of(insn: &Instruction, i: u32) -> usize {
    xmm_num(insn.op_register(i))
}

/// The last immediate byte of the instruction (shuffle controls, predicates, shift counts).
pub(crate) fn imm8(insn: &Instruction) -> u8 {
    let n = insn.op_count();
    (0..n)
        .rev()
        .find(|&i| matches!(insn.op_kind(i), OpKind::Immediate8 | OpKind::Immediate8_2nd))
        .map_or(0, |i| insn.immediate(i) as u8)
}

/// Linear address `extra` bytes past the memory operand (save areas).
pub(crate) fn mem_plus(ctx: &JitContext, insn: &Instruction, extra: u64) -> u64 {
    mem_linear_plus(ctx, insn, extra)
}
