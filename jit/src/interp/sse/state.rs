//! Saving and restoring the x87/SSE state: LDMXCSR/STMXCSR, FXSAVE/FXRSTOR (SDM Vol. 1 10.5,
//! Vol. 2A FXSAVE, Tables 10-2/10-3) and the XSAVE feature set for the x87 and SSE components
//! (SDM Vol. 1 13: XGETBV/XSETBV, standard-form XSAVE/XRSTOR, CPUID leaf 0DH).
//!
//! The x87 part of an image is copied to and from `CpuState::fx` as it stands (emu does not
//! execute x87 instructions), so an operating system's context switches keep whatever state
//! KVM or a snapshot left there.

use iced_x86::{Instruction, Mnemonic as M};
use vcpu::state::{cr0, gpr, ExecMode};
use vcpu::FxArea;

use super::fp::mx;
use super::{
    check_available, mem_addr, mem_plus, mxcsr, read_mem, set_mxcsr, CR4_OSFXSR, CR4_OSXSAVE,
};
use crate::context::JitContext;
use crate::exception::{Fault, NM_VECTOR};
use crate::interp::{Exec, Flow};
use crate::runtime::Runtime;

/// XCR0 bits (SDM Vol. 1 13.3): x87 state and SSE state, the components emu supports.
pub const XCR0_X87: u64 = 1 << 0;
pub const XCR0_SSE: u64 = 1 << 1;
pub const XCR0_SUPPORTED: u64 = XCR0_X87 | XCR0_SSE;
/// Offset of the XSAVE header in the XSAVE area (SDM Vol. 1 13.4.2).
pub const XSAVE_HEADER: u64 = 512;
/// Size of an XSAVE area holding the legacy region and the header only.
pub const XSAVE_AREA_SIZE: u32 = 576;

/// Bytes of the legacy region holding the x87 control/status fields (FCW..FDS).
const X87_HEADER: std::ops::Range<usize> = 0..24;
/// The x87 data registers ST0-ST7 (16 bytes each).
const X87_REGS: std::ops::Range<usize> = 32..160;

/// CPUID leaf 0DH (SDM Vol. 2A CPUID, "Processor Extended State Enumeration").
pub fn cpuid_leaf_d(subleaf: u32) -> [u32; 4] {
    match subleaf {
        0 => [XCR0_SUPPORTED as u32, XSAVE_AREA_SIZE, XSAVE_AREA_SIZE, 0],
        _ => [0; 4],
    }
}

pub(super) fn execute(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    m: M,
) -> Option<Exec> {
    Some(match m {
        M::Ldmxcsr | M::Stmxcsr => mxcsr_access(ctx, rt, insn, m),
        M::Fxsave | M::Fxsave64 | M::Fxrstor | M::Fxrstor64 => fx(ctx, rt, insn, m),
        M::Xsave | M::Xsave64 | M::Xrstor | M::Xrstor64 => xsave(ctx, rt, insn, m),
        M::Xgetbv | M::Xsetbv => xcr(ctx, m),
        _ => return None,
    })
}

fn mxcsr_access(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction, m: M) -> Exec {
    check_available(ctx, insn)?;
    let la = mem_addr(ctx, insn, 1)?;
    if m == M::Ldmxcsr {
        let v = crate::mem::read(ctx, rt, la, 4)? as u32;
        if v & !mx::WRITABLE != 0 {
            return Err(Fault::gp(0));
        }
        set_mxcsr(ctx, v);
    } else {
        let v = mxcsr(ctx);
        crate::mem::write(ctx, rt, la, 4, u64::from(v))?;
    }
    Ok(Flow::Next)
}

/// The number of XMM registers saved: 16 in 64-bit mode, 8 otherwise.
fn xmm_count(ctx: &JitContext) -> usize {
    if ctx.cpu.mode() == ExecMode::Long64 {
        16
    } else {
        8
    }
}

