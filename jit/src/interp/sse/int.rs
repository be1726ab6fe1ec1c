//! SSE2 128-bit integer instructions (SDM Vol. 1 11.4.3; Vol. 2 per instruction) and the
//! bitwise/shuffle/unpack instructions shared with the floating-point types: add/subtract
//! (wrapping and saturating), multiplies, averages, min/max, SAD, compares, logic, shifts,
//! pack/unpack, shuffles and word insert/extract.

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use super::lanes::*;
use super::{imm8, read, write, xmm, xmm_of};
use crate::context::JitContext;
use crate::exception::Fault;
use crate::interp::{Exec, Flow};
use crate::runtime::Runtime;

pub(super) fn handles(m: M) -> bool {
    binary(m).is_some()
        || shift_kind(m).is_some()
        || matches!(
            m,
            M::Pshufd
                | M::Pshuflw
                | M::Pshufhw
                | M::Shufps
                | M::Shufpd
                | M::Pslldq
                | M::Psrldq
                | M::Pextrw
                | M::Pinsrw
        )
}

pub(super) fn execute(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    m: M,
) -> Option<Exec> {
    Some(run(ctx, rt, insn, m))
}

fn run(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction, m: M) -> Exec {
    if let Some(f) = binary(m) {
        let b = read(ctx, rt, insn, 1)?;
        let d = xmm_of(insn, 0);
        let r = f(xmm(ctx, d), b);
        super::set_xmm(ctx, d, r);
        return Ok(Flow::Next);
    }
    if let Some((lane_bits, kind)) = shift_kind(m) {
        let count = if is_imm(insn.op_kind(1)) {
            u64::from(imm8(insn))
        } else {
            read(ctx, rt, insn, 1)? as u64
        };
        let d = xmm_of(insn, 0);
        let r = shift(xmm(ctx, d), lane_bits, kind, count);
        super::set_xmm(ctx, d, r);
        return Ok(Flow::Next);
    }
    let imm = imm8(insn);
    match m {
        M::Pshufd | M::Pshuflw | M::Pshufhw => {
            let s = read(ctx, rt, insn, 1)?;
            let r = match m {
                M::Pshufd => pshufd(s, imm),
                M::Pshuflw => pshuflw(s, imm),
                _ => pshufhw(s, imm),
            };
            write(ctx, rt, insn, 0, r)?;
        }
        M::Shufps | M::Shufpd => {
            let s = read(ctx, rt, insn, 1)?;
            let d = xmm_of(insn, 0);
            let r = if m == M::Shufps {
                shufps(xmm(ctx, d), s, imm)
            } else {
                shufpd(xmm(ctx, d), s, imm)
            };
            super::set_xmm(ctx, d, r);
        }
        M::Pslldq | M::Psrldq => {
            let d = xmm_of(insn, 0);
            let n = u32::from(imm.min(16)) * 8;
            let v = xmm(ctx, d);
            let r = match (m, n) {
                (_, 128) => 0,
                (M::Pslldq, _) => v << n,
                _ => v >> n,
            };
            super::set_xmm(ctx, d, r);
        }
        M::Pextrw => {
            // The register form (SSE2) and the memory form (SSE4.1) extract the same word.
            let s = xmm(ctx, xmm_of(insn, 1));
            let w = u16s(s)[usize::from(imm & 7)];
            write(ctx, rt, insn, 0, u128::from(w))?;
        }
        M::Pinsrw => {
            let w = read(ctx, rt, insn, 1)? as u16;
            let d = xmm_of(insn, 0);
            let mut a = u16s(xmm(ctx, d));
            a[usize::from(imm & 7)] = w;
            super::set_xmm(ctx, d, from_u16s(a));
        }
        _ => return Err(Fault::ud()),
    }
    Ok(Flow::Next)
}

fn is_imm(k: OpKind) -> bool {
    matches!(k, OpKind::Immediate8 | OpKind::Immediate8_2nd)
}

