//! Interpreter tests on a tiny machine: 1 MiB of RAM, the debug console and debug-exit ports,
//! machine code assembled with nasm (sources in the comments), executed with `step`.
//! Expected values are worked out by hand from the SDM, never by the code under test.

use decoder::{decode_block, BlockLimits};
use devices::{Buses, DebugCon, DebugExit, PlatformRequest, SharedBuffer};
use vcpu::state::{cr0, gpr, rflags};
use vcpu::{CpuState, ExecMode, GuestRam, RegionKind, RegionSpec, Segment, SegmentIndex};

use super::{step, Step};
use crate::context::JitContext;
use crate::mem;
use crate::runtime::Runtime;

struct Machine {
    ctx: Box<JitContext>,
    rt: Runtime,
    buses: Box<Buses>,
    out: SharedBuffer,
}

const CF: u64 = rflags::CF;
const PF: u64 = rflags::PF;
const AF: u64 = rflags::AF;
const ZF: u64 = rflags::ZF;
const SF: u64 = rflags::SF;
const OF: u64 = rflags::OF;
const ALL: u64 = rflags::STATUS;

impl Machine {
    /// Real mode, CS = DS = ES = SS = 0, IP = 0x7c00.
    fn new() -> Self {
        let ram = GuestRam::new(&[RegionSpec {
            base: 0,
            size: 0x10_0000,
            kind: RegionKind::Ram,
        }])
        .unwrap();
        let out = SharedBuffer::new();
        let mut buses = Box::new(Buses::new());
        let req = buses.requests();
        buses
            .io
            .insert(0xe9, 1, Box::new(DebugCon::new(Box::new(out.clone()))))
            .unwrap();
        buses
            .io
            .insert(0xf4, 4, Box::new(DebugExit::new(req)))
            .unwrap();
        let mut rt = Runtime::new(ram);
        rt.buses = &mut *buses;
        let mut cpu = CpuState::reset();
        for s in cpu.seg.iter_mut() {
            *s = Segment::real_mode(0);
        }
        cpu.seg[SegmentIndex::Cs as usize].attr |= 0x8;
        cpu.rip = 0x7c00;
        Self {
            ctx: Box::new(JitContext::new(cpu)),
            rt,
            buses,
            out,
        }
    }

    /// Flat 32-bit protected mode (GDT at 0x800: null, code 0x08, data 0x10), EIP = 0x1000.
    fn flat32() -> Self {
        let mut m = Self::new();
        let gdt: [u64; 3] = [0, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
        for (i, d) in gdt.iter().enumerate() {
            m.load(0x800 + 8 * i as u64, &d.to_le_bytes());
        }
        let c = &mut m.ctx.cpu;
        c.gdtr.base = 0x800;
        c.gdtr.limit = 23;
        c.cr0 |= cr0::PE;
        c.seg[SegmentIndex::Cs as usize] = Segment::from_descriptor(0x08, 0x0000_ffff, 0x00cf_9b00);
        for s in [SegmentIndex::Ds, SegmentIndex::Es, SegmentIndex::Ss] {
            c.seg[s as usize] = Segment::from_descriptor(0x10, 0x0000_ffff, 0x00cf_9300);
        }
        c.gpr[gpr::RSP] = 0x9000;
        c.rip = 0x1000;
        m
    }

    fn load(&self, gpa: u64, bytes: &[u8]) {
        self.rt.ram.write_host(gpa, bytes).unwrap();
    }

    fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.rt.ram.read(gpa, &mut b).unwrap();
        b
    }

    fn u32_at(&self, gpa: u64) -> u32 {
        u32::from_le_bytes(self.read(gpa, 4).try_into().unwrap())
    }

    fn u16_at(&self, gpa: u64) -> u16 {
        u16::from_le_bytes(self.read(gpa, 2).try_into().unwrap())
    }

    /// Decode and execute the instruction at CS:rIP.
    fn step_once(&mut self) -> Step {
        let ctx = &mut *self.ctx;
        let la = ctx.cpu.cs().base.wrapping_add(ctx.cpu.rip) & mem::linear_mask(ctx);
        let mut buf = [0u8; 16];
        let (_, n) = mem::fetch_code(ctx, &mut self.rt, la, &mut buf).unwrap();
        let limits = BlockLimits {
            max_insns: 1,
            page_bytes: 4096,
        };
        let block = decode_block(&buf[..n], ctx.cpu.rip, ctx.cpu.mode().bitness(), limits);
        assert_eq!(block.insns.len(), 1, "cannot decode at {la:#x}");
        step(ctx, &mut self.rt, &block.insns[0])
    }

    /// Step until `Step::Exit`.
    fn run(&mut self, max_steps: usize) -> Step {
        for _ in 0..max_steps {
            if self.step_once() == Step::Exit {
                return Step::Exit;
            }
        }
        panic!("guest did not stop within {max_steps} instructions");
    }

    fn status(&self) -> u64 {
        self.ctx.flags.status(self.ctx.cpu.rflags)
    }

    /// A 32-bit interrupt gate for `vector` to 0x08:`handler` in the IDT at 0x600.
    fn set_gate32(&mut self, vector: u8, handler: u32) {
        let low = (handler & 0xffff) | (0x08 << 16);
        let high = (handler & 0xffff_0000) | 0x8e00;
        let at = 0x600 + 8 * u64::from(vector);
        self.load(at, &low.to_le_bytes());
        self.load(at + 4, &high.to_le_bytes());
        self.ctx.cpu.idtr.base = 0x600;
        self.ctx.cpu.idtr.limit = 0x7ff;
    }
}

/// ```nasm
/// bits 16
/// org 0x7c00
///     lgdt [gdtr]
///     mov eax, cr0
///     or al, 1
///     mov cr0, eax
///     jmp 0x08:pm32
/// bits 32
/// pm32:
///     mov ax, 0x10
///     mov ds, ax
///     mov ss, ax
///     mov esp, 0x9000
///     mov dword [0x4000], 0xdeadbeef
///     push 0x11223344
///     call f
///     pop ebx
///     hlt
/// f:  mov ecx, [esp+4]
///     ret
/// align 8
/// gdt: dq 0, 0x00cf9a000000ffff, 0x00cf92000000ffff
/// gdtr: dw 23
///       dd gdt
/// ```
const PM: &[u8] = &[
    0x0f, 0x01, 0x16, 0x58, 0x7c, 0x0f, 0x20, 0xc0, 0x0c, 0x01, 0x0f, 0x22, 0xc0, 0xea, 0x12, 0x7c,
    0x08, 0x00, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x90, 0x00, 0x00, 0xc7,
    0x05, 0x00, 0x40, 0x00, 0x00, 0xef, 0xbe, 0xad, 0xde, 0x68, 0x44, 0x33, 0x22, 0x11, 0xe8, 0x02,
    0x00, 0x00, 0x00, 0x5b, 0xf4, 0x8b, 0x4c, 0x24, 0x04, 0xc3, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00, 0x17, 0x00, 0x40, 0x7c, 0x00, 0x00,
];

#[test]
fn far_jump_into_protected_mode_then_push_call_ret() {
    let mut m = Machine::new();
    m.load(0x7c00, PM);
    assert_eq!(m.run(100), Step::Exit);
    let c = &m.ctx.cpu;
    assert_eq!(c.mode(), ExecMode::Protected32);
    assert_eq!(c.cs().selector, 0x08);
    assert_eq!(c.seg[SegmentIndex::Ss as usize].selector, 0x10);
    assert_eq!(m.u32_at(0x4000), 0xdead_beef);
    assert_eq!(c.gpr[gpr::RCX], 0x1122_3344);
    assert_eq!(c.gpr[gpr::RBX], 0x1122_3344);
    assert_eq!(c.gpr[gpr::RSP], 0x9000);
    assert_eq!(c.halted, 1);
    assert_eq!(c.rip, 0x7c35);
    // The return address the CALL pushed is still below the stack pointer.
    assert_eq!(m.u32_at(0x9000 - 8), 0x7c33);
    // The accessed bit of the code descriptor was set by the far jump.
    assert_eq!(m.read(0x7c4d, 1)[0], 0x9b);
}

/// ```nasm
/// bits 16
/// org 0x7c00
///     mov word [0], handler
///     mov word [2], 0
///     mov sp, 0x7000
///     xor cx, cx
///     mov ax, 10
/// divi: div cx
///     hlt
/// handler:
///     mov bx, 0x1234
///     hlt
/// ```
const RM_DIV: &[u8] = &[
    0xc7, 0x06, 0x00, 0x00, 0x17, 0x7c, 0xc7, 0x06, 0x02, 0x00, 0x00, 0x00, 0xbc, 0x00, 0x70, 0x31,
    0xc9, 0xb8, 0x0a, 0x00, 0xf7, 0xf1, 0xf4, 0xbb, 0x34, 0x12, 0xf4,
];

#[test]
fn divide_by_zero_goes_through_the_real_mode_ivt() {
    let mut m = Machine::new();
    m.ctx.cpu.rflags |= rflags::IF;
    m.load(0x7c00, RM_DIV);
    assert_eq!(m.run(100), Step::Exit);
    let c = &m.ctx.cpu;
    assert_eq!(c.gpr[gpr::RBX] & 0xffff, 0x1234);
    assert_eq!(
        c.gpr[gpr::RAX] & 0xffff,
        10,
        "the faulting DIV changed nothing"
    );
    assert_eq!(c.gpr[gpr::RSP] & 0xffff, 0x7000 - 6);
    // Frame: IP of the faulting DIV, CS, FLAGS (with IF as it was before delivery).
    assert_eq!(m.u16_at(0x7000 - 6), 0x7c14);
    assert_eq!(m.u16_at(0x7000 - 4), 0);
    assert_ne!(u64::from(m.u16_at(0x7000 - 2)) & rflags::IF, 0);
    assert_eq!(c.rflags & rflags::IF, 0, "delivery clears IF");
}

/// ```nasm
/// bits 16
/// org 0x7c00
///     cld
///     mov si, 0x2000
///     mov di, 0x3000
///     mov cx, 5
///     rep movsb
///     mov si, 0x2000
///     mov di, 0x2100
///     mov cx, 6
///     repe cmpsb
///     hlt
/// ```
const STRINGS: &[u8] = &[
    0xfc, 0xbe, 0x00, 0x20, 0xbf, 0x00, 0x30, 0xb9, 0x05, 0x00, 0xf3, 0xa4, 0xbe, 0x00, 0x20, 0xbf,
    0x00, 0x21, 0xb9, 0x06, 0x00, 0xf3, 0xa6, 0xf4,
];

#[test]
fn rep_movsb_and_repe_cmpsb() {
    let mut m = Machine::new();
    m.load(0x7c00, STRINGS);
    m.load(0x2000, b"abcdef");
    m.load(0x2100, b"abcxef");
    for _ in 0..5 {
        m.step_once();
    }
    assert_eq!(m.read(0x3000, 6), b"abcde\0");
    let c = &m.ctx.cpu;
    assert_eq!(
        (c.gpr[gpr::RCX], c.gpr[gpr::RSI], c.gpr[gpr::RDI]),
        (0, 0x2005, 0x3005)
    );
    assert_eq!(m.run(10), Step::Exit);
    let c = &m.ctx.cpu;
    // Stops after the 4th byte ('d' != 'x'): two left.
    assert_eq!(
        (c.gpr[gpr::RCX], c.gpr[gpr::RSI], c.gpr[gpr::RDI]),
        (2, 0x2004, 0x2104)
    );
    // 'd' - 'x' = 0x64 - 0x78 = 0xec: borrow, negative, odd parity (5 ones), half-borrow.
    assert_eq!(m.status(), CF | SF | AF);
}

