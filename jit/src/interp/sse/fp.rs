//! SSE/SSE2 floating-point arithmetic (SDM Vol. 1 10.4.2, 11.4.1, 11.5; Vol. 2 per
//! instruction): add, subtract, multiply, divide, square root, min/max, compares and the
//! flag-setting COMISS/UCOMISS family, on single and double precision, packed and scalar.
//!
//! Results are IEEE 754 results rounded as MXCSR.RC says. The host computes the
//! round-to-nearest result; the sign of the exact error (exact value minus that result) comes
//! from an error-free transformation (TwoSum for add/subtract, a fused multiply-add residual for
//! multiply, divide and square root, computed exactly in double precision for single-precision
//! operands), and the directed modes step the result by one unit in the last place when needed.
//! The double-precision residuals are computed on operands scaled to exponent 0, so that they
//! stay exact for tiny operands and results.
//!
//! The MXCSR exception flags are set as the SDM's precedence says (SNaN invalid, QNaN
//! operand, other invalid or divide-by-zero, denormal operand, overflow/underflow, inexact);
//! DAZ and FTZ are honoured. An unmasked exception leaves the destination unchanged, records
//! the flags and raises #XM, or #UD when CR4.OSXMMEXCPT is clear (SDM Vol. 3A 6.15,
//! Interrupt 19).

use std::cmp::Ordering;

use iced_x86::{Instruction, Mnemonic as M};
use vcpu::state::rflags;

use super::{imm8, mxcsr, read, set_mxcsr, xmm, xmm_of, CR4_OSXMMEXCPT, XM_VECTOR};
use crate::context::JitContext;
use crate::exception::Fault;
use crate::interp::{Exec, Flow};
use crate::runtime::Runtime;

/// MXCSR fields (SDM Vol. 1 10.2.3, Figure 10-3).
pub mod mx {
    pub const IE: u32 = 1 << 0;
    pub const DE: u32 = 1 << 1;
    pub const ZE: u32 = 1 << 2;
    pub const OE: u32 = 1 << 3;
    pub const UE: u32 = 1 << 4;
    pub const PE: u32 = 1 << 5;
    pub const FLAGS: u32 = 0x3f;
    pub const DAZ: u32 = 1 << 6;
    /// The exception masks IM..PM are the flags shifted left by this.
    pub const MASK_SHIFT: u32 = 7;
    pub const UM: u32 = 1 << 11;
    pub const RC_SHIFT: u32 = 13;
    pub const FTZ: u32 = 1 << 15;
    /// Bits that may be set (MXCSR_MASK with DAZ, SDM Vol. 1 11.6.6).
    pub const WRITABLE: u32 = 0xffff;
}

/// Rounding control (SDM Vol. 1 4.8.4, Table 4-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    Nearest,
    Down,
    Up,
    TowardZero,
}

impl Rounding {
    pub fn from_rc(rc: u32) -> Self {
        match rc & 3 {
            0 => Rounding::Nearest,
            1 => Rounding::Down,
            2 => Rounding::Up,
            _ => Rounding::TowardZero,
        }
    }
}

/// The MXCSR control bits an operation runs under and the flags it raised.
#[derive(Debug, Clone, Copy)]
pub struct Env {
    pub mxcsr: u32,
    pub flags: u32,
}

impl Env {
    pub fn new(mxcsr: u32) -> Self {
        Self { mxcsr, flags: 0 }
    }
    pub fn rounding(&self) -> Rounding {
        Rounding::from_rc(self.mxcsr >> mx::RC_SHIFT)
    }
    fn daz(&self) -> bool {
        self.mxcsr & mx::DAZ != 0
    }
    fn ftz(&self) -> bool {
        self.mxcsr & mx::FTZ != 0 && self.mxcsr & mx::UM != 0
    }
    /// Flags raised whose exceptions are unmasked.
    pub fn unmasked(&self) -> u32 {
        self.flags & !(self.mxcsr >> mx::MASK_SHIFT) & mx::FLAGS
    }
}

/// Commit the flags of `env` to MXCSR; with an unmasked exception, fault (#XM, or #UD when
/// CR4.OSXMMEXCPT is clear) so that the caller leaves the destination alone.
pub fn commit(ctx: &mut JitContext, env: &Env) -> Result<(), Fault> {
    let m = mxcsr(ctx);
    set_mxcsr(ctx, m | env.flags);
    if env.unmasked() != 0 {
        if ctx.cpu.cr4 & CR4_OSXMMEXCPT != 0 {
            return Err(Fault::new(XM_VECTOR));
        }
        return Err(Fault::ud());
    }
    Ok(())
}

