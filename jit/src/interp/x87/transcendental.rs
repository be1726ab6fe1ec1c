//! x87 transcendental instructions (SDM Vol. 1 8.3.10, 8.3.11): FSIN, FCOS, FSINCOS, FPTAN,
//! FPATAN, F2XM1, FYL2X, FYL2XP1.
//!
//! The functions are evaluated in 64-bit-significand arithmetic by [`super::extended_math`]
//! (series after argument reduction), accurate to a few units in the last place of the 64-bit
//! significand rather than Intel's documented ~1 ulp, so low-order bits can differ from
//! hardware. Results are rounded to nearest at full precision (PC does not apply). Special
//! operands (NaN, infinities, zeros, out-of-range arguments with C2) and the exceptions IE,
//! ZE, DE and PE follow the SDM; UE for tiny results is not reported.

use iced_x86::Mnemonic as M;

use super::extended_math;
use super::float80::{self, exc, Class, Env, F80};
use super::X87Insn;
use crate::interp::{Exec, Flow};

/// FSIN/FCOS/FSINCOS/FPTAN take |x| < 2^63; otherwise C2 = 1 and ST(0) is unchanged.
const TRIG_LIMIT_EXP: u16 = 0x3fff + 63;

pub(super) fn execute(x: &mut X87Insn) -> Exec {
    let m = x.insn.mnemonic();
    let two = matches!(m, M::Fpatan | M::Fyl2x | M::Fyl2xp1);
    let pushes = matches!(m, M::Fsincos | M::Fptan);
    if x.st.is_empty(0) || (two && x.st.is_empty(1)) {
        if x.stack_underflow() {
            let d = if two { 1 } else { 0 };
            x.st.set_st(d, F80::INDEFINITE);
            if two {
                x.st.pop();
            } else if pushes && !x.push_overflows() {
                x.st.push(F80::INDEFINITE);
            }
        }
        return Ok(Flow::Next);
    }
    if pushes && x.push_overflows() {
        if x.stack_overflow() {
            x.st.set_st(0, F80::INDEFINITE);
            x.st.push(F80::INDEFINITE);
        }
        return Ok(Flow::Next);
    }
    let a = x.st.st(0);
    let b = if two { x.st.st(1) } else { F80::ZERO };
    let ops: &[F80] = if two { &[a, b] } else { &[a] };
    // Invalid encodings and NaNs.
    if ops
        .iter()
        .any(|o| o.class() == Class::Unsupported || o.is_nan())
    {
        let snan = ops
            .iter()
            .any(|o| matches!(o.class(), Class::SNaN | Class::Unsupported));
        let r = if two {
            float80::add(&Env::from_fcw(x.st.fcw), a, b, false)
        } else {
            float80::add(&Env::from_fcw(x.st.fcw), a, a, false)
        };
        x.st.raise(r.flags | if snan { exc::IE } else { 0 });
        if r.suppressed {
            return Ok(Flow::Next);
        }
        finish(x, m, r.value, r.value);
        return Ok(Flow::Next);
    }
    let de = if ops.iter().any(|o| o.class() == Class::Denormal) {
        exc::DE
    } else {
        0
    };
    if de != 0 && !x.st.masked(exc::DE) {
        x.st.raise(de);
        return Ok(Flow::Next);
    }
    if matches!(m, M::Fsin | M::Fcos | M::Fsincos | M::Fptan) {
        if a.class() == Class::Infinity {
            return Ok(invalid(x, m));
        }
        if a.exp() >= TRIG_LIMIT_EXP {
            x.st.set_condition(false, true, false, false);
            return Ok(Flow::Next);
        }
    }
    let env = Env::extended(x.st.fcw);
    let (ca, cb) = (a.class(), b.class());
    // (first result, second result, extra flags, exact)
    let (r0, r1, flags, exact): (F80, F80, u8, bool) = match m {
        M::Fsin | M::Fcos | M::Fsincos | M::Fptan => {
            if ca == Class::Zero {
                match m {
                    M::Fcos => (F80::ONE, F80::ZERO, 0, true),
                    M::Fsincos => (a, F80::ONE, 0, true),
                    _ => (a, F80::ONE, 0, true),
                }
            } else {
                let (s, c) = extended_math::sin_cos(a);
                match m {
                    M::Fsin => (s, F80::ZERO, 0, false),
                    M::Fcos => (c, F80::ZERO, 0, false),
                    M::Fsincos => (s, c, 0, false),
                    _ => (float80::div(&env, s, c).value, F80::ONE, 0, false),
                }
            }
        }
        M::F2xm1 => match ca {
            Class::Zero => (a, F80::ZERO, 0, true),
            Class::Infinity if a.sign() => (float80::from_int(-1), F80::ZERO, 0, true),
            Class::Infinity => (a, F80::ZERO, 0, true),
            _ => (extended_math::exp2m1(a), F80::ZERO, 0, false),
        },
        M::Fpatan => {
            let r = atan2_special(b, a);
            (r, F80::ZERO, 0, r.is_zero())
        }
        M::Fyl2x => {
            if a.sign() && ca != Class::Zero {
                return Ok(invalid(x, m));
            }
            let l = match ca {
                Class::Zero => {
                    if cb == Class::Zero {
                        return Ok(invalid(x, m));
                    }
                    // log2(0) = -inf: a zero divide.
                    (F80::infinity(true), exc::ZE)
                }
                Class::Infinity => (a, 0),
                _ => (extended_math::log2(a), 0),
            };
            let r = float80::mul(&env, b, l.0);
            if r.flags & exc::IE != 0 {
                return Ok(invalid(x, m));
            }
            (r.value, F80::ZERO, l.1, r.value.is_zero() || l.1 != 0)
        }
        _ => {
            let below = float80::compare(&env, a, float80::from_int(-1), true).0;
            if below == Some(std::cmp::Ordering::Less) {
                return Ok(invalid(x, m));
            }
            let l = match ca {
                Class::Zero => (a, 0),
                Class::Infinity => (a, 0),
                _ if below == Some(std::cmp::Ordering::Equal) => (F80::infinity(true), exc::ZE),
                _ => (extended_math::log2_1p(a), 0),
            };
            let r = float80::mul(&env, b, l.0);
            if r.flags & exc::IE != 0 {
                return Ok(invalid(x, m));
            }
            (r.value, F80::ZERO, l.1, r.value.is_zero() || l.1 != 0)
        }
    };
    if flags & exc::ZE != 0 {
        x.st.raise(de | exc::ZE);
        if !x.st.masked(exc::ZE) {
            return Ok(Flow::Next);
        }
    }
    x.st.raise(de | if exact { 0 } else { exc::PE });
    x.st.set_c1(false);
    finish(x, m, r0, r1);
    Ok(Flow::Next)
}

