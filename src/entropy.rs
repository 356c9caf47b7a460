//! Entropy models (constriction) built from snapped parameters, and the symbol stream of one
//! image.
//!
//! # The stream
//!
//! All symbols of one image go into ONE constriction [`DefaultAnsCoder`] (32-bit words, 24-bit
//! probabilities). [`SymbolWriter`] records the symbols of the chain in *forward* (decoding)
//! order together with their model parameters, step by step ([`SymbolWriter::begin_step`]);
//! [`SymbolWriter::finish`] pushes them in reverse, so that [`SymbolReader`] pops them in
//! forward order. The words are returned *top of stack first*: a prefix of the word list is the
//! top of the stack, i.e. the beginning of the chain.
//!
//! # Truncation
//!
//! `finish` simulates decoding the whole stream and records after each step how many words the
//! decoder has consumed so far (`words_needed[i]`, including the words that primed the coder's
//! state). A reader given only the first `W` words decodes steps `0..=i` exactly as long as
//! `words_needed[i] <= W`: constriction's `AnsCoder` refills its state from the backend only
//! when it needs a word, and when the (truncated) backend is exhausted it simply continues
//! without refilling (decoding past the end is deterministic and never fails), so every symbol
//! popped before the first missing word is identical to the full decode. Symbols after that
//! point are garbage; the caller must stop at the last step with `words_needed[i] <= W`.
//!
//! # Models
//!
//! * step info: `q` in 0..=255 coded as the delta to the previous step's `q`, adaptively: a
//!   two-sided geometric prior on −255..=255, P(d) ∝ 4^−|d| (P(0) = 0.6), with 2 pseudo-counts,
//!   plus the counts of the stream's earlier deltas (format 4).
//! * PFR index: truncated Zipf P(j) ∝ (j + 1)^−s on 0..2^L, s = 0.42 + 3/(KL_bucket/4 + 2.7)
//!   with the chunk's estimated KL rounded to a quarter bit ([`IndexModelKey`]); the constants
//!   are a maximum-likelihood fit to the default encoder's indices (format 4, see
//!   [`IndexModelKey::exponent`]). Weights are computed
//!   with the deterministic `rng::det_exp`/`rng::det_ln`, so models are bit-identical on every
//!   platform; models are cached per key.
//! * pixels (final step x_1 → x_0): discretised Gaussian on 0..=255 in pixel units,
//!   m = (μ + 1)·127.5, s = σ·127.5, with the mean snapped to 1/1024 pixel and the std to
//!   1/1024 pixel (clamped to [1/64, 1024] pixels) before the model is built. The model is
//!   constriction's `DefaultLeakyQuantizer` over `probability::distribution::Gaussian` on
//!   0..=255. Tail handling (checked in constriction 0.4.2's source): the quantizer gives
//!   symbol 0 the left cumulative 0 and symbol 255 the right cumulative 2^24, so the mass of
//!   (−∞, 0.5) goes to bin 0 and the mass of (254.5, ∞) to bin 255 — exactly the paper's
//!   edge bins extended to ±∞. Every bin gets one extra unit (2^−24) of "leak" so all 256
//!   values stay codable. The CDF is `probability`'s erf, which comes from the pure-Rust `libm`
//!   crate, so it is platform independent.
//!
//! # Golden words
//!
//! The exact compressed words of a tiny message are pinned (a format change breaks this test):
//!
//! ```
//! use ddpm_codec::entropy::{IndexModelKey, SymbolReader, SymbolWriter};
//! let mut w = SymbolWriter::new();
//! w.begin_step();
//! w.write_step_info(12, 0).unwrap();
//! let key = IndexModelKey::new(6, 3.0).unwrap();
//! w.write_index(5, key).unwrap();
//! w.begin_step();
//! // adaptive side information: the delta +1 is counted, so the next delta (0) is coded
//! // with the weights 2·g(d) + [d = +1]
//! w.write_step_info(13, 12).unwrap();
//! w.write_step_info(13, 13).unwrap();
//! w.write_pixels(&[0, 128, 255], &[-1.0, 0.0, 1.0], 0.02).unwrap();
//! let enc = w.finish().unwrap();
//! assert_eq!(enc.words, [0x07cc_7b29, 0xc7ff_ff0b]);
//! // the first step already needs both words (they prime the decoder's 64-bit state)
//! assert_eq!(enc.words_needed, [2, 2]);
//! let mut r = SymbolReader::new(&enc.words).unwrap();
//! assert_eq!(r.read_step_info(0).unwrap(), 12);
//! assert_eq!(r.read_index(key).unwrap(), 5);
//! assert_eq!(r.read_step_info(12).unwrap(), 13);
//! assert_eq!(r.read_step_info(13).unwrap(), 13);
//! let mut px = [0u8; 3];
//! r.read_pixels(&[-1.0, 0.0, 1.0], 0.02, &mut px).unwrap();
//! assert_eq!(px, [0, 128, 255]);
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use constriction::stream::model::{
    DefaultContiguousCategoricalEntropyModel, DefaultLeakyQuantizer, EncoderModel,
    LeakilyQuantizedDistribution,
};
use constriction::stream::stack::DefaultAnsCoder;
use constriction::stream::{Decode, Encode};
use probability::distribution::Gaussian;

use crate::error::{format_err, Error, Result};
use crate::rng::{det_exp_slice, det_ln, std_normal_cdf};
use crate::schedule::StepStd;

