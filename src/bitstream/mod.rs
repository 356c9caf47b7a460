//! The container format, exactly as specified in `format/SPEC.md` (version 2).
//!
//! Layout: magic `DDPC`, version, `header_len`, header fields ([`Header`]), `header_crc32`;
//! `table_len`, the step table (cumulative `words_needed` per packet, Exp-Golomb deltas),
//! `table_crc32`; then `body_words` little-endian `u32` words. A file cut anywhere after the
//! table is a valid prefix ([`Stream::truncated`]).
//!
//! Reading never panics and never allocates from an unchecked length: every malformed input
//! is an [`Error::Format`], [`Error::Checksum`] or [`Error::LimitsExceeded`].

pub mod bits;
pub mod header;
pub mod table;

pub use header::{
    Channels, ColourMode, Header, ScheduleKind, VarianceCode, HEADER_FIXED_LEN, TILE_SIZE,
};

use crate::error::{format_err, Error, Result};

/// File magic.
pub const MAGIC: [u8; 4] = *b"DDPC";
/// Format version written and read.
pub const VERSION: u8 = 2;
/// Bytes before the header fields: magic, version, header_len.
pub const PREAMBLE_LEN: usize = 9;
/// Structural minimum of `header_len` (a generated schedule: no explicit taus).
pub const MIN_HEADER_LEN_STRUCTURAL: usize = HEADER_FIXED_LEN;
/// Structural maximum of `header_len` (K = 65535 explicit taus).
pub const MAX_HEADER_LEN_STRUCTURAL: usize = HEADER_FIXED_LEN + 2 * u16::MAX as usize;

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
    /// Largest t_max (default 10000).
    pub max_t_max: u32,
    /// Largest K (default 10000).
    pub max_steps: u32,
    /// Largest batch_tiles (default 4096).
    pub max_batch_tiles: u32,
    /// Largest header_len in bytes (default 1 MiB).
    pub max_header_len: u32,
    /// Largest table_len in bytes (default 1 MiB).
    pub max_table_len: u32,
    /// Largest body_words (default 2^28, i.e. 1 GiB).
    pub max_body_words: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_width: 65535,
            max_height: 65535,
            max_pixels: 1 << 26,
            max_t_max: 10000,
            max_steps: 10000,
            max_batch_tiles: 4096,
            max_header_len: 1 << 20,
            max_table_len: 1 << 20,
            max_body_words: 1 << 28,
        }
    }
}

/// A parsed (possibly truncated) stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// The header; `body_words` and `body_crc32` describe the *complete* body.
    pub header: Header,
    /// Cumulative words needed to decode packets `0..=i`; `num_packets` entries.
    pub words_needed: Vec<u32>,
    /// The body words present (all of them unless `truncated`), word 0 first.
    pub words: Vec<u32>,
    /// True when the file held fewer than `body_words` words (a prefix; body CRC unchecked).
    pub truncated: bool,
}

impl Stream {
    /// Number of leading packets decodable from the words present
    /// (those `i` with `words_needed[i] <= words.len()`).
    pub fn packets_available(&self) -> usize {
        let w = self.words.len();
        self.words_needed.partition_point(|&n| n as usize <= w)
    }

    /// A copy keeping only the words needed for the first `packets` packets (clamped to
    /// `num_packets`); `truncated` is set when that is less than the complete body.
    /// `prefix(0)` keeps no words.
    pub fn prefix(&self, packets: usize) -> Stream {
        let keep = match packets.min(self.words_needed.len()) {
            0 => 0,
            n => self.words_needed[n - 1] as usize,
        }
        .min(self.words.len());
        Stream {
            header: self.header.clone(),
            words_needed: self.words_needed.clone(),
            words: self.words[..keep].to_vec(),
            truncated: keep < self.header.body_words as usize,
        }
    }
}

