//! The 16550A UART at COM1 (0x3F8), built on rust-vmm's `vm-superio` register model.
//!
//! Output goes to an injected sink; input comes from a [`SerialInput`] queue that a host thread
//! (the terminal) fills and that the device drains into its receive FIFO whenever the guest
//! reads a register, so no host thread ever touches the device itself.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::bus::BusDevice;
use crate::OutputSink;

/// The COM1 base port.
pub const COM1_PORT: u16 = 0x3f8;
/// The UART occupies eight consecutive ports.
pub const UART_LEN: u64 = 8;

/// The interrupt line of the UART. Until the interrupt controllers exist it only counts edges.
#[derive(Clone, Default, Debug)]
pub struct IrqTrigger {
    count: Arc<std::sync::atomic::AtomicU64>,
}

impl IrqTrigger {
    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl vm_superio::Trigger for IrqTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Bytes typed by the host user, waiting to reach the guest's receive FIFO.
#[derive(Clone, Default, Debug)]
pub struct SerialInput(Arc<Mutex<VecDeque<u8>>>);

impl SerialInput {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&self, bytes: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(bytes.iter().copied());
    }
}

/// A 16550A on the port bus.
pub struct Serial {
    uart: vm_superio::Serial<IrqTrigger, vm_superio::serial::NoEvents, OutputSink>,
    input: SerialInput,
}

impl Serial {
    pub fn new(out: OutputSink, input: SerialInput) -> Self {
        Self {
            uart: vm_superio::Serial::new(IrqTrigger::default(), out),
            input,
        }
    }

    /// Move waiting host input into the receive FIFO, as far as it has room.
    fn pull_input(&mut self) {
        let room = self.uart.fifo_capacity();
        if room == 0 {
            return;
        }
        let mut q = self.input.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.is_empty() {
            return;
        }
        let n = room.min(q.len());
        let bytes: Vec<u8> = q.drain(..n).collect();
        drop(q);
        if let Err(e) = self.uart.enqueue_raw_bytes(&bytes) {
            log::warn!("serial input dropped: {e:?}");
        }
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.pull_input();
        data.fill(0);
        data[0] = self.uart.read(offset as u8);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Err(e) = self.uart.write(offset as u8, data[0]) {
            log::warn!("serial output failed: {e:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SharedBuffer;

    /// Line status register offset and its data-ready bit (16550 datasheet).
    const LSR: u64 = 5;
    const LSR_DR: u8 = 1;

    #[test]
    fn transmits_and_receives() {
        let out = SharedBuffer::new();
        let input = SerialInput::new();
        let mut s = Serial::new(Box::new(out.clone()), input.clone());
        s.write(0, b"o");
        s.write(0, b"k");
        assert_eq!(out.contents(), b"ok");
        let mut b = [0u8; 1];
        s.read(LSR, &mut b);
        assert_eq!(b[0] & LSR_DR, 0);
        input.push(b"x");
        s.read(LSR, &mut b);
        assert_eq!(b[0] & LSR_DR, LSR_DR);
        s.read(0, &mut b);
        assert_eq!(b, *b"x");
    }
}
