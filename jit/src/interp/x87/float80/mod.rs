//! Software floating point for the x87's double extended-precision format (SDM Vol. 1 4.2.2,
//! 4.8): 1 sign bit, 15 exponent bits (bias 16383), a 64-bit significand with an explicit
//! integer bit. Results are computed exactly and rounded once, per the rounding control and
//! precision control of the FPU control word (SDM Vol. 1 8.1.5.2, 8.1.5.3), with the exception
//! flags of SDM Vol. 1 4.9 and 8.5. No host floating point is used here, so results do not
//! depend on the host.
//!
//! Finite values are handled unpacked as `sign, exponent, significand` with the significand
//! normalised to bit 127 of a `u128` (the extra bits carry guard and sticky information).

use std::cmp::Ordering;

mod convert;
mod exact;
#[cfg(test)]
mod tests;

pub use convert::{
    from_f32_bits, from_f64_bits, from_int, round_to_integral, to_f32_bits, to_f64_bits, to_int,
};
pub use exact::{extract, remainder_step, scale, unbiased_exponent};

/// Exception flag bits, in FSW/FCW bit order (SDM Vol. 1 8.1.3.1).
pub mod exc {
    /// Invalid operation.
    pub const IE: u8 = 1 << 0;
    /// Denormal operand.
    pub const DE: u8 = 1 << 1;
    /// Zero divide.
    pub const ZE: u8 = 1 << 2;
    /// Overflow.
    pub const OE: u8 = 1 << 3;
    /// Underflow.
    pub const UE: u8 = 1 << 4;
    /// Precision (inexact result).
    pub const PE: u8 = 1 << 5;
}

/// The exponent bias of the double extended-precision format.
pub const BIAS: i32 = 16383;
/// Biased exponent of infinities and NaNs.
pub const EXP_MAX: u16 = 0x7fff;
/// The bias adjustment applied to a result delivered with an unmasked overflow or underflow
/// exception to a register (SDM Vol. 1 4.9.1.4, 4.9.1.5).
pub const BIAS_ADJUST: i32 = 24576;
/// The integer bit of the significand.
const INT_BIT: u64 = 1 << 63;
/// The quiet bit of a NaN's significand (SDM Vol. 1 4.8.3.4).
const QUIET_BIT: u64 = 1 << 62;

/// Rounding control (FCW bits 10-11, SDM Vol. 1 4.8.4, Table 4-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    NearestEven,
    Down,
    Up,
    TowardZero,
}

impl Rounding {
    /// From the two RC bits.
    pub fn from_bits(rc: u16) -> Self {
        match rc & 3 {
            0 => Rounding::NearestEven,
            1 => Rounding::Down,
            2 => Rounding::Up,
            _ => Rounding::TowardZero,
        }
    }
}

/// Where and how a result is rounded: significand bits (24, 53 or 64), the destination's
/// exponent range, the rounding direction and the masked exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Env {
    pub rounding: Rounding,
    /// Significand precision in bits including the integer bit.
    pub precision: u32,
    /// Exponent bias of the destination format.
    pub bias: i32,
    /// Largest biased exponent of a finite value in the destination format.
    pub emax: i32,
    /// Exception mask bits (FCW bits 0-5): set = masked.
    pub masks: u8,
    /// Unmasked overflow/underflow adjusts the exponent by [`BIAS_ADJUST`] and still delivers
    /// a result (register destinations); otherwise nothing is stored.
    pub bias_adjust: bool,
}

impl Env {
    /// Rounding to a register per the control word (RC, PC and the masks).
    pub fn from_fcw(fcw: u16) -> Self {
        let precision = match (fcw >> 8) & 3 {
            0 => 24,
            2 => 53,
            _ => 64,
        };
        Self {
            rounding: Rounding::from_bits(fcw >> 10),
            precision,
            bias: BIAS,
            emax: 0x7ffe,
            masks: (fcw & 0x3f) as u8,
            bias_adjust: true,
        }
    }
    /// Rounding to the single-precision memory format.
    pub fn single(fcw: u16) -> Self {
        Self {
            precision: 24,
            bias: 127,
            emax: 254,
            bias_adjust: false,
            ..Self::from_fcw(fcw)
        }
    }
    /// Rounding to the double-precision memory format.
    pub fn double(fcw: u16) -> Self {
        Self {
            precision: 53,
            bias: 1023,
            emax: 2046,
            bias_adjust: false,
            ..Self::from_fcw(fcw)
        }
    }
    /// Rounding to full 64-bit precision (loads and exact operations ignore PC).
    pub fn extended(fcw: u16) -> Self {
        Self {
            precision: 64,
            ..Self::from_fcw(fcw)
        }
    }
    fn masked(&self, e: u8) -> bool {
        self.masks & e != 0
    }
}

