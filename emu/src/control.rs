//! Requests to a running machine from other threads: the terminal (Ctrl-A s, Ctrl-A x), the
//! SIGUSR1 handler thread, and timers (`--snapshot-after`).
//!
//! The vCPU thread owns the machine; nobody else touches CPU or device state. A request is
//! queued here and the vCPU is kicked, so `Machine::run` returns to its loop at an instruction
//! boundary and serves the request there (a snapshot sees a consistent machine).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vcpu::Kicker;

/// What another thread asks of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Write a snapshot to `path`; then stop the run when `then_quit` (suspend), else continue.
    Snapshot { path: PathBuf, then_quit: bool },
    /// Stop the run now (the user quit).
    Quit,
}

#[derive(Debug, Default)]
struct Inner {
    queue: Mutex<VecDeque<Command>>,
    posted: AtomicBool,
    /// The current vCPU's kicker (the machine replaces it when it replaces the vCPU).
    kicker: Mutex<Kicker>,
}

/// A handle that queues [`Command`]s for a machine and kicks its vCPU. Cheap to clone; safe to
/// use from any thread (not from a signal handler: it takes locks).
#[derive(Debug, Clone, Default)]
pub struct MachineControl {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MachineControl {
    pub(crate) fn new(kicker: Kicker) -> Self {
        let c = Self::default();
        c.set_kicker(kicker);
        c
    }

    /// Queue `command` and make the vCPU return to the machine's loop.
    pub fn post(&self, command: Command) {
        lock(&self.inner.queue).push_back(command);
        self.inner.posted.store(true, Ordering::Release);
        lock(&self.inner.kicker).kick();
    }

    /// Whether anything is queued (cheap; the machine checks this after every vCPU exit).
    pub(crate) fn pending(&self) -> bool {
        self.inner.posted.load(Ordering::Acquire)
    }

    /// Everything queued, oldest first.
    pub(crate) fn take_all(&self) -> Vec<Command> {
        self.inner.posted.store(false, Ordering::Release);
        lock(&self.inner.queue).drain(..).collect()
    }

    pub(crate) fn set_kicker(&self, kicker: Kicker) {
        *lock(&self.inner.kicker) = kicker;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_queues_in_order_and_kicks() {
        let kicker = Kicker::new();
        let c = MachineControl::new(kicker.clone());
        assert!(!c.pending());
        c.post(Command::Quit);
        c.post(Command::Snapshot {
            path: "a".into(),
            then_quit: false,
        });
        assert!(c.pending());
        assert!(kicker.take());
        assert_eq!(
            c.take_all(),
            vec![
                Command::Quit,
                Command::Snapshot {
                    path: "a".into(),
                    then_quit: false
                }
            ]
        );
        assert!(!c.pending());
        let other = Kicker::new();
        c.set_kicker(other.clone());
        c.post(Command::Quit);
        assert!(other.take() && !kicker.take());
    }
}
