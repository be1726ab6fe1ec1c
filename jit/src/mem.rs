//! Guest memory as instructions see it: linear addresses through paging to physical ones, RAM
//! and ROM through the softmmu TLB, everything else through the MMIO bus.
//!
//! The TLB (`JitContext::tlb`) maps a linear page to a host address; generated code probes it
//! inline and on a miss runs the instruction through the interpreter, which calls
//! [`read()`]/[`write()`]. This module is that slow path: it translates
//! through `crate::paging` (32-bit, PAE and 4-level paging; non-canonical addresses raise #GP in
//! IA-32e mode), fills the TLB for RAM and ROM pages (remembering global and execute-disabled
//! ones), keeps write tags off ROM pages and pages holding translated code (writes to the bytes
//! of live blocks there are recorded and end the block, see `crate::smc`), and sends holes to
//! the MMIO bus.

use vcpu::state::{cr0, efer};
use vcpu::RegionKind;

use crate::context::{tlb_index, JitContext, TlbEntry, PAGE_MASK};
pub use crate::exception::Fault;
use crate::runtime::{tlb_entry, Runtime};

/// Page size in bytes.
const PAGE_BYTES: u64 = 1 << crate::context::PAGE_SHIFT;

pub use crate::paging::Access;
use crate::paging::{self, Translation};

/// CR4.PSE: 4 MiB pages in 32-bit paging (SDM Vol. 3A 2.5).
pub const CR4_PSE: u64 = paging::cr4::PSE;
/// CR4.PAE (SDM Vol. 3A 2.5).
pub const CR4_PAE: u64 = paging::cr4::PAE;

/// Mask applied to the linear addresses of code and data: 64 bits in 64-bit mode, 32 bits
/// elsewhere (compatibility mode included, SDM Vol. 3A 3.4.4), where they wrap at 4 GiB.
#[inline]
pub fn linear_mask(ctx: &JitContext) -> u64 {
    if ctx.cpu.mode() == vcpu::ExecMode::Long64 {
        u64::MAX
    } else {
        0xffff_ffff
    }
}

/// Mask applied to the linear addresses of the processor's own structures (GDT, LDT, IDT, TSS):
/// their bases are 64-bit throughout IA-32e mode, compatibility mode included.
#[inline]
pub fn system_mask(ctx: &JitContext) -> u64 {
    if ctx.cpu.efer & efer::LMA != 0 {
        u64::MAX
    } else {
        0xffff_ffff
    }
}

/// Translate a linear address to a guest-physical one (with the A20 mask applied).
pub fn linear_to_phys(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    access: Access,
) -> Result<u64, Fault> {
    translate(ctx, rt, la, access).map(|t| t.phys)
}

/// The guest-physical address of the instruction byte at linear address `la`: from the TLB when
/// it maps the page and the page is not execute-disabled, else through a walk for an
/// instruction fetch that fills the TLB (RAM and ROM pages), so the next lookup of the page
/// needs no walk. A hit is exactly what the walk would find: the entry was filled at this CPL
/// (CPL changes under paging flush the TLB) with the accessed flags already set.
pub fn code_phys(ctx: &mut JitContext, rt: &mut Runtime, la: u64) -> Result<u64, Fault> {
    let i = tlb_index(la);
    let e = &ctx.tlb[i];
    if e.read_tag == la & PAGE_MASK && !ctx.tlb_no_exec(i) {
        return Ok(e.phys_page | (la & !PAGE_MASK));
    }
    let t = translate(ctx, rt, la, Access::Execute)?;
    if let Some((p, _, kind)) = rt.phys.host(t.phys) {
        let writable = kind == RegionKind::Ram && t.write_ok && !rt.is_code_page(t.phys);
        fill_tlb(ctx, la, p, t, writable);
    }
    Ok(t.phys)
}

fn translate(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    access: Access,
) -> Result<Translation, Fault> {
    let user = ctx.cpu.cpl() == 3;
    translate_as(ctx, rt, la, access, user)
}

