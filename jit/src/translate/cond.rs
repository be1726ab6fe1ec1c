//! Condition codes from the lazy-flags record known at translation time.
//!
//! When the instruction that set the flags was translated in the same block, its kind, size and
//! operand values are known, so Jcc (and the carry input of INC/DEC) becomes a direct comparison:
//! `cmp a, b; jb` is `a <u b`, `test; jz` is `res == 0`. Kinds not handled here (shifts,
//! multiplications, flags coming from before the block) go through the condition helper, which
//! evaluates `flags::condition` over the stored record.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};

use crate::flags::kind;

use super::emit::{PendingFlags, Tx};

/// Whether flags of `kind` are computed inline.
fn inline_kind(k: u64) -> bool {
    matches!(
        k,
        kind::ADD | kind::SUB | kind::LOGIC | kind::INC | kind::DEC
    )
}

impl Tx<'_, '_> {
    fn sign_bit(&mut self, p: &PendingFlags, v: Value) -> Value {
        let sign = 1u64 << (8 * p.size - 1);
        let s = self.and_c(v, sign);
        self.b.ins().icmp_imm_u(IntCC::NotEqual, s, 0)
    }

    fn flag_cf(&mut self, p: &PendingFlags) -> Value {
        match p.kind {
            kind::ADD => self.b.ins().icmp(IntCC::UnsignedLessThan, p.res, p.src1),
            kind::SUB => self.b.ins().icmp(IntCC::UnsignedLessThan, p.src1, p.src2),
            kind::LOGIC => self.b.ins().iconst(types::I8, 0),
            _ => self.b.ins().icmp_imm_u(IntCC::NotEqual, p.aux, 0),
        }
    }

    fn flag_zf(&mut self, p: &PendingFlags) -> Value {
        self.b.ins().icmp_imm_u(IntCC::Equal, p.res, 0)
    }

    fn flag_sf(&mut self, p: &PendingFlags) -> Value {
        self.sign_bit(p, p.res)
    }

    fn flag_of(&mut self, p: &PendingFlags) -> Value {
        let sign = 1u64 << (8 * p.size - 1);
        match p.kind {
            kind::ADD => {
                let x = self.b.ins().bxor(p.src1, p.res);
                let y = self.b.ins().bxor(p.src2, p.res);
                let t = self.b.ins().band(x, y);
                self.sign_bit(p, t)
            }
            kind::SUB => {
                let x = self.b.ins().bxor(p.src1, p.src2);
                let y = self.b.ins().bxor(p.src1, p.res);
                let t = self.b.ins().band(x, y);
                self.sign_bit(p, t)
            }
            kind::LOGIC => self.b.ins().iconst(types::I8, 0),
            kind::INC => self.b.ins().icmp_imm_u(IntCC::Equal, p.res, sign as i64),
            _ => self
                .b
                .ins()
                .icmp_imm_u(IntCC::Equal, p.res, (sign - 1) as i64),
        }
    }

    fn flag_pf(&mut self, p: &PendingFlags) -> Value {
        let low = self.and_c(p.res, 0xff);
        let n = self.b.ins().popcnt(low);
        let odd = self.and_c(n, 1);
        self.b.ins().icmp_imm_u(IntCC::Equal, odd, 0)
    }

    /// Condition `cc` (low nibble of the Jcc opcode, SDM Vol. 1 Appendix B) as an i8 truth
    /// value, inline when the flags were set in this block, else through the helper.
    pub fn condition(&mut self, cc: u8) -> Value {
        let p = match self.flags {
            Some(p) if inline_kind(p.kind) => p,
            _ => return self.call_condition(cc),
        };
        let r = if p.kind == kind::SUB {
            let (a, b) = (p.src1, p.src2);
            match cc >> 1 {
                1 => Some(self.b.ins().icmp(IntCC::UnsignedLessThan, a, b)),
                2 => Some(self.b.ins().icmp(IntCC::Equal, a, b)),
                3 => Some(self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, a, b)),
                6 | 7 => {
                    let sa = self.sext(a, p.size);
                    let sb = self.sext(b, p.size);
                    let c = if cc >> 1 == 6 {
                        IntCC::SignedLessThan
                    } else {
                        IntCC::SignedLessThanOrEqual
                    };
                    Some(self.b.ins().icmp(c, sa, sb))
                }
                _ => None,
            }
        } else {
            None
        };
        let r = match r {
            Some(r) => r,
            None => match cc >> 1 {
                0 => self.flag_of(&p),
                1 => self.flag_cf(&p),
                2 => self.flag_zf(&p),
                3 => {
                    let c = self.flag_cf(&p);
                    let z = self.flag_zf(&p);
                    self.b.ins().bor(c, z)
                }
                4 => self.flag_sf(&p),
                5 => self.flag_pf(&p),
                6 => {
                    let s = self.flag_sf(&p);
                    let o = self.flag_of(&p);
                    self.b.ins().bxor(s, o)
                }
                _ => {
                    let s = self.flag_sf(&p);
                    let o = self.flag_of(&p);
                    let l = self.b.ins().bxor(s, o);
                    let z = self.flag_zf(&p);
                    self.b.ins().bor(l, z)
                }
            },
        };
        if cc & 1 != 0 {
            self.b.ins().bxor_imm_u(r, 1)
        } else {
            r
        }
    }

    /// CF as 0/1 in an i64 (the `aux` input of INC/DEC).
    pub fn carry_value(&mut self) -> Value {
        let c = match self.flags {
            Some(p) if inline_kind(p.kind) => self.flag_cf(&p),
            _ => self.call_condition(0x2),
        };
        self.b.ins().uextend(types::I64, c)
    }
}
