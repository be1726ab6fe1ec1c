//! The code cache: executable memory for translated blocks and the table of decoded blocks.
//!
//! Blocks are keyed by where they are (guest-physical start, ip) and by everything in the
//! processor mode that changes their meaning ([`ModeKey`]). Each block remembers the physical
//! bytes it was decoded from, and a compiled one those of its whole region ([`crate::smc`]), so a
//! guest write into them (reported by the softmmu) drops exactly the blocks it overlaps, and a
//! write beside them on the same page drops nothing. Cranelift's `JITModule` cannot free one
//! function, so dropped blocks' code stays allocated until the whole cache is flushed, which the
//! dispatcher does when too much dead code has accumulated.
//!
//! Blocks are chained directly: each compiled block owns [`CHAIN_SLOTS`] [`ChainSlot`]s per
//! basic block of its region (see [`crate::region`]), one per exit to a constant guest ip.
//! Generated code returns the successor's code pointer from the slot (when it is linked and
//! still valid) instead of 0, and the dispatcher calls it without looking anything up. Slots
//! live in a [`SlotArena`] freed only with the whole table, so a slot can be unlinked safely
//! whenever its target block is dropped.

use cranelift_codegen::ir::{types, AbiParam, Function, Signature, Type, UserFuncName};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use std::sync::Arc;

use hashbrown::HashMap;
use iced_x86::Instruction;

use crate::codemem::DenseCodeMemory;
use crate::context::PAGE_MASK;
use crate::interp::{self, Handler};
use crate::translate::{translate_block, ModeInfo, TranslateEnv, TranslateStats};

/// The entry of a translated block: `fn(ctx) -> u64` in Cranelift's `tail` calling
/// convention, so that a block continues in the next one with a tail call (see
/// [`crate::entry`]). Only generated code and [`crate::entry::TailEntry`] call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockFn(*const u8);

// SAFETY: a code address, immutable once compiled; the compile thread hands it to the
// dispatcher's thread.
unsafe impl Send for BlockFn {}

impl BlockFn {
    /// The code address (what chain slots and the jump cache hold).
    pub fn addr(self) -> u64 {
        self.0 as usize as u64
    }
}

/// The signature of every block, `fn(*mut JitContext) -> u64` (`ptr` is the host's pointer
/// type) in the `tail` calling convention: a block's exit tail-calls its successor
/// ([`crate::translate`]), which takes the same signature.
pub fn block_signature(ptr: Type) -> Signature {
    let mut sig = Signature::new(cranelift_codegen::isa::CallConv::Tail);
    sig.params.push(AbiParam::new(ptr));
    sig.returns.push(AbiParam::new(types::I64));
    sig
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("the host is not supported by Cranelift: {0}")]
    UnsupportedHost(String),
    #[error("bad Cranelift setting: {0}")]
    Setting(String),
    #[error("code generation failed: {0}")]
    Codegen(String),
}

/// A JIT module for `isa`, placing code densely where the host allows ([`DenseCodeMemory`]).
fn new_module(isa: &OwnedTargetIsa) -> JITModule {
    let mut builder = JITBuilder::with_isa(isa.clone(), default_libcall_names());
    if let Some(memory) = DenseCodeMemory::new() {
        builder.memory_provider(Box::new(memory));
    }
    JITModule::new(builder)
}

