//! The shared candidate pool of the chunked PFR (format versions 3 and 4).
//!
//! # Why a pool
//!
//! A chunk with `m` dimensions and `2^L` candidates needs `m · 2^L` standard normals. Drawn
//! fresh (a counter hash and a Box–Muller transform each, ≈ 2 ns), they cost `D · 2^L` per
//! step whatever the chunking, which capped the first implementation at `L ≈ 12` and 6-bit
//! chunks (≈ 2.5–3 bits of index overhead each: 1.45–1.57× the KL). Here every candidate is a
//! row of one fixed matrix `P` of `POOL_ROWS × POOL_COLS` standard normals, generated once per
//! process, and the encoder scores all chunks of a step as matrix products against a window
//! of its rows (the project's deterministic GEMM): ≈ 50× cheaper per element, so 2^16–2^18
//! candidates per chunk fit the CPU budget.
//!
//! # Layout (normative: format/SPEC.md § 8)
//!
//! * `P[r, k] = rng::normal_at(POOL_KEY, r, k)` for `r < POOL_ROWS`, `k < POOL_COLS`.
//! * The dimensions of a chunk (in the step's permutation order) are cut into blocks of
//!   `POOL_COLS`; block `s` of every chunk of a step with `2^L` candidates reads the window
//!   `w_s = (u + s) mod (POOL_ROWS >> L)`, `u = hash4(seed, step, 0, TAG_WINDOW) mod (POOL_ROWS >> L)`:
//!   candidate `j`'s value at position `k = s·POOL_COLS + kk` of chunk `c` is
//!   `sign(c, k) · P[w_s · 2^L + j, kk]`, with `sign(c, k)` bit `k mod 64` of
//!   `bits_at(stream_key(hash4(seed, step, c, TAG_SIGNS), 0), k / 64)` (1 = negative).
//! * A chunk has at most `POOL_ROWS >> L` blocks (the chunk planner guarantees it,
//!   [`super::plan_chunks`]), so the windows of one chunk are distinct rows and its candidates
//!   are independent standard normal vectors: PFR on a chunk stays exact. Chunks of one step
//!   share rows but see them with independent signs at other dimensions, and choose with
//!   independent arrival times; the dependence this leaves between chunks is not zero, and
//!   the faithfulness test measures the samples it gives.
//!
//! The decoder never builds the pool: it regenerates the `m` values of candidate `j*` with
//! [`fill_row_prefix`].

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::rng::{bits_at, fill_normals, hash4, stream_key};

/// log2 of the pool's rows.
pub const LOG2_POOL_ROWS: u32 = 19;
/// Rows of the pool.
pub const POOL_ROWS: usize = 1 << LOG2_POOL_ROWS;
/// Columns of the pool (dimensions per block).
pub const POOL_COLS: usize = 64;
/// Key of the pool's normal streams (part of the format).
pub const POOL_KEY: u64 = 0x504F_4F4C_0000_0003; // "POOL", v3
const TAG_WINDOW: u64 = 0x57494E44; // "WIND"
const TAG_SIGNS: u64 = 0x5349474E; // "SIGN"

/// Candidates per panel of the in-memory layout.
pub const PANEL: usize = 16;

/// The pool, generated on first use, stored **panel-major** (128 MiB): rows are grouped in
/// panels of [`PANEL`] candidates, and a panel holds its `POOL_COLS × PANEL` values column by
/// column, `pool()[(r / PANEL) * POOL_COLS * PANEL + k * PANEL + r % PANEL] = P[r, k]`
/// ([`index`]). The encoder's GEMM then reads one contiguous 4 KiB panel per 16 candidates,
/// with the candidates as its vectorised dimension ([`super::pfr`]); a column-major layout
/// (one 2 MiB stride per column) made the same product latency-bound. The layout is private
/// to this process: the values, not their order in memory, are the format. Panels are
/// generated in parallel; the values do not depend on the thread count.
pub fn pool() -> &'static [f32] {
    static POOL: OnceLock<Vec<f32>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut p = vec![0f32; POOL_ROWS * POOL_COLS];
        p.par_chunks_mut(POOL_COLS * PANEL).enumerate().for_each(|(g, panel)| {
            let mut row = [0f32; POOL_COLS];
            for i in 0..PANEL {
                fill_normals(POOL_KEY, (g * PANEL + i) as u64, &mut row);
                for (k, &v) in row.iter().enumerate() {
                    panel[k * PANEL + i] = v;
                }
            }
        });
        p
    })
}

/// Where `P[r, k]` lies in [`pool`].
#[inline(always)]
pub fn index(r: usize, k: usize) -> usize {
    (r / PANEL) * POOL_COLS * PANEL + k * PANEL + r % PANEL
}

