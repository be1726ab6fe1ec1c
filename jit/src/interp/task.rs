//! Hardware task switching (SDM Vol. 3A ch. 7): JMP or CALL to a TSS descriptor or a task
//! gate, interrupts and exceptions through a task gate in the IDT, and IRET with EFLAGS.NT
//! (a return through the previous-task link). The 32-bit TSS (Figure 7-2) and the 16-bit one
//! (Figure 7-11) are both supported; the steps follow SDM 7.3 in order: checks that can fail
//! without changing anything, busy-bit and TSS bookkeeping, saving the old task, loading TR,
//! CR3 and the new registers, and finally loading LDTR and the segment registers, whose faults
//! (#TS, #NP) are raised in the context of the new task. The TSS's debug trap flag (T) and
//! switches into virtual-8086 mode (EFLAGS.VM in the new TSS; emu has no virtual-8086 mode) are
//! not supported: the latter is refused with #TS(new TSS) and logged.

use vcpu::state::{cr0, rflags};
use vcpu::{Segment, SegmentIndex};

use crate::context::JitContext;
use crate::exception::Fault;
use crate::mem;
use crate::runtime::Runtime;
use crate::segment::{self, RawDescriptor};

/// What starts a task switch (SDM Vol. 3A 7.3, Table 7-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskSource {
    Jmp,
    /// A far CALL, or an interrupt or exception through a task gate: the new task is nested
    /// (NT set, previous-task link written).
    Call,
    Iret,
}

/// TSS descriptor type bits (SDM Vol. 3A 7.2.2): bit 1 is busy, bit 3 the 32-bit TSS.
const TSS_TYPE_BUSY: u8 = 0x2;
const TSS_TYPE_32BIT: u8 = 0x8;
/// Minimum TSS limits (SDM Vol. 3A 7.2.2): 67H for a 32-bit TSS, 2BH for a 16-bit one.
const TSS32_MIN_LIMIT: u32 = 0x67;
const TSS16_MIN_LIMIT: u32 = 0x2b;

/// 32-bit TSS fields (SDM Vol. 3A 7.2.1, Figure 7-2).
mod tss32 {
    pub const LINK: u64 = 0x00;
    pub const CR3: u64 = 0x1c;
    pub const EIP: u64 = 0x20;
    pub const EFLAGS: u64 = 0x24;
    /// EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI.
    pub const GPRS: u64 = 0x28;
    /// ES, CS, SS, DS, FS, GS, 4 bytes apart.
    pub const SEGS: u64 = 0x48;
    pub const LDT: u64 = 0x60;
}

/// 16-bit TSS fields (SDM Vol. 3A 7.6, Figure 7-11).
mod tss16 {
    pub const IP: u64 = 0x0e;
    pub const FLAGS: u64 = 0x10;
    /// AX, CX, DX, BX, SP, BP, SI, DI.
    pub const GPRS: u64 = 0x12;
    /// ES, CS, SS, DS, 2 bytes apart.
    pub const SEGS: u64 = 0x22;
    pub const LDT: u64 = 0x2a;
}

/// The EFLAGS bits a task switch loads from the new TSS (all but the reserved ones).
const LOADED_FLAGS: u64 = rflags::STATUS
    | rflags::TF
    | rflags::IF
    | rflags::DF
    | rflags::IOPL
    | rflags::NT
    | rflags::RF
    | rflags::AC
    | rflags::ID;

/// The TSS a task gate names (SDM Vol. 3A 7.3, the IDT and far CALL/JMP task-gate paths): a
/// GDT selector of an available TSS descriptor. `ext` is the EXT bit of error codes.
pub(crate) fn gate_target(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    tss_sel: u16,
    ext: u32,
) -> Result<(u16, RawDescriptor), Fault> {
    let err = segment::selector_error(tss_sel) | ext;
    if tss_sel & segment::SELECTOR_TI != 0 {
        return Err(Fault::ts(err));
    }
    let d = segment::read_descriptor(ctx, rt, tss_sel).map_err(|_| Fault::gp(err))?;
    // An available 16- or 32-bit TSS: a busy one cannot be entered again.
    if d.is_code_or_data() || d.typ() & !TSS_TYPE_32BIT != 0x1 {
        return Err(Fault::gp(err));
    }
    Ok((tss_sel, d))
}

