//! Tests that need a real `/dev/kvm`: each one prints why and passes when KVM is unavailable.

use std::time::{Duration, Instant};

use devices::{DebugCon, DebugExit, PlatformRequest, SharedBuffer};
use vcpu::state::{cr0, efer, gpr, rflags};
use vcpu::{
    Buses, CpuState, DescriptorTable, FxArea, GuestRam, PendingEvent, RegionKind, RegionSpec,
    Segment, SegmentIndex, Vcpu, VcpuError, VmExit,
};

use super::syscall_check::{self, Verdict};
use super::{convert, kvm_available, KvmVcpu};

/// CR4 bits the random states use (SDM Vol. 3A 2.5, Figure 2-7).
mod cr4_bits {
    pub const VME: u64 = 1 << 0;
    pub const PVI: u64 = 1 << 1;
    pub const TSD: u64 = 1 << 2;
    pub const DE: u64 = 1 << 3;
    pub const PSE: u64 = 1 << 4;
    pub const PAE: u64 = 1 << 5;
    pub const PGE: u64 = 1 << 7;
    pub const PCE: u64 = 1 << 8;
    pub const OSFXSR: u64 = 1 << 9;
    pub const OSXMMEXCPT: u64 = 1 << 10;
    pub const OSXSAVE: u64 = 1 << 18;
}

/// Whether KVM can run here; prints the reason when not.
fn kvm_or_skip(test: &str) -> bool {
    match kvm_available() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipping {test}: {e}");
            false
        }
    }
}

/// Where test code sits (real mode, CS = 0).
const CODE: u64 = 0x1000;
/// A ROM page for the write-protection test.
const ROM_BASE: u64 = 0xf0000;

struct Guest {
    vcpu: KvmVcpu,
    buses: Buses,
    out: SharedBuffer,
    ram: GuestRam,
}

/// A real-mode guest running `code` at 0:1000, with 64 KiB of RAM, a 64 KiB ROM at 0xf0000,
/// and the debug console and debug exit ports.
fn real_mode_guest(code: &[u8], tweak: impl FnOnce(&mut CpuState)) -> Guest {
    guest_with_rom(code, &[], tweak)
}

/// As [`real_mode_guest`], with `rom` loaded at the start of the ROM before the vCPU exists (as
/// a machine's firmware loader does).
fn guest_with_rom(code: &[u8], rom: &[u8], tweak: impl FnOnce(&mut CpuState)) -> Guest {
    let ram = GuestRam::new(&[
        RegionSpec {
            base: 0,
            size: 0x10000,
            kind: RegionKind::Ram,
        },
        RegionSpec {
            base: ROM_BASE,
            size: 0x10000,
            kind: RegionKind::Rom,
        },
    ])
    .unwrap();
    ram.write_host(CODE, code).unwrap();
    ram.write_host(ROM_BASE, rom).unwrap();
    let mut s = CpuState::reset();
    s.seg[SegmentIndex::Cs as usize] = Segment {
        attr: Segment::ATTR_P | Segment::ATTR_S | 0xb,
        ..Segment::real_mode(0)
    };
    s.rip = CODE;
    tweak(&mut s);
    let vcpu = KvmVcpu::new(&ram, &s).unwrap();
    let out = SharedBuffer::new();
    let mut buses = Buses::new();
    buses
        .io
        .insert(
            u64::from(devices::debug::DEBUGCON_PORT),
            1,
            Box::new(DebugCon::new(Box::new(out.clone()))),
        )
        .unwrap();
    let req = buses.requests();
    buses
        .io
        .insert(
            u64::from(devices::debug::DEBUG_EXIT_PORT),
            devices::debug::DEBUG_EXIT_LEN,
            Box::new(DebugExit::new(req)),
        )
        .unwrap();
    Guest {
        vcpu,
        buses,
        out,
        ram,
    }
}

