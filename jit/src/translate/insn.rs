//! Inline translation of the frequent instructions.
//!
//! Each handler first checks, without emitting anything, that it can translate the instruction
//! (operand kinds, segment permissions from the mode key); if not, the caller sends the
//! instruction to the interpreter helper. Handlers perform every access that can fault before
//! they commit registers and flags, so a fault leaves the state of before the instruction.

use cranelift_codegen::ir::{types, InstBuilder, Value};
use iced_x86::{Code, Instruction, Mnemonic, OpKind};
use vcpu::state::gpr::{RCX, RSP};

use crate::flags::kind;

use super::emit::Tx;
use super::memory::{is_mem, mem_ref, MemRef, Probe};
use super::regs::{gpr_info, GprInfo};

/// SS in `CpuState::seg`.
const SS: usize = 2;

/// An analysed operand.
#[derive(Debug, Clone, Copy)]
pub(super) enum Opnd {
    Reg(GprInfo),
    Mem(MemRef),
    Imm(u64),
}

/// The memory operand of the instruction being translated, computed once: its effective
/// address and, for read-modify-write operands, the write probe shared by the load and the
/// store.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MemCache {
    ea: Option<Value>,
    probe: Option<Probe>,
    /// The operand is read and then written: probe once, for writing.
    rmw: bool,
}

impl MemCache {
    pub(super) fn rmw() -> Self {
        Self {
            rmw: true,
            ..Self::default()
        }
    }
}

/// What translating one instruction did to the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Done {
    /// Translated inline; the block continues.
    Inline,
    /// Translated inline and the block was left (control transfer).
    Ended,
    /// Not translatable here: the caller uses the interpreter.
    NotHandled,
}

