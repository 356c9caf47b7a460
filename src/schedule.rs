//! The DDPM noise schedule as f64 tables, optionally respaced to a shorter chain.
//!
//! The base schedule is the paper's: `t_max` (T, default 1000) steps with β_t linear from 1e-4 to
//! 0.02 (`numpy.linspace` semantics), α_t = 1 − β_t and ᾱ_t = ∏_{s≤t} α_s, for model times
//! t = 1..=T.
//!
//! A *chain* is a sub-sequence 0 = τ_0 < τ_1 < … < τ_K = T (τ_0 = 0 implicit, the `taus` vector
//! holds τ_1..τ_K). The full chain is τ_i = i.
//!
//! # Index convention (read this)
//!
//! Every per-step table is indexed by the **0-based chain step** `i ∈ 0..K`, and step `i` is the
//! paper's 1-based step `i + 1`, i.e. the transition between x_{τ_{i+1}} (the "current" latent,
//! at model time `taus[i]`) and x_{τ_i} (the "previous" one, closer to the data):
//!
//! | table | value at 0-based `i` (paper notation, primes for respacing) |
//! |---|---|
//! | `taus()[i]` | τ_{i+1}, the model time the network is called at |
//! | `alpha_bar(i)` | ᾱ'_{i+1} = ᾱ_{τ_{i+1}} |
//! | `alpha_bar_prev(i)` | ᾱ_{τ_i} (1.0 for `i = 0`, since τ_0 = 0) |
//! | `beta(i)` | β'_{i+1} = 1 − ᾱ_{τ_{i+1}} / ᾱ_{τ_i} |
//! | `alpha(i)` | α'_{i+1} = 1 − β'_{i+1} |
//! | `beta_tilde(i)` | β̃'_{i+1} = β' (1 − ᾱ_prev) / (1 − ᾱ) (exactly 0 for `i = 0`) |
//! | `beta_tilde_clipped(i)` | β̃' with the first entry replaced by the second (improved-diffusion); with K = 1 it is β'_1 |
//!
//! So `i = 0` is the last reverse step (x_{τ_1} → x_0, the L_0 / decoder term) and `i = K − 1`
//! is the first (x_T → x_{τ_{K−1}}). This matches `train/diffusion.py` (its arrays use the same
//! 0-based index).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::rng::{det_exp_slice, det_ln};
use crate::error::{Error, Result};

/// Default number of diffusion steps T.
pub const DEFAULT_T_MAX: usize = 1000;
/// β_1 of the linear schedule.
pub const BETA_START: f64 = 1e-4;
/// β_T of the linear schedule.
pub const BETA_END: f64 = 0.02;
/// Largest accepted T (ᾱ_T stays far from f64 underflow; the linear schedule gives
/// ln ᾱ_T ≈ −0.01·T).
pub const MAX_T_MAX: usize = 20_000;
/// Default exponent of [`Schedule::dense_low`].
pub const DEFAULT_DENSE_POWER: f64 = 2.0;

/// The reverse-process variance σ² of p_θ(x_{τ_{i}} | x_{τ_{i+1}}).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variance {
    /// σ² = β̃ (clipped at the first step): q and p share their variance.
    Small,
    /// σ² = β'.
    Large,
    /// The KL-optimal per-step variance for the network's measured error (needs the model's
    /// [`VarianceTables`]): σ²_i = β̃'_i + c0_i² · E‖x_0 − x̂_0(x_{τ_{i+1}})‖²/D, with c0 the
    /// posterior-mean coefficient of x_0 ([`optimal_sigma2`]); the final step uses the
    /// calibrated std of the discretized Gaussian ([`VarianceTables::final_std_at`]).
    Optimal,
    /// Analytic-DPM (Bao et al. 2022, Theorem 1, λ² = β̃): σ²_n = β̃_n + (√(β̄_n/α_n) −
    /// √(β̄_{n−1} − β̃_n))² (1 − Γ_n), Γ_n = E‖ε_θ(x_{τ_n})‖²/D from the model's tables; it equals
    /// [`Variance::Optimal`] for a network whose ε_θ is the conditional mean. Final step as
    /// [`Variance::Optimal`].
    Analytic,
    /// Learned per dimension (Improved DDPM, Nichol & Dhariwal 2021): the network's second
    /// output v gives σ² = exp(f ln β' + (1 − f) ln β̃'_clipped), f = (v + 1)/2, at every step
    /// including the final one ([`learned_sigma`]); needs a `learn_sigma` model.
    Learned,
}

impl Variance {
    /// The lowercase name (`"small"`, `"large"`, `"optimal"`, `"analytic"`), as used by serde
    /// and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Variance::Small => "small",
            Variance::Large => "large",
            Variance::Optimal => "optimal",
            Variance::Analytic => "analytic",
            Variance::Learned => "learned",
        }
    }

    /// True for the kinds that need the model's [`VarianceTables`].
    pub fn needs_tables(self) -> bool {
        matches!(self, Variance::Optimal | Variance::Analytic)
    }
}

