//! System instructions: HLT, CLI/STI, IN/OUT, CPUID, RDTSC, RDMSR/WRMSR, LGDT/LIDT/SGDT/SIDT,
//! LLDT/LTR/SLDT/STR, MOV to/from control and debug registers (with the IA-32e mode switch of
//! SDM Vol. 3A 10.8.5), LMSW/SMSW/CLTS, INVLPG and SWAPGS (SDM Vol. 2 and Vol. 3A 2.5-2.8). Privileged ones raise #GP(0) outside CPL 0. Port access
//! is allowed when CPL <= IOPL, else as the TSS I/O permission bitmap says.

use iced_x86::{Code, Instruction, Mnemonic as M, OpKind, Register};
use vcpu::state::{cr0, efer, gpr, rflags};
use vcpu::{ExecMode, Segment, SegmentIndex};

use super::operand::{
    mask, mem_linear, mem_linear_plus, op_size, read_op, reg_read, reg_write, write_op,
};
use super::sse;
use super::{end_block_after, ip_mask, Exec, Flow};
use crate::context::JitContext;
use crate::exception::Fault;
use crate::mem;
use crate::runtime::Runtime;
use crate::segment;

/// CR4 bits (SDM Vol. 3A 2.5).
pub const CR4_TSD: u64 = 1 << 2;
pub const CR4_DE: u64 = 1 << 3;
/// The CR4 bits emu accepts: VME, PVI, TSD, DE, PSE, PAE, MCE, PGE, PCE, OSFXSR, OSXMMEXCPT
/// (bits 0-10), OSXSAVE (bit 18, XSAVE is implemented in `super::sse`), SMEP and SMAP (bits
/// 20-21, `crate::paging`). Others raise
/// #GP(0) (SDM Vol. 2B MOV CR, reserved bits).
const CR4_SUPPORTED: u64 =
    0x7ff | sse::CR4_OSXSAVE | crate::paging::cr4::SMEP | crate::paging::cr4::SMAP;

/// Raise #GP(0) unless at CPL 0 (privileged instructions, SDM Vol. 3A 5.9).
#[inline]
fn require_cpl0(ctx: &JitContext) -> Result<(), Fault> {
    if ctx.cpu.cpl() != 0 {
        return Err(Fault::gp(0));
    }
    Ok(())
}

fn iopl(ctx: &JitContext) -> u8 {
    ((ctx.cpu.rflags & rflags::IOPL) >> 12) as u8
}

/// I/O-sensitive instructions (CLI, STI) in protected mode need CPL <= IOPL (SDM Vol. 1
/// 19.5.1).
pub(super) fn check_iopl(ctx: &JitContext) -> Result<(), Fault> {
    if ctx.cpu.mode() != ExecMode::Real && ctx.cpu.cpl() > iopl(ctx) {
        return Err(Fault::gp(0));
    }
    Ok(())
}

/// Offset of the I/O map base address in a 32-bit (and 64-bit) TSS (SDM Vol. 3A 7.2.1).
const TSS_IO_MAP_BASE: u64 = 0x66;
/// The 32-bit TSS types, available and busy (SDM Vol. 3A 3.5, Table 3-2; in IA-32e mode the
/// 64-bit TSS has the same types).
const TSS32_TYPES: [u8; 2] = [0x9, 0xb];

/// IN, OUT, INS, OUTS of `size` bytes at `port`: allowed in real mode and when CPL <= IOPL;
/// otherwise every bit of the port's bytes in the TSS I/O permission bitmap must be clear.
/// A 16-bit TSS has no bitmap, and a bitmap that ends beyond the TSS limit denies the access;
/// denial is #GP(0) (SDM Vol. 1 19.5.2). The check reads two bytes, as processors do, since a
/// port's bits may straddle a byte boundary.
pub(super) fn check_io_permission(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    port: u16,
    size: u32,
) -> Result<(), Fault> {
    if ctx.cpu.mode() == ExecMode::Real || ctx.cpu.cpl() <= iopl(ctx) {
        return Ok(());
    }
    let tr = ctx.cpu.tr;
    if !tr.present()
        || !TSS32_TYPES.contains(&tr.typ())
        || u64::from(tr.limit) < TSS_IO_MAP_BASE + 1
    {
        return Err(Fault::gp(0));
    }
    let wrap = mem::system_mask(ctx);
    let map = mem::read_system(ctx, rt, tr.base.wrapping_add(TSS_IO_MAP_BASE) & wrap, 2)?;
    let offset = map + u64::from(port >> 3);
    if offset + 1 > u64::from(tr.limit) {
        return Err(Fault::gp(0));
    }
    let bits = mem::read_system(ctx, rt, tr.base.wrapping_add(offset) & wrap, 2)?;
    let wanted = ((1u64 << size) - 1) << (port & 7);
    if bits & wanted != 0 {
        return Err(Fault::gp(0));
    }
    Ok(())
}

/// Drop cached translations when EFLAGS.AC changed under CR4.SMAP: the TLB may hold user pages
/// that supervisor accesses reach only while AC is set (SDM Vol. 3A 4.6.1).
pub(super) fn after_ac_change(ctx: &mut JitContext, old_rflags: u64) {
    if ctx.cpu.cr4 & crate::paging::cr4::SMAP != 0
        && (old_rflags ^ ctx.cpu.rflags) & rflags::AC != 0
    {
        ctx.flush_tlb();
    }
}

