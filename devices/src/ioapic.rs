//! The I/O APIC at 0xFEC00000: 24 interrupt input pins, each with a redirection-table entry that
//! turns an edge or level on the pin into a message to a local APIC.
//!
//! The register interface is the Intel 82093AA datasheet's (IOREGSEL at offset 0x00, IOWIN at
//! 0x10; registers IOAPICID 0x00, IOAPICVER 0x01, IOAPICARB 0x02, redirection entries 0x10+2n /
//! 0x11+2n), with version 0x20 as QEMU reports, which adds the EOI register at offset 0x40.
//! Interrupt delivery follows SDM Vol. 3A chapter 11: edge-triggered pins deliver on a rising
//! edge (an edge that arrives while the pin is masked is held and delivered on unmask, as QEMU
//! does); level-triggered pins deliver while asserted and set Remote IRR until the local APIC
//! broadcasts the EOI of their vector (11.8.5).
//!
//! The device does not know the local APIC: [`IoApic::set_irq`], register writes and EOIs return
//! the [`Delivery`] messages, and the machine's interrupt router (`crate::interrupts`) hands
//! them to the local APIC. Input polarity is recorded but not applied: the devices drive
//! logical levels (asserted = true), as the ACPI MADT the machine publishes describes them.

use crate::state::{StateError, StateReader, StateWriter};

/// The I/O APIC's physical address, as every PC has it.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Size of the register window.
pub const MMIO_LEN: u64 = 0x100;
/// Number of input pins (ISA IRQs 0-15 and PCI INTA-D lines on a PC).
pub const PINS: usize = 24;
/// IOAPICVER: version 0x20, maximum redirection entry 23.
pub const VERSION: u32 = 0x20 | ((PINS as u32 - 1) << 16);

/// MMIO offsets of the indirect register interface.
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const EOI: u64 = 0x40;
/// Register indices.
const REG_ID: u8 = 0x00;
const REG_VERSION: u8 = 0x01;
const REG_ARBITRATION: u8 = 0x02;
const REG_REDIRECTION: u8 = 0x10;

/// Redirection-entry fields (82093AA datasheet 3.2.4).
const RTE_VECTOR: u64 = 0xff;
const RTE_DELIVERY_MODE_SHIFT: u64 = 8;
const RTE_DEST_LOGICAL: u64 = 1 << 11;
const RTE_DELIVERY_STATUS: u64 = 1 << 12;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_LEVEL: u64 = 1 << 15;
pub const RTE_MASKED: u64 = 1 << 16;
const RTE_DEST_SHIFT: u64 = 56;
/// Bits software may write: everything but delivery status and Remote IRR.
const RTE_WRITABLE: u64 = 0xff00_0000_0001_afff;

/// Delivery modes of a redirection entry (82093AA 3.2.4, SDM 11.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    /// The interrupt comes from the 8259A: the CPU runs an INTA cycle to the PIC.
    ExtInt,
    Reserved(u8),
}

impl DeliveryMode {
    fn from_bits(b: u8) -> Self {
        match b {
            0 => Self::Fixed,
            1 => Self::LowestPriority,
            2 => Self::Smi,
            4 => Self::Nmi,
            5 => Self::Init,
            7 => Self::ExtInt,
            other => Self::Reserved(other),
        }
    }
}

/// An interrupt message for the local APIC(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub vector: u8,
    pub mode: DeliveryMode,
    pub level: bool,
    pub logical: bool,
    pub dest: u8,
}

/// Everything the I/O APIC holds, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApicState {
    pub select: u8,
    pub id: u32,
    pub redirection: [u64; PINS],
    /// Current input levels (true = asserted).
    pub levels: u32,
    /// Requests waiting to be delivered: edges seen (also while masked), asserted level pins.
    pub irr: u32,
}

impl Default for IoApicState {
    /// After reset every entry is masked (82093AA 3.2.4).
    fn default() -> Self {
        Self {
            select: 0,
            id: 0,
            redirection: [RTE_MASKED; PINS],
            levels: 0,
            irr: 0,
        }
    }
}

/// Layout version of [`IoApicState::to_bytes`].
const STATE_VERSION: u8 = 1;
const STATE_NAME: &str = "ioapic";

impl IoApicState {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = StateWriter::new(STATE_VERSION);
        w.u8(self.select).u32(self.id);
        for &e in &self.redirection {
            w.u64(e);
        }
        w.u32(self.levels).u32(self.irr);
        w.finish()
    }

    pub fn from_bytes(blob: &[u8]) -> Result<Self, StateError> {
        let mut r = StateReader::new(blob, STATE_NAME, STATE_VERSION)?;
        let mut s = IoApicState {
            select: r.u8()?,
            id: r.u32()?,
            ..IoApicState::default()
        };
        for e in &mut s.redirection {
            *e = r.u64()?;
        }
        s.levels = r.u32()?;
        s.irr = r.u32()?;
        if (s.levels | s.irr) >> PINS != 0 {
            return Err(r.invalid(format!(
                "pin bits beyond pin {}: levels {:#x}, requests {:#x}",
                PINS - 1,
                s.levels,
                s.irr
            )));
        }
        r.finish()?;
        Ok(s)
    }
}

