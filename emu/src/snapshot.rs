//! The snapshot file format: a whole machine (CPU state, device states, guest memory) in one
//! self-describing, versioned, checksummed file.
//!
//! Layout (all integers little-endian):
//! ```text
//! magic    8 bytes  "EMUSNAP\0"
//! version  u32      FORMAT_VERSION
//! sections          repeated: tag [u8; 4], length u64, payload
//!   "CPU "          the CpuState, field by field (see `encode_cpu`)
//!   "REGN"          memory regions: count u32, then base u64, size u64, kind u8 each
//!   "PAGE"          non-zero guest pages: gpa u64 + 4096 bytes each (zero pages are omitted)
//!   "DEVS"          device states: count u32, then name (u16 length + UTF-8), blob (u64 + bytes)
//! "END "   u64 = 4, then the CRC-32 (IEEE) of every byte before the "END " tag
//! ```
//! Files are written to a temporary name in the same directory, fsynced, and renamed over the
//! target, so a crash never leaves a half-written snapshot under the real name. Reading checks
//! the magic, version, every length and the checksum before anything is used, and reports each
//! problem as a distinct [`SnapshotError`].

use std::io::Write;
use std::path::{Path, PathBuf};

use vcpu::{
    CpuState, DescriptorTable, FxArea, GuestRam, PendingEvent, RegionKind, RegionSpec, Segment,
};

