//! Decimal arithmetic: DAA, DAS, AAA, AAS, AAM, AAD (SDM Vol. 1 7.3.5, Vol. 2A pseudo-code).
//! Real-mode code still uses them. Flags the SDM leaves undefined follow QEMU: DAA/DAS clear
//! OF; AAA/AAS leave SF, ZF, PF, OF alone; AAM/AAD set them as a logic result of AL.

use iced_x86::{Instruction, Mnemonic as M};
use vcpu::state::{gpr, rflags};

use super::operand::{gpr_write_sized, reg_write};
use super::shift::szp;
use super::{Exec, Flow};
use crate::context::JitContext;
use crate::exception::Fault;
use crate::flags::kind;

pub(super) fn decimal(ctx: &mut JitContext, insn: &Instruction) -> Exec {
    let ax = ctx.cpu.gpr[gpr::RAX] & 0xffff;
    let al = ax & 0xff;
    let ah = ax >> 8;
    match insn.mnemonic() {
        M::Aam => {
            let base = u64::from(insn.immediate8());
            if base == 0 {
                return Err(Fault::de());
            }
            let new_al = al % base;
            gpr_write_sized(&mut ctx.cpu, gpr::RAX, 2, ((al / base) << 8) | new_al);
            ctx.flags.set(kind::LOGIC, 1, new_al, 0, new_al, 0);
            return Ok(Flow::Next);
        }
        M::Aad => {
            let base = u64::from(insn.immediate8());
            let new_al = (al + ah * base) & 0xff;
            gpr_write_sized(&mut ctx.cpu, gpr::RAX, 2, new_al);
            ctx.flags.set(kind::LOGIC, 1, new_al, 0, new_al, 0);
            return Ok(Flow::Next);
        }
        _ => {}
    }
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    let f = ctx.cpu.rflags;
    let cf = f & rflags::CF != 0;
    let af = f & rflags::AF != 0;
    match insn.mnemonic() {
        M::Daa | M::Das => {
            let add = insn.mnemonic() == M::Daa;
            let (mut new_al, mut new_cf, mut new_af) = (al, false, false);
            if al & 0xf > 9 || af {
                new_al = if add { al + 6 } else { al.wrapping_sub(6) } & 0xff;
                new_cf = cf || if add { al > 0xf9 } else { al < 6 };
                new_af = true;
            }
            if al > 0x99 || cf {
                new_al = if add {
                    new_al + 0x60
                } else {
                    new_al.wrapping_sub(0x60)
                } & 0xff;
                new_cf = true;
            }
            reg_write(&mut ctx.cpu, iced_x86::Register::AL, new_al);
            let mut nf = szp(new_al, 1);
            if new_cf {
                nf |= rflags::CF;
            }
            if new_af {
                nf |= rflags::AF;
            }
            ctx.cpu.rflags = (f & !rflags::STATUS) | nf;
        }
        _ => {
            // AAA / AAS.
            let adjust = al & 0xf > 9 || af;
            let new_ax = if !adjust {
                ax & 0xff0f
            } else if insn.mnemonic() == M::Aaa {
                (ax.wrapping_add(0x106) & 0xff00) | ((al + 6) & 0xf)
            } else {
                (ax.wrapping_sub(0x106) & 0xff00) | (al.wrapping_sub(6) & 0xf)
            };
            gpr_write_sized(&mut ctx.cpu, gpr::RAX, 2, new_ax & 0xffff);
            let bits = rflags::CF | rflags::AF;
            ctx.cpu.rflags = if adjust { f | bits } else { f & !bits };
        }
    }
    Ok(Flow::Next)
}
