//! Inline translation of the SSE2/SSSE3 integer instructions hot guest code runs: Linux's
//! BLAKE2s and ChaCha20 (its random driver and the crypto self-tests at boot) and the string
//! functions of C libraries. Each used to be a call into the interpreter; a Debian kernel's boot
//! made about 7.5 million of them.
//!
//! XMM registers stay in the FXSAVE image in `CpuState::fx` (SDM Vol. 1 10.5.1, Table 10-2):
//! each instruction loads its operands from there as 128-bit vectors and stores its result back,
//! so the interpreter, helpers and exits always see them current. Only instructions without a
//! LOCK prefix, with XMM registers (not MMX) and memory operands the mode key allows inline are
//! translated; the rest go to the interpreter as before.
//!
//! Faults stay the interpreter's: CR0.EM, CR0.TS and CR4.OSFXSR are tested at run time (SDM
//! Vol. 3A 2.5; they are not part of the mode key) and a misaligned 16-byte operand of an
//! aligned form (SDM Vol. 1 4.1.1), a TLB miss or a segment-limit violation run the instruction
//! in the interpreter, which raises #UD, #NM, #GP or the page fault.
//!
//! The vector IR needs Cranelift SIMD on the host: x86-64 hosts with SSSE3 (PSHUFB) and aarch64
//! hosts translate these instructions, other hosts keep the interpreter for them.

use std::mem::offset_of;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, ConstantData, Endianness, InstBuilder, MemFlagsData, Type, Value,
};
use iced_x86::{Code, Instruction, OpKind, Register};
use vcpu::state::cr0;
use vcpu::{CpuState, FxArea};

use crate::context::JitContext;
use crate::interp::sse::CR4_OSFXSR;

use super::emit::Tx;
use super::insn::{Done, MemCache};
use super::memory::{is_mem, mem_ref, MemRef};
use super::regs::gpr_info;

/// Whether the host's Cranelift backend has the vector instructions used here.
fn host_has_simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // PSHUFB is SSSE3; without it Cranelift lowers `swizzle` to a libcall emu does not
        // provide.
        std::is_x86_feature_detected!("ssse3")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The lane layout of a packed integer operation.
#[derive(Debug, Clone, Copy)]
enum Lanes {
    B,
    W,
    D,
    Q,
}

impl Lanes {
    fn ty(self) -> Type {
        match self {
            Lanes::B => types::I8X16,
            Lanes::W => types::I16X8,
            Lanes::D => types::I32X4,
            Lanes::Q => types::I64X2,
        }
    }
    fn bytes(self) -> usize {
        match self {
            Lanes::B => 1,
            Lanes::W => 2,
            Lanes::D => 4,
            Lanes::Q => 8,
        }
    }
}

/// What an instruction computes from its destination `d` and source `s`.
#[derive(Debug, Clone, Copy)]
enum Op {
    Add(Lanes),
    Sub(Lanes),
    And,
    AndNot,
    Or,
    Xor,
    CmpEq(Lanes),
    /// PUNPCKL* (`false`) / PUNPCKH* (`true`): interleave the low / high halves.
    Unpack(Lanes, bool),
    /// PSHUFB: bytes of `d` selected by `s` (bit 7 set: zero).
    ShuffleBytes,
    /// PSHUFD: dwords of `s` selected by the immediate.
    ShuffleDwords,
}

/// A shift by an immediate.
#[derive(Debug, Clone, Copy)]
enum Shift {
    Left(Lanes),
    Right(Lanes),
    RightArith(Lanes),
    /// PSLLDQ / PSRLDQ: the whole register, by bytes.
    LeftBytes,
    RightBytes,
}

