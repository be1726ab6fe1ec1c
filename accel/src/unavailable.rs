//! The accel API where the KVM backend is not compiled in (a host other than x86-64 Linux, or
//! the `kvm` feature turned off): every entry point says so through
//! [`AccelError::Unavailable`], and [`KvmVcpu`] has no values.

use vcpu::{Buses, CpuState, GuestRam, Kicker, Vcpu, VcpuError, VmExit};

use crate::{AccelError, CpuidLimit};

fn reason() -> AccelError {
    if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        AccelError::Unavailable("emu was built without the `kvm` cargo feature".into())
    } else {
        AccelError::Unavailable(format!(
            "the KVM backend needs an x86-64 Linux host, this is {}-{}",
            std::env::consts::ARCH,
            std::env::consts::OS
        ))
    }
}

/// Always `Err`: the reason KVM is not part of this build.
pub fn kvm_available() -> Result<(), AccelError> {
    Err(reason())
}

/// Always `None`: there is no KVM to ask.
pub fn kvm_syscall_enters_ring_0() -> Option<bool> {
    None
}

/// A KVM vCPU cannot exist in this build: the type has no values.
#[derive(Debug)]
pub enum KvmVcpu {}

impl KvmVcpu {
    /// Always `Err` with the reason KVM is not part of this build.
    pub fn new(_ram: &GuestRam, _initial: &CpuState) -> Result<KvmVcpu, AccelError> {
        Err(reason())
    }

    /// Always `Err` with the reason KVM is not part of this build.
    pub fn with_cpuid_limit(
        _ram: &GuestRam,
        _initial: &CpuState,
        _limit: CpuidLimit,
    ) -> Result<KvmVcpu, AccelError> {
        Err(reason())
    }

    /// Unreachable: there is no vCPU to give the kicker to.
    pub fn share_kicker(&mut self, _kicker: Kicker) {
        match *self {}
    }
}

impl Vcpu for KvmVcpu {
    fn backend_name(&self) -> &'static str {
        match *self {}
    }
    fn run(&mut self, _buses: &mut Buses) -> Result<VmExit, VcpuError> {
        match *self {}
    }
    fn state(&mut self) -> Result<CpuState, VcpuError> {
        match *self {}
    }
    fn set_state(&mut self, _state: &CpuState) -> Result<(), VcpuError> {
        match *self {}
    }
    fn kicker(&self) -> Kicker {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_point_explains_why() {
        assert!(matches!(kvm_available(), Err(AccelError::Unavailable(_))));
        let ram = GuestRam::new(&[vcpu::RegionSpec {
            base: 0,
            size: 0x1000,
            kind: vcpu::RegionKind::Ram,
        }])
        .unwrap();
        let err = KvmVcpu::new(&ram, &CpuState::reset()).unwrap_err();
        assert!(err.to_string().contains("KVM unavailable"), "{err}");
    }
}
