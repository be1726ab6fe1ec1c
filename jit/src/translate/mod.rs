//! Guest blocks to host code with Cranelift.
//!
//! One decoded block, with the blocks of its region (see [`crate::region`]), becomes one host
//! function `extern "C" fn(*mut JitContext) -> u64` in the host's default calling convention.
//! The frequent instructions (moves, ALU operations with register, memory and immediate
//! operands, ADC/SBB, LEA, PUSH/POP, near CALL/RET/JMP/Jcc/LOOP, MOVZX/MOVSX, CMOVcc, SETcc,
//! shifts and rotates by an immediate or CL, DIV's common path, CBW..CQO, BSWAP) are translated
//! inline with the softmmu TLB lookup inline; everything else calls the interpreter through
//! [`helpers`], as does an access that misses the inline TLB path, which then leaves the
//! function.
//!
//! Jumps, branches and fall-throughs between the region's basic blocks stay inside the function:
//! guest registers stay in Cranelift variables across them (an edge stores only the lazy-flags
//! record and the instruction count), and an edge back to an earlier block of the region (a
//! loop, such as a block jumping to its own start) leaves the function when the icount limit is
//! reached, so budgets, interrupt polls and kicks are honoured (the dispatcher keeps the limit
//! within its interrupt poll interval and looks at kicks there). CF at the start of a block that
//! keeps it (INC/DEC first) travels along the edges as a value. Exits to other constant ips go
//! through chain slots, one per distinct target.

mod accumulator;
mod cond;
mod dce;
mod emit;
pub mod fallback_stats;
#[cfg(test)]
mod flag_tests;
pub mod helpers;
mod insn;
mod memory;
mod probe_cache;
#[cfg(test)]
mod probe_tests;
#[cfg(test)]
mod region_tests;
mod regs;
mod shift;
mod sse;
#[cfg(test)]
mod sse_tests;
#[cfg(test)]
mod tests;

use cranelift_codegen::ir::{Function, InstBuilder};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use iced_x86::{
    FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, RflagsBits,
};

use crate::cache::{ChainSlot, JumpEntry};
use emit::{ExitRip, RegionBlock, Tx};
pub(crate) use insn::is_imm;
use insn::Done;

/// Per-segment permission bits of [`ModeInfo::seg_access`]: segment `i` (ES=0 .. GS=5) may be
/// read inline when bit `2*i` is set and written inline when bit `2*i+1` is set.
pub struct SegAccess;

impl SegAccess {
    pub const fn read(seg: usize) -> u16 {
        1 << (2 * seg)
    }
    pub const fn write(seg: usize) -> u16 {
        2 << (2 * seg)
    }
}

/// Everything about the processor mode that changes the translation of a block. Part of the
/// block cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModeInfo {
    /// Default code size: 16, 32 or 64.
    pub bitness: u32,
    /// Stack pointer width in bytes: 2 or 4 from SS.D/B, 8 in 64-bit mode.
    pub stack_size: u32,
    /// [`SegAccess`] bits.
    pub seg_access: u16,
}

/// Addresses of the helpers generated code calls (see [`helpers`]).
#[derive(Debug, Clone, Copy)]
pub struct HelperTable {
    /// `fn(*mut JitContext, *const Instruction) -> u32`: interpret one instruction; 1 = leave.
    pub interp: usize,
    /// `fn(*mut JitContext, cc: u32) -> u32`: condition code from the stored flags.
    pub condition: usize,
    /// `fn(*mut JitContext) -> u64`, a block function: interpret `JitContext::resume_insn`,
    /// count it, and return 0. Generated code returns its address to have the dispatcher call
    /// it, which costs Cranelift less than a call in every function.
    pub resume: usize,
}

/// The environment a block is translated in.
#[derive(Debug, Clone, Copy)]
pub struct TranslateEnv {
    pub mode: ModeInfo,
    pub helpers: HelperTable,
    /// Points to the icount value at which in-function loops must return to the dispatcher.
    pub loop_limit: *const u64,
    /// The block's chain slots; `None` translates every exit as a return to the dispatcher.
    pub chain: Option<ChainEnv>,
}

