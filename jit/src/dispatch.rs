//! `JitVcpu`: the JIT backend's run loop.
//!
//! Each iteration checks for kicks, device requests, the instruction budget and HLT, drops
//! the blocks whose bytes were written (see [`crate::smc`]), finds the block at CS.base + rip (first through the
//! successor slots of the block that just ran, then through the block table, decoding a new
//! block if needed), and runs it: translated code once a block is hot, the interpreter over the
//! decoded instructions until then (or always, in interpreter-only mode, which differential
//! tests use as the reference).

use std::sync::atomic::AtomicBool;

use decoder::{decode_block, BlockEnd, BlockLimits, MAX_INSN_LEN};
use vcpu::state::rflags;
use vcpu::{Buses, CpuState, GuestRam, Kicker, Segment, Vcpu, VcpuError, VmExit};

use hashbrown::HashMap;

use crate::cache::{
    Block, BlockFn, BlockId, BlockKey, BlockTable, CacheError, ChainSlot, CodeCache, JumpCache,
    JumpEntry, ModeKey, CHAIN_SLOTS, SUCCESSORS,
};
use crate::context::{tlb_index, JitContext, TlbEntry, PAGE_MASK, PAGE_SHIFT};
use crate::entry::TailEntry;
use crate::exception;
use crate::interp;
use crate::mem::{self, Access};
use crate::region::{self, RegionLimits};
use crate::runtime::Runtime;
use crate::smc;
use crate::translate::{helpers, ChainEnv, ModeInfo, SegAccess, TranslateEnv, TranslateStats};
use crate::worker::{CompileWorker, Done, WorkerError};

/// Instructions an in-function loop may run before returning to the dispatcher (so pending
/// work such as interrupts is looked at regularly even without a budget).
const LOOP_SLICE: u64 = 1 << 20;
/// Flush the whole code cache when this many functions were compiled since the last flush and
/// at least half of them are dead.
const FLUSH_FUNCTIONS: usize = 1 << 14;
/// Instructions between two samples of the interrupt line (and polls of the timers). Also
/// sampled whenever the CPU is halted.
const INTERRUPT_POLL_INSNS: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// How the JIT executes blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitConfig {
    /// false: never translate, run every block through the interpreter.
    pub translate: bool,
    /// Runs of a block before it is translated (0 = translate on first sight).
    pub hot_threshold: u32,
    /// Most instructions per block.
    pub max_block_insns: usize,
    /// Run Cranelift on a second host thread ([`crate::worker`]): hot blocks keep running in
    /// the interpreter until their code is ready, instead of the guest waiting for the compile.
    /// Which blocks are compiled when then depends on host timing; off by default so tests
    /// see the same translations on every run.
    pub background_compile: bool,
    /// How far a hot block's translation extends into the blocks it jumps to (see
    /// [`crate::region`]).
    pub region: RegionLimits,
}

impl Default for JitConfig {
    fn default() -> Self {
        Self {
            translate: true,
            // Compiling a block costs as much as hundreds of interpreted runs of it. On a Linux
            // boot, where most code runs only a few times, a threshold of 4 spent 43% of the
            // time in Cranelift; 256 needs about a third less CPU time to the shell (user time
            // of emu/benches/linux-boot.sh's boot: 37 s with 4, 30 s with 32, 24 s with 256).
            // With the background compiler and queued blocks promoted while they run
            // (`CompileWorker::promote`), 64 to 256 reach the boot's userspace marker alike
            // (medians 6.72-6.74 s of 3-6 alternated runs on a quiet machine), 512 is 2% and
            // 1024 8% slower.
            hot_threshold: 256,
            max_block_insns: 64,
            background_compile: false,
            region: RegionLimits::default(),
        }
    }
}

/// Counters for tests and tuning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitStats {
    pub blocks_decoded: u64,
    pub blocks_compiled: u64,
    pub blocks_invalidated: u64,
    pub inline_insns: u64,
    pub interpreted_insns: u64,
    pub self_loops: u64,
    /// Basic blocks translated into the functions of other blocks' regions.
    pub region_blocks: u64,
    pub chained: u64,
    /// Chain slots linked (block exits that now continue in their successor's code directly).
    pub linked: u64,
    pub cache_flushes: u64,
    /// Blocks the run loop started (each may continue into others without it).
    pub dispatched: u64,
    /// Blocks the run loop found through the jump cache.
    pub jump_cache_hits: u64,
    /// Background compile jobs dropped unstarted from a full queue ([`crate::worker`]).
    pub compiles_dropped: u64,
    /// Host time spent translating and compiling blocks, in microseconds (on the compile
    /// thread with [`JitConfig::background_compile`]).
    pub compile_micros: u64,
    /// Guest instructions the interpreter ran in blocks without code and not queued for the
    /// compiler (not hot yet; or single-stepped, or on an interpreter-only vCPU).
    pub interpreted_cold: u64,
    /// Guest instructions the interpreter ran in blocks waiting for the background compiler.
    pub interpreted_queued: u64,
}

/// The software vCPU.
pub struct JitVcpu {
    ctx: Box<JitContext>,
    rt: Box<Runtime>,
    /// Created on the first translation (interpreter-only steppers never pay for Cranelift);
    /// unused with a background compiler, which has its own.
    cache: Option<CodeCache>,
    /// The background compiler, when [`JitConfig::background_compile`] is set.
    worker: Option<CompileWorker>,
    /// How the run loop calls translated code (present whenever the vCPU translates).
    entry: Option<TailEntry>,
    /// Cache flushes so far: results of compile jobs submitted before the last flush are void.
    epoch: u64,
    /// Functions compiled since the last flush (of either cache).
    functions: usize,
    blocks: BlockTable,
    kicker: Kicker,
    budget_end: Option<u64>,
    /// The icount at which the interrupt line is sampled next.
    next_interrupt_poll: u64,
    /// The last mode key, its interned id and the state it was computed from.
    mode_cache: Option<(ModeInputs, ModeKey, u32)>,
    /// Every mode key seen, with a small id for the jump cache (never forgotten).
    mode_ids: HashMap<ModeKey, u32>,
    /// Linear address to block, in front of the block table.
    jump_cache: JumpCache,
    /// The icount at which in-function loops return; read by generated code.
    loop_limit: Box<u64>,
    config: JitConfig,
    stats: JitStats,
    /// Consulted for every block not seen before; see [`JitVcpu::set_code_watch`].
    code_watch: Option<CodeWatch>,
    /// The watch accepted a block: `run` returned before executing it.
    watch_hit: bool,
}

/// A predicate over code the vCPU is about to run for the first time: the block's physical
/// address and the CPU state before its first instruction. Returning `true` stops the run there.
pub type CodeWatch = Box<dyn FnMut(u64, &CpuState) -> bool>;

/// Where to continue after a lookup.
enum Found {
    Block(BlockId),
    /// Fetching the code faulted and the fault was delivered: look again.
    Faulted,
    /// The code watch accepted the block: leave `run` before executing it.
    Watched,
}

impl JitVcpu {
    pub fn new(ram: GuestRam, initial: CpuState) -> Result<JitVcpu, JitError> {
        Self::with_config(ram, initial, JitConfig::default())
    }

