//! Binary arithmetic and logic (ADD, ADC, SUB, SBB, CMP, AND, OR, XOR, TEST, INC, DEC, NEG,
//! NOT; SDM Vol. 1 7.3.2, 7.3.3) and the single-flag instructions (CLC, STC, CMC, CLD, STD,
//! LAHF, SAHF, SALC; SDM Vol. 1 7.3.13). Flags are recorded lazily.

use iced_x86::{Instruction, Mnemonic as M, Register};
use vcpu::state::rflags;

use super::operand::{mask, op_size, read_op, reg_read, reg_write, Place};
use super::{Exec, Flow};
use crate::context::JitContext;
use crate::flags::kind;
use crate::runtime::Runtime;

pub(super) fn binary(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let m = mask(size);
    let dest = Place::of(ctx, insn, 0)?;
    let a = dest.read(ctx, rt, size)?;
    let b = read_op(ctx, rt, insn, 1, size)?;
    let (k, r, aux, store) = match insn.mnemonic() {
        M::Add => (kind::ADD, a.wrapping_add(b), 0, true),
        M::Adc => {
            let c = u64::from(super::cond::carry(&ctx.flags, ctx.cpu.rflags));
            (kind::ADC, a.wrapping_add(b).wrapping_add(c), c, true)
        }
        M::Sub => (kind::SUB, a.wrapping_sub(b), 0, true),
        M::Sbb => {
            let c = u64::from(super::cond::carry(&ctx.flags, ctx.cpu.rflags));
            (kind::SBB, a.wrapping_sub(b).wrapping_sub(c), c, true)
        }
        M::Cmp => (kind::SUB, a.wrapping_sub(b), 0, false),
        M::And => (kind::LOGIC, a & b, 0, true),
        M::Or => (kind::LOGIC, a | b, 0, true),
        M::Xor => (kind::LOGIC, a ^ b, 0, true),
        _ => (kind::LOGIC, a & b, 0, false), // TEST
    };
    let r = r & m;
    if store {
        dest.write(ctx, rt, size, r)?;
    }
    ctx.flags.set(k, size, a, b, r, aux);
    Ok(Flow::Next)
}

pub(super) fn unary(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let m = mask(size);
    let dest = Place::of(ctx, insn, 0)?;
    let a = dest.read(ctx, rt, size)?;
    match insn.mnemonic() {
        M::Inc | M::Dec => {
            let cf = u64::from(super::cond::carry(&ctx.flags, ctx.cpu.rflags));
            let inc = insn.mnemonic() == M::Inc;
            let r = if inc {
                a.wrapping_add(1)
            } else {
                a.wrapping_sub(1)
            } & m;
            dest.write(ctx, rt, size, r)?;
            let k = if inc { kind::INC } else { kind::DEC };
            ctx.flags.set(k, size, a, 1, r, cf);
        }
        M::Neg => {
            let r = 0u64.wrapping_sub(a) & m;
            dest.write(ctx, rt, size, r)?;
            ctx.flags.set(kind::SUB, size, 0, a, r, 0);
        }
        _ => dest.write(ctx, rt, size, !a & m)?, // NOT: no flags
    }
    Ok(Flow::Next)
}

/// The flags LAHF/SAHF move (SDM Vol. 2A LAHF): SF, ZF, AF, PF, CF.
const AH_FLAGS: u64 = rflags::SF | rflags::ZF | rflags::AF | rflags::PF | rflags::CF;

pub(super) fn flag_op(ctx: &mut JitContext, insn: &Instruction) -> Exec {
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    let f = ctx.cpu.rflags;
    ctx.cpu.rflags = match insn.mnemonic() {
        M::Clc => f & !rflags::CF,
        M::Stc => f | rflags::CF,
        M::Cmc => f ^ rflags::CF,
        M::Cld => f & !rflags::DF,
        M::Std => f | rflags::DF,
        M::Lahf => {
            reg_write(&mut ctx.cpu, Register::AH, (f & AH_FLAGS) | rflags::FIXED1);
            f
        }
        M::Sahf => {
            let ah = reg_read(&ctx.cpu, Register::AH);
            (f & !AH_FLAGS) | (ah & AH_FLAGS)
        }
        _ => {
            // SALC (undocumented opcode D6): AL = CF ? 0xFF : 0.
            let v = if f & rflags::CF != 0 { 0xff } else { 0 };
            reg_write(&mut ctx.cpu, Register::AL, v);
            f
        }
    };
    Ok(Flow::Next)
}