/// STAC and CLAC (SDM Vol. 2B): set or clear EFLAGS.AC; #UD outside CPL 0.
pub(super) fn stac_clac(ctx: &mut JitContext, insn: &Instruction) -> Exec {
    if ctx.cpu.cpl() != 0 {
        return Err(Fault::ud());
    }
    let old = ctx.cpu.rflags;
    if insn.mnemonic() == M::Stac {
        ctx.cpu.rflags |= rflags::AC;
    } else {
        ctx.cpu.rflags &= !rflags::AC;
    }
    after_ac_change(ctx, old);
    Ok(end_block_after(ctx, insn))
}

pub(super) fn hlt(ctx: &mut JitContext, insn: &Instruction) -> Exec {
    require_cpl0(ctx)?;
    ctx.cpu.halted = 1;
    ctx.cpu.rip = insn.next_ip() & ip_mask(ctx);
    Ok(Flow::Exit)
}

pub(super) fn cli_sti(ctx: &mut JitContext, insn: &Instruction) -> Exec {
    check_iopl(ctx)?;
    if insn.mnemonic() == M::Cli {
        ctx.cpu.rflags &= !rflags::IF;
    } else if ctx.cpu.rflags & rflags::IF == 0 {
        ctx.cpu.rflags |= rflags::IF;
        // Interrupts stay blocked until after the next instruction (SDM Vol. 2B STI).
        ctx.cpu.interrupt_shadow = 1;
    }
    Ok(end_block_after(ctx, insn))
}

/// Read `size` bytes from an I/O port (all ones without buses).
pub(super) fn port_in(rt: &mut Runtime, port: u16, size: u32) -> u64 {
    let mut buf = [0xffu8; 8];
    if let Some(b) = rt.buses() {
        b.io_read(port, &mut buf[..size as usize]);
    }
    u64::from_le_bytes(buf) & mask(size)
}

/// Write `size` bytes to an I/O port; a device request ends the run.
pub(super) fn port_out(ctx: &mut JitContext, rt: &mut Runtime, port: u16, size: u32, v: u64) {
    let bytes = v.to_le_bytes();
    if rt
        .buses()
        .is_some_and(|b| b.io_write(port, &bytes[..size as usize]))
    {
        ctx.exit.exit_run = 1;
        ctx.exit.exit_block = 1;
    }
}

pub(super) fn in_out(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let (data_op, port_op) = if insn.mnemonic() == M::In {
        (0, 1)
    } else {
        (1, 0)
    };
    let port = match insn.op_kind(port_op) {
        OpKind::Immediate8 => u16::from(insn.immediate8()),
        _ => ctx.cpu.gpr[gpr::RDX] as u16,
    };
    let reg = insn.op_register(data_op);
    let size = reg.size() as u32;
    check_io_permission(ctx, rt, port, size)?;
    if insn.mnemonic() == M::In {
        let v = port_in(rt, port, size);
        reg_write(&mut ctx.cpu, reg, v);
    } else {
        let v = reg_read(&ctx.cpu, reg);
        port_out(ctx, rt, port, size, v);
    }
    Ok(Flow::Next)
}

/// CPUID feature bits reported in leaf 1 EDX (SDM Vol. 2A CPUID, Table 3-11): only what emu
/// implements: the x87 FPU (with FCMOVcc/FCOMI, which CMOV together with FPU advertises), the
/// local APIC (the machine's xAPIC, devices::lapic; the bit follows IA32_APIC_BASE[11], SDM
/// Vol. 3A 11.4.3); CLFSH/MMX/FXSR/SSE/SSE2 from `super::sse`.
pub const CPUID_1_EDX: u32 = CPUID_FPU
    | CPUID_PSE
    | CPUID_TSC
    | CPUID_MSR
    | CPUID_PAE
    | CPUID_CX8
    | CPUID_APIC
    | CPUID_SEP
    | CPUID_PGE
    | CPUID_CMOV
    | sse::cpuid_edx::ALL;
pub const CPUID_FPU: u32 = 1 << 0;
/// CPUID leaf 1 ECX (SDM Vol. 2A CPUID, Table 3-10): CMPXCHG16B, MOVBE, and SSE3..SSE4.2, POPCNT and
/// XSAVE from `super::sse`.
pub const CPUID_1_ECX: u32 = CPUID_CX16 | CPUID_MOVBE | sse::cpuid_ecx::ALL;
pub const CPUID_CX16: u32 = 1 << 13;
pub const CPUID_MOVBE: u32 = 1 << 22;
pub const CPUID_PSE: u32 = 1 << 3;
pub const CPUID_TSC: u32 = 1 << 4;
pub const CPUID_MSR: u32 = 1 << 5;
pub const CPUID_PAE: u32 = 1 << 6;
pub const CPUID_CX8: u32 = 1 << 8;
pub const CPUID_APIC: u32 = 1 << 9;
/// IA32_APIC_BASE[11], the APIC global enable (SDM Vol. 3A 11.4.4).
const APIC_BASE_ENABLE: u64 = 1 << 11;
/// SYSENTER/SYSEXIT.
pub const CPUID_SEP: u32 = 1 << 11;
pub const CPUID_PGE: u32 = 1 << 13;
pub const CPUID_CMOV: u32 = 1 << 15;
/// CPUID 80000001H EDX (SDM Vol. 2A CPUID, Table 3-8): SYSCALL/SYSRET, execute-disable,
/// Intel 64 (long mode).
pub const CPUID_EXT_EDX: u32 =
    CPUID_EXT_SYSCALL | CPUID_EXT_NX | CPUID_EXT_PAGE1GB | CPUID_EXT_RDTSCP | CPUID_EXT_LM;