/// Read `len` bytes (a multiple of 8) at `la`.
fn read_bytes(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    len: usize,
) -> Result<Vec<u8>, Fault> {
    let wrap = crate::mem::linear_mask(ctx);
    let mut out = Vec::with_capacity(len);
    for i in (0..len).step_by(8) {
        let v = read_mem(ctx, rt, la.wrapping_add(i as u64) & wrap, 8)? as u64;
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Write the byte ranges `parts` of `image` to the area at `la` (8-byte granules).
fn write_parts(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    image: &[u8],
    parts: &[std::ops::Range<usize>],
) -> Result<(), Fault> {
    let wrap = crate::mem::linear_mask(ctx);
    for r in parts {
        for i in r.clone().step_by(8) {
            let v = u64::from_le_bytes(image[i..i + 8].try_into().unwrap_or([0; 8]));
            crate::mem::write(ctx, rt, la.wrapping_add(i as u64) & wrap, 8, v)?;
        }
    }
    Ok(())
}

fn fx(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction, m: M) -> Exec {
    if insn.has_lock_prefix() {
        return Err(Fault::ud());
    }
    if ctx.cpu.cr0 & (cr0::EM | cr0::TS) != 0 {
        return Err(Fault::new(NM_VECTOR));
    }
    let la = mem_addr(ctx, insn, 16)?;
    let sse = ctx.cpu.cr4 & CR4_OSFXSR != 0;
    let xmm_end = FxArea::XMM0 + 16 * xmm_count(ctx);
    if matches!(m, M::Fxsave | M::Fxsave64) {
        super::probe_write(ctx, rt, la, 512)?;
        let image = ctx.cpu.fx.0;
        let mut parts = vec![0..32usize, X87_REGS];
        if !sse {
            // Without CR4.OSFXSR the MXCSR and XMM registers are not saved (as QEMU does; the
            // SDM leaves it implementation dependent).
            parts[0] = 0..24;
        } else {
            parts.push(FxArea::XMM0..xmm_end);
        }
        write_parts(ctx, rt, la, &image, &parts)?;
    } else {
        let img = read_bytes(ctx, rt, la, xmm_end)?;
        let new_mxcsr = u32::from_le_bytes(img[24..28].try_into().unwrap_or([0; 4]));
        if sse && new_mxcsr & !mx::WRITABLE != 0 {
            return Err(Fault::gp(0));
        }
        let fx = &mut ctx.cpu.fx.0;
        fx[X87_HEADER].copy_from_slice(&img[X87_HEADER]);
        fx[X87_REGS].copy_from_slice(&img[X87_REGS]);
        if sse {
            fx[FxArea::XMM0..xmm_end].copy_from_slice(&img[FxArea::XMM0..xmm_end]);
            set_mxcsr(ctx, new_mxcsr);
        }
    }
    Ok(Flow::Next)
}

fn xsave(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction, m: M) -> Exec {
    if insn.has_lock_prefix() || ctx.cpu.cr4 & CR4_OSXSAVE == 0 {
        return Err(Fault::ud());
    }
    if ctx.cpu.cr0 & cr0::TS != 0 {
        return Err(Fault::new(NM_VECTOR));
    }
    let la = mem_addr(ctx, insn, 64)?;
    let edx_eax =
        ((ctx.cpu.gpr[gpr::RDX] & 0xffff_ffff) << 32) | (ctx.cpu.gpr[gpr::RAX] & 0xffff_ffff);
    let rfbm = ctx.cpu.xcr0 & edx_eax;
    let xmm_end = FxArea::XMM0 + 16 * xmm_count(ctx);
    let header = mem_plus(ctx, insn, XSAVE_HEADER);
    if matches!(m, M::Xsave | M::Xsave64) {
        super::probe_write(ctx, rt, la, u64::from(XSAVE_AREA_SIZE))?;
        let image = ctx.cpu.fx.0;
        let mut parts = Vec::new();
        if rfbm & XCR0_X87 != 0 {
            parts.push(X87_HEADER);
            parts.push(X87_REGS);
        }
        if rfbm & XCR0_SSE != 0 {
            parts.push(24..32);
            parts.push(FxArea::XMM0..xmm_end);
        }
        let old_bv = read_mem(ctx, rt, header, 8)? as u64;
        write_parts(ctx, rt, la, &image, &parts)?;
        // Both components count as in use (XINUSE), as on QEMU.
        let bv = (old_bv & !rfbm) | (rfbm & XCR0_SUPPORTED);
        crate::mem::write(ctx, rt, header, 8, bv)?;
        return Ok(Flow::Next);
    }
    // Standard-form XRSTOR (SDM Vol. 1 13.8.1): check the header first.
    let hdr = read_bytes(ctx, rt, header, 24)?;
    let xstate_bv = u64::from_le_bytes(hdr[0..8].try_into().unwrap_or([0; 8]));
    if xstate_bv & !ctx.cpu.xcr0 != 0 || hdr[8..24].iter().any(|&b| b != 0) {
        return Err(Fault::gp(0));
    }
    let img = read_bytes(ctx, rt, la, xmm_end)?;
    let new_mxcsr = u32::from_le_bytes(img[24..28].try_into().unwrap_or([0; 4]));
    if rfbm & XCR0_SSE != 0 && new_mxcsr & !mx::WRITABLE != 0 {
        return Err(Fault::gp(0));
    }
    if rfbm & XCR0_X87 != 0 {
        let fx = &mut ctx.cpu.fx.0;
        if xstate_bv & XCR0_X87 != 0 {
            fx[X87_HEADER].copy_from_slice(&img[X87_HEADER]);
            fx[X87_REGS].copy_from_slice(&img[X87_REGS]);
        } else {
            // The x87 initial state: FCW 037FH, everything else zero, all registers empty.
            let init = FxArea::reset();
            fx[X87_HEADER].copy_from_slice(&init.0[X87_HEADER]);
            fx[X87_REGS].fill(0);
        }
    }
    if rfbm & XCR0_SSE != 0 {
        let fx = &mut ctx.cpu.fx.0;
        if xstate_bv & XCR0_SSE != 0 {
            fx[FxArea::XMM0..xmm_end].copy_from_slice(&img[FxArea::XMM0..xmm_end]);
        } else {
            fx[FxArea::XMM0..xmm_end].fill(0);
        }
        set_mxcsr(ctx, new_mxcsr);
    }
    Ok(Flow::Next)
}

fn xcr(ctx: &mut JitContext, m: M) -> Exec {
    if ctx.cpu.cr4 & CR4_OSXSAVE == 0 {
        return Err(Fault::ud());
    }
    let ecx = ctx.cpu.gpr[gpr::RCX] as u32;
    if ecx != 0 {
        return Err(Fault::gp(0));
    }
    if m == M::Xgetbv {
        ctx.cpu.gpr[gpr::RAX] = ctx.cpu.xcr0 & 0xffff_ffff;
        ctx.cpu.gpr[gpr::RDX] = ctx.cpu.xcr0 >> 32;
        return Ok(Flow::Next);
    }
    if ctx.cpu.cpl() != 0 {
        return Err(Fault::gp(0));
    }
    let v = ((ctx.cpu.gpr[gpr::RDX] & 0xffff_ffff) << 32) | (ctx.cpu.gpr[gpr::RAX] & 0xffff_ffff);
    if v & XCR0_X87 == 0 || v & !XCR0_SUPPORTED != 0 {
        return Err(Fault::gp(0));
    }
    ctx.cpu.xcr0 = v;
    Ok(Flow::Next)
}
