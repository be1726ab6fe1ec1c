//! Checking a BIOS image before it is mapped: the PC maps firmware at the top of the 4 GiB space,
//! so its size must be a whole number of 64 KiB blocks, at most 1 MiB here.

use std::path::Path;

/// Firmware images are mapped in 64 KiB units.
pub const BIOS_GRANULE: usize = 64 << 10;
/// The largest firmware image emu maps.
pub const BIOS_MAX: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("cannot read BIOS image {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("BIOS image is empty")]
    Empty,
    #[error(
        "BIOS image is {0} bytes: it must be a multiple of 64 KiB (65536 bytes); a truncated or \
         unpadded image?"
    )]
    NotGranular(usize),
    #[error("BIOS image is {0} bytes: at most 1 MiB (1048576 bytes) is supported")]
    TooLarge(usize),
}

/// Validate an in-memory BIOS image.
pub fn check_bios(image: &[u8]) -> Result<(), FirmwareError> {
    if image.is_empty() {
        return Err(FirmwareError::Empty);
    }
    if image.len() > BIOS_MAX {
        return Err(FirmwareError::TooLarge(image.len()));
    }
    if !image.len().is_multiple_of(BIOS_GRANULE) {
        return Err(FirmwareError::NotGranular(image.len()));
    }
    Ok(())
}

/// Read and validate a BIOS image from a file.
pub fn load_bios(path: &Path) -> Result<Vec<u8>, FirmwareError> {
    let image = std::fs::read(path).map_err(|source| FirmwareError::Read {
        path: path.display().to_string(),
        source,
    })?;
    check_bios(&image)?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert!(check_bios(&vec![0; BIOS_GRANULE]).is_ok());
        assert!(check_bios(&vec![0; BIOS_MAX]).is_ok());
        assert!(matches!(check_bios(&[]), Err(FirmwareError::Empty)));
        assert!(matches!(
            check_bios(&vec![0; 1000]),
            Err(FirmwareError::NotGranular(1000))
        ));
        assert!(matches!(
            check_bios(&vec![0; BIOS_MAX + BIOS_GRANULE]),
            Err(FirmwareError::TooLarge(_))
        ));
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = load_bios(Path::new("/nonexistent/bios.bin")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/bios.bin"));
    }
}
