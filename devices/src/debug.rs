//! The small devices test ROMs report through, with QEMU's meanings so the same image runs on
//! `qemu-system-x86_64 -debugcon stdio -device isa-debug-exit,iobase=0xf4,iosize=4` and on emu:
//! the debug console (port 0xE9), the debug exit port (0xF4), the POST code port (0x80), and an
//! ACPI PM1a control register for a clean poweroff.

use crate::bus::{BusDevice, PlatformRequest, Requests};
use crate::OutputSink;

/// Bochs/QEMU debug console port.
pub const DEBUGCON_PORT: u16 = 0xe9;
/// QEMU `isa-debug-exit` as the test suites configure it (iobase 0xf4, iosize 4).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
pub const DEBUG_EXIT_LEN: u64 = 4;
/// The POST diagnostic port.
pub const POST_PORT: u16 = 0x80;
/// PM1a control block at the I/O base SeaBIOS gives QEMU's PIIX4 PM (0x600) plus 4.
pub const PM1A_CNT_PORT: u16 = 0x604;

/// Port 0xE9: every byte written goes to the sink; reads return 0xE9 (QEMU's readback value,
/// which guests use to detect the port).
pub struct DebugCon {
    out: OutputSink,
}

impl DebugCon {
    pub fn new(out: OutputSink) -> Self {
        Self { out }
    }
}

impl BusDevice for DebugCon {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        data[0] = DEBUGCON_PORT as u8;
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        // Only the low byte of a wider OUT is a character, as in QEMU.
        if let Err(e) = self
            .out
            .write_all(&data[..1])
            .and_then(|_| self.out.flush())
        {
            log::warn!("debug console output failed: {e}");
        }
    }
}

/// Port 0xF4: a write of value `v` (of any width) ends the emulator with status `(v << 1) | 1`.
pub struct DebugExit {
    requests: Requests,
}

impl DebugExit {
    pub fn new(requests: Requests) -> Self {
        Self { requests }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset != 0 {
            return;
        }
        let mut v = [0u8; 4];
        let n = data.len().min(4);
        v[..n].copy_from_slice(&data[..n]);
        self.requests.post(PlatformRequest::DebugExit {
            value: u32::from_le_bytes(v),
        });
    }
}

/// Port 0x80: POST codes are accepted and remembered (logged at debug level).
#[derive(Default)]
pub struct PostPort {
    pub last: u8,
}

impl BusDevice for PostPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.last);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        self.last = data[0];
        log::debug!("POST code {:#04x}", self.last);
    }
}

/// ACPI PM1a control register (ACPI 6.5 4.8.3.2.1): writing SLP_EN with sleep type 0 (the S5
/// type QEMU's tables give) powers the machine off.
#[derive(Default)]
pub struct PmControl {
    requests: Requests,
    value: u16,
}

impl PmControl {
    /// SLP_EN, bit 13.
    pub const SLP_EN: u16 = 1 << 13;
    /// SLP_TYPx, bits 10-12.
    pub const SLP_TYP_SHIFT: u16 = 10;

    pub fn new(requests: Requests) -> Self {
        Self { requests, value: 0 }
    }
}

impl BusDevice for PmControl {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let bytes = self.value.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(offset as usize + i).copied().unwrap_or(0);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut bytes = self.value.to_le_bytes();
        for (i, b) in data.iter().enumerate() {
            if let Some(slot) = bytes.get_mut(offset as usize + i) {
                *slot = *b;
            }
        }
        let v = u16::from_le_bytes(bytes);
        if v & Self::SLP_EN != 0 {
            let typ = (v >> Self::SLP_TYP_SHIFT) & 7;
            if typ == 0 {
                self.requests.post(PlatformRequest::PowerOff);
            } else {
                log::warn!("guest asked for unsupported sleep type {typ}; ignored");
            }
        }
        self.value = v & !Self::SLP_EN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SharedBuffer;

    #[test]
    fn debugcon_prints_low_byte() {
        let buf = SharedBuffer::new();
        let mut d = DebugCon::new(Box::new(buf.clone()));
        d.write(0, b"h");
        d.write(0, &[b'i', 0x12]);
        assert_eq!(buf.contents(), b"hi");
        let mut r = [0u8; 1];
        d.read(0, &mut r);
        assert_eq!(r, [0xe9]);
    }

    #[test]
    fn debug_exit_posts_value() {
        let req = Requests::new();
        let mut d = DebugExit::new(req.clone());
        d.write(0, &[0x10, 0, 0, 0]);
        assert_eq!(req.take(), Some(PlatformRequest::DebugExit { value: 0x10 }));
    }

    #[test]
    fn pm_control_powers_off_on_s5() {
        let req = Requests::new();
        let mut pm = PmControl::new(req.clone());
        pm.write(0, &(5u16 << 10).to_le_bytes());
        assert!(!req.pending());
        pm.write(0, &PmControl::SLP_EN.to_le_bytes());
        assert_eq!(req.take(), Some(PlatformRequest::PowerOff));
    }
}
