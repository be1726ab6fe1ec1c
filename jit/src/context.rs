//! The register file that translated code and the Rust helpers share.
//!
//! Generated code receives a `*mut JitContext` and addresses everything by offset from it
//! (`std::mem::offset_of!`): the architectural [`CpuState`], the [`LazyFlags`] record, the softmmu
//! TLB, and the words through which helpers tell generated code to leave the block. Everything
//! that is not plain data (guest memory, the buses, the block cache) sits behind the `runtime`
//! pointer and is only touched by Rust.
//!
//! The protocol between generated code and helpers:
//! - Before calling any helper, generated code stores every guest register it has cached in a
//!   host register back into `cpu.gpr`, stores `cpu.rip` = the ip of the current instruction,
//!   and keeps `flags` up to date. After the call it reloads what it needs.
//! - A helper that faults records nothing in the registers: it delivers the exception (through
//!   the IDT/IVT, leaving `cpu.rip` at the handler) and sets `exit_block = 1`. Generated code
//!   checks `exit_block` after every helper call that may fault and returns to the dispatcher.
//! - A block returns 0 to go back to the dispatcher, or continues in the block to run next with
//!   a tail call (`crate::entry`: direct chaining, only at exits after which nothing asked to
//!   leave: no helper ended the block, so the mode and code pages are those the block was
//!   entered with).
//! - A memory access off the inline TLB path is not interpreted from generated code: the block
//!   stores its state and the count of the instructions before it, puts the instruction in
//!   `resume_insn` and returns the address of `translate::helpers::jit_resume_interp`, which
//!   the dispatcher then calls; it interprets the instruction and returns 0.

use vcpu::CpuState;

use crate::flags::LazyFlags;

const _: () = assert!(
    TLB_SIZE / TLB_GROUP <= 64,
    "one bit per group in tlb_groups_used"
);
const _: () = assert!(TLB_GROUP == 64, "a group is one word of tlb_global");

/// Number of entries of the direct-mapped softmmu TLB (a power of two). 4096 entries map 16 MiB
/// of linear space, enough for a kernel's working set under 4-level paging.
pub const TLB_SIZE: usize = 4096;
/// TLB entries per group of [`JitContext::tlb_groups_used`] (one bit of the bitmap words).
pub const TLB_GROUP: usize = 64;
/// Guest page size.
pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_MASK: u64 = !((1u64 << PAGE_SHIFT) - 1);
/// A tag that matches no address (page-aligned addresses have the low 12 bits clear).
pub const TLB_INVALID: u64 = u64::MAX;

/// One softmmu TLB entry. A guest linear address `la` hits for reading when
/// `la & PAGE_MASK == read_tag`, and for writing when `la & PAGE_MASK == write_tag`; the host
/// address is then `la.wrapping_add(addend)`. Pages that are ROM, MMIO, or hold translated code
/// never get a `write_tag`, so their writes take the slow path.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlbEntry {
    pub read_tag: u64,
    pub write_tag: u64,
    pub addend: u64,
    /// Guest-physical page base, for code-page tracking on the slow path.
    pub phys_page: u64,
}

impl TlbEntry {
    pub const EMPTY: TlbEntry = TlbEntry {
        read_tag: TLB_INVALID,
        write_tag: TLB_INVALID,
        addend: 0,
        phys_page: 0,
    };
}

/// Index of the TLB entry for linear address `la`.
#[inline]
pub fn tlb_index(la: u64) -> usize {
    ((la >> PAGE_SHIFT) as usize) & (TLB_SIZE - 1)
}

/// The block-exit words generated code polls.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitWords {
    /// Non-zero: leave the current block now (a helper faulted, changed mode, or a device
    /// asked the machine for something).
    pub exit_block: u32,
    /// Non-zero: the dispatcher must return from `run` (kick, device request, halt).
    pub exit_run: u32,
}

