//! A machine: guest memory, the PC devices, one vCPU on the chosen backend, and the loop that
//! runs it until the guest exits, powers off, stops for good, or runs out of time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::path::PathBuf;

use devices::{Buses, OutputSink, PlatformRequest, SerialInput};
use jit::dispatch::CodeWatch;
use vcpu::{CpuState, GuestRam, Kicker, Vcpu, VcpuError, VmExit};

use crate::control::{Command, MachineControl};
use crate::firmware::{check_bios, FirmwareError};
use crate::handover::HandoverVcpu;
use crate::pc::{self, PcDevices, PcError};
use crate::snapshot::{Snapshot, SnapshotError};

/// Which backend executes guest instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// The Cranelift JIT: runs on every host.
    Jit,
    /// KVM: x86-64 Linux hosts with a usable /dev/kvm.
    Kvm,
    /// KVM when it is usable and measured to be not much slower than the JIT, else the JIT.
    #[default]
    Auto,
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jit" | "tcg" => Ok(Accel::Jit),
            "kvm" => Ok(Accel::Kvm),
            "auto" => Ok(Accel::Auto),
            _ => Err(format!(
                "unknown accelerator {s:?}: expected jit, kvm or auto"
            )),
        }
    }
}

/// How to build a machine.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// Guest RAM in bytes.
    pub memory_bytes: u64,
    pub accel: Accel,
    /// Stop the guest after this much wall-clock time ([`RunOutcome::TimedOut`]).
    pub time_limit: Option<Duration>,
    /// Bytes queued for the UART's receive side before the guest starts (tests).
    pub serial_input: Option<SerialInput>,
    /// Reset requests (0xCF9, port 0x92, the keyboard controller) and triple faults restart
    /// the machine, as on a real PC, instead of ending the run.
    pub reboot: bool,
    /// A raw disk image for the IDE primary master (`--disk`); guest writes go to the file.
    pub disk: Option<PathBuf>,
    /// Where the firmware's debug log (port 0x402) goes; emu's log (`-v`) when `None`.
    pub firmware_log: Option<PathBuf>,
    /// The JIT translates a block once it has run this many times (`JitConfig::hot_threshold`
    /// when `None`); tests lower it to exercise the translator.
    pub jit_threshold: Option<u32>,
}

impl Default for MachineConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 128 << 20,
            accel: Accel::Auto,
            time_limit: None,
            serial_input: None,
            reboot: false,
            disk: None,
            firmware_log: None,
            jit_threshold: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The guest wrote `value` to the debug exit port (0xF4).
    DebugExit { value: u32 },
    /// The guest powered the machine off.
    PowerOff,
    /// The guest halted with interrupts disabled and nothing can wake it.
    Halted { rip: u64 },
    /// A fault while delivering a double fault.
    TripleFault { rip: u64 },
    /// The guest asked for a system reset and [`MachineConfig::reboot`] is off.
    Reset,
    /// [`MachineConfig::time_limit`] passed.
    TimedOut,
    /// A snapshot was written to `path` and the run stopped there (Ctrl-A s).
    Suspended { path: PathBuf },
    /// The user quit (Ctrl-A x).
    Quit,
}

impl RunOutcome {
    /// Exit status of `emu` for this outcome: QEMU's `(value << 1) | 1` for the debug exit port,
    /// 0 for poweroff or a reset request (as QEMU's `-no-reboot`), 4 for a guest that stopped
    /// for good (halt with interrupts off, triple fault), 124 for a time-out (as `timeout(1)`),
    /// 0 when the user suspended or quit.
    pub fn exit_status(&self) -> i32 {
        match self {
            RunOutcome::DebugExit { value } => ((value << 1) | 1) as i32,
            RunOutcome::PowerOff
            | RunOutcome::Reset
            | RunOutcome::Suspended { .. }
            | RunOutcome::Quit => 0,
            RunOutcome::Halted { .. } | RunOutcome::TripleFault { .. } => 4,
            RunOutcome::TimedOut => 124,
        }
    }

