//! x87 instruction tests on a tiny flat 32-bit machine. Instructions are hand-encoded (the
//! Intel syntax is in the comments) and run one by one through the interpreter's `execute`,
//! so faults come back as values. Expected values are worked out from the SDM.

use iced_x86::{Decoder, DecoderOptions};
use vcpu::state::{cr0, rflags};
use vcpu::{CpuState, GuestRam, RegionKind, RegionSpec, Segment, SegmentIndex};

use super::float80::F80;
use super::state::{fsw, X87};
use crate::context::JitContext;
use crate::exception::{Fault, MF_VECTOR, NM_VECTOR};
use crate::interp::Flow;
use crate::runtime::Runtime;

struct Machine {
    ctx: Box<JitContext>,
    rt: Runtime,
}

/// Scratch data area.
const DATA: u32 = 0x2000;

impl Machine {
    /// Flat 32-bit protected mode with CR0.NE set, as Linux runs.
    fn new() -> Self {
        let ram = GuestRam::new(&[RegionSpec {
            base: 0,
            size: 0x10_0000,
            kind: RegionKind::Ram,
        }])
        .unwrap();
        let rt = Runtime::new(ram);
        let mut cpu = CpuState::reset();
        cpu.cr0 = cr0::PE | cr0::ET | cr0::NE;
        cpu.seg[SegmentIndex::Cs as usize] =
            Segment::from_descriptor(0x08, 0x0000_ffff, 0x00cf_9b00);
        for s in [SegmentIndex::Ds, SegmentIndex::Es, SegmentIndex::Ss] {
            cpu.seg[s as usize] = Segment::from_descriptor(0x10, 0x0000_ffff, 0x00cf_9300);
        }
        cpu.rip = 0x1000;
        Self {
            ctx: Box::new(JitContext::new(cpu)),
            rt,
        }
    }

    /// Execute one instruction given by its bytes at the current EIP.
    fn exec(&mut self, bytes: &[u8]) -> Result<Flow, Fault> {
        let ip = self.ctx.cpu.rip;
        self.rt.ram.write_host(ip, bytes).unwrap();
        let mut d = Decoder::with_ip(32, bytes, ip, DecoderOptions::NONE);
        let insn = d.decode();
        assert_eq!(insn.len(), bytes.len(), "{bytes:02x?} decodes as {insn}");
        let r = crate::interp::execute(&mut self.ctx, &mut self.rt, &insn);
        if r.is_ok() {
            self.ctx.cpu.rip = insn.next_ip();
        }
        r
    }

    fn ok(&mut self, bytes: &[u8]) {
        self.exec(bytes)
            .unwrap_or_else(|f| panic!("{bytes:02x?}: {f}"));
    }

    fn write(&self, gpa: u32, bytes: &[u8]) {
        self.rt.ram.write_host(u64::from(gpa), bytes).unwrap();
    }

    fn read(&self, gpa: u32, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.rt.ram.read(u64::from(gpa), &mut b).unwrap();
        b
    }

    fn u16_at(&self, gpa: u32) -> u16 {
        u16::from_le_bytes(self.read(gpa, 2).try_into().unwrap())
    }

    fn u64_at(&self, gpa: u32) -> u64 {
        u64::from_le_bytes(self.read(gpa, 8).try_into().unwrap())
    }

    fn fpu(&self) -> X87 {
        X87::load(&self.ctx.cpu.fx)
    }
}

/// ModR/M with a disp32 memory operand (mod 00, r/m 101) for `/reg`, then the address.
fn mem(op: u8, reg: u8, addr: u32) -> Vec<u8> {
    let mut v = vec![op, reg << 3 | 0b101];
    v.extend_from_slice(&addr.to_le_bytes());
    v
}

const FNINIT: &[u8] = &[0xdb, 0xe3];
const FLD1: &[u8] = &[0xd9, 0xe8];
const FLDZ: &[u8] = &[0xd9, 0xee];

