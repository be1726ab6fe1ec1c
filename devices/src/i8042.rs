//! The i8042 keyboard controller (ports 0x60 data, 0x64 status/command) with a PS/2 keyboard
//! and a PS/2 mouse (the "AUX" port) behind it: enough for firmware and Linux to probe both
//! ports, to drive A20 through the output port, and to reset the machine with command 0xFE (the
//! reset path many kernels try first). Replies raise IRQ 1 (keyboard) or IRQ 12 (mouse) when
//! the configuration byte enables them, as Linux's AUX-IRQ probe and its interrupt-driven
//! keyboard and mouse drivers expect. Keystrokes and mouse motion are not delivered (guest
//! input arrives through the UART). Register and command meanings follow the IBM PS/2
//! Hardware Interface Technical Reference ("Keyboard/Auxiliary Device Controller").

use std::collections::VecDeque;

use crate::bus::{BusDevice, PlatformRequest, Requests};
use crate::reset::A20Gate;
use crate::serial::IrqLine;
use crate::state::{StateError, StateReader, StateWriter};

pub const DATA_PORT: u16 = 0x60;
pub const COMMAND_PORT: u16 = 0x64;
/// ISA interrupt of the keyboard port.
pub const KEYBOARD_IRQ: u8 = 1;
/// ISA interrupt of the auxiliary (mouse) port.
pub const AUX_IRQ: u8 = 12;

/// Status register bits.
const STATUS_OBF: u8 = 0x01;
const STATUS_SYS: u8 = 0x04;
const STATUS_CMD: u8 = 0x08;
const STATUS_UNLOCKED: u8 = 0x10;
/// The byte in the output buffer came from the auxiliary device.
const STATUS_AUX_DATA: u8 = 0x20;

/// Configuration ("command") byte bits.
const CONFIG_KBD_INT: u8 = 0x01;
const CONFIG_AUX_INT: u8 = 0x02;
const CONFIG_KBD_DISABLED: u8 = 0x10;
const CONFIG_AUX_DISABLED: u8 = 0x20;
const CONFIG_TRANSLATE: u8 = 0x40;

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
/// The next data byte appears in the output buffer as if the keyboard sent it.
const CMD_WRITE_KBD_OUTPUT: u8 = 0xd2;
/// The next data byte appears in the output buffer as if the mouse sent it (Linux's AUX
/// loopback test).
const CMD_WRITE_AUX_OUTPUT: u8 = 0xd3;
const CMD_WRITE_AUX: u8 = 0xd4;
const CMD_A20_OFF: u8 = 0xdd;
const CMD_A20_ON: u8 = 0xdf;
const CMD_PULSE_RESET: u8 = 0xfe;

/// Output port bits: bit 0 low = system reset asserted, bit 1 = A20.
const OUT_RESET_N: u8 = 0x01;
const OUT_A20: u8 = 0x02;

/// Keyboard and mouse replies.
const ACK: u8 = 0xfa;
const KBD_SELF_TEST_OK: u8 = 0xaa;
const CTRL_SELF_TEST_OK: u8 = 0x55;
/// Keyboard ID after 0xF2: 0xAB then 0x83, or 0x41 when the controller translates.
const KBD_ID: u8 = 0xab;
const KBD_ID_RAW: u8 = 0x83;
const KBD_ID_TRANSLATED: u8 = 0x41;
/// Mouse self-test result and device ID (a standard mouse).
const MOUSE_SELF_TEST_OK: u8 = 0xaa;
const MOUSE_ID: u8 = 0x00;

/// Mouse commands (written through 0xD4).
const MOUSE_SET_SCALING_1_1: u8 = 0xe6;
const MOUSE_SET_SCALING_2_1: u8 = 0xe7;
const MOUSE_SET_RESOLUTION: u8 = 0xe8;
const MOUSE_STATUS_REQUEST: u8 = 0xe9;
const MOUSE_READ_DATA: u8 = 0xeb;
const MOUSE_GET_ID: u8 = 0xf2;
const MOUSE_SET_SAMPLE_RATE: u8 = 0xf3;
const MOUSE_ENABLE_REPORTING: u8 = 0xf4;
const MOUSE_DISABLE_REPORTING: u8 = 0xf5;
const MOUSE_SET_DEFAULTS: u8 = 0xf6;
const MOUSE_RESET: u8 = 0xff;
/// Power-on defaults: 100 samples/s, 4 counts/mm.
const MOUSE_DEFAULT_RATE: u8 = 100;
const MOUSE_DEFAULT_RESOLUTION: u8 = 2;

