//! The MC146818 real-time clock and CMOS RAM at ports 0x70 (index, bit 7 = NMI disable) and
//! 0x71 (data).
//!
//! The clock registers are computed from a wall-clock start time plus the injected [`Clock`],
//! honouring register B's binary/BCD and 12/24-hour formats (MC146818A datasheet). Guest writes
//! to the time registers move the guest's time by an offset. The CMOS bytes firmware reads for
//! the memory size are filled by [`Cmos::set_memory_size`].

use std::sync::Arc;

use crate::clock::Clock;
use crate::state::{StateError, StateReader, StateWriter};

pub const CMOS_PORT: u16 = 0x70;

/// Register numbers (MC146818A datasheet, Table 2).
pub const REG_SECONDS: u8 = 0x00;
pub const REG_MINUTES: u8 = 0x02;
pub const REG_HOURS: u8 = 0x04;
pub const REG_WEEKDAY: u8 = 0x06;
pub const REG_DAY: u8 = 0x07;
pub const REG_MONTH: u8 = 0x08;
pub const REG_YEAR: u8 = 0x09;
pub const REG_A: u8 = 0x0a;
pub const REG_B: u8 = 0x0b;
pub const REG_C: u8 = 0x0c;
pub const REG_D: u8 = 0x0d;
/// IBM PC CMOS layout: century byte.
pub const REG_CENTURY: u8 = 0x32;

/// Register A: update in progress.
const A_UIP: u8 = 0x80;
/// Register B: 24-hour mode, binary (not BCD) mode.
const B_24H: u8 = 0x02;
const B_BINARY: u8 = 0x04;
/// Register B: SET inhibits updates.
const B_SET: u8 = 0x80;
/// Register D: valid RAM and time.
const D_VRT: u8 = 0x80;
/// The update-in-progress window precedes each second by 244 us (datasheet).
const UIP_NS: u64 = 244_000;

/// Everything the chip holds, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmosState {
    pub ram: [u8; 128],
    pub index: u8,
    pub nmi_disabled: bool,
    /// Guest time = `base_unix_secs` + clock seconds + `offset_secs`.
    pub base_unix_secs: i64,
    pub offset_secs: i64,
}

/// Layout version of [`CmosState::to_bytes`].
const STATE_VERSION: u8 = 1;
const STATE_NAME: &str = "cmos";

impl CmosState {
    /// The state as a snapshot blob.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = StateWriter::new(STATE_VERSION);
        w.bytes(&self.ram)
            .u8(self.index)
            .bool(self.nmi_disabled)
            .i64(self.base_unix_secs)
            .i64(self.offset_secs);
        w.finish()
    }

    /// Read a blob written by [`CmosState::to_bytes`].
    pub fn from_bytes(blob: &[u8]) -> Result<Self, StateError> {
        let mut r = StateReader::new(blob, STATE_NAME, STATE_VERSION)?;
        let ram: [u8; 128] = r
            .bytes()?
            .try_into()
            .map_err(|_| r.invalid("CMOS RAM is not 128 bytes"))?;
        let s = CmosState {
            ram,
            index: r.u8()?,
            nmi_disabled: r.bool()?,
            base_unix_secs: r.i64()?,
            offset_secs: r.i64()?,
        };
        if usize::from(s.index) >= s.ram.len() {
            return Err(r.invalid(format!("index register {:#x} out of range", s.index)));
        }
        r.finish()?;
        Ok(s)
    }
}

/// The RTC/CMOS chip.
pub struct Cmos {
    s: CmosState,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Cmos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cmos")
            .field("index", &self.s.index)
            .finish_non_exhaustive()
    }
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0xf)
}

impl Cmos {
    /// A chip whose clock reads `unix_secs` at clock time 0.
    pub fn new(clock: Arc<dyn Clock>, unix_secs: i64) -> Self {
        let mut ram = [0u8; 128];
        ram[usize::from(REG_A)] = 0x26; // 32.768 kHz time base, 1024 Hz periodic rate
        ram[usize::from(REG_B)] = B_24H;
        ram[usize::from(REG_D)] = D_VRT;
        Self {
            s: CmosState {
                ram,
                index: 0,
                nmi_disabled: false,
                base_unix_secs: unix_secs,
                offset_secs: 0,
            },
            clock,
        }
    }

    pub fn from_state(s: CmosState, clock: Arc<dyn Clock>) -> Self {
        Self { s, clock }
    }

    pub fn state(&self) -> CmosState {
        self.s
    }

    /// Replace the device's state (snapshot restore).
    pub fn set_state(&mut self, s: CmosState) {
        self.s = s;
    }

