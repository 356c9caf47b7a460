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
//! to build the normal table ([`det_exp`], [`det_ln`], [`std_normal_cdf`],
//! [`std_normal_quantile`]) are implemented here from those basic operations, so they do not
//! depend on the platform's `libm`. Rust never contracts `a * b + c` into an FMA on its own, so
//! SIMD and scalar code compute identical values.
//!
//! # The generator
//!
//! * [`mix64`]: the SplitMix64 finaliser (a bijection on `u64` with full avalanche).
//! * [`hash4`]: a keyed hash of three words, four chained `mix64` rounds.
//! * A *stream* is `sk = stream_key(key, stream)`; its element `k` has the bits
//!   `mix64(sk + (k + 1) * GAMMA)` ([`bits_at`]), i.e. a SplitMix64 sequence seeded by `sk`.
//!   Element `k` of stream `j` can be generated alone.
//! * [`normal_from_bits`]: the fixed normal transform, an inverse-CDF table of 2^16 equal-mass
//!   bins (top 16 bits pick the bin, the next 16 bits interpolate linearly inside it); the two
//!   outermost bins (probability 2^-16 each, |z| > 4.17) use the remaining 48 bits and an exact
//!   f64 quantile, so the tails are correct down to p = 2^-64 (|z| up to about 9.1).

use std::sync::OnceLock;

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

const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01; // high bits of ln 2 (exact n * LN2_HI)
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;

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
const FRAC_1_SQRT_PI: f64 = 0.564_189_583_547_756_286_95;
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_677_94;

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
    let mut z = -(t - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
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
// The fixed normal transform.
// ---------------------------------------------------------------------------------------------

/// Number of equal-mass bins of the normal table.
pub const NORMAL_TABLE_BITS: u32 = 16;
const TABLE_LEN: usize = 1 << NORMAL_TABLE_BITS;

/// Table entry `[base, slope]`: inside bin `i`, `z = base + frac * slope`, `frac` in [0, 1).
/// The two tail bins hold `[NaN, 0]` as a sentinel: their value comes from [`normal_tail`].
pub type NormalTable = [[f32; 2]];

/// The shared inverse-CDF table (built on first use from [`std_normal_quantile`], ~0.1 s).
pub fn normal_table() -> &'static NormalTable {
    static TABLE: OnceLock<Vec<[f32; 2]>> = OnceLock::new();
    TABLE.get_or_init(build_normal_table)
}

fn build_normal_table() -> Vec<[f32; 2]> {
    // q[i] = Φ⁻¹(i / 2^16) for i = 0..=2^16 (q[0] = -inf, q[2^16] = +inf), exactly antisymmetric.
    let half = TABLE_LEN / 2;
    let mut q = vec![0.0f64; TABLE_LEN + 1];
    for i in 1..half {
        q[i] = quantile_lower(i as f64 / TABLE_LEN as f64);
    }
    q[half] = 0.0;
    for i in 1..half {
        q[TABLE_LEN - i] = -q[i];
    }
    let mut t = vec![[0.0f32; 2]; TABLE_LEN];
    for i in 1..TABLE_LEN - 1 {
        t[i] = [q[i] as f32, (q[i + 1] - q[i]) as f32];
    }
    t[0] = [f32::NAN, 0.0];
    t[TABLE_LEN - 1] = [f32::NAN, 0.0];
    t
}

/// Table part of the normal transform: exact result except in the two tail bins, where it
/// returns NaN (then call [`normal_tail`] with the same bits).
#[inline(always)]
pub fn normal_from_bits_table(table: &NormalTable, u: u64) -> f32 {
    let idx = (u >> 48) as usize;
    let frac = ((u >> 32) & 0xFFFF) as f32 * (1.0 / 65536.0);
    let e = table[idx & (TABLE_LEN - 1)];
    e[0] + frac * e[1]
}

