//! The 16550A UART at COM1 (0x3F8), built on rust-vmm's `vm-superio` register model.
//!
//! Output goes to an injected sink; input comes from a [`SerialInput`] queue that a host thread
//! (the terminal) fills and that the device drains into its receive FIFO whenever the guest
//! reads a register, so no host thread ever touches the device itself.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::bus::BusDevice;
use crate::state::{StateError, StateReader, StateWriter};
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

/// Layout version of [`Serial::state_bytes`].
const STATE_VERSION: u8 = 1;
const STATE_NAME: &str = "serial";
/// The 16550A's receive FIFO depth.
const FIFO_DEPTH: usize = 64;

/// The interrupt line a UART drives: called with the new level whenever it changes.
pub type IrqLine = Box<dyn FnMut(bool) + Send>;

/// IIR bit 0: set when no interrupt is pending (16550 datasheet).
const IIR_NO_INTERRUPT: u8 = 0x01;
/// MCR bit 3, OUT2: on PCs it gates the UART's interrupt onto the ISA IRQ line.
const MCR_OUT2: u8 = 0x08;

/// A 16550A on the port bus.
pub struct Serial {
    uart: vm_superio::Serial<IrqTrigger, vm_superio::serial::NoEvents, OutputSink>,
    input: SerialInput,
    irq: Option<IrqLine>,
    irq_level: bool,
}

impl Serial {
    pub fn new(out: OutputSink, input: SerialInput) -> Self {
        Self {
            uart: vm_superio::Serial::new(IrqTrigger::default(), out),
            input,
            irq: None,
            irq_level: false,
        }
    }

    /// A UART whose interrupt (a pending IIR condition, gated by MCR.OUT2) drives `irq`.
    pub fn with_irq(out: OutputSink, input: SerialInput, irq: IrqLine) -> Self {
        Self {
            irq: Some(irq),
            ..Self::new(out, input)
        }
    }

    /// Drive the interrupt line from the registers: high while an interrupt is pending and
    /// OUT2 is set, as the PC wires it.
    fn update_irq(&mut self) {
        let Some(irq) = self.irq.as_mut() else {
            return;
        };
        let st = self.uart.state();
        let level =
            st.interrupt_identification & IIR_NO_INTERRUPT == 0 && st.modem_control & MCR_OUT2 != 0;
        if level != self.irq_level {
            self.irq_level = level;
            irq(level);
        }
    }

    /// Move host input that arrived since the guest last looked into the receive FIFO and
    /// raise the receive interrupt if it is enabled (called from the machine's timer polling,
    /// so a guest waiting for an interrupt sees typed keys).
    pub fn poll_input(&mut self) {
        self.pull_input();
        self.update_irq();
    }

    /// The UART's registers and receive FIFO as a snapshot blob. Host input not yet moved into
    /// the FIFO stays with the host side and is not part of the guest's state.
    pub fn state_bytes(&self) -> Vec<u8> {
        let st = self.uart.state();
        let mut w = StateWriter::new(STATE_VERSION);
        w.u8(st.baud_divisor_low)
            .u8(st.baud_divisor_high)
            .u8(st.interrupt_enable)
            .u8(st.interrupt_identification)
            .u8(st.line_control)
            .u8(st.line_status)
            .u8(st.modem_control)
            .u8(st.modem_status)
            .u8(st.scratch)
            .bytes(&st.in_buffer);
        w.finish()
    }

    /// Load a blob written by [`Serial::state_bytes`]; the output sink and input queue stay.
    pub fn restore_state(&mut self, blob: &[u8]) -> Result<(), StateError> {
        let mut r = StateReader::new(blob, STATE_NAME, STATE_VERSION)?;
        let st = vm_superio::serial::SerialState {
            baud_divisor_low: r.u8()?,
            baud_divisor_high: r.u8()?,
            interrupt_enable: r.u8()?,
            interrupt_identification: r.u8()?,
            line_control: r.u8()?,
            line_status: r.u8()?,
            modem_control: r.u8()?,
            modem_status: r.u8()?,
            scratch: r.u8()?,
            in_buffer: r.bytes()?.to_vec(),
        };
        if st.in_buffer.len() > FIFO_DEPTH {
            return Err(r.invalid(format!("{} bytes in the receive FIFO", st.in_buffer.len())));
        }
        r.finish()?;
        self.load(&st).map_err(|e| StateError::Invalid {
            device: STATE_NAME,
            what: format!("{e:?}"),
        })
    }