/// ```nasm
/// bits 32
///     mov eax, 5
///     mov dword [0x4000], 5
///     mov ecx, 9
///     cmpxchg [0x4000], ecx
///     setz bl
///     cmpxchg [0x4000], ecx
///     setz bh
///     mov edx, 0x0f
///     bts [0x4004], edx
///     bsr esi, [0x4004]
///     mov al, 'h'
///     out 0xe9, al
///     mov al, 'i'
///     mov dx, 0xe9
///     out dx, al
///     mov al, 3
///     out 0xf4, al
///     hlt
/// ```
const MISC32: &[u8] = &[
    0xb8, 0x05, 0x00, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x40, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0xb9,
    0x09, 0x00, 0x00, 0x00, 0x0f, 0xb1, 0x0d, 0x00, 0x40, 0x00, 0x00, 0x0f, 0x94, 0xc3, 0x0f, 0xb1,
    0x0d, 0x00, 0x40, 0x00, 0x00, 0x0f, 0x94, 0xc7, 0xba, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0xab, 0x15,
    0x04, 0x40, 0x00, 0x00, 0x0f, 0xbd, 0x35, 0x04, 0x40, 0x00, 0x00, 0xb0, 0x68, 0xe6, 0xe9, 0xb0,
    0x69, 0x66, 0xba, 0xe9, 0x00, 0xee, 0xb0, 0x03, 0xe6, 0xf4, 0xf4,
];

#[test]
fn cmpxchg_bit_ops_and_port_output() {
    let mut m = Machine::flat32();
    m.load(0x1000, MISC32);
    assert_eq!(m.run(100), Step::Exit);
    let c = &m.ctx.cpu;
    assert_eq!(
        c.gpr[gpr::RBX] & 0xffff,
        0x0001,
        "first CMPXCHG equal, second not"
    );
    assert_eq!(m.u32_at(0x4000), 9);
    assert_eq!(c.gpr[gpr::RAX] & 0xffff_ff00, 9 & 0xffff_ff00);
    assert_eq!(m.u32_at(0x4004), 0x8000);
    assert_eq!(c.gpr[gpr::RSI], 15);
    assert_eq!(m.out.contents(), b"hi");
    // The OUT to the exit port completed and ended the run before the HLT.
    assert_eq!(m.ctx.exit.exit_run, 1);
    assert_eq!(c.rip, 0x104a);
    assert_eq!(c.halted, 0);
    assert_eq!(
        m.buses.take_request(),
        Some(PlatformRequest::DebugExit { value: 3 })
    );
}

#[test]
fn protected_mode_gates_error_codes_and_precise_faults() {
    let mut m = Machine::flat32();
    // mov ax, 0x33 ; mov ds, ax (#GP(0x30): beyond the GDT limit)
    m.load(0x1000, &[0x66, 0xb8, 0x33, 0x00, 0x8e, 0xd8]);
    m.load(0x2000, &[0xf4]); // #GP handler: hlt
    m.set_gate32(13, 0x2000);
    m.ctx.cpu.rflags |= rflags::IF;
    assert_eq!(m.run(10), Step::Exit);
    let c = &m.ctx.cpu;
    assert_eq!(
        c.seg[SegmentIndex::Ds as usize].selector,
        0x10,
        "DS unchanged"
    );
    assert_eq!(c.gpr[gpr::RSP], 0x9000 - 16);
    assert_eq!(m.u32_at(0x9000 - 16), 0x30, "error code");
    assert_eq!(m.u32_at(0x9000 - 12), 0x1004, "EIP of the faulting MOV");
    assert_eq!(m.u32_at(0x9000 - 8), 0x08);
    assert_ne!(u64::from(m.u32_at(0x9000 - 4)) & rflags::IF, 0);
    assert_eq!(c.rflags & rflags::IF, 0, "interrupt gate clears IF");

    // INT 0x21 then IRET back.
    let mut m = Machine::flat32();
    m.load(0x1000, &[0xcd, 0x21, 0xf4]);
    m.load(0x2000, &[0xbb, 0x78, 0x56, 0x34, 0x12, 0xcf]); // mov ebx, 0x12345678; iret
    m.set_gate32(0x21, 0x2000);
    assert_eq!(m.run(10), Step::Exit);
    assert_eq!(m.ctx.cpu.gpr[gpr::RBX], 0x1234_5678);
    assert_eq!(m.ctx.cpu.rip, 0x1003);
    assert_eq!(m.ctx.cpu.gpr[gpr::RSP], 0x9000);
}

#[test]
fn fault_while_delivering_double_fault_is_a_triple_fault() {
    let mut m = Machine::flat32();
    m.ctx.cpu.idtr.limit = 0;
    m.load(0x1000, &[0x0f, 0x0b]); // ud2
    assert_eq!(m.step_once(), Step::Exit);
    assert!(m.rt.triple_fault);
    assert_eq!(m.ctx.exit.exit_run, 1);
}

#[test]
fn rep_movsb_page_fault_leaves_registers_at_the_faulting_iteration() {
    let mut m = Machine::flat32();
    // Page directory 0x10000 -> page table 0x11000 identity-mapping 0..4 MiB except 0x5000.
    m.load(0x10000, &(0x11000u32 | 3).to_le_bytes());
    for page in 0..1024u32 {
        let pte = if page == 5 { 0 } else { (page << 12) | 3 };
        m.load(0x11000 + 4 * u64::from(page), &pte.to_le_bytes());
    }
    m.ctx.cpu.cr3 = 0x10000;
    m.ctx.cpu.cr0 |= cr0::PG;
    m.set_gate32(14, 0x2000);
    m.load(0x2000, &[0xf4]);
    m.load(0x3000, b"WXYZ");
    // mov esi, 0x3000 ; mov edi, 0x4ffe ; mov ecx, 4 ; rep movsb
    m.load(
        0x1000,
        &[
            0xbe, 0x00, 0x30, 0x00, 0x00, 0xbf, 0xfe, 0x4f, 0x00, 0x00, 0xb9, 0x04, 0x00, 0x00,
            0x00, 0xf3, 0xa4,
        ],
    );
    assert_eq!(m.run(10), Step::Exit);
    let c = &m.ctx.cpu;
    assert_eq!(
        (c.gpr[gpr::RCX], c.gpr[gpr::RSI], c.gpr[gpr::RDI]),
        (2, 0x3002, 0x5000)
    );
    assert_eq!(c.cr2, 0x5000);
    assert_eq!(m.read(0x4ffe, 2), b"WX");
    // Error code: write to a not-present page at CPL 0.
    assert_eq!(m.u32_at(0x9000 - 16), 0x2);
    assert_eq!(m.u32_at(0x9000 - 12), 0x100f, "EIP of the REP MOVSB");
}

#[test]
fn writes_to_code_pages_end_the_block_and_are_recorded() {
    let mut m = Machine::flat32();
    m.load(0x1000, &[0xc6, 0x05, 0x10, 0x10, 0x00, 0x00, 0x90]); // mov byte [0x1010], 0x90
    m.rt.mark_code_page(&mut m.ctx, 0x1000);
    assert_eq!(m.step_once(), Step::Branch);
    assert_eq!(m.ctx.cpu.rip, 0x1007);
    assert_eq!(m.rt.take_dirty_code_pages(), vec![0x1000]);
    assert_eq!(m.read(0x1010, 1), [0x90]);
}

#[test]
fn unimplemented_instructions_raise_ud() {
    let mut m = Machine::new();
    // IVT[6] -> 0000:0x7d00 (hlt); vmcall (VMX), which emu does not implement.
    m.load(0x18, &[0x00, 0x7d, 0x00, 0x00]);
    m.load(0x7d00, &[0xf4]);
    m.load(0x7c00, &[0x0f, 0x01, 0xc1]);
    m.ctx.cpu.gpr[gpr::RSP] = 0x7000;
    assert_eq!(m.step_once(), Step::Branch);
    assert_eq!(m.ctx.cpu.rip, 0x7d00);
    assert_eq!(m.u16_at(0x7000 - 6), 0x7c00);
    // With CR0.EM set x87 instructions (fld1) raise #NM (vector 7).
    let mut m = Machine::new();
    m.load(0x1c, &[0x00, 0x7e, 0x00, 0x00]);
    m.load(0x7c00, &[0xd9, 0xe8]);
    m.ctx.cpu.cr0 |= cr0::EM;
    m.step_once();
    assert_eq!(m.ctx.cpu.rip, 0x7e00);
}

#[test]
fn divide_overflow_and_signed_division() {
    // div bl with AX = 0x1000, BL = 2: quotient 0x800 does not fit in AL -> #DE.
    let mut m = Machine::flat32();
    m.set_gate32(0, 0x2000);
    m.load(0x2000, &[0xf4]);
    m.load(0x1000, &[0xf6, 0xf3]);
    m.ctx.cpu.gpr[gpr::RAX] = 0x1000;
    m.ctx.cpu.gpr[gpr::RBX] = 2;
    m.run(5);
    assert_eq!(m.ctx.cpu.gpr[gpr::RAX], 0x1000);
    assert_eq!(m.u32_at(0x9000 - 12), 0x1000);
    // idiv ebx: EDX:EAX = -7, EBX = 2 -> EAX = -3, EDX = -1.
    let mut m = Machine::flat32();
    m.load(0x1000, &[0xf7, 0xfb]);
    m.ctx.cpu.gpr[gpr::RAX] = 0xffff_fff9;
    m.ctx.cpu.gpr[gpr::RDX] = 0xffff_ffff;
    m.ctx.cpu.gpr[gpr::RBX] = 2;
    assert_eq!(m.step_once(), Step::Continue);
    assert_eq!(m.ctx.cpu.gpr[gpr::RAX], 0xffff_fffd);
    assert_eq!(m.ctx.cpu.gpr[gpr::RDX], 0xffff_ffff);
}

/// One instruction in flat 32-bit mode: inputs EAX, EBX, ECX and the status flags; expected
/// EAX and the status flags under `mask` (the flags the SDM defines for the instruction).
struct Case {
    name: &'static str,
    code: &'static [u8],
    eax: u64,
    ebx: u64,
    ecx: u64,
    flags_in: u64,
    eax_out: u64,
    flags_out: u64,
    mask: u64,
}

const fn case(
    name: &'static str,
    code: &'static [u8],
    (eax, ebx, ecx): (u64, u64, u64),
    flags_in: u64,
    eax_out: u64,
    flags_out: u64,
    mask: u64,
) -> Case {
    Case {
        name,
        code,
        eax,
        ebx,
        ecx,
        flags_in,
        eax_out,
        flags_out,
        mask,
    }
}

const ROT: u64 = CF | OF;