/// The lane-wise two-operand instructions `dst = f(dst, src)`.
pub(super) fn binary(m: M) -> Option<fn(u128, u128) -> u128> {
    let f: fn(u128, u128) -> u128 = match m {
        M::Paddb => |a, b| zip8(a, b, u8::wrapping_add),
        M::Paddw => |a, b| zip16(a, b, u16::wrapping_add),
        M::Paddd => |a, b| zip32(a, b, u32::wrapping_add),
        M::Paddq => |a, b| zip64(a, b, u64::wrapping_add),
        M::Psubb => |a, b| zip8(a, b, u8::wrapping_sub),
        M::Psubw => |a, b| zip16(a, b, u16::wrapping_sub),
        M::Psubd => |a, b| zip32(a, b, u32::wrapping_sub),
        M::Psubq => |a, b| zip64(a, b, u64::wrapping_sub),
        M::Paddsb => |a, b| zip8(a, b, |x, y| (x as i8).saturating_add(y as i8) as u8),
        M::Paddsw => |a, b| zip16(a, b, |x, y| (x as i16).saturating_add(y as i16) as u16),
        M::Paddusb => |a, b| zip8(a, b, u8::saturating_add),
        M::Paddusw => |a, b| zip16(a, b, u16::saturating_add),
        M::Psubsb => |a, b| zip8(a, b, |x, y| (x as i8).saturating_sub(y as i8) as u8),
        M::Psubsw => |a, b| zip16(a, b, |x, y| (x as i16).saturating_sub(y as i16) as u16),
        M::Psubusb => |a, b| zip8(a, b, u8::saturating_sub),
        M::Psubusw => |a, b| zip16(a, b, u16::saturating_sub),
        M::Pmullw => |a, b| zip16(a, b, u16::wrapping_mul),
        M::Pmulhw => |a, b| {
            zip16(a, b, |x, y| {
                ((i32::from(x as i16) * i32::from(y as i16)) >> 16) as u16
            })
        },
        M::Pmulhuw => |a, b| zip16(a, b, |x, y| ((u32::from(x) * u32::from(y)) >> 16) as u16),
        M::Pmuludq => |a, b| {
            zip64(a, b, |x, y| {
                u64::from(x as u32).wrapping_mul(u64::from(y as u32))
            })
        },
        M::Pmaddwd => |a, b| {
            let (x, y) = (u16s(a), u16s(b));
            from_u32s(std::array::from_fn(|i| {
                let p = |j: usize| i32::from(x[j] as i16) * i32::from(y[j] as i16);
                p(2 * i).wrapping_add(p(2 * i + 1)) as u32
            }))
        },
        M::Pavgb => |a, b| zip8(a, b, |x, y| ((u16::from(x) + u16::from(y) + 1) >> 1) as u8),
        M::Pavgw => |a, b| zip16(a, b, |x, y| ((u32::from(x) + u32::from(y) + 1) >> 1) as u16),
        M::Pminub => |a, b| zip8(a, b, std::cmp::min),
        M::Pmaxub => |a, b| zip8(a, b, std::cmp::max),
        M::Pminsw => |a, b| zip16(a, b, |x, y| (x as i16).min(y as i16) as u16),
        M::Pmaxsw => |a, b| zip16(a, b, |x, y| (x as i16).max(y as i16) as u16),
        M::Psadbw => |a, b| {
            let (x, y) = (u8s(a), u8s(b));
            let sad = |h: usize| -> u64 {
                (0..8)
                    .map(|i| u64::from(x[8 * h + i].abs_diff(y[8 * h + i])))
                    .sum()
            };
            from_u64s([sad(0), sad(1)])
        },
        M::Pcmpeqb => |a, b| zip8(a, b, |x, y| mask_if(x == y)),
        M::Pcmpeqw => |a, b| zip16(a, b, |x, y| mask_if(x == y)),
        M::Pcmpeqd => |a, b| zip32(a, b, |x, y| mask_if(x == y)),
        M::Pcmpgtb => |a, b| zip8(a, b, |x, y| mask_if((x as i8) > (y as i8))),
        M::Pcmpgtw => |a, b| zip16(a, b, |x, y| mask_if((x as i16) > (y as i16))),
        M::Pcmpgtd => |a, b| zip32(a, b, |x, y| mask_if((x as i32) > (y as i32))),
        M::Pand | M::Andps | M::Andpd => |a, b| a & b,
        M::Pandn | M::Andnps | M::Andnpd => |a, b| !a & b,
        M::Por | M::Orps | M::Orpd => |a, b| a | b,
        M::Pxor | M::Xorps | M::Xorpd => |a, b| a ^ b,
        M::Packsswb => |a, b| pack(a, b, 16, |v| sat_signed(v, 8)),
        M::Packuswb => |a, b| pack(a, b, 16, |v| sat_unsigned(v, 8)),
        M::Packssdw => |a, b| pack(a, b, 32, |v| sat_signed(v, 16)),
        M::Punpcklbw => |a, b| unpack(a, b, 8, false),
        M::Punpcklwd => |a, b| unpack(a, b, 16, false),
        M::Punpckldq | M::Unpcklps => |a, b| unpack(a, b, 32, false),
        M::Punpcklqdq | M::Unpcklpd => |a, b| unpack(a, b, 64, false),
        M::Punpckhbw => |a, b| unpack(a, b, 8, true),
        M::Punpckhwd => |a, b| unpack(a, b, 16, true),
        M::Punpckhdq | M::Unpckhps => |a, b| unpack(a, b, 32, true),
        M::Punpckhqdq | M::Unpckhpd => |a, b| unpack(a, b, 64, true),
        _ => return None,
    };
    Some(f)
}

