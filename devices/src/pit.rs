//! The 8254 programmable interval timer (ports 0x40-0x43) and the channel-2 gate/output bits of
//! system control port B (0x61), which firmware and Linux use to calibrate the TSC.
//!
//! Counters are not ticked: each remembers when it was loaded, and its count and output are
//! computed from the injected [`Clock`] when read (the approach of QEMU's i8254). The formulas
//! follow the Intel 82C54 datasheet's mode descriptions.

use std::sync::Arc;

use crate::clock::Clock;
use crate::state::{StateError, StateReader, StateWriter};

/// Input clock of the PC's 8254 (Hz).
pub const PIT_HZ: u64 = 1_193_182;
/// Channel data ports 0x40-0x42 and the mode/command register 0x43.
pub const PIT_PORT: u16 = 0x40;
/// System control port B.
pub const PORT_B: u16 = 0x61;
/// The most timer interrupts (as time) a periodic timer catches up after the CPU missed them.
/// Ticks beyond it are dropped, so a guest stopped for long (SIGSTOP, a debugger) does not come
/// back to an unbounded burst. It must be generous: Linux's early clocksource watchdog compares
/// the TSC (host time) with jiffies (counted ticks), and with 100 ms a loaded host that left
/// emu unscheduled for longer made Linux mark the TSC unstable ("skew is too large").
pub const MAX_TICK_BACKLOG_NS: u64 = 2_000_000_000;

/// Read/write access modes (control word bits 5-4).
const RW_LATCH: u8 = 0;
const RW_LSB: u8 = 1;
const RW_MSB: u8 = 2;
const RW_WORD: u8 = 3;

/// One counter's state, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelState {
    /// Reload value; 0 means 65536.
    pub reload: u32,
    pub mode: u8,
    pub rw: u8,
    pub bcd: bool,
    pub gate: bool,
    /// Clock time (ns) when counting started.
    pub load_ns: u64,
    /// Latched count, if a latch command is pending.
    pub latched: Option<u16>,
    /// Latched status byte, if a read-back status latch is pending.
    pub status_latched: Option<u8>,
    /// For word access: next read/write is the MSB.
    pub read_msb: bool,
    pub write_msb: bool,
    /// The LSB written so far in word mode.
    pub write_lsb: u8,
    /// Whether a count has been written since the mode was set.
    pub armed: bool,
    /// Period boundaries already reported by [`Pit::poll_irq0`].
    pub reported: u64,
}

impl Default for ChannelState {
    fn default() -> Self {
        Self {
            reload: 0x10000,
            mode: 0,
            rw: RW_WORD,
            bcd: false,
            gate: true,
            load_ns: 0,
            latched: None,
            status_latched: None,
            read_msb: false,
            write_msb: false,
            write_lsb: 0,
            armed: false,
            reported: 0,
        }
    }
}

impl ChannelState {
    fn ticks(&self, now_ns: u64) -> u64 {
        let dt = u128::from(now_ns.saturating_sub(self.load_ns));
        (dt * u128::from(PIT_HZ) / 1_000_000_000) as u64
    }

    fn count(&self, now_ns: u64) -> u16 {
        if !self.armed {
            return self.reload as u16;
        }
        let d = self.ticks(now_ns);
        let n = u64::from(self.reload);
        let v = match self.mode {
            2 => n - d % n,
            3 => n - (2 * d) % n,
            _ => n.wrapping_sub(d) & 0xffff,
        };
        v as u16
    }

    fn output(&self, now_ns: u64) -> bool {
        if !self.armed {
            return self.mode != 0;
        }
        let d = self.ticks(now_ns);
        let n = u64::from(self.reload);
        match self.mode {
            0 => d >= n,
            1 => d < n,
            2 => d % n != n - 1,
            3 => d % n < n.div_ceil(2),
            _ => d != n,
        }
    }

    /// Whether no terminal count is left to report, whatever the time: the channel is idle
    /// (not loaded, or its gate is low) or, in a mode other than 2 and 3, its single terminal
    /// count was reported. Lets the machine's timer polls skip the host clock.
    fn spent(&self) -> bool {
        !self.armed || !self.gate || (!matches!(self.mode, 2 | 3) && self.reported >= 1)
    }

    /// Number of IRQ-raising events (terminal counts) since loading.
    fn events(&self, now_ns: u64) -> u64 {
        if !self.armed || !self.gate {
            return 0;
        }
        let d = self.ticks(now_ns);
        let n = u64::from(self.reload);
        match self.mode {
            2 | 3 => d / n,
            _ => u64::from(d >= n),
        }
    }
}

