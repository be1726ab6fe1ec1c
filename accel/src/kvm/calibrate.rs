//! How fast does this host's KVM really run guest code? `/dev/kvm` may be nested or
//! software-emulated and far slower than the JIT, so the machine measures before choosing.
//!
//! The guest is a counted loop in real mode, `mov ecx, 0xffffffff; l: dec ecx; jnz l; hlt`,
//! two instructions per iteration. It runs briefly once to warm KVM up (vCPU and MMU setup on
//! the first entry are not guest speed), then for the requested time, ended by the tick timer's
//! signal; the drop in ECX over that window counts the instructions retired.

use std::time::{Duration, Instant};

use vcpu::state::gpr;
use vcpu::{CpuState, GuestRam, RegionKind, RegionSpec, Segment, SegmentIndex, Vcpu};

use super::vcpu::KvmVcpu;
use crate::AccelError;

/// Guest instructions per iteration of the calibration loop (`dec ecx; jnz`).
const CALIBRATION_INSTRUCTIONS_PER_ITERATION: u64 = 2;
/// Where the loop sits (real mode, CS = 0).
const CODE_ADDR: u64 = 0x1000;
/// ECX at the start: the loop cannot finish within any sensible duration.
const START_COUNT: u32 = u32::MAX;
/// The warm-up run before measuring.
const WARM_UP: Duration = Duration::from_millis(1);

/// `mov ecx, START_COUNT; l: dec ecx; jnz l; hlt` as 16-bit code.
fn loop_code() -> Vec<u8> {
    let mut code = vec![0x66, 0xb9];
    code.extend_from_slice(&START_COUNT.to_le_bytes());
    code.extend_from_slice(&[0x66, 0x49, 0x75, 0xfc, 0xf4]);
    code
}

/// Time `f` and return its result with the elapsed time.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed())
}

/// Run the calibration guest for about `duration` and return guest instructions per second.
pub fn calibrate(duration: Duration) -> Result<f64, AccelError> {
    let setup = |e: vcpu::MemoryError| AccelError::Calibration(e.to_string());
    let ram = GuestRam::new(&[RegionSpec {
        base: 0,
        size: 0x10000,
        kind: RegionKind::Ram,
    }])
    .map_err(setup)?;
    ram.write_host(CODE_ADDR, &loop_code()).map_err(setup)?;
    let mut state = CpuState::reset();
    state.seg[SegmentIndex::Cs as usize] = Segment {
        attr: Segment::ATTR_P | Segment::ATTR_S | 0xb,
        ..Segment::real_mode(0)
    };
    state.rip = CODE_ADDR;
    let mut v = KvmVcpu::new(&ram, &state)?;
    if v.run_for(WARM_UP)? {
        return Err(AccelError::Calibration(
            "the loop ended during warm-up".into(),
        ));
    }
    let ecx = |v: &mut KvmVcpu| -> Result<u32, AccelError> { Ok(v.state()?.gpr[gpr::RCX] as u32) };
    let before = ecx(&mut v)?;
    let (halted, elapsed) = timed(|| v.run_for(duration));
    let halted = halted?;
    let after = if halted { 0 } else { ecx(&mut v)? };
    let iterations = u64::from(before.wrapping_sub(after));
    if iterations == 0 {
        return Err(AccelError::Calibration(format!(
            "the guest made no progress in {elapsed:?}"
        )));
    }
    let ips = (iterations * CALIBRATION_INSTRUCTIONS_PER_ITERATION) as f64
        / elapsed.as_secs_f64().max(1e-9);
    log::debug!(
        "KVM calibration: {iterations} iterations in {elapsed:?}, {:.2} M instructions/s",
        ips / 1e6
    );
    Ok(ips)
}
