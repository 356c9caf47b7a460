//! The diffusion chain over a denoiser: the maths of DESIGN.md §2–3 as functions over slices,
//! and the variational bound (bits/dim) computed exactly or estimated with a random step.
//!
//! Chain steps use the 0-based convention of [`crate::schedule`]: step `i` goes between
//! x_{τ_{i+1}} ("x_t", the network is called at model time `taus[i]`) and x_{τ_i}
//! ("x_prev"); step 0 ends at x_0.
//!
//! Documented choices, identical to `train/diffusion.py`:
//! - x̂_0 = (x_t − √(1−ᾱ) ε_θ)/√ᾱ is **clipped to [−1, 1]** before it enters μ_θ (so μ_θ is the
//!   posterior mean at the clipped x̂_0, not the raw ε-form mean);
//! - L_0 is the discretized Gaussian at mean x̂_0 (= μ_θ at step 0, since ᾱ_prev = 1) with
//!   std √σ²_0, and σ²_0 with [`Variance::Small`] is the clipped β̃ (β̃ of step 1);
//! - the KL terms use the true β̃ for q and σ² for p.
//!
//! All arithmetic is done in f64, whatever the slice type ([`Real`]: f32 or f64).

// The erf coefficients and the reference values in the tests are quoted with all their digits.
#![allow(clippy::excessive_precision)]

use crate::error::{Error, Result};
use crate::schedule::{chain_sigma2, learned_sigma, Schedule, Variance, VarianceTables};

use std::f64::consts::{LN_2, SQRT_2};

/// The network: ε_θ(x_t, t) for a batch x of shape [n, c, h, w] (NCHW, row-major, f32), all at
/// model time t (1..=t_max).
pub trait Denoiser {
    /// Predicted noise for the batch, same shape as `x`.
    fn eps(&self, x: &[f32], n: usize, t: usize) -> Result<Vec<f32>>;
    /// (c, h, w) of one image.
    fn image_shape(&self) -> (usize, usize, usize);
    /// True when the network also outputs v, the learned variance ([`Variance::Learned`]).
    fn learns_sigma(&self) -> bool {
        false
    }
    /// ε and, for a network that [`Denoiser::learns_sigma`], v: per image the c·h·w values of
    /// ε followed by the c·h·w of v. Default: [`Denoiser::eps`].
    fn predict(&self, x: &[f32], n: usize, t: usize) -> Result<Vec<f32>> {
        self.eps(x, n, t)
    }
}

/// The optimal denoiser for a data set of one known image `x0` (model range, one image of
/// shape `shape`): ε*(x_t, t) = (x_t − √ᾱ_t·x0)/√(1 − ᾱ_t), times `scale` (1 = exact; other
/// values make it slightly wrong). With it the chain, the bound and the samplers have exact
/// answers (every KL term 0, every sample ends at `x0`), which is what the tests check.
#[derive(Clone, Debug)]
pub struct OneImageDenoiser {
    /// The image, model range, length c·h·w.
    pub x0: Vec<f32>,
    /// (c, h, w).
    pub shape: (usize, usize, usize),
    /// Multiplier of ε* (1.0: the exact optimum).
    pub scale: f64,
    full: Schedule,
}

impl OneImageDenoiser {
    /// The exact ε* for `x0` of shape `shape` under the T = 1000 linear schedule.
    pub fn new(x0: Vec<f32>, shape: (usize, usize, usize)) -> Result<Self> {
        if x0.len() != shape.0 * shape.1 * shape.2 {
            return Err(Error::Parameter(format!("image of {} values is not {shape:?}", x0.len())));
        }
        Ok(OneImageDenoiser { x0, shape, scale: 1.0, full: Schedule::linear(1000)? })
    }
    /// The same denoiser with ε* multiplied by `scale`.
    pub fn scaled(self, scale: f64) -> Self {
        OneImageDenoiser { scale, ..self }
    }
}