#[test]
fn linux_fpu_detection_sequence() {
    // fninit; fnstsw [DATA]; fnstcw [DATA+2] with the words preset to 0xffff, as Linux's
    // fpu__init_check... detection does: FSW must read 0, FCW & 0x103f must be 0x3f.
    let mut m = Machine::new();
    m.write(DATA, &[0xff; 4]);
    m.ok(FNINIT);
    m.ok(&mem(0xdd, 7, DATA)); // fnstsw [DATA]
    m.ok(&mem(0xd9, 7, DATA + 2)); // fnstcw [DATA+2]
    assert_eq!(m.u16_at(DATA), 0);
    assert_eq!(m.u16_at(DATA + 2), 0x037f);
    // fnstsw ax
    m.ctx.cpu.gpr[0] = 0xdead_beef;
    m.ok(&[0xdf, 0xe0]);
    assert_eq!(m.ctx.cpu.gpr[0], 0xdead_0000);
}

#[test]
fn cr0_em_and_ts_raise_nm() {
    let mut m = Machine::new();
    m.ctx.cpu.cr0 |= cr0::EM;
    assert_eq!(m.exec(FNINIT), Err(Fault::new(NM_VECTOR)));
    // WAIT ignores EM.
    assert!(m.exec(&[0x9b]).is_ok());
    m.ctx.cpu.cr0 = (m.ctx.cpu.cr0 & !cr0::EM) | cr0::TS;
    assert_eq!(m.exec(FLD1), Err(Fault::new(NM_VECTOR)));
    // WAIT raises #NM only with MP and TS both set.
    assert!(m.exec(&[0x9b]).is_ok());
    m.ctx.cpu.cr0 |= cr0::MP;
    assert_eq!(m.exec(&[0x9b]), Err(Fault::new(NM_VECTOR)));
}

#[test]
fn unmasked_exception_is_deferred_to_the_next_waiting_instruction() {
    let mut m = Machine::new();
    m.ok(FNINIT);
    // fldcw [DATA] = 0x037b: ZE unmasked.
    m.write(DATA, &0x037bu16.to_le_bytes());
    m.ok(&mem(0xd9, 5, DATA));
    m.ok(FLD1);
    m.ok(FLDZ);
    m.ok(&[0xde, 0xf9]); // fdivp st(1), st(0): 1 / 0
    let s = m.fpu();
    assert_eq!(s.fsw & 0x3f, 0x04, "ZE");
    assert_ne!(s.fsw & fsw::ES, 0);
    // The unmasked zero divide left the stack alone: two values, ST(1) still 1.0.
    assert_eq!(s.top(), 6);
    assert_eq!(s.st(1), F80::ONE);
    // The next waiting instruction and WAIT raise #MF; the non-waiting FNSTSW does not.
    assert_eq!(m.exec(FLD1), Err(Fault::new(MF_VECTOR)));
    assert_eq!(m.exec(&[0x9b]), Err(Fault::new(MF_VECTOR)));
    m.ok(&mem(0xdd, 7, DATA));
    assert_eq!(m.u16_at(DATA) & 0x80bf, 0x8084);
    // With CR0.NE clear the exception is ignored (IGNNE# behaviour).
    m.ctx.cpu.cr0 &= !cr0::NE;
    assert!(m.exec(&[0x9b]).is_ok());
    m.ctx.cpu.cr0 |= cr0::NE;
    m.ok(&[0xdb, 0xe2]); // fnclex
    assert_eq!(m.fpu().fsw & 0x80ff, 0);
    m.ok(FLD1);
}