    /// A line for the user about how the run ended, when it is not the guest's own doing.
    pub fn describe(&self) -> Option<String> {
        match self {
            RunOutcome::DebugExit { .. } | RunOutcome::PowerOff => None,
            RunOutcome::Halted { rip } => Some(format!(
                "guest halted with interrupts disabled at rip {rip:#x}; nothing can wake it"
            )),
            RunOutcome::TripleFault { rip } => Some(format!(
                "guest triple-faulted at rip {rip:#x} (a fault while delivering a double fault)"
            )),
            RunOutcome::Reset => Some(
                "guest requested a system reset; stopping (--reboot restarts it instead)"
                    .to_string(),
            ),
            RunOutcome::TimedOut => Some("time limit reached; guest stopped".to_string()),
            RunOutcome::Suspended { path } => Some(format!(
                "guest suspended to {p}; resume it with `emu restore {p}`",
                p = path.display()
            )),
            RunOutcome::Quit => Some("quit; the guest was stopped".to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(transparent)]
    Firmware(#[from] FirmwareError),
    #[error(transparent)]
    Platform(#[from] PcError),
    #[error("the JIT backend could not start: {0}")]
    Jit(String),
    #[error("KVM is not usable: {0}")]
    KvmUnavailable(String),
    #[error("guest stopped by an emulator error: {0}")]
    Vcpu(#[from] VcpuError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("cannot map guest memory: {0}")]
    Memory(#[from] vcpu::MemoryError),
    #[error("cannot boot the Multiboot kernel: {0}")]
    Multiboot(#[from] crate::multiboot::MultibootError),
    #[error("cannot boot the Linux kernel: {0}")]
    Linux(#[from] crate::linux::LinuxError),
    #[error(transparent)]
    Disk(#[from] devices::disk::DiskError),
}

/// The devices `config` asks for beyond the legacy set: the firmware log port, the disk.
fn attach_options(
    buses: &mut Buses,
    devices: &mut PcDevices,
    config: &MachineConfig,
) -> Result<(), MachineError> {
    let sink = crate::firmware::firmware_log_sink(config.firmware_log.as_deref())?;
    pc::attach_firmware_log(buses, sink)?;
    if let Some(path) = &config.disk {
        let disk = devices::disk::FileDisk::open(path)?;
        pc::attach_disk(buses, devices, Box::new(disk))?;
    }
    Ok(())
}

/// A complete machine, ready to run.
pub struct Machine {
    ram: GuestRam,
    buses: Buses,
    devices: PcDevices,
    vcpu: Box<dyn Vcpu>,
    time_limit: Option<Duration>,
    reboot: bool,
    /// Whether firmware is mapped (a reset can restart it); false for direct kernel boot.
    firmware: bool,
    control: MachineControl,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("backend", &self.vcpu.backend_name())
            .field("regions", &self.ram.regions())
            .finish_non_exhaustive()
    }
}

/// Create a vCPU for `accel` over `ram`, starting from `state`.
/// `jit_threshold` overrides the JIT's translation threshold ([`MachineConfig::jit_threshold`]).
pub fn create_vcpu(
    accel: Accel,
    ram: &GuestRam,
    state: &CpuState,
    jit_threshold: Option<u32>,
) -> Result<Box<dyn Vcpu>, MachineError> {
    match accel {
        Accel::Jit => Ok(Box::new(create_jit(ram, state, jit_threshold)?)),
        Accel::Kvm => create_kvm(ram, state, None, jit_threshold),
        Accel::Auto => {
            let chosen = crate::calibrate::choose_backend();
            create_vcpu(chosen, ram, state, jit_threshold)
        }
    }
}

fn create_jit(
    ram: &GuestRam,
    state: &CpuState,
    jit_threshold: Option<u32>,
) -> Result<jit::JitVcpu, MachineError> {
    jit::JitVcpu::with_config(ram.clone(), *state, jit_config(jit_threshold))
        .map_err(|e| MachineError::Jit(e.to_string()))
}

/// The JIT's configuration for a machine with `jit_threshold`.
fn jit_config(jit_threshold: Option<u32>) -> jit::dispatch::JitConfig {
    let mut config = jit::dispatch::JitConfig {
        // Cranelift runs on a second thread, except when tuning or testing the translator with
        // an explicit threshold, which then sees the same translations on every run.
        background_compile: jit_threshold.is_none(),
        ..jit::dispatch::JitConfig::default()
    };
    if let Some(n) = jit_threshold {
        config.hot_threshold = n;
    }
    config
}

/// A KVM vCPU (with the JIT stepping over what KVM cannot emulate, and the JIT's CPUID) that
/// uses `kicker`, when given, instead of its own. `jit_threshold` configures the JIT should
/// the guest have to move there for good (`crate::hybrid`).
#[cfg(feature = "kvm")]
fn create_kvm(
    ram: &GuestRam,
    state: &CpuState,
    kicker: Option<Kicker>,
    jit_threshold: Option<u32>,
) -> Result<Box<dyn Vcpu>, MachineError> {
    accel::kvm_available().map_err(|e| MachineError::KvmUnavailable(e.to_string()))?;
    // The JIT's CPUID caps KVM's: one processor on both backends, so the guest can move
    // between them, and KVM's guest uses only what the hybrid fallback can execute.
    let mut v = accel::KvmVcpu::with_cpuid_limit(ram, state, jit::interp::cpuid_limit)
        .map_err(|e| MachineError::KvmUnavailable(e.to_string()))?;
    if let Some(k) = kicker {
        v.share_kicker(k);
    }
    Ok(Box::new(crate::hybrid::HybridVcpu::new(
        Box::new(v),
        ram.clone(),
        jit_config(jit_threshold),
    )))
}

#[cfg(not(feature = "kvm"))]
fn create_kvm(
    _ram: &GuestRam,
    _state: &CpuState,
    _kicker: Option<Kicker>,
    _jit_threshold: Option<u32>,
) -> Result<Box<dyn Vcpu>, MachineError> {
    Err(MachineError::KvmUnavailable(
        "emu was built without the `kvm` feature".to_string(),
    ))
}

/// How a Linux boot on KVM works around a slow KVM (nested, or one that emulates every
/// instruction in software, as this project's CI host does). [`Machine::with_linux`] ignores
/// both under the JIT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlowKvmLinux {
    /// Run the kernel's self-decompressor on the JIT and move to KVM at the decompressed
    /// kernel's entry ([`crate::linux::KernelEntry`]).
    pub decompress_on_jit: bool,
    /// Tell Linux to ignore the SIMD extensions beyond SSE3 ([`SCALAR_SIMD_MASK`]), so that its
    /// crypto and checksum code take their scalar paths: an instruction-emulating KVM runs SSE
    /// code about a hundred times slower than scalar code (the kernel's blake2s SSSE3 self-test
    /// alone took over half an hour on this project's CI host, and passes in seconds without).
    pub scalar_simd: bool,
}

/// The Linux feature names [`SlowKvmLinux::scalar_simd`] masks: everything the kernel's crypto,
/// RAID and checksum code selects over scalar code, beyond the SSE2 of x86-64's baseline.
pub const SCALAR_SIMD_MASK: [&str; 15] = [
    "ssse3",
    "sse4_1",
    "sse4_2",
    "sse4a",
    "aes",
    "pclmulqdq",
    "sha_ni",
    "avx",
    "avx2",
    "avx512f",
    "fma",
    "f16c",
    "vaes",
    "vpclmulqdq",
    "gfni",
];

/// The Linux command line `cmdline` with a `clearcpuid=` option masking the CPU features a
/// guest reads on this KVM beyond the JIT's CPUID (see [`crate::cpuid_probe`]): none where KVM
/// honours the capped CPUID table, the SSE and XSAVE extensions on a KVM that answers some
/// leaves from its own model; and with `scalar_simd`, the [`SCALAR_SIMD_MASK`] features the
/// guest sees. Linux reads only the first 127 characters of the option: what does not fit
/// stays visible, with a warning. A command line that already has `clearcpuid=` is left as it
/// is.
fn mask_kvm_features(cmdline: &str, scalar_simd: bool) -> Result<String, MachineError> {
    accel::kvm_available().map_err(|e| MachineError::KvmUnavailable(e.to_string()))?;
    let queries = crate::cpuid_probe::named_queries();
    let seen =
        crate::cpuid_probe::guest_cpuid(&queries, |ram, s| create_kvm(ram, s, None, None))
            .map_err(|e| MachineError::KvmUnavailable(format!("probing the guest's CPUID: {e}")))?;
    let asked: &[&str] = if scalar_simd { &SCALAR_SIMD_MASK } else { &[] };
    let features = crate::cpuid_probe::linux_extras(&seen, jit::interp::cpuid_limit, asked);
    let list = |f: &[crate::cpuid_probe::LinuxFeature]| {
        f.iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let (value, left) = crate::cpuid_probe::clearcpuid_value(&features);
    if !features.is_empty() {
        log::info!(
            "this KVM shows its guest CPU features the JIT lacks whatever its CPUID table says{}; \
             Linux is told to ignore them: {}",
            if scalar_simd {
                ", and KVM is slow here, so the SIMD extensions beyond SSE3 go too and the \
                 kernel's crypto code runs scalar (--scalar-simd-on-kvm)"
            } else {
                ""
            },
            list(&features)
        );
    }
    if !left.is_empty() {
        log::warn!(
            "Linux reads at most {} characters of clearcpuid=, so these features stay visible \
             to the guest: {}",
            crate::cpuid_probe::CLEARCPUID_MAX_CHARS,
            list(&left)
        );
    }
    Ok(with_clearcpuid(cmdline, &value))
}

/// `cmdline` with `clearcpuid=value`, unless the value is empty or the command line has its
/// own `clearcpuid=` (Linux reads only one; the user's wins, with a warning).
fn with_clearcpuid(cmdline: &str, value: &str) -> String {
    if value.is_empty() {
        return cmdline.to_string();
    }
    if cmdline
        .split_whitespace()
        .any(|w| w.starts_with("clearcpuid="))
    {
        log::warn!(
            "the command line has its own clearcpuid=, so Linux is not told to ignore {value}"
        );
        return cmdline.to_string();
    }
    format!("{cmdline} clearcpuid={value}")
        .trim_start()
        .to_string()
}

impl Machine {
    /// A PC with `bios` mapped as firmware, the CPU at the reset vector, and guest output
    /// (debug console and serial) going to `out`.
    pub fn with_bios(
        config: &MachineConfig,
        bios: &[u8],
        out: OutputSink,
    ) -> Result<Self, MachineError> {
        check_bios(bios)?;
        let ram = pc::build_memory(config.memory_bytes, bios)?;
        let input = config.serial_input.clone().unwrap_or_default();
        let (mut buses, mut devices) = pc::build_buses(out, input, config.memory_bytes, 0)?;
        attach_options(&mut buses, &mut devices, config)?;
        let vcpu = create_vcpu(config.accel, &ram, &CpuState::reset(), config.jit_threshold)?;
        Ok(Self::assemble(ram, buses, devices, vcpu, config))
    }

    /// A PC without firmware whose CPU starts in a kernel loaded directly into RAM: `load`
    /// places the kernel and returns the CPU state at its entry (see [`crate::multiboot`]).
    pub fn with_direct_boot(
        config: &MachineConfig,
        out: OutputSink,
        load: impl FnOnce(&GuestRam) -> Result<CpuState, MachineError>,
    ) -> Result<Self, MachineError> {
        Self::direct_boot(config, out, load, |ram, entry| {
            create_vcpu(config.accel, ram, entry, config.jit_threshold)
        })
    }

    /// A PC booting the Linux bzImage `image` directly (see [`crate::linux::load`]). With
    /// `config.accel` KVM, Linux is told to ignore the CPU features its guest would see beyond
    /// the JIT's, and `slow` says how to work around a slow KVM ([`SlowKvmLinux`]).
    pub fn with_linux(
        config: &MachineConfig,
        out: OutputSink,
        image: &[u8],
        initrd: Option<&[u8]>,
        cmdline: &str,
        slow: SlowKvmLinux,
    ) -> Result<Self, MachineError> {
        let masked;
        let cmdline = if config.accel == Accel::Kvm {
            masked = mask_kvm_features(cmdline, slow.scalar_simd)?;
            masked.as_str()
        } else {
            cmdline
        };
        let load = |ram: &GuestRam| Ok(crate::linux::load(ram, image, initrd, cmdline)?);
        if config.accel != Accel::Kvm || !slow.decompress_on_jit {
            return Self::with_direct_boot(config, out, load);
        }
        let entry = crate::linux::KernelEntry::of(image)?;
        log::info!(
            "the kernel decompresses itself on the JIT; KVM takes over at the decompressed \
             kernel's entry (--decompress-on-jit)"
        );
        let watch = Box::new(move |phys, cpu: &CpuState| entry.is_entry(phys, cpu));
        Self::with_direct_boot_handover(config, out, load, watch)
    }

    /// Like [`Machine::with_direct_boot`] with `config.accel` KVM, but the kernel starts on the
    /// JIT and the machine moves to KVM when `watch` accepts a block the JIT is about to run for
    /// the first time (see [`crate::handover`]; emu uses it to run a bzImage's decompressor on
    /// the JIT where KVM is slow). KVM's availability is checked before the guest starts.
    pub fn with_direct_boot_handover(
        config: &MachineConfig,
        out: OutputSink,
        load: impl FnOnce(&GuestRam) -> Result<CpuState, MachineError>,
        watch: CodeWatch,
    ) -> Result<Self, MachineError> {
        Self::direct_boot(config, out, load, |ram, entry| {
            let jit = create_jit(ram, entry, config.jit_threshold)?;
            let kvm = create_kvm(ram, entry, Some(jit.kicker()), config.jit_threshold)?;
            Ok(Box::new(HandoverVcpu::new(jit, watch, kvm)))
        })
    }

    /// A PC without firmware: `load` places the kernel, `vcpu` builds the vCPU at its entry.
    fn direct_boot(
        config: &MachineConfig,
        out: OutputSink,
        load: impl FnOnce(&GuestRam) -> Result<CpuState, MachineError>,
        vcpu: impl FnOnce(&GuestRam, &CpuState) -> Result<Box<dyn Vcpu>, MachineError>,
    ) -> Result<Self, MachineError> {
        let ram = pc::build_memory(config.memory_bytes, &[])?;
        let input = config.serial_input.clone().unwrap_or_default();
        let (mut buses, mut devices) = pc::build_buses(out, input, config.memory_bytes, 0)?;
        attach_options(&mut buses, &mut devices, config)?;
        let entry = load(&ram)?;
        let vcpu = vcpu(&ram, &entry)?;
        let mut m = Self::assemble(ram, buses, devices, vcpu, config);
        m.firmware = false;
        Ok(m)
    }

    /// The machine `snapshot` describes, on `config.accel` (which may differ from the backend
    /// that took it), ready to continue where it stopped. `config.memory_bytes` is ignored: the
    /// memory layout is the snapshot's. Guest output goes to `out`.
    pub fn from_snapshot(
        config: &MachineConfig,
        snapshot: &Snapshot,
        out: OutputSink,
    ) -> Result<Self, MachineError> {
        let ram = GuestRam::new(&snapshot.regions)?;
        snapshot.restore_memory(&ram)?;
        let clock_ns = PcDevices::saved_clock_ns(&snapshot.devices)?;
        let input = config.serial_input.clone().unwrap_or_default();
        let (mut buses, mut devices) = pc::build_buses(out, input, ram.ram_bytes(), clock_ns)?;
        attach_options(&mut buses, &mut devices, config)?;
        devices.restore(&snapshot.devices)?;
        let vcpu = create_vcpu(config.accel, &ram, &snapshot.cpu, config.jit_threshold)?;
        let firmware = ram
            .regions()
            .iter()
            .any(|r| r.kind == vcpu::RegionKind::Rom);
        let mut m = Self::assemble(ram, buses, devices, vcpu, config);
        m.firmware = firmware;
        Ok(m)
    }

    fn assemble(
        ram: GuestRam,
        buses: Buses,
        devices: PcDevices,
        vcpu: Box<dyn Vcpu>,
        config: &MachineConfig,
    ) -> Self {
        log::info!("running on the {} backend", vcpu.backend_name());
        let control = MachineControl::new(vcpu.kicker());
        Self {
            ram,
            buses,
            devices,
            vcpu,
            time_limit: config.time_limit,
            reboot: config.reboot,
            firmware: true,
            control,
        }
    }

    /// The whole machine as it is now: CPU, devices and memory (zero pages left out).
    pub fn snapshot(&mut self) -> Result<Snapshot, MachineError> {
        let cpu = self.vcpu.state()?;
        Ok(Snapshot::capture(cpu, &self.ram, self.devices.save())?)
    }

    /// Whether a reset can restart the guest: only firmware can, a directly booted kernel is
    /// not in RAM as it was loaded any more.
    fn can_restart(&self) -> bool {
        if !self.firmware {
            log::warn!("a kernel booted without firmware cannot be restarted; the run ends");
        }
        self.firmware
    }

    /// A system reset: the CPU back at the reset vector, the devices at power-on state (CMOS
    /// RAM, battery-backed, is kept), RAM left as it is, as a warm reset of a PC leaves it.
    pub fn reset(&mut self) -> Result<(), MachineError> {
        self.devices.reset();
        self.vcpu.set_state(&CpuState::reset())?;
        Ok(())
    }

    /// The handle other threads use to ask for snapshots or to stop the run.
    pub fn control(&self) -> MachineControl {
        self.control.clone()
    }

    /// The backend in use ("jit", "kvm").
    pub fn backend_name(&self) -> &'static str {
        self.vcpu.backend_name()
    }

    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    pub fn cpu_state(&mut self) -> Result<CpuState, MachineError> {
        Ok(self.vcpu.state()?)
    }

    /// The handle that stops a running guest from another thread.
    pub fn kicker(&self) -> Kicker {
        self.vcpu.kicker()
    }

    /// Run the guest until it ends. What the guest printed has reached the output sink when
    /// this returns.
    pub fn run(&mut self) -> Result<RunOutcome, MachineError> {
        let outcome = self.run_guest();
        if let Err(e) = self.devices.flush_console() {
            log::warn!("console output failed: {e}");
        }
        outcome
    }

    fn run_guest(&mut self) -> Result<RunOutcome, MachineError> {
        let deadline = self.time_limit.map(|t| Instant::now() + t);
        let _watchdog = deadline.map(|d| Watchdog::start(d, self.vcpu.kicker()));
        loop {
            let exit = self.vcpu.run(&mut self.buses)?;
            log::trace!("vm exit: {exit:?}");
            if let Some(outcome) = self.serve_controls()? {
                return Ok(outcome);
            }
            match exit {
                VmExit::Halted {
                    interrupts_enabled: false,
                } => {
                    // Nothing but an NMI (none is ever raised here) can wake it.
                    let rip = self.vcpu.state()?.rip;
                    return Ok(RunOutcome::Halted { rip });
                }
                VmExit::Halted {
                    interrupts_enabled: true,
                } => match self.wait_for_interrupt(deadline) {
                    Wake::Interrupt => {}
                    Wake::Deadline => return Ok(RunOutcome::TimedOut),
                    Wake::Control => {
                        if let Some(outcome) = self.serve_controls()? {
                            return Ok(outcome);
                        }
                    }
                },
                VmExit::DeviceRequest => match self.buses.take_request() {
                    Some(PlatformRequest::DebugExit { value }) => {
                        return Ok(RunOutcome::DebugExit { value })
                    }
                    Some(PlatformRequest::PowerOff) => return Ok(RunOutcome::PowerOff),
                    Some(PlatformRequest::Reset) if self.reboot && self.can_restart() => {
                        log::info!("guest requested a system reset; restarting");
                        self.reset()?;
                    }
                    Some(PlatformRequest::Reset) => return Ok(RunOutcome::Reset),
                    None => {}
                },
                VmExit::TripleFault { rip } if self.reboot && self.can_restart() => {
                    log::warn!("guest triple-faulted at rip {rip:#x}; resetting the machine");
                    self.reset()?;
                }
                VmExit::TripleFault { rip } => return Ok(RunOutcome::TripleFault { rip }),
                VmExit::Kicked | VmExit::BudgetSpent => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(RunOutcome::TimedOut);
                    }
                }
            }
        }
    }
}

/// The longest a halted CPU sleeps before looking at its devices again.
const HALT_POLL: Duration = Duration::from_millis(10);

/// Why a halted CPU's wait ended.
enum Wake {
    Interrupt,
    Deadline,
    Control,
}

impl Machine {
    /// Serve what other threads asked for. `Some` ends the run.
    fn serve_controls(&mut self) -> Result<Option<RunOutcome>, MachineError> {
        if !self.control.pending() {
            return Ok(None);
        }
        for command in self.control.take_all() {
            match command {
                Command::Quit => return Ok(Some(RunOutcome::Quit)),
                Command::Snapshot { path, then_quit } => {
                    let written = self.snapshot()?.write_file(&path);
                    match written {
                        Ok(()) if then_quit => return Ok(Some(RunOutcome::Suspended { path })),
                        Ok(()) => log::info!("snapshot written to {}", path.display()),
                        // The guest keeps running: losing it over a full disk would be worse.
                        Err(e) => log::error!("{e}; the guest keeps running"),
                    }
                }
            }
        }
        Ok(None)
    }

    /// Idle while the CPU is halted with interrupts enabled, until an interrupt is pending, the
    /// deadline passes, or another thread posts a command. Sleeps until the next timer event.
    fn wait_for_interrupt(&mut self, deadline: Option<Instant>) -> Wake {
        loop {
            if self.buses.poll_interrupt() {
                return Wake::Interrupt;
            }
            if self.control.pending() {
                return Wake::Control;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Wake::Deadline;
            }
            let mut nap = self
                .buses
                .next_timer_event()
                .unwrap_or(HALT_POLL)
                .min(HALT_POLL);
            if let Some(d) = deadline {
                nap = nap.min(d - now);
            }
            std::thread::sleep(nap);
        }
    }
}

/// Kicks the vCPU when a deadline passes; stops when dropped.
struct Watchdog {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn start(deadline: Instant, kicker: Kicker) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Acquire) {
                let now = Instant::now();
                if now >= deadline {
                    kicker.kick();
                    // Keep kicking: a kick that lands between two checks must not be lost.
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
            }
        });
        Self {
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_follows_qemu() {
        assert_eq!(RunOutcome::DebugExit { value: 0x10 }.exit_status(), 33);
        assert_eq!(RunOutcome::DebugExit { value: 0 }.exit_status(), 1);
        assert_eq!(RunOutcome::PowerOff.exit_status(), 0);
        assert_eq!(RunOutcome::TimedOut.exit_status(), 124);
    }

    #[test]
    fn accel_parses() {
        assert_eq!("kvm".parse::<Accel>(), Ok(Accel::Kvm));
        assert!("hvf".parse::<Accel>().is_err());
    }
}

#[cfg(test)]
mod clearcpuid_tests {
    use super::with_clearcpuid;

    #[test]
    fn names_are_appended_as_one_option() {
        assert_eq!(
            with_clearcpuid("console=ttyS0", "137,156"),
            "console=ttyS0 clearcpuid=137,156"
        );
        assert_eq!(with_clearcpuid("", "156"), "clearcpuid=156");
        assert_eq!(with_clearcpuid("quiet", ""), "quiet");
    }

    #[test]
    fn every_scalar_simd_name_is_a_linux_feature() {
        let all = |_: u32, _: u32| [u32::MAX; 4];
        let seen = vec![[u32::MAX; 4]; crate::cpuid_probe::named_queries().len()];
        let found = crate::cpuid_probe::linux_extras(&seen, all, &super::SCALAR_SIMD_MASK);
        let mut names: Vec<&str> = found.iter().map(|f| f.name).collect();
        names.sort_unstable();
        let mut want = super::SCALAR_SIMD_MASK.to_vec();
        want.sort_unstable();
        assert_eq!(names, want);
    }

    #[test]
    fn the_users_own_clearcpuid_wins() {
        let cmdline = "console=ttyS0 clearcpuid=pcid";
        assert_eq!(with_clearcpuid(cmdline, "156"), cmdline);
    }
}
