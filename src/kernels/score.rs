//! The PFR encoder's candidate scores with a quadratic term per dimension, fused.
//!
//! For one panel of [`PANEL`] candidates (`panel[k * PANEL + i]`: candidate `i`'s value at
//! column `k`, `k < COLS`) and `g` chunks with linear coefficients `lin[c * COLS + k]` and
//! quadratic coefficients `quad[c * COLS + k]` (zero past a chunk's columns), adds to
//! `out[c * ld + i]` the chunk's log-ratio terms
//!
//! `L = Σ_k lin[c,k] · z_ik`, `Q = Σ_k quad[c,k] · z_ik²` as `out = (out + L) + Q`,
//!
//! each sum one FMA chain in increasing `k` from 0 and `z²` one rounded product, so the
//! result does not depend on the back-end. This replaced, for the learned variance's exact
//! quadratic scoring (the default stream), two GEMM calls, a pass that squared the panel and a
//! norm loop per panel ([`crate::rcc::pfr`]): the panel is read once and squared in registers.
//! Hand-written because the encoder spends most of its time here and a portable loop is
//! latency-bound (one FMA chain per accumulator); the scores are the encoder's alone (the
//! decoder regenerates the chosen candidate), so only determinism across threads and
//! back-ends is required, and both hold.

use super::Backend;

/// Candidates per panel.
pub const PANEL: usize = 16;
/// Columns per panel.
pub const COLS: usize = 64;

/// See the module docs. `kmax[c]`: chunk `c`'s column count (its coefficients are zero past
/// it); `out` rows are `ld` apart. Panics if the slices are too short.
pub fn panel_scores(be: Backend, g: usize, lin: &[f32], quad: &[f32], kmax: &[usize], panel: &[f32], out: &mut [f32], ld: usize) {
    assert!(lin.len() >= g * COLS && quad.len() >= g * COLS && kmax.len() >= g && panel.len() >= COLS * PANEL);
    assert!(g == 0 || out.len() >= (g - 1) * ld + PANEL);
    assert!(kmax[..g].iter().all(|&k| k <= COLS));
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx512 {
        // SAFETY: Backend::Avx512 is only chosen when avx512f and fma are detected; the
        // bounds were checked above.
        unsafe { avx512::panel_scores(g, lin, quad, kmax, panel, out, ld) };
        return;
    }
    let _ = be;
    portable(g, lin, quad, kmax, panel, out, ld);
}

fn portable(g: usize, lin: &[f32], quad: &[f32], kmax: &[usize], panel: &[f32], out: &mut [f32], ld: usize) {
    for c in 0..g {
        let (mut l, mut q) = ([0f32; PANEL], [0f32; PANEL]);
        for k in 0..kmax[c] {
            let (a, b) = (lin[c * COLS + k], quad[c * COLS + k]);
            for i in 0..PANEL {
                let z = panel[k * PANEL + i];
                l[i] = a.mul_add(z, l[i]);
                q[i] = b.mul_add(z * z, q[i]);
            }
        }
        for i in 0..PANEL {
            let o = &mut out[c * ld + i];
            *o = (*o + l[i]) + q[i];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{COLS, PANEL};
    use std::arch::x86_64::*;

    /// Chunks in groups of four: eight independent FMA chains keep both FMA ports busy.
    /// Columns past a chunk's count have zero coefficients, and fma(0, z, acc) = acc for the
    /// finite pool values, so a group runs to its largest count with the same result.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn panel_scores(g: usize, lin: &[f32], quad: &[f32], kmax: &[usize], panel: &[f32], out: &mut [f32], ld: usize) {
        let (lp, qp, pp) = (lin.as_ptr(), quad.as_ptr(), panel.as_ptr());
        let mut c0 = 0;
        while c0 < g {
            let n = (g - c0).min(4);
            let km = kmax[c0..c0 + n].iter().copied().max().unwrap_or(0);
            let mut l = [_mm512_setzero_ps(); 4];
            let mut q = [_mm512_setzero_ps(); 4];
            // rows past n repeat row c0 (computed, not stored)
            let rows: [usize; 4] = std::array::from_fn(|r| c0 + if r < n { r } else { 0 });
            for k in 0..km {
                let z = _mm512_loadu_ps(pp.add(k * PANEL));
                let zz = _mm512_mul_ps(z, z);
                for r in 0..4 {
                    let a = _mm512_set1_ps(*lp.add(rows[r] * COLS + k));
                    let b = _mm512_set1_ps(*qp.add(rows[r] * COLS + k));
                    l[r] = _mm512_fmadd_ps(a, z, l[r]);
                    q[r] = _mm512_fmadd_ps(b, zz, q[r]);
                }
            }
            for r in 0..n {
                let o = out.as_mut_ptr().add((c0 + r) * ld);
                let v = _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(o), l[r]), q[r]);
                _mm512_storeu_ps(o, v);
            }
            c0 += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_agree_bit_for_bit_and_match_the_definition() {
        let g = 7;
        let mut s = 1u32;
        let mut r = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        };
        let panel: Vec<f32> = (0..COLS * PANEL).map(|_| 3.0 * r()).collect();
        let kmax = [64, 63, 64, 10, 1, 0, 64];
        let mut lin = vec![0f32; g * COLS];
        let mut quad = vec![0f32; g * COLS];
        for c in 0..g {
            for k in 0..kmax[c] {
                lin[c * COLS + k] = r();
                quad[c * COLS + k] = 0.1 * r();
            }
        }
        let ld = 40;
        let init: Vec<f32> = (0..g * ld).map(|_| r()).collect();
        let mut want = init.clone();
        portable(g, &lin, &quad, &kmax, &panel, &mut want, ld);
        for c in 0..g {
            for i in 0..PANEL {
                let (l, q): (f64, f64) = (0..kmax[c]).fold((0.0, 0.0), |(l, q), k| {
                    let z = panel[k * PANEL + i] as f64;
                    (l + lin[c * COLS + k] as f64 * z, q + quad[c * COLS + k] as f64 * z * z)
                });
                let exact = init[c * ld + i] as f64 + l + q;
                assert!((want[c * ld + i] as f64 - exact).abs() < 1e-4, "chunk {c} candidate {i}");
            }
        }
        for be in Backend::available() {
            let mut got = init.clone();
            panel_scores(be, g, &lin, &quad, &kmax, &panel, &mut got, ld);
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{be:?}");
        }
    }
}
