//! MMX technology (SDM Vol. 1 chapter 9): the eight 64-bit MM registers alias the significands
//! of the x87 physical registers R0..R7 (SDM Vol. 1 9.5). Every MMX instruction except EMMS sets
//! TOP to 0 and tags all registers valid; a write to MMi also sets Ri's sign and exponent field
//! to all ones; EMMS tags all registers empty (SDM Vol. 1 Table 9-2).
//!
//! Exceptions (SDM Vol. 3A Table 2-2 and Vol. 1 9.5.2): CR0.EM raises #UD, CR0.TS #NM, and a
//! pending unmasked x87 exception #MF (with CR0.NE; see the parent module for CR0.NE clear).
//!
//! Implemented: MOVD/MOVQ, PADD*/PSUB* (wrapping and saturating), PMULLW/PMULHW/PMADDWD,
//! PAND/PANDN/POR/PXOR, PCMPEQ*/PCMPGT*, PACKSSWB/PACKSSDW/PACKUSWB, PUNPCKH*/PUNPCKL*,
//! PSLL*/PSRL*/PSRA* and EMMS, i.e. the MMX instruction set of the Pentium MMX. The MMX forms
//! added by SSE/SSE2 (PSHUFW, PAVGB, PADDQ on MM, ...) raise #UD.

use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};
use vcpu::state::cr0;

use super::state::X87;
use super::F80;
use crate::context::JitContext;
use crate::exception::{Fault, NM_VECTOR};
use crate::interp::operand::{mem_linear, reg_read, reg_write};
use crate::interp::{Exec, Flow};
use crate::mem;
use crate::runtime::Runtime;

/// Whether `insn` is an MMX instruction this module runs: EMMS, or one of the instructions of
/// [`operation`] with an MM register operand (SSE instructions on MM registers, such as
/// CVTPI2PS or PSHUFW, are left to their own module).
pub(crate) fn is_mmx(insn: &Instruction) -> bool {
    let m = insn.mnemonic();
    if m == M::Emms {
        return true;
    }
    (0..insn.op_count().min(2))
        .any(|i| insn.op_kind(i) == OpKind::Register && insn.op_register(i).is_mm())
        && operation(m).is_some()
}

fn mm_index(r: Register) -> usize {
    (r as usize - Register::MM0 as usize) & 7
}

/// Execute one MMX instruction.
pub(crate) fn execute(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    if ctx.cpu.cr0 & cr0::EM != 0 {
        return Err(Fault::ud());
    }
    if ctx.cpu.cr0 & cr0::TS != 0 {
        return Err(Fault::new(NM_VECTOR));
    }
    let mut st = X87::load(&ctx.cpu.fx);
    super::check_pending(ctx, &st)?;
    let m = insn.mnemonic();
    if m == M::Emms {
        st.used = 0;
        st.store(&mut ctx.cpu.fx);
        return Ok(Flow::Next);
    }
    let Some(op) = operation(m) else {
        return Err(Fault::ud());
    };
    // The MMX transition happens before the instruction (SDM Vol. 1 9.5.1).
    st.set_top(0);
    st.used = 0xff;
    match op {
        Op::Move => {
            let size = if m == M::Movd { 4 } else { 8 };
            let v = read_source(ctx, rt, insn, &st, 1, size)?;
            match insn.op_kind(0) {
                OpKind::Register if insn.op_register(0).is_mm() => {
                    write_mm(&mut st, mm_index(insn.op_register(0)), v)
                }
                OpKind::Register => reg_write(&mut ctx.cpu, insn.op_register(0), v),
                _ => {
                    let la = mem_linear(ctx, insn);
                    mem::write(ctx, rt, la, size, v)?;
                }
            }
        }
        Op::Lanes(f) => {
            let d = mm_index(insn.op_register(0));
            let size = match insn.op_kind(1) {
                OpKind::Memory => insn.memory_size().size() as u32,
                _ => 8,
            };
            let src = read_source(ctx, rt, insn, &st, 1, size)?;
            let a = st.regs[d].sig;
            write_mm(&mut st, d, f(a, src));
        }
    }
    st.store(&mut ctx.cpu.fx);
    Ok(Flow::Next)
}

