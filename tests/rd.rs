//! Rate–distortion and lossless-benchmark machinery on the tiny fixture model (random weights:
//! the numbers are meaningless, the bookkeeping is not). External codecs are exercised only
//! when their programs are on PATH.

use std::path::{Path, PathBuf};

use ddpm_codec::codec::{self, CodecParams, DecodeOptions};
use ddpm_codec::eval::classical::{self, Tools};
use ddpm_codec::eval::metrics::{self, SetDistortion};
use ddpm_codec::eval::{plot, rd};
use ddpm_codec::image_io::RasterImage;
use ddpm_codec::model::Model;
use ddpm_codec::rcc::RccParams;
use ddpm_codec::schedule::Variance;

fn tiny() -> Model {
    Model::from_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny"))).unwrap()
}

fn params(steps: usize) -> CodecParams {
    let mut p = CodecParams::new(steps, "dense", Variance::Small).unwrap();
    p.rcc = RccParams { chunk_bits: 4.0, margin_bits: 2, ..RccParams::default() };
    p.batch_tiles = 2;
    p.seed = 7;
    p
}

fn image(w: u32, h: u32, c: u8, shift: u32) -> RasterImage {
    let mut data = Vec::new();
    for y in 0..h {
        for x in 0..w {
            for k in 0..c {
                let v = if c == 4 && k == 3 { 255 } else { (x * 5 + y * 3 + k as u32 * 40 + (x * y) % 7 + shift) % 256 };
                data.push(v as u8);
            }
        }
    }
    RasterImage::new(w, h, c, data).unwrap()
}

fn named(name: &str, img: RasterImage) -> rd::NamedImage {
    rd::NamedImage { name: name.into(), image: img }
}

fn no_progress() -> impl FnMut(usize, usize) {
    |_, _| {}
}

