//! Counter-based, deterministic random numbers shared by encoder and decoder.
//!
//! Everything here is a pure function of its arguments: no hidden state, no dependence on
//! thread count or evaluation order. Encoder and decoder regenerate the same numbers from the
//! same keys, which is what reverse channel coding (see `rcc`) needs: the decoder
//! regenerates candidate `j*` of a chunk directly, without drawing the candidates before it.
//!
//! # Bit-exactness across platforms
//!
//! Only IEEE-754 basic operations (`+ - * /`, `sqrt`, conversions) are used on the decoder
//! path; they are correctly rounded on every Rust target. The transcendental functions needed
//! ([`det_exp`], [`det_ln`], [`std_normal_cdf`], [`std_normal_quantile`] in f64 for model
//! building; [`ln_f32`], [`sincos_octant`] in the normal transform) are implemented here from
//! those basic operations, so they do not depend on the platform's `libm`. Rust never
//! contracts `a * b + c` into an FMA on its own, so SIMD and scalar code compute identical
//! values.
//!
//! # The generator
//!
//! * [`mix64`]: the SplitMix64 finaliser (a bijection on `u64` with full avalanche).
//! * [`hash4`]: a keyed hash of three words, four chained `mix64` rounds.
//! * A *stream* is `sk = stream_key(key, stream)`; its element `k` has the bits
//!   `mix64(sk + (k + 1) * GAMMA)` ([`bits_at`]), i.e. a SplitMix64 sequence seeded by `sk`.
//!   Element `k` of stream `j` can be generated alone.
//! * [`normal_pair_from_bits`]: the fixed normal transform, Box–Muller in f32 with
//!   deterministic polynomial ln/sin/cos: one 64-bit hash gives two normals (stream element
//!   `k` is output `k % 2` of pair `k / 2`). Chosen over a 2^16-entry inverse-CDF table
//!   (measured: the table's random gathers were the bottleneck; Box–Muller vectorises, needs
//!   no memory and reaches |z| = 7.5 without a tail path).

/// The golden-ratio Weyl increment of SplitMix64.
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
/// Odd multiplier that separates stream numbers before they are mixed into a stream key.
const STREAM_MUL: u64 = 0xD1B5_4A32_D192_ED03;

/// SplitMix64 finaliser: a bijective 64-bit mix with full avalanche.
#[inline(always)]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Keyed hash of three words (four chained `mix64` rounds, each word pre-mixed).
#[inline]
pub fn hash4(key: u64, a: u64, b: u64, c: u64) -> u64 {
    let mut h = mix64(key.wrapping_add(0x243F_6A88_85A3_08D3));
    h = mix64(h ^ mix64(a.wrapping_add(0x1319_8A2E_0370_7344)));
    h = mix64(h ^ mix64(b.wrapping_add(0xA409_3822_299F_31D0)));
    mix64(h ^ mix64(c.wrapping_add(0x082E_FA98_EC4E_6C89)))
}

/// Key of stream number `stream` under `key` (distinct streams give distinct keys).
#[inline(always)]
pub fn stream_key(key: u64, stream: u64) -> u64 {
    mix64(key ^ stream.wrapping_mul(STREAM_MUL))
}

