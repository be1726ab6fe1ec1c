//! `CpuState` <-> KVM's register structures, as pure functions (no ioctls) so they can be
//! tested without `/dev/kvm`.
//!
//! What KVM does not carry is stated where it happens:
//! - `kvm_segment` has an `unusable` flag that `CpuState` lacks; like QEMU, a segment is given to
//!   KVM as unusable exactly when it is not present, and read back as present only when KVM
//!   calls it both present and usable.
//! - x87/SSE state travels as the legacy region of KVM's XSAVE image (KVM_GET/SET_XSAVE), which
//!   is the FXSAVE layout byte for byte. `kvm_fpu` is only the fallback where XSAVE is missing:
//!   it has no MXCSR_MASK (reported as the model constant [`MXCSR_MASK`]) and no field for
//!   byte 5 and bytes 416..512 (reserved or software-available, SDM Vol. 1 Table 10-2), which
//!   read back as zero. (It is also unreliable on the software-emulated KVM of our build hosts,
//!   whose KVM_GET_FPU returns MXCSR as 0.)
//! - The interrupt shadow is one bit in `CpuState`; KVM distinguishes STI from MOV SS blocking.
//!   STI blocking requires RFLAGS.IF = 1 (SDM Vol. 3C 26.3.1.5), so the shadow is given to KVM as
//!   STI blocking when IF is set and as MOV SS blocking otherwise.

use kvm_bindings::{
    kvm_debugregs, kvm_dtable, kvm_fpu, kvm_regs, kvm_segment, kvm_sregs, kvm_vcpu_events,
    kvm_xsave, KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_SHADOW,
    KVM_X86_SHADOW_INT_MOV_SS, KVM_X86_SHADOW_INT_STI,
};
use vcpu::state::{gpr, rflags};
use vcpu::{CpuState, DescriptorTable, FxArea, PendingEvent, Segment, SegmentIndex};

/// The MXCSR_MASK reported in the FXSAVE image: all of MXCSR bits 0-15 writable (DAZ
/// included), the value `FxArea::reset` uses (SDM Vol. 1 11.6.6).
pub const MXCSR_MASK: u32 = 0xffff;

/// The NMI vector (SDM Vol. 3A 6.3.1, Table 6-1).
const NMI_VECTOR: u8 = 2;

/// General registers, RIP and RFLAGS.
pub fn regs_to_kvm(s: &CpuState) -> kvm_regs {
    let g = &s.gpr;
    kvm_regs {
        rax: g[gpr::RAX],
        rbx: g[gpr::RBX],
        rcx: g[gpr::RCX],
        rdx: g[gpr::RDX],
        rsi: g[gpr::RSI],
        rdi: g[gpr::RDI],
        rsp: g[gpr::RSP],
        rbp: g[gpr::RBP],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        rip: s.rip,
        rflags: s.rflags,
    }
}

pub fn regs_from_kvm(k: &kvm_regs, s: &mut CpuState) {
    s.gpr = [
        k.rax, k.rcx, k.rdx, k.rbx, k.rsp, k.rbp, k.rsi, k.rdi, k.r8, k.r9, k.r10, k.r11, k.r12,
        k.r13, k.r14, k.r15,
    ];
    s.rip = k.rip;
    s.rflags = k.rflags;
}

/// One segment register; `attr` bits are split into KVM's separate fields.
pub fn segment_to_kvm(s: &Segment) -> kvm_segment {
    let bit = |mask: u16| u8::from(s.attr & mask != 0);
    let present = bit(Segment::ATTR_P);
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.typ(),
        present,
        dpl: s.dpl(),
        db: bit(Segment::ATTR_DB),
        s: bit(Segment::ATTR_S),
        l: bit(Segment::ATTR_L),
        g: bit(Segment::ATTR_G),
        avl: bit(Segment::ATTR_AVL),
        unusable: 1 - present,
        padding: 0,
    }
}

pub fn segment_from_kvm(k: &kvm_segment) -> Segment {
    let flag = |v: u8, mask: u16| if v != 0 { mask } else { 0 };
    let attr = u16::from(k.type_ & 0xf)
        | flag(k.s, Segment::ATTR_S)
        | u16::from(k.dpl & 3) << 5
        | flag(k.present & u8::from(k.unusable == 0), Segment::ATTR_P)
        | flag(k.avl, Segment::ATTR_AVL)
        | flag(k.l, Segment::ATTR_L)
        | flag(k.db, Segment::ATTR_DB)
        | flag(k.g, Segment::ATTR_G);
    Segment {
        base: k.base,
        limit: k.limit,
        selector: k.selector,
        attr,
    }
}

