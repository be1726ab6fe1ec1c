//! Data movement: MOV in all its forms (moffs, segment, control and debug registers go to
//! `system`), MOVZX/MOVSX, LEA, XCHG, CMPXCHG(8B), XADD, the accumulator sign extensions,
//! XLAT, BSWAP, far-pointer loads, SETcc and CMOVcc (SDM Vol. 1 7.3.1, 7.3.13).

use iced_x86::{Instruction, OpKind, Register};
use vcpu::state::{gpr, rflags};
use vcpu::SegmentIndex;

use super::operand::{
    effective_offset, mask, mem_linear, mem_linear_plus, op_size, read_op, reg_read, reg_write,
    seg_index, sext, write_op, Place,
};
use super::{end_block_after, system, Exec, Flow};
use crate::context::JitContext;
use crate::exception::Fault;
use crate::flags::kind;
use crate::mem;
use crate::runtime::Runtime;
use crate::segment;

/// The condition nibble of a Jcc/SETcc/CMOVcc (SDM Vol. 1 Appendix B, Table B-1).
#[inline]
pub(super) fn cc_nibble(insn: &Instruction) -> u8 {
    (insn.condition_code() as u8).wrapping_sub(1) & 0xf
}

/// Whether the instruction's condition holds now.
#[inline]
pub(super) fn condition_holds(ctx: &JitContext, insn: &Instruction) -> bool {
    super::cond::holds(&ctx.flags, cc_nibble(insn), ctx.cpu.rflags)
}

pub(super) fn mov(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let r0 = if insn.op_kind(0) == OpKind::Register {
        insn.op_register(0)
    } else {
        Register::None
    };
    let r1 = if insn.op_kind(1) == OpKind::Register {
        insn.op_register(1)
    } else {
        Register::None
    };
    // General registers come before the segment, control and debug registers in iced's
    // numbering (`Register::None` is 0): the common forms skip the special-register checks.
    let special = |r: Register| r as u32 > Register::R15 as u32;
    if !special(r0) && !special(r1) {
        let size = op_size(insn, 0, 4);
        let v = read_op(ctx, rt, insn, 1, size)?;
        write_op(ctx, rt, insn, 0, size, v)?;
        return Ok(Flow::Next);
    }
    if r0.is_segment_register() {
        if r0 == Register::CS {
            return Err(Fault::ud());
        }
        let sel = read_op(ctx, rt, insn, 1, 2)? as u16;
        let seg = sreg_index(r0);
        segment::load_segment(ctx, rt, seg, sel)?;
        if seg == SegmentIndex::Ss {
            ctx.cpu.interrupt_shadow = 1;
            return Ok(end_block_after(ctx, insn));
        }
        return Ok(Flow::Next);
    }
    if r1.is_segment_register() {
        let sel = reg_read(&ctx.cpu, r1);
        let size = op_size(insn, 0, 2);
        write_op(ctx, rt, insn, 0, size, sel)?;
        return Ok(Flow::Next);
    }
    if r0.is_cr() || r1.is_cr() || r0.is_dr() || r1.is_dr() {
        return system::mov_control(ctx, rt, insn, r0, r1);
    }
    let size = op_size(insn, 0, 4);
    let v = read_op(ctx, rt, insn, 1, size)?;
    write_op(ctx, rt, insn, 0, size, v)?;
    Ok(Flow::Next)
}

/// The `CpuState::seg` slot of an iced segment register.
pub(super) fn sreg_index(r: Register) -> SegmentIndex {
    match seg_index(r) {
        0 => SegmentIndex::Es,
        1 => SegmentIndex::Cs,
        2 => SegmentIndex::Ss,
        3 => SegmentIndex::Ds,
        4 => SegmentIndex::Fs,
        _ => SegmentIndex::Gs,
    }
}

pub(super) fn movzx(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let dsize = op_size(insn, 0, 4);
    let ssize = op_size(insn, 1, 1);
    let v = read_op(ctx, rt, insn, 1, ssize)?;
    write_op(ctx, rt, insn, 0, dsize, v)?;
    Ok(Flow::Next)
}

pub(super) fn movsx(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let dsize = op_size(insn, 0, 4);
    let ssize = op_size(insn, 1, 1);
    let v = sext(read_op(ctx, rt, insn, 1, ssize)?, ssize) & mask(dsize);
    write_op(ctx, rt, insn, 0, dsize, v)?;
    Ok(Flow::Next)
}

pub(super) fn lea(ctx: &mut JitContext, insn: &Instruction) -> Exec {
    if insn.op_kind(1) != OpKind::Memory {
        return Err(Fault::ud());
    }
    let dsize = op_size(insn, 0, 4);
    let ea = effective_offset(&ctx.cpu, insn) & mask(dsize);
    reg_write(&mut ctx.cpu, insn.op_register(0), ea);
    Ok(Flow::Next)
}

