//! The x87 FPU (SDM Vol. 1 chapter 8): escape opcodes D8-DF and FWAIT.
//!
//! Every x87 instruction runs here in the interpreter (the translator sends whatever it does
//! not translate inline to the interpreter helper, and it translates no x87 instruction). The
//! state lives in `CpuState::fx` in the FXSAVE layout, so FXSAVE/FXRSTOR, KVM and snapshots see
//! it unchanged; [`state::X87`] is the decoded copy one instruction works on, stored back only
//! when the instruction completes.
//!
//! Exceptions follow SDM Vol. 1 8.6 and Vol. 3A 2.5 / Table 2-2: CR0.EM or CR0.TS raise #NM
//! before anything else; a "waiting" instruction (all but FNINIT, FNCLEX, FNSTSW, FNSTCW,
//! FNSTENV, FNSAVE) with an unmasked exception pending (FSW.ES) raises #MF when CR0.NE is set.
//! With CR0.NE clear, a PC would signal FERR# through IRQ 13; emu has no such line and behaves
//! as if IGNNE# were asserted (the pending exception is ignored and the instruction runs).

mod arith;
mod control;
mod extended_math;
pub mod float80;
mod load_store;
pub mod state;
mod transcendental;

use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};
use vcpu::state::cr0;

use super::{operand, Exec, Flow};
use crate::context::JitContext;
use crate::exception::{Fault, MF_VECTOR, NM_VECTOR};
use crate::mem;
use crate::runtime::Runtime;
use float80::{exc, F80};
use state::{fsw, X87};

/// x87 escape opcodes D8-DF (SDM Vol. 2A Appendix A.4).
const X87_ESCAPE: std::ops::RangeInclusive<u32> = 0xd8..=0xdf;

/// Whether `insn` is an x87 escape instruction (D8-DF in the one-byte opcode map).
pub(crate) fn is_x87(insn: &Instruction) -> bool {
    if insn.code() == iced_x86::Code::INVALID {
        return false;
    }
    let op = insn.op_code();
    let first_byte = if op.op_code_len() == 2 {
        op.op_code() >> 8
    } else {
        op.op_code()
    };
    op.table() == iced_x86::OpCodeTableKind::Normal && X87_ESCAPE.contains(&first_byte)
}

/// Instructions that do not check for pending unmasked exceptions (SDM Vol. 1 8.3.11, 8.6).
fn is_non_waiting(m: M) -> bool {
    matches!(
        m,
        M::Fninit
            | M::Fnclex
            | M::Fnstsw
            | M::Fnstcw
            | M::Fnstenv
            | M::Fnsave
            | M::Fneni
            | M::Fndisi
            | M::Fnsetpm
    )
}

/// Control instructions leave FIP/FOP/FDP alone (SDM Vol. 1 8.1.8).
fn is_control(m: M) -> bool {
    matches!(
        m,
        M::Fninit
            | M::Finit
            | M::Fnclex
            | M::Fclex
            | M::Fldcw
            | M::Fnstcw
            | M::Fstcw
            | M::Fnstsw
            | M::Fstsw
            | M::Fnstenv
            | M::Fstenv
            | M::Fldenv
            | M::Fnsave
            | M::Fsave
            | M::Frstor
            | M::Fneni
            | M::Feni
            | M::Fndisi
            | M::Fdisi
            | M::Fnsetpm
            | M::Fsetpm
    )
}

/// The pending-exception check of waiting instructions and FWAIT.
fn check_pending(ctx: &JitContext, st: &X87) -> Result<(), Fault> {
    if st.fsw & fsw::ES != 0 && ctx.cpu.cr0 & cr0::NE != 0 {
        return Err(Fault::new(MF_VECTOR));
    }
    Ok(())
}

/// FWAIT/WAIT: #NM when CR0.MP and CR0.TS are both set (SDM Vol. 3A Table 2-2), then the
/// pending-exception check.
pub(super) fn fwait(ctx: &mut JitContext) -> Exec {
    if ctx.cpu.cr0 & (cr0::MP | cr0::TS) == cr0::MP | cr0::TS {
        return Err(Fault::new(NM_VECTOR));
    }
    let st = X87::load(&ctx.cpu.fx);
    check_pending(ctx, &st)?;
    Ok(Flow::Next)
}

