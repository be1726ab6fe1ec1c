//! The architectural CPU state shared by all backends.
//!
//! `CpuState` is plain `#[repr(C)]` data: the JIT addresses its fields by offset from generated
//! code, `accel` converts it to and from KVM's structures, and snapshots store it. Register
//! arrays follow the x86 encoding order (SDM Vol. 2A 2.1.5, Table 2-2) so that an instruction's
//! register number indexes them directly.

/// Index of a general register in [`CpuState::gpr`] (encoding order).
pub mod gpr {
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
}

/// RFLAGS bits (SDM Vol. 1 3.4.3).
pub mod rflags {
    pub const CF: u64 = 1 << 0;
    /// Bit 1 is reserved and always reads as 1.
    pub const FIXED1: u64 = 1 << 1;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const IOPL: u64 = 3 << 12;
    pub const NT: u64 = 1 << 14;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
    pub const AC: u64 = 1 << 18;
    pub const VIF: u64 = 1 << 19;
    pub const VIP: u64 = 1 << 20;
    pub const ID: u64 = 1 << 21;
    /// The six arithmetic status flags.
    pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
}

/// Control register bits (SDM Vol. 3A 2.5).
pub mod cr0 {
    pub const PE: u64 = 1 << 0;
    pub const MP: u64 = 1 << 1;
    pub const EM: u64 = 1 << 2;
    pub const TS: u64 = 1 << 3;
    pub const ET: u64 = 1 << 4;
    pub const NE: u64 = 1 << 5;
    pub const WP: u64 = 1 << 16;
    pub const AM: u64 = 1 << 18;
    pub const NW: u64 = 1 << 29;
    pub const CD: u64 = 1 << 30;
    pub const PG: u64 = 1 << 31;
}

/// EFER bits (SDM Vol. 3A 2.2.1).
pub mod efer {
    pub const SCE: u64 = 1 << 0;
    pub const LME: u64 = 1 << 8;
    pub const LMA: u64 = 1 << 10;
    pub const NXE: u64 = 1 << 11;
}

/// Segment register order in [`CpuState::seg`] (the Sreg encoding, SDM Vol. 2A 3.1.1.3).
#[repr(usize)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentIndex {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
}

/// A segment register with its hidden (descriptor cache) part.
///
/// `attr` packs the descriptor's access bits the way they sit in bits 40..56 of a descriptor
/// with the limit nibble removed (the VMX "access rights" layout, SDM Vol. 3C 24.4.1):
/// bits 0-3 type, 4 S, 5-6 DPL, 7 P, 12 AVL, 13 L, 14 D/B, 15 G. `limit` is the expanded byte
/// limit (already scaled by G).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    pub attr: u16,
}

impl Segment {
    pub const ATTR_ACCESSED: u16 = 1 << 0;
    pub const ATTR_S: u16 = 1 << 4;
    pub const ATTR_P: u16 = 1 << 7;
    pub const ATTR_AVL: u16 = 1 << 12;
    pub const ATTR_L: u16 = 1 << 13;
    pub const ATTR_DB: u16 = 1 << 14;
    pub const ATTR_G: u16 = 1 << 15;

    /// A real-mode segment: base = selector * 16, 64 KiB limit, present read/write data
    /// (the state after a real-mode segment load, SDM Vol. 3A 20.1.1).
    pub fn real_mode(selector: u16) -> Self {
        Self {
            base: u64::from(selector) << 4,
            limit: 0xffff,
            selector,
            attr: Self::ATTR_P | Self::ATTR_S | 0x3,
        }
    }
    /// Descriptor type (bits 0-3).
    pub fn typ(&self) -> u8 {
        (self.attr & 0xf) as u8
    }
    pub fn dpl(&self) -> u8 {
        ((self.attr >> 5) & 3) as u8
    }
    pub fn present(&self) -> bool {
        self.attr & Self::ATTR_P != 0
    }
    /// D/B bit: 32-bit default operand size for code, 32-bit stack for SS.
    pub fn db(&self) -> bool {
        self.attr & Self::ATTR_DB != 0
    }
    /// L bit: 64-bit code segment.
    pub fn long(&self) -> bool {
        self.attr & Self::ATTR_L != 0
    }
    /// Build from the two dwords of a GDT/LDT descriptor (SDM Vol. 3A 3.4.5).
    pub fn from_descriptor(selector: u16, low: u32, high: u32) -> Self {
        let base = (low >> 16) | ((high & 0xff) << 16) | (high & 0xff00_0000);
        let raw_limit = (low & 0xffff) | (high & 0x000f_0000);
        let attr = ((high >> 8) & 0xff) as u16 | (((high >> 20) & 0xf) as u16) << 12;
        let limit = if attr & Self::ATTR_G != 0 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        };
        Self {
            base: u64::from(base),
            limit,
            selector,
            attr,
        }
    }
}