/// The first `out.len()` (≤ [`POOL_COLS`]) values of pool row `r`, without the pool.
pub fn fill_row_prefix(r: usize, out: &mut [f32]) {
    debug_assert!(out.len() <= POOL_COLS && r < POOL_ROWS);
    fill_normals(POOL_KEY, r as u64, out);
}

/// Blocks of a chunk of `m` dimensions.
pub fn blocks(m: usize) -> usize {
    m.div_ceil(POOL_COLS)
}

/// Windows available to a chunk with `2^log2_n` candidates (the most blocks it may have).
pub fn windows(log2_n: u32) -> usize {
    POOL_ROWS >> log2_n.min(LOG2_POOL_ROWS)
}

/// The first pool row of block `s` of step (seed, step) with `2^log2_n` candidates.
pub fn window_start(seed: u64, step: u32, log2_n: u32, s: usize) -> usize {
    let nw = windows(log2_n) as u64;
    let u = hash4(seed, step as u64, 0, TAG_WINDOW) % nw;
    (((u + s as u64) % nw) as usize) << log2_n
}

/// The signs of chunk `c` at positions `0..m`: `true` = negate.
pub fn signs(seed: u64, step: u32, c: u32, m: usize) -> Vec<bool> {
    let sk = stream_key(hash4(seed, step as u64, c as u64, TAG_SIGNS), 0);
    (0..m).map(|k| (bits_at(sk, (k / 64) as u64) >> (k % 64)) & 1 == 1).collect()
}

/// Candidate `j` of chunk `c` (of `m` dimensions, `2^log2_n` candidates): its `m` values, as
/// the decoder regenerates them.
pub fn candidate(seed: u64, step: u32, c: u32, log2_n: u32, j: u32, m: usize) -> Vec<f32> {
    let sg = signs(seed, step, c, m);
    let mut z = vec![0f32; m];
    for (s, zs) in z.chunks_mut(POOL_COLS).enumerate() {
        fill_row_prefix(window_start(seed, step, log2_n, s) + j as usize, zs);
        for (v, &neg) in zs.iter_mut().zip(&sg[s * POOL_COLS..]) {
            if neg {
                *v = -*v;
            }
        }
    }
    z
}

/// Levels per unit of the int8 pool: `zq = round(SCALE_I8 · z)`, so levels ±127 reach ±5.52
/// (the pool's largest |z| is 5.50: nothing is clipped, `int8_pool_levels`).
pub const SCALE_I8: f64 = 23.0;
/// Units of the squares' levels per unit of z²: level 255 is (127 / SCALE_I8)².
pub const SQ_SCALE: f64 = 255.0 * SCALE_I8 * SCALE_I8 / (127.0 * 127.0);

/// `x` rounded to an integer, half to even, for |x| < 2^22 (the 1.5·2^23 trick: adds only, the
/// same on every path; the release build targets baseline x86-64, where `round` is a call).
#[inline(always)]
fn round_even(x: f32) -> f32 {
    (x + 12_582_912.0) - 12_582_912.0
}

/// The level of a square: `sq_level(q) = round(q² · SQ_SCALE / SCALE_I8²)`, at most 255.
fn sq_level(q: f32) -> f32 {
    round_even(q * q * (SQ_SCALE / (SCALE_I8 * SCALE_I8)) as f32).min(255.0)
}

