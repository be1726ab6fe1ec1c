//! The page walker: linear to physical addresses under the three paging modes the JIT supports
//! (SDM Vol. 3A ch. 4): 32-bit paging with 4 MiB pages (4.3), PAE paging with 2 MiB pages
//! (4.4, CR4.PAE without EFER.LMA) and 4-level paging (4.5, EFER.LMA).
//!
//! It applies the access rights of every level (R/W, U/S with CR0.WP, XD with EFER.NXE; 4.6),
//! checks reserved bits, sets accessed and dirty flags once an access is allowed (4.8), and
//! builds the exact page-fault error code (4.7). PDPTEs of PAE paging are read from memory on
//! every walk, as QEMU's TCG does, instead of being cached in registers at MOV CR3 (4.4.1): a
//! guest that edits its PDPT without reloading CR3 sees the edit earlier than on hardware.

use vcpu::state::{cr0, efer, rflags};

use crate::context::JitContext;
use crate::exception::{Fault, PF_VECTOR};
use crate::runtime::Runtime;

/// CR4 bits that affect paging (SDM Vol. 3A 2.5).
pub mod cr4 {
    /// 4 MiB pages in 32-bit paging.
    pub const PSE: u64 = 1 << 4;
    /// PAE paging (and a prerequisite of IA-32e mode).
    pub const PAE: u64 = 1 << 5;
    /// Global pages.
    pub const PGE: u64 = 1 << 7;
    /// Supervisor-mode execution prevention (SDM Vol. 3A 4.6.1).
    pub const SMEP: u64 = 1 << 20;
    /// Supervisor-mode access prevention (SDM Vol. 3A 4.6.1).
    pub const SMAP: u64 = 1 << 21;
}

/// Paging-structure entry bits (SDM Vol. 3A 4.3-4.5, Tables 4-4 to 4-20).
pub mod pte {
    pub const P: u64 = 1 << 0;
    pub const RW: u64 = 1 << 1;
    pub const US: u64 = 1 << 2;
    pub const A: u64 = 1 << 5;
    pub const D: u64 = 1 << 6;
    /// Page size: the entry maps a page instead of referencing a table.
    pub const PS: u64 = 1 << 7;
    /// Global (leaf entries, with CR4.PGE).
    pub const G: u64 = 1 << 8;
    /// Execute-disable (PAE and 4-level entries, with EFER.NXE).
    pub const XD: u64 = 1 << 63;
}

/// Page-fault error code bits (SDM Vol. 3A 4.7, Figure 4-12).
pub mod pf_error {
    /// The fault was a protection violation (clear: a not-present page).
    pub const P: u32 = 1 << 0;
    pub const WR: u32 = 1 << 1;
    pub const US: u32 = 1 << 2;
    /// A reserved bit was set in a paging-structure entry.
    pub const RSVD: u32 = 1 << 3;
    /// An instruction fetch (reported with PAE/4-level paging and EFER.NXE).
    pub const ID: u32 = 1 << 4;
}

/// The physical-address width the JIT's processor has (CPUID 80000008H EAX bits 7:0, SDM Vol. 3A
/// 4.1.4). Entry bits from here up to bit 51 (62 without NXE) are reserved.
pub const MAXPHYADDR: u32 = 40;
/// Linear-address width of 4-level paging (CPUID 80000008H EAX bits 15:8).
pub const LINEAR_BITS: u32 = 48;

/// Physical-address bits of a PAE/4-level entry (bits MAXPHYADDR-1:12).
const ADDR_MASK: u64 = ((1u64 << MAXPHYADDR) - 1) & !0xfff;

/// What an access does, for permission checks and page-fault error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Execute,
}

/// A translated address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    pub phys: u64,
    /// A write could go straight to the page: writable for this access's privilege and the
    /// dirty flag already set.
    pub write_ok: bool,
    /// The leaf is global (G set with CR4.PGE): MOV CR3 keeps its TLB entry.
    pub global: bool,
    /// Instruction fetches are allowed (no XD bit on the way with EFER.NXE).
    pub executable: bool,
}