#[test]
fn guest_prints_and_exits_through_the_debug_ports() {
    if !kvm_or_skip("guest_prints_and_exits_through_the_debug_ports") {
        return;
    }
    // mov al,'K'; out 0xe9,al; mov al,0x10; out 0xf4,al; hlt
    let code = [0xb0, b'K', 0xe6, 0xe9, 0xb0, 0x10, 0xe6, 0xf4, 0xf4];
    let mut g = real_mode_guest(&code, |_| {});
    assert_eq!(g.vcpu.backend_name(), "kvm");
    assert_eq!(g.vcpu.run(&mut g.buses).unwrap(), VmExit::DeviceRequest);
    assert_eq!(g.out.contents(), b"K");
    assert_eq!(
        g.buses.take_request(),
        Some(PlatformRequest::DebugExit { value: 0x10 })
    );
    // The OUT is complete: RIP is past it, as under the JIT.
    assert_eq!(g.vcpu.state().unwrap().rip, CODE + 8);
    assert_eq!(
        g.vcpu.run(&mut g.buses).unwrap(),
        VmExit::Halted {
            interrupts_enabled: false
        }
    );
}

#[test]
fn in_and_string_out_reach_the_devices() {
    if !kvm_or_skip("in_and_string_out_reach_the_devices") {
        return;
    }
    // in al,0xe9; mov bl,al; mov si,0x1100; mov cx,2; mov dx,0xe9; rep outsb; hlt
    let code = [
        0xe4, 0xe9, 0x88, 0xc3, 0xbe, 0x00, 0x11, 0xb9, 0x02, 0x00, 0xba, 0xe9, 0x00, 0xf3, 0x6e,
        0xf4,
    ];
    let mut g = real_mode_guest(&code, |_| {});
    g.ram.write_host(0x1100, b"hi").unwrap();
    assert_eq!(
        g.vcpu.run(&mut g.buses).unwrap(),
        VmExit::Halted {
            interrupts_enabled: false
        }
    );
    assert_eq!(g.out.contents(), b"hi");
    let s = g.vcpu.state().unwrap();
    assert_eq!(s.gpr[gpr::RBX] & 0xff, 0xe9);
    assert_eq!(s.rip, CODE + code.len() as u64);
    assert_eq!(s.halted, 1);
    // Nothing can wake it: it stays halted.
    assert!(matches!(
        g.vcpu.run(&mut g.buses).unwrap(),
        VmExit::Halted { .. }
    ));
}

#[test]
fn rom_writes_never_reach_the_shared_memory() {
    if !kvm_or_skip("rom_writes_never_reach_the_shared_memory") {
        return;
    }
    // mov ax,0xf000; mov ds,ax; mov byte [0],0x55; mov al,[0]; out 0xe9,al; hlt
    let code = [
        0xb8, 0x00, 0xf0, 0x8e, 0xd8, 0xc6, 0x06, 0x00, 0x00, 0x55, 0xa0, 0x00, 0x00, 0xe6, 0xe9,
        0xf4,
    ];
    let mut g = guest_with_rom(&code, b"R", |_| {});
    assert!(matches!(
        g.vcpu.run(&mut g.buses).unwrap(),
        VmExit::Halted { .. }
    ));
    // Under KVM the guest reads its own write back from KVM's private ROM copy (see vm.rs)...
    assert_eq!(g.out.contents(), [0x55]);
    // ...but the shared image the JIT and snapshots see is untouched.
    let mut b = [0u8];
    g.ram.read(ROM_BASE, &mut b).unwrap();
    assert_eq!(b, *b"R");
}

#[test]
fn protected_mode_entry_with_a_gdt_in_rom() {
    if !kvm_or_skip("protected_mode_entry_with_a_gdt_in_rom") {
        return;
    }
    // Descriptors without the accessed bit: loading them makes the CPU set it, in ROM.
    let gdt_base = ROM_BASE + 0x100;
    let gdt: [u64; 3] = [0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
    // lgdt [0x1f00]; mov eax,cr0; or al,1; mov cr0,eax; jmp dword 0x08:0x1020
    let mut code = vec![
        0x0f, 0x01, 0x16, 0x00, 0x1f, 0x0f, 0x20, 0xc0, 0x0c, 0x01, 0x0f, 0x22, 0xc0, 0x66, 0xea,
        0x20, 0x10, 0x00, 0x00, 0x08, 0x00,
    ];
    code.resize(0x20, 0x90);
    // (32-bit) mov al,'P'; out 0xe9,al; hlt
    code.extend_from_slice(&[0xb0, b'P', 0xe6, 0xe9, 0xf4]);
    let mut rom = vec![0u8; 0x100];
    for d in gdt {
        rom.extend_from_slice(&d.to_le_bytes());
    }
    let mut g = guest_with_rom(&code, &rom, |_| {});
    let mut pseudo = 23u16.to_le_bytes().to_vec();
    pseudo.extend_from_slice(&(gdt_base as u32).to_le_bytes());
    g.ram.write_host(0x1f00, &pseudo).unwrap();
    // A hang here would be KVM re-executing the far jmp forever; the kick ends it.
    let kicker = g.vcpu.kicker();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(5));
        kicker.kick();
    });
    assert!(
        matches!(g.vcpu.run(&mut g.buses).unwrap(), VmExit::Halted { .. }),
        "the far jmp into protected mode never completed"
    );
    assert_eq!(g.out.contents(), b"P");
    let cs = g.vcpu.state().unwrap().seg[SegmentIndex::Cs as usize];
    assert_eq!((cs.selector, cs.db()), (0x08, true));
}