/// The host's ISA (`cranelift_native`) with the settings every translated function and the
/// entry trampoline share, tuned for compile time.
pub(crate) fn host_isa() -> Result<OwnedTargetIsa, CacheError> {
    let mut flags = settings::builder();
    for (k, v) in [
        // Compile time dominates: a Linux boot compiles ~9000 blocks that run a few thousand
        // times each. "none" skips the e-graph pass and costs ~30% less CPU per compile
        // (perf samples in Cranelift on that boot: 3700 -> 2600) for ~7% slower block code
        // (9500 -> 10300), a net ~3% of the boot's CPU time; the compute benchmark
        // (emu/benches/vs-qemu.sh) is not slower. The single-pass register allocator
        // compiles faster still but makes block code 60% slower (15400 samples): it stays
        // "backtracking" (the default).
        ("opt_level", "none"),
        // Helper addresses are absolute constants; keep relocations simple on every host.
        ("use_colocated_libcalls", "false"),
        ("is_pic", "false"),
        // Cranelift's tail calls (how a block continues in the next: `crate::entry`) rely on
        // frame pointers.
        ("preserve_frame_pointers", "true"),
        // The IR verifier costs a fifth of the compile time; tests and debug builds keep it.
        (
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        ),
    ] {
        flags
            .set(k, v)
            .map_err(|e| CacheError::Setting(format!("{k}={v}: {e}")))?;
    }
    cranelift_native::builder()
        .map_err(|e| CacheError::UnsupportedHost(e.to_string()))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| CacheError::UnsupportedHost(e.to_string()))
}

/// Executable memory and the Cranelift state reused for every block.
pub struct CodeCache {
    isa: OwnedTargetIsa,
    module: Option<JITModule>,
    cl: cranelift_codegen::Context,
    fctx: FunctionBuilderContext,
    functions: usize,
    next_name: u32,
    /// The guest instructions of every function compiled since the last flush: generated code
    /// passes pointers into them to helpers, so they live exactly as long as the code.
    kept: Vec<Vec<Arc<[Instruction]>>>,
}

impl CodeCache {
    /// A cache generating code for the host, with the settings of `host_isa`.
    pub fn new() -> Result<Self, CacheError> {
        let isa = host_isa()?;
        let module = new_module(&isa);
        let cl = module.make_context();
        Ok(Self {
            isa,
            module: Some(module),
            cl,
            fctx: FunctionBuilderContext::new(),
            functions: 0,
            next_name: 0,
            kept: Vec::new(),
        })
    }

    /// Functions compiled since the last flush.
    pub fn function_count(&self) -> usize {
        self.functions
    }

