//! Fast system calls: SYSCALL/SYSRET (SDM Vol. 2B, with the STAR, LSTAR and SFMASK MSRs) and
//! SYSENTER/SYSEXIT (with IA32_SYSENTER_CS/ESP/EIP). They load CS and SS with fixed flat
//! descriptors computed from the MSRs instead of reading the GDT (SDM Vol. 3A 5.8.7-5.8.8).
//! SYSCALL and SYSRET follow Intel: they exist only in 64-bit mode.

use vcpu::state::{cr0, efer, gpr, rflags};
use vcpu::{ExecMode, Segment};

use super::{Exec, Flow};
use crate::context::JitContext;
use crate::exception::Fault;
use crate::paging::is_canonical;
use crate::segment;

/// A flat 4 GiB segment as the fast system-call instructions load it: code (execute/read,
/// accessed; 64-bit when `long`, else 32-bit) or data (read/write, accessed, 32-bit stack).
fn flat_segment(selector: u16, code: bool, dpl: u8, long: bool) -> Segment {
    let typ = if code { 0xb } else { 0x3 };
    let size = if code && long {
        Segment::ATTR_L
    } else {
        Segment::ATTR_DB
    };
    Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        attr: typ
            | Segment::ATTR_S
            | (u16::from(dpl) << 5)
            | Segment::ATTR_P
            | Segment::ATTR_G
            | size,
    }
}

/// Install CS and SS for a privilege switch (the order keeps `cpl()` meaningful in between).
fn switch(ctx: &mut JitContext, cs: Segment, ss: Segment) {
    segment::set_cs(ctx, cs);
    segment::set_ss(ctx, ss);
}

/// #UD unless SYSCALL/SYSRET are usable: 64-bit mode with EFER.SCE.
fn require_syscall(ctx: &JitContext) -> Result<(), Fault> {
    if ctx.cpu.mode() != ExecMode::Long64 || ctx.cpu.efer & efer::SCE == 0 {
        return Err(Fault::ud());
    }
    Ok(())
}

/// SYSCALL: RCX = return RIP, R11 = RFLAGS, RIP = LSTAR, RFLAGS &= !SFMASK, CS = STAR[47:32]
/// (64-bit, DPL 0), SS = STAR[47:32] + 8.
pub(super) fn syscall(ctx: &mut JitContext, next_ip: u64) -> Exec {
    require_syscall(ctx)?;
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    let base = (ctx.cpu.star >> 32) as u16;
    ctx.cpu.gpr[gpr::RCX] = next_ip;
    ctx.cpu.gpr[11] = ctx.cpu.rflags & !rflags::RF;
    ctx.cpu.rflags &= !(ctx.cpu.sfmask | rflags::RF);
    ctx.cpu.rflags |= rflags::FIXED1;
    ctx.flags.set_eflags();
    let cs = flat_segment(base & !3, true, 0, true);
    let ss = flat_segment(base.wrapping_add(8) & !3, false, 0, false);
    switch(ctx, cs, ss);
    ctx.cpu.rip = ctx.cpu.lstar;
    Ok(Flow::Jump)
}

/// SYSRET: back to ring 3 at RCX (SYSRETQ, 64-bit CS = STAR[63:48] + 16) or ECX (SYSRETD,
/// compatibility-mode CS = STAR[63:48]); SS = STAR[63:48] + 8; RFLAGS from R11.
pub(super) fn sysret(ctx: &mut JitContext, to_64bit: bool) -> Exec {
    require_syscall(ctx)?;
    if ctx.cpu.cpl() != 0 {
        return Err(Fault::gp(0));
    }
    let rcx = ctx.cpu.gpr[gpr::RCX];
    if to_64bit && !is_canonical(rcx) {
        return Err(Fault::gp(0));
    }
    let base = (ctx.cpu.star >> 48) as u16;
    let (cs, rip) = if to_64bit {
        (flat_segment(base.wrapping_add(16) | 3, true, 3, true), rcx)
    } else {
        (flat_segment(base | 3, true, 3, false), rcx & 0xffff_ffff)
    };
    let ss = flat_segment(base.wrapping_add(8) | 3, false, 3, false);
    // RFLAGS from R11 (SDM Vol. 2B SYSRET): RF and VM cleared, bit 1 set.
    ctx.cpu.rflags = (ctx.cpu.gpr[11] & 0x3c_7fd7) | rflags::FIXED1;
    ctx.flags.set_eflags();
    switch(ctx, cs, ss);
    ctx.cpu.rip = rip;
    Ok(Flow::Jump)
}

