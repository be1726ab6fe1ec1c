//! The x87 register file decoded from `CpuState::fx` (FXSAVE layout, SDM Vol. 1 10.5.1,
//! Table 10-2) for the duration of one instruction, and encoded back when it completes: a
//! faulting instruction never stores its copy, so x87 faults are precise.
//!
//! In the FXSAVE image the data registers sit in stack order (the slot at 32 + 16*i holds
//! ST(i)) while the abridged tag byte is indexed by physical register, as FXSAVE stores them.
//! Here the registers are kept by physical number R0..R7, ST(i) being R((TOP + i) mod 8).

use vcpu::FxArea;

use super::float80::{Class, F80};

/// FSW bits (SDM Vol. 1 8.1.3, Figure 8-4).
pub mod fsw {
    /// Exception flags IE..PE.
    pub const EXCEPTIONS: u16 = 0x3f;
    /// Stack fault.
    pub const SF: u16 = 1 << 6;
    /// Exception summary status.
    pub const ES: u16 = 1 << 7;
    pub const C0: u16 = 1 << 8;
    pub const C1: u16 = 1 << 9;
    pub const C2: u16 = 1 << 10;
    pub const TOP_SHIFT: u16 = 11;
    pub const TOP: u16 = 7 << TOP_SHIFT;
    pub const C3: u16 = 1 << 14;
    /// FPU busy (mirrors ES on the 387 and later).
    pub const B: u16 = 1 << 15;
    pub const CONDITION: u16 = C0 | C1 | C2 | C3;
}

/// FCW after FINIT/FNINIT: all exceptions masked, 64-bit precision, round to nearest
/// (SDM Vol. 1 8.1.5, Figure 8-6 and Table 8-2 note).
pub const FCW_INIT: u16 = 0x037f;

/// Tag values of the full tag word (SDM Vol. 1 8.1.7, Figure 8-7).
pub mod tag {
    pub const VALID: u16 = 0;
    pub const ZERO: u16 = 1;
    pub const SPECIAL: u16 = 2;
    pub const EMPTY: u16 = 3;
}

/// The x87 FPU state of one instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct X87 {
    pub fcw: u16,
    pub fsw: u16,
    /// Abridged tags: bit i set = physical register Ri holds a value.
    pub used: u8,
    /// Physical registers R0..R7.
    pub regs: [F80; 8],
    /// Last instruction opcode (11 bits), its offset and CS selector.
    pub fop: u16,
    pub fip: u32,
    pub fcs: u16,
    /// Last data operand offset and its segment selector.
    pub fdp: u32,
    pub fds: u16,
}

impl X87 {
    /// Decode the FXSAVE image (32-bit format: FIP/FCS at 8/12, FDP/FDS at 16/20).
    pub fn load(fx: &FxArea) -> Self {
        let fsw = fx.u16_at(FxArea::FSW);
        let top = usize::from((fsw >> fsw::TOP_SHIFT) & 7);
        let mut regs = [F80::ZERO; 8];
        for (i, r) in regs.iter_mut().enumerate() {
            let slot = (i + 8 - top) & 7;
            let off = FxArea::ST0 + 16 * slot;
            *r = F80::from_bytes(&fx.0[off..off + 10]);
        }
        X87 {
            fcw: fx.u16_at(FxArea::FCW),
            fsw,
            used: fx.0[FxArea::FTW],
            regs,
            fop: fx.u16_at(FxArea::FOP) & 0x7ff,
            fip: fx.u32_at(FxArea::FIP),
            fcs: fx.u16_at(FxArea::FIP + 4),
            fdp: fx.u32_at(FxArea::FDP),
            fds: fx.u16_at(FxArea::FDP + 4),
        }
    }

    /// Encode into the FXSAVE image (the SSE/MXCSR part is left alone; the bytes 10..16 of
    /// each register slot are written as zero, as FXSAVE does).
    pub fn store(&self, fx: &mut FxArea) {
        let a = &mut fx.0;
        a[FxArea::FCW..FxArea::FCW + 2].copy_from_slice(&self.fcw.to_le_bytes());
        a[FxArea::FSW..FxArea::FSW + 2].copy_from_slice(&self.fsw.to_le_bytes());
        a[FxArea::FTW] = self.used;
        a[FxArea::FTW + 1] = 0;
        a[FxArea::FOP..FxArea::FOP + 2].copy_from_slice(&self.fop.to_le_bytes());
        a[FxArea::FIP..FxArea::FIP + 4].copy_from_slice(&self.fip.to_le_bytes());
        a[FxArea::FIP + 4..FxArea::FIP + 6].copy_from_slice(&self.fcs.to_le_bytes());
        a[FxArea::FIP + 6..FxArea::FIP + 8].fill(0);
        a[FxArea::FDP..FxArea::FDP + 4].copy_from_slice(&self.fdp.to_le_bytes());
        a[FxArea::FDP + 4..FxArea::FDP + 6].copy_from_slice(&self.fds.to_le_bytes());
        a[FxArea::FDP + 6..FxArea::FDP + 8].fill(0);
        for i in 0..8 {
            let off = FxArea::ST0 + 16 * i;
            a[off..off + 10].copy_from_slice(&self.st(i).to_bytes());
            a[off + 10..off + 16].fill(0);
        }
    }

