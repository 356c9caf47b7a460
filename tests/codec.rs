//! End-to-end codec tests on the tiny fixture model (random weights: rates are meaningless,
//! correctness is not): lossless round trips, truncation, threads, hostile input.

use std::path::Path;

use ddpm_codec::codec::{self, CodecParams, DecodeOptions};
use ddpm_codec::image_io::RasterImage;
use ddpm_codec::model::Model;
use ddpm_codec::rcc::{RccParams, Scorer};
use ddpm_codec::schedule::Variance;
use ddpm_codec::Error;

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

/// A smooth test image with some texture.
fn image(w: u32, h: u32, c: u8) -> RasterImage {
    let mut data = Vec::new();
    for y in 0..h {
        for x in 0..w {
            for k in 0..c {
                let v = if c == 4 && k == 3 { 255 } else { (x * 5 + y * 3 + k as u32 * 40 + (x * y) % 7) % 256 };
                data.push(v as u8);
            }
        }
    }
    RasterImage::new(w, h, c, data).unwrap()
}

fn no_progress() -> impl FnMut(usize, usize) {
    |_, _| {}
}

#[test]
fn lossless_round_trip_odd_size_rgb_grey_rgba() {
    let m = tiny();
    for (w, h, c) in [(40u32, 20u32, 3u8), (33, 9, 1), (7, 35, 4)] {
        let img = image(w, h, c);
        let (bytes, rep) = codec::encode(&m, &img, &params(4), &mut no_progress(), None).unwrap();
        assert_eq!(rep.file_bytes, bytes.len());
        let (out, drep) = codec::decode(&m, &bytes, &DecodeOptions::default(), &mut no_progress()).unwrap();
        assert!(drep.lossless);
        assert_eq!(out, img, "{w}x{h}x{c}");
    }
}

#[test]
fn every_truncation_decodes_a_prefix_or_errors_cleanly() {
    let m = tiny();
    let img = image(32, 32, 3);
    let (bytes, rep) = codec::encode(&m, &img, &params(3), &mut no_progress(), None).unwrap();
    let total = rep.packets.len();
    let mut last = 0;
    for cut in (0..=bytes.len()).step_by(97).chain([bytes.len() - 1, bytes.len()]) {
        match codec::decode(&m, &bytes[..cut], &DecodeOptions::default(), &mut no_progress()) {
            Ok((out, d)) => {
                assert!(d.packets_decoded <= total);
                assert!(d.packets_decoded >= last || cut == bytes.len() - 1, "prefix shrank");
                last = d.packets_decoded;
                assert_eq!((out.width, out.height), (32, 32));
                // every packet whose words fit is decoded; one more only when its symbols were
                // all read before the prefix ran out (format/SPEC.md § 5)
                let fit = (0..total).take_while(|&k| rep.prefix_bytes(k + 1) <= cut).count();
                assert!(d.packets_decoded == fit || d.packets_decoded == fit + 1, "cut {cut}: {} vs {fit}", d.packets_decoded);
                assert!(d.bytes_used <= cut.max(rep.overhead_bytes));
                // and what it decoded is exactly the full stream's prefix
                let o = DecodeOptions { max_packets: Some(d.packets_decoded), ..Default::default() };
                let (want, _) = codec::decode(&m, &bytes, &o, &mut no_progress()).unwrap();
                assert_eq!(out, want, "cut {cut}");
                assert_eq!(d.lossless, cut == bytes.len());
            }
            Err(e) => assert!(matches!(e, Error::Format(_)), "cut {cut}: {e}"),
        }
    }
    // max_bytes is the same as a file cut short
    let cut = rep.prefix_bytes(1) + 3;
    let a = codec::decode(&m, &bytes[..cut], &DecodeOptions::default(), &mut no_progress()).unwrap();
    let opts = DecodeOptions { max_bytes: Some(cut), ..Default::default() };
    let b = codec::decode(&m, &bytes, &opts, &mut no_progress()).unwrap();
    assert_eq!(a.0, b.0);
    assert_eq!(a.1.packets_decoded, 1);
}

