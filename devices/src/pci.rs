//! The PCI host bridge of emu's PC: configuration mechanism #1 at ports 0xCF8/0xCFC (PCI Local
//! Bus 3.0 3.2.2.3.2) in front of bus 0, which holds the functions of an i440FX/PIIX3 board
//! as QEMU's `pc` machine has them: the host bridge (00:00.0, 8086:1237), the PIIX3 ISA bridge
//! (00:01.0, 8086:7000) and the PIIX3 IDE function (00:01.1, 8086:7010) in legacy mode, which
//! is how firmware and kernels find the primary channel at 0x1F0/0x3F6, IRQ 14
//! (devices::ata). The IDE function has no bus-master BAR: emu's ATA controller does PIO only,
//! and a guest that sees no BAR 4 does not try DMA.
//!
//! Port 0xCF9 lies inside the CONFIG_ADDRESS dword but is the PIIX3's Reset Control Register
//! when accessed as a byte (82371SB datasheet 2.6.1), so this device forwards byte accesses
//! there to [`ResetControl`]. Only the registers guests program are writable (the command
//! register, the interrupt line, the i440FX PAM/SMRAM bytes, the PIIX3 IRQ routing and the
//! IDE timing registers); they and the address latch make up the snapshot state.

use crate::bus::BusDevice;
use crate::reset::ResetControl;
use crate::state::{StateError, StateReader, StateWriter};

/// CONFIG_ADDRESS (dword at 0xCF8) and CONFIG_DATA (0xCFC-0xCFF).
pub const PCI_CONFIG_ADDRESS_PORT: u16 = 0xcf8;
/// The ports this device decodes: 0xCF8-0xCFF.
pub const PCI_CONFIG_PORTS_LEN: u64 = 8;
/// CONFIG_ADDRESS bit 31: the next CONFIG_DATA access is a configuration cycle.
const CONFIG_ENABLE: u32 = 1 << 31;
/// Offset of port 0xCF9 (the Reset Control Register) within the device.
const RESET_CONTROL_OFFSET: u64 = 1;
/// Offset of CONFIG_DATA within the device.
const CONFIG_DATA_OFFSET: u64 = 4;

/// Configuration-space header offsets (PCI Local Bus 3.0 6.1).
const VENDOR_ID: usize = 0x00;
const COMMAND: usize = 0x04;
const REVISION_ID: usize = 0x08;
const HEADER_TYPE: usize = 0x0e;
const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
const INTERRUPT_LINE: usize = 0x3c;
/// Header type bit 7: the device has more than one function.
const MULTI_FUNCTION: u8 = 0x80;

/// One PCI function: 256 bytes of configuration space and which bits the guest may change.
#[derive(Clone)]
struct Function {
    device: u8,
    function: u8,
    config: [u8; 256],
    writable: [u8; 256],
}

impl Function {
    /// A function with `vendor:device`, `class` (class, subclass, prog-if), `revision`.
    fn new(dev: u8, func: u8, id: (u16, u16), class: u32, revision: u8, header: u8) -> Self {
        let mut config = [0u8; 256];
        config[VENDOR_ID..VENDOR_ID + 2].copy_from_slice(&id.0.to_le_bytes());
        config[VENDOR_ID + 2..VENDOR_ID + 4].copy_from_slice(&id.1.to_le_bytes());
        config[REVISION_ID] = revision;
        config[REVISION_ID + 1..REVISION_ID + 4].copy_from_slice(&class.to_le_bytes()[..3]);
        config[HEADER_TYPE] = header;
        // QEMU's subsystem IDs (Red Hat, QEMU) so guests recognise the board as QEMU's.
        config[SUBSYSTEM_VENDOR_ID..SUBSYSTEM_VENDOR_ID + 2]
            .copy_from_slice(&0x1af4u16.to_le_bytes());
        config[SUBSYSTEM_VENDOR_ID + 2..SUBSYSTEM_VENDOR_ID + 4]
            .copy_from_slice(&0x1100u16.to_le_bytes());
        let mut writable = [0u8; 256];
        // Command: I/O space, memory space, bus master, and the interrupt line register.
        writable[COMMAND] = 0x07;
        writable[INTERRUPT_LINE] = 0xff;
        Self {
            device: dev,
            function: func,
            config,
            writable,
        }
    }

    fn writable_range(mut self, range: std::ops::Range<usize>) -> Self {
        self.writable[range].fill(0xff);
        self
    }
}

