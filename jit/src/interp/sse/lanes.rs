//! Views of a 128-bit XMM value as lanes of bytes, words, doublewords and quadwords (element
//! 0 in the low bits, SDM Vol. 1 4.6.1), and lane-wise combinators the instruction groups share.

#[inline]
pub fn u8s(v: u128) -> [u8; 16] {
    v.to_le_bytes()
}

#[inline]
pub fn from_u8s(a: [u8; 16]) -> u128 {
    u128::from_le_bytes(a)
}

#[inline]
pub fn u16s(v: u128) -> [u16; 8] {
    std::array::from_fn(|i| (v >> (16 * i)) as u16)
}

#[inline]
pub fn from_u16s(a: [u16; 8]) -> u128 {
    a.iter()
        .enumerate()
        .fold(0, |acc, (i, &x)| acc | (u128::from(x) << (16 * i)))
}

#[inline]
pub fn u32s(v: u128) -> [u32; 4] {
    std::array::from_fn(|i| (v >> (32 * i)) as u32)
}

#[inline]
pub fn from_u32s(a: [u32; 4]) -> u128 {
    a.iter()
        .enumerate()
        .fold(0, |acc, (i, &x)| acc | (u128::from(x) << (32 * i)))
}

#[inline]
pub fn u64s(v: u128) -> [u64; 2] {
    [v as u64, (v >> 64) as u64]
}

#[inline]
pub fn from_u64s(a: [u64; 2]) -> u128 {
    u128::from(a[0]) | (u128::from(a[1]) << 64)
}

/// Apply `f` to corresponding bytes.
pub fn zip8(a: u128, b: u128, f: impl Fn(u8, u8) -> u8) -> u128 {
    let (x, y) = (u8s(a), u8s(b));
    from_u8s(std::array::from_fn(|i| f(x[i], y[i])))
}

/// Apply `f` to corresponding words.
pub fn zip16(a: u128, b: u128, f: impl Fn(u16, u16) -> u16) -> u128 {
    let (x, y) = (u16s(a), u16s(b));
    from_u16s(std::array::from_fn(|i| f(x[i], y[i])))
}

/// Apply `f` to corresponding doublewords.
pub fn zip32(a: u128, b: u128, f: impl Fn(u32, u32) -> u32) -> u128 {
    let (x, y) = (u32s(a), u32s(b));
    from_u32s(std::array::from_fn(|i| f(x[i], y[i])))
}

/// Apply `f` to corresponding quadwords.
pub fn zip64(a: u128, b: u128, f: impl Fn(u64, u64) -> u64) -> u128 {
    let (x, y) = (u64s(a), u64s(b));
    from_u64s([f(x[0], y[0]), f(x[1], y[1])])
}

/// All ones when `c`, for comparison results.
#[inline]
pub fn mask_if<T: From<u8> + std::ops::Not<Output = T>>(c: bool) -> T {
    if c {
        !T::from(0)
    } else {
        T::from(0)
    }
}

/// Signed saturation of `v` to `bits` bits.
#[inline]
pub fn sat_signed(v: i64, bits: u32) -> i64 {
    let max = (1i64 << (bits - 1)) - 1;
    v.clamp(-max - 1, max)
}

/// Unsigned saturation of `v` to `bits` bits.
#[inline]
pub fn sat_unsigned(v: i64, bits: u32) -> i64 {
    v.clamp(0, (1i64 << bits) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_round_trip_with_element_zero_low() {
        let v = 0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100u128;
        assert_eq!(u8s(v)[0], 0x00);
        assert_eq!(u8s(v)[15], 0x0f);
        assert_eq!(u16s(v)[1], 0x0302);
        assert_eq!(u32s(v)[3], 0x0f0e_0d0c);
        assert_eq!(u64s(v)[1], 0x0f0e_0d0c_0b0a_0908);
        assert_eq!(from_u16s(u16s(v)), v);
        assert_eq!(from_u32s(u32s(v)), v);
        assert_eq!(from_u64s(u64s(v)), v);
    }

    #[test]
    fn saturation_bounds() {
        assert_eq!(sat_signed(200, 8), 127);
        assert_eq!(sat_signed(-200, 8), -128);
        assert_eq!(sat_unsigned(-5, 8), 0);
        assert_eq!(sat_unsigned(300, 8), 255);
        assert_eq!(sat_signed(-40000, 16), -32768);
    }
}
