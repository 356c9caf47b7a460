//! Rate–distortion curves of the progressive code, and the lossless benchmark, side by side with
//! classical codecs on the same images.
//!
//! One encode per image gives every prefix m = 0..K−1 (packets decoded) its reconstruction
//! (the encoder's observer sees the one-step x̂_0 the decoder would show) and its rate:
//! - ideal: Σ KL bits of packets 0..m−1 (from the [`EncodeReport`]);
//! - actual: [`EncodeReport::prefix_bytes`]`(m)`·8, what a decoder needs of the file for m packets
//!   (header and step table included, "whole-file" semantics);
//!
//! and m = K (lossless streams) is the whole file, RMSE 0, ideal Σ KL + L_0. DDIM reconstructions
//! need the decoder (≈ K network calls per prefix), so they are computed only when asked, at a
//! few prefixes spread evenly in bytes (chosen on the first image, the same for all images).
//!
//! Averages over a set (see [`crate::eval::metrics`]): rates are means of per-image rates
//! (CompressAI's convention; equal to total bits / total dims when all images have one size);
//! distortion is reported both as RMSE/PSNR of the mean MSE (`rmse`, `psnr`) and as the mean of
//! per-image PSNRs (`mean_psnr`).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value};

use crate::codec::{self, CodecParams, DecodeOptions, EncodeReport, Recon};
use crate::error::{Error, Result};
use crate::eval::classical::{self, Codec, Tools};
use crate::eval::metrics::{self, csv_f64, SetDistortion};
use crate::image_io::RasterImage;
use crate::model::Model;
use crate::tiling::TileGrid;

/// Curve name of our codec.
pub const OURS: &str = "ddpm-codec";

/// An input image with a name for reports.
#[derive(Debug, Clone)]
pub struct NamedImage {
    pub name: String,
    pub image: RasterImage,
}

/// Loads the inputs of `rd`/`bench-lossless`: one image file, a CIFAR-10 folder (with
/// `test_batch.bin`: the test split in file order), or a folder of PNG/JPEG images of any size
/// (sorted by name). At most `limit` images.
pub fn load_inputs(path: &Path, limit: Option<usize>) -> Result<Vec<NamedImage>> {
    if path.is_file() {
        let image = crate::image_io::read_image(path)?;
        let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(vec![NamedImage { name, image }]);
    }
    if path.join("test_batch.bin").is_file() {
        let (nchw, n) = crate::data::load_cifar10(path, crate::data::Split::Test, limit)?;
        let plane = 32 * 32;
        let mut out = Vec::with_capacity(n);
        for (i, img) in nchw.chunks_exact(3 * plane).enumerate() {
            let rgb: Vec<u8> = (0..plane).flat_map(|p| [img[p], img[plane + p], img[2 * plane + p]]).collect();
            out.push(NamedImage { name: format!("cifar10-test-{i:05}"), image: RasterImage::new(32, 32, 3, rgb)? });
        }
        return Ok(out);
    }
    let mut paths: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| Error::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| crate::data::is_image_file(p))
        .collect();
    paths.sort();
    if let Some(l) = limit {
        paths.truncate(l);
    }
    if paths.is_empty() {
        return Err(Error::Parameter(format!("{}: no PNG/JPEG images (nor test_batch.bin) found", path.display())));
    }
    paths
        .iter()
        .map(|p| {
            Ok(NamedImage {
                name: p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                image: crate::image_io::read_image(p)?,
            })
        })
        .collect()
}

/// Which reconstructions the RD run reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconMode {
    OneStep,
    Ddim,
    Both,
}

impl ReconMode {
    pub fn onestep(self) -> bool {
        matches!(self, ReconMode::OneStep | ReconMode::Both)
    }
    pub fn ddim(self) -> bool {
        matches!(self, ReconMode::Ddim | ReconMode::Both)
    }
}

impl std::str::FromStr for ReconMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "onestep" | "one-step" => Ok(ReconMode::OneStep),
            "ddim" => Ok(ReconMode::Ddim),
            "both" => Ok(ReconMode::Both),
            _ => Err(Error::Parameter(format!("unknown --recon {s:?} (onestep, ddim or both)"))),
        }
    }
}

/// Options of an RD run of our codec.
#[derive(Debug, Clone)]
pub struct RdOptions {
    pub recon: ReconMode,
    /// Number of prefixes (besides the lossless end) at which DDIM is evaluated.
    pub ddim_points: usize,
    /// Keep the one-step reconstructions of the first image (for the strip figure).
    pub keep_frames: bool,
}

impl Default for RdOptions {
    fn default() -> Self {
        Self { recon: ReconMode::OneStep, ddim_points: 10, keep_frames: false }
    }
}

/// Rate and distortion of one image after a prefix of the stream.
#[derive(Debug, Clone, Serialize)]
pub struct PrefixPoint {
    /// Packets decoded (m).
    pub packets: usize,
    /// Model time of the state the reconstruction comes from (0: the exact image).
    pub t: usize,
    /// Σ of ideal bits of the packets decoded.
    pub ideal_bits: f64,
    /// Bytes of the file a decoder needs (header included).
    pub bytes: usize,
    /// MSE on the 0–255 scale.
    pub mse: f64,
}

