//! The PC's interrupt wiring: the 8259A pair, the I/O APIC and the local APIC of the one CPU.
//!
//! - ISA IRQ lines go to both the 8259A and the I/O APIC ([`PcInterrupts::set_isa_irq`]); IRQ 0
//!   (the PIT) enters the I/O APIC at pin 2, as on PCs (the MADT has the matching interrupt
//!   source override), every other ISA IRQ at the pin of its number.
//! - I/O APIC messages go to the local APIC; a level-triggered EOI in the local APIC is
//!   broadcast back to the I/O APIC (SDM Vol. 3A 11.8.5).
//! - The 8259A's INTR reaches the CPU through the local APIC's LINT0 in ExtINT mode, when the
//!   local APIC is globally disabled, or through an I/O APIC entry in ExtINT mode (virtual wire).
//! - The CPU's INTR/INTA: [`PcInterrupts`] is the machine's [`InterruptController`]. Local APIC
//!   vectors above the processor priority come first (as in QEMU), then the 8259A.
//!
//! Each chip sits behind its own mutex and no two are ever held at once, so devices raising
//! IRQs (with their own lock held), the CPU and MMIO accesses cannot deadlock.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::bus::{BusDevice, InterruptController, TimerSource};
use crate::ioapic::{Delivery, DeliveryMode, IoApic};
use crate::lapic::LocalApic;
use crate::pic::Pic;

/// The I/O APIC input of ISA IRQ `irq` on a PC: IRQ 0 is wired to pin 2 (pin 0 carries the
/// 8259A's output), the others to their own number.
pub fn isa_irq_to_gsi(irq: u8) -> usize {
    if irq == 0 {
        2
    } else {
        usize::from(irq)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shared handles to the three interrupt controllers; clones share them.
#[derive(Clone)]
pub struct PcInterrupts {
    pub pic: Arc<Mutex<Pic>>,
    pub ioapic: Arc<Mutex<IoApic>>,
    pub lapic: Arc<Mutex<LocalApic>>,
}

impl PcInterrupts {
    pub fn new(
        pic: Arc<Mutex<Pic>>,
        ioapic: Arc<Mutex<IoApic>>,
        lapic: Arc<Mutex<LocalApic>>,
    ) -> Self {
        Self { pic, ioapic, lapic }
    }

    /// Drive ISA IRQ line `irq` (0-15) on the 8259A and on the I/O APIC.
    pub fn set_isa_irq(&self, irq: u8, level: bool) {
        lock(&self.pic).set_irq(irq, level);
        let d = lock(&self.ioapic).set_irq(isa_irq_to_gsi(irq), level);
        self.deliver(&d);
    }

    /// A rising and falling edge on ISA IRQ `irq` (a timer tick).
    pub fn pulse_isa_irq(&self, irq: u8) {
        self.set_isa_irq(irq, true);
        self.set_isa_irq(irq, false);
    }

    /// Whether an earlier interrupt of ISA IRQ `irq` still waits to be taken by the CPU on a
    /// path that reaches it: held in the I/O APIC or in the local APIC's IRR (unmasked pin), or
    /// in the 8259A's IRR (unmasked, with the 8259A connected). A timer catching up missed
    /// periods waits for this to clear, or the interrupts would merge.
    pub fn isa_irq_pending(&self, irq: u8) -> bool {
        let gsi = isa_irq_to_gsi(irq);
        let io = lock(&self.ioapic).state();
        let entry = io.redirection[gsi];
        if entry & crate::ioapic::RTE_MASKED == 0
            && (io.irr & (1 << gsi) != 0 || lock(&self.lapic).is_requested(entry as u8))
        {
            return true;
        }
        if !self.pic_connected() {
            return false;
        }
        let pic = lock(&self.pic).state();
        let (chip, bit) = if irq < 8 {
            (pic.master, irq)
        } else {
            (pic.slave, irq - 8)
        };
        chip.irr & !chip.imr & (1 << bit) != 0
    }

    /// A closure driving ISA IRQ `irq`, for devices that take an interrupt line
    /// (`crate::serial::IrqLine`).
    pub fn isa_line(&self, irq: u8) -> crate::serial::IrqLine {
        let me = self.clone();
        Box::new(move |level| me.set_isa_irq(irq, level))
    }

    /// Hand I/O APIC messages to the local APIC (the only one there is).
    fn deliver(&self, messages: &[Delivery]) {
        if messages.is_empty() {
            return;
        }
        let mut lapic = lock(&self.lapic);
        for d in messages {
            match d.mode {
                DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                    if lapic.matches_destination(d.dest, d.logical) {
                        lapic.accept(d.vector, d.level);
                    } else {
                        log::debug!("I/O APIC message {d:?} matches no local APIC");
                    }
                }
                // The CPU takes ExtINT from the 8259A when it samples INTR (`routes_extint`).
                DeliveryMode::ExtInt => {}
                other => log::debug!("I/O APIC delivery mode {other:?} not wired: {d:?}"),
            }
        }
    }

    /// A level-triggered EOI from the local APIC, broadcast to the I/O APIC.
    fn broadcast_eoi(&self, vector: u8) {
        let d = lock(&self.ioapic).eoi(vector);
        self.deliver(&d);
    }

    /// Whether the 8259A's output may reach the CPU now.
    fn pic_connected(&self) -> bool {
        lock(&self.lapic).passes_pic_through() || lock(&self.ioapic).routes_extint()
    }
}

impl InterruptController for PcInterrupts {
    fn has_interrupt(&self) -> bool {
        if lock(&self.lapic).pending_vector().is_some() {
            return true;
        }
        self.pic_connected() && lock(&self.pic).has_interrupt()
    }

    fn acknowledge(&mut self) -> Option<u8> {
        if let Some(v) = lock(&self.lapic).acknowledge() {
            return Some(v);
        }
        if self.pic_connected() {
            lock(&self.pic).acknowledge()
        } else {
            None
        }
    }

    fn task_priority(&self) -> Option<u8> {
        Some(lock(&self.lapic).tpr())
    }

    fn set_task_priority(&mut self, tpr: u8) {
        lock(&self.lapic).set_tpr(tpr);
    }

    fn set_apic_base(&mut self, value: u64) {
        lock(&self.lapic).set_apic_base(value);
    }
}

/// The local APIC's page on the MMIO bus.
pub struct LapicMmio(pub PcInterrupts);

impl BusDevice for LapicMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        lock(&self.0.lapic).mmio_read(offset, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        let eoi = lock(&self.0.lapic).mmio_write(offset, data);
        if let Some(vector) = eoi {
            self.0.broadcast_eoi(vector);
        }
    }
}

