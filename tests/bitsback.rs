//! Bits-back archives (.ddpa) on the tiny fixture model (random weights: rates are meaningless,
//! correctness is not): round trips, thread invariance, the test vector, hostile input.

use std::path::{Path, PathBuf};

use ddpm_codec::bitsback::{self, ArchiveLimits, Item, PackParams};
use ddpm_codec::image_io::RasterImage;
use ddpm_codec::model::Model;
use ddpm_codec::schedule::Variance;
use ddpm_codec::Error;
use proptest::prelude::*;

fn repo_path(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn tiny() -> Model {
    Model::from_dir(&repo_path("tests/fixtures/tiny")).unwrap()
}

fn params(steps: usize) -> PackParams {
    let mut p = PackParams::new(steps, "dense", Variance::Small).unwrap();
    p.latent_bits = 4;
    p.seed = 3;
    p
}

fn image(w: u32, h: u32, c: u8, salt: u32) -> RasterImage {
    let mut data = Vec::new();
    for y in 0..h {
        for x in 0..w {
            for k in 0..c {
                let v = if c == 4 && k == 3 { 255 } else { (x * 5 + y * 3 + k as u32 * 40 + (x * y + salt) % 7 + salt * 11) % 256 };
                data.push(v as u8);
            }
        }
    }
    RasterImage::new(w, h, c, data).unwrap()
}

fn item(name: &str, img: RasterImage) -> Item {
    Item { name: name.into(), image: img }
}

fn no_progress() -> impl FnMut(usize, usize) {
    |_, _| {}
}

fn lim() -> ArchiveLimits {
    ArchiveLimits::default()
}

#[test]
fn bitsback_round_trip_mixed_geometry() {
    let m = tiny();
    let items = vec![
        item("a", image(40, 20, 3, 0)),
        item("grey", image(33, 9, 1, 1)),
        item("rgba", image(7, 35, 4, 2)),
        item("a", image(32, 32, 3, 3)), // duplicate name: made unique
    ];
    let (bytes, rep) = bitsback::pack(&m, &items, &params(3), &mut no_progress()).unwrap();
    assert_eq!(rep.archive_bytes, bytes.len());
    assert_eq!(rep.items, 4);
    assert_eq!(rep.network_calls, rep.groups * 3);
    let (out, urep) = bitsback::unpack(&m, &bytes, &lim(), &mut no_progress()).unwrap();
    assert_eq!(urep.network_calls, rep.network_calls);
    assert_eq!(out.len(), 4);
    for (o, i) in out.iter().zip(&items) {
        assert_eq!(o.image, i.image, "{}", i.name);
    }
    let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["a", "grey", "rgba", "a~1"]);
    // the accounting adds up: body = net + initial bits
    assert!((rep.body_bytes as f64 * 8.0 - rep.net_bits - rep.initial_bits).abs() < 1e-6);
    assert_eq!(rep.header_bytes + rep.body_bytes, rep.archive_bytes);
}

#[test]
fn bitsback_groups_of_tiles_round_trip() {
    // 20 tiles: with max_group 4 the group sizes are 1 × 16, then 2, 2
    let m = tiny();
    let items = vec![item("big", image(160, 128, 3, 5))];
    let mut p = params(2);
    p.max_group_tiles = 4;
    assert_eq!(bitsback::group_sizes(20, 4), [vec![1; 16], vec![2, 2]].concat());
    let (bytes, rep) = bitsback::pack(&m, &items, &p, &mut no_progress()).unwrap();
    assert_eq!(rep.groups, 18);
    let (out, _) = bitsback::unpack(&m, &bytes, &lim(), &mut no_progress()).unwrap();
    assert_eq!(out[0].image, items[0].image);
}

