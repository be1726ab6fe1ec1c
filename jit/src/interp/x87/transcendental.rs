//! x87 transcendental instructions (SDM Vol. 1 8.3.10, 8.3.11): FSIN, FCOS, FSINCOS, FPTAN,
//! FPATAN, F2XM1, FYL2X, FYL2XP1.
//!
//! Inexact by design: the operand is rounded to binary64, the host's libm computes the
//! function, and the binary64 result is widened back. Results therefore carry at most 53
//! significant bits and can differ from Intel hardware in the last bits of a double; special
//! operands (NaN, infinities, zeros, out-of-range arguments with C2) and the exceptions IE,
//! ZE, DE and PE follow the SDM.

use iced_x86::Mnemonic as M;

use super::float80::{self, exc, Class, Env, Rounding, F80};
use super::X87Insn;
use crate::interp::{Exec, Flow};

/// FSIN/FCOS/FSINCOS/FPTAN take |x| < 2^63; otherwise C2 = 1 and ST(0) is unchanged.
const TRIG_LIMIT_EXP: u16 = 0x3fff + 63;

fn to_f64(v: F80) -> f64 {
    let env = Env {
        rounding: Rounding::NearestEven,
        masks: 0x3f,
        ..Env::double(0x037f)
    };
    f64::from_bits(float80::to_f64_bits(&env, v).value)
}

fn from_f64(v: f64) -> F80 {
    float80::from_f64_bits(v.to_bits()).0
}

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
    let (fa, fb) = (to_f64(a), to_f64(b));
    let (r0, r1, flags) = match m {
        M::Fsin => (fa.sin(), 0.0, 0),
        M::Fcos => (fa.cos(), 0.0, 0),
        M::Fsincos => (fa.sin(), fa.cos(), 0),
        M::Fptan => (fa.tan(), 1.0, 0),
        M::F2xm1 => {
            if a.class() == Class::Infinity {
                (if a.sign() { -1.0 } else { f64::INFINITY }, 0.0, 0)
            } else {
                ((fa * std::f64::consts::LN_2).exp_m1(), 0.0, 0)
            }
        }
        M::Fpatan => (fb.atan2(fa), 0.0, 0),
        M::Fyl2x => {
            if a.sign() && !a.is_zero() {
                return Ok(invalid(x, m));
            }
            if a.is_zero() {
                if b.is_zero() {
                    return Ok(invalid(x, m));
                }
                (f64::NEG_INFINITY * fb.signum(), 0.0, exc::ZE)
            } else {
                (fb * fa.log2(), 0.0, 0)
            }
        }
        _ => {
            if fa < -1.0 {
                return Ok(invalid(x, m));
            }
            (fb * fa.ln_1p() / std::f64::consts::LN_2, 0.0, 0)
        }
    };
    if flags & exc::ZE != 0 {
        x.st.raise(de | exc::ZE);
        if !x.st.masked(exc::ZE) {
            return Ok(Flow::Next);
        }
    }
    if r0.is_nan() {
        return Ok(invalid(x, m));
    }
    let exact = matches!(
        (m, a.is_zero()),
        (M::Fsin | M::Fsincos | M::Fptan | M::F2xm1, true)
    );
    x.st.raise(de | if exact { 0 } else { exc::PE });
    x.st.set_c1(false);
    let v0 = if exact && m != M::Fptan {
        a
    } else {
        from_f64(r0)
    };
    let v0 = if exact && m == M::Fptan { a } else { v0 };
    finish(x, m, v0, from_f64(r1));
    Ok(Flow::Next)
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
