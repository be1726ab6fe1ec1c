//! Segment register loads and descriptor-table access.
//!
//! Real mode (and virtual-8086 mode) loads only change the selector and the base (selector * 16),
//! so "unreal mode" limits survive, as on hardware (SDM Vol. 3A 20.1.1). Protected mode reads
//! the descriptor from the GDT or LDT, checks type, privilege and presence (SDM Vol. 3A 5.5-5.8
//! and the MOV/POP/far-JMP pseudo-code in Vol. 2), sets the accessed bit, and caches it in the
//! hidden part of the register. Segment limits are not checked on memory accesses yet.

use vcpu::state::cr0;
use vcpu::{ExecMode, Segment, SegmentIndex};

use crate::context::JitContext;
use crate::exception::Fault;
use crate::mem;
use crate::runtime::Runtime;

/// Selector fields (SDM Vol. 3A 3.4.2).
pub const SELECTOR_RPL: u16 = 3;
pub const SELECTOR_TI: u16 = 1 << 2;
pub const SELECTOR_INDEX_MASK: u16 = !7;

/// Descriptor type bits for code/data segments (SDM Vol. 3A 3.4.5.1, Table 3-1).
pub const TYPE_ACCESSED: u8 = 1;
/// Data: writable. Code: readable.
pub const TYPE_WRITABLE_READABLE: u8 = 2;
/// Code: conforming. Data: expand-down.
pub const TYPE_CONFORMING: u8 = 4;
pub const TYPE_CODE: u8 = 8;

/// The error code of a fault about `sel` (SDM Vol. 3A 6.13): the selector without RPL.
#[inline]
pub fn selector_error(sel: u16) -> u32 {
    u32::from(sel & !SELECTOR_RPL)
}

/// The two dwords of a system or segment descriptor, and its linear address.
#[derive(Debug, Clone, Copy)]
pub struct RawDescriptor {
    pub low: u32,
    pub high: u32,
    pub address: u64,
}

impl RawDescriptor {
    pub fn segment(&self, sel: u16) -> Segment {
        Segment::from_descriptor(sel, self.low, self.high)
    }
    /// S bit: code/data (true) or system (false).
    pub fn is_code_or_data(&self) -> bool {
        self.high & (1 << 12) != 0
    }
    pub fn typ(&self) -> u8 {
        ((self.high >> 8) & 0xf) as u8
    }
    pub fn dpl(&self) -> u8 {
        ((self.high >> 13) & 3) as u8
    }
    pub fn present(&self) -> bool {
        self.high & (1 << 15) != 0
    }
}

/// Read the descriptor `sel` selects from the GDT or LDT; #GP(sel) if it lies beyond the table
/// limit.
pub fn read_descriptor(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    sel: u16,
) -> Result<RawDescriptor, Fault> {
    let (base, limit) = if sel & SELECTOR_TI != 0 {
        let ldtr = ctx.cpu.ldtr;
        if !ldtr.present() {
            return Err(Fault::gp(selector_error(sel)));
        }
        (ldtr.base, u64::from(ldtr.limit))
    } else {
        (ctx.cpu.gdtr.base, u64::from(ctx.cpu.gdtr.limit))
    };
    let index = u64::from(sel & SELECTOR_INDEX_MASK);
    if index + 7 > limit {
        return Err(Fault::gp(selector_error(sel)));
    }
    let address = base.wrapping_add(index) & mem::system_mask(ctx);
    let low = mem::read_system(ctx, rt, address, 4)? as u32;
    let high =
        mem::read_system(ctx, rt, address.wrapping_add(4) & mem::system_mask(ctx), 4)? as u32;
    Ok(RawDescriptor { low, high, address })
}

/// Set the accessed bit of a code/data descriptor in memory (SDM Vol. 3A 3.4.5.1).
pub fn set_accessed(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    d: &mut RawDescriptor,
) -> Result<(), Fault> {
    if d.typ() & TYPE_ACCESSED == 0 {
        d.high |= u32::from(TYPE_ACCESSED) << 8;
        mem::write_system(
            ctx,
            rt,
            d.address.wrapping_add(4) & mem::system_mask(ctx),
            4,
            u64::from(d.high),
        )?;
    }
    Ok(())
}

