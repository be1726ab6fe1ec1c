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

use crate::AccelError;

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

    /// Create vCPU 0 with the guest CPUID.
    pub fn create_vcpu(&self) -> Result<VcpuFd, AccelError> {
        let fd = self.vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        fd.set_cpuid2(&guest_cpuid(&self.kvm)?)
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

/// The CPUID the guest sees under KVM: what KVM supports on this host
/// (KVM_GET_SUPPORTED_CPUID), less x2APIC and the TSC-deadline timer. emu creates no in-kernel
/// irqchip: the local APIC is the machine's user-space xAPIC, whose page is MMIO that exits to
/// user space, and it has neither, as on the JIT. This is the one place to make KVM's CPUID
/// match the JIT's, so a guest moved between backends sees the same processor.
pub fn guest_cpuid(kvm: &Kvm) -> Result<CpuId, AccelError> {
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    for e in cpuid.as_mut_slice() {
        if e.function == 1 {
            e.ecx &= !(CPUID1_ECX_X2APIC | CPUID1_ECX_TSC_DEADLINE);
        }
    }
    Ok(cpuid)
}