fn op_of(code: Code) -> Option<Op> {
    use Lanes::*;
    Some(match code {
        Code::Paddb_xmm_xmmm128 => Op::Add(B),
        Code::Paddw_xmm_xmmm128 => Op::Add(W),
        Code::Paddd_xmm_xmmm128 => Op::Add(D),
        Code::Paddq_xmm_xmmm128 => Op::Add(Q),
        Code::Psubb_xmm_xmmm128 => Op::Sub(B),
        Code::Psubw_xmm_xmmm128 => Op::Sub(W),
        Code::Psubd_xmm_xmmm128 => Op::Sub(D),
        Code::Psubq_xmm_xmmm128 => Op::Sub(Q),
        Code::Pand_xmm_xmmm128 => Op::And,
        Code::Pandn_xmm_xmmm128 => Op::AndNot,
        Code::Por_xmm_xmmm128 => Op::Or,
        Code::Pxor_xmm_xmmm128 => Op::Xor,
        Code::Pcmpeqb_xmm_xmmm128 => Op::CmpEq(B),
        Code::Pcmpeqw_xmm_xmmm128 => Op::CmpEq(W),
        Code::Pcmpeqd_xmm_xmmm128 => Op::CmpEq(D),
        Code::Punpcklbw_xmm_xmmm128 => Op::Unpack(B, false),
        Code::Punpcklwd_xmm_xmmm128 => Op::Unpack(W, false),
        Code::Punpckldq_xmm_xmmm128 => Op::Unpack(D, false),
        Code::Punpcklqdq_xmm_xmmm128 => Op::Unpack(Q, false),
        Code::Punpckhbw_xmm_xmmm128 => Op::Unpack(B, true),
        Code::Punpckhwd_xmm_xmmm128 => Op::Unpack(W, true),
        Code::Punpckhdq_xmm_xmmm128 => Op::Unpack(D, true),
        Code::Punpckhqdq_xmm_xmmm128 => Op::Unpack(Q, true),
        Code::Pshufb_xmm_xmmm128 => Op::ShuffleBytes,
        Code::Pshufd_xmm_xmmm128_imm8 => Op::ShuffleDwords,
        _ => return None,
    })
}

fn shift_of(code: Code) -> Option<Shift> {
    use Lanes::*;
    Some(match code {
        Code::Psllw_xmm_imm8 => Shift::Left(W),
        Code::Pslld_xmm_imm8 => Shift::Left(D),
        Code::Psllq_xmm_imm8 => Shift::Left(Q),
        Code::Psrlw_xmm_imm8 => Shift::Right(W),
        Code::Psrld_xmm_imm8 => Shift::Right(D),
        Code::Psrlq_xmm_imm8 => Shift::Right(Q),
        Code::Psraw_xmm_imm8 => Shift::RightArith(W),
        Code::Psrad_xmm_imm8 => Shift::RightArith(D),
        Code::Pslldq_xmm_imm8 => Shift::LeftBytes,
        Code::Psrldq_xmm_imm8 => Shift::RightBytes,
        _ => return None,
    })
}

/// 16-byte moves, either direction: whether the form requires an aligned memory operand.
fn move128_of(code: Code) -> Option<bool> {
    Some(match code {
        Code::Movdqa_xmm_xmmm128
        | Code::Movaps_xmm_xmmm128
        | Code::Movapd_xmm_xmmm128
        | Code::Movdqa_xmmm128_xmm
        | Code::Movaps_xmmm128_xmm
        | Code::Movapd_xmmm128_xmm => true,
        Code::Movdqu_xmm_xmmm128
        | Code::Movups_xmm_xmmm128
        | Code::Movupd_xmm_xmmm128
        | Code::Movdqu_xmmm128_xmm
        | Code::Movups_xmmm128_xmm
        | Code::Movupd_xmmm128_xmm => false,
        _ => return None,
    })
}

/// Guest memory and the FXSAVE image are little-endian whatever the host is; vectors get no
/// alignment promise (the aligned forms check alignment themselves).
fn vector_flags() -> MemFlagsData {
    MemFlagsData::new()
        .with_endianness(Endianness::Little)
        .with_notrap()
}

/// The context offset of XMM register `n`.
fn xmm_offset(n: usize) -> i32 {
    (offset_of!(JitContext, cpu) + offset_of!(CpuState, fx) + FxArea::XMM0 + 16 * n) as i32
}

/// The number of an XMM register operand (XMM0-XMM15).
fn xmm_number(r: Register) -> Option<usize> {
    let n = (r as u32).wrapping_sub(Register::XMM0 as u32);
    (n < 16).then_some(n as usize)
}

/// An XMM register or an inline-able memory operand.
#[derive(Debug, Clone, Copy)]
enum XmmOpnd {
    Reg(usize),
    Mem(MemRef),
}