/// Everything measured on one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRd {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    /// Coded dimensions: pixels × colour channels (1 or 3).
    pub dims: usize,
    pub pixels: usize,
    pub file_bytes: usize,
    pub ideal_bits: f64,
    pub encode_seconds: f64,
    /// m = 0..K−1, then m = K (lossless streams).
    pub onestep: Vec<PrefixPoint>,
    /// Selected prefixes, then the lossless end (empty unless DDIM was asked for).
    pub ddim: Vec<PrefixPoint>,
    /// One-step reconstructions at m = 0..K−1 (only when kept).
    #[serde(skip)]
    pub frames: Vec<RasterImage>,
}

/// The image a decoder shows for a one-step reconstruction `x0_tiles` (model range), exactly as
/// [`codec::decode`] builds it (grey: the mean of the three predicted planes).
pub fn displayed_image(img: &RasterImage, x0_tiles: &[f32]) -> Result<RasterImage> {
    let grid = TileGrid::new(img.width as usize, img.height as usize, codec::TILE);
    let out = codec::display_tiles(x0_tiles, img.channels == 1);
    RasterImage::from_rgb(img.width, img.height, img.channels, &grid.from_tiles(&out))
}

/// `count` distinct indices of `bytes` (non-decreasing), spread evenly in bytes between the first
/// and the last, always including both ends.
pub fn pick_prefixes(bytes: &[usize], count: usize) -> Vec<usize> {
    let n = bytes.len();
    if n == 0 || count == 0 {
        return Vec::new();
    }
    if count >= n {
        return (0..n).collect();
    }
    let (b0, b1) = (bytes[0] as f64, bytes[n - 1] as f64);
    let mut v: Vec<usize> = (0..count)
        .map(|j| {
            let target = if count == 1 { b1 } else { b0 + (b1 - b0) * j as f64 / (count - 1) as f64 };
            bytes.iter().position(|&b| b as f64 >= target - 1e-9).unwrap_or(n - 1)
        })
        .collect();
    v.push(n - 1);
    v.sort_unstable();
    v.dedup();
    // fill up with indices evenly spaced in m where byte targets collided
    let mut j = 0;
    while v.len() < count && j < count {
        let m = ((j as f64 + 0.5) * n as f64 / count as f64) as usize;
        if !v.contains(&m) {
            v.push(m);
            v.sort_unstable();
        }
        j += 1;
    }
    let mut m = 0;
    while v.len() < count {
        if !v.contains(&m) {
            v.push(m);
        }
        m += 1;
    }
    v.sort_unstable();
    v
}

/// `count` distinct prefixes of 0..n spread evenly in packets (the stream's order), both ends
/// included: the progressive figure's frames.
pub fn even_prefixes(n: usize, count: usize) -> Vec<usize> {
    if n == 0 || count == 0 {
        return Vec::new();
    }
    if count >= n {
        return (0..n).collect();
    }
    if count == 1 {
        return vec![n - 1];
    }
    let mut v: Vec<usize> =
        (0..count).map(|j| ((j as f64) * (n - 1) as f64 / (count - 1) as f64).round() as usize).collect();
    v.dedup();
    v
}

/// Network calls of one image's RD measurement (for progress bars).
pub fn image_work(steps: usize, opts: &RdOptions) -> usize {
    steps * (1 + if opts.recon.ddim() { opts.ddim_points } else { 0 })
}

