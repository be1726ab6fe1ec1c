//! The state of one block being translated and the primitives every instruction uses.
//!
//! `Tx` owns the Cranelift [`FunctionBuilder`] and knows where guest state lives in the
//! [`JitContext`]. Guest registers are Cranelift `Variable`s, loaded once in the entry block and
//! written back (only the dirty ones) before every helper call and at every exit; the lazy-flags
//! record of the last flag-setting instruction is kept as SSA values and stored only when something
//! outside the basic block could look at it. Edges between the basic blocks of a region keep the
//! registers in their variables and store the flags record (see [`Tx::goto`]). Everything here
//! follows the protocol documented in `context.rs`: before a helper call `cpu.rip` holds the
//! current instruction's ip.

use std::mem::offset_of;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, AbiParam, Block, BlockArg, InstBuilder, InstructionData, MemFlagsData, Opcode, SigRef,
    Signature, Type, Value, ValueDef,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, Variable};
use iced_x86::Instruction;
use vcpu::state::rflags;
use vcpu::CpuState;

use crate::cache::{ChainSlot, JumpEntry, JUMP_CACHE_SIZE, JUMP_HASH_SHIFT};
use crate::context::{JitContext, TlbEntry, PAGE_MASK, PAGE_SHIFT, TLB_SIZE};
use crate::flags::{cc_op, kind, LazyFlags, CC_EFLAGS};

use super::probe_cache::{ProbeCache, Proved};
use super::{ChainEnv, TranslateEnv};

/// Offset of general register `i` in the context.
pub(super) fn gpr_offset(i: usize) -> i32 {
    (offset_of!(JitContext, cpu) + offset_of!(CpuState, gpr) + 8 * i) as i32
}
pub(super) const RIP_OFFSET: i32 = (offset_of!(JitContext, cpu) + offset_of!(CpuState, rip)) as i32;
pub(super) const RFLAGS_OFFSET: i32 =
    (offset_of!(JitContext, cpu) + offset_of!(CpuState, rflags)) as i32;
pub(super) const ICOUNT_OFFSET: i32 = offset_of!(JitContext, icount) as i32;
const FLAGS_OFFSET: usize = offset_of!(JitContext, flags);
const CHAIN_EXIT_OFFSET: i32 = offset_of!(JitContext, chain_exit) as i32;
const RESUME_INSN_OFFSET: i32 = offset_of!(JitContext, resume_insn) as i32;

/// The `PendingFlags::kind` of an instruction whose flags were computed eagerly (rotates):
/// `res` holds the six status bits at their RFLAGS positions and nothing else, and storing the
/// record merges them into `cpu.rflags` with `op = CC_EFLAGS`. No `flags::kind` is 0.
pub(super) const EAGER_KIND: u64 = 0;

/// The lazy-flags record of the last flag-setting instruction translated in this block.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingFlags {
    /// An operation kind from `flags::kind`, or [`EAGER_KIND`].
    pub kind: u64,
    /// Operand size in bytes.
    pub size: u32,
    /// Inputs and result, zero-extended from `size`.
    pub src1: Value,
    pub src2: Value,
    pub res: Value,
    pub aux: Value,
}

/// Where the guest ip comes from when a block is left.
#[derive(Debug, Clone, Copy)]
pub(super) enum ExitRip {
    /// A known ip.
    Const(u64),
    /// Computed at run time (RET).
    Value(Value),
    /// Already stored in `cpu.rip` by a helper.
    InContext,
}

/// Cranelift signatures of the helpers generated code calls.
pub(super) struct HelperSigs {
    pub interp: SigRef,
    pub condition: SigRef,
    /// Another block's, for the tail call to a successor.
    pub block: SigRef,
}

/// Build the signature of a helper: pointer-sized parameters come first as given.
pub(super) fn signature(call_conv: CallConv, params: &[Type], ret: Type) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
    sig.returns.push(AbiParam::new(ret));
    sig
}

/// One block under translation.
pub(super) struct Tx<'a, 'f> {
    pub b: FunctionBuilder<'f>,
    pub env: &'a TranslateEnv,
    pub ptr: Type,
    /// The `*mut JitContext` parameter; defined in the entry block, so it dominates everything.
    pub ctx: Value,
    pub regs: Vec<Variable>,
    /// Bit i set: `regs[i]` has a definition on the main path (loaded in the entry block
    /// because an instruction of the block names the register, or written since). Others
    /// are read straight from the context, which then holds their value.
    pub defined: u32,
    /// Bit i set: `regs[i]` differs from `cpu.gpr[i]`.
    pub dirty: u32,
    pub flags: Option<PendingFlags>,
    /// Whether `flags` has already been stored into `JitContext::flags` on the main path.
    pub flags_stored: bool,
    pub sigs: HelperSigs,
    /// Index in the block and ip of the instruction being translated.
    pub index: usize,
    pub ip: u64,
    pub insn: *const Instruction,
    /// The basic blocks of the region, `region[0]` the entry.
    pub region: Vec<RegionBlock>,
    /// Index in `region` of the basic block being translated.
    pub current: usize,
    /// The registers that may differ from the context at the start of a region block entered
    /// through an edge (those the region writes).
    pub merge_dirty: u32,
    /// The registers the region's instructions name (loaded on entry).
    pub used: u32,
    /// Whether an edge leads back to the entry.
    pub entry_looped: bool,
    /// CF at the start of a region block whose first use of the flags needs it
    /// ([`RegionBlock::carry_in`]): every edge to such a block defines this variable from
    /// the flags it knows, so INC/DEC, ADC/SBB and Jcc on CF there need not evaluate the
    /// stored record.
    carry_var: Variable,
    /// The current basic block's CF at its start (`carry_var`), while no helper may have
    /// changed the flags since; used only while `flags` is `None`.
    pub entry_cf: Option<Value>,
    /// The target ip of each chain slot given out so far (slot i: `slot_targets[i]`).
    slot_targets: Vec<u64>,
    /// With edges: instructions the region's edges have retired and `JitContext::icount` does
    /// not count yet (every exit adds them), and how many the function may retire before its
    /// back edges must leave (the icount limit minus the count on entry, computed once).
    edge_count: Option<EdgeCount>,
    /// The function's shared cold tails (see [`Tx::finish_tails`]), created on first use.
    tails: Tails,
    /// Recent 32-bit zero-extensions `(value, extended)` (see [`Tx::zext`]).
    zext_cache: Vec<(Value, Value)>,
    /// What earlier TLB probes proved on the current path (see [`ProbeCache`]).
    pub probes: ProbeCache,
    /// For region blocks with [`RegionBlock::single_edge`], what the probes proved where that
    /// edge left, once it is emitted.
    edge_probes: Vec<Option<Vec<Proved>>>,
}

