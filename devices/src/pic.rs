//! The 8259A programmable interrupt controller pair of the PC (master at 0x20, slave at 0xA0
//! cascaded on the master's IRQ 2), with the ELCR edge/level registers at 0x4D0/0x4D1.
//!
//! Semantics follow the Intel 8259A datasheet (ICW1-4, OCW1-3, fully nested priority with
//! rotation, specific/non-specific EOI, auto-EOI, poll mode) the way PC firmware and Linux use
//! them. The pair lives in user space for every backend, so moving a guest between backends
//! never translates in-kernel irqchip state: [`PicState`] is the whole story.

use crate::state::{StateError, StateReader, StateWriter};

/// Master command/data ports.
pub const MASTER_PORT: u16 = 0x20;
/// Slave command/data ports.
pub const SLAVE_PORT: u16 = 0xa0;
/// Edge/level control registers (one byte per chip).
pub const ELCR_PORT: u16 = 0x4d0;
/// The master input the slave is cascaded to.
pub const CASCADE_IRQ: u8 = 2;

/// ICW1 bits.
const ICW1_IC4: u8 = 0x01;
const ICW1_SNGL: u8 = 0x02;
const ICW1_INIT: u8 = 0x10;
/// ICW4 bits.
const ICW4_AEOI: u8 = 0x02;
const ICW4_SFNM: u8 = 0x10;
/// OCW3 bits.
const OCW3_SELECT: u8 = 0x08;
const OCW3_POLL: u8 = 0x04;
const OCW3_READ_REG: u8 = 0x02;
const OCW3_READ_ISR: u8 = 0x01;
const OCW3_SMM_SELECT: u8 = 0x40;
const OCW3_SMM: u8 = 0x20;

/// Everything one 8259A holds, for snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChipState {
    pub irr: u8,
    pub imr: u8,
    pub isr: u8,
    /// Input levels last seen, for edge detection.
    pub last_level: u8,
    /// Lowest-priority rotation: IRQ `priority_add` has the highest priority.
    pub priority_add: u8,
    pub vector_base: u8,
    pub read_isr: bool,
    pub poll: bool,
    pub special_mask: bool,
    /// 0 = ready, 1 = expecting ICW2, 2 = ICW3, 3 = ICW4.
    pub init_step: u8,
    pub needs_icw4: bool,
    pub single: bool,
    pub auto_eoi: bool,
    pub rotate_on_auto_eoi: bool,
    pub special_fully_nested: bool,
    /// ELCR: 1 bits are level-triggered inputs.
    pub elcr: u8,
}

impl ChipState {
    fn priority(&self, mask: u8) -> Option<u8> {
        if mask == 0 {
            return None;
        }
        (0..8u8).find(|p| mask & (1 << ((p + self.priority_add) & 7)) != 0)
    }

    /// The highest-priority request that may interrupt what is in service.
    fn pending_irq(&self, is_master: bool) -> Option<u8> {
        let p = self.priority(self.irr & !self.imr)?;
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        if is_master && self.special_fully_nested {
            in_service &= !(1 << CASCADE_IRQ);
        }
        match self.priority(in_service) {
            Some(cur) if cur <= p => None,
            _ => Some((p + self.priority_add) & 7),
        }
    }

    fn set_level(&mut self, irq: u8, high: bool) {
        let m = 1u8 << irq;
        if self.elcr & m != 0 {
            if high {
                self.irr |= m;
                self.last_level |= m;
            } else {
                self.irr &= !m;
                self.last_level &= !m;
            }
        } else if high {
            if self.last_level & m == 0 {
                self.irr |= m;
            }
            self.last_level |= m;
        } else {
            self.last_level &= !m;
        }
    }

