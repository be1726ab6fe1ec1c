//! Conditions and the carry flag read straight from the lazy-flags record, without deriving
//! all six status flags (`LazyFlags::status`) when the condition needs one or two of them.
//!
//! Jcc, SETcc and CMOVcc mostly follow CMP, TEST, SUB, ADD, INC or DEC; INC, DEC, ADC and SBB
//! read CF alone. ZF, SF and PF depend only on the result for every recorded kind (SDM Vol. 1
//! Appendix A, and `LazyFlags::status`), so conditions on them never look at the kind; CF and
//! OF are computed here for the common kinds with the same formulas as `LazyFlags::status`,
//! which answers for the others (shifts, multiplies, ADC/SBB records).

use vcpu::state::rflags;

use crate::flags::{condition, kind, parity_even, LazyFlags, CC_EFLAGS};

/// Condition-code groups: bits 3..1 of the Jcc/SETcc/CMOVcc condition nibble (SDM Vol. 1
/// Appendix B, Table B-1); bit 0 negates.
const CC_O: u8 = 0;
const CC_B: u8 = 1;
const CC_E: u8 = 2;
const CC_BE: u8 = 3;
const CC_S: u8 = 4;
const CC_P: u8 = 5;
const CC_L: u8 = 6;

/// Width in bits of the recorded operation.
#[inline(always)]
fn bits(f: &LazyFlags) -> u32 {
    8 << (f.op & 3)
}

/// CF and OF of a record of an ADD, SUB, LOGIC, INC or DEC; `None` for other kinds.
#[inline(always)]
fn carry_overflow(f: &LazyFlags) -> Option<(bool, bool)> {
    let bits = bits(f);
    let m = u64::MAX >> (64 - bits);
    let sign = 1u64 << (bits - 1);
    let r = f.res & m;
    Some(match f.op >> 2 {
        kind::ADD => {
            let (a, b) = (f.src1 & m, f.src2 & m);
            (r < a, (a ^ r) & (b ^ r) & sign != 0)
        }
        kind::SUB => {
            let (a, b) = (f.src1 & m, f.src2 & m);
            (a < b, (a ^ b) & (a ^ r) & sign != 0)
        }
        kind::LOGIC => (false, false),
        kind::INC => (f.aux & 1 != 0, r == sign),
        kind::DEC => (f.aux & 1 != 0, r == sign - 1),
        _ => return None,
    })
}

/// Whether condition `cc` (the low nibble of a Jcc/SETcc/CMOVcc) holds: the same answer as
/// `condition(cc, f.status(rflags_now))`, reading only what the condition needs.
#[inline]
pub(crate) fn holds(f: &LazyFlags, cc: u8, rflags_now: u64) -> bool {
    if f.op == CC_EFLAGS {
        return condition(cc, rflags_now & rflags::STATUS);
    }
    let bits = bits(f);
    let m = u64::MAX >> (64 - bits);
    let r = f.res & m;
    let zf = r == 0;
    let sf = r >> (bits - 1) != 0;
    let negate = cc & 1 != 0;
    let group = cc >> 1;
    let v = match group {
        CC_E => zf,
        CC_S => sf,
        CC_P => parity_even(r),
        _ => match carry_overflow(f) {
            Some((cf, of)) => match group {
                CC_O => of,
                CC_B => cf,
                CC_BE => cf || zf,
                CC_L => sf != of,
                _ => zf || sf != of,
            },
            None => return condition(cc, f.status(rflags_now)),
        },
    };
    v ^ negate
}