/// Measures one image: one encode (all one-step prefixes), plus DDIM decodes when asked, at
/// `ddim_prefixes` (None: `opts.ddim_points` prefixes spread evenly in this image's bytes).
/// Returns the measurement and the stream.
pub fn rd_image(
    model: &Model,
    item: &NamedImage,
    params: &CodecParams,
    opts: &RdOptions,
    ddim_prefixes: Option<&[usize]>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(ImageRd, Vec<u8>)> {
    let img = &item.image;
    let k = params.schedule.steps();
    let work = image_work(k, opts);
    let mut mses: Vec<f64> = Vec::with_capacity(k);
    let mut frames: Vec<RasterImage> = Vec::new();
    let keep = opts.keep_frames;
    let mut obs = |_m: usize, x0: &[f32]| -> Result<()> {
        let shown = displayed_image(img, x0)?;
        mses.push(metrics::image_mse(img, &shown)?);
        if keep {
            frames.push(shown);
        }
        Ok(())
    };
    let (bytes, rep) = codec::encode(model, img, params, &mut |d, _| progress(d, work), Some(&mut obs))?;
    if mses.len() != k {
        return Err(Error::Parameter(format!("observer saw {} prefixes, expected {k}", mses.len())));
    }
    let t_of = |m: usize| if m < k { params.schedule.model_t(k - 1 - m) } else { 0 };
    let ideal_of = |rep: &EncodeReport, m: usize| if m == 0 { 0.0 } else { rep.packets[m - 1].cum_ideal_bits };
    let mut onestep: Vec<PrefixPoint> = (0..k)
        .map(|m| PrefixPoint { packets: m, t: t_of(m), ideal_bits: ideal_of(&rep, m), bytes: rep.prefix_bytes(m), mse: mses[m] })
        .collect();
    let lossless_end = params.lossless.then(|| PrefixPoint {
        packets: k,
        t: 0,
        ideal_bits: rep.ideal_bits,
        bytes: rep.prefix_bytes(k),
        mse: 0.0,
    });
    if let Some(p) = &lossless_end {
        onestep.push(p.clone());
    }
    let mut ddim = Vec::new();
    if opts.recon.ddim() {
        let lossy: Vec<usize> = onestep.iter().filter(|p| p.packets < k).map(|p| p.bytes).collect();
        let chosen = match ddim_prefixes {
            Some(v) => v.to_vec(),
            None => pick_prefixes(&lossy, opts.ddim_points),
        };
        for (j, &m) in chosen.iter().enumerate() {
            if m >= k {
                continue;
            }
            let o = DecodeOptions { max_packets: Some(m), recon: Recon::Ddim, ..DecodeOptions::default() };
            let base = k * (1 + j);
            let (out, d) = codec::decode(model, &bytes, &o, &mut |dd, tot| progress(base + dd * k / tot.max(1), work))?;
            if d.packets_decoded != m {
                return Err(Error::Format(format!("decoder stopped at {} packets, asked {m}", d.packets_decoded)));
            }
            ddim.push(PrefixPoint {
                packets: m,
                t: t_of(m),
                ideal_bits: ideal_of(&rep, m),
                bytes: rep.prefix_bytes(m),
                mse: metrics::image_mse(img, &out)?,
            });
        }
        if let Some(p) = &lossless_end {
            ddim.push(p.clone());
        }
    }
    progress(work, work);
    let pixels = img.width as usize * img.height as usize;
    Ok((
        ImageRd {
            name: item.name.clone(),
            width: img.width,
            height: img.height,
            channels: img.channels,
            dims: rep.dims,
            pixels,
            file_bytes: rep.file_bytes,
            ideal_bits: rep.ideal_bits,
            encode_seconds: rep.encode_seconds,
            onestep,
            ddim,
            frames,
        },
        bytes,
    ))
}

/// Runs [`rd_image`] over a set. DDIM prefixes are chosen on the first image (evenly in its
/// bytes) and used for all. Frames are kept for the first image only (if asked).
/// `progress(done, total)` counts network calls.
pub fn run_rd(
    model: &Model,
    images: &[NamedImage],
    params: &CodecParams,
    opts: &RdOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<ImageRd>, Vec<usize>)> {
    if images.is_empty() {
        return Err(Error::Parameter("no images".into()));
    }
    let k = params.schedule.steps();
    let per = image_work(k, opts);
    let total = per * images.len();
    let mut out = Vec::with_capacity(images.len());
    let mut ddim_prefixes: Option<Vec<usize>> = None;
    for (i, item) in images.iter().enumerate() {
        let o = RdOptions { keep_frames: opts.keep_frames && i == 0, ..opts.clone() };
        let base = i * per;
        let (r, _) =
            rd_image(model, item, params, &o, ddim_prefixes.as_deref(), &mut |d, _| progress(base + d.min(per), total))?;
        if i == 0 && opts.recon.ddim() {
            ddim_prefixes = Some(r.ddim.iter().filter(|p| p.packets < k).map(|p| p.packets).collect());
        }
        out.push(r);
    }
    progress(total, total);
    Ok((out, ddim_prefixes.unwrap_or_default()))
}

/// One row of an RD table: a curve point averaged over the images.
#[derive(Debug, Clone, Serialize)]
pub struct RdRow {
    /// Curve name: "ddpm-codec", "jpeg", "webp", "webp-near-lossless", "jpeg-xl".
    pub name: String,
    /// "onestep" or "ddim" for ours; "decoded" for classical codecs.
    pub recon: String,
    /// Setting label (classical: "q50", "d1", "lossless"; ours: "m=<packets>").
    pub param: String,
    /// Ours: packets decoded (m); classical: index of the setting.
    pub step: usize,
    /// Ours: model time of the reconstruction's state (0: exact).
    pub t: Option<usize>,
    pub ideal_bpd: Option<f64>,
    pub ideal_bpp: Option<f64>,
    pub actual_bpd: f64,
    pub actual_bpp: f64,
    pub mse: f64,
    pub rmse: f64,
    pub psnr: f64,
    pub mean_psnr: f64,
    pub images: usize,
}

/// A named curve.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    pub name: String,
    pub recon: String,
    pub description: String,
    pub rows: Vec<RdRow>,
}

/// Per-image sample of a curve point.
struct Sample {
    bits: f64,
    ideal_bits: Option<f64>,
    dims: usize,
    pixels: usize,
    mse: f64,
}

#[allow(clippy::too_many_arguments)]
fn row_of(name: &str, recon: &str, param: String, step: usize, t: Option<usize>, s: &[Sample]) -> Result<RdRow> {
    let n = s.len() as f64;
    let d = SetDistortion::from_mses(&s.iter().map(|x| x.mse).collect::<Vec<_>>())?;
    let mean = |f: &dyn Fn(&Sample) -> f64| s.iter().map(f).sum::<f64>() / n;
    let ideal = s.iter().all(|x| x.ideal_bits.is_some());
    Ok(RdRow {
        name: name.into(),
        recon: recon.into(),
        param,
        step,
        t,
        ideal_bpd: ideal.then(|| mean(&|x| x.ideal_bits.unwrap_or(0.0) / x.dims as f64)),
        ideal_bpp: ideal.then(|| mean(&|x| x.ideal_bits.unwrap_or(0.0) / x.pixels as f64)),
        actual_bpd: mean(&|x| x.bits / x.dims as f64),
        actual_bpp: mean(&|x| x.bits / x.pixels as f64),
        mse: d.mse,
        rmse: d.rmse,
        psnr: d.psnr,
        mean_psnr: d.mean_psnr,
        images: s.len(),
    })
}