/// Statistics of the network per model time t = 1..=T, calibrated once on training images
/// (`ddpm-codec calibrate`) and stored in the model file, so the model identity covers them.
/// Index `t − 1` holds model time t.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VarianceTables {
    /// E‖x_0 − x̂_0(x_t, t)‖²/D with the clipped one-step prediction x̂_0 (model units²).
    pub x0_mse: Vec<f64>,
    /// Analytic-DPM's Γ_t = E‖ε_θ(x_t, t)‖²/D.
    pub gamma: Vec<f64>,
    /// For t = 1..=len: the std (model units) of the discretized Gaussian p(x_0 | x_t) at mean
    /// x̂_0 that minimises the calibration images' code length. Beyond its length the final step
    /// uses √x0_mse.
    pub final_std: Vec<f64>,
}

/// Smallest std the final step may use (model units; a tenth of a pixel bin).
pub const MIN_FINAL_STD: f64 = 2.0 / 255.0 / 10.0;

impl VarianceTables {
    /// Checks lengths and ranges against T; [`Error::Model`] otherwise.
    pub fn validate(&self, t_max: usize) -> Result<()> {
        let bad = |m: String| Err(Error::Model(format!("variance tables: {m}")));
        if self.x0_mse.len() != t_max || self.gamma.len() != t_max {
            return bad(format!(
                "{} / {} entries for T = {t_max}",
                self.x0_mse.len(),
                self.gamma.len()
            ));
        }
        if self.final_std.len() > t_max {
            return bad(format!("{} final-step entries for T = {t_max}", self.final_std.len()));
        }
        if self.x0_mse.iter().any(|v| !(v.is_finite() && *v >= 0.0 && *v <= 4.0))
            || self.gamma.iter().any(|v| !(v.is_finite() && *v >= 0.0 && *v <= 16.0))
            || self.final_std.iter().any(|v| !(v.is_finite() && *v > 0.0 && *v <= 2.0))
        {
            return bad("value out of range".into());
        }
        Ok(())
    }

    /// The final step's std when τ_1 = t.
    pub fn final_std_at(&self, t: usize) -> f64 {
        let s = if t >= 1 && t <= self.final_std.len() {
            self.final_std[t - 1]
        } else {
            self.x0_mse[t.clamp(1, self.x0_mse.len()) - 1].sqrt()
        };
        s.max(MIN_FINAL_STD)
    }
}

/// σ² of every chain step of `s` for `variance` (index i as in the module docs). The kinds
/// that need tables return [`Error::Parameter`] when `tables` is `None`.
pub fn chain_sigma2(s: &Schedule, variance: Variance, tables: Option<&VarianceTables>) -> Result<Vec<f64>> {
    let k = s.steps();
    match variance {
        Variance::Small | Variance::Large => Ok((0..k).map(|i| s.sigma2(i, variance)).collect()),
        // per dimension (learned_sigma); the per-step value is the v = 0 one (f = 1/2), what a
        // freshly added, zero-initialised v head gives
        Variance::Learned => Ok((0..k)
            .map(|i| (s.sigma2(i, Variance::Large) * s.sigma2(i, Variance::Small)).sqrt())
            .collect()),
        Variance::Optimal | Variance::Analytic => {
            let tab = tables.ok_or_else(|| {
                Error::Parameter(format!(
                    "variance {variance} needs the model's calibrated tables (ddpm-codec calibrate)"
                ))
            })?;
            tab.validate(s.t_max())?;
            Ok((0..k)
                .map(|i| {
                    let t = s.model_t(i);
                    if i == 0 {
                        let sd = tab.final_std_at(t);
                        sd * sd
                    } else if variance == Variance::Optimal {
                        optimal_sigma2(s, i, tab.x0_mse[t - 1])
                    } else {
                        analytic_sigma2(s, i, tab.gamma[t - 1])
                    }
                })
                .collect())
        }
    }
}

/// The std of p_θ at one chain step: one value for every dimension (the per-step kinds) or one
/// per dimension (a learned variance, [`learned_sigma`]). Coders take `impl Into<StepStd>`, so an
/// `f32` or a `&[f32]` can be passed as it is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepStd<'a> {
    /// The same std in every dimension.
    Uniform(f32),
    /// The std of each dimension.
    PerDim(&'a [f32]),
}