/// Operand `i` as a 64-bit value: an MM register, a general register (MOVD/MOVQ), an 8-bit
/// immediate (shift counts) or `size` bytes of memory, zero-extended.
fn read_source(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    st: &X87,
    i: u32,
    size: u32,
) -> Result<u64, Fault> {
    match insn.op_kind(i) {
        OpKind::Register if insn.op_register(i).is_mm() => {
            Ok(st.regs[mm_index(insn.op_register(i))].sig)
        }
        OpKind::Register => Ok(reg_read(&ctx.cpu, insn.op_register(i))),
        OpKind::Immediate8 => Ok(u64::from(insn.immediate8())),
        OpKind::Memory => {
            let la = mem_linear(ctx, insn);
            mem::read(ctx, rt, la, size)
        }
        _ => Err(Fault::ud()),
    }
}

fn write_mm(st: &mut X87, i: usize, v: u64) {
    st.regs[i] = F80 { se: 0xffff, sig: v };
}

enum Op {
    Move,
    Lanes(fn(u64, u64) -> u64),
}

fn operation(m: M) -> Option<Op> {
    Some(match m {
        M::Movd | M::Movq => Op::Move,
        M::Paddb => Op::Lanes(|a, b| lanes(a, b, 8, |x, y| x.wrapping_add(y))),
        M::Paddw => Op::Lanes(|a, b| lanes(a, b, 16, |x, y| x.wrapping_add(y))),
        M::Paddd => Op::Lanes(|a, b| lanes(a, b, 32, |x, y| x.wrapping_add(y))),
        M::Psubb => Op::Lanes(|a, b| lanes(a, b, 8, |x, y| x.wrapping_sub(y))),
        M::Psubw => Op::Lanes(|a, b| lanes(a, b, 16, |x, y| x.wrapping_sub(y))),
        M::Psubd => Op::Lanes(|a, b| lanes(a, b, 32, |x, y| x.wrapping_sub(y))),
        M::Paddsb => Op::Lanes(|a, b| signed(a, b, 8, |x, y| x + y)),
        M::Paddsw => Op::Lanes(|a, b| signed(a, b, 16, |x, y| x + y)),
        M::Psubsb => Op::Lanes(|a, b| signed(a, b, 8, |x, y| x - y)),
        M::Psubsw => Op::Lanes(|a, b| signed(a, b, 16, |x, y| x - y)),
        M::Paddusb => Op::Lanes(|a, b| unsigned(a, b, 8, |x, y| x + y)),
        M::Paddusw => Op::Lanes(|a, b| unsigned(a, b, 16, |x, y| x + y)),
        M::Psubusb => Op::Lanes(|a, b| unsigned(a, b, 8, |x, y| x - y)),
        M::Psubusw => Op::Lanes(|a, b| unsigned(a, b, 16, |x, y| x - y)),
        M::Pmullw => Op::Lanes(|a, b| lanes(a, b, 16, |x, y| x.wrapping_mul(y))),
        M::Pmulhw => Op::Lanes(|a, b| {
            lanes(a, b, 16, |x, y| {
                ((i64::from(x as u16 as i16) * i64::from(y as u16 as i16)) >> 16) as u64
            })
        }),
        M::Pmaddwd => Op::Lanes(pmaddwd),
        M::Pand => Op::Lanes(|a, b| a & b),
        M::Pandn => Op::Lanes(|a, b| !a & b),
        M::Por => Op::Lanes(|a, b| a | b),
        M::Pxor => Op::Lanes(|a, b| a ^ b),
        M::Pcmpeqb => Op::Lanes(|a, b| lanes(a, b, 8, |x, y| mask_if(x == y))),
        M::Pcmpeqw => Op::Lanes(|a, b| lanes(a, b, 16, |x, y| mask_if(x == y))),
        M::Pcmpeqd => Op::Lanes(|a, b| lanes(a, b, 32, |x, y| mask_if(x == y))),
        M::Pcmpgtb => Op::Lanes(|a, b| lanes(a, b, 8, |x, y| mask_if(x as i8 > y as i8))),
        M::Pcmpgtw => Op::Lanes(|a, b| lanes(a, b, 16, |x, y| mask_if(x as i16 > y as i16))),
        M::Pcmpgtd => Op::Lanes(|a, b| lanes(a, b, 32, |x, y| mask_if(x as i32 > y as i32))),
        M::Packsswb => Op::Lanes(|a, b| pack(a, b, 16, |v| v.clamp(-128, 127) as u64 & 0xff)),
        M::Packssdw => Op::Lanes(|a, b| pack(a, b, 32, |v| v.clamp(-32768, 32767) as u64 & 0xffff)),
        M::Packuswb => Op::Lanes(|a, b| pack(a, b, 16, |v| v.clamp(0, 255) as u64)),
        M::Punpcklbw => Op::Lanes(|a, b| interleave(a, b, 8, false)),
        M::Punpcklwd => Op::Lanes(|a, b| interleave(a, b, 16, false)),
        M::Punpckldq => Op::Lanes(|a, b| interleave(a, b, 32, false)),
        M::Punpckhbw => Op::Lanes(|a, b| interleave(a, b, 8, true)),
        M::Punpckhwd => Op::Lanes(|a, b| interleave(a, b, 16, true)),
        M::Punpckhdq => Op::Lanes(|a, b| interleave(a, b, 32, true)),
        M::Psllw => Op::Lanes(|a, n| shift(a, n, 16, Shift::Left)),
        M::Pslld => Op::Lanes(|a, n| shift(a, n, 32, Shift::Left)),
        M::Psllq => Op::Lanes(|a, n| shift(a, n, 64, Shift::Left)),
        M::Psrlw => Op::Lanes(|a, n| shift(a, n, 16, Shift::Logical)),
        M::Psrld => Op::Lanes(|a, n| shift(a, n, 32, Shift::Logical)),
        M::Psrlq => Op::Lanes(|a, n| shift(a, n, 64, Shift::Logical)),
        M::Psraw => Op::Lanes(|a, n| shift(a, n, 16, Shift::Arithmetic)),
        M::Psrad => Op::Lanes(|a, n| shift(a, n, 32, Shift::Arithmetic)),
        _ => return None,
    })
}