/// Execute one x87 instruction.
pub(super) fn execute(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    if ctx.cpu.cr0 & (cr0::EM | cr0::TS) != 0 {
        return Err(Fault::new(NM_VECTOR));
    }
    let mut st = X87::load(&ctx.cpu.fx);
    let m = insn.mnemonic();
    if !is_non_waiting(m) {
        check_pending(ctx, &st)?;
    }
    let mut x = X87Insn {
        ctx,
        rt,
        insn,
        st: &mut st,
    };
    let flow = match m {
        M::Fninit
        | M::Finit
        | M::Fnclex
        | M::Fclex
        | M::Fldcw
        | M::Fnstcw
        | M::Fstcw
        | M::Fnstsw
        | M::Fstsw
        | M::Fnstenv
        | M::Fstenv
        | M::Fldenv
        | M::Fnsave
        | M::Fsave
        | M::Frstor
        | M::Ffree
        | M::Ffreep
        | M::Fincstp
        | M::Fdecstp
        | M::Fnop
        | M::Fneni
        | M::Feni
        | M::Fndisi
        | M::Fdisi
        | M::Fnsetpm
        | M::Fsetpm => control::execute(&mut x)?,
        M::Fld
        | M::Fst
        | M::Fstp
        | M::Fstpnce
        | M::Fild
        | M::Fist
        | M::Fistp
        | M::Fisttp
        | M::Fbld
        | M::Fbstp
        | M::Fld1
        | M::Fldz
        | M::Fldpi
        | M::Fldl2e
        | M::Fldl2t
        | M::Fldlg2
        | M::Fldln2
        | M::Fxch
        | M::Fcmovb
        | M::Fcmove
        | M::Fcmovbe
        | M::Fcmovu
        | M::Fcmovnb
        | M::Fcmovne
        | M::Fcmovnbe
        | M::Fcmovnu => load_store::execute(&mut x)?,
        M::Fadd
        | M::Faddp
        | M::Fiadd
        | M::Fsub
        | M::Fsubp
        | M::Fisub
        | M::Fsubr
        | M::Fsubrp
        | M::Fisubr
        | M::Fmul
        | M::Fmulp
        | M::Fimul
        | M::Fdiv
        | M::Fdivp
        | M::Fidiv
        | M::Fdivr
        | M::Fdivrp
        | M::Fidivr
        | M::Fchs
        | M::Fabs
        | M::Fsqrt
        | M::Frndint
        | M::Fscale
        | M::Fxtract
        | M::Fprem
        | M::Fprem1
        | M::Fcom
        | M::Fcomp
        | M::Fcompp
        | M::Fucom
        | M::Fucomp
        | M::Fucompp
        | M::Ficom
        | M::Ficomp
        | M::Fcomi
        | M::Fcomip
        | M::Fucomi
        | M::Fucomip
        | M::Ftst
        | M::Fxam => arith::execute(&mut x)?,
        M::Fsin
        | M::Fcos
        | M::Fsincos
        | M::Fptan
        | M::Fpatan
        | M::F2xm1
        | M::Fyl2x
        | M::Fyl2xp1 => transcendental::execute(&mut x)?,
        _ => return super::unimplemented_instruction(x.ctx, x.rt, insn),
    };
    if !is_control(m) {
        record_pointers(x.ctx, x.rt, insn, x.st);
    }
    st.store(&mut ctx.cpu.fx);
    Ok(flow)
}

/// One x87 instruction in flight: the machine, the instruction and the FPU copy it works on.
pub(super) struct X87Insn<'a> {
    pub ctx: &'a mut JitContext,
    pub rt: &'a mut Runtime,
    pub insn: &'a Instruction,
    pub st: &'a mut X87,
}

