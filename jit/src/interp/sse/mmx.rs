//! MMX technology (SDM Vol. 1 9; Vol. 3A 12): the eight 64-bit MM registers, aliased to the
//! significands of the x87 registers R0-R7 in `CpuState::fx` (so FXSAVE, KVM and snapshots see
//! them), the MMX integer instructions and EMMS, and the SSE/SSE2/SSSE3 forms that take MM
//! operands (PSHUFW, PAVGB mm, MOVQ2DQ, CVTPI2PS, PSHUFB mm ...).
//!
//! Every MMX instruction puts the x87 unit in MMX state (SDM Vol. 3A 12.2: TOP = 0, all
//! registers tagged valid); writing an MM register sets bits 79:64 of its x87 register to all
//! ones; EMMS tags them all empty. emu has no x87 arithmetic, so nothing else reads the tags.
//! Faults (SDM Vol. 2 Table 22-1 / 22-5): CR0.EM -> #UD, CR0.TS -> #NM, a pending unmasked x87
//! exception (FSW.ES) -> #MF; the forms with an XMM operand also need CR4.OSFXSR.

use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};
use vcpu::state::cr0;
use vcpu::FxArea;

use super::convert::{float_to_int, int_to_float};
use super::fp::{commit, Env};
use super::int::{binary, pack, pshuflw, shift, shift_kind, unpack};
use super::lanes::*;
use super::{imm8, mxcsr, xmm, CR4_OSFXSR};
use crate::context::JitContext;
use crate::exception::{Fault, MF_VECTOR, NM_VECTOR};
use crate::interp::operand::{linear, mask, reg_read};
use crate::interp::{Exec, Flow};
use crate::runtime::Runtime;

/// FSW.ES, the x87 exception summary (SDM Vol. 1 8.1.3).
const FSW_ES: u16 = 1 << 7;
/// FSW.TOP, bits 13:11.
const FSW_TOP_SHIFT: u16 = 11;
/// Byte offset of the abridged tag word in the FXSAVE image.
const FTW: usize = FxArea::FTW;

const LOW64: u128 = u64::MAX as u128;

/// Whether `insn` is an MMX instruction or an SSE one with an MM operand (or EMMS).
pub(super) fn is_mmx(insn: &Instruction) -> bool {
    insn.mnemonic() == M::Emms
        || (0..insn.op_count())
            .any(|i| insn.op_kind(i) == OpKind::Register && insn.op_register(i).is_mm())
        || matches!(insn.mnemonic(), M::Cvtpi2ps | M::Cvtpi2pd)
}

fn check(ctx: &JitContext, insn: &Instruction) -> Result<(), Fault> {
    let has_xmm = super::uses_xmm(insn);
    if insn.has_lock_prefix()
        || ctx.cpu.cr0 & cr0::EM != 0
        || (has_xmm && ctx.cpu.cr4 & CR4_OSFXSR == 0)
    {
        return Err(Fault::ud());
    }
    if ctx.cpu.cr0 & cr0::TS != 0 {
        return Err(Fault::new(NM_VECTOR));
    }
    if ctx.cpu.fx.u16_at(FxArea::FSW) & FSW_ES != 0 {
        return Err(Fault::new(MF_VECTOR));
    }
    Ok(())
}

/// Enter MMX state: TOP = 0 (the register slots, stored in stack order, are rotated so that
/// ST(i) = R(i) stays true) and every register tagged valid.
fn enter_mmx_state(ctx: &mut JitContext) {
    let fsw = ctx.cpu.fx.u16_at(FxArea::FSW);
    let top = usize::from((fsw >> FSW_TOP_SHIFT) & 7);
    if top != 0 {
        let regs: [u8; 128] = ctx.cpu.fx.0[FxArea::ST0..FxArea::ST0 + 128]
            .try_into()
            .unwrap_or([0; 128]);
        for st in 0..8 {
            // ST(st) held R((top + st) mod 8); afterwards slot r holds R(r).
            let r = (top + st) % 8;
            let dst = FxArea::ST0 + 16 * r;
            ctx.cpu.fx.0[dst..dst + 16].copy_from_slice(&regs[16 * st..16 * st + 16]);
        }
    }
    let fsw = fsw & !(7 << FSW_TOP_SHIFT);
    ctx.cpu.fx.0[FxArea::FSW..FxArea::FSW + 2].copy_from_slice(&fsw.to_le_bytes());
    ctx.cpu.fx.0[FTW] = 0xff;
}

