//! Classical codecs as external programs, for side-by-side rate–distortion and lossless
//! numbers on the same images: JPEG (libjpeg-turbo `cjpeg`/`djpeg`), WebP (`cwebp`/`dwebp`),
//! JPEG XL (`cjxl`/`djxl`) and PNG (the `image` crate at best compression, then `optipng -o2`).
//!
//! Every measurement is of a whole file (headers included) written to a private temporary
//! folder; distortion is computed from the pixels the codec's own decoder writes back (PNM).
//! Absent programs are detected up front ([`Tools::detect`]) and their codecs skipped with a
//! note — nothing here is needed by the codec itself or by the tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::image_io::RasterImage;

/// Paths of the external programs found on `PATH` (None: absent).
#[derive(Debug, Clone, Default)]
pub struct Tools {
    pub cjpeg: Option<PathBuf>,
    pub djpeg: Option<PathBuf>,
    pub cwebp: Option<PathBuf>,
    pub dwebp: Option<PathBuf>,
    pub cjxl: Option<PathBuf>,
    pub djxl: Option<PathBuf>,
    pub optipng: Option<PathBuf>,
}

/// Finds an executable on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

impl Tools {
    /// Looks the programs up on `PATH`.
    pub fn detect() -> Self {
        Self {
            cjpeg: find_program("cjpeg"),
            djpeg: find_program("djpeg"),
            cwebp: find_program("cwebp"),
            dwebp: find_program("dwebp"),
            cjxl: find_program("cjxl"),
            djxl: find_program("djxl"),
            optipng: find_program("optipng"),
        }
    }

    /// Whether both programs of a codec are present.
    pub fn has(&self, c: Codec) -> bool {
        match c {
            Codec::Jpeg => self.cjpeg.is_some() && self.djpeg.is_some(),
            Codec::Webp | Codec::WebpNearLossless => self.cwebp.is_some() && self.dwebp.is_some(),
            Codec::Jxl => self.cjxl.is_some() && self.djxl.is_some(),
        }
    }

    /// One line per codec that will be skipped (missing programs).
    pub fn notes(&self) -> Vec<String> {
        let mut v = Vec::new();
        for c in Codec::ALL {
            if !self.has(c) {
                v.push(format!("{}: skipped ({} not found on PATH)", c.name(), c.programs()));
            }
        }
        if self.optipng.is_none() {
            v.push("png: optipng not found; PNG is the image crate's output at best compression".into());
        }
        v
    }
}

/// A lossy classical codec (one rate–distortion curve each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Codec {
    Jpeg,
    Webp,
    WebpNearLossless,
    Jxl,
}

impl Codec {
    pub const ALL: [Codec; 4] = [Codec::Jpeg, Codec::Webp, Codec::WebpNearLossless, Codec::Jxl];

    /// Curve name in CSV/JSON/plots.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Jpeg => "jpeg",
            Codec::Webp => "webp",
            Codec::WebpNearLossless => "webp-near-lossless",
            Codec::Jxl => "jpeg-xl",
        }
    }

    fn programs(self) -> &'static str {
        match self {
            Codec::Jpeg => "cjpeg/djpeg",
            Codec::Webp | Codec::WebpNearLossless => "cwebp/dwebp",
            Codec::Jxl => "cjxl/djxl",
        }
    }

    /// How the files are made (for descriptions).
    pub fn description(self) -> &'static str {
        match self {
            Codec::Jpeg => "libjpeg-turbo: cjpeg -quality q -optimize (default 4:2:0), djpeg -pnm; whole .jpg files",
            Codec::Webp => "libwebp: cwebp -q q (defaults, -m 4), dwebp -ppm; last point cwebp -lossless -z 9; whole .webp files",
            Codec::WebpNearLossless => "libwebp: cwebp -near_lossless p (lossless mode with pre-quantisation; p = 100 is lossless), dwebp -ppm",
            Codec::Jxl => "libjxl: cjxl -d distance -e 7, djxl to PPM; last point cjxl -d 0 -e 7 (lossless); whole .jxl files",
        }
    }

    /// The settings of this codec's curve, lowest rate first (roughly).
    pub fn settings(self) -> Vec<Setting> {
        match self {
            Codec::Jpeg => [5u32, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95, 98, 100]
                .iter()
                .map(|&q| Setting::new(self, format!("q{q}"), vec!["-quality".into(), q.to_string(), "-optimize".into()], false))
                .collect(),
            Codec::Webp => {
                let mut v: Vec<Setting> = [0u32, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100]
                    .iter()
                    .map(|&q| Setting::new(self, format!("q{q}"), vec!["-q".into(), q.to_string()], false))
                    .collect();
                v.push(Setting::new(self, "lossless".into(), vec!["-lossless".into(), "-z".into(), "9".into()], true));
                v
            }
            Codec::WebpNearLossless => [20u32, 40, 60, 80, 100]
                .iter()
                .map(|&p| {
                    Setting::new(
                        self,
                        format!("nl{p}"),
                        vec!["-near_lossless".into(), p.to_string(), "-z".into(), "9".into()],
                        p == 100,
                    )
                })
                .collect(),
            Codec::Jxl => {
                let mut v: Vec<Setting> = ["8", "6", "4", "3", "2", "1.5", "1", "0.7", "0.5", "0.3", "0.2", "0.1"]
                    .iter()
                    .map(|d| Setting::new(self, format!("d{d}"), vec!["-d".into(), d.to_string(), "-e".into(), "7".into()], false))
                    .collect();
                v.push(Setting::new(self, "lossless".into(), vec!["-d".into(), "0".into(), "-e".into(), "7".into()], true));
                v
            }
        }
    }
}

