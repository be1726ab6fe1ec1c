//! Conversions of the double extended-precision format: to and from integers (FILD, FIST,
//! FISTTP, FRNDINT) and the binary32/binary64 memory formats (FLD/FST m32/m64), with the
//! rounding and exception rules of [`super`].

use super::*;

/// Round to an integral value per `env.rounding` (FRNDINT, and the first step of FIST).
/// The result keeps the 80-bit format; PE is raised when the value changed.
pub fn round_to_integral(env: &Env, a: F80) -> Rounded<F80> {
    let de = match pre_checks(env, a, None) {
        Ok(d) => d,
        Err(r) => return r,
    };
    match a.class() {
        Class::Zero | Class::Infinity => return Rounded::exact(a, de),
        _ => {}
    }
    let u = a.unpack();
    if u.exp >= 63 {
        return Rounded::exact(a, de);
    }
    // Bits of the 128-bit significand below the binary point (value = sig * 2^(exp - 127)).
    let frac_bits = 127 - u.exp;
    let (int, rem, half) = match frac_bits {
        129.. => (0u128, u.sig, None),
        128 => (0u128, u.sig, Some(1u128 << 127)),
        _ => {
            let f = frac_bits as u32;
            (
                u.sig >> f,
                u.sig & ((1u128 << f) - 1),
                Some(1u128 << (f - 1)),
            )
        }
    };
    let up = match env.rounding {
        Rounding::NearestEven => match half {
            Some(h) => rem > h || (rem == h && int & 1 == 1),
            // |a| < 0.5 when the leading bit is below the half bit.
            None => false,
        },
        Rounding::Up => !u.sign && rem != 0,
        Rounding::Down => u.sign && rem != 0,
        Rounding::TowardZero => false,
    };
    let mag = int + u128::from(up);
    let flags = de | if rem != 0 { exc::PE } else { 0 };
    if mag == 0 {
        return Rounded {
            value: F80::zero(u.sign),
            flags,
            rounded_up: up,
            suppressed: false,
        };
    }
    let lz = (mag as u64).leading_zeros();
    let v = F80::new(u.sign, (BIAS + 63 - lz as i32) as u16, (mag as u64) << lz);
    Rounded {
        value: v,
        flags,
        rounded_up: up,
        suppressed: false,
    }
}

/// Convert to a signed integer of `bits` bits (16, 32, 64) per `env.rounding` (FIST/FISTP,
/// or truncation for FISTTP). Out of range, NaN or infinity: IE and the integer indefinite
/// (the most negative value) when masked (SDM Vol. 1 4.8.3.7, Table 4-4).
pub fn to_int(env: &Env, a: F80, bits: u32) -> Rounded<i64> {
    let indefinite = i64::MIN >> (64 - bits);
    let bad = |extra: u8| Rounded {
        value: indefinite,
        flags: exc::IE | extra,
        rounded_up: false,
        suppressed: !env.masked(exc::IE),
    };
    match a.class() {
        Class::QNaN | Class::SNaN | Class::Infinity | Class::Unsupported => return bad(0),
        _ => {}
    }
    let de = denormal_flags(&[a]);
    if de != 0 && !env.masked(exc::DE) {
        return Rounded {
            value: 0,
            flags: de,
            rounded_up: false,
            suppressed: true,
        };
    }
    let r = round_to_integral(env, a);
    let v = r.value;
    let mag: u128 = if v.is_zero() {
        0
    } else {
        let e = i32::from(v.exp()) - BIAS;
        if e > 63 {
            return bad(de);
        }
        u128::from(v.sig >> (63 - e))
    };
    let limit = 1u128 << (bits - 1);
    let ok = if v.sign() { mag <= limit } else { mag < limit };
    if !ok {
        return bad(de);
    }
    let value = if v.sign() {
        (mag as i128).wrapping_neg() as i64
    } else {
        mag as i64
    };
    Rounded {
        value,
        flags: r.flags | de,
        rounded_up: r.rounded_up,
        suppressed: false,
    }
}

