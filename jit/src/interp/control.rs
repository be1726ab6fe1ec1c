//! Control transfers: JMP, CALL, RET (near and far, direct and indirect), Jcc, LOOP/LOOPcc,
//! JCXZ/JECXZ, INT n/INT3/INTO/INT1 and IRET/IRETQ (SDM Vol. 1 6.3-6.4, Vol. 2). Far transfers in
//! protected mode load CS from its descriptor; far RET and IRET may return to an outer
//! privilege level. Targets in 64-bit code must be canonical (#GP(0) at the branch). Far
//! CALL/JMP through call gates and task gates/TSS descriptors go to `super::gate`, IRET with
//! EFLAGS.NT to `super::task`. Returns to virtual-8086 mode are not implemented (#GP, logged).

use iced_x86::{Code, Instruction, Mnemonic as M, OpKind};
use vcpu::state::{cr0, efer, gpr, rflags};
use vcpu::{Segment, SegmentIndex};

use super::data::condition_holds;
use super::gate::{self, FarKind};
use super::operand::{gpr_write_sized, mask, mem_linear, mem_linear_plus, op_size, read_op};
use super::stack::{writable_flags, StackCursor};
use super::task::{self, TaskSource};
use super::{ip_mask, Exec, Flow};
use crate::context::JitContext;
use crate::exception::{self, EventKind, Fault};
use crate::mem;
use crate::runtime::Runtime;
use crate::segment;

/// A far pointer operand: (selector, offset).
fn far_target(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
) -> Result<(u16, u64, u32), Fault> {
    match insn.op_kind(0) {
        OpKind::FarBranch16 => Ok((
            insn.far_branch_selector(),
            u64::from(insn.far_branch16()),
            2,
        )),
        OpKind::FarBranch32 => Ok((
            insn.far_branch_selector(),
            u64::from(insn.far_branch32()),
            4,
        )),
        OpKind::Memory => {
            // m16:16, m16:32 or m16:64: the offset, then the selector.
            let off_size = (insn.memory_size().size() as u32)
                .saturating_sub(2)
                .clamp(2, 8);
            let la = mem_linear(ctx, insn);
            let off = mem::read(ctx, rt, la, off_size)?;
            let sel_la = mem_linear_plus(ctx, insn, u64::from(off_size));
            let sel = mem::read(ctx, rt, sel_la, 2)? as u16;
            Ok((sel, off, off_size))
        }
        _ => Err(Fault::ud()),
    }
}

fn is_far(insn: &Instruction) -> bool {
    matches!(insn.op_kind(0), OpKind::FarBranch16 | OpKind::FarBranch32)
        || insn.is_jmp_far_indirect()
        || insn.is_call_far_indirect()
}

/// Near target of a direct branch or of a register/memory operand.
fn near_target(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Result<u64, Fault> {
    match insn.op_kind(0) {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            Ok(insn.near_branch_target())
        }
        _ => {
            let size = op_size(insn, 0, 4);
            Ok(read_op(ctx, rt, insn, 0, size)? & mask(size))
        }
    }
}

/// A branch target must be canonical when the code it lands in runs in 64-bit mode: otherwise
/// the branch itself raises #GP(0) (SDM Vol. 2A JMP/CALL, 64-bit mode exceptions).
pub(super) fn check_target(ctx: &JitContext, cs: &Segment, target: u64) -> Result<u64, Fault> {
    if ctx.cpu.efer & efer::LMA != 0 && cs.long() && !crate::paging::is_canonical(target) {
        return Err(Fault::gp(0));
    }
    Ok(target)
}

/// A far transfer's offset must lie within the new code segment's limit outside 64-bit code
/// (SDM Vol. 2A JMP/CALL: #GP(0) "if the instruction pointer is not within code segment
/// limits").
fn check_limit(cs: &Segment, offset: u64) -> Result<u64, Fault> {
    if !cs.long() && offset > u64::from(cs.limit) {
        return Err(Fault::gp(0));
    }
    Ok(offset)
}

pub(super) fn jmp(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    if is_far(insn) {
        let (sel, off, _) = far_target(ctx, rt, insn)?;
        if let Some(d) = gate::system_descriptor(ctx, rt, sel)? {
            return gate::far_through_system(ctx, rt, insn, sel, d, FarKind::Jmp);
        }
        let cs = segment::far_transfer_target(ctx, rt, sel)?;
        let off = check_limit(&cs, off)?;
        let off = check_target(ctx, &cs, off)?;
        segment::set_cs(ctx, cs);
        ctx.cpu.rip = off;
        return Ok(Flow::Jump);
    }
    let target = near_target(ctx, rt, insn)?;
    ctx.cpu.rip = check_target(ctx, ctx.cpu.cs(), target)?;
    Ok(Flow::Jump)
}

