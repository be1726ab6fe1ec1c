//! Parsing of memory sizes given on the command line ("128M", "1G", "65536").

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    #[error("invalid size {0:?}: expected a number with an optional K, M or G suffix (e.g. 128M)")]
    Syntax(String),
    #[error("size {0:?} is too large")]
    Overflow(String),
}

/// Parse a byte count with an optional binary suffix (K, M, G, T; case-insensitive; an optional
/// trailing "B" or "iB" is accepted).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, shift) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 10),
        Some('m') => (&body[..body.len() - 1], 20),
        Some('g') => (&body[..body.len() - 1], 30),
        Some('t') => (&body[..body.len() - 1], 40),
        _ => (body, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SizeError::Syntax(text.to_string()));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| SizeError::Overflow(text.to_string()))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::Overflow(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert_eq!(parse_size("128M"), Ok(128 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(matches!(parse_size("12X"), Err(SizeError::Syntax(_))));
        assert!(matches!(parse_size(""), Err(SizeError::Syntax(_))));
        assert!(matches!(
            parse_size("99999999999T"),
            Err(SizeError::Overflow(_))
        ));
    }
}