#[rustfmt::skip]
const CASES: &[Case] = &[
    // 8-bit arithmetic and logic (AL op BL).
    case("add al,bl 7f+1", &[0x00, 0xd8], (0x7f, 0x01, 0), 0, 0x80, AF | SF | OF, ALL),
    case("add al,bl ff+1", &[0x00, 0xd8], (0xff, 0x01, 0), 0, 0x00, CF | PF | AF | ZF, ALL),
    case("adc al,bl 7f+0+1", &[0x10, 0xd8], (0x7f, 0x00, 0), CF, 0x80, AF | SF | OF, ALL),
    case("adc al,bl ff+ff+1", &[0x10, 0xd8], (0xff, 0xff, 0), CF, 0xff, CF | PF | AF | SF, ALL),
    case("sub al,bl 0-1", &[0x28, 0xd8], (0x00, 0x01, 0), 0, 0xff, CF | PF | AF | SF, ALL),
    case("sub al,bl 80-1", &[0x28, 0xd8], (0x80, 0x01, 0), 0, 0x7f, AF | OF, ALL),
    case("sbb al,bl 5-5-1", &[0x18, 0xd8], (0x05, 0x05, 0), CF, 0xff, CF | PF | AF | SF, ALL),
    case("sbb al,bl 80-7f-1", &[0x18, 0xd8], (0x80, 0x7f, 0), CF, 0x00, PF | AF | ZF | OF, ALL),
    case("and al,bl", &[0x20, 0xd8], (0xf0, 0x0f, 0), CF | OF, 0x00, PF | ZF, ALL),
    case("or al,bl", &[0x08, 0xd8], (0x80, 0x01, 0), 0, 0x81, PF | SF, ALL),
    case("xor al,bl", &[0x30, 0xd8], (0xff, 0x0f, 0), 0, 0xf0, PF | SF, ALL),
    case("cmp al,bl", &[0x38, 0xd8], (0x10, 0x20, 0), 0, 0x10, CF | PF | SF, ALL),
    case("test al,bl", &[0x84, 0xd8], (0x81, 0x80, 0), CF, 0x81, SF, ALL),
    case("inc al keeps CF", &[0xfe, 0xc0], (0x7f, 0, 0), CF, 0x80, CF | AF | SF | OF, ALL),
    case("dec al", &[0xfe, 0xc8], (0x00, 0, 0), 0, 0xff, PF | AF | SF, ALL),
    case("neg al 80", &[0xf6, 0xd8], (0x80, 0, 0), 0, 0x80, CF | SF | OF, ALL),
    case("neg al 0", &[0xf6, 0xd8], (0x00, 0, 0), CF, 0x00, PF | ZF, ALL),
    case("not al keeps flags", &[0xf6, 0xd0], (0x0f, 0, 0), CF | OF, 0xf0, CF | OF, ALL),
    // 16-bit.
    case("add ax,bx", &[0x66, 0x01, 0xd8], (0x7fff, 1, 0), 0, 0x8000, PF | AF | SF | OF, ALL),
    case("sub ax,bx", &[0x66, 0x29, 0xd8], (0x0000, 1, 0), 0, 0xffff, CF | PF | AF | SF, ALL),
    case("adc ax,bx", &[0x66, 0x11, 0xd8], (0xffff, 0, 0), CF, 0x0000, CF | PF | AF | ZF, ALL),
    case("and ax,bx", &[0x66, 0x21, 0xd8], (0x8001, 0x8003, 0), 0, 0x8001, SF, ALL),
    case("inc ax", &[0x66, 0x40], (0x7fff, 0, 0), 0, 0x8000, PF | AF | SF | OF, ALL),
    case("dec ax", &[0x66, 0x48], (0x0001, 0, 0), CF, 0x0000, CF | PF | ZF, ALL),
    case("neg ax", &[0x66, 0xf7, 0xd8], (0x0001, 0, 0), 0, 0xffff, CF | PF | AF | SF, ALL),
    case("cmp ax,bx", &[0x66, 0x39, 0xd8], (0x8000, 0x0001, 0), 0, 0x8000, PF | AF | OF, ALL),
    case("sbb ax,bx", &[0x66, 0x19, 0xd8], (0x0000, 0x0000, 0), CF, 0xffff, CF | PF | AF | SF, ALL),
    case("or ax,bx", &[0x66, 0x09, 0xd8], (0, 0, 0), CF, 0, PF | ZF, ALL),
    case("xor ax,bx", &[0x66, 0x31, 0xd8], (0x00ff, 0xff00, 0), 0, 0xffff, PF | SF, ALL),
    case("test ax,bx", &[0x66, 0x85, 0xd8], (0x0100, 0x0100, 0), 0, 0x0100, PF, ALL),
    // 32-bit.
    case("add eax,ebx", &[0x01, 0xd8], (0xffff_ffff, 1, 0), 0, 0, CF | PF | AF | ZF, ALL),
    case("adc eax,ebx", &[0x11, 0xd8], (0x7fff_ffff, 0, 0), CF, 0x8000_0000, PF | AF | SF | OF, ALL),
    case("sub eax,ebx", &[0x29, 0xd8], (0x8000_0000, 1, 0), 0, 0x7fff_ffff, PF | AF | OF, ALL),
    case("sbb eax,ebx", &[0x19, 0xd8], (0, 0xffff_ffff, 0), CF, 0, CF | PF | AF | ZF, ALL),
    case("and eax,ebx", &[0x21, 0xd8], (0xffff_ffff, 0x8000_0000, 0), 0, 0x8000_0000, PF | SF, ALL),
    case("or eax,ebx", &[0x09, 0xd8], (1, 2, 0), 0, 3, PF, ALL),
    case("xor eax,ebx", &[0x31, 0xd8], (0x1234_5678, 0x1234_5678, 0), 0, 0, PF | ZF, ALL),
    case("cmp eax,ebx", &[0x39, 0xd8], (5, 5, 0), 0, 5, PF | ZF, ALL),
    case("test eax,ebx", &[0x85, 0xd8], (0xf, 0x10, 0), 0, 0xf, PF | ZF, ALL),
    case("inc eax", &[0x40], (0xffff_ffff, 0, 0), 0, 0, PF | AF | ZF, ALL),
    case("dec eax", &[0x48], (0x8000_0000, 0, 0), 0, 0x7fff_ffff, PF | AF | OF, ALL),
    case("neg eax", &[0xf7, 0xd8], (0x8000_0000, 0, 0), 0, 0x8000_0000, CF | PF | SF | OF, ALL),
    case("add eax,imm8", &[0x83, 0xc0, 0xff], (1, 0, 0), 0, 0, CF | PF | AF | ZF, ALL),
    // Shifts: AF is undefined.
    case("shl al,1", &[0xd0, 0xe0], (0x81, 0, 0), 0, 0x02, CF | OF, ALL & !AF),
    case("shr al,1", &[0xd0, 0xe8], (0x81, 0, 0), 0, 0x40, CF | OF, ALL & !AF),
    case("sar al,1", &[0xd0, 0xf8], (0x81, 0, 0), 0, 0xc0, CF | PF | SF, ALL & !AF),
    case("shl eax,cl 0 keeps flags", &[0xd3, 0xe0], (0x8000_0001, 0, 0), CF | ZF | OF, 0x8000_0001, CF | ZF | OF, ALL),
    case("shl ax,4", &[0x66, 0xc1, 0xe0, 0x04], (0x1234, 0, 0), 0, 0x2340, CF, ALL & !AF & !OF),
    case("shr eax,cl 33 is 1", &[0xd3, 0xe8], (0x3, 0, 33), 0, 0x1, CF, ALL & !AF),
    case("sar eax,31", &[0xc1, 0xf8, 0x1f], (0x8000_0000, 0, 0), 0, 0xffff_ffff, PF | SF, ALL & !AF & !OF),
    case("shl al,cl 8", &[0xd2, 0xe0], (0x01, 0, 8), 0, 0x00, CF | PF | ZF, CF | PF | ZF | SF),
    // Rotates change only CF and OF (OF defined for 1-bit rotates).
    case("rol al,1", &[0xd0, 0xc0], (0x81, 0, 0), ZF, 0x03, CF | ZF | OF, ALL),
    case("ror al,1", &[0xd0, 0xc8], (0x81, 0, 0), 0, 0xc0, CF, ALL),
    case("rcl al,1", &[0xd0, 0xd0], (0x81, 0, 0), 0, 0x02, CF | OF, ALL),
    case("rcr al,1", &[0xd0, 0xd8], (0x01, 0, 0), CF, 0x80, CF | OF, ALL),
    case("rol eax,cl 4", &[0xd3, 0xc0], (0x1234_5678, 0, 4), 0, 0x2345_6781, CF, CF),
    case("ror ax,8", &[0x66, 0xc1, 0xc8, 0x08], (0x1234, 0, 0), 0, 0x3412, 0, CF),
    case("rcr al,cl 9 is a no-op", &[0xd2, 0xd8], (0x55, 0, 9), CF, 0x55, CF, ALL),
    case("rcl ax,cl 17 is a no-op", &[0x66, 0xd3, 0xd0], (0x8001, 0, 17), 0, 0x8001, 0, ALL),
    case("rcl eax,cl 1 with CF", &[0xd3, 0xd0], (0x4000_0000, 0, 1), CF, 0x8000_0001, OF, ROT),
    // Double shifts.
    case("shld eax,ebx,4", &[0x0f, 0xa4, 0xd8, 0x04], (0x1234_5678, 0x9abc_def0, 0), 0, 0x2345_6789, CF, CF | ZF | SF | PF),
    case("shrd eax,ebx,4", &[0x0f, 0xac, 0xd8, 0x04], (0x1234_5678, 0x9abc_def0, 0), 0, 0x0123_4567, CF, CF | ZF | SF | PF),
    case("shld ax,bx,1", &[0x66, 0x0f, 0xa4, 0xd8, 0x01], (0x8000, 0, 0), 0, 0x0000, CF | PF | ZF | OF, CF | PF | ZF | SF | OF),
    case("shrd ax,bx,cl 1", &[0x66, 0x0f, 0xad, 0xd8], (0x0001, 0x0001, 1), 0, 0x8000, CF | PF | SF | OF, CF | PF | ZF | SF | OF),
    // Bit tests: only CF is defined.
    case("bt eax,ebx", &[0x0f, 0xa3, 0xd8], (0x10, 4, 0), 0, 0x10, CF, CF),
    case("bts eax,ebx mod 32", &[0x0f, 0xab, 0xd8], (0, 35, 0), CF, 0x8, 0, CF),
    case("btr eax,4", &[0x0f, 0xba, 0xf0, 0x04], (0x10, 0, 0), 0, 0, CF, CF),
    case("btc eax,ebx", &[0x0f, 0xbb, 0xd8], (1, 0, 0), 0, 0, CF, CF),
    case("bts ax,imm 17", &[0x66, 0x0f, 0xba, 0xe8, 0x11], (0, 0, 0), 0, 0x2, 0, CF),
    // Bit scans: only ZF is defined.
    case("bsf eax,ebx", &[0x0f, 0xbc, 0xc3], (0, 0x18, 0), ZF, 3, 0, ZF),
    case("bsr eax,ebx", &[0x0f, 0xbd, 0xc3], (0, 0x18, 0), ZF, 4, 0, ZF),
    case("bsf eax,0 keeps eax", &[0x0f, 0xbc, 0xc3], (0x1234, 0, 0), 0, 0x1234, ZF, ZF),
    case("bsr ax,bx", &[0x66, 0x0f, 0xbd, 0xc3], (0, 0x8000, 0), 0, 15, 0, ZF),
    // Multiplication: CF = OF = high half significant.
    case("mul bl", &[0xf6, 0xe3], (0x80, 0x02, 0), 0, 0x0100, CF | OF, CF | OF),
    case("mul bl small", &[0xf6, 0xe3], (0x10, 0x02, 0), CF | OF, 0x0020, 0, CF | OF),
    case("imul bl", &[0xf6, 0xeb], (0xff, 0x02, 0), 0, 0xfffe, 0, CF | OF),
    case("imul bl overflow", &[0xf6, 0xeb], (0x40, 0x02, 0), 0, 0x0080, CF | OF, CF | OF),
    case("mul bx", &[0x66, 0xf7, 0xe3], (0x8000, 0x0002, 0), 0, 0x0000, CF | OF, CF | OF),
    case("imul eax,ebx", &[0x0f, 0xaf, 0xc3], (0x10000, 0x10000, 0), 0, 0, CF | OF, CF | OF),
    case("imul eax,ebx,-2", &[0x6b, 0xc3, 0xfe], (0, 3, 0), 0, 0xffff_fffa, 0, CF | OF),
    case("imul ax,bx,imm16", &[0x66, 0x69, 0xc3, 0x00, 0x01], (0, 0x0100, 0), 0, 0x0000, CF | OF, CF | OF),
    // Decimal adjust.
    case("daa 0f", &[0x27], (0x0f, 0, 0), 0, 0x15, AF, CF | AF | ZF | SF | PF),
    case("daa 9a", &[0x27], (0x9a, 0, 0), 0, 0x00, CF | PF | AF | ZF, CF | AF | ZF | SF | PF),
    case("das 0f af", &[0x2f], (0x0f, 0, 0), AF, 0x09, PF | AF, CF | AF | ZF | SF | PF),
    case("das 00 cf", &[0x2f], (0x00, 0, 0), CF, 0xa0, CF | PF | SF, CF | AF | ZF | SF | PF),
    case("aaa", &[0x37], (0x000b, 0, 0), 0, 0x0101, CF | AF, CF | AF),
    case("aaa no adjust", &[0x37], (0x0035, 0, 0), CF, 0x0005, 0, CF | AF),
    case("aas borrows from AH", &[0x3f], (0x0200, 0, 0), AF, 0x000a, CF | AF, CF | AF),
    case("aam", &[0xd4, 0x0a], (0x003f, 0, 0), 0, 0x0603, PF, ZF | SF | PF),
    case("aad", &[0xd5, 0x0a], (0x0603, 0, 0), 0, 0x003f, PF, ZF | SF | PF),
    // Flag instructions and conversions.
    case("stc", &[0xf9], (0, 0, 0), 0, 0, CF, ALL),
    case("cmc", &[0xf5], (0, 0, 0), CF | ZF, 0, ZF, ALL),
    case("clc", &[0xf8], (0, 0, 0), CF | SF, 0, SF, ALL),
    case("lahf", &[0x9f], (0, 0, 0), SF | ZF | CF, 0xc300, SF | ZF | CF, ALL),
    case("sahf", &[0x9e], (0xd500, 0, 0), OF, 0xd500, SF | ZF | AF | PF | CF | OF, ALL),
    case("cbw", &[0x66, 0x98], (0x1234_0080, 0, 0), 0, 0x1234_ff80, 0, ALL),
    case("cwde", &[0x98], (0x8000, 0, 0), 0, 0xffff_8000, 0, ALL),
    case("xadd eax,ebx", &[0x0f, 0xc1, 0xd8], (1, 2, 0), 0, 3, PF, ALL),
    case("bswap eax", &[0x0f, 0xc8], (0x1122_3344, 0, 0), 0, 0x4433_2211, 0, ALL),
    case("movsx eax,bl", &[0x0f, 0xbe, 0xc3], (0, 0x80, 0), 0, 0xffff_ff80, 0, ALL),
    case("movzx eax,bx", &[0x0f, 0xb7, 0xc3], (0xffff_ffff, 0x1_8000, 0), 0, 0x8000, 0, ALL),
    case("lea eax,[ebx+ecx*4+8]", &[0x8d, 0x44, 0x8b, 0x08], (0, 0x100, 2), 0, 0x110, 0, ALL),
    case("lea ax,[ebx-1] truncates", &[0x66, 0x8d, 0x43, 0xff], (0xaaaa_0000, 0x1_0000, 0), 0, 0xaaaa_ffff, 0, ALL),
    case("setb al", &[0x0f, 0x92, 0xc0], (0xff, 0, 0), CF, 0x01, CF, ALL),
    case("setle al", &[0x0f, 0x9e, 0xc0], (0xff, 0, 0), SF, 0x01, SF, ALL),
    case("setg al", &[0x0f, 0x9f, 0xc0], (0xff, 0, 0), SF | OF, 0x01, SF | OF, ALL),
    case("cmovne eax,ebx taken", &[0x0f, 0x45, 0xc3], (1, 2, 0), 0, 2, 0, ALL),
    case("cmovne eax,ebx not taken", &[0x0f, 0x45, 0xc3], (1, 2, 0), ZF, 1, ZF, ALL),
];

