//! Buffered console output: what the guest prints reaches the host a line at a time, not one
//! `write` system call per byte.
//!
//! vm-superio's 16550A model writes every transmitted byte to its sink and flushes the sink at
//! once. A Linux boot prints about 19,000 bytes on its serial console, which were as many host
//! `write` calls (30-45 ms of the boot, more when the output goes to a terminal). A
//! [`ConsoleOutput`] keeps the bytes in memory and passes them on
//!
//! - at the end of every line (so line-oriented readers of the output see each line as soon as
//!   the guest finished it),
//! - when [`MAX_PENDING`] bytes wait,
//! - when the oldest waiting byte is [`LINGER`] old: checked at the machine's timer points by
//!   [`ConsoleFlush`], which also wakes a halted CPU at that moment, so a prompt or the echo of
//!   a typed key shows up without a newline within milliseconds,
//! - on [`ConsoleOutput::flush_all`] (the machine calls it when a run ends),
//! - when the last handle is dropped (the machine goes away, also while unwinding a panic).
//!
//! [`Write::flush`] on a handle does nothing on purpose: the UART model calls it after every
//! byte, and honouring it would undo the buffering.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::bus::TimerSource;
use crate::OutputSink;

/// How long a byte without a line end behind it may wait before it is passed on anyway.
pub const LINGER: Duration = Duration::from_millis(5);
/// Bytes that may wait before they are passed on, whatever else holds.
pub const MAX_PENDING: usize = 4096;

/// The sink and what waits for it.
struct Pending {
    out: OutputSink,
    bytes: Vec<u8>,
    /// When the oldest waiting byte arrived (`None`: nothing waits).
    since: Option<Instant>,
}

impl Pending {
    /// Pass everything waiting on to the sink and flush it.
    fn push_out(&mut self) -> io::Result<()> {
        self.since = None;
        if self.bytes.is_empty() {
            return Ok(());
        }
        let r = self
            .out
            .write_all(&self.bytes)
            .and_then(|()| self.out.flush());
        self.bytes.clear();
        r
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Nobody is left to report a failure to; the bytes go out if the sink takes them.
        let _ = self.push_out();
    }
}

struct Shared {
    pending: Mutex<Pending>,
    /// Bytes wait: a cheap test for the timer points, which come every few thousand guest
    /// instructions.
    waiting: AtomicBool,
}

/// A handle on one buffered sink; clones share it (the debug console and the UART print to
/// the same terminal, in the order the guest wrote).
#[derive(Clone)]
pub struct ConsoleOutput(Arc<Shared>);

