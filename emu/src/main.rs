//! The `emu` command line.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use devices::SerialInput;
use emu::machine::{Accel, Machine, MachineConfig};

/// Exit status for errors of emu itself (bad arguments, unreadable or invalid images, backend
/// failures), as distinct from statuses the guest chooses.
const EXIT_EMULATOR_ERROR: u8 = 2;

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
    /// powers off, 4 when it stops for good (halt with interrupts off, triple fault), 124 when
    /// --time-limit passes, 2 for errors of emu itself.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// BIOS image: a multiple of 64 KiB, at most 1 MiB, mapped below 4 GiB and (its last
    /// 128 KiB) below 1 MiB; the CPU starts at F000:FFF0.
    #[arg(long, value_name = "FILE")]
    bios: Option<PathBuf>,
    /// Guest RAM, e.g. 128M or 1G.
    #[arg(long, short = 'm', default_value = "128M", value_parser = parse_memory)]
    memory: u64,
    /// Backend: jit, kvm, or auto (KVM when usable and measured faster, else the JIT).
    #[arg(long, default_value = "auto")]
    accel: Accel,
    /// Stop the guest after this many seconds (exit status 124).
    #[arg(long, value_name = "SECONDS")]
    time_limit: Option<f64>,
}

fn parse_memory(s: &str) -> Result<u64, String> {
    emu::size::parse_size(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
    match cli.command {
        Command::Run(args) => match run(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("emu: error: {e}");
                ExitCode::from(EXIT_EMULATOR_ERROR)
            }
        },
    }
}

fn run(args: RunArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let image = match &args.bios {
        Some(path) => emu::firmware::load_bios(path)?,
        None => emu::demo::DEMO_ROM.to_vec(),
    };
    if let Some(t) = args.time_limit {
        if !(t.is_finite() && t > 0.0) {
            return Err(
                format!("--time-limit must be a positive number of seconds, not {t}").into(),
            );
        }
    }
    let input = SerialInput::new();
    spawn_stdin_reader(input.clone());
    let config = MachineConfig {
        memory_bytes: args.memory,
        accel: args.accel,
        time_limit: args.time_limit.map(Duration::from_secs_f64),
        serial_input: Some(input),
    };
    let mut machine = Machine::with_bios(&config, &image, Box::new(std::io::stdout()))?;
    let outcome = machine.run()?;
    if let Some(line) = outcome.describe() {
        eprintln!("emu: {line}");
    }
    // The process status is 8 bits wide, as QEMU's is.
    Ok(ExitCode::from((outcome.exit_status() & 0xff) as u8))
}

/// Feed whatever arrives on standard input to the guest's UART.
fn spawn_stdin_reader(input: SerialInput) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 256];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => input.push(&buf[..n]),
            }
        }
    });
}
