//! The `emu` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use devices::SerialInput;
use emu::control::{Command as Control, MachineControl};
use emu::machine::{Accel, Machine, MachineConfig, SlowKvmLinux};
use emu::snapshot::Snapshot;
use emu::terminal::{self, Key, RawMode};
use emu::{linux, multiboot};

/// Exit status for errors of emu itself (bad arguments, unreadable or invalid images and
/// snapshots, backend failures), as distinct from statuses the guest chooses.
const EXIT_EMULATOR_ERROR: u8 = 2;

/// Where Ctrl-A s writes when --suspend-to is not given (made unique with -1, -2, ...).
const DEFAULT_SUSPEND_STEM: &str = "emu-suspend";

#[derive(Parser)]
#[command(
    name = "emu",
    version,
    about = "A full-system x86 emulator: Cranelift JIT on any host, KVM where usable"
)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a guest. Without an image, runs the built-in demo ROM.
    ///
    /// Exit status: what the guest wrote to port 0xF4 as (value << 1) | 1, 0 when the guest
    /// powers off or the user quits or suspends, 4 when it stops for good (halt with interrupts
    /// off, triple fault), 124 when --time-limit passes, 2 for errors of emu itself.
    ///
    /// Keys (standard input goes to the guest's serial port): Ctrl-A x quits, Ctrl-A s writes a
    /// snapshot and quits, Ctrl-A a sends Ctrl-A, Ctrl-A h lists them.
    Run(RunArgs),
    /// Resume a guest from a snapshot file, on any backend (the one that wrote it or another).
    ///
    /// Exit status as for `run`; a missing, corrupt, truncated or wrong-version snapshot ends
    /// with a message and status 2, and the file is left as it was.
    Restore(RestoreArgs),
    /// Describe a snapshot file: format version, memory layout, CPU registers, devices.
    Inspect {
        #[arg(value_name = "FILE")]
        snapshot: PathBuf,
    },
    /// Report which iced-x86 instruction codes the JIT implements, per class: every code is
    /// encoded, decoded back and executed for one step in a sandbox.
    Coverage {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: emu::coverage::Format,
        /// Also list the codes that are not implemented.
        #[arg(long)]
        unimplemented: bool,
        /// Also list the codes that are implemented.
        #[arg(long)]
        implemented: bool,
        /// Also list the codes that could not be probed, with the reason.
        #[arg(long)]
        not_probed: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// BIOS image: a multiple of 64 KiB, at most 1 MiB, mapped below 4 GiB and (its last
    /// 128 KiB) below 1 MiB; the CPU starts at F000:FFF0.
    #[arg(long, value_name = "FILE")]
    bios: Option<PathBuf>,
    /// Boot this kernel directly, without firmware: a Linux bzImage (64-bit boot protocol), or a
    /// Multiboot v1 kernel (ELF32, or flat with the header's load addresses), as GRUB and
    /// `qemu -kernel` boot them.
    #[arg(long, value_name = "FILE", conflicts_with = "bios")]
    kernel: Option<PathBuf>,
    /// The kernel's command line (Multiboot kernels see "FILE ARGS", as under QEMU and GRUB).
    /// E.g. "console=ttyS0" for a Linux kernel.
    #[arg(long, value_name = "ARGS", requires = "kernel")]
    append: Option<String>,
    /// Linux: the initial ramdisk (e.g. a gzipped cpio). Multiboot: the modules, in QEMU's
    /// syntax "FILE [ARGS],FILE [ARGS]" (each module's string is its whole entry).
    #[arg(long, value_name = "MODULES", requires = "kernel")]
    initrd: Option<String>,
    /// Guest RAM, e.g. 128M or 1G.
    #[arg(long, short = 'm', default_value = "128M", value_parser = parse_memory)]
    memory: u64,
    /// With --accel kvm and a Linux bzImage: run the kernel's self-decompressor on the JIT and
    /// move the guest to KVM at the decompressed kernel's first instruction. auto does this when
    /// KVM runs a calibration loop more than twice as slow as the JIT, as nested or
    /// software-emulated KVM does (there the decompressor alone can take hours); yes always; no
    /// never.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    decompress_on_jit: WhenKvmSlow,
    /// With --accel kvm and a Linux bzImage: tell Linux to ignore SSSE3, SSE4, AES-NI, AVX and
    /// the other SIMD extensions beyond SSE3 (clearcpuid=), so that its crypto and checksum code
    /// run scalar. auto does this where KVM is slow as for --decompress-on-jit: a KVM that
    /// emulates instructions in software runs SSE code about a hundred times slower than scalar
    /// code; yes always; no never.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    scalar_simd_on_kvm: WhenKvmSlow,
    #[command(flatten)]
    common: CommonArgs,
}