/// SYSENTER: to ring 0 at IA32_SYSENTER_EIP with the stack at IA32_SYSENTER_ESP, CS =
/// IA32_SYSENTER_CS (64-bit in IA-32e mode), SS = CS + 8; VM, IF and RF cleared.
pub(super) fn sysenter(ctx: &mut JitContext) -> Exec {
    let sel = ctx.cpu.sysenter_cs as u16;
    if ctx.cpu.cr0 & cr0::PE == 0 || sel & !3 == 0 {
        return Err(Fault::gp(0));
    }
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    ctx.cpu.rflags &= !(rflags::VM | rflags::IF | rflags::RF);
    ctx.flags.set_eflags();
    let ia32e = ctx.cpu.efer & efer::LMA != 0;
    let cs = flat_segment(sel & !3, true, 0, ia32e);
    let ss = flat_segment(sel.wrapping_add(8) & !3, false, 0, false);
    switch(ctx, cs, ss);
    let width = if ia32e { u64::MAX } else { 0xffff_ffff };
    ctx.cpu.gpr[gpr::RSP] = ctx.cpu.sysenter_esp & width;
    ctx.cpu.rip = ctx.cpu.sysenter_eip & width;
    Ok(Flow::Jump)
}

/// SYSEXIT: to ring 3 at RDX/EDX with the stack at RCX/ECX; CS = IA32_SYSENTER_CS + 32
/// (SYSEXITQ, 64-bit) or + 16 (32-bit), SS = CS + 8.
pub(super) fn sysexit(ctx: &mut JitContext, to_64bit: bool) -> Exec {
    let sel = ctx.cpu.sysenter_cs as u16;
    if ctx.cpu.cr0 & cr0::PE == 0 || sel & !3 == 0 || ctx.cpu.cpl() != 0 {
        return Err(Fault::gp(0));
    }
    let (rdx, rcx) = (ctx.cpu.gpr[gpr::RDX], ctx.cpu.gpr[gpr::RCX]);
    if to_64bit && (!is_canonical(rdx) || !is_canonical(rcx)) {
        return Err(Fault::gp(0));
    }
    let (cs_sel, width) = if to_64bit {
        (sel.wrapping_add(32), u64::MAX)
    } else {
        (sel.wrapping_add(16), 0xffff_ffff)
    };
    let cs = flat_segment(cs_sel | 3, true, 3, to_64bit);
    let ss = flat_segment(cs_sel.wrapping_add(8) | 3, false, 3, false);
    switch(ctx, cs, ss);
    ctx.cpu.gpr[gpr::RSP] = rcx & width;
    ctx.cpu.rip = rdx & width;
    Ok(Flow::Jump)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcpu::{CpuState, SegmentIndex};

    fn long_mode_ctx() -> JitContext {
        let mut ctx = JitContext::new(CpuState::reset());
        ctx.cpu.cr0 |= cr0::PE | cr0::PG;
        ctx.cpu.efer = efer::LME | efer::LMA | efer::SCE;
        ctx.cpu.seg[SegmentIndex::Cs as usize] = flat_segment(0x10, true, 0, true);
        ctx.cpu.seg[SegmentIndex::Ss as usize] = flat_segment(0x18, false, 0, false);
        ctx.cpu.star = (0x20u64 << 48) | (0x10u64 << 32);
        ctx.cpu.lstar = 0xffff_8000_0000_1000;
        ctx.cpu.sfmask = rflags::IF | rflags::DF;
        ctx.flags.set_eflags();
        ctx
    }

    #[test]
    fn syscall_and_sysret_round_trip() {
        let mut ctx = long_mode_ctx();
        // Drop to ring 3 with SYSRETQ.
        ctx.cpu.gpr[gpr::RCX] = 0x40_1000;
        ctx.cpu.gpr[11] = rflags::IF | rflags::CF | rflags::RF;
        sysret(&mut ctx, true).unwrap();
        assert_eq!(ctx.cpu.cs().selector, 0x33);
        assert_eq!(ctx.cpu.seg[SegmentIndex::Ss as usize].selector, 0x2b);
        assert_eq!(ctx.cpu.cpl(), 3);
        assert_eq!(ctx.cpu.mode(), ExecMode::Long64);
        assert_eq!(ctx.cpu.rip, 0x40_1000);
        assert_eq!(ctx.cpu.rflags, rflags::IF | rflags::CF | rflags::FIXED1);
        // SYSRET at CPL 3 is #GP(0).
        assert_eq!(sysret(&mut ctx, true), Err(Fault::gp(0)));
        // SYSCALL back: RCX/R11 saved, SFMASK applied.
        syscall(&mut ctx, 0x40_1002).unwrap();
        assert_eq!(ctx.cpu.gpr[gpr::RCX], 0x40_1002);
        assert_eq!(ctx.cpu.gpr[11], rflags::IF | rflags::CF | rflags::FIXED1);
        assert_eq!(ctx.cpu.rflags, rflags::CF | rflags::FIXED1);
        assert_eq!((ctx.cpu.cs().selector, ctx.cpu.cpl()), (0x10, 0));
        assert_eq!(ctx.cpu.rip, 0xffff_8000_0000_1000);
        // SYSRETD goes to compatibility mode.
        sysret(&mut ctx, false).unwrap();
        assert_eq!(ctx.cpu.cs().selector, 0x23);
        assert_eq!(ctx.cpu.mode(), ExecMode::Protected32);
        // Without EFER.SCE both are #UD.
        let mut ctx = long_mode_ctx();
        ctx.cpu.efer &= !efer::SCE;
        assert_eq!(syscall(&mut ctx, 0), Err(Fault::ud()));
    }

    #[test]
    fn sysenter_and_sysexit_in_legacy_protected_mode() {
        let mut ctx = JitContext::new(CpuState::reset());
        ctx.cpu.cr0 |= cr0::PE;
        ctx.cpu.seg[SegmentIndex::Cs as usize] = flat_segment(0x1b, true, 3, false);
        ctx.cpu.seg[SegmentIndex::Ss as usize] = flat_segment(0x23, false, 3, false);
        assert_eq!(sysenter(&mut ctx), Err(Fault::gp(0)), "SYSENTER_CS = 0");
        ctx.cpu.sysenter_cs = 0x08;
        ctx.cpu.sysenter_esp = 0x9000;
        ctx.cpu.sysenter_eip = 0x2000;
        ctx.cpu.rflags |= rflags::IF;
        ctx.flags.set_eflags();
        sysenter(&mut ctx).unwrap();
        assert_eq!((ctx.cpu.cs().selector, ctx.cpu.cpl()), (0x08, 0));
        assert_eq!(ctx.cpu.seg[SegmentIndex::Ss as usize].selector, 0x10);
        assert_eq!((ctx.cpu.rip, ctx.cpu.gpr[gpr::RSP]), (0x2000, 0x9000));
        assert_eq!(ctx.cpu.rflags & rflags::IF, 0);
        ctx.cpu.gpr[gpr::RDX] = 0x1_0000_3000;
        ctx.cpu.gpr[gpr::RCX] = 0x8000;
        sysexit(&mut ctx, false).unwrap();
        assert_eq!((ctx.cpu.cs().selector, ctx.cpu.cpl()), (0x1b, 3));
        assert_eq!(ctx.cpu.seg[SegmentIndex::Ss as usize].selector, 0x23);
        assert_eq!((ctx.cpu.rip, ctx.cpu.gpr[gpr::RSP]), (0x3000, 0x8000));
    }
}
