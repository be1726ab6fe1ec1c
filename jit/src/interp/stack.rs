//! The stack: PUSH, POP (registers, memory, immediates, segment registers), PUSHA/POPA,
//! PUSHF/POPF, ENTER, LEAVE (SDM Vol. 1 6.2-6.5, Vol. 2B), and the [`StackCursor`] every
//! multi-push sequence (calls, interrupt delivery) uses so that a fault in the middle leaves
//! rSP untouched.

use iced_x86::{Code, Instruction, Mnemonic as M, OpKind};
use vcpu::state::{efer, gpr, rflags};
use vcpu::{ExecMode, Segment, SegmentIndex};

use super::data::sreg_index;
use super::operand::{
    check_segment_value, gpr_write_sized, mask, mem_linear, read_op, reg_read, reg_write,
};
use super::{end_block_after, Exec, Flow};
use crate::context::JitContext;
use crate::exception::Fault;
use crate::mem;
use crate::runtime::Runtime;
use crate::segment;

/// A private copy of rSP that pushes and pops move; nothing changes in the CPU until
/// [`StackCursor::commit`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct StackCursor {
    base: u64,
    pub(crate) sp: u64,
    mask: u64,
    /// Access with supervisor rights whatever the CPL (interrupt delivery to an inner level).
    pub(crate) system: bool,
    /// The stack segment whose limit and rights each access is checked against (protected
    /// mode outside 64-bit mode; see `check_segment_value`).
    checked: Option<Segment>,
}

impl StackCursor {
    /// The current stack (SS:rSP, with SS.B choosing SP or ESP).
    pub(crate) fn from_ss(ctx: &JitContext) -> Self {
        if ctx.cpu.efer & efer::LMA != 0 && ctx.cpu.cs().long() {
            return Self::flat64(ctx.cpu.gpr[gpr::RSP]);
        }
        let ss = ctx.cpu.seg[SegmentIndex::Ss as usize];
        let mut st = Self::for_segment(&ss, ctx.cpu.gpr[gpr::RSP]);
        if !matches!(
            ctx.cpu.mode(),
            ExecMode::Protected16 | ExecMode::Protected32
        ) {
            st.checked = None;
        }
        st
    }

    /// A stack in segment `ss` at `sp` (for stack switches).
    pub(crate) fn for_segment(ss: &Segment, sp: u64) -> Self {
        let mask = if ss.db() { 0xffff_ffff } else { 0xffff };
        Self {
            base: ss.base,
            sp: sp & mask,
            mask,
            system: false,
            checked: Some(*ss),
        }
    }

    /// The 64-bit mode stack: base 0, all 64 bits of RSP (SDM Vol. 3A 6.14.2).
    pub(crate) fn flat64(sp: u64) -> Self {
        Self {
            base: 0,
            sp,
            mask: u64::MAX,
            system: false,
            checked: None,
        }
    }

    /// The stack of code running with CS = `cs` and SS = `ss` at `sp`, in or out of 64-bit mode.
    pub(crate) fn for_target(ctx: &JitContext, cs: &Segment, ss: &Segment, sp: u64) -> Self {
        if ctx.cpu.efer & efer::LMA != 0 && cs.long() {
            Self::flat64(sp)
        } else {
            Self::for_segment(ss, sp)
        }
    }

    /// The linear address of stack offset `sp`; in 64-bit mode a non-canonical one raises
    /// #SS(0) (SDM Vol. 3A 6.15, Interrupt 12).
    fn linear(&self, ctx: &JitContext, sp: u64) -> Result<u64, Fault> {
        if self.mask == u64::MAX {
            if !crate::paging::is_canonical(sp) {
                return Err(Fault::ss(0));
            }
            return Ok(sp);
        }
        Ok(self.base.wrapping_add(sp) & mem::linear_mask(ctx))
    }

