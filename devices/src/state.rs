//! Device state as bytes, for snapshots.
//!
//! Every device with state has a `State` struct (`PicState`, `PitState`, ...) that is the whole
//! story of the device. This module turns those structs into versioned byte blobs and back: a
//! little-endian [`StateWriter`] and a bounds-checked [`StateReader`] whose every failure is a
//! [`StateError`], never a panic, so a corrupt snapshot is reported and not trusted. Each blob
//! starts with a one-byte layout version owned by the device, so one device can change its
//! layout without invalidating the others.

/// Why a device state blob could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("{device} state is truncated")]
    Truncated { device: &'static str },
    #[error("{device} state has {extra} unexpected trailing bytes")]
    Trailing { device: &'static str, extra: usize },
    #[error("{device} state layout version {found} is not supported (expected {expected})")]
    Version {
        device: &'static str,
        found: u8,
        expected: u8,
    },
    #[error("{device} state is invalid: {what}")]
    Invalid { device: &'static str, what: String },
}

/// Appends little-endian fields to a blob.
#[derive(Debug)]
pub struct StateWriter(Vec<u8>);

impl StateWriter {
    /// A blob for layout `version` of a device's state.
    pub fn new(version: u8) -> Self {
        Self(vec![version])
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A length-prefixed (u32) byte string.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    /// An optional value: a presence byte, then the value (zero when absent).
    pub fn opt_u16(&mut self, v: Option<u16>) -> &mut Self {
        self.bool(v.is_some()).u16(v.unwrap_or(0))
    }
    pub fn opt_u8(&mut self, v: Option<u8>) -> &mut Self {
        self.bool(v.is_some()).u8(v.unwrap_or(0))
    }
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads what a [`StateWriter`] wrote, checking every bound.
#[derive(Debug)]
pub struct StateReader<'a> {
    rest: &'a [u8],
    device: &'static str,
}

impl<'a> StateReader<'a> {
    /// Start reading `device`'s blob, which must have layout `version`.
    pub fn new(blob: &'a [u8], device: &'static str, version: u8) -> Result<Self, StateError> {
        let mut r = Self { rest: blob, device };
        let found = r.u8()?;
        if found != version {
            return Err(StateError::Version {
                device,
                found,
                expected: version,
            });
        }
        Ok(r)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if self.rest.len() < n {
            return Err(StateError::Truncated {
                device: self.device,
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> Result<bool, StateError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.invalid(format!("boolean byte {v}"))),
        }
    }
    pub fn u16(&mut self) -> Result<u16, StateError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, StateError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], StateError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn opt_u16(&mut self) -> Result<Option<u16>, StateError> {
        let present = self.bool()?;
        let v = self.u16()?;
        Ok(present.then_some(v))
    }
    pub fn opt_u8(&mut self) -> Result<Option<u8>, StateError> {
        let present = self.bool()?;
        let v = self.u8()?;
        Ok(present.then_some(v))
    }

    /// An error naming this device.
    pub fn invalid(&self, what: impl Into<String>) -> StateError {
        StateError::Invalid {
            device: self.device,
            what: what.into(),
        }
    }

    /// The blob must be fully consumed.
    pub fn finish(self) -> Result<(), StateError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(StateError::Trailing {
                device: self.device,
                extra: self.rest.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation_fails() {
        let mut w = StateWriter::new(3);
        w.u8(7)
            .bool(true)
            .u16(0x1234)
            .u32(0xdead_beef)
            .u64(u64::MAX - 1)
            .i64(-5)
            .bytes(b"abc")
            .opt_u16(Some(9))
            .opt_u8(None);
        let blob = w.finish();
        let read = |b: &[u8]| -> Result<(), StateError> {
            let mut r = StateReader::new(b, "test", 3)?;
            assert_eq!(r.u8()?, 7);
            assert!(r.bool()?);
            assert_eq!(r.u16()?, 0x1234);
            assert_eq!(r.u32()?, 0xdead_beef);
            assert_eq!(r.u64()?, u64::MAX - 1);
            assert_eq!(r.i64()?, -5);
            assert_eq!(r.bytes()?, b"abc");
            assert_eq!(r.opt_u16()?, Some(9));
            assert_eq!(r.opt_u8()?, None);
            r.finish()
        };
        read(&blob).unwrap();
        for n in 0..blob.len() {
            assert!(read(&blob[..n]).is_err(), "truncated to {n} bytes");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert_eq!(
            read(&longer),
            Err(StateError::Trailing {
                device: "test",
                extra: 1
            })
        );
    }

    #[test]
    fn wrong_version_and_bad_boolean_are_errors() {
        assert!(matches!(
            StateReader::new(&[4], "test", 3),
            Err(StateError::Version { found: 4, .. })
        ));
        let mut r = StateReader::new(&[3, 2], "test", 3).unwrap();
        assert!(matches!(r.bool(), Err(StateError::Invalid { .. })));
    }
}
