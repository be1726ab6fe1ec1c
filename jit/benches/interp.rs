//! Interpreter throughput: nanoseconds per guest instruction for code that runs before it is
//! compiled. On a Linux boot a third of the guest thread's time in the kernel phase is spent
//! interpreting (cold code, and blocks waiting for the compile thread), so this is the cost
//! per instruction that phase pays.
//!
//! The guest is a loop of typical kernel instructions (loads, stores, ALU, push/pop, LEA,
//! compare, conditional branch) in flat 32-bit protected mode, run by the interpreter-only
//! vCPU, dispatch between blocks included.
//!
//! `cargo bench -p jit --bench interp [-- ITERATIONS]`

mod common;
use common::{flat32_state, thread_cpu_seconds};
use jit::JitVcpu;
use vcpu::state::gpr;
use vcpu::{Buses, GuestRam, RegionKind, RegionSpec, Vcpu};

/// Where the loop starts (and the CPU with it).
const CODE: u64 = 0x1000;
/// Timed runs; the fastest counts.
const RUNS: usize = 5;

/// `iterations` rounds of a 9-instruction loop body, then HLT (nasm, `bits 32`).
fn program(iterations: u32) -> Vec<u8> {
    let mut code = vec![0xb9]; // mov ecx, iterations
    code.extend_from_slice(&iterations.to_le_bytes());
    code.extend_from_slice(&[
        0x8b, 0x06, // loop: mov eax, [esi]
        0x01, 0xd8, // add eax, ebx
        0x89, 0x46, 0x04, // mov [esi+4], eax
        0x50, // push eax
        0x5a, // pop edx
        0x8d, 0x7a, 0x08, // lea edi, [edx+8]
        0x39, 0xc7, // cmp edi, eax
        0x49, // dec ecx
        0x75, 0xef, // jnz loop
        0xf4, // hlt
    ]);
    code
}

/// Instructions the program retires.
fn instructions(iterations: u32) -> u64 {
    1 + 9 * u64::from(iterations) + 1
}

fn machine(iterations: u32) -> JitVcpu {
    let ram = GuestRam::new(&[RegionSpec {
        base: 0,
        size: 0x1_0000,
        kind: RegionKind::Ram,
    }])
    .expect("64 KiB of RAM");
    ram.write_host(CODE, &program(iterations))
        .expect("the code fits");
    let mut s = flat32_state(CODE);
    s.gpr[gpr::RSI] = 0x3000;
    s.gpr[gpr::RBX] = 3;
    JitVcpu::with_interpreter_only(ram, s).expect("vCPU")
}

fn main() {
    let iterations: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let mut best = f64::MAX;
    for _ in 0..RUNS {
        let mut v = machine(iterations);
        let t0 = thread_cpu_seconds();
        let exit = v.run(&mut Buses::new()).expect("the loop runs");
        let dt = thread_cpu_seconds() - t0;
        assert!(
            matches!(exit, vcpu::VmExit::Halted { .. }),
            "stopped with {exit:?}"
        );
        assert_eq!(v.instructions(), instructions(iterations));
        best = best.min(dt);
    }
    println!(
        "{:8.2} ns/instruction  interpreted ({} instructions, best of {RUNS})",
        best * 1e9 / instructions(iterations) as f64,
        instructions(iterations)
    );
}
