//! x87 data transfer (SDM Vol. 1 8.3.3 and 8.3.4): FLD/FST/FSTP in every format, FILD/FIST/
//! FISTP/FISTTP, FBLD/FBSTP, the constants, FXCH and FCMOVcc, with the stack fault and
//! masked-response rules of SDM Vol. 1 8.5.1.1 and 4.8.3.7.

use iced_x86::{MemorySize, Mnemonic as M, OpKind};

use super::float80::{self, exc, Env, Rounded, Rounding, F80};
use super::X87Insn;
use crate::flags::condition;
use crate::interp::{Exec, Flow};

pub(super) fn execute(x: &mut X87Insn) -> Exec {
    match x.insn.mnemonic() {
        M::Fld | M::Fild | M::Fbld => fld(x)?,
        M::Fst | M::Fstp | M::Fstpnce => fst(x)?,
        M::Fist | M::Fistp | M::Fisttp => fist(x)?,
        M::Fbstp => fbstp(x)?,
        M::Fld1 | M::Fldz | M::Fldpi | M::Fldl2e | M::Fldl2t | M::Fldlg2 | M::Fldln2 => {
            let rc = Rounding::from_bits(x.st.fcw >> 10);
            let v = constant(x.insn.mnemonic(), rc);
            push(x, Ok(v));
        }
        M::Fxch => fxch(x),
        _ => fcmov(x),
    }
    Ok(Flow::Next)
}

/// Push `v` (or the result of a stack underflow when `Err`), handling stack overflow.
fn push(x: &mut X87Insn, v: Result<F80, ()>) {
    if x.push_overflows() {
        if x.stack_overflow() {
            x.st.push(F80::INDEFINITE);
        }
        return;
    }
    match v {
        Ok(v) => {
            x.st.set_c1(false);
            x.st.push(v);
        }
        Err(()) => {
            if x.stack_underflow() {
                x.st.push(F80::INDEFINITE);
            }
        }
    }
}

fn fld(x: &mut X87Insn) -> Result<(), crate::exception::Fault> {
    if x.insn.op_kind(0) == OpKind::Register {
        let i = x.st_index(0);
        let v = if x.st.is_empty(i) {
            Err(())
        } else {
            Ok(x.st.st(i))
        };
        push(x, v);
        return Ok(());
    }
    let (v, flags) = match x.insn.memory_size() {
        MemorySize::Float32 => float80::from_f32_bits(x.read(0, 4)? as u32),
        MemorySize::Float64 => float80::from_f64_bits(x.read(0, 8)?),
        MemorySize::Float80 => (x.read_f80(0)?, 0),
        MemorySize::Int16 => (float80::from_int(x.read(0, 2)? as i16 as i64), 0),
        MemorySize::Int32 => (float80::from_int(x.read(0, 4)? as i32 as i64), 0),
        MemorySize::Int64 => (float80::from_int(x.read(0, 8)? as i64), 0),
        _ => (bcd_to_f80(x.read(0, 8)?, x.read(8, 2)? as u16), 0),
    };
    // Loading an SNaN from single/double format raises IE and loads it quieted (SDM Vol. 2A
    // FLD); denormal single/double sources raise DE.
    let mut flags = flags;
    let mut v = v;
    if x.insn.memory_size() != MemorySize::Float80 && v.class() == float80::Class::SNaN {
        flags |= exc::IE;
        v.sig |= 1 << 62;
    }
    if x.push_overflows() {
        push(x, Ok(v));
        return Ok(());
    }
    if flags != 0 {
        x.st.raise(flags);
        let unmasked = flags & !(x.st.fcw as u8) & 0x3f;
        if unmasked & (exc::IE | exc::DE) != 0 {
            return Ok(());
        }
    }
    push(x, Ok(v));
    Ok(())
}