fn mm(ctx: &JitContext, n: usize) -> u64 {
    let o = FxArea::ST0 + 16 * (n & 7);
    u64::from_le_bytes(ctx.cpu.fx.0[o..o + 8].try_into().unwrap_or([0; 8]))
}

/// Write MMn: the significand of Rn, with its sign and exponent (bits 79:64) set to ones.
fn set_mm(ctx: &mut JitContext, n: usize, v: u64) {
    let o = FxArea::ST0 + 16 * (n & 7);
    ctx.cpu.fx.0[o..o + 8].copy_from_slice(&v.to_le_bytes());
    ctx.cpu.fx.0[o + 8..o + 10].copy_from_slice(&[0xff, 0xff]);
}

fn read(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction, i: u32) -> Result<u128, Fault> {
    match insn.op_kind(i) {
        OpKind::Register if insn.op_register(i).is_mm() => {
            Ok(u128::from(mm(ctx, insn.op_register(i).number())))
        }
        _ => super::read(ctx, rt, insn, i),
    }
}

fn write(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    i: u32,
    v: u128,
) -> Result<(), Fault> {
    match insn.op_kind(i) {
        OpKind::Register if insn.op_register(i).is_mm() => {
            set_mm(ctx, insn.op_register(i).number(), v as u64);
            Ok(())
        }
        _ => super::write(ctx, rt, insn, i, v),
    }
}

pub(super) fn execute(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    check(ctx, insn)?;
    let m = insn.mnemonic();
    if m == M::Emms {
        // All registers empty (SDM Vol. 2A EMMS).
        ctx.cpu.fx.0[FTW] = 0;
        return Ok(Flow::Next);
    }
    // CVTPI2PS/CVTPI2PD with a memory source do not touch the x87 state.
    let touches_mm = (0..insn.op_count())
        .any(|i| insn.op_kind(i) == OpKind::Register && insn.op_register(i).is_mm());
    if touches_mm {
        enter_mmx_state(ctx);
    }
    let imm = imm8(insn);
    let r: u128 = match m {
        M::Movd | M::Movq | M::Movntq => {
            let width = if m == M::Movd {
                u32::MAX as u128
            } else {
                LOW64
            };
            let v = read(ctx, rt, insn, 1)? & width;
            write(ctx, rt, insn, 0, v)?;
            return Ok(Flow::Next);
        }
        M::Movq2dq => {
            let v = read(ctx, rt, insn, 1)? & LOW64;
            super::write(ctx, rt, insn, 0, v)?;
            return Ok(Flow::Next);
        }
        M::Movdq2q => xmm(ctx, super::xmm_of(insn, 1)) & LOW64,
        M::Pmovmskb => {
            let b = u8s(read(ctx, rt, insn, 1)?);
            let bits = (0..8).fold(0u64, |acc, i| acc | (u64::from(b[i] >> 7) << i));
            write(ctx, rt, insn, 0, u128::from(bits))?;
            return Ok(Flow::Next);
        }
        M::Pextrw => {
            let w = u16s(read(ctx, rt, insn, 1)?)[usize::from(imm & 3)];
            write(ctx, rt, insn, 0, u128::from(w))?;
            return Ok(Flow::Next);
        }
        M::Pinsrw => {
            let w = read(ctx, rt, insn, 1)? as u16;
            let mut a = u16s(read(ctx, rt, insn, 0)?);
            a[usize::from(imm & 3)] = w;
            from_u16s(a)
        }
        M::Pshufw => pshuflw(read(ctx, rt, insn, 1)?, imm),
        M::Maskmovq => {
            maskmovq(ctx, rt, insn)?;
            return Ok(Flow::Next);
        }
        M::Cvtpi2ps | M::Cvtpi2pd | M::Cvtps2pi | M::Cvttps2pi | M::Cvtpd2pi | M::Cvttpd2pi => {
            return convert(ctx, rt, insn, m);
        }
        _ => {
            let a = read(ctx, rt, insn, 0)?;
            let b = if matches!(insn.op_kind(1), OpKind::Immediate8) {
                u128::from(imm)
            } else {
                read(ctx, rt, insn, 1)?
            };
            match lane_op(m, a, b, imm) {
                Some(r) => r,
                None => return Err(Fault::ud()),
            }
        }
    };
    write(ctx, rt, insn, 0, r & LOW64)?;
    Ok(Flow::Next)
}