/// A binary IEEE format, single or double, seen through its bit pattern.
pub trait Fp: Copy + PartialEq + PartialOrd + std::fmt::Debug {
    const BITS: u32;
    const FRAC_BITS: u32;
    fn to_u64(self) -> u64;
    fn from_u64(b: u64) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    fn sqrt(self) -> Self;
    fn next_up(self) -> Self;
    fn next_down(self) -> Self;
    /// Sign of (exact a*b - r), of (exact a/b - r) and of (exact sqrt(a) - r).
    fn mul_err(a: Self, b: Self, r: Self) -> Ordering;
    fn div_err(a: Self, b: Self, r: Self) -> Ordering;
    fn sqrt_err(a: Self, r: Self) -> Ordering;
    fn to_f64(self) -> f64;

    fn sign_bit() -> u64 {
        1 << (Self::BITS - 1)
    }
    fn exp_mask() -> u64 {
        ((1u64 << (Self::BITS - 1)) - 1) & !Self::frac_mask()
    }
    fn frac_mask() -> u64 {
        (1u64 << Self::FRAC_BITS) - 1
    }
    fn quiet_bit() -> u64 {
        1 << (Self::FRAC_BITS - 1)
    }
    /// The QNaN floating-point indefinite (SDM Vol. 1 4.8.3.7).
    fn indefinite() -> u64 {
        Self::sign_bit() | Self::exp_mask() | Self::quiet_bit()
    }
    fn max_finite() -> u64 {
        Self::exp_mask() - (1 << Self::FRAC_BITS) + Self::frac_mask()
    }
    fn min_normal() -> u64 {
        1 << Self::FRAC_BITS
    }
}

/// Class predicates on raw bit patterns of format `F`.
pub fn is_nan<F: Fp>(b: u64) -> bool {
    b & F::exp_mask() == F::exp_mask() && b & F::frac_mask() != 0
}
pub fn is_snan<F: Fp>(b: u64) -> bool {
    is_nan::<F>(b) && b & F::quiet_bit() == 0
}
pub fn is_inf<F: Fp>(b: u64) -> bool {
    b & !F::sign_bit() == F::exp_mask()
}
pub fn is_denormal<F: Fp>(b: u64) -> bool {
    b & F::exp_mask() == 0 && b & F::frac_mask() != 0
}
pub fn is_zero<F: Fp>(b: u64) -> bool {
    b & !F::sign_bit() == 0
}

fn err_of(e: f64) -> Ordering {
    e.partial_cmp(&0.0).unwrap_or(Ordering::Equal)
}

