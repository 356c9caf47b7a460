//! Distortion measures on 8-bit samples (0–255 scale) and how they are averaged over a set.
//!
//! Conventions (also in README and bench/README.md):
//! - MSE, RMSE and PSNR are over the colour samples of an image (grey: one plane; RGB and
//!   opaque RGBA: R, G, B — alpha is not part of the distortion);
//! - PSNR = 10·log10(255² / MSE); an exact reconstruction (MSE = 0) has PSNR = +∞, which JSON
//!   writes as `null` and CSV as `inf`;
//! - over a set, [`SetDistortion`] reports both the RMSE/PSNR *of the mean MSE* (each image's
//!   MSE weighted equally) and the *mean of the per-image PSNRs*; the two differ (the second is
//!   what CompressAI's tables usually show; the first is what the DDPM paper's RMSE column is).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::image_io::RasterImage;

/// Peak value of 8-bit samples.
pub const PEAK: f64 = 255.0;

/// Mean squared error between two equally long sample slices (0–255 scale).
pub fn mse_u8(a: &[u8], b: &[u8]) -> Result<f64> {
    if a.len() != b.len() {
        return Err(Error::Parameter(format!("MSE of {} against {} samples", a.len(), b.len())));
    }
    if a.is_empty() {
        return Err(Error::Parameter("MSE of an empty image".into()));
    }
    let s: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x as i64 - y as i64;
            (d * d) as u64
        })
        .sum();
    Ok(s as f64 / a.len() as f64)
}

/// RMSE (0–255 scale) from an MSE.
pub fn rmse(mse: f64) -> f64 {
    mse.max(0.0).sqrt()
}

/// PSNR in dB from an MSE on the 0–255 scale (+∞ for MSE = 0).
pub fn psnr(mse: f64) -> f64 {
    if mse <= 0.0 {
        f64::INFINITY
    } else {
        10.0 * (PEAK * PEAK / mse).log10()
    }
}

/// The colour samples of an image, interleaved (grey: the plane; RGB: R, G, B; RGBA: alpha dropped).
pub fn colour_samples(img: &RasterImage) -> Vec<u8> {
    match img.channels {
        1 | 3 => img.data.clone(),
        _ => img.to_rgb(),
    }
}

/// MSE between two images of the same size over their colour samples. A grey image compared
/// with an RGB one is compared on R (which equals G and B for a grey-coded reconstruction).
pub fn image_mse(reference: &RasterImage, other: &RasterImage) -> Result<f64> {
    if (reference.width, reference.height) != (other.width, other.height) {
        return Err(Error::Parameter(format!(
            "image sizes differ: {}x{} against {}x{}",
            reference.width, reference.height, other.width, other.height
        )));
    }
    let a = colour_samples(reference);
    let mut b = colour_samples(other);
    let (ca, cb) = (colour_channels(reference), colour_channels(other));
    if ca == 1 && cb == 3 {
        b = b.chunks_exact(3).map(|p| p[0]).collect();
    } else if ca == 3 && cb == 1 {
        b = b.iter().flat_map(|&v| [v, v, v]).collect();
    }
    mse_u8(&a, &b)
}

fn colour_channels(img: &RasterImage) -> usize {
    if img.channels == 1 {
        1
    } else {
        3
    }
}

/// Distortion of one reconstruction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Distortion {
    pub mse: f64,
    pub rmse: f64,
    /// dB; +∞ (JSON null) for an exact reconstruction.
    pub psnr: f64,
}

impl Distortion {
    pub fn from_mse(mse: f64) -> Self {
        Self { mse, rmse: rmse(mse), psnr: psnr(mse) }
    }
}

/// Distortion averaged over a set of images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SetDistortion {
    /// Number of images.
    pub images: usize,
    /// Mean of the per-image MSEs.
    pub mse: f64,
    /// √(mean MSE).
    pub rmse: f64,
    /// PSNR of the mean MSE.
    pub psnr: f64,
    /// Mean of the per-image PSNRs (+∞ if any image is exact).
    pub mean_psnr: f64,
    /// Mean of the per-image RMSEs.
    pub mean_rmse: f64,
}

impl SetDistortion {
    /// Aggregates per-image MSEs (each image weighted equally).
    pub fn from_mses(mses: &[f64]) -> Result<Self> {
        if mses.is_empty() {
            return Err(Error::Parameter("no images to average".into()));
        }
        let n = mses.len() as f64;
        let mse = mses.iter().sum::<f64>() / n;
        let mean_psnr = mses.iter().map(|&m| psnr(m)).sum::<f64>() / n;
        let mean_rmse = mses.iter().map(|&m| rmse(m)).sum::<f64>() / n;
        Ok(Self { images: mses.len(), mse, rmse: rmse(mse), psnr: psnr(mse), mean_psnr, mean_rmse })
    }
}

/// Formats a float for CSV: fixed decimals, `inf`/`nan` spelled out.
pub fn csv_f64(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{v:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        // errors 1, 2, 3, 0 → MSE 14/4 = 3.5
        let m = mse_u8(&[10, 20, 30, 40], &[11, 18, 33, 40]).unwrap();
        assert_eq!(m, 3.5);
        assert!((rmse(m) - 3.5f64.sqrt()).abs() < 1e-12);
        // PSNR of MSE 1 is 20·log10(255) = 48.1308…
        assert!((psnr(1.0) - 48.130_803_608_679_1).abs() < 1e-9);
        assert_eq!(psnr(0.0), f64::INFINITY);
        assert!(mse_u8(&[1], &[1, 2]).is_err());
    }

    #[test]
    fn set_average_mse_versus_mean_psnr() {
        let s = SetDistortion::from_mses(&[1.0, 100.0]).unwrap();
        assert_eq!(s.mse, 50.5);
        assert!((s.psnr - psnr(50.5)).abs() < 1e-12);
        assert!((s.mean_psnr - (psnr(1.0) + psnr(100.0)) / 2.0).abs() < 1e-12);
        assert!(s.mean_psnr > s.psnr, "Jensen: mean of PSNRs exceeds PSNR of the mean MSE");
    }

    #[test]
    fn grey_against_rgb_and_alpha_ignored() {
        let g = RasterImage::new(2, 1, 1, vec![10, 20]).unwrap();
        let rgb = RasterImage::new(2, 1, 3, vec![10, 10, 10, 22, 22, 22]).unwrap();
        assert_eq!(image_mse(&g, &rgb).unwrap(), 2.0);
        let a = RasterImage::new(1, 1, 4, vec![1, 2, 3, 255]).unwrap();
        let b = RasterImage::new(1, 1, 3, vec![1, 2, 5]).unwrap();
        assert!((image_mse(&a, &b).unwrap() - 4.0 / 3.0).abs() < 1e-12);
    }
}