pub(super) fn call(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let ret = insn.next_ip() & ip_mask(ctx);
    let mut st = StackCursor::from_ss(ctx);
    if is_far(insn) {
        let (sel, off, size) = far_target(ctx, rt, insn)?;
        if let Some(d) = gate::system_descriptor(ctx, rt, sel)? {
            return gate::far_through_system(ctx, rt, insn, sel, d, FarKind::Call);
        }
        let cs = segment::far_transfer_target(ctx, rt, sel)?;
        let off = check_limit(&cs, off)?;
        let off = check_target(ctx, &cs, off)?;
        st.push(ctx, rt, size, u64::from(ctx.cpu.cs().selector))?;
        st.push(ctx, rt, size, ret)?;
        st.commit(ctx);
        segment::set_cs(ctx, cs);
        ctx.cpu.rip = off;
        return Ok(Flow::Jump);
    }
    let size = insn.stack_pointer_increment().unsigned_abs().clamp(2, 8);
    let target = near_target(ctx, rt, insn)?;
    let target = check_target(ctx, ctx.cpu.cs(), target)?;
    st.push(ctx, rt, size, ret)?;
    st.commit(ctx);
    ctx.cpu.rip = target;
    Ok(Flow::Jump)
}

pub(super) fn ret_near(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = match insn.code() {
        Code::Retnw | Code::Retnw_imm16 => 2,
        Code::Retnq | Code::Retnq_imm16 => 8,
        _ => 4,
    };
    let mut st = StackCursor::from_ss(ctx);
    let target = st.pop(ctx, rt, size)?;
    let target = check_target(ctx, ctx.cpu.cs(), target)?;
    if insn.op_count() == 1 {
        st.release(u64::from(insn.immediate16()));
    }
    st.commit(ctx);
    ctx.cpu.rip = target;
    Ok(Flow::Jump)
}

/// Null ES, DS, FS, GS if their DPL is below the new CPL after a return to an outer level
/// (SDM Vol. 2B RET, "RETURN-TO-OUTER-PRIVILEGE-LEVEL").
fn invalidate_data_segments(ctx: &mut JitContext) {
    let cpl = ctx.cpu.cpl();
    for i in [
        SegmentIndex::Es,
        SegmentIndex::Ds,
        SegmentIndex::Fs,
        SegmentIndex::Gs,
    ] {
        let s = ctx.cpu.seg[i as usize];
        let conforming_code =
            s.typ() & segment::TYPE_CODE != 0 && s.typ() & segment::TYPE_CONFORMING != 0;
        if s.attr & Segment::ATTR_S != 0 && s.dpl() < cpl && !conforming_code {
            ctx.cpu.seg[i as usize] = Segment::default();
        }
    }
}

pub(super) fn ret_far(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = match insn.code() {
        Code::Retfw | Code::Retfw_imm16 => 2,
        Code::Retfq | Code::Retfq_imm16 => 8,
        _ => 4,
    };
    let release = if insn.op_count() == 1 {
        u64::from(insn.immediate16())
    } else {
        0
    };
    let mut st = StackCursor::from_ss(ctx);
    let off = st.pop(ctx, rt, size)?;
    let sel = st.pop(ctx, rt, size)? as u16;
    let protected = ctx.cpu.cr0 & cr0::PE != 0 && ctx.cpu.rflags & rflags::VM == 0;
    if !protected {
        st.release(release);
        st.commit(ctx);
        let cs = segment::far_transfer_target(ctx, rt, sel)?;
        segment::set_cs(ctx, cs);
        ctx.cpu.rip = off;
        return Ok(Flow::Jump);
    }
    let cpl = ctx.cpu.cpl();
    let rpl = (sel & segment::SELECTOR_RPL) as u8;
    let cs = segment::return_target(ctx, rt, sel)?;
    let off = check_target(ctx, &cs, off)?;
    st.release(release);
    if rpl == cpl {
        st.commit(ctx);
        segment::set_cs(ctx, cs);
        ctx.cpu.rip = off;
        return Ok(Flow::Jump);
    }
    let new_sp = st.pop(ctx, rt, size)?;
    let ss_sel = st.pop(ctx, rt, size)? as u16;
    let ia32e = ctx.cpu.efer & efer::LMA != 0;
    let ss = if ia32e && gate::null_ss_allowed(&cs, ss_sel, rpl) {
        segment::null_stack_segment(ss_sel, rpl)
    } else {
        segment::stack_target(ctx, rt, ss_sel, rpl, Fault::gp)?
    };
    let mut outer = StackCursor::for_target(ctx, &cs, &ss, new_sp);
    segment::set_cs(ctx, cs);
    segment::set_ss(ctx, ss);
    outer.release(release);
    ctx.cpu.gpr[gpr::RSP] = 0;
    outer.commit(ctx);
    ctx.cpu.rip = off;
    invalidate_data_segments(ctx);
    Ok(Flow::Jump)
}