/// What the next data-port write means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PendingWrite {
    #[default]
    Keyboard,
    Config,
    OutputPort,
    /// A byte for the mouse (after 0xD4).
    Aux,
    /// The keyboard's parameter byte after 0xED (LEDs) or 0xF3 (typematic).
    KeyboardParameter,
    /// A byte to place in the output buffer as keyboard data (after 0xD2).
    KeyboardOutput,
    /// A byte to place in the output buffer as mouse data (after 0xD3).
    AuxOutput,
}

/// One byte waiting in the output buffer and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputByte {
    pub value: u8,
    /// From the mouse (status bit 5, IRQ 12) rather than the keyboard or controller (IRQ 1).
    pub aux: bool,
}

/// The mouse's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MouseState {
    /// The command (0xE8 or 0xF3) whose parameter byte comes next, 0 if none.
    pub awaiting_parameter: u8,
    pub reporting: bool,
    pub scaling_2_1: bool,
    pub sample_rate: u8,
    pub resolution: u8,
}

impl Default for MouseState {
    fn default() -> Self {
        Self {
            awaiting_parameter: 0,
            reporting: false,
            scaling_2_1: false,
            sample_rate: MOUSE_DEFAULT_RATE,
            resolution: MOUSE_DEFAULT_RESOLUTION,
        }
    }
}

/// Controller state, for snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I8042State {
    pub config: u8,
    pub output: VecDeque<OutputByte>,
    pub pending: PendingWrite,
    pub last_was_command: bool,
    pub mouse: MouseState,
}

impl Default for I8042State {
    fn default() -> Self {
        Self {
            // Keyboard interrupt on, system flag, translation; the AUX port disabled.
            config: 0x45 | CONFIG_AUX_DISABLED,
            output: VecDeque::new(),
            pending: PendingWrite::Keyboard,
            last_was_command: false,
            mouse: MouseState::default(),
        }
    }
}

/// Layout version of [`I8042State::to_bytes`] (2: output bytes tagged by port, mouse state).
const STATE_VERSION: u8 = 2;
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
            PendingWrite::KeyboardOutput => 5,
            PendingWrite::AuxOutput => 6,
        }
    }

    fn from_code(v: u8) -> Option<Self> {
        Some(match v {
            0 => PendingWrite::Keyboard,
            1 => PendingWrite::Config,
            2 => PendingWrite::OutputPort,
            3 => PendingWrite::Aux,
            4 => PendingWrite::KeyboardParameter,
            5 => PendingWrite::KeyboardOutput,
            6 => PendingWrite::AuxOutput,
            _ => return None,
        })
    }
}

impl I8042State {
    /// The state as a snapshot blob. The A20 line itself is saved with the platform, not here.
    pub fn to_bytes(&self) -> Vec<u8> {
        let values: Vec<u8> = self.output.iter().map(|b| b.value).collect();
        let sources: Vec<u8> = self.output.iter().map(|b| u8::from(b.aux)).collect();
        let m = &self.mouse;
        let mut w = StateWriter::new(STATE_VERSION);
        w.u8(self.config)
            .bytes(&values)
            .bytes(&sources)
            .u8(self.pending.code())
            .bool(self.last_was_command)
            .u8(m.awaiting_parameter)
            .bool(m.reporting)
            .bool(m.scaling_2_1)
            .u8(m.sample_rate)
            .u8(m.resolution);
        w.finish()
    }

