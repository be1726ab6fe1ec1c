//! KVM with the JIT as a safety net: when KVM cannot execute an instruction (its instruction
//! emulator gives up with KVM_EXIT_INTERNAL_ERROR, or an entry fails), the guest's state is moved
//! to the JIT's interpreter for exactly that one instruction and then back to KVM, which resumes.
//!
//! This is possible only because both backends share one `CpuState`, one guest memory and one
//! set of device buses: the hand-over is `state()` on one backend and `set_state()` on the other.
//! It lives here, in `emu`, because `jit` and `accel` never depend on each other.

use devices::Buses;
use jit::dispatch::JitConfig;
use jit::JitVcpu;
use vcpu::{CpuState, GuestRam, Kicker, Vcpu, VcpuError, VmExit};

/// A KVM vCPU whose emulation failures are stepped over by the JIT.
pub struct HybridVcpu {
    kvm: Box<dyn Vcpu>,
    ram: GuestRam,
    /// Instructions the JIT has executed on KVM's behalf.
    assisted: u64,
}

impl HybridVcpu {
    pub fn new(kvm: Box<dyn Vcpu>, ram: GuestRam) -> Self {
        Self {
            kvm,
            ram,
            assisted: 0,
        }
    }

    /// How many instructions the JIT executed because KVM could not.
    pub fn assisted_instructions(&self) -> u64 {
        self.assisted
    }

    /// Execute the one instruction at `state.rip` in the JIT's interpreter. A fresh stepper is
    /// built each time so that no decoded code outlives writes KVM made to guest memory.
    fn step_on_jit(
        &mut self,
        state: CpuState,
        buses: &mut Buses,
    ) -> Result<(VmExit, CpuState), VcpuError> {
        let config = JitConfig {
            translate: false,
            max_block_insns: 1,
            ..JitConfig::default()
        };
        let mut jit = JitVcpu::with_config(self.ram.clone(), state, config)
            .map_err(|e| VcpuError::Backend(format!("JIT stepper: {e}")))?;
        jit.set_instruction_budget(Some(1));
        let exit = jit.run(buses)?;
        Ok((exit, jit.state()?))
    }
}

impl Vcpu for HybridVcpu {
    fn backend_name(&self) -> &'static str {
        "kvm"
    }

    fn run(&mut self, buses: &mut Buses) -> Result<VmExit, VcpuError> {
        loop {
            let failure = match self.kvm.run(buses) {
                Err(e @ VcpuError::EmulationFailure { .. }) => e,
                other => return other,
            };
            let before = self.kvm.state()?;
            let (exit, after) = self.step_on_jit(before, buses)?;
            if exit == VmExit::BudgetSpent && after == before {
                // The JIT made no progress either (it would have delivered a fault and moved
                // rip): report what KVM said.
                return Err(failure);
            }
            self.assisted += 1;
            if let VcpuError::EmulationFailure { rip, bytes, reason } = &failure {
                log::debug!("KVM could not run rip {rip:#x} ({bytes:02x?}: {reason}); the JIT did");
            }
            if self.assisted == 1 {
                log::info!(
                    "KVM failed to emulate an instruction; the JIT executes such instructions \
                     and hands the guest back to KVM (hybrid mode)"
                );
            }
            self.kvm.set_state(&after)?;
            match exit {
                VmExit::BudgetSpent => {}
                other => return Ok(other),
            }
        }
    }

    fn state(&mut self) -> Result<CpuState, VcpuError> {
        self.kvm.state()
    }

    fn set_state(&mut self, state: &CpuState) -> Result<(), VcpuError> {
        self.kvm.set_state(state)
    }

    fn kicker(&self) -> Kicker {
        self.kvm.kicker()
    }
}
