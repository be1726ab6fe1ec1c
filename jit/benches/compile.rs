//! Compile cost per translated function: typical small Linux-kernel blocks (64-bit mode, paging,
//! chained exits, as the dispatcher translates them) go through `CodeCache::compile` many times
//! and the microseconds per function are printed. This is the number the compile thread's
//! throughput, and so how much of a boot runs interpreted, depends on.
//!
//! `cargo bench -p jit --bench compile [-- ROUNDS [BLOCK]]`; profile with
//! `perf record -g target/release/deps/compile-*`.

mod common;
use common::thread_cpu_seconds;
use std::sync::Arc;

use cranelift_codegen::ir::Function;
use cranelift_codegen::settings;
use cranelift_frontend::FunctionBuilderContext;
use iced_x86::{Decoder, DecoderOptions, Instruction};
use jit::cache::{block_signature, ChainSlot, CodeCache, JumpCache, CHAIN_SLOTS};
use jit::translate::{helpers, translate_block, ChainEnv, ModeInfo, SegAccess, TranslateEnv};

/// Guest ip of every block (the kernel's text mapping).
const IP: u64 = 0xffff_ffff_8100_0000;

/// Blocks as nasm assembled them (`bits 64`), with what they are.
const BLOCKS: &[(&str, &str)] = &[
    ("mov rdi,rbx; call", "4889dfe82f120000"),
    (
        "push rbp; mov rbp,rsp; push r12; push rbx; mov rbx,rdi; mov r12,rsi; call",
        "554889e54154534889fb4989f4e8fb1f0000",
    ),
    (
        "mov rax,[rdi+8]; add rax,rsi; mov [rdi+16],rax; cmp rax,rdx; jne",
        "488b47084801f0488947104839d0753e",
    ),
    ("pop rbx; pop r12; pop rbp; ret", "5b415c5dc3"),
    ("mov rax,[rdi]; test rax,rax; je", "488b074885c0747e"),
    (
        "12 insns: loads, lea, shifts, alu, store, movzx, cmp; ja",
        "8b4f20488d144948c1e204480356084c8b024181e0ff0f00004981c8001000004c8946180fb6470583e80383f8070f87fa000000",
    ),
];

/// Timed batches per block; the fastest one counts.
const BATCHES: usize = 10;

/// Instructions and blocks in the Cranelift IR of a block (what Cranelift's passes scale
/// with).
fn ir_size(insns: &Arc<[Instruction]>, env: &TranslateEnv) -> (usize, usize) {
    let isa = cranelift_native::builder()
        .expect("host supported")
        .finish(settings::Flags::new(settings::builder()))
        .expect("host supported");
    let mut func = Function::new();
    func.signature = block_signature(isa.pointer_type());
    translate_block(
        &mut func,
        &mut FunctionBuilderContext::new(),
        isa.frontend_config(),
        isa.default_call_conv(),
        std::slice::from_ref(insns),
        env,
    );
    let insts: usize = func
        .layout
        .blocks()
        .map(|b| func.layout.block_insts(b).count())
        .sum();
    (insts, func.layout.blocks().count())
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn decode(bytes: &[u8]) -> Arc<[Instruction]> {
    let mut d = Decoder::with_ip(64, bytes, IP, DecoderOptions::NONE);
    let mut v = Vec::new();
    while d.can_decode() {
        v.push(d.decode());
    }
    v.into()
}

fn main() {
    // Arguments (after cargo's own, such as `--bench`): rounds, then optionally the index of
    // the one block to time.
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = numbers.first().copied().unwrap_or(2000);
    let only = numbers.get(1).copied();
    let loop_limit = Box::new(u64::MAX);
    let jump_cache = JumpCache::default();
    let mut slots = vec![ChainSlot::UNLINKED; CHAIN_SLOTS];
    let mode = ModeInfo {
        bitness: 64,
        stack_size: 8,
        seg_access: (0..6).fold(0, |a, s| a | SegAccess::read(s) | SegAccess::write(s)),
    };
    let env = TranslateEnv {
        mode,
        helpers: helpers::table(),
        loop_limit: &*loop_limit,
        chain: (std::env::var_os("NOCHAIN").is_none()).then_some(ChainEnv {
            slots: slots.as_mut_ptr(),
            slot_count: slots.len(),
            paging: std::env::var_os("NOPAGING").is_none(),
            jump_cache: jump_cache.base(),
            mode_id: 0,
            cs_base: 0,
        }),
    };
    let blocks: Vec<(&str, Arc<[Instruction]>)> = BLOCKS
        .iter()
        .enumerate()
        .filter(|(i, _)| only.is_none_or(|o| o == *i))
        .map(|(_, (n, h))| (*n, decode(&hex(h))))
        .collect();
    let mut cache = CodeCache::new().expect("host supported by Cranelift");
    let mut total = 0.0;
    for (name, insns) in &blocks {
        // Warm up (allocations reach their steady size), then time batches: the fastest batch
        // is the least disturbed by other work on the machine.
        for _ in 0..rounds / 10 {
            cache.compile(vec![insns.clone()], &env).expect("compiles");
        }
        let batch = (rounds / BATCHES).max(1);
        let mut us = f64::MAX;
        for _ in 0..BATCHES {
            let start = thread_cpu_seconds();
            for _ in 0..batch {
                cache.compile(vec![insns.clone()], &env).expect("compiles");
            }
            us = us.min((thread_cpu_seconds() - start) * 1e6 / batch as f64);
        }
        let (ir_insts, ir_blocks) = ir_size(insns, &env);
        println!(
            "{us:8.1} us/function  {ir_insts:3} IR insts {ir_blocks:2} blocks  {:2} insns  {name}",
            insns.len()
        );
        total += us;
        if cache.function_count() > 50_000 {
            // SAFETY: none of the compiled functions ran or will run.
            unsafe { cache.flush() };
        }
    }
    println!(
        "{:8.1} us/function  mean over the {} blocks",
        total / blocks.len() as f64,
        blocks.len()
    );
}
