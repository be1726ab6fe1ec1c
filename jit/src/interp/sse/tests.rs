//! Instruction-level tests of the SIMD extensions: machine code (nasm source in the comments)
//! decoded and run with `step` in flat 32-bit protected mode. Expected values are worked out
//! by hand from the SDM.

use iced_x86::{Decoder, DecoderOptions};
use vcpu::state::{cr0, gpr, rflags};
use vcpu::{CpuState, GuestRam, RegionKind, RegionSpec, Segment, SegmentIndex};

use super::fp::mx;
use super::{mxcsr, set_xmm, xmm, CR4_OSFXSR, CR4_OSXMMEXCPT, CR4_OSXSAVE, XM_VECTOR};
use crate::context::JitContext;
use crate::exception::{Fault, NM_VECTOR, UD_VECTOR};
use crate::interp::{execute, Flow};
use crate::runtime::Runtime;

struct Cpu {
    ctx: Box<JitContext>,
    rt: Runtime,
}

impl Cpu {
    /// Flat 32-bit protected mode, 1 MiB of RAM, CR4.OSFXSR and OSXMMEXCPT set.
    fn new() -> Self {
        let ram = GuestRam::new(&[RegionSpec {
            base: 0,
            size: 0x10_0000,
            kind: RegionKind::Ram,
        }])
        .unwrap();
        let mut cpu = CpuState::reset();
        cpu.cr0 |= cr0::PE;
        cpu.cr4 = CR4_OSFXSR | CR4_OSXMMEXCPT;
        cpu.seg[SegmentIndex::Cs as usize] =
            Segment::from_descriptor(0x08, 0x0000_ffff, 0x00cf_9b00);
        for s in [SegmentIndex::Ds, SegmentIndex::Es, SegmentIndex::Ss] {
            cpu.seg[s as usize] = Segment::from_descriptor(0x10, 0x0000_ffff, 0x00cf_9300);
        }
        cpu.rip = 0x1000;
        Self {
            ctx: Box::new(JitContext::new(cpu)),
            rt: Runtime::new(ram),
        }
    }

    /// Decode one 32-bit instruction and execute it.
    fn exec(&mut self, code: &[u8]) -> Result<Flow, Fault> {
        let mut d = Decoder::with_ip(32, code, 0x1000, DecoderOptions::NONE);
        let insn = d.decode();
        assert_eq!(insn.len(), code.len(), "bytes are one instruction");
        execute(&mut self.ctx, &mut self.rt, &insn)
    }

    fn load(&self, gpa: u64, bytes: &[u8]) {
        self.rt.ram.write_host(gpa, bytes).unwrap();
    }

    fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.rt.ram.read(gpa, &mut b).unwrap();
        b
    }
}

/// `movaps xmm1, [0x2000]`
const MOVAPS_LOAD: &[u8] = &[0x0f, 0x28, 0x0d, 0x00, 0x20, 0x00, 0x00];
/// `movups xmm1, [0x2001]`
const MOVUPS_LOAD_ODD: &[u8] = &[0x0f, 0x10, 0x0d, 0x01, 0x20, 0x00, 0x00];
/// `ldmxcsr [0x3000]`
const LDMXCSR: &[u8] = &[0x0f, 0xae, 0x15, 0x00, 0x30, 0x00, 0x00];
/// `stmxcsr [0x3004]`
const STMXCSR: &[u8] = &[0x0f, 0xae, 0x1d, 0x04, 0x30, 0x00, 0x00];
/// `fxsave [0x4000]`
const FXSAVE: &[u8] = &[0x0f, 0xae, 0x05, 0x00, 0x40, 0x00, 0x00];
/// `fxrstor [0x4000]`
const FXRSTOR: &[u8] = &[0x0f, 0xae, 0x0d, 0x00, 0x40, 0x00, 0x00];
/// `addps xmm1, xmm2`
const ADDPS: &[u8] = &[0x0f, 0x58, 0xca];
/// `comiss xmm1, xmm2`
const COMISS: &[u8] = &[0x0f, 0x2f, 0xca];
/// `pcmpistri xmm1, xmm2, 0x0c` (unsigned bytes, equal ordered, least significant index)
const PCMPISTRI_SUBSTR: &[u8] = &[0x66, 0x0f, 0x3a, 0x63, 0xca, 0x0c];
/// `movsd xmm0, [0x2000]`
const MOVSD_LOAD: &[u8] = &[0xf2, 0x0f, 0x10, 0x05, 0x00, 0x20, 0x00, 0x00];
/// `cmpsd xmm1, xmm2, 1` (LT)
const CMPSD_LT: &[u8] = &[0xf2, 0x0f, 0xc2, 0xca, 0x01];
/// `xsave [0x4000]`
const XSAVE: &[u8] = &[0x0f, 0xae, 0x25, 0x00, 0x40, 0x00, 0x00];
/// `xrstor [0x4000]`
const XRSTOR: &[u8] = &[0x0f, 0xae, 0x2d, 0x00, 0x40, 0x00, 0x00];
/// `xgetbv`
const XGETBV: &[u8] = &[0x0f, 0x01, 0xd0];
/// `xsetbv`
const XSETBV: &[u8] = &[0x0f, 0x01, 0xd1];
/// `cvttsd2si eax, xmm1`
const CVTTSD2SI: &[u8] = &[0xf2, 0x0f, 0x2c, 0xc1];
/// `movdqu [0x2ffc], xmm1` (straddles the page boundary at 0x3000)
const MOVDQU_STORE_STRADDLE: &[u8] = &[0xf3, 0x0f, 0x7f, 0x0d, 0xfc, 0x2f, 0x00, 0x00];
/// `popcnt eax, ecx`
const POPCNT: &[u8] = &[0xf3, 0x0f, 0xb8, 0xc1];
/// `crc32 eax, byte [0x2000]`
const CRC32_BYTE: &[u8] = &[0xf2, 0x0f, 0x38, 0xf0, 0x05, 0x00, 0x20, 0x00, 0x00];

