//! Booting Multiboot (version 1) kernels directly, as GRUB and `qemu -kernel` do: the format
//! kvm-unit-tests and many hobby kernels use.
//!
//! The loader finds the Multiboot header in the first 8 KiB of the file, loads the kernel
//! either from its ELF32 program headers or, when the header's "a.out kludge" flag is set, from
//! the addresses in the header; places modules page-aligned after it; writes the Multiboot
//! information structure (memory sizes, command line, modules, memory map, loader name) in low
//! memory; and returns the CPU state the specification prescribes at entry: 32-bit protected
//! mode with flat segments, paging off, interrupts off, EAX = 0x2BADB002 and EBX = the
//! information structure's address.
//!
//! Reference: the Multiboot Specification version 0.6.96, sections 3.1 (header), 3.2 (machine
//! state) and 3.3 (boot information format).

use vcpu::state::{cr0, gpr};
use vcpu::{CpuState, GuestRam, RegionKind};

use crate::boot_gdt::FlatGdt;

/// Multiboot header magic (spec 3.1.2).
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// EAX at kernel entry (spec 3.2).
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header must lie within the first 8192 bytes, 32-bit aligned (spec 3.1.1).
const HEADER_SEARCH: usize = 8192;

/// Header flags (spec 3.1.3). Bits 0-15 are requirements a loader must honour or refuse.
const FLAG_PAGE_ALIGN_MODULES: u32 = 1 << 0;
const FLAG_MEMORY_INFO: u32 = 1 << 1;
const FLAG_VIDEO_MODE: u32 = 1 << 2;
const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
const REQUIRED_FLAGS_UNDERSTOOD: u32 = FLAG_PAGE_ALIGN_MODULES | FLAG_MEMORY_INFO | FLAG_VIDEO_MODE;

/// Boot information flags (spec 3.3).
const INFO_MEMORY: u32 = 1 << 0;
const INFO_CMDLINE: u32 = 1 << 2;
const INFO_MODS: u32 = 1 << 3;
const INFO_MMAP: u32 = 1 << 6;
const INFO_LOADER_NAME: u32 = 1 << 9;

/// Memory map entry types (spec 3.3: 1 = available RAM, anything else reserved).
const MMAP_AVAILABLE: u32 = 1;
const MMAP_RESERVED: u32 = 2;

/// Where emu puts the boot information, below the 640 KiB line and away from the first page
/// (real-mode IVT/BDA) and 1 MiB (where kernels load). Everything must fit in this window.
const INFO_BASE: u64 = 0x9000;
const INFO_END: u64 = 0x9_0000;
/// The flat GDT the entry state's segments come from (a kernel that reloads a segment register
/// before its own `lgdt` gets the same segment back).
const GDT_BASE: u64 = 0x8000;
const SEL_CODE: u16 = 0x08;
const SEL_DATA: u16 = 0x10;
const PAGE: u64 = 4096;
/// End of conventional memory / start of the VGA window.
const LOW_MEMORY_END: u64 = 0xa_0000;
const ONE_MIB: u64 = 0x10_0000;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS32: u8 = 1;
const ELFDATA2LSB: u8 = 1;
const EM_386: u16 = 3;
const PT_LOAD: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum MultibootError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("no Multiboot header (magic 0x1BADB002 with a valid checksum) in the first 8 KiB: not a Multiboot v1 kernel")]
    NoHeader,
    #[error("the Multiboot header is truncated")]
    TruncatedHeader,
    #[error("the kernel requires Multiboot features emu does not provide (header flags {0:#x})")]
    UnsupportedFlags(u32),
    #[error("ELF64 kernels are not Multiboot v1 kernels; give a 32-bit ELF (or use the Linux boot protocol)")]
    Elf64,
    #[error("the kernel is not an ELF32 little-endian i386 executable, and its Multiboot header has no load addresses (a.out kludge)")]
    NotLoadable,
    #[error("the ELF file is malformed: {0}")]
    BadElf(&'static str),
    #[error("the a.out kludge addresses in the Multiboot header are inconsistent: {0}")]
    BadAout(&'static str),
    #[error(
        "kernel segment {start:#x}..{end:#x} is not in guest RAM above the boot information area"
    )]
    OutsideRam { start: u64, end: u64 },
    #[error(
        "the kernel command line, module names and memory map do not fit the boot information area"
    )]
    InfoTooLarge,
    #[error(transparent)]
    Memory(#[from] vcpu::MemoryError),
}

/// One piece of the kernel file to place in guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment32 {
    paddr: u64,
    /// File bytes to copy; the rest up to `memsz` is zero (BSS).
    data_offset: usize,
    filesz: usize,
    memsz: u64,
}

