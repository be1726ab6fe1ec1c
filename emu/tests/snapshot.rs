//! Snapshots as a user takes them: `--snapshot-after`, SIGUSR1, Ctrl-A s, and `emu restore` on
//! the same and on the other backend. The guest is test-roms/snapshot_checksum.asm: a
//! timer-paced checksum that runs for about 0.65 s on any backend, so a snapshot lands mid-way
//! with live state in registers, RAM, the PIC and the PIT. Whatever the backends, the restored
//! run must print exactly the rest of what an undisturbed run prints.

mod common;

use common::kvm_usable;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The final lines of the ROM's output, as `qemu-system-x86_64 -accel tcg` prints them
/// (tests/src/expected.rs holds the whole reference output for the ROM suite).
const QEMU_TAIL: &str = "table 4ddf2670\nchecksum 69ed1083\nPASS\n";
/// The ROM ends through port 0xF4 with 0x10: status (0x10 << 1) | 1.
const PASS_STATUS: i32 = 33;
const BANNER: &str = "snapshot checksum\n";

fn emu() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_emu"));
    c.stdin(Stdio::null());
    c
}

fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("emu-snap-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The ROM, assembled once with nasm from test-roms/.
fn rom() -> &'static Path {
    static ROM: OnceLock<PathBuf> = OnceLock::new();
    ROM.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-roms");
        let out = std::env::temp_dir().join(format!(
            "emu-snap-{}-snapshot_checksum.rom",
            std::process::id()
        ));
        let status = Command::new("nasm")
            .args(["-f", "bin", "-I"])
            .arg(root.join("include/"))
            .arg("-o")
            .arg(&out)
            .arg(root.join("snapshot_checksum.asm"))
            .status()
            .expect("nasm runs (install it: apt-get install nasm)");
        assert!(status.success(), "nasm failed");
        out
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn check_full_run(out: &Output, what: &str) -> String {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(PASS_STATUS),
        "{what}: stdout {stdout:?} stderr {}",
        text(&out.stderr)
    );
    assert!(
        stdout.starts_with(BANNER) && stdout.ends_with(QEMU_TAIL),
        "{what}: {stdout:?}"
    );
    stdout
}

/// `rest` (a restored run's output) must be a proper, non-trivial tail of `full`: the snapshot
/// was taken after the banner and before the end, and the restored guest finished the job.
fn check_tail(full: &str, rest: &str, what: &str) {
    assert!(
        full.ends_with(rest) && rest.ends_with(QEMU_TAIL),
        "{what}: restored output {rest:?} is not the end of {full:?}"
    );
    assert!(
        !rest.contains(BANNER) && rest.contains('.'),
        "{what}: the snapshot was not taken mid-way (restored output {rest:?})"
    );
}

fn restore(snap: &Path, accel: &str) -> Output {
    emu()
        .args(["restore", "--time-limit", "60", "--accel", accel])
        .arg(snap)
        .output()
        .unwrap()
}