/// Whether `la` is canonical for 4-level paging: bits 63:47 all equal (SDM Vol. 1 3.3.7.1).
#[inline]
pub fn is_canonical(la: u64) -> bool {
    let shift = 64 - LINEAR_BITS;
    (((la << shift) as i64) >> shift) as u64 == la
}

fn phys_read_u64(rt: &Runtime, gpa: u64) -> u64 {
    // Paging structures outside RAM/ROM read as zero (not present).
    rt.phys.read_u64(gpa).unwrap_or(0)
}

fn phys_read_u32(rt: &Runtime, gpa: u64) -> u64 {
    rt.phys.read_u32(gpa).map_or(0, u64::from)
}

/// Update the low dword of an entry (A and D live there); entries in ROM stay as they are.
fn phys_write_u32(rt: &Runtime, gpa: u64, v: u32) {
    rt.phys.write_ram_u32(gpa, v);
}

/// One paging-structure entry used by a walk: where it is and its value.
#[derive(Debug, Clone, Copy)]
struct Used {
    addr: u64,
    value: u64,
}

/// The entries a walk went through, root first.
struct Path {
    entries: [Used; 4],
    len: usize,
}

impl Path {
    fn new() -> Self {
        Self {
            entries: [Used { addr: 0, value: 0 }; 4],
            len: 0,
        }
    }
    fn push(&mut self, addr: u64, value: u64) {
        self.entries[self.len] = Used { addr, value };
        self.len += 1;
    }
}

/// Why a walk stopped short.
enum Stop {
    NotPresent,
    Reserved,
}

