//! ACPI tables for directly booted kernels, which have no firmware to provide them: an RSDP,
//! an XSDT, a FADT describing the PM1 registers emu emulates (so the kernel's ACPI poweroff
//! reaches the PM1a control register and ends the run), a FACS, and a DSDT whose only object is
//! the `\_S5` sleep package that poweroff needs, and a MADT describing the interrupt
//! controllers (devices::interrupts): the one CPU's local APIC, the I/O APIC at 0xFEC00000
//! with GSIs 0-23, the PC's interrupt source overrides (ISA IRQ 0 is GSI 2; the SCI, IRQ 9, is
//! level-triggered, active high, as QEMU describes it), LINT1 as NMI, and PCAT_COMPAT for the
//! 8259A pair. References: ACPI Specification 6.5, sections 5.2.5 (RSDP), 5.2.6 (headers),
//! 5.2.8 (XSDT), 5.2.9 (FADT), 5.2.10 (FACS), 5.2.11.1 (DSDT), 5.2.12 (MADT), 7.4.2 (\_Sx
//! objects), 20 (AML encoding).

use vcpu::GuestRam;

/// Linux and other OSes look for the RSDP on 16-byte boundaries in 0xE0000-0xFFFFF (5.2.5.1).
pub const RSDP_ADDR: u64 = 0xe_0000;
/// The tables follow the RSDP in the same reserved area (the e820 map marks 0xA0000-0xFFFFF
/// reserved).
const TABLES_ADDR: u64 = 0xe_0040;

/// The PM1 register blocks (devices::debug::Pm1).
pub const PM1A_EVT_BLK: u16 = devices::debug::PM1A_EVT_PORT;
pub const PM1A_CNT_BLK: u16 = devices::debug::PM1A_CNT_PORT;
/// The ACPI PM timer (devices::pm_timer), 24 bits wide (FADT TMR_VAL_EXT clear).
pub const PM_TMR_BLK: u16 = devices::pm_timer::PM_TMR_PORT;
/// ISA IRQ of the SCI (never raised: emu has no ACPI events yet).
const SCI_IRQ: u16 = 9;
/// CMOS index of the century byte.
const RTC_CENTURY: u8 = 0x32;
/// The Reset Control Register, as the FADT's RESET_REG (5.2.9, Table 5.34), and the value that
/// resets (RST_CPU | SYS_RST).
const RESET_PORT: u64 = 0xcf9;
const RESET_VALUE: u8 = 0x06;

const OEM_ID: &[u8; 6] = b"EMU   ";
const OEM_TABLE_ID: &[u8; 8] = b"EMUPC   ";
const CREATOR_ID: &[u8; 4] = b"EMU ";

/// MADT (5.2.12): the local APIC address, flags (Table 5.44: PCAT_COMPAT, the system also has
/// 8259A PICs), and the interrupt controller structure types used (Table 5.45).
const LOCAL_APIC_ADDR: u32 = devices::lapic::DEFAULT_BASE as u32;
const IO_APIC_ADDR: u32 = devices::ioapic::IOAPIC_BASE as u32;
const MADT_PCAT_COMPAT: u32 = 1 << 0;
const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
const MADT_LOCAL_APIC_NMI: u8 = 4;
/// Local APIC flags (Table 5.47): enabled.
const LOCAL_APIC_ENABLED: u32 = 1;
/// MPS INTI flags (Table 5.50): polarity bits 1:0 (01 active high), trigger mode bits 3:2
/// (11 level); 0 means "conforms to the bus" (ISA: edge, active high).
const MPS_INTI_CONFORMING: u16 = 0;
const MPS_INTI_ACTIVE_HIGH_LEVEL: u16 = 0b1101;
/// The ACPI processor UID that means "all processors" in a Local APIC NMI structure.
const ALL_PROCESSORS: u8 = 0xff;