/// Whether segment loads follow real-mode rules (real and virtual-8086 mode).
#[inline]
fn real_mode_rules(ctx: &JitContext) -> bool {
    ctx.cpu.cr0 & cr0::PE == 0 || ctx.cpu.mode() == ExecMode::Virtual8086
}

/// The unusable SS a null selector leaves in 64-bit mode; its DPL keeps the CPL.
pub fn null_stack_segment(sel: u16, cpl: u8) -> Segment {
    Segment {
        selector: sel,
        attr: u16::from(cpl) << 5,
        ..Segment::default()
    }
}

/// Load a data segment register (ES, SS, DS, FS, GS) as MOV Sreg, POP Sreg, LDS etc. do.
pub fn load_segment(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    seg: SegmentIndex,
    sel: u16,
) -> Result<(), Fault> {
    if real_mode_rules(ctx) {
        let v86 = ctx.cpu.mode() == ExecMode::Virtual8086;
        let s = &mut ctx.cpu.seg[seg as usize];
        if v86 {
            // Virtual-8086 segments are always 64 KiB read/write (SDM Vol. 3A 20.2.1).
            *s = Segment::real_mode(sel);
        } else {
            s.selector = sel;
            s.base = u64::from(sel) << 4;
        }
        return Ok(());
    }
    let cpl = ctx.cpu.cpl();
    let rpl = (sel & SELECTOR_RPL) as u8;
    if sel & SELECTOR_INDEX_MASK == 0 && sel & SELECTOR_TI == 0 {
        if seg == SegmentIndex::Ss {
            // 64-bit mode allows a null SS outside ring 3 with RPL = CPL (SDM Vol. 2B MOV).
            if ctx.cpu.mode() == ExecMode::Long64 && cpl != 3 && rpl == cpl {
                ctx.cpu.seg[seg as usize] = null_stack_segment(sel, cpl);
                return Ok(());
            }
            return Err(Fault::gp(0));
        }
        // A null selector loads an unusable segment (SDM Vol. 3A 3.4.2).
        ctx.cpu.seg[seg as usize] = Segment {
            selector: sel,
            ..Segment::default()
        };
        return Ok(());
    }
    let mut d = read_descriptor(ctx, rt, sel)?;
    let typ = d.typ();
    let err = selector_error(sel);
    if !d.is_code_or_data() {
        return Err(Fault::gp(err));
    }
    if seg == SegmentIndex::Ss {
        let writable_data = typ & TYPE_CODE == 0 && typ & TYPE_WRITABLE_READABLE != 0;
        if rpl != cpl || d.dpl() != cpl || !writable_data {
            return Err(Fault::gp(err));
        }
        if !d.present() {
            return Err(Fault::ss(err));
        }
    } else {
        let is_code = typ & TYPE_CODE != 0;
        if is_code && typ & TYPE_WRITABLE_READABLE == 0 {
            return Err(Fault::gp(err));
        }
        let conforming_code = is_code && typ & TYPE_CONFORMING != 0;
        if !conforming_code && (rpl > d.dpl() || cpl > d.dpl()) {
            return Err(Fault::gp(err));
        }
        if !d.present() {
            return Err(Fault::np(err));
        }
    }
    set_accessed(ctx, rt, &mut d)?;
    ctx.cpu.seg[seg as usize] = d.segment(sel);
    Ok(())
}

