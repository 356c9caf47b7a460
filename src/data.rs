//! Data sets as NCHW uint8 arrays: CIFAR-10 binary batches and folders of 32×32 images, plus the
//! map between pixel levels k ∈ {0..255} and model values x = 2k/255 − 1 ∈ [−1, 1].

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Side length of CIFAR-10 images (and of images accepted by [`load_png_folder`]).
pub const CIFAR_SIDE: usize = 32;
/// Bytes of one CIFAR-10 image (3×32×32, planar R, G, B).
pub const CIFAR_IMAGE_BYTES: usize = 3 * CIFAR_SIDE * CIFAR_SIDE;
/// Bytes of one record of a CIFAR-10 binary batch: 1 label byte + the image.
pub const CIFAR_RECORD_BYTES: usize = 1 + CIFAR_IMAGE_BYTES;
/// Largest number of images any loader returns in one call (12 GB of uint8 would be absurd for
/// this tool; 1M CIFAR-sized images is 3 GB).
pub const MAX_IMAGES: usize = 1_000_000;

/// Which CIFAR-10 split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// data_batch_1..5.bin (50,000 images).
    Train,
    /// test_batch.bin (10,000 images).
    Test,
}

impl std::str::FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            _ => Err(Error::Parameter(format!(
                "unknown split {s:?} (expected train or test)"
            ))),
        }
    }
}

/// Pixel level k → model value 2k/255 − 1.
#[inline]
pub fn to_model_range(k: u8) -> f32 {
    (2.0 * k as f64 / 255.0 - 1.0) as f32
}

/// Model value → nearest pixel level: round((x + 1)·255/2), clamped to 0..=255 (NaN → 0).
#[inline]
pub fn from_model_range(x: f32) -> u8 {
    let v = ((x as f64 + 1.0) * 127.5).round();
    if v.is_nan() {
        0
    } else {
        v.clamp(0.0, 255.0) as u8
    }
}

/// [`to_model_range`] over a slice.
pub fn u8_to_model(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|&k| to_model_range(k)).collect()
}

/// [`from_model_range`] over a slice.
pub fn model_to_u8(values: &[f32]) -> Vec<u8> {
    values.iter().map(|&x| from_model_range(x)).collect()
}

fn io_ctx(path: &Path, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

fn check_limit(limit: Option<usize>) -> Result<usize> {
    let l = limit.unwrap_or(MAX_IMAGES);
    if l > MAX_IMAGES {
        return Err(Error::LimitsExceeded(format!(
            "limit {l} exceeds {MAX_IMAGES} images"
        )));
    }
    Ok(l)
}

/// Loads CIFAR-10 binary batches from `dir` (data_batch_1..5.bin for [`Split::Train`],
/// test_batch.bin for [`Split::Test`]): 3073-byte records (label byte, 1024 R, 1024 G, 1024 B).
/// Returns the images as N×3×32×32 NCHW uint8 and N; at most `limit` images, in file order.
/// Files are validated (size a multiple of 3073, labels < 10) before anything is allocated.
pub fn load_cifar10(dir: &Path, split: Split, limit: Option<usize>) -> Result<(Vec<u8>, usize)> {
    let limit = check_limit(limit)?;
    let files: Vec<PathBuf> = match split {
        Split::Train => (1..=5)
            .map(|k| dir.join(format!("data_batch_{k}.bin")))
            .collect(),
        Split::Test => vec![dir.join("test_batch.bin")],
    };
    // Sizes first.
    let mut counts = Vec::with_capacity(files.len());
    let mut total = 0usize;
    for f in &files {
        let len = std::fs::metadata(f).map_err(|e| io_ctx(f, e))?.len();
        if len == 0 || len % CIFAR_RECORD_BYTES as u64 != 0 {
            return Err(Error::Parameter(format!(
                "{}: {len} bytes is not a CIFAR-10 binary batch (a multiple of {CIFAR_RECORD_BYTES})",
                f.display()
            )));
        }
        let c = (len / CIFAR_RECORD_BYTES as u64) as usize;
        counts.push(c);
        total = total.saturating_add(c);
    }
    let n = total.min(limit);
    let mut out = Vec::with_capacity(n * CIFAR_IMAGE_BYTES);
    let mut rec = vec![0u8; CIFAR_RECORD_BYTES];
    'files: for (f, &c) in files.iter().zip(&counts) {
        let mut file = File::open(f).map_err(|e| io_ctx(f, e))?;
        for r in 0..c {
            if out.len() == n * CIFAR_IMAGE_BYTES {
                break 'files;
            }
            file.read_exact(&mut rec).map_err(|e| io_ctx(f, e))?;
            if rec[0] >= 10 {
                return Err(Error::Parameter(format!(
                    "{}: record {r} has label {} (CIFAR-10 labels are 0..9)",
                    f.display(),
                    rec[0]
                )));
            }
            out.extend_from_slice(&rec[1..]);
        }
    }
    Ok((out, n))
}