#[test]
fn control_bits_gate_sse_instructions() {
    let mut c = Cpu::new();
    assert_eq!(c.exec(ADDPS), Ok(Flow::Next));
    c.ctx.cpu.cr4 &= !CR4_OSFXSR;
    assert_eq!(c.exec(ADDPS).unwrap_err().vector, UD_VECTOR);
    c.ctx.cpu.cr4 |= CR4_OSFXSR;
    c.ctx.cpu.cr0 |= cr0::TS;
    assert_eq!(c.exec(ADDPS).unwrap_err().vector, NM_VECTOR);
    assert_eq!(c.exec(FXSAVE).unwrap_err().vector, NM_VECTOR);
    // EM takes precedence over TS for SSE (#UD), but FXSAVE raises #NM.
    c.ctx.cpu.cr0 |= cr0::EM;
    assert_eq!(c.exec(ADDPS).unwrap_err().vector, UD_VECTOR);
    c.ctx.cpu.cr0 &= !cr0::TS;
    assert_eq!(c.exec(FXSAVE).unwrap_err().vector, NM_VECTOR);
    // POPCNT and CRC32 do not depend on CR0/CR4.
    c.ctx.cpu.gpr[gpr::RCX] = 0xf0f0;
    assert_eq!(c.exec(POPCNT), Ok(Flow::Next));
    assert_eq!(c.ctx.cpu.gpr[gpr::RAX], 8);
}

#[test]
fn aligned_moves_fault_on_misaligned_operands() {
    let mut c = Cpu::new();
    let bytes: Vec<u8> = (0..32).collect();
    c.load(0x2000, &bytes);
    assert_eq!(c.exec(MOVAPS_LOAD), Ok(Flow::Next));
    assert_eq!(
        xmm(&c.ctx, 1),
        u128::from_le_bytes(bytes[0..16].try_into().unwrap())
    );
    assert_eq!(c.exec(MOVUPS_LOAD_ODD), Ok(Flow::Next));
    assert_eq!(
        xmm(&c.ctx, 1),
        u128::from_le_bytes(bytes[1..17].try_into().unwrap())
    );
    // movaps xmm1, [0x2001] (the same instruction, displacement 0x2001).
    let misaligned = [0x0f, 0x28, 0x0d, 0x01, 0x20, 0x00, 0x00];
    assert_eq!(c.exec(&misaligned), Err(Fault::gp(0)));
}

