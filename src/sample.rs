//! Sampling figures: ancestral samples, the progressive x̂_0 strip (the paper's Figure 6), the
//! reverse chain from a given latent, and a PNG grid writer.
//!
//! Noise is per image: x_T of image j comes from the stream (seed, j, u64::MAX) and the z of
//! chain step i from (seed, j, i) ([`NormalRng::for_stream`]), so image j of a batch does not
//! depend on the batch size.

use std::path::Path;

use crate::diffusion::{check_eps, Denoiser, Diffusion, NormalRng};
use crate::error::{Error, Result};

/// Largest grid image [`grid_png`] writes, in pixels.
pub const MAX_GRID_PIXELS: usize = 1 << 28;

fn dims(den: &dyn Denoiser) -> Result<usize> {
    let (c, h, w) = den.image_shape();
    let d = c * h * w;
    if d == 0 {
        return Err(Error::Parameter(
            "denoiser image shape has zero size".into(),
        ));
    }
    Ok(d)
}

fn per_image_normals(seed: u64, n: usize, d: usize, stream: u64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * d);
    for j in 0..n {
        let mut rng = NormalRng::for_stream(seed, j as u64, stream);
        out.extend(rng.normals::<f32>(d));
    }
    out
}

/// x_T ~ N(0, I) for n images (stream (seed, j, u64::MAX)).
pub fn initial_noise(den: &dyn Denoiser, n: usize, seed: u64) -> Result<Vec<f32>> {
    let d = dims(den)?;
    Ok(per_image_normals(seed, n, d, u64::MAX))
}

fn check_start(
    diffusion: &Diffusion,
    x_t: &[f32],
    n: usize,
    d: usize,
    i_start: usize,
) -> Result<()> {
    if n == 0 || x_t.len() != n * d {
        return Err(Error::Parameter(format!(
            "{} values are not {n} images of {d}",
            x_t.len()
        )));
    }
    if i_start >= diffusion.steps() {
        return Err(Error::Parameter(format!(
            "start step {i_start} is outside the {}-step chain",
            diffusion.steps()
        )));
    }
    Ok(())
}

/// The ancestral reverse chain from `x_t` = x_{τ_{i_start+1}} (0-based chain step `i_start`, the
/// network is called first at `taus[i_start]`) down to x_0: steps i_start, …, 0, each
/// x_{τ_i} = μ_θ + σ z, no noise at the last step. Returns x̂_0 in [−1, 1], NCHW.
/// `progress(done, i_start + 1)` after each step.
pub fn sample_from(
    den: &dyn Denoiser,
    diffusion: &Diffusion,
    x_t: &[f32],
    n: usize,
    i_start: usize,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let d = dims(den)?;
    check_start(diffusion, x_t, n, d, i_start)?;
    let mut x = x_t.to_vec();
    for (done, i) in (0..=i_start).rev().enumerate() {
        let eps = den.eps(&x, n, diffusion.schedule.model_t(i))?;
        check_eps(&eps, n * d)?;
        let z = if i > 0 {
            per_image_normals(seed, n, d, i as u64)
        } else {
            Vec::new()
        };
        x = diffusion.p_sample_step(&x, &eps, i, &z);
        progress(done + 1, i_start + 1);
    }
    Ok(x)
}

/// Deterministic DDIM (η = 0) from `x_t` at chain step `i_start` to x̂_0.
pub fn ddim_from(
    den: &dyn Denoiser,
    diffusion: &Diffusion,
    x_t: &[f32],
    n: usize,
    i_start: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let d = dims(den)?;
    check_start(diffusion, x_t, n, d, i_start)?;
    let mut x = x_t.to_vec();
    for (done, i) in (0..=i_start).rev().enumerate() {
        let eps = den.eps(&x, n, diffusion.schedule.model_t(i))?;
        check_eps(&eps, n * d)?;
        x = diffusion.ddim_step(&x, &eps, i);
        progress(done + 1, i_start + 1);
    }
    Ok(x)
}

/// n ancestral samples (x_T from the seed, then [`sample_from`] over the whole chain), NCHW in
/// [−1, 1]. `progress(done, K)`.
pub fn sample(
    den: &dyn Denoiser,
    diffusion: &Diffusion,
    n: usize,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let x_t = initial_noise(den, n, seed)?;
    sample_from(
        den,
        diffusion,
        &x_t,
        n,
        diffusion.steps() - 1,
        seed,
        progress,
    )
}