/// When a KVM Linux boot applies a slow-KVM work-around (`--decompress-on-jit`,
/// `--scalar-simd-on-kvm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WhenKvmSlow {
    Auto,
    Yes,
    No,
}

impl WhenKvmSlow {
    /// Whether the work-around applies, given whether KVM is slow (asked only for `auto`).
    fn wanted(self, kvm_is_slow: &mut impl FnMut() -> bool) -> bool {
        match self {
            WhenKvmSlow::Yes => true,
            WhenKvmSlow::No => false,
            WhenKvmSlow::Auto => kvm_is_slow(),
        }
    }
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// The snapshot to resume (written by --snapshot-on-signal, --snapshot-after or Ctrl-A s).
    #[arg(value_name = "FILE")]
    snapshot: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

/// Options of both `run` and `restore`.
#[derive(clap::Args)]
struct CommonArgs {
    /// Backend: jit, kvm, or auto (KVM when usable and measured faster, else the JIT).
    #[arg(long, default_value = "auto")]
    accel: Accel,
    /// Stop the guest after this many seconds (exit status 124).
    #[arg(long, value_name = "SECONDS")]
    time_limit: Option<f64>,
    /// On SIGUSR1, write a snapshot to FILE and keep running (each signal replaces it).
    #[arg(long, value_name = "FILE")]
    snapshot_on_signal: Option<PathBuf>,
    /// After DURATION (e.g. 500ms, 2s) of running, write a snapshot to FILE and keep running.
    #[arg(long, num_args = 2, value_names = ["DURATION", "FILE"])]
    snapshot_after: Option<Vec<String>>,
    /// Where Ctrl-A s writes its snapshot (default: emu-suspend.snap in the current directory,
    /// or the first of emu-suspend-1.snap, emu-suspend-2.snap, ... that does not exist).
    #[arg(long, value_name = "FILE")]
    suspend_to: Option<PathBuf>,
    /// Let snapshot options replace files that already exist (they refuse by default).
    #[arg(long)]
    overwrite_snapshots: bool,
    /// Restart the machine when the guest asks for a reset (0xCF9, port 0x92, the keyboard
    /// controller) or triple-faults. Without it a reset request ends the run with status 0 and
    /// a triple fault with status 4, as QEMU's -no-reboot does.
    #[arg(long)]
    reboot: bool,
    /// JIT tuning: translate a block with Cranelift once it has run N times (default 256;
    /// 0 translates everything at first sight, which exercises the translator most).
    #[arg(long, value_name = "N")]
    jit_threshold: Option<u32>,
    /// A raw disk image (a whole number of 512-byte sectors) as the IDE primary master
    /// (ports 0x1F0/0x3F6, IRQ 14), e.g. a boot disk for --bios /usr/share/seabios/bios.bin.
    /// Guest writes go to the file, as with QEMU's raw drives; snapshots hold the controller's
    /// state, not the disk contents (restore with the same --disk).
    #[arg(long, value_name = "FILE")]
    disk: Option<PathBuf>,
    /// Write the firmware's debug log (SeaBIOS prints it to port 0x402, QEMU's debugcon at
    /// iobase 0x402) to FILE. Without it the log goes to emu's own log: `-v` shows it.
    #[arg(long, value_name = "FILE")]
    firmware_log: Option<PathBuf>,
}

fn parse_memory(s: &str) -> Result<u64, String> {
    emu::size::parse_size(s).map_err(|e| e.to_string())
}

type CliResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // The level applies to emu's own crates; dependencies (Cranelift) only say what is wrong.
    let filter = ["emu", "jit", "accel", "devices", "vcpu", "decoder"]
        .iter()
        .fold(String::from("warn"), |f, c| format!("{f},{c}={level}"));
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter))
        .format_timestamp(None)
        .init();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Restore(args) => restore(args),
        Command::Inspect { snapshot } => inspect(&snapshot),
        Command::Coverage {
            format,
            unimplemented,
            implemented,
            not_probed,
        } => {
            let lists = emu::coverage::Lists {
                implemented,
                unimplemented,
                not_probed,
            };
            let probes = emu::coverage::probe_all();
            print!("{}", emu::coverage::report(&probes, format, lists));
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("emu: error: {e}");
            ExitCode::from(EXIT_EMULATOR_ERROR)
        }
    }
}