/// The random bits of element `k` of the stream with key `sk`.
#[inline(always)]
pub fn bits_at(sk: u64, k: u64) -> u64 {
    mix64(sk.wrapping_add(k.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// A uniform number in (0, 1) from the top 53 bits (never 0, never 1).
#[inline(always)]
pub fn uniform_open(u: u64) -> f64 {
    ((u >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// An Exp(1) variate from 64 random bits (`-ln U`, with the deterministic [`det_ln`]).
#[inline]
pub fn exp1_from_bits(u: u64) -> f64 {
    -det_ln(uniform_open(u))
}

/// Exp(1) variate keyed by `(key, a, b, c)`.
#[inline]
pub fn exp1(key: u64, a: u64, b: u64, c: u64) -> f64 {
    exp1_from_bits(hash4(key, a, b, c))
}

// ---------------------------------------------------------------------------------------------
// Deterministic elementary functions (basic IEEE operations only).
// ---------------------------------------------------------------------------------------------

const LN2_HI: f64 = 0.693_147_180_369_123_8; // 0x3FE62E42FEE00000: high bits of ln 2 (n·LN2_HI exact)
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10; // ln 2 − LN2_HI

/// Natural logarithm from basic IEEE operations only (about 1 ulp; bit-identical everywhere).
/// Returns NaN for negative or NaN input, -inf for 0, +inf for +inf.
pub fn det_ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    let mut bits = x.to_bits();
    let mut e: i64 = 0;
    if bits >> 52 == 0 {
        // subnormal: scale up by 2^54
        bits = (x * 18_014_398_509_481_984.0).to_bits();
        e -= 54;
    }
    e += ((bits >> 52) & 0x7FF) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000); // [1, 2)
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let s2 = s * s;
    let mut p = 1.0 / 25.0;
    let mut k = 23.0;
    while k >= 1.0 {
        p = p * s2 + 1.0 / k;
        k -= 2.0;
    }
    let ln_m = 2.0 * s * p;
    let ef = e as f64;
    ef * LN2_HI + (ln_m + ef * LN2_LO)
}

/// Exponential from basic IEEE operations only (about 1 ulp; bit-identical everywhere).
pub fn det_exp(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x > 709.78 {
        return f64::INFINITY;
    }
    if x < -745.2 {
        return 0.0;
    }
    let n = (x * std::f64::consts::LOG2_E).round();
    let r = (x - n * LN2_HI) - n * LN2_LO; // |r| <= 0.35
                                           // Taylor series of exp(r) to degree 20 (Horner)
    let mut p = 1.0;
    let mut k = 20.0;
    while k >= 1.0 {
        p = 1.0 + p * r / k;
        k -= 1.0;
    }
    scale_pow2(p, n as i64)
}

/// [`det_exp`] of every element of `xs`, in place: the same bits, eight at a time with
/// AVX-512 where the CPU has it (the same IEEE operations in the same order: the reduction's
/// products and differences, the series' product, quotient and sum, one exact scaling by
/// 2^n; lanes outside ±700 take the scalar path). Hand-written because `det_exp`'s twenty
/// divisions per value are the decoder's largest serial cost on a big image (the learned
/// variance of every dimension at every step, [`crate::schedule::learned_sigma`]).
pub fn det_exp_slice(xs: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::use_avx512_dq_vl() {
        // SAFETY: chosen only where avx512f and avx512dq were detected.
        unsafe { det_exp_avx512(xs) };
        return;
    }
    for x in xs.iter_mut() {
        *x = det_exp(*x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn det_exp_avx512(xs: &mut [f64]) {
    use std::arch::x86_64::*;
    let mut it = xs.chunks_exact_mut(8);
    for c in &mut it {
        let x = _mm512_loadu_pd(c.as_ptr());
        // lanes the vector path serves: |x| ≤ 700 (NaN fails the comparison)
        let ok = _mm512_cmp_pd_mask::<_CMP_LE_OQ>(_mm512_abs_pd(x), _mm512_set1_pd(700.0));
        // n = round(x·log2 e), halves away from zero (f64::round): t − trunc(t) is exact
        let t = _mm512_mul_pd(x, _mm512_set1_pd(std::f64::consts::LOG2_E));
        let tr = _mm512_roundscale_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
        let fr = _mm512_sub_pd(t, tr);
        let up = _mm512_cmp_pd_mask::<_CMP_GE_OQ>(fr, _mm512_set1_pd(0.5));
        let down = _mm512_cmp_pd_mask::<_CMP_LE_OQ>(fr, _mm512_set1_pd(-0.5));
        let n = _mm512_mask_add_pd(tr, up, tr, _mm512_set1_pd(1.0));
        let n = _mm512_mask_sub_pd(n, down, n, _mm512_set1_pd(1.0));
        let r = _mm512_sub_pd(_mm512_sub_pd(x, _mm512_mul_pd(n, _mm512_set1_pd(LN2_HI))), _mm512_mul_pd(n, _mm512_set1_pd(LN2_LO)));
        let one = _mm512_set1_pd(1.0);
        let mut p = one;
        let mut k = 20.0;
        while k >= 1.0 {
            p = _mm512_add_pd(one, _mm512_div_pd(_mm512_mul_pd(p, r), _mm512_set1_pd(k)));
            k -= 1.0;
        }
        // 2^n for |n| ≤ 1010: the exponent field
        let ni = _mm512_cvtpd_epi64(n);
        let pow = _mm512_castsi512_pd(_mm512_slli_epi64::<52>(_mm512_add_epi64(ni, _mm512_set1_epi64(1023))));
        let v = _mm512_mul_pd(p, pow);
        _mm512_storeu_pd(c.as_mut_ptr(), v);
        if ok != 0xff {
            let mut orig = [0f64; 8];
            _mm512_storeu_pd(orig.as_mut_ptr(), x);
            for (l, e) in c.iter_mut().enumerate() {
                if ok >> l & 1 == 0 {
                    *e = det_exp(orig[l]);
                }
            }
        }
    }
    for x in it.into_remainder() {
        *x = det_exp(*x);
    }
}

fn scale_pow2(mut v: f64, mut n: i64) -> f64 {
    // multiply by 2^n in steps that stay normal, exact except for final subnormal rounding
    while n > 1000 {
        v *= f64::from_bits(((1000 + 1023) as u64) << 52);
        n -= 1000;
    }
    while n < -1000 {
        v *= f64::from_bits(((-1000 + 1023) as u64) << 52);
        n += 1000;
    }
    if n < -1022 {
        v *= f64::from_bits(((-600 + 1023) as u64) << 52);
        n += 600;
    }
    v * f64::from_bits(((n + 1023) as u64) << 52)
}

const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;
const FRAC_1_SQRT_PI: f64 = 0.564_189_583_547_756_3;
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Complementary error function for x >= 0 (relative error ~1e-14), basic operations only.
fn erfc_nonneg(x: f64) -> f64 {
    let x2 = x * x;
    if x < 2.0 {
        // erf(x) = 2/sqrt(pi) exp(-x^2) sum_n (2x^2)^n x / (1*3*...*(2n+1)); all terms positive
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while n < 200.0 {
            n += 1.0;
            term *= 2.0 * x2 / (2.0 * n + 1.0);
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
        }
        1.0 - FRAC_2_SQRT_PI * det_exp(-x2) * sum
    } else {
        // continued fraction erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
        let mut t = x;
        let mut k = 120.0;
        while k >= 1.0 {
            t = x + (k * 0.5) / t;
            k -= 1.0;
        }
        FRAC_1_SQRT_PI * det_exp(-x2) / t
    }
}

/// The standard normal CDF Φ(z), accurate in relative terms in both tails (basic operations
/// only, so bit-identical on every platform).
pub fn std_normal_cdf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    let x = z * std::f64::consts::FRAC_1_SQRT_2;
    if x <= 0.0 {
        0.5 * erfc_nonneg(-x)
    } else {
        1.0 - 0.5 * erfc_nonneg(x)
    }
}

/// Upper tail 1 − Φ(z) = Φ(−z), accurate in relative terms.
#[inline]
pub fn std_normal_sf(z: f64) -> f64 {
    std_normal_cdf(-z)
}

/// Lower quantile Φ⁻¹(p) for p in (0, 0.5]: Newton's method on ln Φ from the
/// Abramowitz–Stegun 26.2.23 starting point.
fn quantile_lower(p: f64) -> f64 {
    let t = (-2.0 * det_ln(p)).sqrt();
    let mut z = -(t
        - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
            / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t));
    let ln_p = det_ln(p);
    for _ in 0..12 {
        let cdf = std_normal_cdf(z);
        let pdf = FRAC_1_SQRT_2PI * det_exp(-0.5 * z * z);
        let step = (det_ln(cdf) - ln_p) * cdf / pdf;
        z -= step;
        if step.abs() <= 1e-15 * (1.0 + z.abs()) {
            break;
        }
    }
    z
}

/// The standard normal quantile Φ⁻¹(p) (basic operations only). Returns ±inf at 0 and 1 and NaN
/// outside [0, 1].
pub fn std_normal_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p == 0.5 {
        return 0.0;
    }
    if p < 0.5 {
        quantile_lower(p)
    } else {
        -quantile_lower(1.0 - p)
    }
}

// ---------------------------------------------------------------------------------------------
// The fixed normal transform: Box–Muller in f32 with deterministic polynomials.
// ---------------------------------------------------------------------------------------------

const SQRT2_F32_BITS: u32 = 0x3FB5_04F3; // f32 nearest to sqrt(2)

/// ln x for finite positive normal f32 `x` (used for x in (0, 1]); basic operations only,
/// absolute error about 1e-7 near 1, relative about 1e-7 elsewhere. Exactly 0 at 1 and never
/// positive below 1.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    let bits = x.to_bits();
    let mant = (bits & 0x007F_FFFF) | 0x3F80_0000; // [1, 2)
    let adj = (mant > SQRT2_F32_BITS) as u32; // fold to [sqrt(1/2), sqrt(2))
    let m = f32::from_bits(mant - (adj << 23));
    let e = ((bits >> 23) & 0xFF) as i32 - 127 + adj as i32;
    // ln m = 2 atanh(s), s = (m - 1)/(m + 1), |s| <= 0.1716: series to s^9 (error < 1e-9)
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = 1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0)));
    let two_s = s + s;
    e as f32 * std::f32::consts::LN_2 + (two_s + two_s * (s2 * p))
}