/// One encoder setting (a point of a curve).
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub codec: Codec,
    /// Short label ("q50", "d1", "lossless").
    pub param: String,
    /// Encoder arguments besides input and output.
    pub args: Vec<String>,
    /// Expected to reproduce the input exactly.
    pub lossless: bool,
}

impl Setting {
    fn new(codec: Codec, param: String, args: Vec<String>, lossless: bool) -> Self {
        Self { codec, param, args, lossless }
    }
}

/// A private temporary folder, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TempDir {
    pub fn new(tag: &str) -> Result<Self> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ddpm-codec-{tag}-{}-{n}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// PNM bytes (P5 for grey, P6 otherwise; alpha dropped).
pub fn pnm_bytes(img: &RasterImage) -> Vec<u8> {
    let (magic, samples) = if img.channels == 1 { ("P5", img.data.clone()) } else { ("P6", img.to_rgb()) };
    let mut out = format!("{magic}\n{} {}\n255\n", img.width, img.height).into_bytes();
    out.extend_from_slice(&samples);
    out
}

/// Parses binary PNM (P5 grey or P6 RGB, maxval 255).
pub fn parse_pnm(bytes: &[u8]) -> Result<RasterImage> {
    let bad = |m: &str| Error::Image(format!("PNM: {m}"));
    let mut pos = 0usize;
    let mut fields: Vec<String> = Vec::new();
    while fields.len() < 4 {
        // skip whitespace and comments
        while pos < bytes.len() && (bytes[pos].is_ascii_whitespace() || bytes[pos] == b'#') {
            if bytes[pos] == b'#' {
                while pos < bytes.len() && bytes[pos] != b'\n' {
                    pos += 1;
                }
            } else {
                pos += 1;
            }
        }
        let start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if start == pos {
            return Err(bad("truncated header"));
        }
        fields.push(String::from_utf8_lossy(&bytes[start..pos]).into_owned());
    }
    pos += 1; // the single whitespace byte after maxval
    let channels = match fields[0].as_str() {
        "P5" => 1u8,
        "P6" => 3u8,
        m => return Err(bad(&format!("unsupported magic {m:?}"))),
    };
    let w: u32 = fields[1].parse().map_err(|_| bad("width"))?;
    let h: u32 = fields[2].parse().map_err(|_| bad("height"))?;
    if fields[3] != "255" {
        return Err(bad(&format!("maxval {} (expected 255)", fields[3])));
    }
    let n = w as usize * h as usize * channels as usize;
    if bytes.len() < pos + n {
        return Err(bad("truncated samples"));
    }
    RasterImage::new(w, h, channels, bytes[pos..pos + n].to_vec())
}