    /// Make `kicker` the handle that gets this vCPU out of `run`, in place of its own: a
    /// machine that moves a running guest here from another backend keeps the kicker its
    /// controls already hold. Only the dispatcher reads the kicker (between blocks; generated
    /// code leaves loops at `loop_limit`), so it may change at any time.
    pub fn share_kicker(&mut self, kicker: Kicker) {
        self.kicker = kicker;
    }

    pub fn with_config(
        ram: GuestRam,
        initial: CpuState,
        config: JitConfig,
    ) -> Result<JitVcpu, JitError> {
        let mut ctx = Box::new(JitContext::new(initial));
        ctx.set_cpu_state(&initial);
        Ok(Self {
            ctx,
            rt: Box::new(Runtime::new(ram)),
            // A host Cranelift cannot serve is reported here rather than at the first block.
            cache: if config.translate && !config.background_compile {
                Some(CodeCache::new()?)
            } else {
                None
            },
            worker: if config.translate && config.background_compile {
                Some(CompileWorker::spawn(CodeCache::new()?)?)
            } else {
                None
            },
            entry: if config.translate {
                Some(TailEntry::new()?)
            } else {
                None
            },
            epoch: 0,
            functions: 0,
            blocks: BlockTable::new(),
            kicker: Kicker::new(),
            budget_end: None,
            next_interrupt_poll: 0,
            mode_cache: None,
            mode_ids: HashMap::new(),
            jump_cache: JumpCache::default(),
            loop_limit: Box::new(u64::MAX),
            config,
            stats: JitStats::default(),
            code_watch: None,
            watch_hit: false,
        })
    }

    /// A vCPU that never translates: every block runs through the interpreter.
    pub fn with_interpreter_only(ram: GuestRam, initial: CpuState) -> Result<JitVcpu, JitError> {
        Self::with_config(
            ram,
            initial,
            JitConfig {
                translate: false,
                ..JitConfig::default()
            },
        )
    }

    /// Return [`VmExit::BudgetSpent`] once `n` more instructions ran (checked between blocks);
    /// `None` removes the limit.
    pub fn set_instruction_budget(&mut self, n: Option<u64>) {
        self.budget_end = n.map(|n| self.ctx.icount.saturating_add(n));
    }

    /// Watch for code: before the first execution of each block not seen before (a miss in the
    /// block table, so the check costs nothing once code is warm), `watch` is shown the block's
    /// physical address and the CPU state; when it returns `true`, `run` returns
    /// [`VmExit::Kicked`] with the guest about to execute that block, and
    /// [`JitVcpu::take_watch_hit`] says why. `None` removes the watch.
    ///
    /// A machine uses this to hand a guest to another backend at a point only the code reveals
    /// (emu: a Linux kernel's entry after its self-decompressor).
    pub fn set_code_watch(&mut self, watch: Option<CodeWatch>) {
        self.code_watch = watch;
    }

    /// Whether the last `run` returned because the code watch fired, clearing the mark.
    pub fn take_watch_hit(&mut self) -> bool {
        std::mem::take(&mut self.watch_hit)
    }

    /// Instructions executed so far.
    pub fn instructions(&self) -> u64 {
        self.ctx.icount
    }

    pub fn stats(&self) -> JitStats {
        self.stats
    }

    pub fn config(&self) -> JitConfig {
        self.config
    }

    /// Guest memory.
    pub fn ram(&self) -> &GuestRam {
        &self.rt.ram
    }

    /// The mode key for the current state, recomputed only when one of its inputs changed
    /// (the dispatcher asks before every block; the inputs change only at mode switches and
    /// segment loads).
    fn current_mode_key(&mut self) -> (ModeKey, u32) {
        let cpu = &self.ctx.cpu;
        let cs = cpu.cs();
        if let Some((cached, key, id)) = &self.mode_cache {
            let same_mode = cached.cr0 == cpu.cr0
                && cached.efer == cpu.efer
                && cached.vm == cpu.rflags & rflags::VM
                && cached.a20_mask == self.ctx.a20_mask
                && cached.segs[CS_INDEX].1 == cs.attr;
            // In 64-bit mode that is all the key depends on: the CS base and every segment's
            // rights are ignored (SDM Vol. 3A 3.4.4), and the processor stays in 64-bit
            // mode while CR0, EFER and CS's L and D bits stay (data segment loads and the FS
            // and GS base changes of every system call need no look).
            if same_mode
                && (key.info.bitness == 64
                    || (cached.cs_base == cs.base
                        && cpu
                            .seg
                            .iter()
                            .zip(&cached.segs)
                            .all(|(s, &(sel, attr))| s.selector == sel && s.attr == attr)))
            {
                return (*key, *id);
            }
        }
        let inputs = ModeInputs {
            cr0: cpu.cr0,
            efer: cpu.efer,
            vm: cpu.rflags & rflags::VM,
            a20_mask: self.ctx.a20_mask,
            cs_base: cs.base,
            segs: std::array::from_fn(|i| (cpu.seg[i].selector, cpu.seg[i].attr)),
        };
        let key = self.mode_key();
        let next = self.mode_ids.len() as u32;
        let id = *self.mode_ids.entry(key).or_insert(next);
        self.mode_cache = Some((inputs, key, id));
        (key, id)
    }

    fn mode_key(&self) -> ModeKey {
        let cpu = &self.ctx.cpu;
        let mode = cpu.mode();
        let bitness = mode.bitness();
        let protected = cpu.cr0 & vcpu::state::cr0::PE != 0;
        let ss = &cpu.seg[vcpu::SegmentIndex::Ss as usize];
        let stack_size = if bitness == 64 {
            8
        } else if ss.db() {
            4
        } else {
            2
        };
        let mut seg_access = 0u16;
        for (i, s) in cpu.seg.iter().enumerate() {
            let (r, w) = if bitness == 64 || !protected || mode == vcpu::ExecMode::Virtual8086 {
                (true, true)
            } else {
                seg_rights(s, i)
            };
            if r {
                seg_access |= SegAccess::read(i);
            }
            if w {
                seg_access |= SegAccess::write(i);
            }
        }
        ModeKey {
            // 64-bit mode ignores the CS base (SDM Vol. 3A 3.4.4).
            cs_base: if bitness == 64 { 0 } else { cpu.cs().base },
            info: ModeInfo {
                bitness,
                stack_size,
                seg_access,
            },
            protected,
            paging: cpu.cr0 & vcpu::state::cr0::PG != 0,
            ia32e: cpu.efer & vcpu::state::efer::LMA != 0,
            a20: self.ctx.a20_mask & (1 << 20) != 0,
        }
    }

    fn env(&self, mode: ModeInfo, chain: Option<ChainEnv>) -> TranslateEnv {
        TranslateEnv {
            mode,
            helpers: helpers::table(),
            loop_limit: &*self.loop_limit as *const u64,
            chain,
        }
    }