/// A parsed kernel: where it loads and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kernel {
    segments: Vec<Segment32>,
    entry: u32,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

/// The header's file offset and flags.
fn find_header(image: &[u8]) -> Result<(usize, u32), MultibootError> {
    let limit = image.len().min(HEADER_SEARCH);
    for off in (0..limit.saturating_sub(11)).step_by(4) {
        let (Some(magic), Some(flags), Some(sum)) = (
            u32_at(image, off),
            u32_at(image, off + 4),
            u32_at(image, off + 8),
        ) else {
            break;
        };
        if magic == HEADER_MAGIC && magic.wrapping_add(flags).wrapping_add(sum) == 0 {
            return Ok((off, flags));
        }
    }
    Err(MultibootError::NoHeader)
}

fn parse(image: &[u8]) -> Result<Kernel, MultibootError> {
    let (header, flags) = find_header(image)?;
    let unknown = flags & 0xffff & !REQUIRED_FLAGS_UNDERSTOOD;
    if unknown != 0 {
        return Err(MultibootError::UnsupportedFlags(flags));
    }
    if flags & FLAG_VIDEO_MODE != 0 {
        log::warn!("the kernel asks for a video mode; emu has no display and reports none");
    }
    if flags & FLAG_AOUT_KLUDGE != 0 {
        return parse_aout(image, header);
    }
    if image.starts_with(ELF_MAGIC) {
        return parse_elf32(image);
    }
    Err(MultibootError::NotLoadable)
}

/// Load addresses from the header itself (spec 3.1.4).
fn parse_aout(image: &[u8], header: usize) -> Result<Kernel, MultibootError> {
    let field =
        |i: usize| u32_at(image, header + 12 + 4 * i).ok_or(MultibootError::TruncatedHeader);
    let (header_addr, load_addr, load_end, bss_end, entry) =
        (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
    if load_addr > header_addr {
        return Err(MultibootError::BadAout("load_addr is above header_addr"));
    }
    let file_start = header
        .checked_sub((header_addr - load_addr) as usize)
        .ok_or(MultibootError::BadAout(
            "the text segment would start before the file",
        ))?;
    let filesz = if load_end == 0 {
        image.len() - file_start
    } else {
        load_end
            .checked_sub(load_addr)
            .ok_or(MultibootError::BadAout("load_end_addr is below load_addr"))? as usize
    };
    if file_start + filesz > image.len() {
        return Err(MultibootError::BadAout(
            "load_end_addr is past the end of the file",
        ));
    }
    let load_end = u64::from(load_addr) + filesz as u64;
    let memsz = if bss_end == 0 {
        filesz as u64
    } else {
        u64::from(bss_end)
            .checked_sub(u64::from(load_addr))
            .filter(|&m| m >= filesz as u64)
            .ok_or(MultibootError::BadAout(
                "bss_end_addr is below load_end_addr",
            ))?
    };
    if u64::from(entry) < u64::from(load_addr)
        || u64::from(entry) >= load_end.max(u64::from(load_addr) + memsz)
    {
        return Err(MultibootError::BadAout(
            "entry_addr is outside the loaded image",
        ));
    }
    Ok(Kernel {
        segments: vec![Segment32 {
            paddr: u64::from(load_addr),
            data_offset: file_start,
            filesz,
            memsz,
        }],
        entry,
    })
}

/// Load addresses from the ELF32 program headers; segments go to their physical addresses.
fn parse_elf32(image: &[u8]) -> Result<Kernel, MultibootError> {
    let bad = MultibootError::BadElf;
    let ident = image.get(..16).ok_or(bad("truncated ELF header"))?;
    if ident[4] == 2 {
        return Err(MultibootError::Elf64);
    }
    if ident[4] != ELFCLASS32 || ident[5] != ELFDATA2LSB || u16_at(image, 18) != Some(EM_386) {
        return Err(MultibootError::NotLoadable);
    }
    let entry = u32_at(image, 24).ok_or(bad("truncated ELF header"))?;
    let phoff = u32_at(image, 28).ok_or(bad("truncated ELF header"))? as usize;
    let phentsize = usize::from(u16_at(image, 42).ok_or(bad("truncated ELF header"))?);
    let phnum = usize::from(u16_at(image, 44).ok_or(bad("truncated ELF header"))?);
    if phentsize < 32 {
        return Err(bad("program header entries are too small"));
    }
    let mut segments = Vec::new();
    let mut entry_paddr = None;
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i * phentsize)
            .and_then(|o| image.get(o..o + 32))
            .ok_or(bad("program headers run past the end of the file"))?;
        let word = |o: usize| u32_at(ph, o).expect("32-byte slice");
        if word(0) != PT_LOAD {
            continue;
        }
        let (offset, vaddr, paddr, filesz, memsz) = (
            word(4) as usize,
            word(8),
            word(12),
            word(16) as usize,
            word(20),
        );
        if filesz as u64 > u64::from(memsz) {
            return Err(bad("a segment's file size exceeds its memory size"));
        }
        if offset
            .checked_add(filesz)
            .is_none_or(|end| end > image.len())
        {
            return Err(bad("a segment runs past the end of the file"));
        }
        // The entry point is a virtual address; find it in a segment to get its physical one.
        if entry >= vaddr && u64::from(entry) < u64::from(vaddr) + u64::from(memsz) {
            entry_paddr = Some(entry - vaddr + paddr);
        }
        if memsz > 0 {
            segments.push(Segment32 {
                paddr: u64::from(paddr),
                data_offset: offset,
                filesz,
                memsz: u64::from(memsz),
            });
        }
    }
    if segments.is_empty() {
        return Err(bad("no loadable segment"));
    }
    Ok(Kernel {
        segments,
        entry: entry_paddr.unwrap_or(entry),
    })
}