/// Whether operand kind `k` is an immediate of the instruction's (first) immediate operand.
pub(crate) fn is_imm(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

impl Tx<'_, '_> {
    /// Whether the mode key lets memory operand `m` be read (or written) inline.
    pub(super) fn seg_ok(&self, m: MemRef, write: bool) -> bool {
        let bit = if write { 2 } else { 1 } << (2 * m.seg);
        self.env.mode.seg_access & bit != 0
    }

    /// Analyse operand `op`; memory operands must allow the given accesses inline.
    pub(super) fn opnd(
        &self,
        insn: &Instruction,
        op: u32,
        read: bool,
        write: bool,
    ) -> Option<Opnd> {
        let k = insn.op_kind(op);
        if k == OpKind::Register {
            return gpr_info(insn.op_register(op)).map(Opnd::Reg);
        }
        if is_mem(insn, op) {
            let m = mem_ref(insn, self.env.mode.bitness)?;
            if (read && !self.seg_ok(m, false)) || (write && !self.seg_ok(m, true)) {
                return None;
            }
            return Some(Opnd::Mem(m));
        }
        if is_imm(k) && !write {
            return Some(Opnd::Imm(insn.immediate(op)));
        }
        None
    }

    pub(super) fn opnd_size(insn: &Instruction, o: Opnd) -> u32 {
        match o {
            Opnd::Reg(g) => g.size,
            Opnd::Mem(_) => insn.memory_size().size() as u32,
            Opnd::Imm(_) => 0,
        }
    }

    pub fn read_reg(&mut self, g: GprInfo) -> Value {
        let v = self.gpr(g.index);
        if g.high8 {
            let sh = self.c64(8);
            let v = self.b.ins().ushr(v, sh);
            self.and_c(v, 0xff)
        } else {
            self.zext(v, g.size)
        }
    }

    /// Write a register operand: 8/16-bit writes merge, 32-bit writes zero-extend (SDM Vol. 1
    /// 3.4.1.1), 64-bit writes replace.
    pub fn write_reg(&mut self, g: GprInfo, v: Value) {
        let new = match (g.size, g.high8) {
            (1, true) => {
                let old = self.gpr(g.index);
                let keep = self.and_c(old, !0xff00);
                let low = self.and_c(v, 0xff);
                let sh = self.c64(8);
                let hi = self.b.ins().ishl(low, sh);
                self.b.ins().bor(keep, hi)
            }
            (1 | 2, false) => {
                let m = super::emit::size_mask(g.size);
                let old = self.gpr(g.index);
                let keep = self.and_c(old, !m);
                let low = self.and_c(v, m);
                self.b.ins().bor(keep, low)
            }
            (4, _) => self.zext(v, 4),
            _ => v,
        };
        self.set_gpr(g.index, new);
    }

    fn mem_ea(&mut self, insn: &Instruction, m: MemRef, mc: &mut MemCache) -> Value {
        match mc.ea {
            Some(a) => a,
            None => {
                let a = self.effective_address(insn, m);
                mc.ea = Some(a);
                a
            }
        }
    }

    pub(super) fn read_opnd(
        &mut self,
        insn: &Instruction,
        o: Opnd,
        size: u32,
        mc: &mut MemCache,
    ) -> Value {
        match o {
            Opnd::Reg(g) => self.read_reg(g),
            Opnd::Imm(v) => self.c64(v & super::emit::size_mask(size)),
            Opnd::Mem(m) => {
                let a = self.mem_ea(insn, m, mc);
                if mc.rmw {
                    let p = self.probe(m.seg, a, size, true);
                    mc.probe = Some(p);
                    self.load_with(p, size)
                } else {
                    self.mem_read(m.seg, a, size)
                }
            }
        }
    }

    pub(super) fn write_opnd(
        &mut self,
        insn: &Instruction,
        o: Opnd,
        size: u32,
        v: Value,
        mc: &mut MemCache,
    ) {
        match o {
            Opnd::Reg(g) => self.write_reg(g, v),
            Opnd::Imm(_) => unreachable!("immediates are never destinations"),
            Opnd::Mem(m) => {
                let a = self.mem_ea(insn, m, mc);
                match mc.probe {
                    Some(p) => self.store_with(p, size, v),
                    None => self.mem_write(m.seg, a, size, v),
                }
            }
        }
    }

    /// Translate one instruction if it is one of the inline ones.
    pub fn translate_insn(&mut self, insn: &Instruction) -> Done {
        // A direct branch to a non-canonical target raises #GP(0) at the branch when taken
        // (64-bit mode; SDM Vol. 2A JMP/Jcc/CALL/LOOP): the interpreter does that.
        if matches!(
            insn.op0_kind(),
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
        ) && !crate::paging::is_canonical(insn.near_branch_target())
        {
            return Done::NotHandled;
        }
        if insn.is_jcc_short_or_near() {
            return self.jcc(insn);
        }
        if insn.is_jmp_short_or_near() {
            let t = insn.near_branch_target();
            self.jump_to(t);
            return Done::Ended;
        }
        if insn.is_call_near()
            && matches!(
                insn.op0_kind(),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            )
        {
            return self.call_rel(insn);
        }
        match insn.code() {
            Code::Retnw
            | Code::Retnd
            | Code::Retnq
            | Code::Retnw_imm16
            | Code::Retnd_imm16
            | Code::Retnq_imm16 => return self.ret_near(insn),
            Code::Jmp_rm64 => return self.branch_indirect(insn, false),
            Code::Call_rm64 => return self.branch_indirect(insn, true),
            _ if crate::region::is_inline_loop(insn) => return self.loop_insn(insn),
            _ => {}
        }
        let sse = self.sse_integer(insn);
        if sse != Done::NotHandled {
            return sse;
        }
        match insn.mnemonic() {
            // PAUSE only hints a spin-wait loop (SDM Vol. 2B PAUSE).
            Mnemonic::Nop | Mnemonic::Pause => Done::Inline,
            Mnemonic::Mov => self.mov(insn),
            Mnemonic::Add
            | Mnemonic::Adc
            | Mnemonic::Sub
            | Mnemonic::Sbb
            | Mnemonic::And
            | Mnemonic::Or
            | Mnemonic::Xor => self.alu(insn, true),
            Mnemonic::Cmp | Mnemonic::Test => self.alu(insn, false),
            Mnemonic::Inc | Mnemonic::Dec | Mnemonic::Neg | Mnemonic::Not => self.unary(insn),
            Mnemonic::Lea => self.lea(insn),
            Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd => self.movx(insn),
            Mnemonic::Shl | Mnemonic::Sal | Mnemonic::Shr | Mnemonic::Sar => self.shift(insn),
            Mnemonic::Rol | Mnemonic::Ror => self.rotate(insn),
            Mnemonic::Div => self.div(insn),
            Mnemonic::Cbw
            | Mnemonic::Cwde
            | Mnemonic::Cdqe
            | Mnemonic::Cwd
            | Mnemonic::Cdq
            | Mnemonic::Cqo => self.sign_extend_accumulator(insn),
            Mnemonic::Bswap => self.bswap(insn),
            Mnemonic::Imul => self.imul(insn),
            Mnemonic::Push => self.push(insn),
            Mnemonic::Pop => self.pop(insn),
            Mnemonic::Cmovo
            | Mnemonic::Cmovno
            | Mnemonic::Cmovb
            | Mnemonic::Cmovae
            | Mnemonic::Cmove
            | Mnemonic::Cmovne
            | Mnemonic::Cmovbe
            | Mnemonic::Cmova
            | Mnemonic::Cmovs
            | Mnemonic::Cmovns
            | Mnemonic::Cmovp
            | Mnemonic::Cmovnp
            | Mnemonic::Cmovl
            | Mnemonic::Cmovge
            | Mnemonic::Cmovle
            | Mnemonic::Cmovg => self.cmov(insn),
            Mnemonic::Seto
            | Mnemonic::Setno
            | Mnemonic::Setb
            | Mnemonic::Setae
            | Mnemonic::Sete
            | Mnemonic::Setne
            | Mnemonic::Setbe
            | Mnemonic::Seta
            | Mnemonic::Sets
            | Mnemonic::Setns
            | Mnemonic::Setp
            | Mnemonic::Setnp
            | Mnemonic::Setl
            | Mnemonic::Setge
            | Mnemonic::Setle
            | Mnemonic::Setg => self.setcc(insn),
            _ => Done::NotHandled,
        }
    }

    fn mov(&mut self, insn: &Instruction) -> Done {
        if insn.op_count() != 2 {
            return Done::NotHandled;
        }
        let (Some(d), Some(s)) = (
            self.opnd(insn, 0, false, true),
            self.opnd(insn, 1, true, false),
        ) else {
            return Done::NotHandled;
        };
        let size = Self::opnd_size(insn, d);
        let mut ea = MemCache::default();
        let v = self.read_opnd(insn, s, size, &mut ea);
        self.write_opnd(insn, d, size, v, &mut ea);
        Done::Inline
    }

    fn alu(&mut self, insn: &Instruction, writes: bool) -> Done {
        if insn.op_count() != 2 || insn.has_lock_prefix() {
            return Done::NotHandled;
        }
        let (Some(d), Some(s)) = (
            self.opnd(insn, 0, true, writes),
            self.opnd(insn, 1, true, false),
        ) else {
            return Done::NotHandled;
        };
        let size = Self::opnd_size(insn, d);
        let mut ea = if writes && matches!(d, Opnd::Mem(_)) {
            MemCache::rmw()
        } else {
            MemCache::default()
        };
        // ADC/SBB add or subtract CF from before the instruction too, and keep it in `aux`
        // (SDM Vol. 2A ADC, Vol. 2B SBB; the interpreter's record).
        let mn = insn.mnemonic();
        let carry = matches!(mn, Mnemonic::Adc | Mnemonic::Sbb).then(|| self.carry_value());
        let a = self.read_opnd(insn, d, size, &mut ea);
        let b = self.read_opnd(insn, s, size, &mut ea);
        let (r, k) = match mn {
            Mnemonic::Add => (self.b.ins().iadd(a, b), kind::ADD),
            Mnemonic::Adc => {
                let t = self.b.ins().iadd(a, b);
                (self.b.ins().iadd(t, carry.expect("ADC")), kind::ADC)
            }
            Mnemonic::Sbb => {
                let t = self.b.ins().isub(a, b);
                (self.b.ins().isub(t, carry.expect("SBB")), kind::SBB)
            }
            Mnemonic::Sub | Mnemonic::Cmp => (self.b.ins().isub(a, b), kind::SUB),
            Mnemonic::And | Mnemonic::Test => (self.b.ins().band(a, b), kind::LOGIC),
            Mnemonic::Or => (self.b.ins().bor(a, b), kind::LOGIC),
            _ => (self.b.ins().bxor(a, b), kind::LOGIC),
        };
        let r = self.zext(r, size);
        if writes {
            self.write_opnd(insn, d, size, r, &mut ea);
        }
        let aux = carry.unwrap_or_else(|| self.c64(0));
        self.set_flags(k, size, a, b, r, aux);
        Done::Inline
    }

    /// SETcc r/m8: 1 when the condition holds, else 0 (SDM Vol. 2B SETcc).
    fn setcc(&mut self, insn: &Instruction) -> Done {
        let Some(d) = self.opnd(insn, 0, false, true) else {
            return Done::NotHandled;
        };
        if Self::opnd_size(insn, d) != 1 {
            return Done::NotHandled;
        }
        let cc = (insn.condition_code() as u8).wrapping_sub(1) & 0xf;
        let c = self.condition(cc);
        let v = self.b.ins().uextend(types::I64, c);
        let mut ea = MemCache::default();
        self.write_opnd(insn, d, 1, v, &mut ea);
        Done::Inline
    }

    fn unary(&mut self, insn: &Instruction) -> Done {
        if insn.op_count() != 1 || insn.has_lock_prefix() {
            return Done::NotHandled;
        }
        let Some(d) = self.opnd(insn, 0, true, true) else {
            return Done::NotHandled;
        };
        let size = Self::opnd_size(insn, d);
        let mut ea = MemCache::rmw();
        let a = self.read_opnd(insn, d, size, &mut ea);
        let one = self.c64(1);
        let zero = self.c64(0);
        let mn = insn.mnemonic();
        // INC/DEC keep CF: read it before anything is committed.
        let old_cf = matches!(mn, Mnemonic::Inc | Mnemonic::Dec).then(|| self.carry_value());
        let r = match mn {
            Mnemonic::Inc => self.b.ins().iadd(a, one),
            Mnemonic::Dec => self.b.ins().isub(a, one),
            Mnemonic::Neg => self.b.ins().isub(zero, a),
            _ => self.b.ins().bnot(a),
        };
        let r = self.zext(r, size);
        self.write_opnd(insn, d, size, r, &mut ea);
        match mn {
            Mnemonic::Inc => self.set_flags(kind::INC, size, a, one, r, old_cf.unwrap_or(zero)),
            Mnemonic::Dec => self.set_flags(kind::DEC, size, a, one, r, old_cf.unwrap_or(zero)),
            Mnemonic::Neg => self.set_flags(kind::SUB, size, zero, a, r, zero),
            _ => {}
        }
        Done::Inline
    }

    /// IMUL r, r/m and IMUL r, r/m, imm (SDM Vol. 2A IMUL): the low half of the signed product;
    /// CF = OF = the product does not fit (the `aux` of a MUL record, as the interpreter keeps
    /// it). The one-operand form, which writes rDX:rAX, goes to the interpreter.
    fn imul(&mut self, insn: &Instruction) -> Done {
        let n = insn.op_count();
        if !matches!(n, 2 | 3) {
            return Done::NotHandled;
        }
        let (xi, yi) = if n == 2 { (0, 1) } else { (1, 2) };
        let (Some(Opnd::Reg(d)), Some(x), Some(y)) = (
            self.opnd(insn, 0, false, true),
            self.opnd(insn, xi, true, false),
            self.opnd(insn, yi, true, false),
        ) else {
            return Done::NotHandled;
        };
        let size = d.size;
        if !matches!(size, 2 | 4 | 8) {
            return Done::NotHandled;
        }
        let mut ea = MemCache::default();
        let a = self.read_opnd(insn, x, size, &mut ea);
        let b = self.read_opnd(insn, y, size, &mut ea);
        let (low, significant) = if size == 8 {
            let low = self.b.ins().imul(a, b);
            let high = self.b.ins().smulhi(a, b);
            let sign = self.b.ins().sshr_imm_u(low, 63);
            let sig = self.b.ins().icmp(
                cranelift_codegen::ir::condcodes::IntCC::NotEqual,
                high,
                sign,
            );
            (low, sig)
        } else {
            // The low half does not depend on how the factors are extended: multiply them as
            // they are, so that the result does not wait for sign extensions. CF/OF compare
            // the exact signed product (both factors fit in 32 bits, so it is exact in 64),
            // which `dce` removes when the flags are overwritten unread.
            let p = self.b.ins().imul(a, b);
            let low = self.zext(p, size);
            let sa = self.sext(a, size);
            let sb = self.sext(b, size);
            let p = self.b.ins().imul(sa, sb);
            let back = self.sext(low, size);
            let sig = self
                .b
                .ins()
                .icmp(cranelift_codegen::ir::condcodes::IntCC::NotEqual, back, p);
            (low, sig)
        };
        let aux = self.b.ins().uextend(types::I64, significant);
        self.write_reg(d, low);
        self.set_flags(kind::MUL, size, a, b, low, aux);
        Done::Inline
    }

    fn lea(&mut self, insn: &Instruction) -> Done {
        let Some(Opnd::Reg(d)) = self.opnd(insn, 0, false, true) else {
            return Done::NotHandled;
        };
        if !is_mem(insn, 1) {
            return Done::NotHandled;
        }
        let Some(m) = mem_ref(insn, self.env.mode.bitness) else {
            return Done::NotHandled;
        };
        let ea = self.effective_address(insn, m);
        self.write_reg(d, ea);
        Done::Inline
    }

    /// CMOVcc r, r/m: the source is read (and may fault) whatever the condition; the
    /// destination takes it when the condition holds (SDM Vol. 2A CMOVcc). A 32-bit CMOVcc
    /// clears the upper half even when it does not move in IA-32e mode; outside 64-bit code
    /// that depends on EFER.LMA, which the block's mode does not pin, so those forms stay
    /// with the interpreter.
    fn cmov(&mut self, insn: &Instruction) -> Done {
        let (Some(Opnd::Reg(d)), Some(s)) = (
            self.opnd(insn, 0, true, true),
            self.opnd(insn, 1, true, false),
        ) else {
            return Done::NotHandled;
        };
        if d.size == 4 && self.env.mode.bitness != 64 {
            return Done::NotHandled;
        }
        let mut ea = MemCache::default();
        let v = self.read_opnd(insn, s, d.size, &mut ea);
        let cc = (insn.condition_code() as u8).wrapping_sub(1) & 0xf;
        let c = self.condition(cc);
        let old = self.read_reg(d);
        let r = self.b.ins().select(c, v, old);
        self.write_reg(d, r);
        Done::Inline
    }

    fn movx(&mut self, insn: &Instruction) -> Done {
        let (Some(Opnd::Reg(d)), Some(s)) = (
            self.opnd(insn, 0, false, true),
            self.opnd(insn, 1, true, false),
        ) else {
            return Done::NotHandled;
        };
        let ssize = Self::opnd_size(insn, s);
        let mut ea = MemCache::default();
        let v = self.read_opnd(insn, s, ssize, &mut ea);
        let v = if matches!(insn.mnemonic(), Mnemonic::Movsx | Mnemonic::Movsxd) {
            self.sext(v, ssize)
        } else {
            v
        };
        self.write_reg(d, v);
        Done::Inline
    }

    /// Stack pointer width in bytes (SS.D/B, or 8 in 64-bit mode).
    fn stack_size(&self) -> u32 {
        self.env.mode.stack_size
    }

    fn stack_ok(&self, write: bool) -> bool {
        self.seg_ok(
            MemRef {
                seg: SS,
                asize: self.stack_size(),
            },
            write,
        )
    }

    /// Write a new stack pointer value, keeping the bits above the stack width (a 32-bit stack
    /// keeps RSP[63:32] as the interpreter's stack cursor does).
    fn set_sp(&mut self, new_sp: Value) {
        let size = self.stack_size();
        if size == 8 {
            self.set_gpr(RSP, new_sp);
            return;
        }
        let m = super::emit::size_mask(size);
        let old = self.gpr(RSP);
        let keep = self.and_c(old, !m);
        let low = self.and_c(new_sp, m);
        let v = self.b.ins().bor(keep, low);
        self.set_gpr(RSP, v);
    }

    /// Push `v` (`size` bytes). Returns nothing until the store succeeded; commits SP.
    fn push_value(&mut self, v: Value, size: u32) {
        let sp = self.gpr(RSP);
        let new_sp = self.add_c(sp, (size as u64).wrapping_neg());
        let new_sp = self.zext(new_sp, self.stack_size());
        self.mem_write(SS, new_sp, size, v);
        self.set_sp(new_sp);
    }

    fn push(&mut self, insn: &Instruction) -> Done {
        let size = insn.stack_pointer_increment().unsigned_abs();
        if !self.stack_ok(true) || !matches!(size, 2 | 4 | 8) {
            return Done::NotHandled;
        }
        let v = match self.opnd(insn, 0, true, false) {
            Some(Opnd::Reg(g)) => self.read_reg(g),
            Some(Opnd::Imm(v)) => self.c64(v & super::emit::size_mask(size)),
            _ => return Done::NotHandled,
        };
        self.push_value(v, size);
        Done::Inline
    }

    fn pop(&mut self, insn: &Instruction) -> Done {
        let size = insn.stack_pointer_increment().unsigned_abs();
        let Some(Opnd::Reg(d)) = self.opnd(insn, 0, false, true) else {
            return Done::NotHandled;
        };
        if !self.stack_ok(false) || !matches!(size, 2 | 4 | 8) {
            return Done::NotHandled;
        }
        let sp = self.gpr(RSP);
        let sp = self.zext(sp, self.stack_size());
        let v = self.mem_read(SS, sp, size);
        let new_sp = self.add_c(sp, u64::from(size));
        self.set_sp(new_sp);
        self.write_reg(d, v);
        Done::Inline
    }

    fn call_rel(&mut self, insn: &Instruction) -> Done {
        let size = match insn.code() {
            Code::Call_rel16 => 2,
            Code::Call_rel32_32 => 4,
            Code::Call_rel32_64 => 8,
            _ => return Done::NotHandled,
        };
        if !self.stack_ok(true) {
            return Done::NotHandled;
        }
        let ret = self.c64(insn.next_ip() & super::emit::size_mask(size));
        self.push_value(ret, size);
        self.jump_to(insn.near_branch_target());
        Done::Ended
    }

    fn ret_near(&mut self, insn: &Instruction) -> Done {
        let size = match insn.code() {
            Code::Retnw | Code::Retnw_imm16 => 2,
            Code::Retnd | Code::Retnd_imm16 => 4,
            _ => 8,
        };
        if !self.stack_ok(false) {
            return Done::NotHandled;
        }
        let extra = if insn.op_count() == 1 {
            u64::from(insn.immediate16())
        } else {
            0
        };
        let sp = self.gpr(RSP);
        let sp = self.zext(sp, self.stack_size());
        let target = self.mem_read(SS, sp, size);
        if self.env.mode.bitness == 64 {
            // A non-canonical return address is #GP(0) at the RET (SDM Vol. 2B RET): the
            // interpreter raises it.
            let high = self.b.ins().ishl_imm_u(target, 16);
            let canonical = self.b.ins().sshr_imm_u(high, 16);
            let bad = self.b.ins().icmp(
                cranelift_codegen::ir::condcodes::IntCC::NotEqual,
                canonical,
                target,
            );
            self.interp_if(bad);
        }
        let new_sp = self.add_c(sp, u64::from(size) + extra);
        self.set_sp(new_sp);
        self.exit_indirect(target, self.index as u64 + 1);
        Done::Ended
    }

    /// JMP or CALL to an address in a register or in memory, 64-bit mode (SDM Vol. 2A CALL,
    /// JMP): continues through the jump cache like RET.
    fn branch_indirect(&mut self, insn: &Instruction, call: bool) -> Done {
        if self.env.mode.bitness != 64 || (call && !self.stack_ok(true)) {
            return Done::NotHandled;
        }
        let Some(o) = self.opnd(insn, 0, true, false) else {
            return Done::NotHandled;
        };
        let mut ea = MemCache::default();
        let target = self.read_opnd(insn, o, 8, &mut ea);
        // A non-canonical target is #GP(0) at the branch: the interpreter raises it.
        let high = self.b.ins().ishl_imm_u(target, 16);
        let canonical = self.b.ins().sshr_imm_u(high, 16);
        let bad = self.b.ins().icmp(
            cranelift_codegen::ir::condcodes::IntCC::NotEqual,
            canonical,
            target,
        );
        self.interp_if(bad);
        if call {
            let ret = self.c64(insn.next_ip());
            self.push_value(ret, 8);
        }
        self.exit_indirect(target, self.index as u64 + 1);
        Done::Ended
    }

    fn jcc(&mut self, insn: &Instruction) -> Done {
        let cc = (insn.condition_code() as u8).wrapping_sub(1) & 0xf;
        let c = self.condition(cc);
        self.branch(c, insn.near_branch_target(), self.fall_through(insn));
        Done::Ended
    }

    fn loop_insn(&mut self, insn: &Instruction) -> Done {
        let csize = match insn.code() {
            Code::Loop_rel8_16_CX | Code::Loop_rel8_32_CX => 2,
            Code::Loop_rel8_16_ECX | Code::Loop_rel8_32_ECX | Code::Loop_rel8_64_ECX => 4,
            _ => 8,
        };
        let g = GprInfo {
            index: RCX,
            size: csize,
            high8: false,
        };
        let c = self.read_reg(g);
        let c = self.add_c(c, u64::MAX);
        let c = self.zext(c, csize);
        self.write_reg(g, c);
        let nz = self
            .b
            .ins()
            .icmp_imm_u(cranelift_codegen::ir::condcodes::IntCC::NotEqual, c, 0);
        self.branch(nz, insn.near_branch_target(), self.fall_through(insn));
        Done::Ended
    }

    /// End the block with a two-way branch.
    fn branch(&mut self, cond: Value, taken: u64, not_taken: u64) {
        if !self.is_region_target(taken) && !self.is_region_target(not_taken) {
            // Both sides leave the function with the same registers and flags record: store
            // them once, before the branch, rather than once per exit.
            self.write_back_regs(true);
            self.store_flags(true);
        }
        let t = self.b.create_block();
        let f = self.b.create_block();
        let proved = self.probes.snapshot(self.b.current_block());
        self.b.ins().brif(cond, t, &[], f, &[]);
        // Each side has its only predecessor here, and what the probes proved holds on both.
        self.b.seal_block(t);
        self.b.seal_block(f);
        self.b.switch_to_block(f);
        if let Some(p) = proved.clone() {
            self.probes.restore(p, f);
        }
        self.goto(not_taken, self.index as u64 + 1);
        self.b.switch_to_block(t);
        if let Some(p) = proved {
            self.probes.restore(p, t);
        }
        self.jump_to(taken);
    }

    /// End the block going to `target`: along an edge of the region when the target is one of
    /// its blocks, else out through a chain slot.
    pub fn jump_to(&mut self, target: u64) {
        self.goto(target, self.index as u64 + 1);
    }
}