pub(super) fn xchg(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let mut p0 = Place::of(ctx, insn, 0)?;
    let mut p1 = Place::of(ctx, insn, 1)?;
    // Store the memory operand first: if it faults, no register has changed.
    if p1.is_mem() {
        std::mem::swap(&mut p0, &mut p1);
    }
    let a = p0.read(ctx, rt, size)?;
    let b = p1.read(ctx, rt, size)?;
    p0.write(ctx, rt, size, b)?;
    p1.write(ctx, rt, size, a)?;
    Ok(Flow::Next)
}

fn accumulator(size: u32) -> Register {
    match size {
        1 => Register::AL,
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    }
}

pub(super) fn cmpxchg(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let dest = Place::of(ctx, insn, 0)?;
    let d = dest.read(ctx, rt, size)?;
    let src = read_op(ctx, rt, insn, 1, size)?;
    let acc = reg_read(&ctx.cpu, accumulator(size));
    if acc == d {
        dest.write(ctx, rt, size, src)?;
    } else {
        // The destination is written back even when the comparison fails (SDM Vol. 2A).
        if dest.is_mem() {
            dest.write(ctx, rt, size, d)?;
        }
        reg_write(&mut ctx.cpu, accumulator(size), d);
    }
    let r = acc.wrapping_sub(d) & mask(size);
    ctx.flags.set(kind::SUB, size, acc, d, r, 0);
    Ok(Flow::Next)
}

pub(super) fn cmpxchg8b(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    if insn.op_kind(0) != OpKind::Memory {
        return Err(Fault::ud());
    }
    let la = mem_linear(ctx, insn);
    let m = mem::read(ctx, rt, la, 8)?;
    let c = &ctx.cpu;
    let edx_eax = (c.gpr[gpr::RDX] & 0xffff_ffff) << 32 | (c.gpr[gpr::RAX] & 0xffff_ffff);
    let ecx_ebx = (c.gpr[gpr::RCX] & 0xffff_ffff) << 32 | (c.gpr[gpr::RBX] & 0xffff_ffff);
    let equal = m == edx_eax;
    if equal {
        mem::write(ctx, rt, la, 8, ecx_ebx)?;
    } else {
        mem::write(ctx, rt, la, 8, m)?;
        ctx.cpu.gpr[gpr::RAX] = m & 0xffff_ffff;
        ctx.cpu.gpr[gpr::RDX] = m >> 32;
    }
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    if equal {
        ctx.cpu.rflags |= rflags::ZF;
    } else {
        ctx.cpu.rflags &= !rflags::ZF;
    }
    Ok(Flow::Next)
}

/// CMPXCHG16B m128 (SDM Vol. 2A CMPXCHG8B/CMPXCHG16B): compare RDX:RAX with the aligned
/// 16-byte operand (#GP(0) if misaligned); equal: store RCX:RBX and set ZF, else load it into
/// RDX:RAX and clear ZF. Both halves lie in one page, so the first write cannot succeed alone.
pub(super) fn cmpxchg16b(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    if insn.op_kind(0) != OpKind::Memory {
        return Err(Fault::ud());
    }
    let la = mem_linear(ctx, insn);
    if la & 0xf != 0 {
        return Err(Fault::gp(0));
    }
    let lo = mem::read(ctx, rt, la, 8)?;
    let hi = mem::read(ctx, rt, la + 8, 8)?;
    let c = &ctx.cpu;
    let equal = lo == c.gpr[gpr::RAX] && hi == c.gpr[gpr::RDX];
    let (new_lo, new_hi) = if equal {
        (c.gpr[gpr::RBX], c.gpr[gpr::RCX])
    } else {
        (lo, hi)
    };
    mem::write(ctx, rt, la, 8, new_lo)?;
    mem::write(ctx, rt, la + 8, 8, new_hi)?;
    if !equal {
        ctx.cpu.gpr[gpr::RAX] = lo;
        ctx.cpu.gpr[gpr::RDX] = hi;
    }
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    if equal {
        ctx.cpu.rflags |= rflags::ZF;
    } else {
        ctx.cpu.rflags &= !rflags::ZF;
    }
    Ok(Flow::Next)
}

pub(super) fn xadd(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let dest = Place::of(ctx, insn, 0)?;
    let d = dest.read(ctx, rt, size)?;
    let s = read_op(ctx, rt, insn, 1, size)?;
    let sum = d.wrapping_add(s) & mask(size);
    let src_reg = insn.op_register(1);
    match dest {
        Place::Mem(_) => {
            dest.write(ctx, rt, size, sum)?;
            reg_write(&mut ctx.cpu, src_reg, d);
        }
        Place::Reg(_) => {
            reg_write(&mut ctx.cpu, src_reg, d);
            dest.write(ctx, rt, size, sum)?;
        }
    }
    ctx.flags.set(kind::ADD, size, d, s, sum, 0);
    Ok(Flow::Next)
}

/// CBW / CWDE / CDQE.
pub(super) fn extend_accumulator(ctx: &mut JitContext, insn: &Instruction) -> Exec {
    let c = &mut ctx.cpu;
    match insn.mnemonic() {
        iced_x86::Mnemonic::Cbw => reg_write(c, Register::AX, sext(c.gpr[gpr::RAX], 1)),
        iced_x86::Mnemonic::Cwde => reg_write(c, Register::EAX, sext(c.gpr[gpr::RAX], 2)),
        _ => c.gpr[gpr::RAX] = sext(c.gpr[gpr::RAX], 4),
    }
    Ok(Flow::Next)
}

