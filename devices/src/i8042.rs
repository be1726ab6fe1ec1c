//! The i8042 keyboard controller (ports 0x60 data, 0x64 status/command) with a PS/2 keyboard
//! behind it: enough for firmware and Linux to probe it, to drive A20 through the output port,
//! and to reset the machine with command 0xFE (the reset path many kernels try first).
//! Keystrokes are not delivered yet (guest input arrives through the UART).

use std::collections::VecDeque;

use crate::bus::{BusDevice, PlatformRequest, Requests};
use crate::reset::A20Gate;
use crate::state::{StateError, StateReader, StateWriter};

pub const DATA_PORT: u16 = 0x60;
pub const COMMAND_PORT: u16 = 0x64;

/// Status register bits.
const STATUS_OBF: u8 = 0x01;
const STATUS_SYS: u8 = 0x04;
const STATUS_CMD: u8 = 0x08;
const STATUS_UNLOCKED: u8 = 0x10;

/// Controller commands (written to 0x64).
const CMD_READ_CONFIG: u8 = 0x20;
const CMD_WRITE_CONFIG: u8 = 0x60;
const CMD_DISABLE_AUX: u8 = 0xa7;
const CMD_ENABLE_AUX: u8 = 0xa8;
const CMD_TEST_AUX: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_TEST_KBD: u8 = 0xab;
const CMD_DISABLE_KBD: u8 = 0xad;
const CMD_ENABLE_KBD: u8 = 0xae;
const CMD_READ_OUTPUT: u8 = 0xd0;
const CMD_WRITE_OUTPUT: u8 = 0xd1;
const CMD_WRITE_AUX: u8 = 0xd4;
const CMD_A20_OFF: u8 = 0xdd;
const CMD_A20_ON: u8 = 0xdf;
const CMD_PULSE_RESET: u8 = 0xfe;

/// Output port bits: bit 0 low = system reset asserted, bit 1 = A20.
const OUT_RESET_N: u8 = 0x01;
const OUT_A20: u8 = 0x02;

/// Keyboard replies.
const KBD_ACK: u8 = 0xfa;
const KBD_SELF_TEST_OK: u8 = 0xaa;
const CTRL_SELF_TEST_OK: u8 = 0x55;

/// What the next data-port write means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PendingWrite {
    #[default]
    Keyboard,
    Config,
    OutputPort,
    Aux,
    /// The keyboard's parameter byte after 0xED (LEDs) or 0xF3 (typematic).
    KeyboardParameter,
}

/// Controller state, for snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I8042State {
    pub config: u8,
    pub output: VecDeque<u8>,
    pub pending: PendingWrite,
    pub last_was_command: bool,
    pub keyboard_enabled: bool,
}

impl Default for I8042State {
    fn default() -> Self {
        Self {
            // Keyboard interrupt on, system flag, translation.
            config: 0x45,
            output: VecDeque::new(),
            pending: PendingWrite::Keyboard,
            last_was_command: false,
            keyboard_enabled: true,
        }
    }
}

/// Layout version of [`I8042State::to_bytes`].
const STATE_VERSION: u8 = 1;
const STATE_NAME: &str = "i8042";
/// More queued output than any command sequence produces means a corrupt blob.
const MAX_QUEUED_OUTPUT: usize = 64;

impl PendingWrite {
    fn code(self) -> u8 {
        match self {
            PendingWrite::Keyboard => 0,
            PendingWrite::Config => 1,
            PendingWrite::OutputPort => 2,
            PendingWrite::Aux => 3,
            PendingWrite::KeyboardParameter => 4,
        }
    }

    fn from_code(v: u8) -> Option<Self> {
        Some(match v {
            0 => PendingWrite::Keyboard,
            1 => PendingWrite::Config,
            2 => PendingWrite::OutputPort,
            3 => PendingWrite::Aux,
            4 => PendingWrite::KeyboardParameter,
            _ => return None,
        })
    }
}

