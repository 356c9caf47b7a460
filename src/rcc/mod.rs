//! Reverse channel coding: transmit a sample of q = N(μ_q, σ_q² I) using the shared proposal
//! p = N(μ_p, σ_p² I) (DESIGN.md §4), by the Poisson functional representation on chunks
//! ([`pfr`]).
//!
//! Per coded step (both sides derive everything but `q` and the indices):
//! 1. `KL_bits` = Σ_d KL(N(μ_q,d, σ_q²) ‖ N(μ_p,d, σ_p²)) / ln 2 (encoder only).
//! 2. side information `q = round(4·log2(1 + KL_bits))` ∈ 0..=255, coded as a delta to the
//!    previous step's `q`; both sides use `KLhat = 2^(q/4) − 1`.
//! 3. chunk count `n = 0` if `KLhat < skip_below_bits` (skipped step: x = μ_p + σ_p z with z
//!    from the shared generator keyed `(seed, step, SKIP)`, a free sample of p, not q), else
//!    `n = min(D, max(1, ceil(KLhat / chunk_bits)))`.
//! 4. a seeded permutation of 0..D split into `n` contiguous near-equal slices.
//! 5. per chunk `2^L` candidates, `L = clamp(ceil(KLhat/n) + margin_bits, min, max)`; the
//!    encoder selects `j* = argmin_j (ln T_j − ln w_j)` with private Poisson arrival times
//!    `T_j` (w_j: the density ratio of the tilted target, [`RccParams::tilt`], to p), and
//!    codes `j*` with a truncated Zipf model ([`crate::entropy::IndexModelKey`]).

pub mod pfr;
pub mod pool;
pub mod quant;

use serde::{Deserialize, Serialize};

use crate::entropy::{kl_hat_bits, IndexModelKey, MAX_LOG2_CANDIDATES};
use crate::error::{Error, Result};
pub use crate::schedule::StepStd;

pub use pfr::{decode_step, encode_step, place_step, read_step, StepSymbols};

/// Parameters of the chunked PFR coder (must be identical on both sides).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RccParams {
    /// Target KL per chunk in bits (B).
    pub chunk_bits: f64,
    /// Extra log2 candidates beyond the chunk's estimated KL.
    pub margin_bits: u32,
    /// Lower clamp of log2 candidates per chunk.
    pub min_log2_candidates: u32,
    /// Upper clamp of log2 candidates per chunk (at most 20).
    pub max_log2_candidates: u32,
    /// Steps whose estimated KL is below this many bits are skipped (sample of p, free).
    pub skip_below_bits: f64,
    /// Encoder only (not in the stream; any value decodes): the target the candidates are
    /// scored against is q tilted away from p, its shift μ_q − μ_p scaled by `tilt`. A finite
    /// candidate set pulls the chosen sample toward p (in the 1-D model of a 12-bit chunk with
    /// 2^15 candidates, by 0.49 of a standard deviation along the shift); the chain that
    /// follows then needs more bits. 1 = plain PFR.
    pub tilt: f64,
    /// Encoder only (not in the stream): with a std per dimension (a learned variance), score
    /// every dimension's own quadratic coefficient a_d (a second GEMM against the squared pool
    /// values) instead of its chunk's mean.
    pub exact_quadratic: bool,
    /// Deferral target D in bits per 32×32 tile (in the stream; 0 = every chain step coded): a
    /// chain step is coded from the last coded state to the first later time at which the
    /// planned KL of the image reaches D times its tile count, the steps between are deferred
    /// (format/SPEC.md § 8, "Deferred steps"; format 6 had D per image). Default:
    /// [`RccParams::default_for`] the chain's K.
    pub defer_bits: f64,
    /// Encoder only (not in the stream; any value decodes): how candidates are scored
    /// ([`Scorer`]).
    pub scorer: Scorer,
}

/// How the PFR encoder scores candidates. Encoder only: both give streams every decoder
/// reads, and each gives the same bytes on every machine and thread count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scorer {
    /// From the pool's int8 copy with integer sums ([`quant`]): approximate scores (errors of
    /// a few hundredths of a nat), a quarter of the memory traffic, 64 multiply-adds per
    /// AVX-512 VNNI instruction. Where it does not serve (fewer than 16 candidates, chunks
    /// over 32,768 dimensions), the f32 scorer.
    #[default]
    Int8,
    /// Exact f32 scores of the pool's values, as the decoder regenerates them.
    F32,
}

impl std::str::FromStr for Scorer {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "int8" => Ok(Scorer::Int8),
            "f32" => Ok(Scorer::F32),
            _ => Err(Error::Parameter(format!("scorer '{s}': int8 or f32"))),
        }
    }
}