    pub(crate) fn push(
        &mut self,
        ctx: &mut JitContext,
        rt: &mut Runtime,
        size: u32,
        v: u64,
    ) -> Result<(), Fault> {
        let sp = self.sp.wrapping_sub(u64::from(size)) & self.mask;
        if let Some(ss) = &self.checked {
            check_segment_value(ss, true, sp, size, true)?;
        }
        let la = self.linear(ctx, sp)?;
        if self.system {
            mem::write_system(ctx, rt, la, size, v & mask(size))?;
        } else {
            mem::write(ctx, rt, la, size, v & mask(size))?;
        }
        self.sp = sp;
        Ok(())
    }

    pub(crate) fn pop(
        &mut self,
        ctx: &mut JitContext,
        rt: &mut Runtime,
        size: u32,
    ) -> Result<u64, Fault> {
        if let Some(ss) = &self.checked {
            check_segment_value(ss, true, self.sp, size, false)?;
        }
        let la = self.linear(ctx, self.sp)?;
        let v = mem::read(ctx, rt, la, size)?;
        self.sp = self.sp.wrapping_add(u64::from(size)) & self.mask;
        Ok(v)
    }

    /// Drop `n` bytes (RET imm16).
    pub(crate) fn release(&mut self, n: u64) {
        self.sp = self.sp.wrapping_add(n) & self.mask;
    }

    /// Store the cursor into rSP (only the SP/ESP part the stack size covers).
    pub(crate) fn commit(&self, ctx: &mut JitContext) {
        let r = &mut ctx.cpu.gpr[gpr::RSP];
        *r = (*r & !self.mask) | self.sp;
    }
}

/// Operand size of a push/pop-like instruction, from how far it moves the stack pointer.
fn stack_op_size(insn: &Instruction) -> u32 {
    insn.stack_pointer_increment().unsigned_abs().clamp(2, 8)
}

pub(super) fn push(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = stack_op_size(insn);
    let v = read_op(ctx, rt, insn, 0, size)?;
    let mut st = StackCursor::from_ss(ctx);
    st.push(ctx, rt, size, v)?;
    st.commit(ctx);
    Ok(Flow::Next)
}

pub(super) fn pop(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = stack_op_size(insn);
    let mut st = StackCursor::from_ss(ctx);
    let v = st.pop(ctx, rt, size)?;
    match insn.op_kind(0) {
        OpKind::Register if insn.op_register(0).is_segment_register() => {
            let seg = sreg_index(insn.op_register(0));
            if seg == SegmentIndex::Cs {
                return Err(Fault::ud());
            }
            segment::load_segment(ctx, rt, seg, v as u16)?;
            st.commit(ctx);
            if seg == SegmentIndex::Ss {
                ctx.cpu.interrupt_shadow = 1;
                return Ok(end_block_after(ctx, insn));
            }
        }
        OpKind::Register => {
            st.commit(ctx);
            reg_write(&mut ctx.cpu, insn.op_register(0), v);
        }
        _ => {
            // POP m: the address is computed with the incremented stack pointer.
            let old = ctx.cpu.gpr[gpr::RSP];
            st.commit(ctx);
            let la = mem_linear(ctx, insn);
            if let Err(f) = mem::write(ctx, rt, la, size, v) {
                ctx.cpu.gpr[gpr::RSP] = old;
                return Err(f);
            }
        }
    }
    Ok(Flow::Next)
}

pub(super) fn pusha(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = if insn.mnemonic() == M::Pushad { 4 } else { 2 };
    let mut st = StackCursor::from_ss(ctx);
    let sp = ctx.cpu.gpr[gpr::RSP];
    for i in 0..8 {
        let v = if i == gpr::RSP { sp } else { ctx.cpu.gpr[i] };
        st.push(ctx, rt, size, v)?;
    }
    st.commit(ctx);
    Ok(Flow::Next)
}