    /// Translate and compile one region (see [`crate::region`]; a single block is a region of
    /// one): `region[0]` is the entry block's instructions, the others the blocks it may
    /// continue in. The cache keeps the instructions alive until [`CodeCache::flush`].
    pub fn compile(
        &mut self,
        region: Vec<Arc<[Instruction]>>,
        env: &TranslateEnv,
    ) -> Result<(BlockFn, TranslateStats), CacheError> {
        if log::log_enabled!(log::Level::Trace) {
            let listing: Vec<String> = region
                .iter()
                .enumerate()
                .flat_map(|(n, b)| {
                    b.iter()
                        .enumerate()
                        .map(move |(k, i)| {
                            let mark = if k == 0 {
                                format!("[{n}]")
                            } else {
                                String::new()
                            };
                            format!("{mark:>5} {:#x} {i}", i.ip())
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            log::trace!(
                "block{} guest code:\n{}",
                self.next_name,
                listing.join("\n")
            );
        }
        let (func, stats) = self.translate(&region, env);
        let code = self.emit(func)?;
        self.kept.push(region);
        Ok((code, stats))
    }

    /// The IR of one region. Its instructions must not move while the code lives.
    fn translate(
        &mut self,
        region: &[Arc<[Instruction]>],
        env: &TranslateEnv,
    ) -> (Function, TranslateStats) {
        let mut func = Function::new();
        func.signature = block_signature(self.isa.pointer_type());
        let stats = translate_block(
            &mut func,
            &mut self.fctx,
            self.isa.frontend_config(),
            self.isa.default_call_conv(),
            region,
            env,
        );
        (func, stats)
    }

    /// Compile the IR of a block into executable memory.
    fn emit(&mut self, func: Function) -> Result<BlockFn, CacheError> {
        let name = format!("block{}", self.next_name);
        self.next_name += 1;
        let isa = &self.isa;
        let module = self.module.get_or_insert_with(|| new_module(isa));
        let id = module
            .declare_function(&name, Linkage::Local, &func.signature)
            .map_err(|e| CacheError::Codegen(e.to_string()))?;
        self.cl.clear();
        self.cl.func = func;
        self.cl.func.name = UserFuncName::user(0, id.as_u32());
        // Host code listings for tuning the translator (`RUST_LOG=jit::cache=trace`).
        self.cl.set_disasm(log::log_enabled!(log::Level::Trace));
        if let Err(e) = module.define_function(id, &mut self.cl) {
            let text = self.cl.func.display().to_string();
            self.cl.clear();
            return Err(CacheError::Codegen(format!("{e:?}\n{text}")));
        }
        if let Some(d) = self.cl.compiled_code().and_then(|c| c.vcode.as_ref()) {
            log::trace!("{name}:\n{d}");
        }
        module
            .finalize_definitions()
            .map_err(|e| CacheError::Codegen(e.to_string()))?;
        let code = module.get_finalized_function(id);
        self.cl.clear();
        self.functions += 1;
        Ok(BlockFn(code))
    }

    /// Free all generated code.
    ///
    /// # Safety
    /// No function returned by [`CodeCache::compile`] may be running or be called afterwards.
    pub unsafe fn flush(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: guaranteed by the caller.
            unsafe { m.free_memory() };
        }
        self.kept.clear();
        self.functions = 0;
    }
}

impl Drop for CodeCache {
    fn drop(&mut self) {
        // SAFETY: the owner drops its blocks together with the cache; nothing can call into
        // the code any more.
        unsafe { self.flush() };
    }
}

/// Everything about the processor mode a block's translation depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModeKey {
    pub cs_base: u64,
    pub info: ModeInfo,
    /// CR0.PE.
    pub protected: bool,
    /// CR0.PG.
    pub paging: bool,
    /// EFER.LMA: IA-32e mode (64-bit mode when `info.bitness` is 64, else compatibility mode).
    pub ia32e: bool,
    /// The A20 gate is on.
    pub a20: bool,
}

/// The cache key of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// Guest-physical address of the first byte.
    pub phys: u64,
    /// Guest ip (offset in CS) of the first instruction: generated code embeds ips.
    pub ip: u64,
    pub mode: ModeKey,
}

/// Index of a block in [`BlockTable`]; never reused before a flush.
pub type BlockId = u32;

/// Successor slots remembered per block (block chaining without the hash lookup).
pub const SUCCESSORS: usize = 2;

/// One decoded block and, once hot, its code.
pub struct Block {
    pub key: BlockKey,
    /// Linear address of the first byte.
    pub linear: u64,
    /// On the heap so its address is stable: generated code points at single instructions.
    /// Shared with the background compiler while it translates the block.
    pub insns: Arc<[Instruction]>,
    /// The interpreter's executor of each instruction ([`interp::handler`]), for running the
    /// block before it is compiled.
    pub(crate) handlers: Box<[Handler]>,
    /// Guest-physical pages the block's bytes lie in (one or two).
    pub pages: Vec<u64>,
    pub code: Option<BlockFn>,
    /// The background compiler has the block's IR (`code` is still `None`).
    pub compiling: bool,
    /// Times the block ran (saturating).
    pub runs: u32,
    /// (linear address, block) of recent successors.
    pub succ: [(u64, BlockId); SUCCESSORS],
    pub next_succ: usize,
    /// Chain slots of other blocks linked to this block's code (unlinked when it is dropped).
    pub incoming: Vec<*mut ChainSlot>,
}

impl Block {
    /// A block just decoded from `pages` at linear address `linear`: not run, not compiled.
    pub fn new(key: BlockKey, linear: u64, insns: Arc<[Instruction]>, pages: Vec<u64>) -> Self {
        Self {
            key,
            linear,
            handlers: insns.iter().map(interp::handler).collect(),
            insns,
            pages,
            code: None,
            compiling: false,
            runs: 0,
            succ: [NO_SUCC; SUCCESSORS],
            next_succ: 0,
            incoming: Vec::new(),
        }
    }
}

/// Chain slots a compiled block needs per basic block it translates: the taken (or only) exit
/// and the not-taken exit.
pub const CHAIN_SLOTS: usize = 2;

/// The link of one block exit to a constant guest ip. Generated code reads the first six words;
/// the rest is for the dispatcher.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSlot {
    /// The successor's code (a [`BlockFn`] address), or 0 while unlinked.
    pub next: u64,
    /// Under paging: byte offset in `JitContext` of the TLB entry for the target's linear
    /// address, which must still map it for reading (`read_tag == tag`) to `phys`, and the
    /// offset of the execute-disable word with the entry's bit (`nx_bit`), which must be clear.
    pub tlb_entry: u64,
    pub tag: u64,
    pub phys: u64,
    pub nx_word: u64,
    pub nx_bit: u64,
    /// The guest ip the exit goes to (set by the translator).
    pub target_ip: u64,
    /// The block whose code owns the slot.
    pub owner: BlockId,
}

