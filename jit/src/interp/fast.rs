//! Specialised executors for the operand forms kernel code runs most: MOV, the ALU operations
//! (ADD, SUB, CMP, AND, OR, XOR, TEST), INC/DEC/NOT/NEG, MOVZX/MOVSX(D), LEA, shifts and
//! rotates (`shifts`), SETcc and CMOVcc (`conditional`) on general registers, immediates and
//! memory; PUSH/POP of registers, near CALL rel and RET (`stack` outside 64-bit operand
//! size); Jcc and near JMP.
//!
//! The generic executors find out at run time what each operand is (`op_kind`, register
//! widths, the execution mode for every memory access); [`handler`] looks once, at decode, and
//! picks a function monomorphised for the operand size and forms, so that running one does
//! only the instruction's work. Everything else, and every form with a special case (segment,
//! control and debug registers, ADC/SBB, far and indirect transfers), stays with the generic
//! executors. The architectural effects are exactly theirs: the same flags records, the same
//! faults in the same order, the same partial-register rules.
//!
//! Memory operands of 64-bit code with 64-bit addressing take a short path ([`MEM`]): there
//! the segment bases are zero except FS and GS, there are no limit checks, and a non-canonical
//! address raises #SS(0) through SS (here) or #GP(0) through the others (when `mem` translates
//! it; SDM Vol. 3A 3.3.7.1, 3.4.4, 6.15). A block's instructions run in the mode they were
//! decoded for (the mode is part of the block key, and an instruction that changes it ends the
//! block), so an instruction decoded as 64-bit code runs in 64-bit mode. Other memory operands
//! ([`SEG`]) compute their address and segment checks with `operand`, as the generic
//! executors do.

use iced_x86::{Code, CodeSize, Instruction, Mnemonic as M, OpKind, Register};
use vcpu::state::gpr;
use vcpu::{CpuState, SegmentIndex};

use super::cond;
use super::data::cc_nibble;
use super::operand::{
    addr_size, effective_offset, mask, mem_access, op_size, reg_read, reg_write, sext, Place,
};
use super::{Exec, Flow, Handler};
use crate::context::JitContext;
use crate::exception::Fault;
use crate::flags::kind;
use crate::mem;
use crate::paging::is_canonical;
use crate::runtime::Runtime;

/// Operand forms (const parameters of the executors).
const REG: u8 = 0;
/// Memory with [`flat_addressing`] in 64-bit code.
const MEM: u8 = 1;
const IMM: u8 = 2;
/// Any other memory operand: segment checks and address through `operand`, as the generic
/// executors do.
const SEG: u8 = 3;

/// ALU operations (const parameters of [`alu`]).
const ADD: u8 = 0;
const SUB: u8 = 1;
const CMP: u8 = 2;
const AND: u8 = 3;
const OR: u8 = 4;
const XOR: u8 = 5;
const TEST: u8 = 6;

/// One-operand operations (const parameters of [`unary`]).
const INC: u8 = 0;
const DEC: u8 = 1;
const NOT: u8 = 2;
const NEG: u8 = 3;

/// Expand to `Some(f as Handler)` with the const `$s` set to the operand size `$size` (1, 2,
/// 4 or 8 bytes), or `None` for another size.
macro_rules! sized {
    ($size:expr => $s:ident, $($f:tt)*) => {
        match $size {
            1 => {
                const $s: u32 = 1;
                Some($($f)* as Handler)
            }
            2 => {
                const $s: u32 = 2;
                Some($($f)* as Handler)
            }
            4 => {
                const $s: u32 = 4;
                Some($($f)* as Handler)
            }
            8 => {
                const $s: u32 = 8;
                Some($($f)* as Handler)
            }
            _ => None,
        }
    };
}

mod conditional;
mod shifts;
mod stack;