    /// Fill the memory-size bytes firmware reads (IBM PC/AT CMOS map, as QEMU and SeaBIOS use
    /// it): 0x15/0x16 base KiB, 0x17/0x18 and 0x30/0x31 KiB above 1 MiB (max 63 MiB),
    /// 0x34/0x35 64 KiB blocks above 16 MiB, 0x5B-0x5D 64 KiB blocks above 4 GiB.
    pub fn set_memory_size(&mut self, below_4g: u64, above_4g: u64) {
        let ram = &mut self.s.ram;
        ram[0x15] = (640u16 & 0xff) as u8;
        ram[0x16] = (640u16 >> 8) as u8;
        let ext_kib = (below_4g.saturating_sub(1 << 20) / 1024).min(0xfc00) as u16;
        ram[0x17] = ext_kib as u8;
        ram[0x18] = (ext_kib >> 8) as u8;
        ram[0x30] = ext_kib as u8;
        ram[0x31] = (ext_kib >> 8) as u8;
        let above16 = (below_4g.saturating_sub(16 << 20) / 65536).min(0xffff) as u16;
        ram[0x34] = above16 as u8;
        ram[0x35] = (above16 >> 8) as u8;
        let high = above_4g / 65536;
        ram[0x5b] = high as u8;
        ram[0x5c] = (high >> 8) as u8;
        ram[0x5d] = (high >> 16) as u8;
    }

    fn now_secs_and_ns(&self) -> (i64, u64) {
        let ns = self.clock.now_ns();
        (
            self.s.base_unix_secs + self.s.offset_secs + (ns / 1_000_000_000) as i64,
            ns % 1_000_000_000,
        )
    }

