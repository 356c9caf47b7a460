//! The PFR encoder's int8 scorer (the default, [`super::Scorer::Int8`]).
//!
//! # Why
//!
//! The f32 scorer ([`super::pfr`]) reads every candidate's 4-byte values and spends two FMAs
//! per value and chunk; in the steps with few chunks (high noise: one to four chunks over all
//! 3,072 dimensions of a CIFAR image, each reading its own window of the pool per 64
//! dimensions) it is bound by streaming the 128 MiB pool from memory, ≈ 6 GB/s on one core of
//! the Intel Xeon (bench/rcc/session12/). Here every score comes from the pool's int8 copy
//! ([`pool::quant_pool`], a quarter of the bytes) with AVX-512 VNNI, 64 multiply-adds per
//! instruction ([`panel_scores_i8`]).
//!
//! # What it changes
//!
//! The scores are approximate: with b the chunk's signed linear and a its quadratic
//! coefficients, the scorer computes Σ b̂ ẑ + Σ â ẑ² with ẑ the pool's levels (z to within
//! 1/46), ẑ² their squares' levels (to within 1/17) and b̂, â the coefficients' levels in one
//! unit per chunk (8 bits for the larger of max|b|·23 and max|a|·8.4). The PFR search then runs
//! on these scores as if exact, so the encoder samples from q times e^{ε(z)} with ε the
//! candidate's score error (a few hundredths of a nat for a 12-bit chunk): the sample's extra
//! KL is about Var(ε)/2 per chunk, and the chosen candidate is still the pool's exact f32 row,
//! which the decoder regenerates. Bias costs rate here, never correctness; measured on the
//! first 20 CIFAR-10 test images at K = 50 (bench/rcc/README.md, session 13). The scores are
//! integers until one final conversion, so every back-end (VNNI or the portable loop) and
//! every thread count gives the same choices and the same bytes.

use super::{pool, StepKey};
use crate::kernels::score::{range_scores_i8, BlockPanels, K4, PANEL, PANEL_BYTES};
use crate::kernels::Backend;

/// Most blocks of 64 dimensions in a chunk this scorer takes: keeps the integer sums below
/// 2^31 (per column at most 2 · 127 · 255, per block 64 columns). Longer chunks (only an image
/// of more than 500 tiles in one chunk) go to the f32 scorer.
pub const MAX_BLOCKS: usize = 512;

/// Whether the int8 scorer serves a group of chunks with `2^l` candidates whose largest chunk
/// has `m_max` dimensions: the windows must be whole panels (l ≥ 4) and the sums must fit.
pub fn serves(l: u32, m_max: usize) -> bool {
    l >= 4 && pool::blocks(m_max) <= MAX_BLOCKS
}

/// A chunk's coefficients as levels in one unit (1/`unit` nats).
struct Levels {
    /// Per block, [`K4`] words of four signed levels (zero past the chunk's columns).
    lin: Vec<i32>,
    quad: Vec<i32>,
    /// 128 · Σ of the linear levels (the pool's bytes are offset by 128).
    offset: i32,
    /// 1 / unit.
    inv_unit: f32,
    m: usize,
}

impl Levels {
    /// `lin[k] z_k + quad[k] z_k²` per dimension k: the largest unit at which both sets of
    /// levels stay within ±127.
    fn new(lin: &[f32], quad: &[f32]) -> Self {
        let m = lin.len();
        let max_abs = |v: &[f32]| v.iter().fold(0f64, |mx, &x| mx.max((x as f64).abs()));
        let (mb, ma) = (max_abs(lin), max_abs(quad));
        let lim = |mx: f64, per: f64| if mx > 0.0 { 127.0 * per / mx } else { f64::INFINITY };
        let unit = lim(mb, pool::SCALE_I8).min(lim(ma, pool::SQ_SCALE));
        let unit = if unit.is_finite() { unit } else { 1.0 };
        let levels = |v: &[f32], per: f64| -> Vec<i8> { v.iter().map(|&x| ((x as f64) * unit / per).round().clamp(-127.0, 127.0) as i8).collect() };
        let (bq, aq) = (levels(lin, pool::SCALE_I8), levels(quad, pool::SQ_SCALE));
        let nb = pool::blocks(m);
        let pack = |q: &[i8]| -> Vec<i32> {
            (0..nb * K4)
                .map(|w| i32::from_le_bytes(std::array::from_fn(|t| q.get(w * 4 + t).copied().unwrap_or(0) as u8)))
                .collect()
        };
        let offset = 128 * bq.iter().map(|&v| v as i32).sum::<i32>();
        Levels { lin: pack(&bq), quad: pack(&aq), offset, inv_unit: (1.0 / unit) as f32, m }
    }
}

