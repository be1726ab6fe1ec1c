//! What the Rust helpers need besides the register file: guest memory, the device buses, and
//! the record of which physical pages hold translated code.
//!
//! Generated code never touches this; it reaches it through `JitContext::runtime` only by
//! calling helpers. Code pages are tracked in a bitmap over the guest-physical pages backed by
//! RAM or ROM (nothing else can hold code), so the write slow path answers "is this a code
//! page?" with one load; for each code page a second bitmap says which of its bytes live blocks
//! were decoded from (see [`crate::smc`]), and only writes to those are recorded.
//!
//! Guest-physical addresses become host pointers through [`PhysMap`], a copy of the region
//! table with each region's host address resolved once, so the softmmu slow path and the page
//! walker never go through `vm-memory`'s generic per-access region lookup.

use hashbrown::{HashMap, HashSet};
use vcpu::RegionKind;

use crate::context::{JitContext, TlbEntry, PAGE_MASK, PAGE_SHIFT, TLB_INVALID};
use crate::smc::{PageBytes, PhysRange, PAGE_BYTES};

/// The helpers' view of the machine while a vCPU runs.
pub struct Runtime {
    pub ram: vcpu::GuestRam,
    /// `ram`'s regions with their host addresses, for the softmmu slow path and page walks.
    pub phys: PhysMap,
    /// The device buses, valid only while `JitVcpu::run` runs (set by the dispatcher); null
    /// otherwise, in which case MMIO and port reads return all ones and writes are dropped.
    pub buses: *mut devices::Buses,
    /// Set when exception delivery escalated to a triple fault (SDM Vol. 3A 6.15, vector 8).
    pub triple_fault: bool,
    /// Instructions that took the interpreter's unimplemented-instruction path (#UD, or #NM for
    /// an x87 escape); read by the instruction coverage probe (`crate::coverage`).
    pub unimplemented: u64,
    /// One bit per guest-physical page below `code_bitmap.len() * 64` pages: the page holds
    /// translated code.
    code_bitmap: Vec<u64>,
    /// For every page of `code_bitmap`: the bytes live blocks were decoded from.
    code_bytes: HashMap<u64, Box<PageBytes>>,
    /// Writes to those bytes since the last `take_code_writes`, in order (a write continuing the
    /// one before it extends it).
    code_writes: Vec<PhysRange>,
    /// Opcodes already reported as unimplemented (touched only on the #UD path).
    warned_codes: HashSet<u16>,
}

impl Runtime {
    pub fn new(ram: vcpu::GuestRam) -> Self {
        let top = ram.regions().iter().map(|r| r.end()).max().unwrap_or(0);
        let pages = top >> PAGE_SHIFT;
        let words = usize::try_from(pages.div_ceil(64)).unwrap_or(0);
        Self {
            phys: PhysMap::new(&ram),
            ram,
            buses: std::ptr::null_mut(),
            triple_fault: false,
            unimplemented: 0,
            code_bitmap: vec![0; words],
            code_bytes: HashMap::new(),
            code_writes: Vec::new(),
            warned_codes: HashSet::new(),
        }
    }

    fn bit_of(phys_page: u64) -> (usize, u64) {
        let pfn = phys_page >> PAGE_SHIFT;
        ((pfn / 64) as usize, 1u64 << (pfn % 64))
    }

    /// Whether guest-physical page `phys_page` (any address inside it) holds translated code.
    #[inline]
    pub fn is_code_page(&self, phys_page: u64) -> bool {
        let (word, bit) = Self::bit_of(phys_page & PAGE_MASK);
        self.code_bitmap.get(word).is_some_and(|w| w & bit != 0)
    }

    /// Every byte of `phys_page` holds code: from now on writes to the page take the slow path
    /// (matching TLB write tags are dropped) and are recorded, and end the block.
    pub fn mark_code_page(&mut self, ctx: &mut JitContext, phys_page: u64) {
        self.mark_code_bytes(ctx, PhysRange::new(phys_page & PAGE_MASK, PAGE_BYTES));
    }