    /// Read a blob written by [`I8042State::to_bytes`].
    pub fn from_bytes(blob: &[u8]) -> Result<Self, StateError> {
        let mut r = StateReader::new(blob, STATE_NAME, STATE_VERSION)?;
        let config = r.u8()?;
        let values = r.bytes()?;
        if values.len() > MAX_QUEUED_OUTPUT {
            return Err(r.invalid(format!("{} bytes of queued output", values.len())));
        }
        let sources = r.bytes()?;
        if sources.len() != values.len() || sources.iter().any(|&s| s > 1) {
            return Err(r.invalid("output sources do not match the output bytes".to_string()));
        }
        let code = r.u8()?;
        let pending = PendingWrite::from_code(code)
            .ok_or_else(|| r.invalid(format!("pending-write code {code}")))?;
        let last_was_command = r.bool()?;
        let mouse = MouseState {
            awaiting_parameter: r.u8()?,
            reporting: r.bool()?,
            scaling_2_1: r.bool()?,
            sample_rate: r.u8()?,
            resolution: r.u8()?,
        };
        r.finish()?;
        Ok(I8042State {
            config,
            output: values
                .iter()
                .zip(sources.iter())
                .map(|(&value, &s)| OutputByte { value, aux: s == 1 })
                .collect(),
            pending,
            last_was_command,
            mouse,
        })
    }
}

/// The controller. One instance serves both ports: attach it over 0x60..0x65 and it answers
/// offset 0 (data) and offset 4 (status/command).
pub struct I8042 {
    s: I8042State,
    a20: A20Gate,
    requests: Requests,
    /// IRQ 1 and IRQ 12 with the levels last driven onto them.
    keyboard_irq: Option<(IrqLine, bool)>,
    aux_irq: Option<(IrqLine, bool)>,
}

impl I8042 {
    pub fn new(a20: A20Gate, requests: Requests) -> Self {
        Self {
            s: I8042State::default(),
            a20,
            requests,
            keyboard_irq: None,
            aux_irq: None,
        }
    }

    /// Drive `keyboard` (IRQ 1) and `aux` (IRQ 12) while a byte of that port waits in the
    /// output buffer and the configuration byte enables the port's interrupt.
    pub fn with_irqs(mut self, keyboard: IrqLine, aux: IrqLine) -> Self {
        self.keyboard_irq = Some((keyboard, false));
        self.aux_irq = Some((aux, false));
        self
    }

    pub fn state(&self) -> I8042State {
        self.s.clone()
    }

    /// Replace the controller's state (snapshot restore).
    pub fn set_state(&mut self, s: I8042State) {
        self.s = s;
        self.update_irqs();
    }

    fn reply(&mut self, bytes: &[u8]) {
        self.queue(bytes, false);
    }

    fn reply_aux(&mut self, bytes: &[u8]) {
        self.queue(bytes, true);
    }

    fn queue(&mut self, bytes: &[u8], aux: bool) {
        for &value in bytes {
            if self.s.output.len() < MAX_QUEUED_OUTPUT {
                self.s.output.push_back(OutputByte { value, aux });
            }
        }
        self.update_irqs();
    }