/// A group of chunks ready to score: per block, the group's coefficient words (g × [`K4`])
/// and the chunks' word counts.
pub struct Group {
    levels: Vec<Levels>,
    lin: Vec<Vec<i32>>,
    quad: Vec<Vec<i32>>,
    k4max: Vec<Vec<usize>>,
}

impl Group {
    /// Per chunk of the group, its signed linear and its quadratic coefficients, in the
    /// chunk's dimension order (the quadratic ones do not see the candidates' signs).
    pub fn new(chunks: &[(&[f32], &[f32])]) -> Self {
        use rayon::prelude::*;
        let levels: Vec<Levels> = chunks.par_iter().map(|&(lin, quad)| Levels::new(lin, quad)).collect();
        let blocks = levels.iter().map(|q| pool::blocks(q.m)).max().unwrap_or(0);
        let words = |f: fn(&Levels) -> &Vec<i32>| -> Vec<Vec<i32>> {
            (0..blocks).map(|s| levels.iter().flat_map(|q| f(q).get(s * K4..(s + 1) * K4).unwrap_or(&[0; K4]).iter().copied()).collect()).collect()
        };
        let (lin, quad) = (words(|q| &q.lin), words(|q| &q.quad));
        let k4max = (0..blocks).map(|s| levels.iter().map(|q| q.m.saturating_sub(s * pool::POOL_COLS).min(pool::POOL_COLS).div_ceil(4)).collect()).collect();
        Group { levels, lin, quad, k4max }
    }

    /// Every chunk's (offset, 1/unit): its score is [`to_score`] of its integer sum.
    pub fn scales(&self) -> Vec<(i32, f32)> {
        self.levels.iter().map(|q| (q.offset, q.inv_unit)).collect()
    }

    /// The integer sums of candidates `j0..j0 + w` (`w` a multiple of 16) of a step with
    /// `2^l` candidates per chunk into `out` (g × w, row g the g-th chunk), and each row's
    /// largest score into `max[g]`. All blocks at once ([`range_scores_i8`]: AMX where available).
    pub fn score_range(&self, key: StepKey, l: u32, j0: usize, w: usize, out: &mut [i32], max: &mut [f32]) {
        let qp = pool::quant_pool();
        let g = self.levels.len();
        debug_assert!(w % PANEL == 0 && out.len() == g * w);
        let blocks: Vec<BlockPanels<'_>> = (0..self.lin.len())
            .map(|s| {
                let p0 = pool::quant_panel(pool::window_start(key.seed, key.step, l, s) + j0);
                BlockPanels { lin: &self.lin[s], quad: &self.quad[s], k4max: &self.k4max[s], panels: &qp.data[p0..p0 + w / PANEL * PANEL_BYTES] }
            })
            .collect();
        range_scores_i8(Backend::detect(), g, &blocks, &qp.sq, out, w);
        for (gi, q) in self.levels.iter().enumerate() {
            max[gi] = to_score(max_i32(&out[gi * w..(gi + 1) * w]), q.offset, q.inv_unit);
        }
    }
}

/// A candidate's score in nats (up to the chunk's constant) from its integer sum: the exact
/// integer difference, then one rounding. Monotone in the sum, so the largest sum gives the
/// largest score.
#[inline(always)]
pub fn to_score(sum: i32, offset: i32, inv_unit: f32) -> f32 {
    sum.wrapping_sub(offset) as f32 * inv_unit
}

