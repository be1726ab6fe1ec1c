//! The ACPI power-management timer (ACPI 6.5 4.8.3.3): a free-running 24-bit counter at
//! 3.579545 MHz in the PM register block, at port 0x608 as on QEMU's PIIX4 PM.
//!
//! Operating systems use it as a clock that needs no programming: Linux calibrates the TSC
//! against it when the PIT calibration is unreliable (an emulated CPU's loop timing jitters)
//! and keeps it as a clocksource watchdog. It is read-only and derived from the machine clock,
//! so it has no state of its own to snapshot: a restored clock continues the count. The
//! overflow status bit (PM1_STS.TMR_STS) and its SCI are not modelled; the FADT does not claim
//! the 32-bit TMR_VAL_EXT width.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::clock::Clock;

/// The PM timer's I/O port: the PM1 event block at 0x600 plus 8, where SeaBIOS and QEMU put it.
pub const PM_TMR_PORT: u16 = 0x608;
/// PM_TMR_LEN in the FADT: one 32-bit register.
pub const PM_TMR_LEN: u64 = 4;
/// The timer's rate in Hz (ACPI 6.5 4.8.3.3: 3.579545 MHz).
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// TMR_VAL is 24 bits wide unless the FADT sets TMR_VAL_EXT.
const PM_TMR_MASK: u32 = 0x00ff_ffff;

/// The PM timer register, counting the machine clock.
pub struct PmTimer {
    clock: Arc<dyn Clock>,
}

impl PmTimer {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }

    /// TMR_VAL now.
    pub fn value(&self) -> u32 {
        let ticks = u128::from(self.clock.now_ns()) * u128::from(PM_TIMER_HZ) / 1_000_000_000;
        (ticks as u32) & PM_TMR_MASK
    }
}

impl BusDevice for PmTimer {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = self.value().to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = v.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // TMR_VAL is read-only (ACPI 6.5 Table 4.16); writes are ignored, as on hardware.
        log::debug!("write of {data:02x?} to the PM timer at +{offset} ignored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn counts_at_3_579545_mhz_and_wraps_at_24_bits() {
        let clock = ManualClock::new();
        let mut t = PmTimer::new(Arc::new(clock.clone()));
        assert_eq!(t.value(), 0);
        clock.set_ns(1_000_000_000);
        assert_eq!(t.value(), 3_579_545);
        let mut r = [0u8; 4];
        t.read(0, &mut r);
        assert_eq!(u32::from_le_bytes(r), 3_579_545);
        // 2^24 ticks is about 4.687 s; at 5 s the count has wrapped once.
        clock.set_ns(5_000_000_000);
        assert_eq!(t.value(), (5 * 3_579_545) & 0xff_ffff);
        // Byte reads see the same little-endian register; writes change nothing.
        t.write(0, &[0xff; 4]);
        let mut hi = [0u8; 1];
        t.read(2, &mut hi);
        assert_eq!(hi[0], (((5 * 3_579_545u32) & 0xff_ffff) >> 16) as u8);
    }
}
