//! An ATA (IDE) disk controller in PIO mode: the primary channel of a PC (command block at
//! 0x1F0-0x1F7, device control / alternate status at 0x3F6, IRQ 14) with one master disk.
//!
//! This is what SeaBIOS drives on a machine without PCI (QEMU's `isapc`): it probes the ISA ports,
//! IDENTIFYs the disk and reads sectors with READ SECTORS. The register model, commands and
//! protocols follow ATA/ATAPI-6 (T13/1410D): task-file registers with the 48-bit "previous
//! content" FIFOs read through HOB, the PIO data-in protocol (an interrupt per DRQ block), the
//! PIO data-out protocol (DRQ at once for the first block, an interrupt after each block), CHS,
//! LBA28 and LBA48 addressing, SRST through the device control register. Commands complete at
//! once (BSY is never seen). No slave is attached: with device 1 selected the status reads 0 and
//! commands are ignored, as on QEMU, which is how firmware sees that there is no device.
//!
//! The disk's contents live in a [`BlockBackend`] (see [`crate::disk`]). The controller's own
//! state (registers, the sector buffer of a transfer in progress) is an
//! [`AtaState`] for snapshots; the disk contents are not part of it.

use crate::disk::{BlockBackend, Geometry, SECTOR_SIZE};
use crate::serial::IrqLine;
use crate::state::{StateError, StateReader, StateWriter};

/// The primary channel's command block (ATA/ATAPI-6 5.2, PC/AT legacy addresses).
pub const ATA_PRIMARY_COMMAND_PORT: u16 = 0x1f0;
pub const ATA_COMMAND_BLOCK_LEN: u64 = 8;
/// The primary channel's control block register (device control / alternate status).
pub const ATA_PRIMARY_CONTROL_PORT: u16 = 0x3f6;
/// The primary channel's ISA interrupt line.
pub const ATA_PRIMARY_IRQ: u8 = 14;
/// Where the control block register sits in the controller's own offset space: insert the
/// control port with this bias (see [`crate::SharedDevice`]).
pub const CONTROL_OFFSET: u64 = 8;

/// Command block register offsets (ATA/ATAPI-6 7.1, Table 12).
const REG_DATA: u64 = 0;
const REG_ERROR_FEATURES: u64 = 1;
const REG_SECTOR_COUNT: u64 = 2;
const REG_LBA_LOW: u64 = 3;
const REG_LBA_MID: u64 = 4;
const REG_LBA_HIGH: u64 = 5;
const REG_DEVICE: u64 = 6;
const REG_STATUS_COMMAND: u64 = 7;

/// Status register bits (ATA/ATAPI-6 7.15.6).
pub const STATUS_BSY: u8 = 0x80;
pub const STATUS_DRDY: u8 = 0x40;
/// Device seek complete (obsolete in ATA-6; set by drives and by QEMU).
pub const STATUS_DSC: u8 = 0x10;
pub const STATUS_DRQ: u8 = 0x08;
pub const STATUS_ERR: u8 = 0x01;
const STATUS_IDLE: u8 = STATUS_DRDY | STATUS_DSC;

/// Error register bits (ATA/ATAPI-6 7.9.6).
pub const ERROR_UNC: u8 = 0x40;
pub const ERROR_IDNF: u8 = 0x10;
pub const ERROR_ABRT: u8 = 0x04;
/// The error register after a reset or EXECUTE DEVICE DIAGNOSTIC: device 0 passed, no device 1
/// (ATA/ATAPI-6 9.12, Table 32).
const DIAGNOSTIC_PASSED: u8 = 0x01;

/// Device register bits (ATA/ATAPI-6 7.10).
const DEVICE_LBA: u8 = 0x40;
const DEVICE_DEV: u8 = 0x10;
/// Bits 7 and 5 are obsolete and read as one, as on QEMU and old drives.
const DEVICE_OBSOLETE: u8 = 0xa0;

/// Device control register bits (ATA/ATAPI-6 7.8).
const CONTROL_HOB: u8 = 0x80;
const CONTROL_SRST: u8 = 0x04;
const CONTROL_NIEN: u8 = 0x02;

/// Command codes (ATA/ATAPI-6 8, Table 17).
mod cmd {
    pub const DEVICE_RESET: u8 = 0x08;
    pub const RECALIBRATE: u8 = 0x10;
    pub const READ_SECTORS: u8 = 0x20;
    pub const READ_SECTORS_NO_RETRY: u8 = 0x21;
    pub const READ_SECTORS_EXT: u8 = 0x24;
    pub const READ_MULTIPLE_EXT: u8 = 0x29;
    pub const WRITE_SECTORS: u8 = 0x30;
    pub const WRITE_SECTORS_NO_RETRY: u8 = 0x31;
    pub const WRITE_SECTORS_EXT: u8 = 0x34;
    pub const WRITE_MULTIPLE_EXT: u8 = 0x39;
    pub const READ_VERIFY_SECTORS: u8 = 0x40;
    pub const READ_VERIFY_SECTORS_NO_RETRY: u8 = 0x41;
    pub const READ_VERIFY_SECTORS_EXT: u8 = 0x42;
    pub const SEEK: u8 = 0x70;
    pub const EXECUTE_DEVICE_DIAGNOSTIC: u8 = 0x90;
    pub const INITIALIZE_DEVICE_PARAMETERS: u8 = 0x91;
    pub const READ_MULTIPLE: u8 = 0xc4;
    pub const WRITE_MULTIPLE: u8 = 0xc5;
    pub const SET_MULTIPLE_MODE: u8 = 0xc6;
    pub const STANDBY_IMMEDIATE: u8 = 0xe0;
    pub const IDLE_IMMEDIATE: u8 = 0xe1;
    pub const STANDBY: u8 = 0xe2;
    pub const IDLE: u8 = 0xe3;
    pub const CHECK_POWER_MODE: u8 = 0xe5;
    pub const FLUSH_CACHE: u8 = 0xe7;
    pub const FLUSH_CACHE_EXT: u8 = 0xea;
    pub const IDENTIFY_DEVICE: u8 = 0xec;
    pub const IDENTIFY_PACKET_DEVICE: u8 = 0xa1;
    pub const SET_FEATURES: u8 = 0xef;
}

/// SET FEATURES subcommands (ATA/ATAPI-6 8.37, Table 42).
mod feature {
    pub const ENABLE_WRITE_CACHE: u8 = 0x02;
    pub const SET_TRANSFER_MODE: u8 = 0x03;
    pub const DISABLE_READ_LOOK_AHEAD: u8 = 0x55;
    pub const DISABLE_REVERTING_TO_DEFAULTS: u8 = 0x66;
    pub const DISABLE_WRITE_CACHE: u8 = 0x82;
    pub const ENABLE_READ_LOOK_AHEAD: u8 = 0xaa;
    pub const ENABLE_REVERTING_TO_DEFAULTS: u8 = 0xcc;
}

/// The most sectors per DRQ block READ/WRITE MULTIPLE may use (IDENTIFY word 47), as QEMU.
pub const MAX_MULTIPLE_SECTORS: u8 = 16;
/// LBA28 capacity limit (IDENTIFY words 60-61).
const LBA28_LIMIT: u64 = 0x0fff_ffff;

