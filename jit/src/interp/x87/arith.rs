//! x87 arithmetic and comparison (SDM Vol. 1 8.3.6-8.3.9): the add/subtract/multiply/divide
//! family in all forms, FCHS, FABS, FSQRT, FRNDINT, FSCALE, FXTRACT, FPREM/FPREM1, and the
//! comparisons with FSW condition codes or EFLAGS, FTST and FXAM.

use std::cmp::Ordering;

use iced_x86::{MemorySize, Mnemonic as M, OpKind};
use vcpu::state::rflags;

use super::float80::{self, exc, Class, Env, Rounded, F80};
use super::X87Insn;
use crate::exception::Fault;
use crate::interp::{Exec, Flow};

pub(super) fn execute(x: &mut X87Insn) -> Exec {
    let m = x.insn.mnemonic();
    match m {
        M::Fchs | M::Fabs => sign_op(x),
        M::Fsqrt | M::Frndint => unary(x),
        M::Fscale => fscale(x),
        M::Fxtract => fxtract(x),
        M::Fprem | M::Fprem1 => fprem(x),
        M::Fcom
        | M::Fcomp
        | M::Fcompp
        | M::Fucom
        | M::Fucomp
        | M::Fucompp
        | M::Ficom
        | M::Ficomp
        | M::Fcomi
        | M::Fcomip
        | M::Fucomi
        | M::Fucomip
        | M::Ftst => compare(x)?,
        M::Fxam => fxam(x),
        _ => binary(x)?,
    }
    Ok(Flow::Next)
}

/// A memory source operand in any of the formats arithmetic accepts, widened exactly, and the
/// denormal flag of the load.
fn mem_operand(x: &mut X87Insn) -> Result<(F80, u8), Fault> {
    Ok(match x.insn.memory_size() {
        MemorySize::Float32 => float80::from_f32_bits(x.read(0, 4)? as u32),
        MemorySize::Float64 => float80::from_f64_bits(x.read(0, 8)?),
        MemorySize::Int16 => (float80::from_int(x.read(0, 2)? as i16 as i64), 0),
        MemorySize::Int32 => (float80::from_int(x.read(0, 4)? as i32 as i64), 0),
        _ => (float80::from_int(x.read(0, 8)? as i64), 0),
    })
}

/// Deliver an arithmetic result to ST(dest): flags, C1 = rounded up, then the optional pop.
/// A suppressed result (unmasked IE/ZE/DE) leaves the destination and the stack alone.
fn deliver(x: &mut X87Insn, dest: usize, r: Rounded<F80>, pop: bool) {
    x.st.raise(r.flags);
    if r.suppressed {
        return;
    }
    x.st.set_c1(r.rounded_up);
    x.st.set_st(dest, r.value);
    if pop {
        x.st.pop();
    }
}

/// FADD/FSUB/FSUBR/FMUL/FDIV/FDIVR and their P and I forms.
fn binary(x: &mut X87Insn) -> Result<(), Fault> {
    let m = x.insn.mnemonic();
    let pop = matches!(
        m,
        M::Faddp | M::Fsubp | M::Fsubrp | M::Fmulp | M::Fdivp | M::Fdivrp
    );
    let (dest, src, src_flags) = if x.insn.op_kind(0) == OpKind::Memory {
        let (v, f) = mem_operand(x)?;
        (0usize, Ok(v), f)
    } else if x.insn.op_count() >= 2 {
        let (d, s) = (x.st_index(0), x.st_index(1));
        (d, Err(s), 0)
    } else {
        // The operand-less forms are ST(1) op= ST(0) with a pop.
        (1, Err(0), 0)
    };
    let src_empty = matches!(src, Err(s) if x.st.is_empty(s));
    if x.st.is_empty(dest) || src_empty {
        if x.stack_underflow() {
            x.st.set_st(dest, F80::INDEFINITE);
            if pop {
                x.st.pop();
            }
        }
        return Ok(());
    }
    let b = match src {
        Ok(v) => v,
        Err(s) => x.st.st(s),
    };
    let a = x.st.st(dest);
    let env = Env::from_fcw(x.st.fcw);
    let mut r = match m {
        M::Fadd | M::Faddp | M::Fiadd => float80::add(&env, a, b, false),
        M::Fsub | M::Fsubp | M::Fisub => float80::add(&env, a, b, true),
        M::Fsubr | M::Fsubrp | M::Fisubr => float80::add(&env, b, a, true),
        M::Fmul | M::Fmulp | M::Fimul => float80::mul(&env, a, b),
        M::Fdiv | M::Fdivp | M::Fidiv => float80::div(&env, a, b),
        _ => float80::div(&env, b, a),
    };
    r.flags |= src_flags;
    if src_flags & exc::DE != 0 && !x.st.masked(exc::DE) {
        r.suppressed = true;
    }
    deliver(x, dest, r, pop);
    Ok(())
}