    /// Link chain slot `slot` (left unlinked by the block that just ran) to block `id`, found
    /// at linear address `la` for ip `ip` in mode `mode`, if that is where the exit goes, the
    /// exit's block ran in the same mode, and `id` has code.
    fn link(&mut self, slot: *mut ChainSlot, id: BlockId, la: u64, ip: u64, mode: &ModeKey) {
        // SAFETY: `slot` was recorded by generated code from the table's arena, which has not
        // been cleared since (the dispatcher forgets recorded slots whenever it flushes).
        let s = unsafe { &mut *slot };
        if s.next != 0 || s.target_ip != ip {
            return;
        }
        if self.blocks.get(s.owner).is_none_or(|o| o.key.mode != *mode) {
            return;
        }
        let Some(b) = self.blocks.get_mut(id) else {
            return;
        };
        let Some(code) = b.code else {
            return;
        };
        if b.key.mode != *mode || b.key.ip != ip {
            return;
        }
        if mode.paging {
            if b.pages.len() > 1 {
                // The link would check only the first page's mapping.
                return;
            }
            let i = tlb_index(la);
            s.tlb_entry =
                (std::mem::offset_of!(JitContext, tlb) + i * size_of::<TlbEntry>()) as u64;
            s.tag = la & PAGE_MASK;
            s.phys = b.key.phys & PAGE_MASK;
            s.nx_word = (std::mem::offset_of!(JitContext, tlb_no_exec) + (i / 64) * 8) as u64;
            s.nx_bit = 1 << (i % 64);
        }
        s.next = code.addr();
        b.incoming.push(slot);
        self.stats.linked += 1;
    }

    /// Drop the blocks whose bytes were written since the last call; returns whether any went.
    fn invalidate_dirty(&mut self) -> bool {
        if !self.rt.has_code_writes() {
            return false;
        }
        let mut dropped = 0;
        let mut pages: Vec<u64> = Vec::new();
        for written in self.rt.take_code_writes() {
            let gone = self.blocks.invalidate_range(written);
            dropped += gone.blocks.len();
            // Dropped blocks must not be found through the jump cache. A block is only ever
            // entered there at its own linear address; an entry of an unknown mode matches
            // no lookup.
            for (id, la) in gone.blocks {
                if self.jump_cache.get(la).block == id {
                    self.jump_cache.set(JumpEntry {
                        la,
                        mode: u32::MAX,
                        ..JumpEntry::EMPTY
                    });
                }
            }
            for p in gone.pages {
                if !pages.contains(&p) {
                    pages.push(p);
                }
            }
        }
        // The pages' byte maps follow the blocks left on them.
        for p in pages {
            let left = self.blocks.page_extent(p);
            self.rt.reset_code_bytes(p, &left);
        }
        self.stats.blocks_invalidated += dropped as u64;
        dropped > 0
    }

    fn maybe_flush(&mut self) -> Result<(), VcpuError> {
        if self.functions >= FLUSH_FUNCTIONS && self.blocks.live() * 2 < self.blocks.slots() {
            if let Some(w) = &self.worker {
                // Before the chain slots go: the job in flight writes to its own. Jobs not
                // started are forgotten, a result in flight carries the old epoch and is
                // dropped; the worker frees the old code.
                w.flush().map_err(|e| VcpuError::Backend(e.to_string()))?;
            }
            for p in self.blocks.clear() {
                self.rt.unmark_code_page(p);
            }
            self.jump_cache.clear();
            if let Some(cache) = self.cache.as_mut() {
                // SAFETY: the dispatcher is between blocks and every block (with its code
                // pointer) was just dropped.
                unsafe { cache.flush() };
            }
            self.epoch += 1;
            self.functions = 0;
            self.stats.cache_flushes += 1;
        }
        Ok(())
    }

    /// The successor of `prev` at linear address `la`, if remembered and still valid.
    fn chained(&self, prev: BlockId, la: u64, ip: u64, mode: &ModeKey) -> Option<BlockId> {
        let p = self.blocks.get(prev)?;
        let &(_, id) = p.succ.iter().find(|s| s.0 == la)?;
        self.valid_at(id, la, ip, mode).then_some(id)
    }

    /// The block the jump cache remembers at `la`, if still valid.
    fn cached_jump(&self, la: u64, ip: u64, mode: &ModeKey, mode_id: u32) -> Option<BlockId> {
        let e = self.jump_cache.get(la);
        if e.la != la || e.mode != mode_id {
            return None;
        }
        self.valid_at(e.block, la, ip, mode).then_some(e.block)
    }

    /// The block at `la`: from the jump cache, else from the block table (building it).
    fn lookup(
        &mut self,
        la: u64,
        ip: u64,
        mode: ModeKey,
        mode_id: u32,
    ) -> Result<Found, VcpuError> {
        if let Some(id) = self.cached_jump(la, ip, &mode, mode_id) {
            self.stats.jump_cache_hits += 1;
            return Ok(Found::Block(id));
        }
        self.find(la, ip, mode)
    }

    /// Whether block `id`, remembered at linear address `la`, is the block to run for ip `ip` in
    /// mode `mode`.
    fn valid_at(&self, id: BlockId, la: u64, ip: u64, mode: &ModeKey) -> bool {
        let Some(b) = self.blocks.get(id) else {
            return false;
        };
        if b.key.mode != *mode || b.key.ip != ip {
            return false;
        }
        if mode.paging {
            // Same linear address, but the mapping may have changed: trust only a TLB entry
            // that maps it to the block's physical page.
            let i = tlb_index(la);
            let e = &self.ctx.tlb[i];
            if e.read_tag != la & PAGE_MASK
                || e.phys_page != b.key.phys & PAGE_MASK
                || self.ctx.tlb_no_exec(i)
            {
                return false;
            }
        }
        true
    }

    /// Find or build the block at `la`.
    fn find(&mut self, la: u64, ip: u64, mode: ModeKey) -> Result<Found, VcpuError> {
        let phys = match mem::code_phys(&mut self.ctx, &mut self.rt, la) {
            Ok(p) => p,
            Err(f) => {
                exception::deliver_fault(&mut self.ctx, &mut self.rt, f);
                return Ok(Found::Faulted);
            }
        };
        let key = BlockKey { phys, ip, mode };
        if let Some(id) = self.blocks.lookup(&key) {
            return Ok(Found::Block(id));
        }
        if let Some(watch) = self.code_watch.as_mut() {
            if watch(phys, &self.ctx.cpu_state()) {
                self.watch_hit = true;
                return Ok(Found::Watched);
            }
        }
        // Bytes to the end of the guest page (the guest's 4 KiB, not the host's page size).
        let page_left = ((1u64 << PAGE_SHIFT) - (la & !PAGE_MASK)) as usize;
        // No block is longer than its instruction cap allows: fetching (and zeroing) the rest
        // of the page, and walking the next page's translation, would be wasted.
        let fetch = page_left.min(self.config.max_block_insns.saturating_mul(MAX_INSN_LEN));
        let mut buf = vec![0u8; fetch + MAX_INSN_LEN - 1];
        let (phys, n) = match mem::fetch_code(&mut self.ctx, &mut self.rt, la, &mut buf) {
            Ok(r) => r,
            Err(f) => {
                exception::deliver_fault(&mut self.ctx, &mut self.rt, f);
                return Ok(Found::Faulted);
            }
        };
        let decoded = decode_block(
            &buf[..n],
            ip,
            mode.info.bitness,
            BlockLimits {
                max_insns: self.config.max_block_insns,
                page_bytes: page_left,
            },
        );
        if decoded.insns.is_empty() {
            // The first instruction runs into bytes that cannot be fetched: the fetch of the
            // next page faults (deliver it), or the code sits in an MMIO hole.
            let next = (la + n as u64) & mem::linear_mask(&self.ctx);
            if let Err(f) = mem::linear_to_phys(&mut self.ctx, &mut self.rt, next, Access::Execute)
            {
                exception::deliver_fault(&mut self.ctx, &mut self.rt, f);
                return Ok(Found::Faulted);
            }
            return Err(VcpuError::EmulationFailure {
                rip: ip,
                bytes: buf[..n].to_vec(),
                reason: "code is not in RAM or ROM".into(),
            });
        }
        // The bytes the block depends on: its instructions, and for an invalid last one as
        // many bytes as an instruction may have (a write there may make it valid).
        let covered = if decoded.end == BlockEnd::Invalid {
            let last = decoded.insns.last().map_or(0, iced_x86::Instruction::len);
            (decoded.byte_len - last + MAX_INSN_LEN)
                .min(n)
                .max(decoded.byte_len)
        } else {
            decoded.byte_len
        };
        let mut pages = vec![phys & PAGE_MASK];
        if covered > page_left {
            let next = (la + page_left as u64) & mem::linear_mask(&self.ctx);
            if let Ok(p2) = mem::linear_to_phys(&mut self.ctx, &mut self.rt, next, Access::Execute)
            {
                pages.push(p2 & PAGE_MASK);
            }
        }
        let extent = smc::split_at_page(phys, covered as u64, pages.get(1).copied());
        for &r in &extent {
            self.rt.mark_code_bytes(&mut self.ctx, r);
        }
        self.stats.blocks_decoded += 1;
        let block = Block::new(key, la, decoded.insns.into(), pages);
        Ok(Found::Block(self.blocks.insert(block, extent)))
    }