/// The specialised executor of `insn`, if it has one.
pub(super) fn handler(insn: &Instruction) -> Option<Handler> {
    let long = insn.code_size() == CodeSize::Code64;
    match insn.mnemonic() {
        M::Mov => mov_handler(insn, long),
        M::Add => alu_handler::<ADD>(insn, long),
        M::Sub => alu_handler::<SUB>(insn, long),
        M::Cmp => alu_handler::<CMP>(insn, long),
        M::And => alu_handler::<AND>(insn, long),
        M::Or => alu_handler::<OR>(insn, long),
        M::Xor => alu_handler::<XOR>(insn, long),
        M::Test => alu_handler::<TEST>(insn, long),
        M::Inc => unary_handler::<INC>(insn, long),
        M::Dec => unary_handler::<DEC>(insn, long),
        M::Not => unary_handler::<NOT>(insn, long),
        M::Neg => unary_handler::<NEG>(insn, long),
        M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror => shifts::handler(insn, long),
        M::Sete
        | M::Setne
        | M::Setb
        | M::Setae
        | M::Setbe
        | M::Seta
        | M::Setl
        | M::Setge
        | M::Setle
        | M::Setg
        | M::Sets
        | M::Setns
        | M::Seto
        | M::Setno
        | M::Setp
        | M::Setnp => conditional::handler(insn, long, true),
        M::Cmove
        | M::Cmovne
        | M::Cmovb
        | M::Cmovae
        | M::Cmovbe
        | M::Cmova
        | M::Cmovl
        | M::Cmovge
        | M::Cmovle
        | M::Cmovg
        | M::Cmovs
        | M::Cmovns
        | M::Cmovo
        | M::Cmovno
        | M::Cmovp
        | M::Cmovnp => conditional::handler(insn, long, false),
        M::Movzx => extend_handler::<false>(insn, long),
        M::Movsx | M::Movsxd => extend_handler::<true>(insn, long),
        M::Lea => lea_handler(insn, long),
        _ => branch_or_stack_handler(insn, long),
    }
}

/// The form of operand `i`: a general register, an immediate, or (in 64-bit code with 64-bit
/// addressing) memory; `None` for anything else.
fn form(insn: &Instruction, i: u32, long: bool) -> Option<u8> {
    match insn.op_kind(i) {
        OpKind::Register if insn.op_register(i).is_gpr() => Some(REG),
        OpKind::Memory if long && flat_addressing(insn) => Some(MEM),
        OpKind::Memory => Some(SEG),
        k if crate::translate::is_imm(k) => Some(IMM),
        _ => None,
    }
}

/// Whether the memory operand uses 64-bit addressing with 64-bit general registers (or RIP)
/// as base and index: what [`address64`] computes.
fn flat_addressing(insn: &Instruction) -> bool {
    let base = insn.memory_base();
    let index = insn.memory_index();
    addr_size(insn) == 8
        && (base == Register::None || base == Register::RIP || base.is_gpr64())
        && (index == Register::None || index.is_gpr64())
}

/// Index into `CpuState::gpr` of a 64-bit general register (RAX..R15).
#[inline(always)]
fn gpr64(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::RAX as usize) & 15
}

/// Index into `CpuState::gpr` of a 32-bit general register (EAX..R15D).
#[inline(always)]
fn gpr32(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::EAX as usize) & 15
}

/// Read general register `r` of `S` bytes.
#[inline(always)]
fn get<const S: u32>(cpu: &CpuState, r: Register) -> u64 {
    match S {
        8 => cpu.gpr[gpr64(r)],
        4 => cpu.gpr[gpr32(r)] & 0xffff_ffff,
        _ => reg_read(cpu, r),
    }
}

/// Write general register `r` of `S` bytes: 8 and 16-bit writes merge, 32-bit writes
/// zero-extend (SDM Vol. 1 3.4.1.1).
#[inline(always)]
fn set<const S: u32>(cpu: &mut CpuState, r: Register, v: u64) {
    match S {
        8 => cpu.gpr[gpr64(r)] = v,
        4 => cpu.gpr[gpr32(r)] = v & 0xffff_ffff,
        _ => reg_write(cpu, r, v),
    }
}