impl I8042State {
    /// The state as a snapshot blob. The A20 line itself is saved with the platform, not here.
    pub fn to_bytes(&self) -> Vec<u8> {
        let output: Vec<u8> = self.output.iter().copied().collect();
        let mut w = StateWriter::new(STATE_VERSION);
        w.u8(self.config)
            .bytes(&output)
            .u8(self.pending.code())
            .bool(self.last_was_command)
            .bool(self.keyboard_enabled);
        w.finish()
    }

    /// Read a blob written by [`I8042State::to_bytes`].
    pub fn from_bytes(blob: &[u8]) -> Result<Self, StateError> {
        let mut r = StateReader::new(blob, STATE_NAME, STATE_VERSION)?;
        let config = r.u8()?;
        let output = r.bytes()?;
        if output.len() > MAX_QUEUED_OUTPUT {
            return Err(r.invalid(format!("{} bytes of queued output", output.len())));
        }
        let code = r.u8()?;
        let pending = PendingWrite::from_code(code)
            .ok_or_else(|| r.invalid(format!("pending-write code {code}")))?;
        let s = I8042State {
            config,
            output: output.iter().copied().collect(),
            pending,
            last_was_command: r.bool()?,
            keyboard_enabled: r.bool()?,
        };
        r.finish()?;
        Ok(s)
    }
}

/// The controller. One instance serves both ports: attach it over 0x60..0x65 and it answers
/// offset 0 (data) and offset 4 (status/command).
pub struct I8042 {
    s: I8042State,
    a20: A20Gate,
    requests: Requests,
}

impl I8042 {
    pub fn new(a20: A20Gate, requests: Requests) -> Self {
        Self {
            s: I8042State::default(),
            a20,
            requests,
        }
    }

    pub fn state(&self) -> I8042State {
        self.s.clone()
    }

    /// Replace the controller's state (snapshot restore).
    pub fn set_state(&mut self, s: I8042State) {
        self.s = s;
    }

    fn reply(&mut self, bytes: &[u8]) {
        self.s.output.extend(bytes.iter().copied());
    }

    fn output_port(&self) -> u8 {
        OUT_RESET_N | if self.a20.enabled() { OUT_A20 } else { 0 }
    }

    fn command(&mut self, cmd: u8) {
        self.s.last_was_command = true;
        match cmd {
            CMD_READ_CONFIG => self.reply(&[self.s.config]),
            CMD_WRITE_CONFIG => self.s.pending = PendingWrite::Config,
            CMD_SELF_TEST => self.reply(&[CTRL_SELF_TEST_OK]),
            CMD_TEST_KBD | CMD_TEST_AUX => self.reply(&[0x00]),
            CMD_DISABLE_KBD => self.s.keyboard_enabled = false,
            CMD_ENABLE_KBD => self.s.keyboard_enabled = true,
            CMD_DISABLE_AUX | CMD_ENABLE_AUX => {}
            CMD_READ_OUTPUT => self.reply(&[self.output_port()]),
            CMD_WRITE_OUTPUT => self.s.pending = PendingWrite::OutputPort,
            CMD_WRITE_AUX => self.s.pending = PendingWrite::Aux,
            CMD_A20_OFF => self.a20.set(false),
            CMD_A20_ON => self.a20.set(true),
            CMD_PULSE_RESET => self.requests.post(PlatformRequest::Reset),
            // 0xF0-0xFF pulse the output-port bits whose command bits are 0 low for 6 us;
            // bit 0 is the reset line.
            c if c & 0xf0 == 0xf0 && c & 1 == 0 => self.requests.post(PlatformRequest::Reset),
            c if c & 0xf0 == 0xf0 => {}
            other => log::debug!("i8042: ignored controller command {other:#04x}"),
        }
    }

