//! Fuzz target: like `read_stream`, but the input's header, table and body CRCs are recomputed
//! first (where the length fields allow), so that mutations reach the field validation and the
//! step-table decoder instead of stopping at a CRC mismatch.
//!
//! Run: `cargo +nightly fuzz run read_stream_resealed fuzz/corpus/resealed format/vectors`
#![no_main]

use ddpm_codec::bitstream::{read_stream, write_stream, Limits};
use libfuzzer_sys::fuzz_target;

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Recomputes body_crc32 (for a complete body), header_crc32 and table_crc32 in place.
fn reseal(b: &mut [u8]) {
    let Some(h) = u32_at(b, 5) else { return };
    let Some(hend) = 9usize.checked_add(h) else {
        return;
    };
    if hend.checked_add(4).map_or(true, |e| e > b.len()) || h < 80 {
        return;
    }
    let k = u16::from_le_bytes([b[9 + 48], b[9 + 49]]) as usize;
    // S: the explicit taus (schedule_kind 0) take 2K bytes, generated schedules none.
    let s = if b[9 + 50] == 0 { 2 * k } else { 0 };
    let t = hend + 4;
    if let Some(l) = u32_at(b, t) {
        if let Some(tend) = (t + 4).checked_add(l) {
            if tend.checked_add(4).map_or(false, |e| e <= b.len()) {
                let crc = crc32fast::hash(&b[t..tend]);
                put_u32(b, tend, crc);
                // Body CRC: only meaningful when the body is complete and the field exists.
                let body = tend + 4;
                let field = 9 + 72 + s;
                if h == 80 + s && field + 4 <= hend {
                    let crc = crc32fast::hash(&b[body..]);
                    put_u32(b, field, crc);
                }
            }
        }
    }
    let crc = crc32fast::hash(&b[..hend]);
    put_u32(b, hend, crc);
}

fuzz_target!(|data: &[u8]| {
    let mut b = data.to_vec();
    reseal(&mut b);
    if let Ok(stream) = read_stream(&b, &Limits::default()) {
        let again = write_stream(&stream).expect("a stream that was read must be writable");
        assert!(again.len() <= b.len() && b.len() - again.len() < 4);
        if stream.truncated {
            assert_eq!(&b[..again.len()], &again[..]);
        } else {
            assert_eq!(again, b);
        }
    }
});
