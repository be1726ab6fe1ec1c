//! Transcendental functions evaluated in the x87's own 64-bit-significand arithmetic
//! ([`super::float80`], round to nearest at every step): power series after argument
//! reduction. Each result carries an error of a few units in the last place of the 64-bit
//! significand (Intel documents about one), so a result rounded to double precision is almost
//! always the correctly rounded one, which the earlier binary64 evaluation could not give.
//!
//! Operands are finite and non-zero here; special operands are handled by the caller.

use super::float80::{self, Env, Rounding, BIAS, F80};

/// Round to nearest, 64-bit precision, every exception masked.
fn env() -> Env {
    Env {
        rounding: Rounding::NearestEven,
        masks: 0x3f,
        ..Env::extended(0x037f)
    }
}

fn add(a: F80, b: F80) -> F80 {
    float80::add(&env(), a, b, false).value
}
fn sub(a: F80, b: F80) -> F80 {
    float80::add(&env(), a, b, true).value
}
fn mul(a: F80, b: F80) -> F80 {
    float80::mul(&env(), a, b).value
}
fn div(a: F80, b: F80) -> F80 {
    float80::div(&env(), a, b).value
}
fn int(v: i64) -> F80 {
    float80::from_int(v)
}

/// ln(2) rounded to 64 bits (B17217F7 D1CF79AB C9E3...).
const LN2: F80 = F80::new(false, 0x3ffe, 0xb172_17f7_d1cf_79ac);
/// log2(e) rounded to 64 bits (B8AA3B29 5C17F0BB BE87...).
const LOG2E: F80 = F80::new(false, 0x3fff, 0xb8aa_3b29_5c17_f0bc);
/// pi rounded to 64 bits (C90FDAA2 2168C234 C4C6...).
pub const PI: F80 = F80::new(false, 0x4000, 0xc90f_daa2_2168_c235);
/// pi / 2 and pi / 4, rounded to 64 bits.
pub const PI_2: F80 = F80::new(false, 0x3fff, 0xc90f_daa2_2168_c235);
pub const PI_4: F80 = F80::new(false, 0x3ffe, 0xc90f_daa2_2168_c235);

/// Whether `term` no longer changes a sum of magnitude about `sum`.
fn negligible(term: F80, sum: F80) -> bool {
    term.is_zero() || i32::from(sum.exp()) - i32::from(term.exp()) > 66
}

/// e^t - 1 for |t| <= ln 2: the Taylor series.
fn expm1(t: F80) -> F80 {
    let mut term = t;
    let mut sum = t;
    for k in 2..40 {
        term = div(mul(term, t), int(k));
        if negligible(term, sum) {
            break;
        }
        sum = add(sum, term);
    }
    sum
}

/// 2^x - 1 (F2XM1, |x| <= 1).
pub fn exp2m1(x: F80) -> F80 {
    expm1(mul(x, LN2))
}

/// ln(1 + z) from s = z / (2 + z): 2 * atanh(s) = 2 * (s + s^3/3 + s^5/5 + ...).
fn ln_from_s(s: F80) -> F80 {
    let s2 = mul(s, s);
    let mut power = s;
    let mut sum = s;
    for k in (3..200).step_by(2) {
        power = mul(power, s2);
        let term = div(power, int(k));
        if negligible(term, sum) {
            break;
        }
        sum = add(sum, term);
    }
    add(sum, sum)
}

/// log2(x) for a positive finite x.
pub fn log2(x: F80) -> F80 {
    // x = 2^e * m with m in [sqrt(1/2), sqrt(2)).
    let mut e = float80::unbiased_exponent(x);
    let mut m = F80::new(false, BIAS as u16, float80::extract(x).1.sig);
    if m.sig > 0xb504_f333_f9de_6484 {
        m = F80::new(false, (BIAS - 1) as u16, m.sig);
        e += 1;
    }
    let s = div(sub(m, F80::ONE), add(m, F80::ONE));
    let l = mul(ln_from_s(s), LOG2E);
    add(int(i64::from(e)), l)
}

