//! What the direct-boot loaders (Linux, Multiboot) share: a flat GDT written into guest memory
//! and a CPU state whose segment registers hold that GDT's flat code and data segments, as if
//! the loader had just reloaded them. Each protocol then sets its own control registers and
//! entry registers.

use vcpu::state::rflags;
use vcpu::{CpuState, DescriptorTable, GuestRam, Segment, SegmentIndex};

/// Segment descriptor type fields (SDM Vol. 3A 3.4.5.1): execute/read code and read/write data,
/// both accessed.
const TYPE_CODE: u16 = 0xb;
const TYPE_DATA: u16 = 0x3;

/// A flat GDT: `code_selector` a 4 GiB code segment (64-bit when `long`), `data_selector` a
/// 4 GiB data segment; other slots null.
pub struct FlatGdt {
    pub base: u64,
    pub code_selector: u16,
    pub data_selector: u16,
    pub long: bool,
}

impl FlatGdt {
    fn entries(&self) -> usize {
        usize::from(self.code_selector.max(self.data_selector) / 8) + 1
    }

    /// Write the table into guest memory.
    pub fn write(&self, ram: &GuestRam) -> Result<(), vcpu::MemoryError> {
        // Descriptors (SDM Vol. 3A 3.4.5): base 0, limit 0xFFFFF with G=1, present, DPL 0.
        let code: u64 = if self.long {
            0x00af_9b00_0000_ffff
        } else {
            0x00cf_9b00_0000_ffff
        };
        let data: u64 = 0x00cf_9300_0000_ffff;
        let mut table = vec![0u64; self.entries()];
        table[usize::from(self.code_selector / 8)] = code;
        table[usize::from(self.data_selector / 8)] = data;
        let bytes: Vec<u8> = table.iter().flat_map(|d| d.to_le_bytes()).collect();
        ram.write_host(self.base, &bytes)
    }

    /// A CPU state with GDTR and every segment register loaded from this table, no IDT,
    /// interrupts off and the general registers zero; control registers are the caller's.
    pub fn cpu_state(&self) -> CpuState {
        let mut s = CpuState::reset();
        let size = if self.long {
            Segment::ATTR_L
        } else {
            Segment::ATTR_DB
        };
        let flat = |selector: u16, typ: u16, size: u16| Segment {
            base: 0,
            limit: 0xffff_ffff,
            selector,
            attr: typ | Segment::ATTR_S | Segment::ATTR_P | size | Segment::ATTR_G,
        };
        let code = flat(self.code_selector, TYPE_CODE, size);
        let data = flat(self.data_selector, TYPE_DATA, Segment::ATTR_DB);
        for (i, seg) in s.seg.iter_mut().enumerate() {
            *seg = if i == SegmentIndex::Cs as usize {
                code
            } else {
                data
            };
        }
        s.gdtr = DescriptorTable {
            base: self.base,
            limit: (self.entries() * 8 - 1) as u16,
        };
        s.idtr = DescriptorTable { base: 0, limit: 0 };
        s.rflags = rflags::FIXED1;
        s.gpr = [0; 16];
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcpu::{RegionKind, RegionSpec};

    #[test]
    fn table_and_state_agree() {
        let ram = GuestRam::new(&[RegionSpec {
            base: 0,
            size: 0x10000,
            kind: RegionKind::Ram,
        }])
        .unwrap();
        let gdt = FlatGdt {
            base: 0x500,
            code_selector: 0x10,
            data_selector: 0x18,
            long: true,
        };
        gdt.write(&ram).unwrap();
        let s = gdt.cpu_state();
        assert_eq!(s.gdtr.limit, 31);
        for (sel, seg) in [
            (0x10u64, s.seg[SegmentIndex::Cs as usize]),
            (0x18, s.seg[0]),
        ] {
            let mut d = [0u8; 8];
            ram.read(0x500 + sel, &mut d).unwrap();
            let d = u64::from_le_bytes(d);
            let decoded = Segment::from_descriptor(seg.selector, d as u32, (d >> 32) as u32);
            assert_eq!(
                decoded.attr & !Segment::ATTR_ACCESSED,
                seg.attr & !Segment::ATTR_ACCESSED
            );
            assert_eq!((decoded.base, decoded.limit), (0, 0xffff_ffff));
        }
        assert!(s.seg[SegmentIndex::Cs as usize].long());
    }
}
