//! Calibration of the model's [`VarianceTables`] on training images (issue #13, step 1): per
//! model time t = 1..=T, the mean squared error of the clipped one-step prediction x̂_0, the
//! Analytic-DPM statistic Γ_t = E‖ε_θ‖²/D, and for small t the std of the final step's
//! discretized Gaussian that minimises the calibration images' code length.
//!
//! Both sides of a stream read the tables from the model file (whose SHA-256 is the model's
//! identity), so the numbers here only need to be good, not reproducible across machines.

use rayon::prelude::*;

use crate::diffusion::{discretized_gaussian_log_likelihood_nats, Denoiser, NormalRng};
use crate::error::{Error, Result};
use crate::schedule::{Schedule, VarianceTables, MIN_FINAL_STD};

/// Model times t ≤ this get a searched final-step std ([`VarianceTables::final_std`]).
pub const DEFAULT_FINAL_STEPS: usize = 64;
/// Images (of the calibration set) used by the final-step std search.
const FINAL_SEARCH_IMAGES: usize = 64;

/// Options of [`calibrate`].
#[derive(Clone, Debug)]
pub struct CalibrateOptions {
    /// Network batch (tiles per call).
    pub batch: usize,
    /// Seed of the forward-process noise.
    pub seed: u64,
    /// Largest t with a searched final-step std.
    pub final_steps: usize,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        Self { batch: 64, seed: 0x0CA1_1B7A, final_steps: DEFAULT_FINAL_STEPS }
    }
}

/// Mean discretized-Gaussian code length (nats per dimension) of `x0` at means `m` and std `s`.
fn final_nats(x0: &[f32], m: &[f32], s: f64) -> f64 {
    let tot: f64 = x0
        .par_chunks(4096)
        .zip(m.par_chunks(4096))
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(&x, &mu)| -discretized_gaussian_log_likelihood_nats(x as f64, mu as f64, s))
                .sum::<f64>()
        })
        .sum();
    tot / x0.len() as f64
}

/// The std in [MIN_FINAL_STD, 1] minimising [`final_nats`]: golden-section search on ln s.
fn search_final_std(x0: &[f32], m: &[f32]) -> f64 {
    let (mut a, mut b) = (MIN_FINAL_STD.ln(), 0.0f64);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - g * (b - a);
    let mut d = a + g * (b - a);
    let (mut fc, mut fd) = (final_nats(x0, m, c.exp()), final_nats(x0, m, d.exp()));
    for _ in 0..40 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = final_nats(x0, m, c.exp());
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = final_nats(x0, m, d.exp());
        }
    }
    ((a + b) / 2.0).exp()
}

/// Calibrates the tables of the full T-step schedule on `images` (N×c×h×w uint8).
/// `progress(done, total)` counts model times.
pub fn calibrate(
    den: &dyn Denoiser,
    images: &[u8],
    t_max: usize,
    opts: &CalibrateOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<VarianceTables> {
    let (c, h, w) = den.image_shape();
    let d = c * h * w;
    if d == 0 || images.is_empty() || !images.len().is_multiple_of(d) {
        return Err(Error::Parameter(format!("{} bytes are not whole {c}x{h}x{w} images", images.len())));
    }
    if opts.batch == 0 || opts.final_steps > t_max {
        return Err(Error::Parameter("calibrate: batch ≥ 1 and final_steps ≤ T".into()));
    }
    let n = images.len() / d;
    let sched = Schedule::linear(t_max)?;
    let x0 = crate::data::u8_to_model(images);
    let n_final = n.min(FINAL_SEARCH_IMAGES);
    let mut x0_mse = Vec::with_capacity(t_max);
    let mut gamma = Vec::with_capacity(t_max);
    let mut final_std = Vec::with_capacity(opts.final_steps);
    for t in 1..=t_max {
        let ab = sched.alpha_bar_at(t);
        let (a, b) = (ab.sqrt(), (1.0 - ab).sqrt());
        let mut xt = vec![0f32; n * d];
        xt.par_chunks_mut(d).enumerate().for_each(|(j, row)| {
            let mut rng = NormalRng::for_stream(opts.seed, j as u64, t as u64);
            for (v, &x) in row.iter_mut().zip(&x0[j * d..(j + 1) * d]) {
                *v = (a * x as f64 + b * rng.normal()) as f32;
            }
        });
        let mut eps = Vec::with_capacity(n * d);
        for s in (0..n).step_by(opts.batch) {
            let m = opts.batch.min(n - s);
            eps.extend(den.eps(&xt[s * d..(s + m) * d], m, t)?);
        }
        crate::diffusion::check_eps(&eps, n * d)?;
        let x0_hat: Vec<f32> = xt
            .iter()
            .zip(&eps)
            .map(|(&x, &e)| ((x as f64 - b * e as f64) / a).clamp(-1.0, 1.0) as f32)
            .collect();
        let mse = x0.iter().zip(&x0_hat).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum::<f64>() / (n * d) as f64;
        let g = eps.iter().map(|&e| (e as f64).powi(2)).sum::<f64>() / (n * d) as f64;
        x0_mse.push(mse);
        gamma.push(g);
        if t <= opts.final_steps {
            final_std.push(search_final_std(&x0[..n_final * d], &x0_hat[..n_final * d]));
        }
        progress(t, t_max);
    }
    let tables = VarianceTables { x0_mse, gamma, final_std };
    tables.validate(t_max).map_err(|e| Error::Model(format!("{e}: {tables:?}")))?;
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_std_search_finds_the_noise_level() {
        // x̂_0 = x_0 + N(0, s²) with s = 3 bins: the best discretized std is close to s.
        let mut rng = NormalRng::new(3);
        let s = 3.0 * 2.0 / 255.0;
        let x0: Vec<f32> = (0..20000).map(|i| ((i % 200) as f32 + 20.0) * 2.0 / 255.0 - 1.0).collect();
        let m: Vec<f32> = x0.iter().map(|&x| x + (s * rng.normal()) as f32).collect();
        let best = search_final_std(&x0, &m);
        assert!((best / s - 1.0).abs() < 0.05, "best {best}, want ≈ {s}");
    }

    #[test]
    fn calibrates_a_perfect_denoiser() {
        // the oracle denoiser knows x_0: x̂_0 = x_0 exactly, so the MSE is ~0 and Γ_t is
        // ‖ε‖²/D ≈ 1 at every t.
        let img: Vec<u8> = (0..3 * 32 * 32).map(|i| (i * 7 % 256) as u8).collect();
        let den = crate::diffusion::OneImageDenoiser::new(crate::data::u8_to_model(&img), (3, 32, 32)).unwrap();
        let tab = calibrate(&den, &img, 1000, &CalibrateOptions { batch: 1, seed: 1, final_steps: 3 }, &mut |_, _| {}).unwrap();
        assert_eq!((tab.x0_mse.len(), tab.gamma.len(), tab.final_std.len()), (1000, 1000, 3));
        assert!(tab.x0_mse.iter().all(|&m| m < 1e-6), "{:?}", &tab.x0_mse[..10]);
        assert!(tab.gamma.iter().all(|&g| (g - 1.0).abs() < 0.1), "{:?}", &tab.gamma[..10]);
        assert!(tab.final_std.iter().all(|&s| s < 0.5 * 2.0 / 255.0));
    }
}
