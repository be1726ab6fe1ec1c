//! Exception and interrupt delivery.
//!
//! Real mode vectors through the IVT (SDM Vol. 3A 20.1.4); protected mode through IDT
//! interrupt and trap gates, 16- and 32-bit, to the same privilege level or, for
//! non-conforming handlers of higher privilege, onto the inner stack named by the TSS
//! (SDM Vol. 3A 6.12.1); IA-32e mode through 16-byte 64-bit gates, with the RSPn/IST stack
//! switch and the quadword frame of SDM Vol. 3A 6.14. A fault while delivering is combined with the first event as the
//! double-fault rules say (SDM Vol. 3A 6.15, Table 6-5); a fault while delivering #DF is a triple
//! fault, which the dispatcher sees in `Runtime::triple_fault`. Task gates switch tasks
//! (`crate::interp::task`); virtual-8086 mode is not implemented (#GP, logged).

use vcpu::state::{cr0, efer, gpr, rflags};
use vcpu::{Segment, SegmentIndex};

use crate::context::JitContext;
use crate::interp::stack::StackCursor;
use crate::interp::task::{self, TaskSource};
use crate::mem;
use crate::runtime::Runtime;
use crate::segment;

/// Exception vectors (SDM Vol. 3A 6.3.1, Table 6-1).
pub const DE_VECTOR: u8 = 0;
pub const DB_VECTOR: u8 = 1;
pub const NMI_VECTOR: u8 = 2;
pub const BP_VECTOR: u8 = 3;
pub const OF_VECTOR: u8 = 4;
pub const BR_VECTOR: u8 = 5;
pub const UD_VECTOR: u8 = 6;
pub const NM_VECTOR: u8 = 7;
pub const DF_VECTOR: u8 = 8;
pub const TS_VECTOR: u8 = 10;
pub const NP_VECTOR: u8 = 11;
pub const SS_VECTOR: u8 = 12;
pub const GP_VECTOR: u8 = 13;
pub const PF_VECTOR: u8 = 14;
pub const MF_VECTOR: u8 = 16;
pub const AC_VECTOR: u8 = 17;

/// An exception an instruction raises: delivered by the interpreter (or the dispatcher) after
/// the instruction's effects were discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("guest exception {vector} (error code {error_code:?})")]
pub struct Fault {
    pub vector: u8,
    pub error_code: Option<u32>,
}

impl Fault {
    pub const fn new(vector: u8) -> Self {
        Self {
            vector,
            error_code: None,
        }
    }
    pub const fn with_code(vector: u8, code: u32) -> Self {
        Self {
            vector,
            error_code: Some(code),
        }
    }
    pub const fn de() -> Self {
        Self::new(DE_VECTOR)
    }
    pub const fn ud() -> Self {
        Self::new(UD_VECTOR)
    }
    pub const fn gp(code: u32) -> Self {
        Self::with_code(GP_VECTOR, code)
    }
    pub const fn np(code: u32) -> Self {
        Self::with_code(NP_VECTOR, code)
    }
    pub const fn ss(code: u32) -> Self {
        Self::with_code(SS_VECTOR, code)
    }
    pub const fn ts(code: u32) -> Self {
        Self::with_code(TS_VECTOR, code)
    }
}

/// Where an event comes from; it decides privilege checks and the EXT bit of error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A fault or trap raised by an instruction (the return address is set by the caller:
    /// the faulting instruction for faults, the next one for traps).
    Exception,
    /// INT n, INT3, INTO: gate DPL is checked against CPL (SDM Vol. 3A 6.12.1.1).
    SoftwareInt,
    /// An external interrupt or NMI.
    External,
}

/// Exception classes for double-fault detection (SDM Vol. 3A 6.15, Table 6-4).
fn is_contributory(vector: u8) -> bool {
    matches!(
        vector,
        DE_VECTOR | TS_VECTOR | NP_VECTOR | SS_VECTOR | GP_VECTOR
    )
}

/// Most attempts before giving up and calling it a triple fault (each attempt is one serial
/// re-delivery of a benign fault).
const MAX_DELIVERY_ATTEMPTS: usize = 4;