    /// Set IRQ 1 / IRQ 12 from the byte at the head of the output buffer.
    fn update_irqs(&mut self) {
        let head = self.s.output.front().copied();
        let config = self.s.config;
        let keyboard = head.is_some_and(|b| !b.aux) && config & CONFIG_KBD_INT != 0;
        let aux = head.is_some_and(|b| b.aux) && config & CONFIG_AUX_INT != 0;
        drive(&mut self.keyboard_irq, keyboard);
        drive(&mut self.aux_irq, aux);
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
            // Interface tests: 0 = no error.
            CMD_TEST_KBD | CMD_TEST_AUX => self.reply(&[0x00]),
            CMD_DISABLE_KBD => self.s.config |= CONFIG_KBD_DISABLED,
            CMD_ENABLE_KBD => self.s.config &= !CONFIG_KBD_DISABLED,
            CMD_DISABLE_AUX => self.s.config |= CONFIG_AUX_DISABLED,
            CMD_ENABLE_AUX => self.s.config &= !CONFIG_AUX_DISABLED,
            CMD_READ_OUTPUT => self.reply(&[self.output_port()]),
            CMD_WRITE_OUTPUT => self.s.pending = PendingWrite::OutputPort,
            CMD_WRITE_KBD_OUTPUT => self.s.pending = PendingWrite::KeyboardOutput,
            CMD_WRITE_AUX_OUTPUT => self.s.pending = PendingWrite::AuxOutput,
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
            PendingWrite::Config => {
                self.s.config = v;
                self.update_irqs();
            }
            PendingWrite::OutputPort => {
                self.a20.set(v & OUT_A20 != 0);
                if v & OUT_RESET_N == 0 {
                    self.requests.post(PlatformRequest::Reset);
                }
            }
            PendingWrite::Aux => self.mouse_command(v),
            PendingWrite::KeyboardOutput => self.reply(&[v]),
            PendingWrite::AuxOutput => self.reply_aux(&[v]),
            PendingWrite::KeyboardParameter => self.reply(&[ACK]),
            PendingWrite::Keyboard => match v {
                0xff => self.reply(&[ACK, KBD_SELF_TEST_OK]),
                0xf2 => {
                    let id = if self.s.config & CONFIG_TRANSLATE != 0 {
                        KBD_ID_TRANSLATED
                    } else {
                        KBD_ID_RAW
                    };
                    self.reply(&[ACK, KBD_ID, id]);
                }
                0xed | 0xf3 => {
                    self.s.pending = PendingWrite::KeyboardParameter;
                    self.reply(&[ACK]);
                }
                0xee => self.reply(&[0xee]),
                _ => self.reply(&[ACK]),
            },
        }
    }

    /// A byte written to the mouse (after 0xD4): a command or a command's parameter.
    fn mouse_command(&mut self, v: u8) {
        let m = &mut self.s.mouse;
        match std::mem::take(&mut m.awaiting_parameter) {
            MOUSE_SET_SAMPLE_RATE => {
                m.sample_rate = v;
                return self.reply_aux(&[ACK]);
            }
            MOUSE_SET_RESOLUTION => {
                m.resolution = v & 3;
                return self.reply_aux(&[ACK]);
            }
            _ => {}
        }
        match v {
            MOUSE_RESET => {
                *m = MouseState::default();
                self.reply_aux(&[ACK, MOUSE_SELF_TEST_OK, MOUSE_ID]);
            }
            MOUSE_SET_DEFAULTS => {
                *m = MouseState::default();
                self.reply_aux(&[ACK]);
            }
            MOUSE_GET_ID => self.reply_aux(&[ACK, MOUSE_ID]),
            MOUSE_SET_SAMPLE_RATE | MOUSE_SET_RESOLUTION => {
                m.awaiting_parameter = v;
                self.reply_aux(&[ACK]);
            }
            MOUSE_ENABLE_REPORTING | MOUSE_DISABLE_REPORTING => {
                m.reporting = v == MOUSE_ENABLE_REPORTING;
                self.reply_aux(&[ACK]);
            }
            MOUSE_SET_SCALING_1_1 | MOUSE_SET_SCALING_2_1 => {
                m.scaling_2_1 = v == MOUSE_SET_SCALING_2_1;
                self.reply_aux(&[ACK]);
            }
            MOUSE_STATUS_REQUEST => {
                // Byte 1: bit 6 remote mode (0), bit 5 reporting, bit 4 scaling 2:1; then
                // the resolution and the sample rate.
                let status = (u8::from(m.reporting) << 5) | (u8::from(m.scaling_2_1) << 4);
                let (resolution, rate) = (m.resolution, m.sample_rate);
                self.reply_aux(&[ACK, status, resolution, rate]);
            }
            // A movement packet with no movement and no buttons (bit 3 is always set).
            MOUSE_READ_DATA => self.reply_aux(&[ACK, 0x08, 0, 0]),
            // Everything else (remote/stream/wrap mode, ...) is acknowledged.
            _ => self.reply_aux(&[ACK]),
        }
    }
}