    /// Acknowledge `irq`: move it from IRR to ISR (unless auto-EOI).
    fn ack(&mut self, irq: u8) {
        let m = 1u8 << irq;
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.priority_add = (irq + 1) & 7;
            }
        } else {
            self.isr |= m;
        }
        // Level-triggered inputs stay requested while the line is high.
        if self.elcr & m == 0 {
            self.irr &= !m;
        }
    }

    fn reset_for_icw1(&mut self) {
        let elcr = self.elcr;
        *self = ChipState {
            elcr,
            ..ChipState::default()
        };
    }

    fn write(&mut self, port_offset: u64, v: u8) {
        if port_offset == 0 {
            if v & ICW1_INIT != 0 {
                self.reset_for_icw1();
                self.init_step = 1;
                self.needs_icw4 = v & ICW1_IC4 != 0;
                self.single = v & ICW1_SNGL != 0;
            } else if v & OCW3_SELECT != 0 {
                if v & OCW3_POLL != 0 {
                    self.poll = true;
                }
                if v & OCW3_READ_REG != 0 {
                    self.read_isr = v & OCW3_READ_ISR != 0;
                }
                if v & OCW3_SMM_SELECT != 0 {
                    self.special_mask = v & OCW3_SMM != 0;
                }
            } else {
                self.ocw2(v);
            }
            return;
        }
        match self.init_step {
            0 => self.imr = v,
            1 => {
                self.vector_base = v & 0xf8;
                self.init_step = if self.single {
                    if self.needs_icw4 {
                        3
                    } else {
                        0
                    }
                } else {
                    2
                };
            }
            2 => self.init_step = if self.needs_icw4 { 3 } else { 0 },
            _ => {
                self.special_fully_nested = v & ICW4_SFNM != 0;
                self.auto_eoi = v & ICW4_AEOI != 0;
                self.init_step = 0;
            }
        }
    }

    /// OCW2: EOI and rotation commands (R, SL, EOI bits 7..5; level in bits 2..0).
    fn ocw2(&mut self, v: u8) {
        let level = v & 7;
        match v >> 5 {
            // Non-specific EOI, optionally rotating.
            cmd @ (1 | 5) => {
                if let Some(p) = self.priority(self.isr) {
                    let irq = (p + self.priority_add) & 7;
                    self.isr &= !(1 << irq);
                    if cmd == 5 {
                        self.priority_add = (irq + 1) & 7;
                    }
                }
            }
            // Specific EOI, optionally rotating.
            cmd @ (3 | 7) => {
                self.isr &= !(1 << level);
                if cmd == 7 {
                    self.priority_add = (level + 1) & 7;
                }
            }
            // Rotate in auto-EOI mode set / clear.
            4 => self.rotate_on_auto_eoi = true,
            0 => self.rotate_on_auto_eoi = false,
            // Set priority.
            6 => self.priority_add = (level + 1) & 7,
            _ => {}
        }
    }
}

/// Both chips, for snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PicState {
    pub master: ChipState,
    pub slave: ChipState,
}

/// Layout version of [`PicState::to_bytes`].
const STATE_VERSION: u8 = 1;
const STATE_NAME: &str = "pic";

impl ChipState {
    fn save(&self, w: &mut StateWriter) {
        w.u8(self.irr)
            .u8(self.imr)
            .u8(self.isr)
            .u8(self.last_level)
            .u8(self.priority_add)
            .u8(self.vector_base)
            .bool(self.read_isr)
            .bool(self.poll)
            .bool(self.special_mask)
            .u8(self.init_step)
            .bool(self.needs_icw4)
            .bool(self.single)
            .bool(self.auto_eoi)
            .bool(self.rotate_on_auto_eoi)
            .bool(self.special_fully_nested)
            .u8(self.elcr);
    }

    fn load(r: &mut StateReader) -> Result<Self, StateError> {
        let c = ChipState {
            irr: r.u8()?,
            imr: r.u8()?,
            isr: r.u8()?,
            last_level: r.u8()?,
            priority_add: r.u8()?,
            vector_base: r.u8()?,
            read_isr: r.bool()?,
            poll: r.bool()?,
            special_mask: r.bool()?,
            init_step: r.u8()?,
            needs_icw4: r.bool()?,
            single: r.bool()?,
            auto_eoi: r.bool()?,
            rotate_on_auto_eoi: r.bool()?,
            special_fully_nested: r.bool()?,
            elcr: r.u8()?,
        };
        if c.priority_add > 7 || c.init_step > 3 {
            return Err(r.invalid(format!(
                "priority rotation {} / initialisation step {} out of range",
                c.priority_add, c.init_step
            )));
        }
        Ok(c)
    }
}

impl PicState {
    /// The state as a snapshot blob.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = StateWriter::new(STATE_VERSION);
        self.master.save(&mut w);
        self.slave.save(&mut w);
        w.finish()
    }

    /// Read a blob written by [`PicState::to_bytes`].
    pub fn from_bytes(blob: &[u8]) -> Result<Self, StateError> {
        let mut r = StateReader::new(blob, STATE_NAME, STATE_VERSION)?;
        let s = PicState {
            master: ChipState::load(&mut r)?,
            slave: ChipState::load(&mut r)?,
        };
        r.finish()?;
        Ok(s)
    }
}