impl Tx<'_, '_> {
    /// Translate an SSE integer instruction inline, if it is one of this module's.
    pub(super) fn sse_integer(&mut self, insn: &Instruction) -> Done {
        let code = insn.code();
        if insn.has_lock_prefix() || !host_has_simd() {
            return Done::NotHandled;
        }
        if let Some(op) = op_of(code) {
            return self.packed(insn, op);
        }
        if let Some(sh) = shift_of(code) {
            return self.shift_imm(insn, sh);
        }
        if let Some(aligned) = move128_of(code) {
            return self.move128(insn, aligned);
        }
        match code {
            Code::Movd_xmm_rm32 | Code::Movq_xmm_rm64 => self.move_gpr_to_xmm(insn),
            Code::Movd_rm32_xmm | Code::Movq_rm64_xmm => self.move_xmm_to_gpr(insn),
            Code::Movq_xmm_xmmm64 | Code::Movq_xmmm64_xmm => self.move_low_qword(insn),
            Code::Pmovmskb_r32_xmm | Code::Pmovmskb_r64_xmm => self.byte_mask(insn),
            _ => Done::NotHandled,
        }
    }

    /// Operand `op` as an XMM register or a memory operand allowing the given access inline.
    fn xmm_opnd(&self, insn: &Instruction, op: u32, write: bool) -> Option<XmmOpnd> {
        if insn.op_kind(op) == OpKind::Register {
            return xmm_number(insn.op_register(op)).map(XmmOpnd::Reg);
        }
        if !is_mem(insn, op) {
            return None;
        }
        let m = mem_ref(insn, self.env.mode.bitness)?;
        self.seg_ok(m, write).then_some(XmmOpnd::Mem(m))
    }

    /// Leave for the interpreter unless SSE instructions execute (CR0.EM and CR0.TS clear,
    /// CR4.OSFXSR set); the interpreter raises #UD or #NM.
    fn require_sse(&mut self) {
        let cpu = offset_of!(JitContext, cpu);
        let cr0 = self.load_ctx(types::I64, (cpu + offset_of!(CpuState, cr0)) as i32);
        let cr4 = self.load_ctx(types::I64, (cpu + offset_of!(CpuState, cr4)) as i32);
        let off = self.and_c(cr0, cr0::EM | cr0::TS);
        let on = self.and_c(cr4, CR4_OSFXSR);
        let usable = self.b.ins().bor(off, on);
        let ok = self
            .b
            .ins()
            .icmp_imm_u(IntCC::Equal, usable, CR4_OSFXSR as i64);
        self.interp_unless(ok);
    }

    /// XMM register `n` as `ty`: a vector, or a scalar of its low bytes.
    fn load_xmm(&mut self, n: usize, ty: Type) -> Value {
        self.b
            .ins()
            .load(ty, vector_flags(), self.ctx, xmm_offset(n))
    }

    fn store_xmm(&mut self, n: usize, v: Value) {
        self.b
            .ins()
            .store(vector_flags(), v, self.ctx, xmm_offset(n));
    }

    /// The host address of a 16-byte memory operand, leaving for the interpreter on a TLB miss,
    /// a limit violation or, for the aligned forms, a misaligned address.
    fn xmm_mem_addr(&mut self, insn: &Instruction, m: MemRef, write: bool, aligned: bool) -> Value {
        let ea = self.effective_address(insn, m);
        let p = self.probe(m.seg, ea, 16, write);
        let mut ok = p.hit;
        if aligned {
            // The host page is page-aligned, so the host address has the guest's low bits.
            let low = self.b.ins().band_imm_u(p.host, 15);
            let is_aligned = self.b.ins().icmp_imm_u(IntCC::Equal, low, 0);
            ok = self.b.ins().band(ok, is_aligned);
        }
        self.interp_unless(ok);
        p.host
    }

    /// Read a 16-byte source operand as a vector of `ty` (legacy SSE: memory aligned).
    fn read_source(&mut self, insn: &Instruction, s: XmmOpnd, ty: Type) -> Value {
        match s {
            XmmOpnd::Reg(n) => self.load_xmm(n, ty),
            XmmOpnd::Mem(m) => {
                let host = self.xmm_mem_addr(insn, m, false, true);
                self.b.ins().load(ty, vector_flags(), host, 0)
            }
        }
    }

    /// A 16-byte immediate for `shuffle`.
    fn shuffle_mask(&mut self, bytes: [u8; 16]) -> cranelift_codegen::ir::Immediate {
        self.b
            .func
            .dfg
            .immediates
            .push(ConstantData::from(bytes.to_vec()))
    }

