//! Booting a Linux bzImage directly through the 64-bit boot protocol (Documentation/arch/x86/
//! boot.rst, "64-bit Boot Protocol"), as Firecracker and QEMU's direct boot do.
//!
//! emu writes the zero page (`struct boot_params`: the kernel's own setup header plus the
//! loader's fields, an e820 memory map, the command line and initrd pointers), loads the
//! protected-mode kernel at 1 MiB and the initrd as high as the kernel allows, builds identity
//! page tables for the first 4 GiB and a GDT with the boot selectors, and starts the CPU in
//! 64-bit mode at the kernel's 64-bit entry point with RSI pointing at the zero page.
//!
//! This is written here rather than taken from rust-vmm's linux-loader because linux-loader's
//! bzImage support only compiles on x86 hosts, and emu must boot the same kernel from its JIT on
//! aarch64 and riscv64 hosts too.

use vcpu::state::{cr0, efer, gpr};
use vcpu::{CpuState, GuestRam, RegionKind};

use crate::boot_gdt::FlatGdt;

/// Setup header offsets inside the bzImage and the zero page (boot.rst, "The Real-Mode Kernel
/// Header"; arch/x86/include/uapi/asm/bootparam.h).
const HDR_SETUP_SECTS: usize = 0x1f1;
/// The protected-mode kernel's size in 16-byte paragraphs (32 bits since protocol 2.04).
const HDR_SYSSIZE: usize = 0x1f4;
const HDR_VID_MODE: usize = 0x1fa;
const HDR_JUMP: usize = 0x200;
const HDR_HEADER: usize = 0x202;
const HDR_VERSION: usize = 0x206;
const HDR_TYPE_OF_LOADER: usize = 0x210;
const HDR_LOADFLAGS: usize = 0x211;
const HDR_RAMDISK_IMAGE: usize = 0x218;
const HDR_RAMDISK_SIZE: usize = 0x21c;
const HDR_HEAP_END_PTR: usize = 0x224;
const HDR_CMD_LINE_PTR: usize = 0x228;
const HDR_INITRD_ADDR_MAX: usize = 0x22c;
const HDR_KERNEL_ALIGNMENT: usize = 0x230;
const HDR_XLOADFLAGS: usize = 0x236;
const HDR_CMDLINE_SIZE: usize = 0x238;
/// boot_params fields outside the setup header.
const BP_E820_ENTRIES: usize = 0x1e8;
const BP_E820_TABLE: usize = 0x2d0;
const E820_MAX_ENTRIES: usize = 128;

const HEADER_MAGIC: &[u8; 4] = b"HdrS";
/// Boot protocol 2.12 added xloadflags and with it the 64-bit entry point.
const MIN_PROTOCOL: u16 = 0x020c;
const XLF_KERNEL_64: u16 = 1 << 0;
const LOADFLAGS_LOADED_HIGH: u8 = 1 << 0;
const LOADFLAGS_CAN_USE_HEAP: u8 = 1 << 7;
/// "Undefined" boot loader ID (boot.rst: type_of_loader 0xFF).
const LOADER_UNDEFINED: u8 = 0xff;
const VID_MODE_NORMAL: u16 = 0xffff;
/// The 64-bit entry point is 0x200 bytes into the protected-mode kernel.
const ENTRY_64_OFFSET: u64 = 0x200;

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// Guest-physical layout of what the loader writes.
const GDT_ADDR: u64 = 0x500;
const BOOT_STACK: u64 = 0x6ff0;
const ZERO_PAGE: u64 = 0x7000;
const PML4: u64 = 0x9000;
const PDPT: u64 = 0xa000;
/// Four page directories of 2 MiB pages: the first 4 GiB, identity mapped.
const PD_BASE: u64 = 0xb000;
const CMDLINE: u64 = 0x2_0000;
const CMDLINE_MAX: u64 = 0x1_0000;
const KERNEL_LOAD: u64 = 0x10_0000;
const LOW_MEMORY_END: u64 = 0xa_0000;
const PAGE: u64 = 4096;

/// Boot selectors the protocol names: __BOOT_CS 0x10, __BOOT_DS 0x18.
const BOOT_CS: u16 = 0x10;
const BOOT_DS: u16 = 0x18;