/// The MADT body after the header.
fn madt_body() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&LOCAL_APIC_ADDR.to_le_bytes());
    b.extend_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    // Processor Local APIC (5.2.12.2): UID 0, APIC ID 0, enabled.
    b.extend_from_slice(&[MADT_LOCAL_APIC, 8, 0, 0]);
    b.extend_from_slice(&LOCAL_APIC_ENABLED.to_le_bytes());
    // I/O APIC (5.2.12.3): ID 0, GSIs from 0.
    b.extend_from_slice(&[MADT_IO_APIC, 12, 0, 0]);
    b.extend_from_slice(&IO_APIC_ADDR.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    // Interrupt Source Overrides (5.2.12.5), bus 0 = ISA.
    for (irq, flags) in [
        (0u8, MPS_INTI_CONFORMING),
        (SCI_IRQ as u8, MPS_INTI_ACTIVE_HIGH_LEVEL),
    ] {
        b.extend_from_slice(&[MADT_INTERRUPT_SOURCE_OVERRIDE, 10, 0, irq]);
        let gsi = devices::interrupts::isa_irq_to_gsi(irq) as u32;
        b.extend_from_slice(&gsi.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
    }
    // Local APIC NMI (5.2.12.7): LINT1 of every processor.
    b.extend_from_slice(&[MADT_LOCAL_APIC_NMI, 6, ALL_PROCESSORS, 0, 0, 1]);
    b
}

/// FADT flags (Table 5.35): WBINVD works, C1 supported, no power/sleep button control
/// methods, RESET_REG supported.
const FADT_WBINVD: u32 = 1 << 0;
const FADT_PROC_C1: u32 = 1 << 2;
const FADT_PWR_BUTTON: u32 = 1 << 4;
const FADT_SLP_BUTTON: u32 = 1 << 5;
const FADT_RESET_REG_SUP: u32 = 1 << 10;
/// IA-PC boot architecture flags (Table 5.36): legacy devices, an 8042.
const IAPC_LEGACY_DEVICES: u16 = 1 << 0;
const IAPC_8042: u16 = 1 << 1;
/// Generic Address Structure address space: system I/O (5.2.3.2).
const GAS_SYSTEM_IO: u8 = 1;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

/// A system description table: the 36-byte header (5.2.6) followed by `body`, checksummed.
fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(36 + body.len());
    t.extend_from_slice(signature);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum, below
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(CREATOR_ID);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    t[9] = checksum(&t);
    t
}

/// A Generic Address Structure for an I/O port block.
fn gas_io(port: u64, bits: u8) -> [u8; 12] {
    let mut g = [0u8; 12];
    if port != 0 {
        g[0] = GAS_SYSTEM_IO;
        g[1] = bits;
        g[3] = (bits / 8).trailing_zeros() as u8 + 1; // access size: 1 byte, 2 word, 3 dword
        g[4..12].copy_from_slice(&port.to_le_bytes());
    }
    g
}

/// The start of the DSDT's AML: `Name (_S5, Package (4) { 0, 0, 0, 0 })` (sleep type 0 for S5,
/// the value devices::debug::Pm1 treats as poweroff). NameOp 0x08, PackageOp 0x12 with
/// PkgLength 6 and 4 elements, each ZeroOp.
const DSDT_S5_AML: &[u8] = &[
    0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
];

/// AML opcodes and prefixes used below (ACPI 6.5 20.2).
const AML_NAME_OP: u8 = 0x08;
const AML_SCOPE_OP: u8 = 0x10;
const AML_BUFFER_OP: u8 = 0x11;
const AML_ZERO_OP: u8 = 0x00;
const AML_WORD_PREFIX: u8 = 0x0b;
const AML_DWORD_PREFIX: u8 = 0x0c;
const AML_EXT_OP_PREFIX: u8 = 0x5b;
const AML_DEVICE_OP: u8 = 0x82;
/// EISAID("PNP0A03"), a PCI host bridge.
const EISAID_PNP0A03: u32 = 0x030a_d041;

/// `op` (one or two bytes), a PkgLength covering itself and `body`, then `body` (20.2.4).
fn aml_package(op: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = op.to_vec();
    let n = body.len() + 1;
    if n < 0x40 {
        v.push(n as u8);
    } else {
        let n = body.len() + 2;
        assert!(n < 0x1000, "AML package too large");
        v.push(0x40 | (n & 0xf) as u8);
        v.push((n >> 4) as u8);
    }
    v.extend_from_slice(body);
    v
}

/// A Word Address Space Descriptor (6.4.3.5.3), a producer with fixed bounds.
fn word_address_space(kind: u8, type_flags: u8, min: u16, max: u16) -> Vec<u8> {
    let mut d = vec![0x88, 13, 0, kind, 0x0c, type_flags];
    for v in [0, min, max, 0, max - min + 1] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    d
}