/// 1 GiB pages in 4-level paging (SDM Vol. 3A 4.5).
pub const CPUID_EXT_PAGE1GB: u32 = 1 << 26;
/// CPUID leaf 7 subleaf 0 EBX (SDM Vol. 2A CPUID, Table 3-8): IA32_TSC_ADJUST, SMEP, SMAP (with
/// STAC/CLAC).
pub const CPUID_7_EBX: u32 = CPUID_7_TSC_ADJUST | CPUID_7_SMEP | CPUID_7_SMAP;
pub const CPUID_7_TSC_ADJUST: u32 = 1 << 1;
/// CPUID leaf 7 subleaf 0 EDX: IA32_ARCH_CAPABILITIES exists (SDM Vol. 2A CPUID, Table 3-8).
pub const CPUID_7_EDX: u32 = CPUID_7_ARCH_CAPABILITIES;
pub const CPUID_7_ARCH_CAPABILITIES: u32 = 1 << 29;
/// IA32_ARCH_CAPABILITIES (SDM Vol. 4 Table 2-2): the processor is not susceptible to rogue
/// data cache load (RDCL_NO, bit 0), speculative store bypass (SSB_NO, 4), microarchitectural
/// data sampling (MDS_NO, 5), machine checks on page-size changes (IF_PSCHANGE_MC_NO, 6), TSX
/// asynchronous abort (TAA_NO, 8), the MMIO stale-data leaks (SBDR_SSDP_NO, FBSDP_NO,
/// PSDP_NO: 13-15), branch history injection (BHI_NO, 20), post-barrier RSB predictions
/// (PBRSB_NO, 24), gather data sampling (GDS_NO, 26) and register file data sampling (RFDS_NO,
/// 27). All true of a CPU that executes nothing speculatively. Without them Linux takes an
/// Intel family-6 processor for one that leaks kernel memory: it isolates kernel page tables
/// (a CR3 switch, and so a flush of the JIT's TLB, on every kernel entry and exit) and clears
/// CPU buffers with VERW on every return to user mode.
pub const ARCH_CAPABILITIES: u64 = 1
    | 1 << 4
    | 1 << 5
    | 1 << 6
    | 1 << 8
    | 1 << 13
    | 1 << 14
    | 1 << 15
    | 1 << 20
    | 1 << 24
    | 1 << 26
    | 1 << 27;
pub const CPUID_7_SMEP: u32 = 1 << 7;
pub const CPUID_7_SMAP: u32 = 1 << 20;
pub const CPUID_EXT_SYSCALL: u32 = 1 << 11;
pub const CPUID_EXT_NX: u32 = 1 << 20;
pub const CPUID_EXT_RDTSCP: u32 = 1 << 27;
pub const CPUID_EXT_LM: u32 = 1 << 29;
/// CPUID 80000001H ECX: LAHF/SAHF in 64-bit mode.
pub const CPUID_EXT_ECX: u32 = CPUID_EXT_LAHF_LM;
pub const CPUID_EXT_LAHF_LM: u32 = 1 << 0;
/// CPUID 80000007H EDX[8]: the invariant TSC (SDM Vol. 3B 18.17.1), which `crate::tsc` is: it
/// counts host time at a constant rate in every state. With IA32_TSC_ADJUST beside it, Linux
/// trusts the TSC without its clocksource watchdog, which otherwise compares it with the jiffies
/// of a timer tick that arrives late or in bursts when the host is busy.
pub const CPUID_POWER_EDX: u32 = CPUID_POWER_INVARIANT_TSC;
pub const CPUID_POWER_INVARIANT_TSC: u32 = 1 << 8;
/// CPUID 80000008H EAX: linear-address bits << 8 | physical-address bits.
pub const CPUID_ADDRESS_SIZES: u32 = (crate::paging::LINEAR_BITS << 8) | crate::paging::MAXPHYADDR;
/// Family 6, model 6, stepping 3 (the signature `CpuState::reset` leaves in EDX).
pub const CPUID_SIGNATURE: u32 = 0x0000_0663;
pub const CPUID_VENDOR: &[u8; 12] = b"GenuineIntel";
pub const CPUID_BRAND: &str = "emu x86 JIT";
/// Leaf 0DH (XSAVE enumeration) is the highest basic leaf; leaves 2-0CH report zeros.
const CPUID_MAX_BASIC: u32 = 0xd;
const CPUID_MAX_EXTENDED: u32 = 0x8000_0008;