/// The 64-bit form of a packed integer operation; `None` for a mnemonic with no MMX form here.
fn lane_op(m: M, a: u128, b: u128, imm: u8) -> Option<u128> {
    let (a, b) = (a & LOW64, b & LOW64);
    let r = match m {
        M::Punpcklbw => unpack(a, b, 8, false),
        M::Punpcklwd => unpack(a, b, 16, false),
        M::Punpckldq => unpack(a, b, 32, false),
        M::Punpckhbw => unpack(a >> 32, b >> 32, 8, false),
        M::Punpckhwd => unpack(a >> 32, b >> 32, 16, false),
        M::Punpckhdq => unpack(a >> 32, b >> 32, 32, false),
        // The four words of a then those of b, packed as eight.
        M::Packsswb => pack(a | (b << 64), 0, 16, |v| sat_signed(v, 8)),
        M::Packuswb => pack(a | (b << 64), 0, 16, |v| sat_unsigned(v, 8)),
        M::Packssdw => pack(a | (b << 64), 0, 32, |v| sat_signed(v, 16)),
        M::Pshufb => {
            let (x, y) = (u8s(a), u8s(b));
            from_u8s(std::array::from_fn(|i| {
                if i >= 8 || y[i] & 0x80 != 0 {
                    0
                } else {
                    x[usize::from(y[i] & 7)]
                }
            }))
        }
        M::Palignr => {
            // (dst:src) as 128 bits, shifted right by imm bytes.
            let v = (a << 64) | b;
            let n = u32::from(imm) * 8;
            if n >= 128 {
                0
            } else {
                v >> n
            }
        }
        M::Phaddw | M::Phsubw | M::Phaddsw | M::Phsubsw => {
            let f: fn(u16, u16) -> u16 = match m {
                M::Phaddw => u16::wrapping_add,
                M::Phsubw => u16::wrapping_sub,
                M::Phaddsw => |x, y| (x as i16).saturating_add(y as i16) as u16,
                _ => |x, y| (x as i16).saturating_sub(y as i16) as u16,
            };
            let (x, y) = (u16s(a), u16s(b));
            from_u16s([
                f(x[0], x[1]),
                f(x[2], x[3]),
                f(y[0], y[1]),
                f(y[2], y[3]),
                0,
                0,
                0,
                0,
            ])
        }
        M::Phaddd | M::Phsubd => {
            let f: fn(u32, u32) -> u32 = if m == M::Phaddd {
                u32::wrapping_add
            } else {
                u32::wrapping_sub
            };
            let (x, y) = (u32s(a), u32s(b));
            from_u32s([f(x[0], x[1]), f(y[0], y[1]), 0, 0])
        }
        M::Pabsb => zip8(b, 0, |x, _| (x as i8).unsigned_abs()),
        M::Pabsw => zip16(b, 0, |x, _| (x as i16).unsigned_abs()),
        M::Pabsd => zip32(b, 0, |x, _| (x as i32).unsigned_abs()),
        _ => {
            if let Some((bits, kind)) = shift_kind(m) {
                shift(a, bits, kind, b as u64)
            } else if let Some(f) = binary(m).or_else(|| super::ext::two_op(m)) {
                f(a, b)
            } else {
                return None;
            }
        }
    };
    Some(r & LOW64)
}

