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

// ---------------------------------------------------------------------------------------------
// int8 scores
// ---------------------------------------------------------------------------------------------

/// Groups of four columns per panel (the int8 layout's 32-bit lanes).
pub const K4: usize = COLS / 4;
/// Bytes of one int8 panel.
pub const PANEL_BYTES: usize = PANEL * COLS;

/// The PFR encoder's int8 scores ([`crate::rcc::quant`]). One int8 panel holds [`PANEL`]
/// candidates × [`COLS`] columns as offset bytes, `panel[k4 * 64 + i * 4 + t] = zq(i, 4·k4 + t) + 128`
/// (`zq` a level in −127..=127), and `sq[|zq|]` is the level of its square. For `g` chunks
/// with four signed 8-bit linear coefficients per 32-bit word (`lin[c * K4 + k4]`, byte t for
/// column 4·k4 + t, little endian) and four quadratic ones (`quad[c * K4 + k4]`), in one
/// common unit, adds
///
/// `acc[c * ld + i] (+)= Σ_k lin[c, k] · (zq(i, k) + 128) + quad[c, k] · sq[|zq(i, k)|]`
///
/// over `k < 4 · k4max[c]` (added to `acc` with `add`, stored over it without), exactly (integers: every back-end gives the same values; the
/// caller keeps the sums below 2^31). Hand-written because it is the encoder's inner loop:
/// with AVX-512 VNNI one instruction does 64 of these multiply-adds, four times the f32 FMA's
/// 16, and the panel is a quarter of the f32 pool's bytes (the f32 scorer [`panel_scores`] is
/// bound by streaming the pool from memory on the Intel Xeon, bench/rcc/session12/).
#[allow(clippy::too_many_arguments)]
pub fn panel_scores_i8(be: Backend, g: usize, lin: &[i32], quad: &[i32], k4max: &[usize], panel: &[u8], sq: &[u8; 128], acc: &mut [i32], ld: usize, add: bool) {
    assert!(lin.len() >= g * K4 && quad.len() >= g * K4 && k4max.len() >= g && panel.len() >= PANEL_BYTES);
    assert!(g == 0 || acc.len() >= (g - 1) * ld + PANEL);
    assert!(k4max[..g].iter().all(|&k| k <= K4));
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx512 && use_vnni() {
        // SAFETY: the features were detected at run time; the bounds were checked above.
        unsafe { vnni::panel_scores_i8(g, lin, quad, k4max, panel, sq, acc, ld, add) };
        return;
    }
    let _ = be;
    portable_i8(g, lin, quad, k4max, panel, sq, acc, ld, add);
}