/// The four CPUID output registers for a leaf.
pub fn cpuid_leaf(leaf: u32) -> [u32; 4] {
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    match leaf {
        0 => [
            CPUID_MAX_BASIC,
            word(&CPUID_VENDOR[0..4]),
            word(&CPUID_VENDOR[8..12]),
            word(&CPUID_VENDOR[4..8]),
        ],
        1 => [
            CPUID_SIGNATURE,
            sse::CPUID_CLFLUSH_LINE,
            CPUID_1_ECX,
            CPUID_1_EDX,
        ],
        7 => [0, CPUID_7_EBX, 0, CPUID_7_EDX],
        0x8000_0000 => [CPUID_MAX_EXTENDED, 0, 0, 0],
        0x8000_0001 => [0, 0, CPUID_EXT_ECX, CPUID_EXT_EDX],
        0x8000_0007 => [0, 0, 0, CPUID_POWER_EDX],
        0x8000_0008 => [CPUID_ADDRESS_SIZES, 0, 0, 0],
        0x8000_0002..=0x8000_0004 => {
            let mut brand = [0u8; 48];
            brand[..CPUID_BRAND.len()].copy_from_slice(CPUID_BRAND.as_bytes());
            let base = (leaf - 0x8000_0002) as usize * 16;
            let b = &brand[base..base + 16];
            [
                word(&b[0..4]),
                word(&b[4..8]),
                word(&b[8..12]),
                word(&b[12..16]),
            ]
        }
        _ => [0; 4],
    }
}

/// The most the JIT's CPUID ever reports for (`leaf`, `subleaf`): what CPUID returns with
/// CR4.OSXSAVE set and the local APIC enabled. A KVM machine caps its guest's CPUID with this
/// (`accel::CpuidLimit`), so a guest sees the same processor on both backends.
pub fn cpuid_limit(leaf: u32, subleaf: u32) -> [u32; 4] {
    match leaf {
        1 => {
            let mut r = cpuid_leaf(1);
            r[2] |= sse::cpuid1_ecx(sse::CR4_OSXSAVE);
            r
        }
        0xd => sse::state::cpuid_leaf_d(subleaf),
        7 if subleaf != 0 => [0; 4],
        _ => cpuid_leaf(leaf),
    }
}

pub(super) fn cpuid(ctx: &mut JitContext) -> Exec {
    let leaf = ctx.cpu.gpr[gpr::RAX] as u32;
    let r = match leaf {
        1 => {
            let mut r = cpuid_leaf(1);
            // OSXSAVE follows CR4.OSXSAVE; APIC follows the APIC global enable.
            r[2] |= sse::cpuid1_ecx(ctx.cpu.cr4);
            if ctx.cpu.apic_base & APIC_BASE_ENABLE == 0 {
                r[3] &= !CPUID_APIC;
            }
            r
        }
        0xd => sse::state::cpuid_leaf_d(ctx.cpu.gpr[gpr::RCX] as u32),
        // Leaf 7 has one subleaf (EAX = 0 reports the highest).
        7 if ctx.cpu.gpr[gpr::RCX] as u32 != 0 => [0; 4],
        _ => cpuid_leaf(leaf),
    };
    for (reg, v) in [gpr::RAX, gpr::RBX, gpr::RCX, gpr::RDX].into_iter().zip(r) {
        ctx.cpu.gpr[reg] = u64::from(v);
    }
    Ok(Flow::Next)
}

/// RDTSC, and RDTSCP, which also loads ECX with IA32_TSC_AUX (SDM Vol. 2B).
pub(super) fn rdtsc(ctx: &mut JitContext, with_aux: bool) -> Exec {
    if ctx.cpu.cr4 & CR4_TSD != 0 && ctx.cpu.cpl() != 0 {
        return Err(Fault::gp(0));
    }
    let t = ctx.tsc();
    ctx.cpu.gpr[gpr::RAX] = t & 0xffff_ffff;
    ctx.cpu.gpr[gpr::RDX] = t >> 32;
    if with_aux {
        ctx.cpu.gpr[gpr::RCX] = ctx.cpu.tsc_aux & 0xffff_ffff;
    }
    Ok(Flow::Next)
}

/// MSR numbers (SDM Vol. 4, Table 2-2).
mod msr {
    /// IA32_PLATFORM_ID (read-only): the platform bits microcode loaders match; 0 here.
    pub const PLATFORM_ID: u32 = 0x17;
    pub const TSC: u32 = 0x10;
    pub const TSC_ADJUST: u32 = 0x3b;
    pub const ARCH_CAPABILITIES: u32 = 0x10a;
    pub const APIC_BASE: u32 = 0x1b;
    /// IA32_BIOS_SIGN_ID: the loaded microcode's revision in bits 63:32.
    pub const BIOS_SIGN_ID: u32 = 0x8b;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const MISC_ENABLE: u32 = 0x1a0;
    pub const PAT: u32 = 0x277;
    pub const EFER: u32 = 0xc000_0080;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SFMASK: u32 = 0xc000_0084;
    pub const FS_BASE: u32 = 0xc000_0100;
    pub const GS_BASE: u32 = 0xc000_0101;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    pub const TSC_AUX: u32 = 0xc000_0103;
}

/// The EFER bits software may write: SCE, LME, NXE (SDM Vol. 3A 2.2.1).
const EFER_WRITABLE: u64 = efer::SCE | efer::LME | efer::NXE;