/// Page-table entry bits (SDM Vol. 3A 4.5): present, writable, page size (2 MiB).
const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_PS: u64 = 1 << 7;
const CR4_PAE: u64 = 1 << 5;

#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    #[error("not a Linux bzImage (no \"HdrS\" setup header at offset 0x202)")]
    NotBzImage,
    #[error("the bzImage is truncated: {0}")]
    Truncated(&'static str),
    #[error(
        "the bzImage is truncated: its header says the kernel after the setup code has {need} \
         bytes, the file has {have}"
    )]
    KernelCut { need: u64, have: u64 },
    #[error("boot protocol {major}.{minor:02} is too old: emu needs 2.12 or later (a 64-bit entry point)")]
    OldProtocol { major: u16, minor: u16 },
    #[error(
        "the kernel has no 64-bit entry point (XLF_KERNEL_64 is clear): it is a 32-bit kernel"
    )]
    Not64Bit,
    #[error("the kernel command line is {len} bytes; this kernel takes at most {max}")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("{what} ({size} bytes) does not fit in guest RAM; give the guest more --memory")]
    TooBig { what: &'static str, size: u64 },
    #[error(transparent)]
    Memory(#[from] vcpu::MemoryError),
}

/// What the bzImage's setup header says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SetupHeader {
    /// Bytes of real-mode setup code before the protected-mode kernel.
    setup_bytes: usize,
    /// The header itself, from 0x1F1 to its end (copied into the zero page).
    header_end: usize,
    version: u16,
    initrd_addr_max: u32,
    cmdline_size: u32,
    /// Physical alignment the kernel needs; the decompressor places the kernel on it.
    kernel_alignment: u32,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Whether `image` looks like a bzImage (for choosing a loader).
pub fn is_bzimage(image: &[u8]) -> bool {
    image.get(HDR_HEADER..HDR_HEADER + 4) == Some(HEADER_MAGIC)
}

fn parse(image: &[u8]) -> Result<SetupHeader, LinuxError> {
    if !is_bzimage(image) {
        return Err(LinuxError::NotBzImage);
    }
    let short = LinuxError::Truncated("the setup header is cut short");
    let version = u16_at(image, HDR_VERSION).ok_or(short)?;
    if version < MIN_PROTOCOL {
        return Err(LinuxError::OldProtocol {
            major: version >> 8,
            minor: version & 0xff,
        });
    }
    // The header's length is 0x202 + the byte at 0x201 (the jump's displacement).
    let header_end = HDR_HEADER + usize::from(image[HDR_JUMP + 1]);
    let setup_sects = match image[HDR_SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let setup_bytes = (setup_sects + 1) * 512;
    let xloadflags = u16_at(image, HDR_XLOADFLAGS)
        .ok_or(LinuxError::Truncated("the setup header is cut short"))?;
    if xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LinuxError::Not64Bit);
    }
    if header_end > image.len() || setup_bytes >= image.len() {
        return Err(LinuxError::Truncated(
            "no protected-mode kernel after the setup code",
        ));
    }
    let syssize =
        u32_at(image, HDR_SYSSIZE).ok_or(LinuxError::Truncated("the setup header is cut short"))?;
    let need = u64::from(syssize) * 16;
    let have = (image.len() - setup_bytes) as u64;
    if need > have {
        return Err(LinuxError::KernelCut { need, have });
    }
    Ok(SetupHeader {
        setup_bytes,
        header_end,
        version,
        initrd_addr_max: u32_at(image, HDR_INITRD_ADDR_MAX)
            .ok_or(LinuxError::Truncated("the setup header is cut short"))?,
        cmdline_size: u32_at(image, HDR_CMDLINE_SIZE)
            .ok_or(LinuxError::Truncated("the setup header is cut short"))?,
        kernel_alignment: u32_at(image, HDR_KERNEL_ALIGNMENT)
            .ok_or(LinuxError::Truncated("the setup header is cut short"))?,
    })
}