/// Fixed-point precision of all models (constriction's default preset).
pub const PRECISION: u32 = 24;
/// Largest `q` of the step info.
pub const Q_MAX: u32 = 255;
/// Largest log2 of the candidate count an index model supports.
pub const MAX_LOG2_CANDIDATES: u32 = 20;
/// Largest quarter-bit KL bucket of an index model.
pub const MAX_KL_BUCKET: u32 = 4 * 4096;
/// Pixel mean grid: 1/1024 pixel.
pub const PIXEL_MEAN_GRID: f64 = 1024.0;
/// Pixel std grid: 1/1024 pixel; clamp range in grid units ([1/64, 1024] pixels).
pub const PIXEL_STD_GRID: f64 = 1024.0;
const PIXEL_STD_MIN_Q: u32 = 16;
const PIXEL_STD_MAX_Q: u32 = 1 << 20;
const PIXEL_MEAN_MIN_Q: i32 = -256 * 1024;
const PIXEL_MEAN_MAX_Q: i32 = 511 * 1024;

const LN_2: f64 = std::f64::consts::LN_2;

type Coder = DefaultAnsCoder<Vec<u32>>;
type ReadCoder = constriction::stream::stack::AnsCoder<u32, u64, PrefixStack>;

/// The reader's word source: a stack (top = last element) that remembers whether the decoder
/// asked for a word it did not have. constriction's `AnsCoder` refills its state right after a
/// symbol, and only when the state needs a word; a symbol decoded *after* a failed refill
/// depends on words beyond the prefix (format/SPEC.md § 5), which is what
/// [`SymbolReader::starved`] reports for a proper prefix of a stream: the decoder's own packet
/// index. (In a complete stream the encoder's first symbols were coded from a state below
/// 2^32, so its decoder runs its last symbols after failed refills: the flag means nothing
/// there, and a reader of a complete stream never reports it.)
#[derive(Debug, Default)]
struct PrefixStack {
    words: Vec<u32>,
    starved: bool,
}

impl constriction::backends::ReadWords<u32, constriction::Stack> for PrefixStack {
    type ReadError = std::convert::Infallible;
    #[inline(always)]
    fn read(&mut self) -> std::result::Result<Option<u32>, Self::ReadError> {
        let w = self.words.pop();
        self.starved |= w.is_none();
        Ok(w)
    }
    #[inline(always)]
    fn maybe_exhausted(&self) -> bool {
        self.words.is_empty()
    }
}
type Categorical = DefaultContiguousCategoricalEntropyModel;
/// The pixel model type (also used by `bitsback`, which pushes pixels onto its own coder).
pub(crate) type PixelModel = LeakilyQuantizedDistribution<f64, i32, u32, Gaussian, 24>;

// ---------------------------------------------------------------------------------------------
// Step info (KL quantiser)
// ---------------------------------------------------------------------------------------------

/// The quantised step KL: `round(4·log2(1 + kl_bits))` clamped to 0..=255 (encoder only;
/// NaN maps to 0, +inf to 255).
pub fn quantize_kl(kl_bits: f64) -> u32 {
    if kl_bits.is_nan() || kl_bits <= 0.0 {
        return 0;
    }
    let v = (4.0 * (1.0 + kl_bits).log2()).round();
    if v >= Q_MAX as f64 {
        Q_MAX
    } else {
        v as u32
    }
}

/// `2^(q/4) − 1`, computed exactly from a table of the four fractional powers (identical on
/// every platform). `q` above 255 is clamped.
pub fn kl_hat_bits(q: u32) -> f64 {
    const FRAC: [f64; 4] = [
        1.0,
        1.189_207_115_002_721, // 2^(1/4)
        std::f64::consts::SQRT_2,
        1.681_792_830_507_429, // 2^(3/4)
    ];
    let q = q.min(Q_MAX);
    (1u64 << (q / 4)) as f64 * FRAC[(q % 4) as usize] - 1.0
}

fn step_info_prior() -> Vec<f64> {
    // g(d) ∝ 0.25^|d|, d = −255..=255 at index d + 255, scaled to a total of
    // STEP_INFO_PRIOR_MASS (0.25^k is exact in f64, and so is the sum's order of operations)
    let mut w = vec![0.0; 2 * Q_MAX as usize + 1];
    let mut p = 1.0f64;
    for k in 0..=Q_MAX as usize {
        w[Q_MAX as usize + k] = p;
        w[Q_MAX as usize - k] = p;
        p *= 0.25;
    }
    let norm: f64 = w.iter().sum();
    w.iter().map(|&x| x / norm * STEP_INFO_PRIOR_MASS).collect()
}

/// Pseudo-counts of the step-info prior (format/SPEC.md § 8).
const STEP_INFO_PRIOR_MASS: f64 = 2.0;

/// The adaptive side-information model (format version 4): the delta `d = q − q_prev` of
/// step `n` is coded with weights `prior(d) + c(d)`, `c(d)` the number of the steps
/// `1..n` (not step 0, whose delta is `q` itself) whose delta was `d`. At K = 1000 almost
/// every delta is 0 and costs a fraction of a bit; the fixed model of version 3 charged
/// 0.74 bits for each (0.27 bits/dim on a CIFAR image).
#[derive(Clone)]
struct StepInfoModel {
    counts: Vec<u32>,
    coded: u32,
    prior: Arc<Vec<f64>>,
    cat: Option<Categorical>,
}

impl StepInfoModel {
    fn new() -> Self {
        static PRIOR: OnceLock<Arc<Vec<f64>>> = OnceLock::new();
        let prior = PRIOR.get_or_init(|| Arc::new(step_info_prior())).clone();
        StepInfoModel { counts: vec![0; prior.len()], coded: 0, prior, cat: None }
    }

    fn weights(&self) -> Vec<f64> {
        self.prior.iter().zip(&self.counts).map(|(&g, &c)| g + c as f64).collect()
    }

    /// The model of the next delta (built once per step, identically on both sides).
    fn categorical(&mut self) -> &Categorical {
        if self.cat.is_none() {
            let cat = Categorical::from_floating_point_probabilities_fast(&self.weights(), None)
                .expect("step-info weights are positive and finite");
            self.cat = Some(cat);
        }
        self.cat.as_ref().expect("built above")
    }

