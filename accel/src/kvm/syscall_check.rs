//! Whether this host's KVM runs SYSCALL right, and what a vCPU does where it does not.
//!
//! The software-emulated KVM of our build hosts (kvm-pvm) runs SYSCALL from ring 3 without
//! loading CS and SS: the guest arrives at LSTAR with RCX, R11 and RFLAGS as the SDM says
//! (Vol. 2B, "SYSCALL") but still in ring 3, CS 0x33 and SS 0x2B. KVM runs the instruction
//! itself and exits for nothing, so the hybrid JIT fallback never sees it, and x86-64 Linux has
//! no other way into the kernel for 64-bit programs: init dies on its first system call when
//! the kernel's entry code faults at LSTAR from user mode. No exit can be arranged at a
//! system call either: this KVM ignores hardware breakpoints set with KVM_SET_GUEST_DEBUG,
//! runs SYSCALL even with EFER.SCE clear, and emulates IRETQ and SYSRET itself.
//!
//! So emu asks, once a process, with a few-instruction guest ([`probe_guest`]): ring 3 runs
//! SYSCALL, and the code at LSTAR writes a port in whatever ring it finds itself. Where the
//! answer is [`Verdict::Broken`], a vCPU asks KVM for an exit when the guest writes IA32_LSTAR
//! (KVM's MSR filter, KVM_X86_SET_MSR_FILTER), which a kernel does before it starts any user
//! program. At that exit KVM stores the value, completes the WRMSR and ends the run with
//! `VcpuError::Unsupported`, so that the machine can move the guest to a backend that runs
//! SYSCALL right (`emu::hybrid` moves it to the JIT).

use std::sync::OnceLock;

use kvm_bindings::KVM_MSR_EXIT_REASON_FILTER;
use kvm_ioctls::{Cap, MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VmFd};
use vcpu::state::{cr0, efer, rflags};
use vcpu::{CpuState, DescriptorTable, Segment, SegmentIndex};

use super::msr::IA32_LSTAR;

/// What this host's KVM does with SYSCALL from ring 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It enters ring 0 at LSTAR with CS and SS from IA32_STAR.
    Works,
    /// It jumps to LSTAR but leaves CS and SS (and so the privilege level) as they were.
    Broken,
    /// The probe could not tell (it failed, or its guest stopped elsewhere); nothing is done.
    Unknown,
}

/// The probe's verdict, found on first use.
pub fn verdict() -> Verdict {
    static VERDICT: OnceLock<Verdict> = OnceLock::new();
    *VERDICT.get_or_init(|| {
        let v = super::vcpu::KvmVcpu::probe_syscall();
        match v {
            Verdict::Broken => log::info!(
                "this KVM runs SYSCALL from ring 3 without entering ring 0 (it leaves CS and SS \
                 unchanged; probed with a test guest): 64-bit programs cannot run on it"
            ),
            Verdict::Works => log::debug!("this KVM's SYSCALL enters ring 0 (probed)"),
            Verdict::Unknown => {}
        }
        v
    })
}

/// The port the probe's LSTAR code writes (the POST-code port, claimed by nothing here).
pub const PROBE_PORT: u16 = 0x80;
/// Where the probe guest's pieces lie in its 64 KiB of memory (identity mapped).
const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
const USER_CODE: u64 = 0x4000;
const ENTRY: u64 = 0x5000;
pub const PROBE_MEMORY: u64 = 0x1_0000;
/// Page-table entry bits: present, writable, user, and PS for a 2 MiB page in a PD (SDM Vol.
/// 3A 4.5, Table 4-15 and 4-17).
const PTE_P_W_U: u64 = 0b111;
const PDE_PS: u64 = 1 << 7;
/// CR4.PAE (SDM Vol. 3A 2.5), required by IA-32e paging.
const CR4_PAE: u64 = 1 << 5;
/// IA32_STAR as Linux sets it: SYSRET's selector base 0x23 in [63:48], SYSCALL's CS 0x10 in
/// [47:32] (SDM Vol. 3A 5.8.8).
const PROBE_STAR: u64 = 0x0023_0010_0000_0000;
/// The kernel code selector SYSCALL must load from [`PROBE_STAR`].
pub const PROBE_KERNEL_CS: u16 = 0x10;
/// SYSCALL (0F 05); OUT imm8, AL (E6 ib); HLT (F4).
const SYSCALL: [u8; 2] = [0x0f, 0x05];
const OUT_80_AL_HLT: [u8; 3] = [0xe6, PROBE_PORT as u8, 0xf4];

