//! Element types and the conversion of raw bytes to f64.

use npyz::half::{bf16, f16};
use std::fmt;

/// Element type of a layer, as stored in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DType {
    /// IEEE half precision (npy `f2`, safetensors `F16`).
    F16,
    /// bfloat16 (safetensors `BF16`).
    BF16,
    /// IEEE single precision (npy `f4`, safetensors `F32`).
    F32,
    /// IEEE double precision (npy `f8`, safetensors `F64`).
    F64,
    /// Any other type, as written in the file (e.g. `<i8`, `I64`); listed but not readable.
    Unsupported(String),
}

impl DType {
    /// Bytes per element, `None` for unsupported types.
    pub fn size(&self) -> Option<usize> {
        match self {
            DType::F16 | DType::BF16 => Some(2),
            DType::F32 => Some(4),
            DType::F64 => Some(8),
            DType::Unsupported(_) => None,
        }
    }

    /// Whether spanmatch can read this type.
    pub fn is_supported(&self) -> bool {
        self.size().is_some()
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DType::F16 => f.write_str("float16"),
            DType::BF16 => f.write_str("bfloat16"),
            DType::F32 => f.write_str("float32"),
            DType::F64 => f.write_str("float64"),
            DType::Unsupported(s) => f.write_str(s),
        }
    }
}

/// A readable element encoding: type and byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    F16Le,
    F16Be,
    Bf16Le,
    Bf16Be,
    F32Le,
    F32Be,
    F64Le,
    F64Be,
}

impl Encoding {
    pub(crate) fn new(dtype: &DType, big_endian: bool) -> Option<Self> {
        Some(match (dtype, big_endian) {
            (DType::F16, false) => Encoding::F16Le,
            (DType::F16, true) => Encoding::F16Be,
            (DType::BF16, false) => Encoding::Bf16Le,
            (DType::BF16, true) => Encoding::Bf16Be,
            (DType::F32, false) => Encoding::F32Le,
            (DType::F32, true) => Encoding::F32Be,
            (DType::F64, false) => Encoding::F64Le,
            (DType::F64, true) => Encoding::F64Be,
            (DType::Unsupported(_), _) => return None,
        })
    }
}

/// One element encoding, for monomorphised conversion loops.
pub(crate) trait Elem {
    const SIZE: usize;
    /// Decodes one element from exactly `SIZE` bytes.
    fn decode(b: &[u8]) -> f64;

    /// Converts `dst.len()` consecutive elements starting at the beginning of `src`.
    #[inline]
    fn convert(src: &[u8], dst: &mut [f64]) {
        for (d, s) in dst.iter_mut().zip(src.chunks_exact(Self::SIZE)) {
            *d = Self::decode(s);
        }
    }

    /// Element `idx` of `src`.
    #[inline]
    fn at(src: &[u8], idx: usize) -> f64 {
        Self::decode(&src[idx * Self::SIZE..idx * Self::SIZE + Self::SIZE])
    }
}

/// float16 bits to f64 without branches, so that conversion loops vectorise: the exponent and
/// mantissa are moved into place as an f32 and rescaled by 2^112 (exact for normal and subnormal
/// values); infinities and NaNs get an all-ones exponent.
#[inline(always)]
fn f16_bits_to_f64(h: u16) -> f64 {
    let magnitude = u32::from(h & 0x7fff);
    let shifted = magnitude << 13;
    let scaled = (f32::from_bits(shifted) * f32::from_bits(0x7780_0000)).to_bits();
    let bits = if magnitude >= 0x7c00 {
        shifted | 0x7f80_0000
    } else {
        scaled
    };
    f64::from(f32::from_bits(bits | (u32::from(h & 0x8000) << 16)))
}

pub(crate) struct F16Le;
impl Elem for F16Le {
    const SIZE: usize = 2;
    #[inline(always)]
    fn decode(b: &[u8]) -> f64 {
        f16_bits_to_f64(u16::from_le_bytes([b[0], b[1]]))
    }
}
pub(crate) struct F16Be;
impl Elem for F16Be {
    const SIZE: usize = 2;
    #[inline(always)]
    fn decode(b: &[u8]) -> f64 {
        f16_bits_to_f64(u16::from_be_bytes([b[0], b[1]]))
    }
}
pub(crate) struct Bf16Le;
impl Elem for Bf16Le {
    const SIZE: usize = 2;
    #[inline(always)]
    fn decode(b: &[u8]) -> f64 {
        bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f64()
    }
}
pub(crate) struct Bf16Be;
impl Elem for Bf16Be {
    const SIZE: usize = 2;
    #[inline(always)]
    fn decode(b: &[u8]) -> f64 {
        bf16::from_bits(u16::from_be_bytes([b[0], b[1]])).to_f64()
    }
}
pub(crate) struct F32Le;
impl Elem for F32Le {
    const SIZE: usize = 4;
    #[inline(always)]
    fn decode(b: &[u8]) -> f64 {
        f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}
pub(crate) struct F32Be;
impl Elem for F32Be {
    const SIZE: usize = 4;
    #[inline(always)]
    fn decode(b: &[u8]) -> f64 {
        f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}
pub(crate) struct F64Le;
impl Elem for F64Le {
    const SIZE: usize = 8;
    #[inline(always)]
    fn decode(b: &[u8]) -> f64 {
        f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}
pub(crate) struct F64Be;
impl Elem for F64Be {
    const SIZE: usize = 8;
    #[inline(always)]
    fn decode(b: &[u8]) -> f64 {
        f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

/// Encodes one f64 value as `dtype` in the given byte order, appending to `out` (for writers).
pub(crate) fn encode(value: f64, dtype: &DType, big_endian: bool, out: &mut Vec<u8>) {
    macro_rules! push {
        ($v:expr) => {
            if big_endian {
                out.extend_from_slice(&$v.to_be_bytes())
            } else {
                out.extend_from_slice(&$v.to_le_bytes())
            }
        };
    }
    match dtype {
        DType::F16 => push!(f16::from_f64(value).to_bits()),
        DType::BF16 => push!(bf16::from_f64(value).to_bits()),
        DType::F32 => push!((value as f32)),
        DType::F64 | DType::Unsupported(_) => push!(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_known_bit_patterns() {
        assert_eq!(F16Le::decode(&[0x00, 0x3c]), 1.0);
        assert_eq!(F16Be::decode(&[0xc0, 0x00]), -2.0);
        assert_eq!(Bf16Le::decode(&[0x80, 0x3f]), 1.0);
        assert_eq!(F32Le::decode(&1.5f32.to_le_bytes()), 1.5);
        assert_eq!(F32Be::decode(&(-0.25f32).to_be_bytes()), -0.25);
        assert_eq!(F64Be::decode(&3.25f64.to_be_bytes()), 3.25);
        assert!(F16Le::decode(&[0x00, 0x7c]).is_infinite());
        // The branch-free float16 conversion agrees with `half` on every bit pattern.
        let all: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        let mut ours = vec![0.0; 1 << 16];
        F16Le::convert(&all, &mut ours);
        for (i, v) in ours.iter().enumerate() {
            let want = f16::from_bits(i as u16).to_f64();
            assert!(
                v.to_bits() == want.to_bits() || (v.is_nan() && want.is_nan()),
                "bits {i:#x}: {v} vs {want}"
            );
        }
    }
}
