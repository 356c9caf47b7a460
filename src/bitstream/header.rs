//! The header fields of format/SPEC.md § 2: typed representation, byte encoding, validation.

use std::fmt::Write as _;

use super::Limits;
use crate::error::{format_err, Error, Result};
use crate::schedule::{even_taus, quadratic_taus};

/// Tile edge required by format version 2.
pub const TILE_SIZE: u16 = 32;
/// Byte length of the header fields without the explicit taus: `header_len =
/// HEADER_FIXED_LEN + S`, S = 2K for [`ScheduleKind::Explicit`], else 0.
pub const HEADER_FIXED_LEN: usize = 80;
/// Byte offset of `num_steps` inside the header fields.
pub const NUM_STEPS_OFFSET: usize = 48;
/// Byte offset of `schedule_kind` inside the header fields.
pub const SCHEDULE_KIND_OFFSET: usize = 50;
/// Byte offset of the explicit `taus` (present only for [`ScheduleKind::Explicit`]).
pub const TAUS_OFFSET: usize = 51;
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
    /// Code 2: the KL-optimal per-step σ² from the model's calibrated tables.
    Optimal = 2,
    /// Code 3: Analytic-DPM's σ² from the model's calibrated Γ table.
    Analytic = 3,
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
            2 => Ok(VarianceCode::Optimal),
            3 => Ok(VarianceCode::Analytic),
            _ => Err(format_err(format!(
                "unknown variance code {v} (expected 0..=3)"
            ))),
        }
    }
}

/// How the coded timesteps are stored (field `schedule_kind`). The writer picks the code from
/// the taus ([`Header::schedule_kind`]); a reader rejects any other choice, so every header has
/// exactly one encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ScheduleKind {
    /// Code 0: the K taus follow as `[u16; K]`.
    Explicit = 0,
    /// Code 1: τ_i = round_half_even(i·T / K), made strictly increasing ([`even_taus`]).
    Even = 1,
    /// Code 2: τ_i = round_half_even(T·i² / K²), made strictly increasing ([`quadratic_taus`]).
    Quadratic = 2,
}

impl ScheduleKind {
    /// The field code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Explicit => "explicit",
            ScheduleKind::Even => "even",
            ScheduleKind::Quadratic => "quadratic",
        }
    }

    /// The taus this kind generates for T = `t_max` and K = `k` (`None` for
    /// [`ScheduleKind::Explicit`] and when 1 ≤ K ≤ T fails).
    pub fn generate(self, t_max: u16, k: usize) -> Option<Vec<u16>> {
        let t = usize::from(t_max);
        let taus = match self {
            ScheduleKind::Explicit => return None,
            ScheduleKind::Even => even_taus(t, k).ok()?,
            ScheduleKind::Quadratic => quadratic_taus(t, k).ok()?,
        };
        // Every value is in 1..=t_max, so it fits in a u16.
        Some(taus.into_iter().map(|v| v as u16).collect())
    }

    /// Byte length S of the `taus` field for K steps: 2K for explicit taus, else 0.
    pub fn taus_len(self, k: usize) -> usize {
        match self {
            ScheduleKind::Explicit => 2 * k,
            ScheduleKind::Even | ScheduleKind::Quadratic => 0,
        }
    }
}

impl TryFrom<u8> for ScheduleKind {
    type Error = Error;
    fn try_from(v: u8) -> Result<Self> {
        match v {
            0 => Ok(ScheduleKind::Explicit),
            1 => Ok(ScheduleKind::Even),
            2 => Ok(ScheduleKind::Quadratic),
            _ => Err(format_err(format!(
                "unknown schedule_kind code {v} (expected 0, 1 or 2)"
            ))),
        }
    }
}

