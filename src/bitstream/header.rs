//! The header fields of format/SPEC.md § 2: typed representation, byte encoding, validation.

use std::fmt::Write as _;

use super::Limits;
use crate::error::{format_err, Error, Result};

/// Tile edge required by format version 1.
pub const TILE_SIZE: u16 = 32;
/// Byte length of the header fields without the taus: `header_len = HEADER_FIXED_LEN + 2K`.
pub const HEADER_FIXED_LEN: usize = 79;
/// Byte offset of `num_steps` inside the header fields.
pub const NUM_STEPS_OFFSET: usize = 48;
/// Largest `max_log2_candidates` (a PFR index must fit in a `u32`).
pub const MAX_LOG2_CANDIDATES: u8 = 32;
/// Flag bit 0: the lossless final step is present.
pub const FLAG_LOSSLESS: u8 = 0x01;

/// Samples per pixel of the decoded image (field `channels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Channels {
    /// Code 1: grey (one sample per pixel); requires [`ColourMode::GreyReplicated`].
    Grey = 1,
    /// Code 3: RGB.
    Rgb = 3,
    /// Code 4: RGBA with opaque alpha (alpha is not coded; it decodes as 255).
    Rgba = 4,
}

impl Channels {
    /// Number of samples per pixel (1, 3 or 4).
    pub fn count(self) -> usize {
        self as usize
    }
    /// The field code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for Channels {
    type Error = Error;
    fn try_from(v: u8) -> Result<Self> {
        match v {
            1 => Ok(Channels::Grey),
            3 => Ok(Channels::Rgb),
            4 => Ok(Channels::Rgba),
            _ => Err(format_err(format!(
                "unknown channels code {v} (expected 1, 3 or 4)"
            ))),
        }
    }
}

/// How the image's colour is fed to the network (field `colour_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ColourMode {
    /// Code 0: three colour planes are coded.
    Rgb = 0,
    /// Code 1: grey replicated as R = G = B; the final lossless step codes one plane.
    GreyReplicated = 1,
}

impl ColourMode {
    /// The field code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for ColourMode {
    type Error = Error;
    fn try_from(v: u8) -> Result<Self> {
        match v {
            0 => Ok(ColourMode::Rgb),
            1 => Ok(ColourMode::GreyReplicated),
            _ => Err(format_err(format!(
                "unknown colour_mode code {v} (expected 0 or 1)"
            ))),
        }
    }
}

/// Reverse-process variance choice (field `variance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VarianceCode {
    /// Code 0: σ_t² = β̃_t (posterior variance).
    Small = 0,
    /// Code 1: σ_t² = β_t.
    Large = 1,
}

impl VarianceCode {
    /// The field code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for VarianceCode {
    type Error = Error;
    fn try_from(v: u8) -> Result<Self> {
        match v {
            0 => Ok(VarianceCode::Small),
            1 => Ok(VarianceCode::Large),
            _ => Err(format_err(format!(
                "unknown variance code {v} (expected 0 or 1)"
            ))),
        }
    }
}

/// The header of a version-1 stream (format/SPEC.md § 2). `num_steps` is `taus.len()`;
/// `flags` is [`Header::lossless`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// SHA-256 of the model weights file.
    pub model_sha256: [u8; 32],
    /// Image width in pixels (≥ 1).
    pub width: u32,
    /// Image height in pixels (≥ 1).
    pub height: u32,
    /// Samples per pixel of the decoded image.
    pub channels: Channels,
    /// Colour handling.
    pub colour_mode: ColourMode,
    /// Tile edge; 32 in version 1.
    pub tile_size: u16,
    /// Tiles per network call (1..=4096).
    pub batch_tiles: u16,
    /// Number of diffusion steps T of the model schedule.
    pub t_max: u16,
    /// Coded timesteps τ_1 < … < τ_K (τ_1 ≥ 1, τ_K = t_max); K = `taus.len()`.
    pub taus: Vec<u16>,
    /// Reverse-process variance.
    pub variance: VarianceCode,
    /// Chunk size B in bits × 256.
    pub chunk_bits_q8: u16,
    /// Extra candidate bits over a chunk's KL.
    pub margin_bits: u8,
    /// log2 of the fewest candidates per chunk.
    pub min_log2_candidates: u8,
    /// log2 of the most candidates per chunk (≤ 32).
    pub max_log2_candidates: u8,
    /// KL threshold (bits × 256) below which a step sends no chunk.
    pub skip_below_q8: u16,
    /// Shared seed.
    pub seed: u64,
    /// Flag bit 0: the lossless final step is present.
    pub lossless: bool,
    /// Words in the complete body. Set by [`super::write_stream`] for complete streams.
    pub body_words: u32,
    /// CRC-32 of the complete body bytes. Set by [`super::write_stream`] for complete streams.
    pub body_crc32: u32,
    /// CRC-32 of the decoded image's interleaved 8-bit samples.
    pub pixel_crc32: u32,
}