/// CWD / CDQ / CQO.
pub(super) fn sign_to_dx(ctx: &mut JitContext, insn: &Instruction) -> Exec {
    let (size, dx) = match insn.mnemonic() {
        iced_x86::Mnemonic::Cwd => (2, Register::DX),
        iced_x86::Mnemonic::Cdq => (4, Register::EDX),
        _ => (8, Register::RDX),
    };
    let negative = ctx.cpu.gpr[gpr::RAX] & super::operand::sign_bit(size) != 0;
    reg_write(&mut ctx.cpu, dx, if negative { u64::MAX } else { 0 });
    Ok(Flow::Next)
}

pub(super) fn xlat(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let la = mem_linear(ctx, insn);
    let v = mem::read(ctx, rt, la, 1)?;
    reg_write(&mut ctx.cpu, Register::AL, v);
    Ok(Flow::Next)
}

pub(super) fn bswap(ctx: &mut JitContext, insn: &Instruction) -> Exec {
    let r = insn.op_register(0);
    let v = reg_read(&ctx.cpu, r);
    let swapped = match r.size() {
        4 => u64::from((v as u32).swap_bytes()),
        8 => v.swap_bytes(),
        // BSWAP of a 16-bit register is undefined; hardware clears it.
        _ => 0,
    };
    reg_write(&mut ctx.cpu, r, swapped);
    Ok(Flow::Next)
}

/// MOVBE r, m / m, r (SDM Vol. 2B MOVBE): a load or store with the byte order reversed; the
/// 16-bit form swaps the two bytes and merges into the register.
pub(super) fn movbe(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let v = read_op(ctx, rt, insn, 1, size)?;
    let swapped = match size {
        2 => u64::from((v as u16).swap_bytes()),
        4 => u64::from((v as u32).swap_bytes()),
        _ => v.swap_bytes(),
    };
    write_op(ctx, rt, insn, 0, size, swapped)?;
    Ok(Flow::Next)
}

/// LDS/LES/LFS/LGS/LSS r, m16:16 / m16:32.
pub(super) fn load_far_pointer(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    if insn.op_kind(1) != OpKind::Memory {
        return Err(Fault::ud());
    }
    let size = op_size(insn, 0, 4);
    let la = mem_linear(ctx, insn);
    let offset = mem::read(ctx, rt, la, size)?;
    let sel_la = mem_linear_plus(ctx, insn, u64::from(size));
    let sel = mem::read(ctx, rt, sel_la, 2)? as u16;
    let seg = match insn.mnemonic() {
        iced_x86::Mnemonic::Lds => SegmentIndex::Ds,
        iced_x86::Mnemonic::Les => SegmentIndex::Es,
        iced_x86::Mnemonic::Lfs => SegmentIndex::Fs,
        iced_x86::Mnemonic::Lgs => SegmentIndex::Gs,
        _ => SegmentIndex::Ss,
    };
    segment::load_segment(ctx, rt, seg, sel)?;
    reg_write(&mut ctx.cpu, insn.op_register(0), offset);
    if seg == SegmentIndex::Ss {
        return Ok(end_block_after(ctx, insn));
    }
    Ok(Flow::Next)
}

pub(super) fn setcc(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let v = u64::from(condition_holds(ctx, insn));
    write_op(ctx, rt, insn, 0, 1, v)?;
    Ok(Flow::Next)
}

pub(super) fn cmovcc(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let size = op_size(insn, 0, 4);
    let v = read_op(ctx, rt, insn, 1, size)?;
    let dest = insn.op_register(0);
    if condition_holds(ctx, insn) {
        reg_write(&mut ctx.cpu, dest, v);
    } else if size == 4 && ctx.cpu.efer & vcpu::state::efer::LMA != 0 {
        // A 32-bit CMOVcc clears the upper half even when it does not move (SDM Vol. 2A
        // CMOVcc, Operation).
        let kept = reg_read(&ctx.cpu, dest);
        reg_write(&mut ctx.cpu, dest, kept);
    }
    Ok(Flow::Next)
}

/// BOUND r, m16&16 / m32&32: #BR (vector 5) when the signed index is outside [lower, upper].
pub(super) fn bound(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    if insn.op_kind(1) != OpKind::Memory {
        return Err(Fault::ud());
    }
    let size = op_size(insn, 0, 4);
    let index = sext(reg_read(&ctx.cpu, insn.op_register(0)), size) as i64;
    let la = mem_linear(ctx, insn);
    let lower = sext(mem::read(ctx, rt, la, size)?, size) as i64;
    let upper_la = mem_linear_plus(ctx, insn, u64::from(size));
    let upper = sext(mem::read(ctx, rt, upper_la, size)?, size) as i64;
    if index < lower || index > upper {
        return Err(Fault::new(crate::exception::BR_VECTOR));
    }
    Ok(Flow::Next)
}
