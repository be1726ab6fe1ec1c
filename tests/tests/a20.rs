//! The A20 gate as real-mode software sees it: with the gate off, linear 0x100000 (FFFF:0010)
//! wraps to 0; port 0x92 switches it, and the change applies from the next instruction on.

use devices::SharedBuffer;
use emu::machine::{Accel, Machine, MachineConfig, RunOutcome};

/// A 64 KiB BIOS: `code` at F000:0000 and a far jump to it at the reset vector.
fn rom(code: &[u8]) -> Vec<u8> {
    let mut rom = vec![0xf4u8; 64 << 10];
    rom[..code.len()].copy_from_slice(code);
    rom[0xfff0..0xfff5].copy_from_slice(&[0xea, 0x00, 0x00, 0x00, 0xf0]);
    rom
}

/// Writes through FFFF:0010 before and after turning A20 off, printing linear 0 each time.
const A20_PROGRAM: &[u8] = &[
    0xb8, 0xff, 0xff, // mov ax, 0xffff
    0x8e, 0xc0, // mov es, ax
    0x26, 0xc6, 0x06, 0x10, 0x00, 0x5a, // mov byte [es:0x10], 0x5a  (linear 0x100000)
    0x31, 0xc0, // xor ax, ax
    0x8e, 0xd8, // mov ds, ax
    0xa0, 0x00, 0x00, // mov al, [0]
    0xe6, 0xe9, // out 0xe9, al
    0xb0, 0x00, // mov al, 0
    0xe6, 0x92, // out 0x92, al  (A20 off)
    0x26, 0xc6, 0x06, 0x10, 0x00, 0xa5, // mov byte [es:0x10], 0xa5  (wraps to linear 0)
    0xa0, 0x00, 0x00, // mov al, [0]
    0xe6, 0xe9, // out 0xe9, al
    0xb0, 0x10, // mov al, 0x10
    0xe6, 0xf4, // out 0xf4, al
];

#[test]
fn a20_off_wraps_at_one_megabyte_on_the_jit() {
    let out = SharedBuffer::new();
    let cfg = MachineConfig {
        memory_bytes: 16 << 20,
        accel: Accel::Jit,
        time_limit: Some(std::time::Duration::from_secs(20)),
        ..MachineConfig::default()
    };
    let mut m = Machine::with_bios(&cfg, &rom(A20_PROGRAM), Box::new(out.clone())).unwrap();
    assert_eq!(m.run().unwrap(), RunOutcome::DebugExit { value: 0x10 });
    // With A20 on, linear 0 is untouched (0); with it off the write lands there.
    assert_eq!(out.contents(), vec![0x00, 0xa5]);
}
