//! The codec: image → tiles → diffusion chain → packets, and back. The only module that sees
//! every stage (model, diffusion, channel simulation, entropy coding, bitstream).
//!
//! Stream semantics (format/SPEC.md): with a K-step chain (chain step i goes from
//! x_{τ_{i+1}} to x_{τ_i}, the network called at model time τ_{i+1}), x_{τ_K} = x_T is drawn
//! from N(0, I) with the shared seed; packets 0..K−2 carry the chain steps i = K−1 … 1 by
//! reverse channel coding (PFR), and packet K−1 (if lossless) carries every pixel of x_0 with
//! the discretized Gaussian p_θ(x_0 | x_{τ_1}). After m packets the decoder holds x_{τ_{K−m}},
//! or, with a deferral target (formats 6–7, [`crate::plan`]), the last coded state before it: a coded
//! transition may span several chain steps, whose other packets are empty.

use crate::bitstream::{self, Channels, ColourMode, Header, Params, Stream, VarianceCode};
use crate::diffusion::{Denoiser, Diffusion};
use crate::entropy::{SymbolReader, SymbolWriter};
use crate::error::{Error, Result};
use crate::image_io::RasterImage;
use crate::model::Model;
use crate::rcc::{self, RccParams, StepKey, StepStats};
use crate::rng;
use crate::schedule::{Schedule, StepStd, Variance};
use crate::tiling::TileGrid;
use crate::plan::{Planner, Transition};

/// Default number of chain steps for `encode` (K, quadratic spacing). Chosen by measurement
/// on 16 CIFAR-10 test images with the embedded model (bench/README.md, "Choosing the
/// defaults"): actual bits/dim 7.44 at K = 20, 7.02 at 35, 6.76 at 50, 6.48 at 100 (σ² = β),
/// while encode time grows linearly in K; 50 is the compromise.
pub const DEFAULT_STEPS: usize = 50;
/// Default reverse variance for a model that carries calibrated tables but no learned one (or
/// a chain shorter than [`LEARNED_MIN_STEPS`]): the KL-optimal per-step σ² (the session-4 model:
/// 4.31 bits/dim bound at K = 50 on the first 100 CIFAR-10 test images, against 4.83 with
/// σ² = β; MODEL.md).
pub const DEFAULT_VARIANCE: Variance = Variance::Optimal;
/// Default for a model without tables: σ² = β (it beat β̃ at every K measured).
pub const DEFAULT_VARIANCE_UNCALIBRATED: Variance = Variance::Large;

/// Fewest chain steps at which "auto" picks a model's learned variance. Measured with the
/// shipped model, first 100 CIFAR-10 test images, exact bound (MODEL.md): learned − optimal is
/// −0.023 bits/dim at K = 50 and −0.013 at K = 100, but +0.074 at K = 20, where the v head
/// (trained on the T = 1000 chain) does not fit the long respaced steps.
pub const LEARNED_MIN_STEPS: usize = 50;

/// The variance `name` names for `model` on a chain of `steps` steps: "auto" is the learned
/// variance for a model that has one ([`Model::learns_sigma`]) when `steps` ≥
/// [`LEARNED_MIN_STEPS`], else [`DEFAULT_VARIANCE`] when the model carries calibrated tables,
/// else [`DEFAULT_VARIANCE_UNCALIBRATED`].
pub fn resolve_variance(name: &str, model: &Model, steps: usize) -> Result<Variance> {
    if name.trim().eq_ignore_ascii_case("auto") {
        Ok(if model.learns_sigma() && steps >= LEARNED_MIN_STEPS {
            Variance::Learned
        } else if model.variance_tables().is_some() {
            DEFAULT_VARIANCE
        } else {
            DEFAULT_VARIANCE_UNCALIBRATED
        })
    } else {
        name.parse()
    }
}
/// Tile edge of the shipped models.
pub const TILE: usize = 32;
/// Largest image the decoder will allocate for by default (pixels).
pub const DEFAULT_MAX_PIXELS: u64 = 1 << 24;
/// Stream tag of x_T's noise.
const XT_STREAM: u64 = 0x7854;