/// The three channels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PitState {
    pub channels: [ChannelState; 3],
    /// Port B bit 1: speaker data enable (stored, no sound is made).
    pub speaker_enable: bool,
}

/// Layout version of [`PitState::to_bytes`].
const STATE_VERSION: u8 = 1;
const STATE_NAME: &str = "pit";

impl ChannelState {
    fn save(&self, w: &mut StateWriter) {
        w.u32(self.reload)
            .u8(self.mode)
            .u8(self.rw)
            .bool(self.bcd)
            .bool(self.gate)
            .u64(self.load_ns)
            .opt_u16(self.latched)
            .opt_u8(self.status_latched)
            .bool(self.read_msb)
            .bool(self.write_msb)
            .u8(self.write_lsb)
            .bool(self.armed)
            .u64(self.reported);
    }

    fn load(r: &mut StateReader) -> Result<Self, StateError> {
        let c = ChannelState {
            reload: r.u32()?,
            mode: r.u8()?,
            rw: r.u8()?,
            bcd: r.bool()?,
            gate: r.bool()?,
            load_ns: r.u64()?,
            latched: r.opt_u16()?,
            status_latched: r.opt_u8()?,
            read_msb: r.bool()?,
            write_msb: r.bool()?,
            write_lsb: r.u8()?,
            armed: r.bool()?,
            reported: r.u64()?,
        };
        // A zero reload would divide by zero when the count is computed.
        if !(1..=0x10000).contains(&c.reload) || c.mode > 5 || c.rw > RW_WORD {
            return Err(r.invalid(format!(
                "reload {:#x}, mode {} or access mode {} out of range",
                c.reload, c.mode, c.rw
            )));
        }
        Ok(c)
    }
}

impl PitState {
    /// The state as a snapshot blob. Times are in the machine clock's nanoseconds, so a restored
    /// PIT needs a clock that continues from the snapshot's time (see `HostClock::starting_at`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = StateWriter::new(STATE_VERSION);
        for c in &self.channels {
            c.save(&mut w);
        }
        w.bool(self.speaker_enable);
        w.finish()
    }

    /// Read a blob written by [`PitState::to_bytes`].
    pub fn from_bytes(blob: &[u8]) -> Result<Self, StateError> {
        let mut r = StateReader::new(blob, STATE_NAME, STATE_VERSION)?;
        let s = PitState {
            channels: [
                ChannelState::load(&mut r)?,
                ChannelState::load(&mut r)?,
                ChannelState::load(&mut r)?,
            ],
            speaker_enable: r.bool()?,
        };
        r.finish()?;
        Ok(s)
    }
}

/// The 8254 with port B.
pub struct Pit {
    s: PitState,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Pit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pit").field("state", &self.s).finish()
    }
}

fn from_bcd(v: u16) -> u32 {
    u32::from(v & 0xf)
        + 10 * u32::from((v >> 4) & 0xf)
        + 100 * u32::from((v >> 8) & 0xf)
        + 1000 * u32::from(v >> 12)
}

fn to_bcd(v: u16) -> u16 {
    let v = v % 10000;
    (v % 10) | ((v / 10 % 10) << 4) | ((v / 100 % 10) << 8) | ((v / 1000) << 12)
}