/// 32-bit protected mode with flat 4 GiB ring-0 code and data segments and an empty IDT, so
/// any exception ends in a triple fault.
fn flat32(s: &mut CpuState) {
    s.cr0 |= cr0::PE;
    s.seg[SegmentIndex::Cs as usize] = Segment::from_descriptor(0x08, 0x0000_ffff, 0x00cf_9b00);
    for i in [
        SegmentIndex::Es,
        SegmentIndex::Ss,
        SegmentIndex::Ds,
        SegmentIndex::Fs,
        SegmentIndex::Gs,
    ] {
        s.seg[i as usize] = Segment::from_descriptor(0x10, 0x0000_ffff, 0x00cf_9300);
    }
    s.idtr = DescriptorTable { base: 0, limit: 0 };
}

#[test]
fn triple_fault_is_reported_with_rip() {
    if !kvm_or_skip("triple_fault_is_reported_with_rip") {
        return;
    }
    // ud2 with an empty IDT: #UD cannot be delivered -> #GP -> #DF -> shutdown.
    let mut g = real_mode_guest(&[0x0f, 0x0b], flat32);
    match g.vcpu.run(&mut g.buses).unwrap() {
        VmExit::TripleFault { rip } => assert_eq!(rip, CODE),
        other => panic!("expected a triple fault, got {other:?}"),
    }
}

#[test]
fn code_fetch_from_unbacked_memory_fails_with_rip() {
    if !kvm_or_skip("code_fetch_from_unbacked_memory_fails_with_rip") {
        return;
    }
    // jmp 0xe000:0x0010 -- nothing backs 0xe0010, KVM cannot fetch from MMIO.
    let mut g = real_mode_guest(&[0xea, 0x10, 0x00, 0x00, 0xe0], |_| {});
    let err = g.vcpu.run(&mut g.buses).unwrap_err();
    let VcpuError::EmulationFailure { rip, bytes, reason } = &err else {
        panic!("expected an emulation failure, got {err}");
    };
    assert_eq!(*rip, 0x10);
    assert!(bytes.is_empty(), "{bytes:x?}");
    assert!(reason.contains("KVM_EXIT_INTERNAL_ERROR"), "{reason}");
    assert!(err.to_string().contains("rip 0x10 "), "{err}");
}

#[test]
fn unemulated_instruction_names_rip_and_bytes() {
    if !kvm_or_skip("unemulated_instruction_names_rip_and_bytes") {
        return;
    }
    // popcnt eax, ecx; hlt. Hardware KVM runs it; the software-emulated KVM of our build
    // hosts has no emulation for it and must end the run with a message, not a panic.
    let code = [0xf3, 0x0f, 0xb8, 0xc1, 0xf4];
    let mut g = real_mode_guest(&code, flat32);
    match g.vcpu.run(&mut g.buses) {
        Ok(VmExit::Halted { .. }) => {
            eprintln!("this KVM runs popcnt in hardware: no emulation failure to observe");
            assert_eq!(g.vcpu.state().unwrap().rip, CODE + code.len() as u64);
        }
        Err(err @ VcpuError::EmulationFailure { .. }) => {
            let text = err.to_string();
            let VcpuError::EmulationFailure { rip, bytes, .. } = err else {
                unreachable!()
            };
            assert_eq!(rip, CODE);
            assert_eq!(bytes[..code.len()], code);
            assert!(
                text.contains("rip 0x1000") && text.contains("f3, 0f, b8"),
                "{text}"
            );
        }
        other => panic!("expected a halt or an emulation failure, got {other:?}"),
    }
}

