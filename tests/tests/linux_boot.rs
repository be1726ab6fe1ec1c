//! Debian's Linux kernel (linux-image-amd64) with a busybox-static initramfs, booted directly
//! (`emu run --kernel --initrd --append`) until userspace prints a marker and powers off.
//!
//! On the JIT it takes about 30 s here in the test profile. On KVM the test does what
//! `emu run --accel kvm` does: where KVM measures far slower than the JIT (this host's KVM is
//! software-emulated), the JIT runs the kernel's decompressor and KVM takes over at the kernel's
//! entry. Where KVM runs SYSCALL wrongly (this host's does: `accel::kvm_syscall_enters_ring_0`),
//! the guest moves to the JIT for good when the kernel sets up SYSCALL, early in its boot
//! (`emu::hybrid`); about a minute of kernel runs on KVM here before that.
//!
//! The kernel is `$EMU_LINUX_KERNEL` or the newest /boot/vmlinuz-*; busybox is
//! `$EMU_BUSYBOX` or /bin/busybox. Both come from Debian packages
//! (`apt-get install linux-image-amd64 busybox-static`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use devices::{SerialInput, SharedBuffer};
use emu::machine::{Accel, Machine, MachineConfig, RunOutcome, SlowKvmLinux};

const MARKER: &str = "EMU-USERSPACE-OK";
const CMDLINE: &str = "console=ttyS0 panic=-1";
/// /init prints the TSC flags Linux saw, the marker, and starts an interactive shell on the
/// console.
const INIT_SCRIPT: &str = "/bin/busybox mount -t proc proc /proc
/bin/busybox echo TSC-FLAGS: $(/bin/busybox grep -o -w -E 'constant_tsc|nonstop_tsc|tsc_adjust' /proc/cpuinfo)
/bin/busybox echo EMU-USERSPACE-OK $(/bin/busybox uname -r)
exec /bin/busybox sh
";
/// What the test types once the marker is out: the shell must evaluate the arithmetic (the
/// terminal's echo of the line shows "$((6*7))", only the shell prints 42), then power off.
const TYPED: &[u8] = b"echo shell-says-$((6*7))\n/bin/busybox poweroff -f\n";
const SHELL_ANSWER: &str = "shell-says-42";

fn kernel() -> PathBuf {
    if let Some(p) = std::env::var_os("EMU_LINUX_KERNEL") {
        return p.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/boot")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("no /boot/vmlinuz-*: install linux-image-amd64 or set EMU_LINUX_KERNEL")
    })
}

fn busybox() -> Vec<u8> {
    let path = std::env::var_os("EMU_BUSYBOX").map_or(PathBuf::from("/bin/busybox"), PathBuf::from);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: install busybox-static or set EMU_BUSYBOX",
            path.display()
        )
    })
}

/// How often a running boot's console log is written out.
const LOG_REFRESH: Duration = Duration::from_secs(5);

