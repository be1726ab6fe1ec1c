//! The local APIC of the one CPU, in xAPIC mode, at its memory-mapped page (IA32_APIC_BASE,
//! default 0xFEE00000).
//!
//! Intel SDM Vol. 3A chapter 11 ("Advanced Programmable Interrupt Controller (APIC)") is the
//! reference; section numbers below are from it. What is modelled: the ID, version, TPR/APR/PPR,
//! EOI, LDR/DFR, SVR (software enable, spurious vector), the 256-bit ISR/TMR/IRR, the ESR, the
//! ICR for fixed and lowest-priority IPIs to this CPU (a single-CPU machine has nobody else to
//! send INIT/SIPI/NMI to: those are logged), and the local vector table: the timer (one-shot
//! and periodic; the TSC-deadline mode is not reported in CPUID), LINT0 (ExtINT: the 8259A's
//! output passes through, "virtual wire" mode), LINT1, thermal, performance and error entries.
//!
//! The timer is not ticked: like the 8254 (`crate::pit`), it remembers when its count was loaded
//! and computes the current count from the injected [`Clock`]. It counts at
//! [`TIMER_BASE_HZ`] divided by the divide configuration, as QEMU's does.
//!
//! This device knows nothing about the CPU: the machine's interrupt router
//! (`crate::interrupts`) feeds it interrupts, asks it for the vector to deliver, and tells it
//! when the CPU's IA32_APIC_BASE MSR or CR8 change.

use std::sync::Arc;

use crate::clock::Clock;
use crate::state::{StateError, StateReader, StateWriter};

/// IA32_APIC_BASE after reset: base 0xFEE00000, enabled (bit 11), bootstrap processor (bit 8)
/// (SDM 11.4.4, Figure 11-5).
pub const APIC_BASE_RESET: u64 = 0xfee0_0900;
/// The default physical address of the local APIC page.
pub const DEFAULT_BASE: u64 = 0xfee0_0000;
/// Size of the register page.
pub const MMIO_LEN: u64 = 0x1000;
/// IA32_APIC_BASE bits (11.4.4): BSP flag, APIC global enable, base address.
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
pub const APIC_BASE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// The timer's input clock before the divider (QEMU's local APIC counts nanoseconds too).
pub const TIMER_BASE_HZ: u64 = 1_000_000_000;

/// Register offsets in the APIC page (SDM Table 11-1).
pub mod reg {
    pub const ID: u64 = 0x020;
    pub const VERSION: u64 = 0x030;
    pub const TPR: u64 = 0x080;
    pub const APR: u64 = 0x090;
    pub const PPR: u64 = 0x0a0;
    pub const EOI: u64 = 0x0b0;
    pub const RRD: u64 = 0x0c0;
    pub const LDR: u64 = 0x0d0;
    pub const DFR: u64 = 0x0e0;
    pub const SVR: u64 = 0x0f0;
    pub const ISR: u64 = 0x100;
    pub const TMR: u64 = 0x180;
    pub const IRR: u64 = 0x200;
    pub const ESR: u64 = 0x280;
    pub const ICR_LOW: u64 = 0x300;
    pub const ICR_HIGH: u64 = 0x310;
    pub const LVT_TIMER: u64 = 0x320;
    pub const LVT_THERMAL: u64 = 0x330;
    pub const LVT_PERF: u64 = 0x340;
    pub const LVT_LINT0: u64 = 0x350;
    pub const LVT_LINT1: u64 = 0x360;
    pub const LVT_ERROR: u64 = 0x370;
    pub const TIMER_INITIAL: u64 = 0x380;
    pub const TIMER_CURRENT: u64 = 0x390;
    pub const TIMER_DIVIDE: u64 = 0x3e0;
}