/// The header of a version-2 stream (format/SPEC.md § 2). `num_steps` is `taus.len()`;
/// `flags` is [`Header::lossless`]; `schedule_kind` is [`Header::schedule_kind`].
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
    /// Tile edge; 32 in version 2.
    pub tile_size: u16,
    /// Tiles per network call (1..=4096).
    pub batch_tiles: u16,
    /// Number of diffusion steps T of the model schedule.
    pub t_max: u16,
    /// Coded timesteps τ_1 < … < τ_K (τ_1 ≥ 1, τ_K = t_max); K = `taus.len()`. Stored
    /// explicitly or as a schedule code, see [`Header::schedule_kind`].
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

    /// How the writer codes the taus: [`ScheduleKind::Even`] if they equal
    /// `even_taus(T, K)`, else [`ScheduleKind::Quadratic`] if they equal
    /// `quadratic_taus(T, K)`, else [`ScheduleKind::Explicit`].
    pub fn schedule_kind(&self) -> ScheduleKind {
        let k = self.taus.len();
        for kind in [ScheduleKind::Even, ScheduleKind::Quadratic] {
            if kind.generate(self.t_max, k).as_deref() == Some(&self.taus[..]) {
                return kind;
            }
        }
        ScheduleKind::Explicit
    }

    /// `header_len` of this header: 80 + S, S = 2K for explicit taus, else 0.
    pub fn header_len(&self) -> usize {
        HEADER_FIXED_LEN + self.schedule_kind().taus_len(self.taus.len())
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
                "tile_size {} is not supported by format version {} (must be {TILE_SIZE})",
                self.tile_size,
                super::VERSION
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
        let kind = self.schedule_kind();
        let mut b = Vec::with_capacity(HEADER_FIXED_LEN + kind.taus_len(self.taus.len()));
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
        b.push(kind.code());
        if kind == ScheduleKind::Explicit {
            for &t in self.taus.iter().take(usize::from(k)) {
                b.extend_from_slice(&t.to_le_bytes());
            }
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
        if fields.len() < HEADER_FIXED_LEN {
            return Err(format_err(format!(
                "header_len {} is below the minimum {HEADER_FIXED_LEN}",
                fields.len()
            )));
        }
        let k = usize::from(u16::from_le_bytes([
            fields[NUM_STEPS_OFFSET],
            fields[NUM_STEPS_OFFSET + 1],
        ]));
        let kind = ScheduleKind::try_from(fields[SCHEDULE_KIND_OFFSET])?;
        let expected_len = HEADER_FIXED_LEN + kind.taus_len(k);
        if fields.len() != expected_len {
            return Err(format_err(format!(
                "header_len {} does not match num_steps {k} with schedule_kind {} \
                 (expected {expected_len})",
                fields.len(),
                kind.code()
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
        let _schedule_kind = c.u8()?;
        let taus = match kind {
            ScheduleKind::Explicit => {
                let mut taus = Vec::with_capacity(k); // k ≤ 65535, and the bytes are present
                for _ in 0..k {
                    taus.push(c.u16()?);
                }
                taus
            }
            ScheduleKind::Even | ScheduleKind::Quadratic => {
                // K is bounded by the limit before anything of size K is generated.
                if k > limits.max_steps as usize {
                    return Err(Error::LimitsExceeded(format!(
                        "num_steps {k} exceeds the limit {}",
                        limits.max_steps
                    )));
                }
                if k == 0 || k > usize::from(t_max) {
                    return Err(format_err(format!(
                        "schedule_kind {} requires 1 <= num_steps <= t_max, got num_steps {k}, \
                         t_max {t_max}",
                        kind.code()
                    )));
                }
                kind.generate(t_max, k)
                    .ok_or_else(|| format_err("schedule generation failed"))?
            }
        };
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
        // Canonical encoding: the writer's choice of schedule_kind is the only legal one.
        let canonical = h.schedule_kind();
        if canonical != kind {
            return Err(format_err(format!(
                "non-canonical schedule_kind {}: these taus must be coded as schedule_kind {} ({})",
                kind.code(),
                canonical.code(),
                canonical.name()
            )));
        }
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
        let kind = self.schedule_kind();
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
            "  schedule       : t_max {}, K = {} coded step(s), {} (schedule_kind {}), taus {}",
            self.t_max,
            self.taus.len(),
            kind.name(),
            kind.code(),
            abbreviate(&self.taus)
        );
        let _ = writeln!(
            s,
            "  variance       : {}",
            match self.variance {
                VarianceCode::Small => "small (beta tilde)",
                VarianceCode::Large => "large (beta)",
                VarianceCode::Optimal => "optimal (calibrated, model tables)",
                VarianceCode::Analytic => "analytic-dpm (calibrated, model tables)",
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
            assert_eq!(VarianceCode::try_from(v).is_ok(), v <= 3);
            assert_eq!(ScheduleKind::try_from(v).is_ok(), v <= 2);
        }
        for k in [
            ScheduleKind::Explicit,
            ScheduleKind::Even,
            ScheduleKind::Quadratic,
        ] {
            assert_eq!(ScheduleKind::try_from(k.code()).unwrap(), k);
        }
        assert_eq!(ScheduleKind::Even.code(), 1);
        assert_eq!(ScheduleKind::Quadratic.code(), 2);
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
    fn schedule_kinds_and_lengths() {
        let l = Limits::default();
        let mut h = sample();
        assert_eq!(h.schedule_kind(), ScheduleKind::Explicit);
        assert_eq!(h.header_len(), 80 + 2 * 4);
        for (taus, kind) in [
            (vec![250, 500, 750, 1000], ScheduleKind::Even),
            (vec![62, 250, 562, 1000], ScheduleKind::Quadratic),
            (vec![1000], ScheduleKind::Even), // K = 1: even and quadratic agree; even wins
            (vec![63, 250, 562, 1000], ScheduleKind::Explicit),
        ] {
            h.taus = taus;
            assert_eq!(h.schedule_kind(), kind, "{:?}", h.taus);
            let b = h.encode_fields();
            assert_eq!(b.len(), h.header_len());
            assert_eq!(b.len(), 80 + kind.taus_len(h.taus.len()));
            assert_eq!(b[SCHEDULE_KIND_OFFSET], kind.code());
            assert_eq!(Header::decode_fields(&b, &l).unwrap(), h);
        }
        // The full chain is even (with K = T the quadratic list is the full chain too).
        h.taus = (1..=1000).collect();
        assert_eq!(h.schedule_kind(), ScheduleKind::Even);
        assert_eq!(
            ScheduleKind::Quadratic.generate(1000, 1000).unwrap(),
            h.taus
        );
        assert_eq!(h.header_len(), 80);
        h.taus = ScheduleKind::Quadratic.generate(1000, 500).unwrap();
        assert_eq!(h.schedule_kind(), ScheduleKind::Quadratic);
        assert_eq!(h.header_len(), 80);
    }

    #[test]
    fn schedule_kind_decoding_errors() {
        let l = Limits::default();
        let mut h = sample();
        h.taus = vec![250, 500, 750, 1000];
        let even = h.encode_fields();
        assert_eq!(even[SCHEDULE_KIND_OFFSET], 1);
        let err = |b: &[u8], l: &Limits| Header::decode_fields(b, l).unwrap_err();
        // Unknown code.
        let mut b = even.clone();
        b[SCHEDULE_KIND_OFFSET] = 3;
        assert!(
            matches!(err(&b, &l), Error::Format(m) if m.contains("unknown schedule_kind code 3"))
        );
        // Kind 2 with the same K is simply the quadratic schedule.
        b[SCHEDULE_KIND_OFFSET] = 2;
        let q = Header::decode_fields(&b, &l).unwrap();
        assert_eq!(q.taus, vec![62, 250, 562, 1000]);
        assert_eq!(q.schedule_kind(), ScheduleKind::Quadratic);
        // Non-canonical: kind 2 where the even list is the same (K = 1), and kind 0 with
        // explicit even taus.
        let mut one = h.clone();
        one.taus = vec![1000];
        let mut b = one.encode_fields();
        assert_eq!(b[SCHEDULE_KIND_OFFSET], 1);
        b[SCHEDULE_KIND_OFFSET] = 2;
        assert!(
            matches!(err(&b, &l), Error::Format(m) if m.contains("non-canonical schedule_kind 2"))
        );
        let mut explicit = even[..TAUS_OFFSET].to_vec();
        explicit[SCHEDULE_KIND_OFFSET] = 0;
        for t in &h.taus {
            explicit.extend_from_slice(&t.to_le_bytes());
        }
        explicit.extend_from_slice(&even[TAUS_OFFSET..]);
        assert!(
            matches!(err(&explicit, &l), Error::Format(m) if m.contains("non-canonical schedule_kind 0"))
        );
        // Kind 0 length with a generated kind, and vice versa.
        let mut b = explicit.clone();
        b[SCHEDULE_KIND_OFFSET] = 1;
        assert!(matches!(err(&b, &l), Error::Format(m) if m.contains("does not match num_steps")));
        let mut b = even.clone();
        b[SCHEDULE_KIND_OFFSET] = 0;
        assert!(matches!(err(&b, &l), Error::Format(m) if m.contains("does not match num_steps")));
        // Generated kinds need 1 <= K <= T, and K within the limit before generating.
        let set_k = |k: u16| {
            let mut b = even.clone();
            b[NUM_STEPS_OFFSET..NUM_STEPS_OFFSET + 2].copy_from_slice(&k.to_le_bytes());
            b
        };
        assert!(
            matches!(err(&set_k(0), &l), Error::Format(m) if m.contains("requires 1 <= num_steps <= t_max"))
        );
        assert!(
            matches!(err(&set_k(1001), &l), Error::Format(m) if m.contains("requires 1 <= num_steps <= t_max"))
        );
        assert!(matches!(
            err(&set_k(u16::MAX), &l),
            Error::LimitsExceeded(_)
        ));
        let tight = Limits {
            max_steps: 3,
            ..Limits::default()
        };
        assert!(matches!(err(&even, &tight), Error::LimitsExceeded(_)));
        // Another K regenerates another (valid, canonical) even schedule.
        let h5 = Header::decode_fields(&set_k(5), &l).unwrap();
        assert_eq!(h5.taus, vec![200, 400, 600, 800, 1000]);
        // Too short for the fixed fields.
        assert!(
            matches!(err(&even[..79], &l), Error::Format(m) if m.contains("below the minimum 80"))
        );
    }

    #[test]
    fn summary_mentions_key_fields() {
        let s = sample().summary();
        assert!(s.contains("40 x 33"));
        assert!(s.contains("K = 4"));
        assert!(s.contains("explicit (schedule_kind 0)"));
        assert!(s.contains("format version 2"));
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