    /// The dispatcher built a block from the bytes of `range`: from now on writes to the page
    /// take the slow path (matching TLB write tags are dropped), and those to these bytes are
    /// recorded and end the block.
    pub fn mark_code_bytes(&mut self, ctx: &mut JitContext, range: PhysRange) {
        let page = range.page();
        let (word, bit) = Self::bit_of(page);
        let Some(w) = self.code_bitmap.get_mut(word) else {
            // Not RAM or ROM: cannot be written through memory, nothing to track.
            return;
        };
        self.code_bytes
            .entry(page)
            .or_insert_with(|| Box::new(PageBytes::EMPTY))
            .set(&range);
        if *w & bit != 0 {
            // Already tracked: no TLB entry has been given a write tag for it since.
            return;
        }
        *w |= bit;
        for i in ctx.tlb_used_entries() {
            let e = &mut ctx.tlb[i];
            if e.write_tag != TLB_INVALID && e.phys_page == page {
                e.write_tag = TLB_INVALID;
            }
        }
    }

    /// Forget that a page holds code (after its blocks were invalidated).
    pub fn unmark_code_page(&mut self, phys_page: u64) {
        let page = phys_page & PAGE_MASK;
        let (word, bit) = Self::bit_of(page);
        if let Some(w) = self.code_bitmap.get_mut(word) {
            *w &= !bit;
        }
        self.code_bytes.remove(&page);
    }

    /// The blocks on `phys_page` changed: the bytes of `ranges` (all on that page) are what
    /// the live ones cover. With no range left the page stops being a code page.
    pub fn reset_code_bytes(&mut self, phys_page: u64, ranges: &[PhysRange]) {
        let page = phys_page & PAGE_MASK;
        if ranges.is_empty() {
            self.unmark_code_page(page);
            return;
        }
        if !self.is_code_page(page) {
            // Not RAM or ROM (never marked): nothing to track.
            return;
        }
        let mut fresh = PageBytes::EMPTY;
        for r in ranges.iter().filter(|r| r.page() == page) {
            fresh.set(r);
        }
        match self.code_bytes.get_mut(&page) {
            Some(bytes) => **bytes = fresh,
            None => {
                self.code_bytes.insert(page, Box::new(fresh));
            }
        }
    }

    /// Whether live code was written since the last [`Runtime::take_code_writes`].
    #[inline]
    pub fn has_code_writes(&self) -> bool {
        !self.code_writes.is_empty()
    }

    /// The writes to live code since the last call.
    pub fn take_code_writes(&mut self) -> Vec<PhysRange> {
        std::mem::take(&mut self.code_writes)
    }

    /// The pages of the writes to live code since the last take (no duplicates).
    pub fn take_dirty_code_pages(&mut self) -> Vec<u64> {
        let mut pages: Vec<u64> = Vec::new();
        for w in self.take_code_writes() {
            if !pages.contains(&w.page()) {
                pages.push(w.page());
            }
        }
        pages
    }

    /// A guest write of `len` bytes at `phys` (inside one page), which [`Runtime::is_code_page`]
    /// says holds code. Returns whether it touches bytes of a live block; such writes are
    /// recorded for the dispatcher and must end the block, others need nothing.
    pub(crate) fn note_code_write(&mut self, phys: u64, len: u64) -> bool {
        let w = PhysRange::new(phys, len);
        if !self.code_bytes.get(&w.page()).is_some_and(|b| b.any(&w)) {
            return false;
        }
        match self.code_writes.last_mut() {
            // Consecutive bytes of one string instruction or memcpy: one record.
            Some(last) if last.page() == w.page() && w.start <= last.end && last.start <= w.end => {
                last.start = last.start.min(w.start);
                last.end = last.end.max(w.end);
            }
            _ => self.code_writes.push(w),
        }
        true
    }

    /// True the first time an opcode is reported as unimplemented.
    pub(crate) fn first_warning(&mut self, code: iced_x86::Code) -> bool {
        self.warned_codes.insert(code as u16)
    }

    /// The buses, if the dispatcher attached them.
    #[inline]
    pub(crate) fn buses(&mut self) -> Option<&mut devices::Buses> {
        // SAFETY: the dispatcher sets `buses` to a `&mut Buses` that outlives `JitVcpu::run`
        // and resets it to null afterwards; helpers run only inside `run`, on the vCPU thread.
        unsafe { self.buses.as_mut() }
    }
}

/// One RAM or ROM region and the host address of its first byte.
#[derive(Debug, Clone, Copy)]
struct HostRegion {
    base: u64,
    end: u64,
    host: *mut u8,
    kind: RegionKind,
}