fn ours_curve(per_image: &[ImageRd], ddim: bool) -> Result<Curve> {
    let pts = |r: &ImageRd| if ddim { r.ddim.clone() } else { r.onestep.clone() };
    let first = pts(&per_image[0]);
    let mut rows = Vec::new();
    for (j, p) in first.iter().enumerate() {
        let mut s = Vec::with_capacity(per_image.len());
        for r in per_image {
            let q = pts(r);
            let q = q.get(j).filter(|q| q.packets == p.packets).ok_or_else(|| {
                Error::Parameter(format!("{}: prefixes differ between images (different step counts?)", r.name))
            })?;
            s.push(Sample { bits: q.bytes as f64 * 8.0, ideal_bits: Some(q.ideal_bits), dims: r.dims, pixels: r.pixels, mse: q.mse });
        }
        rows.push(row_of(OURS, if ddim { "ddim" } else { "onestep" }, format!("m={}", p.packets), p.packets, Some(p.t), &s)?);
    }
    let description = if ddim {
        "ddpm-codec, DDIM reconstruction (codec::decode with max_packets, Recon::Ddim) at prefixes spread evenly in bytes; \
         actual rate = prefix bytes incl. header; ideal = sum of KL bits so far (+ L_0 at the lossless end)"
    } else {
        "ddpm-codec, one-step reconstruction x0_hat at every prefix m (packets decoded); \
         actual rate = prefix bytes incl. header; ideal = sum of KL bits so far (+ L_0 at the lossless end)"
    };
    Ok(Curve { name: OURS.into(), recon: rows[0].recon.clone(), description: description.into(), rows })
}

/// Our curves (one-step and/or DDIM) averaged over the images.
pub fn ours_curves(per_image: &[ImageRd], mode: ReconMode) -> Result<Vec<Curve>> {
    if per_image.is_empty() {
        return Err(Error::Parameter("no images".into()));
    }
    let mut v = Vec::new();
    if mode.onestep() {
        v.push(ours_curve(per_image, false)?);
    }
    if mode.ddim() && !per_image[0].ddim.is_empty() {
        v.push(ours_curve(per_image, true)?);
    }
    Ok(v)
}

/// Runs the classical codecs present on every image; one curve per codec (settings where any
/// image failed are dropped with a note). Returns the curves and notes.
pub fn classical_curves(
    tools: &Tools,
    images: &[NamedImage],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<Curve>, Vec<String>)> {
    let mut notes = tools.notes();
    let codecs: Vec<Codec> = Codec::ALL.into_iter().filter(|&c| tools.has(c)).collect();
    let total: usize = codecs.iter().map(|c| c.settings().len()).sum::<usize>() * images.len();
    let mut done = 0;
    let dir = classical::TempDir::new("rd")?;
    let mut curves = Vec::new();
    for c in codecs {
        let mut rows = Vec::new();
        for (si, s) in c.settings().iter().enumerate() {
            let mut samples = Vec::with_capacity(images.len());
            let mut failed = None;
            for item in images {
                let img = &item.image;
                match classical::code_image(tools, s, img, dir.path()) {
                    Ok(coded) => {
                        let mse = metrics::image_mse(img, &coded.decoded)?;
                        let pixels = img.width as usize * img.height as usize;
                        let dims = pixels * if img.channels == 1 { 1 } else { 3 };
                        samples.push(Sample { bits: coded.bytes as f64 * 8.0, ideal_bits: None, dims, pixels, mse });
                    }
                    Err(e) => {
                        failed = Some(format!("{} {}: {}: {e}", c.name(), s.param, item.name));
                    }
                }
                done += 1;
                progress(done, total);
            }
            match failed {
                Some(f) => notes.push(format!("dropped point ({f})")),
                None => rows.push(row_of(c.name(), "decoded", s.param.clone(), si, None, &samples)?),
            }
        }
        if !rows.is_empty() {
            curves.push(Curve { name: c.name().into(), recon: "decoded".into(), description: c.description().into(), rows });
        }
    }
    Ok((curves, notes))
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 14] = [
    "name", "recon", "param", "step", "t", "ideal_bpd", "ideal_bpp", "actual_bpd", "actual_bpp", "mse", "rmse", "psnr",
    "mean_psnr", "images",
];

/// What the CSV columns mean (written into the JSON's `"columns"`, and in `rd --help`).
pub const CSV_COLUMN_DOCS: &str = "one row per curve point, averaged over `images` images; rates are means of per-image \
whole-file rates (header included) in bits/dim (dims = pixels x colour channels) and bits/pixel; ideal_*: the model's ideal \
code length (sum of KL bits of the packets decoded, + L_0 at the lossless end), ours only; step = packets decoded (ours) or \
setting index (classical); t = model time of the reconstruction's state; rmse, psnr: of the MSE averaged over the images \
(0-255 scale); mean_psnr: mean of the per-image PSNRs; inf = exact (lossless)";