#[test]
fn loads_and_stores_convert_between_formats() {
    let mut m = Machine::new();
    m.ok(FNINIT);
    // fld qword [DATA] = pi as a double (0x400921FB54442D18); fstp tword [DATA+16].
    m.write(DATA, &0x4009_21fb_5444_2d18u64.to_le_bytes());
    m.ok(&mem(0xdd, 0, DATA));
    m.ok(&mem(0xdb, 7, DATA + 16));
    assert_eq!(m.u64_at(DATA + 16), 0xc90f_daa2_2168_c000);
    assert_eq!(m.u16_at(DATA + 24), 0x4000);
    // fldpi; fstp qword [DATA+32]: the nearest double, the same bits as above.
    m.ok(&[0xd9, 0xeb]);
    m.ok(&mem(0xdd, 3, DATA + 32));
    assert_eq!(m.u64_at(DATA + 32), 0x4009_21fb_5444_2d18);
    assert_eq!(m.fpu().fsw & 0x3f, 0x20, "PE");
    // fild dword [DATA] = -7; fistp word [DATA+40].
    m.write(DATA, &(-7i32).to_le_bytes());
    m.ok(&mem(0xdb, 0, DATA));
    m.ok(&mem(0xdf, 3, DATA + 40));
    assert_eq!(m.u16_at(DATA + 40), (-7i16) as u16);
    assert_eq!(m.fpu().used, 0, "stack empty again");
    // fbld/fbstp: -123456789012345678 round trip.
    let bcd = [0x78u8, 0x56, 0x34, 0x12, 0x90, 0x78, 0x56, 0x34, 0x12, 0x80];
    m.write(DATA, &bcd);
    m.ok(&mem(0xdf, 4, DATA));
    assert_eq!(
        m.fpu().st(0),
        super::float80::from_int(-123_456_789_012_345_678)
    );
    m.ok(&mem(0xdf, 6, DATA + 48));
    assert_eq!(m.read(DATA + 48, 10), bcd);
}

#[test]
fn stack_overflow_and_underflow_masked_responses() {
    let mut m = Machine::new();
    m.ok(FNINIT);
    for _ in 0..8 {
        m.ok(FLD1);
    }
    assert_eq!(m.fpu().fsw & 0x3f, 0);
    m.ok(FLDZ);
    let s = m.fpu();
    // IE + SF with C1 = 1 (overflow); the indefinite is pushed.
    assert_eq!(s.fsw & (0x7f | fsw::C1), 0x41 | fsw::C1);
    assert_eq!(s.st(0), F80::INDEFINITE);
    // fistp dword [DATA] of the indefinite: IE, the integer indefinite.
    m.ok(&mem(0xdb, 3, DATA));
    assert_eq!(m.read(DATA, 4), [0, 0, 0, 0x80]);
    // Underflow: fninit; fadd st(0), st(1) on an empty stack: C1 = 0, ST(0) = indefinite.
    m.ok(FNINIT);
    m.ok(&[0xd8, 0xc1]);
    let s = m.fpu();
    assert_eq!(s.fsw & (0x7f | fsw::C1), 0x41);
    assert_eq!(s.st(0), F80::INDEFINITE);
}

#[test]
fn comparisons_set_condition_codes_and_eflags() {
    let mut m = Machine::new();
    m.ok(FNINIT);
    m.ok(FLDZ);
    m.ok(FLD1); // ST0 = 1, ST1 = 0
    m.ok(&[0xd8, 0xd1]); // fcom st(1): 1 > 0: C3 C2 C0 = 000
    assert_eq!(m.fpu().fsw & (fsw::C3 | fsw::C2 | fsw::C0), 0);
    m.ok(&[0xd9, 0xc9]); // fxch st(1): ST0 = 0, ST1 = 1
    m.ok(&[0xd8, 0xd1]); // fcom st(1): 0 < 1: C0
    assert_eq!(m.fpu().fsw & (fsw::C3 | fsw::C2 | fsw::C0), fsw::C0);
    m.ctx.cpu.rflags = rflags::FIXED1 | rflags::OF | rflags::SF;
    m.ctx.flags.set_eflags();
    m.ok(&[0xdf, 0xf1]); // fcomip st(0), st(1): 0 < 1: CF, pop
    let f = m.ctx.flags.status(m.ctx.cpu.rflags);
    assert_eq!(f & rflags::STATUS, rflags::CF);
    assert_eq!(m.fpu().top(), 7);
    // ftst of 1.0 then fxam: positive normal (C3 C2 C0 = 010, C1 = 0).
    m.ok(&[0xd9, 0xe5]);
    assert_eq!(m.fpu().fsw & fsw::CONDITION, fsw::C2);
    m.ok(&[0xd9, 0xe0]); // fchs
    m.ok(&[0xd9, 0xe5]); // fxam: negative normal
    assert_eq!(m.fpu().fsw & fsw::CONDITION, fsw::C2 | fsw::C1);
}

