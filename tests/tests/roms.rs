//! Every test ROM on the JIT: its output and exit status must be exactly what
//! `emu_tests::expected` says (written down by hand or recorded from QEMU, never from emu).

use emu::machine::Accel;
use emu_tests::{assert_rom_passed, rom, roms, run_rom};

/// The ROMs with a test below; kept in step with the registry by `every_rom_runs_on_the_jit`.
const JIT_TESTED: &[&str] = &[
    "real_mode",
    "pmode",
    "prefixes",
    "invalid_opcode",
    "cpuid_rdtsc",
    "serial",
    "alu_flags",
    "c_program",
    "x87",
    "smc",
    "strings",
    "mem_ops",
    "sse",
    "serial_echo",
    "harness_selftest",
    "pm_faults",
    "call_gates",
    "task_switch",
    "paging_1g_smep",
    "seg_limits",
    "long_alu",
    "long_mode_irq",
    "long_mode",
    "paging_pae",
    "timer_irq",
    "lapic",
    "snapshot_checksum",
    "reset",
    "halt",
    "triple_fault",
];

fn run_on_jit(name: &str) {
    let rom = rom(name).unwrap_or_else(|| panic!("no ROM named {name}"));
    let result = run_rom(&rom, Accel::Jit)
        .unwrap_or_else(|e| panic!("ROM {name} could not run on the JIT: {e}"));
    assert_rom_passed(&rom, &result);
}

macro_rules! jit_rom_tests {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $(
            #[test]
            $(#[$attr])*
            fn $name() {
                run_on_jit(stringify!($name));
            }
        )*
    };
}

jit_rom_tests!(
    real_mode,
    pmode,
    prefixes,
    invalid_opcode,
    cpuid_rdtsc,
    serial,
    alu_flags,
    c_program,
    x87,
    smc,
    strings,
    mem_ops,
    sse,
    serial_echo,
    harness_selftest,
    pm_faults,
    call_gates,
    task_switch,
    paging_1g_smep,
    seg_limits,
    long_alu,
    long_mode_irq,
    long_mode,
    paging_pae,
    timer_irq,
    lapic,
    snapshot_checksum,
    reset,
    halt,
    triple_fault,
);

#[test]
fn every_rom_runs_on_the_jit() {
    let mut registered: Vec<_> = roms().iter().map(|r| r.name).collect();
    registered.sort_unstable();
    let mut tested = JIT_TESTED.to_vec();
    tested.sort_unstable();
    assert_eq!(
        registered, tested,
        "add a test for every ROM in the registry"
    );
}

#[test]
fn runs_are_deterministic() {
    // Same image twice: same output, same final registers and RAM.
    let rom = rom("alu_flags").expect("alu_flags is registered");
    let a = run_rom(&rom, Accel::Jit).expect("first run");
    let b = run_rom(&rom, Accel::Jit).expect("second run");
    assert_eq!(a.output, b.output);
    assert_eq!(a.status, b.status);
    assert_eq!(a.ram_digest, b.ram_digest);
    assert_eq!(a.state.gpr, b.state.gpr);
    assert_eq!(a.state.rip, b.state.rip);
}