/// MASKMOVQ mm1, mm2: the bytes of mm1 whose mask byte in mm2 has its top bit set, to DS:rDI.
fn maskmovq(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Result<(), Fault> {
    let data = mm(ctx, insn.op_register(1).number()).to_le_bytes();
    let sel = mm(ctx, insn.op_register(2).number()).to_le_bytes();
    let asize: u32 = match insn.op_kind(0) {
        OpKind::MemorySegDI => 2,
        OpKind::MemorySegRDI => 8,
        _ => 4,
    };
    let base = reg_read(&ctx.cpu, Register::RDI) & mask(asize);
    let seg = insn.memory_segment();
    if sel.iter().any(|&s| s & 0x80 != 0) {
        let la = linear(ctx, seg, base);
        super::probe_write(ctx, rt, la, 8)?;
    }
    for i in 0..8 {
        if sel[i] & 0x80 != 0 {
            let la = linear(ctx, seg, base.wrapping_add(i as u64) & mask(asize));
            crate::mem::write(ctx, rt, la, 1, u64::from(data[i]))?;
        }
    }
    Ok(())
}

/// The conversions between packed doublewords in MM registers and XMM floating point.
fn convert(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction, m: M) -> Exec {
    let src = read(ctx, rt, insn, 1)?;
    let mut env = Env::new(mxcsr(ctx));
    let e = &mut env;
    let r: u128 = match m {
        M::Cvtpi2ps => {
            let a = u32s(src);
            let lo = [0, 1].map(|i| int_to_float::<f32>(e, i64::from(a[i] as i32), |v| v as f32));
            (xmm(ctx, super::xmm_of(insn, 0)) & !LOW64)
                | u128::from(lo[0])
                | (u128::from(lo[1]) << 32)
        }
        M::Cvtpi2pd => {
            let a = u32s(src);
            from_u64s([0, 1].map(|i| f64::from(a[i] as i32).to_bits()))
        }
        M::Cvtps2pi | M::Cvttps2pi => {
            let t = m == M::Cvttps2pi;
            let a = u32s(src);
            let r = [0, 1].map(|i| float_to_int::<f32>(e, u64::from(a[i]), 32, t));
            u128::from(r[0]) | (u128::from(r[1]) << 32)
        }
        _ => {
            let t = m == M::Cvttpd2pi;
            let r = u64s(src).map(|v| float_to_int::<f64>(e, v, 32, t));
            u128::from(r[0]) | (u128::from(r[1]) << 32)
        }
    };
    commit(ctx, &env)?;
    write(ctx, rt, insn, 0, r)?;
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_four_bit_pack_unpack_and_horizontal_forms() {
        // packsswb: words 0x0100, 0xff00, 0x007f, 0x0001 of a, 0x8000 ... of b.
        let a = 0x0001_007f_ff00_0100u128;
        let b = 0x0000_0000_0000_8000u128;
        assert_eq!(lane_op(M::Packsswb, a, b, 0), Some(0x0000_0080_017f_807f));
        // punpckhbw interleaves the high four bytes.
        let x = 0x8877_6655_4433_2211u128;
        let y = 0xffee_ddcc_bbaa_9988u128;
        assert_eq!(lane_op(M::Punpckhbw, x, y, 0), Some(0xff88_ee77_dd66_cc55));
        assert_eq!(lane_op(M::Punpckldq, x, y, 0), Some(0xbbaa_9988_4433_2211));
        // phaddw: (1+2, 3+4) from a, (10+20, 30+40) from b.
        let a = 0x0004_0003_0002_0001u128;
        let b = 0x0028_001e_0014_000au128;
        assert_eq!(lane_op(M::Phaddw, a, b, 0), Some(0x0046_001e_0007_0003));
        // palignr by 3: bytes 3..10 of (a:b).
        assert_eq!(lane_op(M::Palignr, x, y, 3), Some(0x3322_11ff_eedd_ccbb));
        // pshufb indexes eight bytes: 7 -> 0x88, 0x80 -> 0, 0 -> 0x11.
        assert_eq!(
            lane_op(M::Pshufb, x, 0x0000_0000_0000_8007, 0),
            Some(0x1111_1111_1111_0088)
        );
    }
}
