//! Condition codes from the lazy-flags record known at translation time.
//!
//! When the instruction that set the flags was translated in the same block, its kind, size and
//! operand values are known, so Jcc (and the carry input of INC/DEC) becomes a direct comparison:
//! `cmp a, b; jb` is `a <u b`, `test; jz` is `res == 0`. CF at the start of a region block
//! whose first instructions need it (INC/DEC keep it) arrives along the region's edges as a
//! value (`Tx::pass_carry`), computed from the record each edge knows. Flags coming from before
//! the function are evaluated inline from the stored record for CF, ZF and SF; the other
//! conditions of kinds not handled here go through the condition helper, which evaluates
//! `interp::cond::holds` over the stored record.

use std::mem::offset_of;

use cranelift_codegen::ir::condcodes::{CondCode, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, InstructionData, Value, ValueDef};
use vcpu::state::rflags;

use crate::context::JitContext;
use crate::flags::{kind, LazyFlags, CC_EFLAGS};

use super::emit::{PendingFlags, Tx, EAGER_KIND, RFLAGS_OFFSET};

/// Whether flags of `kind` are computed inline.
fn inline_kind(k: u64) -> bool {
    matches!(
        k,
        kind::ADD
            | kind::ADC
            | kind::SUB
            | kind::SBB
            | kind::LOGIC
            | kind::INC
            | kind::DEC
            | EAGER_KIND
    )
}

/// Whether CF of a pending record of `kind` is computed inline from its values
/// (`Tx::flag_cf`).
pub(super) fn cf_inline(k: u64) -> bool {
    inline_kind(k) || shift_kind(k)
}

/// Shift kinds, whose translations keep CF in `aux` (see `Tx::shift`).
fn shift_kind(k: u64) -> bool {
    matches!(k, kind::SHL | kind::SHR | kind::SAR)
}

/// The lazy-flags record as stored in the context, loaded into values (see
/// `Tx::stored_record`).
struct StoredRecord {
    op: Value,
    src1: Value,
    src2: Value,
    res: Value,
    aux: Value,
    /// RFLAGS as stored.
    rf: Value,
    /// The record's kind (`op >> 2`).
    k: Value,
    /// `64 - (8 << (op & 3))`: shifts an operand's low bits to the top.
    sh: Value,
}

impl Tx<'_, '_> {
    fn sign_bit(&mut self, p: &PendingFlags, v: Value) -> Value {
        let sign = 1u64 << (8 * p.size - 1);
        let s = self.and_c(v, sign);
        self.b.ins().icmp_imm_u(IntCC::NotEqual, s, 0)
    }

    /// Bit `bit` of the status bits of an [`EAGER_KIND`] record, as an i8 truth value.
    fn eager_bit(&mut self, p: &PendingFlags, bit: u64) -> Value {
        let v = self.and_c(p.res, bit);
        self.b.ins().icmp_imm_u(IntCC::NotEqual, v, 0)
    }

