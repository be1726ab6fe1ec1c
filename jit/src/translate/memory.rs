//! Memory operands: effective and linear address computation and the inline softmmu TLB path.
//!
//! A guest access is translated inline when the segment allows it (the dispatcher puts that in
//! the mode key, see [`super::SegAccess`]): the offset is checked against the segment limit,
//! the linear address is looked up in the direct-mapped TLB of `JitContext`, and when the limit
//! holds, the tag matches and the access stays in the page, the host address is `la + addend`.
//! Everything else (a limit violation, a TLB miss, MMIO, a write to a page holding translated
//! code, an access crossing a page) runs the whole instruction through the interpreter, which
//! applies the architectural rules and the full softmmu (page walk, code-page tracking, faults),
//! and leaves the function: the inline handlers commit nothing before their memory accesses.
//! In flat 64-bit segments, later accesses through the same address value reuse what earlier
//! probes on the path proved (see `probe_cache`). Guest memory is little-endian whatever the
//! host is.

use std::mem::offset_of;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, Endianness, InstBuilder, InstructionData, MemFlagsData, Opcode, Value, ValueDef,
};
use iced_x86::{Instruction, OpKind, Register};
use vcpu::{CpuState, Segment};

use crate::context::{JitContext, TlbEntry, PAGE_MASK, PAGE_SHIFT, TLB_SIZE};

/// log2 of `size_of::<TlbEntry>()`, so the probe can scale the TLB index by shifting.
const TLB_ENTRY_SHIFT: u32 = std::mem::size_of::<TlbEntry>().trailing_zeros();
const _: () = assert!(std::mem::size_of::<TlbEntry>() == 1 << TLB_ENTRY_SHIFT);
const _: () = assert!(TLB_ENTRY_SHIFT <= PAGE_SHIFT);

use super::emit::Tx;
use super::probe_cache::{Base, Lookup, Proved};
use super::regs::{gpr_info, segment_index};

/// The outcome of a TLB probe: `hit` (an i8 truth value) and the host address used on a hit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    pub hit: Value,
    pub host: Value,
}

/// What [`Tx::tlb_lookup`] emits.
#[derive(Debug, Clone, Copy)]
struct TlbLookup {
    /// i8 truth value: the tag matches the page of the access's last byte.
    hit: Value,
    /// The tag loaded from the entry.
    tag: Value,
    /// The entry's addend (host address minus linear address).
    addend: Value,
    /// The entry's address (`tlb` offsets are from it plus [`TLB_OFFSET`]).
    entry: Value,
}

/// Offset of the TLB in the context.
const TLB_OFFSET: i32 = offset_of!(JitContext, tlb) as i32;

/// One run-time condition of growing a proved range (see [`Lookup::Grow`]).
#[derive(Debug, Clone, Copy)]
enum GrowCheck {
    /// The TLB entry's write tag is the proved page.
    WriteTag,
    /// The byte at this offset from the base is on the proved page.
    OnPage(i128),
}

/// How many additions of constants [`Tx::split_address`] looks through.
const MAX_SPLIT_DEPTH: usize = 8;

/// A memory operand the translator can handle inline.
#[derive(Debug, Clone, Copy)]
pub(super) struct MemRef {
    /// Segment register index (ES=0 .. GS=5).
    pub seg: usize,
    /// Address size in bytes (2, 4, 8).
    pub asize: u32,
}

fn seg_base_offset(seg: usize) -> i32 {
    (offset_of!(JitContext, cpu)
        + offset_of!(CpuState, seg)
        + seg * std::mem::size_of::<Segment>()
        + offset_of!(Segment, base)) as i32
}
fn seg_limit_offset(seg: usize) -> i32 {
    (offset_of!(JitContext, cpu)
        + offset_of!(CpuState, seg)
        + seg * std::mem::size_of::<Segment>()
        + offset_of!(Segment, limit)) as i32
}

fn guest_flags() -> MemFlagsData {
    MemFlagsData::new()
        .with_endianness(Endianness::Little)
        .with_notrap()
}

/// Analyse the memory operand of `insn` (no code is emitted). `None`: not inline-able.
pub(super) fn mem_ref(insn: &Instruction, bitness: u32) -> Option<MemRef> {
    let seg = segment_index(insn.memory_segment())?;
    let base = insn.memory_base();
    let index = insn.memory_index();
    if base == Register::RIP || base == Register::EIP {
        return (bitness == 64 && base == Register::RIP).then_some(MemRef { seg, asize: 8 });
    }
    let asize = if base != Register::None {
        gpr_info(base)?.size
    } else if index != Register::None {
        gpr_info(index)?.size
    } else {
        // A bare displacement: 64-bit mode's [disp32] (sign-extended, iced reports size 8, as
        // for MOV's moffs64) and [disp32] under an address-size prefix (size 4), e.g. the
        // kernel's per-CPU `mov rax, gs:[disp32]`.
        match (bitness, insn.memory_displ_size()) {
            (16 | 32, 2) => 2,
            (16 | 32 | 64, 4) => 4,
            (64, 8) => 8,
            _ => return None,
        }
    };
    if index != Register::None {
        gpr_info(index)?;
    }
    Some(MemRef { seg, asize })
}

