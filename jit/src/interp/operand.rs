//! Operand access for the interpreter: general registers by iced-x86 register, effective and
//! linear addresses of memory operands (SDM Vol. 1 3.7.5, with 16/32-bit wrap-around), and
//! reading/writing an instruction's operands whatever their kind.

use iced_x86::{Instruction, OpKind, Register};
use vcpu::{CpuState, ExecMode, Segment, SegmentIndex};

use crate::context::JitContext;
use crate::exception::Fault;
use crate::mem;
use crate::runtime::Runtime;

// The register arithmetic below relies on iced-x86's register numbering.
const _: () = assert!(Register::AL as u32 == 1);
const _: () = assert!(Register::AH as u32 == 5);
const _: () = assert!(Register::SPL as u32 == 9);
const _: () = assert!(Register::AX as u32 == 21);
const _: () = assert!(Register::EAX as u32 == 37);
const _: () = assert!(Register::RAX as u32 == 53);
const _: () = assert!(Register::R15 as u32 == 68);
const _: () = assert!(Register::ES as u32 == 71);
const _: () = assert!(Register::GS as u32 == 76);

/// All-ones mask of an operand of `size` bytes.
#[inline]
pub fn mask(size: u32) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * size)) - 1
    }
}

/// The sign bit of an operand of `size` bytes.
#[inline]
pub fn sign_bit(size: u32) -> u64 {
    1u64 << (8 * size.clamp(1, 8) - 1)
}

/// Sign-extend the low `size` bytes of `v` to 64 bits.
#[inline]
pub fn sext(v: u64, size: u32) -> u64 {
    let shift = 64 - 8 * size.clamp(1, 8);
    (((v << shift) as i64) >> shift) as u64
}

/// Index into `CpuState::seg` of a segment register.
#[inline]
pub fn seg_index(r: Register) -> usize {
    ((r as usize).wrapping_sub(Register::ES as usize)).min(5)
}

/// Read a general register (8/16/32/64-bit, including AH..BH) or a segment selector.
#[inline]
pub fn reg_read(cpu: &CpuState, r: Register) -> u64 {
    let n = r as usize;
    match n {
        1..=4 => cpu.gpr[n - 1] & 0xff,
        5..=8 => (cpu.gpr[n - 5] >> 8) & 0xff,
        9..=20 => cpu.gpr[n - 5] & 0xff,
        21..=36 => cpu.gpr[n - 21] & 0xffff,
        37..=52 => cpu.gpr[n - 37] & 0xffff_ffff,
        53..=68 => cpu.gpr[n - 53],
        71..=76 => u64::from(cpu.seg[n - 71].selector),
        _ => 0,
    }
}

/// Write a general register: 8 and 16-bit writes merge, 32-bit writes zero-extend.
#[inline]
pub fn reg_write(cpu: &mut CpuState, r: Register, v: u64) {
    let n = r as usize;
    match n {
        1..=4 => cpu.gpr[n - 1] = (cpu.gpr[n - 1] & !0xff) | (v & 0xff),
        5..=8 => cpu.gpr[n - 5] = (cpu.gpr[n - 5] & !0xff00) | ((v & 0xff) << 8),
        9..=20 => cpu.gpr[n - 5] = (cpu.gpr[n - 5] & !0xff) | (v & 0xff),
        21..=36 => cpu.gpr[n - 21] = (cpu.gpr[n - 21] & !0xffff) | (v & 0xffff),
        37..=52 => cpu.gpr[n - 37] = v & 0xffff_ffff,
        53..=68 => cpu.gpr[n - 53] = v,
        _ => {}
    }
}

/// Write the low `size` bytes of general register number `idx` (0 = rAX ...), merging.
#[inline]
pub fn gpr_write_sized(cpu: &mut CpuState, idx: usize, size: u32, v: u64) {
    let m = mask(size);
    cpu.gpr[idx] = if size == 4 {
        v & m
    } else {
        (cpu.gpr[idx] & !m) | (v & m)
    };
}

/// Address size in bytes of the instruction's memory operand.
#[inline]
pub fn addr_size(insn: &Instruction) -> u32 {
    let b = insn.memory_base();
    if b != Register::None {
        return b.size() as u32;
    }
    let i = insn.memory_index();
    if i != Register::None {
        return i.size() as u32;
    }
    match insn.memory_displ_size() {
        2 => 2,
        8 => 8,
        _ => 4,
    }
}

