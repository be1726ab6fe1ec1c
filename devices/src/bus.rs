//! Port-I/O and MMIO buses, and the channel through which devices ask the platform to act.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A device as a bus sees it: reads and writes at an offset inside the device's range.
pub trait BusDevice: Send {
    /// Fill `data` with the bytes at `offset`. Unimplemented registers read as all ones.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Take the bytes written at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// One device seen at several bus ranges (the PIC at 0x20, 0xA0 and 0x4D0; the PIT at 0x40 and
/// 0x61): each range is inserted as an alias adding `bias` to the offset, so the device sees
/// offsets relative to its first range.
pub struct SharedDevice<T: BusDevice> {
    device: Arc<Mutex<T>>,
    bias: u64,
}

impl<T: BusDevice> SharedDevice<T> {
    pub fn new(device: Arc<Mutex<T>>, bias: u64) -> Self {
        Self { device, bias }
    }
}

impl<T: BusDevice> BusDevice for SharedDevice<T> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read(offset + self.bias, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(offset + self.bias, data);
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap { base: u64, len: u64 },
    #[error("bus range at {base:#x} has zero length")]
    Empty { base: u64 },
}

struct Entry {
    base: u64,
    len: u64,
    device: Box<dyn BusDevice>,
}

/// A set of non-overlapping address ranges, each served by one device.
#[derive(Default)]
pub struct Bus {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| format!("{:#x}..{:#x}", e.base, e.base + e.len)),
            )
            .finish()
    }
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Attach `device` at `base..base+len`.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        device: Box<dyn BusDevice>,
    ) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::Empty { base });
        }
        if self
            .entries
            .iter()
            .any(|e| base < e.base + e.len && e.base < base + len)
        {
            return Err(BusError::Overlap { base, len });
        }
        let at = self.entries.partition_point(|e| e.base < base);
        self.entries.insert(at, Entry { base, len, device });
        Ok(())
    }

    fn find(&mut self, addr: u64) -> Option<(&mut Entry, u64)> {
        let i = self.entries.partition_point(|e| e.base <= addr);
        let e = self.entries.get_mut(i.checked_sub(1)?)?;
        if addr < e.base + e.len {
            let off = addr - e.base;
            Some((e, off))
        } else {
            None
        }
    }

    /// Whether a device claims `addr`.
    pub fn contains(&self, addr: u64) -> bool {
        self.entries
            .iter()
            .any(|e| addr >= e.base && addr < e.base + e.len)
    }

    /// Read from the device at `addr`; returns false (and all-ones data) if none claims it.
    pub fn read(&mut self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((e, off)) => {
                e.device.read(off, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Write to the device at `addr`; returns false if none claims it (the write is dropped).
    pub fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((e, off)) => {
                e.device.write(off, data);
                true
            }
            None => false,
        }
    }
}

/// What a device can ask of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformRequest {
    /// QEMU's isa-debug-exit: the emulator exits with status `(value << 1) | 1`.
    DebugExit { value: u32 },
    /// The guest powered the machine off (exit status 0).
    PowerOff,
    /// The guest asked for a system reset.
    Reset,
}

/// The shared mailbox devices post [`PlatformRequest`]s to. The backends check
/// [`Requests::pending`] (one atomic load) after each device access and return to the machine.
#[derive(Clone, Default, Debug)]
pub struct Requests {
    pending: Arc<AtomicBool>,
    request: Arc<Mutex<Option<PlatformRequest>>>,
}

impl Requests {
    pub fn new() -> Self {
        Self::default()
    }
    /// Post a request. The first request wins until it is taken.
    pub fn post(&self, r: PlatformRequest) {
        let mut slot = self.request.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(r);
            self.pending.store(true, Ordering::Release);
        }
    }
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }
    pub fn take(&self) -> Option<PlatformRequest> {
        let mut slot = self.request.lock().unwrap_or_else(|e| e.into_inner());
        self.pending.store(false, Ordering::Release);
        slot.take()
    }
}

/// The machine's interrupt controller as the CPU sees it: the INTR line and the INTA cycle.
pub trait InterruptController: Send {
    /// Whether INTR is asserted.
    fn has_interrupt(&self) -> bool;
    /// The interrupt-acknowledge cycle: the vector to deliver, now in service.
    fn acknowledge(&mut self) -> Option<u8>;
    /// The local APIC's task-priority register, if the machine has a local APIC. CR8 is
    /// TPR[7:4] (SDM Vol. 3A 11.8.6.1), so a CPU without one keeps CR8 itself.
    fn task_priority(&self) -> Option<u8> {
        None
    }
    /// Set the TPR (the CPU wrote CR8).
    fn set_task_priority(&mut self, _tpr: u8) {}
    /// The CPU's IA32_APIC_BASE MSR changed (SDM Vol. 3A 11.4.4).
    fn set_apic_base(&mut self, _value: u64) {}
}

/// A device that raises interrupts as time passes (the PIT). Timers are not ticked: the CPU side
/// polls them at its safe points and before it sleeps in HLT.
pub trait TimerSource: Send {
    /// Raise whatever interrupt lines are due by now.
    fn poll(&mut self);
    /// Nanoseconds until the next interrupt this timer will raise, if any is coming.
    fn next_event_in_ns(&self) -> Option<u64>;
}

/// The device buses of one machine, handed to [`Vcpu::run`](../vcpu/trait.Vcpu.html).
#[derive(Default)]
pub struct Buses {
    /// Port I/O space (16-bit port numbers).
    pub io: Bus,
    /// Memory-mapped I/O: guest-physical addresses outside RAM and ROM.
    pub mmio: Bus,
    /// The A20 line (port 0x92 and the keyboard controller drive it); backends apply
    /// [`crate::reset::A20Gate::mask`] to physical addresses.
    pub a20: crate::reset::A20Gate,
    requests: Requests,
    intc: Option<Arc<Mutex<dyn InterruptController>>>,
    timers: Vec<Box<dyn TimerSource>>,
}

