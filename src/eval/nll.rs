//! Bits/dim of a data set under the model (DESIGN.md §3), exact or estimated with one
//! importance-sampled chain step per image ([`Diffusion::nll_random_t`]), as a serialisable
//! report.

use std::fmt::Write as _;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::data::to_model_range;
use crate::diffusion::{mix_seed, Denoiser, Diffusion, NllTerms};
use crate::error::{Error, Result};
use crate::schedule::{Schedule, Variance, VarianceTables};

/// How the sum over chain steps is evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NllMode {
    /// Every chain step, one network call per step and batch (K calls per image).
    Exact,
    /// Unbiased estimate: L_T and L_0 exactly, (K − 1)·KL at one uniformly drawn step per image.
    RandomT,
}

impl NllMode {
    /// `"exact"` or `"random-t"`.
    pub fn name(self) -> &'static str {
        match self {
            NllMode::Exact => "exact",
            NllMode::RandomT => "random-t",
        }
    }
}

impl std::fmt::Display for NllMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NllMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "exact" => Ok(NllMode::Exact),
            "random-t" | "randomt" | "random" => Ok(NllMode::RandomT),
            _ => Err(Error::Parameter(format!(
                "unknown nll mode {s:?} (expected exact or random-t)"
            ))),
        }
    }
}

/// The bound averaged over a data set, bits/dim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NllReport {
    /// Number of images evaluated.
    pub images: usize,
    /// K, chain steps.
    pub steps: usize,
    /// T of the base schedule.
    pub t_max: usize,
    /// Exact or random-t.
    pub mode: NllMode,
    /// σ² choice of p_θ.
    pub variance: Variance,
    /// Seed of the x_t noise (and of the sampled steps).
    pub seed: u64,
    /// D = c·h·w.
    pub dims: usize,
    /// Mean L_T.
    pub prior_bpd: f64,
    /// Mean Σ of the KL terms (steps ≥ 2 in the paper's numbering), "the rate".
    pub terms_bpd: f64,
    /// Mean L_0, "the distortion".
    pub l0_bpd: f64,
    /// Mean bound L_T + terms + L_0.
    pub total_bits_per_dim: f64,
    /// Sample standard deviation of the per-image totals (None for one image).
    pub total_sd: Option<f64>,
    /// Half-width of the 95% CI of `total_bits_per_dim`, 1.96·sd/√n (over images and, for
    /// random-t, the sampled steps; None for one image).
    pub total_ci95: Option<f64>,
    /// Half-width of the 95% CI of `terms_bpd`.
    pub terms_ci95: Option<f64>,
    /// Exact mode: mean term of every chain step (index i = 0-based chain step; `[0]` is L_0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_bpd: Option<Vec<f64>>,
    /// Exact mode: the model times τ_1..τ_K of the chain steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taus: Option<Vec<usize>>,
}

fn mean_sd(v: &[f64]) -> (f64, Option<f64>) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (m, None);
    }
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, Some(var.sqrt()))
}

/// Largest number of images handed to one [`Diffusion::nll_random_t`] call (images that drew the
/// same step share network batches, so larger chunks batch better).
const RANDOM_T_CHUNK: usize = 8192;