fn boot(accel: Accel, limit: Duration) {
    let image = std::fs::read(kernel()).expect("kernel readable");
    let initrd = emu_tests::initramfs::busybox_initramfs(&busybox(), INIT_SCRIPT);
    let input = SerialInput::new();
    let config = MachineConfig {
        memory_bytes: 256 << 20,
        accel,
        time_limit: Some(limit),
        serial_input: Some(input.clone()),
        ..MachineConfig::default()
    };
    let out = SharedBuffer::new();
    let start = Instant::now();
    // What `emu run --accel kvm` does by default (--decompress-on-jit auto,
    // --scalar-simd-on-kvm auto): where KVM is far slower than the JIT, the JIT runs the
    // decompressor, KVM the kernel, and the kernel's crypto code runs scalar.
    let slow = accel == Accel::Kvm && emu::calibrate::kvm_is_slow();
    let mut machine = Machine::with_linux(
        &config,
        Box::new(out.clone()),
        &image,
        Some(&initrd),
        CMDLINE,
        SlowKvmLinux {
            decompress_on_jit: slow,
            scalar_simd: slow,
        },
    )
    .expect("machine builds");
    // The whole kernel log, for reading after a run (e.g. which clock events and interrupt
    // controllers Linux chose), and during a long one (`tail -f`): rewritten every few seconds.
    let log_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "linux_boot_{}.log",
        format!("{accel:?}").to_lowercase()
    ));
    eprintln!("{accel:?}: the console log goes to {}", log_path.display());
    // Type into the console once userspace is up, as a user at the terminal would.
    let watched = out.clone();
    let progress_path = log_path.clone();
    let typist = std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        let mut last_dump = Instant::now();
        while Instant::now() < deadline {
            let text = watched.contents();
            if String::from_utf8_lossy(&text).contains(MARKER) {
                input.push(TYPED);
                return true;
            }
            if last_dump.elapsed() >= LOG_REFRESH {
                let _ = std::fs::write(&progress_path, &text);
                last_dump = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    let outcome = machine
        .run()
        .expect("the run ends without an emulator error");
    let text = String::from_utf8_lossy(&out.contents()).into_owned();
    if let Err(e) = std::fs::write(&log_path, &text) {
        eprintln!("could not write {}: {e}", log_path.display());
    }
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    eprintln!(
        "{accel:?}: {outcome:?} after {:.1} s; last output:\n{}",
        start.elapsed().as_secs_f64(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(text.contains(MARKER), "userspace never printed {MARKER}");
    assert!(
        typist.join().unwrap(),
        "the marker never appeared for the typist"
    );
    assert!(
        text.contains(SHELL_ANSWER),
        "the shell never answered the typed command"
    );
    assert_eq!(outcome, RunOutcome::PowerOff, "the guest did not power off");
    // The guest leaves KVM only where KVM cannot run its system calls.
    let finish = match accel {
        Accel::Kvm if accel::kvm_syscall_enters_ring_0() == Some(false) => "jit",
        _ => &format!("{accel:?}").to_lowercase(),
    };
    assert_eq!(
        machine.backend_name(),
        finish,
        "the kernel did not finish on the backend expected"
    );
    // The interrupt controllers: Linux found the I/O APIC in the MADT, switched to symmetric
    // I/O mode (local APIC + I/O APIC) and its check_timer() saw the PIT's IRQ 0 arrive
    // through I/O APIC pin 2 (the override), with no fallback to the 8259A.
    assert!(
        text.contains("IOAPIC[0]: apic_id 0, version 32, address 0xfec00000, GSI 0-23"),
        "Linux did not find the I/O APIC in the MADT"
    );
    assert!(
        text.contains("APIC: Switch to symmetric I/O mode setup"),
        "Linux did not use the I/O APIC"
    );
    assert!(
        text.contains("..TIMER: vector=0x30 apic1=0 pin1=2"),
        "the PIT is not routed through I/O APIC pin 2"
    );
    assert!(
        !text.contains("8254 timer not connected to IO-APIC"),
        "the PIT's interrupt did not arrive through the I/O APIC"
    );
    // PCI: the DSDT's host bridge (\_SB.PCI0) leads Linux to bus 0 and the PIIX3 functions.
    for line in [
        "PCI host bridge to bus 0000:00",
        "pci 0000:00:00.0: [8086:1237]",
        "pci 0000:00:01.1: [8086:7010] type 00 class 0x010100",
    ] {
        assert!(text.contains(line), "Linux did not log {line:?}");
    }
    // The i8042: both ports pass Linux's probe (AUX loopback, AUX enable/disable in the
    // configuration byte, IRQ 12 delivery) and the keyboard answers its interrupt-driven reset.
    for line in [
        "serio: i8042 KBD port at 0x60,0x64 irq 1",
        "serio: i8042 AUX port at 0x60,0x64 irq 12",
    ] {
        assert!(text.contains(line), "Linux did not log {line:?}");
    }
    assert!(
        !text.contains("Failed to disable AUX port"),
        "the i8042 did not disable its AUX port"
    );
    // Clocks: the TSC (host time) calibrates against the PIT or the ACPI PM timer, and the
    // local APIC timer passes Linux's verification against the PIT tick.
    assert!(
        text.contains("tsc: Detected"),
        "Linux could not calibrate the TSC"
    );
    assert!(
        !text.contains("Marking TSC unstable"),
        "Linux rejected the TSC"
    );
    assert!(
        !text.contains("APIC timer disabled"),
        "Linux rejected the local APIC timer"
    );
    // The JIT's IA32_ARCH_CAPABILITIES says its CPU leaks nothing speculatively (RDCL_NO,
    // MDS_NO...): Linux neither isolates kernel page tables nor clears CPU buffers on every
    // return to user mode, as under QEMU's default CPU. (A KVM guest sees the host's answer.)
    if accel == Accel::Jit {
        for line in [
            "Kernel/User page tables isolation: enabled",
            "MDS: Vulnerable",
            "MDS: Mitigation",
        ] {
            assert!(!text.contains(line), "Linux logged {line:?}");
        }
    }
    // An invariant TSC with IA32_TSC_ADJUST: Linux trusts it without the clocksource watchdog,
    // which would compare it with jiffies from timer ticks that a busy host delivers late.
    let flags = text
        .lines()
        .find(|l| l.starts_with("TSC-FLAGS:"))
        .expect("/init printed the TSC flags");
    for flag in ["constant_tsc", "nonstop_tsc", "tsc_adjust"] {
        assert!(
            flags.split_whitespace().any(|w| w == flag),
            "Linux did not see {flag}: {flags}"
        );
    }
}

#[test]
fn linux_boots_to_userspace_on_the_jit() {
    boot(Accel::Jit, Duration::from_secs(1800));
}

#[test]
fn linux_boots_to_userspace_on_kvm() {
    if let Err(e) = accel::kvm_available() {
        eprintln!("skipping linux_boots_to_userspace_on_kvm: {e}");
        return;
    }
    boot(Accel::Kvm, Duration::from_secs(3 * 3600));
}