/// The I/O APIC's window on the MMIO bus.
pub struct IoApicMmio(pub PcInterrupts);

impl BusDevice for IoApicMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        lock(&self.0.ioapic).mmio_read(offset, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        let d = lock(&self.0.ioapic).mmio_write(offset, data);
        self.0.deliver(&d);
    }
}

/// The local APIC timer as one of the machine's timers.
pub struct LapicTimer(pub Arc<Mutex<LocalApic>>);

impl TimerSource for LapicTimer {
    fn poll(&mut self) {
        lock(&self.0).poll_timer();
    }
    fn next_event_in_ns(&self) -> Option<u64> {
        lock(&self.0).next_timer_in_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::lapic::{reg, LVT_DM_EXTINT, SVR_ENABLE};

    fn machine() -> (PcInterrupts, ManualClock) {
        let clock = ManualClock::new();
        let irqs = PcInterrupts::new(
            Arc::new(Mutex::new(Pic::new())),
            Arc::new(Mutex::new(IoApic::new())),
            Arc::new(Mutex::new(LocalApic::new(Arc::new(clock.clone())))),
        );
        (irqs, clock)
    }

    /// Linux's 8259A setup: vectors 0x30/0x38, only IRQ 0 unmasked.
    fn init_pic(p: &mut Pic) {
        for (port, v) in [(0, 0x11), (1, 0x30), (1, 4), (1, 1), (1, 0xfe)] {
            p.write_port(0, port, v);
        }
        for (port, v) in [(0, 0x11), (1, 0x38), (1, 2), (1, 1), (1, 0xff)] {
            p.write_port(1, port, v);
        }
    }

    fn ioapic_write(irqs: &PcInterrupts, index: u32, v: u32) {
        let mut m = IoApicMmio(irqs.clone());
        m.write(0, &index.to_le_bytes());
        m.write(0x10, &v.to_le_bytes());
    }

    #[test]
    fn pic_reaches_the_cpu_only_through_virtual_wire() {
        let (mut irqs, _) = machine();
        init_pic(&mut lock(&irqs.pic));
        irqs.pulse_isa_irq(0);
        assert!(!irqs.has_interrupt(), "LINT0 is masked after reset");
        let mut m = LapicMmio(irqs.clone());
        m.write(reg::SVR, &(SVR_ENABLE | 0xff).to_le_bytes());
        m.write(reg::LVT_LINT0, &LVT_DM_EXTINT.to_le_bytes());
        assert!(irqs.has_interrupt());
        assert_eq!(irqs.acknowledge(), Some(0x30));
    }

    #[test]
    fn pit_through_ioapic_pin2_with_level_eoi_broadcast() {
        let (mut irqs, _) = machine();
        let mut m = LapicMmio(irqs.clone());
        m.write(reg::SVR, &(SVR_ENABLE | 0xff).to_le_bytes());
        ioapic_write(&irqs, 0x10 + 4, 0x31);
        irqs.pulse_isa_irq(0);
        assert!(irqs.has_interrupt());
        assert!(irqs.isa_irq_pending(0), "waits in the local APIC's IRR");
        assert_eq!(irqs.acknowledge(), Some(0x31));
        assert!(!irqs.isa_irq_pending(0));
        m.write(reg::EOI, &[0; 4]);
        // COM1 as a level-triggered pin: re-delivered after EOI while still asserted.
        ioapic_write(&irqs, 0x10 + 8, 0x34 | (1 << 15));
        irqs.set_isa_irq(4, true);
        assert_eq!(irqs.acknowledge(), Some(0x34));
        assert_eq!(irqs.acknowledge(), None);
        m.write(reg::EOI, &[0; 4]);
        assert_eq!(irqs.acknowledge(), Some(0x34));
        irqs.set_isa_irq(4, false);
        m.write(reg::EOI, &[0; 4]);
        assert!(!irqs.has_interrupt());
    }

    #[test]
    fn cr8_view_and_apic_base() {
        let (mut irqs, _) = machine();
        irqs.set_task_priority(0x50);
        assert_eq!(irqs.task_priority(), Some(0x50));
        init_pic(&mut lock(&irqs.pic));
        irqs.set_apic_base(crate::lapic::DEFAULT_BASE);
        irqs.pulse_isa_irq(0);
        assert_eq!(
            irqs.acknowledge(),
            Some(0x30),
            "APIC off: the PIC is wired directly"
        );
    }
}