impl Denoiser for OneImageDenoiser {
    fn eps(&self, x: &[f32], n: usize, t: usize) -> Result<Vec<f32>> {
        let d = self.x0.len();
        if x.len() != n * d {
            return Err(Error::Parameter(format!("batch of {} values is not {n} × {d}", x.len())));
        }
        let ab = self.full.alpha_bar_at(t);
        Ok(x.iter()
            .enumerate()
            .map(|(k, &v)| (self.scale * (v as f64 - ab.sqrt() * self.x0[k % d] as f64) / (1.0 - ab).sqrt()) as f32)
            .collect())
    }
    fn image_shape(&self) -> (usize, usize, usize) {
        self.shape
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// The element types the slice functions accept (f32 and f64). Arithmetic is always f64.
pub trait Real: Copy + Send + Sync + 'static + sealed::Sealed {
    /// Widen to f64.
    fn to_f64(self) -> f64;
    /// Round from f64.
    fn from_f64(v: f64) -> Self;
}
impl Real for f32 {
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl Real for f64 {
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
}

// ---------------------------------------------------------------------------------------------
// erf / erfc
// ---------------------------------------------------------------------------------------------

// The rational approximations below are from FreeBSD's s_erf.c (via the `libm` crate):
// ====================================================
// Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
//
// Developed at SunPro, a Sun Microsystems, Inc. business.
// Permission to use, copy, modify, and distribute this
// software is freely granted, provided that this notice
// is preserved.
// ====================================================
const ERX: f64 = 8.45062911510467529297e-01;
const EFX8: f64 = 1.02703333676410069053e+00;
const PP0: f64 = 1.28379167095512558561e-01;
const PP1: f64 = -3.25042107247001499370e-01;
const PP2: f64 = -2.84817495755985104766e-02;
const PP3: f64 = -5.77027029648944159157e-03;
const PP4: f64 = -2.37630166566501626084e-05;
const QQ1: f64 = 3.97917223959155352819e-01;
const QQ2: f64 = 6.50222499887672944485e-02;
const QQ3: f64 = 5.08130628187576562776e-03;
const QQ4: f64 = 1.32494738004321644526e-04;
const QQ5: f64 = -3.96022827877536812320e-06;
const PA0: f64 = -2.36211856075265944077e-03;
const PA1: f64 = 4.14856118683748331666e-01;
const PA2: f64 = -3.72207876035701323847e-01;
const PA3: f64 = 3.18346619901161753674e-01;
const PA4: f64 = -1.10894694282396677476e-01;
const PA5: f64 = 3.54783043256182359371e-02;
const PA6: f64 = -2.16637559486879084300e-03;
const QA1: f64 = 1.06420880400844228286e-01;
const QA2: f64 = 5.40397917702171048937e-01;
const QA3: f64 = 7.18286544141962662868e-02;
const QA4: f64 = 1.26171219808761642112e-01;
const QA5: f64 = 1.36370839120290507362e-02;
const QA6: f64 = 1.19844998467991074170e-02;
const RA0: f64 = -9.86494403484714822705e-03;
const RA1: f64 = -6.93858572707181764372e-01;
const RA2: f64 = -1.05586262253232909814e+01;
const RA3: f64 = -6.23753324503260060396e+01;
const RA4: f64 = -1.62396669462573470355e+02;
const RA5: f64 = -1.84605092906711035994e+02;
const RA6: f64 = -8.12874355063065934246e+01;
const RA7: f64 = -9.81432934416914548592e+00;
const SA1: f64 = 1.96512716674392571292e+01;
const SA2: f64 = 1.37657754143519042600e+02;
const SA3: f64 = 4.34565877475229228821e+02;
const SA4: f64 = 6.45387271733267880336e+02;
const SA5: f64 = 4.29008140027567833386e+02;
const SA6: f64 = 1.08635005541779435134e+02;
const SA7: f64 = 6.57024977031928170135e+00;
const SA8: f64 = -6.04244152148580987438e-02;
const RB0: f64 = -9.86494292470009928597e-03;
const RB1: f64 = -7.99283237680523006574e-01;
const RB2: f64 = -1.77579549177547519889e+01;
const RB3: f64 = -1.60636384855821916062e+02;
const RB4: f64 = -6.37566443368389627722e+02;
const RB5: f64 = -1.02509513161107724954e+03;
const RB6: f64 = -4.83519191608651397019e+02;
const SB1: f64 = 3.03380607434824582924e+01;
const SB2: f64 = 3.25792512996573918826e+02;
const SB3: f64 = 1.53672958608443695994e+03;
const SB4: f64 = 3.19985821950859553908e+03;
const SB5: f64 = 2.55305040643316442583e+03;
const SB6: f64 = 4.74528541206955367215e+02;
const SB7: f64 = -2.24409524465858183362e+01;

/// R(z) of s_erf.c for |x| < 0.84375 (z = x²): erf(x) = x + x·R.
#[inline]
fn erf_small_r(x: f64) -> f64 {
    let z = x * x;
    let r = PP0 + z * (PP1 + z * (PP2 + z * (PP3 + z * PP4)));
    let s = 1.0 + z * (QQ1 + z * (QQ2 + z * (QQ3 + z * (QQ4 + z * QQ5))));
    r / s
}

/// P1/Q1 of s_erf.c for 0.84375 ≤ |x| < 1.25: erf(|x|) = ERX + P1/Q1.
#[inline]
fn erf_mid(ax: f64) -> f64 {
    let s = ax - 1.0;
    let p = PA0 + s * (PA1 + s * (PA2 + s * (PA3 + s * (PA4 + s * (PA5 + s * PA6)))));
    let q = 1.0 + s * (QA1 + s * (QA2 + s * (QA3 + s * (QA4 + s * (QA5 + s * QA6)))));
    p / q
}

/// The exponent g such that erfc(ax) = exp(−ax² − 0.5625 + g)/ax for 1.25 ≤ ax < 28.
#[inline]
fn erfc_tail_g(ax: f64) -> f64 {
    let s = 1.0 / (ax * ax);
    let (r, big_s) = if ax < 1.0 / 0.35 {
        (
            RA0 + s * (RA1 + s * (RA2 + s * (RA3 + s * (RA4 + s * (RA5 + s * (RA6 + s * RA7)))))),
            1.0 + s
                * (SA1
                    + s * (SA2
                        + s * (SA3 + s * (SA4 + s * (SA5 + s * (SA6 + s * (SA7 + s * SA8))))))),
        )
    } else {
        (
            RB0 + s * (RB1 + s * (RB2 + s * (RB3 + s * (RB4 + s * (RB5 + s * RB6))))),
            1.0 + s * (SB1 + s * (SB2 + s * (SB3 + s * (SB4 + s * (SB5 + s * (SB6 + s * SB7)))))),
        )
    };
    r / big_s
}

/// exp(−ax² − 0.5625 + g)/ax with the ax² split trick of s_erf.c (ax ≥ 1.25).
#[inline]
fn erfc_tail(ax: f64) -> f64 {
    let g = erfc_tail_g(ax);
    let z = f64::from_bits(ax.to_bits() & 0xffff_ffff_0000_0000);
    (-z * z - 0.5625).exp() * ((z - ax) * (z + ax) + g).exp() / ax
}

/// The error function, to about 1 ulp (FreeBSD s_erf.c).
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    if ax < 0.84375 {
        if ax < 3.725_290_298_461_914e-9 {
            return 0.125 * (8.0 * x + EFX8 * x);
        }
        return x + x * erf_small_r(x);
    }
    let y = if ax < 1.25 {
        ERX + erf_mid(ax)
    } else if ax < 6.0 {
        1.0 - erfc_tail(ax)
    } else {
        1.0
    };
    if x < 0.0 {
        -y
    } else {
        y
    }
}

/// The complementary error function 1 − erf(x), accurate in the upper tail (relative error about
/// 1e-15 for x up to 26.5; underflows to 0 beyond about 27.2).
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    if ax < 0.84375 {
        if ax < 1.3877787807814457e-17 {
            return 1.0 - x;
        }
        let y = erf_small_r(x);
        if x < 0.25 {
            return 1.0 - (x + x * y);
        }
        return 0.5 - (x - 0.5 + x * y);
    }
    if ax < 1.25 {
        let p = erf_mid(ax);
        return if x > 0.0 {
            1.0 - ERX - p
        } else {
            1.0 + (ERX + p)
        };
    }
    if ax < 28.0 {
        let r = erfc_tail(ax);
        return if x > 0.0 { r } else { 2.0 - r };
    }
    if x > 0.0 {
        0.0
    } else {
        2.0
    }
}

/// ln erfc(x), finite for every finite x (uses the asymptotic series where erfc underflows).
pub fn ln_erfc(x: f64) -> f64 {
    if x < 26.0 {
        return erfc(x).ln();
    }
    if x == f64::INFINITY {
        return f64::NEG_INFINITY;
    }
    // erfc(x) = exp(−x²)/(x√π) · (1 − 1/(2x²) + 3/(2x²)² − 15/(2x²)³ + …); at x ≥ 26 the terms
    // fall by a factor ≤ (2k−1)/1352, so 8 terms are far below f64 precision.
    let u = 1.0 / (2.0 * x * x);
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..8 {
        term *= -((2 * k - 1) as f64) * u;
        sum += term;
    }
    -x * x - (x * std::f64::consts::PI.sqrt()).ln() + sum.ln()
}

/// Upper tail of the standard normal, S(z) = P(Z > z) = erfc(z/√2)/2.
pub fn std_normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / SQRT_2)
}

/// Φ(z) = P(Z ≤ z), accurate in the lower tail.
pub fn std_normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / SQRT_2)
}

/// ln(S(a) − S(b)) for a ≤ b (standardized bin [a, b], infinities allowed), S the standard normal
/// upper tail. Precise when the bin lies in the upper tail; callers mirror bins below the mean.
fn ln_upper_bin(a: f64, b: f64) -> f64 {
    let p = std_normal_sf(a) - std_normal_sf(b);
    if p > 1e-280 {
        return p.ln();
    }
    // Deep tail: ln S(a) + ln(1 − S(b)/S(a)).
    let la = ln_erfc(a / SQRT_2) - LN_2;
    let lb = ln_erfc(b / SQRT_2) - LN_2;
    if la == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    la + (-(lb - la).exp()).ln_1p()
}

// ---------------------------------------------------------------------------------------------
// Scalar densities
// ---------------------------------------------------------------------------------------------

/// KL(N(mu1, var1) ‖ N(mu2, var2)) in nats, per dimension:
/// ½ (ln(var2/var1) + (var1 + (mu1 − mu2)²)/var2 − 1).
pub fn gaussian_kl_nats(mu1: f64, var1: f64, mu2: f64, var2: f64) -> f64 {
    let d = mu1 - mu2;
    0.5 * ((var2 / var1).ln() + (var1 + d * d) / var2 - 1.0)
}

/// Half-width of a pixel bin in model units (the grid step is 2/255).
pub const BIN_HALF_WIDTH: f64 = 1.0 / 255.0;

/// ln P(x) for x on the 256-level grid in [−1, 1] under N(mean, std²) discretized to the bins
/// [x − 1/255, x + 1/255], the outer bins at x = ±1 extended to ±∞ (x > 0.999 and x < −0.999
/// count as edges, as in `train/diffusion.py`). Uses upper-tail differences (erfc) on the side of
/// the bin away from the mean, so it is precise far in the tails, and never clamps: the result is
/// finite for any finite mean and std > 0 (the PyTorch side clamps p at 1e-300, i.e. ≥ −690.8).
pub fn discretized_gaussian_log_likelihood_nats(x: f64, mean: f64, std: f64) -> f64 {
    let lower = if x < -0.999 {
        f64::NEG_INFINITY
    } else {
        x - BIN_HALF_WIDTH
    };
    let upper = if x > 0.999 {
        f64::INFINITY
    } else {
        x + BIN_HALF_WIDTH
    };
    let a = (lower - mean) / std;
    let b = (upper - mean) / std;
    if mean > x {
        // The bin is below the mean: Φ(b) − Φ(a) = S(−b) − S(−a).
        ln_upper_bin(-b, -a)
    } else {
        ln_upper_bin(a, b)
    }
}

