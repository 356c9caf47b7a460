//! The container format, exactly as specified in `format/SPEC.md` (version 5).
//!
//! Layout: the header ([`Header`]: magic `DDPC`, version, flags, varint geometry and chain,
//! a 4-byte model id, optional parameters, `body_words`, `check`, `header_crc`), then
//! `body_words` little-endian `u32` words. There is no packet index: a decoder learns where a
//! truncated prefix ends from the entropy decoder itself (SPEC § 5). A file cut anywhere after
//! the header is a valid prefix ([`Stream::truncated`]).
//!
//! Reading never panics and never allocates from an unchecked length: every malformed input
//! is an [`Error::Format`], [`Error::Checksum`] or [`Error::LimitsExceeded`].

pub mod header;

pub use header::{Channels, ColourMode, Header, Params, ScheduleKind, VarianceCode, MAGIC, TILE_SIZE, VERSION};

use crate::error::{format_err, Error, Result};

/// Reader limits (format/SPEC.md § 6). [`Limits::default`] gives the spec's defaults, which a
/// writer must also respect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest width (default 65535).
    pub max_width: u32,
    /// Largest height (default 65535).
    pub max_height: u32,
    /// Largest width × height (default 2^26).
    pub max_pixels: u64,
    /// Largest body_words (default 2^28, i.e. 1 GiB).
    pub max_body_words: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_width: 65535, max_height: 65535, max_pixels: 1 << 26, max_body_words: 1 << 28 }
    }
}

/// A parsed (possibly truncated) stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// The header; `body_words` and `check` describe the *complete* stream.
    pub header: Header,
    /// The body words present (all of them unless `truncated`), word 0 first.
    pub words: Vec<u32>,
    /// True when the file held fewer than `body_words` words (a prefix).
    pub truncated: bool,
    /// Bytes of the header.
    pub header_len: usize,
}

/// CRC-32 of body words as stored (little-endian).
pub fn body_crc32(words: &[u32]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for w in words {
        h.update(&w.to_le_bytes());
    }
    h.finalize()
}

/// Parses a complete or truncated stream (format/SPEC.md § 7 gives the order of checks). The
/// body CRC of a complete lossy stream is checked here; the pixel CRC is the decoder's.
pub fn read_stream(bytes: &[u8], limits: &Limits) -> Result<Stream> {
    let (header, at) = Header::read(bytes, limits)?;
    let rest = &bytes[at..];
    let full = header.body_words as usize * 4;
    if rest.len() > full {
        return Err(format_err(format!(
            "trailing bytes: {} after a body of {} words",
            rest.len() - full,
            header.body_words
        )));
    }
    // at most the bytes present: no allocation beyond the input
    let words: Vec<u32> = rest.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let truncated = rest.len() < full;
    if !truncated && !header.lossless && body_crc32(&words) != header.check {
        return Err(Error::Checksum("body CRC mismatch (corrupted stream)".into()));
    }
    Ok(Stream { header, words, truncated, header_len: at })
}

/// Serialises a complete stream: `body_words` is set from `words`, and for a lossy stream the
/// `check` field to the body CRC (a lossless stream's `check` is the caller's pixel CRC).
/// Invalid headers are [`Error::Parameter`].
pub fn write_stream(header: &Header, words: &[u32]) -> Result<Vec<u8>> {
    let mut h = header.clone();
    h.body_words = u32::try_from(words.len()).map_err(|_| Error::LimitsExceeded(format!("body of {} words", words.len())))?;
    if !h.lossless {
        h.check = body_crc32(words);
    }
    let mut out = h.encode()?;
    out.reserve(words.len() * 4);
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(lossless: bool) -> Header {
        Header {
            model_id: [9, 8, 7, 6],
            width: 40,
            height: 33,
            channels: Channels::Rgba,
            taus: ScheduleKind::Even.generate(1000, 20).unwrap(),
            variance: VarianceCode::Large,
            params: Params::default(),
            lossless,
            body_words: 0,
            check: 77,
        }
    }

    #[test]
    fn round_trip_prefixes_and_trailing_bytes() {
        let words: Vec<u32> = (1..=9).map(|i| i * 0x0101_0101).collect();
        for lossless in [false, true] {
            let b = write_stream(&header(lossless), &words).unwrap();
            let s = read_stream(&b, &Limits::default()).unwrap();
            assert_eq!((s.words.clone(), s.truncated), (words.clone(), false));
            let hl = s.header_len;
            for cut in hl..b.len() {
                let p = read_stream(&b[..cut], &Limits::default()).unwrap();
                assert!(p.truncated);
                assert_eq!(p.words, words[..(cut - hl) / 4]);
            }
            let mut t = b.clone();
            t.push(0);
            assert!(read_stream(&t, &Limits::default()).unwrap_err().to_string().contains("trailing"));
        }
    }

    #[test]
    fn corrupted_lossy_body_is_a_checksum_error() {
        let words = vec![5u32, 6, 7];
        let mut b = write_stream(&header(false), &words).unwrap();
        let n = b.len();
        b[n - 2] ^= 4;
        assert!(matches!(read_stream(&b, &Limits::default()), Err(Error::Checksum(_))));
    }

    #[test]
    fn limits_are_enforced() {
        let b = write_stream(&Header { width: 5000, height: 5000, ..header(true) }, &[1]).unwrap();
        let small = Limits { max_pixels: 1 << 20, ..Limits::default() };
        assert!(matches!(read_stream(&b, &small), Err(Error::LimitsExceeded(_))));
        assert!(read_stream(&b, &Limits::default()).is_ok());
    }
}
