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

#[cfg(test)]
mod tests {
    use super::*;

    const FCW: u16 = 0x037f;

    fn f(se: u16, sig: u64) -> F80 {
        F80 { se, sig }
    }
    fn int(v: i64) -> F80 {
        from_int(v)
    }
    fn env_rc(rc: u16) -> Env {
        Env::from_fcw(FCW | rc << 10)
    }

    #[test]
    fn integers_convert_exactly() {
        assert_eq!(int(1), F80::ONE);
        assert_eq!(int(2), f(0x4000, 1 << 63));
        assert_eq!(int(-3), f(0xc000, 0xc000_0000_0000_0000));
        assert_eq!(int(i64::MIN), f(0xc03e, 1 << 63));
        assert_eq!(int(0), F80::ZERO);
    }

    #[test]
    fn add_sub_exact_and_signed_zero() {
        let e = Env::from_fcw(FCW);
        assert_eq!(add(&e, int(1), int(1), false).value, int(2));
        assert_eq!(add(&e, int(5), int(7), true).value, int(-2));
        let z = add(&e, int(3), int(3), true);
        assert_eq!(z.value, F80::ZERO);
        assert_eq!(z.flags, 0);
        // x - x is -0 when rounding down (SDM Vol. 1 4.8.3.4 / IEEE 754).
        assert_eq!(add(&env_rc(1), int(3), int(3), true).value, F80::zero(true));
        // 2^64 + 1 needs 65 bits: inexact, ties to even.
        let big = f(0x403f, 1 << 63);
        let r = add(&e, big, F80::ONE, false);
        assert_eq!(r.value, big);
        assert_eq!(r.flags, exc::PE);
        // 2^64 + 3: halfway between 2^64+2 and 2^64+4; even significand is 2^64+4.
        let r = add(&e, big, int(3), false);
        assert_eq!(r.value, f(0x403f, (1 << 63) + 2));
        assert!(r.rounded_up);
    }

    #[test]
    fn division_rounding_modes_and_precision() {
        let third = |rc| div(&env_rc(rc), F80::ONE, int(3));
        // 1/3 = 0.010101..b: significand AAAA...AAAA|AAAA..., exponent -2.
        assert_eq!(third(0).value, f(0x3ffd, 0xaaaa_aaaa_aaaa_aaab));
        assert!(third(0).rounded_up);
        assert_eq!(third(0).flags, exc::PE);
        assert_eq!(third(1).value, f(0x3ffd, 0xaaaa_aaaa_aaaa_aaaa));
        assert_eq!(third(2).value, f(0x3ffd, 0xaaaa_aaaa_aaaa_aaab));
        assert_eq!(third(3).value, f(0x3ffd, 0xaaaa_aaaa_aaaa_aaaa));
        // PC = 53 bits (FCW bits 8-9 = 10b): the double nearest 1/3, 0x3FD5555555555555.
        let d = div(&Env::from_fcw(0x027f), F80::ONE, int(3));
        assert_eq!(d.value, f(0x3ffd, 0xaaaa_aaaa_aaaa_a800));
        // PC = 24 bits: the float nearest 1/3, 0x3EAAAAAB.
        let s = div(&Env::from_fcw(0x007f), F80::ONE, int(3));
        assert_eq!(s.value, f(0x3ffd, 0xaaaa_ab00_0000_0000));
        // Exact: 10 / 4 = 2.5.
        let r = div(&Env::from_fcw(FCW), int(10), int(4));
        assert_eq!(r.value, f(0x4000, 0xa000_0000_0000_0000));
        assert_eq!(r.flags, 0);
    }

    #[test]
    fn zero_divide_and_invalid() {
        let e = Env::from_fcw(FCW);
        let r = div(&e, int(-1), F80::ZERO);
        assert_eq!(r.value, F80::infinity(true));
        assert_eq!(r.flags, exc::ZE);
        let r = div(&e, F80::ZERO, F80::ZERO);
        assert_eq!(r.value, F80::INDEFINITE);
        assert_eq!(r.flags, exc::IE);
        let r = add(&e, F80::infinity(false), F80::infinity(false), true);
        assert_eq!(r.value, F80::INDEFINITE);
        // Unmasked ZE (FCW bit 2 clear) suppresses the result.
        let u = Env::from_fcw(FCW & !exc::ZE as u16);
        assert!(div(&u, int(1), F80::ZERO).suppressed);
        // sqrt(-1) is invalid.
        assert_eq!(sqrt(&e, int(-1)).value, F80::INDEFINITE);
    }