// ---------------------------------------------------------------------------------------------
// A small deterministic normal generator (SplitMix64 + Box–Muller)
// ---------------------------------------------------------------------------------------------

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn splitmix_finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Combines a seed with stream identifiers into a new 64-bit seed.
pub fn mix_seed(seed: u64, a: u64, b: u64) -> u64 {
    let h = splitmix_finalize(seed.wrapping_add(GOLDEN));
    let h = splitmix_finalize(h ^ a.wrapping_mul(GOLDEN).wrapping_add(0x632B_E59B_D9B4_E019));
    splitmix_finalize(h ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03).wrapping_add(GOLDEN))
}

/// A deterministic generator of uniforms and standard normals: SplitMix64 for the bits,
/// Box–Muller (both outputs used) for the normals. Portable up to libm differences in
/// `ln`/`cos`/`sin` (fine for evaluation; not meant for anything bit-exact across platforms).
#[derive(Clone, Debug)]
pub struct NormalRng {
    state: u64,
    spare: Option<f64>,
}

impl NormalRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        NormalRng {
            state: seed,
            spare: None,
        }
    }
    /// A generator for the stream (seed, a, b), e.g. (noise seed, image, step).
    pub fn for_stream(seed: u64, a: u64, b: u64) -> Self {
        NormalRng::new(mix_seed(seed, a, b))
    }
    /// The next 64 random bits (SplitMix64).
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        splitmix_finalize(self.state)
    }
    /// Uniform in the open interval (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform integer in 0..m (m ≥ 1), by multiply-shift (bias < m/2⁶⁴).
    pub fn below(&mut self, m: usize) -> usize {
        ((self.next_u64() as u128 * m as u128) >> 64) as usize
    }
    /// A standard normal draw.
    pub fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let u1 = self.uniform();
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let th = std::f64::consts::TAU * u2;
        self.spare = Some(r * th.sin());
        r * th.cos()
    }
    /// `len` standard normals.
    pub fn normals<T: Real>(&mut self, len: usize) -> Vec<T> {
        (0..len).map(|_| T::from_f64(self.normal())).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The chain
// ---------------------------------------------------------------------------------------------

/// The bound for one image, bits/dim. `total_bpd = prior_bpd + terms_bpd + l0_bpd`.
#[derive(Clone, Debug, PartialEq)]
pub struct NllTerms {
    /// L_T = KL(q(x_T|x_0) ‖ N(0, I)).
    pub prior_bpd: f64,
    /// Σ over chain steps i ≥ 1 (paper: steps 2..K) of the KL terms; with
    /// [`Diffusion::nll_random_t`] an unbiased one-sample estimate of that sum.
    pub terms_bpd: f64,
    /// L_0 = −ln p_θ(x_0 | x_{τ_1}).
    pub l0_bpd: f64,
    /// The sum of the three.
    pub total_bpd: f64,
    /// Exact mode only: the term of every chain step (index i; `[0]` is L_0, `[i ≥ 1]` the KL
    /// at step i). Empty for the random-t estimate.
    pub steps_bpd: Vec<f64>,
    /// Random-t only: the chain step that was sampled (≥ 1; `None` when K = 1 or exact).
    pub sampled_step: Option<usize>,
}

/// A schedule plus the choice of reverse variance; the network is passed to each method.
#[derive(Clone, Debug, PartialEq)]
pub struct Diffusion {
    /// The (respaced) schedule.
    pub schedule: Schedule,
    /// σ² of p_θ.
    pub variance: Variance,
    /// σ² of every chain step (from `variance`, and for the calibrated kinds the model's
    /// tables).
    sigma2: Vec<f64>,
}

fn check_len(what: &str, got: usize, want: usize) {
    assert_eq!(got, want, "{what}: length {got}, expected {want}");
}

pub(crate) fn check_eps(eps: &[f32], want: usize) -> Result<()> {
    if eps.len() != want {
        return Err(Error::Model(format!(
            "denoiser returned {} values, expected {want}",
            eps.len()
        )));
    }
    if let Some(k) = eps.iter().position(|v| !v.is_finite()) {
        return Err(Error::Model(format!(
            "denoiser returned a non-finite value at {k}"
        )));
    }
    Ok(())
}

impl Diffusion {
    /// Bundles a schedule with a fixed reverse variance (β or β̃).
    ///
    /// Panics for the calibrated kinds ([`Variance::needs_tables`]): use [`Self::with_tables`].
    pub fn new(schedule: Schedule, variance: Variance) -> Self {
        Self::with_tables(schedule, variance, None).expect("a fixed variance needs no tables")
    }

    /// Bundles a schedule with any reverse variance; the calibrated kinds take the model's
    /// tables ([`crate::schedule::chain_sigma2`]).
    pub fn with_tables(schedule: Schedule, variance: Variance, tables: Option<&VarianceTables>) -> Result<Self> {
        let sigma2 = chain_sigma2(&schedule, variance, tables)?;
        Ok(Diffusion { schedule, variance, sigma2 })
    }

    /// K, the number of chain steps.
    pub fn steps(&self) -> usize {
        self.schedule.steps()
    }

    /// σ² of p_θ at chain step i (for [`Variance::Learned`] the v = 0 value; the variance
    /// itself is per dimension: [`crate::schedule::learned_sigma`]).
    pub fn sigma2(&self, i: usize) -> f64 {
        self.sigma2[i]
    }

    /// True when the chain's variance comes from the network's v ([`Variance::Learned`]).
    pub fn is_learned(&self) -> bool {
        self.variance == Variance::Learned
    }

    /// q(x_{τ_{i+1}} | x_0) = N(a·x_0, b² I): returns (a, b) = (√ᾱ, √(1 − ᾱ)).
    pub fn q_coeffs(&self, i: usize) -> (f64, f64) {
        let ab = self.schedule.alpha_bar(i);
        (ab.sqrt(), (1.0 - ab).sqrt())
    }

    /// x_{τ_{i+1}} = √ᾱ x_0 + √(1 − ᾱ) noise.
    pub fn q_sample_to<T: Real>(&self, x0: &[T], i: usize, noise: &[T]) -> Vec<T> {
        check_len("noise", noise.len(), x0.len());
        let (a, b) = self.q_coeffs(i);
        x0.iter()
            .zip(noise)
            .map(|(&x, &e)| T::from_f64(a * x.to_f64() + b * e.to_f64()))
            .collect()
    }

    /// x̂_0 = (x_t − √(1 − ᾱ) ε)/√ᾱ, clipped to [−1, 1].
    pub fn predict_x0<T: Real>(&self, x_t: &[T], eps: &[T], i: usize) -> Vec<T> {
        check_len("eps", eps.len(), x_t.len());
        let (a, b) = self.q_coeffs(i);
        x_t.iter()
            .zip(eps)
            .map(|(&x, &e)| T::from_f64(((x.to_f64() - b * e.to_f64()) / a).clamp(-1.0, 1.0)))
            .collect()
    }

    /// Posterior-mean coefficients (c0, ct) at step i: μ̃ = c0·x_0 + ct·x_t with
    /// c0 = √ᾱ_prev β'/(1 − ᾱ), ct = √α' (1 − ᾱ_prev)/(1 − ᾱ). At i = 0: (1, 0).
    pub fn posterior_coeffs(&self, i: usize) -> (f64, f64) {
        let s = &self.schedule;
        let (ab, abp) = (s.alpha_bar(i), s.alpha_bar_prev(i));
        let c0 = abp.sqrt() * s.beta(i) / (1.0 - ab);
        let ct = s.alpha(i).sqrt() * (1.0 - abp) / (1.0 - ab);
        (c0, ct)
    }

    /// The true posterior variance β̃ of q(x_{τ_i} | x_{τ_{i+1}}, x_0).
    pub fn posterior_variance(&self, i: usize) -> f64 {
        self.schedule.beta_tilde(i)
    }

    /// μ̃(x_t, x_0) = c0·x_0 + ct·x_t, the mean of q(x_{τ_i} | x_{τ_{i+1}}, x_0).
    pub fn posterior_mean<T: Real>(&self, x0: &[T], x_t: &[T], i: usize) -> Vec<T> {
        check_len("x_t", x_t.len(), x0.len());
        let (c0, ct) = self.posterior_coeffs(i);
        x0.iter()
            .zip(x_t)
            .map(|(&a, &b)| T::from_f64(c0 * a.to_f64() + ct * b.to_f64()))
            .collect()
    }

    /// μ_θ(x_t) = μ̃(x_t, x̂_0) with the clipped x̂_0 of [`Self::predict_x0`].
    pub fn p_mean<T: Real>(&self, x_t: &[T], eps: &[T], i: usize) -> Vec<T> {
        check_len("eps", eps.len(), x_t.len());
        let (a, b) = self.q_coeffs(i);
        let (c0, ct) = self.posterior_coeffs(i);
        x_t.iter()
            .zip(eps)
            .map(|(&x, &e)| {
                let x = x.to_f64();
                let x0 = ((x - b * e.to_f64()) / a).clamp(-1.0, 1.0);
                T::from_f64(c0 * x0 + ct * x)
            })
            .collect()
    }

    /// One ancestral step x_{τ_i} = μ_θ + σ z (σ² = [`Self::sigma2`]). At i = 0 no noise is
    /// added (Algorithm 2: z = 0 at t = 1), so the result is x̂_0 and `z` is ignored.
    pub fn p_sample_step<T: Real>(&self, x_t: &[T], eps: &[T], i: usize, z: &[T]) -> Vec<T> {
        let mut m = self.p_mean(x_t, eps, i);
        if i > 0 {
            check_len("z", z.len(), x_t.len());
            let sd = self.sigma2(i).sqrt();
            for (v, &zz) in m.iter_mut().zip(z) {
                *v = T::from_f64(v.to_f64() + sd * zz.to_f64());
            }
        }
        m
    }

    /// One deterministic DDIM step (η = 0) from chain step i to i − 1:
    /// x_{τ_i} = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev) ε̂, with x̂_0 clipped and ε̂ re-derived from it
    /// (as improved-diffusion does). At i = 0 the result is x̂_0.
    pub fn ddim_step<T: Real>(&self, x_t: &[T], eps: &[T], i: usize) -> Vec<T> {
        check_len("eps", eps.len(), x_t.len());
        let (a, b) = self.q_coeffs(i);
        let abp = self.schedule.alpha_bar_prev(i);
        let (ap, bp) = (abp.sqrt(), (1.0 - abp).sqrt());
        x_t.iter()
            .zip(eps)
            .map(|(&x, &e)| {
                let x = x.to_f64();
                let x0 = ((x - b * e.to_f64()) / a).clamp(-1.0, 1.0);
                let e_hat = (x - a * x0) / b;
                T::from_f64(ap * x0 + bp * e_hat)
            })
            .collect()
    }

    /// L_T for one image (any length D), bits/dim: KL(N(√ᾱ_K x_0, 1 − ᾱ_K) ‖ N(0, 1)).
    pub fn prior_bpd<T: Real>(&self, x0: &[T]) -> f64 {
        let k = self.steps() - 1;
        let (a, b) = self.q_coeffs(k);
        let var = b * b;
        let nats: f64 = x0
            .iter()
            .map(|&x| gaussian_kl_nats(a * x.to_f64(), var, 0.0, 1.0))
            .sum();
        nats / (x0.len() as f64 * LN_2)
    }

    /// The KL term of chain step i ≥ 1 for one image, bits/dim:
    /// KL(q(x_{τ_i} | x_{τ_{i+1}}, x_0) ‖ p_θ(x_{τ_i} | x_{τ_{i+1}})) / (D ln 2).
    ///
    /// Panics if i = 0 (that step is the decoder term, [`Self::l0_bpd`]).
    pub fn term_bpd<T: Real>(&self, x0: &[T], x_t: &[T], eps: &[T], i: usize) -> f64 {
        self.term_bpd_sd(x0, x_t, eps, i, None)
    }

    /// [`Self::term_bpd`] with p_θ's std per dimension `sd` (a learned variance's,
    /// [`crate::schedule::learned_sigma`]); `None`: √σ²_i.
    pub fn term_bpd_sd<T: Real>(&self, x0: &[T], x_t: &[T], eps: &[T], i: usize, sd: Option<&[f32]>) -> f64 {
        assert!(i >= 1, "term_bpd is for chain steps i >= 1");
        let mu_q = self.posterior_mean(x0, x_t, i);
        let mu_p = self.p_mean(x_t, eps, i);
        let vq = self.posterior_variance(i);
        let vp = |k: usize| sd.map_or(self.sigma2(i), |s| (s[k] as f64) * (s[k] as f64));
        let nats: f64 = mu_q
            .iter()
            .zip(&mu_p)
            .enumerate()
            .map(|(k, (&q, &p))| gaussian_kl_nats(q.to_f64(), vq, p.to_f64(), vp(k)))
            .sum();
        nats / (x0.len() as f64 * LN_2)
    }

    /// L_0 for one image, bits/dim: −ln p_θ(x_0 | x_{τ_1}) with the discretized Gaussian at mean
    /// μ_θ (= the clipped x̂_0 at step 0) and std √σ²_0. `x_t` is x_{τ_1}, `eps` the network
    /// output at model time τ_1.
    pub fn l0_bpd<T: Real>(&self, x0: &[T], x_t: &[T], eps: &[T]) -> f64 {
        self.l0_bpd_sd(x0, x_t, eps, None)
    }

    /// [`Self::l0_bpd`] with the std per dimension `sd`; `None`: √σ²_0.
    pub fn l0_bpd_sd<T: Real>(&self, x0: &[T], x_t: &[T], eps: &[T], sd: Option<&[f32]>) -> f64 {
        let mean = self.p_mean(x_t, eps, 0);
        let s0 = self.sigma2(0).sqrt();
        let nats: f64 = x0
            .iter()
            .zip(&mean)
            .enumerate()
            .map(|(k, (&x, &m))| {
                let s = sd.map_or(s0, |s| s[k] as f64);
                -discretized_gaussian_log_likelihood_nats(x.to_f64(), m.to_f64(), s)
            })
            .sum();
        nats / (x0.len() as f64 * LN_2)
    }

    /// The network's output for a batch at chain step i, split per image into (ε, the raw v
    /// of a learned variance or `None` for a per-step variance).
    pub fn raw_step_outputs(&self, den: &dyn Denoiser, x_t: &[f32], n: usize, d: usize, i: usize) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let t = self.schedule.model_t(i);
        if !self.is_learned() {
            let eps = den.eps(x_t, n, t)?;
            check_eps(&eps, n * d)?;
            return Ok((eps, None));
        }
        if !den.learns_sigma() {
            return Err(Error::Parameter("variance learned needs a learned-variance model (learn_sigma)".into()));
        }
        let out = den.predict(x_t, n, t)?;
        check_eps(&out, 2 * n * d)?;
        let mut eps = Vec::with_capacity(n * d);
        let mut v = Vec::with_capacity(n * d);
        for j in 0..n {
            eps.extend_from_slice(&out[2 * j * d..(2 * j + 1) * d]);
            v.extend_from_slice(&out[(2 * j + 1) * d..(2 * j + 2) * d]);
        }
        Ok((eps, Some(v)))
    }

    /// The network's output for a batch at chain step i, split per image into (ε, σ per
    /// dimension or `None` for a per-step variance): [`Self::raw_step_outputs`] with
    /// [`learned_sigma`] of step i applied to v.
    pub fn step_outputs(&self, den: &dyn Denoiser, x_t: &[f32], n: usize, d: usize, i: usize) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let (eps, v) = self.raw_step_outputs(den, x_t, n, d, i)?;
        Ok((eps, v.map(|v| learned_sigma(&self.schedule, i, &v))))
    }

    /// Validates a batch against the denoiser's shape; returns D.
    fn batch_dims(&self, den: &dyn Denoiser, x0: &[f32], n: usize) -> Result<usize> {
        let (c, h, w) = den.image_shape();
        let d = c * h * w;
        if d == 0 {
            return Err(Error::Parameter(
                "denoiser image shape has zero size".into(),
            ));
        }
        if n == 0 || x0.len() != n * d {
            return Err(Error::Parameter(format!(
                "batch of {} values is not {n} images of {c}x{h}x{w}",
                x0.len()
            )));
        }
        Ok(d)
    }

    /// Draws x_{τ_{i+1}} ~ q(·|x_0) for the listed images (indices into the batch) with the
    /// noise stream (seed, image, step), rounded to f32 (the network input is exactly the x_t
    /// used in the formulas).
    fn draw_xt(&self, x0: &[f32], d: usize, images: &[usize], i: usize, seed: u64) -> Vec<f32> {
        let (a, b) = self.q_coeffs(i);
        let mut out = Vec::with_capacity(images.len() * d);
        for &j in images {
            let mut rng = NormalRng::for_stream(seed, j as u64, i as u64);
            for &x in &x0[j * d..(j + 1) * d] {
                out.push((a * x as f64 + b * rng.normal()) as f32);
            }
        }
        out
    }

    /// The exact bound for a batch of n images x_0 (NCHW, in [−1, 1] on the pixel grid): one
    /// network call per chain step for the whole batch, x_t ~ q(x_t | x_0) drawn independently
    /// at every step from the stream (noise_seed, image index in this batch, step).
    /// `progress(done, total)` is called after each step (total = K).
    pub fn nll_exact(
        &self,
        den: &dyn Denoiser,
        x0: &[f32],
        n: usize,
        noise_seed: u64,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<NllTerms>> {
        let d = self.batch_dims(den, x0, n)?;
        let k = self.steps();
        let all: Vec<usize> = (0..n).collect();
        let mut steps = vec![vec![0.0f64; k]; n];
        for i in 0..k {
            let x_t = self.draw_xt(x0, d, &all, i, noise_seed);
            let (eps, sd) = self.step_outputs(den, &x_t, n, d, i)?;
            for (j, row) in steps.iter_mut().enumerate() {
                let r = j * d..(j + 1) * d;
                let sdj = sd.as_ref().map(|s| &s[r.clone()]);
                row[i] = if i == 0 {
                    self.l0_bpd_sd(&x0[r.clone()], &x_t[r.clone()], &eps[r], sdj)
                } else {
                    self.term_bpd_sd(&x0[r.clone()], &x_t[r.clone()], &eps[r], i, sdj)
                };
            }
            progress(i + 1, k);
        }
        Ok(steps
            .into_iter()
            .enumerate()
            .map(|(j, s)| {
                let prior_bpd = self.prior_bpd(&x0[j * d..(j + 1) * d]);
                let terms_bpd: f64 = s[1..].iter().sum();
                let l0_bpd = s[0];
                NllTerms {
                    prior_bpd,
                    terms_bpd,
                    l0_bpd,
                    total_bpd: prior_bpd + terms_bpd + l0_bpd,
                    steps_bpd: s,
                    sampled_step: None,
                }
            })
            .collect())
    }

    /// The importance distribution of [`Self::nll_random_t`] over chain steps 0..K (entry 0,
    /// L_0, is always 0; the rest sum to 1): π_i ∝ (τ_i − τ_{i−1}) · τ_i^−1.5 with τ_0 = 0, the
    /// step's share of model time weighted by how the KL terms fall off with t.
    pub fn step_proposal(&self) -> Vec<f64> {
        let taus = self.schedule.taus();
        let mut w: Vec<f64> = (0..taus.len())
            .map(|i| {
                if i == 0 {
                    0.0
                } else {
                    let t = taus[i] as f64;
                    (t - taus[i - 1] as f64) * t.powf(-1.5)
                }
            })
            .collect();
        let sum: f64 = w.iter().sum();
        if sum > 0.0 {
            w.iter_mut().for_each(|v| *v /= sum);
        }
        w
    }

    /// An unbiased one-sample estimate of the bound per image: L_T and L_0 exactly, and the
    /// sum of the K − 1 KL terms as KL_i / π_i at one chain step i ∈ 1..K drawn from the
    /// importance distribution [`Self::step_proposal`] per image (inverse CDF of one uniform of
    /// stream (seed, image, u64::MAX)). The terms fall off roughly as t^−1.5, so drawing i
    /// uniformly (weight K − 1) is also unbiased but puts most of the sum into a few rare draws
    /// near t = 0: the sample mean then usually lands well below the bound and its interval is
    /// meaningless; the proposal makes KL_i / π_i nearly constant. The x_t noise uses the same streams as
    /// [`Self::nll_exact`] with the same seed, so the two are coupled (common random numbers).
    /// Images that drew the same step go through the network together, in chunks of at most
    /// `batch`. `progress(done, total)` counts network calls.
    ///
    /// Averaging the returned `total_bpd` over images gives an unbiased estimate of the mean
    /// bound; its 95% CI is mean ± 1.96·sd/√n.
    pub fn nll_random_t(
        &self,
        den: &dyn Denoiser,
        x0: &[f32],
        n: usize,
        seed: u64,
        batch: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<NllTerms>> {
        let d = self.batch_dims(den, x0, n)?;
        let batch = batch.max(1);
        let k = self.steps();
        // Sampled step per image, and its proposal probability.
        let pi = self.step_proposal();
        let mut cdf = Vec::with_capacity(pi.len());
        let mut acc = 0.0f64;
        for p in &pi {
            acc += p;
            cdf.push(acc);
        }
        let picks: Vec<Option<usize>> = (0..n)
            .map(|j| {
                (k > 1).then(|| {
                    let u = NormalRng::for_stream(seed, j as u64, u64::MAX).uniform() * acc;
                    let i = cdf.partition_point(|&c| c <= u).min(k - 1);
                    // first step with non-zero probability at or after i
                    (i..k).find(|&i| pi[i] > 0.0).unwrap_or(k - 1)
                })
            })
            .collect();
        // Groups: step 0 for all images (L_0), then each sampled step.
        let mut groups: Vec<(usize, Vec<usize>)> = vec![(0, (0..n).collect())];
        let mut by_step: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (j, p) in picks.iter().enumerate() {
            if let Some(i) = p {
                by_step.entry(*i).or_default().push(j);
            }
        }
        groups.extend(by_step);
        let chunks: Vec<(usize, &[usize])> = groups
            .iter()
            .flat_map(|(i, imgs)| imgs.chunks(batch).map(move |c| (*i, c)))
            .collect();
        let total_calls = chunks.len();
        let mut l0 = vec![0.0f64; n];
        let mut terms = vec![0.0f64; n];
        for (call, (i, imgs)) in chunks.into_iter().enumerate() {
            let x_t = self.draw_xt(x0, d, imgs, i, seed);
            let (eps, sd) = self.step_outputs(den, &x_t, imgs.len(), d, i)?;
            for (m, &j) in imgs.iter().enumerate() {
                let r = m * d..(m + 1) * d;
                let x0j = &x0[j * d..(j + 1) * d];
                let sdm = sd.as_ref().map(|s| &s[r.clone()]);
                if i == 0 {
                    l0[j] = self.l0_bpd_sd(x0j, &x_t[r.clone()], &eps[r], sdm);
                } else {
                    terms[j] = self.term_bpd_sd(x0j, &x_t[r.clone()], &eps[r], i, sdm) / pi[i];
                }
            }
            progress(call + 1, total_calls);
        }
        Ok((0..n)
            .map(|j| {
                let prior_bpd = self.prior_bpd(&x0[j * d..(j + 1) * d]);
                NllTerms {
                    prior_bpd,
                    terms_bpd: terms[j],
                    l0_bpd: l0[j],
                    total_bpd: prior_bpd + terms[j] + l0[j],
                    steps_bpd: Vec::new(),
                    sampled_step: picks[j],
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
    }

    fn npdf(x: f64, mu: f64, var: f64) -> f64 {
        (-(x - mu) * (x - mu) / (2.0 * var)).exp() / (2.0 * PI * var).sqrt()
    }

    /// Composite Simpson on [a, b] with n (even) intervals.
    fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
        let h = (b - a) / n as f64;
        let mut s = f(a) + f(b);
        for k in 1..n {
            s += f(a + k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0
    }

    const LN_ERFC_27_5: f64 = -760.1372110153481946280094;
    const LN_ERFC_100: f64 = -10005.17758512266433257047;

    #[test]
    fn erfc_known_values() {
        // mpmath, 40 digits
        let cases = [
            (0.1, 0.8875370839817151077967),
            (0.5, 0.4795001221869534623173),
            (0.84375, 0.232774338767658366541),
            (1.0, 0.1572992070502851306588),
            (1.25, 0.07709987174354176986348),
            (2.0, 0.004677734981047265837931),
            (2.857, 0.00005335826008684643742784),
            (3.0, 0.00002209049699858544137278),
            (5.0, 1.537459794428034850188e-12),
            (10.0, 2.088487583762544757001e-45),
            (26.0, 5.663192408856142846476e-296),
            (-0.3, 1.328626759459127427639),
            (-1.5, 1.966105146475310727067),
            (-3.0, 1.999977909503001414559),
        ];
        for (x, want) in cases {
            assert!(
                rel(erfc(x), want) < 1e-13,
                "erfc({x}) = {} vs {want}",
                erfc(x)
            );
            assert!(rel(ln_erfc(x), want.ln()) < 1e-13);
        }
        assert!(rel(erf(0.1), 0.1124629160182848922032) < 1e-13);
        assert!(rel(erf(-1.0), -(1.0 - 0.1572992070502851306588)) < 1e-14);
        assert!(rel(erf(2.0), 1.0 - 0.004677734981047265837931) < 1e-15);
        assert_eq!(erfc(0.0), 1.0);
        assert_eq!(erfc(f64::INFINITY), 0.0);
        assert_eq!(erfc(f64::NEG_INFINITY), 2.0);
        // ln_erfc beyond f64 underflow (mpmath)
        assert!(rel(ln_erfc(27.5), LN_ERFC_27_5) < 1e-14);
        assert!(rel(ln_erfc(100.0), LN_ERFC_100) < 1e-14);
        // continuity at the switch point
        assert!(rel(ln_erfc(26.0 - 1e-12), ln_erfc(26.0)) < 1e-12);
    }

    #[test]
    fn erf_matches_series() {
        // independent: Maclaurin series 2/√π Σ (−1)^n x^(2n+1)/(n!(2n+1))
        for &x in &[0.01, 0.2, 0.7, 1.0, 1.3, 2.0, 2.9] {
            let mut term = x;
            let mut sum = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            let want = 2.0 / PI.sqrt() * sum;
            assert!(rel(erf(x), want) < 1e-13, "x={x}");
        }
    }

    #[test]
    fn gaussian_kl_vs_integration() {
        let cases: [(f64, f64, f64, f64); 3] = [
            (0.3, 0.5, -0.2, 1.7),
            (0.0, 1.0, 0.0, 1.0),
            (1.0, 0.04, 0.8, 0.09),
        ];
        for &(m1, v1, m2, v2) in &cases {
            let sd = v1.sqrt().max(v2.sqrt());
            let f = |x: f64| {
                let p = npdf(x, m1, v1);
                if p == 0.0 {
                    0.0
                } else {
                    p * (p / npdf(x, m2, v2)).ln()
                }
            };
            let num = simpson(f, m1 - 12.0 * sd, m1 + 12.0 * sd, 20000);
            assert!(
                (gaussian_kl_nats(m1, v1, m2, v2) - num).abs() < 1e-9,
                "{num}"
            );
        }
    }

    #[test]
    fn discretized_bins_sum_to_one_and_match_integration() {
        for &(mean, std) in &[
            (0.0, 0.01),
            (0.37, 0.2),
            (-0.99, 0.004),
            (1.3, 0.5),
            (0.5, 3.0),
        ] {
            let mut total = 0.0;
            for k in 0..256 {
                let x = 2.0 * k as f64 / 255.0 - 1.0;
                let lp = discretized_gaussian_log_likelihood_nats(x, mean, std);
                total += lp.exp();
                // independent: integrate the density over the bin
                let lo = if k == 0 {
                    mean - 40.0 * std
                } else {
                    x - 1.0 / 255.0
                };
                let hi = if k == 255 {
                    mean + 40.0 * std
                } else {
                    x + 1.0 / 255.0
                };
                let (lo, hi) = (lo.min(hi), hi);
                let want = if hi > lo {
                    simpson(|u| npdf(u, mean, std * std), lo, hi, 4000)
                } else {
                    0.0
                };
                if want > 1e-8 {
                    assert!(rel(lp.exp(), want) < 1e-6, "k={k} mean={mean} std={std}");
                }
            }
            assert!((total - 1.0).abs() < 1e-12, "sum {total}");
        }
        // deep tails stay finite and follow the Gaussian log density
        let lp = discretized_gaussian_log_likelihood_nats(-1.0, 1.0, 0.01);
        assert!(lp.is_finite() && lp < -19000.0, "{lp}");
        let z: f64 = 200.0; // ln S(z) ≈ −z²/2 − ln(z√(2π))
        let want = -z * z / 2.0 - (z * (2.0 * PI).sqrt()).ln();
        let lp =
            discretized_gaussian_log_likelihood_nats(1.0, 1.0 - 1.0 / 255.0 - z * 0.001, 0.001);
        assert!((lp - want).abs() < 1e-3, "{lp} vs {want}");
    }

    #[test]
    fn discretized_matches_mpmath_and_train_diffusion_py() {
        // (x, mean, std) → ln P by mpmath (50 digits, same f64 inputs), and the float64 value of
        // train/diffusion.py's discretized_gaussian_log_likelihood. PyTorch's lower-tail branch
        // forms 1 + erf(z) and loses ~1e-6 relative deep in the tail; ours uses erfc there.
        let cases = [
            (-1.0, -0.98, 0.01, -2.919979942965968464, -2.919979942965971),
            (1.0, 0.7, 0.05, -20.256752103090463685, -20.25675210309046),
            (
                2.0 * 128.0 / 255.0 - 1.0,
                2.0 * 128.0 / 255.0 - 1.0,
                0.0074,
                -0.90671757220180529296,
                -0.9067175722018054,
            ),
            (0.2, 0.9, 0.1, -27.952200771848983135, -27.95217903483635),
            (
                -0.5,
                -0.52,
                0.003,
                -16.992007685343279939,
                -16.992007685343303,
            ),
        ];
        for (x, m, s, exact, torch) in cases {
            let got = discretized_gaussian_log_likelihood_nats(x, m, s);
            assert!(rel(got, exact) < 1e-12, "({x}, {m}, {s}): {got} vs {exact}");
            assert!(
                rel(got, torch) < 1e-6,
                "({x}, {m}, {s}): {got} vs torch {torch}"
            );
        }
        // where PyTorch clamps p at 1e-300 (−690.78) we keep the true value
        let got = discretized_gaussian_log_likelihood_nats(2.0 * 37.0 / 255.0 - 1.0, 0.1, 0.02);
        assert!(rel(got, -816.42371759448903421) < 1e-12, "{got}");
    }

    /// Bayes' rule on a grid: q(x_{t−1}|x_t, x_0) ∝ q(x_t|x_{t−1}) q(x_{t−1}|x_0).
    #[test]
    fn posterior_matches_bayes_on_grid() {
        let sched = Schedule::respaced(1000, vec![5, 40, 300, 1000]).unwrap();
        let diff = Diffusion::new(sched, Variance::Small);
        for i in 1..4 {
            let s = &diff.schedule;
            let (x0, xt) = (0.6, -0.4);
            let (ab_prev, a) = (s.alpha_bar_prev(i), s.alpha(i));
            let prior_m = ab_prev.sqrt() * x0;
            let prior_v = 1.0 - ab_prev;
            let lik = |u: f64| npdf(xt, a.sqrt() * u, 1.0 - a);
            let sd = prior_v.sqrt();
            let (lo, hi) = (prior_m - 12.0 * sd, prior_m + 12.0 * sd);
            let w = |u: f64| lik(u) * npdf(u, prior_m, prior_v);
            let z = simpson(w, lo, hi, 200_000);
            let m = simpson(|u| u * w(u), lo, hi, 200_000) / z;
            let v = simpson(|u| (u - m) * (u - m) * w(u), lo, hi, 200_000) / z;
            let mu = diff.posterior_mean(&[x0], &[xt], i)[0];
            assert!(
                (mu - m).abs() < 1e-8 * (1.0 + m.abs()),
                "i={i}: {mu} vs {m}"
            );
            assert!(rel(diff.posterior_variance(i), v) < 1e-6, "i={i}");
            let (c0, ct) = diff.posterior_coeffs(i);
            assert!((c0 * x0 + ct * xt - mu).abs() < 1e-15);
        }
        assert_eq!(diff.posterior_coeffs(0), (1.0, 0.0));
    }

    /// q(x_t|x_0) vs Monte Carlo through the forward chain x_t = √α_t x_{t−1} + √β_t ε.
    #[test]
    fn marginal_matches_forward_chain_monte_carlo() {
        let full = Schedule::linear(1000).unwrap();
        let sched = Schedule::respaced(1000, vec![100, 1000]).unwrap();
        let diff = Diffusion::new(sched, Variance::Small);
        let x0 = 0.8;
        let n = 4000;
        let mut rng = NormalRng::new(7);
        let (mut s1, mut s2) = (0.0, 0.0);
        for _ in 0..n {
            let mut x = x0;
            for t in 0..100 {
                x = full.alpha(t).sqrt() * x + full.beta(t).sqrt() * rng.normal();
            }
            s1 += x;
            s2 += x * x;
        }
        let mean = s1 / n as f64;
        let var = s2 / n as f64 - mean * mean;
        let (a, b) = diff.q_coeffs(0);
        let se = (b * b / n as f64).sqrt();
        assert!((mean - a * x0).abs() < 4.0 * se, "{mean} vs {}", a * x0);
        assert!(
            (var - b * b).abs() < 4.0 * b * b * (2.0 / n as f64).sqrt(),
            "{var} vs {}",
            b * b
        );
        // and q_sample_to uses them
        let y = diff.q_sample_to(&[x0], 0, &[0.5])[0];
        assert!((y - (a * x0 + b * 0.5)).abs() < 1e-15);
    }

    #[test]
    fn normal_rng_moments() {
        let mut r = NormalRng::new(1);
        let n = 100_000;
        let v: Vec<f64> = r.normals(n);
        let m = v.iter().sum::<f64>() / n as f64;
        let s2 = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
        let k4 = v.iter().map(|x| x.powi(4)).sum::<f64>() / n as f64;
        assert!(m.abs() < 0.015 && (s2 - 1.0).abs() < 0.02 && (k4 - 3.0).abs() < 0.1);
        let mut r2 = NormalRng::for_stream(1, 2, 3);
        let mut r3 = NormalRng::for_stream(1, 2, 3);
        assert_eq!(r2.next_u64(), r3.next_u64());
        assert_ne!(mix_seed(1, 2, 3), mix_seed(1, 3, 2));
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[r.below(3)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 900));
    }

    #[test]
    fn predict_mean_ddim_and_sample_step() {
        let diff = Diffusion::new(
            Schedule::respaced(1000, vec![10, 500, 1000]).unwrap(),
            Variance::Large,
        );
        let i = 1;
        let (a, b) = diff.q_coeffs(i);
        let x0 = [0.25f64, -0.7];
        let e = [0.3f64, -1.1];
        let xt: Vec<f64> = x0.iter().zip(&e).map(|(x, n)| a * x + b * n).collect();
        let p = diff.predict_x0(&xt, &e, i);
        assert!((p[0] - 0.25).abs() < 1e-12 && (p[1] + 0.7).abs() < 1e-12);
        // the ε-form mean (DESIGN §2) equals the posterior mean at x̂_0 when no clipping occurs
        let m = diff.p_mean(&xt, &e, i);
        let s = &diff.schedule;
        for k in 0..2 {
            let eps_form =
                (xt[k] - s.beta(i) / (1.0 - s.alpha_bar(i)).sqrt() * e[k]) / s.alpha(i).sqrt();
            assert!((m[k] - eps_form).abs() < 1e-12);
        }
        // clipping
        let big = diff.predict_x0(&[5.0f64], &[0.0], i);
        assert_eq!(big[0], 1.0);
        // DDIM: deterministic, lands on q's mean path with the same ε
        let d = diff.ddim_step(&xt, &e, i);
        let abp = s.alpha_bar_prev(i);
        for k in 0..2 {
            assert!((d[k] - (abp.sqrt() * x0[k] + (1.0 - abp).sqrt() * e[k])).abs() < 1e-12);
        }
        assert!((diff.ddim_step(&xt, &e, 0)[0] - diff.predict_x0(&xt, &e, 0)[0]).abs() < 1e-15);
        // with clipping, ε̂ is re-derived from the clipped x̂_0 (improved-diffusion): x_t is
        // then exactly on the line through x̂_0 = 1 and ε̂
        let (xc, ec) = (a * 1.5 + b * 0.2, 0.2f64);
        let dc = diff.ddim_step(&[xc], &[ec], i)[0];
        let e_hat = (xc - a) / b;
        assert!((dc - (abp.sqrt() + (1.0 - abp).sqrt() * e_hat)).abs() < 1e-12);
        assert!((dc - (abp.sqrt() * 1.0 + (1.0 - abp).sqrt() * ec)).abs() > 1e-3);
        let z = [0.5f64, -0.5];
        let st = diff.p_sample_step(&xt, &e, i, &z);
        let sd = s.beta(i).sqrt();
        assert!((st[0] - (m[0] + sd * 0.5)).abs() < 1e-15);
        let st0 = diff.p_sample_step(&xt, &e, 0, &z);
        assert_eq!(st0, diff.predict_x0(&xt, &e, 0));
    }

    fn tiny_image() -> Vec<f32> {
        // 3×4×4 on the pixel grid, including both edges (k = 0 and k = 255)
        (0..48usize)
            .map(|k| {
                let level = [0, 255][k % 2] * usize::from(k < 2)
                    + ((k * 37 + 11) % 256) * usize::from(k >= 2);
                (2.0 * level as f64 / 255.0 - 1.0) as f32
            })
            .collect()
    }

    #[test]
    fn nll_with_optimal_denoiser_has_zero_kl() {
        let x0 = tiny_image();
        let oracle = OneImageDenoiser::new(x0.clone(), (3, 4, 4)).unwrap();
        let diff = Diffusion::new(Schedule::dense_low(1000, 50, 2.0).unwrap(), Variance::Small);
        let n = 3;
        let batch: Vec<f32> = (0..n).flat_map(|_| x0.clone()).collect();
        let mut calls = 0;
        let res = diff
            .nll_exact(&oracle, &batch, n, 42, &mut |_, _| calls += 1)
            .unwrap();
        assert_eq!(calls, 50);
        // independent L_0: the mean is x_0 itself, std √β̃_2, bins of half-width 1/255
        let sd = diff.schedule.beta_tilde(1).sqrt();
        let h = 1.0 / 255.0;
        let l0_nats: f64 = x0
            .iter()
            .map(|&x| {
                let x = x as f64;
                let p = if x.abs() > 0.999 {
                    0.5 * (1.0 + erf(h / (sd * SQRT_2)))
                } else {
                    erf(h / (sd * SQRT_2))
                };
                -p.ln()
            })
            .sum();
        let l0_want = l0_nats / (48.0 * LN_2);
        // L_T independent
        let ab = diff.schedule.alpha_bar(49);
        let prior_want: f64 = x0
            .iter()
            .map(|&x| 0.5 * (-(1.0 - ab).ln() + (1.0 - ab) + ab * (x as f64).powi(2) - 1.0))
            .sum::<f64>()
            / (48.0 * LN_2);
        for r in &res {
            assert!(r.terms_bpd.abs() < 1e-6, "terms {}", r.terms_bpd);
            assert!(rel(r.l0_bpd, l0_want) < 1e-6, "{} vs {l0_want}", r.l0_bpd);
            assert!(rel(r.prior_bpd, prior_want) < 1e-9);
            assert!((r.total_bpd - (r.l0_bpd + r.prior_bpd)).abs() < 1e-6);
            assert_eq!(r.steps_bpd.len(), 50);
        }
        // σ² = β' ("large"): with exact means each KL is the variance mismatch alone,
        // ½(ln(β'/β̃) − 1 + β̃/β') per dimension
        let large = Diffusion::new(diff.schedule.clone(), Variance::Large);
        let res_l = large
            .nll_exact(&oracle, &batch[..48], 1, 42, &mut |_, _| {})
            .unwrap();
        let s = &large.schedule;
        let want: f64 = (1..50)
            .map(|i| {
                let r =
                    s.beta(i) / (s.beta(i) * (1.0 - s.alpha_bar_prev(i)) / (1.0 - s.alpha_bar(i)));
                0.5 * (r.ln() - 1.0 + 1.0 / r)
            })
            .sum::<f64>()
            / LN_2;
        assert!(
            rel(res_l[0].terms_bpd, want) < 1e-6,
            "{} vs {want}",
            res_l[0].terms_bpd
        );
        // (terms ≈ 0 above also checks the network is called at τ_{i+1}); a slightly wrong ε is
        // clearly visible
        let wrong = oracle.clone().scaled(1.02);
        let res = diff
            .nll_exact(&wrong, &batch, n, 42, &mut |_, _| {})
            .unwrap();
        assert!(res[0].terms_bpd > 1e-3);
    }

    #[test]
    fn step_proposal_is_a_distribution_over_kl_steps() {
        let diff = Diffusion::new(Schedule::even(1000, 1000).unwrap(), Variance::Small);
        let pi = diff.step_proposal();
        assert_eq!(pi.len(), 1000);
        assert_eq!(pi[0], 0.0);
        assert!((pi.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // t^-1.5: step t = 2 (index 1) is 2^1.5 times as likely as t = 4 (index 3)
        assert!((pi[1] / pi[3] - 2f64.powf(1.5)).abs() < 1e-9);
        let one = Diffusion::new(Schedule::even(1000, 1).unwrap(), Variance::Small);
        assert_eq!(one.step_proposal(), vec![0.0]);
    }

    #[test]
    fn random_t_is_unbiased() {
        let x0 = tiny_image();
        let oracle = OneImageDenoiser::new(x0.clone(), (3, 4, 4)).unwrap().scaled(0.9);
        let diff = Diffusion::new(Schedule::even(1000, 8).unwrap(), Variance::Small);
        let n = 1500;
        let batch: Vec<f32> = (0..n).flat_map(|_| x0.clone()).collect();
        let exact = diff
            .nll_exact(&oracle, &batch, n, 5, &mut |_, _| {})
            .unwrap();
        let rt = diff
            .nll_random_t(&oracle, &batch, n, 5, 256, &mut |_, _| {})
            .unwrap();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let ex: Vec<f64> = exact.iter().map(|r| r.total_bpd).collect();
        let est: Vec<f64> = rt.iter().map(|r| r.total_bpd).collect();
        // common random numbers: the difference per image has mean 0 if unbiased
        let dif: Vec<f64> = est.iter().zip(&ex).map(|(a, b)| a - b).collect();
        let md = mean(&dif);
        let sd = (dif.iter().map(|x| (x - md) * (x - md)).sum::<f64>() / (n - 1) as f64).sqrt();
        let ci = 1.96 * sd / (n as f64).sqrt();
        assert!(md.abs() < 1.5 * ci, "bias {md} vs ci {ci}");
        // the test has power: a (K)· or (K−2)· weighting would be far outside
        let terms = mean(
            &ex.iter()
                .zip(&exact)
                .map(|(_, r)| r.terms_bpd)
                .collect::<Vec<_>>(),
        );
        assert!(terms / 7.0 > 3.0 * ci, "terms {terms} ci {ci}");
        // L_0 and prior identical to the exact run (same streams)
        assert!((rt[3].l0_bpd - exact[3].l0_bpd).abs() < 1e-12);
        assert!(rt
            .iter()
            .all(|r| r.sampled_step.is_some_and(|s| (1..8).contains(&s))));
        // every step gets sampled
        let mut seen = [false; 8];
        rt.iter().for_each(|r| seen[r.sampled_step.unwrap()] = true);
        assert!(seen[1..].iter().all(|&s| s));
    }

    #[test]
    fn bad_batches_are_errors() {
        let x0 = tiny_image();
        let oracle = OneImageDenoiser::new(x0.clone(), (3, 4, 4)).unwrap();
        let diff = Diffusion::new(Schedule::even(1000, 4).unwrap(), Variance::Large);
        assert!(diff
            .nll_exact(&oracle, &x0[..40], 1, 0, &mut |_, _| {})
            .is_err());
        assert!(diff
            .nll_random_t(&oracle, &x0, 2, 0, 4, &mut |_, _| {})
            .is_err());
        assert!(diff.nll_exact(&oracle, &[], 0, 0, &mut |_, _| {}).is_err());
        // K = 1: no KL terms
        let one = Diffusion::new(Schedule::even(1000, 1).unwrap(), Variance::Small);
        let r = one
            .nll_random_t(&oracle, &x0, 1, 0, 4, &mut |_, _| {})
            .unwrap();
        assert_eq!(r[0].terms_bpd, 0.0);
        assert_eq!(r[0].sampled_step, None);
    }

    /// A denoiser that learns its variance with a constant v: v = −1 is σ² = β̃ (small) and
    /// v = +1 is σ² = β (large), so the learned bound must equal those two exactly (to the f32
    /// rounding of σ), at every step including L_0.
    struct ConstV(OneImageDenoiser, f32);
    impl Denoiser for ConstV {
        fn eps(&self, x: &[f32], n: usize, t: usize) -> Result<Vec<f32>> {
            self.0.eps(x, n, t)
        }
        fn image_shape(&self) -> (usize, usize, usize) {
            self.0.image_shape()
        }
        fn learns_sigma(&self) -> bool {
            true
        }
        fn predict(&self, x: &[f32], n: usize, t: usize) -> Result<Vec<f32>> {
            let e = self.0.eps(x, n, t)?;
            let d = e.len() / n;
            Ok((0..n).flat_map(|j| e[j * d..(j + 1) * d].iter().copied().chain(std::iter::repeat(self.1).take(d))).collect())
        }
    }

    #[test]
    fn learned_variance_at_its_ends_is_small_and_large() {
        let shape = (3, 4, 4);
        let x0: Vec<f32> = (0..48).map(|k| (k * 37 % 256) as f32 / 127.5 - 1.0).collect();
        let base = OneImageDenoiser::new(x0.clone(), shape).unwrap().scaled(0.9);
        let sched = Schedule::dense_low(1000, 10, 2.0).unwrap();
        for (v, kind) in [(-1.0f32, Variance::Small), (1.0, Variance::Large)] {
            let den = ConstV(base.clone(), v);
            let learned = Diffusion::new(sched.clone(), Variance::Learned).nll_exact(&den, &x0, 1, 7, &mut |_, _| {}).unwrap();
            let fixed = Diffusion::new(sched.clone(), kind).nll_exact(&base, &x0, 1, 7, &mut |_, _| {}).unwrap();
            for (a, b) in learned[0].steps_bpd.iter().zip(&fixed[0].steps_bpd) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-3), "v = {v}: {a} vs {b}");
            }
            assert!(learned[0].total_bpd > 0.0);
        }
        // and between the ends it differs from both
        let mid = Diffusion::new(sched.clone(), Variance::Learned).nll_exact(&ConstV(base.clone(), 0.0), &x0, 1, 7, &mut |_, _| {}).unwrap();
        let small = Diffusion::new(sched.clone(), Variance::Small).nll_exact(&base, &x0, 1, 7, &mut |_, _| {}).unwrap();
        assert!((mid[0].total_bpd - small[0].total_bpd).abs() > 1e-4);
        // an ε-only network cannot give the learned variance
        assert!(Diffusion::new(sched, Variance::Learned).nll_exact(&base, &x0, 1, 7, &mut |_, _| {}).is_err());
    }
}