impl StepStd<'_> {
    /// The std of dimension `d`.
    #[inline]
    pub fn at(&self, d: usize) -> f32 {
        match self {
            StepStd::Uniform(s) => *s,
            StepStd::PerDim(v) => v[d],
        }
    }

    /// Checks that the std is finite and positive everywhere and, per dimension, that there is
    /// one for each of `dims` dimensions ([`Error::Parameter`] otherwise).
    pub fn check(&self, what: &str, dims: usize) -> Result<()> {
        let ok = |s: f32| s.is_finite() && s > 0.0;
        match self {
            StepStd::Uniform(s) if !ok(*s) => Err(Error::Parameter(format!("{what} {s} must be finite and > 0"))),
            StepStd::PerDim(v) if v.len() != dims => {
                Err(Error::Parameter(format!("{what} has {} dims, expected {dims}", v.len())))
            }
            StepStd::PerDim(v) => match v.iter().position(|&s| !ok(s)) {
                Some(k) => Err(Error::Parameter(format!("{what}[{k}] = {} must be finite and > 0", v[k]))),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

impl From<f32> for StepStd<'static> {
    fn from(s: f32) -> Self {
        StepStd::Uniform(s)
    }
}

impl<'a> From<&'a [f32]> for StepStd<'a> {
    fn from(v: &'a [f32]) -> Self {
        StepStd::PerDim(v)
    }
}

impl<'a> From<&'a Vec<f32>> for StepStd<'a> {
    fn from(v: &'a Vec<f32>) -> Self {
        StepStd::PerDim(v)
    }
}

/// Largest |v| the learned variance accepts: f = (v + 1)/2 is clamped to
/// [−LEARNED_V_MAX/2 + 1/2, LEARNED_V_MAX/2 + 1/2] (the trained head stays well inside).
pub const LEARNED_V_MAX: f32 = 3.0;

/// Per-step constants of the learned variance: (√β̃'_clipped, ½ ln(β'/β̃'_clipped)), computed
/// with the platform-independent [`det_ln`] and rounded to f32 (both sides of a stream use
/// exactly these).
pub fn learned_sigma_consts(s: &Schedule, i: usize) -> (f32, f32) {
    let (b, bt) = (s.sigma2(i, Variance::Large), s.sigma2(i, Variance::Small));
    (bt.sqrt() as f32, (0.5 * det_ln(b / bt)) as f32)
}

/// σ per dimension of chain step i from the network's v (Improved DDPM):
/// σ = √β̃' · exp(f · ½ ln(β'/β̃')), f = (clamp(v) + 1)/2, in f32 with the platform-independent
/// [`crate::rng::det_exp`] (bit-identical on every machine: a stream's reconstruction depends on it).
/// Non-finite v counts as 0.
pub fn learned_sigma(s: &Schedule, i: usize, v: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;
    let (sd_small, half_ln_ratio) = learned_sigma_consts(s, i);
    let mut out = vec![0f32; v.len()];
    // in pieces across the threads, [`det_exp_slice`] within each (the same bits as one
    // `det_exp` per value)
    out.par_chunks_mut(4096).zip(v.par_chunks(4096)).for_each(|(o, v)| {
        let mut x: Vec<f64> = v
            .iter()
            .map(|&v| {
                let v = if v.is_finite() { v.clamp(-LEARNED_V_MAX, LEARNED_V_MAX) } else { 0.0 };
                let f = (v + 1.0) * 0.5;
                (f * half_ln_ratio) as f64
            })
            .collect();
        det_exp_slice(&mut x);
        for (o, e) in o.iter_mut().zip(&x) {
            *o = sd_small * *e as f32;
        }
    });
    out
}

/// σ²_i = β̃'_i + c0² · mse for chain step i ≥ 1, c0 = √ᾱ_prev β'/(1 − ᾱ): the σ² that
/// minimises E KL(q ‖ p_θ) over images whose x̂_0 has mean squared error `mse` (never below
/// β̃'_i).
pub fn optimal_sigma2(s: &Schedule, i: usize, mse: f64) -> f64 {
    let (ab, abp) = (s.alpha_bar(i), s.alpha_bar_prev(i));
    let c0 = abp.sqrt() * s.beta(i) / (1.0 - ab);
    let bt = s.beta_tilde(i);
    bt + c0 * c0 * mse.max(0.0)
}

/// Analytic-DPM's σ²_n (Theorem 1 with λ² = β̃): β̃ + (√(β̄_n/α_n) − √(β̄_{n−1} − β̃_n))²
/// (1 − Γ), 1 − Γ clamped to [0, 1].
pub fn analytic_sigma2(s: &Schedule, i: usize, gamma: f64) -> f64 {
    let (ab, abp) = (s.alpha_bar(i), s.alpha_bar_prev(i));
    let bt = s.beta_tilde(i);
    let a = ((1.0 - ab) / s.alpha(i)).sqrt() - ((1.0 - abp) - bt).max(0.0).sqrt();
    bt + a * a * (1.0 - gamma).clamp(0.0, 1.0)
}

impl fmt::Display for Variance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variance {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "small" => Ok(Variance::Small),
            "large" => Ok(Variance::Large),
            "optimal" => Ok(Variance::Optimal),
            "analytic" => Ok(Variance::Analytic),
            "learned" => Ok(Variance::Learned),
            _ => Err(Error::Parameter(format!(
                "unknown variance {s:?} (expected small, large, optimal, analytic or learned)"
            ))),
        }
    }
}

