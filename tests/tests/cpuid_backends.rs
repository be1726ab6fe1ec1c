//! One processor on both backends: the CPUID a guest reads under KVM (as the machine builds the
//! KVM vCPU, `emu::machine::create_vcpu`) offers no feature the JIT lacks, and no hypervisor
//! signature, so a guest can move between backends at any point, and KVM's guest only uses
//! instructions the hybrid fallback can execute.
//!
//! Some KVMs do not answer every leaf from the table KVM_SET_CPUID2 gave them: this host's
//! software-emulated KVM reports its own leaves 01H, 07H and 0DH whatever the table says. A probe
//! with an all-zero table finds such words; they are reported and left out of the comparison.

use emu::cpuid_probe::{guest_cpuid, linux_extras, named_queries};
use emu::machine::{create_vcpu, Accel};
use vcpu::Vcpu;

/// (leaf, subleaf) pairs the guest asks for.
const QUERIES: [(u32, u32); 7] = [
    (1, 0),
    (7, 0),
    (7, 1),
    (0xd, 0),
    (0xd, 1),
    (0x8000_0001, 0),
    (0x4000_0000, 0),
];

/// The feature words compared: (index in QUERIES, register 0=EAX..3=EDX, name).
const FEATURE_WORDS: [(usize, usize, &str); 11] = [
    (0, 2, "CPUID.01H:ECX"),
    (0, 3, "CPUID.01H:EDX"),
    (1, 0, "CPUID.(07H,0):EAX"),
    (1, 1, "CPUID.(07H,0):EBX"),
    (1, 2, "CPUID.(07H,0):ECX"),
    (1, 3, "CPUID.(07H,0):EDX"),
    (2, 1, "CPUID.(07H,1):EBX"),
    (3, 0, "CPUID.(0DH,0):EAX (XCR0)"),
    (4, 0, "CPUID.(0DH,1):EAX (XSAVEOPT/XSAVEC/XSAVES)"),
    (5, 2, "CPUID.80000001H:ECX"),
    (5, 3, "CPUID.80000001H:EDX"),
];

/// The CPUID results the guest collected on `accel`, or under KVM with a CPUID table of zeros
/// when `accel` is `None`.
fn cpuid_on(accel: Option<Accel>) -> Vec<[u32; 4]> {
    guest_cpuid(&QUERIES, |ram, s| -> Result<Box<dyn Vcpu>, String> {
        match accel {
            Some(accel) => create_vcpu(accel, ram, s, None).map_err(|e| e.to_string()),
            None => accel::KvmVcpu::with_cpuid_limit(ram, s, |_, _| [0; 4])
                .map(|v| Box::new(v) as Box<dyn Vcpu>)
                .map_err(|e| e.to_string()),
        }
    })
    .unwrap_or_else(|e| panic!("{accel:?}: {e}"))
}

#[test]
fn kvm_offers_no_feature_the_jit_lacks() {
    if let Err(e) = accel::kvm_available() {
        println!("skipped: KVM is not usable here: {e}");
        return;
    }
    let kvm = cpuid_on(Some(Accel::Kvm));
    let jit = cpuid_on(Some(Accel::Jit));
    let zeroed = cpuid_on(None);
    let mut compared = 0;
    for (q, r, name) in FEATURE_WORDS {
        if zeroed[q][r] != 0 {
            println!(
                "{name}: this KVM ignores its CPUID table here (reads {:#010x} from an all-zero \
                 table); not compared",
                zeroed[q][r]
            );
            continue;
        }
        compared += 1;
        let extra = kvm[q][r] & !jit[q][r];
        assert_eq!(
            extra, 0,
            "{name}: KVM {:#010x}, JIT {:#010x}",
            kvm[q][r], jit[q][r]
        );
    }
    println!(
        "{compared} of {} feature words compared",
        FEATURE_WORDS.len()
    );
    // The essentials both must have (what a 64-bit kernel checks for).
    for (q, r, bit, name) in [(0, 3, 25, "SSE"), (0, 3, 26, "SSE2"), (5, 3, 29, "LM")] {
        assert_ne!(kvm[q][r] & (1 << bit), 0, "KVM lacks {name}");
    }
    // No hypervisor bit (CPUID.01H:ECX[31]) and no "KVMKVMKVM" signature: a guest that found
    // KVM would use kvmclock and other paravirtual MSRs the JIT does not have.
    if zeroed[0][2] & (1 << 31) == 0 {
        assert_eq!(kvm[0][2] & (1 << 31), 0, "the hypervisor bit is set");
    }
    let signature: Vec<u8> = kvm[6][1..].iter().flat_map(|r| r.to_le_bytes()).collect();
    assert_ne!(&signature, b"KVMKVMKVM\0\0\0", "KVM's signature is visible");
}

/// The Linux `clearcpuid=` mask a KVM boot adds (`emu::cpuid_probe`): empty for the JIT, whose
/// CPUID is its own limit, and on KVM exactly the extras in the words this KVM answers
/// from its own model (a KVM that honours its table needs none).
#[test]
fn the_linux_mask_names_only_what_kvm_shows_beyond_the_jit() {
    let queries = named_queries();
    let jit = guest_cpuid(&queries, |ram, s| create_vcpu(Accel::Jit, ram, s, None)).unwrap();
    let extras = linux_extras(&jit, jit::interp::cpuid_limit, &[]);
    assert!(
        extras.is_empty(),
        "the JIT exceeds its own limit: {extras:?}"
    );
    if let Err(e) = accel::kvm_available() {
        println!("skipped the KVM half: KVM is not usable here: {e}");
        return;
    }
    let kvm = guest_cpuid(&queries, |ram, s| create_vcpu(Accel::Kvm, ram, s, None)).unwrap();
    let extras = linux_extras(&kvm, jit::interp::cpuid_limit, &[]);
    let names: Vec<String> = extras.iter().map(|f| f.to_string()).collect();
    println!("this KVM's extras: {names:?}");
    let zeroed = guest_cpuid(&queries, |ram, s| {
        accel::KvmVcpu::with_cpuid_limit(ram, s, |_, _| [0; 4])
            .map(|v| Box::new(v) as Box<dyn Vcpu>)
    })
    .unwrap();
    if zeroed.iter().all(|r| r.iter().all(|&w| w == 0)) {
        assert!(
            names.is_empty(),
            "KVM honours its table, yet {names:?} are extra"
        );
    }
    // Whatever the host, the baseline features are never masked.
    for base in ["sse", "sse2", "lm", "fpu", "cx8", "apic", "tsc"] {
        assert!(
            !extras.iter().any(|f| f.name == base),
            "{base} would be masked"
        );
    }
}