/// Translate `la` with the current paging mode. `user` is true for accesses at CPL 3 other
/// than implicit supervisor accesses (SDM Vol. 3A 4.6). On a fault CR2 is set to `la` and the
/// #PF carries the error code of SDM Vol. 3A 4.7.
pub fn walk(
    ctx: &mut JitContext,
    rt: &mut Runtime,
    la: u64,
    access: Access,
    user: bool,
) -> Result<Translation, Fault> {
    let c = &ctx.cpu;
    let nxe = c.efer & efer::NXE != 0;
    let pae = c.cr4 & cr4::PAE != 0;
    let long = c.efer & efer::LMA != 0;
    let a20 = ctx.a20_mask;
    let mut path = Path::new();
    // Reserved bits of PAE/4-level entries that map or reference something: physical address
    // bits above MAXPHYADDR, and XD without NXE.
    let high_rsvd = !((1u64 << MAXPHYADDR) - 1) & if nxe { !pte::XD } else { u64::MAX };
    let result = if long {
        walk_4level(rt, ctx.cpu.cr3, la, a20, high_rsvd, &mut path)
    } else if pae {
        walk_pae(rt, ctx.cpu.cr3, la, a20, high_rsvd, &mut path)
    } else {
        walk_32(rt, ctx.cpu.cr3, ctx.cpu.cr4, la, a20, &mut path)
    };
    let write = access == Access::Write;
    let smep = ctx.cpu.cr4 & cr4::SMEP != 0;
    // I/D is reported with NXE under PAE/4-level paging, and whenever SMEP is on (SDM 4.7).
    let fetch_flag = access == Access::Execute && ((pae && nxe) || smep);
    let fault = |ctx: &mut JitContext, bits: u32| {
        ctx.cpu.cr2 = la;
        let mut code = bits;
        if write {
            code |= pf_error::WR;
        }
        if user {
            code |= pf_error::US;
        }
        if fetch_flag {
            code |= pf_error::ID;
        }
        Fault::with_code(PF_VECTOR, code)
    };
    let phys = match result {
        Ok(r) => r,
        Err(Stop::NotPresent) => return Err(fault(ctx, 0)),
        Err(Stop::Reserved) => return Err(fault(ctx, pf_error::P | pf_error::RSVD)),
    };
    let used = &path.entries[..path.len];
    // PAE PDPTEs carry no access rights (SDM Vol. 3A 4.4.1): skip them.
    let rights = if pae && !long { &used[1..] } else { used };
    let writable = rights.iter().all(|e| e.value & pte::RW != 0);
    let user_ok = rights.iter().all(|e| e.value & pte::US != 0);
    // SMEP: supervisor-mode fetches from user-mode pages fault (SDM Vol. 3A 4.6.1).
    let smep_denied = smep && !user && user_ok;
    let executable = (!nxe || rights.iter().all(|e| e.value & pte::XD == 0)) && !smep_denied;
    if user && !user_ok {
        return Err(fault(ctx, pf_error::P));
    }
    // SMAP: supervisor data accesses to user-mode pages fault unless EFLAGS.AC is set and the
    // access is explicit; supervisor accesses while CPL = 3 are implicit ones (to the GDT, IDT,
    // TSS or an inner stack) and always fault (SDM Vol. 3A 4.6.1). Implicit accesses at CPL < 3
    // cannot be told apart here and follow AC. The interpreter flushes the TLB when AC changes
    // under SMAP, so a translation cached while AC was set does not outlive it.
    if ctx.cpu.cr4 & cr4::SMAP != 0 && !user && user_ok && access != Access::Execute {
        let implicit = ctx.cpu.cpl() == 3;
        if implicit || ctx.cpu.rflags & rflags::AC == 0 {
            return Err(fault(ctx, pf_error::P));
        }
    }
    let wp = ctx.cpu.cr0 & cr0::WP != 0;
    let write_allowed = writable || (!user && !wp);
    if write && !write_allowed {
        return Err(fault(ctx, pf_error::P));
    }
    if access == Access::Execute && !executable {
        return Err(fault(ctx, pf_error::P));
    }
    // The access is allowed: set accessed flags on the way down and dirty on the leaf.
    let leaf_index = path.len - 1;
    let mut leaf = used[leaf_index].value;
    for (i, e) in used.iter().enumerate() {
        // PAE PDPTEs have no accessed flag to set (bit 5 is reserved there).
        if pae && !long && i == 0 {
            continue;
        }
        let mut v = e.value | pte::A;
        if i == leaf_index && write {
            v |= pte::D;
        }
        if v != e.value {
            phys_write_u32(rt, e.addr, v as u32);
        }
        if i == leaf_index {
            leaf = v;
        }
    }
    let global = leaf & pte::G != 0 && ctx.cpu.cr4 & cr4::PGE != 0;
    Ok(Translation {
        phys: phys & a20,
        write_ok: write_allowed && leaf & pte::D != 0,
        global,
        executable,
    })
}

/// 32-bit paging (SDM Vol. 3A 4.3). Returns the physical address.
fn walk_32(
    rt: &Runtime,
    cr3: u64,
    cr4_value: u64,
    la: u64,
    a20: u64,
    path: &mut Path,
) -> Result<u64, Stop> {
    let la = la & 0xffff_ffff;
    let pde_addr = ((cr3 & 0xffff_f000) | ((la >> 20) & 0xffc)) & a20;
    let pde = phys_read_u32(rt, pde_addr);
    if pde & pte::P == 0 {
        return Err(Stop::NotPresent);
    }
    path.push(pde_addr, pde);
    if pde & pte::PS != 0 && cr4_value & cr4::PSE != 0 {
        return Ok((pde & 0xffc0_0000) | (la & 0x3f_ffff));
    }
    let pte_addr = ((pde & 0xffff_f000) | ((la >> 10) & 0xffc)) & a20;
    let entry = phys_read_u32(rt, pte_addr);
    if entry & pte::P == 0 {
        return Err(Stop::NotPresent);
    }
    path.push(pte_addr, entry);
    Ok((entry & 0xffff_f000) | (la & 0xfff))
}

