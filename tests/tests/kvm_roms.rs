//! Every test ROM on KVM against the JIT (issue #3): the same output and exit status, and for
//! ROMs whose final state does not depend on the host, the same final registers and RAM digest.
//! Where `/dev/kvm` cannot be used the test prints the reason and passes.
//!
//! On KVM emu runs in hybrid mode (`emu::hybrid`): an instruction KVM cannot emulate (our build
//! hosts' `/dev/kvm` is software-emulated and lacks protected-mode IRET and INT n, ENTER with a
//! nesting level, ...) is executed by the JIT and the guest goes back to KVM. So every ROM runs
//! on KVM here too.

use emu::machine::{Accel, MachineError};
use emu_tests::{output_mismatch, roms, run_rom, RomResult, TestRom};
use vcpu::{CpuState, FxArea};

/// ROMs whose final RAM legitimately differs on KVM, and why; their RAM digest is not compared
/// (output, exit status and registers still are).
const RAM_DIGEST_EXEMPT: &[(&str, &str)] = &[(
    "pmode",
    "KVM runs ROM from a private writable copy (a read-only slot makes KVM's emulator loop \
     when it sets a descriptor's accessed bit), so the accessed bits it sets in the ROM's GDT \
     show up when the ROM copies that GDT to RAM; the JIT, like QEMU, ignores ROM writes",
)];

/// ROMs this host's KVM cannot run, and why; they are skipped (the JIT runs them in `roms.rs`
/// and QEMU checks them in `qemu_compare.rs`).
const KVM_UNRUNNABLE: &[(&str, &str)] = &[
    (
        "paging_pae",
        "the build hosts' software KVM injects #GP(0) into a guest MOV CR0 that turns on legacy \
         paging (32-bit or PAE, whatever CR0.CD/NW/NE; probed with minimal ROMs), while \
         paging with EFER.LME (long_mode) works",
    ),
    (
        "call_gates",
        "the build hosts' software KVM injects #UD into a far CALL through a call gate from \
         ring 3 (its instruction emulator has no call gates; probed with the ROM's first \
         inter-privilege call, whose #UD handler ran; the JIT and QEMU take the gate)",
    ),
    (
        "task_switch",
        "on the build hosts' software KVM the ROM's CALL/JMP/INT/IRET task switches agree with \
         the JIT and QEMU, but its last check, a #DF (a #GP whose IDT gate is not present) \
         delivered through a task gate, ends in a triple fault there",
    ),
    (
        "paging_1g_smep",
        "the build hosts' software KVM does not advertise 1 GiB pages (CPUID 80000001H EDX \
         bit 26 clear, the ROM's first check fails there) and then hangs at the ROM's first \
         access through a 1 GiB PDPTE (probed: the run reaches its time limit)",
    ),
];

/// The architectural fields of the final states that differ (the time-stamp counter and the
/// MSRs the ROMs never touch are left out: they follow the host).
fn state_differences(kvm: &CpuState, jit: &CpuState) -> Vec<String> {
    let mut d = Vec::new();
    macro_rules! cmp {
        ($($f:ident),*) => {$(
            if kvm.$f != jit.$f {
                d.push(format!(
                    "{}: KVM {:x?}, JIT {:x?}",
                    stringify!($f),
                    kvm.$f,
                    jit.$f
                ));
            }
        )*};
    }
    cmp!(gpr, rip, rflags, seg, ldtr, tr, gdtr, idtr, cr0, cr2, cr3, cr4, efer, pending, halted);
    for (i, (k, j)) in kvm.fx.0.iter().zip(jit.fx.0.iter()).enumerate() {
        // MXCSR_MASK describes the processor model, not its state: KVM reports the host's
        // (0x2ffff on AMD), the JIT its model's 0xffff (SDM Vol. 1 11.6.6).
        let mxcsr_mask = FxArea::MXCSR_MASK..FxArea::MXCSR_MASK + 4;
        if k != j && !mxcsr_mask.contains(&i) {
            d.push(format!("fx byte {i}: KVM {k:#04x}, JIT {j:#04x}"));
        }
    }
    d
}

/// How the KVM run departs from the JIT's, or None when they agree.
fn mismatch(rom: &TestRom, kvm: &RomResult, jit: &RomResult) -> Option<String> {
    if let Some(diff) = output_mismatch(&jit.output, &kvm.output) {
        return Some(format!(
            "ROM {}: KVM output differs from the JIT's (KVM ended with {:?}, JIT with {:?}):\n{diff}",
            rom.name, kvm.outcome, jit.outcome
        ));
    }
    if kvm.status != jit.status {
        return Some(format!(
            "ROM {}: exit status {} on KVM ({:?}), {} on the JIT ({:?})",
            rom.name, kvm.status, kvm.outcome, jit.status, jit.outcome
        ));
    }
    if rom.expectation.machine_specific_state {
        return None;
    }
    let mut d = state_differences(&kvm.state, &jit.state);
    let exempt = RAM_DIGEST_EXEMPT.iter().any(|(n, _)| *n == rom.name);
    if kvm.ram_digest != jit.ram_digest && !exempt {
        d.push(format!(
            "RAM digest: KVM {:#x}, JIT {:#x}",
            kvm.ram_digest, jit.ram_digest
        ));
    }
    (!d.is_empty()).then(|| {
        format!(
            "ROM {}: same output, different final state:\n{}",
            rom.name,
            d.join("\n")
        )
    })
}

#[test]
fn every_rom_matches_the_jit_on_kvm() {
    if let Err(e) = accel::kvm_available() {
        eprintln!("skipping every ROM on KVM: {e}");
        return;
    }
    let mut failures = Vec::new();
    let mut compared = 0;
    for rom in roms() {
        if let Some((_, why)) = KVM_UNRUNNABLE.iter().find(|(n, _)| *n == rom.name) {
            eprintln!("skipping ROM {} on KVM: {why}", rom.name);
            continue;
        }
        let kvm = match run_rom(&rom, Accel::Kvm) {
            Ok(r) => r,
            Err(MachineError::KvmUnavailable(reason)) => {
                eprintln!("skipping ROM {} on KVM: {reason}", rom.name);
                continue;
            }
            Err(e) => {
                failures.push(format!("ROM {} could not run on KVM: {e}", rom.name));
                continue;
            }
        };
        let jit = run_rom(&rom, Accel::Jit)
            .unwrap_or_else(|e| panic!("ROM {} could not run on the JIT: {e}", rom.name));
        compared += 1;
        match mismatch(&rom, &kvm, &jit) {
            Some(m) => failures.push(m),
            None => eprintln!(
                "ROM {}: KVM and the JIT agree ({:?})",
                rom.name, kvm.outcome
            ),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(compared > 0, "no ROM was compared");
}

#[test]
fn every_gap_names_a_registered_rom() {
    for (name, _) in RAM_DIGEST_EXEMPT.iter().chain(KVM_UNRUNNABLE) {
        assert!(
            emu_tests::rom(name).is_some(),
            "RAM_DIGEST_EXEMPT or KVM_UNRUNNABLE names {name}, which is not in the registry"
        );
    }
}