/// An integer, exactly.
pub fn from_int(v: i64) -> F80 {
    if v == 0 {
        return F80::ZERO;
    }
    let mag = v.unsigned_abs();
    let lz = mag.leading_zeros();
    F80::new(v < 0, (BIAS + 63 - lz as i32) as u16, mag << lz)
}

/// Widen a binary32/binary64 encoding (`frac_bits` 23 or 52, `exp_bits` 8 or 11) exactly.
/// NaNs keep their kind (an SNaN stays signalling: the caller decides whether it raises IE);
/// a denormal raises DE and is normalised.
fn widen(raw: u64, frac_bits: u32, exp_bits: u32) -> (F80, u8) {
    let sign = raw >> (frac_bits + exp_bits) & 1 == 1;
    let emask = (1u64 << exp_bits) - 1;
    let e = (raw >> frac_bits) & emask;
    let frac = raw & ((1u64 << frac_bits) - 1);
    let bias = (1i32 << (exp_bits - 1)) - 1;
    if e == emask {
        if frac == 0 {
            return (F80::infinity(sign), 0);
        }
        let sig = INT_BIT | (frac << (63 - frac_bits));
        return (F80::new(sign, EXP_MAX, sig), 0);
    }
    if e == 0 {
        if frac == 0 {
            return (F80::zero(sign), 0);
        }
        let lz = frac.leading_zeros();
        // value = frac * 2^(1 - bias - frac_bits)
        let exp = 1 - bias - frac_bits as i32 + (63 - lz as i32);
        return (F80::new(sign, (exp + BIAS) as u16, frac << lz), exc::DE);
    }
    let sig = INT_BIT | (frac << (63 - frac_bits));
    (F80::new(sign, (e as i32 - bias + BIAS) as u16, sig), 0)
}

/// Load a single-precision value.
pub fn from_f32_bits(raw: u32) -> (F80, u8) {
    widen(u64::from(raw), 23, 8)
}

/// Load a double-precision value.
pub fn from_f64_bits(raw: u64) -> (F80, u8) {
    widen(raw, 52, 11)
}

/// Narrow to binary32/binary64 per `env` (made by [`Env::single`] / [`Env::double`]).
fn narrow(env: &Env, a: F80, frac_bits: u32, exp_bits: u32) -> Rounded<u64> {
    let sign_bit = 1u64 << (frac_bits + exp_bits);
    let emask = (1u64 << exp_bits) - 1;
    let s = if a.sign() { sign_bit } else { 0 };
    let pack_nan = |v: F80| s | (emask << frac_bits) | ((v.sig & !INT_BIT) >> (63 - frac_bits));
    match a.class() {
        Class::Zero => return Rounded::exact(s, 0),
        Class::Infinity => return Rounded::exact(s | (emask << frac_bits), 0),
        Class::QNaN => return Rounded::exact(pack_nan(a), 0),
        Class::SNaN => {
            return Rounded {
                value: pack_nan(a.quieted()),
                flags: exc::IE,
                rounded_up: false,
                suppressed: !env.masked(exc::IE),
            }
        }
        Class::Unsupported => {
            return Rounded {
                value: sign_bit | (emask << frac_bits) | (1u64 << (frac_bits - 1)),
                flags: exc::IE,
                rounded_up: false,
                suppressed: !env.masked(exc::IE),
            }
        }
        _ => {}
    }
    // FST raises no denormal-operand exception (SDM Vol. 2A FST/FSTP).
    let u = a.unpack();
    let r = round(env, u.sign, u.exp, u.sig);
    let (_, e, m) = r.value;
    let bits = s | ((e as u64) << frac_bits) | (m & ((1u64 << frac_bits) - 1));
    Rounded {
        value: bits,
        flags: r.flags,
        rounded_up: r.rounded_up,
        suppressed: r.suppressed,
    }
}

/// Store as single precision.
pub fn to_f32_bits(env: &Env, a: F80) -> Rounded<u32> {
    let r = narrow(env, a, 23, 8);
    Rounded {
        value: r.value as u32,
        flags: r.flags,
        rounded_up: r.rounded_up,
        suppressed: r.suppressed,
    }
}

/// Store as double precision.
pub fn to_f64_bits(env: &Env, a: F80) -> Rounded<u64> {
    narrow(env, a, 52, 11)
}