/// Pack the signed `from_bits` lanes of `a` then `b` into lanes half as wide through `sat`.
pub(super) fn pack(a: u128, b: u128, from_bits: u32, sat: fn(i64) -> i64) -> u128 {
    let n = 128 / from_bits;
    let to = from_bits / 2;
    let lane = |v: u128, i: u32| -> i64 {
        let raw = (v >> (from_bits * i)) as u64 & ((1u64 << from_bits) - 1);
        let shift = 64 - from_bits;
        ((raw << shift) as i64) >> shift
    };
    let mut r = 0u128;
    for i in 0..2 * n {
        let v = if i < n { lane(a, i) } else { lane(b, i - n) };
        let s = sat(v) as u64 & ((1u64 << to) - 1);
        r |= u128::from(s) << (to * i);
    }
    r
}

/// Interleave the low (or high) halves of `a` and `b` in `bits`-wide lanes, `a` first.
pub(super) fn unpack(a: u128, b: u128, bits: u32, high: bool) -> u128 {
    let n = 64 / bits;
    let m = if bits == 64 {
        u64::MAX as u128
    } else {
        (1u128 << bits) - 1
    };
    let base = if high { n } else { 0 };
    let mut r = 0u128;
    for i in 0..n {
        let x = (a >> (bits * (base + i))) & m;
        let y = (b >> (bits * (base + i))) & m;
        r |= x << (bits * 2 * i);
        r |= y << (bits * (2 * i + 1));
    }
    r
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ShiftKind {
    Left,
    Right,
    Arith,
}

pub(super) fn shift_kind(m: M) -> Option<(u32, ShiftKind)> {
    Some(match m {
        M::Psllw => (16, ShiftKind::Left),
        M::Pslld => (32, ShiftKind::Left),
        M::Psllq => (64, ShiftKind::Left),
        M::Psrlw => (16, ShiftKind::Right),
        M::Psrld => (32, ShiftKind::Right),
        M::Psrlq => (64, ShiftKind::Right),
        M::Psraw => (16, ShiftKind::Arith),
        M::Psrad => (32, ShiftKind::Arith),
        _ => return None,
    })
}

/// Shift every `bits`-wide lane by `count` (the whole 64-bit count: counts past the lane width
/// clear the lane, or fill it with the sign for arithmetic shifts).
pub(super) fn shift(v: u128, bits: u32, kind: ShiftKind, count: u64) -> u128 {
    let m = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut r = 0u128;
    for i in 0..128 / bits {
        let x = (v >> (bits * i)) as u64 & m;
        let y = if count >= u64::from(bits) {
            match kind {
                ShiftKind::Arith if x >> (bits - 1) & 1 != 0 => m,
                _ => 0,
            }
        } else {
            let c = count as u32;
            match kind {
                ShiftKind::Left => (x << c) & m,
                ShiftKind::Right => x >> c,
                ShiftKind::Arith => {
                    let s = 64 - bits;
                    ((((x << s) as i64) >> s) >> c) as u64 & m
                }
            }
        };
        r |= u128::from(y) << (bits * i);
    }
    r
}

fn pshufd(s: u128, imm: u8) -> u128 {
    let a = u32s(s);
    from_u32s(std::array::from_fn(|i| {
        a[usize::from((imm >> (2 * i)) & 3)]
    }))
}

pub(super) fn pshuflw(s: u128, imm: u8) -> u128 {
    let a = u16s(s);
    from_u16s(std::array::from_fn(|i| {
        if i < 4 {
            a[usize::from((imm >> (2 * i)) & 3)]
        } else {
            a[i]
        }
    }))
}

fn pshufhw(s: u128, imm: u8) -> u128 {
    let a = u16s(s);
    from_u16s(std::array::from_fn(|i| {
        if i >= 4 {
            a[4 + usize::from((imm >> (2 * (i - 4))) & 3)]
        } else {
            a[i]
        }
    }))
}

fn shufps(d: u128, s: u128, imm: u8) -> u128 {
    let (x, y) = (u32s(d), u32s(s));
    let sel = |i: usize| usize::from((imm >> (2 * i)) & 3);
    from_u32s([x[sel(0)], x[sel(1)], y[sel(2)], y[sel(3)]])
}

fn shufpd(d: u128, s: u128, imm: u8) -> u128 {
    let (x, y) = (u64s(d), u64s(s));
    from_u64s([x[usize::from(imm & 1)], y[usize::from((imm >> 1) & 1)]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(m: M) -> fn(u128, u128) -> u128 {
        binary(m).unwrap()
    }

    #[test]
    fn saturating_and_wrapping_adds() {
        // 0x7f + 0x01: wraps to 0x80 in PADDB, saturates to 0x7f in PADDSB, 0x80 in PADDUSB.
        assert_eq!(f(M::Paddb)(0x7f, 0x01), 0x80);
        assert_eq!(f(M::Paddsb)(0x7f, 0x01), 0x7f);
        assert_eq!(f(M::Paddusb)(0xff, 0x01), 0xff);
        assert_eq!(f(M::Psubusw)(0x0001, 0x0002), 0);
        assert_eq!(f(M::Psubsw)(0x8000, 0x0001), 0x8000);
        assert_eq!(f(M::Paddq)(u64::MAX as u128, 1), 0);
    }

    #[test]
    fn multiplies_and_sad() {
        // -2 * 3 = -6 = 0xfffffffa: low word 0xfffa, high word 0xffff.
        assert_eq!(f(M::Pmullw)(0xfffe, 3), 0xfffa);
        assert_eq!(f(M::Pmulhw)(0xfffe, 3), 0xffff);
        assert_eq!(f(M::Pmulhuw)(0xfffe, 3), 0x0002);
        assert_eq!(
            f(M::Pmuludq)(0xffff_ffff, 0xffff_ffff),
            0xffff_fffe_0000_0001
        );
        // (1*2 + 3*4) = 14 in doubleword 0.
        assert_eq!(f(M::Pmaddwd)(0x0003_0001, 0x0004_0002), 14);
        // |1-4| + |10-3| = 10 in the low quadword, 0 in the high one.
        assert_eq!(f(M::Psadbw)(0x0a01, 0x0304), 10);
        assert_eq!(f(M::Pavgb)(0x01, 0x02), 0x02);
    }

    #[test]
    fn packs_saturate_and_unpacks_interleave() {
        // words 0x0100 (256), 0xff00 (-256), 0x007f: packsswb -> 7f 80 7f.
        let a = 0x007f_ff00_0100u128;
        assert_eq!(f(M::Packsswb)(a, 0) & 0xff_ffff, 0x7f_807f);
        assert_eq!(f(M::Packuswb)(a, 0) & 0xff_ffff, 0x7f_00ff);
        assert_eq!(f(M::Punpcklbw)(0x0201, 0x0b0a), 0x0b02_0a01);
        assert_eq!(
            f(M::Punpckhqdq)(0x1111u128 << 64, 0x2222u128 << 64),
            (0x2222u128 << 64) | 0x1111
        );
    }

    #[test]
    fn shifts_clear_or_fill_past_the_lane_width() {
        assert_eq!(shift(0x8000, 16, ShiftKind::Arith, 3), 0xf000);
        assert_eq!(shift(0x8000, 16, ShiftKind::Arith, 99), 0xffff);
        assert_eq!(shift(0x8000, 16, ShiftKind::Right, 16), 0);
        assert_eq!(shift(1, 64, ShiftKind::Left, 63), 1 << 63);
        assert_eq!(shift(0xffff_ffff, 32, ShiftKind::Left, 4), 0xffff_fff0);
    }

    #[test]
    fn shuffles_pick_the_selected_elements() {
        let v = from_u32s([10, 11, 12, 13]);
        // imm 0x1b = 00 01 10 11: reverse.
        assert_eq!(pshufd(v, 0x1b), from_u32s([13, 12, 11, 10]));
        let w = from_u32s([20, 21, 22, 23]);
        assert_eq!(shufps(v, w, 0x4e), from_u32s([12, 13, 20, 21]));
        assert_eq!(shufpd(v, w, 1), from_u64s([u64s(v)[1], u64s(w)[0]]));
        let h = from_u16s([0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(pshufhw(h, 0x1b), from_u16s([0, 1, 2, 3, 7, 6, 5, 4]));
        assert_eq!(pshuflw(h, 0x00), from_u16s([0, 0, 0, 0, 4, 5, 6, 7]));
    }
}
