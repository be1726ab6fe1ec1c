//! A guest that starts on the JIT and moves to KVM mid-run (`emu::handover`), the mechanism
//! behind `emu run --accel kvm --decompress-on-jit`: like a bzImage's decompressor, the JIT part
//! computes a value and writes the code that comes next, then jumps to it; the move happens before
//! that code's first instruction, and KVM must run it on the state and memory the JIT left.

use std::time::Duration;

use devices::SharedBuffer;
use emu::boot_gdt::FlatGdt;
use emu::machine::{Accel, Machine, MachineConfig, RunOutcome};
use vcpu::state::{cr0, gpr};
use vcpu::CpuState;

/// Where the JIT part starts and where it copies the code KVM runs.
const START: u64 = 0x10_0000;
const TAIL_SOURCE: u64 = 0x10_0100;
const TAIL: u64 = 0x40_0000;
/// The "boot parameter" the JIT part leaves in ESI, as the decompressor leaves the zero page.
const MARK: u64 = 0x7000;
/// Status the tail reports on the debug exit port when EAX holds 1 + 2 + ... + 1000.
const PASS: u32 = 0x10;

/// mov esi, TAIL_SOURCE; mov edi, TAIL; mov ecx, 16; rep movsb (copy the tail into place);
/// xor eax, eax; mov ecx, 1000; l: add eax, ecx; loop l (EAX = 500500);
/// mov esi, MARK; mov ebx, TAIL; jmp ebx.
const JIT_PART: &[u8] = &[
    0xbe, 0x00, 0x01, 0x10, 0x00, 0xbf, 0x00, 0x00, 0x40, 0x00, 0xb9, 0x10, 0x00, 0x00, 0x00, 0xf3,
    0xa4, 0x31, 0xc0, 0xb9, 0xe8, 0x03, 0x00, 0x00, 0x01, 0xc8, 0xe2, 0xfc, 0xbe, 0x00, 0x70, 0x00,
    0x00, 0xbb, 0x00, 0x00, 0x40, 0x00, 0xff, 0xe3,
];
/// sub eax, 500500 - PASS; out 0xf4, al; hlt.
const TAIL_REPORTS: &[u8] = &[0x2d, 0x04, 0xa3, 0x07, 0x00, 0xe6, 0xf4, 0xf4];
/// jmp $ (KVM spins until the machine stops it).
const TAIL_SPINS: &[u8] = &[0xeb, 0xfe];

fn kvm_usable() -> bool {
    match accel::kvm_available() {
        Ok(()) => true,
        Err(reason) => {
            println!("skipped: KVM is not usable here: {reason}");
            false
        }
    }
}

/// A machine whose guest runs `JIT_PART` on the JIT and `tail` on KVM.
fn machine(tail: &'static [u8], time_limit: Option<Duration>) -> Machine {
    let config = MachineConfig {
        accel: Accel::Kvm,
        time_limit,
        ..MachineConfig::default()
    };
    let load = |ram: &vcpu::GuestRam| {
        ram.write_host(START, JIT_PART)?;
        ram.write_host(TAIL_SOURCE, tail)?;
        let gdt = FlatGdt {
            base: 0x500,
            code_selector: 0x08,
            data_selector: 0x10,
            long: false,
        };
        gdt.write(ram)?;
        let mut s = gdt.cpu_state();
        s.cr0 |= cr0::PE;
        s.rip = START;
        Ok(s)
    };
    let watch = Box::new(|phys, cpu: &CpuState| phys == TAIL && cpu.gpr[gpr::RSI] == MARK);
    Machine::with_direct_boot_handover(&config, Box::new(SharedBuffer::new()), load, watch)
        .expect("machine builds")
}

#[test]
fn kvm_continues_where_the_jit_stopped() {
    if !kvm_usable() {
        return;
    }
    let mut m = machine(TAIL_REPORTS, Some(Duration::from_secs(60)));
    assert_eq!(m.backend_name(), "jit", "the guest starts on the JIT");
    let outcome = m.run().expect("run");
    // PASS needs the JIT's sum in EAX and the tail the JIT copied; the tail ran on KVM.
    assert_eq!(outcome, RunOutcome::DebugExit { value: PASS });
    assert_eq!(m.backend_name(), "kvm");
    let s = m.cpu_state().unwrap();
    assert_eq!(s.gpr[gpr::RSI], MARK);
    assert_eq!(s.gpr[gpr::RAX] & 0xff, u64::from(PASS));
}

#[test]
fn the_machine_stops_kvm_after_the_move() {
    if !kvm_usable() {
        return;
    }
    // The time limit kicks the vCPU through the kicker the machine took at the start, the
    // JIT's: KVM must share it, or this run would spin forever.
    let mut m = machine(TAIL_SPINS, Some(Duration::from_secs(1)));
    assert_eq!(m.run().expect("run"), RunOutcome::TimedOut);
    assert_eq!(m.backend_name(), "kvm");
    assert_eq!(m.cpu_state().unwrap().rip, TAIL);
}
