//! The machine: memory layout, devices, firmware loading, backend choice and the run loop that
//! drives a backend, plus the `emu` command line on top of it.

pub mod acpi;
pub mod boot_gdt;
pub mod calibrate;
pub mod control;
pub mod coverage;
pub mod cpuid_probe;
pub mod demo;
pub mod duration;
pub mod firmware;
pub mod handover;
pub mod hybrid;
pub mod linux;
pub mod machine;
pub mod multiboot;
pub mod pc;
pub mod size;
pub mod snapshot;
pub mod terminal;
