//! The interpreter: the semantics of one decoded x86 instruction at a time.
//!
//! [`step`] is both the JIT's fallback for instructions it does not translate inline and the
//! reference its translations must agree with. Each instruction either completes (all its
//! effects applied) or raises a [`Fault`] before changing any register, so faults are precise:
//! the exception is delivered with `rip` at the faulting instruction. Flags go through the
//! lazy-flags record in `ctx.flags` (see `crate::flags`), never cached elsewhere.
//!
//! Modules group instructions as the SDM does: data movement, binary arithmetic and logic,
//! shifts and rotates, multiply/divide, bit operations, decimal arithmetic, strings, the
//! stack, control transfers, system instructions, and fast system calls.

mod alu;
mod bcd;
mod bits;
pub(crate) mod cond;
mod control;
mod data;
mod fast;
mod fastcall;
mod gate;
mod muldiv;
pub mod operand;
mod protection;
mod shift;
pub mod sse;
pub(crate) mod stack;
mod string;
mod system;
pub(crate) mod task;
#[cfg(test)]
mod tests;
mod x87;

pub use system::cpuid_limit;

use iced_x86::{Instruction, Mnemonic as M};

use crate::context::JitContext;
use crate::exception::{self, Fault};
use crate::runtime::Runtime;

/// What the block must do after [`step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Done; `rip == insn.next_ip()` and the block may go on with the next instruction.
    Continue,
    /// `rip` changed another way (taken jump, call, return, exception or interrupt delivered,
    /// mode/CS/SS/CR0 change, a write to a code page flagged through `exit_block`): the block
    /// must end.
    Branch,
    /// The dispatcher must return from `run` (HLT with `cpu.halted = 1`, a device request
    /// with `exit.exit_run = 1`, a triple fault with `Runtime::triple_fault`).
    Exit,
}

/// How an instruction's executor finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Fall through: `step` sets rip to the next instruction.
    Next,
    /// The executor set rip (or changed mode): end the block.
    Jump,
    /// The executor set rip and wants the run loop to return.
    Exit,
}

pub(crate) type Exec = Result<Flow, Fault>;

/// An executor of one kind of instruction (see [`handler`]).
pub(crate) type Handler = fn(&mut JitContext, &mut Runtime, &Instruction) -> Exec;