/// Guest-physical to host addresses for RAM and ROM, resolved once per region.
///
/// Holds a clone of the [`vcpu::GuestRam`] it was built from, so the mapping (and with it every
/// host address here) lives at least as long as the map.
pub struct PhysMap {
    /// Sorted by base, non-overlapping (as `GuestRam` guarantees).
    regions: Vec<HostRegion>,
    _mapping: vcpu::GuestRam,
}

impl PhysMap {
    pub fn new(ram: &vcpu::GuestRam) -> Self {
        let regions = ram
            .regions()
            .iter()
            .filter_map(|spec| {
                let (host, len, kind) = ram.host_ptr(spec.base)?;
                Some(HostRegion {
                    base: spec.base,
                    end: spec.base + len,
                    host,
                    kind,
                })
            })
            .collect();
        Self {
            regions,
            _mapping: ram.clone(),
        }
    }

    /// Host pointer to the byte at `gpa`, how many bytes after it stay in the same region, and
    /// what the region is; `None` for holes (MMIO). The pointer is valid while `self` lives.
    #[inline]
    pub fn host(&self, gpa: u64) -> Option<(*mut u8, u64, RegionKind)> {
        for r in &self.regions {
            if gpa < r.base {
                return None;
            }
            if gpa < r.end {
                let off = gpa - r.base;
                return Some((r.host.wrapping_add(off as usize), r.end - gpa, r.kind));
            }
        }
        None
    }

    /// The little-endian u64 at `gpa` (8-byte aligned, so inside one region), or `None` in a hole.
    #[inline]
    pub fn read_u64(&self, gpa: u64) -> Option<u64> {
        let (p, left, _) = self.host(gpa)?;
        if left < 8 {
            return None;
        }
        // SAFETY: `p..p+8` lies inside a region mapped for as long as `self` lives.
        Some(u64::from_le(unsafe {
            std::ptr::read_unaligned(p as *const u64)
        }))
    }

    /// The little-endian u32 at `gpa`, or `None` unless all four bytes are RAM/ROM.
    #[inline]
    pub fn read_u32(&self, gpa: u64) -> Option<u32> {
        let (p, left, _) = self.host(gpa)?;
        if left < 4 {
            return None;
        }
        // SAFETY: `p..p+4` lies inside a region mapped for as long as `self` lives.
        Some(u32::from_le(unsafe {
            std::ptr::read_unaligned(p as *const u32)
        }))
    }

    /// Store a little-endian u32 at `gpa` if all four bytes are RAM (ROM and holes are left
    /// alone).
    #[inline]
    pub fn write_ram_u32(&self, gpa: u64, v: u32) {
        if let Some((p, left, RegionKind::Ram)) = self.host(gpa) {
            if left >= 4 {
                // SAFETY: `p..p+4` lies inside a RAM region mapped for as long as `self` lives.
                unsafe { std::ptr::write_unaligned(p as *mut u32, v.to_le()) };
            }
        }
    }
}