/// A double extended-precision value as stored in a register: sign and exponent in `se`,
/// the significand with its explicit integer bit in `sig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct F80 {
    pub se: u16,
    pub sig: u64,
}

/// The class of an encoding (SDM Vol. 1 8.2.2, Table 8-3 and 4.8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Zero,
    Denormal,
    Normal,
    Infinity,
    QNaN,
    SNaN,
    /// Pseudo-NaNs, pseudo-infinities and unnormals: invalid operands on the 387 and later.
    Unsupported,
}

/// A rounded result and the exceptions it raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rounded<T> {
    pub value: T,
    pub flags: u8,
    /// The significand was incremented in rounding (FSW.C1, SDM Vol. 1 8.1.3.3).
    pub rounded_up: bool,
    /// An unmasked exception forbids delivering the result (IE, ZE, DE, or OE/UE without
    /// bias adjustment).
    pub suppressed: bool,
}

impl<T> Rounded<T> {
    fn exact(value: T, flags: u8) -> Self {
        Self {
            value,
            flags,
            rounded_up: false,
            suppressed: false,
        }
    }
}

/// A finite non-zero value: `(-1)^sign * sig * 2^(exp - 127)`, `sig` normalised (bit 127 set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unpacked {
    sign: bool,
    exp: i32,
    sig: u128,
}

impl F80 {
    pub const ZERO: F80 = F80 { se: 0, sig: 0 };
    pub const ONE: F80 = F80 {
        se: 0x3fff,
        sig: INT_BIT,
    };
    /// The QNaN floating-point indefinite (SDM Vol. 1 4.8.3.7, Table 4-3).
    pub const INDEFINITE: F80 = F80 {
        se: 0xffff,
        sig: 0xc000_0000_0000_0000,
    };

    pub const fn new(sign: bool, exp: u16, sig: u64) -> Self {
        F80 {
            se: ((sign as u16) << 15) | (exp & EXP_MAX),
            sig,
        }
    }
    pub fn sign(self) -> bool {
        self.se & 0x8000 != 0
    }
    pub fn exp(self) -> u16 {
        self.se & EXP_MAX
    }
    pub fn infinity(sign: bool) -> Self {
        F80::new(sign, EXP_MAX, INT_BIT)
    }
    pub fn zero(sign: bool) -> Self {
        F80::new(sign, 0, 0)
    }
    pub fn negate(self) -> Self {
        F80 {
            se: self.se ^ 0x8000,
            sig: self.sig,
        }
    }
    pub fn abs(self) -> Self {
        F80 {
            se: self.se & EXP_MAX,
            sig: self.sig,
        }
    }
    pub fn from_bytes(b: &[u8]) -> Self {
        F80 {
            sig: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            se: u16::from_le_bytes([b[8], b[9]]),
        }
    }
    pub fn to_bytes(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&self.sig.to_le_bytes());
        b[8..].copy_from_slice(&self.se.to_le_bytes());
        b
    }

    pub fn class(self) -> Class {
        let e = self.exp();
        let int = self.sig & INT_BIT != 0;
        match e {
            0 if self.sig == 0 => Class::Zero,
            // Denormals and pseudo-denormals (integer bit set, exponent 0): the 387 and later
            // accept the latter as denormal operands (SDM Vol. 1 8.2.2).
            0 => Class::Denormal,
            EXP_MAX if !int => Class::Unsupported,
            EXP_MAX if self.sig << 1 == 0 => Class::Infinity,
            EXP_MAX if self.sig & QUIET_BIT != 0 => Class::QNaN,
            EXP_MAX => Class::SNaN,
            _ if !int => Class::Unsupported,
            _ => Class::Normal,
        }
    }
    pub fn is_nan(self) -> bool {
        matches!(self.class(), Class::QNaN | Class::SNaN)
    }
    pub fn is_zero(self) -> bool {
        self.class() == Class::Zero
    }

    fn unpack(self) -> Unpacked {
        // Denormals (and pseudo-denormals) have the exponent of the smallest normal.
        let e = i32::from(self.exp()).max(1);
        let lz = self.sig.leading_zeros() as i32;
        Unpacked {
            sign: self.sign(),
            exp: e - BIAS - lz,
            sig: u128::from(self.sig) << (64 + lz),
        }
    }

    /// The quiet version of a NaN.
    fn quieted(self) -> Self {
        F80 {
            se: self.se,
            sig: self.sig | QUIET_BIT,
        }
    }
}