/// One row's offset levels, `round(SCALE_I8 · z) + 128`, into `out` at the int8 layout's
/// positions of row `i` of a panel. Compiled for AVX-512 where it runs.
fn quantise_row(row: &[f32; POOL_COLS], i: usize, out: &mut [u8]) {
    #[inline(always)]
    fn body(row: &[f32; POOL_COLS], i: usize, out: &mut [u8]) {
        let scale = SCALE_I8 as f32;
        let mut b = [0u8; POOL_COLS];
        for (o, &z) in b.iter_mut().zip(row) {
            // round half to even by the 1.5·2^23 trick, then + 128: the low byte of the sum's
            // bits is the offset level (integer operations only, so the loop vectorises)
            let v = ((z * scale).max(-127.0).min(127.0) + 12_582_912.0) + 128.0;
            *o = v.to_bits() as u8;
        }
        // four columns of row i per 64-byte group of the panel
        for (k4, w) in b.chunks_exact(4).enumerate() {
            out[k4 * 64 + i * 4..k4 * 64 + i * 4 + 4].copy_from_slice(w);
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn wide(row: &[f32; POOL_COLS], i: usize, out: &mut [u8]) {
        body(row, i, out)
    }
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::use_avx512() {
        // SAFETY: the AVX-512 back-end is chosen only where avx512f was detected.
        return unsafe { wide(row, i, out) };
    }
    body(row, i, out)
}

/// The int8 copy of the pool the encoder scores candidates with ([`super::quant`]): private
/// to the encoder (the stream depends only on the pool's values, which the decoder
/// regenerates in f32), 32 MiB instead of 128, in
/// [`crate::kernels::score::panel_scores_i8`]'s layout:
/// `data[(r / PANEL) * PANEL_BYTES + (k / 4) * 64 + (r % PANEL) * 4 + k % 4] = round(SCALE_I8 · P[r, k]) + 128`.
pub struct QuantPool {
    pub data: Vec<u8>,
    /// Levels of the squares: `ẑ² ≈ sq[|zq|] / SQ_SCALE`.
    pub sq: [u8; 128],
}

/// The int8 pool, built on first use from the same normals as [`pool`] (which it does not
/// need), panels in parallel; the values do not depend on the thread count.
pub fn quant_pool() -> &'static QuantPool {
    use crate::kernels::score::PANEL_BYTES;
    static QP: OnceLock<QuantPool> = OnceLock::new();
    QP.get_or_init(|| {
        let mut data = vec![0u8; POOL_ROWS * POOL_COLS];
        data.par_chunks_mut(PANEL_BYTES).enumerate().for_each(|(g, panel)| {
            let mut row = [0f32; POOL_COLS];
            for i in 0..PANEL {
                fill_normals(POOL_KEY, (g * PANEL + i) as u64, &mut row);
                quantise_row(&row, i, panel);
            }
        });
        QuantPool { data, sq: std::array::from_fn(|a| sq_level(a as f32) as u8) }
    })
}

/// Where the int8 panel that holds row `r` starts in [`QuantPool::data`].
#[inline(always)]
pub fn quant_panel(r: usize) -> usize {
    (r / PANEL) * crate::kernels::score::PANEL_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_pool_levels() {
        use crate::kernels::score::PANEL_BYTES;
        let q = quant_pool();
        let p = pool();
        // every level is the rounding of its value (nothing clipped: the error is ≤ half a level)
        let mut worst = 0f64;
        for r in (0..POOL_ROWS).step_by(997).chain([POOL_ROWS - 1]) {
            for k in 0..POOL_COLS {
                let u = q.data[quant_panel(r) + (k / 4) * 64 + (r % PANEL) * 4 + k % 4];
                let z = p[index(r, k)] as f64;
                worst = worst.max((z - (u as f64 - 128.0) / SCALE_I8).abs());
                assert!((1..=255).contains(&u));
            }
        }
        assert!(worst <= 0.5 / SCALE_I8 + 1e-6, "{worst}");
        assert_eq!(q.data.len(), POOL_ROWS / PANEL * PANEL_BYTES);
        // the squares' levels: monotone, within half a level of ẑ² · SQ_SCALE
        for a in 0..128usize {
            let want = (a as f64 / SCALE_I8).powi(2) * SQ_SCALE;
            assert!((q.sq[a] as f64 - want).abs() <= 0.5 + 1e-3, "{a}");
            assert!(a == 0 || q.sq[a] >= q.sq[a - 1]);
        }
    }

    #[test]
    fn decoder_rows_equal_the_pool() {
        let p = pool();
        for r in [0usize, 1, 777, 4096, POOL_ROWS - 1] {
            let mut row = vec![0f32; 37];
            fill_row_prefix(r, &mut row);
            let col: Vec<f32> = (0..37).map(|k| p[index(r, k)]).collect();
            assert_eq!(col, row);
        }
    }

    #[test]
    fn windows_of_a_chunk_are_distinct() {
        for l in [4u32, 12, 16, 18] {
            let nw = windows(l);
            let starts: std::collections::HashSet<usize> = (0..nw.min(64)).map(|s| window_start(9, 3, l, s)).collect();
            assert_eq!(starts.len(), nw.min(64));
            assert!(starts.iter().all(|&w| w + (1 << l) <= POOL_ROWS));
        }
    }

    #[test]
    fn candidate_applies_windows_and_signs() {
        let (seed, step, c, l, j, m) = (5u64, 7u32, 2u32, 10u32, 123u32, 150usize);
        let z = candidate(seed, step, c, l, j, m);
        let sg = signs(seed, step, c, m);
        let p = pool();
        for k in [0usize, 63, 64, 149] {
            let (s, kk) = (k / POOL_COLS, k % POOL_COLS);
            let v = p[index(window_start(seed, step, l, s) + j as usize, kk)];
            assert_eq!(z[k], if sg[k] { -v } else { v });
        }
        assert!(sg.iter().any(|&b| b) && sg.iter().any(|&b| !b));
    }
}