impl Pit {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let mut s = PitState::default();
        // Channel 2's gate is controlled through port B and starts low.
        s.channels[2].gate = false;
        Self { s, clock }
    }

    pub fn from_state(s: PitState, clock: Arc<dyn Clock>) -> Self {
        Self { s, clock }
    }

    pub fn state(&self) -> PitState {
        self.s
    }

    /// Replace the device's state (snapshot restore).
    pub fn set_state(&mut self, s: PitState) {
        self.s = s;
    }

    /// Read channel `ch` (0-2) data port.
    pub fn read_channel(&mut self, ch: usize) -> u8 {
        let now = self.clock.now_ns();
        let c = &mut self.s.channels[ch];
        if let Some(st) = c.status_latched.take() {
            return st;
        }
        let value = match c.latched {
            Some(v) => v,
            None => {
                let v = c.count(now);
                if c.bcd {
                    to_bcd(v)
                } else {
                    v
                }
            }
        };
        match c.rw {
            RW_LSB => {
                c.latched = None;
                value as u8
            }
            RW_MSB => {
                c.latched = None;
                (value >> 8) as u8
            }
            _ => {
                if c.read_msb {
                    c.read_msb = false;
                    c.latched = None;
                    (value >> 8) as u8
                } else {
                    c.read_msb = true;
                    if c.latched.is_none() {
                        // Keep the pair consistent: latch the value whose LSB is returned.
                        c.latched = Some(value);
                    }
                    value as u8
                }
            }
        }
    }

    fn load(&mut self, ch: usize, raw: u16) {
        let now = self.clock.now_ns();
        let c = &mut self.s.channels[ch];
        let mut n = if c.bcd { from_bcd(raw) } else { u32::from(raw) };
        if n == 0 {
            n = if c.bcd { 10000 } else { 0x10000 };
        }
        // Mode 2 and 3 with a count of 1 are illegal; treat as 2 like common hardware.
        if n == 1 && matches!(c.mode, 2 | 3) {
            n = 2;
        }
        c.reload = n;
        c.load_ns = now;
        c.armed = true;
        c.reported = 0;
    }

    /// Write channel `ch` data port.
    pub fn write_channel(&mut self, ch: usize, v: u8) {
        let c = &mut self.s.channels[ch];
        match c.rw {
            RW_LSB => self.load(ch, u16::from(v)),
            RW_MSB => self.load(ch, u16::from(v) << 8),
            _ => {
                if c.write_msb {
                    c.write_msb = false;
                    let lsb = c.write_lsb;
                    self.load(ch, u16::from(lsb) | (u16::from(v) << 8));
                } else {
                    c.write_lsb = v;
                    c.write_msb = true;
                    if c.mode == 0 {
                        // Writing the first byte stops a mode-0 count (datasheet).
                        c.armed = false;
                    }
                }
            }
        }
    }

    /// Write the mode/command register (0x43).
    pub fn write_control(&mut self, v: u8) {
        let now = self.clock.now_ns();
        let sel = v >> 6;
        if sel == 3 {
            // Read-back command: bit 5 clear latches counts, bit 4 clear latches status.
            for ch in 0..3 {
                if v & (2 << ch) == 0 {
                    continue;
                }
                let c = &mut self.s.channels[ch];
                if v & 0x20 == 0 && c.latched.is_none() {
                    c.latched = Some(c.count(now));
                }
                if v & 0x10 == 0 && c.status_latched.is_none() {
                    let out = u8::from(c.output(now)) << 7;
                    let null = u8::from(!c.armed) << 6;
                    c.status_latched = Some(out | null | (c.rw << 4) | (c.mode << 1) | c.bcd as u8);
                }
            }
            return;
        }
        let c = &mut self.s.channels[sel as usize];
        let rw = (v >> 4) & 3;
        if rw == RW_LATCH {
            if c.latched.is_none() {
                c.latched = Some(c.count(now));
            }
            return;
        }
        let mut mode = (v >> 1) & 7;
        if mode > 5 {
            mode -= 4; // modes 6 and 7 alias 2 and 3
        }
        c.rw = rw;
        c.mode = mode;
        c.bcd = v & 1 != 0;
        c.armed = false;
        c.latched = None;
        c.read_msb = false;
        c.write_msb = false;
    }

    /// Port B (0x61) read: bit 0 gate 2, bit 1 speaker enable, bit 4 refresh toggle (every
    /// 15 us), bit 5 channel 2 output.
    pub fn read_port_b(&self) -> u8 {
        let now = self.clock.now_ns();
        let refresh = ((now / 15_000) & 1) as u8;
        let c2 = &self.s.channels[2];
        u8::from(c2.gate)
            | (u8::from(self.s.speaker_enable) << 1)
            | (refresh << 4)
            | (u8::from(c2.output(now)) << 5)
    }

    pub fn write_port_b(&mut self, v: u8) {
        let now = self.clock.now_ns();
        let gate = v & 1 != 0;
        let c2 = &mut self.s.channels[2];
        if gate && !c2.gate && matches!(c2.mode, 1 | 2 | 3 | 5) {
            // A rising gate restarts the count in these modes.
            c2.load_ns = now;
            c2.reported = 0;
        }
        c2.gate = gate;
        self.s.speaker_enable = v & 2 != 0;
    }

    /// Whether channel 0 has a terminal count not yet reported (each one is an IRQ 0 edge).
    /// Periods the CPU missed (the emulator was descheduled or compiling) are caught up one
    /// per call, as KVM's in-kernel PIT re-injects lost ticks, so a guest counting timer
    /// interrupts (Linux's jiffies, its local APIC timer calibration against the PIT) keeps
    /// time; a backlog over [`MAX_TICK_BACKLOG_NS`] is dropped.
    pub fn poll_irq0(&mut self) -> bool {
        if self.s.channels[0].spent() {
            return false;
        }
        let now = self.clock.now_ns();
        let c = &mut self.s.channels[0];
        let e = c.events(now);
        if e <= c.reported {
            return false;
        }
        let period_ns = (u64::from(c.reload) * 1_000_000_000 / PIT_HZ).max(1);
        let max_backlog = (MAX_TICK_BACKLOG_NS / period_ns).max(1);
        c.reported = c.reported.max(e.saturating_sub(max_backlog)) + 1;
        true
    }

    /// Terminal counts of channel 0 not yet reported by [`Pit::poll_irq0`].
    pub fn irq0_backlog(&self) -> u64 {
        let c = &self.s.channels[0];
        if c.spent() {
            // Polled every few thousand guest instructions: no clock read when idle.
            return 0;
        }
        c.events(self.clock.now_ns()).saturating_sub(c.reported)
    }

    /// Nanoseconds from now until channel 0's next IRQ, if one is coming.
    pub fn next_irq0_in_ns(&self) -> Option<u64> {
        let c = &self.s.channels[0];
        if c.spent() {
            return None;
        }
        let now = self.clock.now_ns();
        let n = u64::from(c.reload);
        if c.events(now) > c.reported {
            // Missed periods are still to be reported: at once.
            return Some(0);
        }
        let next_tick = match c.mode {
            2 | 3 => (c.events(now) + 1) * n,
            _ if c.events(now) == 0 => n,
            _ => return None,
        };
        let at = c.load_ns + (u128::from(next_tick) * 1_000_000_000 / u128::from(PIT_HZ)) as u64;
        Some(at.saturating_sub(now))
    }
}

