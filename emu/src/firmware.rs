//! Checking a BIOS image before it is mapped: the PC maps firmware at the top of the 4 GiB space,
//! so its size must be a whole number of 64 KiB blocks, at most 1 MiB here. Also where the
//! firmware's own debug log (SeaBIOS writes it to port 0x402) goes when the user did not ask for
//! it in a file: to emu's log, line by line, so `-v` shows it.

use std::path::Path;

/// Firmware images are mapped in 64 KiB units.
pub const BIOS_GRANULE: usize = 64 << 10;
/// The largest firmware image emu maps.
pub const BIOS_MAX: usize = 1 << 20;

/// The port SeaBIOS writes its debug log to (QEMU: `-debugcon ... -global
/// isa-debugcon.iobase=0x402`). It reads back 0xE9, which is how SeaBIOS detects the port.
pub const FIRMWARE_LOG_PORT: u16 = 0x402;

/// An output sink that hands the firmware's log to the `log` crate, one `info` line at a time
/// (target `emu::firmware`), so it is kept without mixing into the guest's console.
#[derive(Debug, Default)]
pub struct FirmwareLogLines {
    line: Vec<u8>,
}

/// Lines longer than this are logged in pieces, so a log without newlines cannot grow memory.
const FIRMWARE_LINE_MAX: usize = 1024;

impl FirmwareLogLines {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        log::info!(target: "emu::firmware", "{}", text.trim_end_matches('\r'));
        self.line.clear();
    }
}

impl std::io::Write for FirmwareLogLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                self.emit();
            } else {
                self.line.push(b);
                if self.line.len() >= FIRMWARE_LINE_MAX {
                    self.emit();
                }
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for FirmwareLogLines {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

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
    #[error("cannot create the firmware log {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
}

/// The sink for port 0x402: `path` (created or truncated) when given, else emu's log.
pub fn firmware_log_sink(path: Option<&Path>) -> Result<devices::OutputSink, FirmwareError> {
    match path {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|source| FirmwareError::Log {
                path: path.display().to_string(),
                source,
            })?;
            Ok(Box::new(std::io::LineWriter::new(file)))
        }
        None => Ok(Box::new(FirmwareLogLines::default())),
    }
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
    fn firmware_log_file_gets_every_byte_and_lines_are_split() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("emu-fwlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fw.log");
        {
            let mut sink = firmware_log_sink(Some(&path)).unwrap();
            sink.write_all(b"SeaBIOS\nno newline").unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"SeaBIOS\nno newline");
        assert!(firmware_log_sink(Some(&dir.join("missing/fw.log"))).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        let mut lines = FirmwareLogLines::default();
        lines.write_all(b"one\r\ntw").unwrap();
        assert_eq!(lines.line, b"tw");
        lines.write_all(&[b'x'; FIRMWARE_LINE_MAX]).unwrap();
        assert!(lines.line.len() < FIRMWARE_LINE_MAX);
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = load_bios(Path::new("/nonexistent/bios.bin")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/bios.bin"));
    }
}