/// Read a file the user named (a kernel, an initrd), naming it and the reason if that fails.
fn read_input(what: &str, path: &Path) -> CliResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()).into())
}

fn run(args: RunArgs) -> CliResult<ExitCode> {
    let plan = SnapshotPlan::from_args(&args.common)?;
    let (config, input) = machine_config(&args.common, args.memory)?;
    let out = Box::new(std::io::stdout());
    if args.decompress_on_jit == WhenKvmSlow::Yes && config.accel != Accel::Kvm {
        log::warn!("--decompress-on-jit yes only applies with --accel kvm; ignored");
    }
    if args.scalar_simd_on_kvm == WhenKvmSlow::Yes && config.accel != Accel::Kvm {
        log::warn!("--scalar-simd-on-kvm yes only applies with --accel kvm; ignored");
    }
    let machine = if let Some(kernel) = &args.kernel {
        let image = read_input("kernel", kernel)?;
        if linux::is_bzimage(&image) {
            let initrd = match &args.initrd {
                Some(path) => Some(read_input("initrd", Path::new(path))?),
                None => None,
            };
            let cmdline = args.append.clone().unwrap_or_default();
            // KVM is measured (once) only when KVM is the backend and an `auto` asks.
            let mut measured = None;
            let mut kvm_is_slow = || *measured.get_or_insert_with(emu::calibrate::kvm_is_slow);
            let kvm = config.accel == Accel::Kvm;
            let slow = SlowKvmLinux {
                decompress_on_jit: kvm && args.decompress_on_jit.wanted(&mut kvm_is_slow),
                scalar_simd: kvm && args.scalar_simd_on_kvm.wanted(&mut kvm_is_slow),
            };
            let machine =
                Machine::with_linux(&config, out, &image, initrd.as_deref(), &cmdline, slow)?;
            return drive(machine, input, plan);
        }
        let modules = match &args.initrd {
            Some(spec) => multiboot::read_modules(spec)?,
            None => Vec::new(),
        };
        let cmdline = format!(
            "{} {}",
            kernel.display(),
            args.append.as_deref().unwrap_or("")
        );
        Machine::with_direct_boot(&config, out, |ram| {
            Ok(multiboot::load(ram, &image, &cmdline, &modules)?)
        })?
    } else {
        let image = match &args.bios {
            Some(path) => emu::firmware::load_bios(path)?,
            None => emu::demo::DEMO_ROM.to_vec(),
        };
        Machine::with_bios(&config, &image, out)?
    };
    drive(machine, input, plan)
}

fn restore(args: RestoreArgs) -> CliResult<ExitCode> {
    let plan = SnapshotPlan::from_args(&args.common)?;
    let snapshot = Snapshot::read_file(&args.snapshot)?;
    let (config, input) = machine_config(&args.common, 0)?;
    let machine = Machine::from_snapshot(&config, &snapshot, Box::new(std::io::stdout()))?;
    log::info!(
        "restored {} at rip {:#x}",
        args.snapshot.display(),
        snapshot.cpu.rip
    );
    drop(snapshot);
    drive(machine, input, plan)
}

fn inspect(path: &Path) -> CliResult<ExitCode> {
    let snap = Snapshot::read_file(path)?;
    print!("{}", snap.describe());
    Ok(ExitCode::SUCCESS)
}

fn machine_config(common: &CommonArgs, memory: u64) -> CliResult<(MachineConfig, SerialInput)> {
    if let Some(t) = common.time_limit {
        if !(t.is_finite() && t > 0.0) {
            return Err(
                format!("--time-limit must be a positive number of seconds, not {t}").into(),
            );
        }
    }
    let input = SerialInput::new();
    let config = MachineConfig {
        memory_bytes: memory,
        accel: common.accel,
        time_limit: common.time_limit.map(Duration::from_secs_f64),
        serial_input: Some(input.clone()),
        reboot: common.reboot,
        disk: common.disk.clone(),
        firmware_log: common.firmware_log.clone(),
        jit_threshold: common.jit_threshold,
    };
    Ok((config, input))
}

