//! Executable memory for the code cache, packed densely.
//!
//! Cranelift's default memory provider maps fresh pages for every finalized function and
//! changes their protection with `mprotect`: each translated block (a few hundred bytes) then
//! sits alone on its own 4 KiB page. A Linux boot runs thousands of blocks that chain into one
//! another, so generated code misses the instruction TLB at nearly every block transition, and
//! every compile costs the guest thread a TLB shootdown. [`DenseCodeMemory`] instead places
//! functions one after another in one region mapped readable, writable and executable once,
//! as QEMU's code buffer is, with nothing to change at finalization.
//!
//! Writing new code next to code another thread is running is safe where the instruction cache
//! is coherent with data writes and the new bytes were never fetched before: x86-64. Elsewhere
//! (aarch64 needs cache maintenance and a context synchronisation on the executing thread) and
//! where the host refuses writable executable mappings, the code cache keeps Cranelift's
//! provider ([`DenseCodeMemory::new`] returns `None`).

use std::io;

use cranelift_jit::{BranchProtection, JITMemoryKind, JITMemoryProvider};
use cranelift_module::ModuleResult;

/// Address space reserved per code cache (pages are only backed once written). A Linux boot
/// compiles about 20 MiB of code; the dispatcher flushes the cache long before this fills, and
/// an allocation that does not fit gets pages of its own.
const RESERVE_BYTES: usize = 1 << 30;

/// A region of writable, executable memory handed out front to back.
pub struct DenseCodeMemory {
    base: *mut u8,
    len: usize,
    used: usize,
    /// Allocations that did not fit in the region, each mapped on its own.
    overflow: Vec<(*mut u8, usize)>,
}

// SAFETY: the region is plain memory owned by the provider; the provider is used by one
// thread at a time (the code cache's owner).
unsafe impl Send for DenseCodeMemory {}

/// Map `len` bytes readable, writable and executable (reserved, backed on first touch).
fn map_rwx(len: usize) -> Option<*mut u8> {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no
    // existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p as *mut u8)
}

fn unmap(p: *mut u8, len: usize) {
    // SAFETY: `p..p+len` is a mapping made by `map_rwx` that nothing uses any more (callers
    // guarantee it: see `free_memory`).
    unsafe { libc::munmap(p as *mut libc::c_void, len) };
}

impl DenseCodeMemory {
    /// A fresh region, or `None` on hosts where it is not usable (see the module header).
    pub fn new() -> Option<Self> {
        if !cfg!(all(target_arch = "x86_64", unix)) {
            return None;
        }
        let base = map_rwx(RESERVE_BYTES)?;
        Some(Self {
            base,
            len: RESERVE_BYTES,
            used: 0,
            overflow: Vec::new(),
        })
    }

    /// Bytes handed out from the region so far.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used
    }

    fn release(&mut self) {
        for (p, len) in self.overflow.drain(..) {
            unmap(p, len);
        }
        if !self.base.is_null() {
            unmap(self.base, self.len);
            self.base = std::ptr::null_mut();
        }
        self.used = 0;
    }
}

impl JITMemoryProvider for DenseCodeMemory {
    fn allocate(&mut self, size: usize, align: u64, _kind: JITMemoryKind) -> io::Result<*mut u8> {
        let align = usize::try_from(align.max(1)).unwrap_or(usize::MAX);
        if !align.is_power_of_two() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad alignment"));
        }
        let start = (self.used + align - 1) & !(align - 1);
        if !self.base.is_null() && start.checked_add(size).is_some_and(|end| end <= self.len) {
            self.used = start + size;
            // SAFETY: `start + size <= len`: inside the region.
            return Ok(unsafe { self.base.add(start) });
        }
        // Region full (or freed): pages of its own, still writable and executable.
        let len = size.max(1).next_multiple_of(4096);
        let p = map_rwx(len).ok_or_else(io::Error::last_os_error)?;
        self.overflow.push((p, len));
        Ok(p)
    }

    unsafe fn free_memory(&mut self) {
        self.release();
    }

    fn finalize(&mut self, _branch_protection: BranchProtection) -> ModuleResult<()> {
        // Already executable; x86-64 keeps instruction fetch coherent with the writes.
        Ok(())
    }
}

impl Drop for DenseCodeMemory {
    fn drop(&mut self) {
        // Like Cranelift's providers, leak what was not freed explicitly: functions handed out
        // may still be running (`CodeCache` frees through `free_memory` when it is safe).
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_allocations_densely_and_aligned() {
        let Some(mut m) = DenseCodeMemory::new() else {
            return; // not an x86-64 Unix host: the code cache uses Cranelift's provider
        };
        let a = m.allocate(100, 16, JITMemoryKind::Executable).unwrap();
        let b = m.allocate(50, 16, JITMemoryKind::Executable).unwrap();
        let c = m.allocate(8, 8, JITMemoryKind::ReadOnly).unwrap();
        assert_eq!(b as usize - a as usize, 112);
        assert_eq!(c as usize % 8, 0);
        assert_eq!(c as usize - b as usize, 56);
        // SAFETY: the bytes were just handed out and are writable.
        unsafe { a.write_bytes(0xc3, 100) };
        assert_eq!(m.used(), 176);
        // SAFETY: nothing runs code from `m`.
        unsafe { m.free_memory() };
        // Freed: further allocations get pages of their own.
        let d = m.allocate(10, 16, JITMemoryKind::Executable).unwrap();
        assert_eq!(d as usize % 4096, 0);
        // SAFETY: as above.
        unsafe { m.free_memory() };
    }
}
