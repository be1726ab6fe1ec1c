//! Regions: a hot block translated together with the blocks it jumps to on its own page.
//!
//! Each exit of a translated block costs a write-back of the cached registers and lazy flags, a
//! chain-slot check and a tail call into the next block's function (`crate::entry`), and the
//! next block reloads what it needs. Hot guest loops are usually a few small basic blocks (a decompressor's bit decoder is
//! five to twelve instructions per block), so that cost dominates them. When a block becomes hot
//! the dispatcher therefore hands the translator a *region*: the block and the blocks reachable
//! from it through direct jumps, conditional branches and fall-throughs, as far as they lie on
//! the same guest page and have already run (so they sit in the block table, decoded in the same
//! mode). The translator turns the edges between them into jumps inside one host function (see
//! `translate::translate_block`).
//!
//! Staying on one page is what keeps the rest of the JIT unchanged: the entry block's code
//! depends on the bytes of every block of its region, all on the entry's page, where the block
//! table finds the entry when they are written (see `BlockTable::cover_region`), and while the
//! code runs the dispatcher's check that the entry's linear page maps to its physical page
//! covers every block of the region. Calls, returns, indirect jumps,
//! interrupts and instructions that change the mode end a region's path: they leave the function
//! as before.

use std::sync::Arc;

use decoder::ends_block_after;
use iced_x86::{
    Code, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind,
};

use crate::cache::{BlockId, BlockKey, BlockTable};
use crate::context::PAGE_MASK;

/// How large a region may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionLimits {
    /// Most basic blocks, the entry included (1 = no regions).
    pub max_blocks: usize,
    /// Most guest instructions over all blocks.
    pub max_insns: usize,
    /// A block joins only when it ran at least this many 256ths of the entry's runs (cold
    /// paths stay out: they would cost compile time and rarely run).
    pub min_runs_256ths: u32,
    /// Keep a region only when it contains a loop (an edge back to one of its blocks); else
    /// the entry is translated alone. Straight-line code runs a few times in a row at most,
    /// and its translation, duplicated into every region reaching it, costs more compile time
    /// than the exits it saves (a Linux boot's kernel phase).
    pub loops_only: bool,
}

impl Default for RegionLimits {
    fn default() -> Self {
        // Measured on a Linux boot (emu/benches/linux-boot.sh): 8 blocks / 128 instructions
        // leave the decompressor 5% slower than 16 / 256, 32 / 512 gains nothing. Requiring a
        // loop and successors as hot as the entry keeps the kernel phase's compile time in
        // check (time to the userspace marker under load: 11.7 s; successors half as hot:
        // 12.4 s; no regions: 12.0 s; any successor and no loop required: 60% more CPU time
        // in the kernel phase), and the decompressor gains the same either way.
        Self {
            max_blocks: 16,
            max_insns: 256,
            min_runs_256ths: 256,
            loops_only: true,
        }
    }
}

/// Whether `insn` is one of the LOOP forms the translator handles inline (LOOPcc and JrCXZ go
/// to the interpreter, which then ends the block).
pub(crate) fn is_inline_loop(insn: &Instruction) -> bool {
    matches!(
        insn.code(),
        Code::Loop_rel8_16_CX
            | Code::Loop_rel8_32_CX
            | Code::Loop_rel8_16_ECX
            | Code::Loop_rel8_32_ECX
            | Code::Loop_rel8_64_ECX
            | Code::Loop_rel8_16_RCX
            | Code::Loop_rel8_64_RCX
    )
}

/// The constant ips a block ending in `last` may continue at without leaving through a call,
/// return, indirect branch or interrupt: branch targets and the fall-through. The translator
/// turns exactly these exits into edges when their targets are in the region.
pub fn successors(last: &Instruction) -> Vec<u64> {
    if last.is_jcc_short_or_near() || is_inline_loop(last) {
        vec![last.near_branch_target(), last.next_ip()]
    } else if last.is_jmp_short_or_near() {
        vec![last.near_branch_target()]
    } else if last.flow_control() == FlowControl::Next && !ends_block_after(last) {
        // The block stopped at its length cap.
        vec![last.next_ip()]
    } else {
        Vec::new()
    }
}