    /// `if aux { x <= y } else { x < y }` (unsigned): CF of ADC (`r <= a` / `r < a`) and SBB
    /// (`a <= b` / `a < b`) with carry-in `aux`, as `LazyFlags::status` computes it.
    fn carry_in_compare(&mut self, aux: Value, x: Value, y: Value) -> Value {
        let le = self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, x, y);
        let lt = self.b.ins().icmp(IntCC::UnsignedLessThan, x, y);
        let c = self.and_c(aux, 1);
        let c = self.b.ins().icmp_imm_u(IntCC::NotEqual, c, 0);
        self.b.ins().select(c, le, lt)
    }

    fn flag_cf(&mut self, p: &PendingFlags) -> Value {
        match p.kind {
            kind::ADD => self.b.ins().icmp(IntCC::UnsignedLessThan, p.res, p.src1),
            kind::SUB => self.b.ins().icmp(IntCC::UnsignedLessThan, p.src1, p.src2),
            kind::ADC => self.carry_in_compare(p.aux, p.res, p.src1),
            kind::SBB => self.carry_in_compare(p.aux, p.src1, p.src2),
            kind::LOGIC => self.b.ins().iconst(types::I8, 0),
            EAGER_KIND => self.eager_bit(p, rflags::CF),
            // INC/DEC (CF before), MUL, shifts (the last bit out): CF is in `aux`.
            _ => self.b.ins().icmp_imm_u(IntCC::NotEqual, p.aux, 0),
        }
    }

    fn flag_zf(&mut self, p: &PendingFlags) -> Value {
        if p.kind == EAGER_KIND {
            return self.eager_bit(p, rflags::ZF);
        }
        self.b.ins().icmp_imm_u(IntCC::Equal, p.res, 0)
    }

    fn flag_sf(&mut self, p: &PendingFlags) -> Value {
        if p.kind == EAGER_KIND {
            return self.eager_bit(p, rflags::SF);
        }
        self.sign_bit(p, p.res)
    }

    fn flag_of(&mut self, p: &PendingFlags) -> Value {
        let sign = 1u64 << (8 * p.size - 1);
        match p.kind {
            kind::ADD | kind::ADC => {
                let x = self.b.ins().bxor(p.src1, p.res);
                let y = self.b.ins().bxor(p.src2, p.res);
                let t = self.b.ins().band(x, y);
                self.sign_bit(p, t)
            }
            kind::SUB | kind::SBB => {
                let x = self.b.ins().bxor(p.src1, p.src2);
                let y = self.b.ins().bxor(p.src1, p.res);
                let t = self.b.ins().band(x, y);
                self.sign_bit(p, t)
            }
            kind::LOGIC => self.b.ins().iconst(types::I8, 0),
            kind::INC => self.b.ins().icmp_imm_u(IntCC::Equal, p.res, sign as i64),
            EAGER_KIND => self.eager_bit(p, rflags::OF),
            _ => self
                .b
                .ins()
                .icmp_imm_u(IntCC::Equal, p.res, (sign - 1) as i64),
        }
    }

    fn flag_pf(&mut self, p: &PendingFlags) -> Value {
        if p.kind == EAGER_KIND {
            return self.eager_bit(p, rflags::PF);
        }
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
            None if matches!(cc >> 1, 1 | 2 | 4) => {
                let c = match cc >> 1 {
                    1 => self.carry_flag(),
                    2 => self.stored_zf_sf(true),
                    _ => self.stored_zf_sf(false),
                };
                return if cc & 1 != 0 { self.negate(c) } else { c };
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
            self.negate(r)
        } else {
            r
        }
    }

    /// The negation of the i8 truth value `v`. When `v` is a comparison, the complementary
    /// comparison of the same operands (the original, now unused, is dropped by lowering), so
    /// a branch on it still fuses into compare-and-jump instead of SETcc/XOR/TEST.
    fn negate(&mut self, v: Value) -> Value {
        if let ValueDef::Result(inst, 0) = self.b.func.dfg.value_def(v) {
            if let InstructionData::IntCompare { cond, args, .. } = self.b.func.dfg.insts[inst] {
                return self.b.ins().icmp(cond.complement(), args[0], args[1]);
            }
        }
        self.b.ins().bxor_imm_u(v, 1)
    }

    /// Load the lazy-flags record stored in the context (storing the pending one first) and
    /// RFLAGS, with the record's kind and the shift that moves an operand's low
    /// `8 << (op & 3)` bits to the top of 64.
    fn stored_record(&mut self) -> StoredRecord {
        self.store_flags(true);
        let fl = offset_of!(JitContext, flags);
        let field = |tx: &mut Self, off: usize| tx.load_ctx(types::I64, (fl + off) as i32);
        let op = field(self, offset_of!(LazyFlags, op));
        let src1 = field(self, offset_of!(LazyFlags, src1));
        let src2 = field(self, offset_of!(LazyFlags, src2));
        let res = field(self, offset_of!(LazyFlags, res));
        let aux = field(self, offset_of!(LazyFlags, aux));
        let rf = self.load_ctx(types::I64, RFLAGS_OFFSET);
        let k = self.b.ins().ushr_imm_u(op, 2);
        let size_idx = self.and_c(op, 3);
        let eight = self.c64(8);
        let bits = self.b.ins().ishl(eight, size_idx);
        let sixty_four = self.c64(64);
        let sh = self.b.ins().isub(sixty_four, bits);
        StoredRecord {
            op,
            src1,
            src2,
            res,
            aux,
            rf,
            k,
            sh,
        }
    }

    /// CF (an i8 truth value) from the lazy-flags record stored in the context, i.e. flags set
    /// before this block (or by a shift by CL): computed inline for every kind, as
    /// `LazyFlags::status` does (a comparison, a stored bit or the last bit shifted out); the
    /// helper remains for op values no kind has.
    pub fn stored_carry(&mut self) -> Value {
        let StoredRecord {
            op,
            src1,
            src2,
            res,
            aux,
            rf,
            k,
            sh,
        } = self.stored_record();
        let sixty_four = self.c64(64);
        // Compare the operands' low `8 << (op & 3)` bits by shifting them to the top.
        let (a, b, r) = (
            self.b.ins().ishl(src1, sh),
            self.b.ins().ishl(src2, sh),
            self.b.ins().ishl(res, sh),
        );
        let cf_add = self.b.ins().icmp(IntCC::UnsignedLessThan, r, a);
        let cf_sub = self.b.ins().icmp(IntCC::UnsignedLessThan, a, b);
        let cf_adc = self.carry_in_compare(aux, r, a);
        let cf_sbb = self.carry_in_compare(aux, a, b);
        let aux1 = self.and_c(aux, 1);
        let cf_aux = self.b.ins().icmp_imm_u(IntCC::NotEqual, aux1, 0);
        let cf_eflags = self.and_c(rf, rflags::CF);
        let cf_eflags = self.b.ins().icmp_imm_u(IntCC::NotEqual, cf_eflags, 0);
        let zero = self.b.ins().iconst(types::I8, 0);
        let is_add = self.b.ins().icmp_imm_u(IntCC::Equal, k, kind::ADD as i64);
        let is_sub = self.b.ins().icmp_imm_u(IntCC::Equal, k, kind::SUB as i64);
        let is_adc = self.b.ins().icmp_imm_u(IntCC::Equal, k, kind::ADC as i64);
        let is_sbb = self.b.ins().icmp_imm_u(IntCC::Equal, k, kind::SBB as i64);
        let is_logic = self.b.ins().icmp_imm_u(IntCC::Equal, k, kind::LOGIC as i64);
        let is_eflags = self.b.ins().icmp_imm_u(IntCC::Equal, op, CC_EFLAGS as i64);
        // INC, DEC and MUL keep CF in `aux`.
        let cf = self.b.ins().select(is_eflags, cf_eflags, cf_aux);
        let cf = self.b.ins().select(is_logic, zero, cf);
        let cf = self.b.ins().select(is_sub, cf_sub, cf);
        let cf = self.b.ins().select(is_add, cf_add, cf);
        // Shifts (as `LazyFlags::status`, from the value before and the count, since the
        // interpreter's records leave `aux` 0): SHL takes bit bits-n of the value, which is bit
        // 64-n of `a` (0 once n > bits: below the value in `a`); SHR bit n-1 of the value; SAR
        // bit n-1 of the sign-extended value (the sign once n > bits). 1 <= n <= 63.
        let n = self.and_c(src2, 63);
        let n_minus_1 = self.add_c(n, u64::MAX);
        let up = self.b.ins().isub(sixty_four, n);
        let shl_out = self.b.ins().ushr(a, up);
        let value = self.b.ins().ushr(a, sh);
        let shr_out = self.b.ins().ushr(value, n_minus_1);
        let signed = self.b.ins().sshr(a, sh);
        let sar_out = self.b.ins().sshr(signed, n_minus_1);
        let bit = |tx: &mut Self, v: Value| {
            let v = tx.and_c(v, 1);
            tx.b.ins().icmp_imm_u(IntCC::NotEqual, v, 0)
        };
        let (cf_shl, cf_shr, cf_sar) = (bit(self, shl_out), bit(self, shr_out), bit(self, sar_out));
        let is_shl = self.b.ins().icmp_imm_u(IntCC::Equal, k, kind::SHL as i64);
        let is_shr = self.b.ins().icmp_imm_u(IntCC::Equal, k, kind::SHR as i64);
        let is_sar = self.b.ins().icmp_imm_u(IntCC::Equal, k, kind::SAR as i64);
        let cf = self.b.ins().select(is_shl, cf_shl, cf);
        let cf = self.b.ins().select(is_shr, cf_shr, cf);
        let cf = self.b.ins().select(is_sar, cf_sar, cf);
        let cf = self.b.ins().select(is_adc, cf_adc, cf);
        let cf = self.b.ins().select(is_sbb, cf_sbb, cf);
        let fast_kinds: u64 = [
            kind::ADD,
            kind::ADC,
            kind::SUB,
            kind::SBB,
            kind::LOGIC,
            kind::INC,
            kind::DEC,
            kind::MUL,
            kind::SHL,
            kind::SHR,
            kind::SAR,
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

    /// ZF (`zf`) or SF (an i8 truth value) from the lazy-flags record stored in the context
    /// (flags set before this basic block, e.g. a CMP before a region edge and the JE after
    /// it): every kind keeps its result in `res` (`LazyFlags::status`), a materialised record
    /// has them in RFLAGS.
    fn stored_zf_sf(&mut self, zf: bool) -> Value {
        let StoredRecord {
            op, res, rf, sh, ..
        } = self.stored_record();
        let top = self.b.ins().ishl(res, sh);
        let (lazy, bit) = if zf {
            (self.b.ins().icmp_imm_u(IntCC::Equal, top, 0), rflags::ZF)
        } else {
            (
                self.b.ins().icmp_imm_u(IntCC::SignedLessThan, top, 0),
                rflags::SF,
            )
        };
        let eager = self.and_c(rf, bit);
        let eager = self.b.ins().icmp_imm_u(IntCC::NotEqual, eager, 0);
        let is_eflags = self.b.ins().icmp_imm_u(IntCC::Equal, op, CC_EFLAGS as i64);
        self.b.ins().select(is_eflags, eager, lazy)
    }

    /// SF, ZF, AF and PF of the current flags at their RFLAGS positions in an i64 (the status
    /// bits a rotate keeps, SDM Vol. 2B RCL/RCR/ROL/ROR), computed inline as
    /// `LazyFlags::status` would: from the pending record, or from the record stored in the
    /// context for flags set before this block.
    pub fn status_szap(&mut self) -> Value {
        const SZAP: u64 = rflags::SF | rflags::ZF | rflags::AF | rflags::PF;
        if let Some(p) = self.flags {
            if p.kind == EAGER_KIND {
                return self.and_c(p.res, SZAP);
            }
            let bit = |tx: &mut Self, c: Value, flag: u64| {
                let v = tx.b.ins().uextend(types::I64, c);
                tx.b.ins().imul_imm_u(v, flag as i64)
            };
            let sf = self.flag_sf(&p);
            let zf = self.flag_zf(&p);
            let pf = self.flag_pf(&p);
            let (sf, zf, pf) = (
                bit(self, sf, rflags::SF),
                bit(self, zf, rflags::ZF),
                bit(self, pf, rflags::PF),
            );
            let af = match p.kind {
                kind::ADD | kind::ADC | kind::SUB | kind::SBB => {
                    let x = self.b.ins().bxor(p.src1, p.src2);
                    let x = self.b.ins().bxor(x, p.res);
                    self.and_c(x, rflags::AF)
                }
                kind::INC | kind::DEC => {
                    let low = self.and_c(p.res, 0xf);
                    let want = if p.kind == kind::INC { 0 } else { 0xf };
                    let c = self.b.ins().icmp_imm_u(IntCC::Equal, low, want);
                    bit(self, c, rflags::AF)
                }
                // LOGIC, shifts, MUL: AF = 0 in `LazyFlags::status`.
                _ => self.c64(0),
            };
            let f = self.b.ins().bor(sf, zf);
            let f = self.b.ins().bor(f, pf);
            return self.b.ins().bor(f, af);
        }
        self.stored_szap(SZAP)
    }

    /// [`Self::status_szap`] for the record stored in the context (`szap` = the four bits).
    fn stored_szap(&mut self, szap: u64) -> Value {
        let StoredRecord {
            op,
            src1,
            src2,
            res,
            rf,
            k,
            sh,
            ..
        } = self.stored_record();
        // The result's low `8 << (op & 3)` bits, shifted to the top.
        let top = self.b.ins().ishl(res, sh);
        let zf = self.b.ins().icmp_imm_u(IntCC::Equal, top, 0);
        let zf = self.b.ins().uextend(types::I64, zf);
        let zf = self.b.ins().imul_imm_u(zf, rflags::ZF as i64);
        let sf = self.b.ins().ushr_imm_u(top, 63);
        let sf = self.b.ins().imul_imm_u(sf, rflags::SF as i64);
        let low = self.and_c(res, 0xff);
        let ones = self.b.ins().popcnt(low);
        let even = self.b.ins().bxor_imm_u(ones, 1);
        let even = self.and_c(even, 1);
        let pf = self.b.ins().imul_imm_u(even, rflags::PF as i64);
        // AF: (a ^ b ^ r) bit 4 for ADD, ADC, SUB, SBB (kinds 1..=4); INC: low nibble 0; DEC:
        // low nibble 0xf; 0 for the others.
        let x = self.b.ins().bxor(src1, src2);
        let x = self.b.ins().bxor(x, res);
        let af_arith = self.and_c(x, rflags::AF);
        let nibble = self.and_c(res, 0xf);
        let inc_af = self.b.ins().icmp_imm_u(IntCC::Equal, nibble, 0);
        let dec_af = self.b.ins().icmp_imm_u(IntCC::Equal, nibble, 0xf);
        let is_inc = self.b.ins().icmp_imm_u(IntCC::Equal, k, kind::INC as i64);
        let is_dec = self.b.ins().icmp_imm_u(IntCC::Equal, k, kind::DEC as i64);
        let inc_af = self.b.ins().band(inc_af, is_inc);
        let dec_af = self.b.ins().band(dec_af, is_dec);
        let af_step = self.b.ins().bor(inc_af, dec_af);
        let af_step = self.b.ins().uextend(types::I64, af_step);
        let af_step = self.b.ins().imul_imm_u(af_step, rflags::AF as i64);
        let k1 = self.add_c(k, u64::MAX);
        let arith = self.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, k1, 4);
        let af = self.b.ins().select(arith, af_arith, af_step);
        let f = self.b.ins().bor(zf, sf);
        let f = self.b.ins().bor(f, pf);
        let lazy = self.b.ins().bor(f, af);
        let eager = self.and_c(rf, szap);
        let is_eflags = self.b.ins().icmp_imm_u(IntCC::Equal, op, CC_EFLAGS as i64);
        self.b.ins().select(is_eflags, eager, lazy)
    }

    /// CF as 0/1 in an i64 (the `aux` input of INC/DEC).
    pub fn carry_value(&mut self) -> Value {
        let c = self.carry_flag();
        self.b.ins().uextend(types::I64, c)
    }

    /// CF as an i8 truth value: from the pending record, from the block's entry CF passed
    /// along the region's edges, or from the record stored in the context.
    pub fn carry_flag(&mut self) -> Value {
        match (self.flags, self.entry_cf) {
            (Some(p), _) if cf_inline(p.kind) => self.flag_cf(&p),
            (Some(_), _) => self.call_condition(0x2),
            (None, Some(cf)) => cf,
            (None, None) => self.stored_carry(),
        }
    }
}
