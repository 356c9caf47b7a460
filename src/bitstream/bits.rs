//! MSB-first bit packing and order-0 Exp-Golomb codes (format/SPEC.md § 3).

use crate::error::{format_err, Result};

/// Longest order-0 Exp-Golomb code of a `u32` (v = 2^32 − 1): 32 zeros + 33 bits.
pub const MAX_UE_BITS: usize = 65;

/// Writes bits MSB-first into bytes; the last byte is zero-padded.
#[derive(Debug, Default, Clone)]
pub struct BitWriter {
    bytes: Vec<u8>,
    /// Number of bits written in total.
    nbits: usize,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one bit.
    pub fn write_bit(&mut self, bit: bool) {
        if self.nbits % 8 == 0 {
            self.bytes.push(0);
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 0x80 >> (self.nbits % 8);
        }
        self.nbits += 1;
    }

    /// Appends the `n` low bits of `value`, most significant first (`n` ≤ 64).
    pub fn write_bits(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 64);
        for k in (0..n).rev() {
            self.write_bit((value >> k) & 1 == 1);
        }
    }

    /// Appends the order-0 Exp-Golomb code of `v`.
    pub fn write_ue(&mut self, v: u32) {
        let x = u64::from(v) + 1;
        let n = 64 - x.leading_zeros(); // bit length of v + 1, 1..=33
        for _ in 0..n - 1 {
            self.write_bit(false);
        }
        self.write_bits(x, n);
    }

    /// Number of bits written so far.
    pub fn bit_len(&self) -> usize {
        self.nbits
    }

    /// The packed bytes, zero-padded to a byte boundary.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads bits MSB-first from a byte slice; every read past the end is a Format error.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at bit 0 of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Reads one bit.
    pub fn read_bit(&mut self) -> Result<bool> {
        let byte = self
            .bytes
            .get(self.pos / 8)
            .ok_or_else(|| format_err("step table: Exp-Golomb code runs past the table bytes"))?;
        let bit = (byte >> (7 - self.pos % 8)) & 1 == 1;
        self.pos += 1;
        Ok(bit)
    }

    /// Reads `n` bits (≤ 64) as an unsigned integer, most significant first.
    pub fn read_bits(&mut self, n: u32) -> Result<u64> {
        debug_assert!(n <= 64);
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.read_bit()?);
        }
        Ok(v)
    }

    /// Reads one order-0 Exp-Golomb code; rejects codes longer than 65 bits and values above
    /// `u32::MAX`.
    pub fn read_ue(&mut self) -> Result<u32> {
        let mut zeros = 0u32;
        while !self.read_bit()? {
            zeros += 1;
            if zeros > 32 {
                return Err(format_err(
                    "step table: Exp-Golomb code with more than 32 leading zeros",
                ));
            }
        }
        let rest = self.read_bits(zeros)?;
        let x = (1u64 << zeros) | rest; // v + 1
        u32::try_from(x - 1)
            .map_err(|_| format_err("step table: Exp-Golomb value exceeds 2^32 - 1"))
    }

    /// Current bit position.
    pub fn bit_pos(&self) -> usize {
        self.pos
    }

    /// Checks that the reader stopped in the last byte and that the padding bits are zero;
    /// returns the number of bytes consumed.
    pub fn finish_padded(self) -> Result<usize> {
        let used = self.pos.div_ceil(8);
        if used != self.bytes.len() {
            return Err(format_err(format!(
                "step table: {} byte(s) left over after the last code",
                self.bytes.len() - used
            )));
        }
        if self.pos % 8 != 0 {
            let last = self.bytes[used - 1];
            let pad_mask = 0xFFu8 >> (self.pos % 8);
            if last & pad_mask != 0 {
                return Err(format_err("step table: non-zero padding bits"));
            }
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits_of(v: u32) -> String {
        let mut w = BitWriter::new();
        w.write_ue(v);
        let n = w.bit_len();
        let bytes = w.finish();
        (0..n)
            .map(|i| {
                if (bytes[i / 8] >> (7 - i % 8)) & 1 == 1 {
                    '1'
                } else {
                    '0'
                }
            })
            .collect()
    }

    #[test]
    fn spec_examples() {
        assert_eq!(bits_of(0), "1");
        assert_eq!(bits_of(1), "010");
        assert_eq!(bits_of(2), "011");
        assert_eq!(bits_of(3), "00100");
        assert_eq!(bits_of(7), "0001000");
        assert_eq!(bits_of(u32::MAX).len(), MAX_UE_BITS);
    }

    #[test]
    fn round_trip_edge_values() {
        let vals = [
            0u32,
            1,
            2,
            3,
            254,
            255,
            256,
            65535,
            1 << 31,
            u32::MAX - 1,
            u32::MAX,
        ];
        let mut w = BitWriter::new();
        for &v in &vals {
            w.write_ue(v);
        }
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        for &v in &vals {
            assert_eq!(r.read_ue().unwrap(), v);
        }
        r.finish_padded().unwrap();
    }

    #[test]
    fn rejects_too_long_and_too_large() {
        // 33 zeros then a one: too many leading zeros.
        let bytes = [0u8, 0, 0, 0, 0x40];
        assert!(BitReader::new(&bytes).read_ue().is_err());
        // 32 zeros, then 1 followed by 32 bits giving v + 1 = 2^32 + 1 → v = 2^32: too large.
        let mut w = BitWriter::new();
        w.write_bits(0, 32);
        w.write_bits((1u64 << 32) | 1, 33);
        let bytes = w.finish();
        assert!(BitReader::new(&bytes).read_ue().is_err());
        // Empty input.
        assert!(BitReader::new(&[]).read_ue().is_err());
    }

    #[test]
    fn padding_rules() {
        let mut r = BitReader::new(&[0x81]); // code "1", then padding 0000001
        assert_eq!(r.read_ue().unwrap(), 0);
        assert!(r.finish_padded().is_err());
        let mut r = BitReader::new(&[0x80, 0x00]); // left-over byte
        assert_eq!(r.read_ue().unwrap(), 0);
        assert!(r.finish_padded().is_err());
        let mut r = BitReader::new(&[0x80]);
        assert_eq!(r.read_ue().unwrap(), 0);
        assert_eq!(r.finish_padded().unwrap(), 1);
    }
}