pub(super) fn jcc(ctx: &mut JitContext, insn: &Instruction) -> Exec {
    if condition_holds(ctx, insn) {
        ctx.cpu.rip = check_target(ctx, ctx.cpu.cs(), insn.near_branch_target())?;
        return Ok(Flow::Jump);
    }
    Ok(Flow::Next)
}

pub(super) fn loop_jcxz(ctx: &mut JitContext, insn: &Instruction) -> Exec {
    let size = match insn.code() {
        Code::Loop_rel8_16_CX
        | Code::Loop_rel8_32_CX
        | Code::Loope_rel8_16_CX
        | Code::Loope_rel8_32_CX
        | Code::Loopne_rel8_16_CX
        | Code::Loopne_rel8_32_CX
        | Code::Jcxz_rel8_16
        | Code::Jcxz_rel8_32 => 2,
        Code::Loop_rel8_16_RCX
        | Code::Loop_rel8_64_RCX
        | Code::Loope_rel8_16_RCX
        | Code::Loope_rel8_64_RCX
        | Code::Loopne_rel8_16_RCX
        | Code::Loopne_rel8_64_RCX
        | Code::Jrcxz_rel8_16
        | Code::Jrcxz_rel8_64 => 8,
        _ => 4,
    };
    let m = mask(size);
    let cx = ctx.cpu.gpr[gpr::RCX] & m;
    let (taken, new_cx) = match insn.mnemonic() {
        M::Jcxz | M::Jecxz | M::Jrcxz => (cx == 0, None),
        mn => {
            let cx = cx.wrapping_sub(1) & m;
            let zf = ctx.flags.status(ctx.cpu.rflags) & rflags::ZF != 0;
            let taken = cx != 0
                && match mn {
                    M::Loope => zf,
                    M::Loopne => !zf,
                    _ => true,
                };
            (taken, Some(cx))
        }
    };
    // A taken branch to a non-canonical target faults before rCX changes.
    let target = if taken {
        Some(check_target(ctx, ctx.cpu.cs(), insn.near_branch_target())?)
    } else {
        None
    };
    if let Some(cx) = new_cx {
        gpr_write_sized(&mut ctx.cpu, gpr::RCX, size, cx);
    }
    if let Some(target) = target {
        ctx.cpu.rip = target;
        return Ok(Flow::Jump);
    }
    Ok(Flow::Next)
}

pub(super) fn int(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let (vector, kind) = match insn.mnemonic() {
        M::Int => (insn.immediate8(), EventKind::SoftwareInt),
        M::Int3 => (exception::BP_VECTOR, EventKind::SoftwareInt),
        M::Int1 => (exception::DB_VECTOR, EventKind::Exception),
        _ => {
            // INTO: #OF only when OF is set.
            if ctx.flags.status(ctx.cpu.rflags) & rflags::OF == 0 {
                return Ok(Flow::Next);
            }
            (exception::OF_VECTOR, EventKind::SoftwareInt)
        }
    };
    // Traps: the return address is the next instruction.
    ctx.cpu.rip = insn.next_ip() & ip_mask(ctx);
    exception::deliver_software_interrupt(ctx, rt, vector, kind, insn.ip());
    Ok(Flow::Jump)
}