pub(super) fn msr(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    require_cpl0(ctx)?;
    let index = ctx.cpu.gpr[gpr::RCX] as u32;
    let tsc = ctx.tsc();
    let c = &mut ctx.cpu;
    if insn.mnemonic() == M::Rdmsr {
        let v = match index {
            msr::TSC => tsc,
            msr::TSC_ADJUST => c.tsc_adjust,
            msr::ARCH_CAPABILITIES => ARCH_CAPABILITIES,
            msr::APIC_BASE => c.apic_base,
            // No microcode update is ever loaded: revision 0.
            msr::BIOS_SIGN_ID | msr::PLATFORM_ID => 0,
            msr::SYSENTER_CS => c.sysenter_cs,
            msr::SYSENTER_ESP => c.sysenter_esp,
            msr::SYSENTER_EIP => c.sysenter_eip,
            msr::MISC_ENABLE => c.misc_enable,
            msr::PAT => c.pat,
            msr::EFER => c.efer,
            msr::STAR => c.star,
            msr::LSTAR => c.lstar,
            msr::CSTAR => c.cstar,
            msr::SFMASK => c.sfmask,
            msr::FS_BASE => c.seg[SegmentIndex::Fs as usize].base,
            msr::GS_BASE => c.seg[SegmentIndex::Gs as usize].base,
            msr::KERNEL_GS_BASE => c.kernel_gs_base,
            msr::TSC_AUX => c.tsc_aux,
            _ => {
                // Guests probe MSRs with a #GP handler ready (Linux's rdmsr_safe, e.g. for
                // IA32_MCG_CAP): the #GP is the architectural answer, not an emulator gap.
                log::debug!("rdmsr of unknown MSR {index:#x}: #GP");
                return Err(Fault::gp(0));
            }
        };
        c.gpr[gpr::RAX] = v & 0xffff_ffff;
        c.gpr[gpr::RDX] = v >> 32;
        return Ok(Flow::Next);
    }
    let v = (c.gpr[gpr::RDX] & 0xffff_ffff) << 32 | (c.gpr[gpr::RAX] & 0xffff_ffff);
    // MSRs holding linear addresses take only canonical ones (SDM Vol. 4 Table 2-2, WRMSR).
    let address_msr = matches!(
        index,
        msr::LSTAR
            | msr::CSTAR
            | msr::FS_BASE
            | msr::GS_BASE
            | msr::KERNEL_GS_BASE
            | msr::SYSENTER_ESP
            | msr::SYSENTER_EIP
    );
    if address_msr && !crate::paging::is_canonical(v) {
        log::debug!("wrmsr {index:#x} <- non-canonical {v:#x}: #GP");
        return Err(Fault::gp(0));
    }
    // Writing the TSC adds the step to IA32_TSC_ADJUST; writing IA32_TSC_ADJUST steps the TSC
    // by the change (SDM Vol. 3B 18.17.3).
    if index == msr::TSC {
        ctx.cpu.tsc_adjust = ctx.cpu.tsc_adjust.wrapping_add(v.wrapping_sub(tsc));
        ctx.set_tsc(v);
        return Ok(Flow::Next);
    }
    if index == msr::TSC_ADJUST {
        let step = v.wrapping_sub(ctx.cpu.tsc_adjust);
        ctx.cpu.tsc_adjust = v;
        ctx.set_tsc(tsc.wrapping_add(step));
        return Ok(Flow::Next);
    }
    if index == msr::BIOS_SIGN_ID {
        // Software writes 0 here before CPUID to read the revision back (SDM Vol. 3A 10.11.7.1).
        return Ok(Flow::Next);
    }
    match index {
        msr::ARCH_CAPABILITIES | msr::PLATFORM_ID => {
            log::debug!("wrmsr {index:#x} <- {v:#x}: read-only MSR, #GP");
            return Err(Fault::gp(0));
        }
        msr::APIC_BASE => {
            // Bits 0-7, 9, 10 and those above MAXPHYADDR are reserved (SDM Vol. 3A 11.4.4;
            // x2APIC mode, bit 10, is not offered).
            if v & (0x6ff | !((1u64 << crate::paging::MAXPHYADDR) - 1)) != 0 {
                return Err(Fault::gp(0));
            }
            c.apic_base = v;
            // The local APIC device follows the MSR (global enable).
            if let Some(b) = rt.buses() {
                b.set_apic_base(v);
            }
        }
        msr::SYSENTER_CS => c.sysenter_cs = v,
        msr::SYSENTER_ESP => c.sysenter_esp = v,
        msr::SYSENTER_EIP => c.sysenter_eip = v,
        msr::MISC_ENABLE => c.misc_enable = v,
        msr::PAT => c.pat = v,
        msr::STAR => c.star = v,
        msr::LSTAR => c.lstar = v,
        msr::CSTAR => c.cstar = v,
        msr::SFMASK => c.sfmask = v & 0xffff_ffff,
        msr::FS_BASE => c.seg[SegmentIndex::Fs as usize].base = v,
        msr::GS_BASE => c.seg[SegmentIndex::Gs as usize].base = v,
        msr::KERNEL_GS_BASE => c.kernel_gs_base = v,
        msr::TSC_AUX => c.tsc_aux = v & 0xffff_ffff,
        msr::EFER => {
            // LMA is read-only; LME cannot change while paging is on (SDM Vol. 3A 10.8.5).
            let lme_changes = (v ^ c.efer) & efer::LME != 0;
            if v & !EFER_WRITABLE & !efer::LMA != 0 || (lme_changes && c.cr0 & cr0::PG != 0) {
                log::debug!("wrmsr EFER <- {v:#x} refused: #GP");
                return Err(Fault::gp(0));
            }
            c.efer = (v & EFER_WRITABLE) | (c.efer & efer::LMA);
            ctx.flush_tlb();
        }
        _ => {
            log::debug!("wrmsr {index:#x} <- {v:#x}: unknown MSR, #GP");
            return Err(Fault::gp(0));
        }
    }
    Ok(end_block_after(ctx, insn))
}