impl X87Insn<'_> {
    /// Linear address of the memory operand plus `extra` bytes.
    pub fn la(&self, extra: u64) -> u64 {
        operand::mem_linear_plus(self.ctx, self.insn, extra)
    }
    pub fn read(&mut self, extra: u64, size: u32) -> Result<u64, Fault> {
        operand::check_mem_operand(self.ctx, self.insn, extra, size, false)?;
        let la = self.la(extra);
        mem::read(self.ctx, self.rt, la, size)
    }
    pub fn write(&mut self, extra: u64, size: u32, v: u64) -> Result<(), Fault> {
        operand::check_mem_operand(self.ctx, self.insn, extra, size, true)?;
        let la = self.la(extra);
        mem::write(self.ctx, self.rt, la, size, v)
    }
    pub fn read_f80(&mut self, extra: u64) -> Result<F80, Fault> {
        let sig = self.read(extra, 8)?;
        let se = self.read(extra + 8, 2)? as u16;
        Ok(F80 { se, sig })
    }
    /// Store an 80-bit value; both parts are probed before either is written.
    pub fn write_f80(&mut self, extra: u64, v: F80) -> Result<(), Fault> {
        self.read(extra, 8)?;
        self.read(extra + 8, 2)?;
        self.write(extra + 8, 2, u64::from(v.se))?;
        self.write(extra, 8, v.sig)
    }
    /// The ST(i) index of operand `op` (a register ST0..ST7).
    pub fn st_index(&self, op: u32) -> usize {
        (self.insn.op_register(op) as usize).wrapping_sub(Register::ST0 as usize) & 7
    }
    /// A stack overflow (push onto a used ST(7)): IE, SF, C1 = 1 (SDM Vol. 1 8.5.1.1).
    /// Returns whether the masked response (push the indefinite) applies.
    pub fn stack_overflow(&mut self) -> bool {
        self.st.set_c1(true);
        self.st.fsw |= fsw::SF;
        self.st.raise(exc::IE);
        self.st.masked(exc::IE)
    }
    /// A stack underflow (an empty source or destination): IE, SF, C1 = 0. Returns whether
    /// the masked response applies.
    pub fn stack_underflow(&mut self) -> bool {
        self.st.set_c1(false);
        self.st.fsw |= fsw::SF;
        self.st.raise(exc::IE);
        self.st.masked(exc::IE)
    }
    /// Whether a push would overflow the stack.
    pub fn push_overflows(&self) -> bool {
        !self.st.is_empty(7)
    }
}

/// Record FIP/FCS, FOP and (for memory operands) FDP/FDS (SDM Vol. 1 8.1.8, 8.1.9).
fn record_pointers(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction, st: &mut X87) {
    st.fip = insn.ip() as u32;
    st.fcs = ctx.cpu.cs().selector;
    st.fop = opcode_bits(ctx, rt, insn).unwrap_or(0);
    if (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory) {
        st.fdp = operand::effective_offset(&ctx.cpu, insn) as u32;
        st.fds = ctx.cpu.seg[operand::seg_index(insn.memory_segment())].selector;
    } else {
        st.fdp = 0;
        st.fds = 0;
    }
}

/// The 11-bit FOP: the low 3 bits of the escape byte and the ModR/M byte (SDM Vol. 1 8.1.9,
/// Figure 8-8), read back from the instruction bytes past the prefixes.
fn opcode_bits(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Option<u16> {
    let la = ctx.cpu.cs().base.wrapping_add(insn.ip()) & mem::linear_mask(ctx);
    let mut buf = [0u8; 15];
    let n = insn.len().min(15);
    let (_, got) = mem::fetch_code(ctx, rt, la, &mut buf[..n]).ok()?;
    // No prefix byte (legacy, REX, or the 9B of FINIT and friends) lies in D8-DF.
    let i = buf[..got]
        .iter()
        .position(|&b| X87_ESCAPE.contains(&u32::from(b)))?;
    let modrm = *buf.get(i + 1).filter(|_| i + 1 < got)?;
    Some((u16::from(buf[i] & 7) << 8) | u16::from(modrm))
}

#[cfg(test)]
mod tests;