/// A (possibly respaced) linear-β schedule; all tables are f64 and indexed by the 0-based chain
/// step described in the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    t_max: usize,
    taus: Vec<usize>,
    alpha_bar_full: Vec<f64>,
    alpha_bar: Vec<f64>,
    alpha_bar_prev: Vec<f64>,
    beta: Vec<f64>,
    alpha: Vec<f64>,
    beta_tilde: Vec<f64>,
    beta_tilde_clipped: Vec<f64>,
}

fn check_t_max(t_max: usize) -> Result<()> {
    if t_max == 0 {
        return Err(Error::Parameter("t_max must be at least 1".into()));
    }
    if t_max > MAX_T_MAX {
        return Err(Error::LimitsExceeded(format!(
            "t_max {t_max} exceeds the maximum {MAX_T_MAX}"
        )));
    }
    Ok(())
}

fn check_k(t_max: usize, k: usize) -> Result<()> {
    check_t_max(t_max)?;
    if k == 0 || k > t_max {
        return Err(Error::Parameter(format!(
            "number of steps {k} must be in 1..={t_max}"
        )));
    }
    Ok(())
}

/// The base linear β_t for t = 1..=T (index t − 1), `numpy.linspace(1e-4, 0.02, T)`.
pub fn linear_betas(t_max: usize) -> Vec<f64> {
    if t_max == 1 {
        return vec![BETA_START];
    }
    let step = (BETA_END - BETA_START) / (t_max - 1) as f64;
    (0..t_max)
        .map(|k| {
            if k == t_max - 1 {
                BETA_END
            } else {
                BETA_START + k as f64 * step
            }
        })
        .collect()
}

/// Turns rounded, possibly repeated, targets (each in 0..=t_max) into a strictly increasing
/// sequence in 1..=t_max ending at t_max, staying as close to the targets as the constraints
/// allow. Requires `1 <= raw.len() <= t_max`.
///
/// Exactly (format/SPEC.md § 2): a forward pass v_i = max(r_i, v_{i−1} + 1) with v_0 = 0, then
/// a backward pass setting v_K = t_max and v_i = min(v_i, v_{i+1} − 1) for i = K − 1 down to 1.
fn make_strictly_increasing(raw: &[usize], t_max: usize) -> Vec<usize> {
    let k = raw.len();
    let mut taus = Vec::with_capacity(k);
    let mut prev = 0usize;
    for &r in raw {
        let v = r.max(prev + 1);
        taus.push(v);
        prev = v;
    }
    // Backward pass: last = T, and leave room for the later steps.
    let mut next = t_max + 1;
    for v in taus.iter_mut().rev() {
        let cap = next - 1;
        if *v > cap || next == t_max + 1 {
            *v = cap;
        }
        next = *v;
    }
    taus
}

/// round_half_even(n / d) for integers, d > 0: q = n / d, r = n % d; q + 1 if 2r > d, q + (q odd)
/// if 2r = d, else q (Python's `round` of the exact quotient).
fn div_round_half_even(n: u128, d: u128) -> u128 {
    let (q, r) = (n / d, n % d);
    match (2 * r).cmp(&d) {
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
        std::cmp::Ordering::Less => q,
    }
}

fn check_taus_k(t_max: usize, k: usize) -> Result<()> {
    if k == 0 || k > t_max {
        return Err(Error::Parameter(format!(
            "number of steps {k} must be in 1..={t_max}"
        )));
    }
    Ok(())
}

/// The even schedule's model times (format/SPEC.md § 2, `schedule_kind` 1): τ_i =
/// round_half_even(i·T / K) for i = 1..=K in exact integer arithmetic, then made strictly
/// increasing. Requires 1 ≤ K ≤ T (else [`Error::Parameter`]). `even_taus(T, T)` is 1..=T.
pub fn even_taus(t_max: usize, k: usize) -> Result<Vec<usize>> {
    check_taus_k(t_max, k)?;
    let (t, kk) = (t_max as u128, k as u128);
    let raw: Vec<usize> = (1..=kk)
        .map(|i| div_round_half_even(i * t, kk) as usize)
        .collect();
    Ok(make_strictly_increasing(&raw, t_max))
}

/// The quadratic schedule's model times, dense near t = 0 (format/SPEC.md § 2,
/// `schedule_kind` 2): τ_i = round_half_even(T·i² / K²) for i = 1..=K in exact integer
/// arithmetic, then made strictly increasing. Requires 1 ≤ K ≤ T (else [`Error::Parameter`]).
pub fn quadratic_taus(t_max: usize, k: usize) -> Result<Vec<usize>> {
    check_taus_k(t_max, k)?;
    let (t, kk) = (t_max as u128, k as u128);
    let raw: Vec<usize> = (1..=kk)
        .map(|i| div_round_half_even(t * i * i, kk * kk) as usize)
        .collect();
    Ok(make_strictly_increasing(&raw, t_max))
}

