//! The exactly computed operations of the double extended-precision format: scaling by a power
//! of two (FSCALE), exponent/significand extraction (FXTRACT) and the partial remainders of
//! FPREM/FPREM1.

use super::*;

/// `a * 2^n` exactly, then rounded (FSCALE's core); `n` is clamped to a range that still
/// overflows/underflows every finite value.
pub fn scale(env: &Env, a: F80, n: i64) -> Rounded<F80> {
    match a.class() {
        Class::Zero | Class::Infinity | Class::QNaN | Class::SNaN | Class::Unsupported => {
            return Rounded::exact(a, 0)
        }
        _ => {}
    }
    let u = a.unpack();
    let n = n.clamp(-70000, 70000) as i32;
    round_f80(env, u.sign, u.exp + n, u.sig)
}

/// Split into (unbiased exponent as a value, significand with exponent 0) for FXTRACT.
pub fn extract(a: F80) -> (F80, F80) {
    let u = a.unpack();
    let sig = F80::new(u.sign, BIAS as u16, (u.sig >> 64) as u64);
    (from_int(i64::from(u.exp)), sig)
}

/// The exponent of the leading bit of a finite non-zero value.
pub fn unbiased_exponent(a: F80) -> i32 {
    a.unpack().exp
}

/// The remainder step of FPREM (`nearest` = false, truncating quotient) or FPREM1 (`nearest`
/// = true, IEEE remainder), SDM Vol. 2A FPREM/FPREM1. Both operands finite and non-zero.
/// Returns the (partial) remainder, the low three quotient bits and whether it is complete.
pub fn remainder_step(a: F80, b: F80, nearest: bool) -> (F80, u64, bool) {
    let (x, y) = (a.unpack(), b.unpack());
    let d = x.exp - y.exp;
    let xm = (x.sig >> 64) as u64;
    let ym = (y.sig >> 64) as u64;
    if d < 0 {
        if nearest && d == -1 && xm > ym {
            // |b| / 2 < |a| < |b|: the nearest quotient is 1, the remainder a - b is exact:
            // (2*ym - xm) * 2^(y.exp - 64), of the opposite sign.
            let diff = (2 * u128::from(ym) - u128::from(xm)) as u64;
            return (pack_exact(!x.sign, y.exp - 64, diff), 1, true);
        }
        return (a, 0, true);
    }
    if d < 64 {
        let n = u128::from(xm) << d;
        let mut q = n / u128::from(ym);
        let mut r = n % u128::from(ym);
        let mut sign = x.sign;
        if nearest && (2 * r > u128::from(ym) || (2 * r == u128::from(ym) && q & 1 == 1)) {
            q += 1;
            r = u128::from(ym) - r;
            sign = !sign;
        }
        // r is scaled by 2^(y.exp - 63).
        let v = if r == 0 {
            F80::zero(x.sign)
        } else {
            pack_exact(sign, y.exp - 63, r as u64)
        };
        return (v, (q & 7) as u64, true);
    }
    // Partial remainder: reduce the exponent difference by N = 32..63 (SDM: implementation
    // dependent; 32 + (d mod 32) keeps it in range).
    let n = 32 + (d % 32);
    let num = u128::from(xm) << n;
    let r = num % u128::from(ym);
    // The remainder is scaled by 2^(x.exp - 63 - n).
    let v = if r == 0 {
        F80::zero(x.sign)
    } else {
        pack_exact(x.sign, x.exp - 63 - n, r as u64)
    };
    (v, 0, false)
}

/// `(-1)^sign * mag * 2^lsb_exp` when it is exactly representable (a remainder of operands in
/// the format: its last bit is never below the format's smallest denormal).
fn pack_exact(sign: bool, lsb_exp: i32, mag: u64) -> F80 {
    let lz = mag.leading_zeros() as i32;
    let biased = lsb_exp + 63 - lz + BIAS;
    if biased >= 1 {
        return F80::new(sign, biased as u16, mag << lz);
    }
    // Denormal: the last bit of the significand weighs 2^(1 - BIAS - 63).
    let shift = lsb_exp - (1 - BIAS - 63);
    F80::new(sign, 0, mag << shift.clamp(0, 63))
}