    /// Compile block `id` (of the interned mode `mode_id`) if it is hot enough and not compiled
    /// yet.
    fn maybe_compile(&mut self, id: BlockId, mode_id: u32) -> Result<(), VcpuError> {
        let Some(b) = self.blocks.get(id) else {
            return Ok(());
        };
        if b.compiling {
            // Queued and still running: every further `hot_threshold` runs move its job to
            // the front of the compile queue (`CompileWorker::promote`).
            if b.runs % self.config.hot_threshold.max(1) == 0 {
                if let Some(w) = &self.worker {
                    w.promote(id, self.epoch);
                }
            }
            return Ok(());
        }
        if !self.config.translate || b.code.is_some() || b.runs < self.config.hot_threshold {
            return Ok(());
        }
        let mode = b.key.mode;
        let region = region::collect(
            &self.blocks,
            id,
            self.config.region,
            mem::linear_mask(&self.ctx),
        );
        // The code depends on the bytes of every block it translates.
        self.blocks.cover_region(id, &region.blocks);
        let region = region.insns;
        let slot_count = CHAIN_SLOTS * region.len();
        let chain = ChainEnv {
            slots: self.blocks.alloc_chain_slots(id, slot_count),
            slot_count,
            paging: mode.paging,
            jump_cache: self.jump_cache.base(),
            mode_id,
            cs_base: mode.cs_base,
        };
        let env = self.env(mode.info, Some(chain));
        let backend = |e: &dyn std::fmt::Display| VcpuError::Backend(e.to_string());
        if let Some(w) = &self.worker {
            w.submit(id, self.epoch, region, env)
                .map_err(|e| backend(&e))?;
            if let Some(b) = self.blocks.get_mut(id) {
                b.compiling = true;
            }
            return Ok(());
        }
        let started = std::time::Instant::now();
        let cache = match self.cache.as_mut() {
            Some(c) => c,
            None => self
                .cache
                .insert(CodeCache::new().map_err(|e| backend(&e))?),
        };
        let compiled = cache.compile(region, &env).map_err(|e| backend(&e))?;
        self.install(id, compiled);
        self.stats.compile_micros += started.elapsed().as_micros() as u64;
        Ok(())
    }

    /// Give block `id` its compiled code.
    fn install(&mut self, id: BlockId, (code, st): (BlockFn, TranslateStats)) {
        self.functions += 1;
        self.stats.blocks_compiled += 1;
        self.stats.inline_insns += st.inline as u64;
        self.stats.interpreted_insns += st.interpreted as u64;
        self.stats.self_loops += u64::from(st.self_loop);
        self.stats.region_blocks += st.region_blocks.saturating_sub(1) as u64;
        if let Some(b) = self.blocks.get_mut(id) {
            b.code = Some(code);
            b.compiling = false;
        }
    }