impl Header {
    /// K, the number of coded steps.
    pub fn num_steps(&self) -> usize {
        self.taus.len()
    }

    /// Number of packets: K − 1 coded chain steps (x_{τ_K} = x_T is drawn from the seed and
    /// the last chain step x_{τ_1} → x_0 is not channel-simulated), plus one for the lossless
    /// final step that codes x_0's pixels.
    pub fn num_packets(&self) -> usize {
        self.taus.len().saturating_sub(1) + usize::from(self.lossless)
    }

    /// The `flags` byte.
    pub fn flags(&self) -> u8 {
        if self.lossless {
            FLAG_LOSSLESS
        } else {
            0
        }
    }

    /// Chunk size B in bits.
    pub fn chunk_bits(&self) -> f64 {
        f64::from(self.chunk_bits_q8) / 256.0
    }

    /// Skip threshold in bits.
    pub fn skip_below_bits(&self) -> f64 {
        f64::from(self.skip_below_q8) / 256.0
    }

    /// width × height.
    pub fn pixel_count(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Tiles across and down (edges padded).
    pub fn tile_grid(&self) -> (u32, u32) {
        let t = u32::from(self.tile_size.max(1));
        (self.width.div_ceil(t), self.height.div_ceil(t))
    }

    /// `header_len` of this header: 79 + 2K.
    pub fn header_len(&self) -> usize {
        HEADER_FIXED_LEN + 2 * self.taus.len()
    }

    /// Errors with [`Error::ModelMismatch`] unless `sha256` is the header's model hash.
    pub fn check_model(&self, sha256: &[u8; 32]) -> Result<()> {
        if &self.model_sha256 == sha256 {
            Ok(())
        } else {
            Err(Error::ModelMismatch(format!(
                "stream was coded with model {}, loaded model is {}",
                hex(&self.model_sha256),
                hex(sha256)
            )))
        }
    }

    /// Checks every rule of format/SPEC.md § 2 and § 6 (enum codes are enforced by the types).
    /// Structural violations are [`Error::Format`], limit violations [`Error::LimitsExceeded`].
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(format_err(format!(
                "image size {}x{} is empty",
                self.width, self.height
            )));
        }
        if self.width > limits.max_width || self.height > limits.max_height {
            return Err(Error::LimitsExceeded(format!(
                "image size {}x{} exceeds the limit {}x{}",
                self.width, self.height, limits.max_width, limits.max_height
            )));
        }
        if self.pixel_count() > limits.max_pixels {
            return Err(Error::LimitsExceeded(format!(
                "image has {} pixels, limit is {}",
                self.pixel_count(),
                limits.max_pixels
            )));
        }
        if self.channels == Channels::Grey && self.colour_mode != ColourMode::GreyReplicated {
            return Err(format_err("channels = 1 (grey) requires colour_mode = 1"));
        }
        if self.tile_size != TILE_SIZE {
            return Err(format_err(format!(
                "tile_size {} is not supported by format version 1 (must be {TILE_SIZE})",
                self.tile_size
            )));
        }
        if self.batch_tiles == 0 {
            return Err(format_err("batch_tiles is 0"));
        }
        if u32::from(self.batch_tiles) > limits.max_batch_tiles {
            return Err(Error::LimitsExceeded(format!(
                "batch_tiles {} exceeds the limit {}",
                self.batch_tiles, limits.max_batch_tiles
            )));
        }
        if self.t_max == 0 {
            return Err(format_err("t_max is 0"));
        }
        if u32::from(self.t_max) > limits.max_t_max {
            return Err(Error::LimitsExceeded(format!(
                "t_max {} exceeds the limit {}",
                self.t_max, limits.max_t_max
            )));
        }
        let k = self.taus.len();
        if k == 0 {
            return Err(format_err("num_steps is 0"));
        }
        if k > usize::from(u16::MAX) {
            return Err(format_err(format!("num_steps {k} does not fit in a u16")));
        }
        if k > limits.max_steps as usize {
            return Err(Error::LimitsExceeded(format!(
                "num_steps {k} exceeds the limit {}",
                limits.max_steps
            )));
        }
        if self.taus[0] < 1 {
            return Err(format_err("taus[0] is 0 (must be >= 1)"));
        }
        if let Some(i) = self.taus.windows(2).position(|w| w[0] >= w[1]) {
            return Err(format_err(format!(
                "taus are not strictly increasing: taus[{i}] = {} >= taus[{}] = {}",
                self.taus[i],
                i + 1,
                self.taus[i + 1]
            )));
        }
        if self.taus[k - 1] != self.t_max {
            return Err(format_err(format!(
                "last tau {} differs from t_max {}",
                self.taus[k - 1],
                self.t_max
            )));
        }
        if self.chunk_bits_q8 == 0 {
            return Err(format_err("chunk_bits_q8 is 0"));
        }
        if self.max_log2_candidates > MAX_LOG2_CANDIDATES {
            return Err(format_err(format!(
                "max_log2_candidates {} exceeds {MAX_LOG2_CANDIDATES}",
                self.max_log2_candidates
            )));
        }
        if self.min_log2_candidates > self.max_log2_candidates {
            return Err(format_err(format!(
                "min_log2_candidates {} > max_log2_candidates {}",
                self.min_log2_candidates, self.max_log2_candidates
            )));
        }
        if self.body_words > limits.max_body_words {
            return Err(Error::LimitsExceeded(format!(
                "body of {} words exceeds the limit {}",
                self.body_words, limits.max_body_words
            )));
        }
        Ok(())
    }

    /// Encodes the header fields (without magic, version, header_len or CRC).
    /// Does not validate; callers validate first.
    pub fn encode_fields(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.header_len());
        b.extend_from_slice(&self.model_sha256);
        b.extend_from_slice(&self.width.to_le_bytes());
        b.extend_from_slice(&self.height.to_le_bytes());
        b.push(self.channels.code());
        b.push(self.colour_mode.code());
        b.extend_from_slice(&self.tile_size.to_le_bytes());
        b.extend_from_slice(&self.batch_tiles.to_le_bytes());
        b.extend_from_slice(&self.t_max.to_le_bytes());
        // Callers validate K ≤ u16::MAX before encoding; saturate defensively.
        let k = u16::try_from(self.taus.len()).unwrap_or(u16::MAX);
        b.extend_from_slice(&k.to_le_bytes());
        for &t in self.taus.iter().take(usize::from(k)) {
            b.extend_from_slice(&t.to_le_bytes());
        }
        b.push(self.variance.code());
        b.extend_from_slice(&self.chunk_bits_q8.to_le_bytes());
        b.push(self.margin_bits);
        b.push(self.min_log2_candidates);
        b.push(self.max_log2_candidates);
        b.extend_from_slice(&self.skip_below_q8.to_le_bytes());
        b.extend_from_slice(&self.seed.to_le_bytes());
        b.push(self.flags());
        b.extend_from_slice(&self.body_words.to_le_bytes());
        b.extend_from_slice(&self.body_crc32.to_le_bytes());
        b.extend_from_slice(&self.pixel_crc32.to_le_bytes());
        b
    }

    /// Decodes header fields from exactly `header_len` bytes (CRC already checked) and
    /// validates them against `limits`.
    pub fn decode_fields(fields: &[u8], limits: &Limits) -> Result<Header> {
        if fields.len() < HEADER_FIXED_LEN + 2 {
            return Err(format_err(format!(
                "header_len {} is below the minimum {}",
                fields.len(),
                HEADER_FIXED_LEN + 2
            )));
        }
        let k = usize::from(u16::from_le_bytes([
            fields[NUM_STEPS_OFFSET],
            fields[NUM_STEPS_OFFSET + 1],
        ]));
        if fields.len() != HEADER_FIXED_LEN + 2 * k {
            return Err(format_err(format!(
                "header_len {} does not match num_steps {k} (expected {})",
                fields.len(),
                HEADER_FIXED_LEN + 2 * k
            )));
        }
        let mut c = Cursor { b: fields, pos: 0 };
        let model_sha256: [u8; 32] = c.array()?;
        let width = c.u32()?;
        let height = c.u32()?;
        let channels = Channels::try_from(c.u8()?)?;
        let colour_mode = ColourMode::try_from(c.u8()?)?;
        let tile_size = c.u16()?;
        let batch_tiles = c.u16()?;
        let t_max = c.u16()?;
        let _num_steps = c.u16()?;
        let mut taus = Vec::with_capacity(k); // k ≤ 65535, and the bytes are present
        for _ in 0..k {
            taus.push(c.u16()?);
        }
        let variance = VarianceCode::try_from(c.u8()?)?;
        let chunk_bits_q8 = c.u16()?;
        let margin_bits = c.u8()?;
        let min_log2_candidates = c.u8()?;
        let max_log2_candidates = c.u8()?;
        let skip_below_q8 = c.u16()?;
        let seed = c.u64()?;
        let flags = c.u8()?;
        if flags & !FLAG_LOSSLESS != 0 {
            return Err(format_err(format!("unknown flag bits set: 0x{flags:02x}")));
        }
        let body_words = c.u32()?;
        let body_crc32 = c.u32()?;
        let pixel_crc32 = c.u32()?;
        debug_assert_eq!(c.pos, fields.len());
        let h = Header {
            model_sha256,
            width,
            height,
            channels,
            colour_mode,
            tile_size,
            batch_tiles,
            t_max,
            taus,
            variance,
            chunk_bits_q8,
            margin_bits,
            min_log2_candidates,
            max_log2_candidates,
            skip_below_q8,
            seed,
            lossless: flags & FLAG_LOSSLESS != 0,
            body_words,
            body_crc32,
            pixel_crc32,
        };
        h.validate(limits)?;
        Ok(h)
    }

    /// Multi-line, human-readable description (for the `info` command).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let ch = match self.channels {
            Channels::Grey => "grey",
            Channels::Rgb => "RGB",
            Channels::Rgba => "RGBA (opaque alpha)",
        };
        let cm = match self.colour_mode {
            ColourMode::Rgb => "RGB planes",
            ColourMode::GreyReplicated => "grey replicated as RGB",
        };
        let (tx, ty) = self.tile_grid();
        let _ = writeln!(s, "ddpm-codec stream, format version {}", super::VERSION);
        let _ = writeln!(s, "  model sha256   : {}", hex(&self.model_sha256));
        let _ = writeln!(
            s,
            "  image          : {} x {}, {} channel(s) {ch}, coded as {cm}",
            self.width,
            self.height,
            self.channels.count()
        );
        let _ = writeln!(
            s,
            "  tiles          : {ts} x {ts} px, {tx} x {ty} = {} tile(s), batch {}",
            u64::from(tx) * u64::from(ty),
            self.batch_tiles,
            ts = self.tile_size
        );
        let _ = writeln!(
            s,
            "  schedule       : t_max {}, K = {} coded step(s), taus {}",
            self.t_max,
            self.taus.len(),
            abbreviate(&self.taus)
        );
        let _ = writeln!(
            s,
            "  variance       : {}",
            match self.variance {
                VarianceCode::Small => "small (beta tilde)",
                VarianceCode::Large => "large (beta)",
            }
        );
        let _ = writeln!(
            s,
            "  chunking       : B = {:.3} bits, margin {} bits, candidates 2^{}..2^{}, skip below {:.3} bits",
            self.chunk_bits(),
            self.margin_bits,
            self.min_log2_candidates,
            self.max_log2_candidates,
            self.skip_below_bits()
        );
        let _ = writeln!(s, "  seed           : 0x{:016x}", self.seed);
        let _ = writeln!(
            s,
            "  lossless final : {}",
            if self.lossless { "yes" } else { "no" }
        );
        let _ = writeln!(
            s,
            "  body           : {} words ({} bytes), crc32 0x{:08x}",
            self.body_words,
            u64::from(self.body_words) * 4,
            self.body_crc32
        );
        let _ = writeln!(s, "  pixel crc32    : 0x{:08x}", self.pixel_crc32);
        s
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn abbreviate(taus: &[u16]) -> String {
    let j = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    if taus.len() <= 12 {
        j(taus)
    } else {
        format!("{}, ..., {}", j(&taus[..5]), j(&taus[taus.len() - 5..]))
    }
}

