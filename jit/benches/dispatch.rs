//! Dispatcher cost per block over a large working set: the run loop finding, checking and
//! starting each of thousands of small blocks, as it does on a Linux boot (tens of thousands
//! of blocks, most records cold in the data cache).
//!
//! The guest is a ring of [`BLOCKS`] two-instruction blocks (`inc eax; jmp next`) in flat
//! 32-bit protected mode, run by the interpreter-only vCPU so that every block goes through the
//! dispatcher (compiled blocks would chain past it). Prints nanoseconds per block.
//!
//! `cargo bench -p jit --bench dispatch [-- ROUNDS]`

mod common;
use common::{flat32_state, thread_cpu_seconds};
use jit::JitVcpu;
use vcpu::state::gpr;
use vcpu::{Buses, CpuState, GuestRam, RegionKind, RegionSpec, Vcpu};

/// Blocks in the ring.
const BLOCKS: u64 = 65536;
/// Bytes between two blocks.
const STRIDE: u64 = 16;
/// Where the CPU starts (the round counter is set up there).
const START: u64 = 0x1000;
/// The first block of the ring.
const RING: u64 = 0x2000;
/// Timed runs; the fastest counts.
const RUNS: usize = 5;

/// `jmp rel32` from `from` to `to` (5 bytes).
fn jmp(from: u64, to: u64) -> [u8; 5] {
    let rel = (to as i64 - (from as i64 + 5)) as i32;
    let r = rel.to_le_bytes();
    [0xe9, r[0], r[1], r[2], r[3]]
}

/// The ring in RAM and a vCPU at its start (ECX, the round counter, still to be set).
fn machine() -> (JitVcpu, CpuState) {
    let ram = GuestRam::new(&[RegionSpec {
        base: 0,
        size: 0x40_0000,
        kind: RegionKind::Ram,
    }])
    .expect("4 MiB of RAM");
    ram.write_host(START, &jmp(START, RING)).expect("fits");
    for i in 0..BLOCKS {
        let at = RING + i * STRIDE;
        let mut b = vec![0x40]; // inc eax
        if i + 1 < BLOCKS {
            b.extend_from_slice(&jmp(at + 1, at + STRIDE));
        } else {
            // dec ecx ; jnz RING ; hlt
            b.push(0x49);
            b.extend_from_slice(&[0x0f, 0x85]);
            let rel = (RING as i64 - (at as i64 + 8)) as i32;
            b.extend_from_slice(&rel.to_le_bytes());
            b.push(0xf4);
        }
        ram.write_host(at, &b).expect("fits");
    }
    let s = flat32_state(START);
    let v = JitVcpu::with_interpreter_only(ram, s).expect("vCPU");
    (v, s)
}

/// Run the ring `rounds` times from its start; the blocks dispatched.
fn run_rounds(v: &mut JitVcpu, start: &CpuState, rounds: u32) -> u64 {
    let mut s = *start;
    s.gpr[gpr::RCX] = u64::from(rounds);
    v.set_state(&s).expect("state");
    let before = v.stats().dispatched;
    let exit = v.run(&mut Buses::new()).expect("the ring runs");
    assert!(
        matches!(exit, vcpu::VmExit::Halted { .. }),
        "stopped with {exit:?}"
    );
    v.stats().dispatched - before
}

fn main() {
    let rounds: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let blocks = BLOCKS * u64::from(rounds);
    let mut best = f64::MAX;
    for _ in 0..RUNS {
        let (mut v, start) = machine();
        // One round decodes every block: not timed.
        run_rounds(&mut v, &start, 1);
        let t0 = thread_cpu_seconds();
        let n = run_rounds(&mut v, &start, rounds);
        let dt = thread_cpu_seconds() - t0;
        // The ring's blocks, the start block and the final HLT.
        assert_eq!(n, blocks + 2);
        best = best.min(dt);
    }
    println!(
        "{:8.2} ns/block  dispatched ({BLOCKS} blocks x {rounds} rounds, interpreted, best of {RUNS})",
        best * 1e9 / blocks as f64
    );
}