#[test]
fn bitsback_pack_on_one_thread_unpack_on_two() {
    let m = tiny();
    let items: Vec<Item> = (0..3).map(|k| item(&format!("img{k:03}"), image(32, 32, 3, k))).collect();
    let p1 = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let p2 = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let (b1, _) = p1.install(|| bitsback::pack(&m, &items, &params(3), &mut no_progress())).unwrap();
    let (b2, _) = p2.install(|| bitsback::pack(&m, &items, &params(3), &mut no_progress())).unwrap();
    assert_eq!(b1, b2, "archive depends on the thread count");
    let (out, _) = p2.install(|| bitsback::unpack(&m, &b1, &lim(), &mut no_progress())).unwrap();
    assert_eq!(out.iter().map(|o| &o.image).collect::<Vec<_>>(), items.iter().map(|i| &i.image).collect::<Vec<_>>());
    // numbered names are stored as a scheme (prefix "img", start 0, 3 digits)
    let a = bitsback::read_archive(&b1, &lim()).unwrap();
    assert_eq!(a.header.items[2].name, "img002");
}

/// The learned variance (σ per dimension from a `learn_sigma` model's v, archive variance code
/// 4): round trip on mixed geometry, 1 vs 2 threads; an ε-only model is refused before work.
#[test]
fn bitsback_learned_variance_round_trip() {
    let m = Model::from_dir(&repo_path("tests/fixtures/tiny_sigma")).unwrap();
    let items = vec![item("a", image(40, 20, 3, 0)), item("g", image(9, 33, 1, 1))];
    let mut p = params(3);
    p.variance = Variance::Learned;
    let p1 = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let p2 = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let (b1, _) = p1.install(|| bitsback::pack(&m, &items, &p, &mut no_progress())).unwrap();
    let (b2, _) = p2.install(|| bitsback::pack(&m, &items, &p, &mut no_progress())).unwrap();
    assert_eq!(b1, b2, "archive depends on the thread count");
    assert_eq!(bitsback::read_archive(&b1, &lim()).unwrap().header.variance, 4);
    let (out, _) = p2.install(|| bitsback::unpack(&m, &b1, &lim(), &mut no_progress())).unwrap();
    assert_eq!(out.iter().map(|o| &o.image).collect::<Vec<_>>(), items.iter().map(|i| &i.image).collect::<Vec<_>>());
    let (small, _) = bitsback::pack(&m, &items, &params(3), &mut no_progress()).unwrap();
    assert_ne!(small, b1);
    match bitsback::pack(&tiny(), &items, &p, &mut no_progress()) {
        Err(Error::Parameter(e)) => assert!(e.contains("learn"), "{e}"),
        other => panic!("expected a parameter error, got {:?}", other.map(|(b, _)| b.len())),
    }
}

/// The SPEC's test vector: one 8×4 RGB image "v0" (samples (3·i) mod 256, i = 0..95), tiny
/// model, K = 2 (dense: τ = [250, 1000]), variance small, latent_bits 4, seed 1.
fn vector_input() -> (Vec<Item>, PackParams) {
    let data: Vec<u8> = (0..96u32).map(|i| (3 * i % 256) as u8).collect();
    let items = vec![item("v0", RasterImage::new(8, 4, 3, data).unwrap())];
    let mut p = PackParams::new(2, "dense", Variance::Small).unwrap();
    p.latent_bits = 4;
    p.seed = 1;
    (items, p)
}

