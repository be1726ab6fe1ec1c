//! The software CPU.
//!
//! Guest code is decoded into blocks (crate `decoder`), translated to host code with Cranelift,
//! cached by (physical address, mode), and run from a dispatcher; instructions too rare or too
//! complex to translate inline call Rust helpers that share the same [`context::JitContext`].
//! Nothing here assumes the host is x86: Cranelift emits x86-64, aarch64 or riscv64 code.

pub mod cache;
mod codemem;
pub mod context;
pub mod coverage;
pub mod dispatch;
pub mod entry;
pub mod exception;
pub mod flags;
pub mod interp;
pub mod mem;
pub mod paging;
pub mod region;
pub mod runtime;
pub mod segment;
pub mod smc;
pub mod translate;
pub mod tsc;
pub mod worker;

pub use dispatch::{JitError, JitVcpu};