fn lane_mask(bits: u32) -> u64 {
    if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Apply `f` to each `bits`-wide lane pair; results are truncated to the lane.
fn lanes(a: u64, b: u64, bits: u32, f: impl Fn(u64, u64) -> u64) -> u64 {
    let m = lane_mask(bits);
    (0..64 / bits).fold(0, |acc, i| {
        let s = i * bits;
        acc | ((f((a >> s) & m, (b >> s) & m) & m) << s)
    })
}

fn sext(v: u64, bits: u32) -> i64 {
    ((v << (64 - bits)) as i64) >> (64 - bits)
}

/// Signed saturating lane operation.
fn signed(a: u64, b: u64, bits: u32, f: fn(i64, i64) -> i64) -> u64 {
    let (lo, hi) = (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1);
    lanes(a, b, bits, |x, y| {
        f(sext(x, bits), sext(y, bits)).clamp(lo, hi) as u64
    })
}

/// Unsigned saturating lane operation.
fn unsigned(a: u64, b: u64, bits: u32, f: fn(i64, i64) -> i64) -> u64 {
    let hi = (1i64 << bits) - 1;
    lanes(a, b, bits, |x, y| f(x as i64, y as i64).clamp(0, hi) as u64)
}

fn mask_if(c: bool) -> u64 {
    if c {
        u64::MAX
    } else {
        0
    }
}

fn pmaddwd(a: u64, b: u64) -> u64 {
    lanes(a, b, 32, |x, y| {
        let p = |s: u32| sext((x >> s) & 0xffff, 16) * sext((y >> s) & 0xffff, 16);
        (p(0) + p(16)) as u64
    })
}

/// Narrow the `bits`-wide signed lanes of `a` (low half of the result) then `b` (high half).
fn pack(a: u64, b: u64, bits: u32, narrow: fn(i64) -> u64) -> u64 {
    let n = 64 / bits;
    let out = bits / 2;
    let mut r = 0u64;
    for (k, src) in [a, b].into_iter().enumerate() {
        for i in 0..n {
            let v = sext((src >> (i * bits)) & lane_mask(bits), bits);
            r |= narrow(v) << ((k as u32 * n + i) * out);
        }
    }
    r
}

/// Interleave the low (or high) halves' `bits`-wide lanes of `a` and `b`, `a` first.
fn interleave(a: u64, b: u64, bits: u32, high: bool) -> u64 {
    let n = 32 / bits;
    let base = if high { 32 } else { 0 };
    let m = lane_mask(bits);
    let mut r = 0u64;
    for i in 0..n {
        let x = (a >> (base + i * bits)) & m;
        let y = (b >> (base + i * bits)) & m;
        r |= x << (2 * i * bits);
        r |= y << ((2 * i + 1) * bits);
    }
    r
}

#[derive(Clone, Copy)]
enum Shift {
    Left,
    Logical,
    Arithmetic,
}

/// Shift each lane by the full 64-bit count `n` (SDM Vol. 2B PSLLW/PSRLW/PSRAW): counts past
/// the lane width clear the lane (fill it with the sign for arithmetic shifts).
fn shift(a: u64, n: u64, bits: u32, kind: Shift) -> u64 {
    lanes(a, 0, bits, |x, _| match kind {
        Shift::Left if n >= u64::from(bits) => 0,
        Shift::Left => x << n,
        Shift::Logical if n >= u64::from(bits) => 0,
        Shift::Logical => x >> n,
        Shift::Arithmetic => (sext(x, bits) >> n.min(u64::from(bits) - 1)) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_arithmetic_by_hand() {
        assert_eq!(
            lanes(0x00ff_0001_7fff_ffff, 0x0001_0001_0001_0001, 16, |x, y| x
                .wrapping_add(y)),
            0x0100_0002_8000_0000
        );
        // paddsw: 0x7fff + 1 saturates, 0x8000 + 0xffff (-1) saturates.
        assert_eq!(
            signed(0x7fff_8000_0001_0000, 0x0001_ffff_0001_0000, 16, |x, y| x
                + y),
            0x7fff_8000_0002_0000
        );
        // psubusb: 1 - 2 = 0.
        assert_eq!(unsigned(0x01, 0x02, 8, |x, y| x - y), 0);
        // pmaddwd: 2*3 + (-1)*4 = 2 in the low dword; 0x8000*0x8000*2 wraps to 0x80000000.
        assert_eq!(
            pmaddwd(0x8000_8000_ffff_0002, 0x8000_8000_0004_0003),
            0x8000_0000_0000_0002
        );
    }

    #[test]
    fn packs_unpacks_and_shifts() {
        // packsswb: words 0x0100 (256) -> 0x7f, 0xff80 (-128) -> 0x80.
        assert_eq!(
            pack(0x0001_0100_ff80_fffe, 0, 16, |v| v.clamp(-128, 127) as u64
                & 0xff),
            0x0000_0000_017f_80fe
        );
        assert_eq!(
            interleave(0x1122_3344_5566_7788, 0xaabb_ccdd_eeff_0011, 8, false),
            0xee55_ff66_0077_1188
        );
        assert_eq!(
            interleave(0x1122_3344_5566_7788, 0xaabb_ccdd_eeff_0011, 32, true),
            0xaabb_ccdd_1122_3344
        );
        assert_eq!(
            shift(0x8000_0001, 1, 32, Shift::Arithmetic),
            0xc000_0000_0000_0000 >> 32
        );
        assert_eq!(
            shift(0x8000_0000_0000_0000, 70, 32, Shift::Arithmetic),
            0xffff_ffff_0000_0000
        );
        assert_eq!(shift(0xffff, 16, 16, Shift::Left), 0);
        assert_eq!(shift(0x0001_0001, 4, 16, Shift::Left), 0x0010_0010);
    }
}