/// Where and when this run writes snapshots, checked before the guest starts.
struct SnapshotPlan {
    on_signal: Option<PathBuf>,
    after: Option<(Duration, PathBuf)>,
    suspend_to: Option<PathBuf>,
}

impl SnapshotPlan {
    fn from_args(a: &CommonArgs) -> CliResult<Self> {
        let after = match a.snapshot_after.as_deref() {
            Some([duration, file]) => {
                let d = emu::duration::parse_duration(duration)
                    .map_err(|e| format!("--snapshot-after: {e}"))?;
                Some((d, PathBuf::from(file)))
            }
            Some(_) => return Err("--snapshot-after takes a DURATION and a FILE".into()),
            None => None,
        };
        let plan = Self {
            on_signal: a.snapshot_on_signal.clone(),
            after,
            suspend_to: a.suspend_to.clone(),
        };
        let targets = [
            ("--snapshot-on-signal", plan.on_signal.as_deref()),
            (
                "--snapshot-after",
                plan.after.as_ref().map(|(_, p)| p.as_path()),
            ),
            ("--suspend-to", plan.suspend_to.as_deref()),
        ];
        for (option, path) in targets {
            if let Some(path) = path {
                check_target(option, path, a.overwrite_snapshots)?;
            }
        }
        Ok(plan)
    }
}

/// A snapshot target must be a writable place that holds nothing the user would lose.
fn check_target(option: &str, path: &Path, overwrite: bool) -> CliResult<()> {
    if path.is_dir() {
        return Err(format!("{option}: {} is a directory", path.display()).into());
    }
    if path.exists() && !overwrite {
        return Err(format!(
            "{option}: {} already exists; remove it or pass --overwrite-snapshots",
            path.display()
        )
        .into());
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(format!("{option}: directory {} does not exist", parent.display()).into());
    }
    Ok(())
}

/// The first of emu-suspend.snap, emu-suspend-1.snap, ... that does not exist.
fn default_suspend_path() -> PathBuf {
    let first = PathBuf::from(format!("{DEFAULT_SUSPEND_STEM}.snap"));
    if !first.exists() {
        return first;
    }
    (1u32..)
        .map(|n| PathBuf::from(format!("{DEFAULT_SUSPEND_STEM}-{n}.snap")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// Run `machine` with the terminal, signals and timers wired to it, and report how it ended.
fn drive(mut machine: Machine, input: SerialInput, plan: SnapshotPlan) -> CliResult<ExitCode> {
    let control = machine.control();
    let raw = RawMode::enable();
    if raw.active() {
        eprint!("emu: Ctrl-A h for help, Ctrl-A x to quit\r\n");
    }
    spawn_terminal(input, control.clone(), plan.suspend_to.clone());
    if let Some(path) = plan.on_signal {
        spawn_signal_snapshots(control.clone(), path)?;
    }
    if let Some((after, path)) = plan.after {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            control.post(Control::Snapshot {
                path,
                then_quit: false,
            });
        });
    }
    let outcome = machine.run();
    drop(raw);
    let outcome = outcome?;
    if let Some(line) = outcome.describe() {
        eprintln!("emu: {line}");
    }
    // The process status is 8 bits wide, as QEMU's is.
    Ok(ExitCode::from((outcome.exit_status() & 0xff) as u8))
}

/// Feed standard input to the guest's UART and turn Ctrl-A escapes into commands.
fn spawn_terminal(input: SerialInput, control: MachineControl, suspend_to: Option<PathBuf>) {
    std::thread::spawn(move || {
        terminal::pump_stdin(
            |bytes| input.push(bytes),
            |key| match key {
                Key::Quit => control.post(Control::Quit),
                Key::Suspend => control.post(Control::Snapshot {
                    path: suspend_to.clone().unwrap_or_else(default_suspend_path),
                    then_quit: true,
                }),
                Key::Help => eprint!("{}", terminal::HELP),
                Key::Guest(_) | Key::None => {}
            },
        )
    });
}

/// Write a snapshot to `path` on every SIGUSR1.
fn spawn_signal_snapshots(control: MachineControl, path: PathBuf) -> CliResult<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR1])
        .map_err(|e| format!("cannot handle SIGUSR1: {e}"))?;
    std::thread::spawn(move || {
        for _ in signals.forever() {
            control.post(Control::Snapshot {
                path: path.clone(),
                then_quit: false,
            });
        }
    });
    Ok(())
}