/// Effective address (offset in the segment) of the memory operand, wrapped to the address size.
#[inline(always)]
pub fn effective_offset(cpu: &CpuState, insn: &Instruction) -> u64 {
    let mut ea = insn.memory_displacement64();
    let b = insn.memory_base();
    if b != Register::None {
        ea = ea.wrapping_add(reg_read(cpu, b));
    }
    let i = insn.memory_index();
    if i != Register::None {
        ea = ea.wrapping_add(reg_read(cpu, i).wrapping_mul(u64::from(insn.memory_index_scale())));
    }
    ea & mask(addr_size(insn))
}

/// Linear address of segment `seg` (an iced segment register) + `offset`. In 64-bit mode the
/// bases of ES, CS, SS and DS are treated as zero and FS/GS use their 64-bit bases (SDM Vol. 3A
/// 3.4.4); elsewhere linear addresses are 32 bits wide (compatibility mode included).
#[inline]
pub fn linear(ctx: &JitContext, seg: Register, offset: u64) -> u64 {
    linear_in(ctx, ctx.cpu.mode(), seg, offset)
}

/// [`linear`] with the execution mode already known.
#[inline]
fn linear_in(ctx: &JitContext, mode: ExecMode, seg: Register, offset: u64) -> u64 {
    let i = seg_index(seg);
    if mode == ExecMode::Long64 {
        if i < SegmentIndex::Fs as usize {
            return offset;
        }
        return ctx.cpu.seg[i].base.wrapping_add(offset);
    }
    ctx.cpu.seg[i].base.wrapping_add(offset) & 0xffff_ffff
}

/// Linear address of the instruction's memory operand.
#[inline]
pub fn mem_linear(ctx: &JitContext, insn: &Instruction) -> u64 {
    linear(ctx, insn.memory_segment(), effective_offset(&ctx.cpu, insn))
}

/// Linear address of the instruction's memory operand for an access through it: in 64-bit mode
/// a non-canonical address through SS raises #SS(0) here (other segments raise #GP(0) when
/// the access is translated; SDM Vol. 3A 6.15, Interrupts 12 and 13).
#[inline]
pub fn mem_linear_access(ctx: &JitContext, insn: &Instruction) -> Result<u64, Fault> {
    let mode = ctx.cpu.mode();
    linear_access_in(ctx, mode, insn, effective_offset(&ctx.cpu, insn))
}

/// [`mem_linear_access`] with the mode and the effective address already computed.
#[inline]
fn linear_access_in(
    ctx: &JitContext,
    mode: ExecMode,
    insn: &Instruction,
    offset: u64,
) -> Result<u64, Fault> {
    let seg = insn.memory_segment();
    let la = linear_in(ctx, mode, seg, offset);
    if seg == Register::SS && mode == ExecMode::Long64 && !crate::paging::is_canonical(la) {
        return Err(Fault::ss(0));
    }
    Ok(la)
}

/// The segment-limit and type checks of an access of `size` bytes at `offset` through segment
/// register `seg` (SDM Vol. 3A 5.3 and 5.4), in protected mode outside 64-bit mode: the segment
/// must be usable (a null selector leaves it unusable), readable (execute-only code is not) or,
/// for a write, writable data; the bytes must lie within the limit, or for an expand-down data
/// segment above it and below 64 KiB or 4 GiB (the B flag). Violations raise #SS(0) through SS,
/// #GP(0) through the others. Real mode is not checked (the interpreter lets accesses past a
/// real-mode limit through, as QEMU does), nor is 64-bit mode, which has no limits.
#[inline]
pub fn check_segment(
    ctx: &JitContext,
    seg: Register,
    offset: u64,
    size: u32,
    write: bool,
) -> Result<(), Fault> {
    check_segment_in(ctx, ctx.cpu.mode(), seg, offset, size, write)
}

/// [`check_segment`] with the execution mode already known.
#[inline]
fn check_segment_in(
    ctx: &JitContext,
    mode: ExecMode,
    seg: Register,
    offset: u64,
    size: u32,
    write: bool,
) -> Result<(), Fault> {
    if !matches!(mode, ExecMode::Protected16 | ExecMode::Protected32) {
        return Ok(());
    }
    let i = seg_index(seg);
    check_segment_value(
        &ctx.cpu.seg[i],
        i == SegmentIndex::Ss as usize,
        offset,
        size,
        write,
    )
}