#[test]
fn ud2_raises_ud_in_the_guest() {
    if !kvm_or_skip("ud2_raises_ud_in_the_guest") {
        return;
    }
    // ud2 at 0:1000; the #UD handler at 0:1100 prints 'U' and halts.
    let mut code = vec![0x0f, 0x0b];
    code.resize(0x100, 0x90);
    code.extend_from_slice(&[0xb0, b'U', 0xe6, 0xe9, 0xf4]);
    let mut g = real_mode_guest(&code, |_| {});
    // IVT entry 6 (SDM Vol. 3A 20.1.4): offset 0x1100, segment 0.
    g.ram.write_host(6 * 4, &[0x00, 0x11, 0x00, 0x00]).unwrap();
    assert!(matches!(
        g.vcpu.run(&mut g.buses).unwrap(),
        VmExit::Halted { .. }
    ));
    assert_eq!(g.out.contents(), b"U");
    let s = g.vcpu.state().unwrap();
    // The handler's frame holds the faulting IP (a fault: it points at the ud2).
    let mut ip = [0u8; 2];
    g.ram
        .read(
            s.seg[SegmentIndex::Ss as usize].base + (s.gpr[gpr::RSP] & 0xffff),
            &mut ip,
        )
        .unwrap();
    assert_eq!(u16::from_le_bytes(ip), CODE as u16);
}

#[test]
fn the_syscall_probe_reaches_a_verdict() {
    if !kvm_or_skip("the_syscall_probe_reaches_a_verdict") {
        return;
    }
    // The probe guest either enters ring 0 at LSTAR or stays in ring 3 there; anything else
    // (a triple fault, another exit) means the probe guest itself is wrong.
    assert_ne!(syscall_check::verdict(), Verdict::Unknown);
}

#[test]
fn setting_lstar_ends_the_run_where_syscall_is_broken() {
    if !kvm_or_skip("setting_lstar_ends_the_run_where_syscall_is_broken") {
        return;
    }
    // mov ecx, IA32_LSTAR; mov eax, 0x1234; xor edx, edx; wrmsr; hlt
    let code = [
        0x66, 0xb9, 0x82, 0x00, 0x00, 0xc0, 0x66, 0xb8, 0x34, 0x12, 0x00, 0x00, 0x66, 0x31, 0xd2,
        0x0f, 0x30, 0xf4,
    ];
    let hlt = CODE + code.len() as u64 - 1;
    let mut g = real_mode_guest(&code, |_| {});
    let result = g.vcpu.run(&mut g.buses);
    let s = g.vcpu.state().unwrap();
    // The WRMSR is complete either way.
    assert_eq!(s.lstar, 0x1234);
    match syscall_check::verdict() {
        Verdict::Broken => {
            match result {
                Err(VcpuError::Unsupported { rip, what }) => {
                    // The error names the WRMSR; the state is past it.
                    assert_eq!(rip, hlt - 2);
                    assert!(what.contains("LSTAR = 0x1234"), "{what}");
                }
                other => panic!("expected the run to end at the WRMSR, got {other:?}"),
            }
            assert_eq!(s.rip, hlt);
        }
        _ => {
            assert!(matches!(result, Ok(VmExit::Halted { .. })), "{result:?}");
            assert_eq!(s.rip, hlt + 1);
        }
    }
}

#[test]
fn a_state_with_lstar_set_ends_the_run_at_once_where_syscall_is_broken() {
    if !kvm_or_skip("a_state_with_lstar_set_ends_the_run_at_once_where_syscall_is_broken") {
        return;
    }
    // mov al, 'k'; out 0xe9, al; hlt
    let mut g = real_mode_guest(&[0xb0, b'k', 0xe6, 0xe9, 0xf4], |s| s.lstar = 0x5678);
    let result = g.vcpu.run(&mut g.buses);
    match syscall_check::verdict() {
        Verdict::Broken => {
            assert!(
                matches!(result, Err(VcpuError::Unsupported { rip: CODE, .. })),
                "{result:?}"
            );
            // Nothing ran.
            assert_eq!(g.out.contents(), b"");
            assert_eq!(g.vcpu.state().unwrap().rip, CODE);
        }
        _ => {
            assert!(matches!(result, Ok(VmExit::Halted { .. })), "{result:?}");
            assert_eq!(g.out.contents(), b"k");
        }
    }
}

