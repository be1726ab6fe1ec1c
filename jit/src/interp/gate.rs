//! Far CALL and JMP through system descriptors (SDM Vol. 3A 5.8.3-5.8.6 and 7.3; the CALL and
//! JMP pseudo-code of Vol. 2A): call gates, 16- and 32-bit in protected mode and 64-bit (16-byte)
//! in IA-32e mode, with the privilege change of a CALL to a more privileged non-conforming
//! segment (stack from the TSS, parameters copied for 16/32-bit gates); and task gates and TSS
//! descriptors, which switch tasks through [`super::task`].

use iced_x86::Instruction;
use vcpu::state::{efer, gpr};
use vcpu::{ExecMode, Segment, SegmentIndex};

use super::stack::StackCursor;
use super::task::{self, TaskSource};
use super::{ip_mask, Exec, Flow};
use crate::context::JitContext;
use crate::exception::{self, Fault};
use crate::paging;
use crate::runtime::Runtime;
use crate::segment::{self, RawDescriptor};

/// System descriptor types (SDM Vol. 3A 3.5, Table 3-2; in IA-32e mode type 0xC is the 64-bit
/// call gate and 0x4/0x5/0x1 are invalid).
pub const TSS16_AVAILABLE: u8 = 0x1;
pub const CALL_GATE16: u8 = 0x4;
pub const TASK_GATE: u8 = 0x5;
pub const TSS32_AVAILABLE: u8 = 0x9;
pub const CALL_GATE32: u8 = 0xc;

/// Whether the far transfer is a CALL (pushes a return address) or a JMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FarKind {
    Call,
    Jmp,
}

/// The system descriptor a far CALL/JMP selector names in protected mode, or None when the
/// transfer is an ordinary one (real or virtual-8086 mode, a null selector, or a code/data
/// descriptor, which `segment::far_transfer_target` handles with its own checks).
pub(super) fn system_descriptor(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    sel: u16,
) -> Result<Option<RawDescriptor>, Fault> {
    if matches!(ctx.cpu.mode(), ExecMode::Real | ExecMode::Virtual8086)
        || (sel & segment::SELECTOR_INDEX_MASK == 0 && sel & segment::SELECTOR_TI == 0)
    {
        return Ok(None);
    }
    let d = segment::read_descriptor(ctx, rt, sel)?;
    Ok((!d.is_code_or_data()).then_some(d))
}

/// A far CALL or JMP whose selector `sel` names the system descriptor `d`.
pub(super) fn far_through_system(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    sel: u16,
    d: RawDescriptor,
    kind: FarKind,
) -> Exec {
    let cpl = ctx.cpu.cpl();
    let rpl = (sel & segment::SELECTOR_RPL) as u8;
    let err = segment::selector_error(sel);
    let ia32e = ctx.cpu.efer & efer::LMA != 0;
    let typ = d.typ();
    if ia32e && typ != CALL_GATE32 {
        return Err(Fault::gp(err));
    }
    match typ {
        TSS16_AVAILABLE | TSS32_AVAILABLE | TASK_GATE => {
            if d.dpl() < cpl || d.dpl() < rpl {
                return Err(Fault::gp(err));
            }
            let (tss_sel, tss) = if typ == TASK_GATE {
                if !d.present() {
                    return Err(Fault::np(err));
                }
                task::gate_target(ctx, rt, (d.low >> 16) as u16, 0)?
            } else {
                (sel, d)
            };
            let source = match kind {
                FarKind::Call => TaskSource::Call,
                FarKind::Jmp => TaskSource::Jmp,
            };
            let next = insn.next_ip() & ip_mask(ctx);
            if let Some(f) = task::switch(ctx, rt, tss_sel, tss, source, next, 0)? {
                exception::deliver_fault(ctx, rt, f);
            }
            Ok(Flow::Jump)
        }
        CALL_GATE16 | CALL_GATE32 => call_gate(ctx, rt, insn, sel, d, kind),
        _ => Err(Fault::gp(err)),
    }
}

/// The parts of a call gate (SDM Vol. 3A 5.8.3, Figures 5-8 and 5-9).
struct CallGate {
    cs_sel: u16,
    offset: u64,
    /// Parameter count (16/32-bit gates): words or dwords copied to the inner stack.
    params: u32,
    /// Push size in bytes: 2, 4 or 8 (64-bit gate).
    size: u32,
}

/// Decode the call gate `d` (read through `sel`); a 64-bit gate's upper half must have type 0.
fn decode_gate(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    sel: u16,
    d: &RawDescriptor,
) -> Result<CallGate, Fault> {
    let err = segment::selector_error(sel);
    let mut gate = CallGate {
        cs_sel: (d.low >> 16) as u16,
        offset: u64::from(d.low & 0xffff),
        params: d.high & 0x1f,
        size: 2,
    };
    if d.typ() == CALL_GATE32 {
        gate.offset |= u64::from(d.high & 0xffff_0000);
        gate.size = 4;
    }
    if ctx.cpu.efer & efer::LMA != 0 {
        // The upper 8 bytes of the 16-byte gate: offset 63:32, then a dword whose type field
        // must be 0 (SDM Vol. 3A 5.8.3.1, Figure 5-9).
        let upper =
            segment::read_descriptor(ctx, rt, sel.wrapping_add(8)).map_err(|_| Fault::gp(err))?;
        if (upper.high >> 8) & 0x1f != 0 {
            return Err(Fault::gp(err));
        }
        gate.offset |= u64::from(upper.low) << 32;
        gate.params = 0;
        gate.size = 8;
    }
    Ok(gate)
}