/// Everything that defines a stream besides the image and the model.
#[derive(Debug, Clone)]
pub struct CodecParams {
    pub schedule: Schedule,
    pub variance: Variance,
    pub rcc: RccParams,
    pub seed: u64,
    /// Code x_0 exactly at the end.
    pub lossless: bool,
    /// Tiles per network call (fixed by the stream).
    pub batch_tiles: usize,
}

impl CodecParams {
    /// Default parameters with K steps of the given spacing ("dense" or "even").
    pub fn new(steps: usize, spacing: &str, variance: Variance) -> Result<Self> {
        let schedule = make_schedule(1000, steps, spacing)?;
        let rcc = RccParams::default_for(steps);
        Ok(Self { schedule, variance, rcc, seed: 0, lossless: true, batch_tiles: 64 })
    }
}

/// A K-step schedule from the CLI's spacing name.
pub fn make_schedule(t_max: usize, steps: usize, spacing: &str) -> Result<Schedule> {
    match spacing {
        "dense" => Schedule::dense_low(t_max, steps, crate::schedule::DEFAULT_DENSE_POWER),
        "even" => Schedule::even(t_max, steps),
        s => Err(Error::Parameter(format!("unknown spacing {s:?} (dense or even)"))),
    }
}

/// What the encoder measured at one packet.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PacketReport {
    /// Packet index (0-based); after it the decoder holds x at model time `t_after`.
    pub packet: usize,
    /// Model time before (τ_{i+1}) and after (τ_i) this step.
    pub t_before: usize,
    pub t_after: usize,
    /// Ideal cost: KL(q‖p) in bits for a chain step, −log2 p_θ(x_0|x_1) for the final step.
    pub ideal_bits: f64,
    /// Σ of ideal bits up to and including this packet.
    pub cum_ideal_bits: f64,
    /// Words of the ANS stream a decoder needs for packets 0..=this.
    pub cum_words: u32,
    /// Chunks coded (0: the step was sampled from p_θ for free).
    pub chunks: usize,
    /// Chunks whose realised KL exceeded the candidate budget.
    pub over_budget_chunks: usize,
    /// Code length of the chunk indices under the float index models (bits; 0 for the final
    /// step).
    pub index_bits: f64,
    /// Code length of the step's side information under the float model (bits).
    pub step_info_bits: f64,
    /// Faithfulness sums of the coded sample (empty for skipped and final steps).
    pub faith: rcc::Faithfulness,
}

impl PacketReport {
    /// A packet with no PFR chunks (a deferred step, or the lossless pixels), before its
    /// word count is known.
    fn without_chunks(packet: usize, t_before: usize, t_after: usize, ideal_bits: f64, cum_ideal_bits: f64) -> Self {
        PacketReport {
            packet,
            t_before,
            t_after,
            ideal_bits,
            cum_ideal_bits,
            cum_words: 0,
            chunks: 0,
            over_budget_chunks: 0,
            index_bits: 0.0,
            step_info_bits: 0.0,
            faith: rcc::Faithfulness::default(),
        }
    }
}

/// The encoder's account of a stream: ideal versus actual bits.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EncodeReport {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub tiles: usize,
    /// Coded dimensions (pixels × channels of the image, no padding).
    pub dims: usize,
    pub steps: usize,
    pub file_bytes: usize,
    /// Bytes before the body (header + step table).
    pub overhead_bytes: usize,
    pub ideal_bits: f64,
    pub packets: Vec<PacketReport>,
    pub encode_seconds: f64,
}

impl EncodeReport {
    /// Actual bits per coded dimension (whole file).
    pub fn actual_bpd(&self) -> f64 {
        self.file_bytes as f64 * 8.0 / self.dims as f64
    }
    /// Ideal bits per coded dimension (Σ KL + L_0 of the coded pixels).
    pub fn ideal_bpd(&self) -> f64 {
        self.ideal_bits / self.dims as f64
    }
    /// Bytes of the file a decoder needs to decode `packets` packets.
    pub fn prefix_bytes(&self, packets: usize) -> usize {
        let words = if packets == 0 { 0 } else { self.packets[packets - 1].cum_words as usize };
        self.overhead_bytes + 4 * words
    }
}