impl Schedule {
    /// The full chain: K = T steps, τ_i = i.
    pub fn linear(t_max: usize) -> Result<Schedule> {
        check_t_max(t_max)?;
        Schedule::respaced(t_max, (1..=t_max).collect())
    }

    /// A respaced chain over the model times `taus` = τ_1..τ_K, which must be strictly
    /// increasing, within 1..=t_max, and end at t_max.
    pub fn respaced(t_max: usize, taus: Vec<usize>) -> Result<Schedule> {
        check_t_max(t_max)?;
        if taus.is_empty() {
            return Err(Error::Parameter("the chain needs at least one step".into()));
        }
        if taus.len() > t_max {
            return Err(Error::Parameter(format!(
                "{} chain steps for t_max {t_max}",
                taus.len()
            )));
        }
        let mut prev = 0usize;
        for (i, &t) in taus.iter().enumerate() {
            if t <= prev || t > t_max {
                return Err(Error::Parameter(format!(
                    "taus must be strictly increasing within 1..={t_max}: taus[{i}] = {t} after {prev}"
                )));
            }
            prev = t;
        }
        if prev != t_max {
            return Err(Error::Parameter(format!(
                "the last chain step must be t_max = {t_max}, got {prev}"
            )));
        }

        let betas = linear_betas(t_max);
        let mut alpha_bar_full = Vec::with_capacity(t_max);
        let mut acc = 1.0f64;
        for b in &betas {
            acc *= 1.0 - b;
            alpha_bar_full.push(acc);
        }

        let k = taus.len();
        let alpha_bar: Vec<f64> = taus.iter().map(|&t| alpha_bar_full[t - 1]).collect();
        let alpha_bar_prev: Vec<f64> = (0..k)
            .map(|i| if i == 0 { 1.0 } else { alpha_bar[i - 1] })
            .collect();
        let beta: Vec<f64> = (0..k)
            .map(|i| 1.0 - alpha_bar[i] / alpha_bar_prev[i])
            .collect();
        let alpha: Vec<f64> = beta.iter().map(|b| 1.0 - b).collect();
        let beta_tilde: Vec<f64> = (0..k)
            .map(|i| beta[i] * (1.0 - alpha_bar_prev[i]) / (1.0 - alpha_bar[i]))
            .collect();
        let mut beta_tilde_clipped = beta_tilde.clone();
        beta_tilde_clipped[0] = if k > 1 { beta_tilde[1] } else { beta[0] };

        Ok(Schedule {
            t_max,
            taus,
            alpha_bar_full,
            alpha_bar,
            alpha_bar_prev,
            beta,
            alpha,
            beta_tilde,
            beta_tilde_clipped,
        })
    }

    /// K evenly spaced steps: τ_i = round(i·T/K), i = 1..=K, rounding ties to even exactly like
    /// Python's `round` in `train/diffusion.py` (`Schedule.even`), made strictly increasing
    /// (a no-op for K ≤ T). Computed by [`even_taus`] in exact integer arithmetic.
    /// `even(T, T)` is the full chain.
    pub fn even(t_max: usize, k: usize) -> Result<Schedule> {
        check_k(t_max, k)?;
        Schedule::respaced(t_max, even_taus(t_max, k)?)
    }

    /// K steps dense near t = 0 (where the bits are): τ_i = round(T·(i/K)^power) (ties to even),
    /// made strictly
    /// increasing (small i collapse onto 1, 2, 3, … when the power law is denser than the
    /// integer grid). `power` must be finite and > 0; [`DEFAULT_DENSE_POWER`] = 2.
    ///
    /// `power == 2.0` uses [`quadratic_taus`] (exact integer arithmetic, the schedule the
    /// container codes as `schedule_kind` 2), so ties round to even exactly: T = 1000, K = 20
    /// gives τ_1 = round(2.5) = 2. Other powers use f64 `powf`.
    pub fn dense_low(t_max: usize, k: usize, power: f64) -> Result<Schedule> {
        check_k(t_max, k)?;
        if !(power.is_finite() && power > 0.0) {
            return Err(Error::Parameter(format!(
                "dense_low power must be finite and > 0, got {power}"
            )));
        }
        if power == 2.0 {
            return Schedule::respaced(t_max, quadratic_taus(t_max, k)?);
        }
        let raw: Vec<usize> = (1..=k)
            .map(|i| {
                let v = (t_max as f64) * ((i as f64) / (k as f64)).powf(power);
                v.round_ties_even().clamp(0.0, t_max as f64) as usize
            })
            .collect();
        Schedule::respaced(t_max, make_strictly_increasing(&raw, t_max))
    }