/// [`check_segment`] for the hidden part `s` of a segment register (`stack`: raise #SS).
pub fn check_segment_value(
    s: &Segment,
    stack: bool,
    offset: u64,
    size: u32,
    write: bool,
) -> Result<(), Fault> {
    let fault = if stack { Fault::ss(0) } else { Fault::gp(0) };
    let typ = s.typ();
    let code = typ & crate::segment::TYPE_CODE != 0;
    let rw = typ & crate::segment::TYPE_WRITABLE_READABLE != 0;
    // Code: readable, never writable. Data: readable, writable when W is set.
    let allowed = if code { rw && !write } else { rw || !write };
    if !s.present() || s.attr & Segment::ATTR_S == 0 || !allowed {
        return Err(fault);
    }
    let last = offset.wrapping_add(u64::from(size.max(1)) - 1);
    let limit = u64::from(s.limit);
    let expand_down = !code && typ & crate::segment::TYPE_CONFORMING != 0;
    let ok = if expand_down {
        let upper = if s.db() { 0xffff_ffff } else { 0xffff };
        offset > limit && last <= upper && last >= offset
    } else {
        last <= limit && last >= offset
    };
    if ok {
        Ok(())
    } else {
        Err(fault)
    }
}

/// Whether an access of any size within the first 4 GiB through `seg` needs no per-access
/// check: outside protected mode, or a usable flat 4 GiB expand-up segment allowing the access.
pub fn segment_is_flat(ctx: &JitContext, seg: Register, write: bool) -> bool {
    check_segment(ctx, seg, 0, 1, write).is_ok()
        && (!matches!(
            ctx.cpu.mode(),
            ExecMode::Protected16 | ExecMode::Protected32
        ) || (ctx.cpu.seg[seg_index(seg)].limit == u32::MAX
            && check_segment(ctx, seg, 0xffff_fff0, 16, write).is_ok()))
}

/// The linear address of the instruction's memory operand for an access of `size` bytes,
/// after the segment checks of [`check_segment`] and the 64-bit canonical check of
/// [`mem_linear_access`].
#[inline]
pub fn mem_access(
    ctx: &JitContext,
    insn: &Instruction,
    size: u32,
    write: bool,
) -> Result<u64, Fault> {
    // One mode computation and one address computation for the checks and the address.
    let mode = ctx.cpu.mode();
    let offset = effective_offset(&ctx.cpu, insn);
    check_segment_in(ctx, mode, insn.memory_segment(), offset, size, write)?;
    linear_access_in(ctx, mode, insn, offset)
}

/// The segment checks of [`check_segment`] for `size` bytes of the memory operand, `extra`
/// bytes further on (x87 and SSE operands, which compute their linear addresses themselves).
pub fn check_mem_operand(
    ctx: &JitContext,
    insn: &Instruction,
    extra: u64,
    size: u32,
    write: bool,
) -> Result<(), Fault> {
    let off = effective_offset(&ctx.cpu, insn).wrapping_add(extra) & mask(addr_size(insn));
    check_segment(ctx, insn.memory_segment(), off, size, write)
}

/// Linear address of the memory operand `extra` bytes further on (far pointers, bit strings).
#[inline]
pub fn mem_linear_plus(ctx: &JitContext, insn: &Instruction, extra: u64) -> u64 {
    let off = effective_offset(&ctx.cpu, insn).wrapping_add(extra) & mask(addr_size(insn));
    linear(ctx, insn.memory_segment(), off)
}

/// Size in bytes of operand `i` (register or memory); immediates take `default`.
#[inline]
pub fn op_size(insn: &Instruction, i: u32, default: u32) -> u32 {
    match insn.op_kind(i) {
        OpKind::Register => insn.op_register(i).size() as u32,
        OpKind::Memory => insn.memory_size().size() as u32,
        _ => default,
    }
}

/// The value of operand `i`, `size` bytes wide (immediates are sign-extended then truncated).
#[inline]
pub fn read_op(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    i: u32,
    size: u32,
) -> Result<u64, Fault> {
    match insn.op_kind(i) {
        OpKind::Register => Ok(reg_read(&ctx.cpu, insn.op_register(i))),
        OpKind::Memory => {
            let la = mem_access(ctx, insn, size, false)?;
            mem::read(ctx, rt, la, size)
        }
        OpKind::Immediate8
        | OpKind::Immediate8_2nd
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => Ok(insn.immediate(i) & mask(size)),
        _ => Err(Fault::ud()),
    }
}

/// Store `v` into operand `i` (register or memory), `size` bytes wide.
#[inline]
pub fn write_op(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    insn: &Instruction,
    i: u32,
    size: u32,
    v: u64,
) -> Result<(), Fault> {
    match insn.op_kind(i) {
        OpKind::Register => {
            reg_write(&mut ctx.cpu, insn.op_register(i), v);
            Ok(())
        }
        OpKind::Memory => {
            let la = mem_access(ctx, insn, size, true)?;
            mem::write(ctx, rt, la, size, v & mask(size))
        }
        _ => Err(Fault::ud()),
    }
}

