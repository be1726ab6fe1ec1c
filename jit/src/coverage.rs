//! Instruction coverage: which iced-x86 instruction codes the software CPU implements.
//!
//! The answer comes from the implementation, not from a list kept by hand: for every
//! [`iced_x86::Code`] an encoding is synthesised from iced's [`OpCodeInfo`] (prefixes, opcode
//! map, opcode bytes, ModRM group, operand and address size, the modes the code exists in),
//! decoded back with the options emu's decoder uses, and kept only if it decodes to the same
//! `Code` (for a register-or-memory operand, one register and one memory form). Each form then
//! executes for one step through the interpreter ([`crate::interp::step`]) in a sandbox (fresh
//! [`CpuState`] in real, 32-bit protected or 64-bit mode, a little RAM, CR4.OSFXSR and
//! CR4.OSXSAVE set, CR0.EM/TS clear). A code is *unimplemented* when the interpreter took its
//! unimplemented-instruction path ([`Runtime::unimplemented`] counted it) for any form,
//! *implemented* otherwise, whatever fault it raised (#GP for a privileged operand, #PF, ...).
//! For implemented codes the translator is asked too ([`translate_block`] on a one-instruction
//! block, IR only, nothing is compiled) whether it emits the instruction inline or calls the
//! interpreter helper.
//!
//! Codes for which no encoding could be synthesised are reported as [`Status::NotProbed`], never as
//! implemented or not.

use std::panic::{self, AssertUnwindSafe};

use cranelift_codegen::ir::{types, AbiParam, Function, Signature, UserFuncName};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetFrontendConfig};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::FunctionBuilderContext;
use iced_x86::{
    Code, CpuidFeature as F, Decoder, DecoderOptions, EncodingKind, Instruction, MandatoryPrefix,
    OpCodeInfo, OpCodeTableKind, OpKind,
};
use vcpu::state::{cr0, efer, gpr};
use vcpu::{CpuState, GuestRam, RegionKind, RegionSpec, Segment, SegmentIndex};

use crate::context::JitContext;
use crate::interp;
use crate::interp::sse::{CR4_OSFXSR, CR4_OSXMMEXCPT, CR4_OSXSAVE};
use crate::runtime::Runtime;
use crate::translate::{helpers, translate_block, ModeInfo, TranslateEnv};

/// The decoder options of emu's decoder (`decoder::decode_block` decodes with none): codes that
/// need another option never reach the interpreter.
const EMU_DECODER_OPTIONS: u32 = DecoderOptions::NONE;

/// Sandbox memory: RAM from 0, the probed instruction at `CODE`, every general register pointing
/// at `DATA` (so `[reg]` memory operands are in RAM and 64-byte aligned), the stack below
/// `STACK_TOP`, and the 64-bit mode page tables at `PML4`..`PD` + 4 KiB.
const RAM_SIZE: u64 = 0x8_0000;
const CODE: u64 = 0x1000;
const DATA: u64 = 0x3000;
const STACK_TOP: u64 = 0x8000;
const PML4: u64 = 0x7_0000;
const PDPT: u64 = 0x7_1000;
const PD: u64 = 0x7_2000;
/// Descriptor tables: GDT (null, 32-bit code 0x08, data 0x10, 64-bit code 0x18) and an IDT
/// (or the real-mode IVT at 0) whose vector `v` points at `HANDLERS + v`, so the vector of the
/// exception a probe raised can be read back from rip.
const GDT: u64 = 0x5000;
const IDT: u64 = 0x6000;
const HANDLERS: u64 = 0x600;
const SEL_CODE32: u16 = 0x08;
const SEL_CODE64: u16 = 0x18;
/// Descriptor high dwords (SDM Vol. 3A 3.4.5): present, DPL 0, code execute/read with D (32-bit)
/// or L (64-bit), data read/write with B; 4 GiB limit.
const DESC_CODE32: u32 = 0x00cf_9a00;
const DESC_CODE64: u32 = 0x00af_9a00;
const DESC_DATA: u32 = 0x00cf_9200;
/// Gate type/attribute word (SDM Vol. 3A 6.11, 6.14.1): present, DPL 0, interrupt gate.
const GATE_INTERRUPT: u32 = 0x8e00;
/// Paging entry bits (SDM Vol. 3A 4.5, Tables 4-14..4-18): present, writable, user, page size.
const PTE_P_RW_US: u64 = 0x7;
const PDE_PS: u64 = 0x80;
/// XCR0 bits (SDM Vol. 1 13.3): x87 and SSE state, the features emu implements.
const XCR0_X87_SSE: u64 = 0x3;
/// Trailing zero bytes after a synthesised opcode: room for SIB, displacement and immediates
/// (the decoder takes what the instruction needs and ignores the rest).
const TAIL: usize = 12;

