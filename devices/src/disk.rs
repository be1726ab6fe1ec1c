//! Disk images and their geometry, for the disk controllers ([`crate::ata`]).
//!
//! A disk's contents live in a [`BlockBackend`]: a raw image file ([`FileDisk`], read and
//! written in place with positioned I/O, as QEMU's raw drives are) or memory ([`MemDisk`], for
//! tests). [`guess_geometry`] gives a disk the CHS geometry and BIOS translation QEMU would give
//! it, so the BIOS reports the same drive parameters on emu and on QEMU.

use std::io;
use std::path::Path;

/// Bytes per logical sector.
pub const SECTOR_SIZE: usize = 512;
/// The largest cylinder count a disk reports (ATA/ATAPI-6 8.15.1: 16,383 for big disks).
const MAX_CYLINDERS: u64 = 16383;

/// Why a disk image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot open disk image {path} for reading and writing: {source}")]
    Open { path: String, source: io::Error },
    #[error("disk image {path} is not a regular file")]
    NotAFile { path: String },
    #[error("disk image {path} is empty")]
    Empty { path: String },
    #[error("disk image {path} is {len} bytes: a raw image must be a multiple of 512 bytes")]
    NotSectorMultiple { path: String, len: u64 },
}

/// Where a disk's sectors live. Reads and writes are whole sectors inside the disk.
pub trait BlockBackend: Send {
    /// The disk's size in 512-byte sectors.
    fn sectors(&self) -> u64;
    /// Fill `buf` (a whole number of sectors) from sector `lba` on.
    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Store `buf` (a whole number of sectors) from sector `lba` on.
    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> io::Result<()>;
    /// Make every write so far durable.
    fn flush(&mut self) -> io::Result<()>;
}

/// A raw disk image file, read and written in place (positioned reads and writes, no caching
/// of its own): guest writes change the file, as QEMU's raw drives do.
#[derive(Debug)]
pub struct FileDisk {
    file: std::fs::File,
    sectors: u64,
}

impl FileDisk {
    /// Open `path` for reading and writing; it must be a regular, non-empty file whose size is
    /// a multiple of 512 bytes.
    pub fn open(path: &Path) -> Result<Self, DiskError> {
        let name = || path.display().to_string();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| DiskError::Open {
                path: name(),
                source,
            })?;
        let meta = file.metadata().map_err(|source| DiskError::Open {
            path: name(),
            source,
        })?;
        if !meta.is_file() {
            return Err(DiskError::NotAFile { path: name() });
        }
        let len = meta.len();
        if len == 0 {
            return Err(DiskError::Empty { path: name() });
        }
        if !len.is_multiple_of(SECTOR_SIZE as u64) {
            return Err(DiskError::NotSectorMultiple { path: name(), len });
        }
        Ok(Self {
            file,
            sectors: len / SECTOR_SIZE as u64,
        })
    }
}

impl BlockBackend for FileDisk {
    fn sectors(&self) -> u64 {
        self.sectors
    }
    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(buf, lba * SECTOR_SIZE as u64)
    }
    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(buf, lba * SECTOR_SIZE as u64)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// A disk in memory (tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemDisk(pub Vec<u8>);