/// A resolved read-modify-write destination: the register or the linear address, computed
/// once so the write goes where the read came from.
#[derive(Debug, Clone, Copy)]
pub enum Place {
    Reg(Register),
    Mem(MemPlace),
}

/// A memory place: its linear address, and the segment register and offset it came from (for
/// the segment checks of each access).
#[derive(Debug, Clone, Copy)]
pub struct MemPlace {
    pub la: u64,
    seg: Register,
    offset: u64,
}

impl Place {
    /// Resolve operand `i`.
    ///
    /// Always inlined: returned through memory, the `Result<Place, _>` is written field by
    /// field and read back in unaligned words, and the failed store forwarding cost more than
    /// half of ALU and shift instructions' interpretation time.
    #[inline(always)]
    pub fn of(ctx: &JitContext, insn: &Instruction, i: u32) -> Result<Place, Fault> {
        match insn.op_kind(i) {
            OpKind::Register => Ok(Place::Reg(insn.op_register(i))),
            OpKind::Memory => {
                let mode = ctx.cpu.mode();
                let offset = effective_offset(&ctx.cpu, insn);
                Ok(Place::Mem(MemPlace {
                    la: linear_access_in(ctx, mode, insn, offset)?,
                    seg: insn.memory_segment(),
                    offset,
                }))
            }
            _ => Err(Fault::ud()),
        }
    }
    /// The memory operand `extra` bytes further on (bit strings).
    pub fn mem_plus(ctx: &JitContext, insn: &Instruction, extra: u64) -> Place {
        Place::Mem(MemPlace {
            la: mem_linear_plus(ctx, insn, extra),
            seg: insn.memory_segment(),
            offset: effective_offset(&ctx.cpu, insn).wrapping_add(extra) & mask(addr_size(insn)),
        })
    }
    pub fn is_mem(&self) -> bool {
        matches!(self, Place::Mem(_))
    }
    #[inline(always)]
    pub fn read(self, ctx: &mut JitContext, rt: &mut Runtime, size: u32) -> Result<u64, Fault> {
        match self {
            Place::Reg(r) => Ok(reg_read(&ctx.cpu, r)),
            Place::Mem(m) => {
                check_segment(ctx, m.seg, m.offset, size, false)?;
                mem::read(ctx, rt, m.la, size)
            }
        }
    }
    #[inline(always)]
    pub fn write(
        self,
        ctx: &mut JitContext,
        rt: &mut Runtime,
        size: u32,
        v: u64,
    ) -> Result<(), Fault> {
        match self {
            Place::Reg(r) => {
                reg_write(&mut ctx.cpu, r, v);
                Ok(())
            }
            Place::Mem(m) => {
                check_segment(ctx, m.seg, m.offset, size, true)?;
                mem::write(ctx, rt, m.la, size, v & mask(size))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_views_alias_correctly() {
        let mut cpu = CpuState::reset();
        cpu.gpr[0] = 0x1122_3344_5566_7788;
        assert_eq!(reg_read(&cpu, Register::AL), 0x88);
        assert_eq!(reg_read(&cpu, Register::AH), 0x77);
        assert_eq!(reg_read(&cpu, Register::AX), 0x7788);
        assert_eq!(reg_read(&cpu, Register::EAX), 0x5566_7788);
        reg_write(&mut cpu, Register::AH, 0xab);
        assert_eq!(cpu.gpr[0], 0x1122_3344_5566_ab88);
        reg_write(&mut cpu, Register::AX, 0x1234);
        assert_eq!(cpu.gpr[0], 0x1122_3344_5566_1234);
        reg_write(&mut cpu, Register::EAX, 0xdead_beef);
        assert_eq!(cpu.gpr[0], 0xdead_beef);
        cpu.gpr[7] = 0x1ff;
        assert_eq!(reg_read(&cpu, Register::DIL), 0xff);
        reg_write(&mut cpu, Register::BH, 0x12);
        assert_eq!(cpu.gpr[3], 0x1200);
        assert_eq!(seg_index(Register::SS), 2);
    }

    #[test]
    fn sign_extension_and_masks() {
        assert_eq!(sext(0x80, 1), 0xffff_ffff_ffff_ff80);
        assert_eq!(sext(0x7fff, 2), 0x7fff);
        assert_eq!(mask(4), 0xffff_ffff);
        assert_eq!(sign_bit(2), 0x8000);
    }
}
