//! The chunked Poisson-functional-representation coder (see the module docs of [`crate::rcc`]).
//!
//! # Candidates
//!
//! Candidate `j` of chunk `c` of step `(seed, step)` is a signed window row of the shared pool
//! ([`super::pool`], format/SPEC.md § 8); the decoder regenerates only candidate `j*`
//! ([`pool::candidate`]).
//!
//! # Scoring
//!
//! With x = μ_p + σ_p z and d = μ_q − μ_p, per dimension
//! ln q(x) − ln p(x) = a z² + b_k z + const, with a = ½ − ½ (σ_p/σ_q)² (the same for every
//! dimension of a step) and b_k = σ_p d_k / σ_q². The encoder maximises
//! `a ‖z_j‖² + b·z_j − ln T_j` over the candidates (constants do not change the argmax): for each
//! block of pool columns, one GEMM of the window's rows against the signed coefficients of a
//! group of chunks ([`crate::kernels::gemm`], deterministic whatever the thread count), plus
//! `a` times the rows' squared norms; the arrival times T_j come from a private key the decoder
//! never needs. Only the decoder's reconstruction must be bit-exact; the encoder's scores are
//! deterministic anyway, so a stream's bytes do not depend on the machine's thread count.

use rayon::prelude::*;

use super::{dim_kl_nats, plan_chunks, pool, quant, step_kl_bits, ChunkPlan, RccParams, Scorer, StepKey, StepStats, StepStd};
use crate::entropy::{quantize_kl, SymbolReader, SymbolWriter};
use crate::error::{Error, Result};
use crate::kernels::{gemm, score, Backend, Init, Rows};
use crate::rng::{bits_at, fill_normals, hash4, ln_f32, permutation, stream_key};

/// Generator tags (part of the format).
const TAG_SKIP: u64 = 0x534B4950; // "SKIP"
const TAG_PERMUTATION: u64 = 0x5045524D; // "PERM"
const TAG_ARRIVALS: u64 = 0x41525256; // "ARRV" (private to the encoder)
/// XORed into the seed for the encoder's private arrival times.
const PRIVATE_SEED_XOR: u64 = 0x7F4A_7C15_9E37_79B9;
/// Chunks scored per GEMM (bounds the score matrix to 2^L × 64 floats).
const CHUNK_GROUP: usize = 64;

fn skip_key(key: StepKey) -> u64 {
    hash4(key.seed, key.step as u64, 0, TAG_SKIP)
}

fn partition(key: StepKey, dims: usize) -> Vec<u32> {
    permutation(hash4(key.seed, key.step as u64, 0, TAG_PERMUTATION), dims)
}

#[inline]
fn chunk_range(c: usize, chunks: usize, dims: usize) -> std::ops::Range<usize> {
    let s = (c as u128 * dims as u128 / chunks as u128) as usize;
    let e = ((c as u128 + 1) * dims as u128 / chunks as u128) as usize;
    s..e
}

fn check_inputs(mu_p: &[f32], sigma_p: StepStd<'_>, params: &RccParams) -> Result<()> {
    params.validate()?;
    sigma_p.check("sigma_p", mu_p.len())?;
    if mu_p.len() > u32::MAX as usize {
        return Err(Error::LimitsExceeded("more than 2^32 dimensions".into()));
    }
    Ok(())
}

fn skip_sample(key: StepKey, mu_p: &[f32], sigma_p: StepStd<'_>) -> Vec<f32> {
    let mut z = vec![0f32; mu_p.len()];
    fill_normals(skip_key(key), 0, &mut z);
    mu_p.iter()
        .zip(&z)
        .enumerate()
        .map(|(d, (&m, &z))| m + sigma_p.at(d) * z)
        .collect()
}

/// The values of candidate `j` of chunk `c` at the chunk's dimensions, μ_p + σ_p z (both sides).
fn candidate_values(key: StepKey, c: usize, log2_n: u32, j: u32, dims: &[u32], mu_p: &[f32], sigma_p: StepStd<'_>) -> Vec<f32> {
    let z = pool::candidate(key.seed, key.step, c as u32, log2_n, j, dims.len());
    dims.iter().zip(&z).map(|(&d, &z)| mu_p[d as usize] + sigma_p.at(d as usize) * z).collect()
}

/// Writes `values` into `x` at the chunk's dimensions.
fn place_values(dims: &[u32], values: &[f32], x: &mut [f32]) {
    for (&d, &v) in dims.iter().zip(values) {
        x[d as usize] = v;
    }
}

/// The PFR search of one chunk, `argmax_j (score_j − ln T_j)` (first maximum), with the
/// private Poisson process of arrival times T_j, E_i = −ln U_i ~ Exp(1) (U_i = (2k+1)/2^24,
/// k 23 bits), generated lazily in blocks of 16 candidates: a block ends at
/// `T_start + Σ_{i in block} E_i` (the sum in a fixed pairwise order, [`block_span`]), and
/// inside it T_j = T_start + E_{j0} + … + E_j. T_j grows with j, so
/// - a block whose largest score s satisfies `s − ln T_start ≤ best` cannot hold the winner and
///   is passed with one logarithm (most blocks: the search's cost is per block, not per
///   candidate);
/// - once `max_j score_j − ln T_start` falls to the best value so far no later candidate can
///   win, and the search stops (after ≈ 20% of the candidates on average, measured on the 1-D
///   model).
///
/// The result is exactly the argmax over all candidates. The scores come in ranges
/// ([`Search::feed`], the scorer's parts), in order.
struct Search {
    sk: u64,
    /// T of the last candidate fed (0 before the first)
    t: f64,
    best: (f64, u32),
    /// candidates fed so far
    next: usize,
    done: bool,
}

/// Σ −ln U over a block, in f64, in a fixed pairwise order (the compiler may vectorise it; the
/// order is the same on every path).
#[inline(always)]
fn block_span(ln_u: &[f32]) -> f64 {
    let mut v = [0f64; 16];
    for (o, &l) in v.iter_mut().zip(ln_u) {
        *o = -(l as f64);
    }
    let mut w = 16;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            v[i] += v[i + w];
        }
    }
    v[0]
}

impl Search {
    fn new(key: StepKey, c: usize) -> Self {
        let pk = hash4(key.seed ^ PRIVATE_SEED_XOR, key.step as u64, c as u64, TAG_ARRIVALS);
        Search { sk: stream_key(pk, 0), t: 0.0, best: (f64::NEG_INFINITY, 0), next: 0, done: false }
    }

    /// Feeds the scores of the next `scores.len()` candidates (a multiple of 16 unless it is
    /// the last range); `max_sc` is the largest score of all candidates. Returns whether the
    /// search has ended.
    fn feed(&mut self, scores: Row<'_>, max_sc: f64) -> bool {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
        unsafe fn wide(s: &mut Search, scores: Row<'_>, max_sc: f64) -> bool {
            s.feed_body(scores, max_sc)
        }
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::use_avx512_dq_vl() {
            // SAFETY: the features were detected at run time. The same IEEE operations in the
            // same order as the portable path (no contraction), so the same choices.
            return unsafe { wide(self, scores, max_sc) };
        }
        self.feed_body(scores, max_sc)
    }