/// IDT gate types (SDM Vol. 3A 6.11, Figure 6-2).
const GATE_TASK: u32 = 0x5;
const GATE_INT16: u32 = 0x6;
const GATE_TRAP16: u32 = 0x7;
const GATE_INT32: u32 = 0xe;
const GATE_TRAP32: u32 = 0xf;

/// Deliver `vector` with `ctx.cpu.rip` as the return address. On return the CPU is at the
/// handler (and `exit.exit_block` is set), or `rt.triple_fault` is set (and `exit.exit_run`).
pub fn deliver(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    vector: u8,
    error_code: Option<u32>,
    kind: EventKind,
) {
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    ctx.exit.exit_block = 1;
    ctx.cpu.halted = 0;
    let (mut vector, mut error_code, mut kind) = (vector, error_code, kind);
    for _ in 0..MAX_DELIVERY_ATTEMPTS {
        let Err(second) = try_deliver(ctx, rt, vector, error_code, kind) else {
            return;
        };
        let first_is_exception = kind == EventKind::Exception;
        if first_is_exception && vector == DF_VECTOR {
            break;
        }
        let double = first_is_exception
            && ((is_contributory(vector) && is_contributory(second.vector))
                || (vector == PF_VECTOR
                    && (is_contributory(second.vector) || second.vector == PF_VECTOR)));
        if double {
            vector = DF_VECTOR;
            error_code = Some(0);
        } else {
            vector = second.vector;
            error_code = second.error_code;
        }
        kind = EventKind::Exception;
    }
    log::warn!(
        "triple fault at {:04x}:{:#x}",
        ctx.cpu.cs().selector,
        ctx.cpu.rip
    );
    rt.triple_fault = true;
    ctx.exit.exit_run = 1;
}

/// Deliver INT n / INT3 / INTO / INT1 with `ctx.cpu.rip` already at the next instruction. A
/// fault while delivering it is reported against the interrupt instruction itself, at
/// `insn_ip` (software interrupts are benign, so that fault is simply delivered next).
pub fn deliver_software_interrupt(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    vector: u8,
    kind: EventKind,
    insn_ip: u64,
) {
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    ctx.exit.exit_block = 1;
    if let Err(f) = try_deliver(ctx, rt, vector, None, kind) {
        ctx.cpu.rip = insn_ip;
        deliver(ctx, rt, f.vector, f.error_code, EventKind::Exception);
    }
}

/// Deliver a fault raised by an instruction: error codes are dropped in real mode, as the
/// real-mode IVT frame has none.
pub fn deliver_fault(ctx: &mut JitContext, rt: &mut Runtime, fault: Fault) {
    deliver(
        ctx,
        rt,
        fault.vector,
        fault.error_code,
        EventKind::Exception,
    );
}

fn try_deliver(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    vector: u8,
    error_code: Option<u32>,
    kind: EventKind,
) -> Result<(), mem::Fault> {
    if ctx.cpu.cr0 & cr0::PE == 0 {
        deliver_real(ctx, rt, vector)
    } else if ctx.cpu.efer & efer::LMA != 0 {
        deliver_long(ctx, rt, vector, error_code, kind)
    } else {
        deliver_protected(ctx, rt, vector, error_code, kind)
    }
}

/// Real-mode delivery (SDM Vol. 3A 20.1.4): push FLAGS, CS, IP; clear IF, TF, AC; jump through
/// the 4-byte IVT entry.
fn deliver_real(ctx: &mut JitContext, rt: &mut Runtime, vector: u8) -> Result<(), Fault> {
    let off = u64::from(vector) * 4;
    if off + 3 > u64::from(ctx.cpu.idtr.limit) {
        return Err(Fault::gp(u32::from(vector) * 8 + 2));
    }
    let la = ctx.cpu.idtr.base.wrapping_add(off) & mem::linear_mask(ctx);
    let entry = mem::read(ctx, rt, la, 4)?;
    let mut st = StackCursor::from_ss(ctx);
    st.push(ctx, rt, 2, ctx.cpu.rflags)?;
    st.push(ctx, rt, 2, u64::from(ctx.cpu.cs().selector))?;
    st.push(ctx, rt, 2, ctx.cpu.rip)?;
    st.commit(ctx);
    ctx.cpu.rflags &= !(rflags::IF | rflags::TF | rflags::AC | rflags::RF);
    let sel = (entry >> 16) as u16;
    let cs = &mut ctx.cpu.seg[SegmentIndex::Cs as usize];
    cs.selector = sel;
    cs.base = u64::from(sel) << 4;
    ctx.cpu.rip = entry & 0xffff;
    Ok(())
}