fn call_gate(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    sel: u16,
    d: RawDescriptor,
    kind: FarKind,
) -> Exec {
    let cpl = ctx.cpu.cpl();
    let rpl = (sel & segment::SELECTOR_RPL) as u8;
    let err = segment::selector_error(sel);
    if d.dpl() < cpl || d.dpl() < rpl {
        return Err(Fault::gp(err));
    }
    if !d.present() {
        return Err(Fault::np(err));
    }
    let gate = decode_gate(ctx, rt, sel, &d)?;
    if gate.cs_sel & segment::SELECTOR_INDEX_MASK == 0 && gate.cs_sel & segment::SELECTOR_TI == 0 {
        return Err(Fault::gp(0));
    }
    let mut cd = segment::read_descriptor(ctx, rt, gate.cs_sel)?;
    let cs_err = segment::selector_error(gate.cs_sel);
    let typ = cd.typ();
    if !cd.is_code_or_data() || typ & segment::TYPE_CODE == 0 || cd.dpl() > cpl {
        return Err(Fault::gp(cs_err));
    }
    let ia32e = ctx.cpu.efer & efer::LMA != 0;
    // IA-32e call gates lead to 64-bit code only (L = 1, D = 0).
    if ia32e && (cd.high & (1 << 21) == 0 || cd.high & (1 << 22) != 0) {
        return Err(Fault::gp(cs_err));
    }
    let conforming = typ & segment::TYPE_CONFORMING != 0;
    if kind == FarKind::Jmp && !conforming && cd.dpl() != cpl {
        return Err(Fault::gp(cs_err));
    }
    if !cd.present() {
        return Err(Fault::np(cs_err));
    }
    let new_cpl = if kind == FarKind::Call && !conforming && cd.dpl() < cpl {
        cd.dpl()
    } else {
        cpl
    };
    let cs = cd.segment((gate.cs_sel & !segment::SELECTOR_RPL) | u16::from(new_cpl));
    if ia32e {
        if !paging::is_canonical(gate.offset) {
            return Err(Fault::gp(0));
        }
    } else if gate.offset > u64::from(cs.limit) {
        return Err(Fault::gp(0));
    }
    if kind == FarKind::Jmp {
        segment::set_accessed(ctx, rt, &mut cd)?;
        segment::set_cs(ctx, cs);
        ctx.cpu.rip = gate.offset;
        return Ok(Flow::Jump);
    }
    let ret = insn.next_ip() & ip_mask(ctx);
    let old_cs = ctx.cpu.cs().selector;
    if new_cpl == cpl {
        let mut st = StackCursor::from_ss(ctx);
        st.push(ctx, rt, gate.size, u64::from(old_cs))?;
        st.push(ctx, rt, gate.size, ret)?;
        segment::set_accessed(ctx, rt, &mut cd)?;
        st.commit(ctx);
        segment::set_cs(ctx, cs);
        ctx.cpu.rip = gate.offset;
        return Ok(Flow::Jump);
    }
    // CALL to an inner ring (SDM Vol. 3A 5.8.5, Figure 5-13): the new stack comes from the
    // TSS; the caller's SS:rSP, its parameters and CS:rIP are pushed there.
    let (mut st, new_ss) = if ia32e {
        let rsp = exception::tss64_stack(ctx, rt, exception::TSS64_RSP0 + 8 * u64::from(new_cpl))?;
        (
            StackCursor::flat64(rsp),
            segment::null_stack_segment(u16::from(new_cpl), new_cpl),
        )
    } else {
        let (ss_sel, esp) = exception::inner_stack(ctx, rt, new_cpl)?;
        let ss = segment::stack_target(ctx, rt, ss_sel, new_cpl, Fault::ts)?;
        (StackCursor::for_segment(&ss, esp), ss)
    };
    st.system = true;
    let old_ss = ctx.cpu.seg[SegmentIndex::Ss as usize].selector;
    let old_rsp = ctx.cpu.gpr[gpr::RSP];
    let mut params = [0u64; 31];
    let mut caller = StackCursor::from_ss(ctx);
    for p in params.iter_mut().take(gate.params as usize) {
        *p = caller.pop(ctx, rt, gate.size)?;
    }
    st.push(ctx, rt, gate.size, u64::from(old_ss))?;
    st.push(ctx, rt, gate.size, old_rsp)?;
    for p in params.iter().take(gate.params as usize).rev() {
        st.push(ctx, rt, gate.size, *p)?;
    }
    st.push(ctx, rt, gate.size, u64::from(old_cs))?;
    st.push(ctx, rt, gate.size, ret)?;
    segment::set_accessed(ctx, rt, &mut cd)?;
    // Everything that can fault is done: commit.
    segment::set_ss(ctx, new_ss);
    ctx.cpu.gpr[gpr::RSP] = 0;
    st.commit(ctx);
    segment::set_cs(ctx, cs);
    ctx.cpu.rip = gate.offset;
    Ok(Flow::Jump)
}

/// The SS a far RET or IRET to 64-bit code at an outer ring may load: a null selector with
/// RPL = the new CPL is allowed below ring 3 (SDM Vol. 2B RET, "IA-32e mode").
pub(super) fn null_ss_allowed(cs: &Segment, ss_sel: u16, rpl: u8) -> bool {
    ss_sel & segment::SELECTOR_INDEX_MASK == 0
        && ss_sel & segment::SELECTOR_TI == 0
        && cs.long()
        && rpl != 3
        && (ss_sel & segment::SELECTOR_RPL) as u8 == rpl
}
