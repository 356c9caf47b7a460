//! The step table of format/SPEC.md § 3: cumulative `words_needed` per packet, coded as
//! order-0 Exp-Golomb deltas, MSB-first, zero-padded.

use super::bits::{BitReader, BitWriter, MAX_UE_BITS};
use crate::error::{format_err, Result};

/// Largest legal `table_len` for `num_packets` packets: `ceil(65 P / 8)`.
pub fn max_table_len(num_packets: usize) -> usize {
    (num_packets * MAX_UE_BITS).div_ceil(8)
}

/// Structural rule for `table_len`: 0 exactly when there are no packets, at most
/// `ceil(65 P / 8)` otherwise.
pub fn check_table_len(table_len: usize, num_packets: usize) -> Result<()> {
    let max = max_table_len(num_packets);
    let min = usize::from(num_packets > 0);
    if table_len < min || table_len > max {
        return Err(format_err(format!(
            "table_len {table_len} outside {min}..={max} for {num_packets} packets"
        )));
    }
    Ok(())
}

/// Checks that `words_needed` has `num_packets` entries, is non-decreasing, and ends at
/// `body_words`.
pub fn check_words_needed(words_needed: &[u32], num_packets: usize, body_words: u32) -> Result<()> {
    if words_needed.len() != num_packets {
        return Err(format_err(format!(
            "step table has {} entries, header implies {num_packets} packets",
            words_needed.len()
        )));
    }
    if let Some(i) = words_needed.windows(2).position(|w| w[0] > w[1]) {
        return Err(format_err(format!(
            "words_needed decreases at packet {}: {} > {}",
            i + 1,
            words_needed[i],
            words_needed[i + 1]
        )));
    }
    // With no packets (K = 1, no lossless step) the body must be empty.
    let last = words_needed.last().copied().unwrap_or(0);
    if last != body_words {
        return Err(format_err(format!(
            "last words_needed {last} differs from body_words {body_words}"
        )));
    }
    Ok(())
}

/// Encodes the table bytes (no length or CRC). Does not validate.
pub fn encode_table(words_needed: &[u32]) -> Vec<u8> {
    let mut w = BitWriter::new();
    let mut prev = 0u32;
    for &x in words_needed {
        w.write_ue(x.wrapping_sub(prev));
        prev = x;
    }
    w.finish()
}

/// Decodes exactly `num_packets` entries from exactly the table bytes (CRC already checked),
/// and checks the rules of § 3 including `words_needed[P − 1] = body_words`.
pub fn decode_table(table: &[u8], num_packets: usize, body_words: u32) -> Result<Vec<u32>> {
    check_table_len(table.len(), num_packets)?;
    if num_packets == 0 {
        check_words_needed(&[], 0, body_words)?;
        return Ok(Vec::new());
    }
    let mut r = BitReader::new(table);
    // num_packets ≤ 65536 (checked header); each entry costs at least one table bit.
    let mut out = Vec::with_capacity(num_packets.min(table.len() * 8));
    let mut sum = 0u32;
    for i in 0..num_packets {
        let d = r.read_ue()?;
        sum = sum
            .checked_add(d)
            .ok_or_else(|| format_err(format!("step table: words_needed[{i}] exceeds 2^32 - 1")))?;
        out.push(sum);
    }
    r.finish_padded()?;
    check_words_needed(&out, num_packets, body_words)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_from_vectors() {
        // deltas 1, 2, 2 → 010 011 011 → 0100_1101 1000_0000
        assert_eq!(encode_table(&[1, 3, 5]), vec![0x4D, 0x80]);
        assert_eq!(decode_table(&[0x4D, 0x80], 3, 5).unwrap(), vec![1, 3, 5]);
    }

    #[test]
    fn no_packets() {
        assert!(encode_table(&[]).is_empty());
        assert_eq!(decode_table(&[], 0, 0).unwrap(), Vec::<u32>::new());
        check_words_needed(&[], 0, 0).unwrap();
        assert!(check_words_needed(&[], 0, 3).is_err());
    }

    #[test]
    fn zero_deltas_cost_one_bit() {
        let wn = vec![0u32; 16];
        assert_eq!(encode_table(&wn), vec![0xFF, 0xFF]);
        assert_eq!(decode_table(&[0xFF, 0xFF], 16, 0).unwrap(), wn);
    }

    #[test]
    fn rejects_bad_tables() {
        assert!(decode_table(&[0x4D, 0x80], 3, 6).is_err()); // wrong body_words
        assert!(decode_table(&[0x4D, 0x80, 0x00], 3, 5).is_err()); // left-over byte
        assert!(decode_table(&[0x4D, 0x81], 3, 5).is_err()); // padding
        assert!(decode_table(&[0x4D], 3, 5).is_err()); // runs past
        assert!(decode_table(&[], 1, 0).is_err());
        assert!(decode_table(&[0x80], 0, 0).is_err());
        assert!(decode_table(&[], 0, 1).is_err());
        // overflow of the running sum: u32::MAX then 1
        let mut w = BitWriter::new();
        w.write_ue(u32::MAX);
        w.write_ue(1);
        assert!(decode_table(&w.finish(), 2, 0).is_err());
        assert!(check_words_needed(&[3, 2], 2, 2).is_err());
    }
}
