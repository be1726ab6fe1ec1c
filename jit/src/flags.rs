//! Lazy condition codes.
//!
//! Arithmetic instructions do not compute RFLAGS; they record what they did (an operation kind
//! and size, both inputs and the result) in [`LazyFlags`], and flags are derived only when
//! something reads them (a Jcc, SETcc, PUSHF, an exception, leaving the JIT). This is the scheme
//! of QEMU's `cc_op` and Bochs' lazy flags; generated code and the Rust helpers share it, so
//! translated code may store the four fields directly and helpers may read them back.
//!
//! Invariant: the six status bits of `CpuState::rflags` are valid only when `op == CC_EFLAGS`;
//! every other bit of `rflags` (DF, IF, TF, IOPL...) is always valid there.

use vcpu::state::rflags;

/// Operation kinds. The recorded `op` is `kind << 2 | size_index` (0 = 8, 1 = 16, 2 = 32,
/// 3 = 64 bits), except [`CC_EFLAGS`].
pub mod kind {
    pub const ADD: u64 = 1;
    /// `aux` holds the carry in (0 or 1).
    pub const ADC: u64 = 2;
    pub const SUB: u64 = 3;
    /// `aux` holds the borrow in (0 or 1).
    pub const SBB: u64 = 4;
    /// AND, OR, XOR, TEST: CF = OF = AF = 0.
    pub const LOGIC: u64 = 5;
    /// `aux` holds CF from before the instruction (INC preserves it).
    pub const INC: u64 = 6;
    /// `aux` holds CF from before the instruction (DEC preserves it).
    pub const DEC: u64 = 7;
    /// `src1` the value before, `src2` the masked count (never 0).
    pub const SHL: u64 = 8;
    pub const SHR: u64 = 9;
    pub const SAR: u64 = 10;
    /// MUL/IMUL: `aux` = 1 when the high half is significant (CF = OF = aux).
    pub const MUL: u64 = 11;
}

/// `op` value meaning "the status bits in `CpuState::rflags` are up to date".
pub const CC_EFLAGS: u64 = 0;

/// Build an `op` value from a kind and an operand size in bytes (1, 2, 4, 8).
pub const fn cc_op(kind: u64, size_bytes: u32) -> u64 {
    let idx = match size_bytes {
        1 => 0,
        2 => 1,
        4 => 2,
        _ => 3,
    };
    (kind << 2) | idx
}

/// The record of the last flag-setting operation. Field order is fixed: generated code stores
/// into it by offset, and only the fields [`LazyFlags::status`] reads for the kind (LOGIC: `op`
/// and `res`; INC, DEC, MUL: no `src1`/`src2`; ADD, SUB, shifts: no `aux`): a reader must not
/// look at the others, which may be stale.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LazyFlags {
    pub op: u64,
    pub src1: u64,
    pub src2: u64,
    pub res: u64,
    pub aux: u64,
}

/// Parity of the low byte: PF is set when it has an even number of ones (SDM Vol. 1 3.4.3.1).
#[inline]
pub fn parity_even(v: u64) -> bool {
    (v as u8).count_ones() & 1 == 0
}

#[inline]
fn bits_of(op: u64) -> u32 {
    8 << (op & 3)
}