/// A coarse instruction class: the encoding, and for legacy encodings the extension group from
/// iced's CPUID feature list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    GeneralPurpose,
    System,
    X87,
    Mmx,
    Sse,
    LegacyOther,
    D3Now,
    Vex,
    Evex,
    Xop,
    Mvex,
}

impl Class {
    pub const ALL: [Class; 11] = [
        Class::GeneralPurpose,
        Class::System,
        Class::X87,
        Class::Mmx,
        Class::Sse,
        Class::LegacyOther,
        Class::D3Now,
        Class::Vex,
        Class::Evex,
        Class::Xop,
        Class::Mvex,
    ];

    /// The class of `code`.
    pub fn of(code: Code) -> Class {
        let op = code.op_code();
        let features = code.cpuid_features();
        let any = |set: &[F]| features.iter().any(|f| set.contains(f));
        match op.encoding() {
            EncodingKind::VEX => return Class::Vex,
            EncodingKind::EVEX => return Class::Evex,
            EncodingKind::XOP => return Class::Xop,
            EncodingKind::D3NOW => return Class::D3Now,
            EncodingKind::MVEX => return Class::Mvex,
            _ => {}
        }
        if any(&[
            F::FPU,
            F::FPU287,
            F::FPU287XL_ONLY,
            F::FPU387,
            F::FPU387SL_ONLY,
            F::CYRIX_FPU,
        ]) {
            Class::X87
        } else if any(&[F::SSE, F::SSE2, F::SSE3, F::SSSE3, F::SSE4_1, F::SSE4_2]) {
            // Checked before MMX: the SSE additions on MMX registers (PSHUFW, PADDQ mm) are SSE.
            Class::Sse
        } else if any(&[F::MMX]) {
            Class::Mmx
        } else if op.is_privileged()
            || op.must_be_cpl0()
            || op.is_input_output()
            || any(&[
                F::SYSCALL,
                F::SEP,
                F::MSR,
                F::VMX,
                F::SVM,
                F::SMX,
                F::SMM,
                F::SGX1,
                F::TDX,
            ])
        {
            Class::System
        } else if features.iter().all(|f| {
            [
                F::INTEL8086,
                F::INTEL8086_ONLY,
                F::INTEL186,
                F::INTEL286,
                F::INTEL286_ONLY,
                F::INTEL386,
                F::INTEL386_ONLY,
                F::INTEL386_A0_ONLY,
                F::INTEL486,
                F::INTEL486_A_ONLY,
                F::X64,
                F::CMOV,
                F::CX8,
                F::CMPXCHG16B,
                F::CPUID,
                F::TSC,
                F::RDTSCP,
                F::MULTIBYTENOP,
                F::PAUSE,
                F::POPCNT,
                F::LZCNT,
                F::MOVBE,
            ]
            .contains(f)
        }) {
            Class::GeneralPurpose
        } else {
            Class::LegacyOther
        }
    }

    /// A short name for tables (no commas: it is a CSV field).
    pub fn name(self) -> &'static str {
        match self {
            Class::GeneralPurpose => "legacy general-purpose",
            Class::System => "legacy system and I/O",
            Class::X87 => "legacy x87",
            Class::Mmx => "legacy MMX",
            Class::Sse => "legacy SSE..SSE4.2",
            Class::LegacyOther => "legacy other extensions",
            Class::D3Now => "3DNow!",
            Class::Vex => "VEX (AVX/AVX2/FMA/BMI)",
            Class::Evex => "EVEX (AVX-512)",
            Class::Xop => "XOP (AMD)",
            Class::Mvex => "MVEX (Knights Corner)",
        }
    }
}