/// FCHS, FABS: sign changes only, no exceptions but a stack underflow.
fn sign_op(x: &mut X87Insn) {
    if x.st.is_empty(0) {
        if x.stack_underflow() {
            x.st.set_st(0, F80::INDEFINITE);
        }
        return;
    }
    let v = x.st.st(0);
    let r = if x.insn.mnemonic() == M::Fchs {
        v.negate()
    } else {
        v.abs()
    };
    x.st.set_c1(false);
    x.st.set_st(0, r);
}

/// FSQRT (rounded per PC/RC) and FRNDINT (to an integral value per RC, 64-bit precision).
fn unary(x: &mut X87Insn) {
    if x.st.is_empty(0) {
        if x.stack_underflow() {
            x.st.set_st(0, F80::INDEFINITE);
        }
        return;
    }
    let v = x.st.st(0);
    let r = if x.insn.mnemonic() == M::Fsqrt {
        float80::sqrt(&Env::from_fcw(x.st.fcw), v)
    } else {
        float80::round_to_integral(&Env::extended(x.st.fcw), v)
    };
    deliver(x, 0, r, false);
}

/// Invalid operation on ST(0): IE and, masked, the indefinite in ST(0).
fn invalid(x: &mut X87Insn, flags: u8) {
    x.st.raise(exc::IE | flags);
    if x.st.masked(exc::IE) {
        x.st.set_c1(false);
        x.st.set_st(0, F80::INDEFINITE);
    }
}

/// NaN operands of a two-operand instruction on ST(0), ST(1): the propagated NaN in ST(0).
/// Returns true when a NaN was handled.
fn nan_operands(x: &mut X87Insn, a: F80, b: F80) -> bool {
    if !(a.is_nan() || b.is_nan()) {
        return false;
    }
    // Adding the NaNs applies the propagation rules of SDM Vol. 1 Table 4-7.
    let r = float80::add(&Env::from_fcw(x.st.fcw), a, b, false);
    deliver(x, 0, r, false);
    true
}

fn two_operands(x: &mut X87Insn) -> Option<(F80, F80)> {
    if x.st.is_empty(0) || x.st.is_empty(1) {
        if x.stack_underflow() {
            x.st.set_st(0, F80::INDEFINITE);
        }
        return None;
    }
    let (a, b) = (x.st.st(0), x.st.st(1));
    if a.class() == Class::Unsupported || b.class() == Class::Unsupported {
        invalid(x, 0);
        return None;
    }
    if nan_operands(x, a, b) {
        return None;
    }
    Some((a, b))
}

fn denormal_check(x: &mut X87Insn, ops: &[F80]) -> Option<u8> {
    if ops.iter().any(|o| o.class() == Class::Denormal) {
        if !x.st.masked(exc::DE) {
            x.st.raise(exc::DE);
            return None;
        }
        return Some(exc::DE);
    }
    Some(0)
}