pub(super) fn popa(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = if insn.mnemonic() == M::Popad { 4 } else { 2 };
    let mut st = StackCursor::from_ss(ctx);
    let mut vals = [0u64; 8];
    for i in (0..8).rev() {
        vals[i] = st.pop(ctx, rt, size)?;
    }
    for (i, v) in vals.iter().enumerate() {
        if i != gpr::RSP {
            gpr_write_sized(&mut ctx.cpu, i, size, *v);
        }
    }
    st.commit(ctx);
    Ok(Flow::Next)
}

pub(super) fn pushf(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = stack_op_size(insn);
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    let v = ctx.cpu.rflags & !(rflags::VM | rflags::RF);
    let mut st = StackCursor::from_ss(ctx);
    st.push(ctx, rt, size, v)?;
    st.commit(ctx);
    Ok(Flow::Next)
}

/// The RFLAGS bits POPF/IRET may change at the current privilege (SDM Vol. 2B POPF, Table 4-15):
/// IOPL only at CPL 0, IF only when CPL <= IOPL; VM, VIF, VIP never through POPF.
pub(super) fn writable_flags(ctx: &JitContext) -> u64 {
    let mut w = rflags::STATUS | rflags::TF | rflags::DF | rflags::NT | rflags::AC | rflags::ID;
    let cpl = u64::from(ctx.cpu.cpl());
    let iopl = (ctx.cpu.rflags & rflags::IOPL) >> 12;
    if cpl <= iopl {
        w |= rflags::IF;
    }
    if cpl == 0 {
        w |= rflags::IOPL;
    }
    w
}

pub(super) fn popf(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = stack_op_size(insn);
    let mut st = StackCursor::from_ss(ctx);
    let v = st.pop(ctx, rt, size)?;
    st.commit(ctx);
    let w = writable_flags(ctx) & mask(size);
    let old = ctx.cpu.rflags;
    ctx.cpu.rflags = ((ctx.cpu.rflags & !w) | (v & w) | rflags::FIXED1) & !rflags::RF;
    ctx.flags.set_eflags();
    super::system::after_ac_change(ctx, old);
    Ok(end_block_after(ctx, insn))
}

pub(super) fn enter(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = match insn.code() {
        Code::Enterw_imm16_imm8 => 2,
        Code::Enterq_imm16_imm8 => 8,
        _ => 4,
    };
    let alloc = u64::from(insn.immediate16());
    let level = u32::from(insn.immediate8_2nd()) & 31;
    let mut st = StackCursor::from_ss(ctx);
    let bp_reg = match st.mask {
        0xffff => iced_x86::Register::BP,
        0xffff_ffff => iced_x86::Register::EBP,
        _ => iced_x86::Register::RBP,
    };
    let bp = ctx.cpu.gpr[gpr::RBP];
    st.push(ctx, rt, size, bp)?;
    let frame = st.sp;
    if level > 0 {
        let mut bp_tmp = reg_read(&ctx.cpu, bp_reg);
        for _ in 1..level {
            bp_tmp = bp_tmp.wrapping_sub(u64::from(size)) & st.mask;
            let la = st.base.wrapping_add(bp_tmp) & mem::linear_mask(ctx);
            let v = mem::read(ctx, rt, la, size)?;
            st.push(ctx, rt, size, v)?;
        }
        st.push(ctx, rt, size, frame)?;
    }
    st.sp = st.sp.wrapping_sub(alloc) & st.mask;
    st.commit(ctx);
    gpr_write_sized(&mut ctx.cpu, gpr::RBP, size, frame);
    Ok(Flow::Next)
}

pub(super) fn leave(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = match insn.code() {
        Code::Leavew => 2,
        Code::Leaveq => 8,
        _ => 4,
    };
    let mut st = StackCursor::from_ss(ctx);
    st.sp = ctx.cpu.gpr[gpr::RBP] & st.mask;
    let v = st.pop(ctx, rt, size)?;
    st.commit(ctx);
    gpr_write_sized(&mut ctx.cpu, gpr::RBP, size, v);
    Ok(Flow::Next)
}