#[test]
fn a_stopped_guest_continues_on_a_new_vcpu_from_its_state() {
    if !kvm_or_skip("a_stopped_guest_continues_on_a_new_vcpu_from_its_state") {
        return;
    }
    // mov ecx,0x12345678; mov al,'A'; out 0xe9,al; out 0xf4,al; inc ecx; mov al,'B';
    // out 0xe9,al; hlt
    let code = [
        0x66, 0xb9, 0x78, 0x56, 0x34, 0x12, 0xb0, b'A', 0xe6, 0xe9, 0xe6, 0xf4, 0x66, 0x41, 0xb0,
        b'B', 0xe6, 0xe9, 0xf4,
    ];
    let mut g = real_mode_guest(&code, |_| {});
    assert_eq!(g.vcpu.run(&mut g.buses).unwrap(), VmExit::DeviceRequest);
    g.buses.take_request();
    let mid = g.vcpu.state().unwrap();
    assert_eq!(mid.rip, CODE + 12);
    // A second vCPU (its own VM) over the same memory picks up where the first stopped.
    let mut second = KvmVcpu::new(&g.ram, &mid).unwrap();
    assert!(matches!(
        second.run(&mut g.buses).unwrap(),
        VmExit::Halted { .. }
    ));
    assert_eq!(g.out.contents(), b"AB");
    let end = second.state().unwrap();
    assert_eq!(end.gpr[gpr::RCX], 0x1234_5679);
    assert_eq!(end.rip, CODE + code.len() as u64);
}

#[test]
fn a_kick_stops_a_spinning_guest() {
    if !kvm_or_skip("a_kick_stops_a_spinning_guest") {
        return;
    }
    // jmp $
    let mut g = real_mode_guest(&[0xeb, 0xfe], |_| {});
    let kicker = g.vcpu.kicker();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        kicker.kick();
    });
    let start = Instant::now();
    assert_eq!(g.vcpu.run(&mut g.buses).unwrap(), VmExit::Kicked);
    assert!(start.elapsed() < Duration::from_secs(5));
    t.join().unwrap();
    assert_eq!(g.vcpu.state().unwrap().rip, CODE);
}

/// splitmix64: a small seeded generator, so a failing state can be reproduced from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 != 0
    }
    /// Each bit of `mask` set with probability 1/2.
    fn bits(&mut self, mask: u64) -> u64 {
        self.next() & mask
    }
    /// A canonical 48-bit linear address (SDM Vol. 1 3.3.7.1).
    fn canonical(&mut self) -> u64 {
        (((self.next() << 16) as i64) >> 16) as u64
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Real,
    Protected32,
    Long64,
}

/// A code, data or system segment with random base, limit and selector, valid for `mode`.
fn random_segment(rng: &mut Rng, typ: u16, s_bit: bool, extra: u16, mode: Mode) -> Segment {
    let g = rng.coin();
    let limit = if g {
        ((rng.below(1 << 20) as u32) << 12) | 0xfff
    } else {
        rng.below(1 << 20) as u32
    };
    let base = match mode {
        Mode::Long64 => rng.canonical(),
        _ => rng.below(1 << 32),
    };
    Segment {
        base,
        limit,
        selector: rng.next() as u16 & !3,
        attr: typ
            | if s_bit { Segment::ATTR_S } else { 0 }
            | Segment::ATTR_P
            | if g { Segment::ATTR_G } else { 0 }
            | ((rng.bits(1) as u16) * Segment::ATTR_AVL)
            | extra,
    }
}

