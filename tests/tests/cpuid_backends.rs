//! One processor on both backends: the CPUID a guest reads under KVM (as the machine builds the
//! KVM vCPU, `emu::machine::create_vcpu`) offers no feature the JIT lacks, and no hypervisor
//! signature, so a guest can move between backends at any point, and KVM's guest only uses
//! instructions the hybrid fallback can execute.
//!
//! Some KVMs do not answer every leaf from the table KVM_SET_CPUID2 gave them: this host's
//! software-emulated KVM reports its own leaves 01H, 07H and 0DH whatever the table says. A probe
//! with an all-zero table finds such words; they are reported and left out of the comparison.

use devices::Buses;
use emu::boot_gdt::FlatGdt;
use emu::machine::{create_vcpu, Accel};
use vcpu::state::cr0;
use vcpu::{CpuState, GuestRam, RegionKind, RegionSpec, Vcpu, VmExit};

const CODE: u64 = 0x1000;
const TABLE: u64 = 0x2000;
const OUT: u64 = 0x3000;

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

/// mov esi, TABLE; mov edi, OUT; mov ebp, N;
/// l: mov eax, [esi]; mov ecx, [esi+4]; cpuid; mov [edi], eax; mov [edi+4], ebx;
///    mov [edi+8], ecx; mov [edi+12], edx; add esi, 8; add edi, 16; dec ebp; jnz l; hlt.
fn program() -> Vec<u8> {
    let mut code = vec![0xbe];
    code.extend_from_slice(&(TABLE as u32).to_le_bytes());
    code.push(0xbf);
    code.extend_from_slice(&(OUT as u32).to_le_bytes());
    code.push(0xbd);
    code.extend_from_slice(&(QUERIES.len() as u32).to_le_bytes());
    let body: &[u8] = &[
        0x8b, 0x06, 0x8b, 0x4e, 0x04, 0x0f, 0xa2, 0x89, 0x07, 0x89, 0x5f, 0x04, 0x89, 0x4f, 0x08,
        0x89, 0x57, 0x0c, 0x83, 0xc6, 0x08, 0x83, 0xc7, 0x10, 0x4d,
    ];
    code.extend_from_slice(body);
    code.push(0x75);
    code.push((-(body.len() as i8 + 2)) as u8);
    code.push(0xf4);
    code
}

/// The CPUID results the guest collected on `accel`, or under KVM with a CPUID table of zeros
/// when `accel` is `None`.
fn cpuid_on(accel: Option<Accel>) -> Vec<[u32; 4]> {
    let ram = GuestRam::new(&[RegionSpec {
        base: 0,
        size: 1 << 20,
        kind: RegionKind::Ram,
    }])
    .unwrap();
    ram.write_host(CODE, &program()).unwrap();
    let table: Vec<u8> = QUERIES
        .iter()
        .flat_map(|&(l, s)| [l.to_le_bytes(), s.to_le_bytes()].concat())
        .collect();
    ram.write_host(TABLE, &table).unwrap();
    let gdt = FlatGdt {
        base: 0x500,
        code_selector: 0x08,
        data_selector: 0x10,
        long: false,
    };
    gdt.write(&ram).unwrap();
    let mut s: CpuState = gdt.cpu_state();
    s.cr0 |= cr0::PE;
    s.rip = CODE;
    let mut v: Box<dyn Vcpu> = match accel {
        Some(accel) => create_vcpu(accel, &ram, &s, None).expect("vcpu"),
        None => Box::new(accel::KvmVcpu::with_cpuid_limit(&ram, &s, |_, _| [0; 4]).expect("vcpu")),
    };
    let exit = v.run(&mut Buses::new()).expect("run");
    assert_eq!(
        exit,
        VmExit::Halted {
            interrupts_enabled: false
        },
        "{accel:?}"
    );
    let mut out = vec![0u8; QUERIES.len() * 16];
    ram.read(OUT, &mut out).unwrap();
    out.chunks(16)
        .map(|c| {
            let w = |i: usize| u32::from_le_bytes(c[i * 4..i * 4 + 4].try_into().unwrap());
            [w(0), w(1), w(2), w(3)]
        })
        .collect()
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
