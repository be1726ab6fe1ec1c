//! Guest blocks to host code with Cranelift.
//!
//! One decoded block becomes one host function `extern "C" fn(*mut JitContext) -> u64` in the
//! host's default calling convention. The frequent instructions (moves, ALU operations with
//! register, memory and immediate operands, ADC/SBB, LEA, PUSH/POP, near CALL/RET/JMP/Jcc/LOOP,
//! MOVZX/MOVSX, CMOVcc, SETcc, shifts and rotates by an immediate or CL, DIV's common path,
//! CBW..CQO, BSWAP) are translated inline with the softmmu TLB lookup inline; everything
//! else calls the interpreter through [`helpers`]. A block whose last instruction jumps back to its
//! own start loops inside the function, bounded by an icount limit and the kick flag so budgets
//! and kicks are honoured.

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
mod regs;
mod shift;
#[cfg(test)]
mod tests;

use cranelift_codegen::ir::{Function, InstBuilder};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use iced_x86::{Instruction, InstructionInfoFactory};

use crate::cache::{ChainSlot, JumpEntry};
use emit::{ExitRip, Tx};
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
    /// `fn(*mut JitContext, *const Instruction, ea: u64, seg << 8 | size: u32, out: *mut u64)
    /// -> u32`: 1 = the block must end (fault delivered or instruction interpreted).
    pub read: usize,
    /// `fn(*mut JitContext, *const Instruction, ea: u64, seg << 8 | size: u32, value: u64)
    /// -> u32`: as `read`.
    pub write: usize,
    /// `fn(*mut JitContext, cc: u32) -> u32`: condition code from the stored flags.
    pub condition: usize,
}

/// The environment a block is translated in.
#[derive(Debug, Clone, Copy)]
pub struct TranslateEnv {
    pub mode: ModeInfo,
    pub helpers: HelperTable,
    /// Points to the icount value at which in-function loops must return to the dispatcher.
    pub loop_limit: *const u64,
    /// Points to the kick flag (a byte, non-zero = leave).
    pub kick: *const bool,
    /// The block's chain slots; `None` translates every exit as a return to the dispatcher.
    pub chain: Option<ChainEnv>,
}

/// Where a block's exits to constant ips find their chain slots (see `cache::ChainSlot`).
#[derive(Debug, Clone, Copy)]
pub struct ChainEnv {
    /// `cache::CHAIN_SLOTS` slots: [`TAKEN_SLOT`] for the taken (or only) exit,
    /// [`NOT_TAKEN_SLOT`] for the fall-through of a conditional branch.
    pub slots: *mut ChainSlot,
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

/// The chain slot of a jump, call, taken branch or a block's fall-through end.
pub const TAKEN_SLOT: usize = 0;
/// The chain slot of a conditional branch's not-taken side.
pub const NOT_TAKEN_SLOT: usize = 1;

/// What the translator did with a block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranslateStats {
    /// Instructions translated inline.
    pub inline: usize,
    /// Instructions sent to the interpreter helper.
    pub interpreted: usize,
    /// Whether the block loops to itself inside the generated function.
    pub self_loop: bool,
}

/// Bit i set: some instruction of `insns` reads or writes general register i (explicitly, as an
/// address component, or implicitly like RSP in PUSH), so the block loads it on entry.
fn used_gprs(insns: &[Instruction], nregs: usize) -> u32 {
    let mut factory = InstructionInfoFactory::new();
    let mut used = 0u32;
    for insn in insns {
        for r in factory.info(insn).used_registers() {
            if let Some(g) = regs::gpr_info(r.register()) {
                if g.index < nregs {
                    used |= 1 << g.index;
                }
            }
        }
    }
    used
}

/// Whether `insn` is a branch whose (taken) target is `start`.
fn jumps_to(insn: &Instruction, start: u64) -> bool {
    (insn.is_jcc_short_or_near() || insn.is_jmp_short_or_near() || insn.is_loop())
        && insn.near_branch_target() == start
}

/// Build the IR of one block into `func` (whose signature the caller has set). `insns` must stay
/// at the same address for as long as the generated code lives: its elements are passed by
/// pointer to the interpreter helper.
pub fn translate_block(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    frontend: TargetFrontendConfig,
    call_conv: CallConv,
    insns: &[Instruction],
    env: &TranslateEnv,
) -> TranslateStats {
    let b = FunctionBuilder::new(func, fctx);
    let nregs = if env.mode.bitness == 64 { 16 } else { 8 };
    let used = used_gprs(insns, nregs);
    let mut tx = Tx::new(b, env, frontend.pointer_type(), call_conv, nregs, used);
    let mut stats = TranslateStats::default();
    let start = insns.first().map_or(0, |i| i.ip());
    if insns.last().is_some_and(|l| jumps_to(l, start)) {
        let header = tx.b.create_block();
        tx.b.ins().jump(header, &[]);
        tx.b.switch_to_block(header);
        tx.loop_header = Some(header);
        // The back edge keeps registers in SSA values instead of storing them (see
        // `Tx::jump_to`), so at the header any register the block names may differ from the
        // context: every exit and helper call of the block writes them back.
        tx.dirty = used;
        stats.self_loop = true;
    }
    let mut ended = false;
    let mut last_interp = false;
    for (i, insn) in insns.iter().enumerate() {
        tx.index = i;
        tx.ip = insn.ip();
        tx.insn = insn as *const Instruction;
        match tx.translate_insn(insn, start) {
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
        tx.check_write_exit(insn.next_ip());
    }
    if !ended {
        match insns.last() {
            Some(l) if !last_interp => tx.exit_chained(l.next_ip(), insns.len() as u64, TAKEN_SLOT),
            _ => tx.exit(ExitRip::InContext, insns.len() as u64),
        }
    }
    tx.b.seal_all_blocks();
    tx.b.finalize(frontend);
    dce::remove_dead_code(func);
    stats
}
