//! Platform devices and the buses they sit on.
//!
//! Devices know nothing about CPUs or backends: each one answers reads and writes at an offset
//! inside its own range ([`BusDevice`]), asks the platform for resets or exits through
//! [`Requests`], and writes its output to an injected sink so tests can capture it. Both the JIT
//! and KVM serve port and MMIO accesses through the same [`Buses`].

pub mod ata;
pub mod bus;
pub mod clock;
pub mod cmos;
pub mod debug;
pub mod disk;
pub mod i8042;
pub mod interrupts;
pub mod ioapic;
pub mod lapic;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod pm_timer;
pub mod reset;
pub mod serial;
pub mod serial_output;
pub mod state;

pub use bus::{
    Bus, BusDevice, BusError, Buses, InterruptController, PlatformRequest, Requests, SharedDevice,
    TimerSource,
};
pub use debug::{DebugCon, DebugExit, Pm1, PostPort};
pub use serial::{Serial, SerialInput};
pub use state::StateError;

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Where a device writes what the guest prints. `Send` so a machine can live on any thread.
pub type OutputSink = Box<dyn Write + Send>;

/// An output sink that appends to a shared buffer, for tests that compare guest output.
#[derive(Clone, Default, Debug)]
pub struct SharedBuffer(pub Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    pub fn new() -> Self {
        Self::default()
    }
    /// A copy of everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