#[test]
fn instruction_results_and_flags() {
    for c in CASES {
        let mut m = Machine::flat32();
        m.load(0x1000, c.code);
        let cpu = &mut m.ctx.cpu;
        cpu.gpr[gpr::RAX] = c.eax;
        cpu.gpr[gpr::RBX] = c.ebx;
        cpu.gpr[gpr::RCX] = c.ecx;
        cpu.rflags = rflags::FIXED1 | c.flags_in;
        m.ctx.flags.set_eflags();
        assert_eq!(m.step_once(), Step::Continue, "{}", c.name);
        assert_eq!(
            m.ctx.cpu.rip,
            0x1000 + c.code.len() as u64,
            "{}: rip",
            c.name
        );
        assert_eq!(m.ctx.cpu.gpr[gpr::RAX], c.eax_out, "{}: eax", c.name);
        assert_eq!(
            m.status() & c.mask,
            c.flags_out & c.mask,
            "{}: flags {:#x}",
            c.name,
            m.status()
        );
    }
}

#[test]
fn wide_results_land_in_edx() {
    let mut m = Machine::flat32();
    m.load(0x1000, &[0xf7, 0xe3, 0x99]); // mul ebx ; cdq
    m.ctx.cpu.gpr[gpr::RAX] = 0xffff_ffff;
    m.ctx.cpu.gpr[gpr::RBX] = 2;
    m.step_once();
    assert_eq!(m.ctx.cpu.gpr[gpr::RAX], 0xffff_fffe);
    assert_eq!(m.ctx.cpu.gpr[gpr::RDX], 1);
    assert_eq!(m.status() & (CF | OF), CF | OF);
    m.step_once();
    assert_eq!(m.ctx.cpu.gpr[gpr::RDX], 0xffff_ffff);
}

#[test]
fn stack_frames_enter_leave_pusha_popa_pushf_popf() {
    let mut m = Machine::flat32();
    // enter 8, 0 ; pushad ; popad ; pushfd ; popfd ; leave ; push ds ; pop es ; hlt
    m.load(
        0x1000,
        &[
            0xc8, 0x08, 0x00, 0x00, 0x60, 0x61, 0x9c, 0x9d, 0xc9, 0x1e, 0x07, 0xf4,
        ],
    );
    m.ctx.cpu.gpr[gpr::RBP] = 0x7777;
    m.ctx.cpu.gpr[gpr::RAX] = 0xaaaa;
    m.ctx.cpu.rflags = rflags::FIXED1 | CF | rflags::DF;
    m.ctx.flags.set_eflags();
    m.step_once();
    assert_eq!(m.ctx.cpu.gpr[gpr::RBP], 0x9000 - 4);
    assert_eq!(m.ctx.cpu.gpr[gpr::RSP], 0x9000 - 12);
    assert_eq!(m.u32_at(0x9000 - 4), 0x7777);
    m.step_once();
    assert_eq!(m.ctx.cpu.gpr[gpr::RSP], 0x9000 - 12 - 32);
    assert_eq!(m.u32_at(0x9000 - 12 - 4), 0xaaaa, "EAX pushed first");
    assert_eq!(m.u32_at(0x9000 - 12 - 20), 0x9000 - 12, "original ESP");
    m.ctx.cpu.gpr[gpr::RAX] = 0;
    m.step_once();
    assert_eq!(m.ctx.cpu.gpr[gpr::RAX], 0xaaaa);
    m.step_once();
    m.ctx.cpu.rflags = rflags::FIXED1;
    m.step_once();
    assert_eq!(m.ctx.cpu.rflags, rflags::FIXED1 | CF | rflags::DF);
    m.step_once();
    assert_eq!(m.ctx.cpu.gpr[gpr::RBP], 0x7777);
    assert_eq!(m.ctx.cpu.gpr[gpr::RSP], 0x9000);
    m.ctx.cpu.seg[SegmentIndex::Es as usize] = Segment::default();
    assert_eq!(m.run(5), Step::Exit);
    assert_eq!(m.ctx.cpu.seg[SegmentIndex::Es as usize].selector, 0x10);
    assert_eq!(m.ctx.cpu.gpr[gpr::RSP], 0x9000);
}

#[test]
fn loops_and_conditional_jumps() {
    let mut m = Machine::new();
    // mov cx, 3 ; xor ax, ax ; l: inc ax ; loop l ; jcxz done ; hlt ; done: cmp ax, 3 ; je ok ; hlt ; ok: mov bx, 1 ; hlt
    m.load(
        0x7c00,
        &[
            0xb9, 0x03, 0x00, 0x31, 0xc0, 0x40, 0xe2, 0xfd, 0xe3, 0x01, 0xf4, 0x83, 0xf8, 0x03,
            0x74, 0x01, 0xf4, 0xbb, 0x01, 0x00, 0xf4,
        ],
    );
    assert_eq!(m.run(50), Step::Exit);
    assert_eq!(m.ctx.cpu.gpr[gpr::RAX], 3);
    assert_eq!(m.ctx.cpu.gpr[gpr::RBX], 1);
    assert_eq!(m.ctx.cpu.rip, 0x7c15);
}

#[test]
fn sti_sets_the_interrupt_shadow_and_mov_ss_too() {
    let mut m = Machine::new();
    m.load(0x7c00, &[0xfb, 0x90, 0x8e, 0xd0, 0x90]); // sti ; nop ; mov ss, ax ; nop
    assert_eq!(m.step_once(), Step::Branch);
    assert_eq!(m.ctx.cpu.interrupt_shadow, 1);
    assert_ne!(m.ctx.cpu.rflags & rflags::IF, 0);
    m.step_once();
    assert_eq!(m.ctx.cpu.interrupt_shadow, 0);
    m.ctx.cpu.gpr[gpr::RAX] = 0x1234;
    assert_eq!(m.step_once(), Step::Branch);
    assert_eq!(m.ctx.cpu.interrupt_shadow, 1);
    assert_eq!(m.ctx.cpu.seg[SegmentIndex::Ss as usize].base, 0x12340);
}

#[test]
fn sixteen_bit_ip_wraps_after_the_last_instruction_of_the_segment() {
    let mut m = Machine::new();
    // CS = 0x1000: a two-byte `mov al, 7` at IP 0xfffe falls through to IP 0, not 0x10000.
    m.ctx.cpu.seg[SegmentIndex::Cs as usize] = Segment::real_mode(0x1000);
    m.ctx.cpu.seg[SegmentIndex::Cs as usize].attr |= 0x8;
    m.ctx.cpu.rip = 0xfffe;
    m.load(0x1_fffe, &[0xb0, 0x07]);
    assert_eq!(m.step_once(), Step::Continue);
    assert_eq!(m.ctx.cpu.gpr[gpr::RAX] & 0xff, 7);
    assert_eq!(m.ctx.cpu.rip, 0);
}

#[test]
fn sixteen_bit_addressing_wraps_and_xlat_uses_al() {
    let mut m = Machine::new();
    // mov al, [bx+si+2] with bx+si+2 = 0x1_0001 -> wraps to DS:0001 ; xlat
    m.load(0x7c00, &[0x8a, 0x40, 0x02, 0xd7]);
    m.load(0x0001, &[0x42]);
    m.load(0x0500 + 0x42, &[0x99]);
    m.ctx.cpu.gpr[gpr::RBX] = 0xffff;
    m.ctx.cpu.gpr[gpr::RSI] = 0;
    m.step_once();
    assert_eq!(m.ctx.cpu.gpr[gpr::RAX] & 0xff, 0x42);
    m.ctx.cpu.gpr[gpr::RBX] = 0x0500;
    m.step_once();
    assert_eq!(m.ctx.cpu.gpr[gpr::RAX] & 0xff, 0x99);
}

#[test]
fn lar_lsl_verr_verw_arpl_report_through_zf() {
    let mut m = Machine::flat32();
    // lar eax,bx ; lsl ecx,dx ; verw bx ; verr bx ; arpl si,di ; lsl edi,bp(0x18: past limit)
    m.load(
        0x1000,
        &[
            0x0f, 0x02, 0xc3, 0x0f, 0x03, 0xca, 0x0f, 0x00, 0xeb, 0x0f, 0x00, 0xe3, 0x63, 0xfe,
            0x0f, 0x03, 0xfd,
        ],
    );
    let c = &mut m.ctx.cpu;
    c.gpr[gpr::RBX] = 0x08;
    c.gpr[gpr::RDX] = 0x10;
    c.gpr[gpr::RSI] = 0x10;
    c.gpr[gpr::RDI] = 0x03;
    c.gpr[gpr::RBP] = 0x18;
    m.step_once();
    assert_eq!(m.ctx.cpu.gpr[gpr::RAX], 0x00c0_9b00);
    assert_eq!(m.status() & ZF, ZF);
    m.step_once();
    assert_eq!(m.ctx.cpu.gpr[gpr::RCX], 0xffff_ffff);
    m.step_once();
    assert_eq!(m.status() & ZF, 0, "code is not writable");
    m.step_once();
    assert_eq!(m.status() & ZF, ZF, "readable code");
    m.step_once();
    assert_eq!(m.ctx.cpu.gpr[gpr::RSI], 0x13);
    assert_eq!(m.status() & ZF, ZF);
    m.step_once();
    assert_eq!(m.ctx.cpu.gpr[gpr::RDI], 0x03, "unchanged");
    assert_eq!(m.status() & ZF, 0);
    // Real mode: #UD.
    let mut m = Machine::new();
    m.load(0x18, &[0x00, 0x7d, 0x00, 0x00]);
    m.load(0x7c00, &[0x0f, 0x02, 0xc3]);
    m.step_once();
    assert_eq!(m.ctx.cpu.rip, 0x7d00);
}