/// Whether the CPU has what [`panel_scores_i8`]'s AVX-512 VNNI kernel needs (VNNI, BW and
/// VBMI besides AVX-512F; decided once). Elsewhere the portable loop gives the same integers.
pub fn use_vnni() -> bool {
    use std::sync::OnceLock;
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vbmi")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn portable_i8(g: usize, lin: &[i32], quad: &[i32], k4max: &[usize], panel: &[u8], sq: &[u8; 128], acc: &mut [i32], ld: usize, add: bool) {
    for c in 0..g {
        let mut a = [0i32; PANEL];
        for k4 in 0..k4max[c] {
            let (lw, qw) = (lin[c * K4 + k4].to_le_bytes(), quad[c * K4 + k4].to_le_bytes());
            for (i, ai) in a.iter_mut().enumerate() {
                for t in 0..4 {
                    let u = panel[k4 * 64 + i * 4 + t];
                    let s = sq[((u ^ 0x80) as i8).unsigned_abs() as usize];
                    *ai += lw[t] as i8 as i32 * u as i32 + qw[t] as i8 as i32 * s as i32;
                }
            }
        }
        for (o, &v) in acc[c * ld..c * ld + PANEL].iter_mut().zip(&a) {
            *o = if add { *o + v } else { v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::K4;
    use std::arch::x86_64::*;

    /// Chunks in groups of 16, 8, 4, 2 or 1 (one accumulator each, no row computed twice);
    /// per four columns one load, the squares' levels by a 128-entry byte shuffle shared by
    /// the group, and two `vpdpbusd` per chunk into its accumulator. Coefficients past a
    /// chunk's columns are zero, so a group runs to its largest count.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn panel_scores_i8(g: usize, lin: &[i32], quad: &[i32], k4max: &[usize], panel: &[u8], sq: &[u8; 128], acc: &mut [i32], ld: usize, add: bool) {
        let mut c0 = 0;
        while c0 < g {
            let n = g - c0;
            let nb = if n >= 16 { 16 } else if n >= 8 { 8 } else if n >= 4 { 4 } else if n >= 2 { 2 } else { 1 };
            let km = k4max[c0..c0 + nb].iter().copied().max().unwrap_or(0);
            let args = (lin.as_ptr().add(c0 * K4), quad.as_ptr().add(c0 * K4), panel.as_ptr(), sq, acc.as_mut_ptr().add(c0 * ld), ld, km, add);
            match nb {
                16 => rows::<16>(args),
                8 => rows::<8>(args),
                4 => rows::<4>(args),
                2 => rows::<2>(args),
                _ => rows::<1>(args),
            }
            c0 += nb;
        }
    }

    type Args<'a> = (*const i32, *const i32, *const u8, &'a [u8; 128], *mut i32, usize, usize, bool);

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi")]
    unsafe fn rows<const NB: usize>((lp, qp, pp, sq, op, ld, km, add): Args<'_>) {
        let lo = _mm512_loadu_si512(sq.as_ptr() as *const _);
        let hi = _mm512_loadu_si512(sq.as_ptr().add(64) as *const _);
        let flip = _mm512_set1_epi8(-128);
        let mut a = [_mm512_setzero_si512(); NB];
        for k4 in 0..km {
            let u = _mm512_loadu_si512(pp.add(k4 * 64) as *const _);
            let s = _mm512_permutex2var_epi8(lo, _mm512_abs_epi8(_mm512_xor_si512(u, flip)), hi);
            for (r, ar) in a.iter_mut().enumerate() {
                *ar = _mm512_dpbusd_epi32(*ar, u, _mm512_set1_epi32(*lp.add(r * K4 + k4)));
                *ar = _mm512_dpbusd_epi32(*ar, s, _mm512_set1_epi32(*qp.add(r * K4 + k4)));
            }
        }
        for (r, ar) in a.iter().enumerate() {
            let o = op.add(r * ld);
            let v = if add { _mm512_add_epi32(_mm512_loadu_si512(o as *const _), *ar) } else { *ar };
            _mm512_storeu_si512(o as *mut _, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_backends_agree_and_match_the_definition() {
        let mut s = 7u32;
        let mut r = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            s >> 8
        };
        let panel: Vec<u8> = (0..PANEL_BYTES).map(|_| (1 + r() % 255) as u8).collect();
        let sq: [u8; 128] = std::array::from_fn(|a| ((a * a * 255) / (127 * 127)) as u8);
        // every group size of the VNNI kernel (16, 8, 4, 2, 1) and its remainders
        for g in [1usize, 2, 3, 5, 11, 16, 31] {
            let k4max: Vec<usize> = (0..g).map(|c| [16, 15, 16, 3, 1, 0, 16, 9][c % 8]).collect();
            let mut lin8 = vec![0i32; g * COLS];
            let mut quad8 = vec![0i32; g * COLS];
            let (mut lin, mut quad) = (vec![0i32; g * K4], vec![0i32; g * K4]);
            for c in 0..g {
                for k in 0..4 * k4max[c] {
                    lin8[c * COLS + k] = (r() % 255) as i32 - 127;
                    quad8[c * COLS + k] = (r() % 255) as i32 - 127;
                }
                for k4 in 0..K4 {
                    let pack = |v: &[i32]| i32::from_le_bytes(std::array::from_fn(|t| v[c * COLS + 4 * k4 + t] as i8 as u8));
                    lin[c * K4 + k4] = pack(&lin8);
                    quad[c * K4 + k4] = pack(&quad8);
                }
            }
            let ld = 37;
            let init: Vec<i32> = (0..g * ld).map(|_| (r() % 1000) as i32 - 500).collect();
            let mut want = init.clone();
            portable_i8(g, &lin, &quad, &k4max, &panel, &sq, &mut want, ld, true);
            for c in 0..g {
                for i in 0..PANEL {
                    let mut v = init[c * ld + i] as i64;
                    for k in 0..COLS {
                        let u = panel[(k / 4) * 64 + i * 4 + k % 4];
                        let zq = u as i64 - 128;
                        v += lin8[c * COLS + k] as i64 * u as i64 + quad8[c * COLS + k] as i64 * sq[zq.unsigned_abs() as usize] as i64;
                    }
                    assert_eq!(want[c * ld + i] as i64, v, "g {g} chunk {c} candidate {i}");
                }
            }
            for be in Backend::available() {
                let mut got = init.clone();
                panel_scores_i8(be, g, &lin, &quad, &k4max, &panel, &sq, &mut got, ld, true);
                assert_eq!(got, want, "g {g} {be:?} (vnni: {})", use_vnni());
                // stored over the buffer: the sums alone (rows between chunks untouched)
                let mut got = init.clone();
                panel_scores_i8(be, g, &lin, &quad, &k4max, &panel, &sq, &mut got, ld, false);
                for c in 0..g {
                    for i in 0..ld {
                        let want_ci = if i < PANEL { want[c * ld + i] - init[c * ld + i] } else { init[c * ld + i] };
                        assert_eq!(got[c * ld + i], want_ci, "g {g} {be:?} stored, chunk {c} lane {i}");
                    }
                }
            }
        }
    }

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