/// Bounds-checked little-endian field reader.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| format_err("truncated header fields"))?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[self.pos..end]);
        self.pos = end;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take::<N>()
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Header {
        Header {
            model_sha256: [7; 32],
            width: 40,
            height: 33,
            channels: Channels::Rgb,
            colour_mode: ColourMode::Rgb,
            tile_size: 32,
            batch_tiles: 16,
            t_max: 1000,
            taus: vec![1, 10, 100, 1000],
            variance: VarianceCode::Small,
            chunk_bits_q8: 8 * 256,
            margin_bits: 6,
            min_log2_candidates: 8,
            max_log2_candidates: 16,
            skip_below_q8: 64,
            seed: 42,
            lossless: true,
            body_words: 9,
            body_crc32: 0x1234_5678,
            pixel_crc32: 0x9abc_def0,
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let h = sample();
        let b = h.encode_fields();
        assert_eq!(b.len(), h.header_len());
        assert_eq!(Header::decode_fields(&b, &Limits::default()).unwrap(), h);
    }

    #[test]
    fn enum_codes() {
        for v in 0..=255u8 {
            assert_eq!(Channels::try_from(v).is_ok(), matches!(v, 1 | 3 | 4));
            assert_eq!(ColourMode::try_from(v).is_ok(), v <= 1);
            assert_eq!(VarianceCode::try_from(v).is_ok(), v <= 1);
        }
        assert_eq!(Channels::try_from(4).unwrap().count(), 4);
    }

    #[test]
    fn validation_rules() {
        let l = Limits::default();
        let bad = |f: &dyn Fn(&mut Header)| {
            let mut h = sample();
            f(&mut h);
            h.validate(&l).unwrap_err()
        };
        assert!(matches!(bad(&|h| h.width = 0), Error::Format(_)));
        assert!(matches!(
            bad(&|h| h.width = 65536),
            Error::LimitsExceeded(_)
        ));
        assert!(matches!(
            bad(&|h| {
                h.width = 65535;
                h.height = 65535
            }),
            Error::LimitsExceeded(_)
        ));
        assert!(matches!(
            bad(&|h| h.channels = Channels::Grey),
            Error::Format(_)
        ));
        assert!(
            matches!(bad(&|h| h.tile_size = 64), Error::Format(m) if m.contains("tile_size 64"))
        );
        assert!(matches!(bad(&|h| h.batch_tiles = 0), Error::Format(_)));
        assert!(matches!(
            bad(&|h| h.batch_tiles = 4097),
            Error::LimitsExceeded(_)
        ));
        assert!(matches!(bad(&|h| h.taus = vec![]), Error::Format(_)));
        assert!(matches!(bad(&|h| h.taus = vec![0, 1000]), Error::Format(_)));
        assert!(matches!(
            bad(&|h| h.taus = vec![5, 5, 1000]),
            Error::Format(_)
        ));
        assert!(matches!(bad(&|h| h.taus = vec![5, 999]), Error::Format(_)));
        assert!(matches!(
            bad(&|h| {
                h.t_max = 10001;
                h.taus = vec![10001]
            }),
            Error::LimitsExceeded(_)
        ));
        assert!(matches!(bad(&|h| h.chunk_bits_q8 = 0), Error::Format(_)));
        assert!(matches!(
            bad(&|h| h.max_log2_candidates = 33),
            Error::Format(_)
        ));
        assert!(matches!(
            bad(&|h| h.min_log2_candidates = 17),
            Error::Format(_)
        ));
        assert!(matches!(
            bad(&|h| h.body_words = u32::MAX),
            Error::LimitsExceeded(_)
        ));
        let mut g = sample();
        g.channels = Channels::Grey;
        g.colour_mode = ColourMode::GreyReplicated;
        g.validate(&l).unwrap();
    }

    #[test]
    fn summary_mentions_key_fields() {
        let s = sample().summary();
        assert!(s.contains("40 x 33"));
        assert!(s.contains("K = 4"));
        assert!(s.contains("lossless final : yes"));
        assert!(s.lines().count() >= 8);
    }

    #[test]
    fn model_check() {
        let h = sample();
        h.check_model(&[7; 32]).unwrap();
        assert!(matches!(
            h.check_model(&[8; 32]),
            Err(Error::ModelMismatch(_))
        ));
    }
}