    #[inline(always)]
    fn feed_body(&mut self, scores: Row<'_>, max_sc: f64) -> bool {
        if self.done {
            return true;
        }
        debug_assert!(self.next % 16 == 0);
        let mut ln_u = [0f32; 16];
        let mut buf = [0f32; 16];
        let (mut t, mut best) = (self.t, self.best);
        // lt_lo ≤ ln t: the logarithm of an earlier T (−∞ at the start), refreshed every 8
        // blocks and where a block might hold the winner; a test that passes with it passes
        // with ln t, so the result is the same, with one logarithm per 8 blocks (the stopping
        // rule fires at most 8 blocks later than with ln t)
        let mut lt_lo = if t > 0.0 { ln_f32(t as f32) as f64 } else { f64::NEG_INFINITY };
        for b in 0..scores.len().div_ceil(16) {
            let j0 = self.next + b * 16;
            if b % 8 == 7 && t > 0.0 {
                lt_lo = ln_f32(t as f32) as f64;
            }
            if max_sc - lt_lo <= best.0 {
                self.best = best;
                self.done = true;
                return true;
            }
            let n = (scores.len() - b * 16).min(16);
            arrival_logs(self.sk, j0 as u64, &mut ln_u[..n]);
            let bmax = scores.block_max(b) as f64;
            if bmax - lt_lo > best.0 && t > 0.0 {
                lt_lo = ln_f32(t as f32) as f64;
            }
            if bmax - lt_lo > best.0 {
                // the block may hold the winner: every candidate's own T where its score
                // could beat the best (ln T_j ≥ ln T_start ≥ lt_lo)
                let nb = scores.block(b, &mut buf);
                let block = &buf[..nb];
                let mut tj = t;
                for (i, &sc) in block.iter().enumerate() {
                    tj -= ln_u[i] as f64;
                    if sc as f64 - lt_lo <= best.0 {
                        continue;
                    }
                    let v = sc as f64 - ln_f32(tj as f32) as f64;
                    if v > best.0 {
                        best = (v, (j0 + i) as u32);
                    }
                }
            }
            t += block_span(&ln_u[..n]);
        }
        (self.t, self.best) = (t, best);
        self.next += scores.len();
        false
    }
}

/// One chunk's scores in one range: f32, or the int8 scorer's integer sums with the chunk's
/// offset and unit ([`quant`]), converted block by block where the search reads them (a
/// fraction of the candidates) by the same operations that gave their maximum.
#[derive(Clone, Copy)]
enum Row<'a> {
    F32(&'a [f32]),
    I32(&'a [i32], i32, f32),
}

impl Row<'_> {
    fn len(&self) -> usize {
        match self {
            Row::F32(v) => v.len(),
            Row::I32(v, ..) => v.len(),
        }
    }

    /// The largest score of block `b` (candidates 16·b..): for the integer sums the largest
    /// sum's score, which is the largest score (the conversion is monotone).
    #[inline(always)]
    fn block_max(&self, b: usize) -> f32 {
        match *self {
            Row::F32(v) => v[b * 16..v.len().min(b * 16 + 16)].iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m }),
            Row::I32(v, offset, inv) => {
                let m = v[b * 16..v.len().min(b * 16 + 16)].iter().fold(i32::MIN, |m, &x| m.max(x));
                quant::to_score(m, offset, inv)
            }
        }
    }

    /// The scores of block `b` (candidates 16·b..) into `out`; returns how many.
    #[inline(always)]
    fn block(&self, b: usize, out: &mut [f32; 16]) -> usize {
        match *self {
            Row::F32(v) => {
                let s = &v[b * 16..v.len().min(b * 16 + 16)];
                out[..s.len()].copy_from_slice(s);
                s.len()
            }
            Row::I32(v, offset, inv) => {
                let s = &v[b * 16..v.len().min(b * 16 + 16)];
                for (o, &a) in out.iter_mut().zip(s) {
                    *o = quant::to_score(a, offset, inv);
                }
                s.len()
            }
        }
    }
}

/// The largest of `scores` (in 16 lanes: a comparison the compiler vectorises; scores are
/// finite).
fn max_score(scores: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut it = scores.chunks_exact(16);
    for c in &mut it {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    it.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// The scores of a group of `g` chunks for `nc` candidates each, range-major: range `r`
/// (candidates `r·RANGE..`, `w_r = min(RANGE, nc − r·RANGE)` of them) starts at `r·g·RANGE`,
/// chunk `gi`'s `w_r` scores at `r·g·RANGE + gi·w_r` ([`score_parts`] writes it, ranges in
/// parallel): f32 scores, or the int8 scorer's sums with every chunk's (offset, 1/unit).
struct Parts<'a> {
    f32: &'a [f32],
    i32: Option<(&'a [i32], &'a [(i32, f32)])>,
    /// the largest score of chunk gi in range r at `r·g + gi`
    maxima: &'a [f32],
    g: usize,
    nc: usize,
}

impl Parts<'_> {
    fn ranges(&self) -> usize {
        self.nc.div_ceil(RANGE)
    }

    /// Chunk `gi`'s scores in range `r`.
    fn row(&self, r: usize, gi: usize) -> Row<'_> {
        let w = RANGE.min(self.nc - r * RANGE);
        let o = r * self.g * RANGE + gi * w;
        match self.i32 {
            Some((d, scale)) => Row::I32(&d[o..o + w], scale[gi].0, scale[gi].1),
            None => Row::F32(&self.f32[o..o + w]),
        }
    }
}

/// The PFR choice of chunk `c`, row `gi` of the scorer's `parts`.
fn select(key: StepKey, c: usize, gi: usize, parts: &Parts<'_>) -> u32 {
    let max_sc = (0..parts.ranges()).map(|r| parts.maxima[r * parts.g + gi]).fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut s = Search::new(key, c);
    for r in 0..parts.ranges() {
        if s.feed(parts.row(r, gi), max_sc) {
            break;
        }
    }
    s.best.1
}