/// Where a block's exits to constant ips find their chain slots (see `cache::ChainSlot`).
#[derive(Debug, Clone, Copy)]
pub struct ChainEnv {
    /// `slot_count` slots, given out in the order the translator meets exits to distinct
    /// constant ips (`cache::CHAIN_SLOTS` per basic block of the region are enough).
    pub slots: *mut ChainSlot,
    pub slot_count: usize,
    /// CR0.PG: a link is followed only while the TLB still maps the target as when it was made.
    pub paging: bool,
    /// The dispatcher's jump cache (`cache::JumpCache`, `cache::JUMP_CACHE_SIZE` entries):
    /// returns look their target up there and continue in its code directly.
    pub jump_cache: *const JumpEntry,
    /// The block's interned mode (`JumpEntry::mode` of the entries it may continue to).
    pub mode_id: u32,
    /// The block's CS base (0 in 64-bit mode): linear address = CS base + ip.
    pub cs_base: u64,
}

/// What the translator did with a block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranslateStats {
    /// Instructions translated inline.
    pub inline: usize,
    /// Instructions sent to the interpreter helper.
    pub interpreted: usize,
    /// Whether the block loops to itself inside the generated function (an edge of the region
    /// leads back to its start).
    pub self_loop: bool,
    /// Basic blocks translated (the entry and the region blocks edges lead to).
    pub region_blocks: usize,
}

/// Bit i set: some instruction of `insns` reads or writes general register i (explicitly, as an
/// address component, or implicitly like RSP in PUSH), so the block loads it on entry. Second:
/// the registers some instruction writes.
fn used_gprs<'i>(insns: impl Iterator<Item = &'i Instruction>, nregs: usize) -> (u32, u32) {
    let mut factory = InstructionInfoFactory::new();
    let (mut used, mut written) = (0u32, 0u32);
    for insn in insns {
        for r in factory.info(insn).used_registers() {
            if let Some(g) = regs::gpr_info(r.register()) {
                if g.index < nregs {
                    used |= 1 << g.index;
                    if matches!(
                        r.access(),
                        OpAccess::Write
                            | OpAccess::CondWrite
                            | OpAccess::ReadWrite
                            | OpAccess::ReadCondWrite
                    ) {
                        written |= 1 << g.index;
                    }
                }
            }
        }
    }
    (used, written)
}

/// Whether the translation of `insns` (a basic block) needs CF as it is on entry: some
/// instruction reads CF, or is an INC/DEC (which keep it: their record carries it), before any
/// instruction writes it. Edges to such a block pass CF along (see `Tx::pass_carry`).
fn carry_needed_at_start(insns: &[Instruction]) -> bool {
    for insn in insns {
        if matches!(insn.mnemonic(), Mnemonic::Inc | Mnemonic::Dec)
            || insn.rflags_read() & RflagsBits::CF != 0
        {
            return true;
        }
        if insn.rflags_modified() & RflagsBits::CF != 0 {
            return false;
        }
    }
    false
}

