//! `emu run --disk FILE` refuses images it cannot use before the guest starts, with a message
//! naming the file and exit status 2 (as for a bad --bios), and `--firmware-log` writes what
//! the firmware prints on port 0x402.

use std::path::PathBuf;
use std::process::{Command, Output};

fn emu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_emu"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("emu binary runs")
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("emu-disk-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A 64 KiB BIOS whose reset vector runs `code` (real mode, CS = F000, IP = FFF0).
fn rom_with_reset_code(code: &[u8]) -> Vec<u8> {
    assert!(code.len() <= 16);
    let mut rom = vec![0xf4u8; 64 << 10];
    rom[0xfff0..0xfff0 + code.len()].copy_from_slice(code);
    rom
}

#[test]
fn unusable_disk_images_are_clear_errors() {
    let dir = temp_dir();
    let empty = dir.join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    let odd = dir.join("odd.img");
    std::fs::write(&odd, vec![0u8; 513]).unwrap();
    let missing = dir.join("missing.img");
    let cases = [
        (missing, "cannot open disk image"),
        (empty, "is empty"),
        (odd, "multiple of 512 bytes"),
        (dir.clone(), "disk image"),
    ];
    for (path, message) in cases {
        let p = path.to_str().unwrap();
        let out = emu(&["run", "--accel", "jit", "--disk", p]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{p}: {stderr}");
        assert!(
            stderr.contains(message) && stderr.contains(p),
            "{p}: expected {message:?} and the path in: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{p}: the guest ran");
    }
}

#[test]
fn a_disk_answers_on_the_ide_ports_and_the_firmware_log_gets_port_0x402() {
    let dir = temp_dir();
    let disk = dir.join("one-sector.img");
    std::fs::write(&disk, vec![0u8; 512]).unwrap();
    let log = dir.join("fw.log");
    // mov dx, 0x1f7; in al, dx (status of the master: DRDY | DSC); mov dx, 0x402; out dx, al;
    // mov al, 0x10; out 0xf4, al
    let rom = rom_with_reset_code(&[
        0xba, 0xf7, 0x01, 0xec, 0xba, 0x02, 0x04, 0xee, 0xb0, 0x10, 0xe6, 0xf4,
    ]);
    let bios = dir.join("status.bin");
    std::fs::write(&bios, rom).unwrap();
    let out = emu(&[
        "run",
        "--accel",
        "jit",
        "--bios",
        bios.to_str().unwrap(),
        "--disk",
        disk.to_str().unwrap(),
        "--firmware-log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0x21),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&log).unwrap(), [0x50]);
    // Without a disk the ports float.
    let out = emu(&[
        "run",
        "--accel",
        "jit",
        "--bios",
        bios.to_str().unwrap(),
        "--firmware-log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0x21));
    assert_eq!(std::fs::read(&log).unwrap(), [0xff]);
}