    /// −log2 of the float model's probability of `sym` (the ideal cost): the weights sum to
    /// the prior's mass plus one per counted delta.
    fn ideal_bits(&self, sym: u32) -> f64 {
        let counted = self.coded.saturating_sub(1) as f64;
        let w = self.prior[sym as usize] + self.counts[sym as usize] as f64;
        -(w / (STEP_INFO_PRIOR_MASS + counted)).log2()
    }

    /// Counts `sym` (after it was coded).
    fn update(&mut self, sym: u32) {
        if self.coded > 0 {
            self.counts[sym as usize] += 1;
            self.cat = None;
        }
        self.coded += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Index model
// ---------------------------------------------------------------------------------------------

/// Identifies a PFR index model: `2^log2_n` candidates and the chunk's estimated KL rounded to
/// a quarter bit (`kl_bucket = round(4·KLchunk_hat)`), which fixes the Zipf exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IndexModelKey {
    /// log2 of the number of candidates (1..=[`MAX_LOG2_CANDIDATES`]).
    pub log2_n: u32,
    /// Estimated chunk KL in quarter bits (0..=[`MAX_KL_BUCKET`]).
    pub kl_bucket: u32,
}

impl IndexModelKey {
    /// Key for `2^log2_n` candidates and an estimated chunk KL of `kl_chunk_hat_bits`.
    pub fn new(log2_n: u32, kl_chunk_hat_bits: f64) -> Result<Self> {
        if !kl_chunk_hat_bits.is_finite() || kl_chunk_hat_bits < 0.0 {
            return Err(Error::Parameter(format!(
                "chunk KL {kl_chunk_hat_bits} invalid"
            )));
        }
        let b = (4.0 * kl_chunk_hat_bits).round().min(MAX_KL_BUCKET as f64) as u32;
        let key = IndexModelKey {
            log2_n,
            kl_bucket: b,
        };
        key.validate()?;
        Ok(key)
    }

    fn validate(&self) -> Result<()> {
        if self.log2_n == 0 || self.log2_n > MAX_LOG2_CANDIDATES {
            return Err(Error::Parameter(format!(
                "log2 candidates {} out of range",
                self.log2_n
            )));
        }
        if self.kl_bucket > MAX_KL_BUCKET {
            return Err(Error::Parameter(format!(
                "KL bucket {} out of range",
                self.kl_bucket
            )));
        }
        Ok(())
    }

    /// Number of candidates (the model's support size).
    pub fn num_candidates(&self) -> u32 {
        1 << self.log2_n
    }

    /// The Zipf exponent s = 0.42 + 3/(kl_bucket/4 + 2.7) (format 9). Fitted by maximum
    /// likelihood to the indices the format-8 encoder (16-bit chunks, margin 2, tilt 1.4, the
    /// int8 scorer) chose on training images: 26,909 chunks of the first 60 CIFAR-10 training
    /// images at K = 50 (bench/rcc/session14/). Mean code length 15.366 → 15.285 bits per chunk
    /// there against format 4–8's s = 0.65 + 1.3/(kl_bucket/4 + 0.48) (fitted to 12-bit chunks,
    /// margin 3, tilt 1.2); held out, 15.365 → 15.295 (11,215 chunks of 24 images of training
    /// batch 2) and 14.302 → 14.243 at K = 1000 (4,148 chunks). The tilted target pushes the
    /// choice toward the top of the candidate range, hence s < 1 for large chunks.
    pub fn exponent(&self) -> f64 {
        0.42 + 3.0 / (self.kl_bucket as f64 * 0.25 + 2.7)
    }
}

/// `det_ln(j + 1)` for j < 2^16 (the default chunk's candidates), computed once.
fn ln_table() -> &'static [f64] {
    static T: OnceLock<Vec<f64>> = OnceLock::new();
    T.get_or_init(|| (0..1usize << 16).map(|j| det_ln((j + 1) as f64)).collect())
}

struct IndexModel {
    cat: Categorical,
    s: f64,
    ln_norm: f64,
}

impl IndexModel {
    fn build(key: IndexModelKey) -> Result<Self> {
        let s = key.exponent();
        let n = key.num_candidates() as usize;
        // w_j = det_exp(−s · det_ln(j + 1)): the logarithms from a process-wide table, the
        // exponentials eight at a time (`det_exp_slice`: the same bits as `det_exp`)
        let lns = ln_table();
        let mut w: Vec<f64> = (0..n)
            .map(|j| -s * lns.get(j).copied().unwrap_or_else(|| det_ln((j + 1) as f64)))
            .collect();
        det_exp_slice(&mut w);
        let norm: f64 = w.iter().sum();
        let cat = Categorical::from_floating_point_probabilities_fast(&w, None)
            .map_err(|()| Error::Parameter(format!("cannot build index model {key:?}")))?;
        Ok(IndexModel {
            cat,
            s,
            ln_norm: norm.ln(),
        })
    }

    /// −log2 of the (float) Zipf probability of `j`.
    fn ideal_bits(&self, j: u32) -> f64 {
        (self.s * ((j + 1) as f64).ln() + self.ln_norm) / LN_2
    }
}

/// −log2 P(j) under the truncated Zipf index model `key` (float model; reporting only).
pub fn index_ideal_bits(j: u32, key: IndexModelKey) -> f64 {
    let s = key.exponent();
    let norm: f64 = (0..key.num_candidates())
        .map(|i| ((i + 1) as f64).powf(-s))
        .sum();
    s * ((j + 1) as f64).log2() + norm.log2()
}

// ---------------------------------------------------------------------------------------------
// Pixel model
// ---------------------------------------------------------------------------------------------

/// Snapped parameters of one pixel's discretised Gaussian, in grid units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelParams {
    /// Mean in 1/1024 pixel (pixel units: m = (μ + 1)·127.5).
    pub mean_q: i32,
    /// Std in 1/1024 pixel (pixel units: s = σ·127.5).
    pub std_q: u32,
}

