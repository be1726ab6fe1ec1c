//! The model-specific registers `CpuState` carries, by their architectural index (SDM Vol. 4,
//! Table 2-2 "IA-32 Architectural MSRs"), and their moves to and from `kvm_msrs`.
//!
//! EFER, FS_BASE, GS_BASE and IA32_APIC_BASE are MSRs too, but KVM carries them in `kvm_sregs`
//! (EFER, APIC base, segment bases) and they travel there.

use kvm_bindings::{kvm_msr_entry, Msrs};
use vcpu::CpuState;

pub const IA32_TIME_STAMP_COUNTER: u32 = 0x10;
pub const IA32_TSC_ADJUST: u32 = 0x3b;
pub const IA32_SYSENTER_CS: u32 = 0x174;
pub const IA32_SYSENTER_ESP: u32 = 0x175;
pub const IA32_SYSENTER_EIP: u32 = 0x176;
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
pub const IA32_PAT: u32 = 0x277;
pub const IA32_STAR: u32 = 0xc000_0081;
pub const IA32_LSTAR: u32 = 0xc000_0082;
pub const IA32_CSTAR: u32 = 0xc000_0083;
pub const IA32_FMASK: u32 = 0xc000_0084;
pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const IA32_TSC_AUX: u32 = 0xc000_0103;

/// Every MSR moved by [`to_entries`] / [`apply`], in a fixed order.
pub const CARRIED: [u32; 13] = [
    IA32_STAR,
    IA32_LSTAR,
    IA32_CSTAR,
    IA32_FMASK,
    IA32_KERNEL_GS_BASE,
    IA32_SYSENTER_CS,
    IA32_SYSENTER_ESP,
    IA32_SYSENTER_EIP,
    IA32_PAT,
    IA32_TIME_STAMP_COUNTER,
    IA32_TSC_AUX,
    IA32_TSC_ADJUST,
    IA32_MISC_ENABLE,
];

/// The field of `CpuState` that holds MSR `index`.
fn field(s: &mut CpuState, index: u32) -> Option<&mut u64> {
    Some(match index {
        IA32_STAR => &mut s.star,
        IA32_LSTAR => &mut s.lstar,
        IA32_CSTAR => &mut s.cstar,
        IA32_FMASK => &mut s.sfmask,
        IA32_KERNEL_GS_BASE => &mut s.kernel_gs_base,
        IA32_SYSENTER_CS => &mut s.sysenter_cs,
        IA32_SYSENTER_ESP => &mut s.sysenter_esp,
        IA32_SYSENTER_EIP => &mut s.sysenter_eip,
        IA32_PAT => &mut s.pat,
        IA32_TIME_STAMP_COUNTER => &mut s.tsc,
        IA32_TSC_AUX => &mut s.tsc_aux,
        IA32_TSC_ADJUST => &mut s.tsc_adjust,
        IA32_MISC_ENABLE => &mut s.misc_enable,
        _ => return None,
    })
}

/// The `kvm_msrs` list for `indices`, with values from `s` (all zero when `s` is `None`, for a
/// read).
pub fn to_entries(indices: &[u32], s: Option<&CpuState>) -> Msrs {
    let mut copy = s.copied();
    let entries: Vec<kvm_msr_entry> = indices
        .iter()
        .map(|&index| kvm_msr_entry {
            index,
            data: copy
                .as_mut()
                .and_then(|c| field(c, index).map(|v| *v))
                .unwrap_or(0),
            ..kvm_msr_entry::default()
        })
        .collect();
    Msrs::from_entries(&entries).expect("fewer MSRs than KVM_MAX_MSR_ENTRIES")
}

/// Store the values KVM returned into `s`.
pub fn apply(entries: &[kvm_msr_entry], s: &mut CpuState) {
    for e in entries {
        if let Some(v) = field(s, e.index) {
            *v = e.data;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_carried_msr_has_its_own_field() {
        let mut s = CpuState::reset();
        for (i, &index) in CARRIED.iter().enumerate() {
            *field(&mut s, index).unwrap() = 0x1000 + i as u64;
        }
        let msrs = to_entries(&CARRIED, Some(&s));
        let mut back = CpuState::reset();
        apply(msrs.as_slice(), &mut back);
        assert_eq!(back, s);
        assert!(to_entries(&CARRIED, None)
            .as_slice()
            .iter()
            .all(|e| e.data == 0));
    }
}