/// Tail part of the normal transform: for bits whose top 16 bits are 0 or 0xFFFF, the exact
/// quantile at the position given by the low 48 bits inside that bin.
#[cold]
#[inline(never)]
pub fn normal_tail(u: u64) -> f32 {
    let idx = u >> 48;
    let low = u & 0xFFFF_FFFF_FFFF;
    let scale = 1.0 / 18_446_744_073_709_551_616.0; // 2^-64
    if idx == 0 {
        quantile_lower((low as f64 + 0.5) * scale) as f32
    } else {
        -quantile_lower(((0xFFFF_FFFF_FFFFu64 - low) as f64 + 0.5) * scale) as f32
    }
}

/// The fixed normal transform: 64 random bits to one N(0, 1) draw (f32). See the module docs.
#[inline]
pub fn normal_from_bits(u: u64) -> f32 {
    let z = normal_from_bits_table(normal_table(), u);
    if z.is_nan() {
        normal_tail(u)
    } else {
        z
    }
}

/// Element `k` of the normal stream `(key, stream)`.
#[inline]
pub fn normal_at(key: u64, stream: u64, k: u64) -> f32 {
    normal_from_bits(bits_at(stream_key(key, stream), k))
}

/// Fills `out[k]` with element `k` of the normal stream `(key, stream)`.
pub fn fill_normals(key: u64, stream: u64, out: &mut [f32]) {
    let table = normal_table();
    let sk = stream_key(key, stream);
    for (k, o) in out.iter_mut().enumerate() {
        *o = normal_from_bits_table(table, bits_at(sk, k as u64));
    }
    for (k, o) in out.iter_mut().enumerate() {
        if o.is_nan() {
            *o = normal_tail(bits_at(sk, k as u64));
        }
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
            d = d.max((c - i as f64 / n).abs()).max(((i + 1) as f64 / n - c).abs());
        }
        d
    }

    #[test]
    fn det_functions_match_std() {
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
            assert!(((back - p) / p.min(1.0 - p)).abs() < 1e-12, "p={p} z={z} back={back}");
        }
    }

    #[test]
    fn table_is_antisymmetric_and_monotone() {
        let t = normal_table();
        for i in 1..TABLE_LEN - 1 {
            assert!(t[i][1] > 0.0);
            if i + 1 < TABLE_LEN - 1 {
                assert!(t[i][0] < t[i + 1][0]);
            }
        }
        assert_eq!(t[TABLE_LEN / 2][0], 0.0);
        assert_eq!(t[2][0], -t[TABLE_LEN - 2][0]);
        assert!((t[1][0] as f64 + 4.1696).abs() < 1e-3);
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
        assert!((tail - 0.002_699_8).abs() < 5.0 * (0.0027 / nf).sqrt(), "tail {tail}");
        // the exact tail path is exercised (P(bin 0 or last) = 2^-15)
        assert!(v.iter().any(|z| z.abs() > 4.17));
        assert!(v.iter().all(|z| z.is_finite()));
    }

    #[test]
    fn tail_path_values() {
        // top bin 0, low bits 0: p = 0.5 * 2^-64
        let z = normal_tail(0);
        assert!(z < -9.0 && z > -9.3, "{z}");
        let z2 = normal_tail(u64::MAX);
        assert_eq!(z, -z2);
        // just inside bin 0 edge equals the table edge to f32 accuracy
        let edge = normal_tail(0x0000_FFFF_FFFF_FFFF);
        assert!((edge - normal_table()[1][0]).abs() < 1e-4);
        assert!(normal_from_bits(0x0000_1234_0000_0000) < -4.17);
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
            x.iter().zip(y).map(|(&p, &q)| p as f64 * q as f64).sum::<f64>() / n as f64
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
        let mut v = vec![0f32; 1000];
        for j in [0u64, 1, 77, 65535] {
            fill_normals(99, j, &mut v);
            for k in [0usize, 1, 500, 999] {
                assert_eq!(normal_at(99, j, k as u64).to_bits(), v[k].to_bits());
            }
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