/// FST/FSTP to memory or ST(i).
fn fst(x: &mut X87Insn) -> Result<(), crate::exception::Fault> {
    let pop = x.insn.mnemonic() != M::Fst;
    let empty = x.st.is_empty(0);
    let v = x.st.st(0);
    if x.insn.op_kind(0) == OpKind::Register {
        let i = x.st_index(0);
        if empty {
            if !x.stack_underflow() {
                return Ok(());
            }
            x.st.set_st(i, F80::INDEFINITE);
        } else {
            x.st.set_c1(false);
            x.st.set_st(i, v);
        }
        if pop {
            x.st.pop();
        }
        return Ok(());
    }
    let env_fcw = x.st.fcw;
    let (bits, size, r): (u64, u32, Rounded<u64>) = match x.insn.memory_size() {
        MemorySize::Float32 => {
            let r = if empty {
                underflow_value(0xffc0_0000)
            } else {
                let r = float80::to_f32_bits(&Env::single(env_fcw), v);
                widen_rounded(r, u64::from)
            };
            (r.value, 4, r)
        }
        MemorySize::Float64 => {
            let r = if empty {
                underflow_value(0xfff8_0000_0000_0000)
            } else {
                float80::to_f64_bits(&Env::double(env_fcw), v)
            };
            (r.value, 8, r)
        }
        _ => {
            // m80: an exact copy.
            let v = if empty { F80::INDEFINITE } else { v };
            if empty && !x.stack_underflow() {
                return Ok(());
            }
            x.write_f80(0, v)?;
            if !empty {
                x.st.set_c1(false);
            }
            if pop {
                x.st.pop();
            }
            return Ok(());
        }
    };
    if empty {
        if !x.stack_underflow() {
            return Ok(());
        }
    } else if r.suppressed {
        x.st.raise(r.flags);
        return Ok(());
    }
    x.write(0, size, bits)?;
    if !empty {
        x.st.raise(r.flags);
        x.st.set_c1(r.rounded_up);
    }
    if pop {
        x.st.pop();
    }
    Ok(())
}

fn underflow_value(v: u64) -> Rounded<u64> {
    Rounded {
        value: v,
        flags: 0,
        rounded_up: false,
        suppressed: false,
    }
}

fn widen_rounded<T: Copy, U>(r: Rounded<T>, f: impl Fn(T) -> U) -> Rounded<U> {
    Rounded {
        value: f(r.value),
        flags: r.flags,
        rounded_up: r.rounded_up,
        suppressed: r.suppressed,
    }
}

/// FIST/FISTP (rounding per RC) and FISTTP (truncation).
fn fist(x: &mut X87Insn) -> Result<(), crate::exception::Fault> {
    let m = x.insn.mnemonic();
    let pop = m != M::Fist;
    let (bits, size) = match x.insn.memory_size() {
        MemorySize::Int16 => (16, 2),
        MemorySize::Int32 => (32, 4),
        _ => (64, 8),
    };
    let mut env = Env::extended(x.st.fcw);
    if m == M::Fisttp {
        env.rounding = Rounding::TowardZero;
    }
    if x.st.is_empty(0) {
        if !x.stack_underflow() {
            return Ok(());
        }
        x.write(0, size, (i64::MIN >> (64 - bits)) as u64)?;
    } else {
        let r = float80::to_int(&env, x.st.st(0), bits);
        if r.suppressed {
            x.st.raise(r.flags);
            return Ok(());
        }
        x.write(0, size, r.value as u64)?;
        x.st.raise(r.flags);
        x.st.set_c1(r.rounded_up);
    }
    if pop {
        x.st.pop();
    }
    Ok(())
}

/// Packed BCD (SDM Vol. 1 4.7, Figure 4-10): 18 digits in bytes 0-8, sign in bit 7 of byte 9.
fn bcd_to_f80(lo: u64, hi: u16) -> F80 {
    let mut v: i64 = 0;
    let bytes = [lo.to_le_bytes().as_slice(), &[hi as u8]].concat();
    for b in bytes.iter().rev() {
        v = v * 100 + i64::from(b >> 4) * 10 + i64::from(b & 0xf);
    }
    let r = float80::from_int(v);
    if hi & 0x8000 != 0 {
        // -0 is kept as negative zero.
        r.negate()
    } else {
        r
    }
}