/// `out[i] = ln U_{j0+i}`, the logarithms of the arrival uniforms of [`select`], 16 at a time
/// (vectorised where AVX-512 is available: the same integer and basic f32 operations, so the
/// same values).
fn arrival_logs(sk: u64, j0: u64, out: &mut [f32]) {
    #[inline(always)]
    fn body(sk: u64, j0: u64, out: &mut [f32]) {
        for (i, o) in out.iter_mut().enumerate() {
            let k = (bits_at(sk, j0 + i as u64) >> 41) as u32;
            let u = (2 * k + 1) as f32 * (1.0 / 16_777_216.0);
            *o = ln_f32(u);
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
    unsafe fn wide(sk: u64, j0: u64, out: &mut [f32]) {
        body(sk, j0, out)
    }
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::use_avx512_dq_vl() {
        // SAFETY: the features were detected at run time.
        unsafe { wide(sk, j0, out) };
        return;
    }
    body(sk, j0, out)
}

/// Candidates per range of the scorers: a unit of parallel work.
const RANGE: usize = 2048;

/// What a group of chunks is scored with: `coef[c]` chunk c's signed linear coefficients,
/// `a_coef[c]` its one quadratic coefficient, `a_dim[c]` its quadratic coefficient per
/// dimension (in chunk c's dimension order) where the std is per dimension and scored exactly.
struct Coefficients<'a> {
    coef: &'a [Vec<f32>],
    a_coef: &'a [f32],
    a_dim: Option<&'a [Vec<f32>]>,
}

/// Scores of the chunks `chunks` for all `2^l` candidates, range by range: `parts[r]` holds
/// candidates `r·RANGE..` of every chunk (g × w, row g the g-th of `chunks`); ranges are
/// scored in parallel. With [`Scorer::Int8`] where it serves ([`quant::serves`]), the int8
/// scorer ([`quant`]); otherwise the f32 one: per range, one GEMM per block of pool columns
/// with the chunks as rows and the candidates as the long, vectorised dimension, plus
/// `a_coef · Σ z²` over the columns each chunk uses, or with a quadratic coefficient per
/// dimension one fused pass per panel ([`score::panel_scores`]). Every score is one fixed
/// sequence of operations, so the result depends neither on the thread count nor on the other
/// chunks of the group.
/// Returns each chunk's (offset, 1/unit) where the int8 scorer ran: its sums are then in
/// `out_i32`, otherwise the f32 scores in `out`.
#[allow(clippy::too_many_arguments)]
fn score_parts(key: StepKey, l: u32, chunks: &[usize], cf: &Coefficients<'_>, scorer: Scorer, out: &mut Vec<f32>, out_i32: &mut Vec<i32>, maxima: &mut Vec<f32>) -> Option<Vec<(i32, f32)>> {
    let nc = 1usize << l;
    let g = chunks.len();
    let m_max = chunks.iter().map(|&c| cf.coef[c].len()).max().unwrap_or(0);
    let range = |r: usize| (r * RANGE, RANGE.min(nc - r * RANGE));
    // (no zeroing: every score is written)
    maxima.resize(nc.div_ceil(RANGE) * g, 0.0);
    if scorer == Scorer::Int8 && quant::serves(l, m_max) {
        // the int8 scorer takes every dimension's quadratic coefficient (a per-step or
        // chunk-mean one repeated)
        let repeated: Vec<Vec<f32>> = match cf.a_dim {
            Some(_) => Vec::new(),
            None => chunks.iter().map(|&c| vec![cf.a_coef[c]; cf.coef[c].len()]).collect(),
        };
        let pairs: Vec<(&[f32], &[f32])> = chunks
            .iter()
            .enumerate()
            .map(|(gi, &c)| (&cf.coef[c][..], match cf.a_dim {
                Some(ad) => &ad[c][..],
                None => &repeated[gi][..],
            }))
            .collect();
        let grp = quant::Group::new(&pairs);
        // grown, never shrunk (every score read is written first: no zeroing per group)
        if out_i32.len() < g * nc {
            out_i32.resize(g * nc, 0);
        }
        out_i32[..g * nc].par_chunks_mut(g * RANGE).zip(maxima.par_chunks_mut(g)).enumerate().for_each(|(r, (c, mx))| {
            let (j0, w) = range(r);
            grp.score_range(key, l, j0, w, c, mx);
        });
        return Some(grp.scales());
    }
    let cols = pool::POOL_COLS;
    let blocks = pool::blocks(m_max);
    // the chunks' coefficients per block: A_s = g × 64, row-major (rows in `chunks` order)
    let per_block = |rows: &[Vec<f32>]| -> Vec<Vec<f32>> {
        (0..blocks)
            .map(|s| {
                let mut a = vec![0f32; g * cols];
                for (gi, &c) in chunks.iter().enumerate() {
                    for (kk, &v) in rows[c].iter().skip(s * cols).take(cols).enumerate() {
                        a[gi * cols + kk] = v;
                    }
                }
                a
            })
            .collect()
    };
    let am = per_block(cf.coef);
    // exact scoring of a std per dimension: each dimension's own quadratic coefficient a_d,
    // zero past the chunk's dimensions, for the fused panel kernel
    let am2 = cf.a_dim.map(per_block);
    let counts: Vec<Vec<usize>> = (0..blocks)
        .map(|s| chunks.iter().map(|&c| cf.coef[c].len().saturating_sub(s * cols).min(cols)).collect())
        .collect();
    // the distinct column counts of each block, ascending (chunks differ by one dimension)
    let distinct: Vec<Vec<usize>> = counts
        .iter()
        .map(|cs| {
            let mut d: Vec<usize> = cs.iter().copied().filter(|&x| x > 0).collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect();
    let a_group: Vec<f32> = chunks.iter().map(|&c| cf.a_coef[c]).collect();
    if out.len() < g * nc {
        out.resize(g * nc, 0.0);
    }
    out[..g * nc].par_chunks_mut(g * RANGE).zip(maxima.par_chunks_mut(g)).enumerate().for_each(|(r, (c, mx))| {
        let (j0, w) = range(r);
        score_range(key, l, j0, w, &am, am2.as_deref(), &counts, &distinct, &a_group, c);
        for (gi, m) in mx.iter_mut().enumerate() {
            *m = max_score(&c[gi * w..(gi + 1) * w]);
        }
    });
    None
}

/// Scores of candidates `j0..j0 + w` for the chunks of [`score_group`] into `c` (g × w).
/// The window's rows are read panel by panel ([`pool::pool`]'s layout): per panel and block,
/// one small GEMM (g chunks × ≤ 16 candidates × 64 columns), then `a_coef` times the
/// candidates' squared norms over the columns each chunk uses (`a_coef`: one per chunk row);
/// with `am2` (every dimension's own a_d) a whole panel is one fused pass
/// ([`score::panel_scores`]), a partial one a GEMM against the squared values.
#[allow(clippy::too_many_arguments)]
fn score_range(key: StepKey, l: u32, j0: usize, w: usize, am: &[Vec<f32>], am2: Option<&[Vec<f32>]>, counts: &[Vec<usize>], distinct: &[Vec<usize>], a_coef: &[f32], c: &mut [f32]) {
    let be = Backend::detect();
    let cols = pool::POOL_COLS;
    let pw = pool::PANEL;
    let p = pool::pool();
    let g = c.len() / w;
    let mut sq = vec![0f32; if am2.is_some() { cols * pw } else { 0 }];
    for (s, a) in am.iter().enumerate() {
        let r_start = pool::window_start(key.seed, key.step, l, s) + j0;
        let mut jj = 0;
        while jj < w {
            let r = r_start + jj;
            let off = r % pw;
            let n = (pw - off).min(w - jj);
            let panel = &p[pool::index(r - off, 0)..pool::index(r - off, 0) + cols * pw];
            if let (Some(am2), 0, true) = (am2, off, n == pw) {
                // a whole panel with a quadratic coefficient per dimension: one fused pass
                if s == 0 {
                    for gi in 0..g {
                        c[gi * w + jj..gi * w + jj + pw].fill(0.0);
                    }
                }
                score::panel_scores(be, g, a, &am2[s], &counts[s], panel, &mut c[jj..], w);
                jj += n;
                continue;
            }
            // C[g, jj..jj+n] (+)= Σ_k A[g, k] · P[r + q, k]; B's row k is the panel's column k
            let init = if s == 0 { Init::Zero } else { Init::C };
            gemm(be, g, n, a, Rows::Strided { ld: cols }, &[0], cols, &panel[off..], pw, &mut c[jj..], Rows::Strided { ld: w }, init, None, false);
            if let Some(am2) = am2 {
                for (q, &z) in sq.iter_mut().zip(panel) {
                    *q = z * z;
                }
                gemm(be, g, n, &am2[s], Rows::Strided { ld: cols }, &[0], cols, &sq[off..], pw, &mut c[jj..], Rows::Strided { ld: w }, Init::C, None, false);
            }
            // (with per-dimension coefficients `am2` holds every a_d: no chunk-mean term)
            if am2.is_none() && a_coef.iter().any(|&a| a != 0.0) {
                let mut norms = [0f32; 16];
                let mut k = 0;
                for &cnt in &distinct[s] {
                    while k < cnt {
                        for (v, &z) in norms[..n].iter_mut().zip(&panel[k * pw + off..k * pw + off + n]) {
                            *v += z * z;
                        }
                        k += 1;
                    }
                    for gi in (0..g).filter(|&gi| counts[s][gi] == cnt) {
                        let a = a_coef[gi];
                        for (o, &n2) in c[gi * w + jj..gi * w + jj + n].iter_mut().zip(&norms[..n]) {
                            *o += a * n2;
                        }
                    }
                }
            }
            jj += n;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

/// Encodes one step: returns the sample x the decoder will reproduce, and statistics.
///
/// `prev_q` is the previous step's side information (0 before the first step) and is updated.
#[allow(clippy::too_many_arguments)]
pub fn encode_step<'s>(
    key: StepKey,
    params: &RccParams,
    mu_p: &[f32],
    sigma_p: impl Into<StepStd<'s>>,
    mu_q: &[f32],
    sigma_q: f32,
    prev_q: &mut u32,
    w: &mut SymbolWriter,
) -> Result<(Vec<f32>, StepStats)> {
    let sigma_p = sigma_p.into();
    check_inputs(mu_p, sigma_p, params)?;
    if !(sigma_q.is_finite() && sigma_q > 0.0) {
        return Err(Error::Parameter(format!(
            "sigma_q {sigma_q} must be finite and > 0"
        )));
    }
    if mu_q.len() != mu_p.len() {
        return Err(Error::Parameter(format!(
            "mu_q has {} dims, mu_p {}",
            mu_q.len(),
            mu_p.len()
        )));
    }
    if mu_p.iter().chain(mu_q).any(|v| !v.is_finite()) {
        return Err(Error::Parameter("non-finite mean".into()));
    }
    let dims = mu_p.len();
    let kl_bits = step_kl_bits(mu_p, sigma_p, mu_q, sigma_q);
    let q = quantize_kl(kl_bits);
    let plan = plan_chunks(q, params, dims)?;
    let mut stats = StepStats {
        kl_bits,
        q,
        kl_hat_bits: crate::entropy::kl_hat_bits(q),
        chunks: plan.chunks as u32,
        log2_candidates: plan.log2_candidates,
        ..Default::default()
    };
    let before = w.ideal_bits().step_info;
    w.write_step_info(q, *prev_q)?;
    stats.step_info_bits_ideal = w.ideal_bits().step_info - before;
    *prev_q = q;

    let ChunkPlan { chunks, log2_candidates: l, index_key, .. } = plan;
    let Some(index_key) = index_key else {
        stats.skipped = true;
        return Ok((skip_sample(key, mu_p, sigma_p), stats));
    };
    let perm = partition(key, dims);
    let nc = 1usize << l;
    stats.candidates = nc as u64 * chunks as u64;

    let sq = sigma_q as f64;
    let a_of = |sp: f64| 0.5 - 0.5 * (sp / sq) * (sp / sq);
    // The quadratic coefficient of each chunk: exact for a per-step std. With a std per
    // dimension a_d differs between dimensions: with `exact_quadratic` (the default) every
    // a_d against the squared pool values; without it the chunk's mean ā times ‖z‖², and the
    // target's variance along dimension d is σ_q² σ_p,d² / mean σ_p² instead of σ_q²
    // (encoder-only, both decode; measured in bench/rcc/README.md).
    let per_dim = match sigma_p {
        StepStd::PerDim(sd) if params.exact_quadratic => Some(sd),
        _ => None,
    };
    let a_coef: Vec<f32> = match sigma_p {
        StepStd::Uniform(s) => vec![a_of(s as f64) as f32; chunks],
        StepStd::PerDim(sd) => (0..chunks)
            .map(|c| {
                let dims_c = &perm[chunk_range(c, chunks, dims)];
                let sum: f64 = dims_c.iter().map(|&d| a_of(sd[d as usize] as f64)).sum();
                (sum / dims_c.len().max(1) as f64) as f32
            })
            .collect(),
    };
    // exact: each dimension's own a_d (in the chunk's dimension order; squares do not see the
    // candidates' signs)
    let a_dim: Option<Vec<Vec<f32>>> = per_dim.map(|sd| {
        (0..chunks)
            .map(|c| perm[chunk_range(c, chunks, dims)].iter().map(|&d| a_of(sd[d as usize] as f64) as f32).collect())
            .collect()
    });
    // the tilted target's shift (RccParams::tilt); the quadratic term is q's own
    let tilt = params.tilt;
    // signed linear coefficients of every chunk, in the chunk's dimension order
    let coef: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let dims_c = &perm[chunk_range(c, chunks, dims)];
            let sg = pool::signs(key.seed, key.step, c as u32, dims_c.len());
            dims_c
                .iter()
                .zip(sg)
                .map(|(&d, neg)| {
                    let dd = mu_q[d as usize] as f64 - mu_p[d as usize] as f64;
                    let sp = sigma_p.at(d as usize) as f64;
                    let b = (tilt * sp * dd / (sq * sq)) as f32;
                    if neg {
                        -b
                    } else {
                        b
                    }
                })
                .collect()
        })
        .collect();
    let mut x = vec![0f32; dims];
    let cf = Coefficients { coef: &coef, a_coef: &a_coef, a_dim: a_dim.as_deref() };
    // the scores of a group, kept between steps (a fresh buffer per step costs page faults)
    thread_local!(static SCORES: std::cell::RefCell<(Vec<f32>, Vec<i32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) });
    let (mut scores, mut sums) = SCORES.with(|s| s.take());
    let mut maxima = Vec::new();
    for g0 in (0..chunks).step_by(CHUNK_GROUP) {
        let group = g0..(g0 + CHUNK_GROUP).min(chunks);
        let members: Vec<usize> = group.clone().collect();
        let scales = score_parts(key, l, &members, &cf, params.scorer, &mut scores, &mut sums, &mut maxima);
        let parts = Parts { f32: &scores, i32: scales.as_deref().map(|sc| (&sums[..], sc)), maxima: &maxima, g: members.len(), nc };
        let best: Vec<u32> = members.par_iter().enumerate().map(|(gi, &c)| select(key, c, gi, &parts)).collect();
        for (c, &j_star) in group.zip(&best) {
            stats.index_bits_ideal += w.write_index(j_star, index_key)?;
            let dims_c = &perm[chunk_range(c, chunks, dims)];
            place_values(dims_c, &candidate_values(key, c, l, j_star, dims_c, mu_p, sigma_p), &mut x);
            let kl_c: f64 = dims_c
                .iter()
                .map(|&d| dim_kl_nats(mu_p[d as usize], sigma_p.at(d as usize), mu_q[d as usize], sigma_q))
                .sum::<f64>()
                / std::f64::consts::LN_2;
            stats.max_chunk_kl_bits = stats.max_chunk_kl_bits.max(kl_c);
            if kl_c > l as f64 - 2.0 {
                stats.over_budget_chunks += 1;
            }
            // faithfulness: whitened residuals, and their projection on the chunk's shift
            let (mut dot, mut nn) = (0.0f64, 0.0f64);
            for &d in dims_c {
                let d = d as usize;
                let r = (x[d] as f64 - mu_q[d] as f64) / sq;
                let s = mu_q[d] as f64 - mu_p[d] as f64;
                stats.faith.resid_sum += r;
                stats.faith.resid_sq_sum += r * r;
                dot += r * s;
                nn += s * s;
            }
            stats.faith.resid_n += dims_c.len() as u64;
            if nn > 0.0 {
                let pr = dot / nn.sqrt();
                stats.faith.proj_sum += pr;
                stats.faith.proj_sq_sum += pr * pr;
                stats.faith.proj_n += 1;
            }
        }
    }
    SCORES.with(|s| s.replace((scores, sums)));
    Ok((x, stats))
}

/// The symbols of one coded step, as the decoder reads them before it needs the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepSymbols {
    /// The side information `q`.
    pub q: u32,
    /// One PFR index per chunk (empty for a skipped step).
    pub indices: Vec<u32>,
}

/// Reads one step's symbols (side information and indices). They do not depend on μ_p, so a
/// decoder can tell from [`SymbolReader::starved`] whether the prefix covers the step before
/// it spends a network call on it.
pub fn read_step(params: &RccParams, dims: usize, prev_q: &mut u32, r: &mut SymbolReader) -> Result<StepSymbols> {
    params.validate()?;
    let q = r.read_step_info(*prev_q)?;
    *prev_q = q;
    let plan = plan_chunks(q, params, dims)?;
    let mut indices = Vec::new();
    if let Some(index_key) = plan.index_key {
        for _ in 0..plan.chunks {
            indices.push(r.read_index(index_key)?);
            if r.starved() {
                break;
            }
        }
    }
    Ok(StepSymbols { q, indices })
}

/// The step's sample from its symbols: the same x the encoder returned (bit for bit), given
/// the same `mu_p`.
pub fn place_step<'s>(key: StepKey, params: &RccParams, mu_p: &[f32], sigma_p: impl Into<StepStd<'s>>, sym: &StepSymbols) -> Result<Vec<f32>> {
    let sigma_p = sigma_p.into();
    check_inputs(mu_p, sigma_p, params)?;
    let dims = mu_p.len();
    let plan = plan_chunks(sym.q, params, dims)?;
    if plan.index_key.is_none() {
        return Ok(skip_sample(key, mu_p, sigma_p));
    }
    if sym.indices.len() != plan.chunks {
        return Err(Error::Parameter(format!("{} indices for {} chunks", sym.indices.len(), plan.chunks)));
    }
    let perm = partition(key, dims);
    let mut x = vec![0f32; dims];
    // the chunks' candidates regenerated across the threads (a big image has thousands of
    // chunks a step), then written into x in chunk order
    let values: Vec<Vec<f32>> = sym
        .indices
        .par_iter()
        .enumerate()
        .map(|(c, &j)| candidate_values(key, c, plan.log2_candidates, j, &perm[chunk_range(c, plan.chunks, dims)], mu_p, sigma_p))
        .collect();
    for (c, v) in values.iter().enumerate() {
        place_values(&perm[chunk_range(c, plan.chunks, dims)], v, &mut x);
    }
    Ok(x)
}