/// How the command in progress addressed the disk, so the address registers can be written
/// back in the same form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    Chs,
    Lba28,
    Lba48,
}

/// Direction of the PIO transfer in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// No data phase.
    Idle = 0,
    /// Device to host: the guest reads disk sectors from the buffer through the data register.
    In = 1,
    /// Device to host, data that is not disk sectors (IDENTIFY DEVICE): the address and count
    /// registers stay as they are.
    InData = 3,
    /// Host to device: the guest fills the buffer; full, it is written at `lba`.
    Out = 2,
}

/// Everything the controller holds, for snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtaState {
    /// Task-file registers as written last ([0]) and before that ([1], read with HOB set).
    pub features: [u8; 2],
    pub sector_count: [u8; 2],
    pub lba_low: [u8; 2],
    pub lba_mid: [u8; 2],
    pub lba_high: [u8; 2],
    pub device: u8,
    pub control: u8,
    pub status: u8,
    pub error: u8,
    /// The device's INTRQ is pending (cleared by reading the status register or a command).
    pub interrupt_pending: bool,
    /// Sectors per DRQ block of READ/WRITE MULTIPLE; 0 when multiple mode is disabled.
    pub multiple: u8,
    /// The logical geometry CHS addresses use (INITIALIZE DEVICE PARAMETERS).
    pub heads: u8,
    pub sectors_per_track: u8,
    pub write_cache: bool,
    pub transfer: Transfer,
    pub addressing: Addressing,
    /// The sector the buffer holds (data-in: read from; data-out: to be written to).
    pub lba: u64,
    /// Sectors of the command still to move after those in the buffer.
    pub remaining: u32,
    /// Sectors per DRQ block of the command in progress.
    pub block: u8,
    pub buffer: Vec<u8>,
    pub position: u32,
    /// The disk's size: a snapshot only fits a disk of the same size.
    pub disk_sectors: u64,
}

/// Layout version of [`AtaState::to_bytes`].
const STATE_VERSION: u8 = 1;
const STATE_NAME: &str = "ata";

impl AtaState {
    /// The state as a snapshot blob.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = StateWriter::new(STATE_VERSION);
        for pair in [
            self.features,
            self.sector_count,
            self.lba_low,
            self.lba_mid,
            self.lba_high,
        ] {
            w.u8(pair[0]).u8(pair[1]);
        }
        w.u8(self.device)
            .u8(self.control)
            .u8(self.status)
            .u8(self.error)
            .bool(self.interrupt_pending)
            .u8(self.multiple)
            .u8(self.heads)
            .u8(self.sectors_per_track)
            .bool(self.write_cache)
            .u8(self.transfer as u8)
            .u8(self.addressing as u8)
            .u64(self.lba)
            .u32(self.remaining)
            .u8(self.block)
            .bytes(&self.buffer)
            .u32(self.position)
            .u64(self.disk_sectors);
        w.finish()
    }

    /// Read a blob written by [`AtaState::to_bytes`], checking that it describes a state the
    /// controller can be in.
    pub fn from_bytes(blob: &[u8]) -> Result<Self, StateError> {
        let mut r = StateReader::new(blob, STATE_NAME, STATE_VERSION)?;
        let mut pairs = [[0u8; 2]; 5];
        for p in &mut pairs {
            *p = [r.u8()?, r.u8()?];
        }
        let [features, sector_count, lba_low, lba_mid, lba_high] = pairs;
        let device = r.u8()?;
        let control = r.u8()?;
        let status = r.u8()?;
        let error = r.u8()?;
        let interrupt_pending = r.bool()?;
        let multiple = r.u8()?;
        let heads = r.u8()?;
        let sectors_per_track = r.u8()?;
        let write_cache = r.bool()?;
        let transfer = match r.u8()? {
            0 => Transfer::Idle,
            1 => Transfer::In,
            2 => Transfer::Out,
            3 => Transfer::InData,
            v => return Err(r.invalid(format!("transfer direction {v}"))),
        };
        let addressing = match r.u8()? {
            0 => Addressing::Chs,
            1 => Addressing::Lba28,
            2 => Addressing::Lba48,
            v => return Err(r.invalid(format!("addressing mode {v}"))),
        };
        let lba = r.u64()?;
        let remaining = r.u32()?;
        let block = r.u8()?;
        let buffer = r.bytes()?.to_vec();
        let position = r.u32()?;
        let disk_sectors = r.u64()?;
        r.finish()?;
        let s = AtaState {
            features,
            sector_count,
            lba_low,
            lba_mid,
            lba_high,
            device,
            control,
            status,
            error,
            interrupt_pending,
            multiple,
            heads,
            sectors_per_track,
            write_cache,
            transfer,
            addressing,
            lba,
            remaining,
            block,
            buffer,
            position,
            disk_sectors,
        };
        let invalid = |what: String| StateError::Invalid {
            device: STATE_NAME,
            what,
        };
        if s.multiple > MAX_MULTIPLE_SECTORS || !s.multiple.is_power_of_two() && s.multiple != 0 {
            return Err(invalid(format!("multiple count {}", s.multiple)));
        }
        if !(1..=16).contains(&s.heads) || !(1..=63).contains(&s.sectors_per_track) {
            return Err(invalid(format!(
                "geometry {} heads x {} sectors",
                s.heads, s.sectors_per_track
            )));
        }
        if s.buffer.len() > usize::from(MAX_MULTIPLE_SECTORS) * SECTOR_SIZE
            || !s.buffer.len().is_multiple_of(SECTOR_SIZE)
            || s.position as usize > s.buffer.len()
            || (s.transfer != Transfer::Idle && s.buffer.is_empty())
        {
            return Err(invalid(format!(
                "transfer buffer of {} bytes at {}",
                s.buffer.len(),
                s.position
            )));
        }
        Ok(s)
    }
}

/// The controller: the primary channel with its master disk.
pub struct Ata {
    s: AtaState,
    disk: Box<dyn BlockBackend>,
    geometry: Geometry,
    irq: IrqLine,
    irq_level: bool,
}

impl std::fmt::Debug for Ata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ata")
            .field("sectors", &self.s.disk_sectors)
            .field("geometry", &self.geometry)
            .field("status", &self.s.status)
            .finish_non_exhaustive()
    }
}

/// Why a command ended in error: the error register's bits.
type CommandResult = Result<(), u8>;

impl Ata {
    /// A controller with `disk` as master, geometry `geometry`, raising IRQ 14 through `irq`.
    pub fn new(disk: Box<dyn BlockBackend>, geometry: Geometry, irq: IrqLine) -> Self {
        let mut ata = Self {
            s: Self::initial_state(geometry, disk.sectors()),
            disk,
            geometry,
            irq,
            irq_level: false,
        };
        ata.reset_device();
        ata
    }

    fn initial_state(geometry: Geometry, disk_sectors: u64) -> AtaState {
        AtaState {
            features: [0; 2],
            sector_count: [0; 2],
            lba_low: [0; 2],
            lba_mid: [0; 2],
            lba_high: [0; 2],
            device: 0,
            control: 0,
            status: STATUS_IDLE,
            error: 0,
            interrupt_pending: false,
            multiple: 0,
            heads: geometry.heads,
            sectors_per_track: geometry.sectors_per_track,
            write_cache: true,
            transfer: Transfer::Idle,
            addressing: Addressing::Lba28,
            lba: 0,
            remaining: 0,
            block: 0,
            buffer: Vec::new(),
            position: 0,
            disk_sectors,
        }
    }

