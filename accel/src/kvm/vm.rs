//! One KVM virtual machine over a [`GuestRam`]: every region registered as a user memory slot,
//! the real-mode helper pages placed where QEMU puts them, no in-kernel irqchip (emu's interrupt
//! controllers live in user space, so a backend switch never translates in-kernel state), and
//! the guest CPUID.
//!
//! ROM is not given to KVM as a read-only slot (KVM_MEM_READONLY). KVM's instruction emulator
//! cannot complete a write to such a slot that it makes on the guest's behalf (setting the
//! accessed bit of a descriptor loaded from a GDT in ROM, SDM Vol. 3A 3.4.5.1): it re-executes
//! the instruction forever, without an exit. Test ROMs and firmware keep their GDT in ROM, so
//! each ROM region is instead backed for KVM by a private writable copy ([`RomCopy`]): guest
//! writes land in the copy and never reach the shared `GuestRam`, which keeps the pristine image
//! the JIT and snapshots see. The one difference from the JIT: under KVM the guest reads back
//! its own writes to ROM (an accessed bit set in a ROM descriptor, for instance).

use kvm_bindings::{kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use vcpu::{GuestRam, RegionKind};

use crate::{AccelError, CpuidLimit};

/// The KVM API version this code speaks (KVM_GET_API_VERSION, Documentation/virt/kvm/api.rst 4.1).
pub const KVM_API_VERSION: i32 = 12;

/// The one-page identity-mapped page table KVM needs to run real mode and unpaged protected
/// mode on VMX without unrestricted guest (KVM_SET_IDENTITY_MAP_ADDR). QEMU's address: just
/// below the 16 MiB BIOS window at the top of 4 GiB.
pub const IDENTITY_MAP_ADDR: u64 = 0xfeff_c000;
/// The three pages of TSS KVM uses for the same purpose (KVM_SET_TSS_ADDR), right after it.
pub const TSS_ADDR: u64 = IDENTITY_MAP_ADDR + 0x1000;
/// The identity map page plus the three TSS pages.
const HELPER_PAGES_END: u64 = TSS_ADDR + 3 * 0x1000;

pub fn kvm_err(op: &'static str) -> impl FnOnce(vmm_sys_util::errno::Error) -> AccelError {
    move |e| AccelError::Kvm {
        op,
        errno: std::io::Error::from_raw_os_error(e.errno()),
    }
}

/// Open `/dev/kvm` and check the API version.
pub fn open_kvm() -> Result<Kvm, AccelError> {
    let kvm =
        Kvm::new().map_err(|e| AccelError::Unavailable(format!("cannot open /dev/kvm: {e}")))?;
    let version = kvm.get_api_version();
    if version != KVM_API_VERSION {
        return Err(AccelError::Unavailable(format!(
            "/dev/kvm speaks API version {version}, emu needs {KVM_API_VERSION}"
        )));
    }
    Ok(kvm)
}

/// A private, writable copy of one ROM region, mapped for KVM only.
pub struct RomCopy {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by this struct alone; the pointer is only handed to KVM.
unsafe impl Send for RomCopy {}

impl RomCopy {
    /// Map `len` bytes and copy the ROM at `src` into them.
    fn new(src: *const u8, len: usize) -> Result<Self, AccelError> {
        // SAFETY: an anonymous private mapping with no address hint has no preconditions.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(AccelError::Layout(format!(
                "cannot map a {len:#x}-byte copy of ROM: {}",
                std::io::Error::last_os_error()
            )));
        }
        let ptr = ptr.cast::<u8>();
        // SAFETY: `src` points at `len` readable bytes of the GuestRam ROM region (the caller
        // took both from `GuestRam::host_ptr`), `ptr` at `len` fresh writable bytes; they cannot
        // overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, ptr, len) };
        Ok(Self { ptr, len })
    }
}