#[test]
fn prefix_reconstruction_matches_encoder_view_and_max_steps() {
    let m = tiny();
    let img = image(32, 32, 3);
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut obs = |_: usize, x0: &[f32]| {
        seen.push(codec::to_u8(x0));
        Ok(())
    };
    let (bytes, rep) = codec::encode(&m, &img, &params(4), &mut no_progress(), Some(&mut obs)).unwrap();
    for (k, want) in seen.iter().enumerate() {
        let opts = DecodeOptions { max_packets: Some(k), ..Default::default() };
        let (out, d) = codec::decode(&m, &bytes, &opts, &mut no_progress()).unwrap();
        assert_eq!(d.packets_decoded, k);
        // the bytes reported are the prefix file that decodes to the same image
        assert_eq!(d.bytes_used, rep.prefix_bytes(k));
        let (cut_out, dc) = codec::decode(&m, &bytes[..d.bytes_used], &DecodeOptions::default(), &mut no_progress()).unwrap();
        assert!(dc.packets_decoded >= k, "prefix {k}");
        if dc.packets_decoded == k {
            assert_eq!(cut_out, out, "prefix {k}");
        }
        let grid = ddpm_codec::tiling::TileGrid::new(32, 32, 32);
        assert_eq!(out.data, grid.from_tiles(want), "prefix {k}");
    }
}

#[test]
fn encode_on_one_thread_decode_on_two() {
    let m = tiny();
    let img = image(64, 40, 3);
    let p1 = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let p2 = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let (b1, _) = p1.install(|| codec::encode(&m, &img, &params(3), &mut no_progress(), None)).unwrap();
    let (b2, _) = p2.install(|| codec::encode(&m, &img, &params(3), &mut no_progress(), None)).unwrap();
    assert_eq!(b1, b2, "encoder output depends on thread count");
    let (out, _) = p2.install(|| codec::decode(&m, &b1, &DecodeOptions::default(), &mut no_progress())).unwrap();
    assert_eq!(out, img);
}

#[test]
fn the_tilt_is_the_encoders_choice_alone() {
    // streams encoded with different tilts differ, and all decode bit-exactly with a decoder
    // that does not know the tilt (it is not in the stream)
    let m = tiny();
    let img = image(32, 32, 3);
    let mut streams = Vec::new();
    for tilt in [1.0, 1.2, 1.6] {
        let mut p = params(4);
        p.rcc.tilt = tilt;
        let (bytes, _) = codec::encode(&m, &img, &p, &mut no_progress(), None).unwrap();
        let (out, drep) = codec::decode(&m, &bytes, &DecodeOptions::default(), &mut no_progress()).unwrap();
        assert!(drep.lossless);
        assert_eq!(out, img, "tilt {tilt}");
        streams.push(bytes);
    }
    assert!(streams[0] != streams[1] && streams[1] != streams[2]);
}

#[test]
fn the_scorer_is_the_encoders_choice_alone() {
    // the int8 and the f32 scorer choose differently somewhere, and a decoder that does not
    // know which one ran decodes both bit-exactly
    let m = tiny();
    let img = image(40, 32, 3);
    let mut streams = Vec::new();
    for scorer in [Scorer::Int8, Scorer::F32] {
        let mut p = params(4);
        p.rcc.scorer = scorer;
        let (bytes, _) = codec::encode(&m, &img, &p, &mut no_progress(), None).unwrap();
        let (out, drep) = codec::decode(&m, &bytes, &DecodeOptions::default(), &mut no_progress()).unwrap();
        assert!(drep.lossless);
        assert_eq!(out, img, "{scorer:?}");
        streams.push(bytes);
    }
    assert_ne!(streams[0], streams[1]);
}