/// A file with a PNG/JPEG extension (any case).
pub(crate) fn is_image_file(p: &Path) -> bool {
    p.is_file()
        && p.extension()
            .and_then(|e| e.to_str())
            .map(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
            .unwrap_or(false)
}

/// Loads a folder of 32×32 PNG/JPEG images (extensions .png/.jpg/.jpeg, any case; other files
/// are ignored), sorted by file name, at most `limit`. Grey images are replicated to 3 channels
/// and alpha is dropped (RGBA → RGB without compositing). Any other size is an
/// [`Error::Parameter`]; the size is read from the header before decoding. Returns N×3×32×32
/// NCHW uint8 and N.
pub fn load_png_folder(dir: &Path, limit: Option<usize>) -> Result<(Vec<u8>, usize)> {
    let limit = check_limit(limit)?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_ctx(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_image_file(p))
        .collect();
    paths.sort();
    paths.truncate(limit);
    if paths.is_empty() {
        return Err(Error::Parameter(format!(
            "{}: no .png/.jpg/.jpeg images found",
            dir.display()
        )));
    }
    let n = paths.len();
    let plane = CIFAR_SIDE * CIFAR_SIDE;
    let mut out = Vec::with_capacity(n * CIFAR_IMAGE_BYTES);
    for p in &paths {
        let reader = image::ImageReader::open(p)
            .map_err(|e| io_ctx(p, e))?
            .with_guessed_format()
            .map_err(|e| io_ctx(p, e))?;
        let (w, h) = reader
            .into_dimensions()
            .map_err(|e| Error::Image(format!("{}: {e}", p.display())))?;
        if (w as usize, h as usize) != (CIFAR_SIDE, CIFAR_SIDE) {
            return Err(Error::Parameter(format!(
                "{}: image is {w}x{h}, expected {CIFAR_SIDE}x{CIFAR_SIDE}",
                p.display()
            )));
        }
        let img = image::ImageReader::open(p)
            .map_err(|e| io_ctx(p, e))?
            .with_guessed_format()
            .map_err(|e| io_ctx(p, e))?
            .decode()
            .map_err(|e| Error::Image(format!("{}: {e}", p.display())))?
            .to_rgb8();
        if img.dimensions() != (CIFAR_SIDE as u32, CIFAR_SIDE as u32) {
            return Err(Error::Parameter(format!(
                "{}: decoded size differs from the header",
                p.display()
            )));
        }
        let raw = img.as_raw();
        let base = out.len();
        out.resize(base + CIFAR_IMAGE_BYTES, 0);
        for (k, px) in raw.chunks_exact(3).enumerate() {
            for ch in 0..3 {
                out[base + ch * plane + k] = px[ch];
            }
        }
    }
    Ok((out, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ddpm-codec-data-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn record(label: u8, seed: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend((0..CIFAR_IMAGE_BYTES).map(|k| (k as u8).wrapping_mul(7).wrapping_add(seed)));
        r
    }

    #[test]
    fn model_range_roundtrip() {
        assert_eq!(to_model_range(0), -1.0);
        assert_eq!(to_model_range(255), 1.0);
        assert!((to_model_range(128) - (1.0 / 255.0) as f32).abs() < 1e-7);
        for k in 0..=255u8 {
            assert_eq!(from_model_range(to_model_range(k)), k);
            // half a level either way still rounds back
            assert_eq!(from_model_range(to_model_range(k) + 0.9 / 255.0), k);
            assert_eq!(from_model_range(to_model_range(k) - 0.9 / 255.0), k);
        }
        assert_eq!(from_model_range(3.0), 255);
        assert_eq!(from_model_range(-7.0), 0);
        assert_eq!(from_model_range(f32::NAN), 0);
        assert_eq!(model_to_u8(&u8_to_model(&[0, 9, 200])), vec![0, 9, 200]);
    }

    #[test]
    fn cifar_reader() {
        let d = tmpdir("cifar");
        let mut f = File::create(d.join("test_batch.bin")).unwrap();
        for s in 0..3u8 {
            f.write_all(&record(s, s)).unwrap();
        }
        drop(f);
        let (imgs, n) = load_cifar10(&d, Split::Test, None).unwrap();
        assert_eq!(n, 3);
        assert_eq!(imgs.len(), 3 * CIFAR_IMAGE_BYTES);
        assert_eq!(
            &imgs[CIFAR_IMAGE_BYTES..2 * CIFAR_IMAGE_BYTES],
            &record(1, 1)[1..]
        );
        let (imgs, n) = load_cifar10(&d, Split::Test, Some(2)).unwrap();
        assert_eq!((n, imgs.len()), (2, 2 * CIFAR_IMAGE_BYTES));
        // train split: missing files → Io error
        assert!(matches!(
            load_cifar10(&d, Split::Train, None),
            Err(Error::Io(_))
        ));
        // bad size, bad label
        std::fs::write(d.join("test_batch.bin"), vec![0u8; CIFAR_RECORD_BYTES + 5]).unwrap();
        assert!(matches!(
            load_cifar10(&d, Split::Test, None),
            Err(Error::Parameter(_))
        ));
        std::fs::write(d.join("test_batch.bin"), record(11, 0)).unwrap();
        assert!(matches!(
            load_cifar10(&d, Split::Test, None),
            Err(Error::Parameter(_))
        ));
        assert!(load_cifar10(&d, Split::Test, Some(MAX_IMAGES + 1)).is_err());
        // five train batches, limit across files
        for k in 1..=5u8 {
            std::fs::write(
                d.join(format!("data_batch_{k}.bin")),
                [record(k, k), record(0, 0)].concat(),
            )
            .unwrap();
        }
        let (imgs, n) = load_cifar10(&d, Split::Train, Some(3)).unwrap();
        assert_eq!(n, 3);
        assert_eq!(&imgs[2 * CIFAR_IMAGE_BYTES..], &record(2, 2)[1..]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn png_folder_reader() {
        let d = tmpdir("png");
        let mut img = image::RgbImage::new(32, 32);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = image::Rgb([x as u8, y as u8, 200]);
        }
        img.save(d.join("b.png")).unwrap();
        let grey = image::GrayImage::from_pixel(32, 32, image::Luma([77]));
        grey.save(d.join("a.PNG")).unwrap();
        std::fs::write(d.join("notes.txt"), b"ignored").unwrap();
        let (imgs, n) = load_png_folder(&d, None).unwrap();
        assert_eq!(n, 2);
        // a.PNG first (sorted), grey replicated
        assert!(imgs[..CIFAR_IMAGE_BYTES].iter().all(|&v| v == 77));
        let b = &imgs[CIFAR_IMAGE_BYTES..];
        // NCHW: R plane holds x, G plane y, B plane 200; pixel (x=5, y=3)
        assert_eq!(b[3 * 32 + 5], 5);
        assert_eq!(b[1024 + 3 * 32 + 5], 3);
        assert_eq!(b[2048 + 3 * 32 + 5], 200);
        let (_, n) = load_png_folder(&d, Some(1)).unwrap();
        assert_eq!(n, 1);
        // wrong size → Parameter; garbage → Image
        image::RgbImage::new(16, 32).save(d.join("c.png")).unwrap();
        assert!(matches!(
            load_png_folder(&d, None),
            Err(Error::Parameter(_))
        ));
        std::fs::remove_file(d.join("c.png")).unwrap();
        std::fs::write(d.join("d.png"), b"not a png at all").unwrap();
        assert!(load_png_folder(&d, None).is_err());
        let empty = tmpdir("empty");
        assert!(matches!(
            load_png_folder(&empty, None),
            Err(Error::Parameter(_))
        ));
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&empty);
    }
}