/// Protected-mode delivery through an interrupt or trap gate (SDM Vol. 3A 6.12.1).
fn deliver_protected(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    vector: u8,
    error_code: Option<u32>,
    kind: EventKind,
) -> Result<(), Fault> {
    let ext = u32::from(kind != EventKind::SoftwareInt);
    let idt_err = u32::from(vector) * 8 + 2 + ext;
    let off = u64::from(vector) * 8;
    if off + 7 > u64::from(ctx.cpu.idtr.limit) {
        return Err(Fault::gp(idt_err));
    }
    let wrap = mem::linear_mask(ctx);
    let la = ctx.cpu.idtr.base.wrapping_add(off) & wrap;
    let low = mem::read_system(ctx, rt, la, 4)? as u32;
    let high = mem::read_system(ctx, rt, la.wrapping_add(4) & wrap, 4)? as u32;
    let gate_type = (high >> 8) & 0x1f;
    let gate_dpl = ((high >> 13) & 3) as u8;
    let gate32 = match gate_type {
        GATE_INT32 | GATE_TRAP32 | GATE_TASK => true,
        GATE_INT16 | GATE_TRAP16 => false,
        _ => return Err(Fault::gp(idt_err)),
    };
    let cpl = ctx.cpu.cpl();
    if kind == EventKind::SoftwareInt && gate_dpl < cpl {
        return Err(Fault::gp(idt_err));
    }
    if high & (1 << 15) == 0 {
        return Err(Fault::np(idt_err));
    }
    if gate_type == GATE_TASK {
        return deliver_through_task_gate(ctx, rt, (low >> 16) as u16, error_code, ext);
    }
    if ctx.cpu.rflags & rflags::VM != 0 {
        log::warn!("interrupt from virtual-8086 mode is not implemented");
        return Err(Fault::gp(0));
    }
    let sel = (low >> 16) as u16;
    let target_ip = if gate32 {
        u64::from((low & 0xffff) | (high & 0xffff_0000))
    } else {
        u64::from(low & 0xffff)
    };
    if sel & segment::SELECTOR_INDEX_MASK == 0 && sel & segment::SELECTOR_TI == 0 {
        return Err(Fault::gp(ext));
    }
    let mut d = segment::read_descriptor(ctx, rt, sel)?;
    let sel_err = segment::selector_error(sel) + ext;
    let typ = d.typ();
    if !d.is_code_or_data() || typ & segment::TYPE_CODE == 0 || d.dpl() > cpl {
        return Err(Fault::gp(sel_err));
    }
    if !d.present() {
        return Err(Fault::np(sel_err));
    }
    let conforming = typ & segment::TYPE_CONFORMING != 0;
    let new_cpl = if conforming { cpl } else { d.dpl() };
    let size = if gate32 { 4 } else { 2 };
    let old_ss = ctx.cpu.seg[SegmentIndex::Ss as usize];
    let old_rsp = ctx.cpu.gpr[vcpu::state::gpr::RSP];
    let (mut st, new_ss) = if new_cpl < cpl {
        let (ss_sel, esp) = inner_stack(ctx, rt, new_cpl)?;
        let ss = segment::stack_target(ctx, rt, ss_sel, new_cpl, Fault::ts)?;
        (StackCursor::for_segment(&ss, esp), Some(ss))
    } else {
        (StackCursor::from_ss(ctx), None)
    };
    // Pushes onto a supervisor stack are supervisor accesses even when coming from CPL 3.
    st.system = new_cpl != 3;
    if new_ss.is_some() {
        st.push(ctx, rt, size, u64::from(old_ss.selector))?;
        st.push(ctx, rt, size, old_rsp)?;
    }
    st.push(ctx, rt, size, ctx.cpu.rflags)?;
    st.push(ctx, rt, size, u64::from(ctx.cpu.cs().selector))?;
    st.push(ctx, rt, size, ctx.cpu.rip)?;
    if let Some(code) = error_code {
        st.push(ctx, rt, size, u64::from(code))?;
    }
    segment::set_accessed(ctx, rt, &mut d)?;
    // Everything that can fault is done: commit.
    if let Some(ss) = new_ss {
        segment::set_ss(ctx, ss);
        ctx.cpu.gpr[vcpu::state::gpr::RSP] = 0;
    }
    st.commit(ctx);
    let cs: Segment = d.segment((sel & !segment::SELECTOR_RPL) | u16::from(new_cpl));
    segment::set_cs(ctx, cs);
    ctx.cpu.rip = target_ip;
    ctx.cpu.rflags &= !(rflags::TF | rflags::NT | rflags::RF | rflags::VM);
    if matches!(gate_type, GATE_INT32 | GATE_INT16) {
        ctx.cpu.rflags &= !rflags::IF;
    }
    Ok(())
}