impl BlockBackend for MemDisk {
    fn sectors(&self) -> u64 {
        (self.0.len() / SECTOR_SIZE) as u64
    }
    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = lba as usize * SECTOR_SIZE;
        let src = self
            .0
            .get(start..start + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> io::Result<()> {
        let start = lba as usize * SECTOR_SIZE;
        self.0
            .get_mut(start..start + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?
            .copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How the BIOS translates CHS for the disk, as QEMU passes it in CMOS byte 0x39 (two bits per
/// drive) and SeaBIOS reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    None = 0,
    Lba = 1,
    Large = 2,
}

/// A disk's physical geometry (IDENTIFY words 1, 3, 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors_per_track: u8,
}

/// The geometry and BIOS translation QEMU gives a disk of `total` sectors whose first sector is
/// `mbr` (QEMU's `hd_geometry_guess`): from the first partition entry that ends on a plausible
/// cylinder boundary when the sector is an MBR, else 16 heads of 63 sectors.
pub fn guess_geometry(total: u64, mbr: &[u8; SECTOR_SIZE]) -> (Geometry, Translation) {
    let for_size = || Geometry {
        cylinders: (total / (16 * 63)).clamp(2, MAX_CYLINDERS) as u16,
        heads: 16,
        sectors_per_track: 63,
    };
    match partition_chs(total, mbr) {
        None => {
            let g = for_size();
            let t = if g.cylinders <= 1024 {
                Translation::None
            } else {
                Translation::Lba
            };
            (g, t)
        }
        Some((_, heads, _)) if heads > 16 => {
            let g = for_size();
            let t = if u32::from(g.cylinders) * u32::from(g.heads) <= 131_072 {
                Translation::Large
            } else {
                Translation::Lba
            };
            (g, t)
        }
        Some((cylinders, heads, sectors)) => (
            Geometry {
                cylinders: cylinders as u16,
                heads: heads as u8,
                sectors_per_track: sectors as u8,
            },
            Translation::None,
        ),
    }
}

/// (cylinders, heads, sectors) implied by an MBR partition entry, if any.
fn partition_chs(total: u64, mbr: &[u8; SECTOR_SIZE]) -> Option<(u64, u64, u64)> {
    /// The partition table and the boot signature of a PC MBR.
    const TABLE: usize = 0x1be;
    const ENTRY: usize = 16;
    if mbr[510] != 0x55 || mbr[511] != 0xaa {
        return None;
    }
    (0..4).find_map(|i| {
        let e = &mbr[TABLE + i * ENTRY..TABLE + (i + 1) * ENTRY];
        let nr_sects = u32::from_le_bytes([e[12], e[13], e[14], e[15]]);
        let end_head = u64::from(e[5]);
        let sectors = u64::from(e[6] & 63);
        if nr_sects == 0 || end_head == 0 || sectors == 0 {
            return None;
        }
        let heads = end_head + 1;
        let cylinders = total / (heads * sectors);
        (1..=MAX_CYLINDERS)
            .contains(&cylinders)
            .then_some((cylinders, heads, sectors))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_guess_matches_qemu() {
        let blank = [0u8; SECTOR_SIZE];
        // 1 MiB: 2048 / 1008 = 2 cylinders, no translation.
        let (g, t) = guess_geometry(2048, &blank);
        assert_eq!(
            (g.cylinders, g.heads, g.sectors_per_track, t),
            (2, 16, 63, Translation::None)
        );
        // Tiny disks still get 2 cylinders; big ones LBA translation, capped cylinders.
        assert_eq!(guess_geometry(1, &blank).0.cylinders, 2);
        let (g, t) = guess_geometry(1 << 26, &blank);
        assert_eq!((g.cylinders, t), (16383, Translation::Lba));
        // A partition ending at head 63, sector 32 implies 64 heads: LARGE translation.
        let mut mbr = [0u8; SECTOR_SIZE];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        let entry = 0x1be + 16;
        mbr[entry + 5] = 63;
        mbr[entry + 6] = 32;
        mbr[entry + 12] = 0x10;
        let (g, t) = guess_geometry(1 << 20, &mbr);
        assert_eq!((g.heads, t), (16, Translation::Large));
        // One ending at head 3, sector 17: a 4-head, 17-sector disk.
        mbr[entry + 5] = 3;
        mbr[entry + 6] = 17;
        let (g, t) = guess_geometry(4 * 17 * 100, &mbr);
        assert_eq!((g.cylinders, g.heads, g.sectors_per_track), (100, 4, 17));
        assert_eq!(t, Translation::None);
    }

    #[test]
    fn file_disk_checks_the_image_and_reads_and_writes_in_place() {
        let dir = std::env::temp_dir().join(format!("emu-ata-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = FileDisk::open(&dir.join("missing.img")).unwrap_err();
        assert!(matches!(missing, DiskError::Open { .. }));
        assert!(missing.to_string().contains("missing.img"));
        assert!(matches!(
            FileDisk::open(&dir),
            Err(DiskError::Open { .. } | DiskError::NotAFile { .. })
        ));
        let empty = dir.join("empty.img");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            FileDisk::open(&empty),
            Err(DiskError::Empty { .. })
        ));
        let odd = dir.join("odd.img");
        std::fs::write(&odd, vec![0u8; 1000]).unwrap();
        assert!(matches!(
            FileDisk::open(&odd),
            Err(DiskError::NotSectorMultiple { len: 1000, .. })
        ));
        let good = dir.join("good.img");
        std::fs::write(&good, vec![0u8; 2 * SECTOR_SIZE]).unwrap();
        let mut disk = FileDisk::open(&good).unwrap();
        assert_eq!(disk.sectors(), 2);
        disk.write_sectors(1, &[9u8; SECTOR_SIZE]).unwrap();
        disk.flush().unwrap();
        let mut back = [0u8; SECTOR_SIZE];
        disk.read_sectors(1, &mut back).unwrap();
        assert_eq!(back, [9u8; SECTOR_SIZE]);
        assert!(disk.read_sectors(2, &mut back).is_err());
        assert_eq!(std::fs::read(&good).unwrap()[SECTOR_SIZE], 9);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
