//! The built-in demo ROM, run by `emu run` when no image is given.
//!
//! The image is assembled from `emu/demo/demo.asm` and committed, so that building emu needs no
//! assembler; a test checks that the committed image is what the source assembles to.

/// The demo BIOS image (64 KiB).
pub const DEMO_ROM: &[u8] = include_bytes!("../demo/demo.bin");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_image_is_a_valid_bios() {
        crate::firmware::check_bios(DEMO_ROM).unwrap();
        // The reset vector holds a far jump (opcode 0xEA) to F000:0000.
        assert_eq!(&DEMO_ROM[0xfff0..0xfff5], &[0xea, 0x00, 0x00, 0x00, 0xf0]);
    }

    #[test]
    fn committed_image_matches_source() {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/demo/demo.asm");
        let out = std::env::temp_dir().join(format!("emu-demo-{}.bin", std::process::id()));
        let status = match std::process::Command::new("nasm")
            .args(["-f", "bin", "-o"])
            .arg(&out)
            .arg(src)
            .status()
        {
            Ok(s) => s,
            Err(_) => {
                println!("skipped: nasm is not installed, cannot rebuild the demo ROM");
                return;
            }
        };
        assert!(status.success(), "nasm failed on {src}");
        let fresh = std::fs::read(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        assert!(
            fresh == DEMO_ROM,
            "emu/demo/demo.bin is stale: run `nasm -f bin -o emu/demo/demo.bin emu/demo/demo.asm`"
        );
    }
}