/// Read the entry at `table + index * 8`, stop if not present or reserved bits are set.
fn entry(
    rt: &Runtime,
    table: u64,
    index: u64,
    a20: u64,
    rsvd: u64,
    path: &mut Path,
) -> Result<u64, Stop> {
    let addr = (table + index * 8) & a20;
    let e = phys_read_u64(rt, addr);
    if e & pte::P == 0 {
        return Err(Stop::NotPresent);
    }
    if e & rsvd != 0 {
        return Err(Stop::Reserved);
    }
    path.push(addr, e);
    Ok(e)
}

/// Reserved bits of a 2 MiB leaf besides the high ones: 20:13 (bit 12 is PAT).
const RSVD_2M: u64 = 0x1f_e000;
/// Reserved bits of a PAE PDPTE besides the high ones: 2:1 and 8:5 (SDM Vol. 3A Table 4-8).
const RSVD_PAE_PDPTE: u64 = 0x1e6;

/// The lower levels shared by PAE and 4-level paging: page directory, page table.
fn walk_directory(
    rt: &Runtime,
    pd: u64,
    la: u64,
    a20: u64,
    high_rsvd: u64,
    path: &mut Path,
) -> Result<u64, Stop> {
    let pde = entry(rt, pd, (la >> 21) & 0x1ff, a20, high_rsvd, path)?;
    if pde & pte::PS != 0 {
        if pde & RSVD_2M != 0 {
            return Err(Stop::Reserved);
        }
        return Ok((pde & ADDR_MASK & !0x1f_ffff) | (la & 0x1f_ffff));
    }
    let e = entry(
        rt,
        pde & ADDR_MASK,
        (la >> 12) & 0x1ff,
        a20,
        high_rsvd,
        path,
    )?;
    Ok((e & ADDR_MASK) | (la & 0xfff))
}

/// PAE paging (SDM Vol. 3A 4.4): a 4-entry PDPT at CR3[31:5], then directory and table.
fn walk_pae(
    rt: &Runtime,
    cr3: u64,
    la: u64,
    a20: u64,
    high_rsvd: u64,
    path: &mut Path,
) -> Result<u64, Stop> {
    let la = la & 0xffff_ffff;
    let pdpt = cr3 & 0xffff_ffe0;
    // PDPTEs have no XD bit: bit 63 is always reserved there.
    let pdpte_rsvd = (high_rsvd | pte::XD | RSVD_PAE_PDPTE) & !pte::P;
    let pdpte = entry(rt, pdpt, (la >> 30) & 3, a20, pdpte_rsvd, path)?;
    walk_directory(rt, pdpte & ADDR_MASK, la, a20, high_rsvd, path)
}

/// Reserved bits of a 1 GiB leaf besides the high ones: 29:13 (bit 12 is PAT).
const RSVD_1G: u64 = 0x3fff_e000;

