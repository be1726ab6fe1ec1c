//! The `emu` command line as a user runs it.

use std::process::{Command, Output};

fn emu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_emu"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("emu binary runs")
}

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("emu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A 64 KiB BIOS whose reset vector runs `code` (16-bit real mode, CS = F000, IP = FFF0):
/// `code` must fit in the 16 bytes of the reset vector.
fn rom_with_reset_code(code: &[u8]) -> Vec<u8> {
    assert!(code.len() <= 16);
    let mut rom = vec![0xf4u8; 64 << 10];
    rom[0xfff0..0xfff0 + code.len()].copy_from_slice(code);
    rom
}

#[test]
fn demo_runs_and_matches_qemu_reference_output() {
    let out = emu(&["run", "--accel", "jit", "--time-limit", "60"]);
    let expected = include_bytes!("../demo/demo.expected");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(expected),
        "demo output differs from qemu-system-x86_64's (emu/demo/demo.expected)"
    );
}

#[test]
fn debug_exit_port_sets_status_and_debugcon_prints() {
    // mov al, 'A'; out 0xe9, al; mov al, 0x10; out 0xf4, al
    let rom = rom_with_reset_code(&[0xb0, b'A', 0xe6, 0xe9, 0xb0, 0x10, 0xe6, 0xf4]);
    let path = temp_file("exit.bin", &rom);
    let out = emu(&["run", "--accel", "jit", "--bios", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0x21));
    assert_eq!(out.stdout, b"A");
}

#[test]
fn halt_with_interrupts_off_is_reported() {
    // cli; hlt
    let rom = rom_with_reset_code(&[0xfa, 0xf4]);
    let path = temp_file("halt.bin", &rom);
    let out = emu(&["run", "--accel", "jit", "--bios", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("halted with interrupts disabled"));
}

#[test]
fn reset_request_ends_the_run_or_reboots_with_reboot() {
    // mov al, 'R'; out 0xe9, al; mov dx, 0xcf9; mov al, 6; out dx, al; hlt
    let rom = rom_with_reset_code(&[
        0xb0, b'R', 0xe6, 0xe9, 0xba, 0xf9, 0x0c, 0xb0, 0x06, 0xee, 0xf4,
    ]);
    let path = temp_file("reset.bin", &rom);
    let path = path.to_str().unwrap();
    // Without --reboot: one boot, status 0, and a line saying why the run ended.
    let out = emu(&["run", "--accel", "jit", "--bios", path]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"R");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("requested a system reset"), "{err}");
    // With --reboot the machine restarts at the reset vector, again and again.
    let out = emu(&[
        "run",
        "--accel",
        "jit",
        "--reboot",
        "--time-limit",
        "0.5",
        "--bios",
        path,
    ]);
    assert_eq!(out.status.code(), Some(124));
    assert!(out.stdout.len() > 3 && out.stdout.iter().all(|&b| b == b'R'));
}

#[test]
fn endless_loop_stops_at_time_limit() {
    // jmp $
    let rom = rom_with_reset_code(&[0xeb, 0xfe]);
    let path = temp_file("loop.bin", &rom);
    let out = emu(&[
        "run",
        "--accel",
        "jit",
        "--time-limit",
        "0.3",
        "--bios",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(124));
}

#[test]
fn bad_images_and_arguments_are_clear_errors() {
    let out = emu(&["run", "--bios", "/nonexistent/bios.bin"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/bios.bin"), "{err}");

    let truncated = temp_file("truncated.bin", &[0x90; 1000]);
    let out = emu(&["run", "--bios", truncated.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("multiple of 64 KiB"));

    let out = emu(&["run", "--memory", "1K"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too small"));

    let out = emu(&["run", "--memory", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid size"));

    let out = emu(&["run", "--accel", "hvf"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn coverage_reports_classes_and_lists_unimplemented_codes() {
    let out = emu(&["coverage", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0));
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("class,codes,probed,implemented,inline,unimplemented,not_probed,percent")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("row {name} in {csv}"))
    };
    let num = |r: &Vec<&str>, col: usize| r[col].parse::<f64>().unwrap();
    let gp = row("legacy general-purpose");
    assert!(num(gp, 7) > 80.0, "{gp:?}");
    let avx = row("VEX (AVX/AVX2/FMA/BMI)");
    assert_eq!(num(avx, 3), 0.0);
    assert!(num(avx, 5) > 0.0);
    let all = row("all");
    // codes = implemented + unimplemented + not probed.
    assert_eq!(num(all, 1), num(all, 3) + num(all, 5) + num(all, 6));

    let out = emu(&["coverage", "--unimplemented"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("class"));
    let listed: Vec<&str> = text
        .lines()
        .filter(|l| l.ends_with(" unimplemented"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(listed.contains(&"VEX_Vaddps_xmm_xmm_xmmm128"));
    assert!(!listed.contains(&"Add_rm32_r32"));
    assert_eq!(listed.len() as f64, num(all, 5));
}
