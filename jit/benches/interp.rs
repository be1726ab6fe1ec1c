//! Interpreter throughput: nanoseconds per guest instruction for code that runs before it is
//! compiled. On a Linux boot a third of the guest thread's time in the kernel phase is spent
//! interpreting (cold code, and blocks waiting for the compile thread), so this is the cost
//! per instruction that phase pays.
//!
//! Three guests, each a loop of typical kernel instructions (loads, stores, ALU, push/pop, LEA,
//! compare, conditional branch) run by the interpreter-only vCPU, dispatch between blocks
//! included: one in flat 32-bit protected mode, one in 64-bit mode with 4-level paging
//! (identity-mapped with a 2 MiB page), as the Linux kernel runs, and the same 64-bit loop cut
//! into 3-instruction blocks, which shows what dispatching a block costs.
//!
//! `cargo bench -p jit --bench interp [-- ITERATIONS]`

mod common;
use common::{flat32_state, thread_cpu_seconds};
use jit::JitVcpu;
use vcpu::state::{cr0, efer, gpr};
use vcpu::{Buses, CpuState, GuestRam, RegionKind, RegionSpec, Segment, Vcpu};

/// Where the loop starts (and the CPU with it).
const CODE: u64 = 0x1000;
/// Timed runs; the fastest counts.
const RUNS: usize = 5;
/// Guest RAM: code, data, stack and (64-bit guest) page tables.
const RAM_BYTES: u64 = 0x2_0000;

/// CR4.PAE (SDM Vol. 3A 2.5): required for IA-32e paging.
const CR4_PAE: u64 = 1 << 5;
/// Where the 64-bit guest's PML4, PDPT and page directory live.
const PML4: u64 = 0x1_0000;
const PDPT: u64 = 0x1_1000;
const PD: u64 = 0x1_2000;
/// Paging-structure entry bits (SDM Vol. 3A 4.5, Tables 4-15 to 4-18): present, writable,
/// and PS (a 2 MiB page in a page-directory entry).
const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PDE_PS: u64 = 1 << 7;

/// One guest: its name, its code for `iterations` rounds (ending in HLT), the instructions per
/// round, and its starting state at [`CODE`].
struct Guest {
    name: &'static str,
    program: fn(u32) -> Vec<u8>,
    body: u64,
    state: fn() -> CpuState,
}

