//! The reuse of TLB probes (see `probe_cache`): accesses through an address already probed on
//! the path must still fault, take the slow path, or see a new mapping exactly when the
//! interpreter does, and the reuse must actually save probes. The 64-bit programs run under
//! 4 KiB paging with a hole, a read-only page and a page whose mapping the program changes;
//! they are assembled with nasm (`bits 64`, `org 0x1000`), the source beside each byte string.
//!
//! Most programs start with `mov rbx, page; mov rdx, [page + 0x100]` for the page they go on
//! to access through RBX: the TLB misses, the interpreter runs that read (filling the TLB
//! entry as the page allows) and the function is left, so the rest runs in a function of its
//! own, where RBX is not a known constant, whose first access hits and whose later ones may
//! reuse that probe.

use std::mem::offset_of;
use std::sync::Arc;

use cranelift_codegen::ir::{Function, InstructionData, Opcode};
use cranelift_codegen::settings;
use cranelift_frontend::FunctionBuilderContext;
use iced_x86::{Decoder, DecoderOptions, Instruction};
use vcpu::state::{cr0, gpr};
use vcpu::{CpuState, GuestRam, Vcpu, VmExit};

use super::tests::{buses, long64, ram, CODE, FAULT_HLT, HLT, HOLE};
use super::{helpers, translate_block, ModeInfo, SegAccess, TranslateEnv};
use crate::context::{JitContext, TlbEntry};
use crate::dispatch::{JitConfig, JitStats, JitVcpu};

/// Present, writable, and both, in a page-table entry (SDM Vol. 3A 4.5).
const PTE_P: u64 = 1;
const PTE_RW: u64 = 2;
const PTE_US: u64 = 4;
/// The page tables: PML4, PDPT, PD, and one page table for the first 2 MiB.
const PML4: u64 = 0x70000;
const PDPT: u64 = 0x71000;
const PD: u64 = 0x72000;
const PT: u64 = 0x73000;
const IDT: u64 = 0x30000;
const GDT: u64 = 0x31000;
/// Mapped read-only (writes fault: CR0.WP is set).
const READ_ONLY: u64 = 0x52000;
/// Mapped to `ALIAS_FIRST` until the program points its entry at `ALIAS_SECOND`.
const ALIAS: u64 = 0x54000;
const ALIAS_FIRST: u64 = 0x55000;
const ALIAS_SECOND: u64 = 0x56000;
/// The last of the 1 MiB of RAM.
const RAM_PAGES: u64 = 0x100;