/// A module to load beside the kernel.
#[derive(Debug, Clone)]
pub struct Module {
    /// The string the kernel sees for it (by convention the file name and its arguments).
    pub name: String,
    pub data: Vec<u8>,
}

/// Parse QEMU's `-initrd` syntax for Multiboot modules: comma-separated entries, each a file
/// name optionally followed by arguments; the whole entry becomes the module's string.
pub fn read_modules(spec: &str) -> Result<Vec<Module>, MultibootError> {
    spec.split(',')
        .filter(|e| !e.trim().is_empty())
        .map(|entry| {
            let entry = entry.trim();
            let path = entry.split_whitespace().next().unwrap_or(entry);
            let data = std::fs::read(path).map_err(|source| MultibootError::Read {
                path: path.to_string(),
                source,
            })?;
            Ok(Module {
                name: entry.to_string(),
                data,
            })
        })
        .collect()
}

/// Whether `[start, end)` lies inside one RAM region of `ram`.
fn in_ram(ram: &GuestRam, start: u64, end: u64) -> bool {
    ram.regions()
        .iter()
        .any(|r| r.kind == RegionKind::Ram && start >= r.base && end <= r.end())
}

/// Builds the boot information area: fixed structures first, strings and tables after.
struct InfoArea {
    bytes: Vec<u8>,
}

impl InfoArea {
    fn addr(&self) -> u64 {
        INFO_BASE + self.bytes.len() as u64
    }
    fn align(&mut self, to: usize) {
        while !self.bytes.len().is_multiple_of(to) {
            self.bytes.push(0);
        }
    }
    fn push(&mut self, b: &[u8]) -> u32 {
        let at = self.addr() as u32;
        self.bytes.extend_from_slice(b);
        at
    }
    fn string(&mut self, s: &str) -> u32 {
        let at = self.push(s.as_bytes());
        self.bytes.push(0);
        at
    }
}

/// The memory map the kernel is given: every RAM region as available, the VGA window and BIOS
/// area as reserved.
fn memory_map(ram: &GuestRam) -> Vec<(u64, u64, u32)> {
    let mut map: Vec<(u64, u64, u32)> = ram
        .regions()
        .iter()
        .filter(|r| r.kind == RegionKind::Ram && r.base < LOW_MEMORY_END)
        .map(|r| (r.base, r.size.min(LOW_MEMORY_END - r.base), MMAP_AVAILABLE))
        .collect();
    map.push((LOW_MEMORY_END, ONE_MIB - LOW_MEMORY_END, MMAP_RESERVED));
    map.extend(
        ram.regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Ram && r.base >= ONE_MIB)
            .map(|r| (r.base, r.size, MMAP_AVAILABLE)),
    );
    map
}

