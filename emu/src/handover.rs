//! A guest that starts on the JIT and moves to another backend (KVM) once it reaches code a
//! watch picks out.
//!
//! Why: a Linux bzImage first decompresses itself, a few seconds of pure computation that KVM
//! on real hardware runs at native speed, but that a nested or software-emulated KVM (this
//! project's CI machines: about 1-2 M instructions/s) would take hours over. The JIT runs that
//! part, and the machine moves to KVM at the decompressed kernel's entry, before the kernel
//! looks at a single device or calibrates its clocks, so the kernel proper runs on KVM from its
//! first instruction.
//!
//! The move is the one every backend supports: `state()` on the JIT, `set_state()` on KVM. Both
//! see the same guest memory and device buses, and the target shares the JIT's [`Kicker`], so the
//! machine's controls (time limit, snapshots, Ctrl-A) reach whichever backend runs.

use devices::Buses;
use jit::dispatch::CodeWatch;
use jit::JitVcpu;
use vcpu::{CpuState, Kicker, Vcpu, VcpuError, VmExit};

/// The JIT until its code watch fires, then `target` for good.
pub struct HandoverVcpu {
    /// `Some` until the watch fires; dropped then (its translated code is of no further use).
    jit: Option<JitVcpu>,
    /// Uses the JIT's kicker, so it also stands for the JIT's before the move.
    target: Box<dyn Vcpu>,
}

impl HandoverVcpu {
    /// Run `jit` until `watch` accepts a block, then move the guest to `target`, which must
    /// already use `jit`'s kicker (see `accel::KvmVcpu::share_kicker`).
    pub fn new(mut jit: JitVcpu, watch: CodeWatch, target: Box<dyn Vcpu>) -> Self {
        jit.set_code_watch(Some(watch));
        Self {
            jit: Some(jit),
            target,
        }
    }

    fn hand_over(&mut self, mut jit: JitVcpu) -> Result<(), VcpuError> {
        let state = jit.state()?;
        self.target.set_state(&state)?;
        log::info!(
            "the watched code was reached at rip {:#x} after {} instructions on the JIT; the \
             guest continues on {}",
            state.rip,
            jit.instructions(),
            self.target.backend_name()
        );
        Ok(())
    }
}

impl Vcpu for HandoverVcpu {
    fn backend_name(&self) -> &'static str {
        match &self.jit {
            Some(jit) => jit.backend_name(),
            None => self.target.backend_name(),
        }
    }

    fn run(&mut self, buses: &mut Buses) -> Result<VmExit, VcpuError> {
        if let Some(mut jit) = self.jit.take() {
            match jit.run(buses) {
                Ok(VmExit::Kicked) if jit.take_watch_hit() => self.hand_over(jit)?,
                other => {
                    self.jit = Some(jit);
                    return other;
                }
            }
        }
        self.target.run(buses)
    }

    fn state(&mut self) -> Result<CpuState, VcpuError> {
        match self.jit.as_mut() {
            Some(jit) => jit.state(),
            None => self.target.state(),
        }
    }

    fn set_state(&mut self, state: &CpuState) -> Result<(), VcpuError> {
        match self.jit.as_mut() {
            Some(jit) => jit.set_state(state),
            None => self.target.set_state(state),
        }
    }

    fn kicker(&self) -> Kicker {
        self.target.kicker()
    }
}