    /// Install the code the background compiler has finished, for blocks still alive.
    fn take_compiled(&mut self) -> Result<(), VcpuError> {
        while let Some(done) = self.worker.as_ref().and_then(CompileWorker::try_take) {
            match done {
                Done::Compiled(c) => {
                    let compiled = c.code.map_err(|e| VcpuError::Backend(e.to_string()))?;
                    self.stats.compile_micros += c.micros;
                    // Ids are not reused before a flush, which starts a new epoch.
                    if c.epoch == self.epoch && self.blocks.get(c.block).is_some() {
                        self.install(c.block, compiled);
                    }
                }
                Done::Dropped { block, epoch } => {
                    self.stats.compiles_dropped += 1;
                    if epoch == self.epoch {
                        if let Some(b) = self.blocks.get_mut(block) {
                            // Compiled again only once it is hot again.
                            b.compiling = false;
                            b.runs = 0;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Run block `id` once.
    fn execute(&mut self, id: BlockId) {
        let Some(b) = self.blocks.get_mut(id) else {
            return;
        };
        b.runs = b.runs.saturating_add(1);
        // Translated code does not single-step: with RFLAGS.TF set the interpreter runs the
        // block so that it can raise #DB after each instruction (SDM Vol. 3A 18.3.1.4).
        let code = b.code.filter(|_| self.ctx.cpu.rflags & rflags::TF == 0);
        self.ctx.exit.exit_block = 0;
        match code {
            Some(f) => {
                let budget = self.budget_end.unwrap_or(u64::MAX);
                *self.loop_limit = budget
                    .min(self.ctx.icount.saturating_add(LOOP_SLICE))
                    .min(self.next_interrupt_poll);
                let ctx: *mut JitContext = &mut *self.ctx;
                let entry = self
                    .entry
                    .as_ref()
                    .expect("translating vCPUs have an entry");
                // SAFETY: `f` was compiled for this context layout; `ctx.runtime` points to
                // `self.rt` for the duration of `run`; the blocks' instruction slices and chain
                // slots live in the block table, which is not modified while code runs.
                let next = unsafe { entry.run(ctx, f) };
                if next != 0 {
                    // The only other result: a slow path left `resume_insn` for the
                    // interpreter (`HelperTable::resume`).
                    debug_assert_eq!(next as usize, helpers::table().resume);
                    // SAFETY: generated code stored a live instruction in `resume_insn` and its
                    // registers, flags and rip before returning it.
                    unsafe { helpers::jit_resume_interp(ctx) };
                }
            }
            None => {
                let b = self.blocks.get(id).expect("checked above");
                let start = self.ctx.icount;
                interp::run_block(&mut self.ctx, &mut self.rt, &b.insns, &b.handlers);
                let ran = self.ctx.icount - start;
                if b.compiling {
                    self.stats.interpreted_queued += ran;
                } else {
                    self.stats.interpreted_cold += ran;
                }
            }
        }
    }

    /// Sample INTR (letting timers raise what is due) and, when RFLAGS.IF is set and no
    /// interrupt shadow is active (SDM Vol. 3A 6.8.3), deliver the acknowledged vector through
    /// the IDT/IVT as an external interrupt. Returns whether one was delivered.
    fn take_interrupt(&mut self, buses: &mut Buses) -> bool {
        if !buses.poll_interrupt() {
            return false;
        }
        self.ctx.flags.materialize(&mut self.ctx.cpu.rflags);
        if self.ctx.cpu.rflags & rflags::IF == 0 || self.ctx.cpu.interrupt_shadow != 0 {
            return false;
        }
        let Some(vector) = buses.acknowledge_interrupt() else {
            return false;
        };
        exception::deliver(
            &mut self.ctx,
            &mut self.rt,
            vector,
            None,
            exception::EventKind::External,
        );
        self.ctx.exit.exit_block = 0;
        true
    }

    fn run_loop(&mut self, buses: *mut Buses) -> Result<VmExit, VcpuError> {
        let mut prev: Option<BlockId> = None;
        // The unlinked chain slot the last block left through (null: none).
        let mut link_from: *mut ChainSlot = std::ptr::null_mut();
        // Look at device requests and the A20 line before the first block.
        let mut look_at_platform = true;
        loop {
            // A plain load first: the swap in `take` is a locked instruction, and this runs
            // between every two blocks.
            if self.kicker.is_set() && self.kicker.take() {
                return Ok(VmExit::Kicked);
            }
            if self.rt.triple_fault {
                self.rt.triple_fault = false;
                self.ctx.exit.exit_run = 0;
                return Ok(VmExit::TripleFault {
                    rip: self.ctx.cpu.rip,
                });
            }
            if self.ctx.exit.exit_run != 0 {
                self.ctx.exit.exit_run = 0;
                prev = None;
                link_from = std::ptr::null_mut();
                look_at_platform = true;
            }
            let poll = self.ctx.cpu.halted != 0 || self.ctx.icount >= self.next_interrupt_poll;
            // Device requests and A20 changes come from the guest's own port and MMIO writes,
            // which end the run loop's current block with `exit_run` (`Buses::io_write` and
            // `Buses::mmio_write` report them): the platform is looked at after those, on entry
            // and at every interrupt poll, not between every two blocks.
            if look_at_platform || poll {
                look_at_platform = false;
                // SAFETY: `buses` is the `&mut Buses` given to `run`, alive for this call.
                let requested = unsafe { (*buses).request_pending() };
                // SAFETY: as above.
                let a20_mask = unsafe { (*buses).a20.mask() };
                if a20_mask != self.ctx.a20_mask {
                    // Port 0x92 or the keyboard controller moved the A20 line; the OUT that
                    // did it ended the block.
                    self.ctx.a20_mask = a20_mask;
                    self.ctx.flush_tlb();
                    prev = None;
                    link_from = std::ptr::null_mut();
                }
                if requested {
                    return Ok(VmExit::DeviceRequest);
                }
            }
            if poll {
                self.next_interrupt_poll = self.ctx.icount.saturating_add(INTERRUPT_POLL_INSNS);
                // SAFETY: as above.
                if self.take_interrupt(unsafe { &mut *buses }) {
                    prev = None;
                    link_from = std::ptr::null_mut();
                    continue;
                }
            }
            if self.ctx.cpu.halted != 0 {
                return Ok(VmExit::Halted {
                    interrupts_enabled: self.ctx.cpu.rflags & rflags::IF != 0,
                });
            }
            if self.budget_end.is_some_and(|end| self.ctx.icount >= end) {
                return Ok(VmExit::BudgetSpent);
            }
            if self.invalidate_dirty() {
                prev = None;
                link_from = std::ptr::null_mut();
                self.maybe_flush()?;
            }
            let (mode, mode_id) = self.current_mode_key();
            let ip = self.ctx.cpu.rip;
            let la = mode.cs_base.wrapping_add(ip) & mem::linear_mask(&self.ctx);
            let id = match prev.and_then(|p| self.chained(p, la, ip, &mode)) {
                Some(id) => {
                    self.stats.chained += 1;
                    id
                }
                None => match self.lookup(la, ip, mode, mode_id)? {
                    Found::Block(id) => {
                        if let Some(p) = prev.and_then(|p| self.blocks.get_mut(p)) {
                            let slot = p.next_succ;
                            p.succ[slot] = (la, id);
                            p.next_succ = (slot + 1) % SUCCESSORS;
                        }
                        id
                    }
                    Found::Faulted => {
                        prev = None;
                        link_from = std::ptr::null_mut();
                        continue;
                    }
                    Found::Watched => return Ok(VmExit::Kicked),
                },
            };
            self.take_compiled()?;
            self.maybe_compile(id, mode_id)?;
            if let Some(b) = self.blocks.get(id) {
                let entry = JumpEntry {
                    la,
                    phys_page: b.key.phys & PAGE_MASK,
                    code: b.code.map_or(0, BlockFn::addr),
                    mode: mode_id,
                    block: id,
                };
                // Stored unconditionally: comparing first would wait for the entry's line
                // (the cache is 128 KiB, indexed by address), where a store does not.
                self.jump_cache.set(entry);
            }
            if !link_from.is_null() && self.ctx.cpu.rflags & rflags::TF == 0 {
                self.link(link_from, id, la, ip, &mode);
            }
            self.ctx.chain_exit = 0;
            self.stats.dispatched += 1;
            self.execute(id);
            link_from = std::mem::take(&mut self.ctx.chain_exit) as usize as *mut ChainSlot;
            prev = Some(id);
        }
    }
}

/// Index of CS in [`ModeInputs::segs`] (and `CpuState::seg`).
const CS_INDEX: usize = vcpu::SegmentIndex::Cs as usize;

/// Everything [`JitVcpu::mode_key`] reads from the CPU state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModeInputs {
    cr0: u64,
    efer: u64,
    vm: u64,
    a20_mask: u64,
    cs_base: u64,
    /// (selector, attributes) of ES, CS, SS, DS, FS, GS.
    segs: [(u16, u16); 6],
}

/// Whether a protected-mode data segment register may be read/written inline: present,
/// non-null, code or data, and not expand-down (whose limit check is inverted, SDM Vol. 3A
/// 3.4.5.1). Anything else goes through the interpreter, which applies the full rules.
fn seg_rights(s: &Segment, index: usize) -> (bool, bool) {
    const TYPE_CODE: u8 = 0x8;
    const TYPE_WRITABLE_OR_READABLE: u8 = 0x2;
    const TYPE_EXPAND_DOWN: u8 = 0x4;
    let usable =
        s.present() && s.attr & Segment::ATTR_S != 0 && (s.selector & !3 != 0 || index == 1);
    if !usable {
        return (false, false);
    }
    let t = s.typ();
    if t & TYPE_CODE != 0 {
        (t & TYPE_WRITABLE_OR_READABLE != 0, false)
    } else if t & TYPE_EXPAND_DOWN != 0 {
        (false, false)
    } else {
        (true, t & TYPE_WRITABLE_OR_READABLE != 0)
    }
}

impl Drop for JitVcpu {
    fn drop(&mut self) {
        // Tuning figures (`RUST_LOG=jit::dispatch=debug`).
        log::debug!("jit: {:?}", self.stats);
    }
}

impl Vcpu for JitVcpu {
    fn backend_name(&self) -> &'static str {
        "jit"
    }

    fn run(&mut self, buses: &mut Buses) -> Result<VmExit, VcpuError> {
        let buses: *mut Buses = buses;
        self.rt.buses = buses;
        self.ctx.runtime = &mut *self.rt;
        let r = self.run_loop(buses);
        self.rt.buses = std::ptr::null_mut();
        self.ctx.runtime = std::ptr::null_mut();
        r
    }

    fn state(&mut self) -> Result<CpuState, VcpuError> {
        Ok(self.ctx.cpu_state())
    }

    fn set_state(&mut self, state: &CpuState) -> Result<(), VcpuError> {
        self.ctx.set_cpu_state(state);
        Ok(())
    }

    fn kicker(&self) -> Kicker {
        self.kicker.clone()
    }
}

const _: () = assert!(std::mem::size_of::<AtomicBool>() == 1);

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use vcpu::state::{cr0, gpr};
    use vcpu::{RegionKind, RegionSpec, SegmentIndex};

    use super::*;

    /// Flat 32-bit protected mode over 64 KiB of RAM, `code` at 0x1000 (where the CPU starts)
    /// and `tail` at 0x2000.
    fn flat32(code: &[u8], tail: &[u8]) -> (GuestRam, CpuState) {
        let ram = GuestRam::new(&[RegionSpec {
            base: 0,
            size: 0x1_0000,
            kind: RegionKind::Ram,
        }])
        .unwrap();
        ram.write_host(0x1000, code).unwrap();
        ram.write_host(0x2000, tail).unwrap();
        let mut s = CpuState::reset();
        s.cr0 |= cr0::PE;
        for (i, seg) in s.seg.iter_mut().enumerate() {
            *seg = if i == SegmentIndex::Cs as usize {
                Segment::from_descriptor(0x08, 0x0000_ffff, 0x00cf_9a00)
            } else {
                Segment::from_descriptor(0x10, 0x0000_ffff, 0x00cf_9200)
            };
        }
        s.rip = 0x1000;
        (ram, s)
    }

    /// A vCPU of the default configuration on [`flat32`]'s machine.
    fn machine(code: &[u8], tail: &[u8]) -> JitVcpu {
        let (ram, s) = flat32(code, tail);
        JitVcpu::new(ram, s).unwrap()
    }

    const HALTED: VmExit = VmExit::Halted {
        interrupts_enabled: false,
    };

    /// Run [`flat32`]'s machine with `code`, `tail` and the bytes of `more` (address, bytes)
    /// to HLT, with ESP at 0x8000; the final state and statistics.
    fn run_to_hlt(
        code: &[u8],
        tail: &[u8],
        more: &[(u64, &[u8])],
        config: JitConfig,
    ) -> (CpuState, JitStats, GuestRam) {
        let (ram, mut s) = flat32(code, tail);
        for (at, bytes) in more {
            ram.write_host(*at, bytes).unwrap();
        }
        s.gpr[gpr::RSP] = 0x8000;
        let mut v = JitVcpu::with_config(ram.clone(), s, config).unwrap();
        assert_eq!(v.run(&mut Buses::new()).unwrap(), HALTED);
        (v.state().unwrap(), v.stats(), ram)
    }

    /// The configurations self-modifying code must behave the same under: the default (hot
    /// blocks compiled), everything compiled on first sight, nothing compiled.
    fn configs() -> [JitConfig; 3] {
        [
            JitConfig::default(),
            JitConfig {
                hot_threshold: 0,
                ..JitConfig::default()
            },
            JitConfig {
                translate: false,
                ..JitConfig::default()
            },
        ]
    }

    #[test]
    fn writes_beside_a_compiled_loop_on_its_page_keep_it() {
        // 0x1000: mov ecx, 1000; L: mov [0x1080], cl; dec ecx; jnz L; hlt
        let code = [
            0xb9, 0xe8, 0x03, 0x00, 0x00, 0x88, 0x0d, 0x80, 0x10, 0x00, 0x00, 0x49, 0x75, 0xf7,
            0xf4,
        ];
        let (s, st, ram) = run_to_hlt(&code, &[], &[], JitConfig::default());
        assert_eq!(s.gpr[gpr::RCX], 0);
        let mut b = [0u8];
        ram.read(0x1080, &mut b).unwrap();
        assert_eq!(b[0], 1);
        // The loop was compiled once and never dropped: a handful of blocks decoded (the
        // entry, the loop, the HLT, and the loop's tail after a store that left generated
        // code through the interpreter), not one per iteration.
        assert_eq!(st.blocks_invalidated, 0, "{st:?}");
        assert!(st.blocks_decoded <= 4, "{st:?}");
        assert!(st.blocks_compiled >= 1, "{st:?}");
    }

    #[test]
    fn a_write_into_one_block_drops_it_alone_and_its_new_code_runs() {
        // 0x1000: mov ecx, 600; xor eax, eax; xor ebx, ebx
        // L: call 0x2000; call 0x2010; cmp ecx, 100; jne skip; mov byte [0x2002], 3
        // skip: dec ecx; jnz L; hlt
        // 0x2000: add eax, 1; ret        0x2010: add ebx, 1; ret
        let code = [
            0xb9, 0x58, 0x02, 0x00, 0x00, 0x31, 0xc0, 0x31, 0xdb, 0xe8, 0xf2, 0x0f, 0x00, 0x00,
            0xe8, 0xfd, 0x0f, 0x00, 0x00, 0x83, 0xf9, 0x64, 0x75, 0x07, 0xc6, 0x05, 0x02, 0x20,
            0x00, 0x00, 0x03, 0x49, 0x75, 0xe7, 0xf4,
        ];
        let tail = [0x83, 0xc0, 0x01, 0xc3];
        let other = [0x83, 0xc3, 0x01, 0xc3];
        for config in configs() {
            let (s, st, _) = run_to_hlt(&code, &tail, &[(0x2010, &other)], config);
            // ADD adds 1 for ecx = 600..=100 (the patch follows that iteration's call), then 3.
            assert_eq!(s.gpr[gpr::RAX], 501 + 99 * 3, "{config:?}");
            assert_eq!(s.gpr[gpr::RBX], 600, "{config:?}");
            // The function at 0x2010, on the written page, stays.
            assert_eq!(st.blocks_invalidated, 1, "{config:?} {st:?}");
        }
    }

    #[test]
    fn a_write_into_the_rest_of_the_running_block_takes_effect() {
        // 0x1000: mov ecx, 600; xor eax, eax; xor ebx, ebx
        // L: cmp ecx, 100; jne X; mov byte [X+1], 7
        // X: mov bl, 1; add eax, ebx; dec ecx; jnz L; hlt
        // The block of the store runs once, at ecx = 100, and goes on into X's bytes.
        let code = [
            0xb9, 0x58, 0x02, 0x00, 0x00, 0x31, 0xc0, 0x31, 0xdb, 0x83, 0xf9, 0x64, 0x75, 0x07,
            0xc6, 0x05, 0x16, 0x10, 0x00, 0x00, 0x07, 0xb3, 0x01, 0x01, 0xd8, 0x49, 0x75, 0xed,
            0xf4,
        ];
        for config in configs() {
            let (s, st, _) = run_to_hlt(&code, &[], &[], config);
            assert_eq!(s.gpr[gpr::RAX], 500 + 100 * 7, "{config:?}");
            assert!(st.blocks_invalidated >= 1, "{config:?} {st:?}");
        }
    }

    #[test]
    fn a_write_to_the_second_page_of_a_block_drops_it() {
        // 0x1000: mov ecx, 3; xor eax, eax; jmp 0x1ffc
        // 0x1ffc: add eax, 1 (imm32 at 0x1ffd..=0x2000)
        // 0x2001: mov [0x2000], cl; dec ecx; jnz 0x1ffc; hlt
        let code = [
            0xb9, 0x03, 0x00, 0x00, 0x00, 0x31, 0xc0, 0xe9, 0xf0, 0x0f, 0x00, 0x00,
        ];
        let tail = [
            0x00, 0x88, 0x0d, 0x00, 0x20, 0x00, 0x00, 0x49, 0x75, 0xf2, 0xf4,
        ];
        let add: &[u8] = &[0x05, 0x01, 0x00, 0x00];
        for config in configs() {
            let (s, st, _) = run_to_hlt(&code, &tail, &[(0x1ffc, add)], config);
            // Adds 1, then 0x0300_0001, then 0x0200_0001.
            assert_eq!(s.gpr[gpr::RAX], 0x0500_0003, "{config:?}");
            assert_eq!(st.blocks_invalidated, 3, "{config:?} {st:?}");
        }
    }

    #[test]
    fn mode_key_follows_segments_except_where_64_bit_mode_ignores_them() {
        use vcpu::state::efer;
        const CS: usize = SegmentIndex::Cs as usize;
        const DS: usize = SegmentIndex::Ds as usize;
        const FS: usize = SegmentIndex::Fs as usize;
        let mut v = machine(&[0xf4], &[]);
        let (k32, id32) = v.current_mode_key();
        assert_eq!(k32.info.bitness, 32);
        // A read-only data segment: DS may not be written inline any more.
        v.ctx.cpu.seg[DS] = Segment::from_descriptor(0x10, 0x0000_ffff, 0x00cf_9000);
        let (k, id) = v.current_mode_key();
        assert_ne!((k, id), (k32, id32));
        assert_eq!(k, v.mode_key());
        // 64-bit mode.
        v.ctx.cpu.cr0 |= cr0::PG;
        v.ctx.cpu.efer |= efer::LME | efer::LMA;
        v.ctx.cpu.seg[CS] = Segment::from_descriptor(0x08, 0, 0x00af_9a00);
        let (k64, id64) = v.current_mode_key();
        assert_eq!(k64.info.bitness, 64);
        // Data segments and bases do not matter there.
        v.ctx.cpu.seg[DS] = Segment::from_descriptor(0, 0, 0);
        v.ctx.cpu.seg[FS].base = 0x1234_5000;
        assert_eq!(v.current_mode_key(), (k64, id64));
        assert_eq!(v.mode_key(), k64);
        // Compatibility mode (CS.L clear) looks at them again.
        v.ctx.cpu.seg[CS] = Segment::from_descriptor(0x08, 0x0000_ffff, 0x00cf_9a00);
        let (kc, _) = v.current_mode_key();
        assert_eq!(kc.info.bitness, 32);
        assert_eq!(kc, v.mode_key());
        assert_eq!(kc.info.seg_access & SegAccess::read(DS), 0, "DS is null");
    }

    #[test]
    fn a_write_into_a_region_block_drops_the_function_built_over_it() {
        use crate::smc::PhysRange;
        let mut v = machine(&[0xf4], &[]);
        let (mode, _) = v.current_mode_key();
        let block = |phys: u64| {
            let key = BlockKey {
                phys,
                ip: phys,
                mode,
            };
            Block::new(key, phys, Vec::new().into(), vec![phys & PAGE_MASK])
        };
        let mut t = BlockTable::new();
        let a = t.insert(block(0x1000), vec![PhysRange::new(0x1000, 0x10)]);
        let b = t.insert(block(0x1020), vec![PhysRange::new(0x1020, 8)]);
        let c = t.insert(block(0x1800), vec![PhysRange::new(0x1800, 0x10)]);
        // A's function translates B as well.
        t.cover_region(a, &[a, b]);
        assert_eq!(
            t.invalidate_range(PhysRange::new(0x1010, 0x10)),
            Default::default(),
            "between the blocks"
        );
        let gone = t.invalidate_range(PhysRange::new(0x1024, 1));
        assert_eq!(gone.blocks, vec![(a, 0x1000), (b, 0x1020)]);
        assert_eq!(gone.pages, vec![0x1000]);
        assert_eq!(t.live(), 1);
        assert!(t.get(c).is_some());
        assert_eq!(t.page_extent(0x1000), vec![PhysRange::new(0x1800, 0x10)]);
    }

    #[test]
    fn watch_stops_before_the_accepted_block_and_the_run_resumes_there() {
        // 0x1000: mov esi, 0x7000; jmp 0x2000.   0x2000: inc eax; hlt.
        let mut v = machine(
            &[0xbe, 0x00, 0x70, 0x00, 0x00, 0xe9, 0xf6, 0x0f, 0x00, 0x00],
            &[0x40, 0xf4],
        );
        v.set_code_watch(Some(Box::new(|phys, cpu| {
            phys == 0x2000 && cpu.gpr[gpr::RSI] == 0x7000
        })));
        let mut buses = Buses::new();
        assert_eq!(v.run(&mut buses).unwrap(), VmExit::Kicked);
        assert!(v.take_watch_hit());
        assert!(!v.take_watch_hit(), "the mark is cleared once taken");
        let s = v.state().unwrap();
        assert_eq!(s.rip, 0x2000);
        assert_eq!(s.gpr[gpr::RAX], 0, "the watched block has not run");
        v.set_code_watch(None);
        assert_eq!(
            v.run(&mut buses).unwrap(),
            VmExit::Halted {
                interrupts_enabled: false
            }
        );
        assert_eq!(v.state().unwrap().gpr[gpr::RAX], 1);
        assert!(!v.take_watch_hit());
    }

    #[test]
    fn watch_sees_each_block_once_and_a_refusing_watch_changes_nothing() {
        // 0x1000: mov ecx, 1000; l: dec ecx; jnz l; jmp 0x2000.   0x2000: hlt.
        let mut v = machine(
            &[
                0xb9, 0xe8, 0x03, 0x00, 0x00, 0x49, 0x75, 0xfd, 0xe9, 0xf3, 0x0f, 0x00, 0x00,
            ],
            &[0xf4],
        );
        let seen = Rc::new(Cell::new(0u32));
        let count = seen.clone();
        v.set_code_watch(Some(Box::new(move |_, _| {
            count.set(count.get() + 1);
            false
        })));
        let mut buses = Buses::new();
        assert_eq!(
            v.run(&mut buses).unwrap(),
            VmExit::Halted {
                interrupts_enabled: false
            }
        );
        assert_eq!(v.state().unwrap().gpr[gpr::RCX], 0);
        assert!(!v.take_watch_hit());
        // Blocks: the entry, the loop body, the jmp after it, the hlt.
        assert_eq!(
            seen.get(),
            4,
            "one look per new block, none for the 1000 loop runs"
        );
    }

    #[test]
    fn background_compile_installs_code_while_the_loop_runs() {
        // mov ecx, N; xor eax, eax; L: add eax, ecx; dec ecx; jnz L; hlt
        const N: u32 = 2_000_000;
        let mut code = vec![0xb9];
        code.extend_from_slice(&N.to_le_bytes());
        code.extend_from_slice(&[0x31, 0xc0, 0x01, 0xc8, 0x49, 0x75, 0xfb, 0xf4]);
        let (ram, s) = flat32(&code, &[]);
        let config = JitConfig {
            hot_threshold: 16,
            background_compile: true,
            ..JitConfig::default()
        };
        let mut v = JitVcpu::with_config(ram, s, config).unwrap();
        let exit = v.run(&mut Buses::new()).unwrap();
        assert_eq!(
            exit,
            VmExit::Halted {
                interrupts_enabled: false
            }
        );
        let st = v.state().unwrap();
        let sum = (0..=u64::from(N)).sum::<u64>() as u32;
        assert_eq!(st.gpr[gpr::RAX] as u32, sum);
        assert_eq!(v.instructions(), 2 + 3 * u64::from(N) + 1);
        // The loop body ran interpreted until its code came back, then translated (an
        // interpreted run of two million iterations leaves the compile thread ample time).
        let stats = v.stats();
        assert!(stats.blocks_compiled >= 1, "{stats:?}");
        assert!(stats.self_loops >= 1, "{stats:?}");
        // Cold: the first block (5 instructions), the loop body's first 16 runs (3 each, the
        // 16th makes it hot), the HLT. Then the body waits for the compile thread for a
        // while, whole runs at a time.
        assert_eq!(stats.interpreted_cold, 5 + 16 * 3 + 1, "{stats:?}");
        assert_eq!(stats.interpreted_queued % 3, 0, "{stats:?}");
    }

    /// Run `code` at 1000:FFFE (16-bit real mode, 256 KiB of RAM) with a HLT at 1000:0000 and
    /// `mov bl, 1; hlt` at linear 0x20000, where execution would go if IP did not wrap; the
    /// state at the halt.
    fn run_at_the_end_of_a_16_bit_segment(code: [u8; 2], config: JitConfig) -> CpuState {
        let ram = GuestRam::new(&[RegionSpec {
            base: 0,
            size: 0x4_0000,
            kind: RegionKind::Ram,
        }])
        .unwrap();
        ram.write_host(0x1_fffe, &code).unwrap();
        ram.write_host(0x1_0000, &[0xf4]).unwrap();
        ram.write_host(0x2_0000, &[0xb3, 0x01, 0xf4]).unwrap();
        let mut s = CpuState::reset();
        for seg in s.seg.iter_mut() {
            *seg = Segment::real_mode(0);
        }
        s.seg[SegmentIndex::Cs as usize] = Segment::real_mode(0x1000);
        s.rip = 0xfffe;
        let mut v = JitVcpu::with_config(ram, s, config).unwrap();
        assert_eq!(v.run(&mut Buses::new()).unwrap(), HALTED);
        let st = v.state().unwrap();
        assert_eq!(st.gpr[gpr::RBX] & 0xff, 0, "ran the code past the wrap");
        assert_eq!(st.rip, 1);
        st
    }

    /// `mov al, 7` at 1000:FFFE falls through to IP 0, and runs once.
    fn check_16_bit_ip_wrap(config: JitConfig) {
        // mov al, 7
        let st = run_at_the_end_of_a_16_bit_segment([0xb0, 0x07], config);
        assert_eq!(st.gpr[gpr::RAX] & 0xff, 7);
    }

    #[test]
    fn an_interpreted_block_wraps_a_16_bit_ip_at_the_end_of_the_segment() {
        check_16_bit_ip_wrap(JitConfig {
            translate: false,
            ..JitConfig::default()
        });
    }

    #[test]
    fn a_translated_block_wraps_a_16_bit_ip_at_the_end_of_the_segment() {
        check_16_bit_ip_wrap(JitConfig {
            hot_threshold: 0,
            ..JitConfig::default()
        });
    }

    #[test]
    fn a_translated_jcc_not_taken_wraps_a_16_bit_ip() {
        // jz +0x10 with ZF clear: not taken, so IP wraps to 0.
        run_at_the_end_of_a_16_bit_segment(
            [0x74, 0x10],
            JitConfig {
                hot_threshold: 0,
                ..JitConfig::default()
            },
        );
    }

    #[test]
    fn an_interpreter_only_vcpu_counts_every_instruction_as_cold() {
        // mov ecx, 100; L: dec ecx; jnz L; hlt
        let code = [0xb9, 100, 0, 0, 0, 0x49, 0x75, 0xfd, 0xf4];
        let (ram, s) = flat32(&code, &[]);
        let mut v = JitVcpu::with_interpreter_only(ram, s).unwrap();
        assert_eq!(v.run(&mut Buses::new()).unwrap(), HALTED);
        let stats = v.stats();
        assert_eq!(v.instructions(), 1 + 2 * 100 + 1);
        assert_eq!(stats.interpreted_cold, v.instructions(), "{stats:?}");
        assert_eq!(stats.interpreted_queued, 0, "{stats:?}");
    }

    #[test]
    fn compiles_dropped_from_a_full_queue_become_hot_again_and_compile_later() {
        // mov ecx, ITERS; L: BLOCKS x (inc eax; jmp next); dec ecx; jnz L; hlt
        const BLOCKS: usize = crate::worker::MAX_QUEUED + 6;
        const ITERS: u32 = 200;
        let mut code = vec![0xb9];
        code.extend_from_slice(&ITERS.to_le_bytes());
        for _ in 0..BLOCKS {
            code.extend_from_slice(&[0x40, 0xeb, 0x00]);
        }
        let back = -(3 * BLOCKS as i32 + 1 + 6);
        code.extend_from_slice(&[0x49, 0x0f, 0x85]);
        code.extend_from_slice(&back.to_le_bytes());
        code.push(0xf4);
        let (ram, s) = flat32(&code, &[]);
        let config = JitConfig {
            hot_threshold: 2,
            background_compile: true,
            ..JitConfig::default()
        };
        let mut v = JitVcpu::with_config(ram, s, config).unwrap();
        // A compile thread that takes nothing yet: every hot block waits in its queue.
        v.worker = Some(CompileWorker::spawn_paused(CodeCache::new().unwrap()).unwrap());
        let mut buses = Buses::new();
        v.set_instruction_budget(Some(u64::from(ITERS / 2) * (2 * BLOCKS as u64 + 2)));
        assert_eq!(v.run(&mut buses).unwrap(), VmExit::BudgetSpent);
        let paused = v.stats();
        assert_eq!(paused.blocks_compiled, 0, "{paused:?}");
        // More hot blocks than the queue holds: the oldest were handed back, and became hot
        // and were queued again (dropping others) while the guest ran on interpreted.
        assert!(paused.compiles_dropped > 6, "{paused:?}");
        v.worker.as_ref().unwrap().resume();
        v.set_instruction_budget(None);
        assert_eq!(
            v.run(&mut buses).unwrap(),
            VmExit::Halted {
                interrupts_enabled: false
            }
        );
        let st = v.state().unwrap();
        assert_eq!(st.gpr[gpr::RAX], BLOCKS as u64 * u64::from(ITERS));
        assert_eq!(st.gpr[gpr::RCX], 0);
        // The resumed thread compiles the queued blocks (installed between blocks, or here).
        let started = std::time::Instant::now();
        while v.stats().blocks_compiled == 0 && started.elapsed().as_secs() < 30 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            v.take_compiled().unwrap();
        }
        assert!(v.stats().blocks_compiled >= 1, "{:?}", v.stats());
    }
}
