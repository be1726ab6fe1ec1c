//! The hardware CPU: KVM through kvm-ioctls, behind the cargo feature `kvm` (on by default,
//! compiled only on x86-64 Linux hosts). It implements the same `vcpu::Vcpu` trait as the JIT,
//! over the same guest memory and device buses.
//!
//! The public surface is the same on every host and with every feature set, so the machine can
//! be written once:
//!
//! - [`kvm_available`] says whether `/dev/kvm` can be used, and if not, why;
//! - [`KvmVcpu`] is a vCPU of its own single-vCPU VM over a [`vcpu::GuestRam`];
//! - [`kvm_syscall_enters_ring_0`] says whether this KVM runs SYSCALL right (our build hosts'
//!   software KVM does not, and a vCPU there gives the guest up when it sets up SYSCALL).
//!
//! How fast this host's KVM really is (software-emulated or nested KVM can be far slower than
//! the JIT) is measured by the machine (`emu::calibrate`), with the same guest on both backends.
//!
//! Where the backend is not compiled in (another architecture or OS, or the feature off),
//! `kvm_available` returns [`AccelError::Unavailable`] and `KvmVcpu` is an
//! uninhabited type whose constructor returns the same error.

#[cfg(all(feature = "kvm", target_arch = "x86_64", target_os = "linux"))]
mod kvm;
#[cfg(all(feature = "kvm", target_arch = "x86_64", target_os = "linux"))]
pub use kvm::{kvm_available, kvm_syscall_enters_ring_0, KvmVcpu};

#[cfg(not(all(feature = "kvm", target_arch = "x86_64", target_os = "linux")))]
mod unavailable;
#[cfg(not(all(feature = "kvm", target_arch = "x86_64", target_os = "linux")))]
pub use unavailable::{kvm_available, kvm_syscall_enters_ring_0, KvmVcpu};

/// Another backend's CPUID, as `[EAX, EBX, ECX, EDX]` for (leaf, subleaf): the most it ever
/// reports (bits that follow control registers, like OSXSAVE, set). Given to
/// [`KvmVcpu::with_cpuid_limit`], it caps what KVM's guest sees.
pub type CpuidLimit = fn(u32, u32) -> [u32; 4];

/// Why KVM cannot be used, or what went wrong while setting it up.
#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    /// KVM cannot be used on this host or in this build; the text says why.
    #[error("KVM unavailable on this host: {0}")]
    Unavailable(String),
    /// A KVM ioctl (or a host call around it) failed.
    #[error("KVM {op} failed: {errno}")]
    Kvm {
        op: &'static str,
        errno: std::io::Error,
    },
    /// The guest memory layout cannot be given to KVM.
    #[error("guest memory cannot be mapped into KVM: {0}")]
    Layout(String),
    /// The initial CPU state was refused.
    #[error(transparent)]
    State(#[from] vcpu::VcpuError),
}