    fn encode(&self, v: u8) -> u8 {
        if self.s.ram[usize::from(REG_B)] & B_BINARY != 0 {
            v
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.s.ram[usize::from(REG_B)] & B_BINARY != 0 {
            v
        } else {
            from_bcd(v)
        }
    }

    fn read_register(&mut self, reg: u8) -> u8 {
        let (t, sub_ns) = self.now_secs_and_ns();
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let hour = (secs / 3600) as u8;
        match reg {
            REG_SECONDS => self.encode((secs % 60) as u8),
            REG_MINUTES => self.encode((secs / 60 % 60) as u8),
            REG_HOURS => {
                if self.s.ram[usize::from(REG_B)] & B_24H != 0 {
                    self.encode(hour)
                } else {
                    let h12 = if hour.is_multiple_of(12) {
                        12
                    } else {
                        hour % 12
                    };
                    self.encode(h12) | if hour >= 12 { 0x80 } else { 0 }
                }
            }
            // 1 = Sunday; 1970-01-01 was a Thursday.
            REG_WEEKDAY => self.encode(((days + 4).rem_euclid(7) + 1) as u8),
            REG_DAY => self.encode(day as u8),
            REG_MONTH => self.encode(month as u8),
            REG_YEAR => self.encode(year.rem_euclid(100) as u8),
            REG_CENTURY => self.encode(year.div_euclid(100) as u8),
            REG_A => {
                let uip =
                    self.s.ram[usize::from(REG_B)] & B_SET == 0 && sub_ns >= 1_000_000_000 - UIP_NS;
                self.s.ram[usize::from(REG_A)] & !A_UIP | if uip { A_UIP } else { 0 }
            }
            REG_C => {
                // Reading C clears the interrupt flags.
                let v = self.s.ram[usize::from(REG_C)];
                self.s.ram[usize::from(REG_C)] = 0;
                v
            }
            _ => self.s.ram[usize::from(reg & 0x7f)],
        }
    }

    /// A guest write to a time register moves the guest clock by the difference.
    fn write_time(&mut self, reg: u8, v: u8) {
        let (t, _) = self.now_secs_and_ns();
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400);
        let (mut year, mut month, mut day) = civil_from_days(days);
        let (mut h, mut m, mut s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let value = i64::from(self.decode(v & 0x7f));
        match reg {
            REG_SECONDS => s = value,
            REG_MINUTES => m = value,
            REG_HOURS => {
                h = if self.s.ram[usize::from(REG_B)] & B_24H != 0 {
                    value
                } else {
                    value % 12 + if v & 0x80 != 0 { 12 } else { 0 }
                }
            }
            REG_DAY => day = value.clamp(1, 31) as u32,
            REG_MONTH => month = value.clamp(1, 12) as u32,
            REG_YEAR => year = year - year.rem_euclid(100) + value,
            REG_CENTURY => year = value * 100 + year.rem_euclid(100),
            _ => return,
        }
        let new_t = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
        self.s.offset_secs += new_t - t;
    }

    pub fn read_port(&mut self, offset: u64) -> u8 {
        if offset == 0 {
            // The index register is write-only; reads float.
            return 0xff;
        }
        self.read_register(self.s.index)
    }

    pub fn write_port(&mut self, offset: u64, v: u8) {
        if offset == 0 {
            self.s.index = v & 0x7f;
            self.s.nmi_disabled = v & 0x80 != 0;
            return;
        }
        let reg = self.s.index;
        match reg {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_DAY | REG_MONTH | REG_YEAR
            | REG_CENTURY => self.write_time(reg, v),
            REG_A => self.s.ram[usize::from(REG_A)] = v & !A_UIP,
            REG_C | REG_D => {} // read-only
            _ => self.s.ram[usize::from(reg)] = v,
        }
    }
}

impl crate::bus::BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        data[0] = self.read_port(offset);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.write_port(offset, data[0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// 2026-11-23 18:30:05 UTC, a Monday.
    const T0: i64 = 1_795_458_605;

    fn cmos() -> (Cmos, ManualClock) {
        let clock = ManualClock::new();
        (Cmos::new(Arc::new(clock.clone()), T0), clock)
    }

    fn read(c: &mut Cmos, reg: u8) -> u8 {
        c.write_port(0, reg);
        c.read_port(1)
    }

    #[test]
    fn date_conversion_round_trips() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        assert_eq!(T0.div_euclid(86_400), days_from_civil(2026, 11, 23));
    }

    #[test]
    fn reads_bcd_time_and_advances() {
        let (mut c, clock) = cmos();
        assert_eq!(read(&mut c, REG_SECONDS), 0x05);
        assert_eq!(read(&mut c, REG_MINUTES), 0x30);
        assert_eq!(read(&mut c, REG_HOURS), 0x18);
        assert_eq!(read(&mut c, REG_DAY), 0x23);
        assert_eq!(read(&mut c, REG_MONTH), 0x11);
        assert_eq!(read(&mut c, REG_YEAR), 0x26);
        assert_eq!(read(&mut c, REG_CENTURY), 0x20);
        assert_eq!(read(&mut c, REG_WEEKDAY), 0x02); // Monday
        clock.advance_ns(61_000_000_000);
        assert_eq!(read(&mut c, REG_SECONDS), 0x06);
        assert_eq!(read(&mut c, REG_MINUTES), 0x31);
    }

    #[test]
    fn binary_12_hour_mode_and_guest_set_time() {
        let (mut c, _clock) = cmos();
        c.write_port(0, REG_B);
        c.write_port(1, B_BINARY); // binary, 12-hour
        assert_eq!(read(&mut c, REG_HOURS), 0x80 | 6);
        c.write_port(0, REG_B);
        c.write_port(1, B_BINARY | B_24H);
        c.write_port(0, REG_HOURS);
        c.write_port(1, 3);
        assert_eq!(read(&mut c, REG_HOURS), 3);
        assert_eq!(read(&mut c, REG_MINUTES), 30);
        assert_eq!(read(&mut c, REG_DAY), 23);
    }

    #[test]
    fn update_in_progress_window_and_memory_bytes() {
        let (mut c, clock) = cmos();
        assert_eq!(read(&mut c, REG_A) & A_UIP, 0);
        clock.advance_ns(1_000_000_000 - 100_000);
        assert_eq!(read(&mut c, REG_A) & A_UIP, A_UIP);
        c.set_memory_size(128 << 20, 0);
        assert_eq!(read(&mut c, 0x34), ((112u32 << 20) / 65536) as u8);
        assert_eq!(read(&mut c, 0x35), 0x07);
        assert_eq!(read(&mut c, 0x15), 0x80);
    }

    #[test]
    fn state_survives_bytes_and_corruption_is_an_error() {
        let (mut c, _clock) = cmos();
        c.set_memory_size(64 << 20, 0);
        c.write_port(0, 0x0e);
        c.write_port(1, 0x5a);
        let blob = c.state().to_bytes();
        let (mut copy, _) = cmos();
        copy.set_state(CmosState::from_bytes(&blob).unwrap());
        assert_eq!(copy.state(), c.state());
        for n in 0..blob.len() {
            assert!(CmosState::from_bytes(&blob[..n]).is_err());
        }
        let mut bad = blob.clone();
        bad[0] = 2;
        assert!(matches!(
            CmosState::from_bytes(&bad),
            Err(StateError::Version { found: 2, .. })
        ));
    }
}