/// Whether a block starting with `insns` overwrites all six status flags before anything can
/// look at them: a register-only CMP/TEST/ADD/SUB/AND/OR/XOR/NEG, preceded only by
/// register-only moves and LEAs, which neither read flags nor leave the block (no memory
/// access, no helper). An edge into such a block need not store the lazy-flags record.
pub fn flags_dead_at_start(insns: &[Instruction]) -> bool {
    let reg_or_imm = |i: &Instruction| {
        (0..i.op_count()).all(|k| match i.op_kind(k) {
            OpKind::Register => i.op_register(k).is_gpr(),
            kind => crate::translate::is_imm(kind),
        })
    };
    for i in insns {
        if i.has_lock_prefix() {
            return false;
        }
        match i.mnemonic() {
            Mnemonic::Cmp
            | Mnemonic::Test
            | Mnemonic::Add
            | Mnemonic::Sub
            | Mnemonic::And
            | Mnemonic::Or
            | Mnemonic::Xor
            | Mnemonic::Neg => return reg_or_imm(i),
            Mnemonic::Mov
            | Mnemonic::Movzx
            | Mnemonic::Movsx
            | Mnemonic::Movsxd
            | Mnemonic::Nop
                if reg_or_imm(i) => {}
            Mnemonic::Lea | Mnemonic::Nop => {}
            _ => return false,
        }
    }
    false
}

/// Whether `insn` writes a segment register: the block's mode key (segment rights) may no
/// longer hold after it, so the region stops at such a block.
fn writes_segment(factory: &mut InstructionInfoFactory, insn: &Instruction) -> bool {
    factory.info(insn).used_registers().iter().any(|u| {
        u.register().is_segment_register()
            && matches!(
                u.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            )
    })
}

/// A region: the instructions of its blocks, entry first, and the blocks they come from.
#[derive(Debug, Default)]
pub struct Region {
    pub insns: Vec<Arc<[Instruction]>>,
    pub blocks: Vec<BlockId>,
}

/// The region of block `entry`: its instructions first, then (breadth-first) the blocks of the
/// table reachable from it through [`successors`] that lie wholly on the entry's linear and
/// physical page, in the entry's mode, within `limits`. `linear_mask` is the mask the
/// dispatcher applies to CS base + ip.
pub fn collect(
    table: &BlockTable,
    entry: BlockId,
    limits: RegionLimits,
    linear_mask: u64,
) -> Region {
    let Some(e) = table.get(entry) else {
        return Region::default();
    };
    let mut region = vec![e.insns.clone()];
    let mut ids = vec![entry];
    let mut starts = vec![e.key.ip];
    let mut insns = e.insns.len();
    let page_la = e.linear & PAGE_MASK;
    let page_phys = e.key.phys & PAGE_MASK;
    let mode = e.key.mode;
    let mut factory = InstructionInfoFactory::new();
    let mut next = 0;
    while next < region.len() && region.len() < limits.max_blocks {
        let block = region[next].clone();
        next += 1;
        if block.iter().any(|i| writes_segment(&mut factory, i)) {
            continue;
        }
        let Some(last) = block.last() else {
            continue;
        };
        for ip in successors(last) {
            if starts.contains(&ip) || region.len() >= limits.max_blocks {
                continue;
            }
            let la = mode.cs_base.wrapping_add(ip) & linear_mask;
            if la & PAGE_MASK != page_la {
                continue;
            }
            let key = BlockKey {
                phys: page_phys | (la & !PAGE_MASK),
                ip,
                mode,
            };
            let Some((id, b)) = table.lookup(&key).and_then(|id| Some((id, table.get(id)?))) else {
                continue;
            };
            let Some(end) = b.insns.last().map(Instruction::next_ip) else {
                continue;
            };
            // Wholly on the page: the page tracking of the entry covers it.
            let in_page = end > ip && (la & !PAGE_MASK) + (end - ip) <= !PAGE_MASK + 1;
            let min_runs = (u64::from(e.runs) * u64::from(limits.min_runs_256ths)) >> 8;
            if !in_page
                || u64::from(b.runs) < min_runs
                || b.pages.len() != 1
                || insns + b.insns.len() > limits.max_insns
                || b.insns.iter().any(|i| writes_segment(&mut factory, i))
            {
                continue;
            }
            insns += b.insns.len();
            starts.push(ip);
            region.push(b.insns.clone());
            ids.push(id);
        }
    }
    if limits.loops_only && !has_back_edge(&region) {
        region.truncate(1);
        ids.truncate(1);
    }
    Region {
        insns: region,
        blocks: ids,
    }
}

/// Whether some block of `region` continues at the start of itself or of a block before it.
fn has_back_edge(region: &[Arc<[Instruction]>]) -> bool {
    region.iter().enumerate().any(|(n, b)| {
        b.last().is_some_and(|l| {
            successors(l).iter().any(|&t| {
                region[..=n]
                    .iter()
                    .any(|r| r.first().is_some_and(|f| f.ip() == t))
            })
        })
    })
}