    pub fn state(&self) -> AtaState {
        self.s.clone()
    }

    /// Replace the controller's state (snapshot restore). The interrupt line is taken as the
    /// state says it is: the interrupt controller's own state is restored beside it.
    pub fn set_state(&mut self, s: AtaState) {
        self.s = s;
        self.irq_level = self.line_level();
    }

    /// The power-on state (a system reset), keeping the disk.
    pub fn reset(&mut self) {
        self.s = Self::initial_state(self.geometry, self.s.disk_sectors);
        self.reset_device();
        self.update_irq();
    }

    /// The disk's size in sectors.
    pub fn disk_sectors(&self) -> u64 {
        self.s.disk_sectors
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The state after a hardware reset or SRST (ATA/ATAPI-6 9.1, 9.12): the signature of an
    /// ATA device in the address registers, diagnostics passed, device 0 selected, the
    /// power-on geometry and multiple mode.
    fn reset_device(&mut self) {
        let s = &mut self.s;
        s.sector_count = [1, 0];
        s.lba_low = [1, 0];
        s.lba_mid = [0, 0];
        s.lba_high = [0, 0];
        s.device = 0;
        s.error = DIAGNOSTIC_PASSED;
        s.status = STATUS_IDLE;
        s.interrupt_pending = false;
        s.multiple = 0;
        s.heads = self.geometry.heads;
        s.sectors_per_track = self.geometry.sectors_per_track;
        s.write_cache = true;
        self.stop_transfer();
    }

    fn stop_transfer(&mut self) {
        self.s.transfer = Transfer::Idle;
        self.s.buffer.clear();
        self.s.position = 0;
        self.s.remaining = 0;
    }

    fn master_selected(&self) -> bool {
        self.s.device & DEVICE_DEV == 0
    }

    fn line_level(&self) -> bool {
        self.s.interrupt_pending && self.s.control & CONTROL_NIEN == 0 && self.master_selected()
    }

    fn update_irq(&mut self) {
        let level = self.line_level();
        if level != self.irq_level {
            self.irq_level = level;
            (self.irq)(level);
        }
    }

    fn raise_interrupt(&mut self) {
        self.s.interrupt_pending = true;
    }

    /// The sector count of a command: 0 means 256 (LBA28, CHS) or 65,536 (LBA48).
    fn count(&self, lba48: bool) -> u32 {
        if lba48 {
            match u32::from(self.s.sector_count[1]) << 8 | u32::from(self.s.sector_count[0]) {
                0 => 65536,
                n => n,
            }
        } else {
            match self.s.sector_count[0] {
                0 => 256,
                n => u32::from(n),
            }
        }
    }

    /// The address of a command and how it was given, or IDNF for an impossible CHS address.
    fn address(&self, lba48: bool) -> Result<(u64, Addressing), u8> {
        let s = &self.s;
        if lba48 {
            let b = [
                s.lba_low[0],
                s.lba_mid[0],
                s.lba_high[0],
                s.lba_low[1],
                s.lba_mid[1],
                s.lba_high[1],
                0,
                0,
            ];
            return Ok((u64::from_le_bytes(b), Addressing::Lba48));
        }
        if s.device & DEVICE_LBA != 0 {
            let lba = u64::from(s.device & 0xf) << 24
                | u64::from(s.lba_high[0]) << 16
                | u64::from(s.lba_mid[0]) << 8
                | u64::from(s.lba_low[0]);
            return Ok((lba, Addressing::Lba28));
        }
        let cylinder = u64::from(s.lba_high[0]) << 8 | u64::from(s.lba_mid[0]);
        let head = u64::from(s.device & 0xf);
        let sector = u64::from(s.lba_low[0]);
        let (heads, spt) = (u64::from(s.heads), u64::from(s.sectors_per_track));
        if sector == 0 || sector > spt || head >= heads {
            return Err(ERROR_IDNF);
        }
        Ok((
            (cylinder * heads + head) * spt + sector - 1,
            Addressing::Chs,
        ))
    }

    /// Write `lba` back to the address registers in the command's form (the address of the
    /// last sector transferred, or of the failing one).
    fn set_address(&mut self, lba: u64, addressing: Addressing) {
        let s = &mut self.s;
        match addressing {
            Addressing::Lba48 => {
                let b = lba.to_le_bytes();
                s.lba_low = [b[0], b[3]];
                s.lba_mid = [b[1], b[4]];
                s.lba_high = [b[2], b[5]];
            }
            Addressing::Lba28 => {
                s.lba_low[0] = lba as u8;
                s.lba_mid[0] = (lba >> 8) as u8;
                s.lba_high[0] = (lba >> 16) as u8;
                s.device = s.device & 0xf0 | ((lba >> 24) & 0xf) as u8;
            }
            Addressing::Chs => {
                let (heads, spt) = (u64::from(s.heads), u64::from(s.sectors_per_track));
                let cylinder = lba / (heads * spt);
                let head = lba / spt % heads;
                s.lba_low[0] = (lba % spt + 1) as u8;
                s.lba_mid[0] = cylinder as u8;
                s.lba_high[0] = (cylinder >> 8) as u8;
                s.device = s.device & 0xf0 | head as u8;
            }
        }
    }

    fn set_count(&mut self, n: u32) {
        self.s.sector_count[0] = n as u8;
        if self.s.addressing == Addressing::Lba48 {
            self.s.sector_count[1] = (n >> 8) as u8;
        }
    }

    /// Check a transfer of `count` sectors and note its address; IDNF past the end.
    fn start_range(&mut self, lba48: bool) -> Result<(u64, u32), u8> {
        let (lba, addressing) = self.address(lba48)?;
        let count = self.count(lba48);
        if lba + u64::from(count) > self.s.disk_sectors {
            log::debug!(
                "ata: sectors {lba}+{count} are beyond the disk's {} sectors",
                self.s.disk_sectors
            );
            return Err(ERROR_IDNF);
        }
        self.s.addressing = addressing;
        Ok((lba, count))
    }

    /// Load the next DRQ block of a read from the disk and announce it (PIO data-in).
    fn read_block(&mut self) -> CommandResult {
        let n = self.s.remaining.min(u32::from(self.s.block));
        let mut buffer = vec![0u8; n as usize * SECTOR_SIZE];
        if let Err(e) = self.disk.read_sectors(self.s.lba, &mut buffer) {
            log::error!("ata: reading sectors {}+{n} failed: {e}", self.s.lba);
            self.set_address(self.s.lba, self.s.addressing);
            return Err(ERROR_UNC);
        }
        self.s.buffer = buffer;
        self.s.position = 0;
        self.s.remaining -= n;
        self.s.transfer = Transfer::In;
        self.s.status = STATUS_IDLE | STATUS_DRQ;
        self.raise_interrupt();
        Ok(())
    }

    /// Prepare the buffer for the next DRQ block of a write (PIO data-out).
    fn want_block(&mut self) {
        let n = self.s.remaining.min(u32::from(self.s.block));
        self.s.buffer = vec![0u8; n as usize * SECTOR_SIZE];
        self.s.position = 0;
        self.s.remaining -= n;
        self.s.transfer = Transfer::Out;
        self.s.status = STATUS_IDLE | STATUS_DRQ;
    }

    /// The guest has moved the whole buffer.
    fn block_done(&mut self) {
        let sectors = (self.s.buffer.len() / SECTOR_SIZE) as u64;
        let result = match self.s.transfer {
            Transfer::Idle => return,
            Transfer::InData => {
                self.finish_ok(false);
                Ok(())
            }
            Transfer::In => {
                let last = self.s.lba + sectors - 1;
                self.set_address(last, self.s.addressing);
                self.s.lba += sectors;
                self.set_count(self.s.remaining);
                if self.s.remaining > 0 {
                    self.read_block()
                } else {
                    self.finish_ok(false);
                    Ok(())
                }
            }
            Transfer::Out => self.write_block(sectors),
        };
        if let Err(bits) = result {
            self.fail(bits);
        }
    }

    fn write_block(&mut self, sectors: u64) -> CommandResult {
        let lba = self.s.lba;
        let written = self.disk.write_sectors(lba, &self.s.buffer).and_then(|()| {
            if self.s.write_cache {
                Ok(())
            } else {
                self.disk.flush()
            }
        });
        if let Err(e) = written {
            log::error!("ata: writing sectors {lba}+{sectors} failed: {e}");
            self.set_address(lba, self.s.addressing);
            return Err(ERROR_ABRT);
        }
        self.set_address(lba + sectors - 1, self.s.addressing);
        self.s.lba += sectors;
        self.set_count(self.s.remaining);
        if self.s.remaining > 0 {
            self.want_block();
            self.raise_interrupt();
        } else {
            self.finish_ok(true);
        }
        Ok(())
    }

    /// The command completed without error; `interrupt` for those that interrupt at the end.
    fn finish_ok(&mut self, interrupt: bool) {
        self.stop_transfer();
        self.s.status = STATUS_IDLE;
        if interrupt {
            self.raise_interrupt();
        }
    }

    /// The command ended with `error` bits (ABRT, IDNF, UNC): ERR set and an interrupt.
    fn fail(&mut self, error: u8) {
        self.stop_transfer();
        self.s.error = error;
        self.s.status = STATUS_IDLE | STATUS_ERR;
        self.raise_interrupt();
    }

    fn execute(&mut self, command: u8) {
        if !self.master_selected() || self.s.control & CONTROL_SRST != 0 {
            // No device 1: nothing answers (QEMU ignores commands to an absent slave); and a
            // device held in reset takes no command.
            return;
        }
        self.stop_transfer();
        self.s.error = 0;
        self.s.interrupt_pending = false;
        let result = match command {
            cmd::IDENTIFY_DEVICE => {
                self.s.buffer = self.identify().to_vec();
                self.s.position = 0;
                self.s.transfer = Transfer::InData;
                self.s.status = STATUS_IDLE | STATUS_DRQ;
                self.raise_interrupt();
                Ok(())
            }
            cmd::READ_SECTORS | cmd::READ_SECTORS_NO_RETRY => self.start_read(false, 1),
            cmd::READ_SECTORS_EXT => self.start_read(true, 1),
            cmd::READ_MULTIPLE => self.start_read(false, self.s.multiple),
            cmd::READ_MULTIPLE_EXT => self.start_read(true, self.s.multiple),
            cmd::WRITE_SECTORS | cmd::WRITE_SECTORS_NO_RETRY => self.start_write(false, 1),
            cmd::WRITE_SECTORS_EXT => self.start_write(true, 1),
            cmd::WRITE_MULTIPLE => self.start_write(false, self.s.multiple),
            cmd::WRITE_MULTIPLE_EXT => self.start_write(true, self.s.multiple),
            cmd::READ_VERIFY_SECTORS | cmd::READ_VERIFY_SECTORS_NO_RETRY => self.verify(false),
            cmd::READ_VERIFY_SECTORS_EXT => self.verify(true),
            cmd::SET_MULTIPLE_MODE => {
                let n = self.s.sector_count[0];
                if n > MAX_MULTIPLE_SECTORS || (n != 0 && !n.is_power_of_two()) {
                    Err(ERROR_ABRT)
                } else {
                    self.s.multiple = n;
                    self.complete()
                }
            }
            cmd::INITIALIZE_DEVICE_PARAMETERS => {
                let heads = (self.s.device & 0xf) + 1;
                let spt = self.s.sector_count[0];
                if spt == 0 || spt > 63 {
                    Err(ERROR_ABRT)
                } else {
                    self.s.heads = heads;
                    self.s.sectors_per_track = spt;
                    self.complete()
                }
            }
            cmd::SET_FEATURES => self.set_features(),
            cmd::FLUSH_CACHE | cmd::FLUSH_CACHE_EXT => match self.disk.flush() {
                Ok(()) => self.complete(),
                Err(e) => {
                    log::error!("ata: flushing the disk image failed: {e}");
                    Err(ERROR_ABRT)
                }
            },
            cmd::EXECUTE_DEVICE_DIAGNOSTIC => {
                self.reset_device();
                self.raise_interrupt();
                Ok(())
            }
            cmd::SEEK => self.address(false).and_then(|(lba, _)| {
                if lba < self.s.disk_sectors {
                    self.complete()
                } else {
                    Err(ERROR_IDNF)
                }
            }),
            c if c & 0xf0 == cmd::RECALIBRATE => {
                self.s.lba_low[0] = 1;
                self.s.lba_mid[0] = 0;
                self.s.lba_high[0] = 0;
                self.complete()
            }
            cmd::STANDBY_IMMEDIATE | cmd::IDLE_IMMEDIATE | cmd::STANDBY | cmd::IDLE => {
                self.complete()
            }
            cmd::CHECK_POWER_MODE => {
                // Active or idle (ATA/ATAPI-6 8.6).
                self.s.sector_count[0] = 0xff;
                self.complete()
            }
            // DEVICE RESET is for PACKET devices only (ATA/ATAPI-6 8.10): an ATA disk aborts
            // it, as every other command it does not implement (DMA among them).
            cmd::DEVICE_RESET => Err(ERROR_ABRT),
            // Firmware probes for a PACKET device this way first; a disk aborts it (8.16).
            cmd::IDENTIFY_PACKET_DEVICE => Err(ERROR_ABRT),
            other => {
                log::warn!("ata: command {other:#04x} is not implemented; aborted");
                Err(ERROR_ABRT)
            }
        };
        if let Err(bits) = result {
            self.fail(bits);
        }
    }

    /// A non-data command succeeded: interrupt, ready.
    fn complete(&mut self) -> CommandResult {
        self.finish_ok(true);
        Ok(())
    }

    fn start_read(&mut self, lba48: bool, block: u8) -> CommandResult {
        if block == 0 {
            // READ MULTIPLE before SET MULTIPLE MODE.
            return Err(ERROR_ABRT);
        }
        let (lba, count) = self.start_range(lba48)?;
        self.s.lba = lba;
        self.s.remaining = count;
        self.s.block = block;
        self.read_block()
    }

    fn start_write(&mut self, lba48: bool, block: u8) -> CommandResult {
        if block == 0 {
            return Err(ERROR_ABRT);
        }
        let (lba, count) = self.start_range(lba48)?;
        self.s.lba = lba;
        self.s.remaining = count;
        self.s.block = block;
        // PIO data-out: DRQ for the first block at once, no interrupt.
        self.want_block();
        Ok(())
    }

    fn verify(&mut self, lba48: bool) -> CommandResult {
        let (lba, count) = self.start_range(lba48)?;
        let mut sector = [0u8; SECTOR_SIZE];
        for i in 0..u64::from(count) {
            if let Err(e) = self.disk.read_sectors(lba + i, &mut sector) {
                log::error!("ata: verifying sector {} failed: {e}", lba + i);
                self.set_address(lba + i, self.s.addressing);
                return Err(ERROR_UNC);
            }
        }
        self.set_address(lba + u64::from(count) - 1, self.s.addressing);
        self.complete()
    }

    fn set_features(&mut self) -> CommandResult {
        match self.s.features[0] {
            feature::ENABLE_WRITE_CACHE => self.s.write_cache = true,
            feature::DISABLE_WRITE_CACHE => {
                self.s.write_cache = false;
                if let Err(e) = self.disk.flush() {
                    log::error!("ata: flushing the disk image failed: {e}");
                    return Err(ERROR_ABRT);
                }
            }
            feature::SET_TRANSFER_MODE => {
                // PIO default (0x00, 0x01) and PIO flow-control modes up to 4 (0x08-0x0C);
                // there is no DMA engine on this controller.
                let mode = self.s.sector_count[0];
                if !(mode <= 1 || (0x08..=0x0c).contains(&mode)) {
                    return Err(ERROR_ABRT);
                }
            }
            feature::ENABLE_READ_LOOK_AHEAD
            | feature::DISABLE_READ_LOOK_AHEAD
            | feature::ENABLE_REVERTING_TO_DEFAULTS
            | feature::DISABLE_REVERTING_TO_DEFAULTS => {}
            other => {
                log::warn!("ata: SET FEATURES subcommand {other:#04x} is not implemented");
                return Err(ERROR_ABRT);
            }
        }
        self.complete()
    }

    /// The IDENTIFY DEVICE data (ATA/ATAPI-6 8.15, Table 26).
    pub fn identify(&self) -> [u8; SECTOR_SIZE] {
        let mut w = [0u16; 256];
        let g = self.geometry;
        let total = self.s.disk_sectors;
        let cur_cyl = (total / (u64::from(self.s.heads) * u64::from(self.s.sectors_per_track)))
            .min(65535) as u16;
        let cur_capacity =
            u32::from(cur_cyl) * u32::from(self.s.heads) * u32::from(self.s.sectors_per_track);
        w[0] = 0x0040; // fixed device
        w[1] = g.cylinders;
        w[3] = u16::from(g.heads);
        w[6] = u16::from(g.sectors_per_track);
        put_string(&mut w[10..20], "EMU0000000001");
        put_string(&mut w[23..27], env!("CARGO_PKG_VERSION"));
        put_string(&mut w[27..47], "EMU HARDDISK");
        w[47] = 0x8000 | u16::from(MAX_MULTIPLE_SECTORS);
        w[49] = 1 << 11 | 1 << 9; // IORDY supported, LBA supported (no DMA)
        w[50] = 0x4000;
        w[51] = 0x0200; // PIO mode 2 timing (obsolete field)
        w[53] = 0x0003; // words 54-58 and 64-70 are valid
        w[54] = cur_cyl;
        w[55] = u16::from(self.s.heads);
        w[56] = u16::from(self.s.sectors_per_track);
        w[57] = cur_capacity as u16;
        w[58] = (cur_capacity >> 16) as u16;
        if self.s.multiple != 0 {
            w[59] = 0x0100 | u16::from(self.s.multiple);
        }
        let lba28 = total.min(LBA28_LIMIT) as u32;
        w[60] = lba28 as u16;
        w[61] = (lba28 >> 16) as u16;
        w[64] = 0x0003; // PIO modes 3 and 4
        w[65] = 120;
        w[66] = 120;
        w[67] = 120;
        w[68] = 120;
        w[80] = 0x007e; // ATA-1 to ATA/ATAPI-6
        w[82] = 1 << 5; // write cache
        w[83] = 0x4000 | 1 << 13 | 1 << 12 | 1 << 10; // FLUSH CACHE (EXT), 48-bit
        w[84] = 0x4000;
        w[85] = if self.s.write_cache { 1 << 5 } else { 0 };
        w[86] = 1 << 13 | 1 << 12 | 1 << 10;
        w[87] = 0x4000;
        w[93] = 0x4000 | 0x000b; // device 0 passed diagnostics, jumper-selected
        for (i, word) in w[100..104].iter_mut().enumerate() {
            *word = (total >> (16 * i)) as u16;
        }
        let mut bytes = [0u8; SECTOR_SIZE];
        for (i, word) in w.iter().enumerate() {
            bytes[2 * i..2 * i + 2].copy_from_slice(&word.to_le_bytes());
        }
        // Integrity word 255: signature 0xA5 and a checksum making the bytes sum to zero.
        bytes[510] = 0xa5;
        let sum = bytes[..511].iter().fold(0u8, |a, &b| a.wrapping_add(b));
        bytes[511] = sum.wrapping_neg();
        bytes
    }

    fn read_data(&mut self, data: &mut [u8]) {
        data.fill(0);
        let reading = matches!(self.s.transfer, Transfer::In | Transfer::InData);
        if !reading || !self.master_selected() {
            return;
        }
        let pos = self.s.position as usize;
        let n = data.len().min(self.s.buffer.len() - pos);
        data[..n].copy_from_slice(&self.s.buffer[pos..pos + n]);
        self.s.position += n as u32;
        if self.s.position as usize == self.s.buffer.len() {
            self.block_done();
        }
    }

    fn write_data(&mut self, data: &[u8]) {
        if self.s.transfer != Transfer::Out || !self.master_selected() {
            return;
        }
        let pos = self.s.position as usize;
        let n = data.len().min(self.s.buffer.len() - pos);
        self.s.buffer[pos..pos + n].copy_from_slice(&data[..n]);
        self.s.position += n as u32;
        if self.s.position as usize == self.s.buffer.len() {
            self.block_done();
        }
    }

    fn read_register(&mut self, offset: u64) -> u8 {
        let hob = usize::from(self.s.control & CONTROL_HOB != 0);
        let present = self.master_selected();
        match offset {
            REG_ERROR_FEATURES if present => self.s.error,
            REG_ERROR_FEATURES => 0,
            REG_SECTOR_COUNT => self.s.sector_count[hob],
            REG_LBA_LOW => self.s.lba_low[hob],
            REG_LBA_MID => self.s.lba_mid[hob],
            REG_LBA_HIGH => self.s.lba_high[hob],
            REG_DEVICE => self.s.device | DEVICE_OBSOLETE,
            REG_STATUS_COMMAND if present => {
                // Reading the status register acknowledges the interrupt.
                self.s.interrupt_pending = false;
                self.s.status
            }
            REG_STATUS_COMMAND => 0,
            CONTROL_OFFSET if present => self.s.status,
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u64, v: u8) {
        let push = |pair: &mut [u8; 2]| *pair = [v, pair[0]];
        if offset != CONTROL_OFFSET {
            // A write to any command block register clears HOB (ATA/ATAPI-6 7.8).
            self.s.control &= !CONTROL_HOB;
        }
        match offset {
            REG_ERROR_FEATURES => push(&mut self.s.features),
            REG_SECTOR_COUNT => push(&mut self.s.sector_count),
            REG_LBA_LOW => push(&mut self.s.lba_low),
            REG_LBA_MID => push(&mut self.s.lba_mid),
            REG_LBA_HIGH => push(&mut self.s.lba_high),
            REG_DEVICE => self.s.device = v & !DEVICE_OBSOLETE,
            REG_STATUS_COMMAND => self.execute(v),
            CONTROL_OFFSET => {
                let was_reset = self.s.control & CONTROL_SRST != 0;
                self.s.control = v;
                if v & CONTROL_SRST != 0 && !was_reset {
                    // SRST asserted: the device is busy until it is released.
                    self.stop_transfer();
                    self.s.interrupt_pending = false;
                    self.s.status = STATUS_BSY;
                } else if v & CONTROL_SRST == 0 && was_reset {
                    self.reset_device();
                }
            }
            _ => {}
        }
    }
}

/// An ATA string: two characters per word, the first in the high byte, padded with spaces.
fn put_string(words: &mut [u16], s: &str) {
    let mut bytes = s.bytes().chain(std::iter::repeat(b' '));
    for w in words {
        let hi = bytes.next().unwrap_or(b' ');
        let lo = bytes.next().unwrap_or(b' ');
        *w = u16::from(hi) << 8 | u16::from(lo);
    }
}

impl crate::bus::BusDevice for Ata {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset == REG_DATA {
            self.read_data(data);
        } else {
            data.fill(0);
            data[0] = self.read_register(offset);
        }
        self.update_irq();
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == REG_DATA {
            self.write_data(data);
        } else {
            self.write_register(offset, data[0]);
        }
        self.update_irq();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::BusDevice;
    use crate::disk::{guess_geometry, MemDisk};
    use std::io;
    use std::sync::{Arc, Mutex};

    const SECTORS: u64 = 4096; // 2 MiB

    /// A memory disk the test can look into while the controller owns it.
    #[derive(Clone)]
    struct Shared(Arc<Mutex<MemDisk>>);

    impl BlockBackend for Shared {
        fn sectors(&self) -> u64 {
            self.0.lock().unwrap().sectors()
        }
        fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> io::Result<()> {
            self.0.lock().unwrap().read_sectors(lba, buf)
        }
        fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> io::Result<()> {
            self.0.lock().unwrap().write_sectors(lba, buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Every byte of sector n holds (n * 7 + offset) & 0xff, so sectors differ.
    fn pattern(sector: u64, offset: usize) -> u8 {
        (sector as usize * 7 + offset) as u8
    }

    struct Rig {
        ata: Ata,
        disk: Shared,
        irqs: Arc<Mutex<Vec<bool>>>,
    }

    fn rig() -> Rig {
        let mut bytes = vec![0u8; SECTORS as usize * SECTOR_SIZE];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = pattern((i / SECTOR_SIZE) as u64, i % SECTOR_SIZE);
        }
        let disk = Shared(Arc::new(Mutex::new(MemDisk(bytes))));
        let mbr = [0u8; SECTOR_SIZE];
        let (geometry, _) = guess_geometry(SECTORS, &mbr);
        let irqs = Arc::new(Mutex::new(Vec::new()));
        let log = irqs.clone();
        let ata = Ata::new(
            Box::new(disk.clone()),
            geometry,
            Box::new(move |level| log.lock().unwrap().push(level)),
        );
        Rig { ata, disk, irqs }
    }

    impl Rig {
        fn out(&mut self, reg: u64, v: u8) {
            self.ata.write(reg, &[v]);
        }
        fn inb(&mut self, reg: u64) -> u8 {
            let mut b = [0u8];
            self.ata.read(reg, &mut b);
            b[0]
        }
        fn read_words(&mut self, bytes: usize) -> Vec<u8> {
            let mut out = Vec::new();
            for _ in 0..bytes / 2 {
                let mut w = [0u8; 2];
                self.ata.read(REG_DATA, &mut w);
                out.extend_from_slice(&w);
            }
            out
        }
        fn lba28(&mut self, command: u8, lba: u32, count: u8) {
            self.out(REG_SECTOR_COUNT, count);
            self.out(REG_LBA_LOW, lba as u8);
            self.out(REG_LBA_MID, (lba >> 8) as u8);
            self.out(REG_LBA_HIGH, (lba >> 16) as u8);
            self.out(REG_DEVICE, DEVICE_LBA | (lba >> 24) as u8 & 0xf);
            self.out(REG_STATUS_COMMAND, command);
        }
        fn irq_edges(&self) -> Vec<bool> {
            std::mem::take(&mut *self.irqs.lock().unwrap())
        }
    }

    #[test]
    fn power_on_signature_and_identify() {
        let mut r = rig();
        assert_eq!(r.inb(REG_SECTOR_COUNT), 1);
        assert_eq!(r.inb(REG_LBA_LOW), 1);
        assert_eq!(r.inb(REG_LBA_MID), 0);
        assert_eq!(r.inb(REG_ERROR_FEATURES), DIAGNOSTIC_PASSED);
        assert_eq!(r.inb(REG_DEVICE), 0xa0);
        r.out(REG_STATUS_COMMAND, cmd::IDENTIFY_DEVICE);
        assert_eq!(r.irq_edges(), vec![true]);
        assert_eq!(r.inb(CONTROL_OFFSET), STATUS_IDLE | STATUS_DRQ);
        assert_eq!(
            r.irq_edges(),
            vec![],
            "alternate status does not acknowledge"
        );
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE | STATUS_DRQ);
        assert_eq!(r.irq_edges(), vec![false]);
        let id = r.read_words(SECTOR_SIZE);
        let word = |i: usize| u16::from_le_bytes([id[2 * i], id[2 * i + 1]]);
        // 4096 sectors / (16 * 63) = 4 cylinders.
        assert_eq!((word(1), word(3), word(6)), (4, 16, 63));
        assert_eq!(u32::from(word(61)) << 16 | u32::from(word(60)), 4096);
        assert_eq!(word(100), 4096);
        assert_eq!(word(83) & (1 << 10), 1 << 10, "48-bit addressing");
        assert_eq!(word(49) & (1 << 9), 1 << 9, "LBA");
        assert_eq!(&id[54..66], b"ME UAHDRIDKS", "model, byte-swapped per word");
        assert_eq!(id.iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0);
        assert_eq!(id[510], 0xa5);
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE);
        assert_eq!(
            r.inb(REG_LBA_LOW),
            1,
            "IDENTIFY leaves the address registers alone"
        );
        // A snapshot in the middle of IDENTIFY resumes it.
        r.out(REG_STATUS_COMMAND, cmd::IDENTIFY_DEVICE);
        r.read_words(2);
        let mut copy = rig();
        copy.ata
            .set_state(AtaState::from_bytes(&r.ata.state().to_bytes()).unwrap());
        assert_eq!(copy.read_words(SECTOR_SIZE - 2), id[2..]);
        assert_eq!(copy.inb(REG_STATUS_COMMAND), STATUS_IDLE);
    }

    #[test]
    fn read_sectors_lba28_interrupts_per_sector() {
        let mut r = rig();
        r.lba28(cmd::READ_SECTORS, 100, 3);
        for sector in 100..103u64 {
            assert_eq!(r.irq_edges(), vec![true], "sector {sector}");
            assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE | STATUS_DRQ);
            assert_eq!(r.irq_edges(), vec![false]);
            let data = r.read_words(SECTOR_SIZE);
            assert!(data
                .iter()
                .enumerate()
                .all(|(i, &b)| b == pattern(sector, i)));
        }
        assert_eq!(
            r.irq_edges(),
            vec![],
            "no interrupt after the last data-in block"
        );
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE);
        assert_eq!(r.inb(REG_LBA_LOW), 102, "address of the last sector read");
        assert_eq!(r.inb(REG_SECTOR_COUNT), 0);
        // The data register floats once the transfer is over.
        assert_eq!(r.read_words(2), vec![0, 0]);
    }