fn dtable_to_kvm(t: &DescriptorTable) -> kvm_dtable {
    kvm_dtable {
        base: t.base,
        limit: t.limit,
        padding: [0; 3],
    }
}

fn dtable_from_kvm(t: &kvm_dtable) -> DescriptorTable {
    DescriptorTable {
        base: t.base,
        limit: t.limit,
    }
}

/// Segments, descriptor tables, control registers, EFER and the APIC base. No external
/// interrupt is left in `interrupt_bitmap`: a pending interrupt travels in `kvm_vcpu_events`.
pub fn sregs_to_kvm(s: &CpuState) -> kvm_sregs {
    let seg = |i: SegmentIndex| segment_to_kvm(&s.seg[i as usize]);
    kvm_sregs {
        cs: seg(SegmentIndex::Cs),
        ds: seg(SegmentIndex::Ds),
        es: seg(SegmentIndex::Es),
        fs: seg(SegmentIndex::Fs),
        gs: seg(SegmentIndex::Gs),
        ss: seg(SegmentIndex::Ss),
        tr: segment_to_kvm(&s.tr),
        ldt: segment_to_kvm(&s.ldtr),
        gdt: dtable_to_kvm(&s.gdtr),
        idt: dtable_to_kvm(&s.idtr),
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.apic_base,
        interrupt_bitmap: [0; 4],
    }
}

pub fn sregs_from_kvm(k: &kvm_sregs, s: &mut CpuState) {
    s.seg[SegmentIndex::Es as usize] = segment_from_kvm(&k.es);
    s.seg[SegmentIndex::Cs as usize] = segment_from_kvm(&k.cs);
    s.seg[SegmentIndex::Ss as usize] = segment_from_kvm(&k.ss);
    s.seg[SegmentIndex::Ds as usize] = segment_from_kvm(&k.ds);
    s.seg[SegmentIndex::Fs as usize] = segment_from_kvm(&k.fs);
    s.seg[SegmentIndex::Gs as usize] = segment_from_kvm(&k.gs);
    s.tr = segment_from_kvm(&k.tr);
    s.ldtr = segment_from_kvm(&k.ldt);
    s.gdtr = dtable_from_kvm(&k.gdt);
    s.idtr = dtable_from_kvm(&k.idt);
    s.cr0 = k.cr0;
    s.cr2 = k.cr2;
    s.cr3 = k.cr3;
    s.cr4 = k.cr4;
    s.cr8 = k.cr8;
    s.efer = k.efer;
    s.apic_base = k.apic_base;
}

/// An external interrupt KVM holds in `interrupt_bitmap` (set when a vCPU is stopped between
/// accepting an interrupt and delivering it, without an in-kernel irqchip).
pub fn bitmap_interrupt(k: &kvm_sregs) -> Option<u8> {
    k.interrupt_bitmap
        .iter()
        .enumerate()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| (i * 64 + w.trailing_zeros() as usize) as u8)
}

fn slot16(fx: &FxArea, off: usize) -> [u8; 16] {
    fx.0[off..off + 16].try_into().expect("16-byte slot")
}

fn u64_at(fx: &FxArea, off: usize) -> u64 {
    u64::from_le_bytes(fx.0[off..off + 8].try_into().expect("8 bytes"))
}

/// x87 and SSE state from the FXSAVE image. FIP and FDP are taken as the 64-bit forms of
/// bytes 8..16 and 16..24, so the 32-bit form's FCS and FDS selectors travel with them.
pub fn fpu_to_kvm(fx: &FxArea) -> kvm_fpu {
    let mut k = kvm_fpu {
        fcw: fx.u16_at(FxArea::FCW),
        fsw: fx.u16_at(FxArea::FSW),
        ftwx: fx.0[FxArea::FTW],
        last_opcode: fx.u16_at(FxArea::FOP),
        last_ip: u64_at(fx, FxArea::FIP),
        last_dp: u64_at(fx, FxArea::FDP),
        mxcsr: fx.u32_at(FxArea::MXCSR),
        ..kvm_fpu::default()
    };
    for (i, r) in k.fpr.iter_mut().enumerate() {
        *r = slot16(fx, FxArea::ST0 + 16 * i);
    }
    for (i, r) in k.xmm.iter_mut().enumerate() {
        *r = slot16(fx, FxArea::XMM0 + 16 * i);
    }
    k
}