/// The CS value a far JMP/CALL to `sel` loads in protected mode (SDM Vol. 2A, JMP "Far jumps
/// in protected mode"): a code segment, conforming with DPL <= CPL or non-conforming with
/// RPL <= CPL and DPL == CPL, present. The RPL of the loaded selector becomes CPL. Call gates,
/// task gates and TSS descriptors are handled before this by `crate::interp::gate`; any system
/// descriptor here raises #GP(sel).
pub fn far_transfer_target(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    sel: u16,
) -> Result<Segment, Fault> {
    if real_mode_rules(ctx) {
        let mut cs = ctx.cpu.seg[SegmentIndex::Cs as usize];
        cs.selector = sel;
        cs.base = u64::from(sel) << 4;
        return Ok(cs);
    }
    if sel & SELECTOR_INDEX_MASK == 0 && sel & SELECTOR_TI == 0 {
        return Err(Fault::gp(0));
    }
    let cpl = ctx.cpu.cpl();
    let mut d = read_descriptor(ctx, rt, sel)?;
    let err = selector_error(sel);
    let typ = d.typ();
    if !d.is_code_or_data() || typ & TYPE_CODE == 0 {
        return Err(Fault::gp(err));
    }
    let rpl = (sel & SELECTOR_RPL) as u8;
    if typ & TYPE_CONFORMING != 0 {
        if d.dpl() > cpl {
            return Err(Fault::gp(err));
        }
    } else if rpl > cpl || d.dpl() != cpl {
        return Err(Fault::gp(err));
    }
    if !d.present() {
        return Err(Fault::np(err));
    }
    set_accessed(ctx, rt, &mut d)?;
    Ok(d.segment((sel & !SELECTOR_RPL) | u16::from(cpl)))
}

/// The CS a far RET/IRET returns to with selector `sel` (SDM Vol. 2B RET, IRET): a present
/// code segment with RPL >= CPL; conforming needs DPL <= RPL, non-conforming DPL == RPL.
pub fn return_target(ctx: &mut JitContext, rt: &mut Runtime, sel: u16) -> Result<Segment, Fault> {
    if sel & SELECTOR_INDEX_MASK == 0 && sel & SELECTOR_TI == 0 {
        return Err(Fault::gp(0));
    }
    let cpl = ctx.cpu.cpl();
    let rpl = (sel & SELECTOR_RPL) as u8;
    let mut d = read_descriptor(ctx, rt, sel)?;
    let err = selector_error(sel);
    let typ = d.typ();
    if !d.is_code_or_data() || typ & TYPE_CODE == 0 || rpl < cpl {
        return Err(Fault::gp(err));
    }
    if typ & TYPE_CONFORMING != 0 {
        if d.dpl() > rpl {
            return Err(Fault::gp(err));
        }
    } else if d.dpl() != rpl {
        return Err(Fault::gp(err));
    }
    if !d.present() {
        return Err(Fault::np(err));
    }
    set_accessed(ctx, rt, &mut d)?;
    Ok(d.segment(sel))
}

/// The SS an inter-privilege transfer loads with selector `sel` for privilege `dpl`
/// (SDM Vol. 3A 6.12.1 and Vol. 2B RET/IRET): a present writable data segment with
/// RPL = DPL = `dpl`.
pub fn stack_target(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    sel: u16,
    dpl: u8,
    fault: fn(u32) -> Fault,
) -> Result<Segment, Fault> {
    let err = selector_error(sel);
    if sel & SELECTOR_INDEX_MASK == 0 && sel & SELECTOR_TI == 0 {
        return Err(fault(0));
    }
    let mut d = read_descriptor(ctx, rt, sel)?;
    let typ = d.typ();
    let writable_data = typ & TYPE_CODE == 0 && typ & TYPE_WRITABLE_READABLE != 0;
    if !d.is_code_or_data() || !writable_data || (sel & SELECTOR_RPL) as u8 != dpl || d.dpl() != dpl
    {
        return Err(fault(err));
    }
    if !d.present() {
        return Err(Fault::ss(err));
    }
    set_accessed(ctx, rt, &mut d)?;
    Ok(d.segment(sel))
}

/// Install a new CS. When paging is on and the privilege level changes, the TLB is flushed,
/// since its entries were filled under the old level's user/supervisor permissions.
pub fn set_cs(ctx: &mut JitContext, cs: Segment) {
    let old_cpl = ctx.cpu.cpl();
    ctx.cpu.seg[SegmentIndex::Cs as usize] = cs;
    if ctx.cpu.cr0 & cr0::PG != 0 && ctx.cpu.cpl() != old_cpl {
        ctx.flush_tlb();
    }
}