/// Version register (11.4.8): version 0x14 (an integrated xAPIC), max LVT entry 5 (six
/// entries: timer, thermal, performance, LINT0, LINT1, error), no EOI-broadcast suppression.
pub const VERSION: u32 = 0x0005_0014;
/// LVT indices, in register order from 0x320.
const LVT_TIMER: usize = 0;
const LVT_THERMAL: usize = 1;
const LVT_PERF: usize = 2;
const LVT_LINT0: usize = 3;
const LVT_LINT1: usize = 4;
const LVT_ERROR: usize = 5;
const LVT_COUNT: usize = 6;
/// LVT fields (11.5.1, Figure 11-8).
pub const LVT_MASKED: u32 = 1 << 16;
pub const LVT_TIMER_PERIODIC: u32 = 1 << 17;
const LVT_VECTOR: u32 = 0xff;
const LVT_DELIVERY_MODE: u32 = 0x700;
pub const LVT_DM_FIXED: u32 = 0x000;
pub const LVT_DM_NMI: u32 = 0x400;
pub const LVT_DM_EXTINT: u32 = 0x700;
/// Writable bits per LVT entry: the timer has vector, mask and the one-shot/periodic mode bit
/// (TSC-deadline is not offered); LINT0/1 add delivery mode, polarity and trigger mode; the
/// error entry has vector and mask; thermal and performance have vector, delivery mode, mask.
const LVT_WRITABLE: [u32; LVT_COUNT] = [
    LVT_VECTOR | LVT_MASKED | LVT_TIMER_PERIODIC,
    LVT_VECTOR | LVT_DELIVERY_MODE | LVT_MASKED,
    LVT_VECTOR | LVT_DELIVERY_MODE | LVT_MASKED,
    LVT_VECTOR | LVT_DELIVERY_MODE | (1 << 13) | (1 << 15) | LVT_MASKED,
    LVT_VECTOR | LVT_DELIVERY_MODE | (1 << 13) | (1 << 15) | LVT_MASKED,
    LVT_VECTOR | LVT_MASKED,
];
/// Spurious-interrupt vector register (11.9, Figure 11-23): vector, APIC software enable, focus
/// processor checking. EOI-broadcast suppression (bit 12) is not offered.
pub const SVR_ENABLE: u32 = 1 << 8;
const SVR_WRITABLE: u32 = 0x3ff;
/// Error status register bits (11.5.3, Figure 11-9).
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
pub const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;
/// Interrupt command register fields (11.6.1, Figure 11-12).
const ICR_VECTOR: u32 = 0xff;
const ICR_DELIVERY_MODE: u32 = 0x700;
const ICR_DM_FIXED: u32 = 0x000;
const ICR_DM_LOWEST: u32 = 0x100;
const ICR_DEST_LOGICAL: u32 = 1 << 11;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
const ICR_SHORTHAND_SHIFT: u32 = 18;
const ICR_LOW_WRITABLE: u32 = 0x000c_cfff;
const SHORTHAND_NONE: u32 = 0;
const SHORTHAND_SELF: u32 = 1;
const SHORTHAND_ALL_INCLUDING_SELF: u32 = 2;
/// DFR model (11.6.2.2): flat (all ones in bits 31:28) or cluster (zero).
const DFR_MODEL_FLAT: u32 = 0xf;
/// Vectors 0-15 are reserved: an APIC refuses to send or accept them (11.5.2).
const FIRST_LEGAL_VECTOR: u8 = 16;
/// The broadcast destination of xAPIC mode (11.6.2.1, 11.6.2.2).
const BROADCAST: u8 = 0xff;

/// Everything the local APIC holds, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LapicState {
    /// The IA32_APIC_BASE value the CPU last reported.
    pub apic_base: u64,
    pub id: u32,
    pub tpr: u8,
    pub ldr: u32,
    pub dfr: u32,
    pub svr: u32,
    /// 256-bit registers as eight 32-bit words, word `i` holding vectors 32i..32i+31 (the
    /// layout of the APIC page).
    pub isr: [u32; 8],
    pub tmr: [u32; 8],
    pub irr: [u32; 8],
    /// ESR as software last latched it, and the errors detected since.
    pub esr: u32,
    pub esr_pending: u32,
    pub icr_low: u32,
    pub icr_high: u32,
    pub lvt: [u32; LVT_COUNT],
    pub divide_config: u32,
    pub initial_count: u32,
    /// Clock time (ns) when the initial count was loaded.
    pub timer_load_ns: u64,
    /// Timer expiries already turned into interrupts.
    pub timer_reported: u64,
}

impl Default for LapicState {
    /// The state after power-up or RESET (11.4.7.1).
    fn default() -> Self {
        Self {
            apic_base: APIC_BASE_RESET,
            id: 0,
            tpr: 0,
            ldr: 0,
            dfr: 0xffff_ffff,
            svr: 0xff,
            isr: [0; 8],
            tmr: [0; 8],
            irr: [0; 8],
            esr: 0,
            esr_pending: 0,
            icr_low: 0,
            icr_high: 0,
            lvt: [LVT_MASKED; LVT_COUNT],
            divide_config: 0,
            initial_count: 0,
            timer_load_ns: 0,
            timer_reported: 0,
        }
    }
}

/// Layout version of [`LapicState::to_bytes`].
const STATE_VERSION: u8 = 1;
const STATE_NAME: &str = "lapic";

impl LapicState {
    /// The state as a snapshot blob (times in the machine clock's nanoseconds).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = StateWriter::new(STATE_VERSION);
        w.u64(self.apic_base)
            .u32(self.id)
            .u8(self.tpr)
            .u32(self.ldr)
            .u32(self.dfr)
            .u32(self.svr);
        for words in [&self.isr, &self.tmr, &self.irr] {
            for &v in words.iter() {
                w.u32(v);
            }
        }
        w.u32(self.esr)
            .u32(self.esr_pending)
            .u32(self.icr_low)
            .u32(self.icr_high);
        for &v in &self.lvt {
            w.u32(v);
        }
        w.u32(self.divide_config)
            .u32(self.initial_count)
            .u64(self.timer_load_ns)
            .u64(self.timer_reported);
        w.finish()
    }

    /// Read a blob written by [`LapicState::to_bytes`].
    pub fn from_bytes(blob: &[u8]) -> Result<Self, StateError> {
        let mut r = StateReader::new(blob, STATE_NAME, STATE_VERSION)?;
        let mut s = LapicState {
            apic_base: r.u64()?,
            id: r.u32()?,
            tpr: r.u8()?,
            ldr: r.u32()?,
            dfr: r.u32()?,
            svr: r.u32()?,
            ..LapicState::default()
        };
        for i in 0..8 {
            s.isr[i] = r.u32()?;
        }
        for i in 0..8 {
            s.tmr[i] = r.u32()?;
        }
        for i in 0..8 {
            s.irr[i] = r.u32()?;
        }
        s.esr = r.u32()?;
        s.esr_pending = r.u32()?;
        s.icr_low = r.u32()?;
        s.icr_high = r.u32()?;
        for i in 0..LVT_COUNT {
            s.lvt[i] = r.u32()?;
        }
        s.divide_config = r.u32()?;
        s.initial_count = r.u32()?;
        s.timer_load_ns = r.u64()?;
        s.timer_reported = r.u64()?;
        r.finish()?;
        if s.apic_base & APIC_BASE_ADDR_MASK != DEFAULT_BASE {
            return Err(r_invalid(format!(
                "APIC base {:#x} is not the page emu maps",
                s.apic_base
            )));
        }
        Ok(s)
    }
}