    #[test]
    fn chs_addresses_follow_initialize_device_parameters() {
        let mut r = rig();
        // C/H/S 1/2/3 with 16 heads, 63 sectors: (1 * 16 + 2) * 63 + 2 = 1136.
        let chs = |r: &mut Rig, c: u16, h: u8, s: u8| {
            r.out(REG_SECTOR_COUNT, 1);
            r.out(REG_LBA_LOW, s);
            r.out(REG_LBA_MID, c as u8);
            r.out(REG_LBA_HIGH, (c >> 8) as u8);
            r.out(REG_DEVICE, h);
            r.out(REG_STATUS_COMMAND, cmd::READ_SECTORS);
        };
        chs(&mut r, 1, 2, 3);
        assert_eq!(r.read_words(2), vec![pattern(1136, 0), pattern(1136, 1)]);
        r.read_words(SECTOR_SIZE - 2);
        // 4 heads of 32 sectors: (1 * 4 + 2) * 32 + 2 = 194.
        r.out(REG_SECTOR_COUNT, 32);
        r.out(REG_DEVICE, 3);
        r.out(REG_STATUS_COMMAND, cmd::INITIALIZE_DEVICE_PARAMETERS);
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE);
        chs(&mut r, 1, 2, 3);
        assert_eq!(r.read_words(2), vec![pattern(194, 0), pattern(194, 1)]);
        r.read_words(SECTOR_SIZE - 2);
        assert_eq!(r.inb(REG_LBA_LOW), 3, "CHS registers written back");
        // Sector 0 and a head beyond the geometry do not exist.
        chs(&mut r, 0, 0, 0);
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE | STATUS_ERR);
        assert_eq!(r.inb(REG_ERROR_FEATURES), ERROR_IDNF);
        chs(&mut r, 0, 4, 1);
        assert_eq!(r.inb(REG_ERROR_FEATURES), ERROR_IDNF);
        // Zero sectors per track is refused.
        r.out(REG_SECTOR_COUNT, 0);
        r.out(REG_STATUS_COMMAND, cmd::INITIALIZE_DEVICE_PARAMETERS);
        assert_eq!(r.inb(REG_ERROR_FEATURES), ERROR_ABRT);
    }

    #[test]
    fn lba48_read_uses_previous_register_contents_and_hob() {
        let mut r = rig();
        // LBA 0x00_0000_0f00, count 0x0002 written high byte first.
        for (reg, hi, lo) in [
            (REG_SECTOR_COUNT, 0, 2),
            (REG_LBA_LOW, 0, 0x00),
            (REG_LBA_MID, 0, 0x0f),
            (REG_LBA_HIGH, 0, 0),
        ] {
            r.out(reg, hi);
            r.out(reg, lo);
        }
        r.out(REG_DEVICE, DEVICE_LBA);
        r.out(REG_STATUS_COMMAND, cmd::READ_SECTORS_EXT);
        let data = r.read_words(2 * SECTOR_SIZE);
        assert_eq!(data[0], pattern(0xf00, 0));
        assert_eq!(data[SECTOR_SIZE], pattern(0xf01, 0));
        assert_eq!(r.inb(REG_LBA_LOW), 0x01);
        assert_eq!(r.inb(REG_LBA_MID), 0x0f);
        r.out(CONTROL_OFFSET, CONTROL_HOB);
        assert_eq!(r.inb(REG_LBA_MID), 0, "bits 39:32 with HOB");
        // Beyond the end: IDNF, even with a high byte only.
        r.out(REG_LBA_HIGH, 1);
        r.out(REG_LBA_HIGH, 0);
        r.out(REG_SECTOR_COUNT, 0);
        r.out(REG_SECTOR_COUNT, 1);
        r.out(REG_STATUS_COMMAND, cmd::READ_SECTORS_EXT);
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE | STATUS_ERR);
        assert_eq!(r.inb(REG_ERROR_FEATURES), ERROR_IDNF);
    }

    #[test]
    fn write_sectors_and_multiple_mode() {
        let mut r = rig();
        r.lba28(cmd::WRITE_SECTORS, 7, 2);
        assert_eq!(
            r.irq_edges(),
            vec![],
            "no interrupt before the first data-out block"
        );
        assert_eq!(r.inb(CONTROL_OFFSET), STATUS_IDLE | STATUS_DRQ);
        for i in 0..SECTOR_SIZE / 2 {
            r.ata.write(REG_DATA, &[i as u8, 0xee]);
        }
        assert_eq!(r.irq_edges(), vec![true]);
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE | STATUS_DRQ);
        for _ in 0..SECTOR_SIZE / 4 {
            r.ata.write(REG_DATA, &[1, 2, 3, 4]); // 32-bit I/O
        }
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE);
        {
            let d = r.disk.0.lock().unwrap();
            assert_eq!(
                &d.0[7 * SECTOR_SIZE..7 * SECTOR_SIZE + 4],
                &[0, 0xee, 1, 0xee]
            );
            assert_eq!(&d.0[8 * SECTOR_SIZE..8 * SECTOR_SIZE + 4], &[1, 2, 3, 4]);
            assert_eq!(d.0[9 * SECTOR_SIZE], pattern(9, 0), "nothing more written");
        }
        // READ MULTIPLE needs SET MULTIPLE MODE first; 3 is not a power of two.
        r.lba28(cmd::READ_MULTIPLE, 0, 4);
        assert_eq!(r.inb(REG_ERROR_FEATURES), ERROR_ABRT);
        r.out(REG_SECTOR_COUNT, 3);
        r.out(REG_STATUS_COMMAND, cmd::SET_MULTIPLE_MODE);
        assert_eq!(r.inb(REG_ERROR_FEATURES), ERROR_ABRT);
        r.out(REG_SECTOR_COUNT, 2);
        r.out(REG_STATUS_COMMAND, cmd::SET_MULTIPLE_MODE);
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE);
        r.irq_edges();
        r.lba28(cmd::READ_MULTIPLE, 20, 3);
        let first = r.read_words(2 * SECTOR_SIZE);
        assert_eq!(first[SECTOR_SIZE], pattern(21, 0));
        assert_eq!(r.irq_edges(), vec![true]);
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE | STATUS_DRQ);
        let second = r.read_words(SECTOR_SIZE);
        assert_eq!(second[0], pattern(22, 0));
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE);
        // WRITE MULTIPLE EXT: one block of two sectors, then a completion interrupt.
        r.out(REG_SECTOR_COUNT, 0);
        r.out(REG_SECTOR_COUNT, 2);
        for reg in [REG_LBA_LOW, REG_LBA_MID, REG_LBA_HIGH] {
            r.out(reg, 0);
            r.out(reg, if reg == REG_LBA_LOW { 30 } else { 0 });
        }
        r.out(REG_STATUS_COMMAND, cmd::WRITE_MULTIPLE_EXT);
        r.irq_edges();
        for _ in 0..SECTOR_SIZE {
            r.ata.write(REG_DATA, &[0x5a, 0xa5]);
        }
        assert_eq!(r.irq_edges(), vec![true]);
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE);
        assert_eq!(r.disk.0.lock().unwrap().0[31 * SECTOR_SIZE + 511], 0xa5);
    }

    #[test]
    fn interrupts_honour_nien_and_device_selection() {
        let mut r = rig();
        r.out(CONTROL_OFFSET, CONTROL_NIEN);
        r.out(REG_STATUS_COMMAND, cmd::FLUSH_CACHE);
        assert_eq!(r.irq_edges(), vec![]);
        r.out(CONTROL_OFFSET, 0);
        assert_eq!(
            r.irq_edges(),
            vec![true],
            "the pending interrupt shows once enabled"
        );
        r.out(REG_DEVICE, DEVICE_DEV);
        assert_eq!(
            r.irq_edges(),
            vec![false],
            "device 1 selected: INTRQ released"
        );
        // No device 1: status reads 0 and its commands are ignored.
        assert_eq!(r.inb(REG_STATUS_COMMAND), 0);
        assert_eq!(r.inb(CONTROL_OFFSET), 0);
        r.out(REG_STATUS_COMMAND, cmd::IDENTIFY_DEVICE);
        assert_eq!(r.read_words(2), vec![0, 0]);
        assert_eq!(r.inb(REG_DEVICE), 0xb0);
        r.out(REG_DEVICE, 0);
        assert_eq!(
            r.irq_edges(),
            vec![true],
            "device 0's interrupt is still pending"
        );
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE);
    }

    #[test]
    fn errors_abort_and_srst_resets() {
        let mut r = rig();
        for command in [0x00, cmd::DEVICE_RESET, 0xc8 /* READ DMA */, 0xa1] {
            r.out(REG_STATUS_COMMAND, command);
            assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE | STATUS_ERR);
            assert_eq!(
                r.inb(REG_ERROR_FEATURES),
                ERROR_ABRT,
                "command {command:#x}"
            );
        }
        r.out(REG_ERROR_FEATURES, feature::SET_TRANSFER_MODE);
        r.out(REG_SECTOR_COUNT, 0x0c); // PIO 4
        r.out(REG_STATUS_COMMAND, cmd::SET_FEATURES);
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE);
        r.out(REG_SECTOR_COUNT, 0x42); // UDMA 2
        r.out(REG_STATUS_COMMAND, cmd::SET_FEATURES);
        assert_eq!(r.inb(REG_ERROR_FEATURES), ERROR_ABRT);
        // Reading past the end, and a count that runs past it.
        r.lba28(cmd::READ_SECTORS, SECTORS as u32, 1);
        assert_eq!(r.inb(REG_ERROR_FEATURES), ERROR_IDNF);
        r.lba28(cmd::READ_VERIFY_SECTORS, SECTORS as u32 - 1, 2);
        assert_eq!(r.inb(REG_ERROR_FEATURES), ERROR_IDNF);
        r.lba28(cmd::READ_VERIFY_SECTORS, SECTORS as u32 - 2, 2);
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE);
        // SRST in the middle of a read: busy while asserted, then the signature.
        r.lba28(cmd::READ_SECTORS, 5, 2);
        r.out(CONTROL_OFFSET, CONTROL_SRST | CONTROL_NIEN);
        assert_eq!(r.inb(CONTROL_OFFSET), STATUS_BSY);
        r.out(REG_STATUS_COMMAND, cmd::IDENTIFY_DEVICE);
        assert_eq!(
            r.inb(CONTROL_OFFSET),
            STATUS_BSY,
            "no command while in reset"
        );
        r.out(CONTROL_OFFSET, CONTROL_NIEN);
        assert_eq!(r.inb(REG_STATUS_COMMAND), STATUS_IDLE);
        assert_eq!(r.inb(REG_SECTOR_COUNT), 1);
        assert_eq!(r.inb(REG_ERROR_FEATURES), DIAGNOSTIC_PASSED);
        assert_eq!(r.read_words(2), vec![0, 0], "the read was cancelled");
    }

    #[test]
    fn state_round_trips_in_the_middle_of_a_read() {
        let mut r = rig();
        r.lba28(cmd::READ_SECTORS, 40, 2);
        r.read_words(100);
        let blob = r.ata.state().to_bytes();
        let mut copy = rig();
        copy.ata.set_state(AtaState::from_bytes(&blob).unwrap());
        assert_eq!(copy.ata.state(), r.ata.state());
        assert_eq!(copy.read_words(2), r.read_words(2));
        for n in 0..blob.len() {
            assert!(
                AtaState::from_bytes(&blob[..n]).is_err(),
                "truncated to {n}"
            );
        }
        let mut bad = r.ata.state();
        bad.position = bad.buffer.len() as u32 + 2;
        assert!(matches!(
            AtaState::from_bytes(&bad.to_bytes()),
            Err(StateError::Invalid { .. })
        ));
        let mut bad = r.ata.state();
        bad.multiple = 3;
        assert!(AtaState::from_bytes(&bad.to_bytes()).is_err());
        r.ata.reset();
        assert_eq!(r.ata.state().transfer, Transfer::Idle);
        assert_eq!(r.inb(REG_SECTOR_COUNT), 1);
    }

    #[test]
    fn random_guest_accesses_never_panic() {
        // Whatever a guest does with the ports (any register, width, value, order), the
        // controller answers without panicking and its state stays loadable.
        let mut r = rig();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let v = next();
            let offset = v % 9;
            let width = [1usize, 2, 4][(v >> 8) as usize % 3];
            let bytes = (v >> 16).to_le_bytes();
            if v >> 60 < 9 {
                let mut buf = [0u8; 4];
                r.ata.read(offset, &mut buf[..width]);
            } else if offset == REG_STATUS_COMMAND && (v >> 24) & 1 == 0 {
                // Mostly the commands that exist, so transfers start often.
                let commands = [
                    0x20, 0x24, 0x29, 0x30, 0x34, 0x39, 0x40, 0xc4, 0xc5, 0xc6, 0xec,
                ];
                r.out(offset, commands[(v >> 32) as usize % commands.len()]);
            } else {
                r.ata.write(offset, &bytes[..width]);
            }
        }
        AtaState::from_bytes(&r.ata.state().to_bytes()).unwrap();
    }
}