/// Effective address of a memory operand with [`flat_addressing`] (RIP-relative operands
/// carry their absolute target in the displacement).
#[inline(always)]
fn effective64(cpu: &CpuState, insn: &Instruction) -> u64 {
    let mut ea = insn.memory_displacement64();
    let base = insn.memory_base();
    if base != Register::None && base != Register::RIP {
        ea = ea.wrapping_add(cpu.gpr[gpr64(base)]);
    }
    let index = insn.memory_index();
    if index != Register::None {
        let scaled = cpu.gpr[gpr64(index)].wrapping_mul(u64::from(insn.memory_index_scale()));
        ea = ea.wrapping_add(scaled);
    }
    ea
}

/// Linear address of a memory operand with [`flat_addressing`] in 64-bit mode: FS and GS add
/// their bases, the other segments none; through SS a non-canonical address raises #SS(0)
/// (the others raise #GP(0) when translated).
#[inline(always)]
fn address64(ctx: &JitContext, insn: &Instruction) -> Result<u64, Fault> {
    debug_assert_eq!(ctx.cpu.mode(), vcpu::ExecMode::Long64);
    let ea = effective64(&ctx.cpu, insn);
    match insn.memory_segment() {
        Register::FS => Ok(ctx.cpu.seg[SegmentIndex::Fs as usize].base.wrapping_add(ea)),
        Register::GS => Ok(ctx.cpu.seg[SegmentIndex::Gs as usize].base.wrapping_add(ea)),
        Register::SS if !is_canonical(ea) => Err(Fault::ss(0)),
        _ => Ok(ea),
    }
}

/// Read source operand 1 of form `F` and size `S`.
#[inline(always)]
fn source<const S: u32, const F: u8>(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
) -> Result<u64, Fault> {
    match F {
        REG => Ok(get::<S>(&ctx.cpu, insn.op1_register())),
        IMM => Ok(insn.immediate(1) & mask(S)),
        MEM => {
            let la = address64(ctx, insn)?;
            mem::read(ctx, rt, la, S)
        }
        _ => {
            let la = mem_access(ctx, insn, S, false)?;
            mem::read(ctx, rt, la, S)
        }
    }
}

/// Store `v` (already `S` bytes wide) into operand 0 of form `F` (not read before).
#[inline(always)]
fn store<const S: u32, const F: u8>(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    v: u64,
) -> Result<(), Fault> {
    match F {
        REG => {
            set::<S>(&mut ctx.cpu, insn.op0_register(), v);
            Ok(())
        }
        MEM => {
            let la = address64(ctx, insn)?;
            mem::write(ctx, rt, la, S, v)
        }
        _ => {
            let la = mem_access(ctx, insn, S, true)?;
            mem::write(ctx, rt, la, S, v)
        }
    }
}

/// Where a read-modify-write destination lives, resolved once for its read and its write.
#[derive(Clone, Copy)]
enum Dest {
    Reg,
    /// The linear address of a [`MEM`] operand.
    Flat(u64),
    /// A [`SEG`] operand (segment checks at each access).
    Seg(Place),
}

/// Read operand 0 of form `F` for a read-modify-write.
#[inline(always)]
fn load_dest<const S: u32, const F: u8>(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
) -> Result<(u64, Dest), Fault> {
    match F {
        REG => Ok((get::<S>(&ctx.cpu, insn.op0_register()), Dest::Reg)),
        MEM => {
            let la = address64(ctx, insn)?;
            Ok((mem::read(ctx, rt, la, S)?, Dest::Flat(la)))
        }
        _ => {
            let place = Place::of(ctx, insn, 0)?;
            Ok((place.read(ctx, rt, S)? & mask(S), Dest::Seg(place)))
        }
    }
}

/// Write back `v` (already `S` bytes wide) to the destination [`load_dest`] read.
#[inline(always)]
fn store_dest<const S: u32>(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    dest: Dest,
    v: u64,
) -> Result<(), Fault> {
    match dest {
        Dest::Reg => {
            set::<S>(&mut ctx.cpu, insn.op0_register(), v);
            Ok(())
        }
        Dest::Flat(la) => mem::write(ctx, rt, la, S, v),
        Dest::Seg(place) => place.write(ctx, rt, S, v),
    }
}