    /// T, the number of steps of the base schedule.
    pub fn t_max(&self) -> usize {
        self.t_max
    }
    /// K, the number of chain steps.
    pub fn steps(&self) -> usize {
        self.taus.len()
    }
    /// τ_1..τ_K (model times, 1..=T).
    pub fn taus(&self) -> &[usize] {
        &self.taus
    }
    /// Model time the network is called at for chain step `i`: τ_{i+1}.
    pub fn model_t(&self, i: usize) -> usize {
        self.taus[i]
    }
    /// ᾱ_t of the base schedule for model time t ∈ 1..=T (and 1.0 for t = 0).
    pub fn alpha_bar_at(&self, t: usize) -> f64 {
        if t == 0 {
            1.0
        } else {
            self.alpha_bar_full[t - 1]
        }
    }
    /// ᾱ_{τ_{i+1}}.
    pub fn alpha_bar(&self, i: usize) -> f64 {
        self.alpha_bar[i]
    }
    /// ᾱ_{τ_i} (1.0 for i = 0).
    pub fn alpha_bar_prev(&self, i: usize) -> f64 {
        self.alpha_bar_prev[i]
    }
    /// β' = 1 − ᾱ_{τ_{i+1}}/ᾱ_{τ_i}.
    pub fn beta(&self, i: usize) -> f64 {
        self.beta[i]
    }
    /// α' = 1 − β'.
    pub fn alpha(&self, i: usize) -> f64 {
        self.alpha[i]
    }
    /// The true posterior variance β̃' (0 at i = 0).
    pub fn beta_tilde(&self, i: usize) -> f64 {
        self.beta_tilde[i]
    }
    /// β̃' with its first entry replaced by the second (β' when K = 1).
    pub fn beta_tilde_clipped(&self, i: usize) -> f64 {
        self.beta_tilde_clipped[i]
    }
    /// Whole tables, indexed by chain step.
    pub fn alpha_bars(&self) -> &[f64] {
        &self.alpha_bar
    }
    /// ᾱ_{τ_i} for every chain step.
    pub fn alpha_bars_prev(&self) -> &[f64] {
        &self.alpha_bar_prev
    }
    /// β' for every chain step.
    pub fn betas(&self) -> &[f64] {
        &self.beta
    }
    /// β̃' for every chain step.
    pub fn betas_tilde(&self) -> &[f64] {
        &self.beta_tilde
    }
    /// The reverse-process variance σ² at chain step i.
    ///
    /// Panics for the kinds that need the model's tables ([`Variance::needs_tables`]); use
    /// [`chain_sigma2`] for those.
    pub fn sigma2(&self, i: usize, variance: Variance) -> f64 {
        match variance {
            Variance::Small => self.beta_tilde_clipped[i],
            Variance::Large => self.beta[i],
            Variance::Optimal | Variance::Analytic => {
                panic!("variance {variance} needs the model's tables: use schedule::chain_sigma2")
            }
            Variance::Learned => panic!("variance learned is per dimension: use schedule::learned_sigma"),
        }
    }
    /// True when this is the full chain (τ_i = i for all i).
    pub fn is_full(&self) -> bool {
        self.taus.len() == self.t_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
    }

    #[test]
    fn linear_betas_match_linspace() {
        let b = linear_betas(1000);
        assert_eq!(b.len(), 1000);
        assert_eq!(b[0], 1e-4);
        assert_eq!(b[999], 0.02);
        // independent: numpy.linspace(1e-4, 0.02, 1000)[1] and [500]
        assert!(close(b[1], 1e-4 + (0.02 - 1e-4) / 999.0, 1e-14));
        assert!(close(b[500], 1e-4 + 500.0 * (0.0199 / 999.0), 1e-14));
    }

    #[test]
    fn full_chain_tables() {
        let s = Schedule::linear(1000).unwrap();
        assert_eq!(s.steps(), 1000);
        assert!(s.is_full());
        let betas = linear_betas(1000);
        // independent: ᾱ via a sum of logs, β' == β_t for the full chain
        let mut log_acc = 0.0f64;
        for (i, &b) in betas.iter().enumerate() {
            log_acc += (1.0 - b).ln();
            assert!(close(s.alpha_bar(i), log_acc.exp(), 1e-11), "i={i}");
            assert!(close(s.beta(i), b, 1e-9), "i={i}");
            assert!(close(s.alpha(i), 1.0 - b, 1e-12));
        }
        assert_eq!(s.alpha_bar_prev(0), 1.0);
        assert_eq!(s.beta_tilde(0), 0.0);
        // β̃_2 = β_2 (1 − ᾱ_1)/(1 − ᾱ_2)
        let a1 = 1.0 - betas[0];
        let a2 = a1 * (1.0 - betas[1]);
        let bt2 = betas[1] * (1.0 - a1) / (1.0 - a2);
        assert!(close(s.beta_tilde(1), bt2, 1e-9));
        assert_eq!(s.beta_tilde_clipped(0), s.beta_tilde(1));
        assert_eq!(s.beta_tilde_clipped(5), s.beta_tilde(5));
        // ᾱ_T for the paper's schedule ≈ 4.04e-5
        assert!(
            (s.alpha_bar(999) - 4.035e-5).abs() < 1e-7,
            "{}",
            s.alpha_bar(999)
        );
        assert_eq!(s.sigma2(3, Variance::Large), s.beta(3));
        assert_eq!(s.sigma2(3, Variance::Small), s.beta_tilde(3));
        assert_eq!(s.sigma2(0, Variance::Small), s.beta_tilde(1));
    }