/// Translate for a user (`user`) or supervisor access. In IA-32e mode a non-canonical address
/// raises #GP(0) (SDM Vol. 3A 6.15, Interrupt 13; accesses through SS raise #SS(0), which the
/// stack code checks before it gets here).
fn translate_as(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    access: Access,
    user: bool,
) -> Result<Translation, Fault> {
    if ctx.cpu.efer & efer::LMA != 0 && !paging::is_canonical(la) {
        return Err(Fault::gp(0));
    }
    if ctx.cpu.cr0 & cr0::PG == 0 {
        return Ok(Translation {
            phys: la & ctx.a20_mask,
            write_ok: true,
            global: false,
            executable: true,
        });
    }
    paging::walk(ctx, rt, la & system_mask(ctx), access, user)
}

/// Translate with supervisor rights whatever the CPL: the processor's own accesses to the GDT,
/// LDT, IDT and TSS, and interrupt-delivery pushes onto an inner stack (SDM Vol. 3A 4.6,
/// "implicit supervisor-mode accesses").
fn translate_system(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    access: Access,
) -> Result<Translation, Fault> {
    translate_as(ctx, rt, la, access, false)
}

/// Access sizes are 1, 2, 4 or 8; anything else (a caller bug) is widened to the next one so
/// that `load`/`store` never touch more bytes than the page checks allowed for.
#[inline]
fn valid_size(size: u32) -> u32 {
    debug_assert!(matches!(size, 1 | 2 | 4 | 8), "bad access size {size}");
    match size {
        0..=1 => 1,
        2 => 2,
        3..=4 => 4,
        _ => 8,
    }
}

/// Load `size` bytes (1, 2, 4, 8) little-endian from host memory.
///
/// # Safety
/// `p..p+size` must be valid for reads.
#[inline]
unsafe fn load(p: *const u8, size: u32) -> u64 {
    // SAFETY: guaranteed by the caller; unaligned reads are allowed by read_unaligned.
    unsafe {
        match size {
            1 => u64::from(*p),
            2 => u64::from(u16::from_le(std::ptr::read_unaligned(p as *const u16))),
            4 => u64::from(u32::from_le(std::ptr::read_unaligned(p as *const u32))),
            _ => u64::from_le(std::ptr::read_unaligned(p as *const u64)),
        }
    }
}

/// Store `size` bytes (1, 2, 4, 8) of `v` little-endian to host memory.
///
/// # Safety
/// `p..p+size` must be valid for writes.
#[inline]
unsafe fn store(p: *mut u8, size: u32, v: u64) {
    // SAFETY: guaranteed by the caller; unaligned writes are allowed by write_unaligned.
    unsafe {
        match size {
            1 => *p = v as u8,
            2 => std::ptr::write_unaligned(p as *mut u16, (v as u16).to_le()),
            4 => std::ptr::write_unaligned(p as *mut u32, (v as u32).to_le()),
            _ => std::ptr::write_unaligned(p as *mut u64, v.to_le()),
        }
    }
}

/// Read `size` bytes (1, 2, 4 or 8) at linear address `la`.
#[inline]
pub fn read(ctx: &mut JitContext, rt: &mut Runtime, la: u64, size: u32) -> Result<u64, Fault> {
    let size = valid_size(size);
    if (la & !PAGE_MASK) + u64::from(size) <= PAGE_BYTES {
        let e = ctx.tlb[tlb_index(la)];
        if e.read_tag == la & PAGE_MASK {
            // SAFETY: a TLB read hit means the page is a RAM/ROM page mapped by `rt.ram`, which
            // lives as long as the runtime, and the access does not leave the page.
            return Ok(unsafe { load(la.wrapping_add(e.addend) as *const u8, size) });
        }
        return read_in_page(ctx, rt, la, size);
    }
    let wrap = linear_mask(ctx);
    let mut v = 0u64;
    for i in 0..size {
        let b = read_in_page(ctx, rt, la.wrapping_add(u64::from(i)) & wrap, 1)?;
        v |= b << (8 * i);
    }
    Ok(v)
}