/// GDTR / IDTR.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DescriptorTable {
    pub base: u64,
    pub limit: u16,
}

/// x87/MMX/SSE state in the FXSAVE memory layout (SDM Vol. 1 10.5.1, Table 10-2).
#[repr(C, align(16))]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FxArea(pub [u8; 512]);

impl FxArea {
    pub const FCW: usize = 0;
    pub const FSW: usize = 2;
    pub const FTW: usize = 4;
    pub const FOP: usize = 6;
    pub const FIP: usize = 8;
    pub const FDP: usize = 16;
    pub const MXCSR: usize = 24;
    pub const MXCSR_MASK: usize = 28;
    /// ST0..ST7 / MM0..MM7, 16 bytes each.
    pub const ST0: usize = 32;
    /// XMM0..XMM15, 16 bytes each.
    pub const XMM0: usize = 160;

    /// The state after RESET/INIT for FXSAVE purposes: FCW 0x037F, MXCSR 0x1F80 (SDM Vol. 3A
    /// 9.1.1, Table 9-1).
    pub fn reset() -> Self {
        let mut a = [0u8; 512];
        a[Self::FCW..Self::FCW + 2].copy_from_slice(&0x037fu16.to_le_bytes());
        a[Self::MXCSR..Self::MXCSR + 4].copy_from_slice(&0x1f80u32.to_le_bytes());
        a[Self::MXCSR_MASK..Self::MXCSR_MASK + 4].copy_from_slice(&0xffffu32.to_le_bytes());
        Self(a)
    }
    pub fn u16_at(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.0[off], self.0[off + 1]])
    }
    pub fn u32_at(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.0[off..off + 4].try_into().unwrap())
    }
}

impl Default for FxArea {
    fn default() -> Self {
        Self::reset()
    }
}

impl std::fmt::Debug for FxArea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FxArea")
            .field("fcw", &format_args!("{:#06x}", self.u16_at(Self::FCW)))
            .field("fsw", &format_args!("{:#06x}", self.u16_at(Self::FSW)))
            .field("mxcsr", &format_args!("{:#010x}", self.u32_at(Self::MXCSR)))
            .finish_non_exhaustive()
    }
}

/// An event (interrupt or exception) accepted by the CPU but not yet delivered through the IDT,
/// so a backend switch in the middle of delivery loses nothing.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingEvent {
    /// 0 = none.
    pub valid: u8,
    /// Event kind: [`PendingEvent::EXTERNAL`], [`PendingEvent::NMI`], [`PendingEvent::EXCEPTION`].
    pub kind: u8,
    pub vector: u8,
    pub has_error_code: u8,
    pub error_code: u32,
}

impl PendingEvent {
    pub const EXTERNAL: u8 = 0;
    pub const NMI: u8 = 2;
    pub const EXCEPTION: u8 = 3;
}

/// The architectural state of one x86 logical processor.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuState {
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15.
    pub gpr: [u64; 16],
    pub rip: u64,
    /// Always fully materialised here (backends keep lazy flags internally).
    pub rflags: u64,
    /// ES, CS, SS, DS, FS, GS (FS/GS bases are the FS_BASE/GS_BASE MSRs).
    pub seg: [Segment; 6],
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: DescriptorTable,
    pub idtr: DescriptorTable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    /// DR0..DR3, DR6, DR7.
    pub dr: [u64; 6],
    pub efer: u64,
    pub xcr0: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub pat: u64,
    pub tsc: u64,
    pub tsc_aux: u64,
    /// IA32_TSC_ADJUST (SDM Vol. 3B 18.17.3): what software added to the TSC through this MSR or
    /// by writing IA32_TIME_STAMP_COUNTER.
    pub tsc_adjust: u64,
    pub apic_base: u64,
    pub misc_enable: u64,
    pub fx: FxArea,
    pub pending: PendingEvent,
    /// 1 while the CPU sits in HLT.
    pub halted: u8,
    /// Interrupt shadow after STI or MOV SS / POP SS (SDM Vol. 3A 6.8.3): 1 blocks external
    /// interrupts for one instruction.
    pub interrupt_shadow: u8,
    /// 1 while NMIs are blocked (between NMI delivery and the next IRET).
    pub nmi_blocked: u8,
    pub _reserved: [u8; 5],
}

impl Default for CpuState {
    fn default() -> Self {
        Self::reset()
    }
}