#[test]
fn real_mode_far_call_retf_int_iret_and_lods_stos_scas() {
    let mut m = Machine::new();
    // 7c00: call 0x0000:0x7d00 ; int 0x40 ; mov di,0x3000 ; mov cx,3 ; mov al,7 ; rep stosb
    //       mov si,0x3000 ; lodsw ; mov di,0x3000 ; mov cx,4 ; mov al,0 ; repne scasb ; hlt
    // 7d00: mov bx, 0x55 ; retf        7e00: mov dx, 0x66 ; iret
    m.load(
        0x7c00,
        &[
            0x9a, 0x00, 0x7d, 0x00, 0x00, 0xcd, 0x40, 0xbf, 0x00, 0x30, 0xb9, 0x03, 0x00, 0xb0,
            0x07, 0xf3, 0xaa, 0xbe, 0x00, 0x30, 0xad, 0xbf, 0x00, 0x30, 0xb9, 0x04, 0x00, 0xb0,
            0x00, 0xf2, 0xae, 0xf4,
        ],
    );
    m.load(0x7d00, &[0xbb, 0x55, 0x00, 0xcb]);
    m.load(0x7e00, &[0xba, 0x66, 0x00, 0xcf]);
    m.load(0x40 * 4, &[0x00, 0x7e, 0x00, 0x00]);
    m.ctx.cpu.gpr[gpr::RSP] = 0x7000;
    assert_eq!(m.run(100), Step::Exit);
    let c = &m.ctx.cpu;
    assert_eq!(c.gpr[gpr::RBX], 0x55);
    assert_eq!(c.gpr[gpr::RDX], 0x66);
    assert_eq!(c.gpr[gpr::RSP], 0x7000);
    assert_eq!(m.read(0x3000, 4), [7, 7, 7, 0]);
    assert_eq!(c.gpr[gpr::RSI], 0x3002);
    // AL = 0 after the load; REPNE SCASB finds the 0 at 0x3003 after 4 comparisons.
    assert_eq!((c.gpr[gpr::RCX], c.gpr[gpr::RDI]), (0, 0x3004));
    assert_eq!(m.status() & ZF, ZF);
    assert_eq!(c.gpr[gpr::RAX] & 0xffff, 0x0700);
}

#[test]
fn bound_raises_br_outside_the_range() {
    let mut m = Machine::flat32();
    m.load(0x4000, &0u32.to_le_bytes());
    m.load(0x4004, &10u32.to_le_bytes());
    m.load(
        0x1000,
        &[
            0x62, 0x05, 0x00, 0x40, 0x00, 0x00, 0x62, 0x05, 0x00, 0x40, 0x00, 0x00,
        ],
    );
    m.set_gate32(5, 0x2000);
    m.load(0x2000, &[0xf4]);
    m.ctx.cpu.gpr[gpr::RAX] = 10;
    assert_eq!(m.step_once(), Step::Continue);
    m.ctx.cpu.gpr[gpr::RAX] = 0xffff_ffff; // -1 < 0
    assert_eq!(m.step_once(), Step::Branch);
    assert_eq!(m.ctx.cpu.rip, 0x2000);
    assert_eq!(
        m.u32_at(0x9000 - 12),
        0x1006,
        "#BR is a fault: EIP of the BOUND"
    );
}

#[test]
fn interrupt_from_ring3_switches_to_the_tss_stack_and_iret_returns() {
    let mut m = Machine::flat32();
    // GDT: + ring-3 code 0x18, ring-3 data 0x20, 32-bit TSS 0x28 at 0x5000.
    let extra: [u64; 3] = [
        0x00cf_fb00_0000_ffff,
        0x00cf_f300_0000_ffff,
        0x0000_8900_5000_0067,
    ];
    for (i, d) in extra.iter().enumerate() {
        m.load(0x818 + 8 * i as u64, &d.to_le_bytes());
    }
    m.ctx.cpu.gdtr.limit = 47;
    m.load(0x5004, &0x9000u32.to_le_bytes()); // ESP0
    m.load(0x5008, &0x10u32.to_le_bytes()); // SS0
                                            // Paging: identity map with user access except page 0 (GDT/IDT), 5 (TSS), 8 (ring-0 stack).
    m.load(0x10000, &(0x11000u32 | 7).to_le_bytes());
    for page in 0..1024u32 {
        let user = if matches!(page, 0 | 5 | 8) { 0 } else { 4 };
        m.load(
            0x11000 + 4 * u64::from(page),
            &((page << 12) | 3 | user).to_le_bytes(),
        );
    }
    m.ctx.cpu.cr3 = 0x10000;
    m.ctx.cpu.cr0 |= cr0::PG | cr0::WP;
    // ltr ax (ring 0), then drop to ring 3 by hand.
    m.load(0x1000, &[0x0f, 0x00, 0xd8]);
    m.ctx.cpu.gpr[gpr::RAX] = 0x28;
    assert_eq!(m.step_once(), Step::Branch);
    assert_eq!(m.ctx.cpu.tr.selector, 0x28);
    assert_eq!(m.read(0x82d, 1)[0], 0x8b, "TSS marked busy");
    let c = &mut m.ctx.cpu;
    c.seg[SegmentIndex::Cs as usize] = Segment::from_descriptor(0x1b, 0x0000_ffff, 0x00cf_fb00);
    for s in [SegmentIndex::Ds, SegmentIndex::Es, SegmentIndex::Ss] {
        c.seg[s as usize] = Segment::from_descriptor(0x23, 0x0000_ffff, 0x00cf_f300);
    }
    c.gpr[gpr::RSP] = 0x7000;
    c.rflags |= rflags::IF;
    m.ctx.flush_tlb();
    assert_eq!(m.ctx.cpu.cpl(), 3);
    // Gate 0x80: DPL 3 interrupt gate to 0x08:0x2000.
    m.set_gate32(0x80, 0x2000);
    m.load(0x600 + 8 * 0x80 + 4, &0x0000_ee00u32.to_le_bytes());
    // Ring 3: int 0x80. Handler: mov ebx, [esp+12] ; iret.
    m.load(0x1003, &[0xcd, 0x80]);
    m.ctx.cpu.rip = 0x1003;
    m.load(0x2000, &[0x8b, 0x5c, 0x24, 0x0c, 0xcf]);
    assert_eq!(m.step_once(), Step::Branch);
    let c = &m.ctx.cpu;
    assert_eq!((c.cs().selector, c.rip, c.cpl()), (0x08, 0x2000, 0));
    assert_eq!(c.seg[SegmentIndex::Ss as usize].selector, 0x10);
    assert_eq!(c.gpr[gpr::RSP], 0x9000 - 20);
    assert_eq!(m.u32_at(0x9000 - 4), 0x23, "old SS");
    assert_eq!(m.u32_at(0x9000 - 8), 0x7000, "old ESP");
    assert_eq!(m.u32_at(0x9000 - 16), 0x1b, "old CS");
    assert_eq!(m.u32_at(0x9000 - 20), 0x1005, "return EIP");
    m.step_once();
    assert_eq!(m.ctx.cpu.gpr[gpr::RBX], 0x7000);
    assert_eq!(m.step_once(), Step::Branch);
    let c = &m.ctx.cpu;
    assert_eq!((c.cs().selector, c.rip, c.cpl()), (0x1b, 0x1005, 3));
    assert_eq!(c.gpr[gpr::RSP], 0x7000);
    assert_ne!(c.rflags & rflags::IF, 0);
    // Back in ring 3 the supervisor stack page is out of reach: mov eax, [0x8ff0] -> #PF(U|P).
    m.set_gate32(14, 0x3000);
    m.load(0x3000, &[0xf4]);
    m.load(0x1005, &[0xa1, 0xf0, 0x8f, 0x00, 0x00]);
    assert_eq!(m.step_once(), Step::Branch);
    assert_eq!(m.ctx.cpu.rip, 0x3000);
    assert_eq!(m.ctx.cpu.cr2, 0x8ff0);
    assert_eq!(
        m.u32_at(0x9000 - 24),
        0x5,
        "error code: user read of a present page"
    );
}

#[test]
fn bulk_rep_stos_and_overlapping_movs_match_element_semantics() {
    let mut m = Machine::flat32();
    // mov edi,0x3ff8 ; mov ecx,6 ; mov eax,0x11223344 ; rep stosd (crosses into page 0x4000)
    // mov esi,0x5000 ; mov edi,0x5001 ; mov ecx,300 ; rep movsb (overlapping: replicates 'A')
    // std ; mov esi,0x6003 ; mov edi,0x6007 ; mov ecx,4 ; rep movsb (descending) ; hlt
    m.load(
        0x1000,
        &[
            0xbf, 0xf8, 0x3f, 0x00, 0x00, 0xb9, 0x06, 0x00, 0x00, 0x00, 0xb8, 0x44, 0x33, 0x22,
            0x11, 0xf3, 0xab, 0xbe, 0x00, 0x50, 0x00, 0x00, 0xbf, 0x01, 0x50, 0x00, 0x00, 0xb9,
            0x2c, 0x01, 0x00, 0x00, 0xf3, 0xa4, 0xfd, 0xbe, 0x03, 0x60, 0x00, 0x00, 0xbf, 0x07,
            0x60, 0x00, 0x00, 0xb9, 0x04, 0x00, 0x00, 0x00, 0xf3, 0xa4, 0xf4,
        ],
    );
    m.load(0x5000, b"A");
    m.load(0x6000, b"wxyz");
    assert_eq!(m.run(50), Step::Exit);
    for i in 0..6 {
        assert_eq!(m.u32_at(0x3ff8 + 4 * i), 0x1122_3344, "dword {i}");
    }
    assert_eq!(m.u32_at(0x3ff8 + 24), 0, "nothing past the count");
    assert!(m.read(0x5000, 301).iter().all(|&b| b == b'A'));
    assert_eq!(m.read(0x5000 + 301, 1), [0]);
    assert_eq!(m.read(0x6000, 8), b"wxyzwxyz");
    let c = &m.ctx.cpu;
    assert_eq!(
        (c.gpr[gpr::RCX], c.gpr[gpr::RSI], c.gpr[gpr::RDI]),
        (0, 0x5fff, 0x6003)
    );
}

#[test]
fn sse_forms_of_string_mnemonics_raise_ud() {
    // movsd [0x4000], xmm0 ; cmpsd xmm0, xmm1, 0 : SSE2, not implemented.
    for code in [
        &[0xf2, 0x0f, 0x11, 0x05, 0x00, 0x40, 0x00, 0x00][..],
        &[0xf2, 0x0f, 0xc2, 0xc1, 0x00][..],
    ] {
        let mut m = Machine::flat32();
        m.set_gate32(6, 0x2000);
        m.load(0x1000, code);
        m.ctx.cpu.gpr[gpr::RSI] = 0x3000;
        m.ctx.cpu.gpr[gpr::RDI] = 0x3000;
        assert_eq!(m.step_once(), Step::Branch);
        assert_eq!(m.ctx.cpu.rip, 0x2000);
        assert_eq!(m.ctx.cpu.gpr[gpr::RSI], 0x3000);
    }
}