/// Read within one page, filling the TLB.
fn read_in_page(ctx: &mut JitContext, rt: &mut Runtime, la: u64, size: u32) -> Result<u64, Fault> {
    let t = translate(ctx, rt, la, Access::Read)?;
    match rt.phys.host(t.phys) {
        Some((p, _, kind)) => {
            let writable = kind == RegionKind::Ram && t.write_ok && !rt.is_code_page(t.phys);
            fill_tlb(ctx, la, p, t, writable);
            // SAFETY: `p` points into a RAM/ROM region that covers the whole page (regions
            // are page aligned) and the access stays in the page.
            Ok(unsafe { load(p, size) })
        }
        None => {
            let mut buf = [0xffu8; 8];
            let n = size as usize;
            if let Some(b) = rt.buses() {
                b.mmio_read(t.phys, &mut buf[..n]);
            }
            Ok(u64::from_le_bytes(buf) & size_mask(size))
        }
    }
}

fn size_mask(size: u32) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * size)) - 1
    }
}

fn fill_tlb(ctx: &mut JitContext, la: u64, host: *mut u8, t: Translation, writable: bool) {
    let off = la & !PAGE_MASK;
    let host_page = host.wrapping_sub(off as usize);
    let i = tlb_index(la);
    ctx.set_tlb_entry(
        i,
        tlb_entry(la & PAGE_MASK, host_page, t.phys & PAGE_MASK, writable),
    );
    ctx.set_tlb_global(i, t.global);
    ctx.set_tlb_no_exec(i, !t.executable);
}

/// Drop the TLB entry of one linear page, global or not (INVLPG, SDM Vol. 3A 4.10.4.1).
pub fn flush_tlb_page(ctx: &mut JitContext, la: u64) {
    let i = tlb_index(la);
    if ctx.tlb[i].read_tag == la & PAGE_MASK || ctx.tlb[i].write_tag == la & PAGE_MASK {
        ctx.tlb[i] = TlbEntry::EMPTY;
        ctx.set_tlb_global(i, false);
    }
}

/// Write `size` bytes (1, 2, 4 or 8) of `value` at linear address `la`. Both pages of a
/// page-crossing write are translated before any byte is stored, so a fault writes nothing.
#[inline]
pub fn write(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    size: u32,
    value: u64,
) -> Result<(), Fault> {
    let size = valid_size(size);
    let in_page = PAGE_BYTES - (la & !PAGE_MASK);
    if u64::from(size) <= in_page {
        let e = ctx.tlb[tlb_index(la)];
        if e.write_tag == la & PAGE_MASK {
            // SAFETY: a TLB write hit means a RAM page of `rt.ram` that holds no code; the
            // access stays in the page.
            unsafe { store(la.wrapping_add(e.addend) as *mut u8, size, value) };
            return Ok(());
        }
        let t = translate(ctx, rt, la, Access::Write)?;
        write_phys(ctx, rt, la, t, size, value, true);
        return Ok(());
    }
    let wrap = linear_mask(ctx);
    let la2 = la.wrapping_add(in_page) & wrap;
    let t1 = translate(ctx, rt, la, Access::Write)?;
    let t2 = translate(ctx, rt, la2, Access::Write)?;
    for i in 0..u64::from(size) {
        let t = if i < in_page {
            Translation {
                phys: t1.phys + i,
                ..t1
            }
        } else {
            Translation {
                phys: t2.phys + (i - in_page),
                ..t2
            }
        };
        let byte_la = la.wrapping_add(i) & wrap;
        write_phys(ctx, rt, byte_la, t, 1, value >> (8 * i), true);
    }
    Ok(())
}