pub fn fpu_from_kvm(k: &kvm_fpu) -> FxArea {
    let mut fx = FxArea([0; 512]);
    let mut put = |off: usize, bytes: &[u8]| fx.0[off..off + bytes.len()].copy_from_slice(bytes);
    put(FxArea::FCW, &k.fcw.to_le_bytes());
    put(FxArea::FSW, &k.fsw.to_le_bytes());
    put(FxArea::FTW, &[k.ftwx]);
    put(FxArea::FOP, &k.last_opcode.to_le_bytes());
    put(FxArea::FIP, &k.last_ip.to_le_bytes());
    put(FxArea::FDP, &k.last_dp.to_le_bytes());
    put(FxArea::MXCSR, &k.mxcsr.to_le_bytes());
    put(FxArea::MXCSR_MASK, &MXCSR_MASK.to_le_bytes());
    for (i, r) in k.fpr.iter().enumerate() {
        put(FxArea::ST0 + 16 * i, r);
    }
    for (i, r) in k.xmm.iter().enumerate() {
        put(FxArea::XMM0 + 16 * i, r);
    }
    fx
}

/// Offset of XSTATE_BV in the XSAVE header, after the 512-byte legacy region (SDM Vol. 1
/// 13.4.2).
const XSTATE_BV: usize = 512;
/// State-component bits of XSTATE_BV / XCR0 (SDM Vol. 1 13.1).
const XFEATURE_X87: u64 = 1 << 0;
const XFEATURE_SSE: u64 = 1 << 1;
/// FCW in the x87 initial configuration (SDM Vol. 1 13.6, "x87 state": FCW 037FH, all else 0).
const FCW_INIT: u16 = 0x037f;
/// Bytes 416..512 of the FXSAVE image hold no register state: 416..464 are reserved and
/// 464..512 are "available to software" (SDM Vol. 1 Table 10-2); Linux keeps its own
/// `sw_reserved` bookkeeping there and KVM returns it. They travel as zero.
const FX_REGISTER_BYTES: usize = 416;

fn xsave_bytes(x: &kvm_xsave) -> [u8; 520] {
    let mut b = [0u8; 520];
    for (chunk, word) in b.chunks_exact_mut(4).zip(x.region.iter()) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    b
}

/// Put the FXSAVE image into the legacy region of `x` and mark x87 and SSE state as present in
/// XSTATE_BV, so that XRSTOR loads it rather than the initial configuration. The extended
/// components (AVX upper halves, ...) in `x` are left as they are.
pub fn fpu_into_xsave(fx: &FxArea, x: &mut kvm_xsave) {
    for (word, chunk) in x
        .region
        .iter_mut()
        .zip(fx.0[..FX_REGISTER_BYTES].chunks_exact(4))
    {
        *word = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
    }
    let bv_word = XSTATE_BV / 4;
    x.region[bv_word] |= (XFEATURE_X87 | XFEATURE_SSE) as u32;
}

/// The FXSAVE image from an XSAVE image (bytes 416..512 zero). A component whose XSTATE_BV bit is clear is in its
/// initial configuration and its bytes in the image are stale (SDM Vol. 1 13.6): x87 reads as
/// FCW 037FH with everything else zero, SSE as zero XMM registers. MXCSR is always valid.
pub fn fpu_from_xsave(x: &kvm_xsave) -> FxArea {
    let b = xsave_bytes(x);
    let bv = u64::from(u32::from_le_bytes(
        b[XSTATE_BV..XSTATE_BV + 4].try_into().expect("4 bytes"),
    ));
    let mut fx = FxArea([0; 512]);
    fx.0[..FX_REGISTER_BYTES].copy_from_slice(&b[..FX_REGISTER_BYTES]);
    if bv & XFEATURE_X87 == 0 {
        fx.0[FxArea::FCW..FxArea::MXCSR].fill(0);
        fx.0[FxArea::FCW..FxArea::FCW + 2].copy_from_slice(&FCW_INIT.to_le_bytes());
        fx.0[FxArea::ST0..FxArea::XMM0].fill(0);
    }
    if bv & XFEATURE_SSE == 0 {
        fx.0[FxArea::XMM0..FxArea::XMM0 + 256].fill(0);
    }
    fx
}

