//! The PC platform emu builds: where RAM, the legacy holes and the BIOS sit in guest-physical
//! space, and which devices sit on which ports.
//!
//! Memory map (as QEMU's `pc` machine lays it out for `-bios`):
//! - RAM from 0 to 0xA0000 (640 KiB of conventional memory);
//! - 0xA0000..0xC0000: the VGA window, a hole (MMIO bus);
//! - 0xC0000 up to the low BIOS alias: RAM (option ROM and upper memory area);
//! - the last min(size, 128 KiB) of the BIOS image just below 1 MiB (the ISA BIOS alias);
//! - RAM from 1 MiB up to the memory size, at most up to 3.5 GiB; the rest above 4 GiB;
//! - the whole BIOS image ending at 4 GiB (the reset vector is at 0xFFFFFFF0).

use std::io::Write;
use std::sync::{Arc, Mutex};

use devices::clock::{Clock, HostClock};
use devices::cmos::{Cmos, CMOS_PORT};
use devices::debug::{DEBUGCON_PORT, DEBUG_EXIT_LEN, DEBUG_EXIT_PORT, PM1A_CNT_PORT, POST_PORT};
use devices::i8042::{COMMAND_PORT, DATA_PORT, I8042};
use devices::pic::{Pic, ELCR_PORT, MASTER_PORT, SLAVE_PORT};
use devices::pit::{Pit, PitIrq0, PIT_PORT, PORT_B, PORT_B_OFFSET};
use devices::reset::{PortA, ResetControl, PORT_A, RESET_CONTROL_PORT};
use devices::serial::{COM1_PORT, UART_LEN};
use devices::{
    BusError, Buses, DebugCon, DebugExit, OutputSink, PmControl, PostPort, Serial, SerialInput,
    SharedDevice,
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
}

/// The guest-physical regions for `memory` bytes of RAM and a BIOS image of `bios_len` bytes.
pub fn memory_layout(memory: u64, bios_len: u64) -> Result<Vec<RegionSpec>, PcError> {
    if memory < MIN_MEMORY {
        return Err(PcError::MemoryTooSmall(memory));
    }
    if !memory.is_multiple_of(4096) {
        return Err(PcError::MemoryUnaligned(memory));
    }
    let isa_bios = bios_len.min(ISA_BIOS_MAX);
    let ram = |base, end: u64| RegionSpec {
        base,
        size: end - base,
        kind: RegionKind::Ram,
    };
    let mut regions = vec![ram(0, VGA_START)];
    let isa_bios_start = HIGH_MEMORY - isa_bios;
    if isa_bios_start > VGA_END {
        regions.push(ram(VGA_END, isa_bios_start));
    }
    if isa_bios > 0 {
        regions.push(RegionSpec {
            base: isa_bios_start,
            size: isa_bios,
            kind: RegionKind::Rom,
        });
    }
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

/// One output sink shared by several devices (debug console and UART both print to the
/// terminal, in the order the guest wrote).
#[derive(Clone)]
pub struct SharedSink(Arc<Mutex<OutputSink>>);

impl SharedSink {
    pub fn new(out: OutputSink) -> Self {
        Self(Arc::new(Mutex::new(out)))
    }
}

impl Write for SharedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// The legacy devices every emu PC has: debug console (0xE9), debug exit (0xF4), POST (0x80),
/// COM1 (0x3F8), the ACPI PM1a control register (0x604), the 8259A pair (0x20, 0xA0, ELCR
/// 0x4D0), the 8254 PIT with port B (0x40-0x43, 0x61), the RTC/CMOS (0x70), the i8042 keyboard
/// controller (0x60, 0x64), System Control Port A (0x92) and the reset control register (0xCF9).
///
/// The PIC is the interrupt controller the CPU samples; PIT channel 0 drives its IRQ 0.
pub fn build_buses(
    out: OutputSink,
    serial_input: SerialInput,
    memory: u64,
) -> Result<Buses, PcError> {
    let mut buses = Buses::new();
    let sink = SharedSink::new(out);
    let requests = buses.requests();
    buses.io.insert(
        u64::from(DEBUGCON_PORT),
        1,
        Box::new(DebugCon::new(Box::new(sink.clone()))),
    )?;
    buses.io.insert(
        u64::from(DEBUG_EXIT_PORT),
        DEBUG_EXIT_LEN,
        Box::new(DebugExit::new(requests.clone())),
    )?;
    buses
        .io
        .insert(u64::from(POST_PORT), 1, Box::new(PostPort::default()))?;
    buses.io.insert(
        u64::from(COM1_PORT),
        UART_LEN,
        Box::new(Serial::new(Box::new(sink), serial_input)),
    )?;
    buses.io.insert(
        u64::from(PM1A_CNT_PORT),
        2,
        Box::new(PmControl::new(requests.clone())),
    )?;

    let pic = Arc::new(Mutex::new(Pic::new()));
    for (port, len) in [(MASTER_PORT, 2), (SLAVE_PORT, 2), (ELCR_PORT, 2)] {
        let bias = u64::from(port - MASTER_PORT);
        buses.io.insert(
            u64::from(port),
            len,
            Box::new(SharedDevice::new(pic.clone(), bias)),
        )?;
    }
    let clock: Arc<dyn Clock> = Arc::new(HostClock::default());
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
    buses.set_interrupt_controller(pic.clone());
    buses.add_timer(Box::new(PitIrq0 { pit, pic }));
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut cmos = Cmos::new(clock, unix_now);
    let below_4g = memory.min(LOW_RAM_TOP);
    cmos.set_memory_size(below_4g, memory - below_4g);
    buses.io.insert(u64::from(CMOS_PORT), 2, Box::new(cmos))?;
    let kbc = Arc::new(Mutex::new(I8042::new(buses.a20.clone(), requests.clone())));
    buses.io.insert(
        u64::from(DATA_PORT),
        1,
        Box::new(SharedDevice::new(kbc.clone(), 0)),
    )?;
    buses.io.insert(
        u64::from(COMMAND_PORT),
        1,
        Box::new(SharedDevice::new(kbc, u64::from(COMMAND_PORT - DATA_PORT))),
    )?;
    buses.io.insert(
        u64::from(PORT_A),
        1,
        Box::new(PortA::new(buses.a20.clone(), requests.clone())),
    )?;
    buses.io.insert(
        u64::from(RESET_CONTROL_PORT),
        1,
        Box::new(ResetControl::new(requests)),
    )?;
    Ok(buses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_ports_answer() {
        let mut b = build_buses(Box::new(std::io::sink()), SerialInput::new(), 64 << 20).unwrap();
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
        assert!(b.io_write(RESET_CONTROL_PORT, &[0x06]));
        assert_eq!(b.take_request(), Some(devices::PlatformRequest::Reset));
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
        assert_eq!(ram.ram_bytes(), 16 * 1024 * 1024 - 128 * 1024 - 64 * 1024);
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
}
