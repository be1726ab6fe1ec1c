//! Time as devices see it. Devices never read the host clock themselves: they are given a
//! [`Clock`], so tests drive time by hand and runs can be made deterministic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A monotonic clock in nanoseconds since an arbitrary start.
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> u64;
}

/// The host's monotonic clock.
#[derive(Debug, Clone)]
pub struct HostClock {
    start: Instant,
    /// The reading at `start`: non-zero for a machine restored from a snapshot, whose devices
    /// hold times from the machine that took it.
    offset_ns: u64,
}

impl Default for HostClock {
    fn default() -> Self {
        Self::starting_at(0)
    }
}

impl HostClock {
    /// A clock that reads `ns` now and advances with the host from there.
    pub fn starting_at(ns: u64) -> Self {
        Self {
            start: Instant::now(),
            offset_ns: ns,
        }
    }
}

impl Clock for HostClock {
    fn now_ns(&self) -> u64 {
        self.offset_ns
            .saturating_add(self.start.elapsed().as_nanos() as u64)
    }
}

/// A clock that moves only when told to (tests, deterministic replay).
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn advance_ns(&self, ns: u64) {
        self.0.fetch_add(ns, Ordering::AcqRel);
    }
    pub fn set_ns(&self, ns: u64) {
        self.0.store(ns, Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// A [`ManualClock`] that counts its readings, for tests of code that must not read the
/// clock on its hot paths.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub(crate) struct CountingClock {
    pub time: ManualClock,
    readings: Arc<AtomicU64>,
}

#[cfg(test)]
impl CountingClock {
    /// Times the clock was read so far.
    pub fn readings(&self) -> u64 {
        self.readings.load(Ordering::Acquire)
    }
}

#[cfg(test)]
impl Clock for CountingClock {
    fn now_ns(&self) -> u64 {
        self.readings.fetch_add(1, Ordering::AcqRel);
        self.time.now_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_clock_continues_from_its_start() {
        let c = HostClock::starting_at(5_000_000_000);
        let a = c.now_ns();
        assert!(a >= 5_000_000_000);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(c.now_ns() >= a + 2_000_000);
    }
}