/// The PIT's channel 0 wired to ISA IRQ 0 (the 8259A's IRQ 0 and the I/O APIC's pin 2), as on
/// every PC.
pub struct PitIrq0 {
    pub pit: Arc<std::sync::Mutex<Pit>>,
    pub irqs: crate::interrupts::PcInterrupts,
}

impl crate::bus::TimerSource for PitIrq0 {
    fn poll(&mut self) {
        let backlog = self
            .pit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .irq0_backlog();
        // A tick waits until the CPU took the previous one (they would merge and a tick be
        // lost: Linux counts them).
        if backlog == 0 || self.irqs.isa_irq_pending(0) {
            return;
        }
        let fired = self
            .pit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .poll_irq0();
        if fired {
            // An edge: the 8259A latches the rising edge in its IRR, the I/O APIC sends it.
            self.irqs.pulse_isa_irq(0);
        }
    }
    fn next_event_in_ns(&self) -> Option<u64> {
        self.pit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_irq0_in_ns()
    }
}

/// Port B's offset relative to [`PIT_PORT`] when both are attached as one device through
/// [`crate::bus::SharedDevice`] aliases.
pub const PORT_B_OFFSET: u64 = (PORT_B - PIT_PORT) as u64;

impl crate::bus::BusDevice for Pit {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        data[0] = match offset {
            0..=2 => self.read_channel(offset as usize),
            PORT_B_OFFSET => self.read_port_b(),
            // The control register is write-only.
            _ => 0xff,
        };
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            0..=2 => self.write_channel(offset as usize, data[0]),
            3 => self.write_control(data[0]),
            PORT_B_OFFSET => self.write_port_b(data[0]),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn pit() -> (Pit, ManualClock) {
        let clock = ManualClock::new();
        (Pit::new(Arc::new(clock.clone())), clock)
    }

    /// ns for `ticks` PIT input clocks.
    fn ticks_ns(ticks: u64) -> u64 {
        ticks * 1_000_000_000 / PIT_HZ + 1
    }

    #[test]
    fn mode2_rate_generator_counts_down_and_interrupts() {
        let (mut p, clock) = pit();
        // Channel 0, lobyte/hibyte, mode 2, binary; 1193 -> ~1 kHz (Linux's PIT setup).
        p.write_control(0x34);
        p.write_channel(0, (1193 & 0xff) as u8);
        p.write_channel(0, (1193 >> 8) as u8);
        assert!(!p.poll_irq0());
        clock.advance_ns(ticks_ns(100));
        p.write_control(0x00); // latch channel 0
        let lo = p.read_channel(0);
        let hi = p.read_channel(0);
        assert_eq!(u16::from(lo) | (u16::from(hi) << 8), 1193 - 100);
        clock.advance_ns(ticks_ns(1093));
        assert!(p.poll_irq0());
        assert!(!p.poll_irq0());
        let left = p.next_irq0_in_ns().unwrap();
        assert!(left > 900_000 && left <= 1_000_000, "{left}");
        // Three missed periods are three interrupts, due at once; a long stall is capped.
        clock.advance_ns(3_000_000);
        assert_eq!(p.next_irq0_in_ns(), Some(0));
        assert!(p.poll_irq0() && p.poll_irq0() && p.poll_irq0());
        assert!(!p.poll_irq0());
        clock.advance_ns(10_000_000_000);
        let caught_up = std::iter::from_fn(|| p.poll_irq0().then_some(())).count() as u64;
        assert_eq!(
            caught_up,
            MAX_TICK_BACKLOG_NS / (1193 * 1_000_000_000 / PIT_HZ)
        );
    }

