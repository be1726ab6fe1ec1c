//! SeaBIOS (Debian's /usr/share/seabios/bios.bin) boots the test boot disk
//! (test-roms/disk/boot_disk.asm) from emu's IDE primary master, as
//! `emu run --bios /usr/share/seabios/bios.bin --disk boot_disk.img` does, on the JIT and on
//! KVM: the boot sector's INT 13h checks must print what they print under
//! `qemu-system-x86_64 -M isapc` (test-roms/disk/boot_disk.expected, and a live QEMU run when
//! QEMU is installed), the guest's writes must land in the image file, and SeaBIOS's own log
//! (port 0x402) must say it booted from the hard disk.
//!
//! Each run boots a fresh copy of the image: the guest writes to it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use devices::SharedBuffer;
use emu::machine::{Accel, Machine, MachineConfig, RunOutcome};
use emu_tests::qemu;

/// Debian's `seabios` package (pulled in by qemu-system-x86; .ci/run installs it).
const SEABIOS: &str = "/usr/share/seabios/bios.bin";
/// The boot disk image tests/build.rs assembles.
const BOOT_DISK: &str = env!("EMU_TEST_BOOT_DISK");
/// What the boot disk prints under `qemu-system-x86_64 -M isapc` with Debian's SeaBIOS.
const EXPECTED: &[u8] = include_bytes!("../../test-roms/disk/boot_disk.expected");
/// The boot disk's verdict on the debug exit port: PASS (status 33).
const EXIT_PASS: u32 = 0x10;
const SECTOR: usize = 512;
/// The sectors the boot disk writes: each then starts with the dword, then the byte fills it.
const WRITTEN: [(usize, u32, u8); 3] = [
    (63, 0xc0de_0063, 0x63),
    (3000, 0xc0de_3000, 0x30),
    (3001, 0xc0de_3001, 0x31),
];
const LIMIT: Duration = Duration::from_secs(180);

fn seabios() -> Vec<u8> {
    std::fs::read(SEABIOS).unwrap_or_else(|e| {
        panic!("{SEABIOS}: {e}: install Debian's seabios package (bash .ci/run does)")
    })
}

/// A fresh copy of the boot disk, named after `tag`.
fn disk_copy(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("emu-seabios-disk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{tag}.img"));
    std::fs::copy(BOOT_DISK, &path).expect("boot disk image copies");
    path
}

struct EmuRun {
    outcome: RunOutcome,
    output: Vec<u8>,
    firmware_log: String,
    image: Vec<u8>,
}

fn boot_on(accel: Accel) -> EmuRun {
    let tag = format!("{accel:?}").to_lowercase();
    let disk = disk_copy(&tag);
    let log = disk.with_extension("log");
    let config = MachineConfig {
        memory_bytes: 128 << 20,
        accel,
        time_limit: Some(LIMIT),
        disk: Some(disk.clone()),
        firmware_log: Some(log.clone()),
        ..MachineConfig::default()
    };
    let out = SharedBuffer::new();
    let mut machine =
        Machine::with_bios(&config, &seabios(), Box::new(out.clone())).expect("machine builds");
    let outcome = machine.run().expect("the guest runs");
    drop(machine);
    EmuRun {
        outcome,
        output: out.contents(),
        firmware_log: std::fs::read_to_string(&log).unwrap_or_default(),
        image: std::fs::read(&disk).expect("image readable"),
    }
}

/// The image must be the original except for the sectors the guest wrote, which hold what it
/// wrote.
fn check_writes(image: &[u8]) {
    let original = std::fs::read(BOOT_DISK).unwrap();
    assert_eq!(image.len(), original.len(), "the image changed size");
    for (lba, first, fill) in WRITTEN {
        let s = &image[lba * SECTOR..(lba + 1) * SECTOR];
        assert_eq!(
            u32::from_le_bytes(s[..4].try_into().unwrap()),
            first,
            "sector {lba} was not written"
        );
        assert!(s[4..].iter().all(|&b| b == fill), "sector {lba}'s fill");
    }
    let changed: Vec<usize> = (0..original.len() / SECTOR)
        .filter(|&i| image[i * SECTOR..(i + 1) * SECTOR] != original[i * SECTOR..(i + 1) * SECTOR])
        .collect();
    assert_eq!(
        changed,
        WRITTEN.map(|(lba, _, _)| lba).to_vec(),
        "sectors changed beyond those the guest wrote"
    );
}

fn check_run(run: &EmuRun, backend: &str) {
    assert_eq!(
        String::from_utf8_lossy(&run.output),
        String::from_utf8_lossy(EXPECTED),
        "{backend}: the boot disk's output differs from QEMU's (test-roms/disk/boot_disk.expected)"
    );
    assert_eq!(
        run.outcome,
        RunOutcome::DebugExit { value: EXIT_PASS },
        "{backend}"
    );
    assert!(
        run.firmware_log.contains("Booting from Hard Disk..."),
        "{backend}: SeaBIOS's log (port 0x402) lacks the boot message:\n{}",
        run.firmware_log
    );
    assert!(
        run.firmware_log.contains("ata0-0: EMU HARDDISK"),
        "{backend}: SeaBIOS did not find the IDE disk:\n{}",
        run.firmware_log
    );
    check_writes(&run.image);
}

#[test]
fn seabios_boots_the_disk_on_the_jit() {
    let run = boot_on(Accel::Jit);
    check_run(&run, "jit");
}

#[test]
fn seabios_boots_the_disk_on_kvm() {
    if let Err(reason) = accel::kvm_available() {
        println!("skipped: KVM is not usable here: {reason}");
        return;
    }
    let run = boot_on(Accel::Kvm);
    check_run(&run, "kvm");
}

/// The QEMU command line the expected output came from.
fn qemu_command(disk: &Path) -> Command {
    let mut cmd = Command::new(qemu::QEMU);
    cmd.args([
        "-M",
        "isapc",
        "-accel",
        "tcg",
        "-m",
        "128M",
        "-display",
        "none",
        "-nodefaults",
        "-bios",
        SEABIOS,
        "-drive",
    ])
    .arg(format!("file={},format=raw,if=ide,index=0", disk.display()))
    .args([
        "-chardev",
        "stdio,id=out,mux=on",
        "-device",
        "isa-debugcon,iobase=0xe9,chardev=out",
        "-device",
        "isa-serial,chardev=out",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=4",
    ]);
    cmd
}

#[test]
fn qemu_isapc_prints_the_expected_output() {
    if !qemu::available() {
        println!("skipped: {} is not installed", qemu::QEMU);
        return;
    }
    let disk = disk_copy("qemu");
    let run = qemu::run_command(qemu_command(&disk), b"", LIMIT).expect("QEMU runs");
    assert_eq!(
        String::from_utf8_lossy(&run.output),
        String::from_utf8_lossy(EXPECTED),
        "QEMU's output changed: regenerate test-roms/disk/boot_disk.expected? stderr: {}",
        run.stderr
    );
    assert_eq!(run.status, 33, "QEMU's exit status; stderr: {}", run.stderr);
    check_writes(&std::fs::read(&disk).unwrap());
}