/// The JIT's per-vCPU context. `#[repr(C)]` so generated code can use field offsets.
#[repr(C)]
pub struct JitContext {
    /// Architectural state. `cpu.rflags`' status bits are stale unless `flags.op == CC_EFLAGS`.
    pub cpu: CpuState,
    pub flags: LazyFlags,
    pub exit: ExitWords,
    /// Mask applied to every physical address: bit 20 cleared while the A20 gate is off.
    pub a20_mask: u64,
    /// Guest instructions retired (approximate inside blocks, exact at block boundaries).
    pub icount: u64,
    pub tlb: [TlbEntry; TLB_SIZE],
    /// One bit per TLB entry: it maps a global page (G with CR4.PGE, SDM Vol. 3A 4.10.2.4), so
    /// a CR3 load keeps it. Only Rust reads this.
    pub tlb_global: [u64; TLB_SIZE / 64],
    /// One bit per TLB entry: its page is execute-disabled (SDM Vol. 3A 4.6), so the
    /// dispatcher must not enter a remembered block there without a full walk.
    pub tlb_no_exec: [u64; TLB_SIZE / 64],
    /// Bit g set: some entry of group g (entries `g * TLB_GROUP ..`) may be valid. Flushes
    /// clear only those groups, so a flush costs what was filled since the last one.
    pub tlb_groups_used: u64,
    /// Guest memory, buses and code-page tracking while the vCPU runs; null otherwise. Only Rust
    /// helpers dereference it.
    pub runtime: *mut crate::runtime::Runtime,
    /// Address of the unlinked `cache::ChainSlot` of the exit generated code last left through,
    /// or 0: the dispatcher links it to the block it finds next. Reset by the dispatcher.
    pub chain_exit: u64,
    /// Address of the `iced_x86::Instruction` that `translate::helpers::jit_resume_interp`
    /// interprets when generated code returns that helper's address instead of calling the
    /// interpreter itself (a memory access off the inline TLB path); 0 otherwise.
    pub resume_insn: u64,
    /// Host time behind the TSC: `cpu.tsc` is its value at this clock's epoch.
    pub tsc_clock: crate::tsc::TscClock,
}

impl JitContext {
    pub fn new(cpu: CpuState) -> Self {
        Self {
            cpu,
            flags: LazyFlags::default(),
            exit: ExitWords::default(),
            a20_mask: u64::MAX,
            icount: 0,
            tlb: [TlbEntry::EMPTY; TLB_SIZE],
            tlb_global: [0; TLB_SIZE / 64],
            tlb_no_exec: [0; TLB_SIZE / 64],
            tlb_groups_used: 0,
            runtime: std::ptr::null_mut(),
            chain_exit: 0,
            resume_insn: 0,
            tsc_clock: crate::tsc::TscClock::new(),
        }
    }

    /// The time-stamp counter now (SDM Vol. 3B 18.17).
    pub fn tsc(&mut self) -> u64 {
        self.tsc_clock.read(self.cpu.tsc)
    }

    /// Set the time-stamp counter (WRMSR IA32_TSC, a new state).
    pub fn set_tsc(&mut self, value: u64) {
        self.cpu.tsc = value;
        self.tsc_clock.rebase(value);
    }

    /// The architectural state with flags materialised.
    pub fn cpu_state(&mut self) -> CpuState {
        self.flags.materialize(&mut self.cpu.rflags);
        // Fold the time elapsed into the TSC, so whoever takes this state continues from now.
        let tsc = self.tsc();
        self.set_tsc(tsc);
        self.cpu
    }

    /// Load a new architectural state; drops every cached translation of addresses.
    pub fn set_cpu_state(&mut self, s: &CpuState) {
        self.cpu = *s;
        self.tsc_clock.rebase(s.tsc);
        self.flags.set_eflags();
        self.flush_tlb();
    }

    /// Drop every TLB entry, global ones included.
    pub fn flush_tlb(&mut self) {
        let mut used = std::mem::take(&mut self.tlb_groups_used);
        while used != 0 {
            let g = used.trailing_zeros() as usize;
            used &= used - 1;
            self.tlb[g * TLB_GROUP..(g + 1) * TLB_GROUP].fill(TlbEntry::EMPTY);
            self.tlb_global[g] = 0;
        }
    }

