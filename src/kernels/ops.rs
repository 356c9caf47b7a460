//! Element-wise and reduction kernels on HWC f32 maps: GroupNorm (+SiLU), softmax, exp,
//! layout changes. AVX-512 and scalar versions compute bit-identical results.

use super::Backend;

// Cephes expf constants.
const EXP_HI: f32 = 88.0;
const EXP_LO: f32 = -87.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4; // 0.693359375
const LN2_LO: f32 = -2.121_944_4e-4;
const P0: f32 = 1.987_569_1e-4;
const P1: f32 = 1.398_199_9e-3;
const P2: f32 = 8.333_452e-3;
const P3: f32 = 4.166_579_6e-2;
const P4: f32 = 1.666_666_5e-1;
const P5: f32 = 0.5;

/// e^x (relative error ≈ 2 ulp on [-87, 88]; clamped outside), the reference for the SIMD one.
#[inline(always)]
pub fn exp_scalar(x: f32) -> f32 {
    // max/min, not clamp: NaN handling as _mm512_max_ps/_mm512_min_ps
    #[allow(clippy::manual_clamp)]
    let x = x.max(EXP_LO).min(EXP_HI);
    let n = (x * LOG2E).round_ties_even();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = P0;
    p = p.mul_add(r, P1);
    p = p.mul_add(r, P2);
    p = p.mul_add(r, P3);
    p = p.mul_add(r, P4);
    p = p.mul_add(r, P5);
    let r2 = r * r;
    let y = p.mul_add(r2, r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Bits of the first guess of 1/d (relative error < 12.5% for normal d).
const RCP_MAGIC: u32 = 0x7EF3_11C3;
/// Upper clamp of the exponent in SiLU: keeps 1 + e^-y far from overflow.
const SILU_EXP_HI: f32 = 80.0;

/// SiLU: y · 1/(1 + e^-y), the reciprocal by three Newton steps (no division; ≈ 1 ulp).
#[inline(always)]
pub fn silu_scalar(y: f32) -> f32 {
    let d = 1.0 + exp_scalar((-y).min(SILU_EXP_HI));
    let mut r = f32::from_bits(RCP_MAGIC.wrapping_sub(d.to_bits()));
    for _ in 0..3 {
        let t = (-d).mul_add(r, 1.0);
        r = r.mul_add(t, r);
    }
    y * r
}

/// (sin x, cos x), correctly rounded to f32 in nearly all cases, from IEEE f64 arithmetic
/// only (no libm): the same bits on every platform. For |x| ≲ 1e6.
pub fn sin_cos(x: f32) -> (f32, f32) {
    const PIO2_HI: f64 = std::f64::consts::FRAC_PI_2;
    const PIO2_LO: f64 = 6.123_233_995_736_766e-17;
    let x = x as f64;
    let k = (x * std::f64::consts::FRAC_2_PI).round_ties_even();
    let r = k.mul_add(-PIO2_LO, k.mul_add(-PIO2_HI, x));
    let r2 = r * r;
    // Taylor series to r^17 / r^18 on |r| ≤ π/4 (truncation < 1e-17)
    let mut sp = 0f64;
    for n in (1..=8).rev() {
        // coefficient of r^(2n+1): (-1)^n / (2n+1)!
        sp = sp.mul_add(r2, SIN_C[n]);
    }
    let s = sp.mul_add(r2 * r, r);
    let mut cp = 0f64;
    for n in (1..=9).rev() {
        cp = cp.mul_add(r2, COS_C[n]);
    }
    let c = cp.mul_add(r2, 1.0);
    let (s, c) = match (k as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    };
    (s as f32, c as f32)
}

/// `SIN_C[n] = (-1)^n / (2n+1)!`
const SIN_C: [f64; 9] = [
    1.0,
    -1.0 / 6.0,
    1.0 / 120.0,
    -1.0 / 5040.0,
    1.0 / 362_880.0,
    -1.0 / 39_916_800.0,
    1.0 / 6_227_020_800.0,
    -1.0 / 1_307_674_368_000.0,
    1.0 / 355_687_428_096_000.0,
];
/// `COS_C[n] = (-1)^n / (2n)!`
const COS_C: [f64; 10] = [
    1.0,
    -1.0 / 2.0,
    1.0 / 24.0,
    -1.0 / 720.0,
    1.0 / 40_320.0,
    -1.0 / 3_628_800.0,
    1.0 / 479_001_600.0,
    -1.0 / 87_178_291_200.0,
    1.0 / 20_922_789_888_000.0,
    -1.0 / 6_402_373_705_728_000.0,
];

/// `dst[p·ld + q] = [silu](src[p·ls + q] * scale[q] + shift[q])` for `npix` pixels of `c`
/// channels (HWC maps with pixel strides `ls`, `ld`).
#[allow(clippy::too_many_arguments)]
pub fn affine_act(be: Backend, src: &[f32], ls: usize, dst: &mut [f32], ld: usize, npix: usize, c: usize, scale: &[f32], shift: &[f32], silu: bool) {
    if npix == 0 || c == 0 {
        return;
    }
    assert!(c <= ls && c <= ld, "affine_act: strides");
    assert!((npix - 1) * ls + c <= src.len() && (npix - 1) * ld + c <= dst.len() && scale.len() >= c && shift.len() >= c);
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx512 {
        unsafe { avx512::affine_act(src.as_ptr(), ls, dst.as_mut_ptr(), ld, npix, c, scale.as_ptr(), shift.as_ptr(), silu) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx2 {
        unsafe { fma::affine_act(src, ls, dst, ld, npix, c, scale, shift, silu) };
        return;
    }
    affine_act_p(src, ls, dst, ld, npix, c, scale, shift, silu)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn affine_act_p(src: &[f32], ls: usize, dst: &mut [f32], ld: usize, npix: usize, c: usize, scale: &[f32], shift: &[f32], silu: bool) {
    for p in 0..npix {
        let (s, d) = (&src[p * ls..p * ls + c], &mut dst[p * ld..p * ld + c]);
        for q in 0..c {
            let y = s[q].mul_add(scale[q], shift[q]);
            d[q] = if silu { silu_scalar(y) } else { y };
        }
    }
}

/// In-place SiLU of a vector.
pub fn silu_inplace(be: Backend, x: &mut [f32]) {
    let n = x.len();
    let ones = vec![1f32; n];
    let zeros = vec![0f32; n];
    let src = x.to_vec();
    affine_act(be, &src, n, x, n, 1, n, &ones, &zeros, true);
}

/// Per-channel sums over `npix` pixels (sequential in the pixel index), then `sq`: sums of
/// `(x - center[c])²` instead (one FMA per term).
fn channel_sums(be: Backend, x: &[f32], npix: usize, c: usize, center: Option<&[f32]>, out: &mut [f32]) {
    assert!(x.len() >= npix * c && out.len() >= c && center.is_none_or(|s| s.len() >= c));
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx512 {
        unsafe { avx512::channel_sums(x.as_ptr(), npix, c, center.map(|s| s.as_ptr()), out.as_mut_ptr()) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx2 {
        unsafe { fma::channel_sums(x, npix, c, center, out) };
        return;
    }
    channel_sums_p(x, npix, c, center, out)
}

#[inline(always)]
fn channel_sums_p(x: &[f32], npix: usize, c: usize, center: Option<&[f32]>, out: &mut [f32]) {
    out[..c].fill(0.0);
    for p in 0..npix {
        let row = &x[p * c..(p + 1) * c];
        match center {
            None => {
                for q in 0..c {
                    out[q] += row[q];
                }
            }
            Some(ctr) => {
                for q in 0..c {
                    let d = row[q] - ctr[q];
                    out[q] = d.mul_add(d, out[q]);
                }
            }
        }
    }
}

/// GroupNorm of an HWC map as a per-channel affine map: `y = x * scale[c] + shift[c]`.
/// `tmp`: scratch.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_affine(
    be: Backend,
    x: &[f32],
    npix: usize,
    c: usize,
    groups: usize,
    eps: f32,
    gamma: &[f32],
    beta: &[f32],
    scale: &mut [f32],
    shift: &mut [f32],
    tmp: &mut Vec<f32>,
) {
    group_norm_affine_parts(be, &[(x, c)], npix, groups, eps, gamma, beta, scale, shift, tmp);
}

/// [`group_norm_affine`] of the channel concatenation of HWC maps `parts` (`(map, channels)`),
/// without building it (same result as on the concatenated map).
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub fn group_norm_affine_parts(
    be: Backend,
    parts: &[(&[f32], usize)],
    npix: usize,
    groups: usize,
    eps: f32,
    gamma: &[f32],
    beta: &[f32],
    scale: &mut [f32],
    shift: &mut [f32],
    tmp: &mut Vec<f32>,
) {
    let c: usize = parts.iter().map(|p| p.1).sum();
    assert!(groups > 0 && c.is_multiple_of(groups) && gamma.len() >= c && beta.len() >= c && scale.len() >= c && shift.len() >= c);
    let cg = c / groups;
    let cnt = (npix * cg) as f32;
    tmp.resize(2 * c + groups, 0.0);
    let (sums, rest) = tmp.split_at_mut(c);
    let (center, mean) = rest.split_at_mut(c);
    let mut q0 = 0;
    for &(x, cp) in parts {
        channel_sums(be, x, npix, cp, None, &mut sums[q0..q0 + cp]);
        q0 += cp;
    }
    for g in 0..groups {
        let mut s = 0f32;
        for q in g * cg..(g + 1) * cg {
            s += sums[q];
        }
        mean[g] = s / cnt;
        center[g * cg..(g + 1) * cg].fill(mean[g]);
    }
    let mut q0 = 0;
    for &(x, cp) in parts {
        channel_sums(be, x, npix, cp, Some(&center[q0..q0 + cp]), &mut sums[q0..q0 + cp]);
        q0 += cp;
    }
    for g in 0..groups {
        let mut s = 0f32;
        for q in g * cg..(g + 1) * cg {
            s += sums[q];
        }
        let rstd = 1.0 / (s / cnt + eps).sqrt();
        for q in g * cg..(g + 1) * cg {
            scale[q] = gamma[q] * rstd;
            shift[q] = beta[q] - mean[g] * scale[q];
        }
    }
}

/// Row-wise softmax of `rows` rows of `n` floats (row stride `ld`), in place. The sum uses 16
/// partial sums (index mod 16) combined in order.
pub fn softmax_rows(be: Backend, s: &mut [f32], rows: usize, n: usize, ld: usize) {
    if rows == 0 || n == 0 {
        return;
    }
    assert!(n <= ld && (rows - 1) * ld + n <= s.len());
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx512 {
        unsafe { avx512::softmax_rows(s.as_mut_ptr(), rows, n, ld) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx2 {
        unsafe { fma::softmax_rows(s, rows, n, ld) };
        return;
    }
    softmax_rows_p(s, rows, n, ld)
}

#[inline(always)]
fn softmax_rows_p(s: &mut [f32], rows: usize, n: usize, ld: usize) {
    for r in 0..rows {
        let row = &mut s[r * ld..r * ld + n];
        let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut part = [0f32; 16];
        let mut chunks = row.chunks_exact_mut(16);
        for ch in &mut chunks {
            for l in 0..16 {
                ch[l] = exp_scalar(ch[l] - mx);
                part[l] += ch[l];
            }
        }
        for (l, v) in chunks.into_remainder().iter_mut().enumerate() {
            *v = exp_scalar(*v - mx);
            part[l] += *v;
        }
        let mut tot = 0f32;
        for p in part {
            tot += p;
        }
        let inv = 1.0 / tot;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// `dst[c * ldd + p] = src[p * lds + c]` for `p < npix`, `c < ch` (16×16 blocks).
pub fn transpose(src: &[f32], lds: usize, npix: usize, ch: usize, dst: &mut [f32], ldd: usize) {
    const B: usize = 16;
    if npix == 0 || ch == 0 {
        return;
    }
    assert!((npix - 1) * lds + ch <= src.len() && (ch - 1) * ldd + npix <= dst.len());
    #[cfg(target_arch = "x86_64")]
    if npix.is_multiple_of(B) && ch.is_multiple_of(B) && super::use_avx512() {
        unsafe { avx512::transpose16(src.as_ptr(), lds, npix, ch, dst.as_mut_ptr(), ldd) };
        return;
    }
    for p0 in (0..npix).step_by(B) {
        for c0 in (0..ch).step_by(B) {
            for p in p0..(p0 + B).min(npix) {
                let row = &src[p * lds + c0..p * lds + (c0 + B).min(ch)];
                for (i, &v) in row.iter().enumerate() {
                    dst[(c0 + i) * ldd + p] = v;
                }
            }
        }
    }
}

/// Zeroes the one-pixel border of a padded HWC map of interior `h × w`, `c` channels.
pub fn zero_border(buf: &mut [f32], h: usize, w: usize, c: usize) {
    let wp = w + 2;
    buf[..wp * c].fill(0.0);
    buf[(h + 1) * wp * c..(h + 2) * wp * c].fill(0.0);
    for y in 1..=h {
        buf[y * wp * c..(y * wp + 1) * c].fill(0.0);
        buf[(y * wp + w + 1) * c..(y * wp + w + 2) * c].fill(0.0);
    }
}

/// HWC map (`h × w × c`) → zero-padded CHW map (`c × (h+2) × (w+2)`).
pub fn hwc_to_chw_padded(src: &[f32], h: usize, w: usize, c: usize, dst: &mut [f32]) {
    let (wp, plane) = (w + 2, (w + 2) * (h + 2));
    dst[..c * plane].fill(0.0);
    const B: usize = 16;
    for y in 0..h {
        for x0 in (0..w).step_by(B) {
            for c0 in (0..c).step_by(B) {
                for x in x0..(x0 + B).min(w) {
                    let s = &src[(y * w + x) * c..];
                    for ci in c0..(c0 + B).min(c) {
                        dst[ci * plane + (y + 1) * wp + x + 1] = s[ci];
                    }
                }
            }
        }
    }
}

/// Copies an HWC map into the interior of a padded map (border zeroed too).
pub fn pad_copy(src: &[f32], h: usize, w: usize, c: usize, dst: &mut [f32]) {
    let wp = w + 2;
    zero_border(dst, h, w, c);
    for y in 0..h {
        let d = ((y + 1) * wp + 1) * c;
        dst[d..d + w * c].copy_from_slice(&src[y * w * c..(y + 1) * w * c]);
    }
}

/// 3×3 convolution (padding 1) with few output channels (`cout ≤ 4`), vectorised over pixels:
/// `src` is a zero-padded CHW map (`cin × (r+2) × (r+2)`), `w` is `[cout][9][cin]`
/// (tap-major like the GEMM's k), `out` is CHW (`cout × r × r`). Each output is
/// `0 + bias`, then one FMA per (tap, channel) in that order: the GEMM's arithmetic.
#[allow(clippy::too_many_arguments)]
pub fn conv3_few_out(be: Backend, src: &[f32], r: usize, cin: usize, w: &[f32], bias: &[f32], cout: usize, out: &mut [f32]) {
    let wp = r + 2;
    assert!(cout <= 4 && src.len() >= cin * wp * wp && w.len() >= cout * 9 * cin && bias.len() >= cout && out.len() >= cout * r * r);
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx512 {
        unsafe { avx512::conv3_few_out(src.as_ptr(), r, cin, w.as_ptr(), bias.as_ptr(), cout, out.as_mut_ptr()) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx2 {
        unsafe { fma::conv3_few_out(src, r, cin, w, bias, cout, out) };
        return;
    }
    conv3_few_out_p(src, r, cin, w, bias, cout, out)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn conv3_few_out_p(src: &[f32], r: usize, cin: usize, w: &[f32], bias: &[f32], cout: usize, out: &mut [f32]) {
    const X: usize = 32;
    let wp = r + 2;
    for co in 0..cout {
        for y in 0..r {
            for x0 in (0..r).step_by(X) {
                let nx = (r - x0).min(X);
                let mut acc = [0.0 + bias[co]; X];
                for t in 0..9 {
                    let (ky, kx) = (t / 3, t % 3);
                    for ci in 0..cin {
                        let wv = w[(co * 9 + t) * cin + ci];
                        let row = &src[ci * wp * wp + (y + ky) * wp + x0 + kx..][..nx];
                        for (a, &v) in acc.iter_mut().zip(row) {
                            *a = v.mul_add(wv, *a);
                        }
                    }
                }
                out[co * r * r + y * r + x0..][..nx].copy_from_slice(&acc[..nx]);
            }
        }
    }
}

/// The AVX2 + FMA kernels: exp, SiLU and softmax written with 8-lane intrinsics in the AVX-512
/// versions' exact operation order (the compiler does not vectorise the scalar exp's bit
/// manipulation: the portable affine_act was 16% of a network call here), the rest the portable
/// code compiled for AVX2. Same bits as the scalar reference (tests below and
/// `fast_output_bits_are_pinned`).
#[cfg(target_arch = "x86_64")]
mod fma {
    use super::*;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp(x: __m256) -> __m256 {
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(EXP_LO)), _mm256_set1_ps(EXP_HI));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)));
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), x);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
        let mut p = _mm256_set1_ps(P0);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
        let r2 = _mm256_mul_ps(r, r);
        let y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
        let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
        _mm256_mul_ps(y, _mm256_castsi256_ps(e))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn silu(y: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let z = _mm256_min_ps(_mm256_sub_ps(_mm256_setzero_ps(), y), _mm256_set1_ps(SILU_EXP_HI));
        let d = _mm256_add_ps(one, exp(z));
        let mut r = _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_set1_epi32(RCP_MAGIC as i32), _mm256_castps_si256(d)));
        let nd = _mm256_sub_ps(_mm256_setzero_ps(), d);
        for _ in 0..3 {
            let t = _mm256_fmadd_ps(nd, r, one);
            r = _mm256_fmadd_ps(r, t, r);
        }
        _mm256_mul_ps(y, r)
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn affine_act(src: &[f32], ls: usize, dst: &mut [f32], ld: usize, npix: usize, c: usize, scale: &[f32], shift: &[f32], act: bool) {
        let c8 = c / 8 * 8;
        for p in 0..npix {
            let (sp, dp) = (src.as_ptr().add(p * ls), dst.as_mut_ptr().add(p * ld));
            let mut q = 0;
            while q < c8 {
                let x = _mm256_loadu_ps(sp.add(q));
                let y = _mm256_fmadd_ps(x, _mm256_loadu_ps(scale.as_ptr().add(q)), _mm256_loadu_ps(shift.as_ptr().add(q)));
                let y = if act { silu(y) } else { y };
                _mm256_storeu_ps(dp.add(q), y);
                q += 8;
            }
            for q in c8..c {
                let y = (*sp.add(q)).mul_add(scale[q], shift[q]);
                *dp.add(q) = if act { silu_scalar(y) } else { y };
            }
        }
    }

    /// As `softmax_rows_p`: the 16 lane sums in two registers, the same order.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_rows(s: &mut [f32], rows: usize, n: usize, ld: usize) {
        for r in 0..rows {
            let row = &mut s[r * ld..r * ld + n];
            let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let m = _mm256_set1_ps(mx);
            let (mut p0, mut p1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let full = n / 16 * 16;
            let rp = row.as_mut_ptr();
            let mut i = 0;
            while i < full {
                let e0 = exp(_mm256_sub_ps(_mm256_loadu_ps(rp.add(i)), m));
                let e1 = exp(_mm256_sub_ps(_mm256_loadu_ps(rp.add(i + 8)), m));
                _mm256_storeu_ps(rp.add(i), e0);
                _mm256_storeu_ps(rp.add(i + 8), e1);
                p0 = _mm256_add_ps(p0, e0);
                p1 = _mm256_add_ps(p1, e1);
                i += 16;
            }
            let mut part = [0f32; 16];
            _mm256_storeu_ps(part.as_mut_ptr(), p0);
            _mm256_storeu_ps(part.as_mut_ptr().add(8), p1);
            for (l, v) in row[full..].iter_mut().enumerate() {
                *v = exp_scalar(*v - mx);
                part[l] += *v;
            }
            let mut tot = 0f32;
            for p in part {
                tot += p;
            }
            let inv = 1.0 / tot;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn channel_sums(x: &[f32], npix: usize, c: usize, center: Option<&[f32]>, out: &mut [f32]) {
        super::channel_sums_p(x, npix, c, center, out)
    }
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn conv3_few_out(src: &[f32], r: usize, cin: usize, w: &[f32], bias: &[f32], cout: usize, out: &mut [f32]) {
        super::conv3_few_out_p(src, r, cin, w, bias, cout, out)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    #[inline(always)]
    fn mask(rem: usize) -> u16 {
        if rem >= 16 {
            0xffff
        } else {
            ((1u32 << rem) - 1) as u16
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn exp(x: __m512) -> __m512 {
        let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(EXP_LO)), _mm512_set1_ps(EXP_HI));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)));
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), x);
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), r);
        let mut p = _mm512_set1_ps(P0);
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P1));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P5));
        let r2 = _mm512_mul_ps(r, r);
        let y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
        let e = _mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)));
        _mm512_mul_ps(y, _mm512_castsi512_ps(e))
    }

    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn silu(y: __m512) -> __m512 {
        let one = _mm512_set1_ps(1.0);
        let z = _mm512_min_ps(_mm512_sub_ps(_mm512_setzero_ps(), y), _mm512_set1_ps(SILU_EXP_HI));
        let d = _mm512_add_ps(one, exp(z));
        let mut r = _mm512_castsi512_ps(_mm512_sub_epi32(_mm512_set1_epi32(RCP_MAGIC as i32), _mm512_castps_si512(d)));
        let nd = _mm512_sub_ps(_mm512_setzero_ps(), d);
        for _ in 0..3 {
            let t = _mm512_fmadd_ps(nd, r, one);
            r = _mm512_fmadd_ps(r, t, r);
        }
        _mm512_mul_ps(y, r)
    }

    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn affine_act(src: *const f32, ls: usize, dst: *mut f32, ld: usize, npix: usize, c: usize, scale: *const f32, shift: *const f32, act: bool) {
        for p in 0..npix {
            let mut q = 0;
            while q < c {
                let k = mask(c - q);
                let x = _mm512_maskz_loadu_ps(k, src.add(p * ls + q));
                let y = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(k, scale.add(q)), _mm512_maskz_loadu_ps(k, shift.add(q)));
                let y = if act { silu(y) } else { y };
                _mm512_mask_storeu_ps(dst.add(p * ld + q), k, y);
                q += 16;
            }
        }
    }

    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn channel_sums(x: *const f32, npix: usize, c: usize, center: Option<*const f32>, out: *mut f32) {
        const CH: usize = 8; // vectors per pass
        let mut q0 = 0;
        while q0 < c {
            let mut acc = [_mm512_setzero_ps(); CH];
            let mut ctr = [_mm512_setzero_ps(); CH];
            let mut ks = [0u16; CH];
            for v in 0..CH {
                ks[v] = if q0 + 16 * v < c { mask(c - q0 - 16 * v) } else { 0 };
                if let Some(cp) = center {
                    ctr[v] = _mm512_maskz_loadu_ps(ks[v], cp.add(q0 + 16 * v));
                }
            }
            let nvec = (c - q0).div_ceil(16).min(CH);
            for p in 0..npix {
                let row = x.add(p * c + q0);
                for v in 0..nvec {
                    let xv = _mm512_maskz_loadu_ps(ks[v], row.add(16 * v));
                    acc[v] = match center {
                        None => _mm512_add_ps(acc[v], xv),
                        Some(_) => {
                            let d = _mm512_sub_ps(xv, ctr[v]);
                            _mm512_fmadd_ps(d, d, acc[v])
                        }
                    };
                }
            }
            for v in 0..nvec {
                _mm512_mask_storeu_ps(out.add(q0 + 16 * v), ks[v], acc[v]);
            }
            q0 += 16 * CH;
        }
    }

    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::needless_range_loop)]
    pub(super) unsafe fn conv3_few_out(src: *const f32, r: usize, cin: usize, w: *const f32, bias: *const f32, cout: usize, out: *mut f32) {
        let wp = r + 2;
        let plane = wp * wp;
        for y in 0..r {
            let mut x0 = 0;
            while x0 < r {
                // two 16-pixel chunks of the row at a time
                let k0 = mask(r - x0);
                let k1 = mask(r.saturating_sub(x0 + 16));
                let mut acc = [[_mm512_setzero_ps(); 2]; 4];
                for co in 0..cout {
                    let b = _mm512_add_ps(_mm512_setzero_ps(), _mm512_set1_ps(*bias.add(co)));
                    acc[co] = [b, b];
                }
                for t in 0..9 {
                    let (ky, kx) = (t / 3, t % 3);
                    let row = src.add((y + ky) * wp + x0 + kx);
                    for ci in 0..cin {
                        let p = row.add(ci * plane);
                        let a0 = _mm512_maskz_loadu_ps(k0, p);
                        let a1 = _mm512_maskz_loadu_ps(k1, p.add(16));
                        for co in 0..4 {
                            if co < cout {
                                let wv = _mm512_set1_ps(*w.add((co * 9 + t) * cin + ci));
                                acc[co][0] = _mm512_fmadd_ps(a0, wv, acc[co][0]);
                                acc[co][1] = _mm512_fmadd_ps(a1, wv, acc[co][1]);
                            }
                        }
                    }
                }
                for co in 0..cout {
                    let o = out.add(co * r * r + y * r + x0);
                    _mm512_mask_storeu_ps(o, k0, acc[co][0]);
                    _mm512_mask_storeu_ps(o.add(16), k1, acc[co][1]);
                }
                x0 += 32;
            }
        }
    }

    /// `transpose` for `npix`, `ch` multiples of 16: 16×16 blocks through registers.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose16(src: *const f32, lds: usize, npix: usize, ch: usize, dst: *mut f32, ldd: usize) {
        #[inline(always)]
        unsafe fn lo64(a: __m512, b: __m512) -> __m512 {
            _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
        }
        #[inline(always)]
        unsafe fn hi64(a: __m512, b: __m512) -> __m512 {
            _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
        }
        for p0 in (0..npix).step_by(16) {
            for c0 in (0..ch).step_by(16) {
                let mut r = [_mm512_setzero_ps(); 16];
                for (i, v) in r.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(src.add((p0 + i) * lds + c0));
                }
                let mut t = [_mm512_setzero_ps(); 16];
                for i in 0..8 {
                    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
                }
                for i in 0..4 {
                    let b = 4 * i;
                    r[b] = lo64(t[b], t[b + 2]);
                    r[b + 1] = hi64(t[b], t[b + 2]);
                    r[b + 2] = lo64(t[b + 1], t[b + 3]);
                    r[b + 3] = hi64(t[b + 1], t[b + 3]);
                }
                for h in 0..2 {
                    let b = 8 * h;
                    for i in 0..4 {
                        t[b + i] = _mm512_shuffle_f32x4::<0x88>(r[b + i], r[b + 4 + i]);
                        t[b + 4 + i] = _mm512_shuffle_f32x4::<0xdd>(r[b + i], r[b + 4 + i]);
                    }
                }
                for i in 0..8 {
                    r[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
                    r[8 + i] = _mm512_shuffle_f32x4::<0xdd>(t[i], t[8 + i]);
                }
                for (i, v) in r.iter().enumerate() {
                    _mm512_storeu_ps(dst.add((c0 + i) * ldd + p0), *v);
                }
            }
        }
    }

    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn softmax_rows(s: *mut f32, rows: usize, n: usize, ld: usize) {
        for r in 0..rows {
            let row = s.add(r * ld);
            let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
            let mut j = 0;
            while j < n {
                let k = mask(n - j);
                mx = _mm512_mask_max_ps(mx, k, mx, _mm512_maskz_loadu_ps(k, row.add(j)));
                j += 16;
            }
            let m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
            let mut acc = _mm512_setzero_ps();
            j = 0;
            while j < n {
                let k = mask(n - j);
                let e = exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row.add(j)), m));
                acc = _mm512_mask_add_ps(acc, k, acc, e);
                _mm512_mask_storeu_ps(row.add(j), k, e);
                j += 16;
            }
            let mut part = [0f32; 16];
            _mm512_storeu_ps(part.as_mut_ptr(), acc);
            let mut tot = 0f32;
            for p in part {
                tot += p;
            }
            let inv = _mm512_set1_ps(1.0 / tot);
            j = 0;
            while j < n {
                let k = mask(n - j);
                _mm512_mask_storeu_ps(row.add(j), k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row.add(j)), inv));
                j += 16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_is_a_transpose() {
        for &(np, ch, lds, ldd) in &[(32usize, 48usize, 50usize, 40usize), (7, 5, 9, 8), (256, 64, 192, 256)] {
            let src: Vec<f32> = (0..np * lds).map(|i| i as f32).collect();
            let mut dst = vec![-1f32; ch * ldd];
            transpose(&src, lds, np, ch, &mut dst, ldd);
            for p in 0..np {
                for c in 0..ch {
                    assert_eq!(dst[c * ldd + p], src[p * lds + c]);
                }
            }
        }
    }

    #[test]
    fn sin_cos_matches_f64() {
        for i in -20000..20000 {
            let x = i as f32 * 0.0731;
            let (s, c) = sin_cos(x);
            let (ws, wc) = ((x as f64).sin(), (x as f64).cos());
            assert!((s as f64 - ws).abs() <= 6e-8 * ws.abs().max(1e-3), "sin({x}) = {s} vs {ws}");
            assert!((c as f64 - wc).abs() <= 6e-8 * wc.abs().max(1e-3), "cos({x}) = {c} vs {wc}");
        }
    }

    #[test]
    fn channel_sums_backends_agree_on_odd_widths() {
        for &(npix, c) in &[(7usize, 37usize), (64, 96), (5, 3), (33, 72)] {
            let x: Vec<f32> = (0..npix * c).map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3).collect();
            let ctr: Vec<f32> = (0..c).map(|q| q as f32 * 0.01 - 0.1).collect();
            for center in [None, Some(&ctr[..])] {
                let mut want = vec![0f32; c];
                channel_sums(Backend::Scalar, &x, npix, c, center, &mut want);
                for be in Backend::available() {
                    let mut got = vec![1f32; c];
                    channel_sums(be, &x, npix, c, center, &mut got);
                    assert_eq!(got, want, "{be:?} npix {npix} c {c} centred {}", center.is_some());
                }
            }
        }
    }

    #[test]
    fn exp_is_accurate_and_backends_agree() {
        let xs: Vec<f32> = (-2000..2000).map(|i| i as f32 * 0.0437).collect();
        for &x in &xs {
            let e = exp_scalar(x);
            let w = (x as f64).exp();
            if (-80.0..80.0).contains(&x) {
                assert!(((e as f64 - w) / w).abs() < 1e-6, "exp({x}) = {e} vs {w}");
            }
        }
        let ones = vec![1f32; xs.len()];
        let zeros = vec![0f32; xs.len()];
        let mut a = vec![0f32; xs.len()];
        let mut b = vec![0f32; xs.len()];
        affine_act(Backend::Scalar, &xs, xs.len(), &mut a, xs.len(), 1, xs.len(), &ones, &zeros, true);
        for be in Backend::available() {
            affine_act(be, &xs, xs.len(), &mut b, xs.len(), 1, xs.len(), &ones, &zeros, true);
            assert_eq!(a, b, "{be:?}");
        }
        for (&x, &y) in xs.iter().zip(&a) {
            let w = x as f64 / (1.0 + (-x as f64).exp());
            assert!((y as f64 - w).abs() <= 1e-6 * w.abs().max(1e-30) + 1e-30, "silu({x}) = {y} vs {w}");
        }
        let mut s1: Vec<f32> = xs.iter().map(|x| x * 0.01).collect();
        let s0 = s1.clone();
        softmax_rows(Backend::Scalar, &mut s1, 40, 99, 100);
        for be in Backend::available() {
            let mut s2 = s0.clone();
            softmax_rows(be, &mut s2, 40, 99, 100);
            assert_eq!(s1, s2, "{be:?}");
        }
    }
}