/// Called by the encoder at every prefix m = 0..K−1 (packets decoded so far) with the chain
/// state's one-step reconstruction x̂_0 (tiles, model range), before packet m is coded.
pub type PrefixObserver<'a> = dyn FnMut(usize, &[f32]) -> Result<()> + 'a;

/// Evaluates ε_θ for all tiles, in fixed batches of `batch` tiles.
pub fn eps_tiles(model: &dyn Denoiser, x: &[f32], tiles: usize, batch: usize, t: usize) -> Result<Vec<f32>> {
    let d = 3 * TILE * TILE;
    let mut out = Vec::with_capacity(x.len());
    for start in (0..tiles).step_by(batch.max(1)) {
        let n = batch.min(tiles - start);
        out.extend(model.eps(&x[start * d..(start + n) * d], n, t)?);
    }
    Ok(out)
}

/// Model range [−1, 1] from 8-bit samples.
fn to_model(v: &[u8]) -> Vec<f32> {
    v.iter().map(|&k| (k as f32) * (2.0 / 255.0) - 1.0).collect()
}

/// 8-bit samples from model range (rounded, clamped).
pub fn to_u8(x: &[f32]) -> Vec<u8> {
    x.iter().map(|&v| (((v as f64) + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8).collect()
}

/// The 8-bit tile samples a decoder shows for the model-range tiles `x0_tiles` after a lossy
/// prefix: rounded and clamped; for a grey image every plane holds the mean of the three
/// predicted planes.
pub fn display_tiles(x0_tiles: &[f32], grey: bool) -> Vec<u8> {
    let mut out = to_u8(x0_tiles);
    if grey {
        let t2 = TILE * TILE;
        for tile in out.chunks_exact_mut(3 * t2) {
            for j in 0..t2 {
                let v = ((tile[j] as u32 + tile[t2 + j] as u32 + tile[2 * t2 + j] as u32 + 1) / 3) as u8;
                tile[j] = v;
                tile[t2 + j] = v;
                tile[2 * t2 + j] = v;
            }
        }
    }
    out
}

/// Pixel indices (into the tile buffer) coded by the lossless final step, in coding order.
fn coded_pixels(grid: &TileGrid, grey: bool) -> Vec<usize> {
    let t = grid.tile;
    let planes = if grey { 1 } else { 3 };
    let mut idx = Vec::new();
    for i in 0..grid.num_tiles() {
        for c in 0..planes {
            for y in 0..t {
                for x in 0..t {
                    if grid.inside(i, y, x) {
                        idx.push(i * grid.tile_dims() + c * t * t + y * t + x);
                    }
                }
            }
        }
    }
    idx
}

/// The initial state x_T: standard normals from the shared seed.
fn initial_state(seed: u64, dims: usize) -> Vec<f32> {
    let mut x = vec![0f32; dims];
    rng::fill_normals(seed, XT_STREAM, &mut x);
    x
}

/// The network's outputs at chain step i for all tiles, in fixed batches of `batch` tiles: ε,
/// and for a learned variance p_θ's std per dimension ([`crate::schedule::learned_sigma`]).
pub fn step_outputs_tiles(model: &dyn Denoiser, diff: &Diffusion, x: &[f32], tiles: usize, batch: usize, i: usize) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let (eps, v) = raw_outputs_tiles(model, diff, x, tiles, batch, i)?;
    Ok((eps, v.map(|v| crate::schedule::learned_sigma(&diff.schedule, i, &v))))
}

/// The network's outputs at chain step i for all tiles, in fixed batches of `batch` tiles
/// ([`Diffusion::raw_step_outputs`]): ε, and for a learned variance the raw v (p_θ's std then
/// depends on the transition, [`Transition`]).
fn raw_outputs_tiles(model: &dyn Denoiser, diff: &Diffusion, x: &[f32], tiles: usize, batch: usize, i: usize) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let d = 3 * TILE * TILE;
    let mut eps = Vec::with_capacity(x.len());
    let mut v: Option<Vec<f32>> = None;
    for start in (0..tiles).step_by(batch.max(1)) {
        let n = batch.min(tiles - start);
        let (e, vb) = diff.raw_step_outputs(model, &x[start * d..(start + n) * d], n, d, i)?;
        eps.extend(e);
        if let Some(vb) = vb {
            v.get_or_insert_with(|| Vec::with_capacity(x.len())).extend(vb);
        }
    }
    Ok((eps, v))
}