/// Execute one decoded instruction. On entry `ctx.cpu.rip == insn.ip()`.
///
/// The interrupt shadow of a preceding STI/MOV SS is consumed here: executing this instruction
/// ends it. After the instruction, `exit.exit_run` turns the result into [`Step::Exit`] and
/// `exit.exit_block` into [`Step::Branch`].
pub fn step(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Step {
    let ip_mask = ip_mask(ctx);
    ctx.cpu.interrupt_shadow = 0;
    let result = handler(insn)(ctx, rt, insn);
    let s = match result {
        Ok(Flow::Next) => {
            ctx.cpu.rip = insn.next_ip() & ip_mask;
            Step::Continue
        }
        Ok(Flow::Jump) => Step::Branch,
        Ok(Flow::Exit) => return Step::Exit,
        Err(f) => {
            ctx.cpu.rip = insn.ip();
            exception::deliver_fault(ctx, rt, f);
            if rt.triple_fault {
                return Step::Exit;
            }
            Step::Branch
        }
    };
    if ctx.exit.exit_run != 0 {
        Step::Exit
    } else if ctx.exit.exit_block != 0 {
        Step::Branch
    } else {
        s
    }
}

/// Run the instructions of one block with their executors (`handlers[i]` is
/// [`handler`]`(&insns[i])`) from the first, as [`step`] would one after the other, until
/// one ends the block (a branch, a fault, an exit request or a write that set
/// `exit.exit_block`) or the block runs out. Each instruction started is counted in
/// `ctx.icount` before it runs. The loop every interpreted block runs: the common case (an
/// instruction that completes and falls through) costs a call, a store of rip and one test.
pub(crate) fn run_block(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insns: &[Instruction],
    handlers: &[Handler],
) {
    let ip_mask = ip_mask(ctx);
    for (insn, &exec) in insns.iter().zip(handlers) {
        ctx.icount += 1;
        ctx.cpu.interrupt_shadow = 0;
        match exec(ctx, rt, insn) {
            Ok(Flow::Next) => {
                ctx.cpu.rip = insn.next_ip() & ip_mask;
                if ctx.exit.exit_block | ctx.exit.exit_run != 0 {
                    return;
                }
            }
            Ok(Flow::Jump | Flow::Exit) => return,
            Err(f) => {
                ctx.cpu.rip = insn.ip();
                exception::deliver_fault(ctx, rt, f);
                return;
            }
        }
    }
}

/// Set rip to the next instruction and end the block (mode, SS or interrupt-shadow changes).
#[inline]
pub(crate) fn end_block_after(ctx: &mut JitContext, insn: &Instruction) -> Flow {
    ctx.cpu.rip = insn.next_ip() & ip_mask(ctx);
    Flow::Jump
}

/// The mask of the instruction pointer in the current mode (IP wraps at 64 KiB in 16-bit code).
#[inline]
pub(crate) fn ip_mask(ctx: &JitContext) -> u64 {
    match ctx.cpu.mode().bitness() {
        16 => 0xffff,
        32 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// The executor of `insn`: which of the interpreter's functions implements it, chosen once
/// per decoded instruction (the dispatcher keeps it with the block, so interpreting a block
/// does not look up each instruction's mnemonic again). The common operand forms get an
/// executor specialised for them (`fast`), the others the generic one of their mnemonic.
pub(crate) fn handler(insn: &Instruction) -> Handler {
    fast::handler(insn).unwrap_or_else(|| generic(insn))
}

/// The generic executor of `insn`'s mnemonic, which handles all of its operand forms.
fn generic(insn: &Instruction) -> Handler {
    let h: Handler = match insn.mnemonic() {
        // MMX shares mnemonics with SSE2 (PADDB mm vs xmm): decided by the operands, first.
        M::Mov => data::mov,
        M::Movzx => data::movzx,
        M::Movsx | M::Movsxd => data::movsx,
        M::Lea => |ctx, _, insn| data::lea(ctx, insn),
        M::Xchg => data::xchg,
        M::Cmpxchg => data::cmpxchg,
        M::Cmpxchg8b => data::cmpxchg8b,
        M::Cmpxchg16b => data::cmpxchg16b,
        M::Xadd => data::xadd,
        M::Cbw | M::Cwde | M::Cdqe => |ctx, _, insn| data::extend_accumulator(ctx, insn),
        M::Cwd | M::Cdq | M::Cqo => |ctx, _, insn| data::sign_to_dx(ctx, insn),
        M::Xlatb => data::xlat,
        M::Bound => data::bound,
        M::Bswap => |ctx, _, insn| data::bswap(ctx, insn),
        M::Movbe => data::movbe,
        M::Lds | M::Les | M::Lfs | M::Lgs | M::Lss => data::load_far_pointer,
        M::Seta
        | M::Setae
        | M::Setb
        | M::Setbe
        | M::Sete
        | M::Setg
        | M::Setge
        | M::Setl
        | M::Setle
        | M::Setne
        | M::Setno
        | M::Setnp
        | M::Setns
        | M::Seto
        | M::Setp
        | M::Sets => data::setcc,
        M::Cmova
        | M::Cmovae
        | M::Cmovb
        | M::Cmovbe
        | M::Cmove
        | M::Cmovg
        | M::Cmovge
        | M::Cmovl
        | M::Cmovle
        | M::Cmovne
        | M::Cmovno
        | M::Cmovnp
        | M::Cmovns
        | M::Cmovo
        | M::Cmovp
        | M::Cmovs => data::cmovcc,

        M::Add | M::Or | M::Adc | M::Sbb | M::And | M::Sub | M::Xor | M::Cmp | M::Test => {
            |ctx, rt, insn| alu::binary(ctx, rt, insn)
        }
        M::Inc | M::Dec | M::Neg | M::Not => alu::unary,
        M::Clc | M::Stc | M::Cmc | M::Cld | M::Std | M::Lahf | M::Sahf | M::Salc => {
            |ctx, _, insn| alu::flag_op(ctx, insn)
        }

        M::Rol | M::Ror | M::Rcl | M::Rcr | M::Shl | M::Sal | M::Shr | M::Sar => {
            |ctx, rt, insn| shift::shift(ctx, rt, insn)
        }
        M::Shld | M::Shrd => shift::double_shift,
        M::Mul | M::Imul => muldiv::multiply,
        M::Div | M::Idiv => muldiv::divide,
        M::Bt | M::Bts | M::Btr | M::Btc => bits::bit_test,
        // Without BMI1/ABM (not advertised) TZCNT and LZCNT execute as BSF and BSR, as on
        // older processors; compilers rely on it for `rep bsf`.
        M::Bsf | M::Bsr | M::Tzcnt | M::Lzcnt => bits::bit_scan,
        M::Daa | M::Das | M::Aaa | M::Aas | M::Aam | M::Aad => {
            |ctx, _, insn| bcd::decimal(ctx, insn)
        }

        // SSE MOVSD/CMPSD share their mnemonics with the string instructions.
        M::Movsd | M::Cmpsd if sse::uses_xmm(insn) => sse_or_ud,
        M::Movsb | M::Movsw | M::Movsd | M::Movsq => string::movs,
        M::Stosb | M::Stosw | M::Stosd | M::Stosq => string::stos,
        M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq => string::lods,
        M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq => string::cmps,
        M::Scasb | M::Scasw | M::Scasd | M::Scasq => string::scas,
        M::Insb | M::Insw | M::Insd => string::ins,
        M::Outsb | M::Outsw | M::Outsd => string::outs,

        M::Push => stack::push,
        M::Pop => stack::pop,
        M::Pusha | M::Pushad => stack::pusha,
        M::Popa | M::Popad => stack::popa,
        M::Pushf | M::Pushfd | M::Pushfq => stack::pushf,
        M::Popf | M::Popfd | M::Popfq => stack::popf,
        M::Enter => stack::enter,
        M::Leave => stack::leave,

        M::Jmp => control::jmp,
        M::Call => control::call,
        M::Ret => control::ret_near,
        M::Retf => control::ret_far,
        M::Ja
        | M::Jae
        | M::Jb
        | M::Jbe
        | M::Je
        | M::Jg
        | M::Jge
        | M::Jl
        | M::Jle
        | M::Jne
        | M::Jno
        | M::Jnp
        | M::Jns
        | M::Jo
        | M::Jp
        | M::Js => |ctx, _, insn| control::jcc(ctx, insn),
        M::Loop | M::Loope | M::Loopne | M::Jcxz | M::Jecxz | M::Jrcxz => {
            |ctx, _, insn| control::loop_jcxz(ctx, insn)
        }
        M::Int | M::Int3 | M::Into | M::Int1 => control::int,
        M::Iret | M::Iretd | M::Iretq => control::iret,

        // Hint NOPs (0F 18-0F 1F, ENDBR32 without CET), cache and ordering instructions that
        // need no emulation in a single-CPU machine without caches.
        M::Nop
        | M::Reservednop
        | M::Endbr32
        | M::Endbr64
        | M::Pause
        | M::Wbinvd
        | M::Invd
        | M::Prefetchnta
        | M::Prefetcht0
        | M::Prefetcht1
        | M::Prefetcht2
        | M::Prefetchw
        | M::Lfence
        | M::Mfence
        | M::Sfence => |_, _, _| Ok(Flow::Next),
        M::Ud2 | M::Ud0 | M::Ud1 => |_, _, _| Err(Fault::ud()),
        M::Hlt => |ctx, _, insn| system::hlt(ctx, insn),
        M::Cli | M::Sti => |ctx, _, insn| system::cli_sti(ctx, insn),
        M::In | M::Out => system::in_out,
        M::Cpuid => |ctx, _, _| system::cpuid(ctx),
        M::Rdtsc => |ctx, _, _| system::rdtsc(ctx, false),
        M::Rdtscp => |ctx, _, _| system::rdtsc(ctx, true),
        M::Rdmsr | M::Wrmsr => system::msr,
        M::Lgdt | M::Lidt | M::Sgdt | M::Sidt => system::descriptor_table,
        M::Lldt | M::Ltr | M::Sldt | M::Str => system::ldt_tr,
        M::Lmsw | M::Smsw | M::Clts => system::msw,
        M::Invlpg => |ctx, _, insn| system::invlpg(ctx, insn),
        M::Swapgs => |ctx, _, _| system::swapgs(ctx),
        M::Stac | M::Clac => |ctx, _, insn| system::stac_clac(ctx, insn),
        M::Syscall => |ctx, _, insn| fastcall::syscall(ctx, insn.next_ip()),
        M::Sysret | M::Sysretq => {
            |ctx, _, insn| fastcall::sysret(ctx, insn.code() == iced_x86::Code::Sysretq)
        }
        M::Sysenter => |ctx, _, _| fastcall::sysenter(ctx),
        M::Sysexit | M::Sysexitq => {
            |ctx, _, insn| fastcall::sysexit(ctx, insn.code() == iced_x86::Code::Sysexitq)
        }
        M::Lar | M::Lsl | M::Verr | M::Verw | M::Arpl => protection::protection,
        M::Wait => |ctx, _, _| x87::fwait(ctx),
        _ if x87::is_x87(insn) => x87::execute,
        _ => sse_or_ud,
    };
    h
}

/// Execute `insn` without the bookkeeping of [`step`] (tests of single executors).
#[cfg(test)]
fn execute(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    handler(insn)(ctx, rt, insn)
}

/// The SIMD extensions (`sse`, MMX included), or #UD for an instruction nobody implements.
fn sse_or_ud(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    match sse::execute(ctx, rt, insn) {
        Some(r) => r,
        None => unimplemented_instruction(ctx, rt, insn),
    }
}

/// x87 escape opcodes D8-DF (SDM Vol. 2A Appendix A.4).
const X87_ESCAPE: std::ops::RangeInclusive<u32> = 0xd8..=0xdf;

/// An instruction emu does not implement (or an invalid encoding): #UD, or #NM for x87
/// instructions when CR0.EM or CR0.TS says so (SDM Vol. 3A 2.5), logged once per opcode.
#[cold]
fn unimplemented_instruction(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let code = insn.code();
    rt.unimplemented += 1;
    if rt.first_warning(code) {
        let la = ctx.cpu.cs().base.wrapping_add(insn.ip());
        log::warn!(
            "unimplemented instruction {:?} ({:?}) at linear {la:#x}: raising #UD",
            insn.mnemonic(),
            code
        );
    }
    if code != iced_x86::Code::INVALID {
        let op = insn.op_code();
        let first_byte = if op.op_code_len() == 2 {
            op.op_code() >> 8
        } else {
            op.op_code()
        };
        let is_x87 =
            op.table() == iced_x86::OpCodeTableKind::Normal && X87_ESCAPE.contains(&first_byte);
        if is_x87 && ctx.cpu.cr0 & (vcpu::state::cr0::EM | vcpu::state::cr0::TS) != 0 {
            return Err(Fault::new(exception::NM_VECTOR));
        }
    }
    Err(Fault::ud())
}