/// FSCALE: ST(0) * 2^trunc(ST(1)) (SDM Vol. 2A FSCALE, Table 3-?).
fn fscale(x: &mut X87Insn) {
    let Some((a, b)) = two_operands(x) else {
        return;
    };
    let (ca, cb) = (a.class(), b.class());
    let Some(de) = denormal_check(x, &[a, b]) else {
        return;
    };
    // Precision control does not apply to FSCALE (SDM Vol. 1 8.1.5.2).
    let env = Env::extended(x.st.fcw);
    let r = match (ca, cb) {
        (Class::Zero, Class::Infinity) if !b.sign() => return invalid(x, de),
        (Class::Infinity, Class::Infinity) if b.sign() => return invalid(x, de),
        (Class::Zero | Class::Infinity, _) => Rounded {
            value: a,
            flags: de,
            rounded_up: false,
            suppressed: false,
        },
        (_, Class::Infinity) => Rounded {
            value: if b.sign() {
                F80::zero(a.sign())
            } else {
                F80::infinity(a.sign())
            },
            flags: de,
            rounded_up: false,
            suppressed: false,
        },
        _ => {
            let n = match cb {
                Class::Zero => 0,
                _ => {
                    let t = float80::round_to_integral(
                        &Env {
                            rounding: float80::Rounding::TowardZero,
                            ..Env::extended(x.st.fcw)
                        },
                        b,
                    )
                    .value;
                    if t.is_zero() {
                        0
                    } else {
                        let e = float80::unbiased_exponent(t);
                        let mag = if e > 20 {
                            1 << 20
                        } else {
                            (t.sig >> (63 - e)) as i64
                        };
                        if t.sign() {
                            -mag
                        } else {
                            mag
                        }
                    }
                }
            };
            let mut r = float80::scale(&env, a, n);
            r.flags |= de;
            r
        }
    };
    deliver(x, 0, r, false);
}

/// FXTRACT: ST(0) becomes the significand, then the exponent is... pushed below it: ST(1) =
/// exponent, ST(0) = significand (SDM Vol. 2A FXTRACT).
fn fxtract(x: &mut X87Insn) {
    if x.st.is_empty(0) {
        if x.stack_underflow() {
            x.st.set_st(0, F80::INDEFINITE);
            if !x.push_overflows() {
                x.st.push(F80::INDEFINITE);
            }
        }
        return;
    }
    if x.push_overflows() {
        if x.stack_overflow() {
            x.st.set_st(0, F80::INDEFINITE);
            x.st.push(F80::INDEFINITE);
        }
        return;
    }
    let v = x.st.st(0);
    let (exp, sig, flags) = match v.class() {
        Class::SNaN | Class::Unsupported => {
            x.st.raise(exc::IE);
            if !x.st.masked(exc::IE) {
                return;
            }
            let q = if v.class() == Class::SNaN {
                F80 {
                    se: v.se,
                    sig: v.sig | 1 << 62,
                }
            } else {
                F80::INDEFINITE
            };
            (q, q, 0)
        }
        Class::QNaN => (v, v, 0),
        Class::Infinity => (F80::infinity(false), v, 0),
        Class::Zero => {
            x.st.raise(exc::ZE);
            if !x.st.masked(exc::ZE) {
                return;
            }
            (F80::infinity(true), v, 0)
        }
        c => {
            let de = if c == Class::Denormal { exc::DE } else { 0 };
            if de != 0 && !x.st.masked(exc::DE) {
                x.st.raise(de);
                return;
            }
            let (e, s) = float80::extract(v);
            (e, s, de)
        }
    };
    x.st.raise(flags);
    x.st.set_c1(false);
    x.st.set_st(0, exp);
    x.st.push(sig);
}

/// FPREM (truncating quotient) and FPREM1 (IEEE remainder): C2 = incomplete, C0/C3/C1 = the
/// low three quotient bits Q2/Q1/Q0 when complete (SDM Vol. 2A FPREM).
fn fprem(x: &mut X87Insn) {
    let Some((a, b)) = two_operands(x) else {
        return;
    };
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Infinity || cb == Class::Zero {
        return invalid(x, 0);
    }
    let Some(de) = denormal_check(x, &[a, b]) else {
        return;
    };
    x.st.raise(de);
    if ca == Class::Zero || cb == Class::Infinity {
        x.st.set_condition(false, false, false, false);
        return;
    }
    let (r, q, complete) = float80::remainder_step(a, b, x.insn.mnemonic() == M::Fprem1);
    if complete {
        x.st.set_condition(q & 2 != 0, false, q & 1 != 0, q & 4 != 0);
    } else {
        x.st.set_condition(false, true, false, false);
    }
    x.st.set_st(0, r);
}