/// 64-bit mode: 4-level paging identity-mapping the first 2 MiB (PML4 0x70000, PDPT 0x71000,
/// PD 0x72000), GDT at 0x800 (null, 64-bit code 0x08, data 0x10), a TSS at 0x900 with IST1 =
/// 0x8000, an IDT of 16-byte gates at 0xa00, RIP = 0x1000, RSP = 0x9008.
fn long64() -> Machine {
    let mut m = Machine::new();
    m.load(0x70000, &(0x71000u64 | 3).to_le_bytes());
    m.load(0x71000, &(0x72000u64 | 3).to_le_bytes());
    m.load(0x72000, &(0x83u64).to_le_bytes());
    let gdt: [u64; 3] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
    for (i, d) in gdt.iter().enumerate() {
        m.load(0x800 + 8 * i as u64, &d.to_le_bytes());
    }
    m.load(0x900 + 0x24, &0x8000u64.to_le_bytes());
    let c = &mut m.ctx.cpu;
    c.gdtr = vcpu::DescriptorTable {
        base: 0x800,
        limit: 23,
    };
    c.idtr = vcpu::DescriptorTable {
        base: 0xa00,
        limit: 256 * 16 - 1,
    };
    c.tr = Segment {
        base: 0x900,
        limit: 0x67,
        selector: 0x18,
        attr: Segment::ATTR_P | 0xb,
    };
    c.cr0 |= cr0::PE | cr0::PG;
    c.cr4 |= mem::CR4_PAE;
    c.cr3 = 0x70000;
    c.efer = vcpu::state::efer::LME | vcpu::state::efer::LMA;
    c.seg[SegmentIndex::Cs as usize] = Segment::from_descriptor(0x08, 0x0000_ffff, 0x00af_9b00);
    for s in [SegmentIndex::Ds, SegmentIndex::Es, SegmentIndex::Ss] {
        c.seg[s as usize] = Segment::from_descriptor(0x10, 0x0000_ffff, 0x00cf_9300);
    }
    c.gpr[gpr::RSP] = 0x9008;
    c.rip = 0x1000;
    m
}

impl Machine {
    /// A 64-bit interrupt gate for `vector` to 0x08:`handler` on IST `ist`.
    fn set_gate64(&mut self, vector: u8, handler: u64, ist: u8) {
        let low = (handler & 0xffff)
            | (0x08 << 16)
            | (u64::from(ist) << 32)
            | (0x8e << 40)
            | ((handler & 0xffff_0000) << 32);
        let at = 0xa00 + 16 * u64::from(vector);
        self.load(at, &low.to_le_bytes());
        self.load(at + 8, &(handler >> 32).to_le_bytes());
    }

    fn u64_at(&self, gpa: u64) -> u64 {
        u64::from_le_bytes(self.read(gpa, 8).try_into().unwrap())
    }
}

#[test]
fn long_mode_int3_frame_on_ist_and_iretq() {
    let mut m = long64();
    assert_eq!(m.ctx.cpu.mode(), ExecMode::Long64);
    m.set_gate64(3, 0x2000, 1);
    // 0x1000: int3; 0x2000: iretq
    m.load(0x1000, &[0xcc]);
    m.load(0x2000, &[0x48, 0xcf]);
    m.ctx.flags.set_eflags();
    m.ctx.cpu.rflags |= rflags::IF;
    assert_eq!(m.step_once(), Step::Branch);
    let c = &m.ctx.cpu;
    assert_eq!((c.rip, c.gpr[gpr::RSP]), (0x2000, 0x8000 - 40));
    assert_eq!(c.rflags & rflags::IF, 0, "interrupt gate clears IF");
    assert_eq!(m.u64_at(0x7fd8), 0x1001, "RIP after the trap");
    assert_eq!(m.u64_at(0x7fe0), 0x08, "CS");
    assert_eq!(m.u64_at(0x7fe8), rflags::FIXED1 | rflags::IF, "RFLAGS");
    assert_eq!(m.u64_at(0x7ff0), 0x9008, "RSP (unaligned, as it was)");
    assert_eq!(m.u64_at(0x7ff8), 0x10, "SS");
    assert_eq!(m.step_once(), Step::Branch);
    let c = &m.ctx.cpu;
    assert_eq!((c.rip, c.gpr[gpr::RSP]), (0x1001, 0x9008));
    assert_eq!(c.seg[SegmentIndex::Ss as usize].selector, 0x10);
    assert_ne!(c.rflags & rflags::IF, 0);
}

#[test]
fn long_mode_non_canonical_stack_is_ss_and_data_is_gp() {
    let mut m = long64();
    m.set_gate64(12, 0x2000, 1);
    m.set_gate64(13, 0x2100, 1);
    // 0x1000: mov rsp, 0x8000_0000_0000_0010; push rax
    m.load(0x1000, &[0x48, 0xbc]);
    m.load(0x1002, &0x8000_0000_0000_0010u64.to_le_bytes());
    m.load(0x100a, &[0x50]);
    // 0x100b: mov rax, [rbx] with a non-canonical RBX
    m.load(0x100b, &[0x48, 0x8b, 0x03]);
    m.step_once();
    assert_eq!(m.step_once(), Step::Branch);
    assert_eq!(m.ctx.cpu.rip, 0x2000, "#SS handler");
    assert_eq!(m.u64_at(0x7fd0), 0, "error code");
    assert_eq!(m.u64_at(0x7fd8), 0x100a, "faulting RIP");
    assert_eq!(m.u64_at(0x7ff0), 0x8000_0000_0000_0010, "old RSP");
    let mut m = long64();
    m.set_gate64(13, 0x2100, 0);
    m.ctx.cpu.rip = 0x100b;
    m.load(0x100b, &[0x48, 0x8b, 0x03]);
    m.ctx.cpu.gpr[gpr::RBX] = 0x0000_8000_0000_0000;
    m.step_once();
    assert_eq!(m.ctx.cpu.rip, 0x2100, "#GP handler");
    assert_eq!(m.ctx.cpu.gpr[gpr::RSP], 0x9000 - 48, "aligned, same stack");
}

#[test]
fn long_mode_non_canonical_rbp_operand_is_ss() {
    let mut m = long64();
    m.set_gate64(12, 0x2000, 1);
    m.set_gate64(13, 0x2100, 1);
    // 0x1000: mov rax, [rbp] (SS-relative) with a non-canonical RBP
    m.load(0x1000, &[0x48, 0x8b, 0x45, 0x00]);
    m.ctx.cpu.gpr[gpr::RBP] = 0x0000_8000_0000_0000;
    m.step_once();
    assert_eq!(m.ctx.cpu.rip, 0x2000, "#SS handler");
    assert_eq!(m.u64_at(0x7fd8), 0x1000, "faulting RIP");
}

impl Machine {
    /// Decode the instruction at CS:rIP and execute it without delivering a fault it raises.
    fn execute_raw(&mut self) -> super::Exec {
        let ctx = &mut *self.ctx;
        let la = ctx.cpu.cs().base.wrapping_add(ctx.cpu.rip) & mem::linear_mask(ctx);
        let mut buf = [0u8; 16];
        let (_, n) = mem::fetch_code(ctx, &mut self.rt, la, &mut buf).unwrap();
        let limits = BlockLimits {
            max_insns: 1,
            page_bytes: 4096,
        };
        let block = decode_block(&buf[..n], ctx.cpu.rip, ctx.cpu.mode().bitness(), limits);
        super::execute(ctx, &mut self.rt, &block.insns[0])
    }
}

#[test]
fn entering_and_leaving_ia32e_mode_follows_the_sdm_checks() {
    use crate::exception::Fault;
    use vcpu::state::efer;
    let mut m = Machine::flat32();
    let tables = long64();
    for a in [0x70000u64, 0x71000, 0x72000] {
        m.load(a, &tables.read(a, 8));
    }
    // mov cr0, eax / wrmsr / mov cr4, eax
    m.load(0x1000, &[0x0f, 0x22, 0xc0]);
    m.load(0x1010, &[0x0f, 0x30]);
    m.load(0x1020, &[0x0f, 0x22, 0xe0]);
    m.ctx.cpu.efer = efer::LME;
    m.ctx.cpu.cr3 = 0x70000;
    m.ctx.cpu.gpr[gpr::RAX] = m.ctx.cpu.cr0 | cr0::PG;
    // Paging with LME but without CR4.PAE: #GP(0).
    assert_eq!(m.execute_raw(), Err(Fault::gp(0)));
    assert_eq!(m.ctx.cpu.efer & efer::LMA, 0);
    // With PAE: IA-32e mode, still 32-bit code (compatibility mode).
    m.ctx.cpu.cr4 |= mem::CR4_PAE;
    m.execute_raw().unwrap();
    assert_ne!(m.ctx.cpu.efer & efer::LMA, 0);
    assert_eq!(m.ctx.cpu.mode(), ExecMode::Protected32);
    // EFER.LME cannot change while paging is on.
    m.ctx.cpu.rip = 0x1010;
    m.ctx.cpu.gpr[gpr::RCX] = 0xc000_0080;
    m.ctx.cpu.gpr[gpr::RAX] = 0;
    m.ctx.cpu.gpr[gpr::RDX] = 0;
    assert_eq!(m.execute_raw(), Err(Fault::gp(0)));
    // NXE can; LMA in the written value is ignored.
    m.ctx.cpu.gpr[gpr::RAX] = efer::LME | efer::NXE;
    m.execute_raw().unwrap();
    assert_eq!(m.ctx.cpu.efer, efer::LME | efer::LMA | efer::NXE);
    // CR4.PAE cannot be cleared in IA-32e mode.
    m.ctx.cpu.rip = 0x1020;
    m.ctx.cpu.gpr[gpr::RAX] = 0;
    assert_eq!(m.execute_raw(), Err(Fault::gp(0)));
    // Clearing CR0.PG from compatibility mode leaves IA-32e mode.
    m.ctx.cpu.rip = 0x1000;
    m.ctx.cpu.gpr[gpr::RAX] = m.ctx.cpu.cr0 & !cr0::PG;
    m.execute_raw().unwrap();
    assert_eq!(m.ctx.cpu.efer & efer::LMA, 0);
    // ... but not from 64-bit mode.
    let mut m = long64();
    m.load(0x1000, &[0x0f, 0x22, 0xc0]);
    m.ctx.cpu.gpr[gpr::RAX] = m.ctx.cpu.cr0 & !cr0::PG;
    assert_eq!(m.execute_raw(), Err(Fault::gp(0)));
}

#[test]
fn ltr_in_ia32e_mode_reads_a_16_byte_descriptor() {
    let mut m = long64();
    // GDT entry 0x18: available 64-bit TSS, base 0x1234_5678_9abc_d000, limit 0x67.
    let low: u64 = 0x67 | (0xd000 << 16) | (0xbc << 32) | (0x89 << 40) | (0x9a << 56);
    m.load(0x818, &low.to_le_bytes());
    m.load(0x820, &0x1234_5678u64.to_le_bytes());
    m.ctx.cpu.gdtr.limit = 0x27;
    // mov ax, 0x18; ltr ax
    m.load(0x1000, &[0x66, 0xb8, 0x18, 0x00, 0x0f, 0x00, 0xd8]);
    m.execute_raw().unwrap();
    m.ctx.cpu.rip = 0x1004;
    m.execute_raw().unwrap();
    assert_eq!(m.ctx.cpu.tr.base, 0x1234_5678_9abc_d000);
    assert_eq!(m.ctx.cpu.tr.selector, 0x18);
    assert_eq!(m.ctx.cpu.tr.typ(), 0xb, "busy");
}

#[test]
fn rdtscp_and_lahf_in_64bit_mode() {
    let mut m = long64();
    m.ctx.cpu.tsc_aux = 0x1_0000_0007;
    m.ctx.cpu.gpr[gpr::RCX] = u64::MAX;
    // rdtscp; stc; lahf
    m.load(0x1000, &[0x0f, 0x01, 0xf9, 0xf9, 0x9f]);
    m.ctx.flags.set_eflags();
    for _ in 0..3 {
        assert_eq!(m.step_once(), Step::Continue);
    }
    assert_eq!(
        m.ctx.cpu.gpr[gpr::RCX],
        7,
        "TSC_AUX[31:0], upper half cleared"
    );
    assert_eq!(
        (m.ctx.cpu.gpr[gpr::RAX] >> 8) & 0xff,
        0x03,
        "AH = CF | bit 1"
    );
}