/// The board's functions at power-on.
fn board() -> Vec<Function> {
    let mut ide = Function::new(1, 1, (0x8086, 0x7010), 0x01_01_00, 0, 0)
        // IDETIM primary/secondary, SIDETIM (82371SB 2.4.5-2.4.6).
        .writable_range(0x40..0x45);
    // Legacy mode: both channels at their ISA addresses; the command register starts with
    // I/O decoding on, as firmware leaves it.
    ide.config[COMMAND] = 0x01;
    // The interrupt line reads 14, the legacy primary channel's IRQ.
    ide.config[INTERRUPT_LINE] = 14;
    vec![
        // The i440FX host bridge; PAM0-6 and SMRAM (0x59-0x60, 0x72) are plain registers here:
        // the BIOS area is RAM whatever they say.
        Function::new(0, 0, (0x8086, 0x1237), 0x06_00_00, 2, 0)
            .writable_range(0x59..0x60)
            .writable_range(0x72..0x73),
        // The PIIX3 ISA bridge: PIRQ route control (0x60-0x63), TOM (0x69), XBCS (0x4e).
        Function::new(1, 0, (0x8086, 0x7000), 0x06_01_00, 0, MULTI_FUNCTION)
            .writable_range(0x4e..0x50)
            .writable_range(0x60..0x64)
            .writable_range(0x69..0x6a),
        ide,
    ]
}

/// Configuration mechanism #1 and bus 0 (see the module header).
pub struct PciHost {
    address: u32,
    functions: Vec<Function>,
    reset_control: ResetControl,
}

/// The host bridge's state, for snapshots: the address latch and every function's space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciState {
    pub address: u32,
    pub configs: Vec<[u8; 256]>,
}

/// Layout version of [`PciState::to_bytes`].
const PCI_STATE_VERSION: u8 = 1;

impl PciState {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = StateWriter::new(PCI_STATE_VERSION);
        w.u32(self.address).u32(self.configs.len() as u32);
        for c in &self.configs {
            w.bytes(c);
        }
        w.finish()
    }

    pub fn from_bytes(blob: &[u8]) -> Result<Self, StateError> {
        let mut r = StateReader::new(blob, "pci", PCI_STATE_VERSION)?;
        let address = r.u32()?;
        let n = r.u32()? as usize;
        let mut configs = Vec::new();
        for _ in 0..n.min(256) {
            let b = r.bytes()?;
            configs.push(<[u8; 256]>::try_from(b).map_err(|_| StateError::Invalid {
                device: "pci",
                what: "configuration space is not 256 bytes".into(),
            })?);
        }
        r.finish()?;
        Ok(Self { address, configs })
    }
}

impl PciHost {
    pub fn new(reset_control: ResetControl) -> Self {
        Self {
            address: 0,
            functions: board(),
            reset_control,
        }
    }

    pub fn state(&self) -> PciState {
        PciState {
            address: self.address,
            configs: self.functions.iter().map(|f| f.config).collect(),
        }
    }

    /// Whether `s` fits this board (the same set of functions), without loading it.
    pub fn check_state(&self, s: &PciState) -> Result<(), StateError> {
        if s.configs.len() != self.functions.len() {
            return Err(StateError::Invalid {
                device: "pci",
                what: "a different number of PCI functions".into(),
            });
        }
        Ok(())
    }

    /// Load `s`; refused (nothing changed) when it describes a different set of functions.
    pub fn set_state(&mut self, s: &PciState) -> Result<(), StateError> {
        self.check_state(s)?;
        self.address = s.address;
        for (f, c) in self.functions.iter_mut().zip(&s.configs) {
            f.config = *c;
        }
        Ok(())
    }

    /// Back to power-on values.
    pub fn reset(&mut self) {
        self.address = 0;
        self.functions = board();
    }

    /// The function CONFIG_ADDRESS selects, and the dword-aligned register offset.
    fn selected(&mut self) -> Option<(&mut Function, usize)> {
        let a = self.address;
        if a & CONFIG_ENABLE == 0 || (a >> 16) & 0xff != 0 {
            return None;
        }
        let dev = ((a >> 11) & 0x1f) as u8;
        let func = ((a >> 8) & 7) as u8;
        let reg = (a & 0xfc) as usize;
        self.functions
            .iter_mut()
            .find(|f| f.device == dev && f.function == func)
            .map(|f| (f, reg))
    }
}