fn temp_path(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ddpm-codec-rd-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn psnr_rmse_helpers_match_hand_computed_values() {
    // |errors| 3, 4 → MSE 12.5, RMSE 3.5355…, PSNR 10·log10(5202) = 37.1617…
    let mse = metrics::mse_u8(&[100, 50], &[103, 46]).unwrap();
    assert_eq!(mse, 12.5);
    assert!((metrics::rmse(mse) - 3.535_533_905_932_738).abs() < 1e-12);
    assert!((metrics::psnr(mse) - 37.161_703_478_598_5).abs() < 1e-9, "{}", metrics::psnr(mse));
    // 20·log10(255) for MSE 1; +∞ for exact
    assert!((metrics::psnr(1.0) - 48.130_803_608_679_1).abs() < 1e-9);
    assert!(metrics::psnr(0.0).is_infinite());
    // set averages: MSE 4 and 16 → mean MSE 10, RMSE √10; mean PSNR is the mean of 42.11… and 36.09…
    let s = SetDistortion::from_mses(&[4.0, 16.0]).unwrap();
    assert_eq!(s.mse, 10.0);
    assert!((s.rmse - 10f64.sqrt()).abs() < 1e-12);
    assert!((s.psnr - 38.130_803_608_679_1).abs() < 1e-9);
    let want_mean = (metrics::psnr(4.0) + metrics::psnr(16.0)) / 2.0;
    assert!((s.mean_psnr - want_mean).abs() < 1e-12);
    assert!((s.mean_rmse - 3.0).abs() < 1e-12);
    assert_eq!(metrics::csv_f64(f64::INFINITY, 3), "inf");
}

#[test]
fn prefix_rows_are_monotone_and_end_lossless() {
    let m = tiny();
    let p = params(4);
    for (w, h, c) in [(32u32, 32u32, 3u8), (33, 9, 1)] {
        let item = named("x", image(w, h, c, 0));
        let opts = rd::RdOptions { keep_frames: true, ..Default::default() };
        let (r, bytes) = rd::rd_image(&m, &item, &p, &opts, None, &mut no_progress()).unwrap();
        let k = p.schedule.steps();
        assert_eq!(r.onestep.len(), k + 1, "m = 0..K−1 and the lossless end");
        assert_eq!(r.frames.len(), k);
        for (j, q) in r.onestep.iter().enumerate() {
            assert_eq!(q.packets, j);
        }
        for w in r.onestep.windows(2) {
            assert!(w[0].bytes <= w[1].bytes, "bytes must not decrease");
            assert!(w[0].ideal_bits <= w[1].ideal_bits + 1e-9, "ideal bits must not decrease");
            assert!(w[0].t > w[1].t, "model time decreases along the stream");
        }
        let last = r.onestep.last().unwrap();
        assert_eq!(last.mse, 0.0);
        assert_eq!(last.t, 0);
        assert_eq!(last.bytes, bytes.len());
        assert_eq!(r.file_bytes, bytes.len());
        assert!((last.ideal_bits - r.ideal_bits).abs() < 1e-9);
        assert!(r.onestep[0].bytes > 0 && r.onestep[0].ideal_bits == 0.0, "prefix 0: header only, no KL");
        // the observer's distortion is what the decoder shows at that prefix
        for q in &r.onestep[..k] {
            let o = DecodeOptions { max_packets: Some(q.packets), ..Default::default() };
            let (out, d) = codec::decode(&m, &bytes, &o, &mut no_progress()).unwrap();
            assert_eq!(d.packets_decoded, q.packets);
            assert_eq!(metrics::image_mse(&item.image, &out).unwrap(), q.mse, "{w}x{h}x{c} prefix {}", q.packets);
            // and a decoder cut at prefix_bytes gets those packets (one more only when that
            // packet's symbols were all read before the prefix ended: format/SPEC.md § 5)
            let (_, d) = codec::decode(&m, &bytes[..q.bytes], &DecodeOptions::default(), &mut no_progress()).unwrap();
            assert!(d.packets_decoded == q.packets || d.packets_decoded == q.packets + 1, "{} vs {}", d.packets_decoded, q.packets);
        }
    }
}

#[test]
fn lossy_stream_ends_at_the_last_prefix() {
    let m = tiny();
    let mut p = params(3);
    p.lossless = false;
    let item = named("x", image(32, 32, 3, 1));
    let (r, bytes) = rd::rd_image(&m, &item, &p, &Default::default(), None, &mut no_progress()).unwrap();
    assert_eq!(r.onestep.len(), 3);
    assert_eq!(r.onestep.last().unwrap().bytes, bytes.len());
    assert!(r.onestep.last().unwrap().mse > 0.0);
}

#[test]
fn ddim_points_come_from_the_decoder() {
    let m = tiny();
    let p = params(4);
    let img = image(32, 32, 3, 2);
    let item = named("x", img.clone());
    let opts = rd::RdOptions { recon: rd::ReconMode::Both, ddim_points: 2, keep_frames: false };
    let (r, bytes) = rd::rd_image(&m, &item, &p, &opts, None, &mut no_progress()).unwrap();
    assert_eq!(r.ddim.len(), 3, "two prefixes and the lossless end");
    assert_eq!(r.ddim[0].packets, 0, "the first prefix is always included");
    assert_eq!(r.ddim.last().unwrap().mse, 0.0);
    for q in &r.ddim[..2] {
        let o = DecodeOptions { max_packets: Some(q.packets), recon: codec::Recon::Ddim, ..Default::default() };
        let (out, _) = codec::decode(&m, &bytes, &o, &mut no_progress()).unwrap();
        assert_eq!(metrics::image_mse(&img, &out).unwrap(), q.mse);
        assert_eq!(q.bytes, r.onestep[q.packets].bytes);
    }
    let curves = rd::ours_curves(std::slice::from_ref(&r), rd::ReconMode::Both).unwrap();
    assert_eq!(curves.len(), 2);
    assert_eq!(curves[1].recon, "ddim");
}

#[test]
fn pick_prefixes_spreads_and_keeps_ends() {
    let bytes = [10, 10, 11, 12, 20, 40, 80, 160, 320];
    let v = rd::pick_prefixes(&bytes, 4);
    assert_eq!(v.len(), 4);
    assert_eq!(v[0], 0);
    assert_eq!(*v.last().unwrap(), 8);
    assert!(v.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(rd::pick_prefixes(&bytes, 20), (0..9).collect::<Vec<_>>());
    assert!(rd::pick_prefixes(&[], 3).is_empty());
    assert_eq!(rd::even_prefixes(100, 7), [0, 17, 33, 50, 66, 83, 99]);
    assert_eq!(rd::even_prefixes(3, 7), [0, 1, 2]);
}

fn set_curves() -> Vec<rd::Curve> {
    let m = tiny();
    let p = params(3);
    let images = vec![named("a", image(32, 32, 3, 0)), named("b", image(32, 32, 3, 9))];
    let (per, _) = rd::run_rd(&m, &images, &p, &Default::default(), &mut no_progress()).unwrap();
    assert_eq!(per.len(), 2);
    rd::ours_curves(&per, rd::ReconMode::OneStep).unwrap()
}

#[test]
fn csv_has_the_required_columns() {
    let curves = set_curves();
    let csv = rd::to_csv(&curves);
    assert!(!csv.contains('#'), "plain CSV: no comment lines");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for col in ["step", "t", "ideal_bpd", "actual_bpd", "actual_bpp", "rmse", "psnr", "recon", "mean_psnr", "images"] {
        assert!(header.contains(&col), "missing column {col}");
    }
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4, "K = 3 prefixes + the lossless end");
    let idx = |c: &str| header.iter().position(|h| *h == c).unwrap();
    for r in &rows {
        assert_eq!(r.len(), header.len());
        assert_eq!(r[idx("images")], "2");
        assert_eq!(r[idx("recon")], "onestep");
    }
    let bpd: Vec<f64> = rows.iter().map(|r| r[idx("actual_bpd")].parse().unwrap()).collect();
    assert!(bpd.windows(2).all(|w| w[0] <= w[1]));
    let last = rows.last().unwrap();
    assert_eq!(last[idx("rmse")].parse::<f64>().unwrap(), 0.0);
    assert_eq!(last[idx("psnr")], "inf");
    // the JSON (not the CSV) says how the set averages are made
    let j = rd::to_json(&curves, serde_json::json!({}));
    let doc = j["columns"]["meaning"].as_str().unwrap();
    assert!(doc.contains("of the MSE averaged over the images") && doc.contains("mean of the per-image PSNRs"));
    // and a CSV reader that knows nothing sees the header row first
    assert_eq!(csv.lines().next().unwrap(), rd::CSV_COLUMNS.join(","));
}

#[test]
fn json_uses_compressai_layout() {
    let mut curves = set_curves();
    // a fake classical curve, as classical_curves would make it
    let mut other = curves[0].clone();
    other.name = "jpeg".into();
    other.recon = "decoded".into();
    for r in &mut other.rows {
        r.ideal_bpd = None;
        r.ideal_bpp = None;
    }
    curves.push(other);
    let v = rd::to_json(&curves, serde_json::json!({"images": 2}));
    assert_eq!(v["name"], "ddpm-codec");
    assert!(v["description"].as_str().unwrap().contains("psnr-rgb"));
    let res = &v["results"];
    let n = res["bpp"].as_array().unwrap().len();
    assert_eq!(n, 4);
    for key in ["bpp", "psnr-rgb", "rmse", "ideal_bpp", "mean-psnr-rgb", "bpd", "ideal_bpd", "step", "t"] {
        assert_eq!(res[key].as_array().map(|a| a.len()), Some(n), "{key}");
    }
    assert!(res["psnr-rgb"][n - 1].is_null(), "exact point: PSNR null");
    assert_eq!(res["rmse"][n - 1], 0.0);
    let others = v["others"].as_array().unwrap();
    assert_eq!(others.len(), 1);
    assert_eq!(others[0]["name"], "jpeg");
    assert!(others[0]["results"]["bpp"].is_array() && others[0]["results"].get("ideal_bpp").is_none());
    assert_eq!(v["meta"]["images"], 2);
    // round trip through text
    let back: serde_json::Value = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
    assert_eq!(back["results"]["bpp"], v["results"]["bpp"]);
}

#[test]
fn lossless_bench_without_external_tools() {
    let m = tiny();
    let p = params(3);
    let images = vec![named("a", image(32, 32, 3, 0)), named("g", image(20, 12, 1, 5))];
    let rep = rd::bench_lossless(&m, &images, &p, &Tools::default(), true, &mut no_progress()).unwrap();
    assert_eq!(rep.images, 2);
    assert_eq!(rep.dims, 32 * 32 * 3 + 20 * 12);
    let names: Vec<&str> = rep.codecs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ddpm-codec", "ddpm-codec-ideal", "png"]);
    let ours = &rep.codecs[0];
    assert_eq!(ours.failures, 0, "round trips must be bit-exact");
    assert!(rep.per_image.iter().all(|r| r.ours_roundtrip_ok == Some(true)));
    let bytes: usize = rep.per_image.iter().map(|r| r.ours_bytes).sum();
    assert!((ours.bits_per_dim - bytes as f64 * 8.0 / rep.dims as f64).abs() < 1e-12);
    assert!(rep.codecs[1].bits_per_dim > 0.0 && !rep.codecs[1].real_bits);
    assert!(rep.notes.iter().any(|n| n.contains("skipped")));
    assert!(rep.table().contains("ddpm-codec-ideal"));
    let (curves, notes) = rd::classical_curves(&Tools::default(), &images, &mut no_progress()).unwrap();
    assert!(curves.is_empty() && !notes.is_empty());
}

#[test]
fn classical_codecs_when_installed() {
    let tools = Tools::detect();
    let img = image(32, 32, 3, 3);
    let dir = classical::TempDir::new("test").unwrap();
    for c in classical::Codec::ALL {
        if !tools.has(c) {
            eprintln!("{}: programs absent, skipped", c.name());
            continue;
        }
        for s in c.settings() {
            let coded = classical::code_image(&tools, &s, &img, dir.path()).unwrap();
            assert!(coded.bytes > 0);
            let mse = metrics::image_mse(&img, &coded.decoded).unwrap();
            if s.lossless {
                assert_eq!(mse, 0.0, "{} {}", c.name(), s.param);
            }
        }
    }
    let (n, _) = classical::png_size(&tools, &img, dir.path()).unwrap();
    assert!(n > 0);
}

#[test]
fn plot_and_strip_are_written() {
    let curves = set_curves();
    let path = temp_path("rd.png");
    plot::rd_plot(&path, "test", &plot::series_from_curves(&curves)).unwrap();
    let back = image::open(&path).unwrap();
    assert_eq!((back.width(), back.height()), (1500, 640));
    let frames = vec![image(32, 32, 3, 0), image(32, 32, 3, 50), image(32, 32, 1, 9)];
    let sp = temp_path("strip.png");
    plot::strip_png(&sp, &frames, 2).unwrap();
    let back = image::open(&sp).unwrap();
    assert_eq!((back.width(), back.height()), (3 * 64 + 2 * 2, 64));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&sp);
    let _ = std::fs::remove_dir(path.parent().unwrap()); // only if the other test is done with it
}

