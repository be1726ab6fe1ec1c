//! Differential testing of the JIT against KVM: seeded random straight-line 32-bit code runs on
//! both backends from the same random state, and the final registers, flags and stack must be
//! identical. Where `/dev/kvm` cannot be used the test prints the reason and passes.
//!
//! The instruction mix keeps every flag defined (SDM Vol. 2 "Flags Affected"): ADD, ADC, SUB,
//! SBB, CMP, NEG, INC and DEC set all the flags they touch; MOV, LEA, XCHG, MOVZX, MOVSX, BSWAP,
//! NOT, SETcc, CMOVcc, PUSH and POP touch none. Logic ops (AF undefined), shifts, multiplies and
//! divides leave flags undefined and are not used: KVM computes undefined flags as the host CPU
//! does, the JIT as QEMU does, and both are right.

use emu::machine::{create_vcpu, Accel, MachineError};
use vcpu::state::{cr0, gpr, rflags};
use vcpu::{
    Buses, CpuState, GuestRam, RegionKind, RegionSpec, Segment, SegmentIndex, VcpuError, VmExit,
};

/// Where the generated code starts.
const CODE: u64 = 0x1000;
/// The initial stack pointer; the code pushes and pops at most a few hundred bytes around it.
const STACK_TOP: u64 = 0x8000;
/// Guest RAM: code, stack, nothing else.
const RAM_BYTES: u64 = 0x10000;
/// Instructions per program and programs per run.
const PROGRAM_LEN: usize = 40;
const PROGRAMS: u64 = 200;

/// splitmix64, so a failing program can be rebuilt from its seed.
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
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    /// A register that may be written: anything but ESP (encoding 4).
    fn dst(&mut self) -> u8 {
        [0u8, 1, 2, 3, 5, 6, 7][self.below(7) as usize]
    }
    fn reg(&mut self) -> u8 {
        self.below(8) as u8
    }
}

/// ModRM for a register-direct operand pair (SDM Vol. 2A 2.1.5, Table 2-2).
fn modrm_rr(reg: u8, rm: u8) -> u8 {
    0xc0 | (reg << 3) | rm
}

/// One random instruction from the flag-defined mix, appended to `code`.
fn instruction(rng: &mut Rng, code: &mut Vec<u8>) {
    // ADD, ADC, SBB, SUB, CMP as opcode bases and as /digit of group 1 (SDM Vol. 2A 3.2).
    const ALU: [(u8, u8); 5] = [(0x00, 0), (0x10, 2), (0x18, 3), (0x28, 5), (0x38, 7)];
    let (base, digit) = ALU[rng.below(5) as usize];
    match rng.below(17) {
        // op r/m32, r32
        0 => code.extend_from_slice(&[base | 1, modrm_rr(rng.reg(), rng.dst())]),
        // op r/m8, r8 (byte registers AL..BH; none of them is ESP)
        1 => code.extend_from_slice(&[base, modrm_rr(rng.reg(), rng.reg())]),
        // op r/m16, r16
        2 => code.extend_from_slice(&[0x66, base | 1, modrm_rr(rng.reg(), rng.dst())]),
        // op r/m32, imm32
        3 => {
            code.extend_from_slice(&[0x81, modrm_rr(digit, rng.dst())]);
            code.extend_from_slice(&(rng.next() as u32).to_le_bytes());
        }
        // op r/m32, imm8 (sign-extended)
        4 => code.extend_from_slice(&[0x83, modrm_rr(digit, rng.dst()), rng.byte()]),
        // inc r32 / dec r32
        5 => code.push(if rng.below(2) == 0 { 0x40 } else { 0x48 } | rng.dst()),
        // neg r/m32 / not r/m32
        6 => code.extend_from_slice(&[0xf7, modrm_rr(2 + rng.below(2) as u8, rng.dst())]),
        // mov r32, imm32
        7 => {
            code.push(0xb8 | rng.dst());
            code.extend_from_slice(&(rng.next() as u32).to_le_bytes());
        }
        // mov r/m32, r32
        8 => code.extend_from_slice(&[0x89, modrm_rr(rng.reg(), rng.dst())]),
        // lea r32, [base + index*scale + disp8]
        9 => {
            let index = rng.dst();
            let sib = ((rng.below(4) as u8) << 6) | (index << 3) | rng.dst();
            code.extend_from_slice(&[0x8d, 0x44 | (rng.dst() << 3), sib, rng.byte()]);
        }
        // xchg r32, r32
        10 => code.extend_from_slice(&[0x87, modrm_rr(rng.dst(), rng.dst())]),
        // movzx / movsx r32, r/m8
        11 => {
            let op = if rng.below(2) == 0 { 0xb6 } else { 0xbe };
            code.extend_from_slice(&[0x0f, op, modrm_rr(rng.dst(), rng.reg())]);
        }
        // bswap r32
        12 => code.extend_from_slice(&[0x0f, 0xc8 | rng.dst()]),
        // setcc r/m8
        13 => code.extend_from_slice(&[0x0f, 0x90 | rng.below(16) as u8, modrm_rr(0, rng.reg())]),
        // cmovcc r32, r/m32
        14 => code.extend_from_slice(&[
            0x0f,
            0x40 | rng.below(16) as u8,
            modrm_rr(rng.dst(), rng.reg()),
        ]),
        // push r32
        15 => code.push(0x50 | rng.reg()),
        // pop r32 (never into ESP)
        _ => code.push(0x58 | rng.dst()),
    }
}