/// The DSDT's AML: `_S5` and `\_SB.PCI0`, the PCI host bridge (devices::pci) with its _CRS:
/// bus 0-255, the configuration ports 0xCF8-0xCFF, the I/O windows around them, the VGA hole
/// and the 32-bit window from the end of RAM below 4 GiB (`ram_end`) up to the I/O APIC.
/// Linux enumerates PCI buses only through such an object once it uses ACPI.
fn dsdt_aml(ram_end: u64) -> Vec<u8> {
    let mut crs = word_address_space(2, 0, 0, 0xff);
    crs.extend_from_slice(&[0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08]);
    // I/O: entire range (type-specific flags 3), below and above the configuration ports.
    crs.extend(word_address_space(1, 3, 0, 0x0cf7));
    crs.extend(word_address_space(1, 3, 0x0d00, 0xffff));
    let mut memory = |min: u32, max: u32| {
        // DWord Address Space Descriptor (6.4.3.5.2): memory, cacheable read/write.
        crs.extend_from_slice(&[0x87, 23, 0, 0, 0x0c, 0x03]);
        for v in [0, min, max, 0, max - min + 1] {
            crs.extend_from_slice(&v.to_le_bytes());
        }
    };
    memory(0x000a_0000, 0x000b_ffff);
    let window_start = ram_end.next_multiple_of(1 << 20);
    if window_start < devices::ioapic::IOAPIC_BASE {
        memory(window_start as u32, devices::ioapic::IOAPIC_BASE as u32 - 1);
    }
    crs.extend_from_slice(&[0x79, 0x00]); // End Tag
    let mut buffer_body = vec![AML_WORD_PREFIX];
    buffer_body.extend_from_slice(&(crs.len() as u16).to_le_bytes());
    buffer_body.extend(crs);

    let mut device = vec![AML_NAME_OP];
    device.extend_from_slice(b"_HID");
    device.push(AML_DWORD_PREFIX);
    device.extend_from_slice(&EISAID_PNP0A03.to_le_bytes());
    device.push(AML_NAME_OP);
    device.extend_from_slice(b"_UID");
    device.push(AML_ZERO_OP);
    device.push(AML_NAME_OP);
    device.extend_from_slice(b"_CRS");
    device.extend(aml_package(&[AML_BUFFER_OP], &buffer_body));
    let mut pci0 = b"PCI0".to_vec();
    pci0.extend(device);
    let device = aml_package(&[AML_EXT_OP_PREFIX, AML_DEVICE_OP], &pci0);
    let mut scope = b"\\_SB_".to_vec();
    scope.extend(device);

    let mut aml = DSDT_S5_AML.to_vec();
    aml.extend(aml_package(&[AML_SCOPE_OP], &scope));
    aml
}

/// The FADT body after the header (revision 4 layout, 244 bytes in all).
fn fadt_body(facs: u64, dsdt: u64) -> Vec<u8> {
    let mut b = vec![0u8; 244 - 36];
    let put32 =
        |b: &mut [u8], off: usize, v: u32| b[off - 36..off - 32].copy_from_slice(&v.to_le_bytes());
    put32(&mut b, 36, facs as u32);
    put32(&mut b, 40, dsdt as u32);
    b[46 - 36..48 - 36].copy_from_slice(&SCI_IRQ.to_le_bytes());
    // SMI_CMD (48) stays 0: the hardware is always in ACPI mode.
    put32(&mut b, 56, u32::from(PM1A_EVT_BLK));
    put32(&mut b, 64, u32::from(PM1A_CNT_BLK));
    put32(&mut b, 76, u32::from(PM_TMR_BLK));
    b[88 - 36] = 4; // PM1_EVT_LEN: status and enable, 2 bytes each
    b[89 - 36] = 2; // PM1_CNT_LEN
    b[91 - 36] = devices::pm_timer::PM_TMR_LEN as u8;
    b[108 - 36] = RTC_CENTURY;
    b[109 - 36..111 - 36].copy_from_slice(&(IAPC_LEGACY_DEVICES | IAPC_8042).to_le_bytes());
    put32(
        &mut b,
        112,
        FADT_WBINVD | FADT_PROC_C1 | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_RESET_REG_SUP,
    );
    b[116 - 36..128 - 36].copy_from_slice(&gas_io(RESET_PORT, 8));
    b[128 - 36] = RESET_VALUE;
    b[132 - 36..140 - 36].copy_from_slice(&facs.to_le_bytes());
    b[140 - 36..148 - 36].copy_from_slice(&dsdt.to_le_bytes());
    b[148 - 36..160 - 36].copy_from_slice(&gas_io(u64::from(PM1A_EVT_BLK), 32));
    b[172 - 36..184 - 36].copy_from_slice(&gas_io(u64::from(PM1A_CNT_BLK), 16));
    b[208 - 36..220 - 36].copy_from_slice(&gas_io(u64::from(PM_TMR_BLK), 32));
    b
}