/// The largest of `v` (in 16 lanes; vectorised where AVX-512 runs).
fn max_i32(v: &[i32]) -> i32 {
    #[inline(always)]
    fn body(v: &[i32]) -> i32 {
        let mut lanes = [i32::MIN; 16];
        for c in v.chunks(16) {
            for (m, &x) in lanes.iter_mut().zip(c) {
                *m = (*m).max(x);
            }
        }
        lanes.into_iter().max().unwrap_or(i32::MIN)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn wide(v: &[i32]) -> i32 {
        body(v)
    }
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::use_avx512() {
        // SAFETY: the AVX-512 back-end is chosen only where avx512f was detected.
        return unsafe { wide(v) };
    }
    body(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::fill_normals;

    #[test]
    fn int8_scores_approximate_the_exact_log_ratio() {
        // the score of candidate j against Σ b z + Σ a z² from the decoder's f32 values: equal
        // up to a constant per chunk, to within the levels' rounding
        let key = StepKey { seed: 21, step: 6 };
        let l = 8u32;
        let ms = [40usize, 64, 130, 700];
        let mut lin = Vec::new();
        let mut quad = Vec::new();
        for (c, &m) in ms.iter().enumerate() {
            let mut b = vec![0f32; m];
            fill_normals(90 + c as u64, 0, &mut b);
            let signs = pool::signs(key.seed, key.step, c as u32, m);
            lin.push(b.iter().zip(&signs).map(|(&v, &neg)| if neg { -0.4 * v } else { 0.4 * v }).collect::<Vec<f32>>());
            quad.push((0..m).map(|k| -0.02 - 0.01 * (k % 7) as f32).collect::<Vec<f32>>());
        }
        let chunks: Vec<(&[f32], &[f32])> = lin.iter().zip(&quad).map(|(b, a)| (&b[..], &a[..])).collect();
        let grp = Group::new(&chunks);
        let w = 1usize << l;
        let mut sums = vec![0i32; ms.len() * w];
        let mut mx = vec![0f32; ms.len()];
        grp.score_range(key, l, 0, w, &mut sums, &mut mx);
        let scales = grp.scales();
        let sc: Vec<f32> = sums.iter().enumerate().map(|(i, &a)| to_score(a, scales[i / w].0, scales[i / w].1)).collect();
        for c in 0..ms.len() {
            assert_eq!(mx[c], sc[c * w..(c + 1) * w].iter().copied().fold(f32::NEG_INFINITY, f32::max));
        }
        for (c, &m) in ms.iter().enumerate() {
            let signs = pool::signs(key.seed, key.step, c as u32, m);
            let exact: Vec<f64> = (0..w as u32)
                .map(|j| {
                    let z = pool::candidate(key.seed, key.step, c as u32, l, j, m);
                    // the candidate's values carry the signs; the coefficients do too
                    z.iter().zip(&signs).enumerate().map(|(k, (&v, &neg))| {
                        let raw = if neg { -v } else { v } as f64;
                        lin[c][k] as f64 * raw + quad[c][k] as f64 * raw * raw
                    }).sum()
                })
                .collect();
            let diffs: Vec<f64> = exact.iter().zip(&sc[c * w..(c + 1) * w]).map(|(e, &s)| s as f64 - e).collect();
            let mean = diffs.iter().sum::<f64>() / w as f64;
            let sd = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / w as f64).sqrt();
            let spread = (exact.iter().map(|e| e * e).sum::<f64>() / w as f64).sqrt();
            // the levels' rounding: ≈ ‖b‖/(46·√3) from the values, less from the rest
            assert!(sd < 0.02 * (m as f64).sqrt(), "chunk {c}: error sd {sd}");
            assert!(sd < 0.03 * spread, "chunk {c}: error sd {sd} against a spread of {spread}");
        }
    }

    #[test]
    fn int8_scores_do_not_depend_on_the_group() {
        // a chunk's scores are the same alone as among others (the kernel's groups of 16, 8,
        // 4, 2, 1), so neither the chunk count nor the thread count changes a choice
        let key = StepKey { seed: 4, step: 1 };
        let (l, w) = (6u32, 64usize);
        let lin: Vec<Vec<f32>> = (0..19).map(|c| (0..(50 + c * 7)).map(|k| ((k * 13 + c) % 17) as f32 * 0.1 - 0.8).collect()).collect();
        let quad: Vec<Vec<f32>> = lin.iter().map(|v| v.iter().map(|x| -0.01 * x.abs()).collect()).collect();
        let all: Vec<(&[f32], &[f32])> = lin.iter().zip(&quad).map(|(b, a)| (&b[..], &a[..])).collect();
        let mut sc = vec![0i32; 19 * w];
        Group::new(&all).score_range(key, l, 0, w, &mut sc, &mut [0.0; 19]);
        for c in [0usize, 5, 18] {
            let mut one = vec![0i32; w];
            Group::new(&all[c..c + 1]).score_range(key, l, 0, w, &mut one, &mut [0.0]);
            assert_eq!(one, sc[c * w..(c + 1) * w].to_vec(), "chunk {c}");
        }
    }
}
