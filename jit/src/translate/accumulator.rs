//! Instructions on the implicit accumulator pair rDX:rAX translated inline: unsigned DIV of a
//! 32- or 64-bit divisor, CBW/CWDE/CDQE and CWD/CDQ/CQO, as `interp::muldiv::divide` and
//! `interp::data` do them (SDM Vol. 2A CBW/CWDE/CDQE, CWD/CDQ/CQO, DIV).
//!
//! DIV is inline only on its common path: a non-zero divisor and a quotient that fits
//! (rDX < divisor, which for 64-bit operands the translation narrows to RDX = 0 so one 64-bit
//! division suffices). Everything else, including the #DE cases, runs the interpreter in a cold
//! path that leaves the block. DIV leaves the flags alone in the interpreter (the SDM calls
//! them undefined), and so does this.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder};
use iced_x86::{Instruction, Mnemonic};
use vcpu::state::gpr::{RAX, RDX};

use super::emit::Tx;
use super::insn::{Done, MemCache, Opnd};
use super::regs::GprInfo;

fn accumulator(index: usize, size: u32) -> GprInfo {
    GprInfo {
        index,
        size,
        high8: false,
    }
}

impl Tx<'_, '_> {
    /// DIV r/m32, DIV r/m64.
    pub(super) fn div(&mut self, insn: &Instruction) -> Done {
        let Some(s) = self.opnd(insn, 0, true, false) else {
            return Done::NotHandled;
        };
        let size = Self::opnd_size(insn, s);
        if !matches!(size, 4 | 8) || matches!(s, Opnd::Imm(_)) {
            return Done::NotHandled;
        }
        let mut ea = MemCache::default();
        let divisor = self.read_opnd(insn, s, size, &mut ea);
        let (ax, dx) = (accumulator(RAX, size), accumulator(RDX, size));
        let lo = self.read_reg(ax);
        let hi = self.read_reg(dx);
        let zero = self.b.ins().icmp_imm_u(IntCC::Equal, divisor, 0);
        let dividend = if size == 8 {
            let high = self.b.ins().icmp_imm_u(IntCC::NotEqual, hi, 0);
            let slow = self.b.ins().bor(zero, high);
            self.interp_if(slow);
            lo
        } else {
            let overflow = self
                .b
                .ins()
                .icmp(IntCC::UnsignedGreaterThanOrEqual, hi, divisor);
            let slow = self.b.ins().bor(zero, overflow);
            self.interp_if(slow);
            let high = self.b.ins().ishl_imm_u(hi, 32);
            self.b.ins().bor(high, lo)
        };
        let q = self.b.ins().udiv(dividend, divisor);
        let r = self.b.ins().urem(dividend, divisor);
        self.write_reg(ax, q);
        self.write_reg(dx, r);
        Done::Inline
    }

    /// CBW, CWDE, CDQE: rAX = the sign extension of its lower half; CWD, CDQ, CQO: rDX = the
    /// sign of rAX repeated.
    pub(super) fn sign_extend_accumulator(&mut self, insn: &Instruction) -> Done {
        let mn = insn.mnemonic();
        let size = match mn {
            Mnemonic::Cbw | Mnemonic::Cwd => 2,
            Mnemonic::Cwde | Mnemonic::Cdq => 4,
            _ => 8,
        };
        let rax = self.gpr(RAX);
        match mn {
            Mnemonic::Cbw | Mnemonic::Cwde | Mnemonic::Cdqe => {
                let v = self.sext(rax, size / 2);
                self.write_reg(accumulator(RAX, size), v);
            }
            _ => {
                let v = self.sext(rax, size);
                let sign = self.b.ins().sshr_imm_u(v, 63);
                self.write_reg(accumulator(RDX, size), sign);
            }
        }
        Done::Inline
    }

    /// BSWAP r32/r64 (the undefined 16-bit form stays with the interpreter).
    pub(super) fn bswap(&mut self, insn: &Instruction) -> Done {
        let Some(Opnd::Reg(g)) = self.opnd(insn, 0, true, true) else {
            return Done::NotHandled;
        };
        if !matches!(g.size, 4 | 8) {
            return Done::NotHandled;
        }
        let v = self.read_reg(g);
        let swapped = if g.size == 8 {
            self.b.ins().bswap(v)
        } else {
            let low = self.b.ins().ireduce(types::I32, v);
            let s = self.b.ins().bswap(low);
            self.b.ins().uextend(types::I64, s)
        };
        self.write_reg(g, swapped);
        Done::Inline
    }
}