/// Code every exit of one kind shares, emitted once per function: one copy of the rip, icount
/// and chain-slot handling costs Cranelift less than one per exit (the compile thread's time
/// grows with the IR, and most blocks are a few instructions with several slow paths). Exits
/// jump here with their registers and flags written back and their constants as arguments.
#[derive(Debug, Clone, Copy, Default)]
struct Tails {
    /// `(rip, insn, before)`: store `rip` into `cpu.rip` and `insn` into
    /// `JitContext::resume_insn`, count the `before` instructions before it, and return the
    /// address of `HelperTable::resume`, which the dispatcher calls next to interpret `insn`
    /// (no call here: a call is among the costliest things for Cranelift to compile). The
    /// softmmu slow paths and other out-of-line interpretations jump here.
    interp: Option<Block>,
    /// `(executed)`: count `executed` instructions (and what the edges counted) and return 0,
    /// the state being in the context (`ExitRip::InContext`).
    leave: Option<Block>,
    /// `(rip, slot, executed)`, without (`[0]`) and with (`[1]`) the TLB check: store `rip`,
    /// count, and return the successor's code from chain slot `slot` as
    /// [`Tx::exit_chained`] describes. Every chained exit jumps here with its state written
    /// back.
    chain: [Option<Block>; 2],
}

/// See [`Tx::edge_count`].
#[derive(Debug, Clone, Copy)]
struct EdgeCount {
    pending: Variable,
    allowed: Value,
}

/// One basic block of the region being translated.
#[derive(Debug, Clone, Copy)]
pub(super) struct RegionBlock {
    /// The ip of its first instruction.
    pub start: u64,
    /// Its code, created when the first edge to it is: for the entry, the header after the
    /// function's entry block (present only when `enterable`).
    pub block: Option<Block>,
    /// Whether edges may lead to it (the entry only when a block of the region names its
    /// start as a successor, so that it got a header).
    pub enterable: bool,
    /// It overwrites the flags before anything can read them
    /// (`region::flags_dead_at_start`): edges to it leave the record unstored.
    pub flags_dead: bool,
    /// Its first instructions need CF as it is on entry (`carry_needed_at_start`): edges to
    /// it pass CF in [`Tx::carry_var`].
    pub carry_in: bool,
    /// At most one edge of the region can lead to it and it is not the entry: what the
    /// probes proved where that edge leaves holds at its start (see [`Tx::goto`]).
    pub single_edge: bool,
    /// Its Cranelift block was sealed when its translation began (its one edge was there):
    /// no further edge may lead to it.
    pub sealed: bool,
    pub translated: bool,
}

impl<'a, 'f> Tx<'a, 'f> {
    pub fn new(
        mut b: FunctionBuilder<'f>,
        env: &'a TranslateEnv,
        ptr: Type,
        call_conv: CallConv,
        nregs: usize,
        used_regs: u32,
    ) -> Self {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let ctx = b.block_params(entry)[0];
        let i64t = types::I64;
        let sigs = HelperSigs {
            interp: b.import_signature(signature(call_conv, &[ptr, ptr], types::I32)),
            condition: b.import_signature(signature(call_conv, &[ptr, types::I32], types::I32)),
            block: b.import_signature(crate::cache::block_signature(ptr)),
        };
        // Executing any instruction ends the interrupt shadow of a preceding STI / MOV SS
        // (SDM Vol. 3A 6.8.3), as `interp::step` does; blocks start after such instructions.
        let zero8 = b.ins().iconst(types::I8, 0);
        b.ins().store(
            MemFlagsData::trusted(),
            zero8,
            ctx,
            (offset_of!(JitContext, cpu) + offset_of!(CpuState, interrupt_shadow)) as i32,
        );
        let carry_var = b.declare_var(types::I8);
        let mut regs = Vec::with_capacity(nregs);
        for i in 0..nregs {
            let var = b.declare_var(i64t);
            if used_regs & (1 << i) != 0 {
                let v = b
                    .ins()
                    .load(i64t, MemFlagsData::trusted(), ctx, gpr_offset(i));
                b.def_var(var, v);
            }
            regs.push(var);
        }
        Self {
            b,
            env,
            ptr,
            ctx,
            regs,
            defined: used_regs,
            dirty: 0,
            flags: None,
            flags_stored: true,
            sigs,
            index: 0,
            ip: 0,
            insn: std::ptr::null(),
            region: Vec::new(),
            current: 0,
            merge_dirty: 0,
            used: used_regs,
            entry_looped: false,
            carry_var,
            entry_cf: None,
            slot_targets: Vec::new(),
            edge_count: None,
            tails: Tails::default(),
            zext_cache: Vec::with_capacity(16),
            probes: ProbeCache::default(),
            edge_probes: Vec::new(),
        }
    }

    // ---- constants and small arithmetic on i64 values ----

    pub fn c64(&mut self, v: u64) -> Value {
        self.b.ins().iconst(types::I64, v as i64)
    }
    pub fn c32(&mut self, v: u32) -> Value {
        self.b.ins().iconst(types::I32, i64::from(v))
    }
    /// The value of `v` when it is an `iconst` (Cranelift folds no constants at
    /// `opt_level = "none"`, so the translator does the obvious cases itself).
    pub fn const_of(&self, v: Value) -> Option<u64> {
        match self.b.func.dfg.value_def(v) {
            ValueDef::Result(i, 0) => match self.b.func.dfg.insts[i] {
                InstructionData::UnaryImm {
                    opcode: Opcode::Iconst,
                    imm,
                } => Some(imm.bits() as u64),
                _ => None,
            },
            _ => None,
        }
    }
    pub fn and_c(&mut self, v: Value, m: u64) -> Value {
        if let (Some(k), types::I64) = (self.const_of(v), self.b.func.dfg.value_type(v)) {
            return self.c64(k & m);
        }
        let c = self.c64(m);
        self.b.ins().band(v, c)
    }
    pub fn add_c(&mut self, v: Value, k: u64) -> Value {
        if let (Some(x), types::I64) = (self.const_of(v), self.b.func.dfg.value_type(v)) {
            return self.c64(x.wrapping_add(k));
        }
        if k == 0 {
            return v;
        }
        let c = self.c64(k);
        self.b.ins().iadd(v, c)
    }
    /// Zero-extend the low `size` bytes of `v`. A value known to fit in `size` bytes already
    /// (see [`Tx::known_bits`]: a load, a 32-bit operation's zero-extended result, a masked
    /// value...) is returned as it is, so that chains of 32-bit operations do not re-extend
    /// every intermediate result (Cranelift folds none of this at `opt_level = "none"`).
    pub fn zext(&mut self, v: Value, size: u32) -> Value {
        if size >= 8 || self.known_bits(v, 6) <= 8 * size {
            v
        } else if let Some(k) = self.const_of(v) {
            self.c64(k & size_mask(size))
        } else if size == 4 {
            if let Some(narrow) = self.narrow32(v) {
                return narrow;
            }
            // Not `and` with 0xffff_ffff: that mask fits no sign-extended imm32, so x86-64
            // loads it from the constant pool; a 32-bit move zero-extends. The same register
            // read twice in a Cranelift block is extended once.
            let here = self.b.current_block();
            let layout = &self.b.func.layout;
            let dfg = &self.b.func.dfg;
            let cached = self.zext_cache.iter().rev().find(|&&(src, ext)| {
                src == v
                    && matches!(dfg.value_def(ext), ValueDef::Result(i, _) if layout.inst_block(i) == here)
            });
            if let Some(&(_, ext)) = cached {
                return ext;
            }
            let low = self.b.ins().ireduce(types::I32, v);
            let ext = self.b.ins().uextend(types::I64, low);
            if self.zext_cache.len() >= 16 {
                self.zext_cache.remove(0);
            }
            self.zext_cache.push((v, ext));
            ext
        } else {
            self.and_c(v, size_mask(size))
        }
    }

