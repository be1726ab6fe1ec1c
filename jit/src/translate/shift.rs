//! Shifts and rotates translated inline: SHL/SAL, SHR, SAR, ROL and ROR by an immediate or by
//! CL (SDM Vol. 2B SAL/SAR/SHL/SHR, RCL/RCR/ROL/ROR), with the interpreter's flag semantics
//! (`interp::shift`, tested against QEMU).
//!
//! The count is masked to 5 bits (6 for 64-bit operands). A masked count of 0 changes neither
//! the destination nor the flags, but still writes a 32-bit register in 64-bit mode (clearing
//! its upper half): an immediate count of 0 leaves the instruction to the interpreter; a CL
//! count of 0 takes a cold path that does just that and keeps the old flags record, and since
//! the two paths end with different records, both store theirs into the context before they
//! join (Linux's boot runs about a million `shl r32, cl` with CL = 0, so leaving the block
//! there would cost). Shifts record their lazy kind
//! with CF (the last bit shifted out) in `aux` for inline conditions; rotates change only CF
//! and OF, so their flags are computed eagerly from the kept SF, ZF, AF and PF
//! ([`EAGER_KIND`]). RCL/RCR stay with the interpreter.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, Block, InstBuilder, Value};
use iced_x86::{Instruction, Mnemonic, OpKind, Register};
use vcpu::state::rflags;

use crate::flags::kind;

use super::emit::{Tx, EAGER_KIND};
use super::insn::{Done, MemCache, Opnd};
use super::regs::gpr_info;

impl Tx<'_, '_> {
    /// The masked count of a shift or rotate of the `size`-byte operand `d`, as an i64, and
    /// for a CL count the block where the count-0 path joins; `None` when the count operand is
    /// not an immediate or CL, or is an immediate masking to 0.
    ///
    /// For CL, the masked count of 0 branches to a cold path doing what the interpreter does
    /// then: nothing but the upper-half clear of a 32-bit register in 64-bit mode; it stores
    /// the flags record as it was, so the main path must store its own before the join
    /// ([`Self::join_count_paths`]), after which the flags live in the context.
    fn masked_count(
        &mut self,
        insn: &Instruction,
        size: u32,
        d: Opnd,
    ) -> Option<(Value, Option<Block>)> {
        let mask = if size == 8 { 0x3f } else { 0x1f };
        match insn.op1_kind() {
            OpKind::Immediate8 => {
                let n = u64::from(insn.immediate8()) & mask;
                (n != 0).then(|| (self.c64(n), None))
            }
            OpKind::Register if insn.op1_register() == Register::CL => {
                let cl = gpr_info(Register::CL)?;
                let c = self.read_reg(cl);
                let n = self.and_c(c, mask);
                let zero = self.b.ins().icmp_imm_u(IntCC::Equal, n, 0);
                let unchanged = self.b.create_block();
                let main = self.b.create_block();
                let join = self.b.create_block();
                self.b.ins().brif(zero, unchanged, &[], main, &[]);
                self.b.set_cold_block(unchanged);
                self.b.switch_to_block(unchanged);
                if let (64, 4, Opnd::Reg(g)) = (self.env.mode.bitness, size, d) {
                    let v = self.read_reg(g);
                    self.write_reg(g, v);
                }
                self.store_flags(false);
                self.b.ins().jump(join, &[]);
                self.b.switch_to_block(main);
                Some((n, Some(join)))
            }
            _ => None,
        }
    }

    /// End the main path of a CL-count instruction (`join` from [`Self::masked_count`]):
    /// store its flags and continue where the count-0 path joins.
    fn join_count_paths(&mut self, join: Option<Block>) {
        if let Some(join) = join {
            self.store_flags(false);
            self.b.ins().jump(join, &[]);
            self.b.switch_to_block(join);
            self.flags = None;
            self.flags_stored = true;
            self.entry_cf = None;
        }
    }