/// DR0-DR3, DR6, DR7.
pub fn debugregs_to_kvm(s: &CpuState) -> kvm_debugregs {
    kvm_debugregs {
        db: [s.dr[0], s.dr[1], s.dr[2], s.dr[3]],
        dr6: s.dr[4],
        dr7: s.dr[5],
        ..kvm_debugregs::default()
    }
}

pub fn debugregs_from_kvm(k: &kvm_debugregs, s: &mut CpuState) {
    s.dr = [k.db[0], k.db[1], k.db[2], k.db[3], k.dr6, k.dr7];
}

/// The pending event, interrupt shadow and NMI blocking. SIPI and SMM state are left alone.
pub fn events_to_kvm(s: &CpuState) -> kvm_vcpu_events {
    let mut k = kvm_vcpu_events {
        flags: KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_NMI_PENDING,
        ..kvm_vcpu_events::default()
    };
    let p = &s.pending;
    if p.valid != 0 {
        match p.kind {
            PendingEvent::EXCEPTION => {
                k.exception.injected = 1;
                k.exception.nr = p.vector;
                k.exception.has_error_code = p.has_error_code;
                k.exception.error_code = p.error_code;
            }
            PendingEvent::NMI => k.nmi.injected = 1,
            _ => {
                k.interrupt.injected = 1;
                k.interrupt.nr = p.vector;
            }
        }
    }
    if s.interrupt_shadow != 0 {
        k.interrupt.shadow = if s.rflags & rflags::IF != 0 {
            KVM_X86_SHADOW_INT_STI
        } else {
            KVM_X86_SHADOW_INT_MOV_SS
        } as u8;
    }
    k.nmi.masked = s.nmi_blocked;
    k
}