/// Longest chain (K) that uses the short-chain preset (every step coded).
/// Measured on the first 20 CIFAR-10 test images (bench/rcc/README.md, session 10): deferral
/// costs 0.01–0.02 bits/dim at K = 50 and gains 0.04 at K = 100, 0.07 at K = 200 and 0.25 at
/// K = 1000.
pub const DEFER_MAX_PLAIN_STEPS: usize = 50;
/// The deferral target of longer chains (bits per 32×32 tile).
pub const DEFAULT_DEFER_BITS: f64 = 24.0;

impl Default for RccParams {
    fn default() -> Self {
        // chosen by measurement (bench/rcc/README.md, session 13): 16-bit chunks with
        // 2^(KL+2) candidates, at most 2^17, and the int8 scorer
        RccParams {
            chunk_bits: 16.0,
            margin_bits: 2,
            min_log2_candidates: 4,
            max_log2_candidates: 17,
            skip_below_bits: 0.25,
            tilt: 1.4,
            // measured on the first 20 test images, K = 50, learned variance (bench/rcc/README.md):
            // 4.976 against the chunk mean's 4.995 bits/dim, encode 1.15× the CPU time
            exact_quadratic: true,
            defer_bits: 0.0,
            scorer: Scorer::Int8,
        }
    }
}

impl RccParams {
    /// The named presets: the parameters a K-step chain uses unless told otherwise. Part of
    /// the format (format/SPEC.md § 3): a header without parameters means these.
    /// - K ≤ [`DEFER_MAX_PLAIN_STEPS`]: [`RccParams::default`] (16-bit chunks, 2^(KL+2)
    ///   candidates up to 2^17, tilt 1.4, every step coded).
    /// - longer chains: the same chunks and deferred steps ([`DEFAULT_DEFER_BITS`] per tile).
    ///
    /// Measured on the first 20 CIFAR-10 test images with the int8 scorer (bench/rcc/README.md,
    /// session 13): at K = 50, 0.060 bits/dim below format 7's 12-bit chunks with margin 3 and
    /// the chain 1.07× its KL instead of 1.17×; at K = 1000, 0.017 below its 14-bit chunks.
    pub fn default_for(steps: usize) -> Self {
        if steps <= DEFER_MAX_PLAIN_STEPS {
            RccParams::default()
        } else {
            RccParams { defer_bits: DEFAULT_DEFER_BITS, ..RccParams::default() }
        }
    }

    /// Checks ranges; [`Error::Parameter`] otherwise.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Parameter(m));
        if !(self.chunk_bits.is_finite() && self.chunk_bits >= 0.25 && self.chunk_bits <= 64.0) {
            return bad(format!("chunk_bits {} not in [0.25, 64]", self.chunk_bits));
        }
        let max_l = MAX_LOG2_CANDIDATES.min(pool::LOG2_POOL_ROWS);
        if self.min_log2_candidates == 0
            || self.min_log2_candidates > self.max_log2_candidates
            || self.max_log2_candidates > max_l
        {
            return bad(format!(
                "log2 candidates range {}..={} invalid (1..={max_l})",
                self.min_log2_candidates, self.max_log2_candidates
            ));
        }
        if self.margin_bits > 32 {
            return bad(format!("margin_bits {} > 32", self.margin_bits));
        }
        if !(self.skip_below_bits.is_finite() && self.skip_below_bits >= 0.0) {
            return bad(format!("skip_below_bits {} invalid", self.skip_below_bits));
        }
        // (the header's 16-bit defer_q8 reaches 255.996: every stream's value is valid)
        if !(self.defer_bits.is_finite() && (0.0..256.0).contains(&self.defer_bits)) {
            return bad(format!("defer_bits {} not in [0, 256)", self.defer_bits));
        }
        if !(self.tilt.is_finite() && (0.5..=4.0).contains(&self.tilt)) {
            return bad(format!("tilt {} not in [0.5, 4]", self.tilt));
        }
        Ok(())
    }
}

/// Identifies a coded step for the shared generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StepKey {
    /// Stream seed shared by both sides.
    pub seed: u64,
    /// Step number (any unique number per step of the chain).
    pub step: u32,
}

/// What the encoder measured for one step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Exact KL(q ‖ p) in bits.
    pub kl_bits: f64,
    /// Quantised side information `q`.
    pub q: u32,
    /// `2^(q/4) − 1`, the KL both sides plan with.
    pub kl_hat_bits: f64,
    /// Number of chunks (0 when skipped).
    pub chunks: u32,
    /// The step was skipped (x is a sample of p, not of q).
    pub skipped: bool,
    /// Chunks whose exact KL exceeded `L − 2` bits.
    pub over_budget_chunks: u32,
    /// Largest exact chunk KL in bits.
    pub max_chunk_kl_bits: f64,
    /// log2 candidates per chunk (same for all chunks of a step).
    pub log2_candidates: u32,
    /// Σ −log2 P(j*) under the float Zipf models.
    pub index_bits_ideal: f64,
    /// −log2 P(q delta) under the float step-info model.
    pub step_info_bits_ideal: f64,
    /// Candidates scored in all (Σ 2^L over chunks).
    pub candidates: u64,
    /// The coded sample's faithfulness to q (coded chunks only).
    pub faith: Faithfulness,
}

