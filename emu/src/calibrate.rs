//! Choosing a backend by measurement.
//!
//! `/dev/kvm` existing does not mean KVM is fast: nested or software-emulated KVM can run a
//! guest far slower than the JIT. `--accel auto` therefore runs the same tiny guest (a counted
//! register loop, a few thousand instructions) on both backends and picks KVM only when it is
//! not much slower than the JIT.

use std::time::{Duration, Instant};

use devices::Buses;
use vcpu::{CpuState, GuestRam, RegionKind, RegionSpec, Segment, Vcpu, VmExit};

use crate::machine::{create_vcpu, Accel};

/// Iterations of the calibration loop; two instructions each.
pub const LOOP_ITERATIONS: u32 = 20_000;
/// KVM is chosen unless it runs the calibration guest this many times slower than the JIT.
pub const KVM_SLOWDOWN_LIMIT: f64 = 2.0;
/// Where the calibration code sits (real mode, CS = 0).
const CODE_ADDR: u64 = 0x1000;

/// The calibration guest: `mov ecx, N; l: dec ecx; jnz l; hlt` in 16-bit real mode.
pub fn calibration_code(iterations: u32) -> Vec<u8> {
    let mut code = vec![0x66, 0xb9];
    code.extend_from_slice(&iterations.to_le_bytes());
    code.extend_from_slice(&[0x66, 0x49, 0x75, 0xfc, 0xf4]);
    code
}

/// Guest instructions the calibration guest retires.
pub fn calibration_instructions(iterations: u32) -> u64 {
    2 * u64::from(iterations) + 2
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("calibration guest could not be built: {0}")]
    Setup(String),
    #[error("calibration guest ended unexpectedly: {0}")]
    Unexpected(String),
}

/// Run the calibration guest on `accel` and return guest instructions per second.
pub fn measure(accel: Accel) -> Result<f64, CalibrationError> {
    let ram = GuestRam::new(&[RegionSpec {
        base: 0,
        size: 1 << 20,
        kind: RegionKind::Ram,
    }])
    .map_err(|e| CalibrationError::Setup(e.to_string()))?;
    ram.write_host(CODE_ADDR, &calibration_code(LOOP_ITERATIONS))
        .map_err(|e| CalibrationError::Setup(e.to_string()))?;
    let mut state = CpuState::reset();
    state.seg[vcpu::SegmentIndex::Cs as usize] = Segment {
        attr: Segment::ATTR_P | Segment::ATTR_S | 0xb,
        ..Segment::real_mode(0)
    };
    state.rip = CODE_ADDR;
    let mut vcpu: Box<dyn Vcpu> = create_vcpu(accel, &ram, &state, None)
        .map_err(|e| CalibrationError::Setup(e.to_string()))?;
    let mut buses = Buses::new();
    let start = Instant::now();
    let exit = vcpu
        .run(&mut buses)
        .map_err(|e| CalibrationError::Unexpected(e.to_string()))?;
    let elapsed = start.elapsed().max(Duration::from_nanos(1));
    if exit
        != (VmExit::Halted {
            interrupts_enabled: false,
        })
    {
        return Err(CalibrationError::Unexpected(format!("{exit:?}")));
    }
    Ok(calibration_instructions(LOOP_ITERATIONS) as f64 / elapsed.as_secs_f64())
}

/// Whether KVM, at `kvm` instructions per second, is more than [`KVM_SLOWDOWN_LIMIT`] times
/// slower than the JIT at `jit`.
fn far_slower(kvm: f64, jit: f64) -> bool {
    kvm * KVM_SLOWDOWN_LIMIT < jit
}

/// Whether KVM runs the calibration guest more than [`KVM_SLOWDOWN_LIMIT`] times slower than
/// the JIT (nested or software-emulated KVM); `false` when KVM is unusable or either
/// measurement fails. The numbers are logged at info level.
pub fn kvm_is_slow() -> bool {
    match (measure(Accel::Kvm), measure(Accel::Jit)) {
        (Ok(kvm), Ok(jit)) => {
            log::info!(
                "KVM ran the calibration guest at {:.1} M instr/s, the JIT at {:.1} M instr/s",
                kvm / 1e6,
                jit / 1e6
            );
            far_slower(kvm, jit)
        }
        (Err(e), _) | (_, Err(e)) => {
            log::info!("calibration failed: {e}");
            false
        }
    }
}

/// The backend `--accel auto` uses, with the reason logged at info level.
pub fn choose_backend() -> Accel {
    #[cfg(feature = "kvm")]
    {
        if let Err(e) = accel::kvm_available() {
            log::info!("accel auto: using the JIT ({e})");
            return Accel::Jit;
        }
        let kvm = match measure(Accel::Kvm) {
            Ok(ips) => ips,
            Err(e) => {
                log::info!("accel auto: using the JIT (KVM calibration failed: {e})");
                return Accel::Jit;
            }
        };
        let jit = match measure(Accel::Jit) {
            Ok(ips) => ips,
            Err(e) => {
                log::info!("accel auto: using KVM (JIT calibration failed: {e})");
                return Accel::Kvm;
            }
        };
        if far_slower(kvm, jit) {
            log::info!(
                "accel auto: using the JIT: KVM ran the calibration guest at {:.1} M instr/s, \
                 the JIT at {:.1} M instr/s (KVM here is probably nested or software-emulated)",
                kvm / 1e6,
                jit / 1e6
            );
            Accel::Jit
        } else {
            log::info!(
                "accel auto: using KVM ({:.1} M instr/s; JIT {:.1} M instr/s)",
                kvm / 1e6,
                jit / 1e6
            );
            Accel::Kvm
        }
    }
    #[cfg(not(feature = "kvm"))]
    {
        log::info!("accel auto: using the JIT (built without KVM support)");
        Accel::Jit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_loop_runs_on_the_jit() {
        let ips = measure(Accel::Jit).expect("JIT calibration");
        assert!(ips > 0.0);
    }

    #[cfg(feature = "kvm")]
    #[test]
    fn calibration_loop_runs_on_kvm() {
        if let Err(e) = accel::kvm_available() {
            println!("skipped: {e}");
            return;
        }
        let ips = measure(Accel::Kvm).expect("KVM calibration");
        println!("KVM runs {:.2} M guest instructions/s here", ips / 1e6);
        assert!(ips > 1e4 && ips.is_finite(), "{ips}");
    }

    #[test]
    fn calibration_code_shape() {
        let c = calibration_code(7);
        assert_eq!(&c[..6], &[0x66, 0xb9, 7, 0, 0, 0]);
        assert_eq!(*c.last().unwrap(), 0xf4);
    }
}
