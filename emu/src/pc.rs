//! The PC platform emu builds: where RAM, the legacy holes and the BIOS sit in guest-physical
//! space, and which devices sit on which ports.
//!
//! Memory map (as QEMU's `pc` machine lays it out for `-bios`):
//! - RAM from 0 to 0xA0000 (640 KiB of conventional memory);
//! - 0xA0000..0xC0000: the VGA window, a hole (MMIO bus);
//! - 0xC0000 up to the low BIOS alias: RAM (option ROM and upper memory area);
//! - the last min(size, 128 KiB) of the BIOS image just below 1 MiB (the ISA BIOS alias). As on
//!   QEMU's `isapc` machine (no chipset to switch shadow RAM on), this copy is writable RAM,
//!   filled with the image at power-on and kept across resets: SeaBIOS keeps its variables in
//!   the F segment and would stop with no RAM size if its writes there were dropped;
//! - RAM from 1 MiB up to the memory size, at most up to 3.5 GiB; the rest above 4 GiB;
//! - the whole BIOS image ending at 4 GiB (the reset vector is at 0xFFFFFFF0).

use std::sync::{Arc, Mutex};

use devices::ata::{
    Ata, AtaState, ATA_COMMAND_BLOCK_LEN, ATA_PRIMARY_COMMAND_PORT, ATA_PRIMARY_CONTROL_PORT,
    ATA_PRIMARY_IRQ, CONTROL_OFFSET,
};
use devices::clock::{Clock, HostClock};
use devices::cmos::{Cmos, CmosState, CMOS_PORT};
use devices::debug::{
    Pm1State, DEBUGCON_PORT, DEBUG_EXIT_LEN, DEBUG_EXIT_PORT, PM1A_EVT_PORT, POST_PORT,
};
use devices::disk::{guess_geometry, BlockBackend, SECTOR_SIZE};
use devices::i8042::{I8042State, AUX_IRQ, COMMAND_PORT, DATA_PORT, I8042, KEYBOARD_IRQ};
use devices::interrupts::{IoApicMmio, LapicMmio, LapicTimer, PcInterrupts};
use devices::ioapic::{IoApic, IoApicState, IOAPIC_BASE};
use devices::lapic::{LapicState, LocalApic};
use devices::pci::{PciHost, PciState, PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_PORTS_LEN};
use devices::pic::{Pic, PicState, ELCR_PORT, MASTER_PORT, SLAVE_PORT};
use devices::pit::{Pit, PitIrq0, PitState, PIT_PORT, PORT_B, PORT_B_OFFSET};
use devices::pm_timer::{PmTimer, PM_TMR_LEN, PM_TMR_PORT};
use devices::reset::{A20Gate, PortA, ResetControl, PORT_A};
use devices::serial::{SerialInputPoll, COM1_PORT, UART_LEN};
use devices::serial_output::{ConsoleFlush, ConsoleOutput};
use devices::{
    BusError, Buses, DebugCon, DebugExit, OutputSink, Pm1, PostPort, Serial, SerialInput,
    SharedDevice, StateError,
};
use vcpu::{GuestRam, MemoryError, RegionKind, RegionSpec};