/// p_θ's std at chain step i: per dimension for a learned variance, else the step's.
fn step_std<'a>(diff: &Diffusion, i: usize, sd: &'a Option<Vec<f32>>) -> StepStd<'a> {
    match sd {
        Some(s) => StepStd::PerDim(s),
        None => StepStd::Uniform(diff.sigma2(i).sqrt() as f32),
    }
}

/// Mean and std (model range) of p_θ(x_0 | x_{τ_1}) at the coded pixels `idx` for the final
/// step.
fn final_step_model(diff: &Diffusion, x: &[f32], eps: &[f32], sd: &Option<Vec<f32>>, idx: &[usize]) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let means = diff.predict_x0(x, eps, 0);
    let m = idx.iter().map(|&j| means[j]).collect();
    let s = sd.as_ref().map(|s| idx.iter().map(|&j| s[j]).collect());
    (means, m, s)
}

/// Refuses a learned variance for a model without the v output (`err`: the error kind to give).
pub(crate) fn check_learned(variance: Variance, model: &Model, err: fn(String) -> Error) -> Result<()> {
    if variance == Variance::Learned && !model.learns_sigma() {
        return Err(err("variance learned needs a model with a learned variance (learn_sigma); this model predicts ε only".into()));
    }
    Ok(())
}

/// Encodes `img` with `model`. `observer` (optional) sees the reconstruction at every prefix.
pub fn encode(
    model: &Model,
    img: &RasterImage,
    p: &CodecParams,
    progress: &mut dyn FnMut(usize, usize),
    mut observer: Option<&mut PrefixObserver<'_>>,
) -> Result<(Vec<u8>, EncodeReport)> {
    let start = std::time::Instant::now();
    p.rcc.validate()?;
    VarianceCode::try_from(p.variance)?; // a kind the stream can name, before any work
    check_learned(p.variance, model, Error::Parameter)?;
    let on_grid = |v: f64| v * 256.0 == (v * 256.0).round();
    if !on_grid(p.rcc.chunk_bits) || !on_grid(p.rcc.skip_below_bits) || !on_grid(p.rcc.defer_bits) {
        return Err(Error::Parameter("chunk_bits, skip_below_bits and defer_bits must be multiples of 1/256".into()));
    }
    let grid = TileGrid::new(img.width as usize, img.height as usize, TILE);
    let grey = img.channels == 1;
    let tiles = grid.num_tiles();
    let dims_all = tiles * grid.tile_dims();
    let x0_u8 = grid.to_tiles(&img.to_rgb());
    let x0 = to_model(&x0_u8);
    let diff = Diffusion::with_tables(p.schedule.clone(), p.variance, model.variance_tables())?;
    let k = diff.steps();
    let batch = p.batch_tiles.clamp(1, 4096);
    let mut x = initial_state(p.seed, dims_all);
    let mut w = SymbolWriter::new();
    let mut prev_q = 0u32;
    let mut packets = Vec::new();
    let mut cum_ideal = 0.0;
    let mut step_stats: Vec<StepStats> = Vec::new();
    let total_calls = k;
    let mut planner = Planner::new(p.rcc.defer_bits, tiles);
    let (mut ia, mut m) = (k - 1, 0usize);
    while ia >= 1 {
        let (eps, v) = raw_outputs_tiles(model, &diff, &x, tiles, batch, ia)?;
        let x0_hat = diff.predict_x0(&x, &eps, ia);
        let j = planner.target(&diff.schedule, ia);
        // deferred steps: empty packets (the decoder still holds x at τ_ia after them)
        for jj in (j + 1..ia).rev() {
            if let Some(obs) = observer.as_deref_mut() {
                obs(m, &x0_hat)?;
            }
            w.begin_step();
            packets.push(PacketReport::without_chunks(m, diff.schedule.model_t(jj + 1), diff.schedule.model_t(jj), 0.0, cum_ideal));
            step_stats.push(StepStats { skipped: true, ..Default::default() });
            m += 1;
            progress(m, total_calls);
        }
        if let Some(obs) = observer.as_deref_mut() {
            obs(m, &x0_hat)?;
        }
        let tr = Transition::new(&diff, model.variance_tables(), ia, j)?;
        let (dt, si) = (tr.diff(&diff), tr.index);
        let sd = tr.learned_std(&diff, &v);
        let mu_p = dt.posterior_mean(&x0_hat, &x, si);
        let mu_q = dt.posterior_mean(&x0, &x, si);
        let sigma_p = step_std(dt, si, &sd);
        let sigma_q = dt.posterior_variance(si).sqrt() as f32;
        w.begin_step();
        let key = StepKey { seed: p.seed, step: ia as u32 };
        let mut q_ref = planner.q_ref(&diff.schedule, ia, j, prev_q);
        let (x_new, stats) = rcc::encode_step(key, &p.rcc, &mu_p, sigma_p, &mu_q, sigma_q, &mut q_ref, &mut w)?;
        prev_q = stats.q;
        planner.update(&diff.schedule, ia, j, stats.q);
        cum_ideal += stats.kl_bits;
        packets.push(PacketReport {
            packet: m,
            t_before: diff.schedule.model_t(j + 1),
            t_after: diff.schedule.model_t(j),
            ideal_bits: stats.kl_bits,
            cum_ideal_bits: cum_ideal,
            cum_words: 0,
            chunks: stats.chunks as usize,
            over_budget_chunks: stats.over_budget_chunks as usize,
            index_bits: stats.index_bits_ideal,
            step_info_bits: stats.step_info_bits_ideal,
            faith: stats.faith,
        });
        step_stats.push(stats);
        x = x_new;
        ia = j;
        m += 1;
        progress(m, total_calls);
    }
    // Final step: x_{τ_1} → x_0.
    let (eps, sd) = step_outputs_tiles(model, &diff, &x, tiles, batch, 0)?;
    let x0_hat = diff.predict_x0(&x, &eps, 0);
    if let Some(obs) = observer.as_deref_mut() {
        obs(k - 1, &x0_hat)?;
    }
    if p.lossless {
        let idx = coded_pixels(&grid, grey);
        let (_, m, s) = final_step_model(&diff, &x, &eps, &sd, &idx);
        let values: Vec<u8> = idx.iter().map(|&j| x0_u8[j]).collect();
        w.begin_step();
        let bits = w.write_pixels(&values, &m, step_std(&diff, 0, &s))?;
        cum_ideal += bits;
        packets.push(PacketReport::without_chunks(k - 1, diff.schedule.model_t(0), 0, bits, cum_ideal));
    }
    progress(total_calls, total_calls);
    let enc = w.finish()?;
    let (words, words_needed) = (enc.words, enc.words_needed);
    for (pk, &cw) in packets.iter_mut().zip(&words_needed) {
        pk.cum_words = cw;
    }
    let header = Header {
        model_id: model.sha256()[..bitstream::header::MODEL_ID_LEN].try_into().expect("4 bytes"),
        width: img.width,
        height: img.height,
        channels: Channels::try_from(img.channels)?,
        taus: diff.schedule.taus().iter().map(|&t| t as u16).collect(),
        variance: VarianceCode::try_from(p.variance)?,
        params: Params {
            t_max: diff.schedule.t_max() as u16,
            batch_tiles: batch as u16,
            seed: p.seed,
            chunk_bits_q8: (p.rcc.chunk_bits * 256.0).round() as u16,
            margin_bits: p.rcc.margin_bits as u8,
            min_log2_candidates: p.rcc.min_log2_candidates as u8,
            max_log2_candidates: p.rcc.max_log2_candidates as u8,
            skip_below_q8: (p.rcc.skip_below_bits * 256.0).round() as u16,
            defer_q8: (p.rcc.defer_bits * 256.0).round() as u16,
        },
        lossless: p.lossless,
        body_words: words.len() as u32,
        check: crc32fast::hash(img.samples()),
    };
    let bytes = bitstream::write_stream(&header, &words)?;
    let overhead_bytes = bytes.len() - 4 * words.len();
    let dims = img.width as usize * img.height as usize * if grey { 1 } else { 3 };
    let report = EncodeReport {
        width: img.width,
        height: img.height,
        channels: img.channels,
        tiles,
        dims,
        steps: k,
        file_bytes: bytes.len(),
        overhead_bytes,
        ideal_bits: cum_ideal,
        packets,
        encode_seconds: start.elapsed().as_secs_f64(),
    };
    Ok((bytes, report))
}

