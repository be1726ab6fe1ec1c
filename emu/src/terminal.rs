//! The user's terminal as the guest's serial console, with QEMU's Ctrl-A escape keys.
//!
//! Standard input goes to the guest's UART. When it is a terminal it is put in raw mode (keys
//! reach the guest one at a time, Ctrl-C included), and restored when the [`RawMode`] guard
//! drops. Ctrl-A starts an escape, as in QEMU's `-serial mon:stdio`:
//!
//! | keys       | action                                            |
//! |------------|---------------------------------------------------|
//! | Ctrl-A x   | quit                                              |
//! | Ctrl-A s   | write a snapshot and quit (suspend; `emu restore`) |
//! | Ctrl-A a   | send a literal Ctrl-A to the guest                |
//! | Ctrl-A h   | list these keys                                   |
//!
//! Escapes are recognised on pipes too, so scripts can suspend a guest the way a user would.

use std::io::Read;

/// The escape key: Ctrl-A.
pub const ESCAPE: u8 = 0x01;

pub const HELP: &str = "\r\nC-a x    exit emu\r\nC-a s    snapshot the machine and exit (resume with `emu restore FILE`)\r\nC-a a    send C-a to the guest\r\nC-a h    print this help\r\n";

/// What one input byte means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A byte for the guest.
    Guest(u8),
    /// The first half of an escape, or an unknown escape: nothing to do.
    None,
    Quit,
    Suspend,
    Help,
}

/// Splits the input stream into guest bytes and escape commands.
#[derive(Debug, Default)]
pub struct EscapeParser {
    after_escape: bool,
}

impl EscapeParser {
    pub fn feed(&mut self, byte: u8) -> Key {
        if !self.after_escape {
            if byte == ESCAPE {
                self.after_escape = true;
                return Key::None;
            }
            return Key::Guest(byte);
        }
        self.after_escape = false;
        match byte {
            b'x' | b'X' => Key::Quit,
            b's' | b'S' => Key::Suspend,
            b'a' | ESCAPE => Key::Guest(ESCAPE),
            b'h' | b'H' | b'?' => Key::Help,
            _ => Key::None,
        }
    }
}

/// Read standard input until it ends, passing guest bytes to `guest` and commands to `command`.
pub fn pump_stdin(mut guest: impl FnMut(&[u8]), mut command: impl FnMut(Key)) {
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 256];
    let mut parser = EscapeParser::default();
    let mut out = Vec::with_capacity(buf.len());
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &b in &buf[..n] {
            match parser.feed(b) {
                Key::Guest(g) => out.push(g),
                Key::None => {}
                k => {
                    if !out.is_empty() {
                        guest(&out);
                        out.clear();
                    }
                    command(k);
                }
            }
        }
        if !out.is_empty() {
            guest(&out);
            out.clear();
        }
    }
}

/// Standard input in raw mode for as long as this lives (nothing when it is not a terminal).
pub struct RawMode {
    saved: Option<libc::termios>,
}

impl RawMode {
    pub fn enable() -> Self {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
            return Self { saved: None };
        }
        // SAFETY: termios is plain old data; tcgetattr fills it in and we check the result.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and a pointer to a live termios.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
            return Self { saved: None };
        }
        let saved = t;
        // SAFETY: cfmakeraw only edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut t) };
        // Keep output processing so the guest's "\n" still starts a new line, as QEMU does.
        t.c_oflag |= libc::OPOST;
        // SAFETY: as for tcgetattr; the settings come from the terminal's own.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) } != 0 {
            return Self { saved: None };
        }
        Self { saved: Some(saved) }
    }

    pub fn active(&self) -> bool {
        self.saved.is_some()
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: restores the settings read in `enable` on the same descriptor.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Vec<Key> {
        let mut p = EscapeParser::default();
        input
            .iter()
            .map(|&b| p.feed(b))
            .filter(|k| *k != Key::None)
            .collect()
    }

    #[test]
    fn escapes() {
        assert_eq!(
            parse(b"ab\x01xc"),
            vec![
                Key::Guest(b'a'),
                Key::Guest(b'b'),
                Key::Quit,
                Key::Guest(b'c')
            ]
        );
        assert_eq!(parse(b"\x01s"), vec![Key::Suspend]);
        assert_eq!(parse(b"\x01a\x01\x01"), vec![Key::Guest(1), Key::Guest(1)]);
        assert_eq!(parse(b"\x01h\x01zq"), vec![Key::Help, Key::Guest(b'q')]);
        assert_eq!(parse(b"\x03\r"), vec![Key::Guest(3), Key::Guest(b'\r')]);
    }
}