/// An architecturally valid random state. Where KVM (or the CPU) legitimately normalises a
/// value, the generator produces the normal form:
/// - CR0.ET is hardwired to 1 (SDM Vol. 3A 2.5);
/// - a segment that is not present carries no other attribute bits (KVM, like VMX, keeps only
///   "unusable" for it);
/// - reserved FXSAVE bytes (byte 5, the upper 6 bytes of each ST slot, bytes 416..512) are zero
///   and MXCSR_MASK is the model constant `convert::MXCSR_MASK`;
/// - DR6 and DR7 have their fixed bits (0xffff0ff0 and 0x400, SDM Vol. 3B 18.2.3-4);
/// - no pending #BP or #OF: KVM treats them as software exceptions whose INT3/INTO re-executes,
///   not as events, and does not report them;
/// - addresses that must be canonical are; PAT entries are valid memory types (SDM Vol. 3A 12.12.2).
fn random_state(rng: &mut Rng, caps: &Caps) -> CpuState {
    let mode = rng.pick(&[Mode::Real, Mode::Protected32, Mode::Long64]);
    let mut s = CpuState::reset();
    for r in s.gpr.iter_mut() {
        *r = rng.next();
    }
    s.rflags = rflags::FIXED1
        | rng.bits(
            rflags::STATUS
                | rflags::TF
                | rflags::IF
                | rflags::DF
                | rflags::IOPL
                | rflags::NT
                | rflags::AC
                | rflags::ID,
        );
    match mode {
        Mode::Real => {
            s.rip = rng.below(1 << 16);
            for i in 0..6 {
                s.seg[i] = Segment::real_mode(rng.next() as u16);
            }
            s.seg[SegmentIndex::Cs as usize].attr |= 0x8 | Segment::ATTR_ACCESSED;
            s.cr0 = cr0::ET | rng.bits(cr0::MP | cr0::TS | cr0::NE | cr0::WP | cr0::AM);
            s.efer = rng.bits(efer::SCE | efer::NXE);
        }
        Mode::Protected32 | Mode::Long64 => {
            let long = mode == Mode::Long64;
            s.rip = if long {
                rng.canonical()
            } else {
                rng.below(1 << 32)
            };
            let cs_extra = if long {
                Segment::ATTR_L
            } else {
                Segment::ATTR_DB
            };
            s.seg[SegmentIndex::Cs as usize] = random_segment(rng, 0xb, true, cs_extra, mode);
            s.seg[SegmentIndex::Ss as usize] =
                random_segment(rng, 0x3, true, Segment::ATTR_DB, mode);
            for i in [
                SegmentIndex::Es,
                SegmentIndex::Ds,
                SegmentIndex::Fs,
                SegmentIndex::Gs,
            ] {
                s.seg[i as usize] = if rng.below(4) == 0 {
                    // A null selector: unusable, nothing but the selector's RPL.
                    Segment {
                        selector: rng.below(4) as u16,
                        ..Segment::default()
                    }
                } else {
                    let typ = rng.pick(&[0x1, 0x3, 0x5, 0x7, 0xb, 0xf]);
                    random_segment(rng, typ, true, Segment::ATTR_DB, mode)
                };
            }
            s.cr0 = cr0::ET
                | cr0::PE
                | rng.bits(cr0::MP | cr0::TS | cr0::NE | cr0::WP | cr0::AM)
                | if long || (caps.legacy_paging && rng.coin()) {
                    cr0::PG
                } else {
                    0
                };
            s.efer = rng.bits(efer::SCE | efer::NXE) | if long { efer::LME | efer::LMA } else { 0 };
        }
    }
    let mut tr = random_segment(rng, 0xb, false, 0, mode);
    tr.limit &= 0xffff;
    tr.attr &= !Segment::ATTR_G;
    s.tr = tr;
    s.ldtr = if rng.coin() {
        let mut l = random_segment(rng, 0x2, false, 0, mode);
        l.limit &= 0xffff;
        l.attr &= !Segment::ATTR_G;
        l
    } else {
        Segment::default()
    };
    let table_base = |rng: &mut Rng| {
        if mode == Mode::Long64 {
            rng.canonical()
        } else {
            rng.below(1 << 32)
        }
    };
    s.gdtr = DescriptorTable {
        base: table_base(rng),
        limit: rng.next() as u16,
    };
    s.idtr = DescriptorTable {
        base: table_base(rng),
        limit: rng.next() as u16,
    };
    s.cr2 = rng.canonical();
    // Page aligned below 4 GiB, with PWT/PCD (bits 3-4).
    s.cr3 = rng.bits(0xffff_f018);
    let xsave = caps.max_xcr0 > 1;
    s.cr4 = rng.bits(
        cr4_bits::VME
            | cr4_bits::PVI
            | cr4_bits::TSD
            | cr4_bits::DE
            | cr4_bits::PSE
            | cr4_bits::PGE
            | cr4_bits::PCE
            | cr4_bits::OSFXSR
            | cr4_bits::OSXMMEXCPT
            | if xsave { cr4_bits::OSXSAVE } else { 0 },
    ) | if mode == Mode::Long64 {
        cr4_bits::PAE
    } else {
        0
    };
    s.cr8 = rng.below(16);
    s.dr = [
        rng.canonical(),
        rng.canonical(),
        rng.canonical(),
        rng.canonical(),
        0xffff_0ff0 | rng.bits(0xf | 1 << 13 | 1 << 14 | 1 << 15),
        // L0-G3, LE, GE; R/W fields 01 or 11 (no I/O breakpoints), any LEN.
        0x400 | rng.bits(0x3ff) | rng.bits(0xffff_0000) | 0x1111_0000,
    ];
    s.xcr0 = rng.pick(&[1, 3, 7]).min(caps.max_xcr0);
    s.star = rng.next();
    s.lstar = rng.canonical();
    s.cstar = rng.canonical();
    s.sfmask = rng.below(1 << 32);
    s.kernel_gs_base = rng.canonical();
    s.sysenter_cs = rng.below(1 << 16);
    s.sysenter_esp = rng.canonical();
    s.sysenter_eip = rng.canonical();
    s.pat = (0..8).fold(0, |pat, i| {
        pat | rng.pick(&[0u64, 1, 4, 5, 6, 7]) << (8 * i)
    });
    s.tsc = rng.below(1 << 50);
    s.tsc_aux = rng.below(1 << 32);
    s.tsc_adjust = rng.below(1 << 40);
    s.misc_enable = rng.below(2);
    s.apic_base = 0xfee0_0000 | 0x100 | 0x800;
    let mut fx = [0u8; 512];
    for b in fx[..24].iter_mut() {
        *b = rng.next() as u8;
    }
    fx[5] = 0;
    fx[FxArea::FOP + 1] &= 0x7;
    fx[FxArea::MXCSR..FxArea::MXCSR + 4]
        .copy_from_slice(&(rng.next() as u32 & 0xffff).to_le_bytes());
    fx[FxArea::MXCSR_MASK..FxArea::MXCSR_MASK + 4]
        .copy_from_slice(&convert::MXCSR_MASK.to_le_bytes());
    for i in 0..8 {
        for b in fx[FxArea::ST0 + 16 * i..FxArea::ST0 + 16 * i + 10].iter_mut() {
            *b = rng.next() as u8;
        }
    }
    for b in fx[FxArea::XMM0..FxArea::XMM0 + 256].iter_mut() {
        *b = rng.next() as u8;
    }
    s.fx = FxArea(fx);
    s.pending = match rng.below(4) {
        0 => PendingEvent::default(),
        1 => {
            let vector = rng.pick(&[0u8, 1, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19]);
            let has_error_code = u8::from(mode != Mode::Real && matches!(vector, 8 | 10..=14 | 17));
            PendingEvent {
                valid: 1,
                kind: PendingEvent::EXCEPTION,
                vector,
                has_error_code,
                error_code: if has_error_code != 0 {
                    rng.below(1 << 16) as u32
                } else {
                    0
                },
            }
        }
        2 => PendingEvent {
            valid: 1,
            kind: PendingEvent::EXTERNAL,
            vector: 32 + rng.below(224) as u8,
            ..PendingEvent::default()
        },
        _ => PendingEvent {
            valid: 1,
            kind: PendingEvent::NMI,
            vector: 2,
            ..PendingEvent::default()
        },
    };
    s.interrupt_shadow = rng.coin().into();
    s.nmi_blocked = rng.coin().into();
    s.halted = rng.coin().into();
    s
}