#[test]
fn a_page_straddling_store_is_all_or_nothing() {
    let mut c = Cpu::new();
    // Page tables: directory at 0x10000, table at 0x11000 identity-mapping the first 4 MiB
    // except page 3 (0x3000), which is not present.
    c.load(0x10000, &(0x11000u32 | 7).to_le_bytes());
    for p in 0..256u32 {
        if p != 3 {
            c.load(0x11000 + 4 * u64::from(p), &((p << 12) | 7).to_le_bytes());
        }
    }
    c.ctx.cpu.cr3 = 0x10000;
    c.ctx.cpu.cr0 |= cr0::PG;
    set_xmm(&mut c.ctx, 1, u128::MAX);
    let f = c.exec(MOVDQU_STORE_STRADDLE).unwrap_err();
    assert_eq!(f.vector, crate::exception::PF_VECTOR);
    assert_eq!(c.ctx.cpu.cr2, 0x3000);
    assert_eq!(
        c.read(0x2ffc, 4),
        vec![0; 4],
        "nothing stored below the boundary"
    );
}

#[test]
fn ldmxcsr_rejects_reserved_bits_and_stmxcsr_stores() {
    let mut c = Cpu::new();
    c.load(0x3000, &0x1_0000u32.to_le_bytes());
    assert_eq!(c.exec(LDMXCSR), Err(Fault::gp(0)));
    c.load(0x3000, &0x7f80u32.to_le_bytes());
    assert_eq!(c.exec(LDMXCSR), Ok(Flow::Next));
    assert_eq!(c.exec(STMXCSR), Ok(Flow::Next));
    assert_eq!(c.read(0x3004, 4), 0x7f80u32.to_le_bytes());
}

#[test]
fn fxsave_fxrstor_round_trip_in_the_32_bit_layout() {
    let mut c = Cpu::new();
    for r in 0..8 {
        set_xmm(
            &mut c.ctx,
            r,
            0x1111_1111_1111_1111_1111_1111_1111_1111 * (r as u128 + 1),
        );
    }
    assert_eq!(c.exec(FXSAVE), Ok(Flow::Next));
    let img = c.read(0x4000, 512);
    assert_eq!(u16::from_le_bytes([img[0], img[1]]), 0x037f, "FCW");
    assert_eq!(
        u32::from_le_bytes(img[24..28].try_into().unwrap()),
        0x1f80,
        "MXCSR"
    );
    assert_eq!(img[160], 0x11, "XMM0 at byte 160");
    assert_eq!(img[160 + 7 * 16], 0x88, "XMM7 at byte 272");
    assert!(
        img[288..].iter().all(|&b| b == 0),
        "XMM8-15 not saved outside 64-bit mode"
    );
    for r in 0..8 {
        set_xmm(&mut c.ctx, r, 0);
    }
    assert_eq!(c.exec(FXRSTOR), Ok(Flow::Next));
    assert_eq!(xmm(&c.ctx, 3), 0x4444_4444_4444_4444_4444_4444_4444_4444);
    // A misaligned area is #GP(0); a reserved MXCSR bit in the image too.
    let misaligned = [0x0f, 0xae, 0x05, 0x08, 0x40, 0x00, 0x00];
    assert_eq!(c.exec(&misaligned), Err(Fault::gp(0)));
    c.load(0x4000 + 24, &0xffff_ffffu32.to_le_bytes());
    assert_eq!(c.exec(FXRSTOR), Err(Fault::gp(0)));
}

#[test]
fn xsave_needs_osxsave_and_round_trips() {
    let mut c = Cpu::new();
    assert_eq!(c.exec(XGETBV).unwrap_err().vector, UD_VECTOR);
    c.ctx.cpu.cr4 |= CR4_OSXSAVE;
    c.ctx.cpu.gpr[gpr::RCX] = 0;
    assert_eq!(c.exec(XGETBV), Ok(Flow::Next));
    assert_eq!(c.ctx.cpu.gpr[gpr::RAX], 1, "XCR0 is 1 after reset");
    // XCR0 = 3 (x87 + SSE) is accepted; 2 (no x87) and 7 (AVX) are not.
    for (v, ok) in [(2u64, false), (7, false), (3, true)] {
        c.ctx.cpu.gpr[gpr::RAX] = v;
        c.ctx.cpu.gpr[gpr::RDX] = 0;
        let r = c.exec(XSETBV);
        assert_eq!(r.is_ok(), ok, "xsetbv {v}");
    }
    assert_eq!(c.ctx.cpu.xcr0, 3);
    set_xmm(&mut c.ctx, 5, 0xabcd);
    c.ctx.cpu.gpr[gpr::RAX] = u64::MAX;
    c.ctx.cpu.gpr[gpr::RDX] = u64::MAX;
    assert_eq!(c.exec(XSAVE), Ok(Flow::Next));
    assert_eq!(c.read(0x4000 + 512, 8), 3u64.to_le_bytes(), "XSTATE_BV");
    set_xmm(&mut c.ctx, 5, 0);
    assert_eq!(c.exec(XRSTOR), Ok(Flow::Next));
    assert_eq!(xmm(&c.ctx, 5), 0xabcd);
    // XSTATE_BV[1] = 0: the SSE registers are initialised (zeroed).
    c.load(0x4000 + 512, &1u64.to_le_bytes());
    assert_eq!(c.exec(XRSTOR), Ok(Flow::Next));
    assert_eq!(xmm(&c.ctx, 5), 0);
    // A non-zero XCOMP_BV is #GP in the standard form.
    c.load(0x4000 + 520, &1u64.to_le_bytes());
    assert_eq!(c.exec(XRSTOR), Err(Fault::gp(0)));
}