fn mov_handler(insn: &Instruction, long: bool) -> Option<Handler> {
    let dst = form(insn, 0, long)?;
    let src = form(insn, 1, long)?;
    let size = op_size(insn, 0, 0);
    match (dst, src) {
        (REG, REG) => sized!(size => S, mov::<S, REG, REG>),
        (REG, MEM) => sized!(size => S, mov::<S, REG, MEM>),
        (REG, IMM) => sized!(size => S, mov::<S, REG, IMM>),
        (MEM, REG) => sized!(size => S, mov::<S, MEM, REG>),
        (MEM, IMM) => sized!(size => S, mov::<S, MEM, IMM>),
        (REG, SEG) => sized!(size => S, mov::<S, REG, SEG>),
        (SEG, REG) => sized!(size => S, mov::<S, SEG, REG>),
        (SEG, IMM) => sized!(size => S, mov::<S, SEG, IMM>),
        _ => None,
    }
}

/// MOV between general registers, immediates and memory.
fn mov<const S: u32, const DST: u8, const SRC: u8>(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
) -> Exec {
    let v = source::<S, SRC>(ctx, rt, insn)?;
    store::<S, DST>(ctx, rt, insn, v)?;
    Ok(Flow::Next)
}

fn alu_handler<const OP: u8>(insn: &Instruction, long: bool) -> Option<Handler> {
    let dst = form(insn, 0, long)?;
    let src = form(insn, 1, long)?;
    let size = op_size(insn, 0, 0);
    match (dst, src) {
        (REG, REG) => sized!(size => S, alu::<OP, S, REG, REG>),
        (REG, MEM) => sized!(size => S, alu::<OP, S, REG, MEM>),
        (REG, IMM) => sized!(size => S, alu::<OP, S, REG, IMM>),
        (MEM, REG) => sized!(size => S, alu::<OP, S, MEM, REG>),
        (MEM, IMM) => sized!(size => S, alu::<OP, S, MEM, IMM>),
        (REG, SEG) => sized!(size => S, alu::<OP, S, REG, SEG>),
        (SEG, REG) => sized!(size => S, alu::<OP, S, SEG, REG>),
        (SEG, IMM) => sized!(size => S, alu::<OP, S, SEG, IMM>),
        _ => None,
    }
}

/// ADD, SUB, CMP, AND, OR, XOR, TEST: the destination is read first (a memory destination's
/// address computed once for the read and the write), the flags recorded lazily.
fn alu<const OP: u8, const S: u32, const DST: u8, const SRC: u8>(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
) -> Exec {
    let (a, dest) = load_dest::<S, DST>(ctx, rt, insn)?;
    let b = source::<S, SRC>(ctx, rt, insn)?;
    let (k, r) = match OP {
        ADD => (kind::ADD, a.wrapping_add(b)),
        SUB | CMP => (kind::SUB, a.wrapping_sub(b)),
        AND | TEST => (kind::LOGIC, a & b),
        OR => (kind::LOGIC, a | b),
        _ => (kind::LOGIC, a ^ b),
    };
    let r = r & mask(S);
    if OP != CMP && OP != TEST {
        store_dest::<S>(ctx, rt, insn, dest, r)?;
    }
    ctx.flags.set(k, S, a, b, r, 0);
    Ok(Flow::Next)
}

fn unary_handler<const OP: u8>(insn: &Instruction, long: bool) -> Option<Handler> {
    let size = op_size(insn, 0, 0);
    match form(insn, 0, long)? {
        REG => sized!(size => S, unary::<OP, S, REG>),
        MEM => sized!(size => S, unary::<OP, S, MEM>),
        SEG => sized!(size => S, unary::<OP, S, SEG>),
        _ => None,
    }
}

/// INC, DEC (CF kept: recorded as the carry in), NOT (no flags), NEG (flags of 0 - a).
fn unary<const OP: u8, const S: u32, const DST: u8>(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
) -> Exec {
    let (a, dest) = load_dest::<S, DST>(ctx, rt, insn)?;
    let cf = if OP == INC || OP == DEC {
        u64::from(cond::carry(&ctx.flags, ctx.cpu.rflags))
    } else {
        0
    };
    let r = match OP {
        INC => a.wrapping_add(1),
        DEC => a.wrapping_sub(1),
        NOT => !a,
        _ => 0u64.wrapping_sub(a),
    } & mask(S);
    store_dest::<S>(ctx, rt, insn, dest, r)?;
    match OP {
        INC => ctx.flags.set(kind::INC, S, a, 1, r, cf),
        DEC => ctx.flags.set(kind::DEC, S, a, 1, r, cf),
        NEG => ctx.flags.set(kind::SUB, S, 0, a, r, 0),
        _ => {}
    }
    Ok(Flow::Next)
}

