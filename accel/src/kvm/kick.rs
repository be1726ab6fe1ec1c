//! Getting a vCPU out of KVM_RUN.
//!
//! `vcpu::Kicker` is a plain atomic flag: `kick()` only sets it, it cannot interrupt a thread.
//! A guest that spins without exits would never look at it. So while [`KvmVcpu::run`] runs,
//! a POSIX timer delivers a real-time signal to the vCPU thread every [`TICK`]; the signal has a
//! no-op handler, so its only effect is that KVM_RUN returns `EINTR`, and the run loop then
//! checks the flag. A kick is therefore seen at the next exit or tick, at most [`TICK`] late.
//! A tick that lands while the thread is outside KVM_RUN is harmless: the loop checks the flag
//! before every entry and the next tick comes 10 ms later. The handler is installed with
//! `SA_RESTART`, so ordinary system calls on the vCPU thread (device output) are not disturbed;
//! KVM_RUN itself is never restarted (it returns `-EINTR` outright).
//!
//! The same timer, armed once with a chosen first expiry, ends the calibration guest after a
//! measured time.
//!
//! [`KvmVcpu::run`]: super::KvmVcpu

use std::sync::OnceLock;
use std::time::Duration;

use crate::AccelError;

/// How often a running vCPU leaves KVM_RUN to look at its kick flag.
pub const TICK: Duration = Duration::from_millis(10);

/// The signal used, as an offset from SIGRTMIN (Firecracker uses SIGRTMIN + 0 for the same
/// purpose; +2 keeps clear of it and of glibc's internal use below SIGRTMIN).
const KICK_SIGNAL_OFFSET: libc::c_int = 2;

pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + KICK_SIGNAL_OFFSET
}

extern "C" fn on_kick_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Install the no-op handler, once per process.
fn install_handler() -> Result<(), AccelError> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        // SAFETY: `sigaction` is plain old data; zero is a valid starting value.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = on_kick_signal as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: `act.sa_mask` is a valid sigset; the handler is async-signal-safe (it does
        // nothing) and lives for the whole program.
        let rc = unsafe {
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(kick_signal(), &act, std::ptr::null_mut())
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    });
    result.map_err(|e| AccelError::Kvm {
        op: "sigaction for the kick signal",
        errno: std::io::Error::from_raw_os_error(e),
    })
}

fn last_os_error(op: &'static str) -> AccelError {
    AccelError::Kvm {
        op,
        errno: std::io::Error::last_os_error(),
    }
}

/// A per-thread POSIX timer that sends the kick signal to one thread.
#[derive(Debug)]
pub struct ThreadTimer {
    id: libc::timer_t,
    tid: libc::pid_t,
}

// SAFETY: a timer_t is a process-wide kernel handle (an integer in disguise); it can be armed and
// deleted from any thread.
unsafe impl Send for ThreadTimer {}

/// The calling thread's kernel id.
pub fn current_tid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

impl ThreadTimer {
    /// A disarmed timer aimed at the calling thread, with the signal unblocked there.
    pub fn for_current_thread() -> Result<Self, AccelError> {
        install_handler()?;
        vmm_sys_util::signal::unblock_signal(kick_signal()).map_err(|e| AccelError::Kvm {
            op: "unblocking the kick signal",
            errno: std::io::Error::other(e.to_string()),
        })?;
        let tid = current_tid();
        // SAFETY: `sigevent` is plain old data; zero is a valid starting value.
        let mut ev: libc::sigevent = unsafe { std::mem::zeroed() };
        ev.sigev_notify = libc::SIGEV_THREAD_ID;
        ev.sigev_signo = kick_signal();
        ev.sigev_notify_thread_id = tid;
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `ev` and `id` are valid for the call; the kernel fills `id`.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut id) } != 0 {
            return Err(last_os_error("timer_create"));
        }
        Ok(Self { id, tid })
    }

    /// The thread the signal goes to.
    pub fn tid(&self) -> libc::pid_t {
        self.tid
    }

    /// Fire first after `first`, then every `interval` (never again if `interval` is zero).
    pub fn arm(&self, first: Duration, interval: Duration) -> Result<(), AccelError> {
        let ts = |d: Duration| libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(d.subsec_nanos()),
        };
        // A zero first expiry would disarm the timer: fire after 1 ns instead.
        let spec = libc::itimerspec {
            it_value: ts(first.max(Duration::from_nanos(1))),
            it_interval: ts(interval),
        };
        // SAFETY: `self.id` is a live timer; `spec` is valid for the call.
        if unsafe { libc::timer_settime(self.id, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(last_os_error("timer_settime"));
        }
        Ok(())
    }

    pub fn disarm(&self) -> Result<(), AccelError> {
        // SAFETY: all-zero itimerspec disarms; `self.id` is a live timer.
        let spec: libc::itimerspec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::timer_settime(self.id, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(last_os_error("timer_settime"));
        }
        Ok(())
    }
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        // SAFETY: `self.id` was created by timer_create and is deleted exactly once.
        unsafe { libc::timer_delete(self.id) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn timer_interrupts_a_sleeping_thread() {
        let timer = ThreadTimer::for_current_thread().unwrap();
        assert_eq!(timer.tid(), current_tid());
        timer.arm(Duration::from_millis(5), Duration::ZERO).unwrap();
        let start = Instant::now();
        let mut req = libc::timespec {
            tv_sec: 2,
            tv_nsec: 0,
        };
        // SAFETY: `req` is valid; nanosleep is interrupted by the signal (not restarted:
        // nanosleep is never restarted after a handler, SA_RESTART or not).
        let rc = unsafe { libc::nanosleep(&req, &mut req) };
        assert_eq!(rc, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EINTR)
        );
        assert!(start.elapsed() < Duration::from_secs(1));
        timer.disarm().unwrap();
    }
}