/// Round an exact value `(-1)^sign * sig * 2^(exp - 127)` (`sig` normalised) to `env`'s format.
/// Returns the sign, the biased exponent and the significand with its integer bit at bit
/// `precision - 1` (exponent 0 and no integer bit for denormals).
fn round(env: &Env, sign: bool, mut exp: i32, sig: u128) -> Rounded<(bool, i32, u64)> {
    debug_assert!(sig >> 127 == 1);
    let p = env.precision;
    let mut biased = exp + env.bias;
    let mut flags = 0u8;
    let mut adjusted = false;
    let mut sig = sig;
    let tiny = biased < 1;
    if tiny {
        // Tiny before rounding (the x87 detects tininess before rounding).
        if !env.masked(exc::UE) {
            flags |= exc::UE;
            if !env.bias_adjust {
                return Rounded {
                    value: (sign, 0, 0),
                    flags,
                    rounded_up: false,
                    suppressed: true,
                };
            }
            exp += BIAS_ADJUST;
            biased = exp + env.bias;
            adjusted = true;
        }
        // Masked, or so tiny that even the adjusted exponent is out of range (only FSCALE
        // gets there): denormalise.
        if biased < 1 {
            let shift = (1 - biased) as u32;
            sig = if shift >= 128 {
                u128::from(sig != 0)
            } else {
                (sig >> shift) | u128::from(sig & ((1u128 << shift) - 1) != 0)
            };
            biased = 0;
        }
    }
    let drop = 128 - p;
    let rem = sig & ((1u128 << drop) - 1);
    let half = 1u128 << (drop - 1);
    let mut mant = sig >> drop;
    let up = match env.rounding {
        Rounding::NearestEven => rem > half || (rem == half && mant & 1 == 1),
        Rounding::Up => !sign && rem != 0,
        Rounding::Down => sign && rem != 0,
        Rounding::TowardZero => false,
    };
    let inexact = rem != 0;
    if up {
        mant += 1;
        if biased == 0 {
            // A denormal rounded up into the smallest normal.
            if mant >> (p - 1) == 1 {
                biased = 1;
            }
        } else if mant >> p == 1 {
            mant >>= 1;
            biased += 1;
        }
    }
    if inexact {
        flags |= exc::PE;
        // Masked underflow is signalled only for a tiny and inexact result.
        if tiny && env.masked(exc::UE) {
            flags |= exc::UE;
        }
    }
    if biased > env.emax && !adjusted {
        flags |= exc::OE;
        if !env.masked(exc::OE) {
            if !env.bias_adjust {
                return Rounded {
                    value: (sign, 0, 0),
                    flags,
                    rounded_up: false,
                    suppressed: true,
                };
            }
            biased -= BIAS_ADJUST;
            if biased > env.emax {
                // Beyond even the adjusted range (only FSCALE gets there): infinity.
                biased = env.emax + 1;
                mant = 1 << (p - 1);
            }
            return Rounded {
                value: (sign, biased, mant as u64),
                flags,
                rounded_up: up,
                suppressed: false,
            };
        }
        flags |= exc::PE;
        let to_infinity = match env.rounding {
            Rounding::NearestEven => true,
            Rounding::Up => !sign,
            Rounding::Down => sign,
            Rounding::TowardZero => false,
        };
        let value = if to_infinity {
            (sign, env.emax + 1, 1u64 << (p - 1))
        } else {
            (
                sign,
                env.emax,
                if p == 64 { u64::MAX } else { (1u64 << p) - 1 },
            )
        };
        return Rounded {
            value,
            flags,
            rounded_up: to_infinity,
            suppressed: false,
        };
    }
    Rounded {
        value: (sign, biased, mant as u64),
        flags,
        rounded_up: up,
        suppressed: false,
    }
}