/// The chain steps at which [`progressive_strip`] records x̂_0: `frames` steps evenly spaced from
/// the first reverse step (K − 1) to the last (0), descending.
pub fn strip_steps(k: usize, frames: usize) -> Vec<usize> {
    if frames <= 1 {
        return vec![0];
    }
    (0..frames)
        .map(|f| (((k - 1) as f64) * (1.0 - f as f64 / (frames - 1) as f64)).round() as usize)
        .collect()
}

/// Ancestral sampling that records the predicted x̂_0 (clipped) at `frames` evenly spaced reverse
/// steps ([`strip_steps`]), the paper's Figure 6. Returns n·frames images, NCHW, image j's frame f
/// at index j·frames + f (so a grid with `cols = frames` shows one sample per row, noise to
/// data from left to right); the last frame is the final sample. `frames` in 1..=K.
pub fn progressive_strip(
    den: &dyn Denoiser,
    diffusion: &Diffusion,
    n: usize,
    frames: usize,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let d = dims(den)?;
    let k = diffusion.steps();
    if n == 0 || frames == 0 || frames > k {
        return Err(Error::Parameter(format!(
            "progressive strip needs n >= 1 and 1 <= frames <= {k} (got n = {n}, frames = {frames})"
        )));
    }
    let record = strip_steps(k, frames);
    let mut out = vec![0f32; n * frames * d];
    let mut x = initial_noise(den, n, seed)?;
    let mut f = 0;
    for (done, i) in (0..k).rev().enumerate() {
        let eps = den.eps(&x, n, diffusion.schedule.model_t(i))?;
        check_eps(&eps, n * d)?;
        while f < frames && record[f] == i {
            let x0 = diffusion.predict_x0(&x, &eps, i);
            for j in 0..n {
                let dst = (j * frames + f) * d;
                out[dst..dst + d].copy_from_slice(&x0[j * d..(j + 1) * d]);
            }
            f += 1;
        }
        let z = if i > 0 {
            per_image_normals(seed, n, d, i as u64)
        } else {
            Vec::new()
        };
        x = diffusion.p_sample_step(&x, &eps, i, &z);
        progress(done + 1, k);
    }
    Ok(out)
}