/// The TSS an IRET with EFLAGS.NT returns to: the previous-task link of the current TSS, which
/// must name a busy TSS in the GDT (SDM Vol. 2A IRET, "TASK-RETURN").
pub(crate) fn iret_target(
    ctx: &mut JitContext,
    rt: &mut Runtime,
) -> Result<(u16, RawDescriptor), Fault> {
    let wrap = mem::system_mask(ctx);
    let link =
        mem::read_system(ctx, rt, ctx.cpu.tr.base.wrapping_add(tss32::LINK) & wrap, 2)? as u16;
    let err = segment::selector_error(link);
    if link & segment::SELECTOR_TI != 0 {
        return Err(Fault::ts(err));
    }
    let d = segment::read_descriptor(ctx, rt, link).map_err(|_| Fault::ts(err))?;
    if d.is_code_or_data() || d.typ() & !TSS_TYPE_32BIT != (0x1 | TSS_TYPE_BUSY) {
        return Err(Fault::ts(err));
    }
    Ok((link, d))
}

/// The registers a TSS holds for a task.
struct TaskImage {
    cr3: u64,
    eip: u64,
    eflags: u64,
    gprs: [u64; 8],
    segs: [u16; 6],
    ldt: u16,
}

fn read_image(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    base: u64,
    is32: bool,
) -> Result<TaskImage, Fault> {
    let wrap = mem::system_mask(ctx);
    let mut rd = |ctx: &mut JitContext, off: u64, size: u32| {
        mem::read_system(ctx, rt, base.wrapping_add(off) & wrap, size)
    };
    let mut img = TaskImage {
        cr3: 0,
        eip: 0,
        eflags: 0,
        gprs: [0; 8],
        segs: [0; 6],
        ldt: 0,
    };
    if is32 {
        img.cr3 = rd(ctx, tss32::CR3, 4)?;
        img.eip = rd(ctx, tss32::EIP, 4)?;
        img.eflags = rd(ctx, tss32::EFLAGS, 4)?;
        for (i, r) in img.gprs.iter_mut().enumerate() {
            *r = rd(ctx, tss32::GPRS + 4 * i as u64, 4)?;
        }
        for (i, s) in img.segs.iter_mut().enumerate() {
            *s = rd(ctx, tss32::SEGS + 4 * i as u64, 2)? as u16;
        }
        img.ldt = rd(ctx, tss32::LDT, 2)? as u16;
    } else {
        img.eip = rd(ctx, tss16::IP, 2)?;
        img.eflags = rd(ctx, tss16::FLAGS, 2)?;
        for (i, r) in img.gprs.iter_mut().enumerate() {
            *r = rd(ctx, tss16::GPRS + 2 * i as u64, 2)?;
        }
        for (i, s) in img.segs.iter_mut().take(4).enumerate() {
            *s = rd(ctx, tss16::SEGS + 2 * i as u64, 2)? as u16;
        }
        img.ldt = rd(ctx, tss16::LDT, 2)? as u16;
    }
    Ok(img)
}

/// Make sure the first and last byte of a TSS can be written before anything changes, as
/// QEMU does, so a page fault cannot interrupt the switch half-way (SDM Vol. 3A 7.3 step 5).
fn probe_writable(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    base: u64,
    last: u32,
) -> Result<(), Fault> {
    let wrap = mem::system_mask(ctx);
    for off in [0, u64::from(last)] {
        let la = base.wrapping_add(off) & wrap;
        let v = mem::read_system(ctx, rt, la, 1)?;
        mem::write_system(ctx, rt, la, 1, v)?;
    }
    Ok(())
}

/// Set or clear the busy bit of the TSS descriptor at `address` (in the GDT).
fn set_busy(ctx: &mut JitContext, rt: &mut Runtime, address: u64, busy: bool) -> Result<(), Fault> {
    let wrap = mem::system_mask(ctx);
    let la = address.wrapping_add(4) & wrap;
    let high = mem::read_system(ctx, rt, la, 4)?;
    let bit = u64::from(TSS_TYPE_BUSY) << 8;
    let high = if busy { high | bit } else { high & !bit };
    mem::write_system(ctx, rt, la, 4, high)
}