#[test]
fn bitsback_test_vector_byte_for_byte() {
    let m = tiny();
    let (items, p) = vector_input();
    let (bytes, _) = bitsback::pack(&m, &items, &p, &mut no_progress()).unwrap();
    let path = repo_path("format/vectors/tiny.ddpa");
    if std::env::var_os("DDPM_WRITE_VECTORS").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let want = std::fs::read(&path).unwrap();
    assert_eq!(bytes, want, "pack no longer reproduces format/vectors/tiny.ddpa");
    let a = bitsback::read_archive(&want, &lim()).unwrap();
    let h = &a.header;
    assert_eq!((h.t_max, h.taus.as_slice(), h.variance), (1000, &[250u16, 1000][..], 0));
    assert_eq!((h.range_log2, h.window_sigmas, h.max_group_tiles, h.seed), (3, 7, 1, 1));
    assert_eq!(h.items.len(), 1);
    assert_eq!((h.items[0].name.as_str(), h.items[0].width, h.items[0].height, h.items[0].channels), ("v0", 8, 4, 3));
    assert_eq!(h.pixels_crc32, crc32fast::hash(items[0].image.samples()));
    assert_eq!(h.model_sha256, m.sha256());
    let (out, _) = bitsback::unpack(&m, &want, &lim(), &mut no_progress()).unwrap();
    assert_eq!(out[0].image, items[0].image);
    // the SPEC states the vector's size and hash
    let spec = std::fs::read_to_string(repo_path("format/SPEC.md")).unwrap();
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(&want).iter().map(|b| format!("{b:02x}")).collect();
    assert!(spec.contains(&hash), "SPEC.md lacks the vector's SHA-256 {hash}");
    assert!(spec.contains(&format!("{} bytes", want.len())), "SPEC.md lacks the vector's size");
}

#[test]
fn bitsback_errors_are_clear() {
    let m = tiny();
    let (items, p) = vector_input();
    let (bytes, _) = bitsback::pack(&m, &items, &p, &mut no_progress()).unwrap();
    // another model
    let other = Model::embedded().unwrap();
    assert!(matches!(bitsback::unpack(&other, &bytes, &lim(), &mut no_progress()), Err(Error::ModelMismatch(_))));
    // header bit flip: checksum
    let mut bad = bytes.clone();
    bad[20] ^= 4;
    assert!(matches!(bitsback::unpack(&m, &bad, &lim(), &mut no_progress()), Err(Error::Checksum(_))));
    // body bit flip: checksum
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 3] ^= 0x40;
    assert!(matches!(bitsback::unpack(&m, &bad, &lim(), &mut no_progress()), Err(Error::Checksum(_))));
    // truncated / trailing bytes / garbage: format
    for b in [&bytes[..bytes.len() - 1], &bytes[..5], b"DDPA", b"not an archive at all"] {
        assert!(matches!(bitsback::read_archive(b, &lim()), Err(Error::Format(_))));
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(bitsback::read_archive(&long, &lim()), Err(Error::Format(_))));
    // limits
    let small = ArchiveLimits { max_total_tiles: 0, ..ArchiveLimits::default() };
    assert!(matches!(bitsback::read_archive(&bytes, &small), Err(Error::LimitsExceeded(_))));
    let small = ArchiveLimits { max_header_bytes: 100, ..ArchiveLimits::default() };
    assert!(matches!(bitsback::read_archive(&bytes, &small), Err(Error::LimitsExceeded(_))));
}