/// Store to a translated address inside one page: RAM (noting code pages), ROM (ignored) or
/// MMIO. `fill_tlb_entry` is false for supervisor accesses made on behalf of another CPL.
fn write_phys(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    t: Translation,
    size: u32,
    value: u64,
    fill_tlb_entry: bool,
) {
    match rt.phys.host(t.phys) {
        Some((p, _, RegionKind::Ram)) => {
            let code = rt.is_code_page(t.phys);
            // A write into live code ends the block, so that the dispatcher drops the blocks
            // it hit before the next one runs (the rest of the current block included).
            if code && rt.note_code_write(t.phys, u64::from(size)) {
                ctx.exit.exit_block = 1;
            }
            if fill_tlb_entry {
                fill_tlb(ctx, la, p, t, t.write_ok && !code);
            }
            // SAFETY: `p` points into a RAM region covering the page; the store stays inside.
            unsafe { store(p, size, value) };
        }
        Some((p, _, RegionKind::Rom)) => {
            if fill_tlb_entry {
                fill_tlb(ctx, la, p, t, false);
            }
            log::trace!("write to ROM at {:#x} ignored", t.phys);
        }
        None => {
            let bytes = value.to_le_bytes();
            let posted = rt
                .buses()
                .is_some_and(|b| b.mmio_write(t.phys, &bytes[..size as usize]));
            if posted {
                ctx.exit.exit_run = 1;
                ctx.exit.exit_block = 1;
            }
        }
    }
}

/// A supervisor-mode read that bypasses the TLB (see `translate_system`).
pub fn read_system(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    size: u32,
) -> Result<u64, Fault> {
    if ctx.cpu.cr0 & cr0::PG == 0 {
        return read(ctx, rt, la, size);
    }
    let wrap = system_mask(ctx);
    let mut v = 0u64;
    for i in 0..size {
        let t = translate_system(ctx, rt, la.wrapping_add(u64::from(i)) & wrap, Access::Read)?;
        v |= read_phys_byte(rt, t.phys) << (8 * i);
    }
    Ok(v)
}

/// A supervisor-mode write that bypasses the TLB (see `translate_system`). All bytes are
/// translated before any is stored.
pub fn write_system(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    size: u32,
    value: u64,
) -> Result<(), Fault> {
    if ctx.cpu.cr0 & cr0::PG == 0 {
        return write(ctx, rt, la, size, value);
    }
    let wrap = system_mask(ctx);
    let mut phys = [0u64; 8];
    for i in 0..size.min(8) {
        let t = translate_system(ctx, rt, la.wrapping_add(u64::from(i)) & wrap, Access::Write)?;
        phys[i as usize] = t.phys;
    }
    for i in 0..size.min(8) {
        let t = Translation {
            phys: phys[i as usize],
            write_ok: false,
            global: false,
            executable: false,
        };
        let byte_la = la.wrapping_add(u64::from(i)) & wrap;
        write_phys(ctx, rt, byte_la, t, 1, value >> (8 * i), false);
    }
    Ok(())
}

fn read_phys_byte(rt: &mut Runtime, phys: u64) -> u64 {
    match rt.phys.host(phys) {
        // SAFETY: `p` points at a mapped RAM/ROM byte.
        Some((p, _, _)) => u64::from(unsafe { *p }),
        None => {
            let mut b = [0xffu8];
            if let Some(buses) = rt.buses() {
                buses.mmio_read(phys, &mut b);
            }
            u64::from(b[0])
        }
    }
}

