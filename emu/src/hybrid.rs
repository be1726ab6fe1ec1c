//! KVM with the JIT as a safety net: when KVM cannot execute an instruction (its instruction
//! emulator gives up with KVM_EXIT_INTERNAL_ERROR, or an entry fails), the guest's state is moved
//! to the JIT's interpreter for exactly that one instruction and then back to KVM, which resumes.
//!
//! This is possible only because both backends share one `CpuState`, one guest memory and one
//! set of device buses: the hand-over is `state()` on one backend and `set_state()` on the other.
//! It lives here, in `emu`, because `jit` and `accel` never depend on each other.
//!
//! Where KVM can run an instruction, but wrongly, and knows it (`VcpuError::Unsupported`: our
//! build hosts' KVM runs SYSCALL without entering ring 0, and ends the run when a guest sets up
//! SYSCALL), the guest moves to the JIT for good, the same way.

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
    /// How the JIT runs the guest if KVM gives it up for good.
    jit_config: JitConfig,
    /// The JIT that runs the guest since KVM gave it up; KVM stays idle then.
    moved: Option<JitVcpu>,
}

impl HybridVcpu {
    /// `jit_config` is the JIT's configuration should the guest have to move there for good.
    pub fn new(kvm: Box<dyn Vcpu>, ram: GuestRam, jit_config: JitConfig) -> Self {
        Self {
            kvm,
            ram,
            assisted: 0,
            jit_config,
            moved: None,
        }
    }

    /// Whether KVM gave the guest up and the JIT runs it now.
    pub fn moved_to_jit(&self) -> bool {
        self.moved.is_some()
    }

    /// Move the guest to a JIT of its own, for good, with KVM's kicker (which the machine's
    /// controls hold).
    fn move_to_jit(&mut self, rip: u64, why: &str) -> Result<&mut JitVcpu, VcpuError> {
        let state = self.kvm.state()?;
        let mut jit = JitVcpu::with_config(self.ram.clone(), state, self.jit_config)
            .map_err(|e| VcpuError::Backend(format!("JIT: {e}")))?;
        jit.share_kicker(self.kvm.kicker());
        log::warn!("at rip {rip:#x} {why}; the guest continues on the JIT");
        Ok(self.moved.insert(jit))
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
        if self.moved.is_some() {
            "jit"
        } else {
            "kvm"
        }
    }

    fn run(&mut self, buses: &mut Buses) -> Result<VmExit, VcpuError> {
        if let Some(jit) = &mut self.moved {
            return jit.run(buses);
        }
        loop {
            let failure = match self.kvm.run(buses) {
                Err(e @ VcpuError::EmulationFailure { .. }) => e,
                Err(VcpuError::Unsupported { rip, what }) => {
                    return self.move_to_jit(rip, &what)?.run(buses);
                }
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
        match &mut self.moved {
            Some(jit) => jit.state(),
            None => self.kvm.state(),
        }
    }

    fn set_state(&mut self, state: &CpuState) -> Result<(), VcpuError> {
        match &mut self.moved {
            Some(jit) => jit.set_state(state),
            None => self.kvm.set_state(state),
        }
    }

    fn kicker(&self) -> Kicker {
        self.kvm.kicker()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcpu::state::gpr;
    use vcpu::{RegionKind, RegionSpec, Segment, SegmentIndex};

    /// A backend that gives every guest up at once, as KVM does on a host whose SYSCALL is
    /// broken when the guest sets its system-call entry point.
    struct GivesUp {
        state: CpuState,
        kicker: Kicker,
    }

    impl Vcpu for GivesUp {
        fn backend_name(&self) -> &'static str {
            "kvm"
        }
        fn run(&mut self, _buses: &mut Buses) -> Result<VmExit, VcpuError> {
            Err(VcpuError::Unsupported {
                rip: self.state.rip,
                what: "a test backend".into(),
            })
        }
        fn state(&mut self) -> Result<CpuState, VcpuError> {
            Ok(self.state)
        }
        fn set_state(&mut self, state: &CpuState) -> Result<(), VcpuError> {
            self.state = *state;
            Ok(())
        }
        fn kicker(&self) -> Kicker {
            self.kicker.clone()
        }
    }

    /// Real mode at 0:1000 over 64 KiB of RAM holding `code`.
    fn guest(code: &[u8]) -> (GuestRam, CpuState) {
        let ram = GuestRam::new(&[RegionSpec {
            base: 0,
            size: 0x1_0000,
            kind: RegionKind::Ram,
        }])
        .unwrap();
        ram.write_host(0x1000, code).unwrap();
        let mut s = CpuState::reset();
        s.seg[SegmentIndex::Cs as usize] = Segment::real_mode(0);
        s.rip = 0x1000;
        (ram, s)
    }

    #[test]
    fn a_guest_kvm_gives_up_continues_on_the_jit_for_good() {
        // mov ax, 0x1234; hlt
        let (ram, s) = guest(&[0xb8, 0x34, 0x12, 0xf4]);
        let kvm = GivesUp {
            state: s,
            kicker: Kicker::new(),
        };
        let mut v = HybridVcpu::new(Box::new(kvm), ram, JitConfig::default());
        assert_eq!(v.backend_name(), "kvm");
        let mut buses = Buses::new();
        let exit = v.run(&mut buses).unwrap();
        assert_eq!(
            exit,
            VmExit::Halted {
                interrupts_enabled: false
            }
        );
        assert!(v.moved_to_jit());
        assert_eq!(v.backend_name(), "jit");
        let after = v.state().unwrap();
        assert_eq!(after.gpr[gpr::RAX] & 0xffff, 0x1234);
        assert_eq!(after.rip, 0x1004);
        // State now goes to and from the JIT, not the idle KVM.
        let mut changed = after;
        changed.gpr[gpr::RBX] = 7;
        v.set_state(&changed).unwrap();
        assert_eq!(v.state().unwrap().gpr[gpr::RBX], 7);
    }

    #[test]
    fn the_jit_answers_the_machines_kicker_after_the_move() {
        // hlt, with interrupts on: without the kick the JIT would return Halted.
        let (ram, mut s) = guest(&[0xf4]);
        s.rflags |= vcpu::state::rflags::IF;
        let kicker = Kicker::new();
        let kvm = GivesUp {
            state: s,
            kicker: kicker.clone(),
        };
        let mut v = HybridVcpu::new(Box::new(kvm), ram, JitConfig::default());
        // The machine's controls hold KVM's kicker; a kick through it stops the JIT's loop.
        kicker.kick();
        assert_eq!(v.run(&mut Buses::new()).unwrap(), VmExit::Kicked);
        assert!(v.moved_to_jit());
    }
}