pub(super) fn descriptor_table(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    if insn.op_kind(0) != OpKind::Memory {
        return Err(Fault::ud());
    }
    let load = matches!(insn.mnemonic(), M::Lgdt | M::Lidt);
    if load {
        require_cpl0(ctx)?;
    }
    let op16 = matches!(
        insn.code(),
        Code::Lgdt_m1632_16 | Code::Lidt_m1632_16 | Code::Sgdt_m1632_16 | Code::Sidt_m1632_16
    );
    let base_size = if insn.memory_size().size() >= 10 {
        8
    } else {
        4
    };
    let la = mem_linear(ctx, insn);
    let base_la = mem_linear_plus(ctx, insn, 2);
    let gdt = matches!(insn.mnemonic(), M::Lgdt | M::Sgdt);
    if load {
        let limit = mem::read(ctx, rt, la, 2)? as u16;
        let mut base = mem::read(ctx, rt, base_la, base_size)?;
        if op16 {
            base &= 0x00ff_ffff;
        }
        // 64-bit mode loads a 64-bit base, which must be canonical (SDM Vol. 2A LGDT/LIDT).
        if base_size == 8 && !crate::paging::is_canonical(base) {
            return Err(Fault::gp(0));
        }
        let t = if gdt {
            &mut ctx.cpu.gdtr
        } else {
            &mut ctx.cpu.idtr
        };
        t.base = base;
        t.limit = limit;
        return Ok(end_block_after(ctx, insn));
    }
    let t = if gdt { ctx.cpu.gdtr } else { ctx.cpu.idtr };
    let base = if op16 { t.base & 0x00ff_ffff } else { t.base };
    // Translate both parts before storing either.
    mem::linear_to_phys(ctx, rt, la, mem::Access::Write)?;
    mem::linear_to_phys(ctx, rt, base_la, mem::Access::Write)?;
    mem::write(ctx, rt, la, 2, u64::from(t.limit))?;
    mem::write(ctx, rt, base_la, base_size, base)?;
    Ok(Flow::Next)
}

/// System descriptor types (SDM Vol. 3A 3.5, Table 3-2).
const SYS_LDT: u8 = 0x2;
const SYS_TSS16_AVAILABLE: u8 = 0x1;
const SYS_TSS32_AVAILABLE: u8 = 0x9;
const SYS_TSS_BUSY: u8 = 0x2;

pub(super) fn ldt_tr(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    if ctx.cpu.mode() == ExecMode::Real || ctx.cpu.mode() == ExecMode::Virtual8086 {
        return Err(Fault::ud());
    }
    match insn.mnemonic() {
        M::Sldt | M::Str => {
            let sel = if insn.mnemonic() == M::Sldt {
                ctx.cpu.ldtr.selector
            } else {
                ctx.cpu.tr.selector
            };
            let size = op_size(insn, 0, 2);
            write_op(ctx, rt, insn, 0, size, u64::from(sel))?;
            return Ok(Flow::Next);
        }
        _ => {}
    }
    require_cpl0(ctx)?;
    let size = op_size(insn, 0, 2);
    let sel = read_op(ctx, rt, insn, 0, size)? as u16;
    let err = segment::selector_error(sel);
    let null = sel & segment::SELECTOR_INDEX_MASK == 0;
    if insn.mnemonic() == M::Lldt && null {
        ctx.cpu.ldtr = Segment {
            selector: sel,
            ..Segment::default()
        };
        return Ok(end_block_after(ctx, insn));
    }
    if null || sel & segment::SELECTOR_TI != 0 {
        return Err(Fault::gp(err));
    }
    let mut d = segment::read_descriptor(ctx, rt, sel)?;
    let typ = d.typ();
    let ia32e = ctx.cpu.efer & efer::LMA != 0;
    let ok_type = if insn.mnemonic() == M::Lldt {
        typ == SYS_LDT
    } else {
        // IA-32e mode has only the 64-bit TSS (type 9); the 16-bit one is invalid there.
        typ == SYS_TSS32_AVAILABLE || (typ == SYS_TSS16_AVAILABLE && !ia32e)
    };
    if d.is_code_or_data() || !ok_type {
        return Err(Fault::gp(err));
    }
    if !d.present() {
        return Err(Fault::np(err));
    }
    let mut loaded = d.segment(sel);
    if ia32e {
        // System descriptors are 16 bytes in IA-32e mode: base bits 63:32 follow (SDM Vol. 3A
        // 8.2.3, Figure 8-4).
        let wrap = mem::system_mask(ctx);
        let upper = mem::read_system(ctx, rt, d.address.wrapping_add(8) & wrap, 4)?;
        loaded.base |= upper << 32;
    }
    if insn.mnemonic() == M::Lldt {
        ctx.cpu.ldtr = loaded;
    } else {
        d.high |= u32::from(SYS_TSS_BUSY) << 8;
        let wrap = mem::system_mask(ctx);
        mem::write_system(
            ctx,
            rt,
            d.address.wrapping_add(4) & wrap,
            4,
            u64::from(d.high),
        )?;
        ctx.cpu.tr = loaded;
        ctx.cpu.tr.attr |= u16::from(SYS_TSS_BUSY);
    }
    Ok(end_block_after(ctx, insn))
}

