//! The header of format/SPEC.md (version 5): typed representation, byte encoding, validation.
//! Reader functions are named after the spec's fields.

use std::fmt::Write as _;

use super::Limits;
use crate::error::{format_err, Error, Result};
use crate::schedule::{even_taus, quadratic_taus};

/// Tile edge of version 5 (the shipped models' resolution).
pub const TILE_SIZE: u16 = 32;
/// File magic.
pub const MAGIC: [u8; 4] = *b"DDPC";
/// Format version written and read.
pub const VERSION: u8 = 10;
/// Largest t_max (structural).
pub const MAX_T_MAX: u32 = 10_000;
/// Largest batch_tiles (structural).
pub const MAX_BATCH_TILES: u32 = 4096;
/// Largest max_log2_candidates (the candidate pool's rows, `rcc::pool`).
pub const MAX_LOG2_CANDIDATES: u8 = crate::rcc::pool::LOG2_POOL_ROWS as u8;
/// Range of chunk_bits_q8.
pub const CHUNK_BITS_Q8_RANGE: std::ops::RangeInclusive<u32> = 64..=16384;
/// Bytes of `model_id`.
pub const MODEL_ID_LEN: usize = 4;

const FLAG_LOSSLESS: u8 = 0x01;
const FLAG_PARAMS: u8 = 0x08;

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

impl Channels {
    /// The 2-bit code in `flags` (0 grey, 1 RGB, 2 RGBA).
    pub fn flag_code(self) -> u8 {
        match self {
            Channels::Grey => 0,
            Channels::Rgb => 1,
            Channels::Rgba => 2,
        }
    }
    /// From the 2-bit flag code.
    pub fn from_flag_code(v: u8) -> Result<Self> {
        match v {
            0 => Ok(Channels::Grey),
            1 => Ok(Channels::Rgb),
            2 => Ok(Channels::Rgba),
            _ => Err(format_err(format!("unknown channels code {v} (expected 0, 1 or 2)"))),
        }
    }
}

impl TryFrom<u8> for Channels {
    type Error = Error;
    /// From a sample count (1, 3 or 4).
    fn try_from(v: u8) -> Result<Self> {
        match v {
            1 => Ok(Channels::Grey),
            3 => Ok(Channels::Rgb),
            4 => Ok(Channels::Rgba),
            _ => Err(format_err(format!("unsupported channel count {v} (expected 1, 3 or 4)"))),
        }
    }
}

/// How the image's colour is fed to the network (derived from the channels: grey is coded as
/// one plane, replicated for the network).
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
    /// Code 3: learned (Improved DDPM), σ per dimension from the network's v output
    /// ([`crate::schedule::learned_sigma`]); only a `learn_sigma` model codes or decodes it.
    Learned = 3,
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
            3 => Ok(VarianceCode::Learned),
            _ => Err(format_err(format!(
                "unknown variance code {v} (expected 0..=3)"
            ))),
        }
    }
}

/// The mapping between the reverse-variance kinds and their stream code (format 5; archives
/// have their own byte, `bitsback::variance_code`). [`crate::schedule::Variance::Analytic`] has no
/// code in format 5 (the 2-bit field is full; it equals optimal within 0.0001 bits/dim on our
/// model): `nll` still measures it, a stream refuses it with an [`Error::Parameter`].
impl TryFrom<crate::schedule::Variance> for VarianceCode {
    type Error = Error;
    fn try_from(v: crate::schedule::Variance) -> Result<Self> {
        use crate::schedule::Variance;
        match v {
            Variance::Small => Ok(VarianceCode::Small),
            Variance::Large => Ok(VarianceCode::Large),
            Variance::Optimal => Ok(VarianceCode::Optimal),
            Variance::Learned => Ok(VarianceCode::Learned),
            Variance::Analytic => Err(Error::Parameter(
                "variance analytic is not codable in a stream (format 5 codes small, large, optimal or learned; nll measures analytic)".into(),
            )),
        }
    }
}