/// End of conventional memory / start of the VGA window.
pub const VGA_START: u64 = 0xa_0000;
/// End of the VGA window.
pub const VGA_END: u64 = 0xc_0000;
/// 1 MiB: the top of real-mode memory.
pub const HIGH_MEMORY: u64 = 0x10_0000;
/// The ISA BIOS alias is at most this large.
pub const ISA_BIOS_MAX: u64 = 128 << 10;
/// RAM below 4 GiB stops here; the rest of RAM goes above 4 GiB (PCI hole).
pub const LOW_RAM_TOP: u64 = 0xe000_0000;
pub const FOUR_GIB: u64 = 1 << 32;
/// COM1's ISA interrupt line.
pub const COM1_IRQ: u8 = 4;
/// The smallest guest emu builds: the first megabyte must hold conventional memory.
pub const MIN_MEMORY: u64 = 2 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PcError {
    #[error("memory size {0:#x} is too small: at least 2 MiB is needed")]
    MemoryTooSmall(u64),
    #[error("memory size {0:#x} is not a multiple of 4 KiB")]
    MemoryUnaligned(u64),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("device placement: {0}")]
    Bus(#[from] BusError),
    #[error("device {0} in the snapshot: {1}")]
    DeviceState(&'static str, StateError),
    #[error("the snapshot has no state for device {0:?}")]
    MissingDevice(&'static str),
    #[error("the snapshot has two states for device {0:?}")]
    DuplicateDevice(&'static str),
    #[error("the snapshot has state for a device this machine lacks: {0:?}")]
    UnknownDevice(String),
    #[error(
        "the snapshot was taken with a disk: restore it with --disk and the same image (disk \
         contents are not in snapshots)"
    )]
    DiskMissing,
    #[error("the snapshot's disk had {snapshot} sectors, the image given has {given}")]
    DiskSize { snapshot: u64, given: u64 },
    #[error("cannot read the disk image's first sector: {0}")]
    DiskRead(std::io::Error),
}

/// The guest-physical regions for `memory` bytes of RAM and a BIOS image of `bios_len` bytes.
pub fn memory_layout(memory: u64, bios_len: u64) -> Result<Vec<RegionSpec>, PcError> {
    if memory < MIN_MEMORY {
        return Err(PcError::MemoryTooSmall(memory));
    }
    if !memory.is_multiple_of(4096) {
        return Err(PcError::MemoryUnaligned(memory));
    }
    let ram = |base, end: u64| RegionSpec {
        base,
        size: end - base,
        kind: RegionKind::Ram,
    };
    // Upper memory and the ISA BIOS alias are one stretch of RAM; build_memory copies the
    // image's tail into it.
    let mut regions = vec![ram(0, VGA_START), ram(VGA_END, HIGH_MEMORY)];
    let low_top = memory.min(LOW_RAM_TOP);
    regions.push(ram(HIGH_MEMORY, low_top));
    if memory > LOW_RAM_TOP {
        regions.push(ram(FOUR_GIB, FOUR_GIB + (memory - LOW_RAM_TOP)));
    }
    if bios_len > 0 {
        regions.push(RegionSpec {
            base: FOUR_GIB - bios_len,
            size: bios_len,
            kind: RegionKind::Rom,
        });
    }
    Ok(regions)
}

/// Map memory and copy the BIOS image to its two places.
pub fn build_memory(memory: u64, bios: &[u8]) -> Result<GuestRam, PcError> {
    let len = bios.len() as u64;
    let ram = GuestRam::new(&memory_layout(memory, len)?)?;
    if !bios.is_empty() {
        ram.write_host(FOUR_GIB - len, bios)?;
        let isa = len.min(ISA_BIOS_MAX) as usize;
        ram.write_host(HIGH_MEMORY - isa as u64, &bios[bios.len() - isa..])?;
    }
    Ok(ram)
}

/// The devices of a PC whose state a snapshot must carry, as shared handles into the buses.
/// Devices without state (debug console and exit, POST, reset control) are not here.
#[derive(Clone)]
pub struct PcDevices {
    pic: Arc<Mutex<Pic>>,
    ioapic: Arc<Mutex<IoApic>>,
    lapic: Arc<Mutex<LocalApic>>,
    pit: Arc<Mutex<Pit>>,
    cmos: Arc<Mutex<Cmos>>,
    kbc: Arc<Mutex<I8042>>,
    serial: Arc<Mutex<Serial>>,
    pm1: Arc<Mutex<Pm1>>,
    pci: Arc<Mutex<PciHost>>,
    /// The IDE controller, when the machine has a disk ([`attach_disk`]).
    ata: Option<Arc<Mutex<Ata>>>,
    a20: A20Gate,
    clock: Arc<dyn Clock>,
    /// The buffered output of the debug console and the UART.
    console: ConsoleOutput,
}

/// Names of the device blobs in a snapshot.
const DEV_CLOCK: &str = "clock";
const DEV_A20: &str = "a20";
const DEV_PIC: &str = "pic";
const DEV_IOAPIC: &str = "ioapic";
const DEV_LAPIC: &str = "lapic";
const DEV_PIT: &str = "pit";
const DEV_CMOS: &str = "cmos";
const DEV_I8042: &str = "i8042";
const DEV_SERIAL: &str = "serial";
const DEV_PM1: &str = "pm1";
const DEV_PCI: &str = "pci";
/// Only machines with a disk have it.
const DEV_ATA: &str = "ata";
const DEVICE_NAMES: [&str; 12] = [
    DEV_CLOCK, DEV_A20, DEV_PIC, DEV_IOAPIC, DEV_LAPIC, DEV_PIT, DEV_CMOS, DEV_I8042, DEV_SERIAL,
    DEV_PM1, DEV_PCI, DEV_ATA,
];

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PcDevices {
    /// Pass on the console output the guest wrote and that still waits in the buffer
    /// (`devices::serial_output`).
    pub fn flush_console(&self) -> std::io::Result<()> {
        self.console.flush_all()
    }

    /// Every device's state as (name, blob), plus the machine clock's reading (devices keep
    /// times in that clock) and the A20 line.
    pub fn save(&self) -> Vec<(String, Vec<u8>)> {
        let mut saved = vec![
            (DEV_CLOCK.into(), self.clock.now_ns().to_le_bytes().to_vec()),
            (DEV_A20.into(), vec![u8::from(self.a20.enabled())]),
            (DEV_PIC.into(), lock(&self.pic).state().to_bytes()),
            (DEV_IOAPIC.into(), lock(&self.ioapic).state().to_bytes()),
            (DEV_LAPIC.into(), lock(&self.lapic).state().to_bytes()),
            (DEV_PIT.into(), lock(&self.pit).state().to_bytes()),
            (DEV_CMOS.into(), lock(&self.cmos).state().to_bytes()),
            (DEV_I8042.into(), lock(&self.kbc).state().to_bytes()),
            (DEV_SERIAL.into(), lock(&self.serial).state_bytes()),
            (DEV_PM1.into(), lock(&self.pm1).state().to_bytes()),
            (DEV_PCI.into(), lock(&self.pci).state().to_bytes()),
        ];
        if let Some(ata) = &self.ata {
            saved.push((DEV_ATA.into(), lock(ata).state().to_bytes()));
        }
        saved
    }

    /// Put every device in its power-on state, as a system reset does. CMOS RAM is
    /// battery-backed and survives (firmware keeps its settings and shutdown status there).
    pub fn reset(&self) {
        self.a20.set(true);
        lock(&self.pic).set_state(Pic::new().state());
        lock(&self.ioapic).set_state(IoApicState::default());
        lock(&self.lapic).set_state(LapicState::default());
        lock(&self.pit).set_state(Pit::new(self.clock.clone()).state());
        {
            let mut cmos = lock(&self.cmos);
            let mut s = cmos.state();
            s.index = 0;
            s.nmi_disabled = false;
            cmos.set_state(s);
        }
        lock(&self.kbc).set_state(I8042State::default());
        lock(&self.serial).reset();
        lock(&self.pm1).set_state(Pm1State::default());
        lock(&self.pci).reset();
        if let Some(ata) = &self.ata {
            lock(ata).reset();
        }
    }

    /// The machine clock's reading stored by [`PcDevices::save`]: the clock a restored machine
    /// must start from (see [`build_buses`]).
    pub fn saved_clock_ns(saved: &[(String, Vec<u8>)]) -> Result<u64, PcError> {
        let blob = find(saved, DEV_CLOCK)?;
        let bytes: [u8; 8] = blob.try_into().map_err(|_| {
            PcError::DeviceState(DEV_CLOCK, StateError::Truncated { device: DEV_CLOCK })
        })?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Load what [`PcDevices::save`] wrote. Every blob is decoded and checked before any device
    /// changes, so a bad snapshot leaves the machine as it was.
    pub fn restore(&self, saved: &[(String, Vec<u8>)]) -> Result<(), PcError> {
        if let Some((name, _)) = saved
            .iter()
            .find(|(n, _)| !DEVICE_NAMES.contains(&n.as_str()))
        {
            return Err(PcError::UnknownDevice(name.clone()));
        }
        let a20 = match find(saved, DEV_A20)? {
            [0] => false,
            [1] => true,
            _ => {
                return Err(PcError::DeviceState(
                    DEV_A20,
                    StateError::Invalid {
                        device: DEV_A20,
                        what: "not a single 0/1 byte".into(),
                    },
                ))
            }
        };
        let dev = |name: &'static str| find(saved, name);
        let wrap = |name: &'static str| move |e| PcError::DeviceState(name, e);
        let pic = PicState::from_bytes(dev(DEV_PIC)?).map_err(wrap(DEV_PIC))?;
        let ioapic = IoApicState::from_bytes(dev(DEV_IOAPIC)?).map_err(wrap(DEV_IOAPIC))?;
        let lapic = LapicState::from_bytes(dev(DEV_LAPIC)?).map_err(wrap(DEV_LAPIC))?;
        let pit = PitState::from_bytes(dev(DEV_PIT)?).map_err(wrap(DEV_PIT))?;
        let cmos = CmosState::from_bytes(dev(DEV_CMOS)?).map_err(wrap(DEV_CMOS))?;
        let kbc = I8042State::from_bytes(dev(DEV_I8042)?).map_err(wrap(DEV_I8042))?;
        let pm1 = Pm1State::from_bytes(dev(DEV_PM1)?).map_err(wrap(DEV_PM1))?;
        let pci = PciState::from_bytes(dev(DEV_PCI)?).map_err(wrap(DEV_PCI))?;
        // A snapshot of another board layout is refused before anything changes.
        lock(&self.pci).check_state(&pci).map_err(wrap(DEV_PCI))?;
        let serial = dev(DEV_SERIAL)?;
        let ata = match (&self.ata, saved.iter().any(|(n, _)| n == DEV_ATA)) {
            (Some(ata), _) => {
                let state = AtaState::from_bytes(dev(DEV_ATA)?).map_err(wrap(DEV_ATA))?;
                let given = lock(ata).disk_sectors();
                if state.disk_sectors != given {
                    return Err(PcError::DiskSize {
                        snapshot: state.disk_sectors,
                        given,
                    });
                }
                Some((ata, state))
            }
            (None, true) => return Err(PcError::DiskMissing),
            (None, false) => None,
        };
        // The UART checks its blob before replacing anything; do it first so a bad one leaves
        // every device untouched.
        lock(&self.serial)
            .restore_state(serial)
            .map_err(wrap(DEV_SERIAL))?;
        self.a20.set(a20);
        lock(&self.pic).set_state(pic);
        lock(&self.ioapic).set_state(ioapic);
        lock(&self.lapic).set_state(lapic);
        lock(&self.pit).set_state(pit);
        lock(&self.cmos).set_state(cmos);
        lock(&self.kbc).set_state(kbc);
        lock(&self.pm1).set_state(pm1);
        lock(&self.pci).set_state(&pci).map_err(wrap(DEV_PCI))?;
        if let Some((ata, state)) = ata {
            lock(ata).set_state(state);
        }
        Ok(())
    }
}

fn find<'a>(saved: &'a [(String, Vec<u8>)], name: &'static str) -> Result<&'a [u8], PcError> {
    let mut hits = saved.iter().filter(|(n, _)| n == name);
    match (hits.next(), hits.next()) {
        (Some((_, blob)), None) => Ok(blob),
        (None, _) => Err(PcError::MissingDevice(name)),
        (Some(_), Some(_)) => Err(PcError::DuplicateDevice(name)),
    }
}

/// The legacy devices every emu PC has: debug console (0xE9), debug exit (0xF4), POST (0x80),
/// COM1 (0x3F8), the ACPI PM1a event and control registers (0x600, 0x604), the 8259A pair (0x20, 0xA0, ELCR
/// 0x4D0), the 8254 PIT with port B (0x40-0x43, 0x61), the RTC/CMOS (0x70), the i8042 keyboard
/// controller (0x60, 0x64), System Control Port A (0x92), and PCI configuration mechanism #1
/// (0xCF8-0xCFF: bus 0 with the i440FX/PIIX3 functions, `devices::pci`) whose byte port 0xCF9
/// is the reset control register.
///
/// The interrupt controllers: the 8259A pair, the I/O APIC at 0xFEC00000 and the local APIC at
/// 0xFEE00000, wired as `devices::interrupts` describes (ISA IRQs reach both the 8259A and
/// the I/O APIC; PIT channel 0 is ISA IRQ 0, I/O APIC pin 2; COM1 is IRQ 4). The devices' clock
/// reads `clock_ns` now (0 for a new machine; a snapshot's time when restoring).
pub fn build_buses(
    out: OutputSink,
    serial_input: SerialInput,
    memory: u64,
    clock_ns: u64,
) -> Result<(Buses, PcDevices), PcError> {
    let mut buses = Buses::new();
    // The debug console and the UART print to one buffered sink, in the order the guest wrote.
    let console = ConsoleOutput::new(out);
    buses.add_timer(Box::new(ConsoleFlush(console.clone())));
    let requests = buses.requests();
    buses.io.insert(
        u64::from(DEBUGCON_PORT),
        1,
        Box::new(DebugCon::new(Box::new(console.clone()))),
    )?;
    buses.io.insert(
        u64::from(DEBUG_EXIT_PORT),
        DEBUG_EXIT_LEN,
        Box::new(DebugExit::new(requests.clone())),
    )?;
    buses
        .io
        .insert(u64::from(POST_PORT), 1, Box::new(PostPort::default()))?;
    let clock: Arc<dyn Clock> = Arc::new(HostClock::starting_at(clock_ns));
    let pic = Arc::new(Mutex::new(Pic::new()));
    let ioapic = Arc::new(Mutex::new(IoApic::new()));
    let lapic = Arc::new(Mutex::new(LocalApic::new(clock.clone())));
    let irqs = PcInterrupts::new(pic.clone(), ioapic.clone(), lapic.clone());
    let serial = Arc::new(Mutex::new(Serial::with_irq(
        Box::new(console.clone()),
        serial_input,
        irqs.isa_line(COM1_IRQ),
    )));
    buses.io.insert(
        u64::from(COM1_PORT),
        UART_LEN,
        Box::new(SharedDevice::new(serial.clone(), 0)),
    )?;
    let pm1 = Arc::new(Mutex::new(Pm1::new(requests.clone())));
    buses.io.insert(
        u64::from(PM1A_EVT_PORT),
        Pm1::LEN,
        Box::new(SharedDevice::new(pm1.clone(), 0)),
    )?;
    buses.io.insert(
        u64::from(PM_TMR_PORT),
        PM_TMR_LEN,
        Box::new(PmTimer::new(clock.clone())),
    )?;

    for (port, len) in [(MASTER_PORT, 2), (SLAVE_PORT, 2), (ELCR_PORT, 2)] {
        let bias = u64::from(port - MASTER_PORT);
        buses.io.insert(
            u64::from(port),
            len,
            Box::new(SharedDevice::new(pic.clone(), bias)),
        )?;
    }
    let pit = Arc::new(Mutex::new(Pit::new(clock.clone())));
    buses.io.insert(
        u64::from(PIT_PORT),
        4,
        Box::new(SharedDevice::new(pit.clone(), 0)),
    )?;
    buses.io.insert(
        u64::from(PORT_B),
        1,
        Box::new(SharedDevice::new(pit.clone(), PORT_B_OFFSET)),
    )?;
    buses.mmio.insert(
        devices::lapic::DEFAULT_BASE,
        devices::lapic::MMIO_LEN,
        Box::new(LapicMmio(irqs.clone())),
    )?;
    buses.mmio.insert(
        IOAPIC_BASE,
        devices::ioapic::MMIO_LEN,
        Box::new(IoApicMmio(irqs.clone())),
    )?;
    buses.set_interrupt_controller(Arc::new(Mutex::new(irqs.clone())));
    buses.add_timer(Box::new(SerialInputPoll(serial.clone())));
    buses.add_timer(Box::new(PitIrq0 {
        pit: pit.clone(),
        irqs: irqs.clone(),
    }));
    buses.add_timer(Box::new(LapicTimer(lapic.clone())));
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut cmos = Cmos::new(clock.clone(), unix_now);
    let below_4g = memory.min(LOW_RAM_TOP);
    cmos.set_memory_size(below_4g, memory - below_4g);
    let cmos = Arc::new(Mutex::new(cmos));
    buses.io.insert(
        u64::from(CMOS_PORT),
        2,
        Box::new(SharedDevice::new(cmos.clone(), 0)),
    )?;
    let kbc = Arc::new(Mutex::new(
        I8042::new(buses.a20.clone(), requests.clone())
            .with_irqs(irqs.isa_line(KEYBOARD_IRQ), irqs.isa_line(AUX_IRQ)),
    ));
    buses.io.insert(
        u64::from(DATA_PORT),
        1,
        Box::new(SharedDevice::new(kbc.clone(), 0)),
    )?;
    buses.io.insert(
        u64::from(COMMAND_PORT),
        1,
        Box::new(SharedDevice::new(
            kbc.clone(),
            u64::from(COMMAND_PORT - DATA_PORT),
        )),
    )?;
    buses.io.insert(
        u64::from(PORT_A),
        1,
        Box::new(PortA::new(buses.a20.clone(), requests.clone())),
    )?;
    // 0xCF8-0xCFF: PCI configuration mechanism #1, with the reset control register at 0xCF9.
    let pci = Arc::new(Mutex::new(PciHost::new(ResetControl::new(requests))));
    buses.io.insert(
        u64::from(PCI_CONFIG_ADDRESS_PORT),
        PCI_CONFIG_PORTS_LEN,
        Box::new(SharedDevice::new(pci.clone(), 0)),
    )?;
    let devices = PcDevices {
        pic,
        ioapic,
        lapic,
        pit,
        cmos,
        kbc,
        serial,
        pm1,
        pci,
        ata: None,
        a20: buses.a20.clone(),
        clock,
        console,
    };
    Ok((buses, devices))
}

/// Put SeaBIOS's debug console at port 0x402, writing to `out`.
pub fn attach_firmware_log(buses: &mut Buses, out: OutputSink) -> Result<(), PcError> {
    buses.io.insert(
        u64::from(crate::firmware::FIRMWARE_LOG_PORT),
        1,
        Box::new(DebugCon::new(out)),
    )?;
    Ok(())
}

/// CMOS bytes of the IBM PC/AT map QEMU fills for its first hard disk and SeaBIOS reads:
/// the drive types (0x12: drive 0 is type 15, "see 0x19"), drive 0's extended type (47, user
/// defined) and its parameters from 0x1B, the CHS translation (0x39), and the boot order
/// (0x3D, 0x38: hard disk, floppy, CD-ROM, as QEMU's default "cad").
const CMOS_HD_TYPES: usize = 0x12;
const CMOS_HD0_EXTENDED_TYPE: usize = 0x19;
const CMOS_HD0_PARAMETERS: usize = 0x1b;
const CMOS_DISK_TRANSLATION: usize = 0x39;
const CMOS_BOOT_ORDER_1_2: usize = 0x3d;
const CMOS_BOOT_ORDER_3: usize = 0x38;

/// Give the machine an IDE controller on the primary channel (0x1F0-0x1F7, 0x3F6, IRQ 14) with
/// `disk` as master, with the geometry and translation QEMU would give it, recorded in CMOS
/// for the BIOS.
pub fn attach_disk(
    buses: &mut Buses,
    devices: &mut PcDevices,
    mut disk: Box<dyn BlockBackend>,
) -> Result<(), PcError> {
    let mut mbr = [0u8; SECTOR_SIZE];
    disk.read_sectors(0, &mut mbr).map_err(PcError::DiskRead)?;
    let (g, translation) = guess_geometry(disk.sectors(), &mbr);
    {
        let mut cmos = lock(&devices.cmos);
        let mut s = cmos.state();
        let r = &mut s.ram;
        r[CMOS_HD_TYPES] = 0xf0;
        r[CMOS_HD0_EXTENDED_TYPE] = 47;
        let p = &mut r[CMOS_HD0_PARAMETERS..CMOS_HD0_PARAMETERS + 9];
        let [cyl_lo, cyl_hi] = g.cylinders.to_le_bytes();
        p.copy_from_slice(&[
            cyl_lo,
            cyl_hi,
            g.heads,
            0xff, // write precompensation: none
            0xff,
            0xc0 | (u8::from(g.heads > 8) << 3), // control byte
            cyl_lo,                              // landing zone
            cyl_hi,
            g.sectors_per_track,
        ]);
        r[CMOS_DISK_TRANSLATION] = translation as u8;
        r[CMOS_BOOT_ORDER_1_2] = 0x12;
        r[CMOS_BOOT_ORDER_3] = 0x30;
        cmos.set_state(s);
    }
    // IRQ 14 goes to the 8259A and the I/O APIC, like every ISA line.
    let irq = PcInterrupts::new(
        devices.pic.clone(),
        devices.ioapic.clone(),
        devices.lapic.clone(),
    )
    .isa_line(ATA_PRIMARY_IRQ);
    let ata = Arc::new(Mutex::new(Ata::new(disk, g, irq)));
    buses.io.insert(
        u64::from(ATA_PRIMARY_COMMAND_PORT),
        ATA_COMMAND_BLOCK_LEN,
        Box::new(SharedDevice::new(ata.clone(), 0)),
    )?;
    buses.io.insert(
        u64::from(ATA_PRIMARY_CONTROL_PORT),
        1,
        Box::new(SharedDevice::new(ata.clone(), CONTROL_OFFSET)),
    )?;
    devices.ata = Some(ata);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_ports_answer() {
        let (mut b, _) =
            build_buses(Box::new(std::io::sink()), SerialInput::new(), 64 << 20, 0).unwrap();
        let mut v = [0u8; 1];
        // CMOS: extended memory above 16 MiB in 64 KiB blocks: (64 - 16) MiB = 0x300 blocks.
        b.io_write(CMOS_PORT, &[0x35]);
        b.io_read(CMOS_PORT + 1, &mut v);
        assert_eq!(v[0], 0x03);
        // i8042 self test.
        b.io_write(COMMAND_PORT, &[0xaa]);
        b.io_read(DATA_PORT, &mut v);
        assert_eq!(v[0], 0x55);
        // A20 through port 0x92 is visible on the shared gate.
        b.io_write(PORT_A, &[0]);
        assert!(!b.a20.enabled());
        // A reset through 0xCF9 is a platform request.
        assert!(b.io_write(devices::reset::RESET_CONTROL_PORT, &[0x06]));
        assert_eq!(b.take_request(), Some(devices::PlatformRequest::Reset));
    }

    #[test]
    fn a_disk_sets_cmos_and_its_state_must_meet_the_same_disk() {
        use devices::disk::MemDisk;
        let build = |sectors: Option<usize>| {
            let (mut b, mut d) =
                build_buses(Box::new(std::io::sink()), SerialInput::new(), 64 << 20, 0).unwrap();
            if let Some(n) = sectors {
                attach_disk(&mut b, &mut d, Box::new(MemDisk(vec![0; n * SECTOR_SIZE]))).unwrap();
            }
            (b, d)
        };
        let (mut b, d) = build(Some(4096));
        let mut v = [0u8; 1];
        for (reg, want) in [(0x12, 0xf0), (0x19, 47), (0x1b, 4), (0x1d, 16), (0x23, 63)] {
            b.io_write(CMOS_PORT, &[reg]);
            b.io_read(CMOS_PORT + 1, &mut v);
            assert_eq!(v[0], want, "CMOS {reg:#x}");
        }
        b.io_read(ATA_PRIMARY_COMMAND_PORT + 7, &mut v);
        assert_eq!(v[0], 0x50, "the disk is ready");
        b.io_write(ATA_PRIMARY_COMMAND_PORT + 7, &[0xec]); // IDENTIFY
        let saved = d.save();
        assert!(saved.iter().any(|(n, _)| n == DEV_ATA));
        assert!(matches!(
            build(None).1.restore(&saved),
            Err(PcError::DiskMissing)
        ));
        assert!(matches!(
            build(Some(8)).1.restore(&saved),
            Err(PcError::DiskSize {
                snapshot: 4096,
                given: 8
            })
        ));
        let (mut b2, d2) = build(Some(4096));
        d2.restore(&saved).unwrap();
        let mut w = [0u8; 2];
        b2.io_read(ATA_PRIMARY_COMMAND_PORT, &mut w);
        assert_eq!(w, [0x40, 0x00], "IDENTIFY word 0 continues after restore");
        // A reset ends the transfer.
        d2.reset();
        b2.io_read(ATA_PRIMARY_COMMAND_PORT + 7, &mut v);
        assert_eq!(v[0], 0x50);
    }

    #[test]
    fn bios_is_mapped_twice() {
        let mut bios = vec![0u8; 64 << 10];
        bios[0xfff0] = 0xea;
        let ram = build_memory(16 << 20, &bios).unwrap();
        let mut b = [0u8; 1];
        ram.read(0xffff_fff0, &mut b).unwrap();
        assert_eq!(b, [0xea]);
        ram.read(0xffff0, &mut b).unwrap();
        assert_eq!(b, [0xea]);
        // The VGA window is a hole; the rest below 1 MiB is RAM.
        assert!(ram.host_ptr(0xb8000).is_none());
        assert_eq!(ram.region_of(0xe0000).unwrap().kind, RegionKind::Ram);
        // The ISA alias is writable (shadow RAM, as on QEMU's isapc); the copy at 4 GiB is not.
        assert_eq!(ram.region_of(0xf0000).unwrap().kind, RegionKind::Ram);
        assert_eq!(ram.region_of(0xffff_0000).unwrap().kind, RegionKind::Rom);
        assert_eq!(ram.ram_bytes(), 16 * 1024 * 1024 - 128 * 1024);
    }

    #[test]
    fn large_memory_goes_above_4g_and_tiny_is_refused() {
        let l = memory_layout(4 << 30, 1 << 20).unwrap();
        assert!(l
            .iter()
            .any(|r| r.base == FOUR_GIB && r.size == (4 << 30) - LOW_RAM_TOP));
        assert!(matches!(
            memory_layout(1 << 20, 0),
            Err(PcError::MemoryTooSmall(_))
        ));
    }

    #[test]
    fn device_states_move_to_a_new_machine_and_bad_ones_change_nothing() {
        let (mut a, da) =
            build_buses(Box::new(std::io::sink()), SerialInput::new(), 64 << 20, 0).unwrap();
        // Program a few devices the way a guest would.
        a.io_write(MASTER_PORT + 1, &[0xfc]); // PIC mask
        a.io_write(PIT_PORT + 3, &[0x34]); // PIT channel 0, mode 2
        a.io_write(PIT_PORT, &[0x9c]);
        a.io_write(PIT_PORT, &[0x2e]);
        a.io_write(CMOS_PORT, &[0x0e]);
        a.io_write(CMOS_PORT + 1, &[0x77]); // a CMOS RAM byte
        a.io_write(COM1_PORT + 7, &[0x42]); // UART scratch register
        a.io_write(PORT_A, &[0]); // A20 off
        let saved = da.save();

        let (mut b, db) =
            build_buses(Box::new(std::io::sink()), SerialInput::new(), 64 << 20, 0).unwrap();
        let clock_ns = PcDevices::saved_clock_ns(&saved).unwrap();
        assert!(clock_ns > 0);
        db.restore(&saved).unwrap();
        assert_eq!(
            db.save()[1..],
            saved[1..],
            "every device but the clock is identical"
        );
        let mut v = [0u8; 1];
        b.io_read(MASTER_PORT + 1, &mut v);
        assert_eq!(v, [0xfc]);
        b.io_write(CMOS_PORT, &[0x0e]);
        b.io_read(CMOS_PORT + 1, &mut v);
        assert_eq!(v, [0x77]);
        b.io_read(COM1_PORT + 7, &mut v);
        assert_eq!(v, [0x42]);
        assert!(!b.a20.enabled());

        // Missing, unknown, duplicated or corrupt entries are refused before anything changes.
        let (_, fresh) =
            build_buses(Box::new(std::io::sink()), SerialInput::new(), 64 << 20, 0).unwrap();
        let before = fresh.save();
        let mut missing = saved.clone();
        missing.retain(|(n, _)| n != DEV_PIT);
        assert!(matches!(
            fresh.restore(&missing),
            Err(PcError::MissingDevice(DEV_PIT))
        ));
        let mut unknown = saved.clone();
        unknown.push(("hpet".into(), vec![]));
        assert!(matches!(
            fresh.restore(&unknown),
            Err(PcError::UnknownDevice(_))
        ));
        let mut twice = saved.clone();
        twice.push(saved[2].clone());
        assert!(matches!(
            fresh.restore(&twice),
            Err(PcError::DuplicateDevice(_))
        ));
        let mut corrupt = saved.clone();
        let pit = corrupt.iter_mut().find(|(n, _)| n == DEV_PIT).unwrap();
        pit.1.truncate(7);
        assert!(matches!(
            fresh.restore(&corrupt),
            Err(PcError::DeviceState(DEV_PIT, _))
        ));
        assert_eq!(
            fresh.save()[1..],
            before[1..],
            "a refused restore changed a device"
        );
    }
}