#[test]
fn unmasked_exceptions_raise_xm_or_ud_and_leave_the_destination() {
    let mut c = Cpu::new();
    // +inf + -inf in lane 0: invalid.
    set_xmm(&mut c.ctx, 1, 0x7f80_0000);
    set_xmm(&mut c.ctx, 2, 0xff80_0000);
    assert_eq!(c.exec(ADDPS), Ok(Flow::Next));
    assert_eq!(xmm(&c.ctx, 1) as u32, 0xffc0_0000, "QNaN indefinite");
    assert_eq!(mxcsr(&c.ctx) & mx::FLAGS, mx::IE);
    // Unmask IE (clear IM, bit 7).
    super::set_mxcsr(&mut c.ctx, 0x1f00);
    set_xmm(&mut c.ctx, 1, 0x7f80_0000);
    assert_eq!(c.exec(ADDPS).unwrap_err().vector, XM_VECTOR);
    assert_eq!(xmm(&c.ctx, 1), 0x7f80_0000, "destination unchanged");
    c.ctx.cpu.cr4 &= !CR4_OSXMMEXCPT;
    assert_eq!(c.exec(ADDPS).unwrap_err().vector, UD_VECTOR);
}

#[test]
fn comiss_sets_zf_pf_cf() {
    let mut c = Cpu::new();
    let status = |c: &Cpu| c.ctx.cpu.rflags & rflags::STATUS;
    set_xmm(&mut c.ctx, 1, u128::from(1f32.to_bits()));
    set_xmm(&mut c.ctx, 2, u128::from(2f32.to_bits()));
    c.exec(COMISS).unwrap();
    assert_eq!(status(&c), rflags::CF);
    set_xmm(&mut c.ctx, 2, 0x7fc0_0000);
    c.exec(COMISS).unwrap();
    assert_eq!(status(&c), rflags::ZF | rflags::PF | rflags::CF);
    assert_eq!(mxcsr(&c.ctx) & mx::IE, mx::IE, "COMISS signals on QNaN");
}

#[test]
fn sse_movsd_and_cmpsd_are_not_the_string_instructions() {
    let mut c = Cpu::new();
    c.load(0x2000, &1.5f64.to_bits().to_le_bytes());
    set_xmm(&mut c.ctx, 0, u128::MAX);
    c.exec(MOVSD_LOAD).unwrap();
    assert_eq!(
        xmm(&c.ctx, 0),
        u128::from(1.5f64.to_bits()),
        "upper quadword zeroed"
    );
    set_xmm(&mut c.ctx, 1, (7u128 << 64) | u128::from(1f64.to_bits()));
    set_xmm(&mut c.ctx, 2, u128::from(2f64.to_bits()));
    c.exec(CMPSD_LT).unwrap();
    assert_eq!(xmm(&c.ctx, 1), (7u128 << 64) | u128::from(u64::MAX));
}