impl ChainSlot {
    pub const UNLINKED: ChainSlot = ChainSlot {
        next: 0,
        tlb_entry: 0,
        tag: 0,
        phys: 0,
        nx_word: 0,
        nx_bit: 0,
        target_ip: u64::MAX,
        owner: BlockId::MAX,
    };
}

/// Chain slots at stable addresses, allocated in runs of consecutive slots and freed all at
/// once.
#[derive(Default)]
pub struct SlotArena {
    /// Chunks from `Box::into_raw`, each `ARENA_CHUNK` slots.
    chunks: Vec<*mut ChainSlot>,
    /// Slots used in the last chunk.
    used: usize,
}

/// Slots per arena chunk: the most one [`SlotArena::alloc`] hands out.
pub const ARENA_CHUNK: usize = 512;

impl SlotArena {
    /// `n` (at most [`ARENA_CHUNK`]) consecutive unlinked slots owned by `owner`.
    pub fn alloc(&mut self, owner: BlockId, n: usize) -> *mut ChainSlot {
        let n = n.clamp(1, ARENA_CHUNK);
        if self.chunks.is_empty() || self.used + n > ARENA_CHUNK {
            let chunk: Box<[ChainSlot]> = vec![ChainSlot::UNLINKED; ARENA_CHUNK].into();
            self.chunks.push(Box::into_raw(chunk) as *mut ChainSlot);
            self.used = 0;
        }
        let last = *self.chunks.last().expect("a chunk was just ensured");
        // SAFETY: `used + n <= ARENA_CHUNK`, so the slots lie inside the chunk, which stays
        // allocated until `clear`/drop.
        let p = unsafe { last.add(self.used) };
        for i in 0..n {
            // SAFETY: as above.
            unsafe {
                *p.add(i) = ChainSlot {
                    owner,
                    ..ChainSlot::UNLINKED
                }
            };
        }
        self.used += n;
        p
    }

    /// Free every slot.
    fn clear(&mut self) {
        for c in self.chunks.drain(..) {
            let slice = std::ptr::slice_from_raw_parts_mut(c, ARENA_CHUNK);
            // SAFETY: every chunk came from `Box::into_raw` of a boxed slice of this length.
            drop(unsafe { Box::from_raw(slice) });
        }
        self.used = 0;
    }
}

impl Drop for SlotArena {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Unlink every slot in `incoming` (their target is going away).
fn unlink_all(incoming: &[*mut ChainSlot]) {
    for &s in incoming {
        // SAFETY: slots come from the table's arena, which outlives every block in it.
        unsafe { (*s).next = 0 };
    }
}

/// Entries of the [`JumpCache`] (a power of two).
pub const JUMP_CACHE_SIZE: usize = 4096;

/// One entry of the [`JumpCache`]: the block found at linear address `la` in mode `mode`
/// (an interned [`ModeKey`], see `JitVcpu`), its physical page and its code (0 while it is
/// interpreted). Generated code reads it (`#[repr(C)]`, fields by offset).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JumpEntry {
    pub la: u64,
    pub phys_page: u64,
    pub code: u64,
    pub mode: u32,
    pub block: BlockId,
}

impl JumpEntry {
    pub const EMPTY: JumpEntry = JumpEntry {
        la: u64::MAX,
        phys_page: u64::MAX,
        code: 0,
        mode: u32::MAX,
        block: BlockId::MAX,
    };
}

