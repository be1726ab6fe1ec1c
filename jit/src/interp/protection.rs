//! Protection-checking instructions that report through ZF instead of faulting: LAR, LSL,
//! VERR, VERW and ARPL (SDM Vol. 2A/2B; Vol. 3A 5.10.4). They are valid only in protected mode.

use iced_x86::{Instruction, Mnemonic as M};
use vcpu::state::rflags;
use vcpu::ExecMode;

use super::operand::{mask, op_size, read_op, reg_write, Place};
use super::{Exec, Flow};
use crate::context::JitContext;
use crate::exception::{Fault, GP_VECTOR};
use crate::runtime::Runtime;
use crate::segment::{self, RawDescriptor};

fn set_zf(ctx: &mut JitContext, zf: bool) {
    ctx.flags.materialize(&mut ctx.cpu.rflags);
    if zf {
        ctx.cpu.rflags |= rflags::ZF;
    } else {
        ctx.cpu.rflags &= !rflags::ZF;
    }
}

/// The descriptor `sel` names if it is visible at the current privilege (CPL and RPL no more
/// privileged than its DPL, except conforming code), or None. Faults other than the
/// table-limit #GP (a page fault reading the table) propagate.
fn visible_descriptor(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    sel: u16,
) -> Result<Option<RawDescriptor>, Fault> {
    if sel & segment::SELECTOR_INDEX_MASK == 0 && sel & segment::SELECTOR_TI == 0 {
        return Ok(None);
    }
    let d = match segment::read_descriptor(ctx, rt, sel) {
        Ok(d) => d,
        Err(f) if f.vector == GP_VECTOR => return Ok(None),
        Err(f) => return Err(f),
    };
    let typ = d.typ();
    let conforming_code =
        d.is_code_or_data() && typ & segment::TYPE_CODE != 0 && typ & segment::TYPE_CONFORMING != 0;
    let rpl = (sel & segment::SELECTOR_RPL) as u8;
    if !conforming_code && (ctx.cpu.cpl() > d.dpl() || rpl > d.dpl()) {
        return Ok(None);
    }
    Ok(Some(d))
}

/// System descriptor types LAR accepts (SDM Vol. 2A LAR, Table 3-55) and LSL accepts (LSL).
const LAR_SYSTEM_TYPES: [u8; 8] = [0x1, 0x2, 0x3, 0x4, 0x5, 0x9, 0xb, 0xc];
const LSL_SYSTEM_TYPES: [u8; 5] = [0x1, 0x2, 0x3, 0x9, 0xb];

pub(super) fn protection(ctx: &mut JitContext, rt: &mut Runtime, insn: &Instruction) -> Exec {
    let mode = ctx.cpu.mode();
    if mode == ExecMode::Real || mode == ExecMode::Virtual8086 {
        return Err(Fault::ud());
    }
    match insn.mnemonic() {
        M::Arpl => {
            let dest = Place::of(ctx, insn, 0)?;
            let d = dest.read(ctx, rt, 2)?;
            let s = read_op(ctx, rt, insn, 1, 2)?;
            let adjust = d & 3 < s & 3;
            if adjust {
                dest.write(ctx, rt, 2, (d & !3) | (s & 3))?;
            }
            set_zf(ctx, adjust);
        }
        M::Verr | M::Verw => {
            let size = op_size(insn, 0, 2);
            let sel = read_op(ctx, rt, insn, 0, size)? as u16;
            let ok = match visible_descriptor(ctx, rt, sel)? {
                Some(d) if d.is_code_or_data() => {
                    let typ = d.typ();
                    let code = typ & segment::TYPE_CODE != 0;
                    let rw = typ & segment::TYPE_WRITABLE_READABLE != 0;
                    if insn.mnemonic() == M::Verr {
                        !code || rw
                    } else {
                        !code && rw
                    }
                }
                _ => false,
            };
            set_zf(ctx, ok);
        }
        _ => {
            // LAR / LSL r, r/m16.
            let size = op_size(insn, 0, 4);
            let src_size = op_size(insn, 1, 2);
            let sel = read_op(ctx, rt, insn, 1, src_size)? as u16;
            let lar = insn.mnemonic() == M::Lar;
            let value = match visible_descriptor(ctx, rt, sel)? {
                Some(d) => {
                    let allowed = d.is_code_or_data()
                        || if lar {
                            LAR_SYSTEM_TYPES.contains(&d.typ())
                        } else {
                            LSL_SYSTEM_TYPES.contains(&d.typ())
                        };
                    allowed.then(|| {
                        if lar {
                            u64::from(d.high & 0x00f0_ff00)
                        } else {
                            u64::from(d.segment(sel).limit)
                        }
                    })
                }
                None => None,
            };
            if let Some(v) = value {
                reg_write(&mut ctx.cpu, insn.op_register(0), v & mask(size));
            }
            set_zf(ctx, value.is_some());
        }
    }
    Ok(Flow::Next)
}