const HALTED: VmExit = VmExit::Halted {
    interrupts_enabled: false,
};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Write the 4 KiB page tables, the GDT and the IDT (a #PF gate to a HLT at `FAULT_HLT`),
/// and recognisable contents in the data pages.
fn setup(ram: &GuestRam) {
    let w64 = |a: u64, v: u64| ram.write_host(a, &v.to_le_bytes()).unwrap();
    w64(PML4, PDPT | PTE_P | PTE_RW | PTE_US);
    w64(PDPT, PD | PTE_P | PTE_RW | PTE_US);
    w64(PD, PT | PTE_P | PTE_RW | PTE_US);
    for page in 0..RAM_PAGES {
        let la = page << 12;
        let pte = match la {
            HOLE => 0,
            READ_ONLY => la | PTE_P,
            ALIAS => ALIAS_FIRST | PTE_P | PTE_RW,
            _ => la | PTE_P | PTE_RW,
        };
        w64(PT + page * 8, pte);
    }
    for i in 0..0x200u64 {
        w64(HOLE - 0x1000 + 8 * i, 0x1111_0000 + i);
        w64(HOLE + 0x1000 + 8 * i, 0x2222_0000 + i);
        w64(READ_ONLY + 8 * i, 0x3333_0000 + i);
        w64(ALIAS_FIRST + 8 * i, 0x4444_0000 + i);
        w64(ALIAS_SECOND + 8 * i, 0x5555_0000 + i);
    }
    let gdt: [u64; 3] = [0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
    for (i, d) in gdt.iter().enumerate() {
        w64(GDT + 8 * i as u64, *d);
    }
    // Gate 14: 64-bit interrupt gate, selector 0x08, offset FAULT_HLT (SDM Vol. 3A 6.14.1).
    let low = (0x08u64 << 16) | (FAULT_HLT & 0xffff) | (((FAULT_HLT >> 16) & 0xffff) << 48);
    w64(IDT + 14 * 16, low | (0x8e00 << 32));
    w64(IDT + 14 * 16 + 8, FAULT_HLT >> 32);
}

/// What a run ended with.
struct Run {
    state: CpuState,
    mem: Vec<u8>,
    stats: JitStats,
}

/// Run `code` under the paging of [`setup`], translated and interpreted; assert both halt and
/// agree in state and in the first 1 MiB of memory, and that the translated run ran
/// instructions inline; return the translated run.
fn paged64(code: &[u8]) -> Run {
    paged64_at(code, 0)
}

/// [`paged64`] translating blocks once they ran `hot_threshold` times (above 0, regions
/// form).
fn paged64_at(code: &[u8], hot_threshold: u32) -> Run {
    let mut runs = Vec::new();
    for translate in [true, false] {
        let ram = ram();
        let mut s = long64(&ram);
        setup(&ram);
        ram.write_host(CODE, code).unwrap();
        ram.write_host(FAULT_HLT, &[HLT]).unwrap();
        s.cr0 |= cr0::WP;
        s.cr3 = PML4;
        s.gdtr = vcpu::DescriptorTable {
            base: GDT,
            limit: 0x17,
        };
        s.idtr = vcpu::DescriptorTable {
            base: IDT,
            limit: 0xfff,
        };
        let config = JitConfig {
            translate,
            hot_threshold,
            ..JitConfig::default()
        };
        let mut v = JitVcpu::with_config(ram, s, config).unwrap();
        v.set_instruction_budget(Some(100_000));
        assert_eq!(v.run(&mut buses()).unwrap(), HALTED);
        let mut state = v.state().unwrap();
        state.tsc = 0; // host time (crate::tsc)
        let mut mem = vec![0u8; (RAM_PAGES << 12) as usize];
        v.ram().read(0, &mut mem).unwrap();
        runs.push(Run {
            state,
            mem,
            stats: v.stats(),
        });
    }
    let (t, i) = (&runs[0], &runs[1]);
    assert!(t.stats.inline_insns > 0, "{:?}", t.stats);
    assert_eq!(t.state, i.state, "translated vs interpreted state");
    if let Some(at) = t.mem.iter().zip(&i.mem).position(|(a, b)| a != b) {
        panic!("memory differs at {at:#x}");
    }
    runs.swap_remove(0)
}

/// Assert that `r` ended in the #PF handler with CR2 = `cr2`, the error code `code` and the
/// saved RIP `rip` (SDM Vol. 3A 6.14.2: the frame is SS, RSP, RFLAGS, CS, RIP, error code).
fn assert_page_fault(r: &Run, cr2: u64, code: u64, rip: u64) {
    assert_eq!(r.state.rip, FAULT_HLT + 1);
    assert_eq!(r.state.cr2, cr2, "cr2");
    let sp = r.state.gpr[gpr::RSP] as usize;
    let word = |i: usize| u64::from_le_bytes(r.mem[sp + 8 * i..sp + 8 * i + 8].try_into().unwrap());
    assert_eq!(word(0), code, "error code");
    assert_eq!(word(1), rip, "faulting rip");
}

#[test]
fn an_access_growing_a_probed_range_into_an_unmapped_page_faults() {
    // mov rbx, HOLE-0x1000; mov rdx, [HOLE-0xf00] (see the module documentation)
    // mov rax, [rbx+0xff0]; mov ecx, [rbx+0xffe]; hlt
    // The second read shares the first's base and is 16 bytes on, but crosses into the hole.
    let code = hex("bb00f00400488b142500f10400488b83f00f00008b8bfe0f0000f4");
    let r = paged64(&code);
    assert_page_fault(&r, HOLE, 0, CODE + 0x14);
    assert_eq!(r.state.gpr[gpr::RAX], 0x1111_0000 + 0x1fe);
}

#[test]
fn an_access_below_a_probed_range_into_an_unmapped_page_faults() {
    // mov rbx, HOLE+0x1000; mov rdx, [HOLE+0x1100] (see the module documentation)
    // mov rax, [rbx+8]; mov cl, [rbx-1]; hlt
    let code = hex("bb00100500488b142500110500488b43088a4bfff4");
    let r = paged64(&code);
    assert_page_fault(&r, HOLE + 0xfff, 0, CODE + 0x11);
    assert_eq!(r.state.gpr[gpr::RAX], 0x2222_0001);
}

#[test]
fn a_write_after_a_read_of_a_read_only_page_faults() {
    // mov rbx, READ_ONLY; mov rdx, [READ_ONLY+0x100] (see the module documentation)
    // mov rax, [rbx]; mov [rbx+8], rax; hlt
    let code = hex("bb00200500488b142500210500488b0348894308f4");
    let r = paged64(&code);
    // Present, write.
    assert_page_fault(&r, READ_ONLY + 8, 3, CODE + 0x10);
    assert_eq!(r.state.gpr[gpr::RAX], 0x3333_0000);
}

#[test]
fn a_write_after_a_read_of_the_code_page_patches_the_code() {
    //   mov ecx, 3
    // L: mov rax, [rel patch]
    //   mov byte [rel patch+1], cl    ; same page as the read, which holds this code
    // patch: mov edx, 1
    //   add esi, edx
    //   dec ecx
    //   jnz L
    //   hlt
    let code = hex("b903000000488b0506000000880d01000000ba0100000001d6ffc975e8f4");
    let r = paged64(&code);
    assert_eq!(r.state.rip, CODE + code.len() as u64);
    assert_eq!(
        r.state.gpr[gpr::RSI],
        3 + 2 + 1,
        "every iteration ran the patched MOV"
    );
}

#[test]
fn an_invlpg_between_two_accesses_through_the_same_base_is_seen() {
    // mov rbx, ALIAS; mov rdx, [ALIAS+0x100] (see the module documentation)
    // mov rax, [rbx]
    // mov qword [PT + 8 * (ALIAS >> 12)], ALIAS_SECOND | P | RW; invlpg [rbx]
    // mov rcx, [rbx+8]; hlt
    assert_eq!(
        PT + 8 * (ALIAS >> 12),
        0x732a0,
        "the code embeds the entry's address"
    );
    assert_eq!(ALIAS_SECOND | PTE_P | PTE_RW, 0x56003, "and its new value");
    let code = hex("bb00400500488b142500410500488b0348c70425a0320700036005000f013b488b4b08f4");
    let r = paged64(&code);
    assert_eq!(r.state.rip, CODE + code.len() as u64);
    assert_eq!(r.state.gpr[gpr::RAX], 0x4444_0000);
    assert_eq!(r.state.gpr[gpr::RCX], 0x5555_0001);
}

/// How many TLB addends the function translated from the 64-bit `bytes` loads: one per full
/// probe of the TLB.
fn tlb_probes(bytes: &[u8]) -> usize {
    region_tlb_probes(&[bytes])
}

/// [`tlb_probes`] of a region: the basic blocks `blocks`, one after the other from `CODE`.
fn region_tlb_probes(blocks: &[&[u8]]) -> usize {
    let mut ip = CODE;
    let placed: Vec<(u64, &[u8])> = blocks
        .iter()
        .map(|&bytes| {
            ip += bytes.len() as u64;
            (ip - bytes.len() as u64, bytes)
        })
        .collect();
    placed_region_tlb_probes(&placed)
}

/// [`tlb_probes`] of a region of basic blocks `(ip, bytes)`, the first its entry.
fn placed_region_tlb_probes(blocks: &[(u64, &[u8])]) -> usize {
    let region: Vec<Arc<[Instruction]>> = blocks
        .iter()
        .map(|&(ip, bytes)| {
            let mut d = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
            let mut insns = Vec::new();
            while d.can_decode() {
                insns.push(d.decode());
            }
            insns.into()
        })
        .collect();
    let isa = cranelift_native::builder()
        .expect("host supported")
        .finish(settings::Flags::new(settings::builder()))
        .expect("host supported");
    let loop_limit = Box::new(u64::MAX);
    let env = TranslateEnv {
        mode: ModeInfo {
            bitness: 64,
            stack_size: 8,
            seg_access: (0..6).fold(0, |a, s| a | SegAccess::read(s) | SegAccess::write(s)),
        },
        helpers: helpers::table(),
        loop_limit: &*loop_limit,
        chain: None,
    };
    let mut func = Function::new();
    func.signature = crate::cache::block_signature(isa.pointer_type());
    translate_block(
        &mut func,
        &mut FunctionBuilderContext::new(),
        isa.frontend_config(),
        isa.default_call_conv(),
        &region,
        &env,
    );
    let tlb = offset_of!(JitContext, tlb);
    let addend = (tlb + offset_of!(TlbEntry, addend)) as i32;
    func.layout
        .blocks()
        .flat_map(|b| func.layout.block_insts(b))
        .filter(|&i| {
            matches!(func.dfg.insts[i], InstructionData::Load {
                opcode: Opcode::Load,
                offset,
                ..
            } if i32::from(offset) == addend)
        })
        .count()
}

#[test]
fn accesses_through_one_base_probe_the_tlb_once() {
    // mov r8, [rax]; mov [rax+0x10], r9; cmp rsi, [rax+0x28]; mov rdx, [rax+0x10];
    // add [rax+8], rdx; push rbx; push rcx; pop rcx; pop rbx; ret
    // [rax]: a read probe; [rax+0x10]: the same entry's write tag and a compare;
    // [rax+0x28]: a compare; [rax+0x10] and [rax+8]: inside the range; the four stack
    // accesses and the RET's read share one write probe of [rsp-8].
    let code = hex("4c8b004c894810483b7028488b5010480150085351595bc3");
    assert_eq!(tlb_probes(&code), 2);
}

#[test]
fn absolute_addresses_in_one_page_share_one_probe() {
    // mov r8, [0x8000]; mov r9, [0x8008] (no check); mov [0x8010], r9 (the entry's write
    // tag only); jmp 0x2000
    let code = hex("4c8b0425008000004c8b0c25088000004c890c2510800000e9e30f0000");
    assert_eq!(tlb_probes(&code), 1);
}

#[test]
fn a_helper_call_forgets_the_probes() {
    // mov r8, [0x8000]; cpuid (interpreted: a helper may change the TLB); mov r9, [0x8008];
    // jmp 0x2000
    let code = hex("4c8b0425008000000fa24c8b0c2508800000e9e90f0000");
    assert_eq!(tlb_probes(&code), 2);
}

#[test]
fn what_a_block_proved_holds_in_its_only_successor() {
    // A: mov r8, [rax]; test r8, r8; jz 0x3000
    // B: mov r9, [rax+8]; mov [rax+16], r9; jmp 0x2000
    // B's accesses grow A's range (compares and the entry's write tag): one probe in all.
    let a = hex("4c8b004d85c00f84f41f0000");
    let b = hex("4c8b48084c894810e9e70f0000");
    assert_eq!(region_tlb_probes(&[&a, &b]), 1);
}

#[test]
fn an_access_growing_a_range_proved_in_the_previous_block_into_a_hole_faults() {
    //   mov rbx, HOLE-0x1050
    //   jmp L                    ; L is a block of its own, hot before the next one
    // L: mov rax, [rbx+0xff0]
    //   test rax, rax
    //   jz out
    //   mov ecx, [rbx+0xffa]     ; grows L's range: crosses into the hole in iteration 22
    //   add rbx, 4
    //   jmp L
    // out: hlt
    let code = hex("bbb0ef0400eb00488b83f00f00004885c0740c8b8bfa0f00004883c304ebe8f4");
    let r = paged64_at(&code, 4);
    assert!(r.stats.region_blocks >= 1, "{:?}", r.stats);
    assert_page_fault(&r, HOLE, 0, CODE + 0x13);
    assert_eq!(r.state.gpr[gpr::RBX], HOLE - 0xffc);
}

#[test]
fn a_block_inside_another_block_still_counts_as_reached_by_one_edge() {
    // A: mov r8, [rax]; test r8, r8; jz L2
    // C: nop
    // B = L2: mov r9, [rax+8]; jmp 0x2000
    // C's code runs on into B's, which only A's JZ jumps to: both reuse A's probe.
    let a = hex("4c8b004d85c00f8401000000");
    let c = hex("904c8b4808e9ea0f0000");
    let blocks: [(u64, &[u8]); 3] = [(CODE, &a), (CODE + 0xd, &c[1..]), (CODE + 0xc, &c)];
    assert_eq!(placed_region_tlb_probes(&blocks), 1);
}

/// `cargo test -p jit --release -- --ignored --nocapture dict_repeat`: the LZMA decoder's
/// `dict_repeat` loop (14.8% of the kernel's decompressor under emu), six accesses per
/// iteration of which three share a base.
#[test]
#[ignore = "timing only, prints numbers"]
fn dict_repeat_throughput() {
    //   mov eax, DATA; mov qword [rax], 0x20000 (dict.buf); mov qword [rax+0x28], 0x8000
    //   (dict.end); mov qword [rax+0x10], 0 (dict.pos); xor ecx, ecx; xor edx, edx
    //   mov edi, 20000000; xor r10d, r10d
    // L: mov r8, [rax]; lea r9, [rdx+1]; lea rsi, [rcx+1]; mov [rax+0x10], r9
    //   movzx ecx, byte [r8+rcx]; mov [r8+rdx], cl; cmp rsi, [rax+0x28]; cmove rsi, r10
    //   mov rdx, [rax+0x10]; and edx, 0x7fff; mov rcx, rsi; sub edi, 1; jne L; hlt
    let code = hex(concat!(
        "b80080000048c7000000020048c740280080000048c740100000000031c931d2bf002d3101",
        "4531d24c8b004c8d4a01488d71014c894810410fb60c0841880c10483b7028490f44f2488b",
        "501081e2ff7f00004889f183ef0175cef4"
    ));
    let ram = ram();
    let s = long64(&ram);
    ram.write_host(CODE, &code).unwrap();
    let mut v = JitVcpu::with_config(ram, s, JitConfig::default()).unwrap();
    let t0 = std::time::Instant::now();
    assert_eq!(v.run(&mut buses()).unwrap(), HALTED);
    let dt = t0.elapsed();
    println!(
        "{} instructions in {dt:?} = {:.1} MIPS",
        v.instructions(),
        v.instructions() as f64 / dt.as_secs_f64() / 1e6
    );
}