/// Sums that measure how faithful coded samples are to q: the whitened residuals
/// r = (x − μ_q)/σ_q (exact sampling: N(0, 1) in every dimension) and, per chunk, r projected
/// on the chunk's shift direction μ_q − μ_p (exact: N(0, 1); a finite candidate set pulls it
/// negative, [`RccParams::tilt`] pushes it back). Sums, so steps and images add up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Faithfulness {
    pub resid_sum: f64,
    pub resid_sq_sum: f64,
    pub resid_n: u64,
    pub proj_sum: f64,
    pub proj_sq_sum: f64,
    pub proj_n: u64,
}

impl Faithfulness {
    /// Adds another set of sums.
    pub fn add(&mut self, o: &Faithfulness) {
        self.resid_sum += o.resid_sum;
        self.resid_sq_sum += o.resid_sq_sum;
        self.resid_n += o.resid_n;
        self.proj_sum += o.proj_sum;
        self.proj_sq_sum += o.proj_sq_sum;
        self.proj_n += o.proj_n;
    }

    fn mean_var(sum: f64, sq: f64, n: u64) -> (f64, f64) {
        if n == 0 {
            return (f64::NAN, f64::NAN);
        }
        let m = sum / n as f64;
        (m, sq / n as f64 - m * m)
    }

    /// Mean and variance of the whitened residuals.
    pub fn residual(&self) -> (f64, f64) {
        Self::mean_var(self.resid_sum, self.resid_sq_sum, self.resid_n)
    }

    /// Mean and variance of the per-chunk projections on the shift.
    pub fn projection(&self) -> (f64, f64) {
        Self::mean_var(self.proj_sum, self.proj_sq_sum, self.proj_n)
    }
}

/// The chunk plan of a step, derived identically on both sides from `q`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChunkPlan {
    /// Number of chunks (0: skipped step).
    pub chunks: usize,
    /// Estimated KL per chunk in bits.
    pub kl_chunk_hat_bits: f64,
    /// log2 candidates per chunk.
    pub log2_candidates: u32,
    /// Index model of every chunk (None when skipped).
    pub index_key: Option<IndexModelKey>,
}

/// Derives the chunk plan from the side information `q` for `dims` dimensions.
pub fn plan_chunks(q: u32, params: &RccParams, dims: usize) -> Result<ChunkPlan> {
    params.validate()?;
    let kl_hat = kl_hat_bits(q);
    if kl_hat < params.skip_below_bits || dims == 0 {
        return Ok(ChunkPlan {
            chunks: 0,
            kl_chunk_hat_bits: 0.0,
            log2_candidates: 0,
            index_key: None,
        });
    }
    let n0 = (kl_hat / params.chunk_bits).ceil().max(1.0);
    let n0 = if n0 >= dims as f64 { dims } else { n0 as usize };
    let log2_cands = |n: usize| {
        let kl_chunk = kl_hat / n as f64;
        (kl_chunk.ceil() as u64 + params.margin_bits as u64)
            .clamp(params.min_log2_candidates as u64, params.max_log2_candidates as u64) as u32
    };
    // The pool constraint (pool.rs): a chunk's blocks must fit the windows of its candidate
    // count. Monotone in n (fewer dims and candidates per chunk as n grows), so the smallest
    // n ≥ n0 that satisfies it is found by bisection; n = dims always does (one block, and
    // L ≤ log2 of the pool's rows).
    let fits = |n: usize| pool::blocks(dims.div_ceil(n)) <= pool::windows(log2_cands(n));
    let n = if fits(n0) {
        n0
    } else {
        let (mut lo, mut hi) = (n0, dims);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    };
    let kl_chunk = kl_hat / n as f64;
    let l = log2_cands(n);
    let key = IndexModelKey::new(l, kl_chunk.min(4096.0))?;
    Ok(ChunkPlan {
        chunks: n,
        kl_chunk_hat_bits: kl_chunk,
        log2_candidates: l,
        index_key: Some(key),
    })
}

/// KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) of one dimension, in nats.
#[inline]
pub fn dim_kl_nats(mu_p: f32, sigma_p: f32, mu_q: f32, sigma_q: f32) -> f64 {
    let (sp, sq) = (sigma_p as f64, sigma_q as f64);
    let d = mu_q as f64 - mu_p as f64;
    (sp / sq).ln() + (sq * sq + d * d) / (2.0 * sp * sp) - 0.5
}