#[test]
fn untaken_cmov_and_zero_count_shift_clear_the_upper_half_in_64bit_mode() {
    let mut m = long64();
    // clc; cmovb eax, ebx (not taken); mov cl, 32; shl edx, cl (masked count 0)
    m.load(0x1000, &[0xf8, 0x0f, 0x42, 0xc3, 0xb1, 0x20, 0xd3, 0xe2]);
    m.ctx.flags.set_eflags();
    m.ctx.cpu.gpr[gpr::RAX] = 0x1234_5678_9abc_def0;
    m.ctx.cpu.gpr[gpr::RBX] = 0x1111;
    m.ctx.cpu.gpr[gpr::RDX] = 0xffff_ffff_8000_0001;
    for _ in 0..4 {
        assert_eq!(m.step_once(), Step::Continue);
    }
    assert_eq!(m.ctx.cpu.gpr[gpr::RAX], 0x9abc_def0);
    assert_eq!(m.ctx.cpu.gpr[gpr::RDX], 0x8000_0001);
}

#[test]
fn cmpxchg_with_a_32bit_register_destination_in_64bit_mode() {
    // cmpxchg edx, ebx: on success EDX is written (upper half cleared) and RAX kept whole; on
    // failure EAX is written (upper half cleared) and RDX left alone, as processors do.
    let mut m = long64();
    m.load(0x1000, &[0x0f, 0xb1, 0xda, 0x0f, 0xb1, 0xda]);
    m.ctx.cpu.gpr[gpr::RAX] = 0xaaaa_aaaa_0000_0005;
    m.ctx.cpu.gpr[gpr::RDX] = 0xdddd_dddd_0000_0005;
    m.ctx.cpu.gpr[gpr::RBX] = 0xbbbb_bbbb_0000_0007;
    assert_eq!(m.step_once(), Step::Continue);
    assert_eq!(m.ctx.cpu.gpr[gpr::RAX], 0xaaaa_aaaa_0000_0005);
    assert_eq!(m.ctx.cpu.gpr[gpr::RDX], 0x7);
    m.ctx.cpu.gpr[gpr::RDX] = 0xdddd_dddd_0000_0009;
    assert_eq!(m.step_once(), Step::Continue);
    assert_eq!(m.ctx.cpu.gpr[gpr::RAX], 0x9);
    assert_eq!(m.ctx.cpu.gpr[gpr::RDX], 0xdddd_dddd_0000_0009);
}

#[test]
fn wrmsr_tsc_sets_the_counter_and_it_keeps_counting() {
    let mut m = long64();
    // wrmsr (ECX = 0x10, EDX:EAX = 0x1_0000_0000); rdmsr (0x8b, the microcode signature);
    // rdtsc
    m.ctx.cpu.gpr[gpr::RCX] = 0x10;
    m.ctx.cpu.gpr[gpr::RDX] = 1;
    m.ctx.cpu.gpr[gpr::RAX] = 0;
    m.load(0x1000, &[0x0f, 0x30, 0x0f, 0x32, 0x0f, 0x31]);
    m.ctx.flags.set_eflags();
    assert_eq!(m.step_once(), Step::Continue);
    m.ctx.cpu.gpr[gpr::RCX] = 0x8b;
    assert_eq!(m.step_once(), Step::Continue);
    assert_eq!((m.ctx.cpu.gpr[gpr::RDX], m.ctx.cpu.gpr[gpr::RAX]), (0, 0));
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert_eq!(m.step_once(), Step::Continue);
    let tsc = m.ctx.cpu.gpr[gpr::RDX] << 32 | m.ctx.cpu.gpr[gpr::RAX];
    // 2 ms at 1 GHz past 2^32, and far less than a minute.
    assert!(tsc >= (1 << 32) + 2_000_000, "{tsc:#x}");
    assert!(tsc < (1 << 32) + 60 * crate::tsc::TSC_HZ, "{tsc:#x}");
    // The state read out carries the current count.
    assert!(m.ctx.cpu_state().tsc > tsc);
}

#[test]
fn tsc_adjust_follows_tsc_writes_and_steps_the_tsc() {
    let mut m = long64();
    // wrmsr; rdmsr; wrmsr; rdtsc; rdmsr: IA32_TSC <- 2^40, read IA32_TSC_ADJUST, then
    // IA32_TSC_ADJUST <- its value + 2^36, read the TSC and IA32_TSC_ADJUST again.
    m.load(
        0x1000,
        &[0x0f, 0x30, 0x0f, 0x32, 0x0f, 0x30, 0x0f, 0x31, 0x0f, 0x32],
    );
    m.ctx.flags.set_eflags();
    let before = m.ctx.tsc();
    m.ctx.cpu.gpr[gpr::RCX] = 0x10;
    m.ctx.cpu.gpr[gpr::RDX] = 1 << 8;
    m.ctx.cpu.gpr[gpr::RAX] = 0;
    assert_eq!(m.step_once(), Step::Continue);
    m.ctx.cpu.gpr[gpr::RCX] = 0x3b;
    assert_eq!(m.step_once(), Step::Continue);
    let adjust = m.ctx.cpu.gpr[gpr::RDX] << 32 | m.ctx.cpu.gpr[gpr::RAX];
    // The write stepped the TSC by 2^40 - (its value then), which was at least `before`.
    assert!(
        adjust <= (1 << 40) - before && adjust > (1 << 40) - before - 60 * crate::tsc::TSC_HZ,
        "{adjust:#x}"
    );
    let raised = adjust + (1 << 36);
    m.ctx.cpu.gpr[gpr::RDX] = raised >> 32;
    m.ctx.cpu.gpr[gpr::RAX] = raised & 0xffff_ffff;
    assert_eq!(m.step_once(), Step::Continue);
    assert_eq!(m.step_once(), Step::Continue);
    let tsc = m.ctx.cpu.gpr[gpr::RDX] << 32 | m.ctx.cpu.gpr[gpr::RAX];
    let stepped = (1 << 40) + (1 << 36);
    assert!(
        (stepped..stepped + 60 * crate::tsc::TSC_HZ).contains(&tsc),
        "the TSC moved with IA32_TSC_ADJUST: {tsc:#x}"
    );
    assert_eq!(m.step_once(), Step::Continue);
    assert_eq!(
        m.ctx.cpu.gpr[gpr::RDX] << 32 | m.ctx.cpu.gpr[gpr::RAX],
        raised
    );
    assert_eq!(m.ctx.cpu_state().tsc_adjust, raised);
}

#[test]
fn arch_capabilities_reads_the_not_affected_bits_and_refuses_writes() {
    let mut m = long64();
    // rdmsr (IA32_ARCH_CAPABILITIES), then wrmsr of the same value.
    m.load(0x1000, &[0x0f, 0x32, 0x0f, 0x30]);
    m.ctx.cpu.gpr[gpr::RCX] = 0x10a;
    assert_eq!(m.step_once(), Step::Continue);
    let caps = m.ctx.cpu.gpr[gpr::RDX] << 32 | m.ctx.cpu.gpr[gpr::RAX];
    assert_eq!(caps, super::system::ARCH_CAPABILITIES);
    for (bit, what) in [(0, "RDCL_NO"), (5, "MDS_NO"), (4, "SSB_NO")] {
        assert_ne!(caps & (1 << bit), 0, "{what}");
    }
    assert_eq!(caps & (1 << 1), 0, "no enhanced IBRS is claimed");
    let err = m.execute_raw().unwrap_err();
    assert_eq!(
        err,
        crate::exception::Fault::gp(0),
        "IA32_ARCH_CAPABILITIES is read-only"
    );
}

#[test]
fn cpuid_reports_the_invariant_tsc_and_tsc_adjust() {
    let mut m = long64();
    // cpuid (leaf 80000007H); cpuid (leaf 7)
    m.load(0x1000, &[0x0f, 0xa2, 0x0f, 0xa2]);
    m.ctx.cpu.gpr[gpr::RAX] = 0x8000_0007;
    assert_eq!(m.step_once(), Step::Continue);
    assert_ne!(m.ctx.cpu.gpr[gpr::RDX] & (1 << 8), 0, "invariant TSC");
    m.ctx.cpu.gpr[gpr::RAX] = 7;
    m.ctx.cpu.gpr[gpr::RCX] = 0;
    assert_eq!(m.step_once(), Step::Continue);
    assert_ne!(m.ctx.cpu.gpr[gpr::RBX] & (1 << 1), 0, "IA32_TSC_ADJUST");
}

#[test]
fn long_mode_call_gate_from_ring3_switches_to_rsp0_and_retfq_returns() {
    let mut m = long64();
    // User-accessible identity map, ring-3 64-bit code 0x20 and data 0x28, and a 16-byte
    // 64-bit call gate at 0x30 (DPL 3) to 0x08:0x2000.
    m.load(0x70000, &(0x71000u64 | 7).to_le_bytes());
    m.load(0x71000, &(0x72000u64 | 7).to_le_bytes());
    m.load(0x72000, &(0x87u64).to_le_bytes());
    let gate_low: u64 = 0x2000 | (0x08 << 16) | (0xecu64 << 40);
    for (i, d) in [0x00af_fb00_0000_ffffu64, 0x00cf_f300_0000_ffff, gate_low, 0]
        .iter()
        .enumerate()
    {
        m.load(0x820 + 8 * i as u64, &d.to_le_bytes());
    }
    m.ctx.cpu.gdtr.limit = 0x3f;
    m.load(0x904, &0x8800u64.to_le_bytes()); // RSP0
    let c = &mut m.ctx.cpu;
    c.seg[SegmentIndex::Cs as usize] = Segment::from_descriptor(0x23, 0x0000_ffff, 0x00af_fb00);
    c.seg[SegmentIndex::Ss as usize] = Segment::from_descriptor(0x2b, 0x0000_ffff, 0x00cf_f300);
    c.gpr[gpr::RSP] = 0x7000;
    m.ctx.flush_tlb();
    assert_eq!(m.ctx.cpu.cpl(), 3);
    // call far [0x3000] (m16:32: offset ignored, selector 0x33); at 0x2000: retfq.
    m.load(0x1000, &[0xff, 0x1c, 0x25, 0x00, 0x30, 0x00, 0x00]);
    m.load(0x3000, &[0, 0, 0, 0, 0x33, 0]);
    m.load(0x2000, &[0x48, 0xcb]);
    assert_eq!(m.step_once(), Step::Branch);
    let c = &m.ctx.cpu;
    assert_eq!((c.cs().selector, c.rip, c.cpl()), (0x08, 0x2000, 0));
    assert_eq!(
        c.seg[SegmentIndex::Ss as usize].selector,
        0,
        "null SS, RPL 0"
    );
    assert_eq!(c.gpr[gpr::RSP], 0x8800 - 32);
    assert_eq!(m.u64_at(0x8800 - 8), 0x2b, "old SS");
    assert_eq!(m.u64_at(0x8800 - 16), 0x7000, "old RSP");
    assert_eq!(m.u64_at(0x8800 - 24), 0x23, "old CS");
    assert_eq!(m.u64_at(0x8800 - 32), 0x1007, "return RIP");
    assert_eq!(m.step_once(), Step::Branch);
    let c = &m.ctx.cpu;
    assert_eq!((c.cs().selector, c.rip, c.cpl()), (0x23, 0x1007, 3));
    assert_eq!(c.seg[SegmentIndex::Ss as usize].selector, 0x2b);
    assert_eq!(c.gpr[gpr::RSP], 0x7000);
}