/// FBSTP m80bcd: round per RC, store as packed BCD, pop. Out of range (|v| >= 10^18), NaN or
/// infinity: IE and, masked, the packed BCD indefinite (SDM Vol. 1 4.8.3.7, Table 4-4).
fn fbstp(x: &mut X87Insn) -> Result<(), crate::exception::Fault> {
    const BCD_INDEFINITE: (u64, u16) = (0xc000_0000_0000_0000, 0xffff);
    let (lo, hi) = if x.st.is_empty(0) {
        if !x.stack_underflow() {
            return Ok(());
        }
        BCD_INDEFINITE
    } else {
        let env = Env::extended(x.st.fcw);
        let r = float80::to_int(&env, x.st.st(0), 64);
        let v = r.value;
        let bad = r.flags & exc::IE != 0 || v.unsigned_abs() >= 1_000_000_000_000_000_000;
        if bad {
            x.st.raise(exc::IE);
            if !x.st.masked(exc::IE) {
                return Ok(());
            }
            BCD_INDEFINITE
        } else {
            x.st.raise(r.flags);
            x.st.set_c1(r.rounded_up);
            let mut mag = v.unsigned_abs();
            let mut bytes = [0u8; 10];
            for b in bytes.iter_mut().take(9) {
                let d0 = (mag % 10) as u8;
                mag /= 10;
                let d1 = (mag % 10) as u8;
                mag /= 10;
                *b = d1 << 4 | d0;
            }
            let negative = v < 0 || (v == 0 && x.st.st(0).sign());
            bytes[9] = if negative { 0x80 } else { 0 };
            (
                u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
                u16::from_le_bytes([bytes[8], bytes[9]]),
            )
        }
    };
    x.read(9, 1)?;
    x.write(8, 2, u64::from(hi))?;
    x.write(0, 8, lo)?;
    x.st.pop();
    Ok(())
}

/// The constants of FLD1..FLDLN2 (SDM Vol. 1 8.3.5): the processor holds them with more
/// precision and rounds per RC; these are the 64-bit significands rounded down, with the
/// direction in which rounding to nearest goes.
fn constant(m: M, rc: Rounding) -> F80 {
    // (exponent, significand truncated, nearest rounds up)
    let (exp, sig, nearest_up): (u16, u64, bool) = match m {
        M::Fld1 => return F80::ONE,
        M::Fldz => return F80::ZERO,
        // pi = C90FDAA2 2168C234 C4C6628B...
        M::Fldpi => (0x4000, 0xc90f_daa2_2168_c234, true),
        // log2(10) = D49A784B CD1B8AFE 492BF6FF...
        M::Fldl2t => (0x4000, 0xd49a_784b_cd1b_8afe, false),
        // log2(e) = B8AA3B29 5C17F0BB BE87FED0...
        M::Fldl2e => (0x3fff, 0xb8aa_3b29_5c17_f0bb, true),
        // log10(2) = 9A209A84 FBCFF798 8F8959AC...
        M::Fldlg2 => (0x3ffd, 0x9a20_9a84_fbcf_f798, true),
        // ln(2) = B17217F7 D1CF79AB C9E3B398...
        _ => (0x3ffe, 0xb172_17f7_d1cf_79ab, true),
    };
    let up = match rc {
        Rounding::NearestEven => nearest_up,
        Rounding::Up => true,
        Rounding::Down | Rounding::TowardZero => false,
    };
    F80::new(false, exp, sig + u64::from(up))
}

fn fxch(x: &mut X87Insn) {
    let i = if x.insn.op_count() >= 2 {
        x.st_index(1)
    } else {
        1
    };
    let (e0, ei) = (x.st.is_empty(0), x.st.is_empty(i));
    if e0 || ei {
        if !x.stack_underflow() {
            return;
        }
        if e0 {
            x.st.set_st(0, F80::INDEFINITE);
        }
        if ei {
            x.st.set_st(i, F80::INDEFINITE);
        }
    } else {
        x.st.set_c1(false);
    }
    let (a, b) = (x.st.st(0), x.st.st(i));
    x.st.set_st(0, b);
    x.st.set_st(i, a);
}

/// FCMOVcc ST(0), ST(i) on EFLAGS (SDM Vol. 2A FCMOVcc).
fn fcmov(x: &mut X87Insn) {
    let cc = match x.insn.mnemonic() {
        M::Fcmovb => 0x2,
        M::Fcmovnb => 0x3,
        M::Fcmove => 0x4,
        M::Fcmovne => 0x5,
        M::Fcmovbe => 0x6,
        M::Fcmovnbe => 0x7,
        M::Fcmovu => 0xa,
        _ => 0xb,
    };
    let i = x.st_index(1);
    if x.st.is_empty(0) || x.st.is_empty(i) {
        if x.stack_underflow() {
            x.st.set_st(0, F80::INDEFINITE);
        }
        return;
    }
    x.st.set_c1(false);
    let f = x.ctx.flags.status(x.ctx.cpu.rflags);
    if condition(cc, f) {
        let v = x.st.st(i);
        x.st.set_st(0, v);
    }
}