/// Round to a register (80-bit format, PC applies through `env.precision`).
fn round_f80(env: &Env, sign: bool, exp: i32, sig: u128) -> Rounded<F80> {
    let r = round(env, sign, exp, sig);
    let (s, e, m) = r.value;
    let m64 = if env.precision == 64 {
        m
    } else {
        m << (64 - env.precision)
    };
    Rounded {
        value: F80::new(s, e as u16, m64),
        flags: r.flags,
        rounded_up: r.rounded_up,
        suppressed: r.suppressed,
    }
}

/// Result of an invalid operation: the indefinite if IE is masked, nothing otherwise.
fn invalid(env: &Env, extra: u8) -> Rounded<F80> {
    Rounded {
        value: F80::INDEFINITE,
        flags: exc::IE | extra,
        rounded_up: false,
        suppressed: !env.masked(exc::IE),
    }
}

/// Denormal-operand check: DE raised for denormal inputs; unmasked, it suppresses the result.
fn denormal_flags(ops: &[F80]) -> u8 {
    if ops.iter().any(|o| o.class() == Class::Denormal) {
        exc::DE
    } else {
        0
    }
}

/// NaN operand rules (SDM Vol. 1 4.8.3.5, Table 4-7): SNaN raises IE; the result is the QNaN
/// source, or of two NaNs the one with the larger significand, quieted.
fn propagate_nan(env: &Env, a: F80, b: Option<F80>) -> Option<Rounded<F80>> {
    let ca = a.class();
    let cb = b.map(F80::class);
    let a_nan = matches!(ca, Class::QNaN | Class::SNaN);
    let b_nan = matches!(cb, Some(Class::QNaN | Class::SNaN));
    if !a_nan && !b_nan {
        return None;
    }
    let snan = ca == Class::SNaN || cb == Some(Class::SNaN);
    let value = match (a_nan, b) {
        (true, Some(b)) if b_nan => {
            if ca != cb.expect("b present") {
                if ca == Class::QNaN {
                    a
                } else {
                    b
                }
            } else if (a.sig << 1) >= (b.sig << 1) {
                if (a.sig << 1) == (b.sig << 1) && !a.sign() {
                    a
                } else if (a.sig << 1) == (b.sig << 1) {
                    b
                } else {
                    a
                }
            } else {
                b
            }
        }
        (true, _) => a,
        (false, Some(b)) => b,
        (false, None) => a,
    }
    .quieted();
    let flags = if snan { exc::IE } else { 0 };
    Some(Rounded {
        value,
        flags,
        rounded_up: false,
        suppressed: snan && !env.masked(exc::IE),
    })
}

/// Checks shared by the arithmetic operations: unsupported encodings and NaNs, then denormal
/// operands. `Err` holds the final result.
fn pre_checks(env: &Env, a: F80, b: Option<F80>) -> Result<u8, Rounded<F80>> {
    if a.class() == Class::Unsupported || b.map(F80::class) == Some(Class::Unsupported) {
        return Err(invalid(env, 0));
    }
    if let Some(r) = propagate_nan(env, a, b) {
        return Err(r);
    }
    let ops: &[F80] = match b {
        Some(ref b) => &[a, *b],
        None => &[a],
    };
    let de = denormal_flags(ops);
    if de != 0 && !env.masked(exc::DE) {
        return Err(Rounded {
            value: F80::INDEFINITE,
            flags: de,
            rounded_up: false,
            suppressed: true,
        });
    }
    Ok(de)
}