/// Copy guest code at linear address `la` into `buf`. Returns the physical address of `la` and
/// how many bytes were copied: copying stops where the next byte is not RAM/ROM or its page is
/// not mapped (only a fault on `la` itself is reported). Code in MMIO holes yields 0 bytes.
pub fn fetch_code(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    buf: &mut [u8],
) -> Result<(u64, usize), Fault> {
    let wrap = linear_mask(ctx);
    // Through the TLB: the dispatcher has just looked `la` up with `code_phys`, so the first
    // page needs no walk.
    let first = code_phys(ctx, rt, la)?;
    let mut done = 0usize;
    let mut phys = first;
    while done < buf.len() {
        let cur_la = la.wrapping_add(done as u64) & wrap;
        if done > 0 {
            match code_phys(ctx, rt, cur_la) {
                Ok(next) => phys = next,
                Err(_) => break,
            }
        }
        let Some((p, left, _)) = rt.phys.host(phys) else {
            break;
        };
        let in_page = PAGE_BYTES - (cur_la & !PAGE_MASK);
        let n = (buf.len() - done).min(in_page as usize).min(left as usize);
        // SAFETY: `p..p+n` lies inside one mapped region (n <= bytes left in the region).
        let src = unsafe { std::slice::from_raw_parts(p as *const u8, n) };
        buf[done..done + n].copy_from_slice(src);
        done += n;
    }
    Ok((first, done))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exception::PF_VECTOR;
    use crate::paging::{pf_error, pte};
    use vcpu::{CpuState, GuestRam, RegionSpec};

    fn machine() -> (JitContext, Runtime) {
        let ram = GuestRam::new(&[
            RegionSpec {
                base: 0,
                size: 0x40_0000,
                kind: RegionKind::Ram,
            },
            RegionSpec {
                base: 0xffff_f000,
                size: 0x1000,
                kind: RegionKind::Rom,
            },
        ])
        .unwrap();
        let mut ctx = JitContext::new(CpuState::reset());
        ctx.cpu.cr0 |= cr0::PE;
        (ctx, Runtime::new(ram))
    }

    #[test]
    fn read_write_fill_tlb_and_cross_pages() {
        let (mut ctx, mut rt) = machine();
        write(&mut ctx, &mut rt, 0x1ffe, 4, 0x1122_3344).unwrap();
        assert_eq!(read(&mut ctx, &mut rt, 0x1ffe, 4).unwrap(), 0x1122_3344);
        assert_eq!(read(&mut ctx, &mut rt, 0x2000, 2).unwrap(), 0x1122);
        assert_eq!(ctx.tlb[tlb_index(0x2000)].read_tag, 0x2000);
        assert_eq!(ctx.tlb[tlb_index(0x2000)].write_tag, 0x2000);
        // Fast path hit.
        write(&mut ctx, &mut rt, 0x2004, 8, 0x0102_0304_0506_0708).unwrap();
        assert_eq!(read(&mut ctx, &mut rt, 0x2008, 1).unwrap(), 0x04);
    }

    #[test]
    fn code_page_writes_are_recorded_and_end_the_block() {
        let (mut ctx, mut rt) = machine();
        write(&mut ctx, &mut rt, 0x3000, 1, 0x90).unwrap();
        rt.mark_code_page(&mut ctx, 0x3000);
        assert_eq!(ctx.exit.exit_block, 0);
        write(&mut ctx, &mut rt, 0x3010, 2, 0xbeef).unwrap();
        assert_eq!(ctx.exit.exit_block, 1);
        assert_eq!(rt.take_dirty_code_pages(), vec![0x3000]);
        assert_eq!(read(&mut ctx, &mut rt, 0x3010, 2).unwrap(), 0xbeef);
    }

    #[test]
    fn writes_beside_live_code_neither_end_the_block_nor_get_a_write_tag() {
        use crate::context::TLB_INVALID;
        use crate::smc::PhysRange;
        let (mut ctx, mut rt) = machine();
        rt.mark_code_bytes(&mut ctx, PhysRange::new(0x3100, 0x10));
        write(&mut ctx, &mut rt, 0x30fc, 4, 0x1122_3344).unwrap();
        write(&mut ctx, &mut rt, 0x3110, 8, 0x5566).unwrap();
        assert_eq!(ctx.exit.exit_block, 0);
        assert!(!rt.has_code_writes());
        assert_eq!(read(&mut ctx, &mut rt, 0x30fc, 4).unwrap(), 0x1122_3344);
        // Still a code page: the next write takes the slow path too.
        assert_eq!(ctx.tlb[tlb_index(0x3000)].write_tag, TLB_INVALID);
        // A page-crossing write whose last two bytes are the first two of a block.
        rt.mark_code_bytes(&mut ctx, PhysRange::new(0x5000, 4));
        write(&mut ctx, &mut rt, 0x4ffe, 4, 0xaabb_ccdd).unwrap();
        assert_eq!(ctx.exit.exit_block, 1);
        assert_eq!(rt.take_code_writes(), vec![PhysRange::new(0x5000, 2)]);
    }

    #[test]
    fn holes_read_all_ones_and_a20_wraps() {
        let (mut ctx, mut rt) = machine();
        assert_eq!(
            read(&mut ctx, &mut rt, 0x8000_0000, 4).unwrap(),
            0xffff_ffff
        );
        write(&mut ctx, &mut rt, 0x8000_0000, 4, 5).unwrap();
        ctx.a20_mask = !(1 << 20);
        write(&mut ctx, &mut rt, 0x10_0010, 1, 0x5a).unwrap();
        assert_eq!(read(&mut ctx, &mut rt, 0x10, 1).unwrap(), 0x5a);
    }

    #[test]
    fn paging_translates_sets_bits_and_faults() {
        let (mut ctx, mut rt) = machine();
        // Page directory at 0x10000, one page table at 0x11000 mapping 0x40_0000 -> 0x5000.
        rt.ram
            .write_host(0x10000 + 4, &(0x11000u32 | 3).to_le_bytes())
            .unwrap();
        rt.ram
            .write_host(0x11000, &(0x5000u32 | 1).to_le_bytes())
            .unwrap();
        ctx.cpu.cr3 = 0x10000;
        ctx.cpu.cr0 |= cr0::PG | cr0::WP;
        rt.ram.write_host(0x5123, &[0xab]).unwrap();
        assert_eq!(read(&mut ctx, &mut rt, 0x40_0123, 1).unwrap(), 0xab);
        let mut b = [0u8; 4];
        rt.ram.read(0x11000, &mut b).unwrap();
        let entry = u64::from(u32::from_le_bytes(b));
        assert_eq!(entry & (pte::A | pte::D), pte::A);
        // Read-only page with CR0.WP: a supervisor write faults with P|W.
        let f = write(&mut ctx, &mut rt, 0x40_0123, 1, 0).unwrap_err();
        assert_eq!(f.vector, PF_VECTOR);
        assert_eq!(f.error_code, Some(pf_error::P | pf_error::WR));
        assert_eq!(ctx.cpu.cr2, 0x40_0123);
        // Not present.
        let f = read(&mut ctx, &mut rt, 0x80_0000, 4).unwrap_err();
        assert_eq!(f.error_code, Some(0));
        // fetch_code stops at the unmapped page after the mapped one.
        let mut buf = [0u8; 16];
        let (phys, n) = fetch_code(&mut ctx, &mut rt, 0x40_0ff8, &mut buf).unwrap();
        assert_eq!((phys, n), (0x5ff8, 8));
    }

    #[test]
    fn global_pages_survive_cr3_loads_but_not_invlpg() {
        use crate::paging::cr4;
        let (mut ctx, mut rt) = machine();
        // PAE: PDPT 0x10000, PD 0x11000, PT 0x12000; 0x1000 global -> 0x5000, 0x2000 -> 0x6000.
        let put = |rt: &Runtime, a: u64, v: u64| rt.ram.write_host(a, &v.to_le_bytes()).unwrap();
        put(&rt, 0x10000, 0x11000 | pte::P);
        put(&rt, 0x11000, 0x12000 | pte::P | pte::RW);
        put(&rt, 0x12008, 0x5000 | pte::P | pte::RW | pte::G);
        put(&rt, 0x12010, 0x6000 | pte::P | pte::RW);
        ctx.cpu.cr4 |= cr4::PAE | cr4::PGE;
        ctx.cpu.cr3 = 0x10000;
        ctx.cpu.cr0 |= cr0::PG;
        rt.ram.write_host(0x5000, &[0x11]).unwrap();
        rt.ram.write_host(0x6000, &[0x22]).unwrap();
        rt.ram.write_host(0x7000, &[0x33]).unwrap();
        assert_eq!(read(&mut ctx, &mut rt, 0x1000, 1).unwrap(), 0x11);
        assert_eq!(read(&mut ctx, &mut rt, 0x2000, 1).unwrap(), 0x22);
        // Remap both pages to 0x7000 and load CR3: the global entry stays, the other goes.
        put(&rt, 0x12008, 0x7000 | pte::P | pte::RW | pte::G);
        put(&rt, 0x12010, 0x7000 | pte::P | pte::RW);
        ctx.flush_tlb_non_global();
        assert_eq!(read(&mut ctx, &mut rt, 0x1000, 1).unwrap(), 0x11);
        assert_eq!(read(&mut ctx, &mut rt, 0x2000, 1).unwrap(), 0x33);
        // INVLPG drops the global entry.
        flush_tlb_page(&mut ctx, 0x1000);
        assert_eq!(read(&mut ctx, &mut rt, 0x1000, 1).unwrap(), 0x33);
    }

    #[test]
    fn code_lookups_fill_the_tlb_and_honour_execute_disable() {
        use crate::paging::cr4;
        let (mut ctx, mut rt) = machine();
        // PAE with NXE: PDPT 0x10000, PD 0x11000, PT 0x12000; 0x1000 -> 0x5000, 0x2000 -> 0x6000 XD.
        let put = |rt: &Runtime, a: u64, v: u64| rt.ram.write_host(a, &v.to_le_bytes()).unwrap();
        put(&rt, 0x10000, 0x11000 | pte::P);
        put(&rt, 0x11000, 0x12000 | pte::P | pte::RW);
        put(&rt, 0x12008, 0x5000 | pte::P | pte::RW);
        put(&rt, 0x12010, 0x6000 | pte::P | pte::RW | pte::XD);
        ctx.cpu.cr4 |= cr4::PAE;
        ctx.cpu.efer |= efer::NXE;
        ctx.cpu.cr3 = 0x10000;
        ctx.cpu.cr0 |= cr0::PG;
        assert_eq!(code_phys(&mut ctx, &mut rt, 0x1234).unwrap(), 0x5234);
        assert_eq!(ctx.tlb[tlb_index(0x1000)].read_tag, 0x1000);
        // Served from the TLB now: a changed PTE is not seen until INVLPG.
        put(&rt, 0x12008, 0x7000 | pte::P | pte::RW);
        assert_eq!(code_phys(&mut ctx, &mut rt, 0x1ff0).unwrap(), 0x5ff0);
        flush_tlb_page(&mut ctx, 0x1000);
        assert_eq!(code_phys(&mut ctx, &mut rt, 0x1ff0).unwrap(), 0x7ff0);
        // A read fills the TLB for an execute-disabled page; a fetch from it still faults.
        assert_eq!(read(&mut ctx, &mut rt, 0x2000, 1).unwrap(), 0);
        let f = code_phys(&mut ctx, &mut rt, 0x2000).unwrap_err();
        assert_eq!(f.error_code, Some(pf_error::P | pf_error::ID));
    }

    #[test]
    fn non_canonical_addresses_fault_in_ia32e_mode() {
        let (mut ctx, mut rt) = machine();
        ctx.cpu.efer |= vcpu::state::efer::LMA;
        // 64-bit code: linear addresses are 64 bits wide.
        ctx.cpu.seg[vcpu::SegmentIndex::Cs as usize].attr |= vcpu::Segment::ATTR_L;
        let f = read(&mut ctx, &mut rt, 0x0000_8000_0000_0000, 4).unwrap_err();
        assert_eq!(f, Fault::gp(0));
        let f = write(&mut ctx, &mut rt, 0x0000_7fff_ffff_fffe, 4, 0).unwrap_err();
        assert_eq!(f, Fault::gp(0));
    }
}