/// CF as the record implies it (`LazyFlags::carry`, cheaper for the common kinds).
#[inline]
pub(crate) fn carry(f: &LazyFlags, rflags_now: u64) -> bool {
    if f.op == CC_EFLAGS {
        return rflags_now & rflags::CF != 0;
    }
    match carry_overflow(f) {
        Some((cf, _)) => cf,
        None => f.carry(rflags_now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Operand values that reach every carry, overflow, sign and zero case at each size.
    const VALUES: [u64; 12] = [
        0,
        1,
        2,
        0x0f,
        0x7f,
        0x80,
        0xff,
        0x7fff,
        0x8000,
        0x7fff_ffff,
        0x8000_0000,
        u64::MAX,
    ];

    /// Records of every kind this module computes itself, and of a shift it does not.
    fn records() -> Vec<LazyFlags> {
        let mut out = Vec::new();
        for size in [1u32, 2, 4, 8] {
            for &a in &VALUES {
                for &b in &VALUES {
                    for (k, r, aux) in [
                        (kind::ADD, a.wrapping_add(b), 0),
                        (kind::SUB, a.wrapping_sub(b), 0),
                        (kind::LOGIC, a & b, 0),
                        (kind::LOGIC, a ^ b, 0),
                        (kind::INC, a.wrapping_add(1), b & 1),
                        (kind::DEC, a.wrapping_sub(1), b & 1),
                        (kind::SHL, a << (b & 7).max(1), 0),
                    ] {
                        let mut f = LazyFlags::default();
                        f.set(k, size, a, b, r, aux);
                        out.push(f);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn conditions_agree_with_all_status_flags() {
        for f in records() {
            let status = f.status(rflags::FIXED1);
            for cc in 0..16 {
                assert_eq!(
                    holds(&f, cc, rflags::FIXED1),
                    condition(cc, status),
                    "{f:?} cc {cc}"
                );
            }
            assert_eq!(carry(&f, 0), status & rflags::CF != 0, "{f:?}");
        }
    }

    #[test]
    fn materialised_flags_are_read_from_rflags() {
        let f = LazyFlags::default();
        let now = rflags::FIXED1 | rflags::CF | rflags::ZF;
        assert!(carry(&f, now));
        assert!(holds(&f, 4, now), "E");
        assert!(holds(&f, 6, now), "BE");
        assert!(!holds(&f, 8, now), "S");
    }

    #[test]
    fn every_kind_size_and_condition_agrees_with_all_status_flags() {
        // Operands near the sign and carry boundaries of every size, every kind, every cc.
        let edges = [
            0u64,
            1,
            2,
            0x7f,
            0x80,
            0xff,
            0x7fff,
            0x8000,
            0xffff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x7fff_ffff_ffff_ffff,
            0x8000_0000_0000_0000,
            u64::MAX,
            0x1234_5678_9abc_def0,
        ];
        let mut checked = 0;
        for k in [
            kind::ADD,
            kind::ADC,
            kind::SUB,
            kind::SBB,
            kind::LOGIC,
            kind::INC,
            kind::DEC,
            kind::MUL,
        ] {
            for size in [1, 2, 4, 8] {
                for &a in &edges {
                    for &b in &edges {
                        let r = match k {
                            kind::ADD | kind::ADC => a.wrapping_add(b),
                            kind::SUB | kind::SBB => a.wrapping_sub(b),
                            kind::LOGIC => a & b,
                            kind::INC => a.wrapping_add(1),
                            kind::DEC => a.wrapping_sub(1),
                            _ => a.wrapping_mul(b),
                        };
                        let mut l = LazyFlags::default();
                        l.set(k, size, a, b, r, b & 1);
                        let f = l.status(rflags::FIXED1);
                        for cc in 0..16 {
                            assert_eq!(
                                holds(&l, cc, rflags::FIXED1),
                                condition(cc, f),
                                "kind {k} size {size} {a:#x} {b:#x} cc {cc:#x}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 8 * 4 * 16 * 16 * 16);
        // Materialised flags are read from RFLAGS.
        let l = LazyFlags::default();
        assert!(holds(&l, 0x4, rflags::FIXED1 | rflags::ZF));
        assert!(!holds(&l, 0x4, rflags::FIXED1));
    }
}
