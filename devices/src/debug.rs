//! The small devices test ROMs report through, with QEMU's meanings so the same image runs on
//! `qemu-system-x86_64 -debugcon stdio -device isa-debug-exit,iobase=0xf4,iosize=4` and on emu:
//! the debug console (port 0xE9), the debug exit port (0xF4), the POST code port (0x80), and the
//! ACPI PM1a registers for a clean poweroff.

use crate::bus::{BusDevice, PlatformRequest, Requests};
use crate::state::{StateError, StateReader, StateWriter};
use crate::OutputSink;

/// Bochs/QEMU debug console port.
pub const DEBUGCON_PORT: u16 = 0xe9;
/// QEMU `isa-debug-exit` as the test suites configure it (iobase 0xf4, iosize 4).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
pub const DEBUG_EXIT_LEN: u64 = 4;
/// The POST diagnostic port.
pub const POST_PORT: u16 = 0x80;
/// The PM1a event block at the I/O base SeaBIOS gives QEMU's PIIX4 PM; the control block
/// follows at 0x604.
pub const PM1A_EVT_PORT: u16 = 0x600;
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

/// The ACPI PM1a register blocks (ACPI 6.5 4.8.3.1 and 4.8.3.2): the event block at 0x600
/// (PM1_STS and PM1_EN, 16 bits each) and the control block at 0x604 (PM1_CNT). Writing
/// SLP_EN with sleep type 0 (the S5 type emu's and QEMU's tables give) powers the machine
/// off. No event ever raises an SCI yet, so status bits stay clear; SCI_EN reads as 1 (the
/// hardware is always in ACPI mode).
pub struct Pm1 {
    requests: Requests,
    s: Pm1State,
}

/// PM1 registers, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pm1State {
    pub status: u16,
    pub enable: u16,
    pub control: u16,
}

impl Default for Pm1State {
    fn default() -> Self {
        Self {
            status: 0,
            enable: 0,
            control: Pm1::SCI_EN,
        }
    }
}

/// Layout version of [`Pm1State::to_bytes`].
const PM1_STATE_VERSION: u8 = 1;

impl Pm1State {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = StateWriter::new(PM1_STATE_VERSION);
        w.u16(self.status).u16(self.enable).u16(self.control);
        w.finish()
    }

    pub fn from_bytes(blob: &[u8]) -> Result<Self, StateError> {
        let mut r = StateReader::new(blob, "pm1", PM1_STATE_VERSION)?;
        let s = Self {
            status: r.u16()?,
            enable: r.u16()?,
            control: r.u16()?,
        };
        r.finish()?;
        Ok(s)
    }
}

impl Pm1 {
    /// The blocks span PM1_STS (offset 0), PM1_EN (2) and PM1_CNT (4).
    pub const LEN: u64 = 6;
    const STATUS: usize = 0;
    const ENABLE: usize = 2;
    const CONTROL: usize = 4;
    /// PM1_CNT bits: SCI_EN (bit 0), SLP_TYPx (bits 10-12), SLP_EN (bit 13, write-only).
    pub const SCI_EN: u16 = 1 << 0;
    pub const SLP_EN: u16 = 1 << 13;
    pub const SLP_TYP_SHIFT: u16 = 10;

    pub fn new(requests: Requests) -> Self {
        Self {
            requests,
            s: Pm1State::default(),
        }
    }

    pub fn state(&self) -> Pm1State {
        self.s
    }

    pub fn set_state(&mut self, s: Pm1State) {
        self.s = s;
    }

    fn registers(&self) -> [u8; 6] {
        let mut r = [0u8; 6];
        r[Self::STATUS..Self::STATUS + 2].copy_from_slice(&self.s.status.to_le_bytes());
        r[Self::ENABLE..Self::ENABLE + 2].copy_from_slice(&self.s.enable.to_le_bytes());
        r[Self::CONTROL..Self::CONTROL + 2].copy_from_slice(&self.s.control.to_le_bytes());
        r
    }
}

impl BusDevice for Pm1 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let regs = self.registers();
        for (i, b) in data.iter_mut().enumerate() {
            *b = regs.get(offset as usize + i).copied().unwrap_or(0);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut regs = self.registers();
        let mut touched = [false; 6];
        for (i, b) in data.iter().enumerate() {
            if let Some(slot) = regs.get_mut(offset as usize + i) {
                *slot = *b;
                touched[offset as usize + i] = true;
            }
        }
        let word = |o: usize| u16::from_le_bytes([regs[o], regs[o + 1]]);
        if touched[Self::STATUS] || touched[Self::STATUS + 1] {
            // Status bits are cleared by writing 1 to them.
            self.s.status &= !word(Self::STATUS);
        }
        self.s.enable = word(Self::ENABLE);
        if touched[Self::CONTROL] || touched[Self::CONTROL + 1] {
            let v = word(Self::CONTROL);
            if v & Self::SLP_EN != 0 {
                let typ = (v >> Self::SLP_TYP_SHIFT) & 7;
                if typ == 0 {
                    self.requests.post(PlatformRequest::PowerOff);
                } else {
                    log::warn!("guest asked for unsupported sleep type {typ}; ignored");
                }
            }
            // SLP_EN reads as 0; SCI_EN stays set.
            self.s.control = (v & !Self::SLP_EN) | Self::SCI_EN;
        }
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
    fn pm1_powers_off_on_s5_and_keeps_its_registers() {
        const CNT: u64 = 4;
        let req = Requests::new();
        let mut pm = Pm1::new(req.clone());
        let mut w = [0u8; 2];
        pm.read(CNT, &mut w);
        assert_eq!(u16::from_le_bytes(w), Pm1::SCI_EN);
        pm.write(CNT, &(5u16 << 10).to_le_bytes());
        assert!(!req.pending());
        pm.write(2, &0x0121u16.to_le_bytes()); // PM1_EN
        pm.read(2, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x0121);
        let saved = pm.state().to_bytes();
        let mut copy = Pm1::new(Requests::new());
        copy.set_state(Pm1State::from_bytes(&saved).unwrap());
        assert_eq!(copy.state(), pm.state());
        assert!(Pm1State::from_bytes(&saved[..5]).is_err());
        pm.write(CNT, &Pm1::SLP_EN.to_le_bytes());
        assert_eq!(req.take(), Some(PlatformRequest::PowerOff));
        pm.read(CNT, &mut w);
        assert_eq!(u16::from_le_bytes(w) & Pm1::SLP_EN, 0);
    }
}