/// Install a new SS (CPL follows SS.DPL in protected mode, see `CpuState::cpl`).
pub fn set_ss(ctx: &mut JitContext, ss: Segment) {
    let old_cpl = ctx.cpu.cpl();
    ctx.cpu.seg[SegmentIndex::Ss as usize] = ss;
    if ctx.cpu.cr0 & cr0::PG != 0 && ctx.cpu.cpl() != old_cpl {
        ctx.flush_tlb();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exception::{GP_VECTOR, NP_VECTOR};
    use vcpu::{CpuState, GuestRam, RegionKind, RegionSpec};

    fn machine() -> (JitContext, Runtime) {
        let ram = GuestRam::new(&[RegionSpec {
            base: 0,
            size: 0x10000,
            kind: RegionKind::Ram,
        }])
        .unwrap();
        let mut ctx = JitContext::new(CpuState::reset());
        // GDT at 0x1000: null, flat code (0x08), flat data (0x10), not-present data (0x18).
        let gdt: [u64; 4] = [
            0,
            0x00cf_9a00_0000_ffff,
            0x00cf_9200_0000_ffff,
            0x00cf_1200_0000_ffff,
        ];
        for (i, d) in gdt.iter().enumerate() {
            ram_write(&ram, 0x1000 + 8 * i as u64, &d.to_le_bytes());
        }
        ctx.cpu.gdtr.base = 0x1000;
        ctx.cpu.gdtr.limit = 31;
        (ctx, Runtime::new(ram))
    }

    fn ram_write(ram: &GuestRam, gpa: u64, b: &[u8]) {
        ram.write_host(gpa, b).unwrap();
    }

    #[test]
    fn real_mode_load_keeps_limit() {
        let (mut ctx, mut rt) = machine();
        ctx.cpu.seg[SegmentIndex::Ds as usize].limit = 0xffff_ffff;
        load_segment(&mut ctx, &mut rt, SegmentIndex::Ds, 0x1234).unwrap();
        let ds = ctx.cpu.seg[SegmentIndex::Ds as usize];
        assert_eq!(
            (ds.base, ds.selector, ds.limit),
            (0x12340, 0x1234, 0xffff_ffff)
        );
    }

    #[test]
    fn protected_mode_loads_check_descriptors() {
        let (mut ctx, mut rt) = machine();
        ctx.cpu.cr0 |= cr0::PE;
        load_segment(&mut ctx, &mut rt, SegmentIndex::Ds, 0x10).unwrap();
        let ds = ctx.cpu.seg[SegmentIndex::Ds as usize];
        assert_eq!((ds.base, ds.limit), (0, 0xffff_ffff));
        // The accessed bit was set in memory.
        let mut b = [0u8; 8];
        rt.ram.read(0x1010, &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), 0x00cf_9300_0000_ffff);
        // Not present -> #NP(0x18); beyond the limit -> #GP(0x20); code into SS -> #GP(8).
        let f = load_segment(&mut ctx, &mut rt, SegmentIndex::Es, 0x18).unwrap_err();
        assert_eq!((f.vector, f.error_code), (NP_VECTOR, Some(0x18)));
        let f = load_segment(&mut ctx, &mut rt, SegmentIndex::Es, 0x23).unwrap_err();
        assert_eq!((f.vector, f.error_code), (GP_VECTOR, Some(0x20)));
        let f = load_segment(&mut ctx, &mut rt, SegmentIndex::Ss, 0x08).unwrap_err();
        assert_eq!((f.vector, f.error_code), (GP_VECTOR, Some(0x08)));
        // Null into DS is fine, into SS is #GP(0).
        load_segment(&mut ctx, &mut rt, SegmentIndex::Fs, 0).unwrap();
        assert!(!ctx.cpu.seg[SegmentIndex::Fs as usize].present());
        let f = load_segment(&mut ctx, &mut rt, SegmentIndex::Ss, 0).unwrap_err();
        assert_eq!((f.vector, f.error_code), (GP_VECTOR, Some(0)));
        let cs = far_transfer_target(&mut ctx, &mut rt, 0x08).unwrap();
        assert!(cs.db());
    }
}