/// The fields of two states that differ, by name.
fn differences(want: &CpuState, got: &CpuState) -> Vec<String> {
    let mut d = Vec::new();
    macro_rules! cmp {
        ($($f:ident),*) => {$(
            if want.$f != got.$f {
                d.push(format!("{}: want {:x?}, got {:x?}", stringify!($f), want.$f, got.$f));
            }
        )*};
    }
    cmp!(
        gpr,
        rip,
        rflags,
        seg,
        ldtr,
        tr,
        gdtr,
        idtr,
        cr0,
        cr2,
        cr3,
        cr4,
        cr8,
        dr,
        efer,
        xcr0,
        star,
        lstar,
        cstar,
        sfmask,
        kernel_gs_base,
        sysenter_cs,
        sysenter_esp,
        sysenter_eip,
        pat,
        tsc,
        tsc_aux,
        tsc_adjust,
        apic_base,
        misc_enable,
        pending,
        halted,
        interrupt_shadow,
        nmi_blocked,
        _reserved
    );
    for (i, (a, b)) in want.fx.0.iter().zip(got.fx.0.iter()).enumerate() {
        if a != b {
            d.push(format!("fx byte {i}: want {a:#04x}, got {b:#04x}"));
        }
    }
    d
}

/// What the KVM under test can hold, probed on a vCPU.
struct Caps {
    /// The largest XCR0 to use: x87|SSE|AVX when KVM carries XCR0 and offers AVX.
    max_xcr0: u64,
    /// Whether CR0.PG survives outside long mode. The software-emulated KVM of our build hosts
    /// drops it (and a guest that sets it there triple-faults): it only pages in long mode.
    legacy_paging: bool,
}