/// Delivery through a task gate (SDM Vol. 3A 6.12.2): a nested task switch to the TSS the gate
/// names, then the error code, if any, is pushed onto the new task's stack. A fault while
/// loading the new task's segments is raised in the new task.
fn deliver_through_task_gate(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    tss_sel: u16,
    error_code: Option<u32>,
    ext: u32,
) -> Result<(), Fault> {
    let (tss_sel, d) = task::gate_target(ctx, rt, tss_sel, ext)?;
    let saved_eip = ctx.cpu.rip;
    if let Some(f) = task::switch(ctx, rt, tss_sel, d, TaskSource::Call, saved_eip, ext)? {
        return Err(f);
    }
    if let Some(code) = error_code {
        task::push_error_code(ctx, rt, code)?;
    }
    Ok(())
}

/// The inner-privilege stack from the current TSS (SDM Vol. 3A 8.2.1 for the 32-bit TSS,
/// 8.6 for the 16-bit one).
pub(crate) fn inner_stack(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    dpl: u8,
) -> Result<(u16, u64), Fault> {
    let tr = ctx.cpu.tr;
    let tss32 = tr.typ() & 0x8 != 0;
    let (esp_off, ss_off, width) = if tss32 {
        (4 + 8 * u64::from(dpl), 8 + 8 * u64::from(dpl), 4)
    } else {
        (2 + 4 * u64::from(dpl), 4 + 4 * u64::from(dpl), 2)
    };
    if ss_off + 1 > u64::from(tr.limit) {
        return Err(Fault::ts(segment::selector_error(tr.selector)));
    }
    let wrap = mem::linear_mask(ctx);
    let esp = mem::read_system(ctx, rt, tr.base.wrapping_add(esp_off) & wrap, width)?;
    let ss = mem::read_system(ctx, rt, tr.base.wrapping_add(ss_off) & wrap, 2)? as u16;
    Ok((ss, esp))
}

