//! The PC's reset and A20 controls outside the keyboard controller: System Control Port A
//! (0x92: bit 0 fast reset, bit 1 A20 enable) and the Reset Control Register (0xCF9: bit 2
//! RST_CPU), plus the shared [`A20Gate`] line backends consult when forming physical addresses.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::bus::{BusDevice, PlatformRequest, Requests};

pub const PORT_A: u16 = 0x92;
pub const RESET_CONTROL_PORT: u16 = 0xcf9;

/// Port A bits (PIIX/ICH datasheets).
const PORT_A_FAST_RESET: u8 = 0x01;
const PORT_A_A20: u8 = 0x02;
/// Reset Control Register: RST_CPU starts a reset; SYS_RST (bit 1) makes it a hard one.
const RCR_RST_CPU: u8 = 0x04;
const RCR_SYS_RST: u8 = 0x02;

/// The A20 gate line: while it is off, physical address bit 20 is forced to 0 (8086
/// wrap-around). It starts on, as after SeaBIOS/QEMU reset of a modern PC. A generation count
/// that moves on every change lets the buses tell a backend that the line changed during an
/// access, so the very next instruction sees the new mapping.
#[derive(Debug, Clone)]
pub struct A20Gate {
    on: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
}

impl Default for A20Gate {
    fn default() -> Self {
        Self {
            on: Arc::new(AtomicBool::new(true)),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl A20Gate {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn enabled(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }
    pub fn set(&self, on: bool) {
        if self.on.swap(on, Ordering::AcqRel) != on {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
    /// Changes so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
    /// The mask to apply to physical addresses.
    pub fn mask(&self) -> u64 {
        if self.enabled() {
            u64::MAX
        } else {
            !(1u64 << 20)
        }
    }
}

/// System Control Port A (0x92).
pub struct PortA {
    a20: A20Gate,
    requests: Requests,
}

impl PortA {
    pub fn new(a20: A20Gate, requests: Requests) -> Self {
        Self { a20, requests }
    }
}

impl BusDevice for PortA {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        data[0] = if self.a20.enabled() { PORT_A_A20 } else { 0 };
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        self.a20.set(data[0] & PORT_A_A20 != 0);
        if data[0] & PORT_A_FAST_RESET != 0 {
            self.requests.post(PlatformRequest::Reset);
        }
    }
}

/// Reset Control Register (0xCF9).
pub struct ResetControl {
    value: u8,
    requests: Requests,
}

impl ResetControl {
    pub fn new(requests: Requests) -> Self {
        Self { value: 0, requests }
    }
}

impl BusDevice for ResetControl {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        data[0] = self.value;
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        // Only a byte access to 0xCF9 itself hits the register (0xCF8 is a dword port).
        if offset != 0 || data.len() != 1 {
            return;
        }
        self.value = data[0] & RCR_SYS_RST;
        if data[0] & RCR_RST_CPU != 0 {
            self.requests.post(PlatformRequest::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_a_controls_a20_and_fast_reset() {
        let a20 = A20Gate::new();
        let req = Requests::new();
        let mut p = PortA::new(a20.clone(), req.clone());
        p.write(0, &[0]);
        assert!(!a20.enabled());
        assert_eq!(a20.mask() & (1 << 20), 0);
        p.write(0, &[PORT_A_A20]);
        assert!(a20.enabled());
        assert!(!req.pending());
        p.write(0, &[PORT_A_A20 | PORT_A_FAST_RESET]);
        assert_eq!(req.take(), Some(PlatformRequest::Reset));
    }

    #[test]
    fn cf9_resets_on_rst_cpu() {
        let req = Requests::new();
        let mut r = ResetControl::new(req.clone());
        r.write(0, &[RCR_SYS_RST]);
        assert!(!req.pending());
        r.write(0, &[RCR_SYS_RST | RCR_RST_CPU]);
        assert_eq!(req.take(), Some(PlatformRequest::Reset));
    }
}