/// The I/O APIC.
#[derive(Debug, Clone, Default)]
pub struct IoApic {
    s: IoApicState,
}

impl IoApic {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn state(&self) -> IoApicState {
        self.s
    }

    pub fn set_state(&mut self, s: IoApicState) {
        self.s = s;
    }

    /// Drive input `pin` to `asserted`; returns the messages that causes.
    pub fn set_irq(&mut self, pin: usize, asserted: bool) -> Vec<Delivery> {
        if pin >= PINS {
            return Vec::new();
        }
        let m = 1u32 << pin;
        let was = self.s.levels & m != 0;
        if asserted {
            self.s.levels |= m;
        } else {
            self.s.levels &= !m;
        }
        let level = self.s.redirection[pin] & RTE_LEVEL != 0;
        if level {
            if asserted {
                self.s.irr |= m;
            } else {
                self.s.irr &= !m;
            }
        } else if asserted && !was {
            self.s.irr |= m;
        }
        self.service()
    }

    /// Whether an unmasked entry delivers ExtINT: the 8259A's output then reaches the CPU
    /// through this I/O APIC (the "virtual wire through the I/O APIC" mode, MP spec 3.6.2.2).
    pub fn routes_extint(&self) -> bool {
        self.s.redirection.iter().any(|&e| {
            e & RTE_MASKED == 0
                && DeliveryMode::from_bits(((e >> RTE_DELIVERY_MODE_SHIFT) & 7) as u8)
                    == DeliveryMode::ExtInt
        })
    }

    /// Deliver every request an unmasked entry can send now.
    fn service(&mut self) -> Vec<Delivery> {
        let mut out = Vec::new();
        for pin in 0..PINS {
            let m = 1u32 << pin;
            if self.s.irr & m == 0 {
                continue;
            }
            let e = self.s.redirection[pin];
            if e & RTE_MASKED != 0 {
                continue;
            }
            let level = e & RTE_LEVEL != 0;
            if level {
                if e & RTE_REMOTE_IRR != 0 {
                    continue;
                }
                self.s.redirection[pin] |= RTE_REMOTE_IRR;
            } else {
                self.s.irr &= !m;
            }
            out.push(Delivery {
                vector: (e & RTE_VECTOR) as u8,
                mode: DeliveryMode::from_bits(((e >> RTE_DELIVERY_MODE_SHIFT) & 7) as u8),
                level,
                logical: e & RTE_DEST_LOGICAL != 0,
                dest: (e >> RTE_DEST_SHIFT) as u8,
            });
        }
        out
    }

    /// The EOI of `vector` broadcast by a local APIC (or written to the EOI register): Remote
    /// IRR of level entries with that vector clears, and a line still asserted delivers again.
    pub fn eoi(&mut self, vector: u8) -> Vec<Delivery> {
        for e in &mut self.s.redirection {
            if *e & RTE_LEVEL != 0 && (*e & RTE_VECTOR) as u8 == vector {
                *e &= !RTE_REMOTE_IRR;
            }
        }
        self.service()
    }

    fn read_register(&self) -> u32 {
        let sel = self.s.select;
        match sel {
            REG_ID => self.s.id,
            REG_VERSION => VERSION,
            REG_ARBITRATION => self.s.id,
            _ if sel >= REG_REDIRECTION && usize::from(sel - REG_REDIRECTION) < 2 * PINS => {
                let i = usize::from(sel - REG_REDIRECTION);
                let e = self.s.redirection[i / 2];
                if i % 2 == 0 {
                    e as u32
                } else {
                    (e >> 32) as u32
                }
            }
            _ => 0xffff_ffff,
        }
    }

    fn write_register(&mut self, v: u32) -> Vec<Delivery> {
        let sel = self.s.select;
        match sel {
            REG_ID => self.s.id = v & 0x0f00_0000,
            _ if sel >= REG_REDIRECTION && usize::from(sel - REG_REDIRECTION) < 2 * PINS => {
                let i = usize::from(sel - REG_REDIRECTION);
                let pin = i / 2;
                let old = self.s.redirection[pin];
                let new = if i % 2 == 0 {
                    (old & !0xffff_ffff) | u64::from(v)
                } else {
                    (old & 0xffff_ffff) | (u64::from(v) << 32)
                };
                let mut e = (new & RTE_WRITABLE) | (old & (RTE_REMOTE_IRR | RTE_DELIVERY_STATUS));
                if e & RTE_LEVEL == 0 {
                    // Remote IRR is undefined for edge entries: keep it clear.
                    e &= !RTE_REMOTE_IRR;
                }
                self.s.redirection[pin] = e;
                let m = 1u32 << pin;
                if e & RTE_LEVEL != 0 {
                    // A level entry requests exactly while its line is asserted.
                    self.s.irr = (self.s.irr & !m) | (self.s.levels & m);
                }
                return self.service();
            }
            _ => log::debug!("write to read-only I/O APIC register {sel:#x} ignored"),
        }
        Vec::new()
    }