#[inline]
fn mask_of(bits: u32) -> u64 {
    if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

impl LazyFlags {
    /// Record flags that are already materialised in `rflags`.
    pub fn set_eflags(&mut self) {
        self.op = CC_EFLAGS;
    }

    /// Record an operation.
    #[inline]
    pub fn set(&mut self, kind: u64, size_bytes: u32, src1: u64, src2: u64, res: u64, aux: u64) {
        self.op = cc_op(kind, size_bytes);
        self.src1 = src1;
        self.src2 = src2;
        self.res = res;
        self.aux = aux;
    }

    /// The six status flags implied by the record (only those bits are set in the result).
    /// With `op == CC_EFLAGS` they are taken from `rflags`.
    pub fn status(&self, rflags_now: u64) -> u64 {
        if self.op == CC_EFLAGS {
            return rflags_now & rflags::STATUS;
        }
        let bits = bits_of(self.op);
        let m = mask_of(bits);
        let sign = 1u64 << (bits - 1);
        let (a, b, r) = (self.src1 & m, self.src2 & m, self.res & m);
        let kind = self.op >> 2;
        let (cf, of, af) = match kind {
            kind::ADD => (
                r < a,
                (a ^ r) & (b ^ r) & sign != 0,
                (a ^ b ^ r) & 0x10 != 0,
            ),
            kind::ADC => {
                let cf = if self.aux & 1 != 0 { r <= a } else { r < a };
                (cf, (a ^ r) & (b ^ r) & sign != 0, (a ^ b ^ r) & 0x10 != 0)
            }
            kind::SUB => (
                a < b,
                (a ^ b) & (a ^ r) & sign != 0,
                (a ^ b ^ r) & 0x10 != 0,
            ),
            kind::SBB => {
                let cf = if self.aux & 1 != 0 { a <= b } else { a < b };
                (cf, (a ^ b) & (a ^ r) & sign != 0, (a ^ b ^ r) & 0x10 != 0)
            }
            kind::LOGIC => (false, false, false),
            kind::INC => (self.aux & 1 != 0, r == sign, r & 0xf == 0),
            kind::DEC => (self.aux & 1 != 0, r == sign - 1, r & 0xf == 0xf),
            kind::SHL => {
                let n = b as u32;
                let cf = n <= bits && (u128::from(a) << n) >> bits & 1 != 0;
                (cf, ((r & sign != 0) as u64 ^ cf as u64) != 0, false)
            }
            kind::SHR => {
                let n = b as u32;
                let cf = n <= bits && (a >> (n - 1)) & 1 != 0;
                (cf, a & sign != 0 && n == 1, false)
            }
            kind::SAR => {
                let n = (b as u32).min(bits);
                let signed = ((a << (64 - bits)) as i64) >> (64 - bits);
                let cf = (signed >> (n - 1).min(63)) & 1 != 0;
                (cf, false, false)
            }
            kind::MUL => (self.aux & 1 != 0, self.aux & 1 != 0, false),
            _ => unreachable!("corrupt lazy flags op {:#x}", self.op),
        };
        let mut f = 0;
        if cf {
            f |= rflags::CF;
        }
        if parity_even(r) {
            f |= rflags::PF;
        }
        if af {
            f |= rflags::AF;
        }
        if r == 0 {
            f |= rflags::ZF;
        }
        if r & sign != 0 {
            f |= rflags::SF;
        }
        if of {
            f |= rflags::OF;
        }
        f
    }

    /// Fold the record into `rflags` and mark it materialised.
    pub fn materialize(&mut self, rflags_now: &mut u64) {
        if self.op != CC_EFLAGS {
            *rflags_now = (*rflags_now & !rflags::STATUS) | self.status(*rflags_now);
            self.op = CC_EFLAGS;
        }
    }

    /// Just CF (cheaper than all flags for ADC/SBB/INC/DEC inputs).
    pub fn carry(&self, rflags_now: u64) -> bool {
        self.status(rflags_now) & rflags::CF != 0
    }
}

/// Evaluate condition code `cc` (the low nibble of Jcc/SETcc/CMOVcc, SDM Vol. 1 Appendix B)
/// against materialised status flags.
pub fn condition(cc: u8, f: u64) -> bool {
    let cf = f & rflags::CF != 0;
    let zf = f & rflags::ZF != 0;
    let sf = f & rflags::SF != 0;
    let of = f & rflags::OF != 0;
    let pf = f & rflags::PF != 0;
    let r = match cc >> 1 {
        0 => of,
        1 => cf,
        2 => zf,
        3 => cf || zf,
        4 => sf,
        5 => pf,
        6 => sf != of,
        _ => zf || sf != of,
    };
    r ^ (cc & 1 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags_of(kind: u64, size: u32, a: u64, b: u64, r: u64, aux: u64) -> u64 {
        let mut l = LazyFlags::default();
        l.set(kind, size, a, b, r, aux);
        l.status(rflags::FIXED1)
    }

    #[test]
    fn add_8bit_overflow_and_carry() {
        // 0x7f + 1 = 0x80: OF, SF, AF; no CF.
        let f = flags_of(kind::ADD, 1, 0x7f, 1, 0x80, 0);
        assert_eq!(f, rflags::OF | rflags::SF | rflags::AF);
        // 0xff + 1 = 0x00: CF, ZF, PF, AF.
        let f = flags_of(kind::ADD, 1, 0xff, 1, 0x100, 0);
        assert_eq!(f, rflags::CF | rflags::ZF | rflags::PF | rflags::AF);
    }

    #[test]
    fn sub_borrow_and_conditions() {
        // cmp 1, 2 (32-bit): CF, SF, AF, PF(0xff even).
        let f = flags_of(kind::SUB, 4, 1, 2, 0xffff_ffff, 0);
        assert_eq!(f, rflags::CF | rflags::SF | rflags::AF | rflags::PF);
        assert!(condition(0x2, f)); // b
        assert!(condition(0xc, f)); // l
        assert!(!condition(0x4, f)); // e
        assert!(condition(0xe, f)); // le
        assert!(!condition(0x7, f)); // a
    }

    #[test]
    fn inc_dec_keep_carry() {
        let f = flags_of(kind::INC, 2, 0x7fff, 1, 0x8000, 1);
        assert_eq!(
            f,
            rflags::CF | rflags::OF | rflags::SF | rflags::AF | rflags::PF
        );
        let f = flags_of(kind::DEC, 4, 0x8000_0000, 1, 0x7fff_ffff, 0);
        assert_eq!(f, rflags::OF | rflags::AF | rflags::PF);
    }

    #[test]
    fn shifts() {
        // shl al, 1 with al = 0x81 -> 0x02, CF=1, OF = MSB(res)^CF = 1.
        let f = flags_of(kind::SHL, 1, 0x81, 1, 0x02, 0);
        assert_eq!(f, rflags::CF | rflags::OF);
        // shr eax, 4 with eax = 0x18 -> 1, CF = bit 3 = 1.
        let f = flags_of(kind::SHR, 4, 0x18, 4, 1, 0);
        assert_eq!(f, rflags::CF);
        // sar al, 7 with al = 0x80 -> 0xff, CF = bit 6 = 0.
        let f = flags_of(kind::SAR, 1, 0x80, 7, 0xff, 0);
        assert_eq!(f, rflags::SF | rflags::PF);
    }

    #[test]
    fn materialize_keeps_control_bits() {
        let mut l = LazyFlags::default();
        l.set(kind::LOGIC, 8, 0, 0, 0, 0);
        let mut rf = rflags::FIXED1 | rflags::IF | rflags::DF | rflags::CF;
        l.materialize(&mut rf);
        assert_eq!(
            rf,
            rflags::FIXED1 | rflags::IF | rflags::DF | rflags::ZF | rflags::PF
        );
        assert_eq!(l.op, CC_EFLAGS);
    }

    /// Every lazily recorded kind at 8, 16 and 32 bits. Expected flags worked out by hand
    /// from the SDM definitions; `mask` leaves out flags the SDM calls undefined.
    #[test]
    fn every_kind_at_every_size() {
        const CF: u64 = rflags::CF;
        const PF: u64 = rflags::PF;
        const AF: u64 = rflags::AF;
        const ZF: u64 = rflags::ZF;
        const SF: u64 = rflags::SF;
        const OF: u64 = rflags::OF;
        const ALL: u64 = rflags::STATUS;
        /// kind, size, src1, src2, res, aux, expected, mask
        type Case = (u64, u32, u64, u64, u64, u64, u64, u64);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // kind, size, src1, src2, res, aux, expected, mask
            (kind::ADD, 1, 0x7f, 0x01, 0x80, 0, AF | SF | OF, ALL),
            (kind::ADD, 2, 0xffff, 0x0001, 0x1_0000, 0, CF | PF | AF | ZF, ALL),
            (kind::ADD, 4, 0x7fff_ffff, 1, 0x8000_0000, 0, PF | AF | SF | OF, ALL),
            (kind::ADC, 1, 0xff, 0x00, 0x100, 1, CF | PF | AF | ZF, ALL),
            (kind::ADC, 2, 0x1234, 0x1111, 0x2346, 1, 0, ALL),
            (kind::ADC, 4, 0xffff_ffff, 0xffff_ffff, 0x1_ffff_ffff, 1, CF | PF | AF | SF, ALL),
            (kind::SUB, 1, 0x80, 0x01, 0x7f, 0, AF | OF, ALL),
            (kind::SUB, 2, 0x0001, 0x0002, 0xffff, 0, CF | PF | AF | SF, ALL),
            (kind::SUB, 4, 5, 5, 0, 0, PF | ZF, ALL),
            (kind::SBB, 1, 0x00, 0x00, 0xff, 1, CF | PF | AF | SF, ALL),
            (kind::SBB, 2, 0x8000, 0x0000, 0x7fff, 1, PF | AF | OF, ALL),
            (kind::SBB, 4, 0x10, 0x0f, 0x0, 1, PF | AF | ZF, ALL),
            (kind::LOGIC, 1, 0xff, 0x80, 0x80, 0, SF, ALL),
            (kind::LOGIC, 2, 0x00f0, 0x0f00, 0x0000, 0, PF | ZF, ALL),
            (kind::LOGIC, 4, 0x8000_0001, 0x02, 0x8000_0003, 0, PF | SF, ALL),
            (kind::INC, 1, 0xff, 1, 0x100, 0, PF | AF | ZF, ALL),
            (kind::INC, 4, 0x7fff_ffff, 1, 0x8000_0000, 1, CF | PF | AF | SF | OF, ALL),
            (kind::DEC, 1, 0x80, 1, 0x7f, 0, AF | OF, ALL),
            (kind::DEC, 2, 0x0001, 1, 0x0000, 1, CF | PF | ZF, ALL),
            (kind::SHL, 2, 0x8001, 1, 0x0002, 0, CF | OF, ALL & !AF),
            (kind::SHL, 4, 0x4000_0000, 1, 0x8000_0000, 0, PF | SF | OF, ALL & !AF),
            (kind::SHL, 1, 0x01, 8, 0x100, 0, CF | PF | ZF, CF | PF | ZF | SF),
            (kind::SHR, 2, 0x8000, 1, 0x4000, 0, PF | OF, ALL & !AF),
            (kind::SHR, 4, 0x3, 1, 0x1, 0, CF, ALL & !AF),
            (kind::SHR, 1, 0xf0, 4, 0x0f, 0, PF, CF | PF | ZF | SF),
            (kind::SAR, 2, 0x8001, 1, 0xc000, 0, CF | PF | SF, ALL & !AF),
            (kind::SAR, 4, 0xffff_ffff, 31, 0xffff_ffff, 0, CF | PF | SF, ALL & !AF),
            (kind::SAR, 1, 0x40, 1, 0x20, 0, 0, ALL & !AF),
            (kind::MUL, 1, 0x80, 0x02, 0x00, 1, CF | OF, CF | OF),
            (kind::MUL, 2, 0x100, 0x100, 0x0000, 1, CF | OF, CF | OF),
            (kind::MUL, 4, 2, 3, 6, 0, 0, CF | OF),
        ];
        for &(k, size, a, b, r, aux, expected, mask) in cases {
            let got = flags_of(k, size, a, b, r, aux);
            assert_eq!(
                got & mask,
                expected & mask,
                "kind {k} size {size} {a:#x},{b:#x} -> {r:#x}: got {got:#x}"
            );
        }
    }

    #[test]
    fn all_sixteen_conditions() {
        // Flags: CF=1, ZF=0, SF=1, OF=0, PF=1.
        let f = rflags::CF | rflags::SF | rflags::PF;
        // o no b ae e ne be a s ns p np l ge le g
        let expected = [
            false, true, true, false, false, true, true, false, true, false, true, false, true,
            false, true, false,
        ];
        for (cc, e) in expected.iter().enumerate() {
            assert_eq!(condition(cc as u8, f), *e, "cc {cc:#x}");
        }
    }
}