impl Drop for RomCopy {
    fn drop(&mut self) {
        // SAFETY: `ptr..ptr+len` is the mapping made in `new`, unmapped exactly once, after the
        // VM (whose slot points into it) is gone: `KvmVm` drops its fds before its copies.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A VM holding one memory layout. Keeps a clone of the [`GuestRam`] (and the ROM copies) so the
/// host mappings KVM points into live as long as the VM. Field order matters: the VM fd is
/// dropped before the mappings.
pub struct KvmVm {
    vm: VmFd,
    kvm: Kvm,
    _rom_copies: Vec<RomCopy>,
    ram: GuestRam,
}

impl KvmVm {
    pub fn new(ram: &GuestRam) -> Result<Self, AccelError> {
        let kvm = open_kvm()?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        if let Some(r) = ram
            .regions()
            .iter()
            .find(|r| r.base < HELPER_PAGES_END && IDENTITY_MAP_ADDR < r.end())
        {
            return Err(AccelError::Layout(format!(
                "region {:#x}+{:#x} overlaps KVM's real-mode pages at {IDENTITY_MAP_ADDR:#x}..{HELPER_PAGES_END:#x}",
                r.base, r.size
            )));
        }
        if vm.check_extension(Cap::SetIdentityMapAddr) {
            vm.set_identity_map_address(IDENTITY_MAP_ADDR)
                .map_err(kvm_err("KVM_SET_IDENTITY_MAP_ADDR"))?;
        }
        vm.set_tss_address(TSS_ADDR as usize)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        let mut rom_copies = Vec::new();
        for (slot, r) in ram.regions().iter().enumerate() {
            let (host, len, _) = ram.host_ptr(r.base).ok_or_else(|| {
                AccelError::Layout(format!("region at {:#x} is unmapped", r.base))
            })?;
            let host = match r.kind {
                RegionKind::Ram => host,
                RegionKind::Rom => {
                    let size = usize::try_from(len)
                        .map_err(|_| AccelError::Layout("ROM larger than the host".into()))?;
                    let copy = RomCopy::new(host, size)?;
                    let ptr = copy.ptr;
                    rom_copies.push(copy);
                    ptr
                }
            };
            let region = kvm_userspace_memory_region {
                slot: u32::try_from(slot)
                    .map_err(|_| AccelError::Layout("too many regions".into()))?,
                flags: 0,
                guest_phys_addr: r.base,
                memory_size: len,
                userspace_addr: host as u64,
            };
            // SAFETY: `host..host+len` is one mapping owned by `ram`'s vm-memory region or by a
            // `RomCopy`; the clone of `ram` and the copies kept in `self` keep it mapped for as
            // long as the VM (and so the slot) exists, and no other slot covers it.
            unsafe { vm.set_user_memory_region(region) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(Self {
            vm,
            kvm,
            _rom_copies: rom_copies,
            ram: ram.clone(),
        })
    }

    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    pub fn vm_fd(&self) -> &VmFd {
        &self.vm
    }

    /// Create vCPU 0 with the guest CPUID, limited by `limit` when given.
    pub fn create_vcpu(&self, limit: Option<CpuidLimit>) -> Result<VcpuFd, AccelError> {
        let fd = self.vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        fd.set_cpuid2(&guest_cpuid(&self.kvm, limit)?)
            .map_err(kvm_err("KVM_SET_CPUID2"))?;
        Ok(fd)
    }

    /// Whether KVM carries XCR0 (KVM_GET/SET_XCRS).
    pub fn has_xcrs(&self) -> bool {
        self.vm.check_extension(Cap::Xcrs)
    }

    /// Whether KVM_GET/SET_XSAVE can carry the FPU/SSE state: the capability exists and the
    /// host's XSAVE area fits the 4096-byte `kvm_xsave` (KVM_CAP_XSAVE2 reports the size, or 0
    /// on kernels before 5.17, where it always fits).
    pub fn has_xsave(&self) -> bool {
        self.vm.check_extension(Cap::Xsave)
            && usize::try_from(self.vm.check_extension_int(Cap::Xsave2))
                .is_ok_and(|size| size <= std::mem::size_of::<kvm_bindings::kvm_xsave>())
    }

    /// Whether KVM honours `kvm_run.immediate_exit`.
    pub fn has_immediate_exit(&self) -> bool {
        self.vm.check_extension(Cap::ImmediateExit)
    }
}

/// CPUID leaf 1 feature bits for local-APIC features emu does not emulate (SDM Vol. 2A,
/// CPUID, Table 3-10): ECX.x2APIC (21), ECX.TSC-Deadline (24). EDX.APIC (9) stays: the
/// machine's user-space xAPIC (devices::lapic) answers at 0xFEE00000.
const CPUID1_ECX_X2APIC: u32 = 1 << 21;
const CPUID1_ECX_TSC_DEADLINE: u32 = 1 << 24;

/// Register indices in a CPUID result.
const EAX: usize = 0;
const EBX: usize = 1;
const ECX: usize = 2;
const EDX: usize = 3;

/// The CPUID words that are feature bits (SDM Vol. 2A, CPUID): each is ANDed with the limit's.
/// Leaf 0DH subleaf 0 EAX/EDX are the XCR0 bits XSETBV accepts, subleaf 1 EAX XSAVEOPT,
/// XSAVEC, XGETBV1 and XSAVES; leaf 07H subleaf 0 EAX is the highest subleaf.
const FEATURE_WORDS: [(u32, u32, usize); 11] = [
    (1, 0, ECX),
    (1, 0, EDX),
    (7, 0, EAX),
    (7, 0, EBX),
    (7, 0, ECX),
    (7, 0, EDX),
    (0xd, 0, EAX),
    (0xd, 0, EDX),
    (0xd, 1, EAX),
    (0x8000_0001, 0, ECX),
    (0x8000_0001, 0, EDX),
];
/// Leaf 0AH: the architectural performance-monitoring unit.
const LEAF_PMU: u32 = 0xa;
/// Leaf 0DH, the XSAVE state components.
const LEAF_XSAVE: u32 = 0xd;
/// The hypervisor leaves (KVM's signature and paravirtual features: kvmclock, PV EOI...).
const LEAVES_HYPERVISOR: std::ops::RangeInclusive<u32> = 0x4000_0000..=0x4000_00ff;

/// The CPUID the guest sees under KVM: what KVM supports on this host
/// (KVM_GET_SUPPORTED_CPUID), less x2APIC and the TSC-deadline timer. emu creates no in-kernel
/// irqchip: the local APIC is the machine's user-space xAPIC, whose page is MMIO that exits to
/// user space, and it has neither, as on the JIT.
///
/// With a `limit` (the JIT's CPUID), the guest sees one processor on either backend, so it can
/// move between them at any point: every feature word is ANDed with the limit's, leaf 07H
/// keeps only the subleaves the limit reports, XSAVE components the limit lacks vanish from leaf
/// 0DH (whose maximum area size becomes the limit's), and there is no PMU and no hypervisor
/// signature (a guest that found KVM would use kvmclock and other paravirtual MSRs the JIT does
/// not have). It also keeps KVM's guest to instructions the hybrid fallback can execute where
/// KVM cannot (a software-emulated KVM failing on XRSTORS, say).
pub fn guest_cpuid(kvm: &Kvm, limit: Option<CpuidLimit>) -> Result<CpuId, AccelError> {
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    for e in cpuid.as_mut_slice() {
        if e.function == 1 {
            e.ecx &= !(CPUID1_ECX_X2APIC | CPUID1_ECX_TSC_DEADLINE);
        }
        if let Some(limit) = limit {
            let mut regs = [e.eax, e.ebx, e.ecx, e.edx];
            limit_entry(e.function, e.index, &mut regs, limit);
            [e.eax, e.ebx, e.ecx, e.edx] = regs;
        }
    }
    Ok(cpuid)
}

/// Apply `limit` to the CPUID entry (`leaf`, `subleaf`) holding `regs`.
fn limit_entry(leaf: u32, subleaf: u32, regs: &mut [u32; 4], limit: CpuidLimit) {
    if leaf == LEAF_PMU || LEAVES_HYPERVISOR.contains(&leaf) {
        *regs = [0; 4];
        return;
    }
    let allowed = limit(leaf, subleaf);
    for &(l, sub, r) in &FEATURE_WORDS {
        if l == leaf && (sub == subleaf || !indexed(leaf)) {
            regs[r] &= allowed[r];
        }
    }
    match leaf {
        // Subleaves past the limit's highest.
        7 if subleaf > limit(7, 0)[EAX] => *regs = [0; 4],
        LEAF_XSAVE if subleaf == 0 => regs[ECX] = allowed[ECX],
        // Components 2-62: one subleaf each, gone when the limit's XCR0 lacks the bit.
        LEAF_XSAVE if (2..63).contains(&subleaf) => {
            let xcr0 = limit(LEAF_XSAVE, 0);
            let bits = u64::from(xcr0[EAX]) | u64::from(xcr0[EDX]) << 32;
            if bits & (1 << subleaf) == 0 {
                *regs = [0; 4];
            }
        }
        _ => {}
    }
}

/// Whether `leaf` has subleaves (ECX selects one), among the leaves [`FEATURE_WORDS`] names.
fn indexed(leaf: u32) -> bool {
    matches!(leaf, 7 | LEAF_XSAVE)
}

#[cfg(test)]
mod cpuid_limit_tests {
    use super::*;

    /// A made-up backend: SSE2 and CX16 in leaf 1, SMEP in leaf 7, x87+SSE XSAVE, LM.
    fn small(leaf: u32, subleaf: u32) -> [u32; 4] {
        match (leaf, subleaf) {
            (1, _) => [0x663, 0x800, 1 << 13, 1 << 26],
            (7, 0) => [0, 1 << 7, 0, 0],
            (0xd, 0) => [0x3, 0x240, 0x240, 0],
            (0x8000_0001, _) => [0, 0, 0, 1 << 29],
            _ => [0; 4],
        }
    }

    fn limited(leaf: u32, subleaf: u32, regs: [u32; 4]) -> [u32; 4] {
        let mut r = regs;
        limit_entry(leaf, subleaf, &mut r, small);
        r
    }

    #[test]
    fn feature_words_are_anded_and_the_rest_kept() {
        // Signature and EBX (APIC id, CLFLUSH size) are KVM's; features are the intersection.
        assert_eq!(
            limited(1, 0, [0xa00f11, 0x20800, 0xffff_ffff, 0xffff_ffff]),
            [0xa00f11, 0x20800, 1 << 13, 1 << 26]
        );
        assert_eq!(
            limited(0x8000_0001, 0, [0xa00f11, 0, 0xffff, 0xffff_ffff]),
            [0xa00f11, 0, 0, 1 << 29]
        );
        // Informational leaves pass unchanged.
        let cache = [0xff40ff40, 0xff40ff40, 0x20080140, 0x20080140];
        assert_eq!(limited(0x8000_0005, 0, cache), cache);
    }

    #[test]
    fn leaf_7_keeps_only_the_limits_subleaves_and_bits() {
        assert_eq!(
            limited(7, 0, [1, u32::MAX, u32::MAX, u32::MAX]),
            [0, 1 << 7, 0, 0]
        );
        assert_eq!(limited(7, 1, [0, u32::MAX, 0, 0]), [0; 4]);
    }

    #[test]
    fn xsave_components_the_limit_lacks_vanish() {
        // XCR0 x87|SSE|AVX|PKRU down to x87|SSE; the area's maximum size is the limit's.
        assert_eq!(
            limited(0xd, 0, [0x207, 0x988, 0x988, 0]),
            [0x3, 0x988, 0x240, 0]
        );
        // No XSAVEOPT/XSAVEC/XGETBV1/XSAVES, no AVX component (2), no PKRU (9).
        assert_eq!(limited(0xd, 1, [0xf, 0, 0, 0]), [0; 4]);
        assert_eq!(limited(0xd, 2, [0x100, 0x240, 0, 0]), [0; 4]);
        assert_eq!(limited(0xd, 9, [0x8, 0xa80, 0, 0]), [0; 4]);
    }

    #[test]
    fn no_pmu_and_no_hypervisor_leaves() {
        assert_eq!(limited(0xa, 0, [0x0704_3002, 0, 0, 0x603]), [0; 4]);
        let kvm_signature = [0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d];
        assert_eq!(limited(0x4000_0000, 0, kvm_signature), [0; 4]);
        assert_eq!(limited(0x4000_0001, 0, [0x0100_7afb, 0, 0, 0]), [0; 4]);
    }
}