/// FPATAN's special operands (SDM Vol. 2A FPATAN, Table 3-30), else the evaluation.
fn atan2_special(y: F80, x: F80) -> F80 {
    use extended_math::{PI, PI_2, PI_4};
    let env = Env::extended(0x037f);
    let with_sign = |v: F80| if y.sign() { v.negate() } else { v };
    let (cy, cx) = (y.class(), x.class());
    match (cy, cx) {
        (Class::Zero, _) => {
            if x.sign() {
                with_sign(PI)
            } else {
                y
            }
        }
        (Class::Infinity, Class::Infinity) => {
            if x.sign() {
                with_sign(float80::mul(&env, PI_4, float80::from_int(3)).value)
            } else {
                with_sign(PI_4)
            }
        }
        (Class::Infinity, _) | (_, Class::Zero) => with_sign(PI_2),
        (_, Class::Infinity) => {
            if x.sign() {
                with_sign(PI)
            } else {
                F80::zero(y.sign())
            }
        }
        _ => extended_math::atan2(y, x),
    }
}

/// Store the results: one-operand functions replace ST(0) (FSINCOS/FPTAN then push the second
/// result), two-operand functions replace ST(1) and pop.
fn finish(x: &mut X87Insn, m: M, v0: F80, v1: F80) {
    match m {
        M::Fpatan | M::Fyl2x | M::Fyl2xp1 => {
            x.st.set_st(1, v0);
            x.st.pop();
        }
        M::Fsincos | M::Fptan => {
            x.st.set_st(0, v0);
            x.st.push(v1);
        }
        _ => x.st.set_st(0, v0),
    }
    x.st.set_condition(false, false, x.st.fsw & super::state::fsw::C1 != 0, false);
}

fn invalid(x: &mut X87Insn, m: M) -> Flow {
    x.st.raise(exc::IE);
    if x.st.masked(exc::IE) {
        finish(x, m, F80::INDEFINITE, F80::INDEFINITE);
    }
    Flow::Next
}