/// The rows of all curves as plain CSV: the header row ([`CSV_COLUMNS`]) first, no comments.
pub fn to_csv(curves: &[Curve]) -> String {
    // Plain CSV: the header row first, no comment lines (csv.DictReader, pandas). The columns
    // are explained in CSV_COLUMN_DOCS (`rd --help` and the JSON's "columns").
    let mut s = String::new();
    s.push_str(&CSV_COLUMNS.join(","));
    s.push('\n');
    let opt = |v: Option<f64>| v.map(|x| csv_f64(x, 6)).unwrap_or_default();
    for c in curves {
        for r in &c.rows {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                r.name,
                r.recon,
                r.param,
                r.step,
                r.t.map(|t| t.to_string()).unwrap_or_default(),
                opt(r.ideal_bpd),
                opt(r.ideal_bpp),
                csv_f64(r.actual_bpd, 6),
                csv_f64(r.actual_bpp, 6),
                csv_f64(r.mse, 6),
                csv_f64(r.rmse, 6),
                csv_f64(r.psnr, 4),
                csv_f64(r.mean_psnr, 4),
                r.images
            );
        }
    }
    s
}

fn num(v: f64) -> Value {
    // JSON has no infinity: exact reconstructions have PSNR null
    serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null)
}

/// One curve in CompressAI's results layout.
pub fn curve_json(c: &Curve) -> Value {
    let col = |f: &dyn Fn(&RdRow) -> Value| Value::Array(c.rows.iter().map(f).collect());
    let name = if c.name == OURS && c.recon == "ddim" { format!("{OURS}-ddim") } else { c.name.clone() };
    let mut results = json!({
        "bpp": col(&|r| num(r.actual_bpp)),
        "psnr-rgb": col(&|r| num(r.psnr)),
        "mean-psnr-rgb": col(&|r| num(r.mean_psnr)),
        "rmse": col(&|r| num(r.rmse)),
        "mse": col(&|r| num(r.mse)),
        "bpd": col(&|r| num(r.actual_bpd)),
        "param": col(&|r| Value::String(r.param.clone())),
    });
    if c.rows.iter().all(|r| r.ideal_bpp.is_some()) {
        results["ideal_bpp"] = col(&|r| num(r.ideal_bpp.unwrap_or(f64::NAN)));
        results["ideal_bpd"] = col(&|r| num(r.ideal_bpd.unwrap_or(f64::NAN)));
        results["step"] = col(&|r| json!(r.step));
        results["t"] = col(&|r| json!(r.t));
    }
    json!({ "name": name, "description": c.description, "results": results })
}

/// The `--json` document: the first curve (ours) at the top level in CompressAI's layout
/// (`name`, `description`, `results` with `bpp`, `psnr-rgb`, `rmse`, `ideal_bpp`, …), the other
/// curves (ours with DDIM, classical codecs) under `others` in the same layout, and `meta`.
pub fn to_json(curves: &[Curve], meta: Value) -> Value {
    let mut top = curves.first().map(curve_json).unwrap_or_else(|| json!({"name": OURS, "results": {}}));
    top["description"] = Value::String(format!(
        "{} | psnr-rgb: PSNR of the MSE averaged over images; mean-psnr-rgb: mean of per-image PSNRs; \
         null PSNR = exact; bpp/bpd: whole-file rates incl. header, mean over images",
        top["description"].as_str().unwrap_or("")
    ));
    top["others"] = Value::Array(curves.iter().skip(1).map(curve_json).collect());
    top["columns"] = json!({"csv": CSV_COLUMNS, "meaning": CSV_COLUMN_DOCS});
    top["meta"] = meta;
    top
}

/// Linear interpolation of PSNR (of the mean MSE) at a rate on a curve's points sorted by rate;
/// None outside the curve's range.
pub fn psnr_at_bpp(c: &Curve, bpp: f64) -> Option<f64> {
    let mut pts: Vec<(f64, f64)> = c.rows.iter().filter(|r| r.psnr.is_finite()).map(|r| (r.actual_bpp, r.psnr)).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts.windows(2).find(|w| w[0].0 <= bpp && bpp <= w[1].0).map(|w| {
        let f = if w[1].0 > w[0].0 { (bpp - w[0].0) / (w[1].0 - w[0].0) } else { 0.0 };
        w[0].1 + f * (w[1].1 - w[0].1)
    })
}