/// Writes n images (NCHW uint8, c = 1 grey or 3 RGB; a 4th channel is ignored) as a PNG grid with
/// `cols` columns and a 2-pixel white gap between images (unused cells are white).
pub fn grid_png(
    images_u8: &[u8],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    cols: usize,
    path: &Path,
) -> Result<()> {
    const GAP: usize = 2;
    if n == 0 || cols == 0 || h == 0 || w == 0 || !matches!(c, 1 | 3 | 4) {
        return Err(Error::Parameter(format!(
            "grid needs n, cols, h, w >= 1 and c in {{1, 3, 4}} (got n={n} c={c} h={h} w={w} cols={cols})"
        )));
    }
    let d = c * h * w;
    if images_u8.len() != n * d {
        return Err(Error::Parameter(format!(
            "{} bytes are not {n} images of {c}x{h}x{w}",
            images_u8.len()
        )));
    }
    let cols = cols.min(n);
    let rows = n.div_ceil(cols);
    let gw = cols * w + (cols - 1) * GAP;
    let gh = rows * h + (rows - 1) * GAP;
    if gw.saturating_mul(gh) > MAX_GRID_PIXELS || gw > u32::MAX as usize || gh > u32::MAX as usize {
        return Err(Error::LimitsExceeded(format!(
            "grid of {gw}x{gh} pixels is too large"
        )));
    }
    let mut img = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([255, 255, 255]));
    let plane = h * w;
    for j in 0..n {
        let (r, q) = (j / cols, j % cols);
        let (ox, oy) = (q * (w + GAP), r * (h + GAP));
        let src = &images_u8[j * d..(j + 1) * d];
        for y in 0..h {
            for x in 0..w {
                let k = y * w + x;
                let px = if c == 1 {
                    [src[k]; 3]
                } else {
                    [src[k], src[plane + k], src[2 * plane + k]]
                };
                img.put_pixel((ox + x) as u32, (oy + y) as u32, image::Rgb(px));
            }
        }
    }
    img.save_with_format(path, image::ImageFormat::Png)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::OneImageDenoiser;
    use crate::schedule::{Schedule, Variance};

    /// ε* for data that is one fixed image: every sample must end at that image.
    fn oracle() -> OneImageDenoiser {
        let x0 = vec![-1.0, -0.5, 0.0, 0.5, 1.0, 0.25, -0.25, 0.75, -0.75, 0.1, 0.2, 0.3];
        OneImageDenoiser::new(x0, (3, 2, 2)).unwrap()
    }

    #[test]
    fn samples_converge_to_the_only_image() {
        let o = oracle();
        let diff = Diffusion::new(Schedule::even(1000, 25).unwrap(), Variance::Small);
        let mut calls = 0;
        let s = sample(&o, &diff, 3, 9, &mut |_, _| calls += 1).unwrap();
        assert_eq!(calls, 25);
        assert_eq!(s.len(), 36);
        for (k, v) in s.iter().enumerate() {
            assert!((v - o.x0[k % 12]).abs() < 1e-4, "{k}: {v}");
        }
        // image j does not depend on n
        let one = sample(&o, &diff, 1, 9, &mut |_, _| {}).unwrap();
        assert_eq!(&one[..], &s[..12]);
        // DDIM from pure noise also lands on it
        let xt = initial_noise(&o, 2, 3).unwrap();
        let dd = ddim_from(&o, &diff, &xt, 2, 24, &mut |_, _| {}).unwrap();
        assert!(dd
            .iter()
            .enumerate()
            .all(|(k, v)| (v - o.x0[k % 12]).abs() < 1e-4));
        // sample_from a latent at a middle step
        let mid = sample_from(&o, &diff, &xt, 2, 10, 1, &mut |_, _| {}).unwrap();
        assert!(mid
            .iter()
            .enumerate()
            .all(|(k, v)| (v - o.x0[k % 12]).abs() < 1e-4));
        assert!(sample_from(&o, &diff, &xt, 2, 25, 1, &mut |_, _| {}).is_err());
        assert!(sample_from(&o, &diff, &xt[..5], 2, 3, 1, &mut |_, _| {}).is_err());
    }

    #[test]
    fn strip_layout() {
        assert_eq!(strip_steps(25, 5), vec![24, 18, 12, 6, 0]);
        assert_eq!(strip_steps(10, 1), vec![0]);
        let o = oracle();
        let diff = Diffusion::new(Schedule::even(1000, 25).unwrap(), Variance::Large);
        let st = progressive_strip(&o, &diff, 2, 5, 4, &mut |_, _| {}).unwrap();
        assert_eq!(st.len(), 2 * 5 * 12);
        // with ε*, every predicted x̂_0 is the image (up to f32 rounding amplified by 1/√ᾱ)
        assert!(st
            .iter()
            .enumerate()
            .all(|(k, v)| (v - o.x0[k % 12]).abs() < 1e-3));
        // the last frame equals the full sample
        let s = sample(&o, &diff, 2, 4, &mut |_, _| {}).unwrap();
        assert_eq!(&st[4 * 12..5 * 12], &s[..12]);
        assert!(progressive_strip(&o, &diff, 2, 26, 4, &mut |_, _| {}).is_err());
    }

    #[test]
    fn grid_png_layout() {
        let dir = std::env::temp_dir().join(format!("ddpm-codec-grid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.png");
        // 3 RGB images 2×2: image j has R = 10j, G = 100, B = 200
        let mut imgs = Vec::new();
        for j in 0..3u8 {
            imgs.extend([10 * j; 4]);
            imgs.extend([100; 4]);
            imgs.extend([200; 4]);
        }
        grid_png(&imgs, 3, 3, 2, 2, 2, &path).unwrap();
        let g = image::open(&path).unwrap().to_rgb8();
        assert_eq!(g.dimensions(), (2 * 2 + 2, 2 * 2 + 2));
        assert_eq!(g.get_pixel(0, 0).0, [0, 100, 200]);
        assert_eq!(g.get_pixel(2, 0).0, [255, 255, 255]); // gap
        assert_eq!(g.get_pixel(4, 1).0, [10, 100, 200]);
        assert_eq!(g.get_pixel(1, 4).0, [20, 100, 200]);
        assert_eq!(g.get_pixel(5, 5).0, [255, 255, 255]); // empty cell
        assert!(grid_png(&imgs, 3, 3, 2, 2, 0, &path).is_err());
        assert!(grid_png(&imgs[..5], 3, 3, 2, 2, 2, &path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