    #[test]
    fn mode0_fires_once() {
        let (mut p, clock) = pit();
        p.write_control(0x30);
        p.write_channel(0, 100);
        p.write_channel(0, 0);
        clock.advance_ns(ticks_ns(99));
        assert!(!p.poll_irq0());
        clock.advance_ns(ticks_ns(1000));
        assert!(p.poll_irq0());
        clock.advance_ns(ticks_ns(100_000));
        assert!(!p.poll_irq0());
        assert_eq!(p.next_irq0_in_ns(), None);
    }

    #[test]
    fn idle_or_spent_channel_0_is_polled_without_reading_the_clock() {
        let clock = crate::clock::CountingClock::default();
        let mut p = Pit::new(Arc::new(clock.clone()));
        let polls = |p: &mut Pit| {
            let before = clock.readings();
            assert_eq!(p.irq0_backlog(), 0);
            assert!(!p.poll_irq0());
            assert_eq!(p.next_irq0_in_ns(), None);
            clock.readings() - before
        };
        assert_eq!(polls(&mut p), 0, "never loaded");
        // Mode 0: one terminal count, then nothing until the next load.
        p.write_control(0x30);
        p.write_channel(0, 100);
        p.write_channel(0, 0);
        clock.time.advance_ns(ticks_ns(100));
        assert_eq!(p.irq0_backlog(), 1);
        assert!(p.poll_irq0());
        clock.time.advance_ns(ticks_ns(1000));
        assert_eq!(polls(&mut p), 0, "terminal count reported");
        // A new count arms it again, and polls read the clock again.
        p.write_channel(0, 100);
        p.write_channel(0, 0);
        clock.time.advance_ns(ticks_ns(100));
        let before = clock.readings();
        assert!(p.poll_irq0());
        assert!(clock.readings() > before);
    }

    #[test]
    fn channel2_gate_and_output_through_port_b() {
        let (mut p, clock) = pit();
        // The TSC calibration pattern: gate low, mode 0 count, gate high, poll bit 5.
        p.write_port_b(0x00);
        p.write_control(0xb0); // channel 2, lohi, mode 0
        p.write_channel(2, 0xff);
        p.write_channel(2, 0xff);
        p.write_port_b(0x01);
        assert_eq!(p.read_port_b() & 0x20, 0);
        clock.advance_ns(ticks_ns(0xffff));
        assert_eq!(p.read_port_b() & 0x21, 0x21);
    }

    #[test]
    fn read_back_status() {
        let (mut p, _clock) = pit();
        p.write_control(0x36); // channel 0, lohi, mode 3
        p.write_control(0xe2); // read-back status of channel 0
        let st = p.read_channel(0);
        assert_eq!(st & 0x3f, 0x36);
        assert_eq!(st & 0x40, 0x40, "null count until a count is written");
    }

    #[test]
    fn bcd_round_trip() {
        assert_eq!(from_bcd(0x1234), 1234);
        assert_eq!(to_bcd(1234), 0x1234);
    }

    #[test]
    fn state_survives_bytes_and_corruption_is_an_error() {
        let (mut p, clock) = pit();
        p.write_control(0x34);
        p.write_channel(0, 0x9c);
        p.write_channel(0, 0x2e);
        clock.advance_ns(3_000_000);
        let blob = p.state().to_bytes();
        let (mut copy, copy_clock) = pit();
        copy_clock.set_ns(clock.now_ns());
        copy.set_state(PitState::from_bytes(&blob).unwrap());
        assert_eq!(copy.state(), p.state());
        assert_eq!(copy.read_channel(0), p.read_channel(0));
        for n in 0..blob.len() {
            assert!(PitState::from_bytes(&blob[..n]).is_err());
        }
        // A zero reload value would divide by zero later: refused.
        let mut bad = blob.clone();
        bad[1..5].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            PitState::from_bytes(&bad),
            Err(StateError::Invalid { .. })
        ));
    }
}