/// Index of linear address `la` in the [`JumpCache`].
#[inline]
pub fn jump_index(la: u64) -> usize {
    ((la ^ (la >> JUMP_HASH_SHIFT)) as usize) & (JUMP_CACHE_SIZE - 1)
}

/// The shift [`jump_index`] folds the page number with.
pub const JUMP_HASH_SHIFT: u32 = 12;

/// A direct-mapped cache from linear code address to block in front of the block table, as
/// QEMU's `tb_jmp_cache`: the dispatcher looks here before hashing a [`BlockKey`], and generated
/// code looks here for the targets of returns. An entry is only a hint: whoever uses one checks
/// the mode and, under paging, that the TLB still maps `la` to `phys_page` for execution. It is
/// cleared whenever blocks are dropped, so it never names a dead block. Boxed: its address is
/// embedded in generated code.
pub struct JumpCache {
    entries: Box<[JumpEntry]>,
}

impl Default for JumpCache {
    fn default() -> Self {
        Self {
            entries: vec![JumpEntry::EMPTY; JUMP_CACHE_SIZE].into_boxed_slice(),
        }
    }
}

impl JumpCache {
    /// The entry `la` would occupy.
    #[inline]
    pub fn get(&self, la: u64) -> &JumpEntry {
        &self.entries[jump_index(la)]
    }

    #[inline]
    pub fn set(&mut self, e: JumpEntry) {
        self.entries[jump_index(e.la)] = e;
    }

    /// Forget everything (blocks were dropped).
    pub fn clear(&mut self) {
        self.entries.fill(JumpEntry::EMPTY);
    }

    /// The address of the first entry, stable for the cache's life.
    pub fn base(&self) -> *const JumpEntry {
        self.entries.as_ptr()
    }
}

/// An empty successor slot.
pub const NO_SUCC: (u64, BlockId) = (u64::MAX, BlockId::MAX);

/// Guest-physical bytes one block's code was built from (see [`crate::smc`]).
type Extent = Vec<crate::smc::PhysRange>;

/// All blocks, by key and by physical page.
#[derive(Default)]
pub struct BlockTable {
    blocks: Vec<Option<Block>>,
    /// For each block (same index as `blocks`): the bytes its instructions were decoded from,
    /// and once it is compiled those of the other blocks of its region (all on its first page),
    /// which its code depends on as well. Kept for dropped blocks until a clear.
    extents: Vec<Extent>,
    by_key: HashMap<BlockKey, BlockId>,
    by_page: HashMap<u64, Vec<BlockId>>,
    live: usize,
    chain_arena: SlotArena,
}

/// What [`BlockTable::invalidate_range`] dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Invalidated {
    /// The blocks dropped, with their linear addresses.
    pub blocks: Vec<(BlockId, u64)>,
    /// Pages whose set of live blocks changed (no duplicates).
    pub pages: Vec<u64>,
}