fn extend_handler<const SIGNED: bool>(insn: &Instruction, long: bool) -> Option<Handler> {
    if form(insn, 0, long)? != REG {
        return None;
    }
    let src = form(insn, 1, long)?;
    match (op_size(insn, 0, 0), op_size(insn, 1, 0), src) {
        (2, 1, REG) => Some(extend::<SIGNED, 2, 1, REG>),
        (4, 1, REG) => Some(extend::<SIGNED, 4, 1, REG>),
        (8, 1, REG) => Some(extend::<SIGNED, 8, 1, REG>),
        (4, 2, REG) => Some(extend::<SIGNED, 4, 2, REG>),
        (8, 2, REG) => Some(extend::<SIGNED, 8, 2, REG>),
        (8, 4, REG) => Some(extend::<SIGNED, 8, 4, REG>),
        (2, 1, MEM) => Some(extend::<SIGNED, 2, 1, MEM>),
        (4, 1, MEM) => Some(extend::<SIGNED, 4, 1, MEM>),
        (8, 1, MEM) => Some(extend::<SIGNED, 8, 1, MEM>),
        (4, 2, MEM) => Some(extend::<SIGNED, 4, 2, MEM>),
        (8, 2, MEM) => Some(extend::<SIGNED, 8, 2, MEM>),
        (8, 4, MEM) => Some(extend::<SIGNED, 8, 4, MEM>),
        (2, 1, SEG) => Some(extend::<SIGNED, 2, 1, SEG>),
        (4, 1, SEG) => Some(extend::<SIGNED, 4, 1, SEG>),
        (8, 1, SEG) => Some(extend::<SIGNED, 8, 1, SEG>),
        (4, 2, SEG) => Some(extend::<SIGNED, 4, 2, SEG>),
        (8, 2, SEG) => Some(extend::<SIGNED, 8, 2, SEG>),
        (8, 4, SEG) => Some(extend::<SIGNED, 8, 4, SEG>),
        _ => None,
    }
}

/// MOVZX, MOVSX, MOVSXD from a narrower register or memory operand.
fn extend<const SIGNED: bool, const D: u32, const S: u32, const SRC: u8>(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
) -> Exec {
    let v = source::<S, SRC>(ctx, rt, insn)?;
    let v = if SIGNED { sext(v, S) & mask(D) } else { v };
    set::<D>(&mut ctx.cpu, insn.op0_register(), v);
    Ok(Flow::Next)
}

fn lea_handler(insn: &Instruction, long: bool) -> Option<Handler> {
    if form(insn, 0, long)? != REG || insn.op_kind(1) != OpKind::Memory {
        return None;
    }
    match (op_size(insn, 0, 0), long && flat_addressing(insn)) {
        (4, true) => Some(lea::<4, true>),
        (8, true) => Some(lea::<8, true>),
        (2, false) => Some(lea::<2, false>),
        (4, false) => Some(lea::<4, false>),
        (8, false) => Some(lea::<8, false>),
        _ => None,
    }
}

/// LEA: the effective address, truncated to the destination size.
fn lea<const D: u32, const FLAT: bool>(
    ctx: &mut JitContext,
    _: &mut Runtime,
    insn: &Instruction,
) -> Exec {
    let ea = if FLAT {
        effective64(&ctx.cpu, insn)
    } else {
        effective_offset(&ctx.cpu, insn)
    };
    set::<D>(&mut ctx.cpu, insn.op0_register(), ea & mask(D));
    Ok(Flow::Next)
}

