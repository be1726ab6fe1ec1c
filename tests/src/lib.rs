//! Shared helpers for the integration tests in `tests/tests/`: the registry of test ROMs
//! (built from `test-roms/` by `build.rs`) with what each must print, a runner that executes a
//! ROM on any backend through the `emu` machine, and a runner for the same image under QEMU.
//!
//! ```no_run
//! use emu::machine::Accel;
//! for rom in emu_tests::roms() {
//!     let result = emu_tests::run_rom(&rom, Accel::Jit).unwrap();
//!     emu_tests::assert_rom_passed(&rom, &result);
//! }
//! ```

pub mod expected;
pub mod initramfs;
pub mod qemu;

use std::time::Duration;

use emu::machine::{Accel, Machine, MachineConfig, MachineError, RunOutcome};
use vcpu::{CpuState, GuestRam};

pub use expected::{
    Expectation, ExpectedEnd, ExpectedOutput, EXPECTATIONS, STATUS_FAIL, STATUS_PASS,
    STATUS_STOPPED,
};

mod built {
    include!(concat!(env!("OUT_DIR"), "/roms.rs"));
}

/// Guest RAM for ROM runs: the ROMs use only the first megabyte.
pub const ROM_MEMORY_BYTES: u64 = 32 << 20;
/// Wall-clock limit of one ROM run; every ROM needs well under a second under QEMU.
pub const ROM_TIME_LIMIT: Duration = Duration::from_secs(60);
/// The RAM the memory digest covers: conventional memory, where the ROMs keep their data.
pub const DIGEST_RAM_BYTES: usize = 640 << 10;

/// One test ROM: its image and what running it must produce.
#[derive(Debug, Clone)]
pub struct TestRom {
    pub name: &'static str,
    /// The flat BIOS image (a multiple of 64 KiB).
    pub image: &'static [u8],
    /// The image as a file, for tools that take a path (QEMU, the `emu` binary).
    pub path: std::path::PathBuf,
    pub expected_output: Vec<u8>,
    pub expected_status: i32,
    pub expectation: Expectation,
}

/// What one run of a ROM produced.
#[derive(Debug, Clone)]
pub struct RomResult {
    /// Debug console and serial output, interleaved as written.
    pub output: Vec<u8>,
    pub outcome: RunOutcome,
    /// The exit status `emu run` would return.
    pub status: i32,
    /// The CPU state after the run.
    pub state: CpuState,
    /// FNV-1a 64 of the first [`DIGEST_RAM_BYTES`] of guest RAM after the run.
    pub ram_digest: u64,
}

/// Every ROM in the registry, in a fixed order.
pub fn roms() -> Vec<TestRom> {
    EXPECTATIONS.iter().map(rom_for).collect()
}

/// The ROM called `name`, if there is one.
pub fn rom(name: &str) -> Option<TestRom> {
    EXPECTATIONS.iter().find(|e| e.name == name).map(rom_for)
}

/// Names of the ROMs that `build.rs` produced, whether or not they have expectations.
pub fn built_rom_names() -> Vec<&'static str> {
    built::BUILT_ROMS.iter().map(|(n, _)| *n).collect()
}

fn rom_for(e: &Expectation) -> TestRom {
    let image = built::BUILT_ROMS
        .iter()
        .find(|(n, _)| *n == e.name)
        .map(|(_, image)| *image)
        .unwrap_or_else(|| panic!("no ROM named {} was built from test-roms/", e.name));
    TestRom {
        name: e.name,
        image,
        path: std::path::Path::new(env!("OUT_DIR")).join(format!("{}.rom", e.name)),
        expected_output: e.output.to_bytes(),
        expected_status: e.end.status(),
        expectation: *e,
    }
}

/// ROMs run briefly: with the JIT's default threshold (256 runs) most of their code would only
/// be interpreted, so they translate a block from its fourth run and exercise both tiers.
pub const ROM_JIT_THRESHOLD: u32 = 4;

/// Run `rom` on `accel` until it exits (or [`ROM_TIME_LIMIT`] passes), with the ROM's serial
/// input queued for COM1.
pub fn run_rom(rom: &TestRom, accel: Accel) -> Result<RomResult, MachineError> {
    let serial_input = devices::SerialInput::new();
    serial_input.push(rom.expectation.serial_input);
    let config = MachineConfig {
        memory_bytes: ROM_MEMORY_BYTES,
        accel,
        time_limit: Some(ROM_TIME_LIMIT),
        serial_input: Some(serial_input),
        // Resets restart the machine, as under QEMU, except for ROMs whose expected end is the
        // triple fault itself.
        reboot: rom.expectation.end != ExpectedEnd::TripleFault,
        jit_threshold: Some(ROM_JIT_THRESHOLD),
        ..MachineConfig::default()
    };
    let out = devices::SharedBuffer::new();
    let mut machine = Machine::with_bios(&config, rom.image, Box::new(out.clone()))?;
    let outcome = machine.run()?;
    let state = machine.cpu_state()?;
    Ok(RomResult {
        output: out.contents(),
        status: outcome.exit_status(),
        outcome,
        state,
        ram_digest: ram_digest(machine.ram(), DIGEST_RAM_BYTES),
    })
}

/// FNV-1a 64 over the first `len` bytes of guest RAM (0 bytes where RAM is missing).
pub fn ram_digest(ram: &GuestRam, len: usize) -> u64 {
    let mut buf = vec![0u8; len];
    if let Err(e) = ram.read(0, &mut buf) {
        panic!("cannot read guest RAM for the digest: {e}");
    }
    fnv1a64(&buf)
}