    fn packed(&mut self, insn: &Instruction, op: Op) -> Done {
        let (Some(XmmOpnd::Reg(d)), Some(s)) =
            (self.xmm_opnd(insn, 0, true), self.xmm_opnd(insn, 1, false))
        else {
            return Done::NotHandled;
        };
        self.require_sse();
        let ty = match op {
            Op::Add(l) | Op::Sub(l) | Op::CmpEq(l) => l.ty(),
            Op::And | Op::AndNot | Op::Or | Op::Xor => types::I64X2,
            Op::Unpack(..) | Op::ShuffleBytes | Op::ShuffleDwords => types::I8X16,
        };
        let b = self.read_source(insn, s, ty);
        let r = match op {
            Op::ShuffleDwords => {
                let imm = insn.immediate8();
                let mut mask = [0u8; 16];
                for (lane, bytes) in mask.chunks_mut(4).enumerate() {
                    let from = (imm >> (2 * lane)) & 3;
                    for (k, byte) in bytes.iter_mut().enumerate() {
                        *byte = 4 * from + k as u8;
                    }
                }
                let mask = self.shuffle_mask(mask);
                self.b.ins().shuffle(b, b, mask)
            }
            _ => {
                let a = self.load_xmm(d, ty);
                match op {
                    Op::Add(_) => self.b.ins().iadd(a, b),
                    Op::Sub(_) => self.b.ins().isub(a, b),
                    Op::And => self.b.ins().band(a, b),
                    Op::AndNot => self.b.ins().band_not(b, a),
                    Op::Or => self.b.ins().bor(a, b),
                    Op::Xor => self.b.ins().bxor(a, b),
                    Op::CmpEq(_) => self.b.ins().icmp(IntCC::Equal, a, b),
                    Op::Unpack(l, high) => {
                        let e = l.bytes();
                        let start = if high { 8 } else { 0 };
                        let mut mask = [0u8; 16];
                        for (pair, out) in mask.chunks_mut(2 * e).enumerate() {
                            let from = (start + pair * e) as u8;
                            for k in 0..e {
                                out[k] = from + k as u8;
                                out[e + k] = 16 + from + k as u8;
                            }
                        }
                        let mask = self.shuffle_mask(mask);
                        self.b.ins().shuffle(a, b, mask)
                    }
                    Op::ShuffleBytes => {
                        // `swizzle` zeroes lanes whose index is 16 or more: keeping bit 7 and
                        // the low nibble gives PSHUFB's rule (SDM Vol. 2B PSHUFB).
                        let keep = self.b.ins().iconst(types::I8, 0x8f);
                        let keep = self.b.ins().splat(types::I8X16, keep);
                        let idx = self.b.ins().band(b, keep);
                        self.b.ins().swizzle(a, idx)
                    }
                    Op::ShuffleDwords => unreachable!("handled above"),
                }
            }
        };
        self.store_xmm(d, r);
        Done::Inline
    }

    fn shift_imm(&mut self, insn: &Instruction, sh: Shift) -> Done {
        let Some(XmmOpnd::Reg(d)) = self.xmm_opnd(insn, 0, true) else {
            return Done::NotHandled;
        };
        self.require_sse();
        let n = u32::from(insn.immediate8());
        let r = match sh {
            Shift::LeftBytes | Shift::RightBytes => {
                let a = self.load_xmm(d, types::I8X16);
                let zero = self.b.ins().iconst(types::I8, 0);
                let zero = self.b.ins().splat(types::I8X16, zero);
                // Byte i of the result: a[i - n] (left) or a[i + n] (right), else zero (byte
                // 16, the first of the zero vector); counts above 15 clear the register.
                let n = n.min(16) as usize;
                let mut mask = [16u8; 16];
                for (i, m) in mask.iter_mut().enumerate() {
                    let from = match sh {
                        Shift::LeftBytes => i.checked_sub(n),
                        _ => Some(i + n).filter(|&j| j < 16),
                    };
                    if let Some(j) = from {
                        *m = j as u8;
                    }
                }
                let mask = self.shuffle_mask(mask);
                self.b.ins().shuffle(a, zero, mask)
            }
            Shift::Left(l) | Shift::Right(l) | Shift::RightArith(l) => {
                let bits = 8 * l.bytes() as u32;
                let a = self.load_xmm(d, l.ty());
                if n >= bits && !matches!(sh, Shift::RightArith(_)) {
                    // Logical shifts by the lane width or more give zero (Cranelift would
                    // take the count modulo the width).
                    let zero = self.b.ins().iconst(types::I64, 0);
                    self.b.ins().splat(types::I64X2, zero)
                } else {
                    // Arithmetic shifts saturate at width - 1 (all sign bits).
                    let count = self.b.ins().iconst(types::I32, i64::from(n.min(bits - 1)));
                    match sh {
                        Shift::Left(_) => self.b.ins().ishl(a, count),
                        Shift::Right(_) => self.b.ins().ushr(a, count),
                        _ => self.b.ins().sshr(a, count),
                    }
                }
            }
        };
        self.store_xmm(d, r);
        Done::Inline
    }