/// Evaluates the bound on `images` (N×c×h×w NCHW uint8, the shape of `denoiser`).
///
/// Exact mode processes `batch` images at a time, K network calls per batch; random-t mode
/// processes chunks of up to 8192 images, grouping images that drew the same step into calls of
/// at most `batch`. The noise of each batch/chunk is seeded by (seed, first image index), so
/// results depend on `batch` (exact) only through which noise each image gets.
/// `progress(done, total)` counts single-image network evaluations (exact: N·K in all;
/// random-t: N·2, or N when K = 1).
#[allow(clippy::too_many_arguments)]
pub fn run_nll(
    denoiser: &dyn Denoiser,
    images: &[u8],
    schedule: &Schedule,
    variance: Variance,
    tables: Option<&VarianceTables>,
    mode: NllMode,
    batch: usize,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<NllReport> {
    let (c, h, w) = denoiser.image_shape();
    let d = c * h * w;
    if d == 0 || images.is_empty() || !images.len().is_multiple_of(d) {
        return Err(Error::Parameter(format!(
            "{} bytes are not whole {c}x{h}x{w} images",
            images.len()
        )));
    }
    if batch == 0 {
        return Err(Error::Parameter("batch must be at least 1".into()));
    }
    let n = images.len() / d;
    let k = schedule.steps();
    let diffusion = Diffusion::with_tables(schedule.clone(), variance, tables)?;
    let per_image = match mode {
        NllMode::Exact => k,
        NllMode::RandomT => {
            if k > 1 {
                2
            } else {
                1
            }
        }
    };
    let total_units = n * per_image;
    let mut done_units = 0usize;
    let mut results: Vec<NllTerms> = Vec::with_capacity(n);
    let chunk = match mode {
        NllMode::Exact => batch,
        NllMode::RandomT => RANDOM_T_CHUNK.max(batch),
    };
    let mut start = 0;
    while start < n {
        let m = chunk.min(n - start);
        let x0: Vec<f32> = images[start * d..(start + m) * d]
            .iter()
            .map(|&v| to_model_range(v))
            .collect();
        let s = mix_seed(seed, start as u64, mode as u64);
        let base = done_units;
        let r = match mode {
            NllMode::Exact => diffusion.nll_exact(denoiser, &x0, m, s, &mut |i, _| {
                progress(base + i * m, total_units)
            })?,
            NllMode::RandomT => {
                // calls are uneven in size; report their share of the chunk, monotonically
                let mut seen = 0usize;
                diffusion.nll_random_t(denoiser, &x0, m, s, batch, &mut |i, tot| {
                    let units = (m * per_image) * i / tot;
                    if units > seen {
                        seen = units;
                        progress(base + units, total_units);
                    }
                })?
            }
        };
        done_units = base + m * per_image;
        results.extend(r);
        start += m;
    }
    progress(total_units, total_units);

    let col = |f: &dyn Fn(&NllTerms) -> f64| results.iter().map(f).collect::<Vec<f64>>();
    let (prior_bpd, _) = mean_sd(&col(&|r| r.prior_bpd));
    let (terms_bpd, terms_sd) = mean_sd(&col(&|r| r.terms_bpd));
    let (l0_bpd, _) = mean_sd(&col(&|r| r.l0_bpd));
    let (total, total_sd) = mean_sd(&col(&|r| r.total_bpd));
    let ci = |sd: Option<f64>| sd.map(|s| 1.96 * s / (n as f64).sqrt());
    let step_bpd = (mode == NllMode::Exact).then(|| {
        let mut acc = vec![0.0f64; k];
        for r in &results {
            for (a, v) in acc.iter_mut().zip(&r.steps_bpd) {
                *a += v;
            }
        }
        acc.iter().map(|a| a / n as f64).collect()
    });
    Ok(NllReport {
        images: n,
        steps: k,
        t_max: schedule.t_max(),
        mode,
        variance,
        seed,
        dims: d,
        prior_bpd,
        terms_bpd,
        l0_bpd,
        total_bits_per_dim: total,
        total_sd,
        total_ci95: ci(total_sd),
        terms_ci95: ci(terms_sd),
        step_bpd,
        taus: (mode == NllMode::Exact).then(|| schedule.taus().to_vec()),
    })
}

impl NllReport {
    /// A small table for the terminal.
    pub fn table(&self) -> String {
        let pm = |c: Option<f64>| c.map(|c| format!(" ± {c:.4}")).unwrap_or_default();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "bits/dim — {} images, {} of {} steps, {}, variance {}",
            self.images, self.steps, self.t_max, self.mode, self.variance
        );
        let _ = writeln!(s, "  {:<28} {:>10.6}", "L_T prior", self.prior_bpd);
        let _ = writeln!(
            s,
            "  {:<28} {:>10.6}{}",
            "L_1..L_{K-1} rate (KL terms)",
            self.terms_bpd,
            pm(self.terms_ci95)
        );
        let _ = writeln!(
            s,
            "  {:<28} {:>10.6}",
            "L_0 distortion (decoder)", self.l0_bpd
        );
        let _ = writeln!(
            s,
            "  {:<28} {:>10.6}{}",
            "total",
            self.total_bits_per_dim,
            pm(self.total_ci95)
        );
        if self.total_ci95.is_some() {
            let _ = writeln!(
                s,
                "  (± : 95% CI half-width over images{})",
                if self.mode == NllMode::RandomT {
                    " and sampled steps"
                } else {
                    ""
                }
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::OneImageDenoiser;

    fn fixture() -> (OneImageDenoiser, Vec<u8>) {
        let img: Vec<u8> = vec![0, 255, 3, 128, 77, 200];
        let x0 = img.iter().map(|&v| to_model_range(v)).collect();
        let imgs = [img.clone(), img.clone(), img.clone(), img].concat();
        (
            OneImageDenoiser::new(x0, (1, 2, 3)).unwrap(),
            imgs,
        )
    }

    #[test]
    fn exact_report() {
        let (o, imgs) = fixture();
        let sched = Schedule::even(1000, 20).unwrap();
        let mut last = (0, 0);
        let r = run_nll(
            &o,
            &imgs,
            &sched,
            Variance::Small,
            None,
            NllMode::Exact,
            3,
            1,
            &mut |a, b| last = (a, b),
        )
        .unwrap();
        assert_eq!(last, (80, 80));
        assert_eq!((r.images, r.steps, r.dims), (4, 20, 6));
        assert!(r.terms_bpd.abs() < 1e-5);
        assert!((r.total_bits_per_dim - (r.prior_bpd + r.terms_bpd + r.l0_bpd)).abs() < 1e-12);
        let steps = r.step_bpd.as_ref().unwrap();
        assert_eq!(steps.len(), 20);
        assert!((steps[0] - r.l0_bpd).abs() < 1e-12);
        // all images are the same and the optimum is exact: zero spread
        assert!(r.total_ci95.unwrap() < 1e-5);
        let json = serde_json::to_value(&r).unwrap();
        for key in [
            "images",
            "steps",
            "mode",
            "prior_bpd",
            "terms_bpd",
            "l0_bpd",
            "total_bits_per_dim",
            "total_ci95",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert_eq!(json["mode"], "exact");
        let back: NllReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        let t = r.table();
        assert!(t.contains("total") && t.contains("L_0"));
    }

    #[test]
    fn random_t_report_and_errors() {
        let (o, imgs) = fixture();
        let sched = Schedule::even(1000, 20).unwrap();
        let exact = run_nll(
            &o,
            &imgs,
            &sched,
            Variance::Small,
            None,
            NllMode::Exact,
            4,
            1,
            &mut |_, _| {},
        )
        .unwrap();
        let r = run_nll(
            &o,
            &imgs,
            &sched,
            Variance::Small,
            None,
            NllMode::RandomT,
            2,
            1,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(r.mode, NllMode::RandomT);
        assert!(r.step_bpd.is_none());
        assert!((r.l0_bpd - exact.l0_bpd).abs() < 1e-4);
        assert!((r.total_bits_per_dim - exact.total_bits_per_dim).abs() < 1e-4);
        assert_eq!(serde_json::to_value(&r).unwrap()["mode"], "random-t");
        assert!(run_nll(
            &o,
            &imgs[..7],
            &sched,
            Variance::Small,
            None,
            NllMode::Exact,
            2,
            1,
            &mut |_, _| {}
        )
        .is_err());
        assert!(run_nll(
            &o,
            &imgs,
            &sched,
            Variance::Small,
            None,
            NllMode::Exact,
            0,
            1,
            &mut |_, _| {}
        )
        .is_err());
        assert_eq!("random_t".parse::<NllMode>().unwrap(), NllMode::RandomT);
        assert!("bogus".parse::<NllMode>().is_err());
    }
}