/// (sin φ, cos φ) for φ in [0, π/4] by Taylor polynomials (error below 2e-10 before rounding).
#[inline(always)]
pub fn sincos_octant(phi: f32) -> (f32, f32) {
    let p2 = phi * phi;
    let s = phi
        * (1.0
            - p2 * (1.0 / 6.0)
                * (1.0
                    - p2 * (1.0 / 20.0) * (1.0 - p2 * (1.0 / 42.0) * (1.0 - p2 * (1.0 / 72.0)))));
    let c = 1.0
        - p2 * 0.5
            * (1.0
                - p2 * (1.0 / 12.0)
                    * (1.0
                        - p2 * (1.0 / 30.0)
                            * (1.0 - p2 * (1.0 / 56.0) * (1.0 - p2 * (1.0 / 90.0)))));
    (s, c)
}

/// The fixed normal transform: 64 random bits to two independent N(0, 1) draws (f32), by
/// Box–Muller with the deterministic [`ln_f32`] and [`sincos_octant`].
///
/// Bit layout: bits 63..24 give the radius uniform `x = (2k + 1)/2^41` (so `r = sqrt(−2 ln x)`
/// reaches 7.54: the radial tail beyond has probability 4.5e-13), bits 23..3 the angle inside
/// an octant (21 bits, midpoints), bit 2 swaps sin/cos (reflection about π/4), bits 1 and 0
/// are the signs of the two outputs. Only integer and basic f32 operations are used, so the
/// result is bit-identical in scalar and SIMD code and on every platform.
#[inline(always)]
pub fn normal_pair_from_bits(u: u64) -> [f32; 2] {
    // radius: the 41-bit odd integer v = 2k + 1 = hi·2^21 + lo, converted with one rounding
    let hi = (u >> 44) as u32; // 20 bits
    let lo = ((u >> 23) as u32 & 0x1F_FFFF) | 1; // 21 bits
    let v = hi as f32 * 2_097_152.0 + lo as f32; // exact terms, one rounding
    let x = v * (1.0 / 2_199_023_255_552.0); // 2^-41, exact
    let r = (-2.0 * ln_f32(x)).sqrt();
    let f = (u >> 3) as u32 & 0x1F_FFFF;
    let phi = (f as f32 + 0.5) * (std::f32::consts::FRAC_PI_4 / 2_097_152.0);
    let (s, c) = sincos_octant(phi);
    let swap = 0u32.wrapping_sub((u >> 2) as u32 & 1);
    let (sb, cb) = (s.to_bits(), c.to_bits());
    let a = f32::from_bits((sb & swap) | (cb & !swap));
    let b = f32::from_bits((cb & swap) | (sb & !swap));
    let z0 = f32::from_bits((r * a).to_bits() ^ (((u >> 1) as u32 & 1) << 31));
    let z1 = f32::from_bits((r * b).to_bits() ^ ((u as u32 & 1) << 31));
    [z0, z1]
}