/// Reads the events back; an external interrupt left in `kvm_sregs::interrupt_bitmap` (see
/// [`bitmap_interrupt`]) counts as pending when KVM reports nothing else.
pub fn events_from_kvm(k: &kvm_vcpu_events, bitmap_irq: Option<u8>, s: &mut CpuState) {
    let mut pending = Vec::with_capacity(1);
    if k.exception.injected != 0 || k.exception.pending != 0 {
        pending.push(PendingEvent {
            valid: 1,
            kind: PendingEvent::EXCEPTION,
            vector: k.exception.nr,
            has_error_code: k.exception.has_error_code,
            error_code: if k.exception.has_error_code != 0 {
                k.exception.error_code
            } else {
                0
            },
        });
    }
    if k.nmi.injected != 0 {
        pending.push(PendingEvent {
            valid: 1,
            kind: PendingEvent::NMI,
            vector: NMI_VECTOR,
            ..PendingEvent::default()
        });
    }
    let irq = (k.interrupt.injected != 0 && k.interrupt.soft == 0)
        .then_some(k.interrupt.nr)
        .or(bitmap_irq);
    if let Some(vector) = irq {
        pending.push(PendingEvent {
            valid: 1,
            kind: PendingEvent::EXTERNAL,
            vector,
            ..PendingEvent::default()
        });
    }
    if pending.len() > 1 {
        // The architecture delivers one event at a time; KVM should never hold two.
        log::warn!("KVM holds several pending events {pending:?}; keeping the first");
    }
    s.pending = pending.first().copied().unwrap_or_default();
    s.interrupt_shadow = u8::from(k.interrupt.shadow != 0);
    s.nmi_blocked = u8::from(k.nmi.masked != 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_through_kvm_fields() {
        let flat = Segment::from_descriptor(0x08, 0x0000_ffff, 0x00cf_9a00);
        let k = segment_to_kvm(&flat);
        assert_eq!((k.type_, k.s, k.dpl, k.present), (0xa, 1, 0, 1));
        assert_eq!((k.db, k.l, k.g, k.avl, k.unusable), (1, 0, 1, 0, 0));
        assert_eq!(k.limit, 0xffff_ffff);
        assert_eq!(segment_from_kvm(&k), flat);
        let null = Segment::default();
        assert_eq!(segment_to_kvm(&null).unusable, 1);
        assert_eq!(segment_from_kvm(&segment_to_kvm(&null)), null);
    }

    #[test]
    fn unusable_segment_reads_as_not_present() {
        let mut k = segment_to_kvm(&Segment::real_mode(0x1234));
        k.unusable = 1;
        assert!(!segment_from_kvm(&k).present());
    }

    #[test]
    fn general_registers_keep_encoding_order() {
        let mut s = CpuState::reset();
        for (i, r) in s.gpr.iter_mut().enumerate() {
            *r = 0x1111 * (i as u64 + 1);
        }
        let k = regs_to_kvm(&s);
        assert_eq!(
            (k.rcx, k.rsp, k.rdi, k.r15),
            (0x2222, 0x5555, 0x8888, 0x11110)
        );
        let mut back = CpuState::reset();
        regs_from_kvm(&k, &mut back);
        assert_eq!(back.gpr, s.gpr);
    }

    #[test]
    fn fx_area_round_trips_through_kvm_fpu() {
        let mut fx = FxArea::reset();
        fx.0[FxArea::ST0 + 3] = 0x42;
        fx.0[FxArea::XMM0 + 16 * 15 + 15] = 0x99;
        fx.0[FxArea::FIP..FxArea::FIP + 8].copy_from_slice(&0x0010_1234_5678u64.to_le_bytes());
        assert_eq!(fpu_from_kvm(&fpu_to_kvm(&fx)), fx);
    }

    #[test]
    fn fx_area_round_trips_through_xsave_and_init_components_read_as_init() {
        let mut fx = FxArea::reset();
        fx.0[FxArea::FCW] = 0x7f;
        fx.0[FxArea::ST0 + 9] = 0x40;
        fx.0[FxArea::XMM0 + 1] = 0x5a;
        let mut x = kvm_xsave::default();
        fpu_into_xsave(&fx, &mut x);
        assert_eq!(fpu_from_xsave(&x), fx);
        // Clear both XSTATE_BV bits: x87 and SSE read as initial, MXCSR stays.
        x.region[XSTATE_BV / 4] = 0;
        let init = fpu_from_xsave(&x);
        assert_eq!(init.u16_at(FxArea::FCW), FCW_INIT);
        assert_eq!(init.0[FxArea::ST0 + 9], 0);
        assert_eq!(init.0[FxArea::XMM0 + 1], 0);
        assert_eq!(init.u32_at(FxArea::MXCSR), fx.u32_at(FxArea::MXCSR));
    }

    #[test]
    fn interrupt_shadow_kind_follows_if() {
        let mut s = CpuState::reset();
        s.interrupt_shadow = 1;
        assert_eq!(
            u32::from(events_to_kvm(&s).interrupt.shadow),
            KVM_X86_SHADOW_INT_MOV_SS
        );
        s.rflags |= rflags::IF;
        assert_eq!(
            u32::from(events_to_kvm(&s).interrupt.shadow),
            KVM_X86_SHADOW_INT_STI
        );
    }

    #[test]
    fn pending_events_round_trip() {
        for p in [
            PendingEvent {
                valid: 1,
                kind: PendingEvent::EXCEPTION,
                vector: 13,
                has_error_code: 1,
                error_code: 0x18,
            },
            PendingEvent {
                valid: 1,
                kind: PendingEvent::EXTERNAL,
                vector: 0x20,
                ..PendingEvent::default()
            },
            PendingEvent {
                valid: 1,
                kind: PendingEvent::NMI,
                vector: NMI_VECTOR,
                ..PendingEvent::default()
            },
        ] {
            let mut s = CpuState::reset();
            s.pending = p;
            s.nmi_blocked = 1;
            let mut back = CpuState::reset();
            events_from_kvm(&events_to_kvm(&s), None, &mut back);
            assert_eq!((back.pending, back.nmi_blocked), (p, 1));
        }
    }

    #[test]
    fn interrupt_bitmap_names_the_vector() {
        let mut k = kvm_sregs::default();
        assert_eq!(bitmap_interrupt(&k), None);
        k.interrupt_bitmap[1] = 1 << 5;
        assert_eq!(bitmap_interrupt(&k), Some(69));
    }
}