/// The cascaded 8259A pair. Devices raise lines with [`Pic::set_irq`]; the CPU side asks
/// [`Pic::has_interrupt`] and takes a vector with [`Pic::acknowledge`].
#[derive(Debug, Clone, Default)]
pub struct Pic {
    s: PicState,
}

impl Pic {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_state(s: PicState) -> Self {
        Self { s }
    }

    pub fn state(&self) -> PicState {
        self.s
    }

    /// Replace the device's state (snapshot restore).
    pub fn set_state(&mut self, s: PicState) {
        self.s = s;
    }

    /// Drive ISA line `irq` (0-15) high or low.
    pub fn set_irq(&mut self, irq: u8, high: bool) {
        if irq < 8 {
            self.s.master.set_level(irq, high);
        } else if irq < 16 {
            self.s.slave.set_level(irq - 8, high);
        }
        self.update_cascade();
    }

    /// The slave's output drives the master's IRQ 2 input as a level.
    fn update_cascade(&mut self) {
        let slave_out = self.s.slave.pending_irq(false).is_some();
        let m = 1u8 << CASCADE_IRQ;
        if slave_out {
            self.s.master.irr |= m;
        } else {
            self.s.master.irr &= !m;
        }
    }

    /// Whether the master's INT output is asserted.
    pub fn has_interrupt(&self) -> bool {
        self.s.master.pending_irq(true).is_some()
    }

    /// The INTA cycle: the vector of the highest-priority request, now in service. A request
    /// that vanished before INTA yields the spurious IRQ 7 (or 15) vector, as on hardware.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let irq = self.s.master.pending_irq(true)?;
        self.s.master.ack(irq);
        let vector = if irq == CASCADE_IRQ {
            match self.s.slave.pending_irq(false) {
                Some(sirq) => {
                    self.s.slave.ack(sirq);
                    self.s.slave.vector_base + sirq
                }
                None => self.s.slave.vector_base + 7,
            }
        } else {
            self.s.master.vector_base + irq
        };
        self.update_cascade();
        Some(vector)
    }

    /// Port read: `chip` 0 = master, 1 = slave; `offset` 0 = command, 1 = data.
    pub fn read_port(&mut self, chip: usize, offset: u64) -> u8 {
        let is_master = chip == 0;
        let c = if is_master {
            &mut self.s.master
        } else {
            &mut self.s.slave
        };
        if c.poll {
            c.poll = false;
            return match c.pending_irq(is_master) {
                Some(irq) => {
                    c.ack(irq);
                    0x80 | irq
                }
                None => 0,
            };
        }
        if offset == 0 {
            if c.read_isr {
                c.isr
            } else {
                c.irr
            }
        } else {
            c.imr
        }
    }

    pub fn write_port(&mut self, chip: usize, offset: u64, v: u8) {
        if chip == 0 {
            self.s.master.write(offset, v);
        } else {
            self.s.slave.write(offset, v);
        }
        self.update_cascade();
    }

    pub fn read_elcr(&self, chip: usize) -> u8 {
        if chip == 0 {
            self.s.master.elcr
        } else {
            self.s.slave.elcr
        }
    }

    /// ELCR writes; IRQ 0, 1, 2 (master) and 8, 13 (slave) are always edge (PIIX datasheet).
    pub fn write_elcr(&mut self, chip: usize, v: u8) {
        if chip == 0 {
            self.s.master.elcr = v & 0xf8;
        } else {
            self.s.slave.elcr = v & 0xde;
        }
    }
}

impl crate::bus::InterruptController for Pic {
    fn has_interrupt(&self) -> bool {
        Pic::has_interrupt(self)
    }
    fn acknowledge(&mut self) -> Option<u8> {
        Pic::acknowledge(self)
    }
}

/// Offsets relative to [`MASTER_PORT`] when the pair is attached as one device through
/// [`crate::bus::SharedDevice`] aliases: 0-1 master, 0x80-0x81 slave, 0x4B0-0x4B1 ELCR.
pub const SLAVE_OFFSET: u64 = (SLAVE_PORT - MASTER_PORT) as u64;
pub const ELCR_OFFSET: u64 = (ELCR_PORT - MASTER_PORT) as u64;