impl PixelParams {
    /// Snaps model-space mean μ (in [−1, 1] units) and std σ to the grid. Non-finite input maps
    /// deterministically into the clamp range, never panics.
    pub fn snap(mu: f32, sigma: f32) -> Self {
        let m = ((mu as f64 + 1.0) * 127.5 * PIXEL_MEAN_GRID).round();
        let m = if m.is_nan() { 0.0 } else { m };
        let mean_q = m.clamp(PIXEL_MEAN_MIN_Q as f64, PIXEL_MEAN_MAX_Q as f64) as i32;
        let s = (sigma as f64 * 127.5 * PIXEL_STD_GRID).round();
        let s = if s.is_nan() { 0.0 } else { s };
        let std_q = s.clamp(PIXEL_STD_MIN_Q as f64, PIXEL_STD_MAX_Q as f64) as u32;
        PixelParams { mean_q, std_q }
    }

    /// Mean in pixel units.
    pub fn mean_pixels(&self) -> f64 {
        self.mean_q as f64 / PIXEL_MEAN_GRID
    }

    /// Std in pixel units.
    pub fn std_pixels(&self) -> f64 {
        self.std_q as f64 / PIXEL_STD_GRID
    }

    /// The constriction model of these parameters over `quantizer` (support 0..=255).
    pub(crate) fn model(&self, quantizer: &DefaultLeakyQuantizer<f64, i32>) -> PixelModel {
        quantizer.quantize(Gaussian::new(self.mean_pixels(), self.std_pixels()))
    }
}

/// Ideal cost in bits of pixel value `v` under the discretised Gaussian with model-space mean
/// `mu` and std `sigma` (exact f64, unsnapped; edge bins extended to ±∞).
pub fn pixel_ideal_bits(v: u8, mu: f64, sigma: f64) -> f64 {
    let m = (mu + 1.0) * 127.5;
    let s = sigma * 127.5;
    let a = (v as f64 - 0.5 - m) / s;
    let b = (v as f64 + 0.5 - m) / s;
    let p = if v == 0 {
        std_normal_cdf(b)
    } else if v == 255 {
        std_normal_cdf(-a)
    } else if a > 0.0 {
        std_normal_cdf(-a) - std_normal_cdf(-b)
    } else {
        std_normal_cdf(b) - std_normal_cdf(a)
    };
    -p.log2()
}

// ---------------------------------------------------------------------------------------------
// Model cache
// ---------------------------------------------------------------------------------------------

/// Index models are pure functions of their key, so one process-wide cache serves every
/// writer and reader (bounded; beyond the bound models are built without being kept).
fn shared_index_model(key: IndexModelKey) -> Result<Arc<IndexModel>> {
    const MAX_CACHED: usize = 1024;
    static CACHE: OnceLock<Mutex<HashMap<IndexModelKey, Arc<IndexModel>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(m) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(m.clone());
    }
    let m = Arc::new(IndexModel::build(key)?);
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() < MAX_CACHED {
        map.insert(key, m.clone());
    }
    Ok(m)
}

/// The fixed models of a stream, plus index models looked up per key (the adaptive
/// step-info model lives in the writer and the reader).
pub struct ModelCache {
    quantizer: DefaultLeakyQuantizer<f64, i32>,
    index: HashMap<IndexModelKey, Arc<IndexModel>>,
}

impl Default for ModelCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ModelCache {
    /// Builds the fixed models (the index models are built lazily).
    pub fn new() -> Self {
        ModelCache {
            quantizer: DefaultLeakyQuantizer::new(0..=255),
            index: HashMap::new(),
        }
    }

    fn index(&mut self, key: IndexModelKey) -> Result<Arc<IndexModel>> {
        key.validate()?;
        if let Some(m) = self.index.get(&key) {
            return Ok(m.clone());
        }
        let m = shared_index_model(key)?;
        self.index.insert(key, m.clone());
        Ok(m)
    }
}

fn prob_bits<M: EncoderModel<24, Probability = u32>>(model: M, sym: M::Symbol) -> f64 {
    match model.left_cumulative_and_probability(sym) {
        Some((_, p)) => PRECISION as f64 - (p.get() as f64).log2(),
        None => f64::INFINITY,
    }
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Sym {
    /// Delta symbol d + 255 (0..=510).
    StepInfo(u32),
    Index(u32, IndexModelKey),
    Pixel(u8, PixelParams),
}

/// Ideal (model) bits written so far, by symbol kind.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IdealBits {
    /// −log2 P of the step-info symbols (float model).
    pub step_info: f64,
    /// −log2 P of the PFR indices (float Zipf model).
    pub index: f64,
    /// −log2 P of the pixels (exact f64 discretised Gaussian, unsnapped).
    pub pixels: f64,
}

impl IdealBits {
    /// Sum over kinds.
    pub fn total(&self) -> f64 {
        self.step_info + self.index + self.pixels
    }
}

/// The result of [`SymbolWriter::finish`].
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedSymbols {
    /// Compressed words, top of stack (= start of the chain) first.
    pub words: Vec<u32>,
    /// Per step: words a decoder must have consumed after decoding that step (non-decreasing;
    /// the last equals `words.len()` unless there are no steps).
    pub words_needed: Vec<u32>,
    /// Per step: Σ −log2 of the fixed-point model probabilities of its symbols.
    pub step_model_bits: Vec<f64>,
}

/// Records the symbols of one image in decoding order, then entropy-codes them.
pub struct SymbolWriter {
    syms: Vec<Sym>,
    step_starts: Vec<usize>,
    cache: ModelCache,
    step_info: StepInfoModel,
    ideal: IdealBits,
}

impl Default for SymbolWriter {
    fn default() -> Self {
        Self::new()
    }
}