/// log2(1 + x) for x > -1 (accurate for small x).
pub fn log2_1p(x: F80) -> F80 {
    let s = div(x, add(int(2), x));
    mul(ln_from_s(s), LOG2E)
}

/// atan(z) for 0 <= z <= 1: reduced below tan(pi/12) with atan(z) = pi/6 + atan((z*sqrt3 - 1)
/// / (z + sqrt3)), then the series z - z^3/3 + z^5/5 - ...
fn atan_unit(z: F80) -> F80 {
    let sqrt3 = float80::sqrt(&env(), int(3)).value;
    // tan(pi/12) = 2 - sqrt(3) ~ 0.2679.
    let tan_pi_12 = sub(int(2), sqrt3);
    let (z, offset) =
        if float80::compare(&env(), z, tan_pi_12, true).0 == Some(std::cmp::Ordering::Greater) {
            let r = div(sub(mul(z, sqrt3), F80::ONE), add(z, sqrt3));
            (r, Some(div(PI, int(6))))
        } else {
            (z, None)
        };
    let z2 = mul(z, z);
    let mut power = z;
    let mut sum = z;
    for k in (3..400).step_by(2) {
        power = mul(power, z2);
        let term = div(power, int(k));
        if negligible(term, sum) {
            break;
        }
        sum = if (k / 2) % 2 == 1 {
            sub(sum, term)
        } else {
            add(sum, term)
        };
    }
    match offset {
        Some(o) => add(o, sum),
        None => sum,
    }
}

/// atan2(y, x) for finite non-zero y and x (FPATAN: ST(1) = atan(ST(1) / ST(0))).
pub fn atan2(y: F80, x: F80) -> F80 {
    let (ay, ax) = (y.abs(), x.abs());
    let swap = float80::compare(&env(), ay, ax, true).0 == Some(std::cmp::Ordering::Greater);
    let ratio = if swap { div(ax, ay) } else { div(ay, ax) };
    let mut a = atan_unit(ratio);
    if swap {
        a = sub(PI_2, a);
    }
    if x.sign() {
        a = sub(PI, a);
    }
    if y.sign() {
        a.negate()
    } else {
        a
    }
}

/// pi/2 in three parts for the reduction: 32 + 32 + 64 significant bits
/// (pi/2 = 1.921FB544 42D18469 898CC517 01B839A2...b in hex, i.e. C90FDAA2 2168C234 C4C6628B
/// 80DC1CD1 as a 64-bit-aligned significand).
fn pi_2_parts() -> [F80; 3] {
    let p1 = F80::new(false, 0x3fff, 0xc90f_daa2_0000_0000);
    let p2 = int(0x2168_c234);
    let p2 = F80::new(false, p2.exp() - 63, p2.sig);
    let p3 = F80::new(false, 0x3fff - 64, 0xc4c6_628b_80dc_1cd1);
    [p1, p2, p3]
}

/// x reduced to r in [-pi/4, pi/4] with x = k * pi/2 + r; returns (r, k mod 4).
fn reduce(x: F80) -> (F80, u32) {
    let k = float80::round_to_integral(&env(), div(x, PI_2)).value;
    if k.is_zero() {
        return (x, 0);
    }
    let [p1, p2, p3] = pi_2_parts();
    let r = sub(sub(sub(x, mul(k, p1)), mul(k, p2)), mul(k, p3));
    let kq = float80::to_int(&env(), k, 64).value;
    (r, (kq & 3) as u32)
}