/// `iterations` rounds of a 9-instruction loop body, then HLT (nasm, `bits 32`).
fn program32(iterations: u32) -> Vec<u8> {
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

/// `iterations` rounds of a 12-instruction loop body, then HLT (nasm, `bits 64`).
fn program64(iterations: u32) -> Vec<u8> {
    let mut code = vec![0xb9]; // mov ecx, iterations
    code.extend_from_slice(&iterations.to_le_bytes());
    code.extend_from_slice(&[
        0x48, 0x8b, 0x06, // loop: mov rax, [rsi]
        0x48, 0x01, 0xd8, // add rax, rbx
        0x48, 0x89, 0x46, 0x08, // mov [rsi+8], rax
        0x50, // push rax
        0x5a, // pop rdx
        0x48, 0x8d, 0x7a, 0x08, // lea rdi, [rdx+8]
        0x49, 0x89, 0xf8, // mov r8, rdi
        0x41, 0x83, 0xe0, 0x7f, // and r8d, 0x7f
        0x44, 0x0f, 0xb6, 0x0e, // movzx r9d, byte [rsi]
        0x48, 0x39, 0xc7, // cmp rdi, rax
        0xff, 0xc9, // dec ecx
        0x75, 0xde, // jnz loop
        0xf4, // hlt
    ]);
    code
}

/// The 64-bit loop cut into blocks of three instructions (the average interpreted block of a
/// Linux boot is about that short): `iterations` rounds of 12 instructions, then HLT (nasm,
/// `bits 64`).
fn program64_short_blocks(iterations: u32) -> Vec<u8> {
    let mut code = vec![0xb9]; // mov ecx, iterations
    code.extend_from_slice(&iterations.to_le_bytes());
    code.extend_from_slice(&[
        0x48, 0x8b, 0x06, // loop: mov rax, [rsi]
        0x48, 0x01, 0xd8, // add rax, rbx
        0xeb, 0x00, // jmp short a
        0x48, 0x89, 0x46, 0x08, // a: mov [rsi+8], rax
        0x50, // push rax
        0xeb, 0x00, // jmp short b
        0x5a, // b: pop rdx
        0x48, 0x8d, 0x7a, 0x08, // lea rdi, [rdx+8]
        0xeb, 0x00, // jmp short c
        0x48, 0x39, 0xc7, // c: cmp rdi, rax
        0xff, 0xc9, // dec ecx
        0x75, 0xe3, // jnz loop
        0xf4, // hlt
    ]);
    code
}

/// 64-bit mode with paging: CR3 at [`PML4`], 64-bit code (0x08) and data (0x10) segments, at
/// [`CODE`] with RSP 0x8000.
fn long64_state() -> CpuState {
    let mut s = flat32_state(CODE);
    s.cr0 |= cr0::PG;
    s.cr4 |= CR4_PAE;
    s.cr3 = PML4;
    s.efer = efer::LME | efer::LMA;
    s.seg[vcpu::SegmentIndex::Cs as usize] =
        Segment::from_descriptor(0x08, 0x0000_ffff, 0x00af_9a00);
    s
}

/// The page tables [`long64_state`] uses: the first 2 MiB identity-mapped.
fn write_page_tables(ram: &GuestRam) {
    let entries = [
        (PML4, PDPT | PTE_P | PTE_RW),
        (PDPT, PD | PTE_P | PTE_RW),
        (PD, PTE_P | PTE_RW | PDE_PS),
    ];
    for (at, e) in entries {
        ram.write_host(at, &e.to_le_bytes()).expect("in RAM");
    }
}

const GUESTS: [Guest; 3] = [
    Guest {
        name: "flat 32-bit",
        program: program32,
        body: 9,
        state: || flat32_state(CODE),
    },
    Guest {
        name: "64-bit paged",
        program: program64,
        body: 12,
        state: long64_state,
    },
    Guest {
        name: "64-bit paged, 3-instruction blocks",
        program: program64_short_blocks,
        body: 12,
        state: long64_state,
    },
];

/// Instructions `g` retires.
fn instructions(g: &Guest, iterations: u32) -> u64 {
    1 + g.body * u64::from(iterations) + 1
}

fn machine(g: &Guest, iterations: u32) -> JitVcpu {
    let ram = GuestRam::new(&[RegionSpec {
        base: 0,
        size: RAM_BYTES,
        kind: RegionKind::Ram,
    }])
    .expect("RAM");
    ram.write_host(CODE, &(g.program)(iterations))
        .expect("the code fits");
    write_page_tables(&ram);
    let mut s = (g.state)();
    s.gpr[gpr::RSI] = 0x3000;
    s.gpr[gpr::RBX] = 3;
    JitVcpu::with_interpreter_only(ram, s).expect("vCPU")
}

fn main() {
    let iterations: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    for g in &GUESTS {
        let mut best = f64::MAX;
        for _ in 0..RUNS {
            let mut v = machine(g, iterations);
            let t0 = thread_cpu_seconds();
            let exit = v.run(&mut Buses::new()).expect("the loop runs");
            let dt = thread_cpu_seconds() - t0;
            assert!(
                matches!(exit, vcpu::VmExit::Halted { .. }),
                "{}: stopped with {exit:?}",
                g.name
            );
            assert_eq!(v.instructions(), instructions(g, iterations), "{}", g.name);
            best = best.min(dt);
        }
        println!(
            "{:8.2} ns/instruction  interpreted, {} ({} instructions, best of {RUNS})",
            best * 1e9 / instructions(g, iterations) as f64,
            g.name,
            instructions(g, iterations)
        );
    }
}