/// The comparisons: FCOM/FCOMP/FCOMPP, FUCOM*, FICOM/FICOMP and FTST set C3/C2/C0; FCOMI*
/// and FUCOMI* set ZF/PF/CF (SDM Vol. 2A FCOM, FCOMI).
fn compare(x: &mut X87Insn) -> Result<(), Fault> {
    let m = x.insn.mnemonic();
    let pops = match m {
        M::Fcomp | M::Fucomp | M::Ficomp | M::Fcomip | M::Fucomip => 1,
        M::Fcompp | M::Fucompp => 2,
        _ => 0,
    };
    let quiet = matches!(
        m,
        M::Fucom | M::Fucomp | M::Fucompp | M::Fucomi | M::Fucomip
    );
    let to_eflags = matches!(m, M::Fcomi | M::Fcomip | M::Fucomi | M::Fucomip);
    let (src, src_flags) = if m == M::Ftst {
        (Ok(F80::ZERO), 0)
    } else if x.insn.op_kind(0) == OpKind::Memory {
        let (v, f) = mem_operand(x)?;
        (Ok(v), f)
    } else if x.insn.op_count() >= 2 {
        (Err(x.st_index(1)), 0)
    } else {
        (Err(1), 0)
    };
    let src_empty = matches!(src, Err(s) if x.st.is_empty(s));
    let (ord, flags) = if x.st.is_empty(0) || src_empty {
        if !x.stack_underflow() {
            return Ok(());
        }
        (None, 0)
    } else {
        let b = match src {
            Ok(v) => v,
            Err(s) => x.st.st(s),
        };
        let (o, f) = float80::compare(&Env::from_fcw(x.st.fcw), x.st.st(0), b, quiet);
        (o, f | src_flags)
    };
    x.st.raise(flags);
    if flags & !(x.st.fcw as u8) & (exc::IE | exc::DE) != 0 {
        return Ok(());
    }
    let (c3, c2, c0) = match ord {
        Some(Ordering::Greater) => (false, false, false),
        Some(Ordering::Less) => (false, false, true),
        Some(Ordering::Equal) => (true, false, false),
        None => (true, true, true),
    };
    if to_eflags {
        x.ctx.flags.materialize(&mut x.ctx.cpu.rflags);
        let f = &mut x.ctx.cpu.rflags;
        *f &= !(rflags::ZF | rflags::PF | rflags::CF | rflags::OF | rflags::SF | rflags::AF);
        *f |= if c3 { rflags::ZF } else { 0 }
            | if c2 { rflags::PF } else { 0 }
            | if c0 { rflags::CF } else { 0 };
        x.ctx.flags.set_eflags();
        x.st.set_c1(false);
    } else {
        x.st.set_condition(c3, c2, false, c0);
    }
    for _ in 0..pops {
        x.st.pop();
    }
    Ok(())
}

/// FXAM: classify ST(0) into C3/C2/C0, its sign into C1 (SDM Vol. 2A FXAM, Table 3-?).
fn fxam(x: &mut X87Insn) {
    let v = x.st.st(0);
    let (c3, c2, c0) = if x.st.is_empty(0) {
        (true, false, true)
    } else {
        match v.class() {
            Class::Unsupported => (false, false, false),
            Class::QNaN | Class::SNaN => (false, false, true),
            Class::Normal => (false, true, false),
            Class::Infinity => (false, true, true),
            Class::Zero => (true, false, false),
            Class::Denormal => (true, true, false),
        }
    };
    x.st.set_condition(c3, c2, v.sign(), c0);
}