/// Exact step KL in bits (f64 accumulation); `sigma_p` one std or one per dimension.
pub fn step_kl_bits<'s>(mu_p: &[f32], sigma_p: impl Into<StepStd<'s>>, mu_q: &[f32], sigma_q: f32) -> f64 {
    let sigma_p = match sigma_p.into() {
        StepStd::Uniform(s) => s,
        StepStd::PerDim(sd) => {
            let nats: f64 = mu_p
                .iter()
                .zip(mu_q)
                .zip(sd)
                .map(|((&p, &q), &s)| dim_kl_nats(p, s, q, sigma_q))
                .sum();
            return nats / std::f64::consts::LN_2;
        }
    };
    let (sp, sq) = (sigma_p as f64, sigma_q as f64);
    let c = (sp / sq).ln() + sq * sq / (2.0 * sp * sp) - 0.5;
    let inv = 1.0 / (2.0 * sp * sp);
    let s: f64 = mu_p
        .iter()
        .zip(mu_q)
        .map(|(&p, &q)| {
            let d = q as f64 - p as f64;
            d * d
        })
        .sum();
    (c * mu_p.len() as f64 + s * inv) / std::f64::consts::LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_matches_spec() {
        let p = RccParams { chunk_bits: 8.0, margin_bits: 6, max_log2_candidates: 16, ..RccParams::default() };
        // q = 0 -> KLhat 0 -> skipped
        assert_eq!(plan_chunks(0, &p, 100).unwrap().chunks, 0);
        // q = 1 -> KLhat 0.189 < 0.25 -> skipped; q = 2 -> 0.414 -> one chunk
        assert_eq!(plan_chunks(1, &p, 100).unwrap().chunks, 0);
        let pl = plan_chunks(2, &p, 100).unwrap();
        assert_eq!((pl.chunks, pl.log2_candidates), (1, 7));
        // q = 28 -> KLhat 127 -> 16 chunks of 7.94 bits -> L = 8 + 6 = 14
        let pl = plan_chunks(28, &p, 3072).unwrap();
        assert_eq!((pl.chunks, pl.log2_candidates), (16, 14));
        // more chunks than dims is capped
        let pl = plan_chunks(255, &p, 10).unwrap();
        assert_eq!(pl.chunks, 10);
        assert_eq!(pl.log2_candidates, 16);
        // the pool constraint: 64-bit chunks of a 127-bit step would need 2^17 candidates
        // over 1536 dims (24 blocks, 4 windows); the planner takes the fewest chunks that fit
        let big = RccParams { chunk_bits: 64.0, margin_bits: 3, max_log2_candidates: 17, ..RccParams::default() };
        let pl = plan_chunks(28, &big, 3072).unwrap();
        let fits = |n: usize, l: u32| pool::blocks(3072usize.div_ceil(n)) <= pool::windows(l);
        assert!(fits(pl.chunks, pl.log2_candidates), "{pl:?}");
        assert_eq!(pl.chunks, 10);
        let bad = RccParams {
            max_log2_candidates: 21,
            ..p.clone()
        };
        assert!(plan_chunks(5, &bad, 10).is_err());
        let bad = RccParams {
            chunk_bits: f64::NAN,
            ..p
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn kl_formula() {
        let kl = step_kl_bits(&[0.0, 1.0], 1.0, &[1.0, 1.0], 1.0);
        assert!((kl - 0.5 / std::f64::consts::LN_2).abs() < 1e-12);
        let a = dim_kl_nats(0.1, 0.3, -0.2, 0.2) + dim_kl_nats(0.0, 0.3, 0.05, 0.2);
        let b = step_kl_bits(&[0.1, 0.0], 0.3, &[-0.2, 0.05], 0.2) * std::f64::consts::LN_2;
        assert!((a - b).abs() < 1e-12);
    }

    #[test]
    fn presets_by_chain_length() {
        assert_eq!(RccParams::default_for(50), RccParams::default());
        assert_eq!(RccParams::default_for(50).defer_bits, 0.0);
        let long = RccParams::default_for(51);
        assert_eq!((long.chunk_bits, long.margin_bits, long.tilt, long.defer_bits), (16.0, 2, 1.4, DEFAULT_DEFER_BITS));
        assert_eq!(RccParams { defer_bits: 0.0, ..long.clone() }, RccParams::default());
        assert_eq!(RccParams::default_for(1000), long);
        long.validate().unwrap();
    }

    #[test]
    fn params_serde_defaults() {
        let p: RccParams = serde_json::from_str(r#"{"chunk_bits": 10.0}"#).unwrap();
        assert_eq!(p.chunk_bits, 10.0);
        assert_eq!(p.margin_bits, RccParams::default().margin_bits);
    }
}