fn branch_or_stack_handler(insn: &Instruction, long: bool) -> Option<Handler> {
    let near = matches!(
        insn.op0_kind(),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    );
    if insn.is_jcc_short_or_near() && near {
        return Some(if long { jcc::<true> } else { jcc::<false> });
    }
    if insn.mnemonic() == M::Jmp && near {
        return Some(if long { jmp::<true> } else { jmp::<false> });
    }
    match insn.code() {
        Code::Push_r64 => Some(push64::<REG>),
        Code::Pushq_imm32 | Code::Pushq_imm8 => Some(push64::<IMM>),
        Code::Pop_r64 => Some(pop64),
        Code::Call_rel32_64 => Some(call64),
        Code::Retnq => Some(ret64),
        code => stack::handler(code),
    }
}

/// A near branch target in 64-bit code must be canonical: #GP(0) at the branch (SDM Vol. 2A
/// Jcc/JMP/CALL/RET, 64-bit mode exceptions). Outside 64-bit code the target needs no check.
#[inline(always)]
fn near_target<const LONG: bool>(target: u64) -> Result<u64, Fault> {
    if LONG && !is_canonical(target) {
        return Err(Fault::gp(0));
    }
    Ok(target)
}

/// Jcc rel8/rel16/rel32.
fn jcc<const LONG: bool>(ctx: &mut JitContext, _: &mut Runtime, insn: &Instruction) -> Exec {
    if cond::holds(&ctx.flags, cc_nibble(insn), ctx.cpu.rflags) {
        ctx.cpu.rip = near_target::<LONG>(insn.near_branch_target())?;
        return Ok(Flow::Jump);
    }
    Ok(Flow::Next)
}

/// JMP rel8/rel16/rel32.
fn jmp<const LONG: bool>(ctx: &mut JitContext, _: &mut Runtime, insn: &Instruction) -> Exec {
    ctx.cpu.rip = near_target::<LONG>(insn.near_branch_target())?;
    Ok(Flow::Jump)
}

/// The 64-bit mode stack address of RSP value `sp`: #SS(0) if it is not canonical (SDM Vol. 3A
/// 6.14.2, 6.15 Interrupt 12).
#[inline(always)]
fn stack64(sp: u64) -> Result<u64, Fault> {
    if !is_canonical(sp) {
        return Err(Fault::ss(0));
    }
    Ok(sp)
}

/// PUSH r64 / PUSH imm (sign-extended to 64 bits) in 64-bit mode.
fn push64<const SRC: u8>(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let v = if SRC == REG {
        ctx.cpu.gpr[gpr64(insn.op0_register())]
    } else {
        insn.immediate(0)
    };
    let sp = ctx.cpu.gpr[gpr::RSP].wrapping_sub(8);
    mem::write(ctx, rt, stack64(sp)?, 8, v)?;
    ctx.cpu.gpr[gpr::RSP] = sp;
    Ok(Flow::Next)
}

/// POP r64 in 64-bit mode (POP RSP loads the popped value).
fn pop64(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let sp = ctx.cpu.gpr[gpr::RSP];
    let v = mem::read(ctx, rt, stack64(sp)?, 8)?;
    ctx.cpu.gpr[gpr::RSP] = sp.wrapping_add(8);
    ctx.cpu.gpr[gpr64(insn.op0_register())] = v;
    Ok(Flow::Next)
}

/// CALL rel32 in 64-bit mode: the target is checked before the return address is pushed.
fn call64(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let target = near_target::<true>(insn.near_branch_target())?;
    let sp = ctx.cpu.gpr[gpr::RSP].wrapping_sub(8);
    mem::write(ctx, rt, stack64(sp)?, 8, insn.next_ip())?;
    ctx.cpu.gpr[gpr::RSP] = sp;
    ctx.cpu.rip = target;
    Ok(Flow::Jump)
}

/// RET in 64-bit mode: a non-canonical return address raises #GP(0) with RSP unchanged.
fn ret64(ctx: &mut JitContext, rt: &mut Runtime, _: &Instruction) -> Exec {
    let sp = ctx.cpu.gpr[gpr::RSP];
    let target = mem::read(ctx, rt, stack64(sp)?, 8)?;
    ctx.cpu.rip = near_target::<true>(target)?;
    ctx.cpu.gpr[gpr::RSP] = sp.wrapping_add(8);
    Ok(Flow::Jump)
}

#[cfg(test)]
mod tests;