impl Fp for f32 {
    const BITS: u32 = 32;
    const FRAC_BITS: u32 = 23;
    fn to_u64(self) -> u64 {
        u64::from(self.to_bits())
    }
    fn from_u64(b: u64) -> Self {
        f32::from_bits(b as u32)
    }
    fn add(self, o: Self) -> Self {
        self + o
    }
    fn sub(self, o: Self) -> Self {
        self - o
    }
    fn mul(self, o: Self) -> Self {
        self * o
    }
    fn div(self, o: Self) -> Self {
        self / o
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn next_up(self) -> Self {
        f32::next_up(self)
    }
    fn next_down(self) -> Self {
        f32::next_down(self)
    }
    // Products of two singles are exact in double precision; the difference of two doubles
    // has the sign of the exact difference.
    fn mul_err(a: Self, b: Self, r: Self) -> Ordering {
        err_of(f64::from(a) * f64::from(b) - f64::from(r))
    }
    fn div_err(a: Self, b: Self, r: Self) -> Ordering {
        let residual = err_of(f64::from(a) - f64::from(r) * f64::from(b));
        if b.is_sign_negative() {
            residual.reverse()
        } else {
            residual
        }
    }
    fn sqrt_err(a: Self, r: Self) -> Ordering {
        err_of(f64::from(a) - f64::from(r) * f64::from(r))
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Fp for f64 {
    const BITS: u32 = 64;
    const FRAC_BITS: u32 = 52;
    fn to_u64(self) -> u64 {
        self.to_bits()
    }
    fn from_u64(b: u64) -> Self {
        f64::from_bits(b)
    }
    fn add(self, o: Self) -> Self {
        self + o
    }
    fn sub(self, o: Self) -> Self {
        self - o
    }
    fn mul(self, o: Self) -> Self {
        self * o
    }
    fn div(self, o: Self) -> Self {
        self / o
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn next_up(self) -> Self {
        f64::next_up(self)
    }
    fn next_down(self) -> Self {
        f64::next_down(self)
    }
    // The residuals are taken on operands scaled to exponent 0, so that they cannot underflow
    // when the operands or the result are tiny (the scalings are exact powers of two).
    fn mul_err(a: Self, b: Self, r: Self) -> Ordering {
        if a == 0.0 || b == 0.0 {
            return Ordering::Equal;
        }
        let ((ma, ea), (mb, eb)) = (split(a), split(b));
        err_of(ma.mul_add(mb, -ldexp(r, -(ea + eb))))
    }
    fn div_err(a: Self, b: Self, r: Self) -> Ordering {
        if a == 0.0 {
            return Ordering::Equal;
        }
        let ((ma, ea), (mb, eb)) = (split(a), split(b));
        let rs = ldexp(r, eb - ea);
        let residual = err_of((-rs).mul_add(mb, ma));
        if b.is_sign_negative() {
            residual.reverse()
        } else {
            residual
        }
    }
    fn sqrt_err(a: Self, r: Self) -> Ordering {
        let (mut ma, mut ea) = split(a);
        if ea % 2 != 0 {
            ma *= 2.0;
            ea -= 1;
        }
        let rs = ldexp(r, -ea / 2);
        err_of((-rs).mul_add(rs, ma))
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// `x` = m * 2^e with 1 <= |m| < 2 (x finite and non-zero).
fn split(x: f64) -> (f64, i32) {
    let (x, bias) = if x.abs() < f64::MIN_POSITIVE {
        (x * 2f64.powi(64), 64)
    } else {
        (x, 0)
    };
    let e = ((x.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    (ldexp(x, -e), e - bias)
}

/// x * 2^n in steps that stay exact while the intermediate values are normal or zero.
fn ldexp(mut x: f64, mut n: i32) -> f64 {
    while n > 512 {
        x *= 2f64.powi(512);
        n -= 512;
    }
    while n < -512 {
        x *= 2f64.powi(-512);
        n += 512;
    }
    x * 2f64.powi(n)
}

/// Treat a denormal input as zero under DAZ, or flag DE for it.
fn input<F: Fp>(env: &mut Env, b: u64, flag: &mut bool) -> u64 {
    if is_denormal::<F>(b) {
        if env.daz() {
            return b & F::sign_bit();
        }
        *flag = true;
    }
    b
}

/// The NaN result of a two-operand operation with a NaN input (SDM Vol. 1 4.8.3.5, Table 4-7:
/// the first NaN source, quieted); IE for an SNaN.
fn nan_result<F: Fp>(env: &mut Env, a: u64, b: u64) -> Option<u64> {
    if !is_nan::<F>(a) && !is_nan::<F>(b) {
        return None;
    }
    if is_snan::<F>(a) || is_snan::<F>(b) {
        env.flags |= mx::IE;
    }
    let n = if is_nan::<F>(a) { a } else { b };
    Some(n | F::quiet_bit())
}

/// Round a result the host computed to nearest (`r`, with `err` the sign of exact - r) as the
/// rounding mode says, and raise OE/UE/PE; `exact_inf` says an infinite `r` is exact.
pub fn finish<F: Fp>(env: &mut Env, r: F, err: Ordering, exact_inf: bool) -> u64 {
    let rb = r.to_u64();
    let neg = rb & F::sign_bit() != 0;
    let mode = env.rounding();
    if is_inf::<F>(rb) && !exact_inf {
        env.flags |= mx::OE | mx::PE;
        let to_max = match mode {
            Rounding::Nearest => false,
            Rounding::TowardZero => true,
            Rounding::Down => !neg,
            Rounding::Up => neg,
        };
        return if to_max {
            (rb & F::sign_bit()) | F::max_finite()
        } else {
            rb
        };
    }
    if err == Ordering::Equal {
        // FTZ flushes exact denormal results too (SDM Vol. 1 10.2.3.3).
        if env.ftz() && is_denormal::<F>(rb) {
            env.flags |= mx::UE | mx::PE;
            return rb & F::sign_bit();
        }
        // With UM clear, a tiny result signals underflow even when exact (SDM Vol. 1
        // 4.9.1.5); masked, only an inexact one does.
        if is_denormal::<F>(rb) && env.mxcsr & mx::UM == 0 {
            env.flags |= mx::UE;
        }
        return rb;
    }
    let rounded = match mode {
        Rounding::Nearest => r,
        Rounding::Down if err == Ordering::Less => r.next_down(),
        Rounding::Up if err == Ordering::Greater => r.next_up(),
        Rounding::TowardZero if (err == Ordering::Less) != neg => {
            if neg {
                r.next_up()
            } else {
                r.next_down()
            }
        }
        _ => r,
    };
    // next_up/next_down of a zero result give the smallest denormal with the right sign, but
    // a zero stepped toward zero must keep the sign of the exact result.
    let mut out = rounded.to_u64();
    if is_zero::<F>(out) {
        out = (out & !F::sign_bit()) | (rb & F::sign_bit());
    }
    env.flags |= mx::PE;
    if is_inf::<F>(out) {
        env.flags |= mx::OE;
        return out;
    }
    // Tininess before rounding: the exact value is below the smallest normal in magnitude.
    let mag = rb & !F::sign_bit();
    let toward_zero = (err == Ordering::Less) != neg;
    let tiny = mag < F::min_normal() || (mag == F::min_normal() && toward_zero);
    if tiny {
        env.flags |= mx::UE;
        if env.ftz() {
            return rb & F::sign_bit();
        }
    }
    out
}

/// Binary arithmetic operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

/// One element of ADD/SUB/MUL/DIV.
pub fn arith<F: Fp>(env: &mut Env, op: Arith, a: u64, b: u64) -> u64 {
    if let Some(n) = nan_result::<F>(env, a, b) {
        return n;
    }
    let mut denormal = false;
    let a = input::<F>(env, a, &mut denormal);
    let b = input::<F>(env, b, &mut denormal);
    let (x, y) = (F::from_u64(a), F::from_u64(b));
    let (ainf, binf, azero, bzero) = (
        is_inf::<F>(a),
        is_inf::<F>(b),
        is_zero::<F>(a),
        is_zero::<F>(b),
    );
    let opposite = (a ^ b) & F::sign_bit() != 0;
    let invalid = match op {
        Arith::Add => ainf && binf && opposite,
        Arith::Sub => ainf && binf && !opposite,
        Arith::Mul => (ainf && bzero) || (azero && binf),
        Arith::Div => (ainf && binf) || (azero && bzero),
    };
    if invalid {
        env.flags |= mx::IE;
        return F::indefinite();
    }
    if op == Arith::Div && bzero && !ainf {
        env.flags |= mx::ZE;
        return ((a ^ b) & F::sign_bit()) | F::exp_mask();
    }
    if denormal {
        env.flags |= mx::DE;
    }
    let exact_inf = ainf || binf;
    let mode_down = env.rounding() == Rounding::Down;
    let (r, err) = match op {
        Arith::Add | Arith::Sub => {
            let y = if op == Arith::Sub {
                F::from_u64(b ^ F::sign_bit())
            } else {
                y
            };
            let s = x.add(y);
            // TwoSum (Knuth): the rounding error of x + y, exactly.
            let bb = s.sub(x);
            let e = x.sub(s.sub(bb)).add(y.sub(bb));
            let mut s_bits = s.to_u64();
            // An exact zero sum of operands of opposite signs is -0 when rounding down
            // (IEEE 754 6.3).
            if is_zero::<F>(s_bits) && !(is_zero::<F>(x.to_u64()) && is_zero::<F>(y.to_u64())) {
                s_bits = if mode_down { F::sign_bit() } else { 0 };
            } else if is_zero::<F>(s_bits) && mode_down {
                // -0 + +0 is -0 when rounding down.
                s_bits = (x.to_u64() | y.to_u64()) & F::sign_bit();
            }
            let err = if is_inf::<F>(s_bits) {
                Ordering::Equal
            } else {
                e.partial_cmp(&F::from_u64(0)).unwrap_or(Ordering::Equal)
            };
            (F::from_u64(s_bits), err)
        }
        Arith::Mul => {
            let r = x.mul(y);
            let err = if is_inf::<F>(r.to_u64()) || exact_inf {
                Ordering::Equal
            } else {
                F::mul_err(x, y, r)
            };
            (r, err)
        }
        Arith::Div => {
            let r = x.div(y);
            let err = if is_inf::<F>(r.to_u64()) || exact_inf || is_zero::<F>(a) {
                Ordering::Equal
            } else {
                F::div_err(x, y, r)
            };
            (r, err)
        }
    };
    finish(env, r, err, exact_inf)
}

/// One element of SQRT.
pub fn sqrt<F: Fp>(env: &mut Env, a: u64) -> u64 {
    if let Some(n) = nan_result::<F>(env, a, a) {
        return n;
    }
    let mut denormal = false;
    let a = input::<F>(env, a, &mut denormal);
    if a & F::sign_bit() != 0 && !is_zero::<F>(a) {
        env.flags |= mx::IE;
        return F::indefinite();
    }
    if denormal {
        env.flags |= mx::DE;
    }
    let x = F::from_u64(a);
    let r = x.sqrt();
    let err = if is_inf::<F>(a) || is_zero::<F>(a) {
        Ordering::Equal
    } else {
        F::sqrt_err(x, r)
    };
    finish(env, r, err, true)
}

/// RCPPS/RSQRTPS element: the SDM only bounds the relative error (|e| <= 1.5 * 2^-12) and
/// processors differ; emu returns 1/x and 1/sqrt(x) rounded to nearest, which is within the
/// bound. The special cases are those of SDM Vol. 2B RCPPS/RSQRTPS: a zero or denormal source
/// gives an infinity of its sign, an infinity zero, a tiny reciprocal (|x| >= 2^126 with a
/// denormal result) zero; RSQRT of a negative non-zero value is the QNaN indefinite; a NaN is
/// quieted. No MXCSR flags are raised.
pub fn approx(b: u32, rsqrt: bool) -> u32 {
    let bb = u64::from(b);
    let sign = b & 0x8000_0000;
    if is_nan::<f32>(bb) {
        return b | 0x40_0000;
    }
    if is_zero::<f32>(bb) || is_denormal::<f32>(bb) {
        return sign | 0x7f80_0000;
    }
    if is_inf::<f32>(bb) {
        return if rsqrt && sign != 0 {
            0xffc0_0000
        } else {
            sign
        };
    }
    let x = f64::from(f32::from_bits(b));
    let r = if rsqrt {
        if sign != 0 {
            return 0xffc0_0000;
        }
        1.0 / x.sqrt()
    } else {
        1.0 / x
    };
    let r = r as f32;
    if r.is_subnormal() {
        return sign;
    }
    r.to_bits()
}

/// One element of MIN/MAX: the second operand when either is a NaN or both are zeros (SDM Vol.
/// 2B MINPS); IE for any NaN, DE for denormals.
pub fn min_max<F: Fp>(env: &mut Env, max: bool, a: u64, b: u64) -> u64 {
    if is_nan::<F>(a) || is_nan::<F>(b) {
        env.flags |= mx::IE;
        return b;
    }
    let mut denormal = false;
    let x = input::<F>(env, a, &mut denormal);
    let y = input::<F>(env, b, &mut denormal);
    if denormal {
        env.flags |= mx::DE;
    }
    let (fx, fy) = (F::from_u64(x), F::from_u64(y));
    let take_a = if max { fx > fy } else { fx < fy };
    if take_a {
        x
    } else {
        y
    }
}

/// Compare two elements: `None` when unordered. IE for an SNaN, or for a QNaN when
/// `signaling`; DE for denormals.
pub fn compare<F: Fp>(env: &mut Env, a: u64, b: u64, signaling: bool) -> Option<Ordering> {
    if is_nan::<F>(a) || is_nan::<F>(b) {
        if signaling || is_snan::<F>(a) || is_snan::<F>(b) {
            env.flags |= mx::IE;
        }
        return None;
    }
    let mut denormal = false;
    let x = input::<F>(env, a, &mut denormal);
    let y = input::<F>(env, b, &mut denormal);
    if denormal {
        env.flags |= mx::DE;
    }
    F::from_u64(x).partial_cmp(&F::from_u64(y))
}

/// CMPPS/CMPSS predicate `p` (0..7: EQ, LT, LE, UNORD, NEQ, NLT, NLE, ORD; SDM Vol. 2A CMPPS,
/// Table 3-1) as an all-ones/all-zeros element.
pub fn cmp_predicate<F: Fp>(env: &mut Env, p: u8, a: u64, b: u64) -> u64 {
    let signaling = matches!(p & 7, 1 | 2 | 5 | 6);
    let o = compare::<F>(env, a, b, signaling);
    let t = matches!(
        (p & 7, o),
        (0, Some(Ordering::Equal))
            | (1, Some(Ordering::Less))
            | (2, Some(Ordering::Less | Ordering::Equal))
            | (3, None)
            | (4, Some(Ordering::Less | Ordering::Greater) | None)
            | (5, Some(Ordering::Equal | Ordering::Greater) | None)
            | (6, Some(Ordering::Greater) | None)
            | (7, Some(_))
    );
    if t {
        u64::MAX >> (64 - F::BITS)
    } else {
        0
    }
}

pub(super) fn handles(m: M) -> bool {
    kind(m).is_some()
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Arith(Arith),
    Sqrt,
    /// RCPPS/RCPSS and RSQRTPS/RSQRTSS (single precision only).
    Approx {
        rsqrt: bool,
    },
    Min,
    Max,
    Cmp,
    Comi {
        signaling: bool,
    },
}

/// (operation, element bits, scalar?)
fn kind(m: M) -> Option<(Op, u32, bool)> {
    use Arith::*;
    Some(match m {
        M::Addps => (Op::Arith(Add), 32, false),
        M::Addss => (Op::Arith(Add), 32, true),
        M::Addpd => (Op::Arith(Add), 64, false),
        M::Addsd => (Op::Arith(Add), 64, true),
        M::Subps => (Op::Arith(Sub), 32, false),
        M::Subss => (Op::Arith(Sub), 32, true),
        M::Subpd => (Op::Arith(Sub), 64, false),
        M::Subsd => (Op::Arith(Sub), 64, true),
        M::Mulps => (Op::Arith(Mul), 32, false),
        M::Mulss => (Op::Arith(Mul), 32, true),
        M::Mulpd => (Op::Arith(Mul), 64, false),
        M::Mulsd => (Op::Arith(Mul), 64, true),
        M::Divps => (Op::Arith(Div), 32, false),
        M::Divss => (Op::Arith(Div), 32, true),
        M::Divpd => (Op::Arith(Div), 64, false),
        M::Divsd => (Op::Arith(Div), 64, true),
        M::Sqrtps => (Op::Sqrt, 32, false),
        M::Sqrtss => (Op::Sqrt, 32, true),
        M::Sqrtpd => (Op::Sqrt, 64, false),
        M::Sqrtsd => (Op::Sqrt, 64, true),
        M::Rcpps => (Op::Approx { rsqrt: false }, 32, false),
        M::Rcpss => (Op::Approx { rsqrt: false }, 32, true),
        M::Rsqrtps => (Op::Approx { rsqrt: true }, 32, false),
        M::Rsqrtss => (Op::Approx { rsqrt: true }, 32, true),
        M::Minps => (Op::Min, 32, false),
        M::Minss => (Op::Min, 32, true),
        M::Minpd => (Op::Min, 64, false),
        M::Minsd => (Op::Min, 64, true),
        M::Maxps => (Op::Max, 32, false),
        M::Maxss => (Op::Max, 32, true),
        M::Maxpd => (Op::Max, 64, false),
        M::Maxsd => (Op::Max, 64, true),
        M::Cmpps => (Op::Cmp, 32, false),
        M::Cmpss => (Op::Cmp, 32, true),
        M::Cmppd => (Op::Cmp, 64, false),
        M::Cmpsd => (Op::Cmp, 64, true),
        M::Comiss => (Op::Comi { signaling: true }, 32, true),
        M::Ucomiss => (Op::Comi { signaling: false }, 32, true),
        M::Comisd => (Op::Comi { signaling: true }, 64, true),
        M::Ucomisd => (Op::Comi { signaling: false }, 64, true),
        _ => return None,
    })
}

/// Apply `f` to each element (`bits` wide) of `a` and `b`; scalar forms keep `a`'s upper
/// elements.
pub fn lanes(
    a: u128,
    b: u128,
    bits: u32,
    scalar: bool,
    mut f: impl FnMut(u64, u64) -> u64,
) -> u128 {
    let n = if scalar { 1 } else { 128 / bits };
    let m = u128::from(u64::MAX >> (64 - bits));
    let mut r = a;
    for i in 0..n {
        let sh = bits * i;
        let x = ((a >> sh) & m) as u64;
        let y = ((b >> sh) & m) as u64;
        r = (r & !(m << sh)) | ((u128::from(f(x, y)) & m) << sh);
    }
    r
}

pub(super) fn execute(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    m: M,
) -> Option<Exec> {
    let (op, bits, scalar) = kind(m)?;
    Some(run(ctx, rt, insn, op, bits, scalar))
}

fn run(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    op: Op,
    bits: u32,
    scalar: bool,
) -> Exec {
    let b = read(ctx, rt, insn, 1)?;
    let d = xmm_of(insn, 0);
    let a = xmm(ctx, d);
    let mut env = Env::new(mxcsr(ctx));
    let single = bits == 32;
    if let Op::Comi { signaling } = op {
        let o = if single {
            compare::<f32>(
                &mut env,
                a as u64 & 0xffff_ffff,
                b as u64 & 0xffff_ffff,
                signaling,
            )
        } else {
            compare::<f64>(&mut env, a as u64, b as u64, signaling)
        };
        commit(ctx, &env)?;
        // Unordered ZF,PF,CF = 111; greater 000; less 001; equal 100; OF, SF, AF cleared.
        let f = match o {
            None => rflags::ZF | rflags::PF | rflags::CF,
            Some(Ordering::Greater) => 0,
            Some(Ordering::Less) => rflags::CF,
            Some(Ordering::Equal) => rflags::ZF,
        };
        ctx.flags.materialize(&mut ctx.cpu.rflags);
        ctx.cpu.rflags = (ctx.cpu.rflags & !rflags::STATUS) | f;
        return Ok(Flow::Next);
    }
    let p = imm8(insn);
    let r = if single {
        lanes(a, b, 32, scalar, |x, y| {
            element::<f32>(&mut env, op, p, x, y)
        })
    } else {
        lanes(a, b, 64, scalar, |x, y| {
            element::<f64>(&mut env, op, p, x, y)
        })
    };
    commit(ctx, &env)?;
    super::set_xmm(ctx, d, r);
    Ok(Flow::Next)
}

fn element<F: Fp>(env: &mut Env, op: Op, p: u8, x: u64, y: u64) -> u64 {
    match op {
        Op::Arith(a) => arith::<F>(env, a, x, y),
        Op::Sqrt => sqrt::<F>(env, y),
        Op::Approx { rsqrt } => approx(y as u32, rsqrt).into(),
        Op::Min => min_max::<F>(env, false, x, y),
        Op::Max => min_max::<F>(env, true, x, y),
        Op::Cmp => cmp_predicate::<F>(env, p, x, y),
        Op::Comi { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(rc: u32) -> Env {
        // All exceptions masked (0x1f80) with the given rounding control.
        Env::new(0x1f80 | (rc << mx::RC_SHIFT))
    }

    fn add32(rc: u32, a: f32, b: f32) -> (u32, u32) {
        let mut e = env(rc);
        let r = arith::<f32>(&mut e, Arith::Add, a.to_u64(), b.to_u64());
        (r as u32, e.flags)
    }

    #[test]
    fn one_plus_tiny_rounds_per_mode() {
        // 1 + 2^-30: nearest and down and toward zero give 1.0 (0x3f800000), up gives the next
        // single 0x3f800001; all are inexact.
        let tiny = 2f32.powi(-30);
        assert_eq!(add32(0, 1.0, tiny), (0x3f80_0000, mx::PE));
        assert_eq!(add32(1, 1.0, tiny), (0x3f80_0000, mx::PE));
        assert_eq!(add32(2, 1.0, tiny), (0x3f80_0001, mx::PE));
        assert_eq!(add32(3, 1.0, tiny), (0x3f80_0000, mx::PE));
        // -1 - tiny: down gives -(1 + ulp), toward zero -1.
        assert_eq!(add32(1, -1.0, -tiny), (0xbf80_0001, mx::PE));
        assert_eq!(add32(3, -1.0, -tiny), (0xbf80_0000, mx::PE));
        assert_eq!(add32(0, 1.5, 2.25), (3.75f32.to_bits(), 0));
    }

    #[test]
    fn exact_zero_sum_sign_depends_on_rounding() {
        assert_eq!(add32(0, 1.0, -1.0).0, 0);
        assert_eq!(add32(1, 1.0, -1.0).0, 0x8000_0000);
    }

    #[test]
    fn invalid_and_divide_by_zero() {
        let mut e = env(0);
        let inf = f64::INFINITY.to_u64();
        assert_eq!(
            arith::<f64>(&mut e, Arith::Sub, inf, inf),
            0xfff8_0000_0000_0000
        );
        assert_eq!(e.flags, mx::IE);
        let mut e = env(0);
        assert_eq!(
            arith::<f32>(&mut e, Arith::Div, 1f32.to_u64(), 0),
            0x7f80_0000
        );
        assert_eq!(e.flags, mx::ZE);
        // SNaN in the second operand: quieted, IE.
        let mut e = env(0);
        assert_eq!(
            arith::<f32>(&mut e, Arith::Mul, 1f32.to_u64(), 0x7f80_0001),
            0x7fc0_0001
        );
        assert_eq!(e.flags, mx::IE);
        // QNaN in the first operand wins over an SNaN in the second.
        let mut e = env(0);
        assert_eq!(
            arith::<f32>(&mut e, Arith::Add, 0xffc0_0005, 0x7f80_0001),
            0xffc0_0005
        );
        let mut e = env(0);
        assert_eq!(
            sqrt::<f64>(&mut e, (-4.0f64).to_u64()),
            0xfff8_0000_0000_0000
        );
        assert_eq!(e.flags, mx::IE);
    }

    #[test]
    fn overflow_goes_to_infinity_or_max_by_mode() {
        let big = f32::MAX.to_u64();
        let mut e = env(0);
        assert_eq!(
            arith::<f32>(&mut e, Arith::Mul, big, 2f32.to_u64()),
            0x7f80_0000
        );
        assert_eq!(e.flags, mx::OE | mx::PE);
        let mut e = env(3);
        assert_eq!(
            arith::<f32>(&mut e, Arith::Mul, big, 2f32.to_u64()),
            0x7f7f_ffff
        );
        let mut e = env(2);
        assert_eq!(
            arith::<f32>(&mut e, Arith::Mul, big, (-2f32).to_u64()),
            0xff7f_ffff
        );
    }

    #[test]
    fn division_and_sqrt_round_by_mode() {
        // 1/3 in double: nearest rounds down (0x3fd5555555555555); up gives ...556.
        let (one, three) = (1f64.to_u64(), 3f64.to_u64());
        let mut e = env(0);
        assert_eq!(
            arith::<f64>(&mut e, Arith::Div, one, three),
            0x3fd5_5555_5555_5555
        );
        assert_eq!(e.flags, mx::PE);
        let mut e = env(2);
        assert_eq!(
            arith::<f64>(&mut e, Arith::Div, one, three),
            0x3fd5_5555_5555_5556
        );
        // sqrt(2) = 1.41421356237...; the single 0x3fb504f3 = 1.41421353816986083984375 is
        // the nearest and lies below it, so toward zero keeps it and up gives the next one.
        let mut e = env(0);
        assert_eq!(sqrt::<f32>(&mut e, 2f32.to_u64()), 0x3fb5_04f3);
        let mut e = env(3);
        assert_eq!(sqrt::<f32>(&mut e, 2f32.to_u64()), 0x3fb5_04f3);
        let mut e = env(2);
        assert_eq!(sqrt::<f32>(&mut e, 2f32.to_u64()), 0x3fb5_04f4);
        let mut e = env(0);
        assert_eq!(sqrt::<f32>(&mut e, 4f32.to_u64()), 2f32.to_bits() as u64);
        assert_eq!(e.flags, 0);
    }

    #[test]
    fn underflow_flush_and_denormals() {
        // 2^-126 * 2^-10 = 2^-136 is exactly representable as a denormal: tiny but exact, so no
        // UE when masked.
        let mut e = env(0);
        let r = arith::<f32>(
            &mut e,
            Arith::Mul,
            2f32.powi(-126).to_u64(),
            2f32.powi(-10).to_u64(),
        );
        assert_eq!(r, 1 << 13);
        assert_eq!(e.flags, 0);
        // 2^-149 / 3 rounds to zero: tiny and inexact.
        let mut e = env(0);
        let r = arith::<f32>(&mut e, Arith::Div, 1, 3f32.to_u64());
        assert_eq!(r, 0);
        assert_eq!(e.flags, mx::UE | mx::PE | mx::DE);
        // Double precision: 2^-1000 * 2^-70 * 1.5 = 1.5 * 2^-1070 is exact (a denormal with
        // two significant bits), 2^-1074 * 0.75 rounds to nearest (2^-1074) and is inexact.
        let mut e = env(0);
        let r = arith::<f64>(
            &mut e,
            Arith::Mul,
            2f64.powi(-1000).to_u64(),
            (1.5 * 2f64.powi(-70)).to_u64(),
        );
        assert_eq!(r, 3 << 3);
        assert_eq!(e.flags, 0);
        let mut e = env(0);
        assert_eq!(arith::<f64>(&mut e, Arith::Mul, 1, 0.75f64.to_u64()), 1);
        assert_eq!(e.flags, mx::UE | mx::PE | mx::DE);
        let mut e = env(1);
        assert_eq!(arith::<f64>(&mut e, Arith::Mul, 1, 0.75f64.to_u64()), 0);
        // 1e-300 * 1e-300 underflows to zero in round-to-nearest, inexact.
        let mut e = env(0);
        assert_eq!(
            arith::<f64>(&mut e, Arith::Mul, 1e-300f64.to_u64(), 1e-300f64.to_u64()),
            0
        );
        assert_eq!(e.flags, mx::UE | mx::PE);
        let mut e = env(2);
        assert_eq!(
            arith::<f64>(&mut e, Arith::Mul, 1e-300f64.to_u64(), 1e-300f64.to_u64()),
            1
        );
        // Unmasked UM: the exact denormal result signals UE.
        let mut e = Env::new(0x1f80 & !mx::UM);
        let r = arith::<f32>(
            &mut e,
            Arith::Mul,
            2f32.powi(-126).to_u64(),
            2f32.powi(-10).to_u64(),
        );
        assert_eq!(r, 1 << 13);
        assert_eq!(e.flags, mx::UE);
        assert_eq!(e.unmasked(), mx::UE);
        // FTZ: a denormal result becomes zero.
        let mut e = Env::new(0x1f80 | mx::FTZ);
        let r = arith::<f32>(
            &mut e,
            Arith::Mul,
            2f32.powi(-100).to_u64(),
            2f32.powi(-40).to_u64(),
        );
        assert_eq!(r, 0);
        assert_eq!(e.flags, mx::UE | mx::PE);
        // DAZ: a denormal input is zero and raises no DE.
        let mut e = Env::new(0x1f80 | mx::DAZ);
        assert_eq!(arith::<f32>(&mut e, Arith::Add, 1, 0), 0);
        assert_eq!(e.flags, 0);
    }

    #[test]
    fn reciprocal_approximations() {
        assert_eq!(approx(4f32.to_bits(), false), 0.25f32.to_bits());
        assert_eq!(approx(4f32.to_bits(), true), 0.5f32.to_bits());
        assert_eq!(approx(0x8000_0000, false), 0xff80_0000);
        assert_eq!(approx(1, true), 0x7f80_0000, "denormal is treated as zero");
        assert_eq!(approx((-4f32).to_bits(), true), 0xffc0_0000);
        assert_eq!(
            approx(f32::MAX.to_bits(), false),
            0,
            "denormal result flushed"
        );
        assert_eq!(approx(f32::NEG_INFINITY.to_bits(), false), 0x8000_0000);
    }

    #[test]
    fn min_max_and_predicates() {
        let mut e = env(0);
        let (one, two) = (1f32.to_u64(), 2f32.to_u64());
        assert_eq!(min_max::<f32>(&mut e, false, one, two), one);
        assert_eq!(min_max::<f32>(&mut e, true, one, two), two);
        // Both zeros: the second operand.
        assert_eq!(min_max::<f32>(&mut e, false, 0x8000_0000, 0), 0);
        assert_eq!(e.flags, 0);
        assert_eq!(min_max::<f32>(&mut e, false, 0x7fc0_0000, one), one);
        assert_eq!(e.flags, mx::IE);
        let nan = 0x7fc0_0000;
        let mut e = env(0);
        assert_eq!(cmp_predicate::<f32>(&mut e, 3, nan, one), 0xffff_ffff);
        assert_eq!(cmp_predicate::<f32>(&mut e, 4, nan, one), 0xffff_ffff);
        assert_eq!(cmp_predicate::<f32>(&mut e, 0, nan, one), 0);
        assert_eq!(e.flags, 0, "EQ/NEQ/UNORD are quiet on QNaN");
        assert_eq!(cmp_predicate::<f32>(&mut e, 1, one, two), 0xffff_ffff);
        assert_eq!(cmp_predicate::<f32>(&mut e, 6, nan, one), 0xffff_ffff);
        assert_eq!(e.flags, mx::IE, "LT/NLE signal on QNaN");
    }
}