/// Run on `from` with `--snapshot-after`, restore on `to`.
fn snapshot_after_and_restore(from: &str, to: &str) {
    let dir = scratch_dir(&format!("{from}-{to}"));
    let snap = dir.join("mid.snap");
    let out = emu()
        .args(["run", "--time-limit", "60", "--accel", from, "--bios"])
        .arg(rom())
        .args(["--snapshot-after", "250ms"])
        .arg(&snap)
        .output()
        .unwrap();
    let full = check_full_run(&out, &format!("undisturbed run on {from}"));
    assert!(snap.is_file(), "no snapshot written");
    let back = restore(&snap, to);
    assert_eq!(
        back.status.code(),
        Some(PASS_STATUS),
        "restore on {to}: {}",
        text(&back.stderr)
    );
    check_tail(&full, &text(&back.stdout), &format!("{from} -> {to}"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn jit_snapshot_restores_on_the_jit() {
    snapshot_after_and_restore("jit", "jit");
}

#[test]
fn jit_snapshot_restores_on_kvm() {
    if kvm_usable() {
        snapshot_after_and_restore("jit", "kvm");
    }
}

#[test]
fn kvm_snapshot_restores_on_the_jit() {
    if kvm_usable() {
        snapshot_after_and_restore("kvm", "jit");
    }
}

/// Collects a child's stdout on a thread, so the test can wait for output to appear.
struct Watched {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Watched {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdout.take().unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let sink = stdout.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self {
            child,
            stdout,
            reader,
        }
    }

    /// Wait until the guest has printed a few progress dots (well after the banner).
    fn wait_for_progress(&self) {
        let start = Instant::now();
        while self
            .stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'.')
            .count()
            < 5
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no progress from the guest"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(mut self) -> (Option<i32>, String, String) {
        let status = self.child.wait().unwrap();
        self.reader.join().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let out = text(&self.stdout.lock().unwrap());
        (status.code(), out, err)
    }
}

#[test]
fn sigusr1_writes_a_snapshot_and_the_guest_continues() {
    let dir = scratch_dir("sigusr1");
    let snap = dir.join("signal.snap");
    let mut cmd = emu();
    cmd.args(["run", "--time-limit", "60", "--accel", "jit", "--bios"])
        .arg(rom())
        .arg("--snapshot-on-signal")
        .arg(&snap);
    let run = Watched::spawn(cmd);
    run.wait_for_progress();
    // SAFETY: kill(2) on our own child's pid with a signal it handles.
    let rc = unsafe { libc::kill(run.child.id() as libc::pid_t, libc::SIGUSR1) };
    assert_eq!(rc, 0);
    let (status, full, err) = run.finish();
    assert_eq!(status, Some(PASS_STATUS), "stderr: {err}");
    assert!(full.ends_with(QEMU_TAIL), "{full:?}");
    let back = restore(&snap, "jit");
    assert_eq!(back.status.code(), Some(PASS_STATUS));
    check_tail(&full, &text(&back.stdout), "SIGUSR1 snapshot");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Ctrl-A s writes a snapshot, quits with status 0 and says how to resume; the output before
/// the suspend followed by the output after the restore is exactly the undisturbed output.
#[test]
fn ctrl_a_s_suspends_and_restore_resumes_where_it_stopped() {
    let dir = scratch_dir("suspend");
    let suspend = |dir: &Path| {
        let mut cmd = emu();
        cmd.current_dir(dir)
            .args(["run", "--time-limit", "60", "--accel", "jit", "--bios"])
            .arg(rom())
            .stdin(Stdio::piped());
        let mut run = Watched::spawn(cmd);
        run.wait_for_progress();
        let mut stdin = run.child.stdin.take().unwrap();
        stdin.write_all(b"\x01s").unwrap();
        let out = run.finish();
        drop(stdin);
        out
    };
    let (status, before, err) = suspend(&dir);
    assert_eq!(status, Some(0), "stderr: {err}");
    let snap = dir.join("emu-suspend.snap");
    assert!(
        err.contains("suspended to emu-suspend.snap") && err.contains("emu restore"),
        "{err}"
    );
    assert!(
        before.starts_with(BANNER) && !before.contains("PASS"),
        "{before:?}"
    );
    let back = restore(&snap, "jit");
    assert_eq!(back.status.code(), Some(PASS_STATUS));
    let after = text(&back.stdout);
    assert!(after.ends_with(QEMU_TAIL));
    let undisturbed = check_full_run(
        &emu()
            .args(["run", "--time-limit", "60", "--accel", "jit", "--bios"])
            .arg(rom())
            .output()
            .unwrap(),
        "undisturbed run",
    );
    assert_eq!(before + &after, undisturbed);

    // A second suspend in the same directory never replaces the first.
    let first = std::fs::read(&snap).unwrap();
    let (status, _, err) = suspend(&dir);
    assert_eq!(status, Some(0), "stderr: {err}");
    assert!(dir.join("emu-suspend-1.snap").is_file(), "{err}");
    assert_eq!(std::fs::read(&snap).unwrap(), first);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ctrl_a_x_quits() {
    let mut cmd = emu();
    cmd.args(["run", "--time-limit", "60", "--accel", "jit", "--bios"])
        .arg(rom())
        .stdin(Stdio::piped());
    let mut run = Watched::spawn(cmd);
    run.wait_for_progress();
    run.child.stdin.take().unwrap().write_all(b"\x01x").unwrap();
    let (status, out, err) = run.finish();
    assert_eq!(status, Some(0), "stderr: {err}");
    assert!(out.starts_with(BANNER) && !out.contains("PASS"), "{out:?}");
}

/// Bad snapshot files: each is refused with a message and status 2, and left as it was.
#[test]
fn bad_snapshots_are_clear_errors_and_left_alone() {
    let dir = scratch_dir("bad");
    let snap = dir.join("good.snap");
    let out = emu()
        .args(["run", "--time-limit", "60", "--accel", "jit", "--bios"])
        .arg(rom())
        .args(["--snapshot-after", "100ms"])
        .arg(&snap)
        .output()
        .unwrap();
    check_full_run(&out, "run");
    let good = std::fs::read(&snap).unwrap();
    let info = emu().arg("inspect").arg(&snap).output().unwrap();
    let info_text = text(&info.stdout);
    assert_eq!(info.status.code(), Some(0));
    assert!(
        info_text.contains("format version 2")
            && info_text.contains("mode Protected32")
            && info_text.contains("device pit"),
        "{info_text}"
    );

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    let mut version = good.clone();
    version[8] = 99;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 3].to_vec(), "truncated"),
        ("flipped", flipped, "checksum mismatch"),
        ("version", version, "version 99 is not supported"),
        ("empty", Vec::new(), "truncated"),
        (
            "text",
            b"hello, this is not a snapshot\n".to_vec(),
            "not an emu snapshot",
        ),
    ];
    for (name, bytes, message) in cases {
        let path = dir.join(format!("{name}.snap"));
        std::fs::write(&path, &bytes).unwrap();
        let out = restore(&path, "jit");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("emu: error:") && err.contains(message),
            "{name}: {err}"
        );
        assert!(out.stdout.is_empty(), "{name}: the guest ran");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}: file changed");
    }
    let out = restore(&dir.join("missing.snap"), "jit");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing.snap"));

    // Snapshot options never replace an existing file unless told to.
    let out = emu()
        .args(["run", "--accel", "jit", "--bios"])
        .arg(rom())
        .args(["--snapshot-after", "100ms"])
        .arg(&snap)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&snap).unwrap(), good);
    std::fs::remove_dir_all(&dir).unwrap();
}