fn r_invalid(what: String) -> StateError {
    StateError::Invalid {
        device: STATE_NAME,
        what,
    }
}

/// Highest set bit of a 256-bit register, as a vector.
fn highest(bits: &[u32; 8]) -> Option<u8> {
    (0..8)
        .rev()
        .find(|&i| bits[i] != 0)
        .map(|i| (i * 32 + 31 - bits[i].leading_zeros() as usize) as u8)
}

fn test_bit(bits: &[u32; 8], v: u8) -> bool {
    bits[usize::from(v >> 5)] & (1 << (v & 31)) != 0
}

fn set_bit(bits: &mut [u32; 8], v: u8, on: bool) {
    let m = 1u32 << (v & 31);
    if on {
        bits[usize::from(v >> 5)] |= m;
    } else {
        bits[usize::from(v >> 5)] &= !m;
    }
}

/// The local APIC.
pub struct LocalApic {
    s: LapicState,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for LocalApic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalApic").field("state", &self.s).finish()
    }
}

impl LocalApic {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            s: LapicState::default(),
            clock,
        }
    }

    pub fn state(&self) -> LapicState {
        self.s
    }

    /// Replace the device's state (snapshot restore, reset).
    pub fn set_state(&mut self, s: LapicState) {
        self.s = s;
    }

    /// IA32_APIC_BASE[11]: the APIC is globally enabled (11.4.3).
    pub fn globally_enabled(&self) -> bool {
        self.s.apic_base & APIC_BASE_ENABLE != 0
    }

    /// SVR[8]: the APIC is software enabled (11.4.7.2).
    pub fn software_enabled(&self) -> bool {
        self.globally_enabled() && self.s.svr & SVR_ENABLE != 0
    }

    /// The CPU's IA32_APIC_BASE changed. Clearing the global enable makes the processor behave
    /// as one without an APIC (11.4.3); like QEMU, emu also software-disables it then, so a
    /// later re-enable starts with every LVT entry masked. Relocating the page is not
    /// supported: the bus device stays at [`DEFAULT_BASE`] (logged).
    pub fn set_apic_base(&mut self, value: u64) {
        if value == self.s.apic_base {
            return;
        }
        if value & APIC_BASE_ADDR_MASK != DEFAULT_BASE {
            log::warn!(
                "guest moved the local APIC to {:#x}; emu keeps it at {DEFAULT_BASE:#x}",
                value & APIC_BASE_ADDR_MASK
            );
        }
        if value & APIC_BASE_ENABLE == 0 {
            self.write_svr(self.s.svr & !SVR_ENABLE);
        }
        self.s.apic_base = value;
    }

    /// The task-priority register (11.8.3.1). CR8 is TPR[7:4] (11.8.6.1).
    pub fn tpr(&self) -> u8 {
        self.s.tpr
    }

    pub fn set_tpr(&mut self, tpr: u8) {
        self.s.tpr = tpr;
    }

    /// The processor-priority register (11.8.3.1): TPR if its class is at least that of the
    /// highest vector in service, else that vector's class.
    pub fn ppr(&self) -> u8 {
        let isrv = highest(&self.s.isr).unwrap_or(0);
        if self.s.tpr >> 4 >= isrv >> 4 {
            self.s.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// The arbitration-priority register (11.8.3.2 "APR" in Figure 11-15's description): TPR if
    /// its class is at least that of the highest requested or in-service vector, else that class.
    fn apr(&self) -> u8 {
        let irrv = highest(&self.s.irr).unwrap_or(0);
        let isrv = highest(&self.s.isr).unwrap_or(0);
        let top = irrv.max(isrv);
        if self.s.tpr >> 4 >= top >> 4 {
            self.s.tpr
        } else {
            top & 0xf0
        }
    }

    /// Accept a fixed (or lowest-priority) interrupt into the IRR (11.8.4); `level` sets its TMR
    /// bit so the EOI is broadcast to the I/O APIC (11.8.5). Vectors 0-15 are refused with the
    /// receive-illegal-vector error (11.5.3).
    pub fn accept(&mut self, vector: u8, level: bool) {
        if vector < FIRST_LEGAL_VECTOR {
            self.error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return;
        }
        set_bit(&mut self.s.irr, vector, true);
        set_bit(&mut self.s.tmr, vector, level);
    }

    /// Whether `vector` waits in the IRR.
    pub fn is_requested(&self, vector: u8) -> bool {
        test_bit(&self.s.irr, vector)
    }

    /// Whether this APIC is the target of `dest` in physical or logical destination mode
    /// (11.6.2.1, 11.6.2.2: flat and cluster models).
    pub fn matches_destination(&self, dest: u8, logical: bool) -> bool {
        if dest == BROADCAST {
            return true;
        }
        if !logical {
            return dest == (self.s.id >> 24) as u8;
        }
        let ldr = (self.s.ldr >> 24) as u8;
        if self.s.dfr >> 28 == DFR_MODEL_FLAT {
            dest & ldr != 0
        } else {
            dest >> 4 == ldr >> 4 && dest & ldr & 0xf != 0
        }
    }

    /// The highest-priority requested vector that may interrupt now: its priority class above
    /// the PPR's (11.8.3.1, 11.8.4), with the APIC software-enabled.
    pub fn pending_vector(&self) -> Option<u8> {
        if !self.software_enabled() {
            return None;
        }
        let v = highest(&self.s.irr)?;
        (v >> 4 > self.ppr() >> 4).then_some(v)
    }

    /// Whether the 8259A's INTR reaches the CPU: with the APIC globally disabled the PIC is
    /// wired straight to the processor; otherwise LINT0 must be unmasked in ExtINT mode
    /// (virtual wire mode, 11.5.1 and the MP specification 3.6.2.2).
    pub fn passes_pic_through(&self) -> bool {
        if !self.globally_enabled() {
            return true;
        }
        let lint0 = self.s.lvt[LVT_LINT0];
        lint0 & LVT_MASKED == 0 && lint0 & LVT_DELIVERY_MODE == LVT_DM_EXTINT
    }

    /// The INTA cycle for an APIC interrupt: the highest pending vector moves from IRR to ISR
    /// (11.8.4). When the request vanished or was masked by the TPR since INTR was sampled,
    /// the spurious vector is delivered and nothing enters the ISR (11.9).
    pub fn acknowledge(&mut self) -> Option<u8> {
        if !self.software_enabled() {
            return None;
        }
        match self.pending_vector() {
            Some(v) => {
                set_bit(&mut self.s.irr, v, false);
                set_bit(&mut self.s.isr, v, true);
                Some(v)
            }
            None if highest(&self.s.irr).is_some() => Some(self.s.svr as u8),
            None => None,
        }
    }

    /// EOI (11.8.5): the highest in-service vector leaves the ISR. Returns it when its TMR bit
    /// says it was level-triggered: the EOI must then be broadcast to the I/O APIC.
    pub fn eoi(&mut self) -> Option<u8> {
        let v = highest(&self.s.isr)?;
        set_bit(&mut self.s.isr, v, false);
        test_bit(&self.s.tmr, v).then_some(v)
    }

    /// Record an APIC error (11.5.3) and raise the error LVT's interrupt if it is unmasked.
    fn error(&mut self, bit: u32) {
        self.s.esr_pending |= bit;
        let lvt = self.s.lvt[LVT_ERROR];
        if lvt & LVT_MASKED == 0 && self.software_enabled() {
            let v = (lvt & LVT_VECTOR) as u8;
            if v >= FIRST_LEGAL_VECTOR {
                set_bit(&mut self.s.irr, v, true);
                set_bit(&mut self.s.tmr, v, false);
            } else {
                self.s.esr_pending |= ESR_RECEIVE_ILLEGAL_VECTOR;
            }
        }
    }

    fn write_svr(&mut self, v: u32) {
        self.s.svr = v & SVR_WRITABLE;
        if self.s.svr & SVR_ENABLE == 0 {
            // Software disable masks every LVT entry (11.4.7.2).
            for e in &mut self.s.lvt {
                *e |= LVT_MASKED;
            }
        }
    }

    /// Send an IPI as the ICR describes (11.6.1). Only this CPU exists, so fixed and
    /// lowest-priority IPIs that reach it are accepted; other delivery modes are logged.
    fn send_ipi(&mut self) {
        let icr = self.s.icr_low;
        let vector = (icr & ICR_VECTOR) as u8;
        let shorthand = (icr >> ICR_SHORTHAND_SHIFT) & 3;
        let to_self = match shorthand {
            SHORTHAND_NONE => {
                self.matches_destination((self.s.icr_high >> 24) as u8, icr & ICR_DEST_LOGICAL != 0)
            }
            SHORTHAND_SELF | SHORTHAND_ALL_INCLUDING_SELF => true,
            _ => false,
        };
        match icr & ICR_DELIVERY_MODE {
            ICR_DM_FIXED | ICR_DM_LOWEST => {
                if vector < FIRST_LEGAL_VECTOR {
                    self.error(ESR_SEND_ILLEGAL_VECTOR);
                    return;
                }
                if to_self {
                    self.accept(vector, icr & ICR_TRIGGER_LEVEL != 0);
                }
            }
            mode => log::debug!(
                "IPI with delivery mode {} (level {}) ignored: emu has one CPU",
                mode >> 8,
                u8::from(icr & ICR_LEVEL_ASSERT != 0)
            ),
        }
    }

    fn timer_divisor(&self) -> u64 {
        // Divide configuration (11.5.4, Figure 11-10): bits 3, 1:0; 111b divides by 1.
        let code = ((self.s.divide_config & 8) >> 1) | (self.s.divide_config & 3);
        if code == 7 {
            1
        } else {
            2 << code
        }
    }

    /// Nanoseconds of one full count (initial count x divisor ticks of the base clock).
    fn timer_period_ns(&self) -> u64 {
        let ticks = u128::from(self.s.initial_count) * u128::from(self.timer_divisor());
        (ticks * 1_000_000_000 / u128::from(TIMER_BASE_HZ)).min(u128::from(u64::MAX)) as u64
    }

    fn timer_periodic(&self) -> bool {
        self.s.lvt[LVT_TIMER] & LVT_TIMER_PERIODIC != 0
    }

    /// Whether the timer can raise nothing more until it is programmed again: stopped (initial
    /// count 0), or one-shot and its expiry already reported (SDM Vol. 3A 11.5.4).
    fn timer_spent(&self) -> bool {
        self.s.initial_count == 0 || (!self.timer_periodic() && self.s.timer_reported >= 1)
    }

    /// Expiries since the initial count was loaded (one-shot: at most one).
    fn timer_expiries(&self, now_ns: u64) -> u64 {
        let period = self.timer_period_ns();
        if self.s.initial_count == 0 || period == 0 {
            return 0;
        }
        let elapsed = now_ns.saturating_sub(self.s.timer_load_ns);
        if self.timer_periodic() {
            elapsed / period
        } else {
            u64::from(elapsed >= period)
        }
    }

    /// The current-count register (11.5.4): counts down from the initial count; one-shot
    /// stops at 0, periodic reloads.
    fn timer_current(&self, now_ns: u64) -> u32 {
        let period = self.timer_period_ns();
        if self.s.initial_count == 0 || period == 0 {
            return 0;
        }
        let elapsed = now_ns.saturating_sub(self.s.timer_load_ns);
        if !self.timer_periodic() && elapsed >= period {
            return 0;
        }
        let into = u128::from(elapsed % period) * u128::from(TIMER_BASE_HZ) / 1_000_000_000;
        let ticks = into / u128::from(self.timer_divisor());
        (u128::from(self.s.initial_count) - ticks.min(u128::from(self.s.initial_count))) as u32
    }

    /// Raise the timer interrupt for an expiry not yet reported, once the previous one left the
    /// IRR. Periods the CPU missed (the emulator was descheduled) are caught up one per call, at most
    /// [`crate::pit::MAX_TICK_BACKLOG_NS`] of them, as the PIT does: Linux verifies this
    /// timer by counting its interrupts against the PIT's. Returns whether one was raised.
    pub fn poll_timer(&mut self) -> bool {
        if self.timer_spent() {
            // Polled every few thousand guest instructions: no clock read when idle.
            return false;
        }
        let now = self.clock.now_ns();
        let e = self.timer_expiries(now);
        if e <= self.s.timer_reported {
            return false;
        }
        let lvt = self.s.lvt[LVT_TIMER];
        if self.is_requested((lvt & LVT_VECTOR) as u8) {
            // The next expiry waits until the CPU took the previous one (it would merge).
            return false;
        }
        let max_backlog = (crate::pit::MAX_TICK_BACKLOG_NS / self.timer_period_ns().max(1)).max(1);
        self.s.timer_reported = self.s.timer_reported.max(e.saturating_sub(max_backlog)) + 1;
        let lvt = self.s.lvt[LVT_TIMER];
        if lvt & LVT_MASKED != 0 {
            return false;
        }
        self.accept((lvt & LVT_VECTOR) as u8, false);
        true
    }

    /// Nanoseconds until the timer next raises an interrupt, if it will.
    pub fn next_timer_in_ns(&self) -> Option<u64> {
        if self.s.lvt[LVT_TIMER] & LVT_MASKED != 0 || self.timer_spent() {
            return None;
        }
        let period = self.timer_period_ns();
        let now = self.clock.now_ns();
        let e = self.timer_expiries(now);
        if e > self.s.timer_reported {
            return Some(0);
        }
        let next = if self.timer_periodic() {
            e + 1
        } else if e == 0 {
            1
        } else {
            return None;
        };
        let at = self
            .s
            .timer_load_ns
            .saturating_add(period.saturating_mul(next));
        Some(at.saturating_sub(now))
    }

    fn restart_timer(&mut self) {
        self.s.timer_load_ns = self.clock.now_ns();
        self.s.timer_reported = 0;
    }

    /// Read the 32-bit register at `offset` (16-byte aligned).
    pub fn read_register(&mut self, offset: u64) -> u32 {
        let s = &self.s;
        match offset {
            reg::ID => s.id,
            reg::VERSION => VERSION,
            reg::TPR => u32::from(s.tpr),
            reg::APR => u32::from(self.apr()),
            reg::PPR => u32::from(self.ppr()),
            reg::EOI | reg::RRD => 0,
            reg::LDR => s.ldr,
            reg::DFR => s.dfr,
            reg::SVR => s.svr,
            o @ 0x100..=0x170 => s.isr[((o - reg::ISR) >> 4) as usize],
            o @ 0x180..=0x1f0 => s.tmr[((o - reg::TMR) >> 4) as usize],
            o @ 0x200..=0x270 => s.irr[((o - reg::IRR) >> 4) as usize],
            reg::ESR => s.esr,
            // Delivery status (bit 12) always reads idle: IPIs are delivered at once.
            reg::ICR_LOW => s.icr_low,
            reg::ICR_HIGH => s.icr_high,
            o @ reg::LVT_TIMER..=reg::LVT_ERROR => s.lvt[((o - reg::LVT_TIMER) >> 4) as usize],
            reg::TIMER_INITIAL => s.initial_count,
            reg::TIMER_CURRENT => {
                let now = self.clock.now_ns();
                self.timer_current(now)
            }
            reg::TIMER_DIVIDE => s.divide_config,
            _ => {
                self.error(ESR_ILLEGAL_REGISTER);
                0
            }
        }
    }

    /// Write the 32-bit register at `offset`. Returns the vector whose EOI must be broadcast to
    /// the I/O APIC, if this was an EOI for a level-triggered interrupt.
    pub fn write_register(&mut self, offset: u64, v: u32) -> Option<u8> {
        match offset {
            reg::ID => self.s.id = v & 0xff00_0000,
            reg::TPR => self.s.tpr = v as u8,
            reg::EOI => return self.eoi(),
            reg::LDR => self.s.ldr = v & 0xff00_0000,
            reg::DFR => self.s.dfr = v | 0x0fff_ffff,
            reg::SVR => self.write_svr(v),
            // A write latches the errors detected since the last write (11.5.3).
            reg::ESR => self.s.esr = std::mem::take(&mut self.s.esr_pending),
            reg::ICR_LOW => {
                self.s.icr_low = v & ICR_LOW_WRITABLE;
                self.send_ipi();
            }
            reg::ICR_HIGH => self.s.icr_high = v & 0xff00_0000,
            o @ reg::LVT_TIMER..=reg::LVT_ERROR => {
                let i = ((o - reg::LVT_TIMER) >> 4) as usize;
                let mut e = v & LVT_WRITABLE[i];
                if self.s.svr & SVR_ENABLE == 0 {
                    // Masks cannot be cleared while software-disabled (11.4.7.2).
                    e |= LVT_MASKED;
                }
                if i == LVT_LINT0 || i == LVT_LINT1 {
                    // Remote IRR is read-only.
                    e |= self.s.lvt[i] & (1 << 14);
                }
                if i == LVT_TIMER && (e ^ self.s.lvt[i]) & LVT_TIMER_PERIODIC != 0 {
                    // A mode change re-arms the count (as QEMU does).
                    self.restart_timer();
                }
                if i == LVT_THERMAL || i == LVT_PERF || i == LVT_LINT1 {
                    log::trace!("LVT {i} = {e:#x} (nothing in emu raises it)");
                }
                self.s.lvt[i] = e;
            }
            reg::TIMER_INITIAL => {
                self.s.initial_count = v;
                self.restart_timer();
            }
            reg::TIMER_DIVIDE => self.s.divide_config = v & 0xb,
            reg::VERSION | reg::APR | reg::PPR | reg::RRD | 0x100..=0x270 | reg::TIMER_CURRENT => {
                log::trace!("write to read-only local APIC register {offset:#x} ignored");
            }
            _ => self.error(ESR_ILLEGAL_REGISTER),
        }
        None
    }

    /// An MMIO read anywhere in the page: registers are 32 bits wide at 16-byte boundaries;
    /// the other bytes read as zero.
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !self.globally_enabled() {
            data.fill(0xff);
            return;
        }
        let within = (offset & 0xf) as usize;
        if within >= 4 {
            return;
        }
        let v = self.read_register(offset & 0xff0).to_le_bytes();
        let n = data.len().min(4 - within);
        data[..n].copy_from_slice(&v[within..within + n]);
    }

    /// An MMIO write: only 32-bit (or wider) writes at a register's start take effect, as
    /// software must use (11.4.1). Returns the vector of a level-triggered EOI, see
    /// [`LocalApic::write_register`].
    pub fn mmio_write(&mut self, offset: u64, data: &[u8]) -> Option<u8> {
        if !self.globally_enabled() {
            return None;
        }
        if offset & 0xf != 0 || data.len() < 4 {
            log::debug!(
                "local APIC write of {} bytes at {offset:#x} ignored",
                data.len()
            );
            return None;
        }
        let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        self.write_register(offset & 0xff0, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn apic() -> (LocalApic, ManualClock) {
        let clock = ManualClock::new();
        let mut a = LocalApic::new(Arc::new(clock.clone()));
        a.write_register(reg::SVR, SVR_ENABLE | 0xff);
        (a, clock)
    }

    #[test]
    fn reset_values_follow_the_sdm() {
        let a = LocalApic::new(Arc::new(ManualClock::new()));
        let mut a = a;
        assert_eq!(a.read_register(reg::VERSION), VERSION);
        assert_eq!(a.read_register(reg::DFR), 0xffff_ffff);
        assert_eq!(a.read_register(reg::SVR), 0xff);
        assert_eq!(a.read_register(reg::LVT_LINT0), LVT_MASKED);
        assert!(a.globally_enabled());
        assert!(!a.software_enabled());
        // Software-disabled: an LVT mask cannot be cleared, nothing is delivered.
        a.write_register(reg::LVT_LINT0, LVT_DM_EXTINT);
        assert_eq!(a.read_register(reg::LVT_LINT0), LVT_DM_EXTINT | LVT_MASKED);
        a.accept(0x40, false);
        assert_eq!(a.pending_vector(), None);
        assert_eq!(a.acknowledge(), None);
    }

    #[test]
    fn priority_tpr_isr_and_eoi() {
        let (mut a, _) = apic();
        a.accept(0x31, false);
        a.accept(0x52, false);
        assert_eq!(a.pending_vector(), Some(0x52));
        // TPR class 5 blocks 0x52 (class must be above), not class 6.
        a.write_register(reg::TPR, 0x50);
        assert_eq!(a.pending_vector(), None);
        a.write_register(reg::TPR, 0x40);
        assert_eq!(a.acknowledge(), Some(0x52));
        assert_eq!(a.read_register(reg::ISR + 0x20), 1 << (0x52 - 64));
        assert_eq!(a.read_register(reg::PPR), 0x50);
        // 0x31 is lower than the in-service class: it waits for the EOI.
        assert_eq!(a.pending_vector(), None);
        assert_eq!(a.write_register(reg::EOI, 0), None);
        assert_eq!(a.read_register(reg::PPR), 0x40);
        // TPR 0x40 still blocks class 3.
        assert_eq!(a.pending_vector(), None);
        a.write_register(reg::TPR, 0);
        assert_eq!(a.acknowledge(), Some(0x31));
        assert_eq!(a.write_register(reg::EOI, 0), None);
        assert_eq!(a.acknowledge(), None);
    }

    #[test]
    fn level_eoi_is_reported_for_broadcast_and_masked_ack_is_spurious() {
        let (mut a, _) = apic();
        a.accept(0x61, true);
        assert_eq!(a.read_register(reg::TMR + 0x30), 1 << 1);
        assert_eq!(a.acknowledge(), Some(0x61));
        assert_eq!(a.write_register(reg::EOI, 0), Some(0x61));
        // Raised, then masked by TPR before the INTA cycle: spurious vector.
        a.accept(0x70, false);
        a.write_register(reg::TPR, 0xf0);
        assert_eq!(a.acknowledge(), Some(0xff));
        assert_eq!(a.read_register(reg::ISR + 0x30), 0);
    }

    #[test]
    fn self_ipi_illegal_vectors_and_esr() {
        let (mut a, _) = apic();
        a.write_register(reg::ICR_LOW, (SHORTHAND_SELF << ICR_SHORTHAND_SHIFT) | 0x45);
        assert_eq!(a.pending_vector(), Some(0x45));
        // Physical destination 0 is this APIC too.
        a.write_register(reg::ICR_HIGH, 0);
        a.write_register(reg::ICR_LOW, 0x46);
        assert_eq!(a.read_register(reg::IRR + 0x20), (1 << 5) | (1 << 6));
        // Another CPU: nothing arrives.
        a.write_register(reg::ICR_HIGH, 3 << 24);
        a.write_register(reg::ICR_LOW, 0x47);
        assert_eq!(a.read_register(reg::IRR + 0x20), (1 << 5) | (1 << 6));
        // An illegal vector sets ESR after the latching write, and raises the error LVT.
        a.write_register(reg::LVT_ERROR, 0xfe);
        a.write_register(reg::ICR_LOW, (SHORTHAND_SELF << ICR_SHORTHAND_SHIFT) | 0x05);
        assert_eq!(a.read_register(reg::ESR), 0);
        a.write_register(reg::ESR, 0);
        assert_eq!(a.read_register(reg::ESR), ESR_SEND_ILLEGAL_VECTOR);
        assert_eq!(a.pending_vector(), Some(0xfe));
    }

    #[test]
    fn logical_destinations() {
        let (mut a, _) = apic();
        a.write_register(reg::LDR, 0x01 << 24);
        assert!(a.matches_destination(0x01, true));
        assert!(!a.matches_destination(0x02, true));
        a.write_register(reg::DFR, 0x0fff_ffff); // cluster model
        a.write_register(reg::LDR, 0x21 << 24);
        assert!(a.matches_destination(0x23, true));
        assert!(!a.matches_destination(0x13, true));
        assert!(a.matches_destination(0xff, false));
    }

    #[test]
    fn timer_one_shot_and_periodic() {
        let (mut a, clock) = apic();
        a.write_register(reg::TIMER_DIVIDE, 0x3); // divide by 16
        a.write_register(reg::LVT_TIMER, 0x40);
        a.write_register(reg::TIMER_INITIAL, 1000); // 16 us
        assert_eq!(a.next_timer_in_ns(), Some(16_000));
        clock.advance_ns(8_000);
        assert_eq!(a.read_register(reg::TIMER_CURRENT), 500);
        assert!(!a.poll_timer());
        clock.advance_ns(8_000);
        assert!(a.poll_timer());
        assert_eq!(a.read_register(reg::TIMER_CURRENT), 0);
        assert_eq!(a.acknowledge(), Some(0x40));
        a.write_register(reg::EOI, 0);
        clock.advance_ns(100_000);
        assert!(!a.poll_timer(), "one-shot fires once");
        assert_eq!(a.next_timer_in_ns(), None);

        a.write_register(reg::TIMER_DIVIDE, 0xb); // divide by 1
        a.write_register(reg::LVT_TIMER, 0x41 | LVT_TIMER_PERIODIC);
        a.write_register(reg::TIMER_INITIAL, 1000);
        clock.advance_ns(2_500);
        assert_eq!(a.next_timer_in_ns(), Some(0), "missed periods are due now");
        assert!(a.poll_timer(), "two periods passed: two interrupts");
        assert!(!a.poll_timer(), "the second waits until the first is taken");
        assert_eq!(a.acknowledge(), Some(0x41));
        a.write_register(reg::EOI, 0);
        assert!(a.poll_timer());
        assert!(!a.poll_timer());
        assert_eq!(a.read_register(reg::TIMER_CURRENT), 500);
        assert_eq!(a.next_timer_in_ns(), Some(500));
        assert_eq!(a.acknowledge(), Some(0x41));
        a.write_register(reg::EOI, 0);
        clock.advance_ns(500);
        assert!(a.poll_timer());
        assert_eq!(a.acknowledge(), Some(0x41));
        a.write_register(reg::EOI, 0);
        // Masked: expiries pass without interrupts. Initial count 0 stops it.
        a.write_register(reg::LVT_TIMER, 0x41 | LVT_TIMER_PERIODIC | LVT_MASKED);
        clock.advance_ns(5_000);
        assert!(!a.poll_timer());
        a.write_register(reg::TIMER_INITIAL, 0);
        assert_eq!(a.read_register(reg::TIMER_CURRENT), 0);
    }

    #[test]
    fn stopped_or_fired_one_shot_timer_is_polled_without_reading_the_clock() {
        let clock = crate::clock::CountingClock::default();
        let mut a = LocalApic::new(Arc::new(clock.clone()));
        a.write_register(reg::SVR, SVR_ENABLE | 0xff);
        let polls = |a: &mut LocalApic| {
            let before = clock.readings();
            assert!(!a.poll_timer());
            assert_eq!(a.next_timer_in_ns(), None);
            clock.readings() - before
        };
        assert_eq!(polls(&mut a), 0, "initial count 0: stopped");
        a.write_register(reg::TIMER_DIVIDE, 0xb); // divide by 1
        a.write_register(reg::LVT_TIMER, 0x40);
        a.write_register(reg::TIMER_INITIAL, 1000);
        clock.time.advance_ns(1000);
        assert!(a.poll_timer());
        assert_eq!(a.acknowledge(), Some(0x40));
        a.write_register(reg::EOI, 0);
        clock.time.advance_ns(100_000);
        assert_eq!(polls(&mut a), 0, "one-shot already fired");
        // Periodic mode (the switch re-arms the count) keeps counting: polls read the clock.
        a.write_register(reg::LVT_TIMER, 0x40 | LVT_TIMER_PERIODIC);
        clock.time.advance_ns(1000);
        let before = clock.readings();
        assert!(a.poll_timer());
        assert!(clock.readings() > before);
    }

    #[test]
    fn virtual_wire_and_global_disable() {
        let (mut a, _) = apic();
        assert!(!a.passes_pic_through(), "LINT0 masked after reset");
        a.write_register(reg::LVT_LINT0, LVT_DM_EXTINT);
        assert!(a.passes_pic_through());
        a.write_register(reg::LVT_LINT0, LVT_DM_EXTINT | LVT_MASKED);
        a.set_apic_base(DEFAULT_BASE | APIC_BASE_BSP);
        assert!(a.passes_pic_through(), "a disabled APIC is not there");
        let mut b = [0u8; 4];
        a.mmio_read(reg::VERSION, &mut b);
        assert_eq!(b, [0xff; 4]);
        a.set_apic_base(APIC_BASE_RESET);
        assert!(!a.software_enabled(), "re-enabled software-disabled");
        a.mmio_read(reg::VERSION, &mut b);
        assert_eq!(u32::from_le_bytes(b), VERSION);
        a.mmio_read(reg::VERSION + 2, &mut b[..2]);
        assert_eq!(b[..2], [0x05, 0]);
    }

    #[test]
    fn illegal_register_and_received_illegal_vector() {
        let (mut a, _) = apic();
        a.read_register(0x3f0);
        a.accept(3, false);
        a.write_register(reg::ESR, 0);
        assert_eq!(
            a.read_register(reg::ESR),
            ESR_ILLEGAL_REGISTER | ESR_RECEIVE_ILLEGAL_VECTOR
        );
        a.write_register(reg::ESR, 0);
        assert_eq!(a.read_register(reg::ESR), 0);
    }

    #[test]
    fn state_survives_bytes_and_corruption_is_an_error() {
        let (mut a, clock) = apic();
        a.write_register(reg::LVT_TIMER, 0x40 | LVT_TIMER_PERIODIC);
        a.write_register(reg::TIMER_INITIAL, 5000);
        a.accept(0x80, true);
        a.write_register(reg::TPR, 0x20);
        clock.advance_ns(1234);
        let blob = a.state().to_bytes();
        let mut copy = LocalApic::new(Arc::new(clock.clone()));
        copy.set_state(LapicState::from_bytes(&blob).unwrap());
        assert_eq!(copy.state(), a.state());
        assert_eq!(
            copy.read_register(reg::TIMER_CURRENT),
            a.read_register(reg::TIMER_CURRENT)
        );
        for n in 0..blob.len() {
            assert!(LapicState::from_bytes(&blob[..n]).is_err());
        }
        let mut bad = blob.clone();
        bad[2] = 0x10; // APIC base moved off the mapped page
        assert!(matches!(
            LapicState::from_bytes(&bad),
            Err(StateError::Invalid { .. })
        ));
    }
}