impl BusDevice for PciHost {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        match (offset, data.len()) {
            (0, 4) => data.copy_from_slice(&self.address.to_le_bytes()),
            (RESET_CONTROL_OFFSET, 1) => self.reset_control.read(0, data),
            (o, _) if o >= CONFIG_DATA_OFFSET => {
                let byte = (o - CONFIG_DATA_OFFSET) as usize;
                // No function there: all ones, as a master abort reads.
                if let Some((f, reg)) = self.selected() {
                    for (i, b) in data.iter_mut().enumerate() {
                        *b = f.config.get(reg + byte + i).copied().unwrap_or(0xff);
                    }
                }
            }
            _ => {}
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (0, 4) => {
                let v = u32::from_le_bytes(data.try_into().expect("4 bytes"));
                // Bits 1:0 are reserved and read as 0.
                self.address = v & !3 & !(0x7f << 24);
            }
            (RESET_CONTROL_OFFSET, 1) => self.reset_control.write(0, data),
            (o, _) if o >= CONFIG_DATA_OFFSET => {
                let byte = (o - CONFIG_DATA_OFFSET) as usize;
                if let Some((f, reg)) = self.selected() {
                    for (i, b) in data.iter().enumerate() {
                        let at = reg + byte + i;
                        if at < 256 {
                            let m = f.writable[at];
                            f.config[at] = (f.config[at] & !m) | (b & m);
                        }
                    }
                }
            }
            _ => log::debug!("PCI: {}-byte write at 0xCF8+{offset} ignored", data.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{PlatformRequest, Requests};

    fn select(p: &mut PciHost, dev: u32, func: u32, reg: u32) {
        p.write(
            0,
            &(CONFIG_ENABLE | dev << 11 | func << 8 | reg).to_le_bytes(),
        );
    }

    fn read32(p: &mut PciHost) -> u32 {
        let mut d = [0u8; 4];
        p.read(CONFIG_DATA_OFFSET, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn bus_zero_holds_the_i440fx_and_piix3_functions() {
        let mut p = PciHost::new(ResetControl::new(Requests::new()));
        select(&mut p, 0, 0, 0);
        assert_eq!(read32(&mut p), 0x1237_8086);
        select(&mut p, 1, 0, 0x0c);
        assert_eq!(read32(&mut p) >> 16 & 0xff, 0x80, "multi-function");
        select(&mut p, 1, 1, 0x08);
        assert_eq!(
            read32(&mut p) >> 8,
            0x01_01_00,
            "IDE, legacy mode, no bus master"
        );
        select(&mut p, 1, 1, 0x20);
        assert_eq!(read32(&mut p), 0, "no BAR 4");
        // Absent functions and other buses read all ones; so does a disabled address.
        select(&mut p, 2, 0, 0);
        assert_eq!(read32(&mut p), 0xffff_ffff);
        p.write(0, &(CONFIG_ENABLE | 1 << 16).to_le_bytes());
        assert_eq!(read32(&mut p), 0xffff_ffff);
        p.write(0, &0u32.to_le_bytes());
        assert_eq!(read32(&mut p), 0xffff_ffff);
        // The address latch reads back without its reserved bits.
        p.write(0, &0x8000_0803u32.to_le_bytes());
        let mut a = [0u8; 4];
        p.read(0, &mut a);
        assert_eq!(u32::from_le_bytes(a), 0x8000_0800);
    }

    #[test]
    fn only_programmable_registers_change_and_state_round_trips() {
        let mut p = PciHost::new(ResetControl::new(Requests::new()));
        select(&mut p, 0, 0, 0);
        p.write(CONFIG_DATA_OFFSET, &0xdead_beefu32.to_le_bytes());
        assert_eq!(read32(&mut p), 0x1237_8086, "IDs are read-only");
        // PAM1 at 0x5a, written as a byte through CONFIG_DATA + 2.
        select(&mut p, 0, 0, 0x58);
        p.write(CONFIG_DATA_OFFSET + 2, &[0x33]);
        assert_eq!(read32(&mut p) >> 16 & 0xff, 0x33);
        let saved = p.state().to_bytes();
        let mut q = PciHost::new(ResetControl::new(Requests::new()));
        q.set_state(&PciState::from_bytes(&saved).unwrap()).unwrap();
        assert_eq!(q.state(), p.state());
        assert!(PciState::from_bytes(&saved[..saved.len() - 3]).is_err());
        p.reset();
        select(&mut p, 0, 0, 0x58);
        assert_eq!(read32(&mut p) >> 16 & 0xff, 0);
    }

    #[test]
    fn a_byte_write_to_0xcf9_is_the_reset_control_register() {
        let req = Requests::new();
        let mut p = PciHost::new(ResetControl::new(req.clone()));
        p.write(RESET_CONTROL_OFFSET, &[0x06]);
        assert_eq!(req.take(), Some(PlatformRequest::Reset));
        // A dword write to 0xCF8 whose second byte has bit 2 set is not a reset.
        p.write(0, &0x8000_0600u32.to_le_bytes());
        assert_eq!(req.take(), None);
    }
}