    /// MMIO read of the register window.
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let v: u32 = match offset & !3 {
            IOREGSEL => u32::from(self.s.select),
            IOWIN => self.read_register(),
            _ => 0,
        };
        let within = (offset & 3) as usize;
        let bytes = v.to_le_bytes();
        let n = data.len().min(4 - within);
        data[..n].copy_from_slice(&bytes[within..within + n]);
    }

    /// MMIO write; returns the messages it causes (unmasking a pending pin, EOI register).
    pub fn mmio_write(&mut self, offset: u64, data: &[u8]) -> Vec<Delivery> {
        let mut b = [0u8; 4];
        let n = data.len().min(4);
        b[..n].copy_from_slice(&data[..n]);
        let v = u32::from_le_bytes(b);
        match offset {
            IOREGSEL => {
                self.s.select = v as u8;
                Vec::new()
            }
            IOWIN if n == 4 => self.write_register(v),
            EOI => self.eoi(v as u8),
            _ => {
                log::debug!("I/O APIC write of {n} bytes at {offset:#x} ignored");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(io: &mut IoApic, pin: u8, low: u32, high: u32) -> Vec<Delivery> {
        io.mmio_write(
            IOREGSEL,
            &u32::from(REG_REDIRECTION + 2 * pin + 1).to_le_bytes(),
        );
        io.mmio_write(IOWIN, &high.to_le_bytes());
        io.mmio_write(
            IOREGSEL,
            &u32::from(REG_REDIRECTION + 2 * pin).to_le_bytes(),
        );
        io.mmio_write(IOWIN, &low.to_le_bytes())
    }

    fn read(io: &mut IoApic, index: u8) -> u32 {
        io.mmio_write(IOREGSEL, &u32::from(index).to_le_bytes());
        let mut b = [0u8; 4];
        io.mmio_read(IOWIN, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn version_and_reset_masks() {
        let mut io = IoApic::new();
        assert_eq!(read(&mut io, REG_VERSION), 0x0017_0020);
        assert_eq!(read(&mut io, REG_REDIRECTION + 4), RTE_MASKED as u32);
        // A masked pin delivers nothing.
        assert!(io.set_irq(2, true).is_empty());
    }

    #[test]
    fn edge_pin_delivers_on_rising_edges_and_holds_masked_edges() {
        let mut io = IoApic::new();
        assert!(program(&mut io, 2, 0x30, 0).is_empty());
        let d = io.set_irq(2, true);
        assert_eq!(
            d,
            vec![Delivery {
                vector: 0x30,
                mode: DeliveryMode::Fixed,
                level: false,
                logical: false,
                dest: 0
            }]
        );
        assert!(io.set_irq(2, true).is_empty(), "no new edge");
        io.set_irq(2, false);
        program(&mut io, 2, 0x30 | RTE_MASKED as u32, 0);
        assert!(io.set_irq(2, true).is_empty());
        io.set_irq(2, false);
        assert_eq!(program(&mut io, 2, 0x30, 0).len(), 1, "held edge on unmask");
    }

    #[test]
    fn level_pin_remote_irr_and_eoi() {
        let mut io = IoApic::new();
        program(
            &mut io,
            9,
            0x49 | RTE_LEVEL as u32 | RTE_DEST_LOGICAL as u32,
            1 << 24,
        );
        let d = io.set_irq(9, true);
        assert_eq!(d.len(), 1);
        assert!(d[0].level && d[0].logical && d[0].dest == 1);
        assert_ne!(
            read(&mut io, REG_REDIRECTION + 18) & RTE_REMOTE_IRR as u32,
            0
        );
        // Remote IRR blocks re-delivery until the EOI; the line is still high: again.
        assert!(io.set_irq(9, true).is_empty());
        assert_eq!(io.eoi(0x49).len(), 1);
        io.set_irq(9, false);
        assert!(io.eoi(0x49).is_empty());
        assert_eq!(
            read(&mut io, REG_REDIRECTION + 18) & RTE_REMOTE_IRR as u32,
            0
        );
        // The EOI register (version 0x20) does the same.
        io.set_irq(9, true);
        assert!(io.mmio_write(EOI, &[0x49, 0, 0, 0]).len() == 1);
    }

    #[test]
    fn extint_routing_is_seen() {
        let mut io = IoApic::new();
        assert!(!io.routes_extint());
        program(&mut io, 0, 0x700, 0);
        assert!(io.routes_extint());
    }

    #[test]
    fn state_survives_bytes_and_corruption_is_an_error() {
        let mut io = IoApic::new();
        program(&mut io, 4, 0x34, 0);
        io.set_irq(1, true);
        let blob = io.state().to_bytes();
        let mut copy = IoApic::new();
        copy.set_state(IoApicState::from_bytes(&blob).unwrap());
        assert_eq!(copy.state(), io.state());
        for n in 0..blob.len() {
            assert!(IoApicState::from_bytes(&blob[..n]).is_err());
        }
        let mut bad = blob.clone();
        let at = bad.len() - 1;
        bad[at] = 0x80; // a request on pin 31
        assert!(matches!(
            IoApicState::from_bytes(&bad),
            Err(StateError::Invalid { .. })
        ));
    }
}