/// Element `k` of the normal stream `(key, stream)`: element `k` is output `k % 2` of the pair
/// made from `bits_at(stream_key(key, stream), k / 2)`.
#[inline]
pub fn normal_at(key: u64, stream: u64, k: u64) -> f32 {
    normal_pair_from_bits(bits_at(stream_key(key, stream), k / 2))[(k % 2) as usize]
}

/// Fills `out[k]` with element `k` of the normal stream `(key, stream)`.
///
/// In blocks of 32 pairs: the 64-bit hashes first (scalar), then the f32 transform over the
/// block, a loop without branches that the compiler vectorises (the transform uses only
/// integer and basic f32 operations, so the values are the same as one pair at a time; a test
/// pins them to [`normal_at`]). Generating the encoder's candidate pool (2^25 values) is this
/// function's main use and cost.
pub fn fill_normals(key: u64, stream: u64, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::use_avx512_dq_vl() {
        // SAFETY: the features were detected at run time.
        unsafe { fill_normals_avx512(key, stream, out) };
        return;
    }
    fill_normals_body(key, stream, out)
}

/// [`fill_normals_body`] compiled for AVX-512 (the release build targets baseline x86-64):
/// the same basic IEEE operations, vectorised 16 wide, so the same bits; the pool is built
/// ≈ 3× faster (it was a fifth of a single-image `encode`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
unsafe fn fill_normals_avx512(key: u64, stream: u64, out: &mut [f32]) {
    fill_normals_body(key, stream, out)
}