#[test]
fn fsave_frstor_and_fstenv_layouts() {
    let mut m = Machine::new();
    m.ok(FNINIT);
    m.ok(FLD1);
    m.ok(FLDZ); // ST0 = 0 (R6), ST1 = 1 (R7)
    m.ok(&mem(0xd9, 6, DATA)); // fnstenv [DATA] (28 bytes)
    assert_eq!(m.u16_at(DATA), 0x037f | 0x3f);
    assert_eq!(m.u16_at(DATA + 4) >> 11 & 7, 6, "TOP");
    // Tags: R7 valid (00), R6 zero (01), others empty (11).
    assert_eq!(m.u16_at(DATA + 8), 0x1fff);
    // FIP is the fldz's offset, FCS:FOP = 0x08 | (0x1EE << 16).
    assert_eq!(m.read(DATA + 12, 4), (0x1000u32 + 4).to_le_bytes());
    assert_eq!(m.u16_at(DATA + 16), 0x08);
    assert_eq!(m.u16_at(DATA + 18), 0x1ee);
    // FNSTENV masked every exception.
    assert_eq!(m.fpu().fcw, 0x037f);
    let before = m.fpu();
    m.ok(&mem(0xdd, 6, DATA + 0x100)); // fnsave [DATA+0x100] (108 bytes), then FNINIT
    assert_eq!(m.fpu().used, 0);
    assert_eq!(m.read(DATA + 0x100 + 28, 10), F80::ZERO.to_bytes());
    assert_eq!(m.read(DATA + 0x100 + 38, 10), F80::ONE.to_bytes());
    m.ok(&mem(0xdd, 4, DATA + 0x100)); // frstor
    let after = m.fpu();
    assert_eq!(
        (after.fcw, after.fsw, after.used),
        (before.fcw, before.fsw, before.used)
    );
    assert_eq!((after.st(0), after.st(1)), (F80::ZERO, F80::ONE));
}

#[test]
fn arithmetic_through_the_stack() {
    let mut m = Machine::new();
    m.ok(FNINIT);
    // 2 = 1 + 1; sqrt(2) in extended precision.
    m.ok(FLD1);
    m.ok(FLD1);
    m.ok(&[0xde, 0xc1]); // faddp st(1), st(0)
    m.ok(&[0xd9, 0xfa]); // fsqrt
    assert_eq!(
        m.fpu().st(0),
        F80 {
            se: 0x3fff,
            sig: 0xb504_f333_f9de_6484
        }
    );
    // fisubr dword [DATA] = 10: ST0 = 10 - sqrt(2); then frndint -> 9 (round to nearest).
    m.write(DATA, &10i32.to_le_bytes());
    m.ok(&mem(0xda, 5, DATA));
    m.ok(&[0xd9, 0xfc]);
    assert_eq!(m.fpu().st(0), super::float80::from_int(9));
    // fdecstp / fincstp move TOP only; ffree st(0) empties it.
    m.ok(&[0xd9, 0xf6]);
    assert_eq!(m.fpu().top(), 6);
    m.ok(&[0xd9, 0xf7]);
    m.ok(&[0xdd, 0xc0]);
    assert_eq!(m.fpu().used, 0);
}