    fn data(&mut self, v: u8) {
        self.s.last_was_command = false;
        match std::mem::take(&mut self.s.pending) {
            PendingWrite::Config => self.s.config = v,
            PendingWrite::OutputPort => {
                self.a20.set(v & OUT_A20 != 0);
                if v & OUT_RESET_N == 0 {
                    self.requests.post(PlatformRequest::Reset);
                }
            }
            // No mouse: commands to the aux port time out (no reply).
            PendingWrite::Aux => {}
            PendingWrite::KeyboardParameter => self.reply(&[KBD_ACK]),
            PendingWrite::Keyboard => match v {
                0xff => self.reply(&[KBD_ACK, KBD_SELF_TEST_OK]),
                0xf2 => self.reply(&[KBD_ACK, 0xab, 0x83]),
                0xed | 0xf3 => {
                    self.s.pending = PendingWrite::KeyboardParameter;
                    self.reply(&[KBD_ACK]);
                }
                0xee => self.reply(&[0xee]),
                _ => self.reply(&[KBD_ACK]),
            },
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        data[0] = match offset {
            0 => self.s.output.pop_front().unwrap_or(0),
            4 => {
                let mut st = STATUS_SYS | STATUS_UNLOCKED;
                if !self.s.output.is_empty() {
                    st |= STATUS_OBF;
                }
                if self.s.last_was_command {
                    st |= STATUS_CMD;
                }
                st
            }
            _ => 0xff,
        };
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            0 => self.data(data[0]),
            4 => self.command(data[0]),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kbc() -> (I8042, A20Gate, Requests) {
        let a20 = A20Gate::new();
        let req = Requests::new();
        (I8042::new(a20.clone(), req.clone()), a20, req)
    }

    fn read(k: &mut I8042, off: u64) -> u8 {
        let mut b = [0u8];
        k.read(off, &mut b);
        b[0]
    }

    #[test]
    fn self_test_and_keyboard_reset() {
        let (mut k, _, _) = kbc();
        assert_eq!(read(&mut k, 4) & STATUS_OBF, 0);
        k.write(4, &[CMD_SELF_TEST]);
        assert_eq!(read(&mut k, 4) & STATUS_OBF, STATUS_OBF);
        assert_eq!(read(&mut k, 0), CTRL_SELF_TEST_OK);
        k.write(0, &[0xff]);
        assert_eq!(read(&mut k, 0), KBD_ACK);
        assert_eq!(read(&mut k, 0), KBD_SELF_TEST_OK);
        assert_eq!(read(&mut k, 4) & STATUS_OBF, 0);
    }

    #[test]
    fn a20_through_output_port_and_reset_pulse() {
        let (mut k, a20, req) = kbc();
        k.write(4, &[CMD_WRITE_OUTPUT]);
        k.write(0, &[OUT_RESET_N]);
        assert!(!a20.enabled());
        k.write(4, &[CMD_A20_ON]);
        assert!(a20.enabled());
        k.write(4, &[CMD_READ_OUTPUT]);
        assert_eq!(read(&mut k, 0), OUT_RESET_N | OUT_A20);
        assert!(!req.pending());
        k.write(4, &[CMD_PULSE_RESET]);
        assert_eq!(req.take(), Some(PlatformRequest::Reset));
    }

    #[test]
    fn config_byte_round_trips() {
        let (mut k, _, _) = kbc();
        k.write(4, &[CMD_WRITE_CONFIG]);
        k.write(0, &[0x47]);
        k.write(4, &[CMD_READ_CONFIG]);
        assert_eq!(read(&mut k, 0), 0x47);
    }

    #[test]
    fn state_survives_bytes_and_corruption_is_an_error() {
        let s = I8042State {
            config: 0x47,
            output: [0xfa, 0xaa].into_iter().collect(),
            pending: PendingWrite::OutputPort,
            last_was_command: true,
            keyboard_enabled: false,
        };
        let blob = s.to_bytes();
        assert_eq!(I8042State::from_bytes(&blob).unwrap(), s);
        for n in 0..blob.len() {
            assert!(I8042State::from_bytes(&blob[..n]).is_err());
        }
        let mut bad = blob.clone();
        let pending_at = blob.len() - 3;
        bad[pending_at] = 9;
        assert!(matches!(
            I8042State::from_bytes(&bad),
            Err(StateError::Invalid { .. })
        ));
    }
}
