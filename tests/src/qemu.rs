//! Running a test ROM under `qemu-system-x86_64 -accel tcg`, the reference the ROMs are
//! checked against. QEMU gets the same devices emu has: the debug console at 0xE9 and COM1
//! both write to one stdout (a multiplexed stdio chardev, so their bytes interleave in program
//! order as in emu), and isa-debug-exit at 0xF4 sets the exit status to (v << 1) | 1.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The QEMU binary the comparison uses.
pub const QEMU: &str = "qemu-system-x86_64";

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("cannot start {QEMU}: {0}")]
    Spawn(std::io::Error),
    #[error("waiting for {QEMU} failed: {0}")]
    Wait(std::io::Error),
    #[error("{QEMU} did not finish within {0:?}")]
    TimedOut(Duration),
    #[error("{QEMU} was killed by a signal")]
    Signalled,
}

/// What QEMU printed and how it exited.
#[derive(Debug, Clone)]
pub struct QemuRun {
    pub output: Vec<u8>,
    pub status: i32,
    /// QEMU's own stderr (warnings), for failure messages.
    pub stderr: String,
}

/// Whether `qemu-system-x86_64` can be started.
pub fn available() -> bool {
    Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The QEMU command line for `rom` (also documented in test-roms/README.md).
pub fn command(rom: &Path) -> Command {
    let mut cmd = Command::new(QEMU);
    cmd.args([
        "-accel",
        "tcg",
        // The default model (qemu64) lacks SSSE3, SSE4 and XSAVE, which the `sse` ROM uses.
        "-cpu",
        "max",
        "-m",
        "128M",
        "-display",
        "none",
        "-nodefaults",
        "-bios",
    ])
    .arg(rom)
    .args([
        "-chardev",
        "stdio,id=out,mux=on",
        "-device",
        "isa-debugcon,iobase=0xe9,chardev=out",
        // Attached last, so the multiplexer gives COM1 the input focus (stdin).
        "-device",
        "isa-serial,chardev=out",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=4",
    ]);
    cmd
}

/// Run `rom` under QEMU with `input` typed into COM1, killing it after `limit`.
pub fn run(rom: &Path, input: &[u8], limit: Duration) -> Result<QemuRun, QemuError> {
    run_command(command(rom), input, limit)
}

/// Run a QEMU command line (whose stdio is the guest's console) with `input` typed into the
/// console, killing it after `limit`.
pub fn run_command(mut cmd: Command, input: &[u8], limit: Duration) -> Result<QemuRun, QemuError> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(QemuError::Spawn)?;
    // QEMU reads the input as the guest's UART has room for it.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    if let Err(e) = stdin.write_all(input) {
        log_write_failure(&e);
    }
    drop(stdin);
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(QemuError::Wait)? {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(QemuError::TimedOut(limit));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = out_reader.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Ok(QemuRun {
        output,
        status: status.code().ok_or(QemuError::Signalled)?,
        stderr,
    })
}

/// QEMU may exit before reading its input (a ROM that never reads COM1): not an error.
fn log_write_failure(e: &std::io::Error) {
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        eprintln!("writing the serial input to {QEMU} failed: {e}");
    }
}