/// Load `image` (a Multiboot kernel file) and `modules` into `ram`, write the boot information
/// with `cmdline`, and return the CPU state at the kernel's entry.
pub fn load(
    ram: &GuestRam,
    image: &[u8],
    cmdline: &str,
    modules: &[Module],
) -> Result<CpuState, MultibootError> {
    let kernel = parse(image)?;
    let mut kernel_end = 0u64;
    for s in &kernel.segments {
        let end = s.paddr + s.memsz;
        if s.paddr < INFO_END || !in_ram(ram, s.paddr, end) {
            return Err(MultibootError::OutsideRam {
                start: s.paddr,
                end,
            });
        }
        ram.write_host(s.paddr, &image[s.data_offset..s.data_offset + s.filesz])?;
        // BSS: guest RAM starts zeroed, but a kernel may overlap a previous segment's bytes.
        let bss = vec![0u8; (s.memsz - s.filesz as u64) as usize];
        ram.write_host(s.paddr + s.filesz as u64, &bss)?;
        kernel_end = kernel_end.max(end);
    }

    // Modules, page-aligned after the kernel.
    let mut next = kernel_end.next_multiple_of(PAGE);
    let mut placed = Vec::with_capacity(modules.len());
    for m in modules {
        let end = next + m.data.len() as u64;
        if !in_ram(ram, next, end.max(next + 1)) || end > u64::from(u32::MAX) {
            return Err(MultibootError::OutsideRam { start: next, end });
        }
        ram.write_host(next, &m.data)?;
        placed.push((next as u32, end as u32));
        next = end.next_multiple_of(PAGE);
    }

    // The information structure (spec 3.3) is 88 bytes; strings and tables follow it.
    let mut area = InfoArea {
        bytes: vec![0u8; 88],
    };
    let cmdline_addr = area.string(cmdline);
    let loader_name = area.string("emu");
    let mut mod_names = Vec::with_capacity(modules.len());
    for m in modules {
        mod_names.push(area.string(&m.name));
    }
    area.align(16);
    let mods_addr = area.addr() as u32;
    for ((start, end), name) in placed.iter().zip(&mod_names) {
        for v in [*start, *end, *name, 0] {
            area.push(&v.to_le_bytes());
        }
    }
    area.align(8);
    let mmap_addr = area.addr() as u32;
    let map = memory_map(ram);
    for (base, len, kind) in &map {
        // Each entry is preceded by its size, not counting the size field (spec 3.3).
        area.push(&20u32.to_le_bytes());
        area.push(&base.to_le_bytes());
        area.push(&len.to_le_bytes());
        area.push(&kind.to_le_bytes());
    }
    let mmap_len = area.addr() as u32 - mmap_addr;
    if area.addr() > INFO_END {
        return Err(MultibootError::InfoTooLarge);
    }
    let low_kib = map
        .iter()
        .find(|(b, _, k)| *b == 0 && *k == MMAP_AVAILABLE)
        .map_or(0, |(_, l, _)| l / 1024);
    // mem_upper: KiB of memory from 1 MiB up to the first hole.
    let upper_kib = ram
        .regions()
        .iter()
        .find(|r| r.kind == RegionKind::Ram && r.base == ONE_MIB)
        .map_or(0, |r| r.size / 1024);
    let info_flags = INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME;
    let header: [(usize, u32); 9] = [
        (0, info_flags),
        (4, low_kib as u32),
        (8, upper_kib as u32),
        (16, cmdline_addr),
        (20, modules.len() as u32),
        (24, mods_addr),
        (44, mmap_len),
        (48, mmap_addr),
        (64, loader_name),
    ];
    for (off, v) in header {
        area.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    ram.write_host(INFO_BASE, &area.bytes)?;

    // A flat GDT: 4 GiB code (0x08) and data (0x10); the entry state's segments come from it.
    let gdt = FlatGdt {
        base: GDT_BASE,
        code_selector: SEL_CODE,
        data_selector: SEL_DATA,
        long: false,
    };
    gdt.write(ram)?;
    // The machine state at entry (spec 3.2): protected mode, paging off, interrupts off.
    let mut s = gdt.cpu_state();
    s.cr0 = cr0::PE | cr0::ET;
    s.gpr[gpr::RAX] = u64::from(BOOTLOADER_MAGIC);
    s.gpr[gpr::RBX] = INFO_BASE;
    s.rip = u64::from(kernel.entry);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcpu::state::rflags;
    use vcpu::RegionSpec;

    fn ram() -> GuestRam {
        GuestRam::new(&[
            RegionSpec {
                base: 0,
                size: 0xa0000,
                kind: RegionKind::Ram,
            },
            RegionSpec {
                base: ONE_MIB,
                size: 15 << 20,
                kind: RegionKind::Ram,
            },
        ])
        .unwrap()
    }

    fn header(flags: u32, aout: [u32; 5]) -> Vec<u8> {
        let mut h = Vec::new();
        for v in [
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags),
        ]
        .into_iter()
        .chain(aout)
        {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    }

    /// A flat kernel whose header says: load the file at 1 MiB, BSS to 1 MiB + 8 KiB, enter
    /// at 1 MiB + 32.
    fn aout_kernel() -> Vec<u8> {
        let mut k = header(
            FLAG_MEMORY_INFO | FLAG_AOUT_KLUDGE,
            [0x10_0000, 0x10_0000, 0, 0x10_2000, 0x10_0020],
        );
        k.resize(32, 0);
        k.extend_from_slice(&[0xf4; 16]);
        k
    }

    fn read_u32(ram: &GuestRam, gpa: u64) -> u32 {
        let mut b = [0u8; 4];
        ram.read(gpa, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    #[test]
    fn aout_kernel_loads_with_info_and_modules() {
        let ram = ram();
        let k = aout_kernel();
        let modules = [Module {
            name: "mod.txt arg".into(),
            data: b"module data".to_vec(),
        }];
        let s = load(&ram, &k, "kernel opts", &modules).unwrap();
        assert_eq!(s.rip, 0x10_0020);
        assert_eq!(s.gpr[gpr::RAX], 0x2bad_b002);
        assert_eq!(s.cr0 & cr0::PE, cr0::PE);
        assert_eq!(s.rflags & rflags::IF, 0);
        let info = s.gpr[gpr::RBX];
        assert_eq!(read_u32(&ram, info) & 0x24d, 0x24d);
        assert_eq!(read_u32(&ram, info + 4), 640);
        assert_eq!(read_u32(&ram, info + 8), 15 * 1024);
        // The module sits page-aligned after the kernel's BSS (1 MiB + 8 KiB).
        assert_eq!(read_u32(&ram, info + 20), 1);
        let mods = u64::from(read_u32(&ram, info + 24));
        assert_eq!(read_u32(&ram, mods), 0x10_2000);
        assert_eq!(read_u32(&ram, mods + 4), 0x10_2000 + 11);
        let mut b = [0u8; 11];
        ram.read(0x10_2000, &mut b).unwrap();
        assert_eq!(&b, b"module data");
        let mut name = [0u8; 12];
        ram.read(u64::from(read_u32(&ram, mods + 8)), &mut name)
            .unwrap();
        assert_eq!(&name, b"mod.txt arg\0");
        let mut cmd = [0u8; 12];
        ram.read(u64::from(read_u32(&ram, info + 16)), &mut cmd)
            .unwrap();
        assert_eq!(&cmd, b"kernel opts\0");
        // Memory map: low RAM, the reserved hole, RAM from 1 MiB.
        let (len, addr) = (
            read_u32(&ram, info + 44),
            u64::from(read_u32(&ram, info + 48)),
        );
        assert_eq!(len, 3 * 24);
        assert_eq!(read_u32(&ram, addr), 20);
        assert_eq!(read_u32(&ram, addr + 24 + 4), 0xa0000);
        assert_eq!(read_u32(&ram, addr + 24 + 20), MMAP_RESERVED);
        assert_eq!(read_u32(&ram, addr + 48 + 4), ONE_MIB as u32);
        assert_eq!(read_u32(&ram, addr + 48 + 12), 15 << 20);
    }

    #[test]
    fn bad_kernels_are_refused_with_reasons() {
        let ram = ram();
        assert!(matches!(
            load(&ram, &[0u8; 100], "", &[]),
            Err(MultibootError::NoHeader)
        ));
        // A requirement bit emu does not know (bit 5).
        let k = header(1 << 5, [0; 5]);
        assert!(matches!(
            load(&ram, &k, "", &[]),
            Err(MultibootError::UnsupportedFlags(_))
        ));
        // A valid header in a file that is neither ELF nor a.out-kludge.
        assert!(matches!(
            load(&ram, &header(0, [0; 5]), "", &[]),
            Err(MultibootError::NotLoadable)
        ));
        // A load address outside RAM.
        let k = header(
            FLAG_AOUT_KLUDGE,
            [0x4000_0000, 0x4000_0000, 0, 0, 0x4000_0000],
        );
        assert!(matches!(
            load(&ram, &k, "", &[]),
            Err(MultibootError::OutsideRam { .. })
        ));
        // Every truncation of a good kernel is refused or loads, never panics.
        let good = aout_kernel();
        for n in 0..good.len() {
            let _ = load(&ram, &good[..n], "", &[]);
        }
        // ELF64 is named as such.
        let mut elf64 = b"\x7fELF\x02\x01\x01".to_vec();
        elf64.resize(64, 0);
        elf64.extend(header(0, [0; 5]));
        assert!(matches!(
            load(&ram, &elf64, "", &[]),
            Err(MultibootError::Elf64)
        ));
    }
}