/// The lowest rate (bpp, bpd) among a curve's points with RMSE (of the mean MSE) ≤ `rmse`.
pub fn rate_at_rmse(c: &Curve, rmse: f64) -> Option<(f64, f64)> {
    c.rows
        .iter()
        .filter(|r| r.rmse <= rmse)
        .map(|r| (r.actual_bpp, r.actual_bpd))
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

/// A terminal summary: per curve, its range, the PSNR at 2 bpp and the rate reaching RMSE ≤ 0.95.
pub fn summary(curves: &[Curve]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<22} {:>7} {:>10} {:>10} {:>14} {:>20}",
        "curve", "points", "min bpp", "max bpp", "PSNR@2bpp", "bpp(bpd)@RMSE<=0.95"
    );
    for c in curves {
        let name = if c.name == OURS { format!("{OURS} ({})", c.recon) } else { c.name.clone() };
        let lo = c.rows.iter().map(|r| r.actual_bpp).fold(f64::INFINITY, f64::min);
        let hi = c.rows.iter().map(|r| r.actual_bpp).fold(0.0, f64::max);
        let p2 = psnr_at_bpp(c, 2.0).map(|p| format!("{p:.2} dB")).unwrap_or_else(|| "-".into());
        let r = rate_at_rmse(c, 0.95).map(|(b, d)| format!("{b:.3} ({d:.3})")).unwrap_or_else(|| "not reached".into());
        let _ = writeln!(s, "{:<22} {:>7} {:>10.3} {:>10.3} {:>14} {:>20}", name, c.rows.len(), lo, hi, p2, r);
        if c.name == OURS {
            let ideal = |r: &RdRow| r.ideal_bpp.unwrap_or(f64::NAN);
            let ri = c
                .rows
                .iter()
                .filter(|r| r.rmse <= 0.95)
                .map(|r| (ideal(r), r.ideal_bpd.unwrap_or(f64::NAN)))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let mut pts: Vec<(f64, f64)> =
                c.rows.iter().filter(|r| r.psnr.is_finite()).map(|r| (ideal(r), r.psnr)).collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let p2i = pts
                .windows(2)
                .find(|w| w[0].0 <= 2.0 && 2.0 <= w[1].0)
                .map(|w| {
                    let f = if w[1].0 > w[0].0 { (2.0 - w[0].0) / (w[1].0 - w[0].0) } else { 0.0 };
                    format!("{:.2} dB", w[0].1 + f * (w[1].1 - w[0].1))
                })
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "{:<22} {:>7} {:>10} {:>10} {:>14} {:>20}",
                "  (ideal rate)",
                "",
                "",
                "",
                p2i,
                ri.map(|(b, d)| format!("{b:.3} ({d:.3})")).unwrap_or_else(|| "not reached".into())
            );
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Lossless benchmark

/// One image of the lossless benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct LosslessImage {
    pub name: String,
    pub dims: usize,
    pub ours_bytes: usize,
    pub ours_ideal_bits: f64,
    /// Decoded bit-exactly by `codec::decode` (None: not checked).
    pub ours_roundtrip_ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ours_error: Option<String>,
    pub png_bytes: usize,
    pub webp_bytes: Option<usize>,
    pub jxl_bytes: Option<usize>,
    pub encode_seconds: f64,
    pub decode_seconds: Option<f64>,
}

/// One codec's total on the benchmark set.
#[derive(Debug, Clone, Serialize)]
pub struct LosslessCodec {
    pub name: String,
    pub description: String,
    /// Σ file bits / Σ dims over the images.
    pub bits_per_dim: f64,
    pub total_bytes: usize,
    pub images: usize,
    /// Images whose round trip was not bit-exact (or failed).
    pub failures: usize,
    /// Whether this is a real file size (false: the model's ideal code length).
    pub real_bits: bool,
}

/// The lossless benchmark report.
#[derive(Debug, Clone, Serialize)]
pub struct LosslessReport {
    pub images: usize,
    pub dims: usize,
    pub steps: usize,
    pub spacing_taus: Vec<usize>,
    pub model_sha256: String,
    pub codecs: Vec<LosslessCodec>,
    pub notes: Vec<String>,
    pub per_image: Vec<LosslessImage>,
    /// The bits-back archive of all images (when asked): its pack report without the
    /// per-item list, plus the unpack time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitsback: Option<Value>,
    /// The bound of the chain on the same images (`eval::nll`, exact), when computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound: Option<crate::eval::nll::NllReport>,
}

/// Optional rows of the lossless benchmark.
#[derive(Debug, Clone, Default)]
pub struct LosslessExtras {
    /// Also pack all images into one bits-back archive with these parameters.
    pub bitsback: Option<crate::bitsback::PackParams>,
    /// Also compute the bound of the chain (`nll`, exact, on the 32×32 tiles; RGB images whose
    /// sides are multiples of 32).
    pub bound: bool,
}

/// Network calls per image of the benchmark (encode, plus decode when verifying).
pub fn lossless_work(steps: usize, verify: bool) -> usize {
    steps * if verify { 2 } else { 1 }
}

