//! x87 control instructions (SDM Vol. 1 8.3.12 and 8.1.10): FINIT, FCLEX, FLDCW/FSTCW,
//! FSTSW, FSTENV/FLDENV, FSAVE/FRSTOR in their 16- and 32-bit, real- and protected-mode
//! layouts (SDM Vol. 1 Figures 8-9 to 8-12), FFREE, FINCSTP/FDECSTP and FNOP.

use iced_x86::{MemorySize, Mnemonic as M, OpKind, Register};

use super::float80::F80;
use super::state::fsw;
use super::X87Insn;
use crate::exception::Fault;
use crate::interp::operand::reg_write;
use crate::interp::{Exec, Flow};

pub(super) fn execute(x: &mut X87Insn) -> Exec {
    match x.insn.mnemonic() {
        M::Fninit | M::Finit => x.st.init(),
        M::Fnclex | M::Fclex => {
            x.st.fsw &= !(fsw::EXCEPTIONS | fsw::SF | fsw::ES | fsw::B);
        }
        M::Fldcw => {
            let v = x.read(0, 2)? as u16;
            // Bits 6, 7 and 13-15 are reserved; bit 6 reads back as 1 (SDM Vol. 1 8.1.5).
            x.st.fcw = (v & 0x1f3f) | 0x40;
            x.st.update_summary();
        }
        M::Fnstcw | M::Fstcw => {
            let v = x.st.fcw;
            x.write(0, 2, u64::from(v))?;
        }
        M::Fnstsw | M::Fstsw => {
            let v = u64::from(x.st.fsw);
            if x.insn.op_kind(0) == OpKind::Register {
                reg_write(&mut x.ctx.cpu, Register::AX, v);
            } else {
                x.write(0, 2, v)?;
            }
        }
        M::Fnstenv | M::Fstenv => {
            store_env(x)?;
            // FSTENV masks all exceptions after storing (SDM Vol. 2A FSTENV).
            x.st.fcw |= fsw::EXCEPTIONS;
            x.st.update_summary();
        }
        M::Fldenv => {
            load_env(x)?;
        }
        M::Fnsave | M::Fsave => {
            let off = store_env(x)?;
            for i in 0..8 {
                let v = x.st.st(i);
                x.write_f80(off + 10 * i as u64, v)?;
            }
            x.st.init();
        }
        M::Frstor => {
            let off = env_size(x);
            let mut regs = [F80::ZERO; 8];
            for (i, r) in regs.iter_mut().enumerate() {
                *r = x.read_f80(off + 10 * i as u64)?;
            }
            load_env(x)?;
            for (i, r) in regs.into_iter().enumerate() {
                let p = x.st.phys(i);
                x.st.regs[p] = r;
            }
        }
        M::Ffree | M::Ffreep => {
            let i = x.st_index(0);
            x.st.free(i);
            if x.insn.mnemonic() == M::Ffreep {
                x.st.set_top(x.st.top() + 1);
            }
        }
        M::Fincstp | M::Fdecstp => {
            let top = x.st.top();
            let t = if x.insn.mnemonic() == M::Fincstp {
                top + 1
            } else {
                top.wrapping_sub(1)
            };
            x.st.set_top(t);
            x.st.set_c1(false);
        }
        // FNOP; FENI/FDISI (8087 only) and FSETPM (287 only) are no-ops on the 387 and later.
        _ => {}
    }
    Ok(Flow::Next)
}

/// 32-bit layouts when the operand size is 32 bits (m28/m108), else the 16-bit ones.
fn is_32(x: &X87Insn) -> bool {
    matches!(
        x.insn.memory_size(),
        MemorySize::FpuEnv28 | MemorySize::FpuState108
    )
}

fn env_size(x: &X87Insn) -> u64 {
    if is_32(x) {
        28
    } else {
        14
    }
}

/// Real-address or virtual-8086 mode: the real-mode layouts with linear pointers.
fn real_format(x: &X87Insn) -> bool {
    x.ctx.cpu.cr0 & vcpu::state::cr0::PE == 0 || x.ctx.cpu.rflags & vcpu::state::rflags::VM != 0
}

/// Store the environment (FCW, FSW, full tag word, pointers); returns its size.
fn store_env(x: &mut X87Insn) -> Result<u64, Fault> {
    let s = *x.st;
    let tags = s.full_tag_word();
    let fop = u32::from(s.fop & 0x7ff);
    let words: Vec<u32> = if real_format(x) {
        // Real mode: 20/32-bit linear pointers split across two fields.
        let ip = s.fip.wrapping_add(u32::from(s.fcs) << 4);
        let dp = s.fdp.wrapping_add(u32::from(s.fds) << 4);
        if is_32(x) {
            vec![
                u32::from(s.fcw) | 0xffff_0000,
                u32::from(s.fsw) | 0xffff_0000,
                u32::from(tags) | 0xffff_0000,
                (ip & 0xffff) | 0xffff_0000,
                ((ip >> 16) << 12) | fop,
                (dp & 0xffff) | 0xffff_0000,
                (dp >> 16) << 12,
            ]
        } else {
            vec![
                u32::from(s.fcw),
                u32::from(s.fsw),
                u32::from(tags),
                ip & 0xffff,
                (((ip >> 16) & 0xf) << 12) | fop,
                dp & 0xffff,
                ((dp >> 16) & 0xf) << 12,
            ]
        }
    } else if is_32(x) {
        vec![
            u32::from(s.fcw) | 0xffff_0000,
            u32::from(s.fsw) | 0xffff_0000,
            u32::from(tags) | 0xffff_0000,
            s.fip,
            u32::from(s.fcs) | (fop << 16),
            s.fdp,
            u32::from(s.fds) | 0xffff_0000,
        ]
    } else {
        vec![
            u32::from(s.fcw),
            u32::from(s.fsw),
            u32::from(tags),
            s.fip & 0xffff,
            u32::from(s.fcs),
            s.fdp & 0xffff,
            u32::from(s.fds),
        ]
    };
    let (step, size) = if is_32(x) { (4u64, 4u32) } else { (2, 2) };
    // Probe the last byte first so a fault on a page crossing writes nothing.
    x.read(step * 7 - 1, 1)?;
    for (i, w) in words.iter().enumerate() {
        x.write(step * i as u64, size, u64::from(*w))?;
    }
    Ok(step * 7)
}

/// Load the environment.
fn load_env(x: &mut X87Insn) -> Result<(), Fault> {
    let (step, size) = if is_32(x) { (4u64, 4u32) } else { (2, 2) };
    let mut w = [0u32; 7];
    for (i, v) in w.iter_mut().enumerate() {
        *v = x.read(step * i as u64, size)? as u32;
    }
    let (real, wide) = (real_format(x), is_32(x));
    let s = &mut *x.st;
    s.fcw = (w[0] as u16 & 0x1f3f) | 0x40;
    s.fsw = w[1] as u16;
    s.set_full_tag_word(w[2] as u16);
    if real {
        let hi_mask = if wide { 0xffff } else { 0xf };
        s.fip = (w[3] & 0xffff) | (((w[4] >> 12) & hi_mask) << 16);
        s.fop = (w[4] & 0x7ff) as u16;
        s.fcs = 0;
        s.fdp = (w[5] & 0xffff) | (((w[6] >> 12) & hi_mask) << 16);
        s.fds = 0;
    } else {
        s.fip = w[3];
        s.fcs = w[4] as u16;
        s.fop = if wide {
            ((w[4] >> 16) & 0x7ff) as u16
        } else {
            0
        };
        s.fdp = w[5];
        s.fds = w[6] as u16;
    }
    s.update_summary();
    Ok(())
}
