//! Restore time of a mostly-empty 256 MiB guest (issue #6 goal: under 10 ms), and, for
//! comparison, the time to take and write the same snapshot.
//!
//! `cargo bench -p emu --bench restore`. The guest is the built-in demo ROM stopped at its reset
//! vector: 256 MiB of RAM of which only the BIOS pages are non-zero, the case "memory mapped
//! lazily" is about (RAM is anonymous memory, so untouched pages cost nothing until used).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use emu::machine::{Accel, Machine, MachineConfig};
use emu::snapshot::Snapshot;

const GUEST_RAM: u64 = 256 << 20;

fn config(accel: Accel) -> MachineConfig {
    MachineConfig {
        memory_bytes: GUEST_RAM,
        accel,
        ..MachineConfig::default()
    }
}

fn restore(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("emu-bench-restore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("empty-256m.snap");
    let mut machine = Machine::with_bios(
        &config(Accel::Jit),
        emu::demo::DEMO_ROM,
        Box::new(std::io::sink()),
    )
    .unwrap();
    machine.snapshot().unwrap().write_file(&path).unwrap();
    eprintln!(
        "snapshot of a 256 MiB guest: {} bytes on disk",
        std::fs::metadata(&path).unwrap().len()
    );

    c.bench_function(
        "restore 256 MiB guest (read file + build machine, JIT)",
        |b| {
            b.iter(|| {
                let snap = Snapshot::read_file(&path).unwrap();
                let m =
                    Machine::from_snapshot(&config(Accel::Jit), &snap, Box::new(std::io::sink()))
                        .unwrap();
                black_box(m)
            })
        },
    );
    #[cfg(all(feature = "kvm", target_arch = "x86_64"))]
    if accel::kvm_available().is_ok() {
        c.bench_function(
            "restore 256 MiB guest (read file + build machine, KVM)",
            |b| {
                b.iter(|| {
                    let snap = Snapshot::read_file(&path).unwrap();
                    let m = Machine::from_snapshot(
                        &config(Accel::Kvm),
                        &snap,
                        Box::new(std::io::sink()),
                    )
                    .unwrap();
                    black_box(m)
                })
            },
        );
    }
    c.bench_function("snapshot 256 MiB guest (capture + write file)", |b| {
        b.iter(|| machine.snapshot().unwrap().write_file(&path).unwrap())
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = restore
}
criterion_main!(benches);