/// FNV-1a, 64-bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A readable account of where `actual` output departs from `expected`, or None if equal.
pub fn output_mismatch(expected: &[u8], actual: &[u8]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let exp = String::from_utf8_lossy(expected);
    let act = String::from_utf8_lossy(actual);
    let (mut e_lines, mut a_lines) = (exp.lines(), act.lines());
    let mut line = 1;
    loop {
        match (e_lines.next(), a_lines.next()) {
            (Some(e), Some(a)) if e == a => line += 1,
            (e, a) => {
                return Some(format!(
                    "output differs at line {line}: expected {e:?}, got {a:?}\n--- expected ---\n{exp}\n--- actual ---\n{act}"
                ))
            }
        }
    }
}

/// Whether `outcome` is the way `end` says a run must finish.
pub fn outcome_matches(end: ExpectedEnd, outcome: &RunOutcome) -> bool {
    match end {
        ExpectedEnd::DebugExit(v) => *outcome == RunOutcome::DebugExit { value: v },
        ExpectedEnd::Halted => matches!(outcome, RunOutcome::Halted { .. }),
        ExpectedEnd::TripleFault => matches!(outcome, RunOutcome::TripleFault { .. }),
    }
}

/// Panic with a clear message unless `result` is what `rom` must produce.
pub fn assert_rom_passed(rom: &TestRom, result: &RomResult) {
    if let Some(diff) = output_mismatch(&rom.expected_output, &result.output) {
        panic!(
            "ROM {} ({}) printed the wrong output (run ended with {:?}):\n{diff}",
            rom.name, rom.expectation.covers, result.outcome
        );
    }
    assert!(
        outcome_matches(rom.expectation.end, &result.outcome),
        "ROM {}: run ended with {:?}, expected {:?}",
        rom.name,
        result.outcome,
        rom.expectation.end
    );
    assert_eq!(
        result.status, rom.expected_status,
        "ROM {} exit status: run ended with {:?}",
        rom.name, result.outcome
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_rom_has_expectations_and_back() {
        let mut built = built_rom_names();
        built.sort_unstable();
        let mut expected: Vec<_> = EXPECTATIONS.iter().map(|e| e.name).collect();
        expected.sort_unstable();
        assert_eq!(built, expected);
    }

    #[test]
    fn images_are_bios_sized_with_a_reset_jump() {
        for rom in roms() {
            assert_eq!(rom.image.len() % (64 << 10), 0, "{}", rom.name);
            // The reset vector (image offset size-16) holds a far jmp (EA) into segment F000.
            let rv = &rom.image[rom.image.len() - 16..];
            assert_eq!(rv[0], 0xEA, "{}: no far jmp at the reset vector", rom.name);
            assert_eq!(u16::from_le_bytes([rv[3], rv[4]]), 0xF000, "{}", rom.name);
            assert_eq!(std::fs::read(&rom.path).unwrap(), rom.image, "{}", rom.name);
        }
    }

    #[test]
    fn verdict_lines_match_the_exit_value() {
        for rom in roms() {
            match rom.expectation.end {
                ExpectedEnd::DebugExit(expected::EXIT_PASS) => {
                    assert!(rom.expected_output.ends_with(b"PASS\n"), "{}", rom.name);
                    assert_eq!(rom.expected_status, STATUS_PASS);
                }
                ExpectedEnd::DebugExit(expected::EXIT_FAIL) => {
                    assert!(rom.expected_output.ends_with(b"\nFAIL\n"), "{}", rom.name);
                    assert_eq!(rom.expected_status, STATUS_FAIL);
                }
                ExpectedEnd::DebugExit(v) => panic!("{}: unexpected exit value {v:#x}", rom.name),
                ExpectedEnd::Halted | ExpectedEnd::TripleFault => {
                    assert_eq!(rom.expected_status, STATUS_STOPPED, "{}", rom.name)
                }
            }
        }
    }

    #[test]
    fn alu_hashes_agree_between_real_and_protected_mode() {
        // alu_flags runs the same operations as 16-bit and as 32-bit code: the recorded
        // real-mode half must equal the protected-mode half, line for line.
        let text = String::from_utf8(rom("alu_flags").unwrap().expected_output).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let rm = lines.iter().position(|l| *l == "real mode").unwrap();
        let pm = lines.iter().position(|l| *l == "protected mode").unwrap();
        let real = &lines[rm + 1..pm];
        let protected = &lines[pm + 1..lines.len() - 1];
        assert!(real.len() > 90, "{} operations", real.len());
        assert_eq!(real, protected);
    }

    #[test]
    fn outcomes_match_only_their_own_end() {
        let pass = ExpectedEnd::DebugExit(0x10);
        assert!(outcome_matches(
            pass,
            &RunOutcome::DebugExit { value: 0x10 }
        ));
        assert!(!outcome_matches(
            pass,
            &RunOutcome::DebugExit { value: 0x11 }
        ));
        assert!(!outcome_matches(pass, &RunOutcome::TimedOut));
        assert!(outcome_matches(
            ExpectedEnd::Halted,
            &RunOutcome::Halted { rip: 1 }
        ));
        assert!(!outcome_matches(
            ExpectedEnd::Halted,
            &RunOutcome::TripleFault { rip: 1 }
        ));
        assert!(outcome_matches(
            ExpectedEnd::TripleFault,
            &RunOutcome::TripleFault { rip: 2 }
        ));
    }

    #[test]
    fn mismatch_names_the_first_differing_line() {
        assert_eq!(output_mismatch(b"a\nb\n", b"a\nb\n"), None);
        let m = output_mismatch(b"a\nb\nc\n", b"a\nx\n").unwrap();
        assert!(m.starts_with("output differs at line 2: expected Some(\"b\"), got Some(\"x\")"));
        let m = output_mismatch(b"a\n", b"a\nmore\n").unwrap();
        assert!(m.contains("line 2: expected None"));
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