impl BlockTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn lookup(&self, key: &BlockKey) -> Option<BlockId> {
        self.by_key.get(key).copied()
    }

    pub fn get(&self, id: BlockId) -> Option<&Block> {
        self.blocks.get(id as usize).and_then(|b| b.as_ref())
    }

    pub fn get_mut(&mut self, id: BlockId) -> Option<&mut Block> {
        self.blocks.get_mut(id as usize).and_then(|b| b.as_mut())
    }

    /// Blocks currently valid.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Blocks ever inserted since the last clear (valid or not).
    pub fn slots(&self) -> usize {
        self.blocks.len()
    }

    /// Add a block decoded from the bytes of `extent` (on the block's `pages`, in order).
    pub fn insert(&mut self, block: Block, extent: Extent) -> BlockId {
        let id = self.blocks.len() as BlockId;
        for &p in &block.pages {
            self.by_page.entry(p & PAGE_MASK).or_default().push(id);
        }
        self.by_key.insert(block.key, id);
        self.blocks.push(Some(block));
        self.extents.push(extent);
        self.live += 1;
        id
    }

    /// The bytes block `id`'s code depends on.
    pub fn extent(&self, id: BlockId) -> &[crate::smc::PhysRange] {
        self.extents.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Block `id`'s code is being built over the blocks `region` as well: a write to their
    /// bytes must drop it too. They must lie on `id`'s first page, where the page index finds
    /// `id`.
    pub fn cover_region(&mut self, id: BlockId, region: &[BlockId]) {
        let Some(first) = self.get(id).map(|b| b.key.phys & PAGE_MASK) else {
            return;
        };
        let mut more: Extent = Vec::new();
        for &r in region.iter().filter(|&&r| r != id) {
            more.extend(self.extent(r).iter().filter(|e| e.page() == first));
        }
        if let Some(e) = self.extents.get_mut(id as usize) {
            for r in more {
                if !e.contains(&r) {
                    e.push(r);
                }
            }
        }
    }

    /// `n` (at most [`ARENA_CHUNK`]) fresh chain slots for block `owner`'s code, valid until
    /// [`Self::clear`].
    pub fn alloc_chain_slots(&mut self, owner: BlockId, n: usize) -> *mut ChainSlot {
        self.chain_arena.alloc(owner, n)
    }

    /// Drop every block whose code depends on a byte of `written` (which lies in one page).
    pub fn invalidate_range(&mut self, written: crate::smc::PhysRange) -> Invalidated {
        let page = written.page();
        let mut out = Invalidated::default();
        let Some(ids) = self.by_page.get(&page) else {
            return out;
        };
        let hit: Vec<BlockId> = ids
            .iter()
            .copied()
            .filter(|&id| self.extent(id).iter().any(|e| e.overlaps(&written)))
            .collect();
        for id in hit {
            let Some(block) = self.blocks.get_mut(id as usize).and_then(Option::take) else {
                continue;
            };
            out.blocks.push((id, block.linear));
            self.live -= 1;
            unlink_all(&block.incoming);
            if self.by_key.get(&block.key) == Some(&id) {
                self.by_key.remove(&block.key);
            }
            for &p in &block.pages {
                let p = p & PAGE_MASK;
                if let Some(list) = self.by_page.get_mut(&p) {
                    list.retain(|&x| x != id);
                    if list.is_empty() {
                        self.by_page.remove(&p);
                    }
                }
                if !out.pages.contains(&p) {
                    out.pages.push(p);
                }
            }
        }
        out
    }

    /// The bytes of page `page` that live blocks' code depends on (empty when no block is
    /// built from the page).
    pub fn page_extent(&self, page: u64) -> Extent {
        let page = page & PAGE_MASK;
        let Some(ids) = self.by_page.get(&page) else {
            return Vec::new();
        };
        ids.iter()
            .flat_map(|&id| self.extent(id).iter())
            .filter(|e| e.page() == page)
            .copied()
            .collect()
    }

    /// Drop every block; returns the pages that held any.
    pub fn clear(&mut self) -> Vec<u64> {
        let pages = self.by_page.keys().copied().collect();
        self.blocks.clear();
        self.extents.clear();
        self.by_key.clear();
        self.by_page.clear();
        self.live = 0;
        self.chain_arena.clear();
        pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_cache_maps_linear_addresses_and_clears() {
        let mut jc = JumpCache::default();
        let e = JumpEntry {
            la: 0xffff_ffff_8100_0123,
            phys_page: 0x100_0000,
            code: 0x1234,
            mode: 3,
            block: 7,
        };
        assert_ne!(jc.get(e.la).la, e.la);
        jc.set(e);
        assert_eq!(*jc.get(e.la), e);
        // The entry lies where generated code computes it.
        let i = jump_index(e.la);
        assert_eq!(jc.base().wrapping_add(i), jc.get(e.la) as *const JumpEntry);
        // Addresses one page apart do not collide.
        assert_ne!(jump_index(e.la), jump_index(e.la + 0x1000));
        jc.clear();
        assert_eq!(*jc.get(e.la), JumpEntry::EMPTY);
    }
}