#[test]
fn mmx_aliases_the_x87_registers() {
    let mut m = Machine::new();
    m.ok(FNINIT);
    m.ok(FLD1); // TOP = 7
    m.ctx.cpu.gpr[0] = 0x80ff_7f01;
    m.ok(&[0x0f, 0x6e, 0xc0]); // movd mm0, eax
    let s = m.fpu();
    // TOP = 0, all tags valid, R0 = 0xFFFF:00000000_80ff7f01.
    assert_eq!((s.top(), s.used), (0, 0xff));
    assert_eq!(
        s.regs[0],
        F80 {
            se: 0xffff,
            sig: 0x80ff_7f01
        }
    );
    // paddusb mm0, mm0: bytes 01+01, 7f+7f, ff+ff (saturates), 80+80 (saturates).
    m.ok(&[0x0f, 0xdc, 0xc0]);
    // movq [DATA], mm0
    let mut movq_store = vec![0x0f];
    movq_store.extend(mem(0x7f, 0, DATA));
    m.ok(&movq_store);
    assert_eq!(m.u64_at(DATA), 0xffff_fe02);
    // psllq mm0, 8; movd ebx, mm0
    m.ok(&[0x0f, 0x73, 0xf0, 0x08]);
    m.ok(&[0x0f, 0x7e, 0xc3]);
    assert_eq!(m.ctx.cpu.gpr[3], 0xfffe_0200);
    // emms empties every register; x87 code works again.
    m.ok(&[0x0f, 0x77]);
    assert_eq!(m.fpu().used, 0);
    m.ok(FLD1);
    // CR0.EM: MMX raises #UD (x87 would raise #NM).
    m.ctx.cpu.cr0 |= cr0::EM;
    assert_eq!(m.exec(&[0x0f, 0x77]), Err(Fault::ud()));
}

#[test]
fn linux_fdiv_bug_check_computes_zero() {
    // arch/x86/kernel/cpu/bugs.c (32-bit): x = 4195835, y = 3145727;
    // fninit; fld x; fdiv y; fmul y; fld x; fsubp; fistp [DATA+16]; fwait: 0 without the
    // Pentium FDIV bug.
    let mut m = Machine::new();
    m.write(DATA, &4_195_835f64.to_bits().to_le_bytes());
    m.write(DATA + 8, &3_145_727f64.to_bits().to_le_bytes());
    m.write(DATA + 16, &[0xff; 4]);
    m.ok(FNINIT);
    m.ok(&mem(0xdd, 0, DATA)); // fld qword [DATA]
    m.ok(&mem(0xdc, 6, DATA + 8)); // fdiv qword [DATA+8]
    m.ok(&mem(0xdc, 1, DATA + 8)); // fmul qword [DATA+8]
    m.ok(&mem(0xdd, 0, DATA)); // fld qword [DATA]
    m.ok(&[0xde, 0xe9]); // fsubp st(1), st(0)
    m.ok(&mem(0xdb, 3, DATA + 16)); // fistp dword [DATA+16]
    m.ok(&[0x9b]);
    assert_eq!(m.read(DATA + 16, 4), [0; 4]);
}

#[test]
fn real_mode_16bit_environment_layout() {
    // Real mode, CS = 0x0100 (base 0x1000), IP = 0x0010: the 16-bit real-mode FNSTENV stores
    // FIP as a 20-bit linear address split over two words with FOP in the second (SDM Vol. 1
    // Figure 8-11).
    let mut m = Machine::new();
    let c = &mut m.ctx.cpu;
    c.cr0 = cr0::ET | cr0::NE;
    for s in c.seg.iter_mut() {
        *s = Segment::real_mode(0);
    }
    c.seg[SegmentIndex::Cs as usize] = Segment::real_mode(0x0100);
    c.rip = 0x0010;
    let dec = |m: &mut Machine, bytes: &[u8]| {
        let la = m.ctx.cpu.cs().base + m.ctx.cpu.rip;
        m.rt.ram.write_host(la, bytes).unwrap();
        let mut d = Decoder::with_ip(16, bytes, m.ctx.cpu.rip, DecoderOptions::NONE);
        let insn = d.decode();
        crate::interp::execute(&mut m.ctx, &mut m.rt, &insn).unwrap();
        m.ctx.cpu.rip = insn.next_ip();
    };
    dec(&mut m, FNINIT);
    dec(&mut m, FLD1); // at 0100:0012, linear 0x1012, FOP 0x1E8
    dec(&mut m, &[0xd9, 0x36, 0x00, 0x20]); // fnstenv [0x2000] (14 bytes)
    assert_eq!(m.u16_at(DATA), 0x037f);
    assert_eq!(m.u16_at(DATA + 2) >> 11, 7, "TOP");
    assert_eq!(m.u16_at(DATA + 4), 0x3fff, "R7 valid, others empty");
    assert_eq!(m.u16_at(DATA + 6), 0x1012);
    assert_eq!(m.u16_at(DATA + 8), 0x01e8);
    // o32 fnsave [0x2100] (108 bytes, 32-bit real-mode layout), then frstor it back.
    dec(&mut m, &[0x66, 0xdd, 0x36, 0x00, 0x21]);
    // FIP[15:0] in the low word at 12 (the high word is reserved); FOP in bits 0-10 and
    // FIP[31:16] in bits 12-27 at 16.
    assert_eq!(m.read(DATA + 0x100 + 12, 2), [0x12, 0x10]);
    assert_eq!(m.read(DATA + 0x100 + 16, 4), [0xe8, 0x01, 0, 0]);
    assert_eq!(m.read(DATA + 0x100 + 28, 10), F80::ONE.to_bytes());
    assert_eq!(m.fpu().used, 0);
    dec(&mut m, &[0x66, 0xdd, 0x26, 0x00, 0x21]);
    assert_eq!(m.fpu().st(0), F80::ONE);
    assert_eq!(m.fpu().fip, 0x1012);
}