impl ConsoleOutput {
    pub fn new(out: OutputSink) -> Self {
        Self(Arc::new(Shared {
            pending: Mutex::new(Pending {
                out,
                bytes: Vec::new(),
                since: None,
            }),
            waiting: AtomicBool::new(false),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Every update of `Pending` leaves it consistent, so a panic while it was held does
        // not matter.
        self.0.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pass on everything waiting, now.
    pub fn flush_all(&self) -> io::Result<()> {
        let mut p = self.lock();
        self.0.waiting.store(false, Ordering::Relaxed);
        p.push_out()
    }

    /// Whether bytes wait (without taking the lock).
    fn has_waiting(&self) -> bool {
        self.0.waiting.load(Ordering::Relaxed)
    }

    /// Pass on what waits if its oldest byte arrived [`LINGER`] or more before `now`.
    pub fn flush_stale(&self, now: Instant) -> io::Result<()> {
        if !self.has_waiting() {
            return Ok(());
        }
        let mut p = self.lock();
        if p.since
            .is_some_and(|t| now.saturating_duration_since(t) >= LINGER)
        {
            self.0.waiting.store(false, Ordering::Relaxed);
            p.push_out()?;
        }
        Ok(())
    }

    /// How long after `now` what waits is due to be passed on (`None`: nothing waits).
    pub fn due_in(&self, now: Instant) -> Option<Duration> {
        if !self.has_waiting() {
            return None;
        }
        let since = self.lock().since?;
        Some((since + LINGER).saturating_duration_since(now))
    }
}

impl Write for ConsoleOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut p = self.lock();
        if p.since.is_none() {
            p.since = Some(Instant::now());
        }
        p.bytes.extend_from_slice(buf);
        if buf.contains(&b'\n') || p.bytes.len() >= MAX_PENDING {
            self.0.waiting.store(false, Ordering::Relaxed);
            p.push_out()?;
        } else {
            self.0.waiting.store(true, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    /// Nothing: see the module header.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Passes on console output that waited [`LINGER`], at the machine's timer points, and makes
/// a halted CPU wake up for it.
pub struct ConsoleFlush(pub ConsoleOutput);

/// Both read the host clock only when bytes wait: `poll` runs at every timer point of the
/// machine, every few thousand guest instructions.
impl TimerSource for ConsoleFlush {
    fn poll(&mut self) {
        if !self.0.has_waiting() {
            return;
        }
        if let Err(e) = self.0.flush_stale(Instant::now()) {
            log::warn!("console output failed: {e}");
        }
    }

    fn next_event_in_ns(&self) -> Option<u64> {
        if !self.0.has_waiting() {
            return None;
        }
        self.0
            .due_in(Instant::now())
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SharedBuffer;

    fn console() -> (ConsoleOutput, SharedBuffer) {
        let buf = SharedBuffer::default();
        (ConsoleOutput::new(Box::new(buf.clone())), buf)
    }

    /// A sink that counts the writes it receives.
    #[derive(Clone, Default)]
    struct CountingSink(Arc<Mutex<(usize, Vec<u8>)>>);

    impl Write for CountingSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0 += 1;
            s.1.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_wait_for_the_line_end_and_go_out_in_one_write() {
        let sink = CountingSink::default();
        let mut c = ConsoleOutput::new(Box::new(sink.clone()));
        for &b in b"hello" {
            c.write_all(&[b]).unwrap();
            c.flush().unwrap();
        }
        assert_eq!(
            sink.0.lock().unwrap().0,
            0,
            "nothing passed on before the newline"
        );
        c.write_all(b"\n").unwrap();
        let s = sink.0.lock().unwrap();
        assert_eq!((s.0, s.1.as_slice()), (1, &b"hello\n"[..]));
    }

    #[test]
    fn a_partial_line_goes_out_once_it_lingered() {
        let (mut c, buf) = console();
        c.write_all(b"login: ").unwrap();
        let now = Instant::now();
        c.flush_stale(now).unwrap();
        assert_eq!(buf.contents(), b"");
        let due = c.due_in(now).expect("bytes wait");
        assert!(due <= LINGER);
        c.flush_stale(now + LINGER).unwrap();
        assert_eq!(buf.contents(), b"login: ");
        assert_eq!(c.due_in(now + LINGER), None);
    }

    #[test]
    fn the_timer_wakes_a_halted_cpu_for_waiting_bytes_only() {
        let (mut c, buf) = console();
        let mut t = ConsoleFlush(c.clone());
        assert_eq!(t.next_event_in_ns(), None);
        c.write_all(b"$ ").unwrap();
        let ns = t.next_event_in_ns().expect("a wake-up for the prompt");
        assert!(ns <= LINGER.as_nanos() as u64);
        std::thread::sleep(LINGER);
        t.poll();
        assert_eq!(buf.contents(), b"$ ");
        assert_eq!(t.next_event_in_ns(), None);
    }

    #[test]
    fn a_full_buffer_goes_out_without_a_line_end() {
        let (mut c, buf) = console();
        c.write_all(&[b'x'; MAX_PENDING - 1]).unwrap();
        assert!(buf.contents().is_empty());
        c.write_all(b"x").unwrap();
        assert_eq!(buf.contents().len(), MAX_PENDING);
    }

    #[test]
    fn flush_all_and_dropping_the_last_handle_pass_everything_on() {
        let (mut c, buf) = console();
        c.write_all(b"a").unwrap();
        c.flush_all().unwrap();
        assert_eq!(buf.contents(), b"a");
        c.write_all(b"b").unwrap();
        let other = c.clone();
        drop(c);
        assert_eq!(buf.contents(), b"a", "a handle remains");
        drop(other);
        assert_eq!(buf.contents(), b"ab");
    }

    #[test]
    fn clones_keep_the_order_of_writes() {
        let (mut a, buf) = console();
        let mut b = a.clone();
        a.write_all(b"1").unwrap();
        b.write_all(b"2").unwrap();
        a.write_all(b"3\n").unwrap();
        assert_eq!(buf.contents(), b"123\n");
    }
}