#[test]
fn inputs_load_from_a_file_and_a_folder() {
    let d = temp_path("inputs");
    std::fs::create_dir_all(&d).unwrap();
    let a = image(40, 20, 3, 0);
    ddpm_codec::image_io::write_png(&d.join("b.png"), &a).unwrap();
    ddpm_codec::image_io::write_png(&d.join("a.png"), &image(8, 8, 1, 0)).unwrap();
    std::fs::write(d.join("notes.txt"), "not an image").unwrap();
    let v = rd::load_inputs(&d, None).unwrap();
    assert_eq!(v.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(), ["a.png", "b.png"]);
    assert_eq!(v[1].image, a);
    assert_eq!(rd::load_inputs(&d, Some(1)).unwrap().len(), 1);
    let one = rd::load_inputs(&d.join("b.png"), None).unwrap();
    assert_eq!(one.len(), 1);
    assert!(rd::load_inputs(&d.join("missing"), None).is_err());
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir(d.parent().unwrap()); // only if empty
}

#[test]
fn the_bound_of_a_large_image_is_the_bound_of_its_tiles() {
    // a 64×32 image is two 32×32 tiles: its bound equals the bound of the two halves given as
    // two images (same tiles, same order, same noise); an image whose sides are not
    // multiples of 32 gets a note instead of a bound
    let m = tiny();
    let p = params(3);
    let wide = image(64, 32, 3, 0);
    let half = |x0: usize| {
        let mut d = Vec::new();
        for y in 0..32 {
            d.extend_from_slice(&wide.data[(y * 64 + x0) * 3..(y * 64 + x0 + 32) * 3]);
        }
        RasterImage::new(32, 32, 3, d).unwrap()
    };
    let extras = rd::LosslessExtras { bitsback: None, bound: true };
    let one = rd::bench_lossless_with(&m, &[named("wide", wide.clone())], &p, &Tools::default(), false, &extras, &mut no_progress()).unwrap();
    let two = rd::bench_lossless_with(&m, &[named("l", half(0)), named("r", half(32))], &p, &Tools::default(), false, &extras, &mut no_progress()).unwrap();
    let (b1, b2) = (one.bound.expect("bound of the wide image"), two.bound.expect("bound of the halves"));
    assert_eq!(b1.images, 2);
    assert_eq!(b1.total_bits_per_dim.to_bits(), b2.total_bits_per_dim.to_bits());
    let odd = rd::bench_lossless_with(&m, &[named("odd", image(40, 32, 3, 0))], &p, &Tools::default(), false, &extras, &mut no_progress()).unwrap();
    assert!(odd.bound.is_none() && odd.notes.iter().any(|n| n.contains("multiples of 32")));
}