#[test]
fn wrong_model_and_corruption_are_clear_errors() {
    let m = tiny();
    let img = image(32, 32, 3);
    let (bytes, _) = codec::encode(&m, &img, &params(3), &mut no_progress(), None).unwrap();
    let other = Model::embedded().unwrap();
    let err = codec::decode(&other, &bytes, &DecodeOptions::default(), &mut no_progress()).unwrap_err();
    assert!(matches!(err, Error::ModelMismatch(_)), "{err}");
    // flip one bit in the body: the body checksum catches it
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 5] ^= 0x10;
    let err = codec::decode(&m, &bad, &DecodeOptions::default(), &mut no_progress()).unwrap_err();
    assert!(matches!(err, Error::Checksum(_) | Error::Format(_)), "{err}");
    // garbage
    let err = codec::decode(&m, b"hello world, not a stream", &DecodeOptions::default(), &mut no_progress()).unwrap_err();
    assert!(matches!(err, Error::Format(_)), "{err}");
}

#[test]
fn hostile_geometry_is_refused_before_any_work() {
    // a valid header claiming 4096×4096 pixels and K = 1000: 16,384 tiles × 1000 steps
    let m = tiny();
    let img = image(32, 32, 3);
    let (bytes, _) = codec::encode(&m, &img, &params(3), &mut no_progress(), None).unwrap();
    let s = codec::parse(&bytes).unwrap();
    let mut h = s.header.clone();
    h.width = 4096;
    h.height = 4096;
    h.taus = (1..=1000).collect();
    let evil = ddpm_codec::bitstream::write_stream(&h, &s.words).unwrap();
    let t = std::time::Instant::now();
    let err = codec::decode(&m, &evil, &DecodeOptions::default(), &mut no_progress()).unwrap_err();
    assert!(matches!(err, Error::LimitsExceeded(_)), "{err}");
    assert!(err.to_string().contains("max-work"), "{err}");
    assert!(t.elapsed().as_secs_f64() < 1.0);
}