#[test]
fn transcendentals_through_the_stack() {
    let mut m = Machine::new();
    m.ok(FNINIT);
    // fld1; fld1; fpatan: atan(1/1) = pi/4 (C90FDAA22168C235 with exponent -1, +-2 ulps).
    m.ok(FLD1);
    m.ok(FLD1);
    m.ok(&[0xd9, 0xf3]);
    let s = m.fpu();
    assert_eq!(s.top(), 7);
    assert_eq!(s.st(0).se, 0x3ffe);
    assert!(s.st(0).sig.abs_diff(0xc90f_daa2_2168_c235) <= 2);
    assert_eq!(s.fsw & 0x3f, 0x20, "PE");
    // fldz; fsincos: ST0 = cos 0 = 1, ST1 = sin 0 = 0, exact.
    m.ok(FNINIT);
    m.ok(FLDZ);
    m.ok(&[0xd9, 0xfb]);
    let s = m.fpu();
    assert_eq!((s.st(0), s.st(1)), (F80::ONE, F80::ZERO));
    assert_eq!(s.fsw & 0x3f, 0);
    // fld1; fldz; fyl2x: 1 * log2(0): ZE, -inf.
    m.ok(FNINIT);
    m.ok(FLD1);
    m.ok(FLDZ);
    m.ok(&[0xd9, 0xf1]);
    let s = m.fpu();
    assert_eq!(
        s.st(0),
        F80 {
            se: 0xffff,
            sig: 1 << 63
        }
    );
    assert_eq!(s.fsw & 0x3f, 0x04);
    // fsin of 2^63 is out of range: C2 = 1, ST0 unchanged.
    m.ok(FNINIT);
    m.write(DATA, &0x43e0_0000_0000_0000u64.to_le_bytes()); // 2^63 as a double
    m.ok(&mem(0xdd, 0, DATA));
    m.ok(&[0xd9, 0xfe]);
    let s = m.fpu();
    assert_ne!(s.fsw & fsw::C2, 0);
    assert_eq!(
        s.st(0),
        F80 {
            se: 0x403e,
            sig: 1 << 63
        }
    );
}