    #[test]
    fn respaced_identities() {
        let full = Schedule::linear(1000).unwrap();
        let taus = vec![3, 10, 11, 250, 600, 1000];
        let s = Schedule::respaced(1000, taus.clone()).unwrap();
        assert_eq!(s.steps(), 6);
        let mut prod = 1.0f64;
        let mut prev_t = 0;
        for (i, &t) in taus.iter().enumerate() {
            // α'_i equals the product of the base α over (τ_{i−1}, τ_i]
            let seg: f64 = (prev_t + 1..=t).map(|u| full.alpha(u - 1)).product();
            assert!(close(s.alpha(i), seg, 1e-10), "i={i}");
            prod *= s.alpha(i);
            // ᾱ'_i = ∏_{j≤i} α'_j = ᾱ_{τ_i}
            assert!(close(s.alpha_bar(i), prod, 1e-10));
            assert!(close(s.alpha_bar(i), full.alpha_bar(t - 1), 1e-14));
            assert_eq!(
                s.alpha_bar_prev(i),
                if i == 0 {
                    1.0
                } else {
                    full.alpha_bar(prev_t - 1)
                }
            );
            assert_eq!(s.model_t(i), t);
            // β̃ from its definition
            let bt = s.beta(i) * (1.0 - s.alpha_bar_prev(i)) / (1.0 - s.alpha_bar(i));
            assert!(close(s.beta_tilde(i), bt, 1e-14) || i == 0);
            assert!(s.beta_tilde(i) < s.beta(i) || i == 0);
            prev_t = t;
        }
        assert_eq!(s.beta_tilde_clipped(0), s.beta_tilde(1));
        // K = 1: clip to β'
        let one = Schedule::respaced(1000, vec![1000]).unwrap();
        assert_eq!(one.beta_tilde_clipped(0), one.beta(0));
        assert!(close(one.beta(0), 1.0 - full.alpha_bar(999), 1e-15));
    }

    #[test]
    fn respaced_validation() {
        assert!(Schedule::respaced(1000, vec![]).is_err());
        assert!(Schedule::respaced(1000, vec![0, 1000]).is_err());
        assert!(Schedule::respaced(1000, vec![5, 5, 1000]).is_err());
        assert!(Schedule::respaced(1000, vec![7, 3, 1000]).is_err());
        assert!(Schedule::respaced(1000, vec![5, 999]).is_err());
        assert!(Schedule::respaced(1000, vec![5, 1001]).is_err());
        assert!(Schedule::respaced(0, vec![]).is_err());
        assert!(Schedule::linear(0).is_err());
        assert!(Schedule::linear(MAX_T_MAX + 1).is_err());
        assert!(Schedule::even(10, 11).is_err());
        assert!(Schedule::even(10, 0).is_err());
        assert!(Schedule::dense_low(10, 3, 0.0).is_err());
        assert!(Schedule::dense_low(10, 3, f64::NAN).is_err());
    }

    fn assert_valid(s: &Schedule) {
        let t = s.taus();
        assert!(t[0] >= 1);
        assert!(t.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*t.last().unwrap(), s.t_max());
    }

    #[test]
    fn even_and_dense_low() {
        let s = Schedule::even(1000, 4).unwrap();
        assert_eq!(s.taus(), &[250, 500, 750, 1000]);
        let s = Schedule::even(1000, 3).unwrap();
        assert_eq!(s.taus(), &[333, 667, 1000]);
        // ties to even, as train/diffusion.py (Python round): 62.5 → 62, 187.5 → 188
        let s = Schedule::even(1000, 16).unwrap();
        assert_eq!(&s.taus()[..6], &[62, 125, 188, 250, 312, 375]);
        // values from train/diffusion.py Schedule.even(16)
        assert!(close(s.beta_tilde_clipped(0), 0.032341191350638405, 1e-13));
        assert!(close(s.beta(3), 0.2416994957693619, 1e-13));
        assert!(close(s.alpha_bar(5), 0.23739893903526332, 1e-13));
        assert_eq!(
            Schedule::even(1000, 1000).unwrap(),
            Schedule::linear(1000).unwrap()
        );
        for k in [1, 2, 7, 99, 500, 999, 1000] {
            let s = Schedule::even(1000, k).unwrap();
            assert_eq!(s.steps(), k);
            assert_valid(&s);
        }
        let d = Schedule::dense_low(1000, 10, 2.0).unwrap();
        assert_eq!(d.taus(), &[10, 40, 90, 160, 250, 360, 490, 640, 810, 1000]);
        // dense: many collisions near 0 get spread to 1, 2, 3, ...
        let d = Schedule::dense_low(1000, 200, 3.0).unwrap();
        assert_eq!(d.steps(), 200);
        assert_valid(&d);
        assert_eq!(&d.taus()[..3], &[1, 2, 3]);
        for k in [1, 2, 50, 999, 1000] {
            for p in [0.5, 1.0, 2.0, 4.0] {
                let d = Schedule::dense_low(1000, k, p).unwrap();
                assert_eq!(d.steps(), k);
                assert_valid(&d);
            }
        }
        // tiny T
        let d = Schedule::dense_low(3, 3, 2.0).unwrap();
        assert_eq!(d.taus(), &[1, 2, 3]);
        assert_eq!(Schedule::linear(1).unwrap().taus(), &[1]);
    }