/// Why a code was not probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotProbed {
    /// Decoding it needs a `DecoderOptions` flag emu's decoder does not set (Cyrix, KNC/MVEX,
    /// old Intel, MPX, ...): a guest can never execute it as this code.
    DecoderOption,
    /// An x87 form with a built-in FWAIT (FSTENV, FSAVE, FSTSW, ...): iced decodes the 9B byte
    /// as a WAIT instruction of its own, followed by the no-wait form.
    Fwait,
    /// No synthesised encoding decoded back to this code with emu's decoder options (e.g. the
    /// AMD-only decodings of 0x66 on 64-bit branches, the 8086's POP CS).
    NoEncoding,
    /// Executing the probe panicked the host (a bug: the interpreter must never panic).
    Panicked,
}

/// What probing one code found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The interpreter executes it. `inline`: the translator emits it inline rather than calling
    /// the interpreter helper (`None` when the host has no Cranelift backend).
    Implemented {
        inline: Option<bool>,
    },
    /// The interpreter's unimplemented-instruction path (#UD).
    Unimplemented,
    NotProbed(NotProbed),
}

/// The probe of one code.
#[derive(Debug, Clone)]
pub struct Probe {
    pub code: Code,
    pub class: Class,
    pub status: Status,
    /// The mode it was probed in (16, 32, 64) and its encoding (for an unimplemented code, the
    /// form that was unimplemented); 0 and empty when not probed.
    pub bitness: u32,
    pub bytes: Vec<u8>,
    /// For an implemented code, the vector of the exception its first form raised in the sandbox
    /// (#GP for privileged operands, ...), `None` if it completed. An implemented code raising
    /// #UD deserves a look: its executor may reject a form it does not handle.
    pub fault: Option<u8>,
}

/// Every instruction code iced knows, excluding pseudo-codes (INVALID, db/dw/dd/dq, zero bytes).
pub fn instruction_codes() -> impl Iterator<Item = Code> {
    Code::values().filter(|c| c.op_code().is_instruction())
}

/// Probe every instruction code.
pub fn probe_all() -> Vec<Probe> {
    let mut sandbox = Sandbox::new();
    instruction_codes().map(|c| sandbox.probe(c)).collect()
}

/// Probe one code.
pub fn probe(code: Code) -> Probe {
    Sandbox::new().probe(code)
}

/// One synthesised encoding: the mode (16, 32, 64), the instruction bytes, and the instruction
/// decoded at `CODE`.
pub type Encoding = (u32, Vec<u8>, Instruction);

/// Synthesise an encoding of `code`; `None` when no candidate decodes back to `code`.
pub fn synthesize(code: Code) -> Option<Encoding> {
    synthesize_forms(code).into_iter().next()
}

/// Synthesise up to two encodings of `code` in the first mode where it decodes: the first one
/// found, and for a code with a register-or-memory operand the first one of the other form
/// (register first, then memory), so both forms are probed.
pub fn synthesize_forms(code: Code) -> Vec<Encoding> {
    let op = code.op_code();
    let has_memory = |i: &Instruction| (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory);
    for bitness in [32, 64, 16] {
        if !op.is_available_in_mode(bitness) {
            continue;
        }
        let mut forms: Vec<Encoding> = Vec::new();
        for bytes in candidates(op, bitness) {
            let mut d = Decoder::with_ip(bitness, &bytes, CODE, EMU_DECODER_OPTIONS);
            let insn = d.decode();
            if insn.code() != code {
                continue;
            }
            if forms
                .iter()
                .all(|(_, _, f)| has_memory(f) != has_memory(&insn))
            {
                let len = insn.len();
                forms.push((bitness, bytes[..len].to_vec(), insn));
            }
            if forms.len() == 2 {
                break;
            }
        }
        if !forms.is_empty() {
            return forms;
        }
    }
    Vec::new()
}