    fn move128(&mut self, insn: &Instruction, aligned: bool) -> Done {
        let (dst, src) = (self.xmm_opnd(insn, 0, true), self.xmm_opnd(insn, 1, false));
        let (Some(dst), Some(src)) = (dst, src) else {
            return Done::NotHandled;
        };
        self.require_sse();
        let ty = types::I64X2;
        let v = match src {
            XmmOpnd::Reg(n) => self.load_xmm(n, ty),
            XmmOpnd::Mem(m) => {
                let host = self.xmm_mem_addr(insn, m, false, aligned);
                self.b.ins().load(ty, vector_flags(), host, 0)
            }
        };
        match dst {
            XmmOpnd::Reg(n) => self.store_xmm(n, v),
            XmmOpnd::Mem(m) => {
                let host = self.xmm_mem_addr(insn, m, true, aligned);
                self.b.ins().store(vector_flags(), v, host, 0);
            }
        }
        Done::Inline
    }

    /// Store the 64-bit `low` into XMM `n` and zero its upper half.
    fn set_xmm_low_qword(&mut self, n: usize, low: Value) {
        let zero = self.b.ins().iconst(types::I64, 0);
        let off = xmm_offset(n);
        self.b.ins().store(vector_flags(), low, self.ctx, off);
        self.b.ins().store(vector_flags(), zero, self.ctx, off + 8);
    }

    /// MOVD/MOVQ xmm, r/m32 or r/m64: zero-extended into the register.
    fn move_gpr_to_xmm(&mut self, insn: &Instruction) -> Done {
        let (Some(XmmOpnd::Reg(d)), Some(s)) = (
            self.xmm_opnd(insn, 0, true),
            self.opnd(insn, 1, true, false),
        ) else {
            return Done::NotHandled;
        };
        self.require_sse();
        let size = if insn.code() == Code::Movq_xmm_rm64 {
            8
        } else {
            4
        };
        let v = self.read_opnd(insn, s, size, &mut MemCache::default());
        self.set_xmm_low_qword(d, v);
        Done::Inline
    }

    /// MOVD/MOVQ r/m32 or r/m64, xmm: the low dword or qword (a 32-bit register destination
    /// is zero-extended, as every 32-bit register write is).
    fn move_xmm_to_gpr(&mut self, insn: &Instruction) -> Done {
        let (Some(d), Some(XmmOpnd::Reg(s))) = (
            self.opnd(insn, 0, false, true),
            self.xmm_opnd(insn, 1, false),
        ) else {
            return Done::NotHandled;
        };
        self.require_sse();
        let size = if insn.code() == Code::Movq_rm64_xmm {
            8
        } else {
            4
        };
        let v = self.load_xmm(s, types::I64);
        self.write_opnd(insn, d, size, v, &mut MemCache::default());
        Done::Inline
    }

    /// MOVQ xmm, xmm/m64 (upper half zeroed) and MOVQ xmm/m64, xmm (to a register: the same).
    fn move_low_qword(&mut self, insn: &Instruction) -> Done {
        let (Some(dst), Some(src)) = (self.xmm_opnd(insn, 0, true), self.xmm_opnd(insn, 1, false))
        else {
            return Done::NotHandled;
        };
        self.require_sse();
        let v = match src {
            XmmOpnd::Reg(n) => self.load_xmm(n, types::I64),
            XmmOpnd::Mem(m) => {
                let ea = self.effective_address(insn, m);
                self.mem_read(m.seg, ea, 8)
            }
        };
        match dst {
            XmmOpnd::Reg(n) => self.set_xmm_low_qword(n, v),
            XmmOpnd::Mem(m) => {
                let ea = self.effective_address(insn, m);
                self.mem_write(m.seg, ea, 8, v);
            }
        }
        Done::Inline
    }

    /// PMOVMSKB r32/r64, xmm: the sign bits of the 16 bytes.
    fn byte_mask(&mut self, insn: &Instruction) -> Done {
        let (Some(g), Some(XmmOpnd::Reg(s))) =
            (gpr_info(insn.op_register(0)), self.xmm_opnd(insn, 1, false))
        else {
            return Done::NotHandled;
        };
        self.require_sse();
        let v = self.load_xmm(s, types::I8X16);
        let bits = self.b.ins().vhigh_bits(types::I64, v);
        self.write_reg(g, bits);
        Done::Inline
    }
}