    /// SHL/SAL, SHR, SAR r/m, imm8 / 1 / CL.
    pub(super) fn shift(&mut self, insn: &Instruction) -> Done {
        if insn.op_count() != 2 || insn.has_lock_prefix() {
            return Done::NotHandled;
        }
        let Some(d) = self.opnd(insn, 0, true, true) else {
            return Done::NotHandled;
        };
        let size = Self::opnd_size(insn, d);
        let Some((n, join)) = self.masked_count(insn, size, d) else {
            return Done::NotHandled;
        };
        let mut ea = MemCache::rmw();
        let a = self.read_opnd(insn, d, size, &mut ea);
        let mn = insn.mnemonic();
        let r = match mn {
            Mnemonic::Shr => self.b.ins().ushr(a, n),
            // A 32-bit arithmetic shift, rather than sign-extending to 64 bits first.
            Mnemonic::Sar if size == 4 => {
                let a32 = self.low32(a);
                let n32 = self.low32(n);
                let r = self.b.ins().sshr(a32, n32);
                self.b.ins().uextend(types::I64, r)
            }
            Mnemonic::Sar => {
                let s = self.sext(a, size);
                self.b.ins().sshr(s, n)
            }
            _ => self.b.ins().ishl(a, n),
        };
        let r = self.zext(r, size);
        self.write_opnd(insn, d, size, r, &mut ea);
        // CF, the last bit shifted out, as `LazyFlags::status` derives it from the count: kept
        // in `aux` so conditions on CF stay inline (the interpreter's record leaves `aux` 0,
        // which `status` ignores for shifts).
        let bits = 8 * i64::from(size);
        let last_out = match mn {
            // Bit n-1; for n > bits, above the zero-extended value: 0.
            Mnemonic::Shr => {
                let k = self.add_c(n, u64::MAX);
                self.b.ins().ushr(a, k)
            }
            // Bit n-1 of the sign-extended value: the sign once n > bits.
            Mnemonic::Sar => {
                let k = self.add_c(n, u64::MAX);
                let s = self.sext(a, size);
                self.b.ins().sshr(s, k)
            }
            // Bit `bits` of a << n: bit bits-n of a, 0 for n > bits (n < 64 here).
            _ if size == 8 => {
                let sixty_four = self.c64(64);
                let k = self.b.ins().isub(sixty_four, n);
                self.b.ins().ushr(a, k)
            }
            _ => {
                let wide = self.b.ins().ishl(a, n);
                self.b.ins().ushr_imm_u(wide, bits)
            }
        };
        let cf = self.and_c(last_out, 1);
        let k = match mn {
            Mnemonic::Shr => kind::SHR,
            Mnemonic::Sar => kind::SAR,
            _ => kind::SHL,
        };
        self.set_flags(k, size, a, n, r, cf);
        self.join_count_paths(join);
        Done::Inline
    }

    /// ROL, ROR r/m, imm8 / 1 / CL: CF and OF from the result as the interpreter computes them
    /// (for every non-zero count, also multi-bit ones where the SDM leaves OF undefined); SF,
    /// ZF, AF and PF kept.
    pub(super) fn rotate(&mut self, insn: &Instruction) -> Done {
        if insn.op_count() != 2 || insn.has_lock_prefix() {
            return Done::NotHandled;
        }
        let Some(d) = self.opnd(insn, 0, true, true) else {
            return Done::NotHandled;
        };
        let size = Self::opnd_size(insn, d);
        let Some((n, join)) = self.masked_count(insn, size, d) else {
            return Done::NotHandled;
        };
        let kept = self.status_szap();
        let mut ea = MemCache::rmw();
        let a = self.read_opnd(insn, d, size, &mut ea);
        let left = insn.mnemonic() == Mnemonic::Rol;
        let bits = 8 * u64::from(size);
        // The rotation count n mod bits (bits divides the count mask + 1).
        let k = self.and_c(n, bits - 1);
        let r = if size == 8 {
            if left {
                self.b.ins().rotl(a, k)
            } else {
                self.b.ins().rotr(a, k)
            }
        } else {
            // a is zero-extended and bits <= 32, so with k = 0 the shift by `bits` gives 0 (or
            // only bits masked off below) and r = a.
            let width = self.c64(bits);
            let back = self.b.ins().isub(width, k);
            let (x, y) = if left {
                (self.b.ins().ishl(a, k), self.b.ins().ushr(a, back))
            } else {
                (self.b.ins().ushr(a, k), self.b.ins().ishl(a, back))
            };
            let r = self.b.ins().bor(x, y);
            self.zext(r, size)
        };
        self.write_opnd(insn, d, size, r, &mut ea);
        let msb = self.b.ins().ushr_imm_u(r, (bits - 1) as i64);
        let msb = self.and_c(msb, 1);
        let (cf, of) = if left {
            let cf = self.and_c(r, 1);
            (cf, self.b.ins().bxor(msb, cf))
        } else {
            let second = self.b.ins().ushr_imm_u(r, (bits - 2) as i64);
            let second = self.and_c(second, 1);
            (msb, self.b.ins().bxor(msb, second))
        };
        let cf = self.b.ins().imul_imm_u(cf, rflags::CF as i64);
        let of = self.b.ins().imul_imm_u(of, rflags::OF as i64);
        let f = self.b.ins().bor(kept, cf);
        let f = self.b.ins().bor(f, of);
        let zero = self.c64(0);
        self.set_flags(EAGER_KIND, size, a, n, f, zero);
        self.join_count_paths(join);
        Done::Inline
    }
}