    pub fn top(&self) -> usize {
        usize::from((self.fsw >> fsw::TOP_SHIFT) & 7)
    }
    pub fn set_top(&mut self, top: usize) {
        self.fsw = (self.fsw & !fsw::TOP) | (((top & 7) as u16) << fsw::TOP_SHIFT);
    }
    /// Physical register number of ST(i).
    pub fn phys(&self, i: usize) -> usize {
        (self.top() + i) & 7
    }
    pub fn st(&self, i: usize) -> F80 {
        self.regs[self.phys(i)]
    }
    pub fn is_empty(&self, i: usize) -> bool {
        self.used & (1 << self.phys(i)) == 0
    }
    /// Write ST(i) and tag it in use.
    pub fn set_st(&mut self, i: usize, v: F80) {
        let p = self.phys(i);
        self.regs[p] = v;
        self.used |= 1 << p;
    }
    /// Tag ST(i) empty.
    pub fn free(&mut self, i: usize) {
        self.used &= !(1 << self.phys(i));
    }
    /// Decrement TOP and store the new ST(0).
    pub fn push(&mut self, v: F80) {
        self.set_top(self.top().wrapping_sub(1));
        self.set_st(0, v);
    }
    /// Tag ST(0) empty and increment TOP.
    pub fn pop(&mut self) {
        self.free(0);
        self.set_top(self.top() + 1);
    }

    pub fn set_condition(&mut self, c3: bool, c2: bool, c1: bool, c0: bool) {
        self.fsw &= !fsw::CONDITION;
        self.fsw |= if c3 { fsw::C3 } else { 0 }
            | if c2 { fsw::C2 } else { 0 }
            | if c1 { fsw::C1 } else { 0 }
            | if c0 { fsw::C0 } else { 0 };
    }
    pub fn set_c1(&mut self, c1: bool) {
        self.fsw = (self.fsw & !fsw::C1) | if c1 { fsw::C1 } else { 0 };
    }

    /// Whether exception flags `e` are all masked.
    pub fn masked(&self, e: u8) -> bool {
        self.fcw & u16::from(e) == u16::from(e)
    }
    /// Record exception flags; an unmasked one sets ES and B (SDM Vol. 1 8.1.3.1).
    pub fn raise(&mut self, e: u8) {
        self.fsw |= u16::from(e);
        self.update_summary();
    }
    /// Recompute ES and B from the flags and masks.
    pub fn update_summary(&mut self) {
        if self.fsw & !self.fcw & fsw::EXCEPTIONS != 0 {
            self.fsw |= fsw::ES | fsw::B;
        } else {
            self.fsw &= !(fsw::ES | fsw::B);
        }
    }

    /// The full tag word (SDM Vol. 1 8.1.7), indexed by physical register.
    pub fn full_tag_word(&self) -> u16 {
        let mut w = 0u16;
        for p in 0..8 {
            let t = if self.used & (1 << p) == 0 {
                tag::EMPTY
            } else {
                match self.regs[p].class() {
                    Class::Zero => tag::ZERO,
                    Class::Normal => tag::VALID,
                    _ => tag::SPECIAL,
                }
            };
            w |= t << (2 * p);
        }
        w
    }
    /// Take the in-use bits of a full tag word (non-empty = in use).
    pub fn set_full_tag_word(&mut self, w: u16) {
        self.used = 0;
        for p in 0..8 {
            if (w >> (2 * p)) & 3 != tag::EMPTY {
                self.used |= 1 << p;
            }
        }
    }

    /// FNINIT (SDM Vol. 1 8.1.10, Table 8-?): FCW 037FH, FSW 0, all tags empty, pointers 0;
    /// the data registers keep their contents.
    pub fn init(&mut self) {
        self.fcw = FCW_INIT;
        self.fsw = 0;
        self.used = 0;
        self.fop = 0;
        self.fip = 0;
        self.fcs = 0;
        self.fdp = 0;
        self.fds = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fxsave_image_keeps_stack_order_and_physical_tags() {
        let mut fx = FxArea::reset();
        let mut s = X87::load(&fx);
        s.init();
        s.push(F80::ONE); // R7 = 1.0, TOP = 7
        s.push(F80::ZERO); // R6 = 0.0, TOP = 6
        s.store(&mut fx);
        assert_eq!(fx.u16_at(FxArea::FSW) >> 11, 6);
        assert_eq!(fx.0[FxArea::FTW], 0b1100_0000);
        // ST(0) = 0.0 in slot 0, ST(1) = 1.0 in slot 1.
        assert_eq!(&fx.0[32..42], &[0u8; 10]);
        assert_eq!(fx.0[48 + 7], 0x80);
        assert_eq!(fx.u16_at(48 + 8), 0x3fff);
        let back = X87::load(&fx);
        assert_eq!(back, s);
        // Full tags: R6 zero (01), R7 valid (00), others empty (11).
        assert_eq!(back.full_tag_word(), 0x1fff);
    }

    #[test]
    fn unmasked_flag_sets_summary() {
        let mut s = X87::load(&FxArea::reset());
        s.raise(1 << 5);
        assert_eq!(s.fsw & fsw::ES, 0, "PE masked by FCW 037F");
        s.fcw &= !(1 << 2);
        s.raise(1 << 2);
        assert_eq!(s.fsw & (fsw::ES | fsw::B), fsw::ES | fsw::B);
    }
}