    /// Drop the TLB entries of non-global pages, as a CR3 load does (SDM Vol. 3A 4.10.4.1).
    pub fn flush_tlb_non_global(&mut self) {
        let mut used = self.tlb_groups_used;
        while used != 0 {
            let g = used.trailing_zeros() as usize;
            used &= used - 1;
            let global = self.tlb_global[g];
            if global == 0 {
                self.tlb[g * TLB_GROUP..(g + 1) * TLB_GROUP].fill(TlbEntry::EMPTY);
                self.tlb_groups_used &= !(1 << g);
                continue;
            }
            for (j, e) in self.tlb[g * TLB_GROUP..(g + 1) * TLB_GROUP]
                .iter_mut()
                .enumerate()
            {
                if global & (1 << j) == 0 {
                    *e = TlbEntry::EMPTY;
                }
            }
        }
    }

    /// Install entry `i` (it may now hit), recording its group for the next flush.
    #[inline]
    pub fn set_tlb_entry(&mut self, i: usize, e: TlbEntry) {
        self.tlb[i] = e;
        self.tlb_groups_used |= 1 << (i / TLB_GROUP);
    }

    /// Indices of the entries that may be valid (everything outside is empty).
    pub fn tlb_used_entries(&self) -> impl Iterator<Item = usize> + use<> {
        let used = self.tlb_groups_used;
        (0..TLB_SIZE / TLB_GROUP)
            .filter(move |g| used & (1 << g) != 0)
            .flat_map(|g| g * TLB_GROUP..(g + 1) * TLB_GROUP)
    }

    /// Record whether TLB entry `i` maps an execute-disabled page.
    #[inline]
    pub fn set_tlb_no_exec(&mut self, i: usize, no_exec: bool) {
        let bit = 1u64 << (i % 64);
        if no_exec {
            self.tlb_no_exec[i / 64] |= bit;
        } else {
            self.tlb_no_exec[i / 64] &= !bit;
        }
    }

    /// Whether TLB entry `i` maps an execute-disabled page.
    #[inline]
    pub fn tlb_no_exec(&self, i: usize) -> bool {
        self.tlb_no_exec[i / 64] & (1 << (i % 64)) != 0
    }

    /// Record whether TLB entry `i` maps a global page.
    #[inline]
    pub fn set_tlb_global(&mut self, i: usize, global: bool) {
        let bit = 1u64 << (i % 64);
        if global {
            self.tlb_global[i / 64] |= bit;
        } else {
            self.tlb_global[i / 64] &= !bit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(page: u64) -> TlbEntry {
        TlbEntry {
            read_tag: page,
            write_tag: page,
            addend: 0,
            phys_page: page,
        }
    }

    #[test]
    fn flushes_clear_exactly_what_they_must() {
        let mut ctx = JitContext::new(CpuState::reset());
        let (a, b, c) = (0x1000u64, 0x7f_5000u64, 0xfff_f000u64);
        for la in [a, b, c] {
            ctx.set_tlb_entry(tlb_index(la), entry(la));
        }
        ctx.set_tlb_global(tlb_index(b), true);
        assert_eq!(ctx.tlb_used_entries().count(), 3 * TLB_GROUP);
        // A CR3 load keeps the global entry only.
        ctx.flush_tlb_non_global();
        assert_eq!(ctx.tlb[tlb_index(a)], TlbEntry::EMPTY);
        assert_eq!(ctx.tlb[tlb_index(b)], entry(b));
        assert_eq!(ctx.tlb[tlb_index(c)], TlbEntry::EMPTY);
        assert_eq!(ctx.tlb_used_entries().count(), TLB_GROUP);
        // A full flush drops it too, and every entry is empty afterwards.
        ctx.set_tlb_entry(tlb_index(c), entry(c));
        ctx.flush_tlb();
        assert!(ctx.tlb.iter().all(|e| *e == TlbEntry::EMPTY));
        assert_eq!(ctx.tlb_global, [0; TLB_SIZE / 64]);
        assert_eq!(ctx.tlb_used_entries().count(), 0);
    }
}
