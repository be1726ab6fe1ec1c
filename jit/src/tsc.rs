//! The JIT's time-stamp counter: it advances with host time, not with retired instructions.
//!
//! Guests calibrate clocks against each other. Linux measures the TSC against the PIT and then
//! paces the local APIC timer's calibration by the TSC; SeaBIOS prints the CPU's MHz from the
//! same kind of measurement. The PIT and the APIC timer count emu's machine clock (host
//! monotonic time), so a TSC that counted instructions ran at whatever speed the JIT happened
//! to have (SeaBIOS saw "CPU Mhz=25", Linux rejected its APIC timer). This TSC ticks at
//! [`TSC_HZ`] of host time, like the invariant TSC of SDM Vol. 3B 18.17.1, and is strictly
//! increasing between two reads.
//!
//! `CpuState::tsc` holds the counter's value at the last [`TscClock::rebase`]; the JIT adds the
//! host time elapsed since. Reading the CPU state out folds the elapsed time in, so a snapshot
//! or a move to KVM carries the current value.

use std::time::Instant;

/// The TSC's rate: 1 GHz, the rate of emu's local APIC timer clock, so one tick is one
/// nanosecond of host time.
pub const TSC_HZ: u64 = 1_000_000_000;

/// Where the counter was at a host instant.
#[derive(Debug, Clone, Copy)]
pub struct TscClock {
    /// Host time at which the counter had the value in `CpuState::tsc`.
    epoch: Instant,
    /// The last value handed out, so two reads never return the same value.
    last: u64,
}

impl Default for TscClock {
    fn default() -> Self {
        Self::new()
    }
}

impl TscClock {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last: 0,
        }
    }

    /// The counter now, given its value `base` at the epoch.
    pub fn read(&mut self, base: u64) -> u64 {
        let ns = self.epoch.elapsed().as_nanos();
        let ticks = (ns * u128::from(TSC_HZ) / 1_000_000_000) as u64;
        let mut now = base.wrapping_add(ticks);
        // Strictly increasing while the base is not rewritten (WRMSR moves `last` along).
        if now.wrapping_sub(self.last) as i64 <= 0 && self.last != 0 {
            now = self.last.wrapping_add(1);
        }
        self.last = now;
        now
    }

    /// Start counting again from the current host instant (the caller stores the counter's
    /// present value as the new base).
    pub fn rebase(&mut self, base: u64) {
        self.epoch = Instant::now();
        self.last = base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_increase_strictly() {
        let mut c = TscClock::new();
        let mut prev = c.read(1000);
        assert!(prev >= 1000);
        for _ in 0..10_000 {
            let t = c.read(1000);
            assert!(t > prev, "{t} after {prev}");
            prev = t;
        }
    }

    #[test]
    fn advances_with_host_time() {
        let mut c = TscClock::new();
        let a = c.read(0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = c.read(0);
        // At 1 GHz, 20 ms is 20 million ticks; sleeping never returns early.
        assert!(b - a >= 20_000_000, "{}", b - a);
    }

    #[test]
    fn rebase_continues_from_the_new_base() {
        let mut c = TscClock::new();
        c.rebase(5_000_000_000);
        let t = c.read(5_000_000_000);
        assert!(t > 5_000_000_000);
        assert!(t < 5_000_000_000 + 10 * TSC_HZ, "{t}");
    }
}