/// 4-level paging (SDM Vol. 3A 4.5): PML4 (where PS is reserved), PDPT (PS maps a 1 GiB page,
/// Table 4-15), directory, table.
fn walk_4level(
    rt: &Runtime,
    cr3: u64,
    la: u64,
    a20: u64,
    high_rsvd: u64,
    path: &mut Path,
) -> Result<u64, Stop> {
    let pml4 = cr3 & ADDR_MASK;
    let pml4e = entry(rt, pml4, (la >> 39) & 0x1ff, a20, high_rsvd | pte::PS, path)?;
    let pdpte = entry(
        rt,
        pml4e & ADDR_MASK,
        (la >> 30) & 0x1ff,
        a20,
        high_rsvd,
        path,
    )?;
    if pdpte & pte::PS != 0 {
        if pdpte & RSVD_1G != 0 {
            return Err(Stop::Reserved);
        }
        return Ok((pdpte & ADDR_MASK & !0x3fff_ffff) | (la & 0x3fff_ffff));
    }
    walk_directory(rt, pdpte & ADDR_MASK, la, a20, high_rsvd, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcpu::{CpuState, GuestRam, RegionKind, RegionSpec};

    fn machine() -> (JitContext, Runtime) {
        let ram = GuestRam::new(&[RegionSpec {
            base: 0,
            size: 0x80_0000,
            kind: RegionKind::Ram,
        }])
        .unwrap();
        let mut ctx = JitContext::new(CpuState::reset());
        ctx.cpu.cr0 |= cr0::PE | cr0::PG;
        (ctx, Runtime::new(ram))
    }

    fn put(rt: &Runtime, gpa: u64, v: u64) {
        rt.ram.write_host(gpa, &v.to_le_bytes()).unwrap();
    }

    fn get(rt: &Runtime, gpa: u64) -> u64 {
        phys_read_u64(rt, gpa)
    }

    /// PAE: PDPT at 0x1000, PD at 0x2000, PT at 0x3000.
    fn pae_machine() -> (JitContext, Runtime) {
        let (mut ctx, rt) = machine();
        ctx.cpu.cr4 |= cr4::PAE;
        ctx.cpu.cr3 = 0x1000;
        put(&rt, 0x1000, 0x2000 | pte::P);
        // 0x0000_0000-0x001f_ffff: 4 KiB pages through the PT; 0x0020_0000: a 2 MiB page.
        put(&rt, 0x2000, 0x3000 | pte::P | pte::RW | pte::US);
        put(&rt, 0x2008, 0x40_0000 | pte::P | pte::RW | pte::PS);
        put(&rt, 0x3000 + 5 * 8, 0x7000 | pte::P | pte::RW | pte::US);
        put(&rt, 0x3000 + 6 * 8, 0x8000 | pte::P | pte::US | pte::XD);
        (ctx, rt)
    }

    #[test]
    fn pae_4k_and_2m_pages_translate_and_set_flags() {
        let (mut ctx, mut rt) = pae_machine();
        let t = walk(&mut ctx, &mut rt, 0x5123, Access::Read, false).unwrap();
        assert_eq!(t.phys, 0x7123);
        assert!(!t.write_ok, "dirty not yet set");
        assert_eq!(get(&rt, 0x3000 + 5 * 8) & (pte::A | pte::D), pte::A);
        assert_eq!(get(&rt, 0x2000) & pte::A, pte::A);
        // The PDPTE has no accessed flag.
        assert_eq!(get(&rt, 0x1000), 0x2000 | pte::P);
        let t = walk(&mut ctx, &mut rt, 0x5123, Access::Write, true).unwrap();
        assert!(t.write_ok);
        assert_eq!(get(&rt, 0x3000 + 5 * 8) & pte::D, pte::D);
        let t = walk(&mut ctx, &mut rt, 0x2f_fffc, Access::Write, false).unwrap();
        assert_eq!(t.phys, 0x4f_fffc);
        assert_eq!(get(&rt, 0x2008) & (pte::A | pte::D), pte::A | pte::D);
    }

    #[test]
    fn error_codes_follow_sdm_4_7() {
        let (mut ctx, mut rt) = pae_machine();
        // Not present, user read.
        let f = walk(&mut ctx, &mut rt, 0x9000, Access::Read, true).unwrap_err();
        assert_eq!(f, Fault::with_code(PF_VECTOR, pf_error::US));
        assert_eq!(ctx.cpu.cr2, 0x9000);
        // Supervisor page from user mode: P | US.
        let f = walk(&mut ctx, &mut rt, 0x20_0000, Access::Read, true).unwrap_err();
        assert_eq!(f.error_code, Some(pf_error::P | pf_error::US));
        // Read-only page, supervisor write: allowed without WP, P | WR with WP.
        assert!(walk(&mut ctx, &mut rt, 0x6000, Access::Write, false).is_err());
        let (mut ctx, mut rt) = pae_machine();
        ctx.cpu.efer |= efer::NXE;
        assert!(walk(&mut ctx, &mut rt, 0x6000, Access::Write, false).is_ok());
        ctx.cpu.cr0 |= cr0::WP;
        let f = walk(&mut ctx, &mut rt, 0x6000, Access::Write, false).unwrap_err();
        assert_eq!(f.error_code, Some(pf_error::P | pf_error::WR));
        // Execute-disable: a fetch faults with P | ID; a read does not.
        let f = walk(&mut ctx, &mut rt, 0x6010, Access::Execute, true).unwrap_err();
        assert_eq!(
            f.error_code,
            Some(pf_error::P | pf_error::US | pf_error::ID)
        );
        assert!(walk(&mut ctx, &mut rt, 0x6010, Access::Read, true).is_ok());
        // With NXE a not-present fetch reports ID too.
        let f = walk(&mut ctx, &mut rt, 0x9000, Access::Execute, false).unwrap_err();
        assert_eq!(f.error_code, Some(pf_error::ID));
    }

    #[test]
    fn xd_without_nxe_is_a_reserved_bit() {
        let (mut ctx, mut rt) = pae_machine();
        let f = walk(&mut ctx, &mut rt, 0x6000, Access::Read, false).unwrap_err();
        assert_eq!(f.error_code, Some(pf_error::P | pf_error::RSVD));
        // No ID bit without NXE.
        let f = walk(&mut ctx, &mut rt, 0x6000, Access::Execute, false).unwrap_err();
        assert_eq!(f.error_code, Some(pf_error::P | pf_error::RSVD));
        // Physical-address bits above MAXPHYADDR are reserved too.
        put(&rt, 0x3000 + 7 * 8, (1 << MAXPHYADDR) | pte::P);
        let f = walk(&mut ctx, &mut rt, 0x7000, Access::Write, false).unwrap_err();
        assert_eq!(
            f.error_code,
            Some(pf_error::P | pf_error::RSVD | pf_error::WR)
        );
    }

    #[test]
    fn four_level_walk_with_global_pages() {
        let (mut ctx, mut rt) = machine();
        ctx.cpu.cr4 |= cr4::PAE | cr4::PGE;
        ctx.cpu.efer |= efer::LME | efer::LMA | efer::NXE;
        ctx.cpu.cr3 = 0x10000;
        // la 0xffff_8000_0020_3456 -> PML4[256] -> PDPT[0] -> PD[1] -> PT[3] -> 0x9000.
        put(&rt, 0x10000 + 256 * 8, 0x11000 | pte::P | pte::RW);
        put(&rt, 0x11000, 0x12000 | pte::P | pte::RW);
        put(&rt, 0x12008, 0x13000 | pte::P | pte::RW);
        put(&rt, 0x13018, 0x9000 | pte::P | pte::RW | pte::G);
        let la = 0xffff_8000_0020_3456;
        let t = walk(&mut ctx, &mut rt, la, Access::Execute, false).unwrap();
        assert_eq!(t.phys, 0x9456);
        assert!(t.global);
        for a in [0x10000 + 256 * 8, 0x11000, 0x12008, 0x13018] {
            assert_eq!(get(&rt, a) & pte::A, pte::A, "accessed at {a:#x}");
        }
        // XD in an upper level forbids fetches below it.
        put(&rt, 0x11000, 0x12000 | pte::P | pte::RW | pte::XD);
        let f = walk(&mut ctx, &mut rt, la, Access::Execute, false).unwrap_err();
        assert_eq!(f.error_code, Some(pf_error::P | pf_error::ID));
        // A 1 GiB PDPTE whose address has bits 29:13 set hits reserved bits.
        put(&rt, 0x11000, 0x12000 | pte::P | pte::PS);
        let f = walk(&mut ctx, &mut rt, la, Access::Read, false).unwrap_err();
        assert_eq!(f.error_code, Some(pf_error::P | pf_error::RSVD));
        // Without CR4.PGE the G bit means nothing.
        put(&rt, 0x11000, 0x12000 | pte::P | pte::RW);
        ctx.cpu.cr4 &= !cr4::PGE;
        assert!(
            !walk(&mut ctx, &mut rt, la, Access::Read, false)
                .unwrap()
                .global
        );
    }

    #[test]
    fn one_gib_pages_and_smep() {
        let (mut ctx, mut rt) = machine();
        ctx.cpu.cr4 |= cr4::PAE;
        ctx.cpu.efer |= efer::LME | efer::LMA;
        ctx.cpu.cr3 = 0x10000;
        // PML4[0] -> PDPT at 0x11000; PDPT[1]: a 1 GiB user page at physical 0x4000_0000.
        put(&rt, 0x10000, 0x11000 | pte::P | pte::RW | pte::US);
        put(
            &rt,
            0x11008,
            0x4000_0000 | pte::P | pte::RW | pte::US | pte::PS,
        );
        let t = walk(&mut ctx, &mut rt, 0x7fff_fff8, Access::Write, false).unwrap();
        assert_eq!(t.phys, 0x7fff_fff8);
        assert_eq!(get(&rt, 0x11008) & (pte::A | pte::D), pte::A | pte::D);
        // Without SMEP the supervisor may execute from the user page; with it, the fetch
        // faults with P | ID and reads still work.
        assert!(t.executable);
        ctx.cpu.cr4 |= cr4::SMEP;
        let f = walk(&mut ctx, &mut rt, 0x4000_1000, Access::Execute, false).unwrap_err();
        assert_eq!(f.error_code, Some(pf_error::P | pf_error::ID));
        let t = walk(&mut ctx, &mut rt, 0x4000_1000, Access::Read, false).unwrap();
        assert!(
            !t.executable,
            "the TLB must not let supervisor fetches through"
        );
        assert!(walk(&mut ctx, &mut rt, 0x4000_1000, Access::Execute, true).is_ok());
        // SMAP: supervisor data accesses to the user page need EFLAGS.AC, and implicit ones
        // (supervisor accesses at CPL 3) fault whatever AC says.
        ctx.cpu.cr4 |= cr4::SMAP;
        let f = walk(&mut ctx, &mut rt, 0x4000_1000, Access::Write, false).unwrap_err();
        assert_eq!(f.error_code, Some(pf_error::P | pf_error::WR));
        ctx.cpu.rflags |= rflags::AC;
        assert!(walk(&mut ctx, &mut rt, 0x4000_1000, Access::Write, false).is_ok());
        assert!(walk(&mut ctx, &mut rt, 0x4000_1000, Access::Read, true).is_ok());
        ctx.cpu.cr0 |= cr0::PE;
        ctx.cpu.seg[vcpu::SegmentIndex::Ss as usize].attr = 3 << 5;
        assert_eq!(ctx.cpu.cpl(), 3);
        assert!(walk(&mut ctx, &mut rt, 0x4000_1000, Access::Read, false).is_err());
        // Bits 29:13 of a 1 GiB PDPTE are reserved.
        put(&rt, 0x11008, 0x4000_2000 | pte::P | pte::PS);
        let f = walk(&mut ctx, &mut rt, 0x4000_0000, Access::Read, false).unwrap_err();
        assert_eq!(f.error_code, Some(pf_error::P | pf_error::RSVD));
    }

    #[test]
    fn canonical_addresses() {
        assert!(is_canonical(0x0000_7fff_ffff_ffff));
        assert!(is_canonical(0xffff_8000_0000_0000));
        assert!(!is_canonical(0x0000_8000_0000_0000));
        assert!(!is_canonical(0xfff0_0000_0000_0000));
    }
}