impl std::fmt::Debug for Buses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buses")
            .field("io", &self.io)
            .field("mmio", &self.mmio)
            .field("a20", &self.a20.enabled())
            .field("interrupt_controller", &self.intc.is_some())
            .field("timers", &self.timers.len())
            .finish()
    }
}

impl Buses {
    pub fn new() -> Self {
        Self::default()
    }
    /// The mailbox to give to devices that post requests.
    pub fn requests(&self) -> Requests {
        self.requests.clone()
    }
    /// IN from `port`. Unclaimed ports read as all ones, like an ISA bus with nothing on it.
    pub fn io_read(&mut self, port: u16, data: &mut [u8]) {
        if !self.io.read(u64::from(port), data) {
            log::trace!("in from unclaimed port {port:#x}");
        }
    }
    /// OUT to `port`. Returns true when the CPU must stop and look at the platform again: a
    /// device posted a request the machine must act on, or the A20 line changed.
    pub fn io_write(&mut self, port: u16, data: &[u8]) -> bool {
        let a20 = self.a20.generation();
        if !self.io.write(u64::from(port), data) {
            log::trace!("out to unclaimed port {port:#x}: {data:02x?}");
        }
        self.requests.pending() || self.a20.generation() != a20
    }
    /// MMIO read; unclaimed addresses read as all ones.
    pub fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) {
        if !self.mmio.read(gpa, data) {
            log::debug!("read from unclaimed mmio {gpa:#x}");
        }
    }
    /// MMIO write. Returns true when a device posted a request.
    pub fn mmio_write(&mut self, gpa: u64, data: &[u8]) -> bool {
        if !self.mmio.write(gpa, data) {
            log::debug!("write to unclaimed mmio {gpa:#x}: {data:02x?}");
        }
        self.requests.pending()
    }
    /// Connect the interrupt controller whose INTR line the CPU samples.
    pub fn set_interrupt_controller(&mut self, intc: Arc<Mutex<dyn InterruptController>>) {
        self.intc = Some(intc);
    }

    pub fn add_timer(&mut self, timer: Box<dyn TimerSource>) {
        self.timers.push(timer);
    }

    /// Let the timers raise what is due, then tell whether INTR is asserted. Backends call it
    /// at their safe points whatever RFLAGS.IF says (a masked request must still reach the
    /// controller's IRR, where software can see it).
    pub fn poll_interrupt(&mut self) -> bool {
        for t in &mut self.timers {
            t.poll();
        }
        self.intc
            .as_ref()
            .is_some_and(|c| c.lock().unwrap_or_else(|e| e.into_inner()).has_interrupt())
    }

    /// The INTA cycle: the vector to deliver now (the CPU has checked RFLAGS.IF).
    pub fn acknowledge_interrupt(&mut self) -> Option<u8> {
        self.intc
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acknowledge()
    }

    /// The local APIC's TPR, if the machine has a local APIC (see
    /// [`InterruptController::task_priority`]).
    pub fn task_priority(&self) -> Option<u8> {
        self.intc
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .task_priority()
    }

    /// The CPU wrote CR8 (`tpr` = CR8 << 4).
    pub fn set_task_priority(&mut self, tpr: u8) {
        if let Some(c) = &self.intc {
            c.lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_task_priority(tpr);
        }
    }

    /// The CPU's IA32_APIC_BASE MSR changed.
    pub fn set_apic_base(&mut self, value: u64) {
        if let Some(c) = &self.intc {
            c.lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_apic_base(value);
        }
    }

    /// How long until some timer raises an interrupt (for a CPU idling in HLT).
    pub fn next_timer_event(&self) -> Option<std::time::Duration> {
        self.timers
            .iter()
            .filter_map(|t| t.next_event_in_ns())
            .min()
            .map(std::time::Duration::from_nanos)
    }

    pub fn request_pending(&self) -> bool {
        self.requests.pending()
    }
    pub fn take_request(&self) -> Option<PlatformRequest> {
        self.requests.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reg(u8);
    impl BusDevice for Reg {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(self.0 + offset as u8);
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.0 = data[0];
        }
    }

    #[test]
    fn dispatches_by_range_and_refuses_overlap() {
        let mut bus = Bus::new();
        bus.insert(0x10, 4, Box::new(Reg(1))).unwrap();
        bus.insert(0x20, 1, Box::new(Reg(7))).unwrap();
        assert_eq!(
            bus.insert(0x13, 2, Box::new(Reg(0))),
            Err(BusError::Overlap { base: 0x13, len: 2 })
        );
        let mut b = [0u8; 1];
        assert!(bus.read(0x12, &mut b));
        assert_eq!(b, [3]);
        assert!(!bus.read(0x14, &mut b));
        assert_eq!(b, [0xff]);
        assert!(bus.write(0x20, &[9]));
        bus.read(0x20, &mut b);
        assert_eq!(b, [9]);
    }

    #[test]
    fn first_request_wins_until_taken() {
        let r = Requests::new();
        assert!(!r.pending());
        r.post(PlatformRequest::DebugExit { value: 3 });
        r.post(PlatformRequest::Reset);
        assert!(r.pending());
        assert_eq!(r.take(), Some(PlatformRequest::DebugExit { value: 3 }));
        assert!(!r.pending());
        assert_eq!(r.take(), None);
    }
}