/// Decodes one step ([`read_step`] then [`place_step`]).
pub fn decode_step<'s>(
    key: StepKey,
    params: &RccParams,
    mu_p: &[f32],
    sigma_p: impl Into<StepStd<'s>>,
    prev_q: &mut u32,
    r: &mut SymbolReader,
) -> Result<Vec<f32>> {
    let sigma_p = sigma_p.into();
    check_inputs(mu_p, sigma_p, params)?;
    let sym = read_step(params, mu_p.len(), prev_q, r)?;
    if r.starved() {
        return Err(crate::error::format_err("the stream ended inside this step"));
    }
    place_step(key, params, mu_p, sigma_p, &sym)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::std_normal_cdf;

    /// Deterministic test input: per-step means with a target KL.
    fn make_step(
        seed: u64,
        dims: usize,
        kl_bits: f64,
        sigma_p: f32,
        sigma_q: f32,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut mu_p = vec![0f32; dims];
        let mut u = vec![0f32; dims];
        fill_normals(seed, 1, &mut mu_p);
        fill_normals(seed, 2, &mut u);
        // KL = [dims·(ln(σp/σq) + σq²/(2σp²) − ½) + Σ d²/(2σp²)] / ln2; solve for the scale of d
        let (sp, sq) = (sigma_p as f64, sigma_q as f64);
        let base = dims as f64 * ((sp / sq).ln() + sq * sq / (2.0 * sp * sp) - 0.5);
        let need = (kl_bits * std::f64::consts::LN_2 - base).max(0.0);
        let uu: f64 = u.iter().map(|&x| (x as f64).powi(2)).sum();
        let scale = (need * 2.0 * sp * sp / uu).sqrt();
        let mu_q = mu_p
            .iter()
            .zip(&u)
            .map(|(&p, &x)| p + (scale * x as f64) as f32)
            .collect();
        (mu_p, mu_q)
    }

    fn ks(samples: &mut [f64]) -> f64 {
        samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = samples.len() as f64;
        samples.iter().enumerate().fold(0.0f64, |d, (i, &x)| {
            let c = std_normal_cdf(x);
            d.max((c - i as f64 / n).abs())
                .max(((i + 1) as f64 / n - c).abs())
        })
    }

    /// The f32 scorer's scores of one chunk, all candidates (l ≤ 11: one range).
    fn one_part(key: StepKey, l: u32, coef: &[Vec<f32>], a_coef: &[f32], a_dim: Option<&[Vec<f32>]>) -> Vec<f32> {
        let (mut out, mut mx) = (Vec::new(), Vec::new());
        assert!(score_parts(key, l, &[0], &Coefficients { coef, a_coef, a_dim }, Scorer::F32, &mut out, &mut Vec::new(), &mut mx).is_none());
        assert_eq!(mx, vec![max_score(&out)]);
        assert_eq!(out.len(), 1 << l);
        out
    }

    #[test]
    fn scores_equal_the_decoders_candidates() {
        // one chunk, one-hot coefficient at position k: the score of candidate j is the value
        // the decoder regenerates for that position (through every block and sign)
        let key = StepKey { seed: 11, step: 4 };
        // (l = 2, 3: fewer candidates than a panel of the pool, the partial-panel path that
        // `min_log2_candidates` < 4 reaches)
        for &(m, k, l) in &[(5usize, 0usize, 6u32), (100, 70, 8), (200, 199, 10), (70, 66, 2), (30, 3, 3)] {
            let mut coef = vec![vec![0f32; m]];
            coef[0][k] = 1.0;
            let sc = one_part(key, l, &coef, &[0.0], None);
            for j in [0u32, 3, (1 << l) - 1] {
                let z = pool::candidate(key.seed, key.step, 0, l, j, m);
                let sg = pool::signs(key.seed, key.step, 0, m);
                let want = if sg[k] { -z[k] } else { z[k] };
                assert_eq!(sc[j as usize].to_bits(), want.to_bits(), "m={m} k={k} j={j}");
            }
            // the quadratic term: a·‖z‖²
            let coef0 = vec![vec![0f32; m]];
            let sc = one_part(key, l, &coef0, &[-0.5], None);
            let z = pool::candidate(key.seed, key.step, 0, l, 2, m);
            let n2: f32 = z.iter().map(|v| v * v).sum();
            assert!((sc[2] - (-0.5 * n2)).abs() < 1e-4 * n2.max(1.0));
            // the exact per-dimension term: a_d = −0.5 everywhere but −0.25 at position k
            let mut a_dim = vec![vec![-0.5f32; m]];
            a_dim[0][k] = -0.25;
            let sc = one_part(key, l, &coef0, &[-0.5], Some(&a_dim));
            let want = -0.5 * n2 + 0.25 * z[k] * z[k];
            assert!((sc[2] - want).abs() < 1e-4 * n2.max(1.0), "{} vs {want}", sc[2]);
        }
    }

    type Chain = (
        Vec<Vec<f32>>,
        Vec<Vec<f32>>,
        Vec<StepStats>,
        crate::entropy::EncodedSymbols,
    );

    fn run_chain(steps: &[(f64, f32, f32)], dims: usize, params: &RccParams) -> Chain {
        let mut w = SymbolWriter::new();
        let mut prev = 0;
        let mut xs = Vec::new();
        let mut mus = Vec::new();
        let mut stats = Vec::new();
        for (i, &(kl, sp, sq)) in steps.iter().enumerate() {
            let (mu_p, mu_q) = make_step(1000 + i as u64, dims, kl, sp, sq);
            w.begin_step();
            let key = StepKey {
                seed: 42,
                step: i as u32,
            };
            let (x, st) =
                encode_step(key, params, &mu_p, sp, &mu_q, sq, &mut prev, &mut w).unwrap();
            xs.push(x);
            mus.push(mu_q);
            stats.push(st);
        }
        (xs, mus, stats, w.finish().unwrap())
    }

    fn decode_chain(
        words: &[u32],
        steps: &[(f64, f32, f32)],
        dims: usize,
        params: &RccParams,
    ) -> Vec<Vec<f32>> {
        let mut r = SymbolReader::new(words).unwrap();
        let mut prev = 0;
        steps
            .iter()
            .enumerate()
            .map(|(i, &(kl, sp, sq))| {
                let (mu_p, _) = make_step(1000 + i as u64, dims, kl, sp, sq);
                let key = StepKey {
                    seed: 42,
                    step: i as u32,
                };
                decode_step(key, params, &mu_p, sp, &mut prev, &mut r).unwrap()
            })
            .collect()
    }

    /// Whitened residuals (x − μ_q)/σ_q of a chain of steps with KL 5..200 bits (equal and
    /// unequal variances, 4 × 8 steps of 768 dims) and, per chunk, the residual projected on
    /// the chunk's shift direction μ_q − μ_p (exact PFR: N(0, 1); a finite candidate set pulls
    /// it toward p, negative). Returns (mean, var, KS, projection mean, projection var, chunks).
    fn faithfulness(params: &RccParams) -> (f64, f64, f64, f64, f64, f64) {
        let dims = 768;
        let steps: Vec<(f64, f32, f32)> = [5.0, 12.0, 30.0, 60.0, 100.0, 200.0, 8.0, 45.0]
            .repeat(4)
            .iter()
            .enumerate()
            .map(|(i, &kl)| if i % 2 == 0 { (kl, 0.1, 0.1) } else { (kl, 0.1, 0.098) })
            .collect();
        let (xs, mu_qs, stats, enc) = run_chain(&steps, dims, params);
        let mut res = Vec::new();
        let mut proj = Vec::new();
        for (i, ((x, mq), &(_, sp, sq))) in xs.iter().zip(&mu_qs).zip(&steps).enumerate() {
            let (mu_p, _) = make_step(1000 + i as u64, dims, steps[i].0, sp, sq);
            for (&xv, &m) in x.iter().zip(mq) {
                res.push((xv as f64 - m as f64) / sq as f64);
            }
            let plan = plan_chunks(stats[i].q, params, dims).unwrap();
            let perm = partition(StepKey { seed: 42, step: i as u32 }, dims);
            for c in 0..plan.chunks {
                let dc = &perm[chunk_range(c, plan.chunks, dims)];
                let dir: Vec<f64> = dc.iter().map(|&d| mq[d as usize] as f64 - mu_p[d as usize] as f64).collect();
                let norm = dir.iter().map(|d| d * d).sum::<f64>().sqrt();
                let pr: f64 = dc
                    .iter()
                    .zip(&dir)
                    .map(|(&d, v)| (x[d as usize] as f64 - mq[d as usize] as f64) / sq as f64 * v / norm)
                    .sum();
                proj.push(pr);
            }
        }
        let n = res.len() as f64;
        let mean = res.iter().sum::<f64>() / n;
        let var = res.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
        let d = ks(&mut res);
        let over: u32 = stats.iter().map(|s| s.over_budget_chunks).sum();
        let chunks: u32 = stats.iter().map(|s| s.chunks).sum();
        let np = proj.len() as f64;
        let pm = proj.iter().sum::<f64>() / np;
        let pv = proj.iter().map(|p| (p - pm).powi(2)).sum::<f64>() / np;
        println!(
            "faithfulness (tilt {}, {:?}): n={n} mean={mean:.4} var={var:.4} KS={d:.4} (1% crit {:.4}); \
             per-chunk projection on the shift: mean {pm:.3} ± {:.3}, var {pv:.3} over {np} chunks \
             (exact: 0, 1); over-budget {over}/{chunks}; words {}",
            params.tilt,
            params.scorer,
            1.63 / n.sqrt(),
            1.0 / np.sqrt(),
            enc.words.len()
        );
        (mean, var, d, pm, pv, n)
    }

    #[test]
    fn faithfulness_whitened_residuals_are_standard_normal() {
        // What every dimension sees: standard normal residuals, at the defaults (16-bit chunks,
        // 2^(KL+2) candidates up to 2^17, tilt 1.4, the int8 scorer), untilted, and with the
        // f32 scorer. Along each chunk's shift (one direction of ≈ 100–700 dims) they differ,
        // as measured (bench/rcc/README.md): plain PFR with a finite candidate set falls short
        // of q's mean (≈ −0.5 σ here); the default tilt recentres it at the cost of a narrower
        // spread (variance ≈ 0.3 instead of 1). The int8 scorer's rounding is invisible here:
        // the same figures as the f32 scorer's within their noise (± 0.09).
        let d = RccParams::default();
        for (tilt, scorer, pm_range, pv_range) in [
            (1.0, Scorer::Int8, (-0.8, -0.25), (0.3, 0.9)),
            (d.tilt, Scorer::Int8, (-0.25, 0.15), (0.1, 0.5)),
            (d.tilt, Scorer::F32, (-0.25, 0.15), (0.1, 0.5)),
        ] {
            let params = RccParams { tilt, scorer, ..RccParams::default() };
            let (mean, var, d, pm, pv, n) = faithfulness(&params);
            assert!(mean.abs() < 4.0 / n.sqrt(), "tilt {tilt}: mean {mean}");
            assert!((var - 1.0).abs() < 0.05, "tilt {tilt}: var {var}");
            assert!(d < 1.63 / n.sqrt() * 1.5, "tilt {tilt}: KS {d}");
            assert!(pm > pm_range.0 && pm < pm_range.1, "tilt {tilt} {scorer:?}: projection mean {pm}");
            assert!(pv > pv_range.0 && pv < pv_range.1, "tilt {tilt} {scorer:?}: projection var {pv}");
        }
    }

    #[test]
    fn select_is_the_full_argmax() {
        // the definition: argmax_j (score_j − ln T_j) over every candidate, first maximum
        fn full(key: StepKey, c: usize, scores: &[f32]) -> u32 {
            let sk = stream_key(hash4(key.seed ^ PRIVATE_SEED_XOR, key.step as u64, c as u64, TAG_ARRIVALS), 0);
            let (mut t, mut best) = (0.0f64, (f64::NEG_INFINITY, 0u32));
            for (b, block) in scores.chunks(16).enumerate() {
                let ln_u: Vec<f32> = (0..block.len())
                    .map(|i| {
                        let k = (bits_at(sk, (b * 16 + i) as u64) >> 41) as u32;
                        ln_f32((2 * k + 1) as f32 * (1.0 / 16_777_216.0))
                    })
                    .collect();
                let mut tj = t;
                for (i, &sc) in block.iter().enumerate() {
                    tj -= ln_u[i] as f64;
                    let v = sc as f64 - ln_f32(tj as f32) as f64;
                    if v > best.0 {
                        best = (v, (b * 16 + i) as u32);
                    }
                }
                t += block_span(&ln_u);
            }
            best.1
        }
        let mut z = vec![0f32; 1 << 14];
        for (case, &(n, scale)) in [(16usize, 1.0f32), (37, 3.0), (1000, 0.5), (4096, 6.0), (16384, 9.0), (5, 0.0)].iter().enumerate() {
            for c in 0..20 {
                fill_normals(case as u64 * 100 + c as u64, 7, &mut z[..n]);
                // a few strong candidates late in the list, as a chunk with a large KL has
                let scores: Vec<f32> = z[..n].iter().enumerate().map(|(j, &v)| scale * v + if j % 977 == 976 { 2.0 * scale } else { 0.0 }).collect();
                let key = StepKey { seed: 11, step: case as u32 };
                let want = full(key, c, &scores);
                // one part, or parts of 1,024 and 32 candidates (the search goes on across them)
                let maxima: Vec<f32> = scores.chunks(RANGE).map(max_score).collect();
                assert_eq!(select(key, c, 0, &Parts { f32: &scores, i32: None, maxima: &maxima, g: 1, nc: n }), want, "n {n} scale {scale} chunk {c}");
                // fed in pieces (the search goes on across them)
                for piece in [1024, 32] {
                    let mut s = Search::new(key, c);
                    let max_sc = max_score(&scores) as f64;
                    for p in scores.chunks(piece) {
                        if s.feed(Row::F32(p), max_sc) {
                            break;
                        }
                    }
                    assert_eq!(s.best.1, want, "n {n} scale {scale} chunk {c} pieces of {piece}");
                }
            }
        }
    }

    #[test]
    fn round_trip_bit_identical_with_skip_and_multichunk() {
        let dims = 300;
        // 0.0 bits -> skipped; 0.3 -> one tiny chunk; 40 and 150 -> multi-chunk; 1e-9 -> skip
        let steps = vec![
            (0.0, 0.1, 0.1),
            (0.3, 0.1, 0.1),
            (40.0, 0.2, 0.15),
            (150.0, 0.1, 0.1),
            (1e-9, 0.1, 0.1),
        ];
        let params = RccParams::default();
        let (xs, _, stats, enc) = run_chain(&steps, dims, &params);
        assert!(stats[0].skipped && stats[4].skipped && !stats[1].skipped);
        assert!(stats[3].chunks > 1 && stats[2].chunks > 1);
        let ys = decode_chain(&enc.words, &steps, dims, &params);
        for (x, y) in xs.iter().zip(&ys) {
            assert_eq!(
                x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
        // truncated: decode the steps that fit
        let w = enc.words_needed[2] as usize;
        let mut r = SymbolReader::new_prefix(&enc.words[..w]).unwrap();
        let mut prev = 0;
        for (i, &(kl, sp, sq)) in steps.iter().enumerate().take(3) {
            let (mu_p, _) = make_step(1000 + i as u64, dims, kl, sp, sq);
            let y = decode_step(
                StepKey {
                    seed: 42,
                    step: i as u32,
                },
                &params,
                &mu_p,
                sp,
                &mut prev,
                &mut r,
            )
            .unwrap();
            assert_eq!(y, xs[i]);
        }
    }

    #[test]
    fn encode_one_thread_decode_two_threads() {
        let dims = 256;
        let steps = vec![(20.0, 0.1, 0.1), (70.0, 0.1, 0.09), (0.1, 0.1, 0.1)];
        let params = RccParams {
            chunk_bits: 6.0,
            ..RccParams::default()
        };
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let two = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (xs, _, _, enc) = one.install(|| run_chain(&steps, dims, &params));
        let (xs2, _, _, enc2) = two.install(|| run_chain(&steps, dims, &params));
        assert_eq!(
            enc.words, enc2.words,
            "encoding depends on the thread count"
        );
        assert_eq!(xs, xs2);
        let ys = two.install(|| decode_chain(&enc.words, &steps, dims, &params));
        assert_eq!(xs, ys);
    }

    /// A std per dimension (a learned variance): bit-identical round trips (1 vs 2 threads,
    /// skipped and coded steps), and the coded sample's residuals, whitened with q's std, stay
    /// standard normal overall, and per dimension with the exact quadratic scorer (the chunk
    /// mean's variance follows σ_p,d² / mean σ_p² instead; measured here, bench/rcc/README.md).
    #[test]
    fn per_dimension_std_round_trips_and_stays_faithful() {
        let dims = 768;
        let params = RccParams::default();
        // σ_p,d between 0.09 and 0.13 (a learned v across dims), σ_q = 0.1
        let sd: Vec<f32> = (0..dims).map(|d| 0.09 + 0.04 * ((d * 37 % 101) as f32 / 100.0)).collect();
        let sq = 0.1f32;
        let kls = [0.0, 12.0, 40.0, 100.0, 200.0, 30.0];
        let run = |pool: &rayon::ThreadPool| {
            pool.install(|| {
                let mut w = SymbolWriter::new();
                let mut prev = 0;
                let mut out = Vec::new();
                for (i, &kl) in kls.iter().enumerate() {
                    let (mu_p, mu_q) = make_step(2000 + i as u64, dims, kl, 0.1, sq);
                    w.begin_step();
                    let key = StepKey { seed: 5, step: i as u32 };
                    let (x, st) = encode_step(key, &params, &mu_p, &sd, &mu_q, sq, &mut prev, &mut w).unwrap();
                    out.push((x, mu_q, st));
                }
                (out, w.finish().unwrap())
            })
        };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let (steps, enc) = run(&one);
        let (steps2, enc2) = run(&two);
        assert_eq!(enc.words, enc2.words, "encoding depends on the thread count");
        // q = p in the means still costs the variances' mismatch here: no step is skipped
        assert!(!steps[0].2.skipped && steps[0].2.kl_bits > 1.0 && steps[4].2.chunks > 1);
        // a skipped step with a constant per-dimension std is the per-step one, bit for bit
        let (mu_p, _) = make_step(9, dims, 0.0, 0.1, 0.1);
        let flat = vec![0.1f32; dims];
        let (mut w1, mut w2, mut p1, mut p2) = (SymbolWriter::new(), SymbolWriter::new(), 0, 0);
        let key = StepKey { seed: 5, step: 99 };
        let (xa, sa) = encode_step(key, &params, &mu_p, &flat, &mu_p, 0.1, &mut p1, &mut w1).unwrap();
        let (xb, _) = encode_step(key, &params, &mu_p, 0.1f32, &mu_p, 0.1, &mut p2, &mut w2).unwrap();
        assert!(sa.skipped);
        assert_eq!(xa, xb);
        // the step KL is the per-dimension one
        let (mu_p, mu_q) = make_step(2003, dims, 100.0, 0.1, sq);
        let want: f64 = (0..dims).map(|d| dim_kl_nats(mu_p[d], sd[d], mu_q[d], sq)).sum::<f64>() / std::f64::consts::LN_2;
        assert!((steps[3].2.kl_bits - want).abs() < 1e-9 * want, "{} vs {want}", steps[3].2.kl_bits);
        let ys = two.install(|| {
            let mut r = SymbolReader::new(&enc.words).unwrap();
            let mut prev = 0;
            (0..kls.len())
                .map(|i| {
                    let (mu_p, _) = make_step(2000 + i as u64, dims, kls[i], 0.1, sq);
                    decode_step(StepKey { seed: 5, step: i as u32 }, &params, &mu_p, &sd, &mut prev, &mut r).unwrap()
                })
                .collect::<Vec<_>>()
        });
        for ((a, b), y) in steps.iter().zip(&steps2).zip(&ys) {
            assert_eq!(a.0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.0.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            assert_eq!(a.0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), y.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }
        // faithfulness of the coded steps (whitened with σ_q)
        let mut res = Vec::new();
        for (x, mq, st) in &steps {
            assert!(!st.skipped);
            res.extend(x.iter().zip(mq).map(|(&x, &m)| (x as f64 - m as f64) / sq as f64));
        }
        let n = res.len() as f64;
        let mean = res.iter().sum::<f64>() / n;
        let var = res.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
        println!("per-dim std: residual mean {mean:.4} var {var:.4} over {n} dims");
        assert!(mean.abs() < 4.0 / n.sqrt() + 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.1, "var {var}");
        // per dimension: the exact scorer gives q's variance to the dimensions of large and of
        // small σ_p alike; the chunk mean's variance follows σ_p,d² / mean σ_p²
        let split_var = |exact: bool| {
            let p = RccParams { exact_quadratic: exact, ..RccParams::default() };
            let mut w = SymbolWriter::new();
            let mut prev = 0;
            let (mut hi, mut lo) = (Vec::new(), Vec::new());
            for (i, &kl) in kls.iter().enumerate() {
                let (mu_p, mu_q) = make_step(2000 + i as u64, dims, kl, 0.1, sq);
                let (x, _) = encode_step(StepKey { seed: 5, step: i as u32 }, &p, &mu_p, &sd, &mu_q, sq, &mut prev, &mut w).unwrap();
                for d in 0..dims {
                    let r = (x[d] as f64 - mu_q[d] as f64) / sq as f64;
                    if sd[d] > 0.11 { hi.push(r * r) } else { lo.push(r * r) }
                }
            }
            let m = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            (m(&hi), m(&lo))
        };
        let (ehi, elo) = split_var(true);
        let (ahi, alo) = split_var(false);
        println!("residual variance, σ_p > 0.11 / ≤ 0.11: exact {ehi:.3} / {elo:.3}, chunk mean {ahi:.3} / {alo:.3}");
        assert!((ehi - elo).abs() < 0.12, "exact: {ehi} vs {elo}");
        assert!(ahi - alo > 0.2, "chunk mean: {ahi} vs {alo}");
        // a wrong-length or non-positive std is an error, not a panic
        let mut w = SymbolWriter::new();
        let mut prev = 0;
        let (mu_p, mu_q) = make_step(1, dims, 20.0, 0.1, sq);
        assert!(encode_step(StepKey { seed: 1, step: 0 }, &params, &mu_p, &sd[1..], &mu_q, sq, &mut prev, &mut w).is_err());
        let mut bad = sd.clone();
        bad[7] = 0.0;
        assert!(encode_step(StepKey { seed: 1, step: 0 }, &params, &mu_p, &bad, &mu_q, sq, &mut prev, &mut w).is_err());
    }

    #[test]
    fn actual_bits_versus_ideal_kl() {
        let dims = 512;
        let steps: Vec<(f64, f32, f32)> = [3.0, 10.0, 25.0, 50.0, 80.0, 120.0]
            .iter()
            .map(|&k| (k, 0.1, 0.1))
            .collect();
        let params = RccParams::default();
        let (_, _, stats, enc) = run_chain(&steps, dims, &params);
        let ideal: f64 = stats.iter().map(|s| s.kl_bits).sum();
        let actual = enc.words.len() as f64 * 32.0;
        let info: f64 = stats.iter().map(|s| s.step_info_bits_ideal).sum();
        let index: f64 = stats.iter().map(|s| s.index_bits_ideal).sum::<f64>() + info;
        let chunks: u32 = stats.iter().map(|s| s.chunks).sum();
        println!(
            "rate: ideal KL {ideal:.1} bits, ideal index+info {index:.1} bits (info {info:.1}), \
             actual {actual} bits (ratio {:.3}), {chunks} chunks, {:.2} overhead bits/chunk",
            actual / ideal,
            (actual - ideal) / chunks as f64
        );
        assert!(actual > 0.5 * ideal && actual < 2.0 * ideal + 64.0);
        assert!((index - actual).abs() < 0.1 * actual + 64.0);
    }

    #[test]
    fn hostile_decoder_input() {
        let dims = 64;
        let mu_p = vec![0f32; dims];
        let params = RccParams::default();
        for words in [vec![1u32], vec![0xFFFF_FFFF; 7], vec![0x8000_0001, 3, 5, 9]] {
            let mut r = SymbolReader::new(&words).unwrap();
            let mut prev = 0;
            for step in 0..5 {
                let _ = decode_step(
                    StepKey { seed: 1, step },
                    &params,
                    &mu_p,
                    0.1,
                    &mut prev,
                    &mut r,
                );
            }
        }
        let mut r = SymbolReader::new(&[1]).unwrap();
        let mut prev = 0;
        assert!(decode_step(
            StepKey { seed: 1, step: 0 },
            &params,
            &mu_p,
            f32::NAN,
            &mut prev,
            &mut r
        )
        .is_err());
        let mut w = SymbolWriter::new();
        assert!(encode_step(
            StepKey { seed: 1, step: 0 },
            &params,
            &mu_p,
            0.1,
            &mu_p[1..],
            0.1,
            &mut prev,
            &mut w
        )
        .is_err());
        let mut bad = mu_p.clone();
        bad[3] = f32::INFINITY;
        assert!(encode_step(
            StepKey { seed: 1, step: 0 },
            &params,
            &mu_p,
            0.1,
            &bad,
            0.1,
            &mut prev,
            &mut w
        )
        .is_err());
    }
}