/// How to show the image after a prefix of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recon {
    /// The paper's one-step x̂_0 = (x_t − √(1−ᾱ) ε_θ)/√ᾱ.
    OneStep,
    /// Deterministic DDIM denoising from x_t to x_0 along the remaining chain.
    Ddim,
}

impl std::str::FromStr for Recon {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "onestep" | "one-step" => Ok(Recon::OneStep),
            "ddim" => Ok(Recon::Ddim),
            _ => Err(Error::Parameter(format!("unknown reconstruction {s:?} (onestep or ddim)"))),
        }
    }
}

/// Decoder options.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub max_packets: Option<usize>,
    pub max_bytes: Option<usize>,
    pub recon: Recon,
    pub max_pixels: u64,
    /// Largest tiles × K a stream may ask for (format/SPEC.md § 6), checked before any network
    /// call.
    pub max_work: u64,
}

/// Default [`DecodeOptions::max_work`]: 2^20 tile-steps (≈ 40 CPU-minutes here; a 768×512
/// photo at K = 1000 is 384,000).
pub const DEFAULT_MAX_WORK: u64 = 1 << 20;

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { max_packets: None, max_bytes: None, recon: Recon::OneStep, max_pixels: DEFAULT_MAX_PIXELS, max_work: DEFAULT_MAX_WORK }
    }
}