/// Whether the operand `op` of `insn` is a plain memory operand.
pub(super) fn is_mem(insn: &Instruction, op: u32) -> bool {
    insn.op_kind(op) == OpKind::Memory
}

impl Tx<'_, '_> {
    /// The effective address (offset in the segment) of the memory operand of the current
    /// instruction, truncated to the address size.
    pub fn effective_address(&mut self, insn: &Instruction, m: MemRef) -> Value {
        let base = insn.memory_base();
        if base == Register::RIP {
            return self.c64(insn.ip_rel_memory_address());
        }
        // base + index * scale + displacement, without adding a zero displacement.
        let mut ea: Option<Value> = None;
        if base != Register::None {
            let info = gpr_info(base).expect("checked by mem_ref");
            ea = Some(self.gpr(info.index));
        }
        let index = insn.memory_index();
        if index != Register::None {
            let info = gpr_info(index).expect("checked by mem_ref");
            let mut v = self.gpr(info.index);
            let scale = insn.memory_index_scale();
            if scale > 1 {
                let sh = self.c64(u64::from(scale.trailing_zeros()));
                v = self.b.ins().ishl(v, sh);
            }
            ea = Some(match ea {
                Some(b) => self.b.ins().iadd(b, v),
                None => v,
            });
        }
        let disp = insn.memory_displacement64();
        let ea = match ea {
            Some(v) => self.add_c(v, disp),
            None => self.c64(disp),
        };
        self.zext(ea, m.asize)
    }

    /// The linear address of `ea` in segment `seg` and, outside 64-bit mode, whether the
    /// access passes the segment limit (SDM Vol. 3A 5.3: the last byte accessed must be within
    /// the limit of an expand-up segment).
    fn linear(&mut self, seg: usize, ea: Value, size: u32) -> (Value, Option<Value>) {
        if self.env.mode.bitness == 64 {
            if seg < 4 {
                return (ea, None);
            }
            let base = self.load_ctx(types::I64, seg_base_offset(seg));
            return (self.b.ins().iadd(base, ea), None);
        }
        let limit = self
            .b
            .ins()
            .uload32(MemFlagsData::trusted(), self.ctx, seg_limit_offset(seg));
        let last = self.add_c(ea, u64::from(size - 1));
        let ok = self
            .b
            .ins()
            .icmp(IntCC::UnsignedLessThanOrEqual, last, limit);
        let base = self.load_ctx(types::I64, seg_base_offset(seg));
        let la = self.b.ins().iadd(base, ea);
        (self.zext(la, 4), Some(ok))
    }

    /// Look `seg:ea` up in the TLB for a read or a write: whether the inline path may be taken
    /// (limit holds, tag matches, the access stays in the page), and the host address it would
    /// use. The caller branches on `hit` (only a range grown from an earlier probe may already
    /// have left for the interpreter on one of its other checks, as the miss would). A write
    /// hit implies a read hit (the softmmu never sets a write tag without the read tag), so
    /// read-modify-write operands probe once for writing.
    /// In flat 64-bit segments an earlier probe of the same page may make the lookup cheaper
    /// or unnecessary (see [`Tx::probe_flat`]).
    pub fn probe(&mut self, seg: usize, ea: Value, size: u32, write: bool) -> Probe {
        if self.env.mode.bitness == 64
            && seg < 4
            && self.ptr == types::I64
            && self.b.func.dfg.value_type(ea) == types::I64
        {
            return self.probe_flat(ea, size, write);
        }
        let (la, ok) = self.linear(seg, ea, size);
        let t = self.tlb_lookup(la, size, write);
        let hit = match ok {
            Some(ok) => self.b.ins().band(t.hit, ok),
            None => t.hit,
        };
        let host = self.b.ins().iadd(la, t.addend);
        let host = if self.ptr == types::I64 {
            host
        } else {
            self.b.ins().ireduce(self.ptr, host)
        };
        Probe { hit, host }
    }