pub(super) fn iret(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = match insn.mnemonic() {
        M::Iret => 2,
        M::Iretq => 8,
        _ => 4,
    };
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    if ctx.cpu.efer & efer::LMA != 0 {
        return iret_ia32e(ctx, rt, size);
    }
    let protected = ctx.cpu.cr0 & cr0::PE != 0;
    if protected && ctx.cpu.rflags & rflags::VM != 0 {
        log::warn!("IRET in virtual-8086 mode is not implemented");
        return Err(Fault::gp(0));
    }
    if protected && ctx.cpu.rflags & rflags::NT != 0 {
        // Return to the previous task (SDM Vol. 3A 7.3, Vol. 2A IRET "TASK-RETURN").
        let (sel, d) = task::iret_target(ctx, rt)?;
        let next = insn.next_ip() & ip_mask(ctx);
        if let Some(f) = task::switch(ctx, rt, sel, d, TaskSource::Iret, next, 0)? {
            exception::deliver_fault(ctx, rt, f);
        }
        ctx.cpu.nmi_blocked = 0;
        return Ok(Flow::Jump);
    }
    let mut st = StackCursor::from_ss(ctx);
    let ip = st.pop(ctx, rt, size)?;
    let sel = st.pop(ctx, rt, size)? as u16;
    let flags = st.pop(ctx, rt, size)?;
    let w = writable_flags(ctx) & mask(size);
    let new_flags = ((ctx.cpu.rflags & !w) | (flags & w) | rflags::FIXED1) & !rflags::RF;
    if !protected {
        st.commit(ctx);
        let cs = &mut ctx.cpu.seg[SegmentIndex::Cs as usize];
        cs.selector = sel;
        cs.base = u64::from(sel) << 4;
        ctx.cpu.rip = ip;
    } else {
        if size == 4 && flags & rflags::VM != 0 && ctx.cpu.cpl() == 0 {
            log::warn!("IRET to virtual-8086 mode is not implemented");
            return Err(Fault::gp(0));
        }
        let cpl = ctx.cpu.cpl();
        let rpl = (sel & segment::SELECTOR_RPL) as u8;
        let cs = segment::return_target(ctx, rt, sel)?;
        if rpl == cpl {
            st.commit(ctx);
            segment::set_cs(ctx, cs);
        } else {
            let new_sp = st.pop(ctx, rt, size)?;
            let ss_sel = st.pop(ctx, rt, size)? as u16;
            let ss = segment::stack_target(ctx, rt, ss_sel, rpl, Fault::gp)?;
            segment::set_cs(ctx, cs);
            segment::set_ss(ctx, ss);
            let outer = StackCursor::for_segment(&ss, new_sp);
            ctx.cpu.gpr[gpr::RSP] = 0;
            outer.commit(ctx);
            invalidate_data_segments(ctx);
        }
        ctx.cpu.rip = ip;
    }
    let old_flags = ctx.cpu.rflags;
    ctx.cpu.rflags = new_flags;
    ctx.flags.set_eflags();
    super::system::after_ac_change(ctx, old_flags);
    ctx.cpu.nmi_blocked = 0;
    Ok(Flow::Jump)
}

/// IRET in IA-32e mode (SDM Vol. 2A IRET, "IA-32e-MODE", and Vol. 3A 6.14.3): pops RIP, CS and
/// RFLAGS, then SS:RSP when returning to an outer level or when executed in 64-bit mode
/// (always there). A null SS may be returned to by 64-bit code below ring 3.
fn iret_ia32e(ctx: &mut JitContext, rt: &mut Runtime, size: u32) -> Exec {
    if ctx.cpu.rflags & rflags::NT != 0 {
        log::warn!("IRET with NT set in IA-32e mode: #GP");
        return Err(Fault::gp(0));
    }
    let in_64bit = ctx.cpu.mode() == vcpu::ExecMode::Long64;
    let mut st = StackCursor::from_ss(ctx);
    let ip = st.pop(ctx, rt, size)?;
    let sel = st.pop(ctx, rt, size)? as u16;
    let flags = st.pop(ctx, rt, size)?;
    let cpl = ctx.cpu.cpl();
    let rpl = (sel & segment::SELECTOR_RPL) as u8;
    let cs = segment::return_target(ctx, rt, sel)?;
    let ip = check_target(ctx, &cs, ip)?;
    let w = writable_flags(ctx) & mask(size);
    let new_flags = ((ctx.cpu.rflags & !w) | (flags & w) | rflags::FIXED1) & !rflags::RF;
    if rpl == cpl && !in_64bit {
        st.commit(ctx);
        segment::set_cs(ctx, cs);
    } else {
        let new_sp = st.pop(ctx, rt, size)?;
        let ss_sel = st.pop(ctx, rt, size)? as u16;
        let to_64bit = cs.long();
        let null = ss_sel & segment::SELECTOR_INDEX_MASK == 0 && ss_sel & segment::SELECTOR_TI == 0;
        let ss = if null && to_64bit && rpl != 3 && (ss_sel & segment::SELECTOR_RPL) as u8 == rpl {
            segment::null_stack_segment(ss_sel, rpl)
        } else {
            segment::stack_target(ctx, rt, ss_sel, rpl, Fault::gp)?
        };
        let outer = StackCursor::for_target(ctx, &cs, &ss, new_sp);
        segment::set_cs(ctx, cs);
        segment::set_ss(ctx, ss);
        ctx.cpu.gpr[gpr::RSP] = 0;
        outer.commit(ctx);
        if rpl > cpl {
            invalidate_data_segments(ctx);
        }
    }
    ctx.cpu.rip = ip;
    let old_flags = ctx.cpu.rflags;
    ctx.cpu.rflags = new_flags;
    ctx.flags.set_eflags();
    super::system::after_ac_change(ctx, old_flags);
    ctx.cpu.nmi_blocked = 0;
    Ok(Flow::Jump)
}