/// Switch to the task whose TSS descriptor `d` (selector `tss_sel`) names. `saved_eip` is the
/// old task's resume address. `Err` means nothing changed; `Ok(Some(f))` means the switch
/// happened and `f` must be raised in the new task (SDM Vol. 3A 7.3, "exception handling
/// during a task switch"). `ext` is the EXT bit for error codes (events not caused by software).
pub(crate) fn switch(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    tss_sel: u16,
    d: RawDescriptor,
    source: TaskSource,
    saved_eip: u64,
    ext: u32,
) -> Result<Option<Fault>, Fault> {
    let err = segment::selector_error(tss_sel) | ext;
    if !d.present() {
        return Err(Fault::np(err));
    }
    let new_is32 = d.typ() & TSS_TYPE_32BIT != 0;
    let new_tr = d.segment(tss_sel);
    let min = if new_is32 {
        TSS32_MIN_LIMIT
    } else {
        TSS16_MIN_LIMIT
    };
    if tss_sel & segment::SELECTOR_TI != 0 || new_tr.limit < min {
        return Err(Fault::ts(err));
    }
    let old_tr = ctx.cpu.tr;
    let old_is32 = old_tr.typ() & TSS_TYPE_32BIT != 0;
    let old_min = if old_is32 {
        TSS32_MIN_LIMIT
    } else {
        TSS16_MIN_LIMIT
    };
    if old_tr.limit < old_min {
        return Err(Fault::ts(segment::selector_error(old_tr.selector) | ext));
    }
    let mut img = read_image(ctx, rt, new_tr.base, new_is32)?;
    if img.eflags & rflags::VM != 0 {
        log::warn!("task switch into virtual-8086 mode is not implemented: #TS");
        return Err(Fault::ts(err));
    }
    probe_writable(ctx, rt, old_tr.base, old_min)?;
    probe_writable(ctx, rt, new_tr.base, 1)?;

    // Bookkeeping in the descriptors and the old TSS (SDM Vol. 3A 7.3 steps 7-10).
    if matches!(source, TaskSource::Jmp | TaskSource::Iret) {
        let old_address = ctx
            .cpu
            .gdtr
            .base
            .wrapping_add(u64::from(old_tr.selector & segment::SELECTOR_INDEX_MASK));
        set_busy(ctx, rt, old_address, false)?;
    }
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    let mut old_flags = ctx.cpu.rflags;
    if source == TaskSource::Iret {
        old_flags &= !rflags::NT;
    }
    save_image(ctx, rt, old_tr.base, old_is32, saved_eip, old_flags)?;
    if source == TaskSource::Call {
        let wrap = mem::system_mask(ctx);
        mem::write_system(
            ctx,
            rt,
            new_tr.base.wrapping_add(tss32::LINK) & wrap,
            2,
            u64::from(old_tr.selector),
        )?;
        img.eflags |= rflags::NT;
    }
    if source != TaskSource::Iret {
        set_busy(ctx, rt, d.address, true)?;
    }

    // Load the new task (step 11): TR with its busy type, CR0.TS, CR3 and the registers.
    ctx.cpu.tr = new_tr;
    ctx.cpu.tr.attr |= u16::from(TSS_TYPE_BUSY);
    ctx.cpu.cr0 |= cr0::TS;
    if new_is32 && ctx.cpu.cr0 & cr0::PG != 0 {
        ctx.cpu.cr3 = img.cr3;
    }
    // The privilege level and the address space change: drop every cached translation.
    ctx.flush_tlb();
    ctx.cpu.rip = img.eip;
    let flags_mask = if new_is32 {
        LOADED_FLAGS
    } else {
        LOADED_FLAGS & 0xffff
    };
    ctx.cpu.rflags = (ctx.cpu.rflags & !flags_mask) | (img.eflags & flags_mask) | rflags::FIXED1;
    ctx.flags.set_eflags();
    for (i, v) in img.gprs.iter().enumerate() {
        ctx.cpu.gpr[i] = if new_is32 {
            *v
        } else {
            (ctx.cpu.gpr[i] & !0xffff) | *v
        };
    }
    // Selectors first, unusable until their descriptors load (faults from here on belong to
    // the new task).
    for (i, sel) in img.segs.iter().enumerate() {
        ctx.cpu.seg[i] = Segment {
            selector: *sel,
            ..Segment::default()
        };
    }
    ctx.cpu.ldtr = Segment {
        selector: img.ldt,
        ..Segment::default()
    };
    Ok(load_new_segments(ctx, rt, &img).err())
}

/// Store the old task's dynamic state into its TSS (SDM Vol. 3A 7.3 step 8).
fn save_image(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    base: u64,
    is32: bool,
    eip: u64,
    eflags: u64,
) -> Result<(), Fault> {
    let wrap = mem::system_mask(ctx);
    let (ip_off, flags_off, gprs, segs, width, nsegs) = if is32 {
        (tss32::EIP, tss32::EFLAGS, tss32::GPRS, tss32::SEGS, 4u64, 6)
    } else {
        (tss16::IP, tss16::FLAGS, tss16::GPRS, tss16::SEGS, 2u64, 4)
    };
    let w = width as u32;
    let mut wr = |ctx: &mut JitContext, off: u64, size: u32, v: u64| {
        mem::write_system(ctx, rt, base.wrapping_add(off) & wrap, size, v)
    };
    wr(ctx, ip_off, w, eip)?;
    wr(ctx, flags_off, w, eflags)?;
    for i in 0..8 {
        let v = ctx.cpu.gpr[i];
        wr(ctx, gprs + width * i as u64, w, v)?;
    }
    for i in 0..nsegs {
        let v = u64::from(ctx.cpu.seg[i].selector);
        wr(ctx, segs + width * i as u64, 2, v)?;
    }
    Ok(())
}