#[test]
fn old_format_versions_get_a_version_error() {
    let mut v2 = b"DDPC\x02".to_vec();
    v2.extend_from_slice(&[80, 0, 0, 0]);
    v2.extend_from_slice(&[0u8; 100]);
    let err = codec::decode(&tiny(), &v2, &DecodeOptions::default(), &mut no_progress()).unwrap_err();
    assert!(matches!(err, Error::Format(_)) && err.to_string().contains("version 2"), "{err}");
    // version-3, -4 and -5 streams (same container, other body semantics) are refused, not misread
    let (mut v3, _) = codec::encode(&tiny(), &image(8, 8, 3), &params(3), &mut no_progress(), None).unwrap();
    for v in [3u8, 4, 5] {
        v3[4] = v;
        let err = codec::decode(&tiny(), &v3, &DecodeOptions::default(), &mut no_progress()).unwrap_err();
        assert!(matches!(err, Error::Format(_)) && err.to_string().contains(&format!("version {v}")), "{err}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// The whole decoder on mutated streams, resealed so that the mutations reach the body
    /// (the fuzz target `decode_resealed` runs the same function): never a panic.
    #[test]
    fn resealed_mutations_never_panic(edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..8), lossy in proptest::prelude::any::<bool>()) {
        use std::sync::OnceLock;
        static STREAMS: OnceLock<(Model, Model, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>)> = OnceLock::new();
        let (m, ms, lossless, lossy_b, learned, deferred) = STREAMS.get_or_init(|| {
            let (m, ms) = (tiny(), tiny_sigma());
            let img = image(40, 20, 3);
            let (a, _) = codec::encode(&m, &img, &params(4), &mut no_progress(), None).unwrap();
            let mut p = params(4);
            p.lossless = false;
            let (b, _) = codec::encode(&m, &img, &p, &mut no_progress(), None).unwrap();
            p.lossless = true;
            p.variance = Variance::Learned;
            let (c, _) = codec::encode(&ms, &img, &p, &mut no_progress(), None).unwrap();
            // deferred steps (format 6)
            let mut pd = params(12);
            pd.variance = Variance::Learned;
            pd.rcc.defer_bits = 120.0;
            let (d, _) = codec::encode(&ms, &img, &pd, &mut no_progress(), None).unwrap();
            (m, ms, a, b, c, d)
        });
        let mut b = match (lossy, edits[0].1 % 4) {
            (_, 0) => learned.clone(),
            (_, 1) => deferred.clone(),
            (true, _) => lossy_b.clone(),
            (false, _) => lossless.clone(),
        };
        for (i, v) in edits {
            let n = b.len();
            b[i % n] ^= v | 1;
        }
        let _ = ddpm_codec::fuzzing::decode_resealed_pick(m, ms, &b);
    }
}

#[test]
fn nll_and_the_codec_agree_on_the_ideal_length() {
    // `nll --steps K` and `encode --steps K` name the same chain (dense spacing, the same σ²);
    // with a faithful sampler (a large candidate margin) the codec's chain states are draws of
    // q(x_t | x_0), so its ideal length (Σ KL + L_0) averages to the bound `nll` computes.
    // The embedded model: the tiny fixture's random weights give thousands of bits per step.
    // Both the per-step optimal variance and, for a learn_sigma model (the shipped one), the
    // learned σ per dimension.
    let m = Model::embedded().unwrap();
    let img = image(32, 32, 3);
    let x0 = {
        let g = ddpm_codec::tiling::TileGrid::new(32, 32, 32);
        g.to_tiles(&img.to_rgb())
    };
    let k = 6;
    let mut kinds = vec![Variance::Optimal];
    if m.learns_sigma() {
        kinds.push(Variance::Learned);
    }
    for v in kinds {
        let mut p = CodecParams::new(k, "dense", v).unwrap();
        p.rcc = RccParams { chunk_bits: 6.0, margin_bits: 8, ..RccParams::default() };
        let sched = codec::make_schedule(1000, k, "dense").unwrap();
        assert_eq!(p.schedule, sched);
        let seeds = 0..6u64;
        let codec_bpd: f64 = seeds
            .clone()
            .map(|seed| {
                p.seed = seed;
                let (_, rep) = codec::encode(&m, &img, &p, &mut no_progress(), None).unwrap();
                rep.ideal_bpd()
            })
            .sum::<f64>()
            / 6.0;
        let nll_bpd: f64 = seeds
            .map(|seed| {
                let r = ddpm_codec::eval::nll::run_nll(&m, &x0, &sched, v, m.variance_tables(), "exact".parse().unwrap(), 1, seed, &mut no_progress()).unwrap();
                r.total_bits_per_dim
            })
            .sum::<f64>()
            / 6.0;
        println!("{v}: codec ideal {codec_bpd:.4} vs nll {nll_bpd:.4} bits/dim");
        // Measured (session 4, optimal): codec 6.97 against the bound's 6.17 bits/dim (1.13×)
        // at K = 6. The gap is the sampler's, not the definitions' (same chain, same σ² below):
        // the shared candidate pool makes the chunks of a step pick from the same rows, and
        // the samples it gives are less faithful than independent PFR (bench/rcc/README.md;
        // issue #12 stays open on it). The band still catches a different chain (even
        // spacing) or variance.
        let ratio = codec_bpd / nll_bpd;
        assert!(ratio > 0.98 && ratio < 1.2, "{v}: codec ideal {codec_bpd} vs nll {nll_bpd}");
        let dn = ddpm_codec::diffusion::Diffusion::with_tables(sched.clone(), v, m.variance_tables()).unwrap();
        let dc = ddpm_codec::diffusion::Diffusion::with_tables(p.schedule.clone(), p.variance, m.variance_tables()).unwrap();
        assert!((0..k).all(|i| dn.sigma2(i) == dc.sigma2(i)));
    }
}

/// Deferred steps (format 6, `RccParams::defer_bits` > 0): transitions that span several chain
/// steps, empty packets between them. Lossless round trips, the stream does not depend on the
/// thread count, and every packet prefix (also one that ends inside a run of empty packets)
/// decodes to what the encoder showed there.
#[test]
fn deferred_steps_round_trip_and_every_prefix_is_the_encoders_view() {
    let sigma = tiny_sigma();
    let img = image(40, 20, 3);
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let mut deferred_seen = false;
    for (variance, defer_bits) in [(Variance::Learned, 120.0), (Variance::Small, 250.0)] {
        let mut p = params(12);
        p.variance = variance;
        p.rcc.defer_bits = defer_bits;
        let model = &sigma;
        let mut seen: Vec<Vec<u8>> = Vec::new();
        let mut obs = |_: usize, x0: &[f32]| {
            seen.push(codec::to_u8(x0));
            Ok(())
        };
        let (bytes, rep) = one.install(|| codec::encode(model, &img, &p, &mut no_progress(), Some(&mut obs))).unwrap();
        let (bytes2, _) = two.install(|| codec::encode(model, &img, &p, &mut no_progress(), None)).unwrap();
        assert_eq!(bytes, bytes2, "the stream depends on the thread count");
        let empty = rep.packets.iter().filter(|k| k.t_after > 0 && k.ideal_bits == 0.0).count();
        deferred_seen |= empty > 0;
        let (out, d) = two.install(|| codec::decode(model, &bytes, &DecodeOptions::default(), &mut no_progress())).unwrap();
        assert!(d.lossless);
        assert_eq!(out, img, "{variance:?}");
        let grid = ddpm_codec::tiling::TileGrid::new(40, 20, 32);
        for (k, want) in seen.iter().enumerate() {
            let opts = DecodeOptions { max_packets: Some(k), ..Default::default() };
            let (out, dk) = codec::decode(model, &bytes, &opts, &mut no_progress()).unwrap();
            assert_eq!(dk.packets_decoded, k);
            assert_eq!(dk.bytes_used, rep.prefix_bytes(k));
            assert_eq!(out.data, grid.from_tiles(want), "{variance:?} prefix {k}");
        }
        // without deferral the same image is another stream
        p.rcc.defer_bits = 0.0;
        let (plain, _) = codec::encode(model, &img, &p, &mut no_progress(), None).unwrap();
        if empty > 0 {
            assert_ne!(plain, bytes);
        }
    }
    assert!(deferred_seen, "no setting deferred a step");
}

fn tiny_sigma() -> Model {
    Model::from_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_sigma"))).unwrap()
}

/// The learned variance (a `learn_sigma` model's v, σ per dimension) is coded (format 5,
/// variance code 3): lossless round trips, every prefix decodes what the encoder saw, the
/// stream does not depend on the thread count, and `nll` measures the same variance.
#[test]
fn learned_variance_round_trips_and_is_measured_by_nll() {
    let sigma = tiny_sigma();
    let mut p = params(4);
    p.variance = Variance::Learned;
    for (w, h, c) in [(40u32, 20u32, 3u8), (9, 33, 1)] {
        let img = image(w, h, c);
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let (bytes, rep) = one.install(|| codec::encode(&sigma, &img, &p, &mut no_progress(), None)).unwrap();
        let (bytes2, _) = two.install(|| codec::encode(&sigma, &img, &p, &mut no_progress(), None)).unwrap();
        assert_eq!(bytes, bytes2, "the stream depends on the thread count");
        assert_eq!((bytes[5] >> 6) & 3, 3, "variance code 3 (learned)");
        let (out, d) = two.install(|| codec::decode(&sigma, &bytes, &DecodeOptions::default(), &mut no_progress())).unwrap();
        assert!(d.lossless);
        assert_eq!(out, img, "{w}x{h}x{c}");
        // a prefix decodes exactly the packets it holds, as the full stream's prefix
        let cut = rep.prefix_bytes(2);
        let (a, da) = codec::decode(&sigma, &bytes[..cut], &DecodeOptions::default(), &mut no_progress()).unwrap();
        let o = DecodeOptions { max_packets: Some(da.packets_decoded), ..Default::default() };
        let (b, _) = codec::decode(&sigma, &bytes, &o, &mut no_progress()).unwrap();
        assert!(da.packets_decoded >= 2 && !da.lossless);
        assert_eq!(a, b);
    }
    // "auto" takes the learned variance from K = 50 on (codec::LEARNED_MIN_STEPS), else the
    // per-step default (this fixture has no tables: σ² = β)
    assert_eq!(codec::resolve_variance("auto", &sigma, 50).unwrap(), Variance::Learned);
    assert_eq!(codec::resolve_variance("auto", &sigma, 1000).unwrap(), Variance::Learned);
    assert_eq!(codec::resolve_variance("auto", &sigma, 20).unwrap(), Variance::Large);
    assert_eq!(codec::resolve_variance("auto", &tiny(), 50).unwrap(), Variance::Large);
    assert_eq!(codec::resolve_variance("optimal", &sigma, 50).unwrap(), Variance::Optimal);
    // a different variance is a different stream of the same image
    let img = image(32, 32, 3);
    let (learned, _) = codec::encode(&sigma, &img, &p, &mut no_progress(), None).unwrap();
    let mut ps = params(4);
    ps.variance = Variance::Small;
    let (small, _) = codec::encode(&sigma, &img, &ps, &mut no_progress(), None).unwrap();
    assert_ne!(learned, small);
    // nll measures it, and it differs from the per-step kinds
    let x0 = ddpm_codec::tiling::TileGrid::new(32, 32, 32).to_tiles(&img.to_rgb());
    let sched = codec::make_schedule(1000, 4, "dense").unwrap();
    let nll = |m: &Model, v: Variance| ddpm_codec::eval::nll::run_nll(m, &x0, &sched, v, None, "exact".parse().unwrap(), 1, 0, &mut no_progress());
    let l = nll(&sigma, Variance::Learned).unwrap().total_bits_per_dim;
    let sm = nll(&sigma, Variance::Small).unwrap().total_bits_per_dim;
    assert!(l.is_finite() && l > 0.0 && (l - sm).abs() > 1e-6, "{l} vs {sm}");
}

/// What cannot be coded is refused before any work with a clear error: the learned variance
/// with an ε-only model (encoder: a parameter error; a stream that claims it for such a model:
/// a format error), and Analytic-DPM, which format 5 does not name.
#[test]
fn learned_variance_needs_its_model_and_analytic_is_not_codable() {
    let img = image(32, 32, 3);
    let mut p = params(3);
    p.variance = Variance::Learned;
    let t0 = std::time::Instant::now();
    match codec::encode(&tiny(), &img, &p, &mut no_progress(), None) {
        Err(Error::Parameter(m)) => assert!(m.contains("learn"), "{m}"),
        other => panic!("expected a parameter error, got {:?}", other.map(|(b, _)| b.len())),
    }
    p.variance = Variance::Analytic;
    match codec::encode(&tiny(), &img, &p, &mut no_progress(), None) {
        Err(Error::Parameter(m)) => assert!(m.contains("analytic"), "{m}"),
        other => panic!("expected a parameter error, got {:?}", other.map(|(b, _)| b.len())),
    }
    assert!(t0.elapsed().as_secs_f64() < 1.0, "refused before the chain");
    // a stream of the tiny model whose variance field says learned (resealed: CRCs valid)
    let (mut b, _) = codec::encode(&tiny(), &img, &params(3), &mut no_progress(), None).unwrap();
    b[5] |= 3 << 6;
    assert!(ddpm_codec::fuzzing::reseal(&mut b, &tiny().sha256()));
    match codec::decode(&tiny(), &b, &DecodeOptions::default(), &mut no_progress()) {
        Err(Error::Format(m)) => assert!(m.contains("learn"), "{m}"),
        other => panic!("expected a format error, got {:?}", other.map(|(i, _)| i.width)),
    }
    // an ε-only model has no v for nll either
    let x0 = ddpm_codec::tiling::TileGrid::new(32, 32, 32).to_tiles(&img.to_rgb());
    let sched = codec::make_schedule(1000, 4, "dense").unwrap();
    assert!(ddpm_codec::eval::nll::run_nll(&tiny(), &x0, &sched, Variance::Learned, None, "exact".parse().unwrap(), 1, 0, &mut no_progress()).is_err());
}