/// `sigma` if it has one std per mean (or one for all), else [`Error::Parameter`].
fn per_pixel_std(sigma: StepStd<'_>, means: usize) -> Result<StepStd<'_>> {
    match sigma {
        StepStd::PerDim(sd) if sd.len() != means => Err(Error::Parameter(format!("{} stds but {means} means", sd.len()))),
        _ => Ok(sigma),
    }
}

impl SymbolWriter {
    /// An empty writer.
    pub fn new() -> Self {
        SymbolWriter {
            syms: Vec::new(),
            step_starts: Vec::new(),
            cache: ModelCache::new(),
            step_info: StepInfoModel::new(),
            ideal: IdealBits::default(),
        }
    }

    /// Starts a new step (a truncation point). Symbols written before the first call belong
    /// to an implicit first step.
    pub fn begin_step(&mut self) {
        self.step_starts.push(self.syms.len());
    }

    fn ensure_step(&mut self) {
        if self.step_starts.is_empty() {
            self.step_starts.push(0);
        }
    }

    /// Number of steps begun so far.
    pub fn num_steps(&self) -> usize {
        self.step_starts.len()
    }

    /// Number of symbols recorded so far.
    pub fn num_symbols(&self) -> usize {
        self.syms.len()
    }

    /// Ideal bits of the symbols recorded so far.
    pub fn ideal_bits(&self) -> IdealBits {
        self.ideal
    }

    /// Records the step info `q` (0..=255) given the previous step's `prev_q`.
    pub fn write_step_info(&mut self, q: u32, prev_q: u32) -> Result<()> {
        if q > Q_MAX || prev_q > Q_MAX {
            return Err(Error::Parameter(format!(
                "step info q={q} prev={prev_q} > {Q_MAX}"
            )));
        }
        self.ensure_step();
        let sym = q + Q_MAX - prev_q;
        self.ideal.step_info += self.step_info.ideal_bits(sym);
        self.step_info.update(sym);
        self.syms.push(Sym::StepInfo(sym));
        Ok(())
    }

    /// Records PFR index `j` under the index model `key`; returns its ideal bits.
    pub fn write_index(&mut self, j: u32, key: IndexModelKey) -> Result<f64> {
        let model = self.cache.index(key)?;
        if j >= key.num_candidates() {
            return Err(Error::Parameter(format!(
                "index {j} >= {}",
                key.num_candidates()
            )));
        }
        self.ensure_step();
        let bits = model.ideal_bits(j);
        self.ideal.index += bits;
        self.syms.push(Sym::Index(j, key));
        Ok(bits)
    }

    /// Records pixel values with per-pixel model-space means `mu` and a std `sigma`, shared or
    /// one per pixel (both in [−1, 1] units); returns their ideal bits.
    pub fn write_pixels<'s>(&mut self, values: &[u8], mu: &[f32], sigma: impl Into<StepStd<'s>>) -> Result<f64> {
        let sigma = per_pixel_std(sigma.into(), mu.len())?;
        if values.len() != mu.len() {
            return Err(Error::Parameter(format!(
                "{} pixel values but {} means",
                values.len(),
                mu.len()
            )));
        }
        self.ensure_step();
        let mut bits = 0.0;
        for (k, (&v, &m)) in values.iter().zip(mu).enumerate() {
            let sd = sigma.at(k);
            bits += pixel_ideal_bits(v, m as f64, sd as f64);
            self.syms.push(Sym::Pixel(v, PixelParams::snap(m, sd)));
        }
        self.ideal.pixels += bits;
        Ok(bits)
    }

    /// Entropy-codes everything (symbols pushed in reverse), then simulates the decoder to find
    /// the truncation points.
    pub fn finish(mut self) -> Result<EncodedSymbols> {
        // the adaptive step-info models, in decoding order (the coder runs in reverse)
        let mut si = StepInfoModel::new();
        let mut si_models = Vec::new();
        for &sym in &self.syms {
            if let Sym::StepInfo(s) = sym {
                si_models.push(si.categorical().clone());
                si.update(s);
            }
        }
        let mut coder = Coder::new();
        for &sym in self.syms.iter().rev() {
            let r = match sym {
                Sym::StepInfo(s) => coder.encode_symbol(s as usize, &si_models.pop().expect("one model per symbol")),
                Sym::Index(j, key) => {
                    let m = self.cache.index(key)?;
                    coder.encode_symbol(j as usize, &m.cat)
                }
                Sym::Pixel(v, p) => coder.encode_symbol(v as i32, p.model(&self.cache.quantizer)),
            };
            r.map_err(|e| Error::Parameter(format!("entropy coder: {e}")))?;
        }
        let mut words = coder
            .into_compressed()
            .map_err(|_| Error::Parameter("entropy coder backend".into()))?;
        words.reverse();
        if words.len() > u32::MAX as usize {
            return Err(Error::LimitsExceeded(
                "stream longer than 2^32 words".into(),
            ));
        }

        // Simulate the decoder.
        let mut reader = SymbolReader::new(&words)?;
        reader.cache = std::mem::take(&mut self.cache);
        let mut words_needed = Vec::with_capacity(self.step_starts.len());
        let mut step_model_bits = Vec::with_capacity(self.step_starts.len());
        for (i, &start) in self.step_starts.iter().enumerate() {
            let end = self
                .step_starts
                .get(i + 1)
                .copied()
                .unwrap_or(self.syms.len());
            let mut bits = 0.0;
            for &sym in &self.syms[start..end] {
                let (got, b) = reader.decode_like(sym)?;
                if got != sym {
                    return Err(format_err("internal: entropy coder round trip mismatch"));
                }
                bits += b;
            }
            words_needed.push(reader.words_consumed() as u32);
            step_model_bits.push(bits);
        }
        Ok(EncodedSymbols {
            words,
            words_needed,
            step_model_bits,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

/// Pops the symbols of one image in forward order from (possibly truncated) words.
pub struct SymbolReader {
    coder: ReadCoder,
    /// A symbol was decoded after a failed refill.
    garbage: bool,
    /// The words are a proper prefix of a stream ([`SymbolReader::new_prefix`]).
    prefix: bool,
    total_words: usize,
    cache: ModelCache,
    step_info: StepInfoModel,
}

impl SymbolReader {
    /// A reader over `words` (top of stack first, possibly only a prefix of a stream).
    /// Fails with [`Error::Format`] if the first word is zero (no valid stream starts so).
    pub fn new(words: &[u32]) -> Result<Self> {
        let stack: Vec<u32> = words.iter().rev().copied().collect();
        let coder = ReadCoder::from_compressed(PrefixStack { words: stack, starved: false })
            .map_err(|_| format_err("entropy-coded stream starts with a zero word"))?;
        Ok(SymbolReader {
            coder,
            garbage: false,
            prefix: false,
            total_words: words.len(),
            cache: ModelCache::new(),
            step_info: StepInfoModel::new(),
        })
    }

    /// Words consumed so far (including the ones that primed the coder).
    pub fn words_consumed(&self) -> usize {
        self.total_words - self.coder.bulk().words.len()
    }

    /// A reader over a proper prefix of a stream's words (fewer than the complete body):
    /// [`Self::starved`] tells where the prefix ends.
    pub fn new_prefix(words: &[u32]) -> Result<Self> {
        let mut r = Self::new(words)?;
        r.prefix = true;
        Ok(r)
    }

    /// For a prefix reader: true once a symbol was decoded after the decoder had asked for a
    /// word beyond the prefix; that symbol and all after it are garbage. Always false for a
    /// complete stream.
    pub fn starved(&self) -> bool {
        self.prefix && self.garbage
    }

    /// Call before decoding each symbol.
    #[inline(always)]
    fn note_symbol(&mut self) {
        self.garbage |= self.coder.bulk().starved;
    }

    /// Pops the step info; returns `q` (0..=255). A delta leading outside 0..=255 is a
    /// [`Error::Format`].
    pub fn read_step_info(&mut self, prev_q: u32) -> Result<u32> {
        if prev_q > Q_MAX {
            return Err(Error::Parameter(format!("previous q {prev_q} > {Q_MAX}")));
        }
        self.note_symbol();
        let s = self
            .coder
            .decode_symbol(self.step_info.categorical())
            .map_err(|e| format_err(format!("entropy decoder: {e}")))? as u32;
        self.step_info.update(s);
        let q = (prev_q + s).checked_sub(Q_MAX);
        match q {
            Some(q) if q <= Q_MAX => Ok(q),
            _ => Err(format_err(format!(
                "step info delta {} from q={prev_q} out of range",
                s as i64 - 255
            ))),
        }
    }

    /// Pops a PFR index under model `key` (always < 2^log2_n).
    pub fn read_index(&mut self, key: IndexModelKey) -> Result<u32> {
        self.note_symbol();
        let m = self.cache.index(key)?;
        let j = self
            .coder
            .decode_symbol(&m.cat)
            .map_err(|e| format_err(format!("entropy decoder: {e}")))?;
        Ok(j as u32)
    }

    /// Pops pixel values into `out` with model-space means `mu` and std `sigma` (as written).
    pub fn read_pixels<'s>(&mut self, mu: &[f32], sigma: impl Into<StepStd<'s>>, out: &mut [u8]) -> Result<()> {
        let sigma = per_pixel_std(sigma.into(), mu.len())?;
        if out.len() != mu.len() {
            return Err(Error::Parameter(format!(
                "{} outputs but {} means",
                out.len(),
                mu.len()
            )));
        }
        for (k, (o, &m)) in out.iter_mut().zip(mu).enumerate() {
            let model = PixelParams::snap(m, sigma.at(k)).model(&self.cache.quantizer);
            self.garbage |= self.coder.bulk().starved;
            let v = self
                .coder
                .decode_symbol(model)
                .map_err(|e| format_err(format!("entropy decoder: {e}")))?;
            *o = u8::try_from(v).map_err(|_| format_err("pixel out of range"))?;
        }
        Ok(())
    }

    /// Pops a symbol of the same kind and model as `like`; also returns its model bits.
    fn decode_like(&mut self, like: Sym) -> Result<(Sym, f64)> {
        let err = |e: constriction::CoderError<_, _>| format_err(format!("entropy decoder: {e:?}"));
        Ok(match like {
            Sym::StepInfo(_) => {
                let s = self.coder.decode_symbol(self.step_info.categorical()).map_err(err)?;
                let bits = prob_bits(self.step_info.categorical(), s);
                self.step_info.update(s as u32);
                (Sym::StepInfo(s as u32), bits)
            }
            Sym::Index(_, key) => {
                let m = self.cache.index(key)?;
                let j = self.coder.decode_symbol(&m.cat).map_err(err)?;
                (Sym::Index(j as u32, key), prob_bits(&m.cat, j))
            }
            Sym::Pixel(_, p) => {
                let model = p.model(&self.cache.quantizer);
                let v = self.coder.decode_symbol(model).map_err(err)?;
                let v8 = u8::try_from(v).map_err(|_| format_err("pixel out of range"))?;
                (Sym::Pixel(v8, p), prob_bits(model, v))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum TSym {
        Info(u32),
        Index(u32, u32, f64),
        Pixels(Vec<u8>, Vec<f32>, f32),
    }

    fn tsym() -> impl Strategy<Value = TSym> {
        prop_oneof![
            (0u32..=255).prop_map(TSym::Info),
            (1u32..=12, 0.0f64..20.0, any::<u32>()).prop_map(|(l, kl, j)| TSym::Index(
                j % (1 << l),
                l,
                kl
            )),
            (1usize..6, -1.2f32..1.2, 0.001f32..0.2, any::<u64>()).prop_map(|(n, m, s, seed)| {
                let mut vals = Vec::new();
                let mut mus = Vec::new();
                for i in 0..n {
                    let h = crate::rng::hash4(seed, i as u64, 0, 0);
                    let mu = (m + ((h % 1000) as f32 / 1000.0 - 0.5) * 0.3).clamp(-1.0, 1.0);
                    mus.push(mu);
                    // value near the mean, sometimes far
                    let c = ((mu as f64 + 1.0) * 127.5).round() as i64;
                    let off = ((h >> 20) % 21) as i64 - 10;
                    let off = if (h >> 40).is_multiple_of(10) {
                        off * 20
                    } else {
                        off
                    };
                    vals.push((c + off).clamp(0, 255) as u8);
                }
                TSym::Pixels(vals, mus, s)
            }),
        ]
    }

    /// Writes steps; returns the encoding. prev_q threads through Info symbols.
    fn write(steps: &[Vec<TSym>]) -> EncodedSymbols {
        let mut w = SymbolWriter::new();
        let mut prev = 0;
        for st in steps {
            w.begin_step();
            for s in st {
                match s {
                    TSym::Info(q) => {
                        w.write_step_info(*q, prev).unwrap();
                        prev = *q;
                    }
                    TSym::Index(j, l, kl) => {
                        w.write_index(*j, IndexModelKey::new(*l, *kl).unwrap())
                            .unwrap();
                    }
                    TSym::Pixels(v, m, s) => {
                        w.write_pixels(v, m, *s).unwrap();
                    }
                }
            }
        }
        w.finish().unwrap()
    }

    /// Reads the first `n_steps` steps and checks them.
    fn check_read(words: &[u32], steps: &[Vec<TSym>], n_steps: usize) -> bool {
        let mut r = SymbolReader::new(words).unwrap();
        let mut prev = 0;
        for st in &steps[..n_steps] {
            for s in st {
                match s {
                    TSym::Info(q) => {
                        if r.read_step_info(prev).ok() != Some(*q) {
                            return false;
                        }
                        prev = *q;
                    }
                    TSym::Index(j, l, kl) => {
                        if r.read_index(IndexModelKey::new(*l, *kl).unwrap()).ok() != Some(*j) {
                            return false;
                        }
                    }
                    TSym::Pixels(v, m, s) => {
                        let mut out = vec![0u8; v.len()];
                        if r.read_pixels(m, *s, &mut out).is_err() || &out != v {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trip_all_kinds(steps in prop::collection::vec(prop::collection::vec(tsym(), 0..6), 1..8)) {
            let enc = write(&steps);
            prop_assert_eq!(enc.words_needed.len(), steps.len());
            prop_assert!(check_read(&enc.words, &steps, steps.len()));
            prop_assert_eq!(*enc.words_needed.last().unwrap() as usize, enc.words.len());
            prop_assert!(enc.words_needed.windows(2).all(|w| w[0] <= w[1]));
        }

        #[test]
        fn truncated_prefix_decodes_complete_steps(
            steps in prop::collection::vec(prop::collection::vec(tsym(), 1..5), 1..10),
            extra in 0usize..4,
        ) {
            let enc = write(&steps);
            for (i, &need) in enc.words_needed.iter().enumerate() {
                for w in [need as usize, need as usize + extra] {
                    let w = w.min(enc.words.len());
                    prop_assert!(check_read(&enc.words[..w], &steps, i + 1),
                        "prefix {} words (needed {}) fails for step {}", w, need, i);
                }
            }
        }

        #[test]
        fn garbage_never_panics(
            words in prop::collection::vec(any::<u32>(), 0..40),
            prev in 0u32..=255,
            mu in prop::collection::vec(-3.0f32..3.0, 4),
            sigma in prop_oneof![Just(0.0f32), Just(f32::NAN), Just(f32::INFINITY), 1e-7f32..10.0],
            l in 1u32..=MAX_LOG2_CANDIDATES,
        ) {
            if let Ok(mut r) = SymbolReader::new(&words) {
                for _ in 0..20 {
                    let _ = r.read_step_info(prev);
                    let _ = r.read_index(IndexModelKey::new(l.min(12), 4.0).unwrap());
                    let mut px = [0u8; 4];
                    let _ = r.read_pixels(&mu, sigma, &mut px);
                    let _ = r.read_pixels(&[0.0, f32::NAN, 5.0, -1.0], 0.01, &mut px);
                }
            }
        }

        #[test]
        fn extreme_pixel_models_round_trip(
            vals in prop::collection::vec(any::<u8>(), 1..20),
            mu in -3.0f32..3.0,
            sigma in prop_oneof![Just(0.0f32), Just(f32::NAN), 1e-7f32..20.0],
        ) {
            let mus = vec![mu; vals.len()];
            let mut w = SymbolWriter::new();
            w.write_pixels(&vals, &mus, sigma).unwrap();
            let enc = w.finish().unwrap();
            let mut r = SymbolReader::new(&enc.words).unwrap();
            let mut out = vec![0u8; vals.len()];
            r.read_pixels(&mus, sigma, &mut out).unwrap();
            prop_assert_eq!(out, vals);
        }
    }

    #[test]
    fn kl_quantiser() {
        assert_eq!(quantize_kl(0.0), 0);
        assert_eq!(quantize_kl(f64::NAN), 0);
        assert_eq!(quantize_kl(f64::INFINITY), 255);
        assert_eq!(quantize_kl(1e300), 255);
        for q in 0..=255 {
            let k = kl_hat_bits(q);
            assert_eq!(quantize_kl(k), q, "q={q} kl={k}");
            assert!((k - (2f64.powf(q as f64 / 4.0) - 1.0)).abs() <= 1e-12 * (k + 1.0));
        }
    }

    #[test]
    fn step_info_model_p0() {
        // the first delta: the prior alone, P(0) = 0.6
        let mut m = StepInfoModel::new();
        assert!((m.ideal_bits(255) - (-0.6f64.log2())).abs() < 1e-12);
        let bits = prob_bits(m.categorical(), 255usize);
        assert!((bits - (-0.6f64.log2())).abs() < 1e-3);
        // the first delta is not counted; ten zero deltas after it are:
        // P(0) = (2 · 0.6 + 10) / (2 + 10)
        m.update(255 + 40);
        for _ in 0..10 {
            m.update(255);
        }
        let want = -(11.2f64 / 12.0).log2();
        assert!((m.ideal_bits(255) - want).abs() < 1e-12);
        assert!((prob_bits(m.categorical(), 255usize) - want).abs() < 1e-3);
    }

    #[test]
    fn adaptive_step_info_round_trips_and_gets_cheap() {
        // a K = 1000-like run of side information: a ramp with mostly zero deltas
        let qs: Vec<u32> = (0..1000u32).map(|i| 8 + i / 40).collect();
        let mut w = SymbolWriter::new();
        let mut prev = 0;
        for &q in &qs {
            w.begin_step();
            w.write_step_info(q, prev).unwrap();
            prev = q;
        }
        let ideal = w.ideal_bits().step_info;
        let enc = w.finish().unwrap();
        let mut r = SymbolReader::new(&enc.words).unwrap();
        let mut prev = 0;
        for &q in &qs {
            assert_eq!(r.read_step_info(prev).unwrap(), q);
            prev = q;
        }
        let actual = enc.words.len() as f64 * 32.0;
        // the fixed model of version 3 would cost ≥ 0.74 bits per step (740 bits)
        assert!(ideal < 250.0, "ideal {ideal}");
        assert!(actual < ideal + 96.0, "actual {actual} vs ideal {ideal}");
    }

    #[test]
    fn hostile_step_info_is_format_error() {
        // decode q from prev 255 with a stream that says delta > 0
        let mut w = SymbolWriter::new();
        w.write_step_info(200, 0).unwrap(); // delta +200
        let enc = w.finish().unwrap();
        let mut r = SymbolReader::new(&enc.words).unwrap();
        assert!(matches!(r.read_step_info(255), Err(Error::Format(_))));
        let mut r = SymbolReader::new(&enc.words).unwrap();
        assert!(matches!(r.read_step_info(300), Err(Error::Parameter(_))));
        assert!(matches!(SymbolReader::new(&[0, 1]), Err(Error::Format(_))));
        assert!(IndexModelKey::new(21, 1.0).is_err());
        assert!(IndexModelKey::new(0, 1.0).is_err());
        assert!(IndexModelKey::new(4, f64::NAN).is_err());
        let mut w = SymbolWriter::new();
        assert!(w
            .write_index(16, IndexModelKey::new(4, 1.0).unwrap())
            .is_err());
        assert!(w.write_step_info(256, 0).is_err());
    }

    #[test]
    fn pixel_tails_fold_into_edges() {
        let c = ModelCache::new();
        // mean far below 0: nearly all mass in bin 0
        let p = PixelParams::snap(-1.5, 0.02);
        let m = p.model(&c.quantizer);
        assert!(prob_bits(m, 0) < 1e-4);
        let p = PixelParams::snap(1.5, 0.02);
        let m = p.model(&c.quantizer);
        assert!(prob_bits(m, 255) < 1e-4);
        // interior: model bits close to the ideal
        let mu = 0.1234f32;
        let sigma = 0.01f32;
        let p = PixelParams::snap(mu, sigma);
        let m = p.model(&c.quantizer);
        for v in 135u8..150 {
            let ideal = pixel_ideal_bits(v, mu as f64, sigma as f64);
            let actual = prob_bits(m, v as i32);
            if ideal < 15.0 {
                assert!(
                    (ideal - actual).abs() < 0.01,
                    "v={v} ideal={ideal} actual={actual}"
                );
            }
        }
        // ideal probabilities sum to 1
        let s: f64 = (0..=255u8)
            .map(|v| 2f64.powf(-pixel_ideal_bits(v, 0.3, 0.05)))
            .sum();
        assert!((s - 1.0).abs() < 1e-9);
        let s: f64 = (0..=255u8)
            .map(|v| 2f64.powf(-pixel_ideal_bits(v, -0.999, 0.003)))
            .sum();
        assert!((s - 1.0).abs() < 1e-9);
    }

    #[test]
    fn index_model_ideal_matches() {
        let key = IndexModelKey::new(8, 5.3).unwrap();
        assert_eq!(key.kl_bucket, 21);
        let mut c = ModelCache::new();
        let m = c.index(key).unwrap();
        let tot: f64 = (0..256).map(|j| 2f64.powf(-m.ideal_bits(j))).sum();
        assert!((tot - 1.0).abs() < 1e-9);
        assert!((m.ideal_bits(7) - index_ideal_bits(7, key)).abs() < 1e-9);
        assert!((prob_bits(&m.cat, 7usize) - m.ideal_bits(7)).abs() < 1e-3);
    }

    #[test]
    fn empty_writer() {
        let enc = SymbolWriter::new().finish().unwrap();
        assert!(enc.words.is_empty() && enc.words_needed.is_empty());
        let mut w = SymbolWriter::new();
        w.begin_step();
        w.begin_step();
        w.write_step_info(3, 0).unwrap();
        let enc = w.finish().unwrap();
        assert_eq!(enc.words_needed.len(), 2);
        // an empty first step still needs the words that prime the decoder's state
        assert_eq!(enc.words_needed[0] as usize, enc.words.len().min(2));
        assert_eq!(enc.words_needed[1] as usize, enc.words.len());
    }
}