/// Candidate encodings of `op` in a mode, simplest first.
fn candidates(op: &OpCodeInfo, bitness: u32) -> Vec<Vec<u8>> {
    let group = u8::try_from(op.group_index()).ok();
    // ModRM (and SIB) candidates: register form, [base] memory form, [base + index] form (VSIB).
    // Without a group the reg field is free; a second round uses reg 1 and rm 2, for encodings
    // that need distinct registers (gathers, AMX, complex FP16) or reg != 0 (reserved NOPs).
    let modrms = |reg: u8, rm: u8| -> Vec<Vec<u8>> {
        match u8::try_from(op.rm_group_index()) {
            Ok(rm) => vec![vec![0xc0 | reg << 3 | rm]],
            Err(_) => vec![
                vec![0xc0 | reg << 3 | rm],
                vec![reg << 3],
                vec![reg << 3 | 4, 0x20],
            ],
        }
    };
    let mut rounds = vec![(modrms(group.unwrap_or(0), 0), 0u8)];
    if group.is_none() {
        rounds.push((modrms(1, 2), 0));
    }
    // Register numbers encoded in the opcode (`+r`): register 0 may be another instruction
    // (XCHG eAX, eAX is NOP), so try register 1 too.
    rounds.push((modrms(group.unwrap_or(0), 0), 1));
    let rexes: &[Option<u8>] = if bitness == 64 {
        &[None, Some(0x48)]
    } else {
        &[None]
    };
    let mut out = Vec::new();
    for (modrms, plus_r) in &rounds {
        for osz in [false, true] {
            for asz in [false, true] {
                for &rex in rexes {
                    for modrm in modrms {
                        for mask in [0u8, 1] {
                            let prefixes = Prefixes {
                                osz,
                                asz,
                                rex,
                                mask,
                            };
                            if let Some(b) = encode(op, prefixes, modrm, *plus_r) {
                                out.push(b);
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Prefix choices of one candidate: the operand/address-size prefixes, a REX prefix (legacy
/// encodings), the EVEX opmask register.
#[derive(Debug, Clone, Copy)]
struct Prefixes {
    osz: bool,
    asz: bool,
    rex: Option<u8>,
    mask: u8,
}

/// One encoding of `op` with `prefixes`, `modrm` (and SIB), and `plus_r` added to the last
/// opcode byte.
fn encode(op: &OpCodeInfo, prefixes: Prefixes, modrm: &[u8], plus_r: u8) -> Option<Vec<u8>> {
    let Prefixes {
        osz,
        asz,
        rex,
        mask,
    } = prefixes;
    let mut b = Vec::with_capacity(24);
    let last = (op.op_code() as u8).wrapping_add(plus_r);
    let opcode: Vec<u8> = if op.op_code_len() == 2 {
        vec![(op.op_code() >> 8) as u8, last]
    } else {
        vec![last]
    };
    // VEX/EVEX/XOP pp field and legacy mandatory prefix.
    let (pp, mandatory) = match op.mandatory_prefix() {
        MandatoryPrefix::P66 => (1u8, Some(0x66u8)),
        MandatoryPrefix::PF3 => (2, Some(0xf3)),
        MandatoryPrefix::PF2 => (3, Some(0xf2)),
        MandatoryPrefix::None | MandatoryPrefix::PNP => (0, None),
    };
    let w = if op.is_wig() { 0 } else { op.w() as u8 };
    let l = if op.is_lig() { 0 } else { op.l() as u8 };
    if op.fwait() {
        b.push(0x9b);
    }
    if osz {
        b.push(0x66);
    }
    if asz {
        b.push(0x67);
    }
    match op.encoding() {
        EncodingKind::Legacy | EncodingKind::D3NOW => {
            if mask != 0 {
                return None;
            }
            b.extend(mandatory);
            b.extend(rex);
            match op.table() {
                OpCodeTableKind::Normal => {}
                OpCodeTableKind::T0F => b.push(0x0f),
                OpCodeTableKind::T0F38 => b.extend([0x0f, 0x38]),
                OpCodeTableKind::T0F3A => b.extend([0x0f, 0x3a]),
                _ => return None,
            }
            if op.encoding() == EncodingKind::D3NOW {
                // 0F 0F /r ib: the opcode byte follows the operands (AMD 3DNow! manual).
                b.push(0x0f);
                b.extend(modrm);
                b.extend(opcode);
            } else {
                b.extend(opcode);
                b.extend(modrm);
            }
        }
        EncodingKind::VEX | EncodingKind::XOP => {
            if rex.is_some() || mask != 0 {
                return None;
            }
            let map = match op.table() {
                OpCodeTableKind::T0F => 1,
                OpCodeTableKind::T0F38 => 2,
                OpCodeTableKind::T0F3A => 3,
                OpCodeTableKind::MAP8 => 8,
                OpCodeTableKind::MAP9 => 9,
                OpCodeTableKind::MAP10 => 10,
                _ => return None,
            };
            let escape = if op.encoding() == EncodingKind::VEX {
                0xc4
            } else {
                0x8f
            };
            // R̄X̄B̄ = 111 (no extension), vvvv = 1111 (unused or register 0).
            b.extend([escape, 0xe0 | map, w << 7 | 0x78 | l << 2 | pp]);
            b.extend(opcode);
            b.extend(modrm);
        }
        EncodingKind::EVEX => {
            if rex.is_some() {
                return None;
            }
            let map = match op.table() {
                OpCodeTableKind::T0F => 1,
                OpCodeTableKind::T0F38 => 2,
                OpCodeTableKind::T0F3A => 3,
                OpCodeTableKind::MAP5 => 5,
                OpCodeTableKind::MAP6 => 6,
                _ => return None,
            };
            // P0: R̄X̄B̄R̄' = 1111; P1: W vvvv=1111 1 pp; P2: z=0 L'L b=0 V̄'=1 aaa (SDM Vol. 2A
            // 2.7.1).
            b.extend([
                0x62,
                0xf0 | map,
                w << 7 | 0x7c | pp,
                (l & 3) << 5 | 0x08 | mask,
            ]);
            b.extend(opcode);
            b.extend(modrm);
        }
        // MVEX (Knights Corner) needs DecoderOptions::KNC, which emu's decoder does not set.
        _ => return None,
    }
    b.extend([0; TAIL]);
    Some(b)
}

/// The machine probes run in, reused from one probe to the next.
struct Sandbox {
    rt: Runtime,
    isa: Option<OwnedTargetIsa>,
    fctx: FunctionBuilderContext,
}

impl Sandbox {
    fn new() -> Self {
        let ram = GuestRam::new(&[RegionSpec {
            base: 0,
            size: RAM_SIZE,
            kind: RegionKind::Ram,
        }])
        .expect("a small RAM region for the coverage sandbox");
        Self {
            rt: Runtime::new(ram),
            isa: host_isa(),
            fctx: FunctionBuilderContext::new(),
        }
    }

    fn probe(&mut self, code: Code) -> Probe {
        let class = Class::of(code);
        let not_probed = |why| Probe {
            code,
            class,
            status: Status::NotProbed(why),
            bitness: 0,
            bytes: Vec::new(),
            fault: None,
        };
        let forms = synthesize_forms(code);
        if forms.is_empty() {
            let why = if code.op_code().decoder_option() != DecoderOptions::NONE {
                NotProbed::DecoderOption
            } else if code.op_code().fwait() {
                NotProbed::Fwait
            } else {
                NotProbed::NoEncoding
            };
            return not_probed(why);
        }
        let run = panic::catch_unwind(AssertUnwindSafe(|| {
            // Unimplemented if any form takes the unimplemented path; reported with that form.
            let mut fault = None;
            for (i, (bitness, bytes, insn)) in forms.iter().enumerate() {
                let (unimplemented, vector) = self.execute(*bitness, bytes, insn);
                if unimplemented {
                    return (Status::Unimplemented, *bitness, bytes.clone(), None);
                }
                if i == 0 {
                    fault = vector;
                }
            }
            let (bitness, bytes, insn) = &forms[0];
            let inline = self.translates_inline(*bitness, insn);
            (
                Status::Implemented { inline },
                *bitness,
                bytes.clone(),
                fault,
            )
        }));
        match run {
            Ok((status, bitness, bytes, fault)) => Probe {
                code,
                class,
                status,
                bitness,
                bytes,
                fault,
            },
            Err(_) => not_probed(NotProbed::Panicked),
        }
    }

    /// Run `insn` for one interpreter step: whether it took the unimplemented path, and the
    /// vector of the exception it raised, if any.
    fn execute(&mut self, bitness: u32, bytes: &[u8], insn: &Instruction) -> (bool, Option<u8>) {
        // Rewrite what a previous probe may have changed: code, page and descriptor tables.
        let written = write_sandbox_memory(&self.rt.ram, bitness, bytes);
        debug_assert!(written, "sandbox RAM covers the code and system tables");
        let mut ctx = JitContext::new(sandbox_state(bitness));
        ctx.flags.set_eflags();
        self.rt.triple_fault = false;
        let before = self.rt.unimplemented;
        interp::step(&mut ctx, &mut self.rt, insn);
        let vector = ctx
            .cpu
            .rip
            .checked_sub(HANDLERS)
            .filter(|&v| v < 256 && !self.rt.triple_fault)
            .map(|v| v as u8);
        (self.rt.unimplemented != before, vector)
    }

    /// Whether the translator emits `insn` inline (`None` without a host ISA).
    fn translates_inline(&mut self, bitness: u32, insn: &Instruction) -> Option<bool> {
        let isa = self.isa.as_ref()?;
        let call_conv = isa.default_call_conv();
        let frontend: TargetFrontendConfig = isa.frontend_config();
        let mut sig = Signature::new(call_conv);
        sig.params.push(AbiParam::new(isa.pointer_type()));
        sig.returns.push(AbiParam::new(types::I64));
        let mut func = Function::with_name_signature(UserFuncName::default(), sig);
        let loop_limit = 0u64;
        let env = TranslateEnv {
            mode: ModeInfo {
                bitness,
                stack_size: bitness / 8,
                // Every segment readable and writable inline, as in a flat model.
                seg_access: 0x0fff,
            },
            helpers: helpers::table(),
            loop_limit: &loop_limit,
            // Only whether the translator accepts the instruction matters, not chaining.
            chain: None,
        };
        let stats = translate_block(
            &mut func,
            &mut self.fctx,
            frontend,
            call_conv,
            &[std::slice::from_ref(insn)],
            &env,
        );
        Some(stats.inline > 0)
    }
}

/// Write the probe's code, the page tables, the GDT and the IDT (IVT in real mode); false if
/// some address is outside the sandbox RAM.
fn write_sandbox_memory(ram: &GuestRam, bitness: u32, code: &[u8]) -> bool {
    let mut ok = ram.write_host(CODE, code).is_ok();
    let mut put = |at: u64, bytes: &[u8]| ok &= ram.write_host(at, bytes).is_ok();
    for (at, v) in [
        (PML4, PDPT | PTE_P_RW_US),
        (PDPT, PD | PTE_P_RW_US),
        (PD, PTE_P_RW_US | PDE_PS),
    ] {
        put(at, &v.to_le_bytes());
    }
    for (i, high) in [0, DESC_CODE32, DESC_DATA, DESC_CODE64]
        .into_iter()
        .enumerate()
    {
        let low: u32 = if high == 0 { 0 } else { 0xffff };
        let desc = u64::from(high) << 32 | u64::from(low);
        put(GDT + 8 * i as u64, &desc.to_le_bytes());
    }
    for v in 0..256u64 {
        let handler = HANDLERS + v;
        match bitness {
            16 => put(4 * v, &(handler as u32).to_le_bytes()),
            32 | 64 => {
                let sel = if bitness == 64 {
                    SEL_CODE64
                } else {
                    SEL_CODE32
                };
                let low = u32::from(sel) << 16 | (handler as u32 & 0xffff);
                let high = (handler as u32 & 0xffff_0000) | GATE_INTERRUPT;
                let gate = u64::from(high) << 32 | u64::from(low);
                if bitness == 64 {
                    put(IDT + 16 * v, &gate.to_le_bytes());
                    put(IDT + 16 * v + 8, &(handler >> 32).to_le_bytes());
                } else {
                    put(IDT + 8 * v, &gate.to_le_bytes());
                }
            }
            _ => {}
        }
    }
    ok
}

/// The host's Cranelift ISA, if there is one (only IR is built; nothing is compiled).
fn host_isa() -> Option<OwnedTargetIsa> {
    let mut flags = settings::builder();
    flags.set("opt_level", "none").ok()?;
    cranelift_native::builder()
        .ok()?
        .finish(settings::Flags::new(flags))
        .ok()
}

/// A fresh register file in the mode of `bitness`: real mode (16), flat 32-bit protected mode
/// (32), or 64-bit mode under identity-mapping 4-level paging (64); CPL 0, SSE and XSAVE enabled
/// (CR4.OSFXSR, OSXMMEXCPT, OSXSAVE; XCR0 = x87 | SSE), x87 usable (CR0.EM and TS clear).
fn sandbox_state(bitness: u32) -> CpuState {
    let mut s = CpuState::reset();
    match bitness {
        16 => {
            for seg in s.seg.iter_mut() {
                *seg = Segment::real_mode(0);
            }
            // CS is a code segment (type 0xB) as after a far jump.
            s.seg[SegmentIndex::Cs as usize].attr |= 0x8;
        }
        _ => {
            s.cr0 |= cr0::PE;
            let (sel, high, gate_size) = if bitness == 64 {
                (SEL_CODE64, DESC_CODE64, 16)
            } else {
                (SEL_CODE32, DESC_CODE32, 8)
            };
            let code = Segment::from_descriptor(sel, 0x0000_ffff, high);
            let data = Segment::from_descriptor(0x10, 0x0000_ffff, DESC_DATA);
            s.gdtr.base = GDT;
            s.gdtr.limit = 4 * 8 - 1;
            s.idtr.base = IDT;
            s.idtr.limit = 256 * gate_size - 1;
            for (i, seg) in s.seg.iter_mut().enumerate() {
                *seg = if i == SegmentIndex::Cs as usize {
                    code
                } else {
                    data
                };
            }
            if bitness == 64 {
                s.cr0 |= cr0::PG;
                s.cr3 = PML4;
                s.cr4 |= crate::mem::CR4_PAE;
                s.efer = efer::LME | efer::LMA;
            }
        }
    }
    s.cr0 = (s.cr0 | cr0::MP | cr0::NE) & !(cr0::EM | cr0::TS);
    s.cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_OSXSAVE;
    s.xcr0 = XCR0_X87_SSE;
    let regs = if bitness == 64 { 16 } else { 8 };
    for r in s.gpr.iter_mut().take(regs) {
        *r = DATA;
    }
    s.gpr[gpr::RSP] = STACK_TOP;
    s.rip = CODE;
    s
}

/// Per-class totals of a probe run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Instruction codes in the class.
    pub codes: usize,
    pub implemented: usize,
    /// Of the implemented ones, how many the translator emits inline.
    pub inline: usize,
    pub unimplemented: usize,
    pub not_probed: usize,
}

impl Tally {
    pub fn add(&mut self, p: &Probe) {
        self.codes += 1;
        match p.status {
            Status::Implemented { inline } => {
                self.implemented += 1;
                self.inline += usize::from(inline == Some(true));
            }
            Status::Unimplemented => self.unimplemented += 1,
            Status::NotProbed(_) => self.not_probed += 1,
        }
    }

    /// Codes probed (implemented + unimplemented).
    pub fn probed(&self) -> usize {
        self.implemented + self.unimplemented
    }

    /// Implemented share of the probed codes, in percent (0 when nothing was probed).
    pub fn percent(&self) -> f64 {
        if self.probed() == 0 {
            0.0
        } else {
            100.0 * self.implemented as f64 / self.probed() as f64
        }
    }
}

/// Totals per class in [`Class::ALL`] order, and over all classes.
pub fn tally(probes: &[Probe]) -> (Vec<(Class, Tally)>, Tally) {
    let mut rows: Vec<(Class, Tally)> = Class::ALL.iter().map(|&c| (c, Tally::default())).collect();
    let mut total = Tally::default();
    for p in probes {
        total.add(p);
        if let Some((_, t)) = rows.iter_mut().find(|(c, _)| *c == p.class) {
            t.add(p);
        }
    }
    (rows, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesised_encodings_decode_to_their_code() {
        let (bits, bytes, insn) = synthesize(Code::Add_rm32_r32).unwrap();
        assert_eq!(bits, 32);
        assert_eq!(insn.code(), Code::Add_rm32_r32);
        assert_eq!(bytes.len(), insn.len());
        // 64-bit-only and 16-bit-address forms need REX.W / 0x67.
        let (bits, _, _) = synthesize(Code::Add_rm64_r64).unwrap();
        assert_eq!(bits, 64);
        let (_, bytes, _) = synthesize(Code::Jcxz_rel8_16).unwrap();
        assert!(bytes.contains(&0x67) || bytes[0] == 0xe3);
        assert_eq!(
            synthesize(Code::VEX_Vaddps_xmm_xmm_xmmm128)
                .unwrap()
                .2
                .code(),
            Code::VEX_Vaddps_xmm_xmm_xmmm128
        );
        assert_eq!(
            synthesize(Code::EVEX_Vaddps_zmm_k1z_zmm_zmmm512b32_er)
                .unwrap()
                .2
                .code(),
            Code::EVEX_Vaddps_zmm_k1z_zmm_zmmm512b32_er
        );
    }

    #[test]
    fn register_or_memory_operands_get_both_forms() {
        let memory = |e: &Encoding| (0..e.2.op_count()).any(|n| e.2.op_kind(n) == OpKind::Memory);
        let add = synthesize_forms(Code::Add_rm32_r32);
        assert_eq!(add.len(), 2);
        assert_ne!(memory(&add[0]), memory(&add[1]));
        assert_eq!(synthesize_forms(Code::Add_r32_rm32).len(), 2);
        // Codes without a register-or-memory operand have one form.
        assert_eq!(synthesize_forms(Code::Cpuid).len(), 1);
        assert_eq!(synthesize_forms(Code::Lgdt_m1632).len(), 1);
        assert!(memory(&synthesize_forms(Code::Lgdt_m1632)[0]));
    }

    #[test]
    fn class_names_are_distinct_csv_fields() {
        for (i, a) in Class::ALL.iter().enumerate() {
            assert!(!a.name().contains(','), "{a:?}");
            assert!(Class::ALL[i + 1..].iter().all(|b| b.name() != a.name()));
        }
    }

    #[test]
    fn known_codes_classify_as_the_interpreter_behaves() {
        let add = probe(Code::Add_rm32_r32);
        assert_eq!(add.class, Class::GeneralPurpose);
        assert!(matches!(add.status, Status::Implemented { .. }));
        // The translator emits ADD inline on any Cranelift host.
        if host_isa().is_some() {
            assert_eq!(add.status, Status::Implemented { inline: Some(true) });
        }
        assert_eq!(add.fault, None);
        // The sandbox records the exception a probe raised (vector from the IDT/IVT handler).
        let ud2 = probe(Code::Ud2);
        assert!(matches!(ud2.status, Status::Implemented { .. }));
        assert_eq!(ud2.fault, Some(crate::exception::UD_VECTOR));
        assert_eq!(probe(Code::Int3).fault, Some(crate::exception::BP_VECTOR));
        assert_eq!(probe(Code::Int3).bitness, 32);
        let in_64 = probe(Code::Add_rm64_r64);
        assert_eq!((in_64.bitness, in_64.fault), (64, None));
        // Privileged and faulting instructions still count as implemented.
        assert!(matches!(
            probe(Code::Lgdt_m1632).status,
            Status::Implemented { .. }
        ));
        assert!(matches!(
            probe(Code::Addps_xmm_xmmm128).status,
            Status::Implemented { .. }
        ));
        let vaddps = probe(Code::VEX_Vaddps_xmm_xmm_xmmm128);
        assert_eq!(vaddps.class, Class::Vex);
        assert_eq!(vaddps.status, Status::Unimplemented);
        assert_eq!(
            probe(Code::EVEX_Vaddps_zmm_k1z_zmm_zmmm512b32_er).status,
            Status::Unimplemented
        );
    }

    #[test]
    fn report_counts_add_up_and_exclude_pseudo_codes() {
        let probes = probe_all();
        assert!(probes.iter().all(|p| p.code != Code::INVALID));
        assert!(probes.iter().all(|p| p.code != Code::DeclareByte));
        assert_eq!(probes.len(), instruction_codes().count());
        let (rows, total) = tally(&probes);
        assert_eq!(total.codes, probes.len());
        assert_eq!(
            total.implemented + total.unimplemented + total.not_probed,
            total.codes
        );
        let sum = rows.iter().fold(Tally::default(), |mut a, (_, t)| {
            a.codes += t.codes;
            a.implemented += t.implemented;
            a.inline += t.inline;
            a.unimplemented += t.unimplemented;
            a.not_probed += t.not_probed;
            a
        });
        assert_eq!(sum, total);
        assert!(total.inline <= total.implemented);
        // No probe may panic the host.
        assert!(probes
            .iter()
            .all(|p| p.status != Status::NotProbed(NotProbed::Panicked)));
        // Every VEX/EVEX code that was probed is unimplemented (emu has no AVX).
        for (c, t) in &rows {
            if matches!(c, Class::Vex | Class::Evex) {
                assert_eq!(t.implemented, 0, "{c:?}");
                assert!(t.unimplemented > 0, "{c:?}");
            }
        }
        // Most legacy general-purpose codes are probed and implemented.
        let gp = rows[0].1;
        assert!(gp.probed() > gp.codes * 9 / 10);
        assert!(gp.percent() > 80.0, "{gp:?}");
    }
}