/// Install a new CR0 value; flush the TLB when paging-relevant bits change. Setting PG with
/// EFER.LME activates IA-32e mode and clearing it deactivates it (SDM Vol. 3A 10.8.5, with the
/// #GP conditions of MOV CR0 in Vol. 2B).
fn write_cr0(ctx: &mut JitContext, v: u64) -> Result<(), Fault> {
    if v >> 32 != 0 {
        return Err(Fault::gp(0));
    }
    if v & cr0::PG != 0 && v & cr0::PE == 0 {
        return Err(Fault::gp(0));
    }
    if v & cr0::NW != 0 && v & cr0::CD == 0 {
        return Err(Fault::gp(0));
    }
    let old = ctx.cpu.cr0;
    let enabling_paging = old & cr0::PG == 0 && v & cr0::PG != 0;
    let disabling_paging = old & cr0::PG != 0 && v & cr0::PG == 0;
    if enabling_paging && ctx.cpu.efer & efer::LME != 0 {
        if ctx.cpu.cr4 & mem::CR4_PAE == 0 || ctx.cpu.cs().long() {
            return Err(Fault::gp(0));
        }
        ctx.cpu.efer |= efer::LMA;
    }
    if disabling_paging && ctx.cpu.efer & efer::LMA != 0 {
        if ctx.cpu.mode() == ExecMode::Long64 {
            return Err(Fault::gp(0));
        }
        ctx.cpu.efer &= !efer::LMA;
    }
    ctx.cpu.cr0 = v | cr0::ET;
    if (old ^ ctx.cpu.cr0) & (cr0::PE | cr0::PG | cr0::WP) != 0 {
        ctx.flush_tlb();
    }
    Ok(())
}

/// Install a new CR4 value (SDM Vol. 2B MOV CR): PAE cannot be cleared in IA-32e mode; changes
/// of PAE, PSE or PGE flush the whole TLB, global pages included (SDM Vol. 3A 4.10.4.1).
fn write_cr4(ctx: &mut JitContext, v: u64) -> Result<(), Fault> {
    if v & !CR4_SUPPORTED != 0 {
        return Err(Fault::gp(0));
    }
    if ctx.cpu.efer & efer::LMA != 0 && v & mem::CR4_PAE == 0 {
        return Err(Fault::gp(0));
    }
    ctx.cpu.cr4 = v;
    ctx.flush_tlb();
    Ok(())
}

pub(super) fn msw(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    match insn.mnemonic() {
        M::Smsw => {
            let size = op_size(insn, 0, 2);
            let v = if insn.op_kind(0) == OpKind::Memory {
                ctx.cpu.cr0 & 0xffff
            } else {
                ctx.cpu.cr0
            };
            write_op(ctx, rt, insn, 0, size, v)?;
            Ok(Flow::Next)
        }
        M::Lmsw => {
            require_cpl0(ctx)?;
            let size = op_size(insn, 0, 2);
            let v = read_op(ctx, rt, insn, 0, size)? & 0xf;
            // LMSW sets PE but cannot clear it (SDM Vol. 2A LMSW).
            let new = (ctx.cpu.cr0 & !0xe) | v | (ctx.cpu.cr0 & cr0::PE);
            let ip_mask_before = ip_mask(ctx);
            write_cr0(ctx, new)?;
            ctx.cpu.rip = insn.next_ip() & ip_mask_before;
            Ok(Flow::Jump)
        }
        _ => {
            require_cpl0(ctx)?;
            ctx.cpu.cr0 &= !cr0::TS;
            Ok(Flow::Next)
        }
    }
}

/// The `CpuState::dr` slot of DR0-DR7 (DR4/DR5 alias DR6/DR7 while CR4.DE is clear).
fn dr_slot(ctx: &JitContext, n: usize) -> Result<usize, Fault> {
    match n {
        0..=3 => Ok(n),
        4 | 5 if ctx.cpu.cr4 & CR4_DE != 0 => Err(Fault::ud()),
        4 | 6 => Ok(4),
        5 | 7 => Ok(5),
        _ => Err(Fault::ud()),
    }
}

