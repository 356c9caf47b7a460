//! The paper's "what the prior knows" experiments as library functions (Ho et al. 2020,
//! Figures 6–9): encode images to x_t with q, sample p_θ(x_0 | x_t) from a shared latent,
//! interpolate in latent space. Inputs are batches of model-sized tiles (NCHW, [−1, 1]) so
//! images of any size work through [`crate::tiling`]. Every draw is seeded.

use crate::diffusion::{Denoiser, Diffusion, NormalRng};
use crate::error::{Error, Result};
use crate::sample;

/// The chain step whose input model time is closest to `t` (`model_t(i)` ≈ t).
pub fn step_for_time(diff: &Diffusion, t: usize) -> usize {
    (0..diff.steps())
        .min_by_key(|&i| (diff.schedule.model_t(i) as i64 - t as i64).abs())
        .unwrap_or(0)
}

/// Draws x_{τ_{i+1}} ~ q(· | x_0) for every tile, with noise from `seed` (tile j uses stream
/// (seed, j, i)), so two calls with the same seed share their noise.
pub fn q_encode(diff: &Diffusion, x0: &[f32], tile_dims: usize, i: usize, seed: u64) -> Result<Vec<f32>> {
    if tile_dims == 0 || x0.len() % tile_dims != 0 {
        return Err(Error::Parameter("q_encode: input is not whole tiles".into()));
    }
    let mut noise = Vec::with_capacity(x0.len());
    for j in 0..x0.len() / tile_dims {
        noise.extend(NormalRng::for_stream(seed, j as u64, i as u64).normals::<f32>(tile_dims));
    }
    Ok(diff.q_sample_to(x0, i, &noise))
}

/// `count` samples of p_θ(x_0 | x_t) from ONE shared x_t = q(x_0) at chain step `i`.
/// Returns one tile buffer per sample (reverse-chain noise seeds seed+1, seed+2, …).
pub fn shared_latent_samples(
    den: &dyn Denoiser,
    diff: &Diffusion,
    x0: &[f32],
    i: usize,
    count: usize,
    seed: u64,
) -> Result<Vec<Vec<f32>>> {
    let (c, h, w) = den.image_shape();
    let d = c * h * w;
    let x_t = q_encode(diff, x0, d, i, seed)?;
    let n = x0.len() / d;
    (0..count)
        .map(|k| sample::sample_from(den, diff, &x_t, n, i, seed + 1 + k as u64, &mut |_, _| {}))
        .collect()
}

/// Interpolation in latent space: x_t = q(a), x'_t = q(b) with the SAME noise, decoded from
/// x̄_t = (1 − λ) x_t + λ x'_t by the reverse process with the same reverse noise for every λ.
/// `a` and `b` are tile buffers of equal size. Returns one tile buffer per λ.
pub fn interpolate(
    den: &dyn Denoiser,
    diff: &Diffusion,
    a: &[f32],
    b: &[f32],
    i: usize,
    lambdas: &[f64],
    seed: u64,
) -> Result<Vec<Vec<f32>>> {
    if a.len() != b.len() {
        return Err(Error::Parameter("interpolate: the two images must have the same size".into()));
    }
    let (c, h, w) = den.image_shape();
    let d = c * h * w;
    let xa = q_encode(diff, a, d, i, seed)?;
    let xb = q_encode(diff, b, d, i, seed)?;
    let n = a.len() / d;
    lambdas
        .iter()
        .map(|&l| {
            if !(0.0..=1.0).contains(&l) {
                return Err(Error::Parameter(format!("lambda {l} outside [0, 1]")));
            }
            let mix: Vec<f32> = xa.iter().zip(&xb).map(|(&p, &q)| ((1.0 - l) * p as f64 + l * q as f64) as f32).collect();
            sample::sample_from(den, diff, &mix, n, i, seed + 1, &mut |_, _| {})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::OneImageDenoiser;
    use crate::schedule::{Schedule, Variance};

    fn setup() -> (OneImageDenoiser, Diffusion, Vec<f32>, Vec<f32>) {
        let diff = Diffusion::new(Schedule::even(1000, 50).unwrap(), Variance::Small);
        let a: Vec<f32> = (0..48).map(|k| ((k * 7 % 19) as f32 / 9.5) - 1.0).collect();
        let b: Vec<f32> = (0..48).map(|k| ((k * 5 % 23) as f32 / 11.5) - 1.0).collect();
        (OneImageDenoiser::new(a.clone(), (3, 4, 4)).unwrap(), diff, a, b)
    }

    #[test]
    fn shapes_and_seeded_determinism() {
        let (o, diff, a, _) = setup();
        let i = step_for_time(&diff, 500);
        assert_eq!(diff.schedule.model_t(i), 500);
        let s1 = shared_latent_samples(&o, &diff, &a, i, 3, 9).unwrap();
        let s2 = shared_latent_samples(&o, &diff, &a, i, 3, 9).unwrap();
        assert_eq!(s1.len(), 3);
        assert_eq!(s1, s2);
        assert!(s1.iter().all(|s| s.len() == a.len()));
        assert_ne!(shared_latent_samples(&o, &diff, &a, i, 1, 10).unwrap()[0], s1[0]);
    }

    #[test]
    fn interpolation_at_lambda_zero_small_t_reproduces_first_image() {
        let (o, diff, a, b) = setup();
        let i = step_for_time(&diff, 20);
        let out = interpolate(&o, &diff, &a, &b, i, &[0.0, 0.5, 1.0], 3).unwrap();
        let err = out[0].iter().zip(&a).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(err < 0.05, "max error {err}");
        assert!(interpolate(&o, &diff, &a, &b[..47], i, &[0.0], 3).is_err());
        assert!(interpolate(&o, &diff, &a, &b, i, &[1.5], 3).is_err());
    }
}