/// Build the IR of one region into `func` (whose signature the caller has set): `region[0]` is
/// the entry block, the others blocks it may continue in (see [`crate::region`]); a region of
/// one block is a plain block. The instructions must stay at the same address for as long as
/// the generated code lives: their elements are passed by pointer to the helpers.
pub fn translate_block<R: AsRef<[Instruction]>>(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    frontend: TargetFrontendConfig,
    call_conv: CallConv,
    region: &[R],
    env: &TranslateEnv,
) -> TranslateStats {
    let b = FunctionBuilder::new(func, fctx);
    let nregs = if env.mode.bitness == 64 { 16 } else { 8 };
    let (used, written) = used_gprs(region.iter().flat_map(|b| b.as_ref().iter()), nregs);
    let mut tx = Tx::new(b, env, frontend.pointer_type(), call_conv, nregs, used);
    let mut stats = TranslateStats::default();
    let start = region
        .first()
        .and_then(|b| b.as_ref().first())
        .map_or(0, |i| i.ip());
    // The entry's code gets a header block after the loads of the function's entry when some
    // block of the region may branch back to it.
    let entry_targeted = region.iter().any(|b| {
        b.as_ref()
            .last()
            .is_some_and(|l| crate::region::successors(l).contains(&start))
    });
    tx.region = region
        .iter()
        .enumerate()
        .filter_map(|(n, b)| {
            let first = b.as_ref().first()?;
            Some(RegionBlock {
                start: first.ip(),
                block: None,
                enterable: n > 0 || entry_targeted,
                flags_dead: crate::region::flags_dead_at_start(b.as_ref()),
                carry_in: carry_needed_at_start(b.as_ref()),
                // Only where probes are reused (see `probe_cache`).
                single_edge: env.mode.bitness == 64 && n > 0 && edges_to(region, first.ip()) <= 1,
                sealed: false,
                translated: n == 0,
            })
        })
        .collect();
    // Registers stay in SSA values across the region's edges, so at the start of every block
    // but the function's entry, any register the region writes may differ from the context:
    // every exit and helper call writes them back (an edge first stores any other dirty one).
    tx.merge_dirty = used & written;
    tx.used = used;
    if region.len() > 1 || entry_targeted {
        tx.count_along_edges();
    }
    if entry_targeted && !tx.region.is_empty() {
        if tx.region[0].carry_in {
            tx.pass_carry();
        }
        let header = tx.b.create_block();
        tx.b.ins().jump(header, &[]);
        tx.b.switch_to_block(header);
        tx.region[0].block = Some(header);
        tx.start_region_block(0);
    }
    let mut next = Some(0);
    while let Some(n) = next {
        if n > 0 {
            let cl = tx.region[n].block.expect("an edge created it");
            tx.b.switch_to_block(cl);
            tx.start_region_block(n);
        }
        tx.region[n].translated = true;
        stats.region_blocks += 1;
        translate_basic_block(&mut tx, region[n].as_ref(), &mut stats);
        // Next: a block some edge leads to that is not translated yet.
        next = tx
            .region
            .iter()
            .position(|r| r.block.is_some() && !r.translated);
    }
    stats.self_loop = tx.entry_looped;
    tx.finish_tails();
    tx.b.seal_all_blocks();
    tx.b.finalize(frontend);
    dce::remove_dead_code(func);
    stats
}

/// An upper bound on the number of edges of the region that can lead to ip `start` in 64-bit
/// code (see [`Tx::goto`]'s callers): an edge goes to the target of a near branch (JMP, Jcc,
/// LOOP, CALL), to the next ip after a conditional one, or to the next ip after a block's last
/// instruction. Blocks may overlap (a jump into the middle of another block's code), so the
/// next ip of an instruction inside a block counts only for branches.
fn edges_to<R: AsRef<[Instruction]>>(region: &[R], start: u64) -> usize {
    let mut n = 0;
    for insns in region.iter().map(AsRef::as_ref) {
        for (k, i) in insns.iter().enumerate() {
            let branch = matches!(
                i.op0_kind(),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            );
            if branch && i.near_branch_target() == start {
                n += 1;
            }
            if (branch || k + 1 == insns.len()) && i.next_ip() == start {
                n += 1;
            }
        }
    }
    n
}

/// Translate the instructions of one basic block, ending with its exits and edges.
fn translate_basic_block(tx: &mut Tx, insns: &[Instruction], stats: &mut TranslateStats) {
    let mut ended = false;
    let mut last_interp = false;
    for (i, insn) in insns.iter().enumerate() {
        tx.index = i;
        tx.ip = insn.ip();
        tx.insn = insn as *const Instruction;
        match tx.translate_insn(insn) {
            Done::Inline => {
                stats.inline += 1;
                last_interp = false;
            }
            Done::Ended => {
                stats.inline += 1;
                ended = true;
                break;
            }
            Done::NotHandled => {
                stats.interpreted += 1;
                tx.call_interp();
                last_interp = true;
            }
        }
    }
    if !ended {
        let n = insns.len() as u64;
        match insns.last() {
            Some(l) if !last_interp => tx.goto(tx.fall_through(l), n),
            // An interpreted instruction that did not end the block fell through: the state is
            // in the context and the record stored, as at any edge.
            Some(l)
                if l.flow_control() == FlowControl::Next
                    && !decoder::ends_block_after(l)
                    && tx.region_target(tx.fall_through(l)).is_some() =>
            {
                tx.goto(tx.fall_through(l), n)
            }
            _ => tx.exit(ExitRip::InContext, n),
        }
    }
}
