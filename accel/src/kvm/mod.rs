//! The KVM backend proper (x86-64 Linux with the `kvm` feature).

mod convert;
mod kick;
mod msr;
mod syscall_check;
mod vcpu;
mod vm;

#[cfg(test)]
mod tests;

pub use vcpu::KvmVcpu;

use crate::AccelError;

/// Whether KVM can be used here: `/dev/kvm` opens, speaks API version 12, and a VM can be
/// created. `Err` explains why not.
pub fn kvm_available() -> Result<(), AccelError> {
    let kvm = vm::open_kvm()?;
    kvm.create_vm()
        .map_err(|e| AccelError::Unavailable(format!("/dev/kvm cannot create a VM: {e}")))?;
    Ok(())
}

/// Whether this host's KVM runs SYSCALL from ring 3 into ring 0 as the SDM says (probed once
/// with a small guest, see `syscall_check`); `None` when the probe could not tell. Where it
/// does not, a vCPU ends its run with `VcpuError::Unsupported` when the guest sets IA32_LSTAR.
pub fn kvm_syscall_enters_ring_0() -> Option<bool> {
    match syscall_check::verdict() {
        syscall_check::Verdict::Works => Some(true),
        syscall_check::Verdict::Broken => Some(false),
        syscall_check::Verdict::Unknown => None,
    }
}