    /// [`Tx::probe`] of an access to a segment with base 0 in 64-bit mode, where the linear
    /// address is `ea` (SDM Vol. 3A 3.2.4): the effective address is split into an SSA value
    /// and a constant displacement, and the [`ProbeCache`] knows which ranges of bytes from
    /// that value are already proved to be in a mapped page on the current path. An access
    /// inside such a range needs no check at all; one that grows a range to less than a page
    /// is checked against the proved page only; any other probes the TLB.
    fn probe_flat(&mut self, ea: Value, size: u32, write: bool) -> Probe {
        let (base, lo) = self.split_address(ea);
        let hi = lo + i128::from(size - 1);
        let here = self.b.current_block();
        match self.probes.lookup(here, base, lo, hi, write) {
            Lookup::Inside(p) => {
                let hit = self.b.ins().iconst(types::I8, 1);
                let host = self.add_c(p.host_base, lo as u64);
                Probe { hit, host }
            }
            Lookup::Grow {
                proved,
                grown,
                check,
                write_tag,
            } => {
                // Each condition but the last leaves for the interpreter at once: a fused
                // compare and branch each, rather than truth values combined in registers.
                let tags = write_tag.then_some(GrowCheck::WriteTag);
                let ends = check.into_iter().flatten().map(GrowCheck::OnPage);
                let checks: Vec<GrowCheck> = tags.into_iter().chain(ends).collect();
                let (&last, earlier) = checks.split_last().expect("a grown range needs a check");
                for &c in earlier {
                    let ok = self.grow_check(c, base, &proved);
                    self.interp_unless(ok);
                }
                let hit = self.grow_check(last, base, &proved);
                let here = self.b.current_block();
                self.probes.expect(here, hit, grown);
                let host = self.add_c(proved.host_base, lo as u64);
                Probe { hit, host }
            }
            Lookup::Miss => {
                let t = self.tlb_lookup(ea, size, write);
                let host_base = match base {
                    Base::Value(x) => self.b.ins().iadd(x, t.addend),
                    Base::Absolute => t.addend,
                };
                let proved = Proved {
                    base,
                    lo,
                    hi,
                    write,
                    host_base,
                    page: t.tag,
                    entry: t.entry,
                };
                self.probes.expect(here, t.hit, proved);
                let host = self.add_c(host_base, lo as u64);
                Probe { hit: t.hit, host }
            }
        }
    }

    /// One condition of growing `proved` (see [`Lookup::Grow`]), as an i8 truth value.
    fn grow_check(&mut self, c: GrowCheck, base: Base, proved: &Proved) -> Value {
        match c {
            GrowCheck::WriteTag => {
                // Same page, same entry: its write tag decides.
                let tag = self.b.ins().load(
                    types::I64,
                    MemFlagsData::trusted(),
                    proved.entry,
                    TLB_OFFSET + offset_of!(TlbEntry, write_tag) as i32,
                );
                self.b.ins().icmp(IntCC::Equal, tag, proved.page)
            }
            GrowCheck::OnPage(end) => {
                let a = match base {
                    Base::Value(x) => self.add_c(x, end as u64),
                    Base::Absolute => self.c64(end as u64),
                };
                let page = self.and_c(a, PAGE_MASK);
                self.b.ins().icmp(IntCC::Equal, page, proved.page)
            }
        }
    }

    /// `ea` (an i64) as a base and a constant offset: the value reached by following additions
    /// of constants, and their sum, or no base and the whole address when it is a constant.
    fn split_address(&self, ea: Value) -> (Base, i128) {
        let mut v = ea;
        let mut d = 0u64;
        for _ in 0..MAX_SPLIT_DEPTH {
            if let Some(k) = self.const_of(v) {
                return (Base::Absolute, i128::from(k.wrapping_add(d)));
            }
            let ValueDef::Result(inst, 0) = self.b.func.dfg.value_def(v) else {
                break;
            };
            let InstructionData::Binary {
                opcode: Opcode::Iadd,
                args,
            } = self.b.func.dfg.insts[inst]
            else {
                break;
            };
            let (next, k) = match (self.const_of(args[0]), self.const_of(args[1])) {
                (_, Some(k)) => (args[0], k),
                (Some(k), None) => (args[1], k),
                (None, None) => break,
            };
            v = next;
            d = d.wrapping_add(k);
        }
        (Base::Value(v), i128::from(d as i64))
    }