#[test]
fn fault_loading_the_new_tasks_segments_is_raised_at_its_first_instruction() {
    let mut m = Machine::flat32();
    // GDT: + busy TSS A 0x18 at 0x5000 (the current task), TSS B 0x20 at 0x5100, execute-only
    // code 0x28 (B's DS: #TS(0x28) once B's CS and SS are loaded).
    let extra: [u64; 3] = [
        0x0000_8b00_5000_0067,
        0x0000_8900_5100_0067,
        0x00cf_9800_0000_ffff,
    ];
    for (i, d) in extra.iter().enumerate() {
        m.load(0x818 + 8 * i as u64, &d.to_le_bytes());
    }
    m.ctx.cpu.gdtr.limit = 47;
    m.ctx.cpu.tr = Segment {
        base: 0x5000,
        limit: 0x67,
        selector: 0x18,
        attr: Segment::ATTR_P | 0xb,
    };
    for (off, v) in [
        (0x20u64, 0x4000u32), // EIP
        (0x24, 2),            // EFLAGS
        (0x28, 0xb0b0),       // EAX
        (0x38, 0x8000),       // ESP
        (0x48, 0x10),         // ES
        (0x4c, 0x08),         // CS
        (0x50, 0x10),         // SS
        (0x54, 0x28),         // DS
        (0x58, 0x10),         // FS
        (0x5c, 0x10),         // GS
    ] {
        m.load(0x5100 + off, &v.to_le_bytes());
    }
    m.set_gate32(10, 0x3000);
    // call 0x20:0
    m.load(0x1000, &[0x9a, 0, 0, 0, 0, 0x20, 0]);
    m.ctx.cpu.gpr[gpr::RAX] = 0xa0a0;
    assert_eq!(m.step_once(), Step::Branch);
    let c = &m.ctx.cpu;
    assert_eq!(c.tr.selector, 0x20, "the switch happened");
    assert_eq!(c.gpr[gpr::RAX], 0xb0b0, "B's registers");
    assert_ne!(c.cr0 & cr0::TS, 0);
    assert_eq!(c.rip, 0x3000, "#TS handler");
    assert_eq!(c.gpr[gpr::RSP], 0x8000 - 16, "on B's stack");
    assert_eq!(m.u32_at(0x7ff0), 0x28, "error code: B's DS");
    assert_eq!(m.u32_at(0x7ff4), 0x4000, "B's first instruction");
    assert_ne!(m.u32_at(0x7ffc) & rflags::NT as u32, 0, "B is nested");
    assert_eq!(m.u32_at(0x5020), 0x1007, "A resumes after the CALL");
    assert_eq!(m.u32_at(0x5028), 0xa0a0, "A's EAX saved");
    assert_eq!(m.u16_at(0x5100), 0x18, "B's link");
    assert_eq!(m.read(0x825, 1)[0], 0x8b, "B busy");
    assert_eq!(m.read(0x81d, 1)[0], 0x8b, "A stays busy under CALL");
}

#[test]
fn io_bitmap_allows_and_denies_ports_at_cpl3() {
    let mut m = Machine::flat32();
    // Ring-3 code 0x18 and data 0x20; 32-bit TSS at 0x5000 with its bitmap at 0x68 covering
    // ports 0-15 (limit 0x6a): port 0xe9 lies beyond it, ports 1-7 are allowed, 8-15 denied.
    for (i, d) in [0x00cf_fb00_0000_ffffu64, 0x00cf_f300_0000_ffff]
        .iter()
        .enumerate()
    {
        m.load(0x818 + 8 * i as u64, &d.to_le_bytes());
    }
    m.ctx.cpu.gdtr.limit = 39;
    m.load(0x5004, &0x9000u32.to_le_bytes()); // ESP0
    m.load(0x5008, &0x10u32.to_le_bytes()); // SS0
    m.load(0x5066, &0x68u16.to_le_bytes());
    m.load(0x5068, &[0x01, 0xff, 0xff]);
    m.ctx.cpu.tr = Segment {
        base: 0x5000,
        limit: 0x6a,
        selector: 0x28,
        attr: Segment::ATTR_P | 0xb,
    };
    let c = &mut m.ctx.cpu;
    c.seg[SegmentIndex::Cs as usize] = Segment::from_descriptor(0x1b, 0x0000_ffff, 0x00cf_fb00);
    c.seg[SegmentIndex::Ss as usize] = Segment::from_descriptor(0x23, 0x0000_ffff, 0x00cf_f300);
    assert_eq!(m.ctx.cpu.cpl(), 3);
    m.ctx.flags.set_eflags();
    m.set_gate32(13, 0x3000);
    // out 0x02, al ; out 0x06, ax (ports 6-7) ; out 0x07, ax (7-8: denied)
    m.load(0x1000, &[0xe6, 0x02, 0x66, 0xe7, 0x06, 0x66, 0xe7, 0x07]);
    assert_eq!(m.step_once(), Step::Continue);
    assert_eq!(m.step_once(), Step::Continue);
    assert_eq!(m.step_once(), Step::Branch);
    assert_eq!(m.ctx.cpu.rip, 0x3000, "#GP for port 8");
    // Port 0 (bit 0 set) and a port beyond the bitmap are denied too.
    for code in [[0xe6u8, 0x00], [0xe6, 0xe9]] {
        m.ctx.cpu.seg[SegmentIndex::Cs as usize] =
            Segment::from_descriptor(0x1b, 0x0000_ffff, 0x00cf_fb00);
        m.ctx.cpu.seg[SegmentIndex::Ss as usize] =
            Segment::from_descriptor(0x23, 0x0000_ffff, 0x00cf_f300);
        m.ctx.cpu.gpr[gpr::RSP] = 0x9000;
        m.load(0x1100, &code);
        m.ctx.cpu.rip = 0x1100;
        assert_eq!(m.step_once(), Step::Branch);
        assert_eq!(m.ctx.cpu.rip, 0x3000, "#GP for {code:02x?}");
    }
}

#[test]
fn segment_limits_and_rights_are_checked_in_protected_mode() {
    let mut m = Machine::flat32();
    m.set_gate32(13, 0x3000);
    m.set_gate32(12, 0x3100);
    // FS: base 0x10000, limit 0xffff, byte granular.
    m.ctx.cpu.seg[SegmentIndex::Fs as usize] =
        Segment::from_descriptor(0x18, 0x0000_ffff, 0x0040_9201);
    // mov al, [fs:0xffff] ; mov eax, [fs:0xfffe] (crosses the limit)
    m.load(0x1000, &[0x64, 0xa0, 0xff, 0xff, 0x00, 0x00]);
    m.load(0x1006, &[0x64, 0xa1, 0xfe, 0xff, 0x00, 0x00]);
    assert_eq!(m.step_once(), Step::Continue);
    assert_eq!(m.step_once(), Step::Branch);
    assert_eq!(m.ctx.cpu.rip, 0x3000, "#GP");
    assert_eq!(m.u32_at(0x9000 - 16), 0, "error code 0");
    assert_eq!(m.u32_at(0x9000 - 12), 0x1006, "at the instruction");
    // SS with a 1 MiB limit: mov eax, [esp + 0x100000] -> #SS(0).
    m.ctx.cpu.gpr[gpr::RSP] = 0x9000;
    m.ctx.cpu.seg[SegmentIndex::Ss as usize] =
        Segment::from_descriptor(0x10, 0x0000_ffff, 0x0040_920f);
    m.load(0x1100, &[0x8b, 0x84, 0x24, 0x00, 0x00, 0x10, 0x00]);
    m.ctx.cpu.rip = 0x1100;
    assert_eq!(m.step_once(), Step::Branch);
    assert_eq!(m.ctx.cpu.rip, 0x3100, "#SS");
    // A null GS: mov eax, [gs:0] -> #GP(0).
    m.ctx.cpu.gpr[gpr::RSP] = 0x9000;
    m.ctx.cpu.seg[SegmentIndex::Gs as usize] = Segment::default();
    m.load(0x1200, &[0x65, 0xa1, 0, 0, 0, 0]);
    m.ctx.cpu.rip = 0x1200;
    assert_eq!(m.step_once(), Step::Branch);
    assert_eq!(m.ctx.cpu.rip, 0x3000);
}

#[test]
fn movbe_loads_and_stores_byte_reversed() {
    let mut m = long64();
    m.load(0x4000, &0x1122_3344_5566_7788u64.to_le_bytes());
    m.ctx.cpu.gpr[gpr::RBX] = 0x4000;
    m.ctx.cpu.gpr[gpr::RDX] = 0xffff_ffff_ffff_ffff;
    m.ctx.cpu.gpr[gpr::RCX] = 0x0102_0304_0506_0708;
    // movbe eax, [rbx] ; movbe dx, [rbx] ; movbe [rbx], rcx
    m.load(
        0x1000,
        &[
            0x0f, 0x38, 0xf0, 0x03, 0x66, 0x0f, 0x38, 0xf0, 0x13, 0x48, 0x0f, 0x38, 0xf1, 0x0b,
        ],
    );
    for _ in 0..3 {
        assert_eq!(m.step_once(), Step::Continue);
    }
    let c = &m.ctx.cpu;
    assert_eq!(c.gpr[gpr::RAX], 0x8877_6655, "32-bit load zero-extends");
    assert_eq!(c.gpr[gpr::RDX], 0xffff_ffff_ffff_8877, "16-bit load merges");
    assert_eq!(m.u64_at(0x4000), 0x0807_0605_0403_0201);
}

#[test]
fn x87_and_sse_memory_operands_are_checked_against_the_segment() {
    // DS: data, byte-granular limit 0xfff; ES: read-only data. #GP handler at 0x2000: hlt.
    // Each case is one instruction at 0x1000 followed by hlt; `faults` says whether the
    // instruction must raise #GP(0) (SDM Vol. 3A 5.3) instead of completing.
    let cases: [(&[u8], bool, &str); 6] = [
        (
            &[0xd9, 0x05, 0xfc, 0x0f, 0, 0],
            false,
            "fld dword [0xffc]: last byte at the limit",
        ),
        (
            &[0xd9, 0x05, 0xfe, 0x0f, 0, 0],
            true,
            "fld dword [0xffe]: beyond the limit",
        ),
        (
            &[0xdd, 0x1d, 0xfc, 0x0f, 0, 0],
            true,
            "fstp qword [0xffc]: beyond the limit",
        ),
        (
            &[0x0f, 0x10, 0x05, 0xf0, 0x0f, 0, 0],
            false,
            "movups xmm0, [0xff0]: fits",
        ),
        (
            &[0x0f, 0x10, 0x05, 0xf8, 0x0f, 0, 0],
            true,
            "movups xmm0, [0xff8]: beyond",
        ),
        (
            &[0x26, 0x0f, 0x11, 0x05, 0, 1, 0, 0],
            true,
            "movups [es:0x100], xmm0: read-only",
        ),
    ];
    for (code, faults, what) in cases {
        let mut m = Machine::flat32();
        let c = &mut m.ctx.cpu;
        c.cr4 |= 1 << 9; // OSFXSAVE
        c.seg[SegmentIndex::Ds as usize] = Segment::from_descriptor(0x10, 0x0000_0fff, 0x0040_9300);
        c.seg[SegmentIndex::Es as usize] = Segment::from_descriptor(0x10, 0x0000_ffff, 0x00cf_9100);
        m.load(0x1000, code);
        m.load(0x1000 + code.len() as u64, &[0xf4]);
        m.load(0x2000, &[0xf4]);
        m.set_gate32(13, 0x2000);
        assert_eq!(m.run(10), Step::Exit, "{what}");
        if faults {
            assert_eq!(m.ctx.cpu.rip, 0x2001, "{what}: #GP");
            assert_eq!(m.u32_at(0x9000 - 16), 0, "{what}: error code");
            assert_eq!(m.u32_at(0x9000 - 12), 0x1000, "{what}: faulting EIP");
        } else {
            assert_eq!(
                m.ctx.cpu.rip,
                0x1000 + code.len() as u64 + 1,
                "{what}: completes"
            );
        }
    }
}