/// Recomputes the header and body CRCs so that mutations reach the decoder.
fn reseal(b: &mut [u8]) {
    if b.len() < 9 + 36 {
        return;
    }
    let h = u32::from_le_bytes([b[5], b[6], b[7], b[8]]) as usize;
    let Some(hend) = 9usize.checked_add(h).filter(|&e| e + 4 <= b.len()) else { return };
    // body_crc32 sits 8 bytes before item_count; find it from the fixed layout
    let k = u16::from_le_bytes([b[9 + 34], b[9 + 35]]) as usize;
    let body_crc_at = body_crc_offset(k);
    if body_crc_at + 4 <= hend {
        let crc = crc32fast::hash(&b[hend + 4..]);
        b[body_crc_at..body_crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32fast::hash(&b[..hend]);
    b[hend..hend + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Offset of `body_crc32` in an archive whose header names `k` steps (SPEC § A2).
fn body_crc_offset(k: usize) -> usize {
    9 + 36 + 2 * k + 1 + k + 1 + 1 + 2 + 8 + 4 + 4 + 4
}

#[test]
fn bitsback_info_describes_the_vector() {
    let b = vector_bytes();
    let text = bitsback::info(&b, &lim()).unwrap();
    for want in ["version 3", "K = 2 of T = 1000", "variance       : small (code 0)", "items          : 1 (1 tiles, 96 dimensions)", "v0 8x4x3", &format!("file: {} bytes", b.len())] {
        assert!(text.contains(want), "info lacks {want:?}:\n{text}");
    }
    assert!(matches!(bitsback::info(&b[..b.len() - 1], &lim()), Err(Error::Format(_))));
}

#[test]
fn bitsback_archive_versions_1_and_2_are_refused_clearly() {
    for v in [1u8, 2] {
        let mut b = vector_bytes();
        b[4] = v;
        match bitsback::read_archive(&b, &lim()) {
            Err(Error::Format(m)) => assert!(m.contains(&format!("archive version {v}")), "{m}"),
            other => panic!("version {v} archive: {other:?}"),
        }
    }
}

#[test]
fn bitsback_wrong_pixels_crc_is_a_checksum_error_after_decoding() {
    let m = tiny();
    let mut b = vector_bytes();
    let k = u16::from_le_bytes([b[9 + 34], b[9 + 35]]) as usize;
    let at = body_crc_offset(k) + 4; // pixels_crc32 follows body_crc32
    b[at] ^= 1;
    reseal(&mut b);
    bitsback::read_archive(&b, &lim()).expect("a resealed header parses");
    match bitsback::unpack(&m, &b, &lim(), &mut no_progress()) {
        Err(Error::Checksum(msg)) => assert!(msg.contains("pixel CRC"), "{msg}"),
        other => panic!("wrong pixel CRC: {:?}", other.map(|_| ())),
    }
}

fn vector_bytes() -> Vec<u8> {
    std::fs::read(repo_path("format/vectors/tiny.ddpa")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn bitsback_reader_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = bitsback::read_archive(&data, &lim());
        let mut d = b"DDPA\x02".to_vec();
        d.extend_from_slice(&data);
        let _ = bitsback::read_archive(&d, &lim());
    }

    #[test]
    fn bitsback_reader_never_panics_on_truncated_or_flipped(cut in 0usize..100_000, flips in proptest::collection::vec((0usize..100_000, 0u8..8), 1..4)) {
        let good = vector_bytes();
        let cut = cut % (good.len() + 1);
        prop_assert!(bitsback::read_archive(&good[..cut], &lim()).is_err() || cut == good.len());
        let mut bad = good.clone();
        for (at, bit) in &flips {
            let n = bad.len();
            bad[at % n] ^= 1 << bit;
        }
        // a flipped archive never reads as the original
        if let Ok(a) = bitsback::read_archive(&bad, &lim()) {
            prop_assert_eq!(&bad, &good);
            let _ = a;
        }
    }
}

proptest! {
    // each case runs the decoder (2 network calls of the tiny model)
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn bitsback_unpack_never_panics_on_resealed_mutations(flips in proptest::collection::vec((0usize..100_000, 0u8..8), 1..3)) {
        let m = tiny();
        let mut bad = vector_bytes();
        for (at, bit) in &flips {
            let n = bad.len();
            bad[at % n] ^= 1 << bit;
        }
        reseal(&mut bad);
        // tight limits: a flip that enlarges the geometry must not make the test slow
        let small = ArchiveLimits { max_total_tiles: 4, max_item_pixels: 4096, max_steps: 8, ..ArchiveLimits::default() };
        match bitsback::unpack(&m, &bad, &small, &mut no_progress()) {
            // only fields the checks do not cover (a name) may change; the pixels are verified
            Ok((out, _)) => prop_assert_eq!(&out[0].image, &vector_input().0[0].image),
            Err(e) => prop_assert!(matches!(e, Error::Format(_) | Error::Checksum(_) | Error::LimitsExceeded(_) | Error::ModelMismatch(_) | Error::Parameter(_)), "{e}"),
        }
    }
}
