//! What the `emu` binary's integration tests share.

/// Whether KVM can run guests here; says why not when it cannot, so a skipped half shows.
pub fn kvm_usable() -> bool {
    match accel::kvm_available() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipping the KVM half of this test: {e}");
            false
        }
    }
}
