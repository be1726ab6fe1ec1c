//! Hand-computed results of the soft float (values from the SDM and binary expansions worked
//! out by hand, never recorded from the code under test).

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