    #[test]
    fn integer_taus_pinned() {
        // By hand / Python `round` of the exact quotient (ties to even).
        assert_eq!(even_taus(1000, 3).unwrap(), vec![333, 667, 1000]);
        assert_eq!(even_taus(1000, 4).unwrap(), vec![250, 500, 750, 1000]);
        // T·i²/K² = 2.5·i²: odd i are ties (2.5 → 2, 22.5 → 22, 62.5 → 62, …).
        assert_eq!(
            quadratic_taus(1000, 20).unwrap(),
            vec![
                2, 10, 22, 40, 62, 90, 122, 160, 202, 250, 302, 360, 422, 490, 562, 640, 722, 810,
                902, 1000
            ]
        );
        assert_eq!(quadratic_taus(1000, 3).unwrap(), vec![111, 444, 1000]);
        // Collisions near 0 are spread to 1, 2, 3, …
        assert_eq!(
            &quadratic_taus(1000, 200).unwrap()[..20],
            &(1..=20).collect::<Vec<usize>>()[..]
        );
        assert_eq!(quadratic_taus(3, 3).unwrap(), vec![1, 2, 3]);
        assert_eq!(even_taus(7, 7).unwrap(), (1..=7).collect::<Vec<_>>());
        assert_eq!(even_taus(5, 1).unwrap(), vec![5]);
        assert_eq!(quadratic_taus(5, 1).unwrap(), vec![5]);
        // 1 ≤ K ≤ T, else Parameter; no MAX_T_MAX bound (T is a u16 in the container).
        for (t, k) in [(10, 0), (10, 11), (0, 0), (0, 1)] {
            assert!(matches!(even_taus(t, k), Err(Error::Parameter(_))));
            assert!(matches!(quadratic_taus(t, k), Err(Error::Parameter(_))));
        }
        assert_eq!(*even_taus(65535, 65535).unwrap().last().unwrap(), 65535);
        assert_eq!(quadratic_taus(65535, 65535).unwrap().len(), 65535);
        // Schedule::dense_low(·, ·, 2.0) is the quadratic schedule.
        assert_eq!(
            Schedule::dense_low(1000, 20, 2.0).unwrap().taus(),
            &quadratic_taus(1000, 20).unwrap()[..]
        );
    }

    #[test]
    fn even_taus_equal_the_f64_formula() {
        // The integer formula gives what the former f64 code (round_ties_even(i·T/K)) gave.
        let f64_even = |t: usize, k: usize| -> Vec<usize> {
            let raw: Vec<usize> = (1..=k)
                .map(|i| ((i as f64) * (t as f64) / (k as f64)).round_ties_even() as usize)
                .collect();
            make_strictly_increasing(&raw, t)
        };
        for t in (1..=200).chain([999, 1000, 1001, 4096]) {
            for k in 1..=t {
                assert_eq!(even_taus(t, k).unwrap(), f64_even(t, k), "T={t} K={k}");
            }
        }
    }

    #[test]
    fn integer_taus_are_valid_schedules() {
        for t in 1..=120 {
            for k in 1..=t {
                for taus in [even_taus(t, k).unwrap(), quadratic_taus(t, k).unwrap()] {
                    assert_eq!(taus.len(), k);
                    assert!(taus[0] >= 1);
                    assert!(taus.windows(2).all(|w| w[0] < w[1]));
                    assert_eq!(*taus.last().unwrap(), t);
                }
            }
        }
    }

    #[test]
    fn variance_names() {
        assert_eq!("small".parse::<Variance>().unwrap(), Variance::Small);
        assert_eq!("Large".parse::<Variance>().unwrap(), Variance::Large);
        assert!("medium".parse::<Variance>().is_err());
        assert_eq!(
            serde_json::to_string(&Variance::Small).unwrap(),
            "\"small\""
        );
        assert_eq!(
            serde_json::from_str::<Variance>("\"large\"").unwrap(),
            Variance::Large
        );
        assert_eq!(Variance::Large.to_string(), "large");
    }
}
