//! What the jit crate's benchmarks share: a flat 32-bit protected-mode starting state, and
//! the calling thread's CPU time (time the scheduler gives to other processes on these shared
//! machines does not count).

// Each benchmark is its own crate and uses only part of this module.
#![allow(dead_code)]

use vcpu::state::{cr0, gpr};
use vcpu::{CpuState, Segment, SegmentIndex};

/// 32-bit protected mode with flat 4 GiB code (0x08) and data (0x10) segments, at `rip` with
/// ESP 0x8000.
pub fn flat32_state(rip: u64) -> CpuState {
    let mut s = CpuState::reset();
    s.cr0 |= cr0::PE;
    for (i, seg) in s.seg.iter_mut().enumerate() {
        *seg = if i == SegmentIndex::Cs as usize {
            Segment::from_descriptor(0x08, 0x0000_ffff, 0x00cf_9a00)
        } else {
            Segment::from_descriptor(0x10, 0x0000_ffff, 0x00cf_9200)
        };
    }
    s.rip = rip;
    s.gpr[gpr::RSP] = 0x8000;
    s
}

/// CPU time of the calling thread, in seconds.
pub fn thread_cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}