/// The probe guest: its memory contents as (address, bytes) pieces and its starting state,
/// ring 3 of IA-32e mode at a SYSCALL, with IOPL 3 so that the port write at LSTAR works in
/// either ring. It needs no GDT or IDT: SYSCALL takes its selectors from IA32_STAR, and any
/// exception ends the run in a triple fault.
pub fn probe_guest() -> (Vec<(u64, Vec<u8>)>, CpuState) {
    let memory = vec![
        (PML4, (PDPT | PTE_P_W_U).to_le_bytes().to_vec()),
        (PDPT, (PD | PTE_P_W_U).to_le_bytes().to_vec()),
        (PD, (PDE_PS | PTE_P_W_U).to_le_bytes().to_vec()),
        (USER_CODE, SYSCALL.to_vec()),
        (ENTRY, OUT_80_AL_HLT.to_vec()),
    ];
    let mut s = CpuState::reset();
    let user = |selector: u16, typ: u16, long: u16| Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        attr: Segment::ATTR_P | Segment::ATTR_S | (3 << 5) | Segment::ATTR_G | long | typ,
    };
    // 64-bit ring-3 code (execute/read, accessed) and data (read/write, accessed).
    s.seg[SegmentIndex::Cs as usize] = user(0x33, 0xb, Segment::ATTR_L);
    for i in [
        SegmentIndex::Ss,
        SegmentIndex::Ds,
        SegmentIndex::Es,
        SegmentIndex::Fs,
        SegmentIndex::Gs,
    ] {
        s.seg[i as usize] = user(0x2b, 0x3, Segment::ATTR_DB);
    }
    s.tr = Segment {
        base: 0,
        limit: 0x67,
        selector: 0,
        // Present busy 64-bit TSS: VM entry wants one, the probe never uses it.
        attr: Segment::ATTR_P | 0xb,
    };
    s.gdtr = DescriptorTable { base: 0, limit: 0 };
    s.idtr = DescriptorTable { base: 0, limit: 0 };
    s.cr0 = cr0::PE | cr0::ET | cr0::NE | cr0::PG;
    s.cr3 = PML4;
    s.cr4 = CR4_PAE;
    s.efer = efer::SCE | efer::LME | efer::LMA;
    s.star = PROBE_STAR;
    s.lstar = ENTRY;
    s.sfmask = 0;
    s.rip = USER_CODE;
    s.rflags = rflags::FIXED1 | rflags::IOPL;
    (memory, s)
}

/// Judge the probe by CS where its port write exited.
pub fn judge_probe(cs_selector: u16, cs_dpl: u8) -> Verdict {
    match (cs_selector, cs_dpl) {
        (PROBE_KERNEL_CS, 0) => Verdict::Works,
        (_, 3) => Verdict::Broken,
        _ => Verdict::Unknown,
    }
}

/// Where SYSCALL is broken: make guest writes of IA32_LSTAR exit to user space (a 0 bit in a
/// write range denies the write; KVM API, KVM_X86_SET_MSR_FILTER). Returns whether it did.
pub fn filter_lstar_writes(vm: &VmFd) -> bool {
    if !vm.check_extension(Cap::X86UserSpaceMsr) || !vm.check_extension(Cap::X86MsrFilter) {
        log::warn!(
            "this KVM has no MSR filter: emu cannot stop the guest before its first SYSCALL"
        );
        return false;
    }
    let cap = kvm_bindings::kvm_enable_cap {
        cap: Cap::X86UserSpaceMsr as u32,
        args: [u64::from(KVM_MSR_EXIT_REASON_FILTER), 0, 0, 0],
        ..Default::default()
    };
    if let Err(e) = vm.enable_cap(&cap) {
        log::warn!("KVM_CAP_X86_USER_SPACE_MSR refused ({e}): SYSCALL stays broken");
        return false;
    }
    let deny = [0u8];
    let range = MsrFilterRange {
        flags: MsrFilterRangeFlags::WRITE,
        base: IA32_LSTAR,
        msr_count: 1,
        bitmap: &deny,
    };
    match vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &[range]) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("KVM_X86_SET_MSR_FILTER refused ({e}): SYSCALL stays broken");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_starts_in_ring_3_of_long_mode_at_a_syscall() {
        let (memory, s) = probe_guest();
        let cs = s.seg[SegmentIndex::Cs as usize];
        assert_eq!((cs.selector, cs.dpl()), (0x33, 3));
        assert!(cs.attr & Segment::ATTR_L != 0);
        assert_eq!(s.seg[SegmentIndex::Ss as usize].dpl(), 3);
        assert_eq!(s.efer & (efer::LMA | efer::SCE), efer::LMA | efer::SCE);
        assert_eq!(s.rflags & rflags::IOPL, rflags::IOPL);
        let at = |addr| {
            memory
                .iter()
                .find(|(a, _)| *a == addr)
                .map(|(_, b)| b.clone())
        };
        assert_eq!(at(s.rip), Some(SYSCALL.to_vec()));
        assert_eq!(at(s.lstar), Some(OUT_80_AL_HLT.to_vec()));
        // SYSCALL's CS is STAR[47:32].
        assert_eq!((s.star >> 32) as u16 & 0xfffc, PROBE_KERNEL_CS);
        // The three table levels map the first 2 MiB, user-accessible.
        assert_eq!(at(s.cr3), Some((PDPT | 7).to_le_bytes().to_vec()));
        assert_eq!(at(PD), Some((0x87u64).to_le_bytes().to_vec()));
        assert!(memory
            .iter()
            .all(|(a, b)| a + b.len() as u64 <= PROBE_MEMORY));
    }

    #[test]
    fn the_probe_is_judged_by_the_ring_it_reached() {
        assert_eq!(judge_probe(0x10, 0), Verdict::Works);
        assert_eq!(judge_probe(0x33, 3), Verdict::Broken);
        assert_eq!(judge_probe(0x08, 0), Verdict::Unknown);
    }
}