    /// The low 32 bits of `v`, zero-extended, computed by a 32-bit operation when `v` is an
    /// operation whose low half depends only on the low halves of its operands (ADD, SUB,
    /// AND, OR, XOR, MUL, a left shift by a constant): `uextend(op.i32(..))`, which x86-64
    /// lowers to the 32-bit instruction alone (it zeroes the upper half), instead of the
    /// 64-bit one and a zero-extending move after it. The 64-bit operation stays for other
    /// users, if any (`dce` removes it otherwise).
    fn narrow32(&mut self, v: Value) -> Option<Value> {
        if self.b.func.dfg.value_type(v) != types::I64 {
            return None;
        }
        let ValueDef::Result(inst, 0) = self.b.func.dfg.value_def(v) else {
            return None;
        };
        let data = self.b.func.dfg.insts[inst];
        let op = data.opcode();
        let args = data.arguments(&self.b.func.dfg.value_lists);
        if args.len() != 2 {
            return None;
        }
        let (x, y) = (args[0], args[1]);
        match op {
            Opcode::Iadd | Opcode::Isub | Opcode::Band | Opcode::Bor | Opcode::Bxor => {}
            Opcode::Imul => {}
            Opcode::Ishl if self.const_of(y).is_some_and(|n| n < 32) => {}
            _ => return None,
        }
        let x = self.low32(x);
        let y = self.low32(y);
        let r = match op {
            Opcode::Iadd => self.b.ins().iadd(x, y),
            Opcode::Isub => self.b.ins().isub(x, y),
            Opcode::Band => self.b.ins().band(x, y),
            Opcode::Bor => self.b.ins().bor(x, y),
            Opcode::Bxor => self.b.ins().bxor(x, y),
            Opcode::Imul => self.b.ins().imul(x, y),
            _ => self.b.ins().ishl(x, y),
        };
        Some(self.b.ins().uextend(types::I64, r))
    }

    /// The low 32 bits of the i64 `v` as an i32: a constant stays a constant, a zero-extended
    /// 32-bit value gives back what was extended.
    pub fn low32(&mut self, v: Value) -> Value {
        if let Some(k) = self.const_of(v) {
            return self.b.ins().iconst(types::I32, i64::from(k as u32));
        }
        if let ValueDef::Result(inst, 0) = self.b.func.dfg.value_def(v) {
            let data = self.b.func.dfg.insts[inst];
            if data.opcode() == Opcode::Uextend {
                let a = data.arguments(&self.b.func.dfg.value_lists)[0];
                if self.b.func.dfg.value_type(a) == types::I32 {
                    return a;
                }
            }
        }
        self.b.ins().ireduce(types::I32, v)
    }

    /// An upper bound on the number of significant bits of the i64 `v` (64 when nothing is
    /// known), from the instructions that compute it, looking `depth` definitions deep.
    pub fn known_bits(&self, v: Value, depth: u32) -> u32 {
        let dfg = &self.b.func.dfg;
        if dfg.value_type(v) != types::I64 {
            return 64;
        }
        let ValueDef::Result(inst, 0) = dfg.value_def(v) else {
            return 64;
        };
        let data = dfg.insts[inst];
        let args = data.arguments(&dfg.value_lists);
        let sub = |a: Value| {
            if depth == 0 {
                64
            } else {
                self.known_bits(a, depth - 1)
            }
        };
        match data.opcode() {
            Opcode::Iconst => 64 - self.const_of(v).map_or(0, u64::leading_zeros),
            Opcode::Uextend => dfg.value_type(args[0]).bits(),
            Opcode::Uload8 => 8,
            Opcode::Uload16 => 16,
            Opcode::Uload32 => 32,
            Opcode::Popcnt => 7,
            Opcode::Band => sub(args[0]).min(sub(args[1])),
            Opcode::Bor | Opcode::Bxor => sub(args[0]).max(sub(args[1])),
            Opcode::Ushr => {
                let n = self.const_of(args[1]).map_or(0, |k| (k & 63) as u32);
                sub(args[0]).saturating_sub(n)
            }
            Opcode::Select => sub(args[1]).max(sub(args[2])),
            _ => 64,
        }
    }

    /// Sign-extend the low `size` bytes of `v` to 64 bits.
    pub fn sext(&mut self, v: Value, size: u32) -> Value {
        if size >= 8 {
            return v;
        }
        let sh = 64 - 8 * size;
        if let Some(k) = self.const_of(v) {
            return self.c64((((k << sh) as i64) >> sh) as u64);
        }
        let sh = self.b.ins().iconst(types::I64, i64::from(sh));
        let l = self.b.ins().ishl(v, sh);
        self.b.ins().sshr(l, sh)
    }

    // ---- context fields ----

    pub fn load_ctx(&mut self, ty: Type, off: i32) -> Value {
        self.b
            .ins()
            .load(ty, MemFlagsData::trusted(), self.ctx, off)
    }
    pub fn store_ctx(&mut self, v: Value, off: i32) {
        self.b
            .ins()
            .store(MemFlagsData::trusted(), v, self.ctx, off);
    }