    /// Rebuild the register model from `st`, keeping the interrupt line and the output sink.
    fn load(
        &mut self,
        st: &vm_superio::serial::SerialState,
    ) -> Result<(), vm_superio::serial::Error<std::convert::Infallible>> {
        let trigger = self.uart.interrupt_evt().clone();
        let placeholder =
            vm_superio::Serial::new(trigger.clone(), Box::new(std::io::sink()) as OutputSink);
        let out = std::mem::replace(&mut self.uart, placeholder).into_writer();
        self.uart = vm_superio::Serial::from_state(st, trigger, vm_superio::serial::NoEvents, out)?;
        Ok(())
    }

    /// Back to the power-on register values with an empty FIFO (system reset); the output
    /// sink and input queue stay.
    pub fn reset(&mut self) {
        // The default state has an empty FIFO, so loading it cannot fail.
        let _ = self.load(&vm_superio::serial::SerialState::default());
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
        self.update_irq();
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Err(e) = self.uart.write(offset as u8, data[0]) {
            log::warn!("serial output failed: {e:?}");
        }
        self.update_irq();
    }
}

/// Polls a UART for host input at the machine's timer points (see [`Serial::poll_input`]).
pub struct SerialInputPoll(pub Arc<Mutex<Serial>>);

impl crate::bus::TimerSource for SerialInputPoll {
    fn poll(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .poll_input();
    }
    fn next_event_in_ns(&self) -> Option<u64> {
        None
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

    #[test]
    fn state_survives_bytes_and_keeps_the_sink() {
        /// Line control register, its divisor-latch access bit, and the scratch register.
        const LCR: u64 = 3;
        const LCR_DLAB: u8 = 0x80;
        const SCR: u64 = 7;
        let out = SharedBuffer::new();
        let input = SerialInput::new();
        let mut s = Serial::new(Box::new(out.clone()), input.clone());
        s.write(LCR, &[LCR_DLAB]);
        s.write(0, &[0x0c]); // divisor 12: 9600 baud
        s.write(LCR, &[0x03]);
        s.write(SCR, &[0x5a]);
        input.push(b"hi");
        let mut b = [0u8; 1];
        s.read(LSR, &mut b); // moves "hi" into the FIFO
        let blob = s.state_bytes();

        let out2 = SharedBuffer::new();
        let mut t = Serial::new(Box::new(out2.clone()), SerialInput::new());
        t.restore_state(&blob).unwrap();
        assert_eq!(t.state_bytes(), blob);
        t.read(SCR, &mut b);
        assert_eq!(b, [0x5a]);
        t.read(0, &mut b);
        assert_eq!(b, *b"h");
        t.write(0, b"!");
        assert_eq!(
            out2.contents(),
            b"!",
            "output still goes to the restored device's sink"
        );
        for n in 0..blob.len() {
            assert!(t.restore_state(&blob[..n]).is_err());
        }
    }

    #[test]
    fn interrupt_line_follows_iir_and_out2() {
        /// IER: receive-data and transmitter-empty interrupts; MCR; IIR.
        const IER: u64 = 1;
        const IIR: u64 = 2;
        const MCR: u64 = 4;
        let levels = Arc::new(Mutex::new(Vec::new()));
        let seen = levels.clone();
        let input = SerialInput::new();
        let mut s = Serial::with_irq(
            Box::new(std::io::sink()),
            input.clone(),
            Box::new(move |l| seen.lock().unwrap().push(l)),
        );
        s.write(MCR, &[0]); // vm-superio starts with OUT2 set
        s.write(IER, &[0x01]); // receive data available
        input.push(b"k");
        s.poll_input();
        assert!(
            levels.lock().unwrap().is_empty(),
            "OUT2 clear gates the line"
        );
        s.write(MCR, &[MCR_OUT2]);
        assert_eq!(*levels.lock().unwrap(), vec![true]);
        let mut b = [0u8; 1];
        s.read(IIR, &mut b);
        assert_eq!(b[0] & 0x0f, 0x04, "receive data interrupt");
        s.read(0, &mut b);
        assert_eq!(b, *b"k");
        assert_eq!(
            *levels.lock().unwrap(),
            vec![true, false],
            "reading RBR clears it"
        );
    }
}
