//! The shared vocabulary of every emu backend.
//!
//! A guest sees one PC whichever backend executes it. This crate holds what the backends have in
//! common: the architectural [`CpuState`] (plain `#[repr(C)]` data, the same for the JIT and for
//! KVM), the [`Vcpu`] trait they implement, the small [`VmExit`] they return, and [`GuestRam`],
//! the one guest-memory mapping they share. Nothing here knows how instructions are executed.

pub mod memory;
pub mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use devices::Buses;
pub use memory::{GuestRam, MemoryError, RegionKind, RegionSpec};
pub use state::{CpuState, DescriptorTable, ExecMode, FxArea, PendingEvent, Segment, SegmentIndex};

/// Why [`Vcpu::run`] returned. Port and MMIO accesses are served inside `run`, so this stays small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    /// The guest executed HLT. `interrupts_enabled` is RFLAGS.IF at that moment: with IF clear
    /// and nothing that could wake it, the guest has stopped for good.
    Halted { interrupts_enabled: bool },
    /// A device asked the platform for something (guest exit port, reset, poweroff); the machine
    /// takes it from [`Buses::take_request`].
    DeviceRequest,
    /// A fault occurred while delivering a double fault (SDM Vol. 3A 6.15, "Interrupt 8").
    TripleFault { rip: u64 },
    /// The [`Kicker`] asked `run` to return (pause, snapshot, time slice).
    Kicked,
    /// The instruction budget given to the backend was used up.
    BudgetSpent,
}

/// Errors a backend reports to the machine. None of them is a guest-visible event: they end the
/// run with a message.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// The host-side hypervisor interface failed (an ioctl, an mmap).
    #[error("backend failure: {0}")]
    Backend(String),
    /// The backend could not emulate an instruction of the guest.
    #[error("cannot emulate the instruction at rip {rip:#x} (bytes {bytes:02x?}): {reason}")]
    EmulationFailure {
        rip: u64,
        bytes: Vec<u8>,
        reason: String,
    },
    /// The backend cannot run the guest on correctly from here, because of a known defect of
    /// the host (e.g. a KVM whose SYSCALL does not enter ring 0). The state is complete and
    /// consistent: another backend can take it over and continue. `rip` is the instruction
    /// that showed the problem (the state may already be past it).
    #[error("this backend cannot continue the guest at rip {rip:#x}: {what}")]
    Unsupported { rip: u64, what: String },
    /// The state handed to `set_state` cannot be loaded by this backend.
    #[error("invalid cpu state: {0}")]
    InvalidState(String),
    /// Guest memory could not be accessed by the host.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// A cheap, clonable handle that makes a running [`Vcpu::run`] return [`VmExit::Kicked`] soon.
/// Backends poll [`Kicker::take`] at their own safe points (the JIT between blocks, KVM through
/// `immediate_exit` and a signal).
#[derive(Debug, Clone, Default)]
pub struct Kicker {
    flag: Arc<AtomicBool>,
}

impl Kicker {
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask the vCPU to return from `run`.
    pub fn kick(&self) {
        self.flag.store(true, Ordering::Release);
    }
    /// Whether a kick is pending, clearing it.
    #[inline]
    pub fn take(&self) -> bool {
        self.flag.swap(false, Ordering::AcqRel)
    }
    /// Whether a kick is pending, leaving it set. Inlined: the JIT's dispatcher polls it
    /// between every two blocks.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
    /// The flag itself, for backends that poll it from generated code.
    pub fn flag(&self) -> &Arc<AtomicBool> {
        &self.flag
    }
}

/// One executor of guest instructions: the JIT or a hardware accelerator. Every backend runs the
/// same machine: guest memory is given at construction, the device buses at each `run`, and the
/// architectural state moves in and out through [`CpuState`] without loss.
pub trait Vcpu {
    /// Short name for logs: "jit", "kvm".
    fn backend_name(&self) -> &'static str;
    /// Run the guest until something needs the machine's attention.
    fn run(&mut self, buses: &mut Buses) -> Result<VmExit, VcpuError>;
    /// The complete architectural state.
    fn state(&mut self) -> Result<CpuState, VcpuError>;
    /// Replace the architectural state.
    fn set_state(&mut self, state: &CpuState) -> Result<(), VcpuError>;
    /// The handle that makes `run` return early.
    fn kicker(&self) -> Kicker;
}