fn run_tool(prog: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Io(std::io::Error::new(e.kind(), format!("{}: {e}", prog.display()))))?;
    if !out.status.success() {
        return Err(Error::Image(format!(
            "{} failed ({}): {}",
            prog.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// What one setting did to one image.
#[derive(Debug, Clone)]
pub struct Coded {
    /// Whole compressed file.
    pub bytes: usize,
    /// The codec's own decoding.
    pub decoded: RasterImage,
}

/// Encodes `img` with a setting and decodes it back with the codec's own decoder.
/// Files go to `dir` (overwritten on every call).
pub fn code_image(tools: &Tools, s: &Setting, img: &RasterImage, dir: &Path) -> Result<Coded> {
    let missing = || Error::Parameter(format!("{}: programs not found", s.codec.name()));
    let input = dir.join(if img.channels == 1 { "in.pgm" } else { "in.ppm" });
    std::fs::write(&input, pnm_bytes(img))?;
    let os = |s: &str| std::ffi::OsString::from(s);
    let extra: Vec<std::ffi::OsString> = s.args.iter().map(|a| os(a)).collect();
    let decoded_path = dir.join("out.pnm");
    let _ = std::fs::remove_file(&decoded_path);
    let (file, bytes_decoded) = match s.codec {
        Codec::Jpeg => {
            let (c, d) = (tools.cjpeg.as_ref().ok_or_else(missing)?, tools.djpeg.as_ref().ok_or_else(missing)?);
            let f = dir.join("out.jpg");
            let mut a: Vec<std::ffi::OsString> = extra.clone();
            a.extend([os("-outfile"), f.clone().into_os_string(), input.clone().into_os_string()]);
            run_tool(c, &a.iter().map(|x| x.as_os_str()).collect::<Vec<_>>())?;
            let a = [os("-pnm"), os("-outfile"), decoded_path.clone().into_os_string(), f.clone().into_os_string()];
            run_tool(d, &a.iter().map(|x| x.as_os_str()).collect::<Vec<_>>())?;
            (f, std::fs::read(&decoded_path)?)
        }
        Codec::Webp | Codec::WebpNearLossless => {
            let (c, d) = (tools.cwebp.as_ref().ok_or_else(missing)?, tools.dwebp.as_ref().ok_or_else(missing)?);
            let f = dir.join("out.webp");
            let mut a: Vec<std::ffi::OsString> = vec![os("-quiet")];
            a.extend(extra.clone());
            a.extend([input.clone().into_os_string(), os("-o"), f.clone().into_os_string()]);
            run_tool(c, &a.iter().map(|x| x.as_os_str()).collect::<Vec<_>>())?;
            let a = [os("-quiet"), f.clone().into_os_string(), os("-ppm"), os("-o"), decoded_path.clone().into_os_string()];
            run_tool(d, &a.iter().map(|x| x.as_os_str()).collect::<Vec<_>>())?;
            (f, std::fs::read(&decoded_path)?)
        }
        Codec::Jxl => {
            let (c, d) = (tools.cjxl.as_ref().ok_or_else(missing)?, tools.djxl.as_ref().ok_or_else(missing)?);
            let f = dir.join("out.jxl");
            let out_ppm = dir.join("out.ppm");
            let _ = std::fs::remove_file(&out_ppm);
            let mut a: Vec<std::ffi::OsString> = vec![input.clone().into_os_string(), f.clone().into_os_string()];
            a.extend(extra.clone());
            a.push(os("--num_threads=1"));
            run_tool(c, &a.iter().map(|x| x.as_os_str()).collect::<Vec<_>>())?;
            let a = [f.clone().into_os_string(), out_ppm.clone().into_os_string(), os("--num_threads=1")];
            run_tool(d, &a.iter().map(|x| x.as_os_str()).collect::<Vec<_>>())?;
            (f, std::fs::read(&out_ppm)?)
        }
    };
    let bytes = std::fs::metadata(&file)?.len() as usize;
    let decoded = parse_pnm(&bytes_decoded)?;
    if (decoded.width, decoded.height) != (img.width, img.height) {
        return Err(Error::Image(format!(
            "{} decoded to {}x{}, expected {}x{}",
            s.codec.name(),
            decoded.width,
            decoded.height,
            img.width,
            img.height
        )));
    }
    Ok(Coded { bytes, decoded })
}

/// PNG file size: the `image` crate's encoder at best compression (adaptive filters), then
/// `optipng -o2` if present. Returns (bytes, whether optipng ran).
pub fn png_size(tools: &Tools, img: &RasterImage, dir: &Path) -> Result<(usize, bool)> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let mut buf = Vec::new();
    let (samples, ct) = if img.channels == 1 {
        (img.data.clone(), image::ExtendedColorType::L8)
    } else {
        (img.to_rgb(), image::ExtendedColorType::Rgb8)
    };
    PngEncoder::new_with_quality(&mut buf, CompressionType::Best, FilterType::Adaptive)
        .write_image(&samples, img.width, img.height, ct)
        .map_err(|e| Error::Image(e.to_string()))?;
    match &tools.optipng {
        None => Ok((buf.len(), false)),
        Some(opt) => {
            let f = dir.join("out.png");
            std::fs::write(&f, &buf)?;
            run_tool(opt, &[std::ffi::OsStr::new("-quiet"), std::ffi::OsStr::new("-o2"), f.as_os_str()])?;
            let png = std::fs::read(&f)?;
            // verify the optimised file still holds the image
            let back = crate::image_io::decode_image(&png)?;
            if crate::eval::metrics::image_mse(img, &back)? != 0.0 {
                return Err(Error::Image("optipng changed the pixels".into()));
            }
            Ok((png.len(), true))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pnm_round_trip() {
        for c in [1u8, 3] {
            let img = RasterImage::new(3, 2, c, (0..6 * c as usize).map(|i| (i * 40) as u8).collect()).unwrap();
            assert_eq!(parse_pnm(&pnm_bytes(&img)).unwrap(), img);
        }
        let with_comment = b"P5\n# made by hand\n2 1\n255\n\x07\x09";
        let img = parse_pnm(with_comment).unwrap();
        assert_eq!(img.data, vec![7, 9]);
        assert!(parse_pnm(b"P6\n2 2\n255\n\x00").is_err());
        assert!(parse_pnm(b"P3\n1 1\n255\n0 0 0").is_err());
    }

    #[test]
    fn settings_are_labelled_and_end_lossless_where_possible() {
        for c in Codec::ALL {
            let s = c.settings();
            assert!(s.len() >= 5, "{}", c.name());
            let labels: std::collections::HashSet<_> = s.iter().map(|x| x.param.clone()).collect();
            assert_eq!(labels.len(), s.len());
        }
        assert!(Codec::Jxl.settings().last().unwrap().lossless);
        assert!(Codec::Webp.settings().last().unwrap().lossless);
    }
}