/// What the decoder did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecodeReport {
    pub packets_total: usize,
    pub packets_decoded: usize,
    /// Model time of the state the reconstruction came from (0: exact x_0).
    pub t: usize,
    pub lossless: bool,
    /// Bytes of the file the decoded packets needed: the header and the body words the entropy
    /// decoder consumed (the length of the prefix file that decodes to the same image).
    pub bytes_used: usize,
    pub decode_seconds: f64,
}

/// Reads a stream's header and checks it against the default limits.
pub fn parse(bytes: &[u8]) -> Result<Stream> {
    bitstream::read_stream(bytes, &bitstream::Limits::default())
}

/// Rebuilds the codec parameters a stream was written with.
pub fn params_of(h: &Header) -> Result<CodecParams> {
    let hp = &h.params;
    let schedule = Schedule::respaced(hp.t_max as usize, h.taus.iter().map(|&t| t as usize).collect())?;
    let variance = Variance::from(h.variance);
    let rcc = RccParams {
        chunk_bits: h.chunk_bits(),
        margin_bits: hp.margin_bits as u32,
        min_log2_candidates: hp.min_log2_candidates as u32,
        max_log2_candidates: hp.max_log2_candidates as u32,
        skip_below_bits: h.skip_below_bits(),
        defer_bits: h.defer_bits(),
        // encoder only; not in the stream
        ..RccParams::default()
    };
    rcc.validate()?;
    Ok(CodecParams { schedule, variance, rcc, seed: hp.seed, lossless: h.lossless, batch_tiles: hp.batch_tiles as usize })
}