    // ---- guest registers ----

    pub fn gpr(&mut self, i: usize) -> Value {
        if self.defined & (1 << i) == 0 {
            // Not named by any instruction of the block (so never written in it either).
            return self.load_ctx(types::I64, gpr_offset(i));
        }
        self.b.use_var(self.regs[i])
    }
    pub fn set_gpr(&mut self, i: usize, v: Value) {
        self.b.def_var(self.regs[i], v);
        self.defined |= 1 << i;
        self.dirty |= 1 << i;
    }

    /// Store the dirty registers into the context. `clear` only on the main path.
    pub fn write_back_regs(&mut self, clear: bool) {
        self.write_back_mask(u32::MAX);
        if clear {
            self.dirty = 0;
        }
    }

    /// Store the registers in `mask` that are dirty into the context, leaving them marked dirty.
    fn write_back_mask(&mut self, mask: u32) {
        for i in 0..self.regs.len() {
            if self.dirty & mask & (1 << i) != 0 {
                let v = self.gpr(i);
                self.store_ctx(v, gpr_offset(i));
            }
        }
    }

    /// Reload every register from the context (after a helper that may have changed them).
    pub fn reload_regs(&mut self) {
        for i in 0..self.regs.len() {
            let v = self.load_ctx(types::I64, gpr_offset(i));
            self.b.def_var(self.regs[i], v);
        }
        self.defined = (1u32 << self.regs.len()) - 1;
        self.dirty = 0;
    }

    // ---- lazy flags ----

    /// Store the pending flags record. `main` marks it stored for the rest of the block.
    pub fn store_flags(&mut self, main: bool) {
        if self.flags_stored {
            return;
        }
        if let Some(p) = self.flags.filter(|p| p.kind == EAGER_KIND) {
            // The status bits themselves: merge them into `rflags` and mark the record
            // materialised (the `flags.rs` invariant for `CC_EFLAGS`).
            let rf = self.load_ctx(types::I64, RFLAGS_OFFSET);
            let keep = self.and_c(rf, !rflags::STATUS);
            let status = self.and_c(p.res, rflags::STATUS);
            let rf = self.b.ins().bor(keep, status);
            self.store_ctx(rf, RFLAGS_OFFSET);
            let op = self.c64(CC_EFLAGS);
            self.store_ctx(op, (FLAGS_OFFSET + offset_of!(LazyFlags, op)) as i32);
        } else if let Some(p) = self.flags {
            // Only the fields `LazyFlags::status` reads for the kind (the translator's readers
            // of the stored record, `Tx::stored_carry` and `Tx::stored_szap`, select per kind
            // the same way): the others keep stale values nobody looks at. Every exit and edge
            // stores the record, so each store saved counts.
            let (operands, aux) = match p.kind {
                kind::ADD | kind::SUB | kind::SHL | kind::SHR | kind::SAR => (true, false),
                kind::LOGIC => (false, false),
                kind::INC | kind::DEC | kind::MUL => (false, true),
                _ => (true, true),
            };
            let op = self.c64(cc_op(p.kind, p.size));
            self.store_ctx(op, (FLAGS_OFFSET + offset_of!(LazyFlags, op)) as i32);
            if operands {
                self.store_ctx(p.src1, (FLAGS_OFFSET + offset_of!(LazyFlags, src1)) as i32);
                self.store_ctx(p.src2, (FLAGS_OFFSET + offset_of!(LazyFlags, src2)) as i32);
            }
            self.store_ctx(p.res, (FLAGS_OFFSET + offset_of!(LazyFlags, res)) as i32);
            if aux {
                self.store_ctx(p.aux, (FLAGS_OFFSET + offset_of!(LazyFlags, aux)) as i32);
            }
        }
        if main {
            self.flags_stored = true;
        }
    }

    /// Record a flag-setting operation (values already zero-extended to `size`).
    pub fn set_flags(
        &mut self,
        kind: u64,
        size: u32,
        src1: Value,
        src2: Value,
        res: Value,
        aux: Value,
    ) {
        self.flags = Some(PendingFlags {
            kind,
            size,
            src1,
            src2,
            res,
            aux,
        });
        self.flags_stored = false;
        self.entry_cf = None;
    }

    // ---- leaving the block ----

    /// Prepare counting along edges (call in the function's entry block, before any edge):
    /// the region's edges add to a variable instead of `JitContext::icount`.
    pub fn count_along_edges(&mut self) {
        let pending = self.b.declare_var(types::I64);
        let zero = self.c64(0);
        self.b.def_var(pending, zero);
        let count = self.load_ctx(types::I64, ICOUNT_OFFSET);
        let limit = self.loop_limit();
        // The dispatcher enters code below the limit; 0 if not, so that back edges leave.
        let left = self.b.ins().isub(limit, count);
        let below = self.b.ins().icmp(IntCC::UnsignedLessThan, count, limit);
        let allowed = self.b.ins().select(below, left, zero);
        self.edge_count = Some(EdgeCount { pending, allowed });
    }

    /// Add `n` (and what the edges counted) to the retired-instruction counter; returns the new
    /// count.
    pub fn add_icount(&mut self, n: u64) -> Value {
        let n = self.c64(n);
        self.add_icount_value(n)
    }

    /// [`Tx::add_icount`] of a count computed at run time (an i64).
    fn add_icount_value(&mut self, n: Value) -> Value {
        let c = self.load_ctx(types::I64, ICOUNT_OFFSET);
        let c = match self.edge_count {
            Some(e) => {
                let pending = self.b.use_var(e.pending);
                self.b.ins().iadd(c, pending)
            }
            None => c,
        };
        let c = self.b.ins().iadd(c, n);
        self.store_ctx(c, ICOUNT_OFFSET);
        c
    }

    /// The icount bound at which generated code must return to the dispatcher, loaded from
    /// `TranslateEnv::loop_limit`.
    fn loop_limit(&mut self) -> Value {
        let lim_ptr = self
            .b
            .ins()
            .iconst(self.ptr, self.env.loop_limit as usize as i64);
        self.b
            .ins()
            .load(types::I64, MemFlagsData::trusted(), lim_ptr, 0)
    }