/// A TLB entry for a RAM/ROM page (used by `mem`).
pub(crate) fn tlb_entry(
    la_page: u64,
    host_page: *mut u8,
    phys_page: u64,
    writable: bool,
) -> TlbEntry {
    TlbEntry {
        read_tag: la_page,
        write_tag: if writable { la_page } else { TLB_INVALID },
        addend: (host_page as u64).wrapping_sub(la_page),
        phys_page,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcpu::{CpuState, RegionKind, RegionSpec};

    fn runtime() -> Runtime {
        let ram = vcpu::GuestRam::new(&[RegionSpec {
            base: 0,
            size: 0x10000,
            kind: RegionKind::Ram,
        }])
        .unwrap();
        Runtime::new(ram)
    }

    #[test]
    fn code_pages_mark_and_unmark() {
        let mut rt = runtime();
        let mut ctx = JitContext::new(CpuState::reset());
        ctx.set_tlb_entry(
            3,
            TlbEntry {
                read_tag: 0x3000,
                write_tag: 0x3000,
                addend: 0,
                phys_page: 0x3000,
            },
        );
        assert!(!rt.is_code_page(0x3000));
        rt.mark_code_page(&mut ctx, 0x3000);
        assert!(rt.is_code_page(0x3abc));
        assert_eq!(ctx.tlb[3].write_tag, TLB_INVALID);
        assert_eq!(ctx.tlb[3].read_tag, 0x3000);
        // Beyond guest memory: ignored, never a code page.
        rt.mark_code_page(&mut ctx, 0x1_0000_0000);
        assert!(!rt.is_code_page(0x1_0000_0000));
        rt.unmark_code_page(0x3000);
        assert!(!rt.is_code_page(0x3000));
    }

    #[test]
    fn phys_map_resolves_regions_and_holes() {
        let ram = vcpu::GuestRam::new(&[
            RegionSpec {
                base: 0,
                size: 0x2000,
                kind: RegionKind::Ram,
            },
            RegionSpec {
                base: 0x10000,
                size: 0x1000,
                kind: RegionKind::Rom,
            },
        ])
        .unwrap();
        ram.write_host(0x1ff8, &0x1122_3344_5566_7788u64.to_le_bytes())
            .unwrap();
        ram.write_host(0x10ffc, &0xaabb_ccddu32.to_le_bytes())
            .unwrap();
        let map = PhysMap::new(&ram);
        assert_eq!(map.read_u64(0x1ff8), Some(0x1122_3344_5566_7788));
        assert_eq!(map.read_u32(0x10ffc), Some(0xaabb_ccdd));
        let (_, left, kind) = map.host(0x10ff0).unwrap();
        assert_eq!((left, kind), (0x10, RegionKind::Rom));
        assert!(map.host(0x2000).is_none());
        assert!(map.host(0x11000).is_none());
        assert_eq!(map.read_u64(0x8000), None);
        // A u32 straddling the end of RAM is not backed.
        assert_eq!(map.read_u32(0x1ffe), None);
        map.write_ram_u32(0x1ff8, 0xdead_beef);
        map.write_ram_u32(0x10ffc, 0);
        let mut b = [0u8; 4];
        ram.read(0x1ff8, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0xdead_beef);
        assert_eq!(
            map.read_u32(0x10ffc),
            Some(0xaabb_ccdd),
            "ROM is not written"
        );
    }

    #[test]
    fn dirty_pages_are_deduplicated_and_taken_once() {
        let mut rt = runtime();
        let mut ctx = JitContext::new(CpuState::reset());
        rt.mark_code_page(&mut ctx, 0x2000);
        rt.mark_code_page(&mut ctx, 0x5000);
        assert!(rt.note_code_write(0x2010, 1));
        assert!(rt.note_code_write(0x2ff0, 4));
        assert!(rt.note_code_write(0x5000, 8));
        assert_eq!(rt.take_dirty_code_pages(), vec![0x2000, 0x5000]);
        assert!(rt.take_dirty_code_pages().is_empty());
    }

    #[test]
    fn only_writes_to_the_bytes_of_live_blocks_are_recorded() {
        let mut rt = runtime();
        let mut ctx = JitContext::new(CpuState::reset());
        rt.mark_code_bytes(&mut ctx, PhysRange::new(0x4100, 0x20));
        rt.mark_code_bytes(&mut ctx, PhysRange::new(0x4200, 0x10));
        assert!(rt.is_code_page(0x4000));
        // Next to the blocks, not into them.
        assert!(!rt.note_code_write(0x40fc, 4));
        assert!(!rt.note_code_write(0x4120, 8));
        assert!(!rt.has_code_writes());
        // Into the first block (partly), then the byte before: one record. The byte after
        // the write lies outside every block.
        assert!(rt.note_code_write(0x411e, 4));
        assert!(!rt.note_code_write(0x4122, 1));
        assert!(rt.note_code_write(0x411d, 1));
        assert!(rt.note_code_write(0x420f, 2));
        assert_eq!(
            rt.take_code_writes(),
            vec![PhysRange::new(0x411d, 5), PhysRange::new(0x420f, 2)]
        );
        // The first block went away: writes to its bytes are plain writes now.
        rt.reset_code_bytes(0x4000, &[PhysRange::new(0x4200, 0x10)]);
        assert!(!rt.note_code_write(0x4110, 4));
        assert!(rt.is_code_page(0x4000));
        // So did the second: the page is no code page any more.
        rt.reset_code_bytes(0x4000, &[]);
        assert!(!rt.is_code_page(0x4000));
        assert!(!rt.note_code_write(0x4200, 4));
    }
}