#[inline(always)]
fn fill_normals_body(key: u64, stream: u64, out: &mut [f32]) {
    const B: usize = 32;
    let sk = stream_key(key, stream);
    let half = out.len() / 2;
    let mut bits = [0u64; B];
    let mut p0 = 0usize;
    for block in out[..2 * half].chunks_mut(2 * B) {
        let n = block.len() / 2;
        for (i, b) in bits[..n].iter_mut().enumerate() {
            *b = bits_at(sk, (p0 + i) as u64);
        }
        for (o, &u) in block.chunks_exact_mut(2).zip(&bits[..n]) {
            let z = normal_pair_from_bits(u);
            o[0] = z[0];
            o[1] = z[1];
        }
        p0 += n;
    }
    if out.len() % 2 == 1 {
        out[2 * half] = normal_pair_from_bits(bits_at(sk, half as u64))[0];
    }
}

/// Uniform integer in `0..n` from 64 random bits (multiply-high; bias below n / 2^64).
#[inline(always)]
pub fn below(u: u64, n: u64) -> u64 {
    ((u as u128 * n as u128) >> 64) as u64
}

/// A seeded permutation of `0..n` (Fisher–Yates driven by the stream `(key, 0)`).
pub fn permutation(key: u64, n: usize) -> Vec<u32> {
    assert!(n <= u32::MAX as usize + 1, "permutation too long");
    let mut p: Vec<u32> = (0..n as u64).map(|i| i as u32).collect();
    let sk = stream_key(key, 0x5045_524D); // "PERM"
    for i in (1..n).rev() {
        let j = below(bits_at(sk, i as u64), i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks_statistic(samples: &mut [f64]) -> f64 {
        samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = samples.len() as f64;
        let mut d: f64 = 0.0;
        for (i, &x) in samples.iter().enumerate() {
            let c = std_normal_cdf(x);
            d = d
                .max((c - i as f64 / n).abs())
                .max(((i + 1) as f64 / n - c).abs());
        }
        d
    }

    #[test]
    fn det_functions_match_std() {
        assert_eq!(LN2_HI.to_bits(), 0x3FE6_2E42_FEE0_0000);
        assert_eq!(
            (LN2_HI + LN2_LO).to_bits(),
            std::f64::consts::LN_2.to_bits()
        );
        let mut worst_ln: f64 = 0.0;
        let mut worst_exp: f64 = 0.0;
        for i in 0..20_000 {
            let x = det_exp((i as f64 - 10_000.0) * 0.0731);
            let l = det_ln(x);
            worst_ln = worst_ln.max(((l - x.ln()) / x.ln().abs().max(1e-300)).abs());
            let y = (i as f64 - 10_000.0) * 0.0697;
            worst_exp = worst_exp.max(((det_exp(y) - y.exp()) / y.exp()).abs());
        }
        assert!(worst_ln < 1e-14, "ln rel err {worst_ln}");
        assert!(worst_exp < 1e-14, "exp rel err {worst_exp}");
        assert_eq!(det_ln(1.0), 0.0);
        assert_eq!(det_exp(0.0), 1.0);
        assert!(det_ln(-1.0).is_nan() && det_ln(0.0) == f64::NEG_INFINITY);
        assert!(det_exp(-1e4) == 0.0 && det_exp(1e4).is_infinite());
        assert!((det_ln(5e-324) - (5e-324f64).ln()).abs() < 1e-12);
    }

    #[test]
    fn cdf_and_quantile() {
        // reference values of Φ
        let refs = [
            (-1.0, 0.158_655_253_931_457_05),
            (-2.0, 0.022_750_131_948_179_21),
            (-3.0, 0.001_349_898_031_630_094_6),
            (-5.0, 2.866_515_718_791_939e-7),
            (-8.0, 6.220_960_574_271_785e-16),
            (-0.3, 0.382_088_577_811_047_1),
        ];
        for (z, p) in refs {
            let c = std_normal_cdf(z);
            assert!(((c - p) / p).abs() < 1e-12, "Φ({z}) = {c}, want {p}");
        }
        // continuity at the series / continued-fraction switch (x = 2, z = 2√2)
        let z0 = -2.0 * std::f64::consts::SQRT_2;
        let (a, b) = (std_normal_cdf(z0 - 1e-12), std_normal_cdf(z0 + 1e-12));
        assert!(((a - b) / a).abs() < 1e-11);
        for &p in &[1e-18, 1e-10, 2f64.powi(-16), 0.01, 0.3, 0.5, 0.77, 0.999] {
            let z = std_normal_quantile(p);
            let back = std_normal_cdf(z);
            assert!(
                ((back - p) / p.min(1.0 - p)).abs() < 1e-12,
                "p={p} z={z} back={back}"
            );
        }
    }

    #[test]
    fn f32_polynomials_are_accurate() {
        let mut worst_ln: f64 = 0.0;
        for i in 1..200_000u32 {
            let x = i as f32 / 200_000.0;
            let err = (ln_f32(x) as f64 - (x as f64).ln()).abs() / (x as f64).ln().abs().max(1.0);
            worst_ln = worst_ln.max(err);
            assert!(ln_f32(x) <= 0.0);
        }
        for &x in &[1e-12f32, 4.547e-13, 1.0e-30] {
            let err = ((ln_f32(x) as f64 - (x as f64).ln()) / (x as f64).ln()).abs();
            worst_ln = worst_ln.max(err);
        }
        assert_eq!(ln_f32(1.0), 0.0);
        assert!(worst_ln < 5e-7, "ln_f32 error {worst_ln}");
        let mut worst_sc: f64 = 0.0;
        for i in 0..=10_000 {
            let phi = i as f32 / 10_000.0 * std::f32::consts::FRAC_PI_4;
            let (s, c) = sincos_octant(phi);
            worst_sc = worst_sc
                .max((s as f64 - (phi as f64).sin()).abs())
                .max((c as f64 - (phi as f64).cos()).abs());
        }
        assert!(worst_sc < 3e-7, "sincos error {worst_sc}");
    }

    #[test]
    fn normal_moments_and_ks() {
        let n = 1 << 20;
        let mut v = vec![0f32; n];
        fill_normals(12345, 7, &mut v);
        let mut s = [0f64; 4];
        for &z in &v {
            let z = z as f64;
            s[0] += z;
            s[1] += z * z;
            s[2] += z * z * z;
            s[3] += z * z * z * z;
        }
        let nf = n as f64;
        let (m1, m2, m3, m4) = (s[0] / nf, s[1] / nf, s[2] / nf, s[3] / nf);
        assert!(m1.abs() < 5.0 / nf.sqrt(), "mean {m1}");
        assert!((m2 - 1.0).abs() < 5.0 * (2.0 / nf).sqrt(), "var {m2}");
        assert!(m3.abs() < 5.0 * (15.0 / nf).sqrt(), "skew {m3}");
        assert!((m4 - 3.0).abs() < 5.0 * (96.0 / nf).sqrt(), "kurt {m4}");
        let mut xs: Vec<f64> = v.iter().map(|&z| z as f64).collect();
        let d = ks_statistic(&mut xs);
        // 0.1% critical value of the KS statistic is 1.95 / sqrt(n)
        assert!(d < 1.95 / nf.sqrt(), "KS D = {d}");
        // tails: P(|z| > 3) = 0.0026998
        let tail = v.iter().filter(|z| z.abs() > 3.0).count() as f64 / nf;
        assert!(
            (tail - 0.002_699_8).abs() < 5.0 * (0.0027 / nf).sqrt(),
            "tail {tail}"
        );
        // P(|z| > 4) = 6.334e-5
        let tail4 = v.iter().filter(|z| z.abs() > 4.0).count() as f64 / nf;
        assert!(
            (tail4 - 6.334e-5).abs() < 5.0 * (6.334e-5 / nf).sqrt(),
            "tail4 {tail4}"
        );
        assert!(v.iter().all(|z| z.is_finite() && z.abs() < 7.6));
    }

    #[test]
    fn transform_extremes() {
        // smallest radius uniform: r = sqrt(2 · 41 ln 2) = 7.54
        let z = normal_pair_from_bits(0);
        let r = ((z[0] as f64).powi(2) + (z[1] as f64).powi(2)).sqrt();
        assert!(
            (r - (82.0f64 * std::f64::consts::LN_2).sqrt()).abs() < 1e-4,
            "{r}"
        );
        // largest: radius ~0
        let z = normal_pair_from_bits(u64::MAX);
        assert!(z[0].abs() < 1e-3 && z[1].abs() < 1e-3 && z[0].is_finite());
        // sign bits flip signs only
        let base = 0x1234_5678_9ABC_DEF0u64 & !3;
        let z = normal_pair_from_bits(base);
        assert_eq!(normal_pair_from_bits(base | 2)[0], -z[0]);
        assert_eq!(normal_pair_from_bits(base | 1)[1], -z[1]);
        // swap bit exchanges the roles of sin and cos
        let zs = normal_pair_from_bits(base ^ 4);
        assert_eq!((zs[0].abs(), zs[1].abs()), (z[1].abs(), z[0].abs()));
    }

    #[test]
    fn streams_independent() {
        let n = 1 << 16;
        let mut a = vec![0f32; n];
        let mut b = vec![0f32; n];
        let mut c = vec![0f32; n];
        fill_normals(1, 0, &mut a);
        fill_normals(1, 1, &mut b);
        fill_normals(2, 0, &mut c);
        let corr = |x: &[f32], y: &[f32]| {
            x.iter()
                .zip(y)
                .map(|(&p, &q)| p as f64 * q as f64)
                .sum::<f64>()
                / n as f64
        };
        let tol = 5.0 / (n as f64).sqrt();
        assert!(corr(&a, &b).abs() < tol);
        assert!(corr(&a, &c).abs() < tol);
        assert!(corr(&b, &c).abs() < tol);
        // lag-1 autocorrelation inside a stream
        assert!(corr(&a[1..], &a[..n - 1]).abs() < tol);
        assert_ne!(a[..8], b[..8]);
    }

    #[test]
    fn single_element_equals_bulk() {
        for len in [1usize, 2, 999, 1000] {
            let mut v = vec![0f32; len];
            fill_normals(99, 7, &mut v);
            assert_eq!(
                normal_at(99, 7, len as u64 - 1).to_bits(),
                v[len - 1].to_bits()
            );
        }
        // every element, across the bulk path's block boundaries (32 pairs) and odd tails
        for len in [63usize, 64, 65, 127, 129, 200] {
            let mut v = vec![0f32; len];
            fill_normals(5, 3, &mut v);
            for (k, z) in v.iter().enumerate() {
                assert_eq!(normal_at(5, 3, k as u64).to_bits(), z.to_bits(), "len {len} k {k}");
            }
        }
        // the vectorised bulk path (AVX-512 where the CPU has it) on many values
        let mut v = vec![0f32; 1 << 17];
        fill_normals(0x504F_4F4C_0000_0003, 12, &mut v);
        for (k, z) in v.iter().enumerate() {
            assert_eq!(normal_at(0x504F_4F4C_0000_0003, 12, k as u64).to_bits(), z.to_bits(), "k {k}");
        }
        let mut v = vec![0f32; 1000];
        for j in [0u64, 1, 77, 65535] {
            fill_normals(99, j, &mut v);
            for k in [0usize, 1, 500, 999] {
                assert_eq!(normal_at(99, j, k as u64).to_bits(), v[k].to_bits());
            }
        }
    }

    #[test]
    fn det_exp_slice_is_det_exp() {
        // the vector path and the scalar function: the same bits, including the reduction's
        // ties (x·log2 e a half-integer), the range's edges and the scalar lanes
        let mut xs: Vec<f64> = (0..20_000).map(|i| ((i as f64) * 0.7548776662466927).sin() * 12.0).collect();
        xs.extend((-40..40).map(|h| (h as f64 + 0.5) / std::f64::consts::LOG2_E));
        xs.extend([0.0, -0.0, 1e-300, -1e-300, 699.9, -699.9, 700.5, -700.5, 709.7, -745.0, 800.0, -800.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.5]);
        let want: Vec<u64> = xs.iter().map(|&x| det_exp(x).to_bits()).collect();
        let mut got = xs.clone();
        det_exp_slice(&mut got);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), *w, "x = {}", xs[i]);
        }
    }

    #[test]
    fn permutation_is_permutation_and_seeded() {
        for n in [0usize, 1, 2, 10, 3072] {
            let p = permutation(5, n);
            let mut s = p.clone();
            s.sort_unstable();
            assert_eq!(s, (0..n as u32).collect::<Vec<_>>());
        }
        assert_eq!(permutation(5, 100), permutation(5, 100));
        assert_ne!(permutation(5, 100), permutation(6, 100));
        // position of element 0 is roughly uniform
        let mut hist = [0usize; 4];
        for key in 0..4000u64 {
            let p = permutation(key, 8);
            hist[p.iter().position(|&x| x == 0).unwrap() / 2] += 1;
        }
        for h in hist {
            assert!((h as f64 - 1000.0).abs() < 150.0, "{hist:?}");
        }
    }

    #[test]
    fn exp1_mean() {
        let n = 100_000;
        let m: f64 = (0..n).map(|i| exp1(3, i, 0, 0)).sum::<f64>() / n as f64;
        assert!((m - 1.0).abs() < 5.0 / (n as f64).sqrt());
        assert!(hash4(1, 2, 3, 4) != hash4(1, 2, 4, 3));
    }
}