fn with_flags(mut r: Rounded<F80>, flags: u8) -> Rounded<F80> {
    r.flags |= flags;
    r
}

/// `a + b` (`negate_b` for subtraction).
pub fn add(env: &Env, a: F80, b: F80, negate_b: bool) -> Rounded<F80> {
    let de = match pre_checks(env, a, Some(b)) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let b = if negate_b { b.negate() } else { b };
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Infinity || cb == Class::Infinity {
        if ca == Class::Infinity && cb == Class::Infinity && a.sign() != b.sign() {
            return invalid(env, de);
        }
        let v = if ca == Class::Infinity { a } else { b };
        return Rounded::exact(F80::infinity(v.sign()), de);
    }
    let zero_sign = |sa: bool, sb: bool| {
        if sa == sb {
            sa
        } else {
            env.rounding == Rounding::Down
        }
    };
    match (ca == Class::Zero, cb == Class::Zero) {
        (true, true) => return Rounded::exact(F80::zero(zero_sign(a.sign(), b.sign())), de),
        (true, false) => return with_flags(reround(env, b), de),
        (false, true) => return with_flags(reround(env, a), de),
        _ => {}
    }
    let (x, y) = (a.unpack(), b.unpack());
    let (x, y) = if (x.exp, x.sig) >= (y.exp, y.sig) {
        (x, y)
    } else {
        (y, x)
    };
    // One spare bit on top for the carry of an addition.
    let xs = x.sig >> 1;
    let d = (x.exp - y.exp) as u32;
    let ys = if d >= 127 {
        u128::from(y.sig != 0)
    } else {
        let t = y.sig >> 1;
        (t >> d) | u128::from(t & ((1u128 << d) - 1) != 0)
    };
    let (sum, exp) = if x.sign == y.sign {
        (xs + ys, x.exp + 1)
    } else {
        (xs - ys, x.exp + 1)
    };
    if sum == 0 {
        return Rounded::exact(F80::zero(zero_sign(x.sign, y.sign)), de);
    }
    let lz = sum.leading_zeros();
    with_flags(round_f80(env, x.sign, exp - lz as i32, sum << lz), de)
}

/// Round a register value to `env`'s precision (an operand passed through unchanged by an
/// operation, e.g. `x + 0`, is still rounded to PC).
fn reround(env: &Env, a: F80) -> Rounded<F80> {
    match a.class() {
        Class::Zero | Class::Infinity | Class::QNaN | Class::SNaN | Class::Unsupported => {
            Rounded::exact(a, 0)
        }
        _ => {
            let u = a.unpack();
            round_f80(env, u.sign, u.exp, u.sig)
        }
    }
}

/// `a * b`.
pub fn mul(env: &Env, a: F80, b: F80) -> Rounded<F80> {
    let de = match pre_checks(env, a, Some(b)) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let sign = a.sign() != b.sign();
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Infinity || cb == Class::Infinity {
        if ca == Class::Zero || cb == Class::Zero {
            return invalid(env, de);
        }
        return Rounded::exact(F80::infinity(sign), de);
    }
    if ca == Class::Zero || cb == Class::Zero {
        return Rounded::exact(F80::zero(sign), de);
    }
    let (x, y) = (a.unpack(), b.unpack());
    let prod = (x.sig >> 64) * (y.sig >> 64);
    let lz = prod.leading_zeros();
    with_flags(
        round_f80(env, sign, x.exp + y.exp + 1 - lz as i32, prod << lz),
        de,
    )
}