/// Decodes a stream, or the longest packet prefix allowed by `opts` and the bytes present.
///
/// There is no packet index (format/SPEC.md § 5): each packet's symbols are read before its
/// network call, and the first packet during which the entropy decoder ran out of words ends
/// the prefix.
pub fn decode(
    model: &Model,
    bytes: &[u8],
    opts: &DecodeOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(RasterImage, DecodeReport)> {
    let start = std::time::Instant::now();
    let cut = opts.max_bytes.map_or(bytes.len(), |b| b.min(bytes.len()));
    let stream = parse(&bytes[..cut])?;
    let h = &stream.header;
    h.check_model(&model.sha256())?;
    if h.pixel_count() > opts.max_pixels {
        return Err(Error::LimitsExceeded(format!(
            "{}x{} image exceeds the decoder's limit of {} pixels",
            h.width, h.height, opts.max_pixels
        )));
    }
    if h.work() > opts.max_work {
        return Err(Error::LimitsExceeded(format!(
            "the stream asks for {} tile-steps ({} tiles × {} steps), more than the decoder's limit of {} (decode --max-work raises it)",
            h.work(),
            { let (a, d) = h.tile_grid(); a * d },
            h.num_steps(),
            opts.max_work
        )));
    }
    if model.config().resolution != TILE {
        return Err(Error::Format(format!("the model's resolution {} is not the stream's tile size {TILE}", model.config().resolution)));
    }
    let p = params_of(h)?;
    check_learned(p.variance, model, Error::Format)?;
    let diff = Diffusion::with_tables(p.schedule.clone(), p.variance, model.variance_tables())?;
    let k = diff.steps();
    let total = h.num_packets();
    let limit = opts.max_packets.unwrap_or(total).min(total);
    let complete = !stream.truncated && limit == total && opts.max_bytes.is_none_or(|b| b >= bytes.len());
    let grid = TileGrid::new(h.width as usize, h.height as usize, TILE);
    let grey = h.colour_mode() == ColourMode::GreyReplicated;
    let tiles = grid.num_tiles();
    let dims = tiles * grid.tile_dims();
    let batch = p.batch_tiles.max(1);
    let mut x = initial_state(p.seed, dims);
    let mut r = match (stream.words.is_empty(), stream.truncated) {
        (true, _) => None,
        (false, false) => Some(SymbolReader::new(&stream.words)?),
        (false, true) => Some(SymbolReader::new_prefix(&stream.words)?),
    };
    let mut prev_q = 0u32;
    let rcc_limit = limit.min(k - 1);
    let mut decoded = 0usize;
    let mut words_used = 0usize;
    let mut eps_now: Option<Vec<f32>> = None;
    let mut planner = Planner::new(p.rcc.defer_bits, tiles);
    // the chain index whose state x is
    let mut ia = k - 1;
    while ia >= 1 && decoded < rcc_limit {
        let Some(rd) = r.as_mut() else { break };
        let j = planner.target(&diff.schedule, ia);
        // deferred steps: empty packets, the state stays
        let empty = (ia - j - 1).min(rcc_limit - decoded);
        decoded += empty;
        if decoded == rcc_limit {
            break;
        }
        let mut q_ref = planner.q_ref(&diff.schedule, ia, j, prev_q);
        let sym = rcc::read_step(&p.rcc, dims, &mut q_ref, rd)?;
        if rd.starved() {
            break;
        }
        let (eps, v) = raw_outputs_tiles(model, &diff, &x, tiles, batch, ia)?;
        let x0_hat = diff.predict_x0(&x, &eps, ia);
        let tr = Transition::new(&diff, model.variance_tables(), ia, j)?;
        let (dt, si) = (tr.diff(&diff), tr.index);
        let sd = tr.learned_std(&diff, &v);
        let mu_p = dt.posterior_mean(&x0_hat, &x, si);
        x = rcc::place_step(StepKey { seed: p.seed, step: ia as u32 }, &p.rcc, &mu_p, step_std(dt, si, &sd), &sym)?;
        prev_q = sym.q;
        planner.update(&diff.schedule, ia, j, sym.q);
        ia = j;
        decoded += 1;
        words_used = rd.words_consumed();
        progress(decoded, rcc_limit + 1);
    }
    // The chain index whose input state x now is.
    let i_now = ia;
    let mut samples_rgb_tiles: Option<Vec<u8>> = None;
    if p.lossless && ia == 0 && decoded == k - 1 && limit == total {
        let (eps, sd) = step_outputs_tiles(model, &diff, &x, tiles, batch, 0)?;
        if let Some(rd) = r.as_mut() {
            let idx = coded_pixels(&grid, grey);
            let (means, m, s) = final_step_model(&diff, &x, &eps, &sd, &idx);
            let mut values = vec![0u8; idx.len()];
            rd.read_pixels(&m, step_std(&diff, 0, &s), &mut values)?;
            if !rd.starved() {
                let mut out = to_u8(&means);
                for (&j, &v) in idx.iter().zip(&values) {
                    out[j] = v;
                }
                if grey {
                    let t2 = TILE * TILE;
                    for tile in out.chunks_exact_mut(grid.tile_dims()) {
                        let (r0, rest) = tile.split_at_mut(t2);
                        rest[..t2].copy_from_slice(r0);
                        rest[t2..].copy_from_slice(r0);
                    }
                }
                samples_rgb_tiles = Some(out);
                decoded += 1;
                words_used = rd.words_consumed();
            }
        }
        if samples_rgb_tiles.is_none() {
            eps_now = Some(eps);
        }
    }
    let lossless_done = samples_rgb_tiles.is_some();
    if complete && (decoded < total || words_used != stream.words.len()) {
        return Err(Error::Format(format!(
            "corrupted stream: {decoded} of {total} packets decoded using {words_used} of {} body words",
            stream.words.len()
        )));
    }
    let samples_rgb_tiles = match samples_rgb_tiles {
        Some(s) => s,
        None => {
            let eps = match eps_now {
                Some(e) => e,
                None => eps_tiles(model, &x, tiles, batch, diff.schedule.model_t(i_now))?,
            };
            let x0 = match opts.recon {
                Recon::OneStep => diff.predict_x0(&x, &eps, i_now),
                Recon::Ddim => {
                    let mut xs = diff.ddim_step(&x, &eps, i_now);
                    for i in (0..i_now).rev() {
                        let e = eps_tiles(model, &xs, tiles, batch, diff.schedule.model_t(i))?;
                        xs = diff.ddim_step(&xs, &e, i);
                    }
                    xs
                }
            };
            display_tiles(&x0, grey)
        }
    };
    progress(rcc_limit + 1, rcc_limit + 1);
    let rgb = grid.from_tiles(&samples_rgb_tiles);
    let img = RasterImage::from_rgb(h.width, h.height, h.channels.count() as u8, &rgb)?;
    if lossless_done && crc32fast::hash(img.samples()) != h.check {
        return Err(Error::Checksum(
            "decoded image differs from the encoded one (model, platform or data mismatch)".into(),
        ));
    }
    let report = DecodeReport {
        packets_total: total,
        packets_decoded: decoded,
        t: if lossless_done { 0 } else { diff.schedule.model_t(i_now) },
        lossless: lossless_done,
        bytes_used: stream.header_len + 4 * words_used,
        decode_seconds: start.elapsed().as_secs_f64(),
    };
    Ok((img, report))
}

impl Denoiser for Model {
    fn eps(&self, x: &[f32], n: usize, t: usize) -> Result<Vec<f32>> {
        Model::eps(self, x, n, t)
    }
    fn image_shape(&self) -> (usize, usize, usize) {
        let c = self.config();
        (c.in_channels, c.resolution, c.resolution)
    }
    fn learns_sigma(&self) -> bool {
        Model::learns_sigma(self)
    }
    fn predict(&self, x: &[f32], n: usize, t: usize) -> Result<Vec<f32>> {
        Model::predict(self, x, n, t)
    }
}

/// Human-readable description of a stream: the header and the file's size. Per-packet sizes
/// are not stored (the format has no packet index): `encode --report` writes them.
pub fn info(bytes: &[u8]) -> Result<String> {
    use std::fmt::Write;
    let s = parse(bytes)?;
    let h = &s.header;
    let grey = h.colour_mode() == ColourMode::GreyReplicated;
    let dims = h.pixel_count() as f64 * if grey { 1.0 } else { 3.0 };
    let mut out = String::new();
    let _ = writeln!(out, "{}", h.summary());
    let _ = writeln!(
        out,
        "file: {} bytes ({} header, {} body words{}): {:.4} bits/dim, {} packets",
        bytes.len(),
        s.header_len,
        s.words.len(),
        if s.truncated { format!(" of {}, TRUNCATED", h.body_words) } else { String::new() },
        bytes.len() as f64 * 8.0 / dims,
        h.num_packets()
    );
    Ok(out)
}