/// Load LDTR, then CS, SS and the data segment registers of the new task, with the checks of
/// SDM Vol. 3A 7.3 step 12 (#TS for a bad selector or descriptor, #NP for a not-present data
/// segment, #SS for a not-present stack), and finally check EIP against the CS limit.
fn load_new_segments(ctx: &mut JitContext, rt: &mut Runtime, img: &TaskImage) -> Result<(), Fault> {
    let ldt = img.ldt;
    let ldt_err = segment::selector_error(ldt);
    if ldt & segment::SELECTOR_TI != 0 {
        return Err(Fault::ts(ldt_err));
    }
    if ldt & segment::SELECTOR_INDEX_MASK != 0 {
        let d = segment::read_descriptor(ctx, rt, ldt).map_err(|_| Fault::ts(ldt_err))?;
        if d.is_code_or_data() || d.typ() != 0x2 || !d.present() {
            return Err(Fault::ts(ldt_err));
        }
        ctx.cpu.ldtr = d.segment(ldt);
    }
    let cpl = (img.segs[SegmentIndex::Cs as usize] & segment::SELECTOR_RPL) as u8;
    for seg in [
        SegmentIndex::Cs,
        SegmentIndex::Ss,
        SegmentIndex::Es,
        SegmentIndex::Ds,
        SegmentIndex::Fs,
        SegmentIndex::Gs,
    ] {
        let sel = img.segs[seg as usize];
        load_task_segment(ctx, rt, seg, sel, cpl)?;
    }
    if ctx.cpu.rip > u64::from(ctx.cpu.cs().limit) {
        return Err(Fault::gp(0));
    }
    Ok(())
}

/// One segment register of the new task at privilege `cpl` (SDM Vol. 3A 7.3 step 12 and
/// Table 7-1's #TS conditions).
fn load_task_segment(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    seg: SegmentIndex,
    sel: u16,
    cpl: u8,
) -> Result<(), Fault> {
    let err = segment::selector_error(sel);
    if sel & segment::SELECTOR_INDEX_MASK == 0 && sel & segment::SELECTOR_TI == 0 {
        return match seg {
            SegmentIndex::Cs | SegmentIndex::Ss => Err(Fault::ts(err)),
            _ => Ok(()),
        };
    }
    let mut d = segment::read_descriptor(ctx, rt, sel).map_err(|_| Fault::ts(err))?;
    if !d.is_code_or_data() {
        return Err(Fault::ts(err));
    }
    let rpl = (sel & segment::SELECTOR_RPL) as u8;
    let typ = d.typ();
    let code = typ & segment::TYPE_CODE != 0;
    let conforming = code && typ & segment::TYPE_CONFORMING != 0;
    let rw = typ & segment::TYPE_WRITABLE_READABLE != 0;
    let not_present = match seg {
        SegmentIndex::Cs => {
            let dpl_ok = if conforming {
                d.dpl() <= rpl
            } else {
                d.dpl() == rpl
            };
            if !code || !dpl_ok {
                return Err(Fault::ts(err));
            }
            Fault::np(err)
        }
        SegmentIndex::Ss => {
            if code || !rw || d.dpl() != cpl || rpl != cpl {
                return Err(Fault::ts(err));
            }
            Fault::ss(err)
        }
        _ => {
            if (code && !rw) || (!conforming && (d.dpl() < cpl || d.dpl() < rpl)) {
                return Err(Fault::ts(err));
            }
            Fault::np(err)
        }
    };
    if !d.present() {
        return Err(not_present);
    }
    segment::set_accessed(ctx, rt, &mut d)?;
    ctx.cpu.seg[seg as usize] = d.segment(sel);
    Ok(())
}

/// Push the error code of an exception delivered through a task gate onto the new task's
/// stack: a dword for a 32-bit TSS, a word for a 16-bit one (SDM Vol. 3A 6.12.2).
pub(crate) fn push_error_code(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    code: u32,
) -> Result<(), Fault> {
    let size = if ctx.cpu.tr.typ() & TSS_TYPE_32BIT != 0 {
        4
    } else {
        2
    };
    let mut st = super::stack::StackCursor::from_ss(ctx);
    st.push(ctx, rt, size, u64::from(code))?;
    st.commit(ctx);
    Ok(())
}