    #[test]
    fn nan_propagation() {
        let e = Env::from_fcw(FCW);
        let snan = f(0x7fff, 0x8000_0000_0000_0001);
        let qnan = f(0x7fff, 0xc000_0000_0000_0002);
        let r = add(&e, snan, int(1), false);
        assert_eq!(r.value, f(0x7fff, 0xc000_0000_0000_0001));
        assert_eq!(r.flags, exc::IE);
        // SNaN and QNaN: the QNaN.
        assert_eq!(mul(&e, snan, qnan).value, qnan);
        // Two QNaNs: the larger significand.
        let q2 = f(0xffff, 0xc000_0000_0000_0001);
        assert_eq!(add(&e, q2, qnan, false).value, qnan);
        assert_eq!(add(&e, q2, qnan, false).flags, 0);
    }

    #[test]
    fn square_root() {
        let e = Env::from_fcw(FCW);
        // sqrt(2) = 1.6A09E667F3BCC908B2FB13...: significand B504F333F9DE6484|597D...
        let r = sqrt(&e, int(2));
        assert_eq!(r.value, f(0x3fff, 0xb504_f333_f9de_6484));
        assert_eq!(r.flags, exc::PE);
        assert_eq!(
            sqrt(&env_rc(2), int(2)).value,
            f(0x3fff, 0xb504_f333_f9de_6485)
        );
        let r = sqrt(&e, int(144));
        assert_eq!(r.value, int(12));
        assert_eq!(r.flags, 0);
        // sqrt(2^-16400) = 2^-8200, from a denormal operand.
        let den = f(0, 1 << (63 - 18)); // 2^(-16382 - 18) = 2^-16400
        let r = sqrt(&e, den);
        assert_eq!(r.value, f((BIAS - 8200) as u16, 1 << 63));
        assert_eq!(r.flags, exc::DE);
    }

    #[test]
    fn overflow_and_underflow() {
        let e = Env::from_fcw(FCW);
        let max = f(0x7ffe, u64::MAX);
        let r = mul(&e, max, int(2));
        assert_eq!(r.value, F80::infinity(false));
        assert_eq!(r.flags, exc::OE | exc::PE);
        // Toward zero: the largest finite value.
        assert_eq!(mul(&env_rc(3), max, int(2)).value, max);
        // Smallest normal / 2: an exact denormal, no flags.
        let min = f(1, 1 << 63);
        let half = div(&e, min, int(2));
        assert_eq!(half.value, f(0, 1 << 62));
        assert_eq!(half.flags, 0);
        // Smallest denormal / 2: a denormal operand (DE), tiny and inexact (UE, PE); the
        // halfway result rounds to even (0).
        let r = div(&e, f(0, 1), int(2));
        assert_eq!(r.value, F80::ZERO);
        assert_eq!(r.flags, exc::DE | exc::UE | exc::PE);
        // Unmasked OE on a register result: exponent scaled down by 24576.
        let u = Env::from_fcw(FCW & !(exc::OE as u16));
        let r = mul(&u, f(0x7ffe, 1 << 63), int(2));
        assert_eq!(r.value, f((0x7fff - BIAS_ADJUST) as u16, 1 << 63));
        assert_eq!(r.flags, exc::OE);
    }

    #[test]
    fn memory_formats() {
        assert_eq!(from_f32_bits(0x3f80_0000), (F80::ONE, 0));
        // The smallest single denormal, 2^-149.
        assert_eq!(from_f32_bits(1), (f((BIAS - 149) as u16, 1 << 63), exc::DE));
        assert_eq!(from_f64_bits(0xc000_0000_0000_0000).0, int(-2));
        let e = Env::single(FCW);
        let third = div(&Env::from_fcw(FCW), F80::ONE, int(3)).value;
        assert_eq!(to_f32_bits(&e, third).value, 0x3eaa_aaab);
        assert_eq!(
            to_f64_bits(&Env::double(FCW), third).value,
            0x3fd5_5555_5555_5555
        );
        // 1e39 overflows single precision.
        let r = to_f32_bits(&e, f(0x4080, 1 << 63)); // 2^129
        assert_eq!(r.value, 0x7f80_0000);
        assert_eq!(r.flags, exc::OE | exc::PE);
        // 2^-149 * 1.5 rounds to even: 2^-148 (single denormal 2).
        let r = to_f32_bits(&e, f((BIAS - 149) as u16, 0xc000_0000_0000_0000));
        assert_eq!(r.value, 2);
        assert_eq!(r.flags, exc::UE | exc::PE);
    }

