//! The KVM backend proper (x86-64 Linux with the `kvm` feature).

mod convert;
mod kick;
mod msr;
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
