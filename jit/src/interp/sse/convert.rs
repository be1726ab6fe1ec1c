//! SSE/SSE2 conversions (SDM Vol. 1 11.4.1.3; Vol. 2 CVT*): integer <-> single/double and
//! single <-> double, scalar and packed, rounding by MXCSR.RC or truncating. Out-of-range and
//! NaN sources give the integer indefinite (sign bit only) with IE.

use std::cmp::Ordering;

use iced_x86::{Instruction, Mnemonic as M};

use super::fp::{commit, finish, is_denormal, is_nan, is_snan, mx, Env, Fp, Rounding};
use super::lanes::*;
use super::{mxcsr, read, write, xmm, xmm_of};
use crate::context::JitContext;
use crate::interp::{Exec, Flow};
use crate::runtime::Runtime;

pub(super) fn handles(m: M) -> bool {
    matches!(
        m,
        M::Cvtsi2ss
            | M::Cvtsi2sd
            | M::Cvtss2si
            | M::Cvttss2si
            | M::Cvtsd2si
            | M::Cvttsd2si
            | M::Cvtss2sd
            | M::Cvtsd2ss
            | M::Cvtdq2ps
            | M::Cvtps2dq
            | M::Cvttps2dq
            | M::Cvtdq2pd
            | M::Cvtpd2dq
            | M::Cvttpd2dq
            | M::Cvtps2pd
            | M::Cvtpd2ps
    )
}

/// Round the integer `v` to format `F` (exact for the int -> double cases that fit).
pub fn int_to_float<F: Fp>(env: &mut Env, v: i64, nearest: impl Fn(i64) -> F) -> u64 {
    let r = nearest(v);
    let back = r.to_f64() as i128;
    let err = i128::from(v).cmp(&back);
    finish(env, r, err, false)
}

/// Convert the element `b` of format `F` to a signed `bits`-bit integer, rounding by MXCSR.RC or
/// truncating.
pub fn float_to_int<F: Fp>(env: &mut Env, b: u64, bits: u32, truncate: bool) -> u64 {
    let indefinite = 1u64 << (bits - 1);
    if is_nan::<F>(b) {
        env.flags |= mx::IE;
        return indefinite;
    }
    let b = if is_denormal::<F>(b) && env.mxcsr & mx::DAZ != 0 {
        b & F::sign_bit()
    } else {
        b
    };
    let x = F::from_u64(b).to_f64();
    let mode = if truncate {
        Rounding::TowardZero
    } else {
        env.rounding()
    };
    let r = match mode {
        Rounding::Nearest => x.round_ties_even(),
        Rounding::Down => x.floor(),
        Rounding::Up => x.ceil(),
        Rounding::TowardZero => x.trunc(),
    };
    let limit = 2f64.powi(bits as i32 - 1);
    if !(r >= -limit && r < limit) {
        env.flags |= mx::IE;
        return indefinite;
    }
    if r != x {
        env.flags |= mx::PE;
    }
    (r as i64 as u64) & (u64::MAX >> (64 - bits))
}

/// Single to double: exact; an SNaN is quieted with IE, a denormal raises DE (or is zero under
/// DAZ).
pub fn single_to_double(env: &mut Env, b: u32) -> u64 {
    let b = u64::from(b);
    if is_nan::<f32>(b) {
        if is_snan::<f32>(b) {
            env.flags |= mx::IE;
        }
        let sign = (b >> 31) << 63;
        return sign | 0x7ff8_0000_0000_0000 | ((b & 0x7f_ffff) << 29);
    }
    if is_denormal::<f32>(b) {
        if env.mxcsr & mx::DAZ != 0 {
            return (b >> 31) << 63;
        }
        env.flags |= mx::DE;
    }
    f64::from(f32::from_bits(b as u32)).to_bits()
}

