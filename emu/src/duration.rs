//! Parsing of durations given on the command line ("500ms", "2s", "1.5", "1m").

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error(
        "invalid duration {0:?}: expected a positive number with an optional ms, s or m suffix \
         (e.g. 500ms, 2s, 1.5)"
    )]
    Syntax(String),
}

/// Parse a positive duration: a decimal number with an optional unit (`ms`, `s`, `m`; seconds
/// when absent).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let syntax = || DurationError::Syntax(text.to_string());
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(syntax());
    }
    let v: f64 = number.parse().map_err(|_| syntax())?;
    let secs = v * scale;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(syntax());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_errors() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "s", "-1s", "0", "1h", "1e3", "nan", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