/// MOV to/from CR0, CR2, CR3, CR4, CR8 and DR0-DR7. CR8 is the local APIC's TPR[7:4] (SDM
/// Vol. 3A 11.8.6.1): where the machine has a local APIC, it holds the value.
pub(super) fn mov_control(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    r0: Register,
    r1: Register,
) -> Exec {
    require_cpl0(ctx)?;
    let width_mask = if ctx.cpu.mode() == ExecMode::Long64 {
        u64::MAX
    } else {
        0xffff_ffff
    };
    if r1.is_cr() || r1.is_dr() {
        let v = if r1.is_cr() {
            match r1 {
                Register::CR0 => ctx.cpu.cr0,
                Register::CR2 => ctx.cpu.cr2,
                Register::CR3 => ctx.cpu.cr3,
                Register::CR4 => ctx.cpu.cr4,
                Register::CR8 => {
                    if let Some(tpr) = rt.buses().and_then(|b| b.task_priority()) {
                        ctx.cpu.cr8 = u64::from(tpr >> 4);
                    }
                    ctx.cpu.cr8
                }
                _ => return Err(Fault::ud()),
            }
        } else {
            ctx.cpu.dr[dr_slot(ctx, r1.number())?]
        };
        reg_write(&mut ctx.cpu, r0, v & width_mask);
        return Ok(Flow::Next);
    }
    let v = reg_read(&ctx.cpu, r1) & width_mask;
    if r0.is_dr() {
        let slot = dr_slot(ctx, r0.number())?;
        ctx.cpu.dr[slot] = v;
        return Ok(Flow::Next);
    }
    let ip_mask_before = ip_mask(ctx);
    match r0 {
        Register::CR0 => write_cr0(ctx, v)?,
        Register::CR2 => ctx.cpu.cr2 = v,
        Register::CR3 => {
            // In IA-32e mode, bits above MAXPHYADDR are reserved (SDM Vol. 3A 4.5.2, no PCIDs).
            if ctx.cpu.efer & efer::LMA != 0 && v >> crate::paging::MAXPHYADDR != 0 {
                return Err(Fault::gp(0));
            }
            ctx.cpu.cr3 = v;
            ctx.flush_tlb_non_global();
        }
        Register::CR4 => write_cr4(ctx, v)?,
        Register::CR8 => {
            // Bits 63:4 are reserved (SDM Vol. 3A 2.5).
            if v >> 4 != 0 {
                return Err(Fault::gp(0));
            }
            ctx.cpu.cr8 = v;
            if let Some(b) = rt.buses() {
                b.set_task_priority((v as u8) << 4);
            }
        }
        _ => return Err(Fault::ud()),
    }
    ctx.cpu.rip = insn.next_ip() & ip_mask_before;
    Ok(Flow::Jump)
}

/// SWAPGS (SDM Vol. 2B): exchange GS.base with IA32_KERNEL_GS_BASE; 64-bit mode only, CPL 0.
pub(super) fn swapgs(ctx: &mut JitContext) -> Exec {
    if ctx.cpu.mode() != ExecMode::Long64 {
        return Err(Fault::ud());
    }
    require_cpl0(ctx)?;
    let gs = &mut ctx.cpu.seg[SegmentIndex::Gs as usize].base;
    std::mem::swap(gs, &mut ctx.cpu.kernel_gs_base);
    Ok(Flow::Next)
}

pub(super) fn invlpg(ctx: &mut JitContext, insn: &Instruction) -> Exec {
    require_cpl0(ctx)?;
    if insn.op_kind(0) != OpKind::Memory {
        return Err(Fault::ud());
    }
    let la = mem_linear(ctx, insn);
    mem::flush_tlb_page(ctx, la);
    Ok(end_block_after(ctx, insn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_reports_vendor_brand_and_only_implemented_features() {
        let l0 = cpuid_leaf(0);
        let mut vendor = Vec::new();
        for r in [l0[1], l0[3], l0[2]] {
            vendor.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&vendor, b"GenuineIntel");
        let l1 = cpuid_leaf(1);
        assert_eq!(l1[3] & 1, 1, "x87 FPU");
        // FPU, PSE, TSC, MSR, PAE, CX8, APIC, SEP, PGE, CMOV, CLFSH, MMX, FXSR, SSE, SSE2.
        assert_eq!(
            l1[3],
            1 | (1 << 3)
                | (1 << 4)
                | (1 << 5)
                | (1 << 6)
                | (1 << 8)
                | (1 << 9)
                | (1 << 11)
                | (1 << 13)
                | (1 << 15)
                | (1 << 19)
                | (1 << 23)
                | (1 << 24)
                | (1 << 25)
                | (1 << 26)
        );
        // SSE3, SSSE3, CX16, SSE4.1, SSE4.2, MOVBE, POPCNT, XSAVE; no OSXSAVE with CR4 clear.
        assert_eq!(
            l1[2],
            1 | (1 << 9) | (1 << 13) | (1 << 19) | (1 << 20) | (1 << 22) | (1 << 23) | (1 << 26)
        );
        assert_eq!(
            cpuid_leaf(0x8000_0001)[3],
            (1 << 11) | (1 << 20) | (1 << 26) | (1 << 27) | (1 << 29),
            "SYSCALL, NX, Page1GB, RDTSCP, LM"
        );
        assert_eq!(
            cpuid_leaf(7),
            [0, (1 << 1) | (1 << 7) | (1 << 20), 0, 1 << 29],
            "IA32_TSC_ADJUST, SMEP, SMAP; IA32_ARCH_CAPABILITIES"
        );
        assert_eq!(cpuid_leaf(0x8000_0007), [0, 0, 0, 1 << 8], "invariant TSC");
        assert_eq!(cpuid_leaf(0x8000_0001)[2], 1, "LAHF/SAHF in 64-bit mode");
        assert_eq!(cpuid_leaf(0x8000_0000)[0], 0x8000_0008);
        assert_eq!(cpuid_leaf(0x8000_0008)[0], 0x3028);
        let mut brand = Vec::new();
        for leaf in 0x8000_0002..=0x8000_0004 {
            for r in cpuid_leaf(leaf) {
                brand.extend_from_slice(&r.to_le_bytes());
            }
        }
        assert!(brand.starts_with(b"emu x86 JIT\0"));
    }
}