/// A program of `PROGRAM_LEN` instructions ending in HLT.
fn program(rng: &mut Rng) -> Vec<u8> {
    let mut code = Vec::new();
    for _ in 0..PROGRAM_LEN {
        instruction(rng, &mut code);
    }
    code.push(0xf4);
    code
}

/// 32-bit flat protected mode with random registers and status flags.
fn initial_state(rng: &mut Rng) -> CpuState {
    let mut s = CpuState::reset();
    s.cr0 = cr0::PE | cr0::ET;
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
    for r in s.gpr.iter_mut().take(8) {
        *r = u64::from(rng.next() as u32);
    }
    s.gpr[gpr::RSP] = STACK_TOP;
    s.rip = CODE;
    s.rflags = rflags::FIXED1 | (rng.next() & rflags::STATUS);
    s
}

struct Run {
    state: CpuState,
    stack: Vec<u8>,
}

/// Run `code` from `start` on `accel` until HLT, on memory of its own.
fn run(accel: Accel, code: &[u8], start: &CpuState) -> Result<Run, MachineError> {
    let ram = GuestRam::new(&[RegionSpec {
        base: 0,
        size: RAM_BYTES,
        kind: RegionKind::Ram,
    }])
    .expect("guest RAM maps");
    ram.write_host(CODE, code).expect("code fits in RAM");
    let mut v = create_vcpu(accel, &ram, start)?;
    let mut buses = Buses::new();
    match v.run(&mut buses)? {
        VmExit::Halted { .. } => {}
        other => {
            return Err(MachineError::Vcpu(VcpuError::Backend(format!(
                "{} ended with {other:?} instead of HLT",
                v.backend_name()
            ))))
        }
    }
    let mut stack = vec![0u8; 0x1000];
    ram.read(STACK_TOP - 0x800, &mut stack)
        .expect("stack is RAM");
    Ok(Run {
        state: v.state()?,
        stack,
    })
}

#[test]
fn random_flag_defined_code_agrees_on_jit_and_kvm() {
    if let Err(e) = accel::kvm_available() {
        eprintln!("skipping the JIT/KVM differential test: {e}");
        return;
    }
    for seed in 0..PROGRAMS {
        let mut rng = Rng(seed);
        let start = initial_state(&mut rng);
        let code = program(&mut rng);
        let kvm = run(Accel::Kvm, &code, &start)
            .unwrap_or_else(|e| panic!("seed {seed}: KVM could not run {code:02x?}: {e}"));
        let jit = run(Accel::Jit, &code, &start)
            .unwrap_or_else(|e| panic!("seed {seed}: the JIT could not run {code:02x?}: {e}"));
        let (k, j) = (&kvm.state, &jit.state);
        assert_eq!(
            k.rip,
            CODE + code.len() as u64,
            "seed {seed}: KVM stopped early"
        );
        assert_eq!(
            (k.gpr, k.rip, k.rflags),
            (j.gpr, j.rip, j.rflags),
            "seed {seed}: KVM (left) and the JIT (right) disagree after {code:02x?}"
        );
        assert!(
            kvm.stack == jit.stack,
            "seed {seed}: the stacks differ after {code:02x?}"
        );
    }
}
