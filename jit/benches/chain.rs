//! Cost of going from one translated function to another: a guest loop that calls a small
//! function each iteration (the call enters the callee's function through a linked chain slot,
//! the return comes back through the inline jump-cache lookup), beside the same work in one
//! self-looping function. A Linux boot makes about 190 million such transitions (the xz
//! decompressor's helpers, the kernel's calls and returns), so their cost is a large part of
//! generated code's time. Prints nanoseconds per iteration of each loop and their difference per
//! transition.
//!
//! `cargo bench -p jit --bench chain [-- ITERATIONS]`

mod common;
use common::{flat32_state, thread_cpu_seconds};
use jit::dispatch::JitConfig;
use jit::JitVcpu;
use vcpu::{Buses, GuestRam, RegionKind, RegionSpec, Vcpu, VmExit};

/// Where the program starts.
const CODE: u64 = 0x1000;
/// Offset of the called function from `CODE`.
const CALLEE: usize = 0x100;
/// Timed runs; the fastest counts.
const RUNS: usize = 5;

/// `iterations` rounds, then HLT (nasm, `bits 32`). With `call`:
/// `loop: call f; sub ecx, 1; jnz loop` and `f: add eax, 1; ret`; without:
/// `loop: add eax, 1; add eax, 1; sub ecx, 1; jnz loop` (the same adds, one function).
fn program(iterations: u32, call: bool) -> Vec<u8> {
    let mut code = vec![0xb9]; // mov ecx, iterations
    code.extend_from_slice(&iterations.to_le_bytes());
    if call {
        let after_call = (code.len() + 5) as u32;
        code.push(0xe8); // call rel32
        code.extend_from_slice(&(CALLEE as u32).wrapping_sub(after_call).to_le_bytes());
        code.extend_from_slice(&[0x83, 0xe9, 0x01, 0x75, 0xf6, 0xf4]); // sub ecx,1; jnz; hlt
        code.resize(CALLEE, 0x90);
        code.extend_from_slice(&[0x83, 0xc0, 0x01, 0xc3]); // add eax,1; ret
    } else {
        code.extend_from_slice(&[
            0x83, 0xc0, 0x01, // add eax, 1
            0x83, 0xc0, 0x01, // add eax, 1
            0x83, 0xe9, 0x01, // sub ecx, 1
            0x75, 0xf5, // jnz loop
            0xf4, // hlt
        ]);
    }
    code
}

/// Best CPU seconds of [`RUNS`] runs of the program, compiled on first sight (so that nothing
/// runs interpreted but the first iteration).
fn best_seconds(iterations: u32, call: bool) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..RUNS {
        let ram = GuestRam::new(&[RegionSpec {
            base: 0,
            size: 0x1_0000,
            kind: RegionKind::Ram,
        }])
        .expect("64 KiB of RAM");
        ram.write_host(CODE, &program(iterations, call))
            .expect("the code fits");
        let config = JitConfig {
            hot_threshold: 1,
            ..JitConfig::default()
        };
        let mut v = JitVcpu::with_config(ram, flat32_state(CODE), config).expect("vCPU");
        let t0 = thread_cpu_seconds();
        let exit = v.run(&mut Buses::new()).expect("the loop runs");
        best = best.min(thread_cpu_seconds() - t0);
        assert!(
            matches!(exit, VmExit::Halted { .. }),
            "stopped with {exit:?}"
        );
    }
    best
}

fn main() {
    let iterations: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000_000);
    let per_iteration = |s: f64| s * 1e9 / f64::from(iterations);
    let inline = per_iteration(best_seconds(iterations, false));
    let called = per_iteration(best_seconds(iterations, true));
    println!("{inline:8.2} ns/iteration  one self-looping function");
    println!("{called:8.2} ns/iteration  a call and a return between functions");
    println!(
        "{:8.2} ns/transition (best of {RUNS})",
        (called - inline) / 2.0
    );
}
