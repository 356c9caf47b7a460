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

#[cfg(test)]
mod tests {
    use super::*;

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