/// Our lossless file size, its ideal code length and a bit-exact round trip, against PNG, WebP
/// lossless and JPEG XL lossless on the same images. `progress(done, total)` counts network
/// calls.
pub fn bench_lossless(
    model: &Model,
    images: &[NamedImage],
    params: &CodecParams,
    tools: &Tools,
    verify: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LosslessReport> {
    bench_lossless_with(model, images, params, tools, verify, &LosslessExtras::default(), progress)
}

/// [`bench_lossless`] with the optional rows: the bound of the chain and the bits-back archive
/// (whole-archive bits/dim; verified by unpacking when `verify`). `progress` counts network
/// calls of all rows.
pub fn bench_lossless_with(
    model: &Model,
    images: &[NamedImage],
    params: &CodecParams,
    tools: &Tools,
    verify: bool,
    extras: &LosslessExtras,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LosslessReport> {
    if images.is_empty() {
        return Err(Error::Parameter("no images".into()));
    }
    if !params.lossless {
        return Err(Error::Parameter("the lossless benchmark needs lossless streams".into()));
    }
    let mut notes = tools.notes();
    let k = params.schedule.steps();
    let per = lossless_work(k, verify);
    // the bound is computed on exact 32×32 tiles: RGB images whose sides are multiples of 32
    let tileable = images.iter().all(|i| i.image.channels == 3 && i.image.width % 32 == 0 && i.image.height % 32 == 0);
    let tiles_all: usize = images.iter().map(|i| TileGrid::new(i.image.width as usize, i.image.height as usize, 32).num_tiles()).sum();
    let bound_work = if extras.bound && tileable { k * tiles_all } else { 0 };
    let bb_work = match &extras.bitsback {
        Some(bp) => bp.schedule.steps() * crate::bitsback::group_sizes(tiles_all, bp.max_group_tiles).len() * if verify { 2 } else { 1 },
        None => 0,
    };
    let main_total = per * images.len();
    let total = main_total + bound_work + bb_work;
    let dir = classical::TempDir::new("lossless")?;
    let webp = Codec::Webp.settings().into_iter().find(|s| s.lossless).filter(|_| tools.has(Codec::Webp));
    let jxl = Codec::Jxl.settings().into_iter().find(|s| s.lossless).filter(|_| tools.has(Codec::Jxl));
    let (mut webp_fail, mut jxl_fail, mut png_fail) = (0usize, 0usize, 0usize);
    let mut optipng_used = false;
    let mut rows = Vec::with_capacity(images.len());
    for (i, item) in images.iter().enumerate() {
        let img = &item.image;
        let base = i * per;
        let (bytes, rep) = codec::encode(model, img, params, &mut |d, _| progress(base + d, total), None)?;
        let (mut ok, mut err, mut dsec) = (None, None, None);
        if verify {
            let t0 = std::time::Instant::now();
            match codec::decode(model, &bytes, &DecodeOptions::default(), &mut |d, tot| {
                progress(base + k + d * k / tot.max(1), total)
            }) {
                Ok((out, d)) => {
                    let exact = out == *img && d.lossless;
                    ok = Some(exact);
                    if !exact {
                        err = Some("decoded image differs".into());
                    }
                }
                Err(e) => {
                    ok = Some(false);
                    err = Some(e.to_string());
                }
            }
            dsec = Some(t0.elapsed().as_secs_f64());
        }
        let (png_bytes, opt) = match classical::png_size(tools, img, dir.path()) {
            Ok(v) => v,
            Err(e) => {
                png_fail += 1;
                notes.push(format!("png {}: {e}", item.name));
                (crate::image_io::png_bytes(img)?.len(), false)
            }
        };
        optipng_used |= opt;
        let mut lossless_size = |s: &Option<classical::Setting>, fails: &mut usize| -> Option<usize> {
            let s = s.as_ref()?;
            match classical::code_image(tools, s, img, dir.path()) {
                Ok(c) => {
                    if metrics::image_mse(img, &c.decoded).map(|m| m != 0.0).unwrap_or(true) {
                        *fails += 1;
                    }
                    Some(c.bytes)
                }
                Err(e) => {
                    *fails += 1;
                    notes.push(format!("{} {}: {e}", s.codec.name(), item.name));
                    None
                }
            }
        };
        let webp_bytes = lossless_size(&webp, &mut webp_fail);
        let jxl_bytes = lossless_size(&jxl, &mut jxl_fail);
        rows.push(LosslessImage {
            name: item.name.clone(),
            dims: rep.dims,
            ours_bytes: rep.file_bytes,
            ours_ideal_bits: rep.ideal_bits,
            ours_roundtrip_ok: ok,
            ours_error: err,
            png_bytes,
            webp_bytes,
            jxl_bytes,
            encode_seconds: rep.encode_seconds,
            decode_seconds: dsec,
        });
        progress(base + per, total);
    }
    let dims: usize = rows.iter().map(|r| r.dims).sum();
    let mk = |name: &str, desc: &str, bytes: Option<usize>, fails: usize, real: bool, bits: Option<f64>| LosslessCodec {
        name: name.into(),
        description: desc.into(),
        bits_per_dim: bits.unwrap_or(bytes.unwrap_or(0) as f64 * 8.0) / dims as f64,
        total_bytes: bytes.unwrap_or(0),
        images: rows.len(),
        failures: fails,
        real_bits: real,
    };
    let ours_bytes: usize = rows.iter().map(|r| r.ours_bytes).sum();
    let ours_fail = rows.iter().filter(|r| r.ours_roundtrip_ok == Some(false)).count();
    let ideal: f64 = rows.iter().map(|r| r.ours_ideal_bits).sum();
    let mut codecs = vec![
        mk(
            OURS,
            &format!(
                "whole .ddpc files (header + step table + body), {k} steps; failures = decode not bit-exact{}",
                if verify { "" } else { " (not verified)" }
            ),
            Some(ours_bytes),
            ours_fail,
            true,
            None,
        ),
        mk(
            "ddpm-codec-ideal",
            "the model's ideal code length of the same streams: sum of KL bits of the coded steps + L_0 (no real coder, no header)",
            None,
            0,
            false,
            Some(ideal),
        ),
        mk(
            "png",
            if optipng_used {
                "image crate PNG (best compression, adaptive filters) then optipng -o2; whole files"
            } else {
                "image crate PNG (best compression, adaptive filters); whole files (optipng absent)"
            },
            Some(rows.iter().map(|r| r.png_bytes).sum()),
            png_fail,
            true,
            None,
        ),
    ];
    let sum_opt = |f: &dyn Fn(&LosslessImage) -> Option<usize>| -> Option<usize> {
        rows.iter().map(f).collect::<Option<Vec<usize>>>().map(|v| v.iter().sum())
    };
    if webp.is_some() {
        match sum_opt(&|r| r.webp_bytes) {
            Some(b) => codecs.push(mk("webp-lossless", "cwebp -lossless -z 9; whole files", Some(b), webp_fail, true, None)),
            None => notes.push("webp-lossless: failed on some images; no total".into()),
        }
    }
    if jxl.is_some() {
        match sum_opt(&|r| r.jxl_bytes) {
            Some(b) => codecs.push(mk("jpeg-xl-lossless", "cjxl -d 0 -e 7 (libjxl 0.7); whole files", Some(b), jxl_fail, true, None)),
            None => notes.push("jpeg-xl-lossless: failed on some images; no total".into()),
        }
    }
    let mut bound = None;
    if extras.bound {
        if tileable {
            // 32×32 tiles, exactly the items the archive codes (no padding: sides are multiples
            // of 32), NCHW per tile
            let nchw: Vec<u8> = images
                .iter()
                .flat_map(|i| {
                    let (w, h) = (i.image.width as usize, i.image.height as usize);
                    TileGrid::new(w, h, 32).to_tiles(&i.image.to_rgb())
                })
                .collect();
            let rep = crate::eval::nll::run_nll(
                model,
                &nchw,
                &params.schedule,
                params.variance,
                model.variance_tables(),
                crate::eval::nll::NllMode::Exact,
                64,
                0,
                &mut |d, _| progress(main_total + d.min(bound_work), total),
            )?;
            codecs.insert(
                2,
                mk(
                    "bound",
                    "the variational bound of the same chain on the same images (nll, exact: L_T + KL terms + L_0), the target of the bits-back archive",
                    None,
                    0,
                    false,
                    Some(rep.total_bits_per_dim * dims as f64),
                ),
            );
            bound = Some(rep);
        } else {
            notes.push("bound: computed only for RGB images whose sides are multiples of 32 (exact 32×32 tiles)".into());
        }
    }
    let mut bitsback = None;
    if let Some(bp) = &extras.bitsback {
        let items: Vec<crate::bitsback::Item> = images.iter().map(|i| crate::bitsback::Item { name: i.name.clone(), image: i.image.clone() }).collect();
        let base = main_total + bound_work;
        let (bytes, rep) = crate::bitsback::pack(model, &items, bp, &mut |d, _| progress(base + d, total))?;
        let mut fails = 0;
        let mut unpack_seconds = None;
        if verify {
            let packed = rep.network_calls;
            match crate::bitsback::unpack(model, &bytes, &crate::bitsback::ArchiveLimits::default(), &mut |d, _| progress(base + packed + d, total)) {
                Ok((out, urep)) => {
                    fails = out.iter().zip(&items).filter(|(o, i)| o.image != i.image).count() + items.len().saturating_sub(out.len());
                    unpack_seconds = Some(urep.unpack_seconds);
                }
                Err(e) => {
                    fails = items.len();
                    notes.push(format!("bits-back unpack: {e}"));
                }
            }
        }
        codecs.insert(
            1,
            mk(
                "ddpm-codec-bitsback",
                &format!(
                    "one .ddpa archive of all images (bits-back ANS over the {}-step chain, header + item table + body); failures = items not bit-exact{}",
                    bp.schedule.steps(),
                    if verify { "" } else { " (not verified)" }
                ),
                Some(bytes.len()),
                fails,
                true,
                None,
            ),
        );
        notes.push(format!(
            "bits-back archive: {:.4} bits/dim = net {:.4} + initial bits {:.4} ({:.0} bytes) + header {:.4}; pack {:.3} s/image{}",
            rep.archive_bpd,
            rep.net_bpd,
            rep.initial_bpd,
            rep.initial_bits / 8.0,
            rep.header_bpd,
            rep.pack_seconds / items.len() as f64,
            unpack_seconds.map(|u| format!(", unpack {:.3} s/image", u / items.len() as f64)).unwrap_or_default()
        ));
        let mut v = serde_json::to_value(&rep).map_err(|e| Error::Parameter(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.remove("per_item");
            o.insert("unpack_seconds".into(), json!(unpack_seconds));
            o.insert("latent_bits".into(), json!(bp.latent_bits));
        }
        bitsback = Some(v);
    }
    progress(total, total);
    Ok(LosslessReport {
        images: rows.len(),
        dims,
        steps: k,
        spacing_taus: params.schedule.taus().to_vec(),
        model_sha256: model.sha256_hex(),
        codecs,
        notes,
        per_image: rows,
        bitsback,
        bound,
    })
}

impl LosslessReport {
    /// The terminal table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "lossless, {} images ({} dims), {} steps; bits/dim = total file bits / total dims", self.images, self.dims, self.steps);
        let _ = writeln!(s, "{:<20} {:>10} {:>12} {:>10}", "codec", "bits/dim", "bytes", "failures");
        for c in &self.codecs {
            let _ = writeln!(
                s,
                "{:<20} {:>10.4} {:>12} {:>10}",
                c.name,
                c.bits_per_dim,
                if c.real_bits { c.total_bytes.to_string() } else { "(ideal)".into() },
                if c.real_bits { c.failures.to_string() } else { "-".into() }
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}