/// Double to single, rounded by MXCSR.RC with OE/UE/PE.
pub fn double_to_single(env: &mut Env, b: u64) -> u32 {
    if is_nan::<f64>(b) {
        if is_snan::<f64>(b) {
            env.flags |= mx::IE;
        }
        let sign = ((b >> 63) as u32) << 31;
        return sign | 0x7fc0_0000 | ((b >> 29) as u32 & 0x7f_ffff);
    }
    let mut b = b;
    if is_denormal::<f64>(b) {
        if env.mxcsr & mx::DAZ != 0 {
            b &= 1 << 63;
        } else {
            env.flags |= mx::DE;
        }
    }
    let x = f64::from_bits(b);
    let r = x as f32;
    let err = if x.is_infinite() {
        Ordering::Equal
    } else {
        x.partial_cmp(&f64::from(r)).unwrap_or(Ordering::Equal)
    };
    finish(env, r, err, x.is_infinite()) as u32
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
    let src = read(ctx, rt, insn, 1)?;
    let mut env = Env::new(mxcsr(ctx));
    let e = &mut env;
    // Scalar results merge into the destination XMM register; packed ones replace it.
    let merge = |ctx: &JitContext, low: u128, bits: u32| -> u128 {
        let m = u128::from(u64::MAX >> (64 - bits));
        (xmm(ctx, xmm_of(insn, 0)) & !m) | low
    };
    let result: u128 = match m {
        M::Cvtsi2ss | M::Cvtsi2sd => {
            let wide = super::opnd_size(insn, 1) == 8;
            let v = if wide {
                src as u64 as i64
            } else {
                i64::from(src as u32 as i32)
            };
            if m == M::Cvtsi2ss {
                let r = int_to_float::<f32>(e, v, |v| v as f32);
                merge(ctx, u128::from(r), 32)
            } else {
                let r = int_to_float::<f64>(e, v, |v| v as f64);
                merge(ctx, u128::from(r), 64)
            }
        }
        M::Cvtss2si | M::Cvttss2si | M::Cvtsd2si | M::Cvttsd2si => {
            let bits = super::opnd_size(insn, 0) * 8;
            let truncate = matches!(m, M::Cvttss2si | M::Cvttsd2si);
            let r = if matches!(m, M::Cvtss2si | M::Cvttss2si) {
                float_to_int::<f32>(e, src as u64 & 0xffff_ffff, bits, truncate)
            } else {
                float_to_int::<f64>(e, src as u64, bits, truncate)
            };
            commit(ctx, &env)?;
            write(ctx, rt, insn, 0, u128::from(r))?;
            return Ok(Flow::Next);
        }
        M::Cvtss2sd => {
            let r = single_to_double(e, src as u32);
            merge(ctx, u128::from(r), 64)
        }
        M::Cvtsd2ss => {
            let r = double_to_single(e, src as u64);
            merge(ctx, u128::from(r), 32)
        }
        M::Cvtdq2ps => from_u32s(
            u32s(src).map(|v| int_to_float::<f32>(e, i64::from(v as i32), |v| v as f32) as u32),
        ),
        M::Cvtps2dq | M::Cvttps2dq => {
            let t = m == M::Cvttps2dq;
            from_u32s(u32s(src).map(|v| float_to_int::<f32>(e, u64::from(v), 32, t) as u32))
        }
        M::Cvtdq2pd => {
            let a = u32s(src);
            from_u64s([0, 1].map(|i| f64::from(a[i] as i32).to_bits()))
        }
        M::Cvtpd2dq | M::Cvttpd2dq => {
            let t = m == M::Cvttpd2dq;
            let a = u64s(src);
            let r = a.map(|v| float_to_int::<f64>(e, v, 32, t));
            u128::from(r[0]) | (u128::from(r[1]) << 32)
        }
        M::Cvtps2pd => {
            let a = u32s(src);
            from_u64s([0, 1].map(|i| single_to_double(e, a[i])))
        }
        M::Cvtpd2ps => {
            let a = u64s(src);
            let r = a.map(|v| double_to_single(e, v));
            u128::from(r[0]) | (u128::from(r[1]) << 32)
        }
        _ => return Err(crate::exception::Fault::ud()),
    };
    commit(ctx, &env)?;
    super::set_xmm(ctx, xmm_of(insn, 0), result);
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_to_int_rounds_and_saturates_to_indefinite() {
        let mut e = Env::new(0x1f80);
        assert_eq!(
            float_to_int::<f32>(&mut e, 2.5f32.to_bits().into(), 32, false),
            2
        );
        assert_eq!(
            float_to_int::<f32>(&mut e, 3.5f32.to_bits().into(), 32, false),
            4
        );
        assert_eq!(e.flags, mx::PE);
        assert_eq!(
            float_to_int::<f32>(&mut e, (-2.5f32).to_bits().into(), 32, true),
            0xffff_fffe
        );
        let mut e = Env::new(0x1f80);
        assert_eq!(
            float_to_int::<f64>(&mut e, 3e9f64.to_bits(), 32, false),
            0x8000_0000
        );
        assert_eq!(e.flags, mx::IE);
        let mut e = Env::new(0x1f80);
        assert_eq!(
            float_to_int::<f64>(&mut e, 3e9f64.to_bits(), 64, false),
            3_000_000_000
        );
        assert_eq!(
            float_to_int::<f64>(&mut e, f64::NAN.to_bits(), 64, true),
            1 << 63
        );
        // Round down (RC = 1): -0.5 -> -1.
        let mut e = Env::new(0x1f80 | (1 << 13));
        assert_eq!(
            float_to_int::<f32>(&mut e, (-0.5f32).to_bits().into(), 32, false),
            0xffff_ffff
        );
    }

    #[test]
    fn int_to_single_rounds_by_mode() {
        // 2^24 + 1 is not a single: nearest (ties to even) gives 2^24, up gives 2^24 + 2.
        let v = (1 << 24) + 1;
        let mut e = Env::new(0x1f80);
        assert_eq!(int_to_float::<f32>(&mut e, v, |v| v as f32), 0x4b80_0000);
        assert_eq!(e.flags, mx::PE);
        let mut e = Env::new(0x1f80 | (2 << 13));
        assert_eq!(int_to_float::<f32>(&mut e, v, |v| v as f32), 0x4b80_0001);
    }

    #[test]
    fn double_single_conversions() {
        let mut e = Env::new(0x1f80);
        assert_eq!(double_to_single(&mut e, 1e300f64.to_bits()), 0x7f80_0000);
        assert_eq!(e.flags, mx::OE | mx::PE);
        let mut e = Env::new(0x1f80);
        assert_eq!(double_to_single(&mut e, 0.1f64.to_bits()), 0x3dcc_cccd);
        assert_eq!(e.flags, mx::PE);
        let mut e = Env::new(0x1f80);
        assert_eq!(single_to_double(&mut e, 0x7f80_0001), 0x7ff8_0000_2000_0000);
        assert_eq!(e.flags, mx::IE);
    }
}