#[test]
fn unmasked_responses_leave_operands_or_bias_the_result() {
    let mut m = Machine::new();
    m.ok(FNINIT);
    // FCW 0x0340: every exception unmasked, RN, 64 bits.
    m.write(DATA, &0x0340u16.to_le_bytes());
    m.ok(&mem(0xd9, 5, DATA));
    // Invalid: inf - inf leaves both operands and TOP alone (SDM Vol. 1 4.9.2).
    let inf = F80::infinity(false);
    m.write(DATA + 16, &inf.to_bytes());
    m.ok(&mem(0xdb, 5, DATA + 16)); // fld tword [DATA+16]
    m.ok(&mem(0xdb, 5, DATA + 16));
    m.ok(&[0xde, 0xe9]); // fsubp st(1), st(0)
    let s = m.fpu();
    assert_eq!(s.fsw & 0xff, 0x81, "IE + ES");
    assert_eq!((s.top(), s.st(0), s.st(1)), (6, inf, inf));
    // Overflow to a register: the exponent is biased by -24576 and the result delivered.
    m.ok(&[0xdb, 0xe2]); // fnclex
    let max = F80 {
        se: 0x7ffe,
        sig: 1 << 63,
    };
    m.write(DATA + 32, &max.to_bytes());
    m.ok(FNINIT);
    m.ok(&mem(0xd9, 5, DATA));
    m.ok(&mem(0xdb, 5, DATA + 32));
    m.ok(&[0xd8, 0xc0]); // fadd st0, st0 = 2^16384
    let s = m.fpu();
    assert_eq!(s.fsw & 0x3f, 0x08, "OE");
    assert_eq!(
        s.st(0),
        F80 {
            se: (0x7fff - 24576) as u16,
            sig: 1 << 63
        }
    );
    // Unmasked overflow on a store to memory: nothing is stored, nothing popped.
    m.ok(&[0xdb, 0xe2]);
    m.write(DATA + 48, &[0xaa; 4]);
    m.ok(FNINIT);
    m.ok(&mem(0xd9, 5, DATA));
    m.ok(&mem(0xdb, 5, DATA + 32));
    m.ok(&mem(0xd9, 3, DATA + 48)); // fstp dword [DATA+48]
    let s = m.fpu();
    assert_eq!(m.read(DATA + 48, 4), [0xaa; 4]);
    assert_eq!(s.top(), 7);
    assert_eq!(s.fsw & 0x08, 0x08);
}

#[test]
fn compare_and_conversion_edge_cases() {
    let mut m = Machine::new();
    m.ok(FNINIT);
    // fld tword SNaN: an 80-bit load raises nothing and keeps the SNaN.
    let snan = F80 {
        se: 0x7fff,
        sig: 0x8000_0000_0000_0001,
    };
    m.write(DATA, &snan.to_bytes());
    m.ok(&mem(0xdb, 5, DATA));
    assert_eq!(m.fpu().fsw & 0x3f, 0);
    assert_eq!(m.fpu().st(0), snan);
    // fucomi st0, st0 with an SNaN: IE, unordered (ZF PF CF).
    m.ok(&[0xdb, 0xe8]);
    assert_eq!(m.fpu().fsw & 0x3f, 0x01);
    let f = m.ctx.flags.status(m.ctx.cpu.rflags);
    assert_eq!(
        f & (rflags::ZF | rflags::PF | rflags::CF),
        rflags::ZF | rflags::PF | rflags::CF
    );
    // fbstp of 10^18 is out of range: the packed BCD indefinite.
    m.ok(FNINIT);
    m.write(DATA, &1_000_000_000_000_000_000i64.to_le_bytes());
    m.ok(&mem(0xdf, 5, DATA)); // fild qword [DATA]
    m.ok(&mem(0xdf, 6, DATA + 16)); // fbstp [DATA+16]
    assert_eq!(
        m.read(DATA + 16, 10),
        [0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff]
    );
    assert_eq!(m.fpu().fsw & 0x3f, 0x01);
    // fistp word of 32767.5 rounds (to even) to 32768: out of range, integer indefinite.
    m.ok(FNINIT);
    m.write(DATA, &32767.5f64.to_bits().to_le_bytes());
    m.ok(&mem(0xdd, 0, DATA));
    m.ok(&mem(0xdf, 3, DATA + 32));
    assert_eq!(m.u16_at(DATA + 32), 0x8000);
    // fisttp word truncates: 32767.
    m.ok(&mem(0xdd, 0, DATA));
    m.ok(&mem(0xdf, 1, DATA + 32));
    assert_eq!(m.u16_at(DATA + 32), 0x7fff);
    // fldenv with a tag word marking R7 empty: the register is empty afterwards.
    m.ok(FNINIT);
    m.ok(FLD1);
    m.ok(&mem(0xd9, 6, DATA + 64)); // fnstenv
    m.write(DATA + 64 + 8, &0xffffu16.to_le_bytes());
    m.ok(&mem(0xd9, 4, DATA + 64)); // fldenv
    assert_eq!(m.fpu().used, 0);
}