/// The e820 map: RAM regions as usable, the legacy hole below 1 MiB as reserved.
fn e820(ram: &GuestRam) -> Vec<(u64, u64, u32)> {
    let mut map = Vec::new();
    for r in ram.regions().iter().filter(|r| r.kind == RegionKind::Ram) {
        if r.base < LOW_MEMORY_END {
            map.push((r.base, r.end().min(LOW_MEMORY_END) - r.base, E820_RAM));
        } else if r.base >= KERNEL_LOAD {
            map.push((r.base, r.size, E820_RAM));
        }
    }
    map.push((LOW_MEMORY_END, KERNEL_LOAD - LOW_MEMORY_END, E820_RESERVED));
    map.sort_unstable();
    map
}

/// Load `image` (a bzImage) and `initrd` into `ram` with `cmdline`, and return the CPU state at
/// the kernel's 64-bit entry point.
pub fn load(
    ram: &GuestRam,
    image: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
) -> Result<CpuState, LinuxError> {
    let hdr = parse(image)?;
    let kernel = &image[hdr.setup_bytes..];
    let ram_top_low = ram
        .regions()
        .iter()
        .find(|r| r.kind == RegionKind::Ram && r.base == KERNEL_LOAD)
        .map_or(0, |r| r.end());
    if KERNEL_LOAD + kernel.len() as u64 > ram_top_low {
        return Err(LinuxError::TooBig {
            what: "the kernel",
            size: kernel.len() as u64,
        });
    }
    ram.write_host(KERNEL_LOAD, kernel)?;

    let max = (hdr.cmdline_size as usize).min(CMDLINE_MAX as usize - 1);
    if cmdline.len() > max {
        return Err(LinuxError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    let mut cmd = cmdline.as_bytes().to_vec();
    cmd.push(0);
    ram.write_host(CMDLINE, &cmd)?;

    // The zero page: the kernel's setup header, then the loader's fields.
    let mut zp = vec![0u8; PAGE as usize];
    zp[HDR_SETUP_SECTS..hdr.header_end].copy_from_slice(&image[HDR_SETUP_SECTS..hdr.header_end]);
    let put16 =
        |zp: &mut [u8], off: usize, v: u16| zp[off..off + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |zp: &mut [u8], off: usize, v: u32| zp[off..off + 4].copy_from_slice(&v.to_le_bytes());
    put16(&mut zp, HDR_VID_MODE, VID_MODE_NORMAL);
    zp[HDR_TYPE_OF_LOADER] = LOADER_UNDEFINED;
    zp[HDR_LOADFLAGS] |= LOADFLAGS_LOADED_HIGH | LOADFLAGS_CAN_USE_HEAP;
    // The heap ends where the real-mode setup code's would (boot.rst); unused in 64-bit boot.
    put16(&mut zp, HDR_HEAP_END_PTR, 0xfe00 - 0x200);
    put32(&mut zp, HDR_CMD_LINE_PTR, CMDLINE as u32);

    if let Some(initrd) = initrd {
        // As high as the kernel can reach, below the end of low RAM, page aligned.
        let limit = (u64::from(hdr.initrd_addr_max) + 1).min(ram_top_low);
        let kernel_end = KERNEL_LOAD + kernel.len() as u64;
        let start = limit
            .checked_sub(initrd.len() as u64)
            .map(|a| a & !(PAGE - 1))
            .filter(|&a| a >= kernel_end.next_multiple_of(PAGE))
            .ok_or(LinuxError::TooBig {
                what: "the initrd",
                size: initrd.len() as u64,
            })?;
        ram.write_host(start, initrd)?;
        put32(&mut zp, HDR_RAMDISK_IMAGE, start as u32);
        put32(&mut zp, HDR_RAMDISK_SIZE, initrd.len() as u32);
    }

    let map = e820(ram);
    let entries = map.len().min(E820_MAX_ENTRIES);
    zp[BP_E820_ENTRIES] = entries as u8;
    for (i, (addr, size, kind)) in map.iter().take(entries).enumerate() {
        let o = BP_E820_TABLE + i * 20;
        zp[o..o + 8].copy_from_slice(&addr.to_le_bytes());
        zp[o + 8..o + 16].copy_from_slice(&size.to_le_bytes());
        zp[o + 16..o + 20].copy_from_slice(&kind.to_le_bytes());
    }
    ram.write_host(ZERO_PAGE, &zp)?;
    log::info!(
        "Linux boot protocol {}.{:02}: kernel {} bytes at {KERNEL_LOAD:#x}, command line {cmdline:?}",
        hdr.version >> 8,
        hdr.version & 0xff,
        kernel.len()
    );

    // Identity map of the first 4 GiB with 2 MiB pages.
    ram.write_host(PML4, &(PDPT | PTE_P | PTE_RW).to_le_bytes())?;
    for i in 0..4u64 {
        let pd = PD_BASE + i * PAGE;
        ram.write_host(PDPT + i * 8, &(pd | PTE_P | PTE_RW).to_le_bytes())?;
        let entries: Vec<u8> = (0..512u64)
            .flat_map(|j| (((i << 30) | (j << 21)) | PTE_P | PTE_RW | PTE_PS).to_le_bytes())
            .collect();
        ram.write_host(pd, &entries)?;
    }
    // No firmware: the kernel finds its ACPI tables (and the poweroff path) from emu.
    crate::acpi::install(ram)?;

    // GDT with __BOOT_CS (64-bit code) and __BOOT_DS (flat data), as the protocol requires.
    let gdt = FlatGdt {
        base: GDT_ADDR,
        code_selector: BOOT_CS,
        data_selector: BOOT_DS,
        long: true,
    };
    gdt.write(ram)?;
    let mut s = gdt.cpu_state();
    // 64-bit mode, paging on with the identity map, interrupts off, RSI = the zero page.
    s.cr0 = cr0::PE | cr0::ET | cr0::PG;
    s.cr3 = PML4;
    s.cr4 = CR4_PAE;
    s.efer = efer::LME | efer::LMA;
    s.gpr[gpr::RSI] = ZERO_PAGE;
    s.gpr[gpr::RSP] = BOOT_STACK;
    s.rip = KERNEL_LOAD + ENTRY_64_OFFSET;
    Ok(s)
}

/// Recognises the decompressed kernel's first instruction, for a machine that runs the
/// bzImage's self-decompressor on one backend and the kernel on another.
///
/// The decompressor (arch/x86/boot/compressed/head_64.S) ends with `movq %r15, %rsi; jmp *%rax`:
/// it enters the kernel's `startup_64` in 64-bit mode, at the physical address it decompressed
/// the kernel to, which is a multiple of the header's `kernel_alignment` (KASLR picks among
/// such addresses), with RSI pointing at the zero page emu wrote. The decompressor's own code,
/// entered at 1 MiB + 0x200 and then run from a copy placed above the output, never starts a
/// block on such an address with RSI at the zero page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelEntry {
    alignment: u64,
}

impl KernelEntry {
    /// The entry of the kernel in `image` (a bzImage emu can boot).
    pub fn of(image: &[u8]) -> Result<Self, LinuxError> {
        let hdr = parse(image)?;
        // Protocol 2.10+ kernels state a power of two; anything else would be a broken header,
        // and 2 MiB is what x86-64 kernels use (CONFIG_PHYSICAL_ALIGN).
        let alignment = match u64::from(hdr.kernel_alignment) {
            a if a.is_power_of_two() && a >= PAGE => a,
            _ => 2 << 20,
        };
        Ok(Self { alignment })
    }

    /// Whether a block at physical address `phys`, about to run in `cpu`'s state, is the
    /// decompressed kernel's first.
    pub fn is_entry(&self, phys: u64, cpu: &CpuState) -> bool {
        let long_mode = cpu.efer & efer::LMA != 0
            && cpu.seg[vcpu::SegmentIndex::Cs as usize].attr & vcpu::Segment::ATTR_L != 0;
        long_mode
            && phys.is_multiple_of(self.alignment)
            && phys > KERNEL_LOAD
            && cpu.rip == phys
            && cpu.gpr[gpr::RSI] == ZERO_PAGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcpu::{RegionSpec, SegmentIndex};

    fn ram() -> GuestRam {
        GuestRam::new(&[
            RegionSpec {
                base: 0,
                size: LOW_MEMORY_END,
                kind: RegionKind::Ram,
            },
            // The upper memory area, where the ACPI tables go (RAM when there is no BIOS).
            RegionSpec {
                base: 0xc_0000,
                size: 0x4_0000,
                kind: RegionKind::Ram,
            },
            RegionSpec {
                base: KERNEL_LOAD,
                size: 63 << 20,
                kind: RegionKind::Ram,
            },
        ])
        .unwrap()
    }

    /// A minimal bzImage: 4 setup sectors, protocol 2.15, 64-bit capable, then a kernel body.
    fn bzimage(body: usize) -> Vec<u8> {
        let mut b = vec![0u8; 5 * 512 + body];
        b[HDR_SETUP_SECTS] = 4;
        b[HDR_JUMP] = 0xeb;
        b[HDR_JUMP + 1] = 0x6a; // header ends at 0x26c
        b[HDR_HEADER..HDR_HEADER + 4].copy_from_slice(HEADER_MAGIC);
        b[HDR_VERSION..HDR_VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        b[HDR_INITRD_ADDR_MAX..HDR_INITRD_ADDR_MAX + 4]
            .copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        b[HDR_XLOADFLAGS..HDR_XLOADFLAGS + 2].copy_from_slice(&XLF_KERNEL_64.to_le_bytes());
        b[HDR_CMDLINE_SIZE..HDR_CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
        // The header's size (in paragraphs) covers the body, as build.c pads it to.
        let syssize = body as u32 / 16;
        b[HDR_SYSSIZE..HDR_SYSSIZE + 4].copy_from_slice(&syssize.to_le_bytes());
        for (i, x) in b[5 * 512..].iter_mut().enumerate() {
            *x = i as u8;
        }
        b
    }

    fn u32_of(ram: &GuestRam, gpa: u64) -> u32 {
        let mut b = [0u8; 4];
        ram.read(gpa, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    #[test]
    fn kernel_entry_is_the_aligned_64_bit_jump_with_the_zero_page_in_rsi() {
        let ram = ram();
        let mut image = bzimage(10_000);
        image[HDR_KERNEL_ALIGNMENT..HDR_KERNEL_ALIGNMENT + 4]
            .copy_from_slice(&0x20_0000u32.to_le_bytes());
        let entry = KernelEntry::of(&image).unwrap();
        // The state the loader starts the decompressor in: not the kernel's entry.
        let boot = load(&ram, &image, None, "").unwrap();
        assert!(!entry.is_entry(boot.rip, &boot));
        // What head_64.S leaves at `jmp *%rax` into a kernel decompressed to 0x3200000.
        let mut at_kernel = boot;
        at_kernel.rip = 0x320_0000;
        assert!(entry.is_entry(0x320_0000, &at_kernel));
        // Not aligned, another RSI, or not in 64-bit mode: decompressor code, not the kernel.
        let mut unaligned = at_kernel;
        unaligned.rip = 0x320_1000;
        assert!(!entry.is_entry(0x320_1000, &unaligned));
        let mut other_rsi = at_kernel;
        other_rsi.gpr[gpr::RSI] = 0x8000;
        assert!(!entry.is_entry(0x320_0000, &other_rsi));
        let mut compat = at_kernel;
        compat.seg[SegmentIndex::Cs as usize].attr &= !vcpu::Segment::ATTR_L;
        assert!(!entry.is_entry(0x320_0000, &compat));
        // A header without a usable alignment falls back to x86-64's 2 MiB.
        image[HDR_KERNEL_ALIGNMENT..HDR_KERNEL_ALIGNMENT + 4].copy_from_slice(&3u32.to_le_bytes());
        let fallback = KernelEntry::of(&image).unwrap();
        assert!(fallback.is_entry(0x320_0000, &at_kernel));
        assert!(!fallback.is_entry(0x310_0000, &{
            let mut s = at_kernel;
            s.rip = 0x310_0000;
            s
        }));
        assert!(matches!(
            KernelEntry::of(b"not a kernel"),
            Err(LinuxError::NotBzImage)
        ));
    }

    #[test]
    fn a_kernel_cut_short_is_named_truncated() {
        let ram = ram();
        // 626 paragraphs: the file needs 10,016 bytes after the setup code.
        let mut image = bzimage(10_016);
        assert!(load(&ram, &image, None, "").is_ok());
        image.truncate(image.len() - 1);
        match load(&ram, &image, None, "") {
            Err(LinuxError::KernelCut { need, have }) => assert_eq!((need, have), (10_016, 10_015)),
            other => panic!("expected KernelCut, got {other:?}"),
        }
    }

    #[test]
    fn loads_kernel_initrd_cmdline_and_zero_page() {
        let ram = ram();
        let image = bzimage(10_000);
        let initrd = vec![0x5au8; 5000];
        let s = load(&ram, &image, Some(&initrd), "console=ttyS0").unwrap();
        assert_eq!(s.rip, 0x10_0200);
        assert_eq!(s.gpr[gpr::RSI], ZERO_PAGE);
        assert_eq!(s.efer & efer::LMA, efer::LMA);
        assert!(s.seg[SegmentIndex::Cs as usize].long());
        // The protected-mode kernel is at 1 MiB.
        let mut k = [0u8; 4];
        ram.read(KERNEL_LOAD + 256, &mut k).unwrap();
        assert_eq!(k, [0, 1, 2, 3]);
        // Zero page: the kernel's header, the loader's fields.
        assert_eq!(
            u32_of(&ram, ZERO_PAGE + HDR_HEADER as u64),
            u32::from_le_bytes(*b"HdrS")
        );
        let mut b = [0u8; 1];
        ram.read(ZERO_PAGE + HDR_TYPE_OF_LOADER as u64, &mut b)
            .unwrap();
        assert_eq!(b, [0xff]);
        assert_eq!(
            u32_of(&ram, ZERO_PAGE + HDR_CMD_LINE_PTR as u64),
            CMDLINE as u32
        );
        let mut c = [0u8; 14];
        ram.read(CMDLINE, &mut c).unwrap();
        assert_eq!(&c, b"console=ttyS0\0");
        // The initrd: page aligned, at the top of RAM, its bytes in place.
        let at = u64::from(u32_of(&ram, ZERO_PAGE + HDR_RAMDISK_IMAGE as u64));
        assert_eq!(at % PAGE, 0);
        assert!(at + 5000 <= 64 << 20 && at + 5000 + PAGE > 64 << 20);
        assert_eq!(u32_of(&ram, ZERO_PAGE + HDR_RAMDISK_SIZE as u64), 5000);
        ram.read(at + 4999, &mut b).unwrap();
        assert_eq!(b, [0x5a]);
        // e820: low RAM, the hole, RAM from 1 MiB.
        ram.read(ZERO_PAGE + BP_E820_ENTRIES as u64, &mut b)
            .unwrap();
        assert_eq!(b, [3]);
        let third = ZERO_PAGE + BP_E820_TABLE as u64 + 40;
        assert_eq!(u32_of(&ram, third), KERNEL_LOAD as u32);
        assert_eq!(u32_of(&ram, third + 8), 63 << 20);
        // The identity map covers 3 GiB + 2 MiB with a 2 MiB page.
        let pd3 = PD_BASE + 3 * PAGE;
        assert_eq!(u32_of(&ram, pd3 + 8), (3u32 << 30) | (1 << 21) | 0x83);
    }

    #[test]
    fn bad_images_are_refused_with_reasons() {
        let ram = ram();
        assert!(matches!(
            load(&ram, &[0u8; 4096], None, ""),
            Err(LinuxError::NotBzImage)
        ));
        let mut old = bzimage(100);
        old[HDR_VERSION..HDR_VERSION + 2].copy_from_slice(&0x0204u16.to_le_bytes());
        assert!(matches!(
            load(&ram, &old, None, ""),
            Err(LinuxError::OldProtocol { major: 2, minor: 4 })
        ));
        let mut k32 = bzimage(100);
        k32[HDR_XLOADFLAGS] = 0;
        assert!(matches!(
            load(&ram, &k32, None, ""),
            Err(LinuxError::Not64Bit)
        ));
        let long = "x".repeat(3000);
        assert!(matches!(
            load(&ram, &bzimage(100), None, &long),
            Err(LinuxError::CmdlineTooLong {
                len: 3000,
                max: 2047
            })
        ));
        let huge = vec![0u8; 70 << 20];
        assert!(matches!(
            load(&ram, &bzimage(100), Some(&huge), ""),
            Err(LinuxError::TooBig {
                what: "the initrd",
                ..
            })
        ));
        let good = bzimage(600);
        for n in (0..good.len()).step_by(7) {
            let _ = load(&ram, &good[..n], None, "");
        }
    }
}