/// `a / b`.
pub fn div(env: &Env, a: F80, b: F80) -> Rounded<F80> {
    let de = match pre_checks(env, a, Some(b)) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let sign = a.sign() != b.sign();
    let (ca, cb) = (a.class(), b.class());
    match (ca, cb) {
        (Class::Infinity, Class::Infinity) | (Class::Zero, Class::Zero) => return invalid(env, de),
        (Class::Infinity, _) => return Rounded::exact(F80::infinity(sign), de),
        (_, Class::Infinity) | (Class::Zero, _) => return Rounded::exact(F80::zero(sign), de),
        (_, Class::Zero) => {
            return Rounded {
                value: F80::infinity(sign),
                flags: exc::ZE | de,
                rounded_up: false,
                suppressed: !env.masked(exc::ZE),
            }
        }
        _ => {}
    }
    let (x, y) = (a.unpack(), b.unpack());
    let (xs, ys) = ((x.sig >> 64) as u64, (y.sig >> 64) as u64);
    let num = u128::from(xs) << 64;
    let q1 = num / u128::from(ys);
    let r1 = num % u128::from(ys);
    let n2 = r1 << 64;
    let q2 = n2 / u128::from(ys);
    let r2 = n2 % u128::from(ys);
    // q1 has 64 or 65 bits; q1:q2 is the quotient scaled by 2^128, kept to 127 bits + sticky.
    let q = (q1 << 62) | (q2 >> 2) | u128::from(q2 & 3 != 0 || r2 != 0);
    let lz = q.leading_zeros();
    // q ≈ (xs/ys) * 2^126, so the leading bit's exponent is x.exp - y.exp + 1 - lz.
    with_flags(
        round_f80(env, sign, x.exp - y.exp + 1 - lz as i32, q << lz),
        de,
    )
}

/// The integer square root of `n` and the remainder `n - r^2`.
fn isqrt(n: u128) -> (u128, u128) {
    let mut rem = n;
    let mut root = 0u128;
    let mut bit = 1u128 << 126;
    while bit > n {
        bit >>= 2;
    }
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    (root, rem)
}

/// `sqrt(a)`.
pub fn sqrt(env: &Env, a: F80) -> Rounded<F80> {
    let de = match pre_checks(env, a, None) {
        Ok(d) => d,
        Err(r) => return r,
    };
    match a.class() {
        Class::Zero => return Rounded::exact(a, de),
        _ if a.sign() => return invalid(env, de),
        Class::Infinity => return Rounded::exact(a, de),
        _ => {}
    }
    let u = a.unpack();
    let m = u.sig >> 64;
    // value = m * 2^(exp - 63); choose s in {63, 64} with exp - 63 - s even.
    let s = if (u.exp - 63 - 63).rem_euclid(2) == 0 {
        63
    } else {
        64
    };
    let (r, rem) = isqrt(m << s);
    let frac = if rem > r {
        (1u128 << 63) | 1
    } else {
        u128::from(rem != 0)
    };
    let sig = (r << 64) | frac;
    let lz = sig.leading_zeros();
    let exp = 63 + (u.exp - 63 - s) / 2;
    with_flags(round_f80(env, false, exp - lz as i32, sig << lz), de)
}

/// The ordering of two values for FCOM/FUCOM/FCOMI (SDM Vol. 1 8.3.8): `None` = unordered.
/// `quiet` (FUCOM*) raises IE only for SNaNs; otherwise any NaN raises IE.
pub fn compare(env: &Env, a: F80, b: F80, quiet: bool) -> (Option<Ordering>, u8) {
    let (ca, cb) = (a.class(), b.class());
    let nan = |c: Class| matches!(c, Class::QNaN | Class::SNaN | Class::Unsupported);
    if nan(ca) || nan(cb) {
        let ie = !quiet
            || matches!(ca, Class::SNaN | Class::Unsupported)
            || matches!(cb, Class::SNaN | Class::Unsupported);
        return (None, if ie { exc::IE } else { 0 });
    }
    let _ = env;
    let de = denormal_flags(&[a, b]);
    (Some(total_cmp_ordered(a, b)), de)
}

/// Compare two non-NaN values (zeros of either sign are equal).
fn total_cmp_ordered(a: F80, b: F80) -> Ordering {
    if a.is_zero() && b.is_zero() {
        return Ordering::Equal;
    }
    let key = |v: F80| -> (bool, i128) {
        if v.is_zero() {
            return (false, 0);
        }
        let mag = if v.class() == Class::Infinity {
            i128::MAX
        } else {
            let u = v.unpack();
            (i128::from(u.exp + 20000) << 64) | ((u.sig >> 64) as i128)
        };
        (v.sign(), if v.sign() { -mag } else { mag })
    };
    key(a).1.cmp(&key(b).1)
}