fn truncated_header(what: &str, need: usize, have: usize) -> Error {
    format_err(format!(
        "truncated header: {what} needs {need} bytes, file has {have}"
    ))
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Checks the magic `DDPC` at offset 0.
pub fn read_magic(bytes: &[u8]) -> Result<()> {
    let n = bytes.len().min(4);
    if bytes[..n] != MAGIC[..n] {
        return Err(format_err(
            "bad magic: not a ddpm-codec stream (expected \"DDPC\")",
        ));
    }
    if n < 4 {
        return Err(truncated_header("magic", 4, bytes.len()));
    }
    Ok(())
}

/// Reads the format version (offset 4); only version [`VERSION`] (2) is accepted.
pub fn read_version(bytes: &[u8]) -> Result<u8> {
    let v = *bytes
        .get(4)
        .ok_or_else(|| truncated_header("version", 5, bytes.len()))?;
    if v != VERSION {
        return Err(format_err(format!(
            "unsupported format version {v} (this reader supports {VERSION})"
        )));
    }
    Ok(v)
}

/// Reads `header_len` (offset 5) and checks its structural bound and the limit.
pub fn read_header_len(bytes: &[u8], limits: &Limits) -> Result<usize> {
    let h = le_u32(bytes, 5).ok_or_else(|| truncated_header("header_len", 9, bytes.len()))?;
    let h = h as usize;
    if !(MIN_HEADER_LEN_STRUCTURAL..=MAX_HEADER_LEN_STRUCTURAL).contains(&h) {
        return Err(format_err(format!(
            "header_len {h} outside {MIN_HEADER_LEN_STRUCTURAL}..={MAX_HEADER_LEN_STRUCTURAL}"
        )));
    }
    if h > limits.max_header_len as usize {
        return Err(Error::LimitsExceeded(format!(
            "header_len {h} exceeds the limit {}",
            limits.max_header_len
        )));
    }
    Ok(h)
}

/// Reads magic, version, header_len, checks `header_crc32`, then decodes and validates the
/// header fields. Returns the header and the offset of `table_len`.
pub fn read_header(bytes: &[u8], limits: &Limits) -> Result<(Header, usize)> {
    read_magic(bytes)?;
    read_version(bytes)?;
    let h = read_header_len(bytes, limits)?;
    let fields_end = PREAMBLE_LEN + h;
    let stored = le_u32(bytes, fields_end)
        .ok_or_else(|| truncated_header("header", fields_end + 4, bytes.len()))?;
    let actual = crc32fast::hash(&bytes[..fields_end]);
    if stored != actual {
        return Err(Error::Checksum(format!(
            "header CRC mismatch (stored 0x{stored:08x}, computed 0x{actual:08x})"
        )));
    }
    let header = Header::decode_fields(&bytes[PREAMBLE_LEN..fields_end], limits)?;
    Ok((header, fields_end + 4))
}

/// Reads the step table starting at `offset` (the `table_len` field): length bounds, presence,
/// `table_crc32`, then the entries. Returns `words_needed` and the body offset.
pub fn read_step_table(
    bytes: &[u8],
    offset: usize,
    header: &Header,
    limits: &Limits,
) -> Result<(Vec<u32>, usize)> {
    let need = offset.saturating_add(4);
    let len = le_u32(bytes, offset)
        .ok_or_else(|| truncated_header("table_len", need, bytes.len()))? as usize;
    let p = header.num_packets();
    table::check_table_len(len, p)?;
    if len > limits.max_table_len as usize {
        return Err(Error::LimitsExceeded(format!(
            "table_len {len} exceeds the limit {}",
            limits.max_table_len
        )));
    }
    let table_start = offset + 4;
    let table_end = table_start + len;
    let stored = le_u32(bytes, table_end)
        .ok_or_else(|| truncated_header("step table", table_end + 4, bytes.len()))?;
    let actual = crc32fast::hash(&bytes[offset..table_end]);
    if stored != actual {
        return Err(Error::Checksum(format!(
            "step table CRC mismatch (stored 0x{stored:08x}, computed 0x{actual:08x})"
        )));
    }
    let wn = table::decode_table(&bytes[table_start..table_end], p, header.body_words)?;
    Ok((wn, table_end + 4))
}

/// Reads the body starting at `offset`: returns the whole words present and whether the body
/// is truncated. A complete body is checked against `body_crc32`; a prefix cannot be.
pub fn read_body(bytes: &[u8], offset: usize, header: &Header) -> Result<(Vec<u32>, bool)> {
    let rest = bytes.get(offset..).unwrap_or(&[]);
    let full = header.body_words as u64 * 4;
    let r = rest.len() as u64;
    if r > full {
        return Err(format_err(format!(
            "trailing bytes: {} byte(s) after the {}-word body",
            r - full,
            header.body_words
        )));
    }
    let words: Vec<u32> = rest
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if r == full {
        let actual = crc32fast::hash(rest);
        if actual != header.body_crc32 {
            return Err(Error::Checksum(format!(
                "body CRC mismatch (stored 0x{:08x}, computed 0x{actual:08x})",
                header.body_crc32
            )));
        }
        Ok((words, false))
    } else {
        Ok((words, true))
    }
}

/// Parses a complete or truncated stream (format/SPEC.md § 7 gives the order of checks).
pub fn read_stream(bytes: &[u8], limits: &Limits) -> Result<Stream> {
    let (header, table_at) = read_header(bytes, limits)?;
    let (words_needed, body_at) = read_step_table(bytes, table_at, &header, limits)?;
    let (words, truncated) = read_body(bytes, body_at, &header)?;
    Ok(Stream {
        header,
        words_needed,
        words,
        truncated,
    })
}

/// Magic, version, header_len, header fields and header CRC of a validated header.
pub fn write_header(header: &Header) -> Result<Vec<u8>> {
    header.validate(&Limits::default()).map_err(to_parameter)?;
    let fields = header.encode_fields();
    let mut out = Vec::with_capacity(PREAMBLE_LEN + fields.len() + 4);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    out.extend_from_slice(&fields);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// `table_len`, table bytes and `table_crc32` for `words_needed` (checked against `header`).
pub fn write_step_table(words_needed: &[u32], header: &Header) -> Result<Vec<u8>> {
    table::check_words_needed(words_needed, header.num_packets(), header.body_words)
        .map_err(to_parameter)?;
    let t = table::encode_table(words_needed);
    let mut out = Vec::with_capacity(t.len() + 8);
    out.extend_from_slice(&(t.len() as u32).to_le_bytes());
    out.extend_from_slice(&t);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Serialises a stream. For a complete stream (`truncated == false`) `body_words` and
/// `body_crc32` are computed from `words` (the header's values are ignored). For a truncated
/// stream the header's values describe the full body and `words` must be shorter; the output
/// is then the corresponding prefix file. Invalid input is [`Error::Parameter`] (or
/// [`Error::LimitsExceeded`]): the writer refuses anything a default reader would reject.
pub fn write_stream(stream: &Stream) -> Result<Vec<u8>> {
    let mut header = stream.header.clone();
    if stream.truncated {
        if stream.words.len() >= header.body_words as usize {
            return Err(Error::Parameter(format!(
                "truncated stream holds {} words, but body_words is {}",
                stream.words.len(),
                header.body_words
            )));
        }
    } else {
        header.body_words = u32::try_from(stream.words.len())
            .map_err(|_| Error::LimitsExceeded(format!("body of {} words", stream.words.len())))?;
        let mut h = crc32fast::Hasher::new();
        for w in &stream.words {
            h.update(&w.to_le_bytes());
        }
        header.body_crc32 = h.finalize();
    }
    let mut out = write_header(&header)?;
    out.extend_from_slice(&write_step_table(&stream.words_needed, &header)?);
    out.reserve(stream.words.len() * 4);
    for w in &stream.words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    Ok(out)
}

fn to_parameter(e: Error) -> Error {
    match e {
        Error::Format(m) => Error::Parameter(m),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stream {
        Stream {
            header: Header {
                model_sha256: [1; 32],
                width: 64,
                height: 32,
                channels: Channels::Rgba,
                colour_mode: ColourMode::Rgb,
                tile_size: 32,
                batch_tiles: 2,
                t_max: 1000,
                taus: vec![10, 50, 300, 1000],
                variance: VarianceCode::Large,
                chunk_bits_q8: 2560,
                margin_bits: 7,
                min_log2_candidates: 4,
                max_log2_candidates: 18,
                skip_below_q8: 128,
                seed: u64::MAX,
                lossless: false,
                body_words: 0,
                body_crc32: 0,
                pixel_crc32: 5,
            },
            words_needed: vec![0, 2, 4],
            words: vec![1, 2, 3, u32::MAX],
            truncated: false,
        }
    }

    #[test]
    fn round_trip_and_prefixes() {
        let s = sample();
        let bytes = write_stream(&s).unwrap();
        let r = read_stream(&bytes, &Limits::default()).unwrap();
        assert_eq!(r.words, s.words);
        assert_eq!(r.header.body_words, 4);
        assert!(!r.truncated);
        assert_eq!(r.packets_available(), 3);
        let p = r.prefix(2);
        assert_eq!(p.words, vec![1, 2]);
        assert!(p.truncated);
        assert_eq!(p.packets_available(), 2);
        let pb = write_stream(&p).unwrap();
        assert_eq!(&bytes[..pb.len()], &pb[..]);
        assert_eq!(read_stream(&pb, &Limits::default()).unwrap(), p);
        // prefix(1): words_needed[0] = 0, so no words, but packet 0 is available.
        assert_eq!(r.prefix(1).packets_available(), 1);
        assert!(!r.prefix(3).truncated);
    }

    #[test]
    fn writer_rejects_bad_input() {
        let mut s = sample();
        s.words_needed = vec![0, 5, 4];
        assert!(matches!(write_stream(&s), Err(Error::Parameter(_))));
        let mut s = sample();
        s.header.tile_size = 16;
        assert!(matches!(write_stream(&s), Err(Error::Parameter(_))));
        let mut s = sample();
        s.truncated = true;
        s.header.body_words = 4;
        assert!(matches!(write_stream(&s), Err(Error::Parameter(_))));
    }

    #[test]
    fn short_inputs() {
        for b in [
            &b""[..],
            b"D",
            b"DDP",
            b"DDPC",
            b"DDPC\x02",
            b"DDPC\x02\x50\x00",
        ] {
            assert!(matches!(
                read_stream(b, &Limits::default()),
                Err(Error::Format(_))
            ));
        }
        assert!(
            matches!(read_stream(b"X", &Limits::default()), Err(Error::Format(m)) if m.contains("magic"))
        );
        for v in [0u8, 1, 3] {
            let b = [b'D', b'D', b'P', b'C', v];
            assert!(
                matches!(read_stream(&b, &Limits::default()), Err(Error::Format(m)) if m.contains("unsupported format version"))
            );
        }
    }
}