    /// Look the linear address `la` (an i64) up in the TLB: whether the access of `size`
    /// bytes hits (the tag matches and the access stays in the page), the tag loaded (the
    /// page's linear address on a hit) and the entry's addend. No branch is emitted.
    fn tlb_lookup(&mut self, la: Value, size: u32, write: bool) -> TlbLookup {
        // The entry's byte offset in `tlb`, straight from `la` (no multiply):
        // tlb_index(la) * size_of::<TlbEntry>() == (la >> (PAGE_SHIFT - ENTRY_SHIFT)) & mask.
        let sh = self.c64(u64::from(PAGE_SHIFT - TLB_ENTRY_SHIFT));
        let scaled = self.b.ins().ushr(la, sh);
        let off = self.and_c(scaled, ((TLB_SIZE - 1) as u64) << TLB_ENTRY_SHIFT);
        let off = if self.ptr == types::I64 {
            off
        } else {
            self.b.ins().ireduce(self.ptr, off)
        };
        let entry = self.b.ins().iadd(self.ctx, off);
        let tlb_base = TLB_OFFSET;
        let tag_off = if write {
            offset_of!(TlbEntry, write_tag)
        } else {
            offset_of!(TlbEntry, read_tag)
        } as i32;
        let tag = self.b.ins().load(
            types::I64,
            MemFlagsData::trusted(),
            entry,
            tlb_base + tag_off,
        );
        // The page of the access's last byte must be the entry's tag, as QEMU's softmmu
        // compares: this also rejects an access crossing into the next page, since entry
        // `tlb_index(la)` only ever holds a tag with that index (or `TLB_INVALID`), and the
        // next page (even wrapped around to 0) has another index. One compare that the
        // branch on `hit` can fuse with.
        let last = if size > 1 {
            self.add_folded(la, u64::from(size - 1))
        } else {
            la
        };
        let page = self.and_c(last, PAGE_MASK);
        let hit = self.b.ins().icmp(IntCC::Equal, tag, page);
        let addend = self.b.ins().load(
            types::I64,
            MemFlagsData::trusted(),
            entry,
            tlb_base + offset_of!(TlbEntry, addend) as i32,
        );
        TlbLookup {
            hit,
            tag,
            addend,
            entry,
        }
    }

    /// `v + k`; when `v` is itself `x + constant` (a displacement), `x + (constant + k)`, which
    /// the x86-64 lowering turns into one LEA instead of materialising `k` (Cranelift runs no
    /// constant folding at `opt_level = "none"`).
    fn add_folded(&mut self, v: Value, k: u64) -> Value {
        if let ValueDef::Result(inst, 0) = self.b.func.dfg.value_def(v) {
            if let InstructionData::Binary {
                opcode: Opcode::Iadd,
                args,
            } = self.b.func.dfg.insts[inst]
            {
                let (x, c) = match (self.const_of(args[0]), self.const_of(args[1])) {
                    (Some(c), _) => (args[1], c),
                    (None, Some(c)) => (args[0], c),
                    (None, None) => return self.add_c(v, k),
                };
                return self.add_c(x, c.wrapping_add(k));
            }
        }
        self.add_c(v, k)
    }

    /// Read `size` bytes at `seg:ea`; the result is zero-extended to 64 bits.
    pub fn mem_read(&mut self, seg: usize, ea: Value, size: u32) -> Value {
        let p = self.probe(seg, ea, size, false);
        self.load_with(p, size)
    }

    /// Read through a probe made earlier. On a miss the whole instruction runs in the
    /// interpreter and the function is left (see [`Tx::interp_unless`]).
    pub fn load_with(&mut self, p: Probe, size: u32) -> Value {
        self.interp_unless(p.hit);
        let host = p.host;
        match size {
            1 => self.b.ins().uload8(types::I64, guest_flags(), host, 0),
            2 => self.b.ins().uload16(types::I64, guest_flags(), host, 0),
            4 => self.b.ins().uload32(guest_flags(), host, 0),
            _ => self.b.ins().load(types::I64, guest_flags(), host, 0),
        }
    }

    /// Write the low `size` bytes of `value` at `seg:ea`.
    pub fn mem_write(&mut self, seg: usize, ea: Value, size: u32, value: Value) {
        let p = self.probe(seg, ea, size, true);
        self.store_with(p, size, value);
    }

    /// Write through a write probe made earlier; a miss runs the instruction in the
    /// interpreter as for [`Tx::load_with`].
    pub fn store_with(&mut self, p: Probe, size: u32, value: Value) {
        self.interp_unless(p.hit);
        let host = p.host;
        match size {
            1 => {
                self.b.ins().istore8(guest_flags(), value, host, 0);
            }
            2 => {
                self.b.ins().istore16(guest_flags(), value, host, 0);
            }
            4 => {
                self.b.ins().istore32(guest_flags(), value, host, 0);
            }
            _ => {
                self.b.ins().store(guest_flags(), value, host, 0);
            }
        }
    }
}