impl From<VarianceCode> for crate::schedule::Variance {
    fn from(c: VarianceCode) -> Self {
        use crate::schedule::Variance;
        match c {
            VarianceCode::Small => Variance::Small,
            VarianceCode::Large => Variance::Large,
            VarianceCode::Optimal => Variance::Optimal,
            VarianceCode::Learned => Variance::Learned,
        }
    }
}

/// How the coded timesteps are stored (field `schedule_kind`). The writer picks the code from
/// the taus ([`Header::schedule_kind`]); a reader rejects any other choice, so every header has
/// exactly one encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ScheduleKind {
    /// Code 0: the K taus follow as varint deltas.
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

/// The parameters group (SPEC § 3): everything that fixes a stream besides the image, the
/// chain and the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Number of diffusion steps T of the model schedule.
    pub t_max: u16,
    /// Tiles per network call (1..=4096).
    pub batch_tiles: u16,
    /// Shared seed.
    pub seed: u64,
    /// Chunk size B in bits × 256.
    pub chunk_bits_q8: u16,
    /// Extra candidate bits over a chunk's KL.
    pub margin_bits: u8,
    /// log2 of the fewest candidates per chunk.
    pub min_log2_candidates: u8,
    /// log2 of the most candidates per chunk (≤ 19).
    pub max_log2_candidates: u8,
    /// KL threshold (bits × 256) below which a step sends no chunk.
    pub skip_below_q8: u16,
    /// Deferral target D (bits × 256; 0 = every chain step coded): SPEC § 8, "Deferred steps".
    pub defer_q8: u16,
}

impl Params {
    /// The defaults a header of a K-step chain without flags bit 3 means: t_max 1000, batch
    /// 64, seed 0 and the preset [`crate::rcc::RccParams::default_for`]`(K)`.
    pub fn default_for(steps: usize) -> Self {
        Self::of_rcc(&crate::rcc::RccParams::default_for(steps))
    }

    fn of_rcc(r: &crate::rcc::RccParams) -> Self {
        Params {
            t_max: 1000,
            batch_tiles: 64,
            seed: 0,
            chunk_bits_q8: (r.chunk_bits * 256.0).round() as u16,
            margin_bits: r.margin_bits as u8,
            min_log2_candidates: r.min_log2_candidates as u8,
            max_log2_candidates: r.max_log2_candidates as u8,
            skip_below_q8: (r.skip_below_bits * 256.0).round() as u16,
            defer_q8: (r.defer_bits * 256.0).round() as u16,
        }
    }
}

impl Default for Params {
    /// t_max 1000, batch 64, seed 0, `rcc::RccParams::default()` (no deferral); the defaults
    /// of a header without flags bit 3 are [`Params::default_for`] its K.
    fn default() -> Self {
        Self::of_rcc(&crate::rcc::RccParams::default())
    }
}

/// Where [`Header::seal_offsets`] found the fields a resealing tool rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealOffsets {
    /// First byte of `model_id`.
    pub model_id: usize,
    /// First byte of `header_crc` (`check` is the 4 bytes before it).
    pub header_crc: usize,
}

/// The header of a version-5 stream (format/SPEC.md § 1). K is `taus.len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The first 4 bytes of the SHA-256 of the model file.
    pub model_id: [u8; MODEL_ID_LEN],
    /// Image width in pixels (≥ 1).
    pub width: u32,
    /// Image height in pixels (≥ 1).
    pub height: u32,
    /// Samples per pixel of the decoded image.
    pub channels: Channels,
    /// Coded timesteps τ_1 < … < τ_K (τ_1 ≥ 1, τ_K = t_max).
    pub taus: Vec<u16>,
    /// Reverse-process variance.
    pub variance: VarianceCode,
    /// The parameters group (defaults unless flags bit 3).
    pub params: Params,
    /// The lossless final step is present.
    pub lossless: bool,
    /// Words in the complete body.
    pub body_words: u32,
    /// Pixel CRC-32 (lossless) or body CRC-32 (SPEC § 4).
    pub check: u32,
}

fn put_varint(b: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            b.push(byte);
            return;
        }
        b.push(byte | 0x80);
    }
}

