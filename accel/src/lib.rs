//! The hardware CPU: KVM through kvm-ioctls, behind the cargo feature `kvm` (on by default,
//! compiled only on x86-64 Linux hosts). It implements the same `vcpu::Vcpu` trait as the JIT,
//! over the same guest memory and device buses.