fn probe_caps(v: &mut KvmVcpu) -> Caps {
    let mut s = v.state().unwrap();
    let mut max_xcr0 = 1;
    for candidate in [7, 3] {
        s.xcr0 = candidate;
        s.cr4 |= cr4_bits::OSXSAVE;
        if v.set_state(&s).is_ok() {
            max_xcr0 = candidate;
            break;
        }
    }
    let mut paged = CpuState::reset();
    flat32(&mut paged);
    paged.cr0 |= cr0::PG;
    paged.cr4 |= cr4_bits::PSE;
    v.set_state(&paged).unwrap();
    let legacy_paging = v.state().unwrap().cr0 & cr0::PG != 0;
    if !legacy_paging {
        eprintln!("this KVM drops CR0.PG outside long mode: 32-bit states are generated unpaged");
    }
    Caps {
        max_xcr0,
        legacy_paging,
    }
}

/// How far the TSC may count between a write and the read that follows: 2^36 cycles is over
/// 10 s at any clock rate in use.
const TSC_DRIFT_LIMIT: u64 = 1 << 36;

#[test]
fn random_states_round_trip_through_a_real_vcpu() {
    if !kvm_or_skip("random_states_round_trip_through_a_real_vcpu") {
        return;
    }
    let ram = GuestRam::new(&[RegionSpec {
        base: 0,
        size: 0x10000,
        kind: RegionKind::Ram,
    }])
    .unwrap();
    let mut v = KvmVcpu::new(&ram, &CpuState::reset()).unwrap();
    // The reset state itself survives.
    let reset = CpuState::reset();
    let mut got = v.state().unwrap();
    got.tsc = reset.tsc;
    assert_eq!(differences(&reset, &got), Vec::<String>::new());
    if !v.tsc_is_settable() {
        eprintln!("this KVM ignores TSC writes (the guest sees the host TSC): TSC not compared");
    }
    let caps = probe_caps(&mut v);
    for seed in 0..300u64 {
        let mut rng = Rng(seed);
        let want = random_state(&mut rng, &caps);
        if let Err(e) = v.set_state(&want) {
            panic!("seed {seed}: set_state refused {want:#x?}: {e}");
        }
        let mut got = v.state().unwrap();
        // The TSC keeps counting in real time between the write and the read; nothing else
        // may move.
        if v.tsc_is_settable() {
            let drift = got.tsc.wrapping_sub(want.tsc);
            assert!(
                drift < TSC_DRIFT_LIMIT,
                "seed {seed}: TSC moved by {drift:#x}"
            );
        }
        got.tsc = want.tsc;
        let d = differences(&want, &got);
        assert!(
            d.is_empty(),
            "seed {seed}: {}\n(cr0 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x} mode {:?})",
            d.join("\n"),
            want.cr0,
            want.cr3,
            want.cr4,
            want.efer,
            want.mode()
        );
    }
}