/// A reader over the header bytes; every read past the end is "truncated header".
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| {
            format_err(format!("truncated header (inside {what} at byte {})", self.pos))
        })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// A minimal LEB128 varint of at most `max_bits` bits.
    fn varint(&mut self, what: &str, max_bits: u32) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10u32 {
            let byte = self.u8(what)?;
            if i == 9 && byte > 1 {
                return Err(format_err(format!("{what}: varint overflows 64 bits")));
            }
            v |= u64::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return Err(format_err(format!("{what}: non-minimal varint")));
                }
                if max_bits < 64 && v >> max_bits != 0 {
                    return Err(format_err(format!("{what}: value {v} does not fit in {max_bits} bits")));
                }
                return Ok(v);
            }
        }
        Err(format_err(format!("{what}: varint longer than 10 bytes")))
    }
}

/// Reads and checks `magic` and `version` (SPEC § 7 step 1).
pub fn read_magic_and_version(bytes: &[u8]) -> Result<()> {
    let n = bytes.len().min(4);
    if bytes[..n] != MAGIC[..n] {
        return Err(format_err("bad magic (not a ddpm-codec stream)"));
    }
    match bytes.get(4) {
        None => Err(format_err("truncated header (inside magic/version)")),
        Some(&VERSION) => Ok(()),
        Some(&v) if (1..VERSION).contains(&v) => Err(format_err(format!(
            "format version {v} is not supported (this build reads version {VERSION}); re-encode the image"
        ))),
        Some(&v) => Err(format_err(format!("unknown format version {v} (this build reads version {VERSION})"))),
    }
}

impl Header {
    /// K, the number of coded steps.
    pub fn num_steps(&self) -> usize {
        self.taus.len()
    }

    /// Number of packets: K − 1 coded chain steps, plus one for the lossless final step.
    pub fn num_packets(&self) -> usize {
        self.taus.len().saturating_sub(1) + usize::from(self.lossless)
    }

    /// Colour handling (grey is coded as one plane).
    pub fn colour_mode(&self) -> ColourMode {
        if self.channels == Channels::Grey {
            ColourMode::GreyReplicated
        } else {
            ColourMode::Rgb
        }
    }

    /// T of the model schedule.
    pub fn t_max(&self) -> u16 {
        self.params.t_max
    }

    /// Chunk size B in bits.
    pub fn chunk_bits(&self) -> f64 {
        f64::from(self.params.chunk_bits_q8) / 256.0
    }

    /// Skip threshold in bits.
    pub fn skip_below_bits(&self) -> f64 {
        f64::from(self.params.skip_below_q8) / 256.0
    }

    /// The deferral target D in bits.
    pub fn defer_bits(&self) -> f64 {
        f64::from(self.params.defer_q8) / 256.0
    }

