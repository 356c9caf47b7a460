//! Reading and writing images (PNG, JPEG) with limits checked before decoding.
//!
//! Channel handling (documented in README and format/SPEC.md):
//! - grey (L8) is coded as RGB with R = G = B; the lossless final step codes one plane;
//! - RGBA whose alpha is 255 everywhere is coded as RGB and restored with an opaque alpha;
//!   RGBA with any transparent pixel is rejected (flatten it first);
//! - 16-bit and float images are rejected (the model codes 8-bit samples).

use std::path::Path;

use crate::error::{Error, Result};

/// Largest image the codec accepts (pixels), checked before decoding.
pub const MAX_PIXELS: u64 = 1 << 26;

/// An 8-bit image, samples interleaved row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RasterImage {
    pub width: u32,
    pub height: u32,
    /// 1 (grey), 3 (RGB) or 4 (RGBA, alpha all 255).
    pub channels: u8,
    pub data: Vec<u8>,
}

impl RasterImage {
    /// Builds an image, checking the buffer length.
    pub fn new(width: u32, height: u32, channels: u8, data: Vec<u8>) -> Result<Self> {
        if !matches!(channels, 1 | 3 | 4) {
            return Err(Error::Parameter(format!("unsupported channel count {channels}")));
        }
        if width == 0 || height == 0 {
            return Err(Error::Parameter("empty image".into()));
        }
        if (width as u64) * (height as u64) > MAX_PIXELS {
            return Err(Error::LimitsExceeded(format!("{width}x{height} exceeds {MAX_PIXELS} pixels")));
        }
        let want = width as usize * height as usize * channels as usize;
        if data.len() != want {
            return Err(Error::Parameter(format!("expected {want} samples, got {}", data.len())));
        }
        Ok(Self { width, height, channels, data })
    }

    /// The image as interleaved RGB (grey replicated; alpha dropped — it is 255 by construction).
    pub fn to_rgb(&self) -> Vec<u8> {
        match self.channels {
            3 => self.data.clone(),
            1 => self.data.iter().flat_map(|&v| [v, v, v]).collect(),
            _ => self.data.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        }
    }

    /// Rebuilds an image of `channels` from interleaved RGB.
    pub fn from_rgb(width: u32, height: u32, channels: u8, rgb: &[u8]) -> Result<Self> {
        let data = match channels {
            3 => rgb.to_vec(),
            1 => rgb.chunks_exact(3).map(|p| p[0]).collect(),
            4 => rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
            c => return Err(Error::Parameter(format!("unsupported channel count {c}"))),
        };
        Self::new(width, height, channels, data)
    }

    /// Interleaved samples as they are checksummed in the stream header.
    pub fn samples(&self) -> &[u8] {
        &self.data
    }
}

/// Decodes an image from bytes (PNG or JPEG; format guessed from content).
pub fn decode_image(bytes: &[u8]) -> Result<RasterImage> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Image(e.to_string()))?;
    if reader.format().is_none() {
        return Err(Error::Image("not a PNG or JPEG image".into()));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(65535);
    limits.max_image_height = Some(65535);
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits.clone());
    let (w, h) = reader.into_dimensions().map_err(|e| Error::Image(e.to_string()))?;
    if (w as u64) * (h as u64) > MAX_PIXELS {
        return Err(Error::LimitsExceeded(format!("{w}x{h} exceeds {MAX_PIXELS} pixels")));
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Image(e.to_string()))?;
    reader.limits(limits);
    let img = reader.decode()?;
    use image::DynamicImage as D;
    match img {
        D::ImageLuma8(g) => RasterImage::new(w, h, 1, g.into_raw()),
        D::ImageRgb8(c) => RasterImage::new(w, h, 3, c.into_raw()),
        D::ImageRgba8(c) => {
            let raw = c.into_raw();
            if raw.chunks_exact(4).any(|p| p[3] != 255) {
                return Err(Error::Image(
                    "image has transparent pixels; ddpm-codec codes opaque images only (flatten the alpha first)".into(),
                ));
            }
            RasterImage::new(w, h, 4, raw)
        }
        D::ImageLumaA8(c) => {
            let raw = c.into_raw();
            if raw.chunks_exact(2).any(|p| p[1] != 255) {
                return Err(Error::Image(
                    "image has transparent pixels; ddpm-codec codes opaque images only (flatten the alpha first)".into(),
                ));
            }
            RasterImage::new(w, h, 1, raw.chunks_exact(2).map(|p| p[0]).collect())
        }
        other => Err(Error::Image(format!(
            "unsupported sample format {:?}: ddpm-codec codes 8-bit grey, RGB or opaque RGBA",
            other.color()
        ))),
    }
}

/// Reads an image file.
pub fn read_image(path: &Path) -> Result<RasterImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))))?;
    decode_image(&bytes)
}

/// Writes an image as PNG.
pub fn write_png(path: &Path, img: &RasterImage) -> Result<()> {
    let ct = match img.channels {
        1 => image::ExtendedColorType::L8,
        3 => image::ExtendedColorType::Rgb8,
        _ => image::ExtendedColorType::Rgba8,
    };
    image::save_buffer_with_format(path, &img.data, img.width, img.height, ct, image::ImageFormat::Png)?;
    Ok(())
}

/// Encodes an image as PNG bytes.
pub fn png_bytes(img: &RasterImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let ct = match img.channels {
        1 => image::ExtendedColorType::L8,
        3 => image::ExtendedColorType::Rgb8,
        _ => image::ExtendedColorType::Rgba8,
    };
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&img.data, img.width, img.height, ct)
        .map_err(|e| Error::Image(e.to_string()))?;
    Ok(out)
}

use image::ImageEncoder;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_grey_rgb_rgba() {
        for c in [1u8, 3, 4] {
            let mut data: Vec<u8> = (0..5 * 3 * c as usize).map(|i| (i * 37 % 256) as u8).collect();
            if c == 4 {
                data.chunks_exact_mut(4).for_each(|p| p[3] = 255);
            }
            let img = RasterImage::new(5, 3, c, data).unwrap();
            let back = decode_image(&png_bytes(&img).unwrap()).unwrap();
            assert_eq!(back, img);
        }
    }

    #[test]
    fn transparent_alpha_is_rejected() {
        let img = RasterImage { width: 1, height: 1, channels: 4, data: vec![1, 2, 3, 4] };
        let err = decode_image(&png_bytes(&img).unwrap()).unwrap_err();
        assert!(err.to_string().contains("transparent"), "{err}");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_image(b"not an image at all").is_err());
        assert!(decode_image(&[0x89, b'P', b'N', b'G', 13, 10, 26, 10, 0, 0]).is_err());
    }

    #[test]
    fn rgb_conversions_round_trip() {
        let g = RasterImage::new(2, 1, 1, vec![7, 9]).unwrap();
        let rgb = g.to_rgb();
        assert_eq!(rgb, vec![7, 7, 7, 9, 9, 9]);
        assert_eq!(RasterImage::from_rgb(2, 1, 1, &rgb).unwrap(), g);
    }
}
