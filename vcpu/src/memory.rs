//! Guest physical memory, shared by every backend.
//!
//! One `vm-memory` mapping holds all RAM and ROM regions: KVM registers each region as a memory
//! slot (ROM read-only), the JIT translates guest-physical addresses to host pointers through it.
//! Anything not covered by a region is a hole that goes to the MMIO bus.

use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
    MmapRegion,
};

/// What a region of guest-physical space holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// Read/write RAM.
    Ram,
    /// Read-only memory: guest writes are ignored (the host loader may still fill it).
    Rom,
}

/// One region of the guest-physical map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionSpec {
    pub base: u64,
    pub size: u64,
    pub kind: RegionKind,
}

impl RegionSpec {
    pub fn end(&self) -> u64 {
        self.base + self.size
    }
    pub fn contains(&self, gpa: u64) -> bool {
        gpa >= self.base && gpa < self.end()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("guest memory regions overlap or are unaligned: {0}")]
    BadLayout(String),
    #[error("cannot map {size:#x} bytes of guest memory: {reason}")]
    Map { size: u64, reason: String },
    #[error("guest-physical range {gpa:#x}+{len:#x} is not backed by RAM or ROM")]
    Unbacked { gpa: u64, len: usize },
}

/// The guest-physical memory of one machine. Cheap to clone: clones share the same mapping.
#[derive(Clone, Debug)]
pub struct GuestRam {
    mem: GuestMemoryMmap,
    regions: Vec<RegionSpec>,
}

/// The page size every region is aligned to.
pub const PAGE_SIZE: u64 = 4096;

impl GuestRam {
    /// Map the given regions (page aligned, non-overlapping, any order). All bytes start as 0.
    pub fn new(specs: &[RegionSpec]) -> Result<Self, MemoryError> {
        let mut regions = specs.to_vec();
        regions.sort_by_key(|r| r.base);
        for r in &regions {
            if r.size == 0 || r.base % PAGE_SIZE != 0 || r.size % PAGE_SIZE != 0 {
                return Err(MemoryError::BadLayout(format!("{r:x?}")));
            }
        }
        for w in regions.windows(2) {
            if w[0].end() > w[1].base {
                return Err(MemoryError::BadLayout(format!(
                    "{:x?} and {:x?}",
                    w[0], w[1]
                )));
            }
        }
        let mut mapped = Vec::with_capacity(regions.len());
        for r in &regions {
            let size = usize::try_from(r.size).map_err(|_| MemoryError::Map {
                size: r.size,
                reason: "larger than the host address space".into(),
            })?;
            let mmap = MmapRegion::new(size).map_err(|e| MemoryError::Map {
                size: r.size,
                reason: e.to_string(),
            })?;
            let region = GuestRegionMmap::new(mmap, GuestAddress(r.base)).ok_or_else(|| {
                MemoryError::BadLayout(format!("region {r:x?} wraps the address space"))
            })?;
            mapped.push(region);
        }
        let mem = GuestMemoryMmap::from_regions(mapped)
            .map_err(|e| MemoryError::BadLayout(e.to_string()))?;
        Ok(Self { mem, regions })
    }

    /// The underlying `vm-memory` mapping (for KVM memory slots and loaders).
    pub fn mmap(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The regions, sorted by base address.
    pub fn regions(&self) -> &[RegionSpec] {
        &self.regions
    }

    /// The region holding `gpa`, if any.
    pub fn region_of(&self, gpa: u64) -> Option<&RegionSpec> {
        self.regions.iter().find(|r| r.contains(gpa))
    }

    /// Host pointer to the byte at `gpa` and how many bytes after it stay in the same region.
    /// The pointer stays valid for as long as any clone of this `GuestRam` lives.
    pub fn host_ptr(&self, gpa: u64) -> Option<(*mut u8, u64, RegionKind)> {
        let spec = self.region_of(gpa)?;
        let region = self.mem.find_region(GuestAddress(gpa))?;
        let offset = gpa - region.start_addr().0;
        let ptr = region
            .get_host_address(vm_memory::MemoryRegionAddress(offset))
            .ok()?;
        Some((ptr, spec.end() - gpa, spec.kind))
    }

    /// Copy guest memory out. Fails if any byte is outside RAM/ROM.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.mem
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| MemoryError::Unbacked {
                gpa,
                len: buf.len(),
            })
    }

    /// Host-side write that ignores ROM protection (loaders, snapshots).
    pub fn write_host(&self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        self.mem
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| MemoryError::Unbacked {
                gpa,
                len: data.len(),
            })
    }

    /// Total bytes of RAM (not ROM).
    pub fn ram_bytes(&self) -> u64 {
        self.regions
            .iter()
            .filter(|r| r.kind == RegionKind::Ram)
            .map(|r| r.size)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_mapped_and_holes_are_not() {
        let ram = GuestRam::new(&[
            RegionSpec {
                base: 0,
                size: 0xa0000,
                kind: RegionKind::Ram,
            },
            RegionSpec {
                base: 0xf0000,
                size: 0x10000,
                kind: RegionKind::Rom,
            },
        ])
        .unwrap();
        ram.write_host(0x1000, &[1, 2, 3]).unwrap();
        let mut b = [0u8; 3];
        ram.read(0x1000, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3]);
        assert!(ram.host_ptr(0xb8000).is_none());
        let (_, left, kind) = ram.host_ptr(0xffff0).unwrap();
        assert_eq!((left, kind), (0x10, RegionKind::Rom));
        assert!(ram.read(0x9ffff, &mut b).is_err());
    }

    #[test]
    fn overlapping_layout_is_refused() {
        let r = RegionSpec {
            base: 0,
            size: 0x2000,
            kind: RegionKind::Ram,
        };
        let r2 = RegionSpec { base: 0x1000, ..r };
        assert!(matches!(
            GuestRam::new(&[r, r2]),
            Err(MemoryError::BadLayout(_))
        ));
    }
}
