//! The same ROM images under `qemu-system-x86_64 -accel tcg` and under emu's JIT: output and
//! exit status must agree, and QEMU must also agree with the expectations the other tests use
//! (which is how the recorded expectations stay honest). Skipped, with a printed reason, where
//! QEMU is not installed.

use std::time::Duration;

use emu::machine::Accel;
use emu_tests::{output_mismatch, qemu, roms, run_rom, TestRom};

const QEMU_TIME_LIMIT: Duration = Duration::from_secs(60);

fn qemu_or_skip(test: &str) -> bool {
    if qemu::available() {
        return true;
    }
    eprintln!("{test}: skipped: {} not installed", qemu::QEMU);
    false
}

fn run_qemu(rom: &TestRom) -> qemu::QemuRun {
    qemu::run(&rom.path, rom.expectation.serial_input, QEMU_TIME_LIMIT)
        .unwrap_or_else(|e| panic!("ROM {} under QEMU: {e}", rom.name))
}

#[test]
fn qemu_agrees_with_the_expectations() {
    if !qemu_or_skip("qemu_agrees_with_the_expectations") {
        return;
    }
    for rom in roms()
        .into_iter()
        .filter(|r| r.expectation.end.qemu_comparable())
    {
        let run = run_qemu(&rom);
        if let Some(diff) = output_mismatch(&rom.expected_output, &run.output) {
            panic!(
                "ROM {}: QEMU's output is not the recorded expectation (QEMU stderr: {}):\n{diff}",
                rom.name, run.stderr
            );
        }
        assert_eq!(
            run.status, rom.expected_status,
            "ROM {} status under QEMU",
            rom.name
        );
    }
}

fn compare_with_qemu(name: &str) {
    if !qemu_or_skip(name) {
        return;
    }
    let rom = emu_tests::rom(name).unwrap_or_else(|| panic!("no ROM named {name}"));
    let reference = run_qemu(&rom);
    let ours = run_rom(&rom, Accel::Jit)
        .unwrap_or_else(|e| panic!("ROM {name} could not run on the JIT: {e}"));
    if let Some(diff) = output_mismatch(&reference.output, &ours.output) {
        panic!(
            "ROM {name}: emu (JIT) and QEMU print different output (emu ended with {:?}; expected = QEMU):\n{diff}",
            ours.outcome
        );
    }
    assert_eq!(
        ours.status, reference.status,
        "ROM {name}: exit status under emu (JIT, {:?}) and QEMU differ",
        ours.outcome
    );
}

macro_rules! qemu_compare_tests {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $(
            #[test]
            $(#[$attr])*
            fn $name() {
                compare_with_qemu(stringify!($name));
            }
        )*
        const COMPARED: &[&str] = &[$(stringify!($name)),*];
    };
}

qemu_compare_tests!(
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
    long_alu,
    long_mode_irq,
    long_mode,
    paging_pae,
    timer_irq,
    lapic,
    snapshot_checksum,
    reset,
);

#[test]
fn every_rom_is_compared_with_qemu() {
    let mut registered: Vec<_> = roms()
        .iter()
        .filter(|r| r.expectation.end.qemu_comparable())
        .map(|r| r.name)
        .collect();
    registered.sort_unstable();
    let mut compared = COMPARED.to_vec();
    compared.sort_unstable();
    assert_eq!(
        registered, compared,
        "add a QEMU comparison for every ROM that ends through the debug exit port"
    );
}

#[test]
fn qemu_runner_stops_a_hung_guest() {
    if !qemu_or_skip("qemu_runner_stops_a_hung_guest") {
        return;
    }
    // Under QEMU the `halt` ROM waits forever: the runner must kill it at the limit.
    let rom = emu_tests::rom("halt").expect("halt is registered");
    match qemu::run(&rom.path, b"", Duration::from_secs(2)) {
        Err(qemu::QemuError::TimedOut(_)) => {}
        other => panic!("expected a time-out, got {other:?}"),
    }
}