/// Drive an interrupt line to `level` if it is wired and not there already.
fn drive(line: &mut Option<(IrqLine, bool)>, level: bool) {
    if let Some((irq, current)) = line.as_mut() {
        if *current != level {
            *current = level;
            irq(level);
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        data[0] = match offset {
            0 => {
                let byte = self.s.output.pop_front();
                // The read empties the buffer: drop the lines, then raise them again for the
                // next byte, so that an edge-triggered input sees every byte.
                drive(&mut self.keyboard_irq, false);
                drive(&mut self.aux_irq, false);
                self.update_irqs();
                byte.map_or(0, |b| b.value)
            }
            4 => {
                let mut st = STATUS_SYS | STATUS_UNLOCKED;
                if let Some(b) = self.s.output.front() {
                    st |= STATUS_OBF;
                    if b.aux {
                        st |= STATUS_AUX_DATA;
                    }
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
        assert_eq!(read(&mut k, 0), ACK);
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
            output: [(0xfa, false), (0x00, true)]
                .into_iter()
                .map(|(value, aux)| OutputByte { value, aux })
                .collect(),
            pending: PendingWrite::OutputPort,
            last_was_command: true,
            mouse: MouseState {
                awaiting_parameter: MOUSE_SET_SAMPLE_RATE,
                reporting: true,
                scaling_2_1: true,
                sample_rate: 40,
                resolution: 3,
            },
        };
        let blob = s.to_bytes();
        assert_eq!(I8042State::from_bytes(&blob).unwrap(), s);
        for n in 0..blob.len() {
            assert!(I8042State::from_bytes(&blob[..n]).is_err());
        }
        let mut bad = blob.clone();
        let pending_at = blob.len() - 7;
        bad[pending_at] = 9;
        assert!(matches!(
            I8042State::from_bytes(&bad),
            Err(StateError::Invalid { .. })
        ));
    }

    /// Every (irq, level) change the controller drove, in order.
    type IrqLog = std::sync::Arc<std::sync::Mutex<Vec<(u8, bool)>>>;

    /// A controller whose IRQ 1 / IRQ 12 lines record every level change.
    fn kbc_with_irqs() -> (I8042, IrqLog) {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let line = |irq: u8| -> IrqLine {
            let log = log.clone();
            Box::new(move |level| log.lock().unwrap().push((irq, level)))
        };
        let (k, _, _) = kbc();
        let k = k.with_irqs(line(KEYBOARD_IRQ), line(AUX_IRQ));
        (k, log)
    }

    fn write_config(k: &mut I8042, config: u8) {
        k.write(4, &[CMD_WRITE_CONFIG]);
        k.write(0, &[config]);
    }

    fn read_config(k: &mut I8042) -> u8 {
        k.write(4, &[CMD_READ_CONFIG]);
        read(k, 0)
    }

    #[test]
    fn aux_port_disable_and_enable_show_in_the_config_byte() {
        // Linux's i8042_check_aux: 0xA7 must set bit 5 and 0xA8 clear it.
        let (mut k, _, _) = kbc();
        k.write(4, &[CMD_ENABLE_AUX]);
        assert_eq!(read_config(&mut k) & CONFIG_AUX_DISABLED, 0);
        k.write(4, &[CMD_DISABLE_AUX]);
        assert_eq!(
            read_config(&mut k) & CONFIG_AUX_DISABLED,
            CONFIG_AUX_DISABLED
        );
        k.write(4, &[CMD_DISABLE_KBD]);
        assert_eq!(
            read_config(&mut k) & CONFIG_KBD_DISABLED,
            CONFIG_KBD_DISABLED
        );
        k.write(4, &[CMD_ENABLE_KBD]);
        assert_eq!(read_config(&mut k) & CONFIG_KBD_DISABLED, 0);
    }

    #[test]
    fn aux_loopback_returns_the_byte_as_mouse_data_with_irq_12() {
        let (mut k, irqs) = kbc_with_irqs();
        write_config(&mut k, CONFIG_KBD_INT | CONFIG_AUX_INT);
        k.write(4, &[CMD_WRITE_AUX_OUTPUT]);
        k.write(0, &[0x5a]);
        assert_eq!(
            read(&mut k, 4) & (STATUS_OBF | STATUS_AUX_DATA),
            STATUS_OBF | STATUS_AUX_DATA
        );
        assert_eq!(*irqs.lock().unwrap(), [(AUX_IRQ, true)]);
        assert_eq!(read(&mut k, 0), 0x5a);
        assert_eq!(read(&mut k, 4) & STATUS_OBF, 0);
        assert_eq!(*irqs.lock().unwrap(), [(AUX_IRQ, true), (AUX_IRQ, false)]);
        // The keyboard-side loopback raises IRQ 1 and no AUX status bit.
        k.write(4, &[CMD_WRITE_KBD_OUTPUT]);
        k.write(0, &[0x1c]);
        assert_eq!(read(&mut k, 4) & STATUS_AUX_DATA, 0);
        assert_eq!(irqs.lock().unwrap().last(), Some(&(KEYBOARD_IRQ, true)));
        assert_eq!(read(&mut k, 0), 0x1c);
    }

    #[test]
    fn each_queued_byte_gets_its_own_interrupt_edge_and_disabled_interrupts_stay_low() {
        let (mut k, irqs) = kbc_with_irqs();
        write_config(&mut k, CONFIG_AUX_INT);
        k.write(4, &[CMD_WRITE_AUX]);
        k.write(0, &[MOUSE_GET_ID]);
        assert_eq!(read(&mut k, 0), ACK);
        assert_eq!(read(&mut k, 0), MOUSE_ID);
        assert_eq!(
            *irqs.lock().unwrap(),
            [
                (AUX_IRQ, true),
                (AUX_IRQ, false),
                (AUX_IRQ, true),
                (AUX_IRQ, false)
            ]
        );
        // Keyboard replies with the keyboard interrupt disabled raise nothing.
        irqs.lock().unwrap().clear();
        k.write(0, &[0xff]);
        assert_eq!(read(&mut k, 0), ACK);
        assert_eq!(read(&mut k, 0), KBD_SELF_TEST_OK);
        assert!(irqs.lock().unwrap().is_empty());
    }

    #[test]
    fn mouse_answers_reset_settings_and_status() {
        let (mut k, _, _) = kbc();
        let mouse = |k: &mut I8042, byte: u8| {
            k.write(4, &[CMD_WRITE_AUX]);
            k.write(0, &[byte]);
        };
        mouse(&mut k, MOUSE_RESET);
        assert_eq!(read(&mut k, 4) & STATUS_AUX_DATA, STATUS_AUX_DATA);
        assert_eq!(
            [read(&mut k, 0), read(&mut k, 0), read(&mut k, 0)],
            [ACK, MOUSE_SELF_TEST_OK, MOUSE_ID]
        );
        mouse(&mut k, MOUSE_SET_SAMPLE_RATE);
        mouse(&mut k, 200);
        mouse(&mut k, MOUSE_SET_RESOLUTION);
        mouse(&mut k, 3);
        mouse(&mut k, MOUSE_SET_SCALING_2_1);
        mouse(&mut k, MOUSE_ENABLE_REPORTING);
        assert_eq!([0; 6].map(|_| read(&mut k, 0)), [ACK; 6]);
        mouse(&mut k, MOUSE_STATUS_REQUEST);
        assert_eq!([0; 4].map(|_| read(&mut k, 0)), [ACK, 0x20 | 0x10, 3, 200]);
        mouse(&mut k, MOUSE_SET_DEFAULTS);
        mouse(&mut k, MOUSE_STATUS_REQUEST);
        assert_eq!(
            [0; 5].map(|_| read(&mut k, 0)),
            [ACK, ACK, 0, MOUSE_DEFAULT_RESOLUTION, MOUSE_DEFAULT_RATE]
        );
        assert_eq!(read(&mut k, 4) & STATUS_OBF, 0);
    }

    #[test]
    fn keyboard_id_follows_translation() {
        let (mut k, _, _) = kbc();
        k.write(0, &[0xf2]);
        assert_eq!(
            [0; 3].map(|_| read(&mut k, 0)),
            [ACK, KBD_ID, KBD_ID_TRANSLATED]
        );
        write_config(&mut k, 0);
        k.write(0, &[0xf2]);
        assert_eq!([0; 3].map(|_| read(&mut k, 0)), [ACK, KBD_ID, KBD_ID_RAW]);
    }
}
