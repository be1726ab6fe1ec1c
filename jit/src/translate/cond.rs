//! Condition codes from the lazy-flags record known at translation time.
//!
//! When the instruction that set the flags was translated in the same block, its kind, size and
//! operand values are known, so Jcc (and the carry input of INC/DEC) becomes a direct comparison:
//! `cmp a, b; jb` is `a <u b`, `test; jz` is `res == 0`. Kinds not handled here (shifts,
//! multiplications, flags coming from before the block) go through the condition helper, which
//! evaluates `flags::condition` over the stored record.

use std::mem::offset_of;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use vcpu::CpuState;

use crate::context::JitContext;
use crate::flags::{kind, LazyFlags, CC_EFLAGS};

use super::emit::{PendingFlags, Tx};

/// Whether flags of `kind` are computed inline.
fn inline_kind(k: u64) -> bool {
    matches!(
        k,
        kind::ADD | kind::SUB | kind::LOGIC | kind::INC | kind::DEC
    )
}

/// Shift kinds, whose translations keep CF in `aux` (see `Tx::shift`).
fn shift_kind(k: u64) -> bool {
    matches!(k, kind::SHL | kind::SHR | kind::SAR)
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
            // INC/DEC (CF before), MUL, shifts (the last bit out): CF is in `aux`.
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
            None if cc >> 1 == 1 => {
                let c = self.stored_carry();
                return if cc & 1 != 0 {
                    self.b.ins().bxor_imm_u(c, 1)
                } else {
                    c
                };
            }
            // Shifts: CF is in `aux`; OF (conditions O, L, LE) goes through the helper.
            Some(p) if shift_kind(p.kind) && !matches!(cc >> 1, 0 | 6 | 7) => p,
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

    /// CF (an i8 truth value) from the lazy-flags record stored in the context, i.e. flags set
    /// before this block: computed inline for the kinds whose CF is a comparison or a stored
    /// bit (as `LazyFlags::status` does), through the helper for the others.
    pub fn stored_carry(&mut self) -> Value {
        self.store_flags(true);
        let fl = offset_of!(JitContext, flags);
        let field = |tx: &mut Self, off: usize| tx.load_ctx(types::I64, (fl + off) as i32);
        let op = field(self, offset_of!(LazyFlags, op));
        let src1 = field(self, offset_of!(LazyFlags, src1));
        let src2 = field(self, offset_of!(LazyFlags, src2));
        let res = field(self, offset_of!(LazyFlags, res));
        let aux = field(self, offset_of!(LazyFlags, aux));
        let rflags = self.load_ctx(
            types::I64,
            (offset_of!(JitContext, cpu) + offset_of!(CpuState, rflags)) as i32,
        );
        let k = self.b.ins().ushr_imm_u(op, 2);
        // Compare the operands' low `8 << (op & 3)` bits by shifting them to the top.
        let size_idx = self.and_c(op, 3);
        let eight = self.c64(8);
        let bits = self.b.ins().ishl(eight, size_idx);
        let sixty_four = self.c64(64);
        let sh = self.b.ins().isub(sixty_four, bits);
        let (a, b, r) = (
            self.b.ins().ishl(src1, sh),
            self.b.ins().ishl(src2, sh),
            self.b.ins().ishl(res, sh),
        );
        let cf_add = self.b.ins().icmp(IntCC::UnsignedLessThan, r, a);
        let cf_sub = self.b.ins().icmp(IntCC::UnsignedLessThan, a, b);
        let aux1 = self.and_c(aux, 1);
        let cf_aux = self.b.ins().icmp_imm_u(IntCC::NotEqual, aux1, 0);
        let cf_eflags = self.and_c(rflags, vcpu::state::rflags::CF);
        let cf_eflags = self.b.ins().icmp_imm_u(IntCC::NotEqual, cf_eflags, 0);
        let zero = self.b.ins().iconst(types::I8, 0);
        let is_add = self.b.ins().icmp_imm_u(IntCC::Equal, k, kind::ADD as i64);
        let is_sub = self.b.ins().icmp_imm_u(IntCC::Equal, k, kind::SUB as i64);
        let is_logic = self.b.ins().icmp_imm_u(IntCC::Equal, k, kind::LOGIC as i64);
        let is_eflags = self.b.ins().icmp_imm_u(IntCC::Equal, op, CC_EFLAGS as i64);
        // INC, DEC and MUL keep CF in `aux`.
        let cf = self.b.ins().select(is_eflags, cf_eflags, cf_aux);
        let cf = self.b.ins().select(is_logic, zero, cf);
        let cf = self.b.ins().select(is_sub, cf_sub, cf);
        let cf = self.b.ins().select(is_add, cf_add, cf);
        let fast_kinds: u64 = [
            kind::ADD,
            kind::SUB,
            kind::LOGIC,
            kind::INC,
            kind::DEC,
            kind::MUL,
        ]
        .iter()
        .fold(1 << (CC_EFLAGS >> 2), |m, k| m | 1 << k);
        let fast_set = self.c64(fast_kinds);
        let in_set = self.b.ins().ushr(fast_set, k);
        let in_set = self.and_c(in_set, 1);
        let small = self.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, k, 64);
        let in_set = self.b.ins().icmp_imm_u(IntCC::NotEqual, in_set, 0);
        let fast = self.b.ins().band(small, in_set);
        let slow = self.b.create_block();
        let done = self.b.create_block();
        let out = self.b.append_block_param(done, types::I8);
        self.b.ins().brif(fast, done, &[cf.into()], slow, &[]);
        self.b.set_cold_block(slow);
        self.b.switch_to_block(slow);
        let c = self.call_condition(0x2);
        self.b.ins().jump(done, &[c.into()]);
        self.b.switch_to_block(done);
        out
    }

    /// CF as 0/1 in an i64 (the `aux` input of INC/DEC).
    pub fn carry_value(&mut self) -> Value {
        let c = match self.flags {
            Some(p) if inline_kind(p.kind) || shift_kind(p.kind) => self.flag_cf(&p),
            Some(_) => self.call_condition(0x2),
            None => self.stored_carry(),
        };
        self.b.ins().uextend(types::I64, c)
    }
}