impl CpuState {
    /// The state after a power-on RESET (SDM Vol. 3A 9.1.1, Table 9-1): real mode, CS selector
    /// F000 with base FFFF0000, IP FFF0, so the first fetch is at 0xFFFFFFF0.
    pub fn reset() -> Self {
        let mut seg = [Segment::real_mode(0); 6];
        seg[SegmentIndex::Cs as usize] = Segment {
            base: 0xffff_0000,
            limit: 0xffff,
            selector: 0xf000,
            // Present, accessed read/execute code.
            attr: Segment::ATTR_P | Segment::ATTR_S | 0xb,
        };
        let mut gpr = [0u64; 16];
        // EDX holds the processor signature after reset; family 6 like QEMU's default model.
        gpr[gpr::RDX] = 0x0000_0663;
        Self {
            gpr,
            rip: 0xfff0,
            rflags: rflags::FIXED1,
            seg,
            ldtr: Segment {
                attr: Segment::ATTR_P | 0x2,
                limit: 0xffff,
                ..Segment::default()
            },
            tr: Segment {
                attr: Segment::ATTR_P | 0xb,
                limit: 0xffff,
                ..Segment::default()
            },
            gdtr: DescriptorTable {
                base: 0,
                limit: 0xffff,
            },
            idtr: DescriptorTable {
                base: 0,
                limit: 0xffff,
            },
            cr0: cr0::ET | cr0::NW | cr0::CD,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            dr: [0, 0, 0, 0, 0xffff_0ff0, 0x400],
            efer: 0,
            xcr0: 1,
            star: 0,
            lstar: 0,
            cstar: 0,
            sfmask: 0,
            kernel_gs_base: 0,
            sysenter_cs: 0,
            sysenter_esp: 0,
            sysenter_eip: 0,
            pat: 0x0007_0406_0007_0406,
            tsc: 0,
            tsc_aux: 0,
            tsc_adjust: 0,
            apic_base: 0xfee0_0900,
            misc_enable: 1,
            fx: FxArea::reset(),
            pending: PendingEvent::default(),
            halted: 0,
            interrupt_shadow: 0,
            nmi_blocked: 0,
            _reserved: [0; 5],
        }
    }

    pub fn cs(&self) -> &Segment {
        &self.seg[SegmentIndex::Cs as usize]
    }

    /// The execution mode, from CR0.PE, EFER.LMA, RFLAGS.VM and CS.L/D (SDM Vol. 3A 2.2).
    pub fn mode(&self) -> ExecMode {
        if self.cr0 & cr0::PE == 0 {
            ExecMode::Real
        } else if self.rflags & rflags::VM != 0 {
            ExecMode::Virtual8086
        } else if self.efer & efer::LMA != 0 && self.cs().long() {
            ExecMode::Long64
        } else if self.cs().db() {
            ExecMode::Protected32
        } else {
            ExecMode::Protected16
        }
    }

    /// Current privilege level: CS.DPL in protected mode, 0 in real mode, 3 in virtual-8086.
    pub fn cpl(&self) -> u8 {
        match self.mode() {
            ExecMode::Real => 0,
            ExecMode::Virtual8086 => 3,
            _ => self.seg[SegmentIndex::Ss as usize].dpl(),
        }
    }
}

/// How instructions are decoded and which rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecMode {
    Real,
    Virtual8086,
    /// Protected mode with a 16-bit code segment.
    Protected16,
    /// Protected mode with a 32-bit code segment (also compatibility mode's 32-bit code).
    Protected32,
    /// 64-bit mode (IA-32e with CS.L = 1).
    Long64,
}

impl ExecMode {
    /// Default code size in bits, what iced-x86's decoder calls bitness.
    pub fn bitness(self) -> u32 {
        match self {
            ExecMode::Real | ExecMode::Virtual8086 | ExecMode::Protected16 => 16,
            ExecMode::Protected32 => 32,
            ExecMode::Long64 => 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_fetches_from_reset_vector() {
        let s = CpuState::reset();
        assert_eq!(s.cs().base + s.rip, 0xffff_fff0);
        assert_eq!(s.mode(), ExecMode::Real);
        assert_eq!(s.mode().bitness(), 16);
    }

    #[test]
    fn flat_descriptor_decodes() {
        // The classic flat 4 GiB ring-0 code descriptor 0x00CF9A000000FFFF.
        let s = Segment::from_descriptor(0x08, 0x0000_ffff, 0x00cf_9a00);
        assert_eq!(s.base, 0);
        assert_eq!(s.limit, 0xffff_ffff);
        assert!(s.db() && s.present() && !s.long());
        assert_eq!(s.typ(), 0xa);
        assert_eq!(s.dpl(), 0);
    }

    #[test]
    fn fx_area_is_512_bytes_aligned() {
        assert_eq!(std::mem::size_of::<FxArea>(), 512);
        assert_eq!(std::mem::align_of::<FxArea>(), 16);
    }
}