/// sin(r) and cos(r) for |r| <= pi/4: Taylor series.
fn sin_cos_reduced(r: F80) -> (F80, F80) {
    let r2 = mul(r, r);
    let mut term = r;
    let mut s = r;
    for k in (2..60).step_by(2) {
        term = div(mul(term, r2), int(k * (k + 1)));
        if negligible(term, s) {
            break;
        }
        s = if (k / 2) % 2 == 1 {
            sub(s, term)
        } else {
            add(s, term)
        };
    }
    let mut term = F80::ONE;
    let mut c = F80::ONE;
    for k in (1..60).step_by(2) {
        term = div(mul(term, r2), int(k * (k + 1)));
        if negligible(term, c) {
            break;
        }
        c = if (k / 2) % 2 == 0 {
            sub(c, term)
        } else {
            add(c, term)
        };
    }
    (s, c)
}

/// sin(x) and cos(x) for finite |x| < 2^63.
pub fn sin_cos(x: F80) -> (F80, F80) {
    let (r, q) = reduce(x);
    let (s, c) = sin_cos_reduced(r);
    match q {
        0 => (s, c),
        1 => (c, s.negate()),
        2 => (s.negate(), c.negate()),
        _ => (c.negate(), s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// |a - b| in units of the last place of b's 64-bit significand.
    fn ulps(a: F80, b: F80) -> u64 {
        if a == b {
            return 0;
        }
        let d = sub(a, b).abs();
        if d.is_zero() {
            return 0;
        }
        let ulp_exp = i32::from(b.exp()) - 63;
        let de = i32::from(d.exp());
        if de < ulp_exp {
            0
        } else {
            (d.sig >> (63 - (de - ulp_exp)).clamp(0, 63)).max(1)
        }
    }

    #[test]
    fn known_values_within_a_few_ulps() {
        let sqrt2 = F80::new(false, 0x3fff, 0xb504_f333_f9de_6484);
        let half = F80::new(false, 0x3ffe, 1 << 63);
        // 2^0.5 - 1 = sqrt(2) - 1.
        assert!(ulps(exp2m1(half), sub(sqrt2, F80::ONE)) <= 2);
        // 2^-1 - 1 = -0.5.
        assert!(ulps(exp2m1(int(-1)), half.negate()) <= 2);
        // log2(10) = FLDL2T's D49A784B CD1B8AFE.
        let l2t = F80::new(false, 0x4000, 0xd49a_784b_cd1b_8afe);
        assert!(ulps(log2(int(10)), l2t) <= 2);
        assert_eq!(log2(int(1024)), int(10));
        // log2(1 + 1) = 1.
        assert!(ulps(log2_1p(F80::ONE), F80::ONE) <= 1);
        // atan2(1, 1) = pi/4; atan2(1, -1) = 3pi/4; atan2(-1, 0.5) ~ -1.1071487.
        assert!(ulps(atan2(F80::ONE, F80::ONE), PI_4) <= 2);
        let three_pi_4 = mul(PI_4, int(3));
        assert!(ulps(atan2(F80::ONE, int(-1)), three_pi_4) <= 2);
        // sin(pi/6) = 0.5, cos(pi/3) = 0.5, sin(pi) ~ 1.0e-19 (pi's rounding error).
        assert!(ulps(sin_cos(div(PI, int(6))).0, half) <= 2);
        assert!(ulps(sin_cos(div(PI, int(3))).1, half) <= 2);
        let sin_pi = sin_cos(PI).0;
        // pi - PI(64-bit) = -(pi's rounding error) ~ -4.0e-20 -> sin(PI) ~ -4.0e-20.
        assert!(sin_pi.sign() && float80::unbiased_exponent(sin_pi) == -65);
        // sin^2 + cos^2 = 1 at x = 100.
        let (s, c) = sin_cos(int(100));
        assert!(ulps(add(mul(s, s), mul(c, c)), F80::ONE) <= 4);
        // sin(100) = -0.50636564110975879...: compare through binary64.
        let s64 = f64::from_bits(float80::to_f64_bits(&Env::double(0x037f), s).value);
        assert!((s64 - (-0.506_365_641_109_758_8)).abs() < 1e-15);
    }
}