#[test]
fn pcmpistri_finds_a_substring_and_cvttsd2si_truncates() {
    let mut c = Cpu::new();
    set_xmm(
        &mut c.ctx,
        1,
        u128::from_le_bytes(*b"lo\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
    );
    set_xmm(
        &mut c.ctx,
        2,
        u128::from_le_bytes(*b"hello world\0\0\0\0\0"),
    );
    c.exec(PCMPISTRI_SUBSTR).unwrap();
    assert_eq!(c.ctx.cpu.gpr[gpr::RCX], 3);
    // CF (match found), ZF (xmm2 has a terminator), SF (xmm1 has one).
    assert_eq!(
        c.ctx.cpu.rflags & rflags::STATUS,
        rflags::CF | rflags::ZF | rflags::SF
    );
    set_xmm(&mut c.ctx, 1, u128::from((-2.75f64).to_bits()));
    c.exec(CVTTSD2SI).unwrap();
    assert_eq!(c.ctx.cpu.gpr[gpr::RAX], 0xffff_fffe);
    // CRC-32C of one byte 0x00 from an initial 0: table entry 0 is 0.
    c.load(0x2000, &[0]);
    c.ctx.cpu.gpr[gpr::RAX] = 0;
    c.exec(CRC32_BYTE).unwrap();
    assert_eq!(c.ctx.cpu.gpr[gpr::RAX], 0);
}

/// `movd mm3, eax`
const MOVD_MM3_EAX: &[u8] = &[0x0f, 0x6e, 0xd8];
/// `emms`
const EMMS: &[u8] = &[0x0f, 0x77];
/// `paddb mm1, mm2`
const PADDB_MM: &[u8] = &[0x0f, 0xfc, 0xca];
/// `cvtpi2ps xmm1, [0x2000]`
const CVTPI2PS_MEM: &[u8] = &[0x0f, 0x2a, 0x0d, 0x00, 0x20, 0x00, 0x00];

#[test]
fn mmx_aliases_the_x87_registers() {
    use vcpu::FxArea;
    let mut c = Cpu::new();
    // x87 TOP = 2: ST(0) is R2, so the slot of ST(2) holds R4. Put a marker there.
    let fsw = 2u16 << 11;
    c.ctx.cpu.fx.0[FxArea::FSW..FxArea::FSW + 2].copy_from_slice(&fsw.to_le_bytes());
    let st2 = FxArea::ST0 + 2 * 16;
    c.ctx.cpu.fx.0[st2..st2 + 8].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    c.ctx.cpu.gpr[gpr::RAX] = 0x89ab_cdef;
    c.exec(MOVD_MM3_EAX).unwrap();
    // TOP is 0 and every register valid; R3 (now in slot 3) holds the zero-extended value with
    // bits 79:64 set; R4, which was ST(2), moved to slot 4 untouched.
    assert_eq!(c.ctx.cpu.fx.u16_at(FxArea::FSW) >> 11 & 7, 0);
    assert_eq!(c.ctx.cpu.fx.0[FxArea::FTW], 0xff);
    let r3 = FxArea::ST0 + 3 * 16;
    assert_eq!(
        c.ctx.cpu.fx.0[r3..r3 + 10],
        [0xef, 0xcd, 0xab, 0x89, 0, 0, 0, 0, 0xff, 0xff]
    );
    let r4 = FxArea::ST0 + 4 * 16;
    assert_eq!(
        c.ctx.cpu.fx.0[r4..r4 + 8],
        0x1122_3344_5566_7788u64.to_le_bytes()
    );
    c.exec(EMMS).unwrap();
    assert_eq!(
        c.ctx.cpu.fx.0[FxArea::FTW],
        0,
        "EMMS tags every register empty"
    );
    // MMX needs no CR4.OSFXSR, but CR0.EM makes it #UD and CR0.TS #NM.
    c.ctx.cpu.cr4 &= !CR4_OSFXSR;
    assert_eq!(c.exec(PADDB_MM), Ok(Flow::Next));
    c.ctx.cpu.cr0 |= cr0::TS;
    assert_eq!(c.exec(PADDB_MM).unwrap_err().vector, NM_VECTOR);
    c.ctx.cpu.cr0 ^= cr0::TS | cr0::EM;
    assert_eq!(c.exec(PADDB_MM).unwrap_err().vector, UD_VECTOR);
}

#[test]
fn cvtpi2ps_from_memory_leaves_the_x87_tags() {
    let mut c = Cpu::new();
    // Doublewords 3 and -1 become 3.0 and -1.0 in the low half; the high half is kept.
    c.load(0x2000, &3u32.to_le_bytes());
    c.load(0x2004, &(-1i32).to_le_bytes());
    set_xmm(&mut c.ctx, 1, 0x1234u128 << 64);
    c.exec(CVTPI2PS_MEM).unwrap();
    let expect =
        (0x1234u128 << 64) | (u128::from((-1f32).to_bits()) << 32) | u128::from(3f32.to_bits());
    assert_eq!(xmm(&c.ctx, 1), expect);
    assert_eq!(c.ctx.cpu.fx.0[vcpu::FxArea::FTW], 0, "no MMX transition");
}