/// The FACS (5.2.10): 64 bytes, 64-byte aligned, no waking vector.
fn facs() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..4].copy_from_slice(b"FACS");
    f[4..8].copy_from_slice(&64u32.to_le_bytes());
    f[32] = 2; // version
    f
}

/// Write the tables into `ram` (the area from [`RSDP_ADDR`] must be RAM).
pub fn install(ram: &GuestRam) -> Result<(), vcpu::MemoryError> {
    let facs_addr = TABLES_ADDR.next_multiple_of(64);
    let dsdt_addr = facs_addr + 64;
    let ram_end = ram
        .regions()
        .iter()
        .filter(|r| r.kind == vcpu::RegionKind::Ram && r.base < 1 << 32)
        .map(|r| (r.base + r.size).min(1 << 32))
        .max()
        .unwrap_or(0);
    let dsdt = table(b"DSDT", 2, &dsdt_aml(ram_end));
    let fadt_addr = (dsdt_addr + dsdt.len() as u64).next_multiple_of(16);
    let fadt = table(b"FACP", 4, &fadt_body(facs_addr, dsdt_addr));
    let madt = table(b"APIC", 5, &madt_body());
    let madt_addr = (fadt_addr + fadt.len() as u64).next_multiple_of(16);
    let xsdt_addr = (madt_addr + madt.len() as u64).next_multiple_of(16);
    let mut entries = fadt_addr.to_le_bytes().to_vec();
    entries.extend_from_slice(&madt_addr.to_le_bytes());
    let xsdt = table(b"XSDT", 1, &entries);

    let mut rsdp = Vec::with_capacity(36);
    rsdp.extend_from_slice(b"RSD PTR ");
    rsdp.push(0); // checksum of the first 20 bytes, below
    rsdp.extend_from_slice(OEM_ID);
    rsdp.push(2); // revision: ACPI 2.0+, XSDT
    rsdp.extend_from_slice(&0u32.to_le_bytes()); // no RSDT
    rsdp.extend_from_slice(&36u32.to_le_bytes());
    rsdp.extend_from_slice(&xsdt_addr.to_le_bytes());
    rsdp.extend_from_slice(&[0, 0, 0, 0]); // extended checksum, reserved
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = checksum(&rsdp);

    ram.write_host(RSDP_ADDR, &rsdp)?;
    ram.write_host(facs_addr, &facs())?;
    ram.write_host(dsdt_addr, &dsdt)?;
    ram.write_host(fadt_addr, &fadt)?;
    ram.write_host(madt_addr, &madt)?;
    ram.write_host(xsdt_addr, &xsdt)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcpu::{RegionKind, RegionSpec};

    fn read(ram: &GuestRam, gpa: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        ram.read(gpa, &mut b).unwrap();
        b
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn tables_chain_from_the_rsdp_with_valid_checksums() {
        let ram = GuestRam::new(&[RegionSpec {
            base: 0,
            size: 1 << 20,
            kind: RegionKind::Ram,
        }])
        .unwrap();
        install(&ram).unwrap();
        let sum = |b: &[u8]| b.iter().fold(0u8, |a, &x| a.wrapping_add(x));
        let rsdp = read(&ram, RSDP_ADDR, 36);
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(&rsdp), 0);
        let table_at = |gpa: u64, sig: &[u8; 4]| {
            let head = read(&ram, gpa, 36);
            assert_eq!(&head[..4], sig);
            let t = read(&ram, gpa, u32_at(&head, 4) as usize);
            assert_eq!(sum(&t), 0, "{} checksum", String::from_utf8_lossy(sig));
            t
        };
        let xsdt = table_at(u64_at(&rsdp, 24), b"XSDT");
        assert_eq!(xsdt.len(), 52);
        let madt = table_at(u64_at(&xsdt, 44), b"APIC");
        assert_eq!(u32_at(&madt, 36), 0xfee0_0000);
        assert_eq!(u32_at(&madt, 40), MADT_PCAT_COMPAT);
        // Walk the structures: types and lengths, the I/O APIC address and the IRQ 0 override.
        let mut kinds = Vec::new();
        let mut o = 44;
        while o < madt.len() {
            let (kind, len) = (madt[o], madt[o + 1] as usize);
            match kind {
                MADT_IO_APIC => assert_eq!(u32_at(&madt, o + 4), 0xfec0_0000),
                MADT_INTERRUPT_SOURCE_OVERRIDE if madt[o + 3] == 0 => {
                    assert_eq!(u32_at(&madt, o + 4), 2, "IRQ 0 is GSI 2")
                }
                _ => {}
            }
            kinds.push((kind, len));
            o += len;
        }
        assert_eq!(o, madt.len());
        assert_eq!(kinds, [(0, 8), (1, 12), (2, 10), (2, 10), (4, 6)]);
        let fadt = table_at(u64_at(&xsdt, 36), b"FACP");
        assert_eq!(fadt.len(), 244);
        assert_eq!(u32_at(&fadt, 64), u32::from(PM1A_CNT_BLK));
        assert_eq!(fadt[89], 2);
        // The PM timer: PM_TMR_BLK, PM_TMR_LEN and X_PM_TMR_BLK (system I/O, 32 bits).
        assert_eq!(u32_at(&fadt, 76), 0x608);
        assert_eq!(fadt[91], 4);
        assert_eq!((fadt[208], fadt[209], u64_at(&fadt, 212)), (1, 32, 0x608));
        // RESET_REG: system I/O, 8 bits, port 0xCF9, value 6.
        assert_eq!((fadt[116], fadt[117], u64_at(&fadt, 120)), (1, 8, 0xcf9));
        assert_eq!(fadt[128], 6);
        let facs = read(&ram, u64_at(&fadt, 132), 4);
        assert_eq!(&facs, b"FACS");
        assert_eq!(u64_at(&fadt, 132) % 64, 0);
        let dsdt = table_at(u64_at(&fadt, 140), b"DSDT");
        assert_eq!(&dsdt[36..36 + DSDT_S5_AML.len()], DSDT_S5_AML);
        assert_eq!(u64::from(u32_at(&fadt, 40)), u64_at(&fadt, 140));
    }

    /// A PkgLength at `b[0..]`: (package length, bytes it took) (ACPI 6.5 20.2.4).
    fn pkg_length(b: &[u8]) -> (usize, usize) {
        let extra = usize::from(b[0] >> 6);
        if extra == 0 {
            return (usize::from(b[0] & 0x3f), 1);
        }
        let mut n = usize::from(b[0] & 0x0f);
        for (i, &x) in b[1..=extra].iter().enumerate() {
            n |= usize::from(x) << (4 + 8 * i);
        }
        (n, 1 + extra)
    }

    #[test]
    fn dsdt_describes_the_pci_host_bridge_with_its_windows() {
        let aml = dsdt_aml(200 << 20);
        let rest = &aml[DSDT_S5_AML.len()..];
        // Scope (\_SB) spans exactly the rest of the table.
        assert_eq!(rest[0], AML_SCOPE_OP);
        let (scope_len, _) = pkg_length(&rest[1..]);
        assert_eq!(scope_len, rest.len() - 1);
        let (_, used) = pkg_length(&rest[1..]);
        let scope = &rest[1 + used..];
        assert_eq!(&scope[..5], b"\\_SB_");
        // Device (PCI0) fills the scope.
        let dev = &scope[5..];
        assert_eq!(&dev[..2], &[AML_EXT_OP_PREFIX, AML_DEVICE_OP]);
        let (dev_len, used) = pkg_length(&dev[2..]);
        assert_eq!(dev_len, dev.len() - 2);
        let body = &dev[2 + used..];
        assert_eq!(&body[..4], b"PCI0");
        assert_eq!(&body[4..9], &[AML_NAME_OP, b'_', b'H', b'I', b'D']);
        assert_eq!(u32_at(body, 10), EISAID_PNP0A03);
        // _CRS: a buffer whose resource template ends with the End Tag and holds the 32-bit
        // window from the end of RAM (200 MiB) to just below the I/O APIC.
        let crs_at = body.windows(4).position(|w| w == b"_CRS").unwrap() + 4;
        assert_eq!(body[crs_at], AML_BUFFER_OP);
        let (buf_len, used) = pkg_length(&body[crs_at + 1..]);
        assert_eq!(crs_at + 1 + buf_len, body.len());
        let buf = &body[crs_at + 1 + used..];
        assert_eq!(buf[0], AML_WORD_PREFIX);
        let template = &buf[3..];
        assert_eq!(
            usize::from(u16::from_le_bytes([buf[1], buf[2]])),
            template.len()
        );
        assert_eq!(&template[template.len() - 2..], &[0x79, 0]);
        let last_window = &template[template.len() - 2 - 26..template.len() - 2];
        assert_eq!(last_window[0], 0x87);
        assert_eq!(u32_at(last_window, 10), 200 << 20);
        assert_eq!(u32_at(last_window, 14), 0xfebf_ffff);
        // With RAM up to the I/O APIC there is no 32-bit window left to describe.
        let full = dsdt_aml(0xfec0_0000);
        assert_eq!(full.len(), aml.len() - 26);
    }
}