    #[test]
    fn integer_conversion() {
        let e = Env::extended(FCW);
        let v = |x: F80, rc: u16| to_int(&Env::extended(FCW | rc << 10), x, 32).value;
        let two_half = f(0x4000, 0xa000_0000_0000_0000);
        assert_eq!(v(two_half, 0), 2);
        assert_eq!(v(two_half.negate(), 0), -2);
        assert_eq!(v(f(0x4000, 0xe000_0000_0000_0000), 0), 4); // 3.5
        assert_eq!(v(two_half, 1), 2);
        assert_eq!(v(two_half, 2), 3);
        assert_eq!(v(two_half.negate(), 1), -3);
        assert_eq!(v(two_half.negate(), 3), -2);
        let r = to_int(&e, int(40000), 16);
        assert_eq!((r.value as u64) & 0xffff, 0x8000);
        assert_eq!(r.flags, exc::IE);
        assert_eq!(to_int(&e, int(-32768), 16).flags, 0);
        // 0.5 rounds to 0, 0.75 to 1.
        assert_eq!(v(f(0x3ffe, 1 << 63), 0), 0);
        assert_eq!(v(f(0x3ffe, 0xc000_0000_0000_0000), 0), 1);
    }

    #[test]
    fn comparisons() {
        let e = Env::from_fcw(FCW);
        assert_eq!(
            compare(&e, F80::zero(true), F80::ZERO, false).0,
            Some(Ordering::Equal)
        );
        assert_eq!(compare(&e, int(-2), int(1), false).0, Some(Ordering::Less));
        assert_eq!(
            compare(&e, int(-2), int(-3), false).0,
            Some(Ordering::Greater)
        );
        let q = F80::INDEFINITE;
        assert_eq!(compare(&e, q, int(1), false), (None, exc::IE));
        assert_eq!(compare(&e, q, int(1), true), (None, 0));
        assert_eq!(
            compare(&e, F80::infinity(true), int(-5), false).0,
            Some(Ordering::Less)
        );
    }

    #[test]
    fn partial_remainders() {
        // 7 mod 3: quotient 2, remainder 1.
        assert_eq!(remainder_step(int(7), int(3), false), (int(1), 2, true));
        // IEEE remainder of 5 by 3: quotient 2, remainder -1.
        assert_eq!(remainder_step(int(5), int(3), true), (int(-1), 2, true));
        // -7 mod 2 = -1 (sign of the dividend).
        assert_eq!(remainder_step(int(-7), int(2), false), (int(-1), 3, true));
        // FPREM1 with |a| in (|b|/2, |b|): 3 rem1 4 = -1.
        assert_eq!(remainder_step(int(3), int(4), true), (int(-1), 1, true));
        // Exponent difference 100: partial.
        assert!(!remainder_step(f(0x3fff + 100, 1 << 63), int(3), false).2);
    }

    #[test]
    fn integral_rounding() {
        let r = round_to_integral(&Env::extended(FCW), f(0x4000, 0xa000_0000_0000_0000));
        assert_eq!(r.value, int(2));
        assert_eq!(r.flags, exc::PE);
        let r = round_to_integral(&Env::extended(FCW | 0x800), f(0x3ffd, 1 << 63));
        assert_eq!(r.value, int(1)); // 0.25 up -> 1
        assert_eq!(scale(&Env::from_fcw(FCW), int(3), 4).value, int(48));
        // Far out of range even for the bias-adjusted exponent (unmasked OE/UE).
        let u = Env::from_fcw(FCW & !((exc::OE | exc::UE) as u16));
        assert_eq!(scale(&u, int(3), 70000).value, F80::infinity(false));
        let r = scale(&u, int(-3), -70000);
        assert_eq!(r.value, F80::zero(true));
        assert_eq!(r.flags, exc::UE | exc::PE);
        assert_eq!(extract(int(48)), (int(5), f(0x3fff, 0xc000_0000_0000_0000)));
    }
}