/// IA-32e mode delivery through a 16-byte interrupt or trap gate (SDM Vol. 3A 6.14): the
/// handler runs in 64-bit mode; the stack is the TSS's RSPn on a privilege change (with SS
/// null, RPL = new CPL) or the IST stack the gate names, aligned to 16 bytes; SS, RSP, RFLAGS,
/// CS, RIP and the error code are pushed as quadwords whether or not the privilege changes.
fn deliver_long(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    vector: u8,
    error_code: Option<u32>,
    kind: EventKind,
) -> Result<(), Fault> {
    let ext = u32::from(kind != EventKind::SoftwareInt);
    let idt_err = u32::from(vector) * 8 + 2 + ext;
    let off = u64::from(vector) * 16;
    if off + 15 > u64::from(ctx.cpu.idtr.limit) {
        return Err(Fault::gp(idt_err));
    }
    let la = ctx.cpu.idtr.base.wrapping_add(off);
    let low = mem::read_system(ctx, rt, la, 8)?;
    let high = mem::read_system(ctx, rt, la.wrapping_add(8), 8)?;
    let gate_type = ((low >> 40) & 0x1f) as u32;
    let gate_dpl = ((low >> 45) & 3) as u8;
    if !matches!(gate_type, GATE_INT32 | GATE_TRAP32) {
        return Err(Fault::gp(idt_err));
    }
    let cpl = ctx.cpu.cpl();
    if kind == EventKind::SoftwareInt && gate_dpl < cpl {
        return Err(Fault::gp(idt_err));
    }
    if low & (1 << 47) == 0 {
        return Err(Fault::np(idt_err));
    }
    let sel = (low >> 16) as u16;
    let ist = (low >> 32) & 7;
    let target_ip = (low & 0xffff) | ((low >> 32) & 0xffff_0000) | (high << 32);
    if sel & segment::SELECTOR_INDEX_MASK == 0 && sel & segment::SELECTOR_TI == 0 {
        return Err(Fault::gp(ext));
    }
    let mut d = segment::read_descriptor(ctx, rt, sel)?;
    let sel_err = segment::selector_error(sel) + ext;
    let typ = d.typ();
    // The handler's CS must be 64-bit code (L = 1, D = 0) of privilege <= CPL.
    let cs_long = d.high & (1 << 21) != 0 && d.high & (1 << 22) == 0;
    if !d.is_code_or_data() || typ & segment::TYPE_CODE == 0 || !cs_long || d.dpl() > cpl {
        return Err(Fault::gp(sel_err));
    }
    if !d.present() {
        return Err(Fault::np(sel_err));
    }
    if !crate::paging::is_canonical(target_ip) {
        return Err(Fault::gp(ext));
    }
    let conforming = typ & segment::TYPE_CONFORMING != 0;
    let new_cpl = if conforming { cpl } else { d.dpl() };
    let old_ss = ctx.cpu.seg[SegmentIndex::Ss as usize];
    let old_rsp = ctx.cpu.gpr[gpr::RSP];
    let new_rsp = if ist != 0 {
        Some(tss64_stack(ctx, rt, TSS64_IST1 + 8 * (ist - 1))?)
    } else if new_cpl < cpl {
        Some(tss64_stack(ctx, rt, TSS64_RSP0 + 8 * u64::from(new_cpl))?)
    } else {
        None
    };
    let rsp = new_rsp.unwrap_or(old_rsp) & !0xf;
    let mut st = StackCursor::flat64(rsp);
    st.system = new_cpl != 3;
    st.push(ctx, rt, 8, u64::from(old_ss.selector))?;
    st.push(ctx, rt, 8, old_rsp)?;
    st.push(ctx, rt, 8, ctx.cpu.rflags)?;
    st.push(ctx, rt, 8, u64::from(ctx.cpu.cs().selector))?;
    st.push(ctx, rt, 8, ctx.cpu.rip)?;
    if let Some(code) = error_code {
        st.push(ctx, rt, 8, u64::from(code))?;
    }
    segment::set_accessed(ctx, rt, &mut d)?;
    // Everything that can fault is done: commit.
    if new_cpl < cpl {
        segment::set_ss(
            ctx,
            segment::null_stack_segment(u16::from(new_cpl), new_cpl),
        );
    }
    let cs: Segment = d.segment((sel & !segment::SELECTOR_RPL) | u16::from(new_cpl));
    segment::set_cs(ctx, cs);
    ctx.cpu.gpr[gpr::RSP] = st.sp;
    ctx.cpu.rip = target_ip;
    ctx.cpu.rflags &= !(rflags::TF | rflags::NT | rflags::RF | rflags::VM);
    if gate_type == GATE_INT32 {
        ctx.cpu.rflags &= !rflags::IF;
    }
    Ok(())
}

/// 64-bit TSS fields (SDM Vol. 3A 8.7, Figure 8-11): RSP0-2 at 4, 12, 20; IST1-7 from 0x24.
pub(crate) const TSS64_RSP0: u64 = 4;
const TSS64_IST1: u64 = 0x24;

/// The stack pointer at `offset` in the 64-bit TSS; #TS(TR) when it lies beyond the limit.
pub(crate) fn tss64_stack(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    offset: u64,
) -> Result<u64, Fault> {
    let tr = ctx.cpu.tr;
    if offset + 7 > u64::from(tr.limit) {
        return Err(Fault::ts(segment::selector_error(tr.selector)));
    }
    let rsp = mem::read_system(ctx, rt, tr.base.wrapping_add(offset), 8)?;
    if !crate::paging::is_canonical(rsp) {
        return Err(Fault::ss(0));
    }
    Ok(rsp)
}