pub const MAGIC: &[u8; 8] = b"EMUSNAP\0";
/// Version 2 added IA32_TSC_ADJUST to the CPU section; version 1 files still load (with 0).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version this emu reads.
const OLDEST_VERSION: u32 = 1;
const TAG_CPU: &[u8; 4] = b"CPU ";
const TAG_REGIONS: &[u8; 4] = b"REGN";
const TAG_PAGES: &[u8; 4] = b"PAGE";
const TAG_DEVICES: &[u8; 4] = b"DEVS";
const TAG_END: &[u8; 4] = b"END ";
const PAGE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read snapshot {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write snapshot {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("not an emu snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {found} is not supported (this emu reads versions {OLDEST_VERSION} to {FORMAT_VERSION})")]
    Version { found: u32 },
    #[error("snapshot is truncated: {0}")]
    Truncated(&'static str),
    #[error("snapshot checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt")]
    Checksum { stored: u32, computed: u32 },
    #[error("snapshot section {0:?} is malformed: {1}")]
    Malformed(String, String),
    #[error("snapshot lacks the {0:?} section")]
    Missing(&'static str),
    #[error("snapshot memory layout does not match this machine: {0}")]
    Layout(String),
    #[error(transparent)]
    Memory(#[from] vcpu::MemoryError),
}

/// Whether a page is all zero. OR-ing 64-byte chunks lets the compiler vectorise the scan,
/// which is most of the time a snapshot of a large, mostly empty guest takes.
fn is_zero(page: &[u8]) -> bool {
    page.chunks(64)
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// A snapshot held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub cpu: CpuState,
    pub regions: Vec<RegionSpec>,
    /// (guest-physical page address, contents) of every page that is not all zero.
    pub pages: Vec<(u64, Vec<u8>)>,
    /// (device name, opaque state blob).
    pub devices: Vec<(String, Vec<u8>)>,
}

/// Little-endian writer.
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn segment(&mut self, s: &Segment) {
        self.u64(s.base);
        self.u32(s.limit);
        self.u16(s.selector);
        self.u16(s.attr);
    }
    fn table(&mut self, t: &DescriptorTable) {
        self.u64(t.base);
        self.u16(t.limit);
    }
    fn section(&mut self, tag: &[u8; 4], payload: &[u8]) {
        self.bytes(tag);
        self.u64(payload.len() as u64);
        self.bytes(payload);
    }
}

/// Little-endian reader over one section; every read is bounds-checked.
struct In<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.b.len() < n {
            return Err(SnapshotError::Truncated(self.what));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn segment(&mut self) -> Result<Segment, SnapshotError> {
        Ok(Segment {
            base: self.u64()?,
            limit: self.u32()?,
            selector: self.u16()?,
            attr: self.u16()?,
        })
    }
    fn table(&mut self) -> Result<DescriptorTable, SnapshotError> {
        Ok(DescriptorTable {
            base: self.u64()?,
            limit: self.u16()?,
        })
    }
}

/// Serialise a CpuState field by field (independent of the in-memory layout).
pub fn encode_cpu(c: &CpuState) -> Vec<u8> {
    let mut o = Out(Vec::with_capacity(1024));
    for r in c.gpr {
        o.u64(r);
    }
    o.u64(c.rip);
    o.u64(c.rflags);
    for s in &c.seg {
        o.segment(s);
    }
    o.segment(&c.ldtr);
    o.segment(&c.tr);
    o.table(&c.gdtr);
    o.table(&c.idtr);
    for v in [c.cr0, c.cr2, c.cr3, c.cr4, c.cr8] {
        o.u64(v);
    }
    for v in c.dr {
        o.u64(v);
    }
    for v in [
        c.efer,
        c.xcr0,
        c.star,
        c.lstar,
        c.cstar,
        c.sfmask,
        c.kernel_gs_base,
        c.sysenter_cs,
        c.sysenter_esp,
        c.sysenter_eip,
        c.pat,
        c.tsc,
        c.tsc_aux,
        c.apic_base,
        c.misc_enable,
        c.tsc_adjust,
    ] {
        o.u64(v);
    }
    o.bytes(&c.fx.0);
    o.u8(c.pending.valid);
    o.u8(c.pending.kind);
    o.u8(c.pending.vector);
    o.u8(c.pending.has_error_code);
    o.u32(c.pending.error_code);
    o.u8(c.halted);
    o.u8(c.interrupt_shadow);
    o.u8(c.nmi_blocked);
    o.0
}

/// The inverse of [`encode_cpu`] for a file of format `version`; the payload must be consumed
/// exactly.
pub fn decode_cpu(b: &[u8], version: u32) -> Result<CpuState, SnapshotError> {
    let mut i = In { b, what: "CPU " };
    let mut c = CpuState::reset();
    for r in c.gpr.iter_mut() {
        *r = i.u64()?;
    }
    c.rip = i.u64()?;
    c.rflags = i.u64()?;
    for s in c.seg.iter_mut() {
        *s = i.segment()?;
    }
    c.ldtr = i.segment()?;
    c.tr = i.segment()?;
    c.gdtr = i.table()?;
    c.idtr = i.table()?;
    for v in [&mut c.cr0, &mut c.cr2, &mut c.cr3, &mut c.cr4, &mut c.cr8] {
        *v = i.u64()?;
    }
    for v in c.dr.iter_mut() {
        *v = i.u64()?;
    }
    for v in [
        &mut c.efer,
        &mut c.xcr0,
        &mut c.star,
        &mut c.lstar,
        &mut c.cstar,
        &mut c.sfmask,
        &mut c.kernel_gs_base,
        &mut c.sysenter_cs,
        &mut c.sysenter_esp,
        &mut c.sysenter_eip,
        &mut c.pat,
        &mut c.tsc,
        &mut c.tsc_aux,
        &mut c.apic_base,
        &mut c.misc_enable,
    ] {
        *v = i.u64()?;
    }
    if version >= 2 {
        c.tsc_adjust = i.u64()?;
    }
    c.fx = FxArea(i.take(512)?.try_into().unwrap());
    c.pending = PendingEvent {
        valid: i.u8()?,
        kind: i.u8()?,
        vector: i.u8()?,
        has_error_code: i.u8()?,
        error_code: i.u32()?,
    };
    c.halted = i.u8()?;
    c.interrupt_shadow = i.u8()?;
    c.nmi_blocked = i.u8()?;
    if !i.b.is_empty() {
        return Err(SnapshotError::Malformed(
            "CPU ".into(),
            format!("{} trailing bytes", i.b.len()),
        ));
    }
    Ok(c)
}

impl Snapshot {
    /// Capture guest memory (sparsely) with the given CPU and device states.
    pub fn capture(
        cpu: CpuState,
        ram: &GuestRam,
        devices: Vec<(String, Vec<u8>)>,
    ) -> Result<Self, SnapshotError> {
        let mut pages = Vec::new();
        let mut buf = vec![0u8; PAGE];
        for r in ram.regions() {
            let mut gpa = r.base;
            while gpa < r.end() {
                ram.read(gpa, &mut buf)?;
                if !is_zero(&buf) {
                    pages.push((gpa, buf.clone()));
                }
                gpa += PAGE as u64;
            }
        }
        Ok(Self {
            cpu,
            regions: ram.regions().to_vec(),
            pages,
            devices,
        })
    }

    /// A human-readable summary: memory layout, CPU registers, device blobs.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let c = &self.cpu;
        let mut o = String::new();
        let _ = writeln!(o, "emu snapshot, format version {FORMAT_VERSION}");
        for r in &self.regions {
            let _ = writeln!(o, "region {:#012x}..{:#012x} {:?}", r.base, r.end(), r.kind);
        }
        let _ = writeln!(
            o,
            "pages  {} non-zero ({} KiB)",
            self.pages.len(),
            self.pages.len() * PAGE / 1024
        );
        let names = [
            "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ];
        for (i, name) in names.iter().enumerate() {
            let _ = write!(
                o,
                "{name:>3} {:#018x}{}",
                c.gpr[i],
                if i % 4 == 3 { "\n" } else { "  " }
            );
        }
        let _ = writeln!(
            o,
            "rip {:#018x}  rflags {:#010x}  mode {:?}",
            c.rip,
            c.rflags,
            c.mode()
        );
        let _ = writeln!(
            o,
            "cr0 {:#010x}  cr2 {:#x}  cr3 {:#x}  cr4 {:#x}  efer {:#x}",
            c.cr0, c.cr2, c.cr3, c.cr4, c.efer
        );
        for (name, s) in ["es", "cs", "ss", "ds", "fs", "gs"].iter().zip(&c.seg) {
            let _ = writeln!(
                o,
                "{name}  {:#06x} base {:#x} limit {:#x} attr {:#06x}",
                s.selector, s.base, s.limit, s.attr
            );
        }
        let _ = writeln!(
            o,
            "gdt {:#x}/{:#x}  idt {:#x}/{:#x}  halted {}",
            c.gdtr.base, c.gdtr.limit, c.idtr.base, c.idtr.limit, c.halted
        );
        for (name, blob) in &self.devices {
            // The IDE controller's blob (emu::pc) holds its registers, not the disk image.
            let note = if name == "ata" {
                " (IDE controller; the disk's contents are not in the snapshot: restore with \
                 the same --disk FILE)"
            } else {
                ""
            };
            let _ = writeln!(o, "device {name}: {} bytes{note}", blob.len());
        }
        o
    }

    /// Fill a freshly mapped (all-zero) `ram` with the snapshot's pages. The layouts must match.
    pub fn restore_memory(&self, ram: &GuestRam) -> Result<(), SnapshotError> {
        if ram.regions() != self.regions.as_slice() {
            return Err(SnapshotError::Layout(format!(
                "snapshot has {:x?}, machine has {:x?}",
                self.regions,
                ram.regions()
            )));
        }
        for (gpa, data) in &self.pages {
            ram.write_host(*gpa, data)?;
        }
        Ok(())
    }

    /// The complete file contents.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut o = Out(Vec::with_capacity(64 + self.pages.len() * (PAGE + 8)));
        o.bytes(MAGIC);
        o.u32(FORMAT_VERSION);
        o.section(TAG_CPU, &encode_cpu(&self.cpu));
        let mut r = Out(Vec::new());
        r.u32(self.regions.len() as u32);
        for s in &self.regions {
            r.u64(s.base);
            r.u64(s.size);
            r.u8(match s.kind {
                RegionKind::Ram => 0,
                RegionKind::Rom => 1,
            });
        }
        o.section(TAG_REGIONS, &r.0);
        let mut p = Out(Vec::with_capacity(self.pages.len() * (PAGE + 8)));
        for (gpa, data) in &self.pages {
            p.u64(*gpa);
            p.bytes(data);
        }
        o.section(TAG_PAGES, &p.0);
        let mut d = Out(Vec::new());
        d.u32(self.devices.len() as u32);
        for (name, blob) in &self.devices {
            d.u16(name.len() as u16);
            d.bytes(name.as_bytes());
            d.u64(blob.len() as u64);
            d.bytes(blob);
        }
        o.section(TAG_DEVICES, &d.0);
        let crc = crc32fast::hash(&o.0);
        o.bytes(TAG_END);
        o.u64(4);
        o.u32(crc);
        o.0
    }

    /// Parse and verify file contents.
    pub fn from_bytes(b: &[u8]) -> Result<Self, SnapshotError> {
        if b.len() < MAGIC.len() {
            // A prefix of the magic (an empty file included) is a cut-short snapshot.
            return Err(if MAGIC.starts_with(b) {
                SnapshotError::Truncated("the file ends inside the magic number")
            } else {
                SnapshotError::BadMagic
            });
        }
        if &b[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let mut i = In {
            b: &b[MAGIC.len()..],
            what: "header",
        };
        let version = i.u32()?;
        if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(SnapshotError::Version { found: version });
        }
        let (mut cpu, mut regions, mut pages, mut devices) = (None, None, None, None);
        loop {
            let at = b.len() - i.b.len();
            i.what = "section header";
            let tag: [u8; 4] = i.take(4)?.try_into().unwrap();
            let len = i.u64()?;
            let len = usize::try_from(len).map_err(|_| SnapshotError::Truncated("section"))?;
            i.what = "section payload";
            let payload = i.take(len)?;
            match &tag {
                TAG_END => {
                    if payload.len() != 4 {
                        return Err(SnapshotError::Malformed("END ".into(), "length".into()));
                    }
                    let stored = u32::from_le_bytes(payload.try_into().unwrap());
                    let computed = crc32fast::hash(&b[..at]);
                    if stored != computed {
                        return Err(SnapshotError::Checksum { stored, computed });
                    }
                    break;
                }
                TAG_CPU => cpu = Some(payload),
                TAG_REGIONS => regions = Some(payload),
                TAG_PAGES => pages = Some(payload),
                TAG_DEVICES => devices = Some(payload),
                other => {
                    return Err(SnapshotError::Malformed(
                        String::from_utf8_lossy(other).into_owned(),
                        "unknown section".into(),
                    ))
                }
            }
        }
        let cpu = decode_cpu(cpu.ok_or(SnapshotError::Missing("CPU "))?, version)?;
        let mut r = In {
            b: regions.ok_or(SnapshotError::Missing("REGN"))?,
            what: "REGN",
        };
        let n = r.u32()?;
        let mut region_list = Vec::new();
        for _ in 0..n {
            let base = r.u64()?;
            let size = r.u64()?;
            let kind = match r.u8()? {
                0 => RegionKind::Ram,
                1 => RegionKind::Rom,
                k => {
                    return Err(SnapshotError::Malformed(
                        "REGN".into(),
                        format!("region kind {k}"),
                    ))
                }
            };
            region_list.push(RegionSpec { base, size, kind });
        }
        let mut p = In {
            b: pages.ok_or(SnapshotError::Missing("PAGE"))?,
            what: "PAGE",
        };
        let mut page_list = Vec::new();
        while !p.b.is_empty() {
            let gpa = p.u64()?;
            let data = p.take(PAGE)?.to_vec();
            if gpa % PAGE as u64 != 0 || !region_list.iter().any(|r| r.contains(gpa)) {
                return Err(SnapshotError::Malformed(
                    "PAGE".into(),
                    format!("page {gpa:#x} is outside the snapshot's regions"),
                ));
            }
            page_list.push((gpa, data));
        }
        let mut d = In {
            b: devices.ok_or(SnapshotError::Missing("DEVS"))?,
            what: "DEVS",
        };
        let n = d.u32()?;
        let mut device_list = Vec::new();
        for _ in 0..n {
            let name_len = d.u16()? as usize;
            let name = String::from_utf8(d.take(name_len)?.to_vec()).map_err(|_| {
                SnapshotError::Malformed("DEVS".into(), "device name is not UTF-8".into())
            })?;
            let blob_len =
                usize::try_from(d.u64()?).map_err(|_| SnapshotError::Truncated("DEVS"))?;
            device_list.push((name, d.take(blob_len)?.to_vec()));
        }
        Ok(Self {
            cpu,
            regions: region_list,
            pages: page_list,
            devices: device_list,
        })
    }

    /// Write atomically: temporary file in the same directory, fsync, rename, fsync the
    /// directory.
    pub fn write_file(&self, path: &Path) -> Result<(), SnapshotError> {
        let werr = |source| SnapshotError::Write {
            path: path.display().to_string(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path.file_name().ok_or_else(|| {
            werr(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "snapshot path names no file",
            ))
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp: PathBuf = dir.join(tmp_name);
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&self.to_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(werr)
    }

    pub fn read_file(path: &Path) -> Result<Self, SnapshotError> {
        let b = std::fs::read(path).map_err(|source| SnapshotError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Snapshot, GuestRam) {
        let regions = [
            RegionSpec {
                base: 0,
                size: 0x10000,
                kind: RegionKind::Ram,
            },
            RegionSpec {
                base: 0xffff_0000,
                size: 0x10000,
                kind: RegionKind::Rom,
            },
        ];
        let ram = GuestRam::new(&regions).unwrap();
        ram.write_host(0x1234, b"hello").unwrap();
        ram.write_host(0xffff_fff0, &[0xea]).unwrap();
        let mut cpu = CpuState::reset();
        cpu.gpr[3] = 0xdead_beef;
        cpu.rip = 0x1234;
        cpu.fx.0[200] = 7;
        cpu.pending.valid = 1;
        cpu.pending.vector = 14;
        cpu.pending.error_code = 2;
        let snap = Snapshot::capture(cpu, &ram, vec![("pic".into(), vec![1, 2, 3])]).unwrap();
        (snap, ram)
    }

    #[test]
    fn version_1_cpu_sections_load_without_tsc_adjust() {
        let mut c = CpuState::reset();
        c.gpr[3] = 0x1234;
        c.tsc = 0x5555_0000;
        c.tsc_adjust = 0x77;
        let v2 = encode_cpu(&c);
        assert_eq!(decode_cpu(&v2, FORMAT_VERSION).unwrap(), c);
        // Version 1 had no IA32_TSC_ADJUST after IA32_MISC_ENABLE; the FXSAVE image, the
        // pending event (8 bytes) and three state bytes follow it.
        let at = v2.len() - (512 + 8 + 3) - 8;
        let v1 = [&v2[..at], &v2[at + 8..]].concat();
        assert_eq!(decode_cpu(&v1, 1).unwrap(), CpuState { tsc_adjust: 0, ..c });
        assert!(matches!(
            decode_cpu(&v1, 2),
            Err(SnapshotError::Truncated(_))
        ));
    }

    #[test]
    fn round_trip_is_exact_and_sparse() {
        let (snap, ram) = sample();
        assert_eq!(
            snap.pages.len(),
            2,
            "only the two non-zero pages are stored"
        );
        let bytes = snap.to_bytes();
        let back = Snapshot::from_bytes(&bytes).unwrap();
        assert_eq!(back, snap);
        let fresh = GuestRam::new(ram.regions()).unwrap();
        back.restore_memory(&fresh).unwrap();
        let mut b = [0u8; 5];
        fresh.read(0x1234, &mut b).unwrap();
        assert_eq!(&b, b"hello");
    }

    #[test]
    fn every_truncation_and_any_bit_flip_is_an_error() {
        let (snap, _) = sample();
        let bytes = snap.to_bytes();
        for cut in [0, 4, 8, 11, 12, 40, bytes.len() / 2, bytes.len() - 1] {
            assert!(Snapshot::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for pos in [20, 600, bytes.len() / 2, bytes.len() - 6] {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x40;
            assert!(Snapshot::from_bytes(&bad).is_err(), "flip at {pos}");
        }
        let mut wrong_version = bytes.clone();
        wrong_version[8] = 9;
        assert!(matches!(
            Snapshot::from_bytes(&wrong_version),
            Err(SnapshotError::Version { found: 9 })
        ));
        assert!(matches!(
            Snapshot::from_bytes(b"NOTASNAPSHOT"),
            Err(SnapshotError::BadMagic)
        ));
        assert!(matches!(
            Snapshot::from_bytes(b"NO"),
            Err(SnapshotError::BadMagic)
        ));
        assert!(matches!(
            Snapshot::from_bytes(b""),
            Err(SnapshotError::Truncated(_))
        ));
        assert!(matches!(
            Snapshot::from_bytes(b"EMUS"),
            Err(SnapshotError::Truncated(_))
        ));
    }

    #[test]
    fn layout_mismatch_is_refused() {
        let (snap, _) = sample();
        let other = GuestRam::new(&[RegionSpec {
            base: 0,
            size: 0x20000,
            kind: RegionKind::Ram,
        }])
        .unwrap();
        assert!(matches!(
            snap.restore_memory(&other),
            Err(SnapshotError::Layout(_))
        ));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let (snap, _) = sample();
        let dir = std::env::temp_dir().join(format!("emu-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.emusnap");
        std::fs::write(&path, b"old").unwrap();
        snap.write_file(&path).unwrap();
        assert_eq!(Snapshot::read_file(&path).unwrap(), snap);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // A failing write (directory missing) leaves the old file untouched.
        let missing = dir.join("nope").join("s.emusnap");
        assert!(snap.write_file(&missing).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