    /// width × height.
    pub fn pixel_count(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Tiles across and down (edges padded).
    pub fn tile_grid(&self) -> (u32, u32) {
        let t = u32::from(TILE_SIZE);
        (self.width.div_ceil(t), self.height.div_ceil(t))
    }

    /// Network evaluations a full decode costs: tiles × K.
    pub fn work(&self) -> u64 {
        let (a, d) = self.tile_grid();
        u64::from(a) * u64::from(d) * self.taus.len() as u64
    }

    /// How the writer codes the taus (SPEC § 2, canonical choice).
    pub fn schedule_kind(&self) -> ScheduleKind {
        let k = self.taus.len();
        for kind in [ScheduleKind::Even, ScheduleKind::Quadratic] {
            if kind.generate(self.params.t_max, k).as_deref() == Some(&self.taus[..]) {
                return kind;
            }
        }
        ScheduleKind::Explicit
    }

    /// Errors with [`Error::ModelMismatch`] unless `sha256` starts with the header's model id.
    pub fn check_model(&self, sha256: &[u8; 32]) -> Result<()> {
        if sha256[..MODEL_ID_LEN] == self.model_id {
            Ok(())
        } else {
            Err(Error::ModelMismatch(format!(
                "stream was coded with model {}…, loaded model is {}",
                hex(&self.model_id),
                hex(sha256)
            )))
        }
    }

    /// Checks every rule of format/SPEC.md §§ 2, 3 and 6 (the decoder's work limit is the
    /// decoder's: [`Header::work`]).
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        let p = &self.params;
        if self.width == 0 || self.height == 0 {
            return Err(format_err(format!("image size {}x{} is empty", self.width, self.height)));
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
        if p.batch_tiles == 0 || u32::from(p.batch_tiles) > MAX_BATCH_TILES {
            return Err(format_err(format!("batch_tiles {} not in 1..={MAX_BATCH_TILES}", p.batch_tiles)));
        }
        if p.t_max == 0 || u32::from(p.t_max) > MAX_T_MAX {
            return Err(format_err(format!("t_max {} not in 1..={MAX_T_MAX}", p.t_max)));
        }
        let k = self.taus.len();
        if k == 0 || k > usize::from(p.t_max) {
            return Err(format_err(format!("num_steps {k} not in 1..=t_max ({})", p.t_max)));
        }
        if self.taus[0] < 1 {
            return Err(format_err("taus[0] is 0 (must be >= 1)"));
        }
        if let Some(i) = self.taus.windows(2).position(|w| w[0] >= w[1]) {
            return Err(format_err(format!("taus are not strictly increasing at index {i}")));
        }
        if self.taus[k - 1] != p.t_max {
            return Err(format_err(format!("last tau {} differs from t_max {}", self.taus[k - 1], p.t_max)));
        }
        if !CHUNK_BITS_Q8_RANGE.contains(&u32::from(p.chunk_bits_q8)) {
            return Err(format_err(format!("chunk_bits_q8 {} out of range", p.chunk_bits_q8)));
        }
        if p.margin_bits > 32 {
            return Err(format_err(format!("margin_bits {} > 32", p.margin_bits)));
        }
        if p.min_log2_candidates == 0
            || p.min_log2_candidates > p.max_log2_candidates
            || p.max_log2_candidates > MAX_LOG2_CANDIDATES
        {
            return Err(format_err(format!(
                "log2 candidates {}..={} invalid (1..={MAX_LOG2_CANDIDATES})",
                p.min_log2_candidates, p.max_log2_candidates
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

    /// The header bytes (magic to header_crc). Validates first ([`Error::Parameter`] if the
    /// header breaks a rule: a writer bug, not bad input).
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.validate(&Limits::default()).map_err(|e| Error::Parameter(format!("invalid header: {e}")))?;
        let kind = self.schedule_kind();
        let custom = self.params != Params::default_for(self.taus.len());
        let mut b = Vec::with_capacity(32);
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        let flags = u8::from(self.lossless)
            | self.channels.flag_code() << 1
            | if custom { FLAG_PARAMS } else { 0 }
            | kind.code() << 4
            | self.variance.code() << 6;
        b.push(flags);
        put_varint(&mut b, u64::from(self.width));
        put_varint(&mut b, u64::from(self.height));
        put_varint(&mut b, self.taus.len() as u64);
        b.extend_from_slice(&self.model_id);
        if custom {
            let p = &self.params;
            put_varint(&mut b, u64::from(p.t_max));
            put_varint(&mut b, u64::from(p.batch_tiles));
            put_varint(&mut b, p.seed);
            put_varint(&mut b, u64::from(p.chunk_bits_q8));
            b.extend_from_slice(&[p.margin_bits, p.min_log2_candidates, p.max_log2_candidates]);
            put_varint(&mut b, u64::from(p.skip_below_q8));
            put_varint(&mut b, u64::from(p.defer_q8));
        }
        if kind == ScheduleKind::Explicit {
            let mut prev = 0u16;
            for &t in &self.taus {
                put_varint(&mut b, u64::from(t - prev));
                prev = t;
            }
        }
        put_varint(&mut b, u64::from(self.body_words));
        b.extend_from_slice(&self.check.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        Ok(b)
    }

    /// Reads the header at the start of `bytes` (SPEC § 7); returns it and its byte length.
    pub fn read(bytes: &[u8], limits: &Limits) -> Result<(Header, usize)> {
        let (h, kind, crc_end, _) = Self::read_fields(bytes)?;
        let crc = Reader { b: bytes, pos: crc_end }.u32("header_crc")?;
        if crc32fast::hash(&bytes[..crc_end]) != crc {
            return Err(Error::Checksum("header CRC mismatch".into()));
        }
        h.validate(limits)?;
        if h.schedule_kind() != kind {
            return Err(format_err(format!(
                "schedule kind {} is not the canonical choice {} for these taus",
                kind.name(),
                h.schedule_kind().name()
            )));
        }
        Ok((h, crc_end + 4))
    }

    /// The byte offsets of `model_id` and of `header_crc` in `bytes` (the fields parsed,
    /// nothing checked but their syntax): for tools that reseal mutated streams (fuzzing).
    pub fn seal_offsets(bytes: &[u8]) -> Result<SealOffsets> {
        let (_, _, header_crc, model_id) = Self::read_fields(bytes)?;
        Ok(SealOffsets { model_id, header_crc })
    }

    /// Steps 1–2 of SPEC § 7: the fields up to `header_crc`, syntax and structural bounds only.
    fn read_fields(bytes: &[u8]) -> Result<(Header, ScheduleKind, usize, usize)> {
        read_magic_and_version(bytes)?;
        let mut r = Reader { b: bytes, pos: 5 };
        let flags = r.u8("flags")?;
        let width = r.varint("width", 32)? as u32;
        let height = r.varint("height", 32)? as u32;
        let k = r.varint("num_steps", 32)?;
        let model_id_at = r.pos;
        let model_id: [u8; MODEL_ID_LEN] = r.take(MODEL_ID_LEN, "model_id")?.try_into().expect("4 bytes");
        let channels = Channels::from_flag_code((flags >> 1) & 3)?;
        let kind = ScheduleKind::try_from((flags >> 4) & 3)?;
        let variance = VarianceCode::try_from(flags >> 6)?;
        let custom = flags & FLAG_PARAMS != 0;
        let params = if custom {
            let t_max = r.varint("t_max", 16)? as u16;
            let batch_tiles = r.varint("batch_tiles", 16)? as u16;
            let seed = r.varint("seed", 64)?;
            let chunk_bits_q8 = r.varint("chunk_bits_q8", 16)? as u16;
            let margin_bits = r.u8("margin_bits")?;
            let min_log2_candidates = r.u8("min_log2_candidates")?;
            let max_log2_candidates = r.u8("max_log2_candidates")?;
            let skip_below_q8 = r.varint("skip_below_q8", 16)? as u16;
            let defer_q8 = r.varint("defer_q8", 16)? as u16;
            let p = Params { t_max, batch_tiles, seed, chunk_bits_q8, margin_bits, min_log2_candidates, max_log2_candidates, skip_below_q8, defer_q8 };
            if p == Params::default_for(k as usize) {
                return Err(format_err("flags bit 3 set but every parameter has its default (not canonical)"));
            }
            p
        } else {
            Params::default_for(k as usize)
        };
        if params.t_max == 0 || u32::from(params.t_max) > MAX_T_MAX {
            return Err(format_err(format!("t_max {} not in 1..={MAX_T_MAX}", params.t_max)));
        }
        if k == 0 || k > u64::from(params.t_max) {
            return Err(format_err(format!("num_steps {k} not in 1..=t_max ({})", params.t_max)));
        }
        let k = k as usize;
        let taus = match kind {
            ScheduleKind::Explicit => {
                // K ≤ t_max ≤ 10000: bounded before the allocation
                let mut taus = Vec::with_capacity(k);
                let mut t = 0u64;
                for i in 0..k {
                    let d = r.varint("taus", 16)?;
                    if d == 0 {
                        return Err(format_err(format!("taus delta {i} is 0 (taus must increase)")));
                    }
                    t += d;
                    if t > u64::from(params.t_max) {
                        return Err(format_err(format!("taus[{i}] = {t} exceeds t_max {}", params.t_max)));
                    }
                    taus.push(t as u16);
                }
                taus
            }
            _ => kind.generate(params.t_max, k).ok_or_else(|| format_err("schedule generation failed"))?,
        };
        let body_words = r.varint("body_words", 32)? as u32;
        let check = r.u32("check")?;
        let h = Header { model_id, width, height, channels, taus, variance, params, lossless: flags & FLAG_LOSSLESS != 0, body_words, check };
        Ok((h, kind, r.pos, model_id_at))
    }

    /// A multi-line human-readable summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let p = &self.params;
        let _ = writeln!(s, "ddpm-codec stream, format version {VERSION}");
        let _ = writeln!(s, "  model id       : {}… (first 4 bytes of the model file's SHA-256)", hex(&self.model_id));
        let _ = writeln!(
            s,
            "  image          : {}x{}, {} channel(s){}, {} tiles of {TILE_SIZE}x{TILE_SIZE}",
            self.width,
            self.height,
            self.channels.count(),
            if self.channels == Channels::Grey { " (grey: one plane coded)" } else { "" },
            { let (a, d) = self.tile_grid(); a * d }
        );
        let _ = writeln!(s, "  chain          : K = {} of T = {} ({}): {}", self.taus.len(), p.t_max, self.schedule_kind().name(), abbreviate(&self.taus));
        let _ = writeln!(
            s,
            "  variance       : {}",
            match self.variance {
                VarianceCode::Small => "small (beta tilde)",
                VarianceCode::Large => "large (beta)",
                VarianceCode::Optimal => "optimal (calibrated, model tables)",
                VarianceCode::Learned => "learned (per dimension, from the network's v)",
            }
        );
        let _ = writeln!(
            s,
            "  chunking       : B = {:.3} bits, margin {} bits, candidates 2^{}..2^{}, skip below {:.3} bits{}",
            self.chunk_bits(),
            p.margin_bits,
            p.min_log2_candidates,
            p.max_log2_candidates,
            self.skip_below_bits(),
            if *p == Params::default_for(self.taus.len()) { " (defaults)" } else { "" }
        );
        let _ = writeln!(
            s,
            "  deferral       : {}",
            if p.defer_q8 == 0 { "none (every chain step coded)".to_string() } else { format!("D = {:.3} bits per 32x32 tile (near-empty steps deferred)", self.defer_bits()) }
        );
        let _ = writeln!(s, "  seed, batch    : {}, {} tiles per network call", p.seed, p.batch_tiles);
        let _ = writeln!(s, "  lossless       : {}", if self.lossless { "yes (pixel CRC-32 checked)" } else { "no" });
        let _ = writeln!(s, "  body           : {} words; check {:08x}", self.body_words, self.check);
        s
    }
}

/// Lower-case hexadecimal of `b` (model identities in `info`).
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A τ list as `info` shows it: whole up to 8 entries, else the first three and last two.
pub(crate) fn abbreviate(t: &[u16]) -> String {
    if t.len() <= 8 {
        format!("{t:?}")
    } else {
        format!("[{}, {}, {}, …, {}, {}]", t[0], t[1], t[2], t[t.len() - 2], t[t.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            model_id: [1, 2, 3, 4],
            width: 32,
            height: 32,
            channels: Channels::Rgb,
            taus: ScheduleKind::Quadratic.generate(1000, 50).unwrap(),
            variance: VarianceCode::Optimal,
            params: Params::default(),
            lossless: true,
            body_words: 500,
            check: 0xDEAD_BEEF,
        }
    }

    #[test]
    fn default_header_is_small_and_round_trips() {
        let h = sample();
        let b = h.encode().unwrap();
        assert_eq!(b.len(), 23, "{b:?}");
        let (g, n) = Header::read(&b, &Limits::default()).unwrap();
        assert_eq!((g, n), (h.clone(), b.len()));
        let h1000 = Header { taus: (1..=1000).collect(), params: Params::default_for(1000), ..h };
        assert_eq!(h1000.encode().unwrap().len(), 24);
    }

    #[test]
    fn custom_params_and_explicit_taus_round_trip() {
        let h = Header {
            taus: vec![3, 17, 400, 1000],
            params: Params { seed: u64::MAX, batch_tiles: 7, ..Params::default() },
            channels: Channels::Grey,
            variance: VarianceCode::Small,
            lossless: false,
            width: 70_000 - 4465,
            ..sample()
        };
        let b = h.encode().unwrap();
        assert_eq!(Header::read(&b, &Limits::default()).unwrap().0, h);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error() {
        let b = sample().encode().unwrap();
        for n in 0..b.len() {
            assert!(Header::read(&b[..n], &Limits::default()).is_err(), "prefix {n}");
        }
        for i in 0..b.len() * 8 {
            let mut c = b.clone();
            c[i / 8] ^= 1 << (i % 8);
            assert!(Header::read(&c, &Limits::default()).is_err(), "bit {i}");
        }
    }

    #[test]
    fn seal_offsets_point_at_model_id_and_crc() {
        for h in [sample(), Header { params: Params::default(), ..sample() }] {
            let b = h.encode().unwrap();
            let at = Header::seal_offsets(&b).unwrap();
            assert_eq!(b[at.model_id..at.model_id + MODEL_ID_LEN], h.model_id);
            assert_eq!(at.header_crc, b.len() - 4);
        }
    }

    #[test]
    fn old_versions_are_named() {
        assert_eq!(VERSION, 10);
        for v in 1..=9u8 {
            let mut b = sample().encode().unwrap();
            b[4] = v;
            let e = Header::read(&b, &Limits::default()).unwrap_err().to_string();
            assert!(e.contains(&format!("version {v} is not supported")), "{e}");
        }
    }

    #[test]
    fn variance_code_3_is_learned_and_analytic_is_not_codable() {
        use crate::schedule::Variance;
        assert_eq!(VarianceCode::try_from(3u8).unwrap(), VarianceCode::Learned);
        assert_eq!(VarianceCode::try_from(Variance::Learned).unwrap().code(), 3);
        assert_eq!(Variance::from(VarianceCode::Learned), Variance::Learned);
        assert!(VarianceCode::try_from(4u8).is_err());
        let e = VarianceCode::try_from(Variance::Analytic).unwrap_err();
        assert!(matches!(e, Error::Parameter(_)) && e.to_string().contains("analytic"), "{e}");
        for (v, c) in [(Variance::Small, 0), (Variance::Large, 1), (Variance::Optimal, 2), (Variance::Learned, 3)] {
            let code = VarianceCode::try_from(v).unwrap();
            assert_eq!((code.code(), Variance::from(code)), (c, v));
        }
        let h = Header { variance: VarianceCode::Learned, ..sample() };
        let b = h.encode().unwrap();
        assert_eq!(b[5] >> 6, 3);
        assert_eq!(Header::read(&b, &Limits::default()).unwrap().0, h);
        assert!(h.summary().contains("learned"));
    }

    #[test]
    fn non_canonical_encodings_are_rejected() {
        // explicit taus equal to the quadratic list
        let h = sample();
        let mut b = h.encode().unwrap();
        // rebuild by hand: flags with kind 0 and the taus as deltas
        let mut e = b[..5].to_vec();
        e.push((b[5] & !0x30) | 0);
        e.extend_from_slice(&b[6..13]);
        let mut prev = 0;
        for &t in &h.taus {
            put_varint(&mut e, u64::from(t - prev));
            prev = t;
        }
        e.extend_from_slice(&b[13..b.len() - 4]);
        let crc = crc32fast::hash(&e);
        e.extend_from_slice(&crc.to_le_bytes());
        assert!(Header::read(&e, &Limits::default()).unwrap_err().to_string().contains("canonical"));
        // a non-minimal varint (width 32 as [0xA0, 0x00])
        let mut f = b[..6].to_vec();
        f.extend_from_slice(&[0xA0, 0x00]);
        f.extend_from_slice(&b[7..b.len() - 4]);
        let crc = crc32fast::hash(&f);
        f.extend_from_slice(&crc.to_le_bytes());
        assert!(Header::read(&f, &Limits::default()).unwrap_err().to_string().contains("minimal"));
        b.truncate(0);
    }
}