    /// Whether `count` has reached the icount bound at which generated code must return to
    /// the dispatcher (budgets, interrupt polls), as an i8 truth value.
    pub fn at_loop_limit(&mut self, count: Value) -> Value {
        let limit = self.loop_limit();
        self.b
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, count, limit)
    }

    /// Write the state back, set rip to `rip` and count `executed` instructions, as every exit
    /// does before it returns; returns the new count.
    fn leave_counting(&mut self, rip: Value, executed: u64) -> Value {
        self.write_back_regs(false);
        self.store_flags(false);
        self.store_ctx(rip, RIP_OFFSET);
        self.add_icount(executed)
    }

    /// End the block continuing in `code` (the next block's entry) with a tail call (see
    /// [`crate::entry`]), or returning 0 (go through the dispatcher) when `stop` is set.
    fn return_code_unless(&mut self, stop: Value, code: Value) {
        let back = self.b.create_block();
        let go = self.b.create_block();
        self.b.ins().brif(stop, back, &[], go, &[]);
        self.b.set_cold_block(back);
        self.b.switch_to_block(back);
        let zero = self.c64(0);
        self.b.ins().return_(&[zero]);
        self.b.switch_to_block(go);
        let code = self.ptr_from_i64(code);
        self.b
            .ins()
            .return_call_indirect(self.sigs.block, code, &[self.ctx]);
    }

    /// Emit a return to the dispatcher in the current Cranelift block: write back registers and
    /// flags, set rip, count `executed` instructions. The current block is terminated.
    ///
    /// `ExitRip::InContext` is used after a helper that left the architectural state in the
    /// context (a delivered fault, an interpreted instruction): nothing is written back then,
    /// since the cached registers may be stale (exception delivery pushes and changes RSP).
    pub fn exit(&mut self, rip: ExitRip, executed: u64) {
        if matches!(rip, ExitRip::InContext) && (executed > 0 || self.edge_count.is_some()) {
            let leave = self.leave_tail();
            let n = self.c64(executed);
            self.b.ins().jump(leave, &[BlockArg::Value(n)]);
            return;
        }
        if !matches!(rip, ExitRip::InContext) {
            self.write_back_regs(false);
            self.store_flags(false);
        }
        match rip {
            ExitRip::Const(ip) => {
                let v = self.c64(ip);
                self.store_ctx(v, RIP_OFFSET);
            }
            ExitRip::Value(v) => self.store_ctx(v, RIP_OFFSET),
            ExitRip::InContext => {}
        }
        if executed > 0 || self.edge_count.is_some() {
            self.add_icount(executed);
        }
        let zero = self.c64(0);
        self.b.ins().return_(&[zero]);
    }

    // ---- the region's edges ----

    /// Begin translating region block `n` at the start of its Cranelift block: the state every
    /// edge leaves behind (registers of `merge_dirty` possibly dirty, the flags record stored).
    pub fn start_region_block(&mut self, n: usize) {
        self.current = n;
        self.probes.clear();
        if let (Some(proved), Some(block)) = (self.take_edge_probes(n), self.region[n].block) {
            // Its only predecessor is emitted: sealed now, registers read in it are the
            // values they had along the edge, which the proved ranges are keyed by.
            self.b.seal_block(block);
            self.region[n].sealed = true;
            self.probes.restore(proved, block);
        }
        self.defined = self.used;
        self.dirty = self.merge_dirty;
        self.flags = None;
        self.flags_stored = true;
        self.entry_cf = self.region[n]
            .carry_in
            .then(|| self.b.use_var(self.carry_var));
    }

    /// Define [`Tx::carry_var`] as the current CF, for an edge to (or the function's entry
    /// into) a region block with [`RegionBlock::carry_in`]. Changes nothing in the
    /// translation state of the main path (a pending record is stored without marking it).
    pub fn pass_carry(&mut self) {
        let saved = self.flags_stored;
        if !matches!(self.flags, Some(p) if super::cond::cf_inline(p.kind)) {
            self.store_flags(false);
            self.flags_stored = true;
        }
        let cf = self.carry_flag();
        self.flags_stored = saved;
        self.b.def_var(self.carry_var, cf);
    }

    /// Whether an edge may lead to `target` (see [`Tx::region_target`]).
    pub fn is_region_target(&self, target: u64) -> bool {
        self.region_index(target).is_some()
    }

    /// The index of the region block starting at `target` that an edge may enter.
    fn region_index(&self, target: u64) -> Option<usize> {
        self.region
            .iter()
            .position(|r| r.start == target && r.enterable)
    }

    /// The region block starting at `target` that an edge may lead to, with its Cranelift
    /// block (created now if this is the first edge to it).
    pub fn region_target(&mut self, target: u64) -> Option<(usize, Block)> {
        let n = self.region_index(target)?;
        let block = match self.region[n].block {
            Some(b) => b,
            None => {
                let b = self.b.create_block();
                self.region[n].block = Some(b);
                b
            }
        };
        Some((n, block))
    }

    /// Continue at constant ip `target` after `executed` instructions of the current basic
    /// block: along an edge when the target is a block of the region, else through a chain
    /// slot. An edge stores the flags record and the count and writes back the dirty registers
    /// the target does not expect dirty; an edge back to the same or an earlier block (every
    /// loop of the region has one) leaves the function instead when the icount limit is
    /// reached. Emitting it changes nothing in the translation state, so both
    /// sides of a branch can be emitted one after the other.
    /// The IP after `insn` when execution falls through it: in 16-bit code IP wraps at 64 KiB
    /// (SDM Vol. 1 3.6: the instruction pointer is 16 bits wide there), in 32-bit code at 4 GiB.
    /// iced's `next_ip` does not wrap.
    pub fn fall_through(&self, insn: &iced_x86::Instruction) -> u64 {
        insn.next_ip() & size_mask(self.env.mode.bitness / 8)
    }

    pub fn goto(&mut self, target: u64, executed: u64) {
        let Some((n, dest)) = self.region_target(target) else {
            self.exit_chained(target, executed);
            return;
        };
        debug_assert!(
            !self.region[n].sealed,
            "a second edge to region block {n}, counted as having one"
        );
        let extra = self.dirty & !self.merge_dirty;
        self.write_back_mask(extra);
        let back = n <= self.current;
        // A back edge may leave through its limit check below, whose exit stores the record.
        if !self.region[n].flags_dead {
            self.store_flags(false);
        }
        if self.region[n].carry_in {
            self.pass_carry();
        }
        let e = self
            .edge_count
            .expect("functions with edges count along them");
        let pending = self.b.use_var(e.pending);
        let pending = self.add_c(pending, executed);
        self.b.def_var(e.pending, pending);
        if !back {
            if self.region[n].single_edge {
                let proved = self.probes.snapshot(self.b.current_block());
                self.set_edge_probes(n, proved);
            }
            self.b.ins().jump(dest, &[]);
            return;
        }
        if n == 0 {
            self.entry_looped = true;
        }
        // Kicks need no check here, as at chained exits (see `exit_chained`): the limit is
        // never more than the dispatcher's interrupt poll interval ahead, and the dispatcher
        // looks at the kick flag when the loop leaves at it.
        let over = self
            .b
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, pending, e.allowed);
        let out = self.b.create_block();
        self.b.ins().brif(over, out, &[], dest, &[]);
        self.b.set_cold_block(out);
        self.b.switch_to_block(out);
        self.exit(ExitRip::Const(target), 0);
    }

    /// Leave the block for constant ip `target` through a chain slot: like
    /// `exit(ExitRip::Const(target), executed)`, but when the slot is linked (and the icount
    /// limit and, under paging, the TLB allow it) continue in the successor's code with a tail
    /// call (`crate::entry`); when it is unlinked, record the slot in
    /// `JitContext::chain_exit` for the dispatcher to link. Exits to the same ip share a slot.
    pub fn exit_chained(&mut self, target: u64, executed: u64) {
        let Some(chain) = self.env.chain else {
            self.exit(ExitRip::Const(target), executed);
            return;
        };
        let slot = match self.slot_targets.iter().position(|&t| t == target) {
            Some(i) => i,
            None if self.slot_targets.len() < chain.slot_count => {
                self.slot_targets.push(target);
                self.slot_targets.len() - 1
            }
            None => {
                self.exit(ExitRip::Const(target), executed);
                return;
            }
        };
        // SAFETY: the dispatcher allocated `slot_count` slots at `chain.slots` for this block;
        // the arena keeps them alive and nothing else accesses them during translation.
        let slot_ptr = unsafe {
            let p = chain.slots.add(slot);
            (*p).target_ip = target;
            p
        };
        // Kicks need no check here: the limit is never more than the dispatcher's interrupt
        // poll interval ahead, and the dispatcher looks at the kick flag when it is reached.
        // A target on the page the function was entered on needs no TLB check: entering
        // validated that page's mapping, and whatever changes mappings (MOV to CR0/CR3/CR4,
        // INVLPG, WRMSR, far transfers, A20) runs in the interpreter and ends the block without
        // a chained exit; a TLB entry evicted meanwhile maps the same page when refilled.
        let tlb = chain.paging && !self.on_entry_page(target, &chain);
        self.write_back_regs(false);
        self.store_flags(false);
        let tail = self.chain_tail(tlb);
        let rip = self.c64(target);
        let sp = self.b.ins().iconst(self.ptr, slot_ptr as usize as i64);
        let n = self.c64(executed);
        self.b.ins().jump(tail, &[rip, sp, n].map(BlockArg::Value));
    }

    /// Remember what the probes proved along the only edge to region block `n`.
    fn set_edge_probes(&mut self, n: usize, proved: Option<Vec<Proved>>) {
        if self.edge_probes.len() <= n {
            self.edge_probes.resize(n + 1, None);
        }
        self.edge_probes[n] = proved;
    }

    /// What the probes proved along the only edge to region block `n`, if it was emitted as
    /// a forward edge where something was proved.
    fn take_edge_probes(&mut self, n: usize) -> Option<Vec<Proved>> {
        if !self.region[n].single_edge {
            return None;
        }
        self.edge_probes.get_mut(n).and_then(Option::take)
    }

    /// The function's chained-exit tail, with or without the TLB check (see
    /// [`Tails::chain`]).
    fn chain_tail(&mut self, tlb: bool) -> Block {
        if let Some(t) = self.tails.chain[usize::from(tlb)] {
            return t;
        }
        let t = self.new_tail(&[types::I64, self.ptr, types::I64], false);
        self.tails.chain[usize::from(tlb)] = Some(t);
        t
    }

    /// A block for a shared tail taking `params`, cold or not.
    fn new_tail(&mut self, params: &[Type], cold: bool) -> Block {
        let t = self.b.create_block();
        for &ty in params {
            self.b.append_block_param(t, ty);
        }
        if cold {
            self.b.set_cold_block(t);
        }
        t
    }

    /// The body of a chained-exit tail `t`: params `(rip, slot, executed)`.
    fn emit_chain_tail(&mut self, t: Block, tlb: bool) {
        self.b.switch_to_block(t);
        let (rip, sp, executed) = {
            let p = self.b.block_params(t);
            (p[0], p[1], p[2])
        };
        self.store_ctx(rip, RIP_OFFSET);
        let count = self.add_icount_value(executed);
        let trusted = MemFlagsData::trusted();
        let slot_field =
            |tx: &mut Self, off: usize| tx.b.ins().load(types::I64, trusted, sp, off as i32);
        let next = slot_field(self, offset_of!(ChainSlot, next));
        let unlinked = self.b.ins().icmp_imm_u(IntCC::Equal, next, 0);
        let record = self.b.create_block();
        let check = self.b.create_block();
        self.b.ins().brif(unlinked, record, &[], check, &[]);
        self.b.set_cold_block(record);
        self.b.switch_to_block(record);
        let sp64 = self.i64_from_ptr(sp);
        self.store_ctx(sp64, CHAIN_EXIT_OFFSET);
        let zero = self.c64(0);
        self.b.ins().return_(&[zero]);

        self.b.switch_to_block(check);
        let mut stop = self.at_loop_limit(count);
        if tlb {
            let entry_off = slot_field(self, offset_of!(ChainSlot, tlb_entry));
            let entry_off = self.ptr_from_i64(entry_off);
            let entry = self.b.ins().iadd(self.ctx, entry_off);
            let tag = self.b.ins().load(
                types::I64,
                trusted,
                entry,
                offset_of!(TlbEntry, read_tag) as i32,
            );
            let want_tag = slot_field(self, offset_of!(ChainSlot, tag));
            let bad_tag = self.b.ins().icmp(IntCC::NotEqual, tag, want_tag);
            let phys = self.b.ins().load(
                types::I64,
                trusted,
                entry,
                offset_of!(TlbEntry, phys_page) as i32,
            );
            let want_phys = slot_field(self, offset_of!(ChainSlot, phys));
            let bad_phys = self.b.ins().icmp(IntCC::NotEqual, phys, want_phys);
            let nx_off = slot_field(self, offset_of!(ChainSlot, nx_word));
            let nx_off = self.ptr_from_i64(nx_off);
            let nx_addr = self.b.ins().iadd(self.ctx, nx_off);
            let nx_word = self.b.ins().load(types::I64, trusted, nx_addr, 0);
            let nx_bit = slot_field(self, offset_of!(ChainSlot, nx_bit));
            let nx = self.b.ins().band(nx_word, nx_bit);
            let no_exec = self.b.ins().icmp_imm_u(IntCC::NotEqual, nx, 0);
            let bad = self.b.ins().bor(bad_tag, bad_phys);
            let bad = self.b.ins().bor(bad, no_exec);
            stop = self.b.ins().bor(stop, bad);
        }
        self.return_code_unless(stop, next);
    }

    /// Whether ip `target` lies on the linear page of the function's first instruction.
    fn on_entry_page(&self, target: u64, chain: &ChainEnv) -> bool {
        let Some(start) = self.region.first().map(|r| r.start) else {
            return false;
        };
        let mask = if self.env.mode.bitness == 64 {
            u64::MAX
        } else {
            0xffff_ffff
        };
        let la = |ip: u64| chain.cs_base.wrapping_add(ip) & mask;
        la(target) & PAGE_MASK == la(start) & PAGE_MASK
    }

    /// Leave the block for the ip in `target` (a return): like
    /// `exit(ExitRip::Value(target), executed)`, but when the jump cache knows a compiled block
    /// at the target's linear address in this block's mode (and the icount limit and, under
    /// paging, the TLB allow it, as for chain slots) continue in that block's code with a tail
    /// call, as QEMU's `lookup_and_goto_ptr` does.
    pub fn exit_indirect(&mut self, target: Value, executed: u64) {
        let Some(chain) = self.env.chain else {
            self.exit(ExitRip::Value(target), executed);
            return;
        };
        let count = self.leave_counting(target, executed);
        let trusted = MemFlagsData::trusted();
        let la = if self.env.mode.bitness == 64 {
            target
        } else {
            let la = self.add_c(target, chain.cs_base);
            self.and_c(la, 0xffff_ffff)
        };
        // The entry: jump_cache + jump_index(la) * size_of::<JumpEntry>().
        let folded = self.b.ins().ushr_imm_u(la, i64::from(JUMP_HASH_SHIFT));
        let hash = self.b.ins().bxor(la, folded);
        let idx = self.and_c(hash, (JUMP_CACHE_SIZE - 1) as u64);
        let off = self
            .b
            .ins()
            .imul_imm_u(idx, std::mem::size_of::<JumpEntry>() as i64);
        let off = self.ptr_from_i64(off);
        let base = self
            .b
            .ins()
            .iconst(self.ptr, chain.jump_cache as usize as i64);
        let entry = self.b.ins().iadd(base, off);
        let e_la = self
            .b
            .ins()
            .load(types::I64, trusted, entry, offset_of!(JumpEntry, la) as i32);
        let e_mode = self
            .b
            .ins()
            .uload32(trusted, entry, offset_of!(JumpEntry, mode) as i32);
        let code = self.b.ins().load(
            types::I64,
            trusted,
            entry,
            offset_of!(JumpEntry, code) as i32,
        );
        let bad_la = self.b.ins().icmp(IntCC::NotEqual, e_la, la);
        let bad_mode = self
            .b
            .ins()
            .icmp_imm_u(IntCC::NotEqual, e_mode, i64::from(chain.mode_id));
        let no_code = self.b.ins().icmp_imm_u(IntCC::Equal, code, 0);
        let over = self.at_loop_limit(count);
        let mut stop = self.b.ins().bor(bad_la, bad_mode);
        stop = self.b.ins().bor(stop, no_code);
        stop = self.b.ins().bor(stop, over);
        if chain.paging {
            // The TLB must still map `la` for execution to the entry's physical page.
            let page_no = self.b.ins().ushr_imm_u(la, i64::from(PAGE_SHIFT));
            let ti = self.and_c(page_no, (TLB_SIZE - 1) as u64);
            let toff = self
                .b
                .ins()
                .imul_imm_u(ti, std::mem::size_of::<TlbEntry>() as i64);
            let toff = self.ptr_from_i64(toff);
            let tentry = self.b.ins().iadd(self.ctx, toff);
            let tlb_base = offset_of!(JitContext, tlb) as i32;
            let tag = self.b.ins().load(
                types::I64,
                trusted,
                tentry,
                tlb_base + offset_of!(TlbEntry, read_tag) as i32,
            );
            let page = self.and_c(la, PAGE_MASK);
            let bad_tag = self.b.ins().icmp(IntCC::NotEqual, tag, page);
            let phys = self.b.ins().load(
                types::I64,
                trusted,
                tentry,
                tlb_base + offset_of!(TlbEntry, phys_page) as i32,
            );
            let e_phys = self.b.ins().load(
                types::I64,
                trusted,
                entry,
                offset_of!(JumpEntry, phys_page) as i32,
            );
            let bad_phys = self.b.ins().icmp(IntCC::NotEqual, phys, e_phys);
            // Execute-disable bit of entry `ti`: word ti / 64, bit ti % 64.
            let word_no = self.b.ins().ushr_imm_u(ti, 6);
            let word_off = self.b.ins().ishl_imm_u(word_no, 3);
            let word_off = self.ptr_from_i64(word_off);
            let word_addr = self.b.ins().iadd(self.ctx, word_off);
            let nx_word = self.b.ins().load(
                types::I64,
                trusted,
                word_addr,
                offset_of!(JitContext, tlb_no_exec) as i32,
            );
            let bit_no = self.and_c(ti, 63);
            let nx = self.b.ins().ushr(nx_word, bit_no);
            let nx = self.and_c(nx, 1);
            let no_exec = self.b.ins().icmp_imm_u(IntCC::NotEqual, nx, 0);
            stop = self.b.ins().bor(stop, bad_tag);
            stop = self.b.ins().bor(stop, bad_phys);
            stop = self.b.ins().bor(stop, no_exec);
        }
        self.return_code_unless(stop, code);
    }

    /// A pointer-sized value as an i64.
    fn i64_from_ptr(&mut self, v: Value) -> Value {
        if self.ptr == types::I64 {
            v
        } else {
            self.b.ins().uextend(types::I64, v)
        }
    }

    /// An i64 as a pointer-sized value.
    fn ptr_from_i64(&mut self, v: Value) -> Value {
        if self.ptr == types::I64 {
            v
        } else {
            self.b.ins().ireduce(self.ptr, v)
        }
    }

    /// Branch to a fresh exit block when `cond` (an i8/i32 truth value) is non-zero, and continue
    /// emitting in a fresh block otherwise.
    pub fn exit_if(&mut self, cond: Value, rip: ExitRip, executed: u64) {
        let out = self.b.create_block();
        let cont = self.b.create_block();
        self.b.ins().brif(cond, out, &[], cont, &[]);
        self.b.set_cold_block(out);
        self.b.switch_to_block(out);
        self.exit(rip, executed);
        self.b.switch_to_block(cont);
    }

    /// Store the current instruction's ip into `cpu.rip` (before a helper call).
    pub fn store_ip(&mut self) {
        let v = self.c64(self.ip);
        self.store_ctx(v, RIP_OFFSET);
    }

    fn helper_addr(&mut self, addr: usize) -> Value {
        self.b.ins().iconst(self.ptr, addr as i64)
    }

    /// Run the current instruction through the interpreter (main path). Leaves the block when the
    /// interpreter says the block must end.
    pub fn call_interp(&mut self) {
        self.write_back_regs(true);
        self.store_flags(true);
        self.store_ip();
        let f = self.helper_addr(self.env.helpers.interp);
        let insn = self.b.ins().iconst(self.ptr, self.insn as usize as i64);
        let call = self
            .b
            .ins()
            .call_indirect(self.sigs.interp, f, &[self.ctx, insn]);
        let status = self.b.inst_results(call)[0];
        // The interpreted instruction may have changed the TLB (INVLPG, MOV CR3...).
        self.probes.clear();
        self.flags = None;
        self.flags_stored = true;
        self.entry_cf = None;
        self.reload_regs();
        self.exit_if(status, ExitRip::InContext, self.index as u64 + 1);
    }

    /// When `cond` (an i8 truth value) holds, leave the function from a cold block to have the
    /// current instruction interpreted (the interpreter raises whatever fault it has; see
    /// [`Tails::interp`]); continue emitting the main path otherwise.
    pub fn interp_if(&mut self, cond: Value) {
        self.interp_out_of_line(cond, true);
    }

    /// Unless `ok` (an i8 truth value) holds, leave the function from a cold block to have the
    /// current instruction interpreted, as [`Tx::interp_if`] does. The softmmu's slow path
    /// (TLB misses, MMIO, writes to code pages, segment limit violations) goes this way:
    /// nothing of the instruction is committed before its memory accesses, and since the cold
    /// block never rejoins the main path, no guest value has to survive the interpretation.
    pub fn interp_unless(&mut self, ok: Value) {
        self.interp_out_of_line(ok, false);
    }

    /// When `cond` equals `leave_when`, leave the function from a cold block to have the current
    /// instruction interpreted; the main path continues in a new block otherwise, where the
    /// [`ProbeCache`] learns that `cond` differs from `leave_when`. Nothing is emitted when
    /// that is known already (a constant, or a condition branched on before on the path).
    fn interp_out_of_line(&mut self, cond: Value, leave_when: bool) {
        let here = self.b.current_block();
        let known = match self.const_of(cond) {
            Some(k) => (k != 0) != leave_when,
            None => !leave_when && self.probes.is_known_true(here, cond),
        };
        if known {
            return;
        }
        // The tail's arguments are made in a cold block of their own: constants defined before
        // the branch would be materialised on the main path (in loops too).
        let out = self.b.create_block();
        let cont = self.b.create_block();
        if leave_when {
            self.b.ins().brif(cond, out, &[], cont, &[]);
        } else {
            self.b.ins().brif(cond, cont, &[], out, &[]);
        }
        // Both have their only predecessor: sealed now, a variable read in them is the value
        // it has here (the same SSA value, which the probe cache keys addresses by) rather
        // than a block parameter resolved at the end.
        self.b.seal_block(out);
        self.b.seal_block(cont);
        self.probes
            .commit(here, (!leave_when).then_some(cond), cont);
        self.b.set_cold_block(out);
        self.b.switch_to_block(out);
        self.write_back_regs(false);
        self.store_flags(false);
        let tail = self.interp_tail();
        let rip = self.c64(self.ip);
        let insn = self.b.ins().iconst(self.ptr, self.insn as usize as i64);
        let n = self.c64(self.index as u64);
        self.b
            .ins()
            .jump(tail, &[rip, insn, n].map(BlockArg::Value));
        self.b.switch_to_block(cont);
    }

    /// The function's interpreter tail (see [`Tails::interp`]).
    fn interp_tail(&mut self) -> Block {
        if let Some(t) = self.tails.interp {
            return t;
        }
        let t = self.new_tail(&[types::I64, self.ptr, types::I64], true);
        self.tails.interp = Some(t);
        t
    }

    /// The function's leaving tail (see [`Tails::leave`]).
    fn leave_tail(&mut self) -> Block {
        if let Some(t) = self.tails.leave {
            return t;
        }
        let t = self.new_tail(&[types::I64], true);
        self.tails.leave = Some(t);
        t
    }

    /// Emit the bodies of the shared tails the function's exits jump to (call once, after
    /// everything else, so that the lazy-flags and edge-count state they read is final).
    pub fn finish_tails(&mut self) {
        if let Some(t) = self.tails.interp {
            self.b.switch_to_block(t);
            let (rip, insn, n) = {
                let p = self.b.block_params(t);
                (p[0], p[1], p[2])
            };
            self.store_ctx(rip, RIP_OFFSET);
            let insn = self.i64_from_ptr(insn);
            self.store_ctx(insn, RESUME_INSN_OFFSET);
            self.add_icount_value(n);
            let resume = self.c64(self.env.helpers.resume as u64);
            self.b.ins().return_(&[resume]);
        }
        if let Some(t) = self.tails.leave {
            self.b.switch_to_block(t);
            let n = self.b.block_params(t)[0];
            self.leave_counting_value(n);
        }
        for tlb in [false, true] {
            if let Some(t) = self.tails.chain[usize::from(tlb)] {
                self.emit_chain_tail(t, tlb);
            }
        }
    }

    /// Count `n` instructions (an i64) and return 0.
    fn leave_counting_value(&mut self, n: Value) {
        self.add_icount_value(n);
        let zero = self.c64(0);
        self.b.ins().return_(&[zero]);
    }

    /// Evaluate condition code `cc` from the flags stored in the context, through the helper.
    pub fn call_condition(&mut self, cc: u8) -> Value {
        self.store_flags(true);
        let f = self.helper_addr(self.env.helpers.condition);
        let c = self.c32(u32::from(cc));
        let call = self
            .b
            .ins()
            .call_indirect(self.sigs.condition, f, &[self.ctx, c]);
        let r = self.b.inst_results(call)[0];
        // Whatever a helper does, what generated code knows of the TLB is forgotten.
        self.probes.clear();
        self.b.ins().icmp_imm_u(IntCC::NotEqual, r, 0)
    }
}

/// All-ones in the low `size` bytes.
pub(super) fn size_mask(size: u32) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * size)) - 1
    }
}