impl crate::bus::BusDevice for Pic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        data[0] = match offset {
            0 | 1 => self.read_port(0, offset),
            o if o == SLAVE_OFFSET || o == SLAVE_OFFSET + 1 => self.read_port(1, o - SLAVE_OFFSET),
            o if o == ELCR_OFFSET || o == ELCR_OFFSET + 1 => {
                self.read_elcr((o - ELCR_OFFSET) as usize)
            }
            _ => 0xff,
        };
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        let v = data[0];
        match offset {
            0 | 1 => self.write_port(0, offset, v),
            o if o == SLAVE_OFFSET || o == SLAVE_OFFSET + 1 => {
                self.write_port(1, o - SLAVE_OFFSET, v)
            }
            o if o == ELCR_OFFSET || o == ELCR_OFFSET + 1 => {
                self.write_elcr((o - ELCR_OFFSET) as usize, v)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The initialisation sequence PC BIOSes and Linux use: vectors 0x08/0x70 (BIOS) or
    /// 0x20/0x28 (Linux), cascade on IRQ 2, 8086 mode.
    fn init(pic: &mut Pic, master_base: u8, slave_base: u8) {
        pic.write_port(0, 0, 0x11);
        pic.write_port(0, 1, master_base);
        pic.write_port(0, 1, 0x04);
        pic.write_port(0, 1, 0x01);
        pic.write_port(1, 0, 0x11);
        pic.write_port(1, 1, slave_base);
        pic.write_port(1, 1, 0x02);
        pic.write_port(1, 1, 0x01);
        pic.write_port(0, 1, 0x00);
        pic.write_port(1, 1, 0x00);
    }

    #[test]
    fn master_irq_vector_and_eoi() {
        let mut pic = Pic::new();
        init(&mut pic, 0x20, 0x28);
        assert!(!pic.has_interrupt());
        pic.set_irq(0, true);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), Some(0x20));
        // In service: the same edge does not interrupt again, and lower priorities wait.
        assert!(!pic.has_interrupt());
        pic.set_irq(3, true);
        assert!(!pic.has_interrupt());
        // Read the ISR via OCW3.
        pic.write_port(0, 0, 0x0b);
        assert_eq!(pic.read_port(0, 0), 0x01);
        pic.write_port(0, 0, 0x20); // non-specific EOI
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), Some(0x23));
    }

    #[test]
    fn slave_irq_cascades_and_masking_works() {
        let mut pic = Pic::new();
        init(&mut pic, 0x08, 0x70);
        pic.write_port(1, 1, 0xff); // mask all slave inputs
        pic.set_irq(8, true);
        assert!(!pic.has_interrupt());
        pic.write_port(1, 1, 0x00);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), Some(0x70));
        pic.write_port(1, 0, 0x20);
        pic.write_port(0, 0, 0x20);
        assert!(!pic.has_interrupt());
    }

    #[test]
    fn edge_needs_a_new_rising_edge_level_does_not() {
        let mut pic = Pic::new();
        init(&mut pic, 0x20, 0x28);
        pic.set_irq(4, true);
        assert_eq!(pic.acknowledge(), Some(0x24));
        pic.write_port(0, 0, 0x20);
        assert!(
            !pic.has_interrupt(),
            "edge line held high must not re-trigger"
        );
        pic.write_elcr(0, 1 << 5);
        pic.set_irq(5, true);
        assert_eq!(pic.acknowledge(), Some(0x25));
        pic.write_port(0, 0, 0x20);
        assert!(pic.has_interrupt(), "level line still high re-triggers");
        pic.set_irq(5, false);
        assert!(!pic.has_interrupt());
    }

    #[test]
    fn state_round_trips() {
        let mut pic = Pic::new();
        init(&mut pic, 0x20, 0x28);
        pic.set_irq(1, true);
        let copy = Pic::from_state(pic.state());
        assert_eq!(copy.state(), pic.state());
        assert!(copy.has_interrupt());
    }

    #[test]
    fn state_survives_bytes_and_corruption_is_an_error() {
        let mut pic = Pic::new();
        init(&mut pic, 0x20, 0x28);
        pic.write_port(0, 1, 0xfa); // OCW1: IRQ 0 and 2 unmasked
        pic.set_irq(0, true);
        let blob = pic.state().to_bytes();
        let mut copy = Pic::new();
        copy.set_state(PicState::from_bytes(&blob).unwrap());
        assert_eq!(copy.state(), pic.state());
        assert_eq!(copy.acknowledge(), Some(0x20));
        for n in 0..blob.len() {
            assert!(PicState::from_bytes(&blob[..n]).is_err());
        }
        let mut bad = blob.clone();
        bad[10] = 9; // master init_step
        assert!(matches!(
            PicState::from_bytes(&bad),
            Err(StateError::Invalid { .. })
        ));
    }
}
