//! Container format tests: format/SPEC.md (version 10) against src/bitstream, the test vectors
//! in format/vectors/, truncation, corruption and hostile input.

use std::path::PathBuf;

use ddpm_codec::bitstream::{read_stream, write_stream, Channels, Header, Limits, Params, ScheduleKind, Stream, VarianceCode};
use ddpm_codec::Error;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("format/vectors").join(name)).unwrap()
}

fn read(b: &[u8]) -> Result<Stream, Error> {
    read_stream(b, &Limits::default())
}

const WORDS: [u32; 5] = [0xDEAD_BEEF, 1, 0x1234_5678, 0xCAFE_BABE, 0];

fn valid_header() -> Header {
    Header {
        model_id: [0, 1, 2, 3],
        width: 3,
        height: 2,
        channels: Channels::Rgb,
        taus: vec![10, 500, 1000],
        variance: VarianceCode::Small,
        params: Params {
            t_max: 1000,
            batch_tiles: 16,
            seed: 0x0123_4567_89AB_CDEF,
            chunk_bits_q8: 2048,
            margin_bits: 6,
            min_log2_candidates: 8,
            max_log2_candidates: 16,
            skip_below_q8: 64,
            defer_q8: 6144,
        },
        lossless: true,
        body_words: 5,
        check: crc32fast::hash(&(0u8..18).collect::<Vec<_>>()),
    }
}

#[test]
fn vectors_match_readme_hashes() {
    let readme = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("format/vectors/README.md")).unwrap();
    let mut n = 0;
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`');
        let b = vector(name);
        assert_eq!(format!("{:x}", Sha256::digest(&b)), cells[2], "{name}");
        assert_eq!(b.len().to_string(), cells[3], "{name}");
        n += 1;
    }
    assert_eq!(n, 14);
}

#[test]
fn vector_valid_is_what_the_writer_writes() {
    let b = vector("valid.ddpc");
    let s = read(&b).unwrap();
    assert_eq!(s.header, valid_header());
    assert_eq!((s.words.as_slice(), s.truncated, s.header_len), (&WORDS[..], false, 47));
    assert_eq!(write_stream(&valid_header(), &WORDS).unwrap(), b);
    let lossy = Header { lossless: false, ..valid_header() };
    let b = vector("valid_lossy.ddpc");
    let s = read(&b).unwrap();
    assert_eq!(s.header.check, 0x8963_E3C9);
    assert_eq!(write_stream(&lossy, &WORDS).unwrap(), b);
}

#[test]
fn vector_default_parameters_make_a_small_header() {
    let b = vector("valid_default.ddpc");
    let s = read(&b).unwrap();
    let h = &s.header;
    assert_eq!((h.width, h.height, h.num_steps(), h.params), (32, 32, 50, Params::default_for(50)));
    assert_eq!(h.schedule_kind(), ScheduleKind::Quadratic);
    assert_eq!((h.variance, h.model_id, h.check), (VarianceCode::Optimal, [0xAB, 0xCD, 0xEF, 0x01], 0x1234_5678));
    assert_eq!(s.header_len, 22);
    let words: Vec<u32> = (1..=8u32).map(|n| 0x9E37_79B9u32.wrapping_mul(n)).collect();
    assert_eq!(s.words, words);
    assert_eq!(write_stream(h, &words).unwrap(), b);
}

#[test]
fn vector_truncated_and_corrupt() {
    let s = read(&vector("truncated.ddpc")).unwrap();
    assert!(s.truncated);
    assert_eq!(s.words, WORDS[..3]);
    assert!(matches!(read(&vector("corrupt_header.ddpc")), Err(Error::Checksum(_))));
    let cb = vector("corrupt_body.ddpc");
    assert!(matches!(read(&cb), Err(Error::Checksum(_))));
    for cut in 47..cb.len() {
        assert!(read(&cb[..cut]).unwrap().truncated);
    }
    let e = read(&vector("version2.ddpc")).unwrap_err();
    assert!(matches!(e, Error::Format(_)) && e.to_string().contains("version 2"), "{e}");
    let e = read(&vector("version3.ddpc")).unwrap_err();
    assert!(matches!(e, Error::Format(_)) && e.to_string().contains("version 3"), "{e}");
    for v in 4..=9 {
        let e = read(&vector(&format!("version{v}.ddpc"))).unwrap_err();
        assert!(matches!(e, Error::Format(_)) && e.to_string().contains(&format!("format version {v} is not supported (this build reads version 10)")), "{e}");
    }
    // version5/6/7/8/9.ddpc are valid_default.ddpc with version byte 5, 6, 7, 8 or 9 (and
    // their header CRC): the same container, other presets, body semantics or arithmetic
    for v in [5, 6, 7, 8, 9] {
        let mut v8 = vector(&format!("version{v}.ddpc"));
        v8[4] = 10;
        let crc = crc32fast::hash(&v8[..18]);
        v8[18..22].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(v8, vector("valid_default.ddpc"));
    }
}

#[test]
fn every_cut_is_a_prefix_or_a_truncated_header() {
    let b = vector("valid.ddpc");
    for cut in 0..b.len() {
        match read(&b[..cut]) {
            Ok(s) => assert!(cut >= 47 && s.truncated && s.words == WORDS[..(cut - 47) / 4]),
            Err(e) => assert!(cut < 47 && e.to_string().contains("truncated header"), "cut {cut}: {e}"),
        }
    }
}

#[test]
fn bad_magic_trailing_bytes_and_limits() {
    let mut b = vector("valid.ddpc");
    b[0] = b'X';
    assert!(read(&b).unwrap_err().to_string().contains("magic"));
    let mut b = vector("valid.ddpc");
    b.extend_from_slice(&[1, 2, 3, 4]);
    assert!(read(&b).unwrap_err().to_string().contains("trailing"));
    let big = Header { width: 65535, height: 65535, ..valid_header() };
    assert!(write_stream(&big, &WORDS).is_err(), "the writer refuses what a default reader rejects");
    let h = Header { width: 4000, height: 4000, ..valid_header() };
    let b = write_stream(&h, &WORDS).unwrap();
    let small = Limits { max_pixels: 1 << 20, ..Limits::default() };
    assert!(matches!(read_stream(&b, &small), Err(Error::LimitsExceeded(_))));
    let few = Limits { max_body_words: 4, ..Limits::default() };
    assert!(matches!(read_stream(&vector("valid.ddpc"), &few), Err(Error::LimitsExceeded(_))));
}

fn arb_header() -> impl Strategy<Value = Header> {
    (
        1u32..5000,
        1u32..3000,
        prop_oneof![Just(Channels::Grey), Just(Channels::Rgb), Just(Channels::Rgba)],
        1usize..60,
        0u8..4,
        any::<bool>(),
        any::<u64>(),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(|(w, h, channels, k, v, lossless, seed, custom, check)| {
            let params = if custom { Params { seed, batch_tiles: 1 + (seed % 4096) as u16, ..Params::default() } } else { Params::default() };
            let taus: Vec<u16> = if seed % 3 == 0 {
                ScheduleKind::Quadratic.generate(1000, k).unwrap()
            } else {
                let mut t: Vec<u16> = (1..k as u16).map(|i| i * 7 + (seed % 5) as u16).collect();
                t.push(1000);
                t
            };
            Header {
                model_id: (seed as u32).to_le_bytes(),
                width: w,
                height: h,
                channels,
                taus,
                variance: VarianceCode::try_from(v).unwrap(),
                params,
                lossless,
                body_words: 0,
                check,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_and_every_prefix(h in arb_header(), words in proptest::collection::vec(any::<u32>(), 0..20)) {
        let b = write_stream(&h, &words).unwrap();
        let s = read(&b).unwrap();
        prop_assert_eq!(&s.words, &words);
        prop_assert_eq!(s.header.taus.clone(), h.taus.clone());
        for cut in s.header_len..b.len() {
            let p = read(&b[..cut]).unwrap();
            prop_assert!(p.truncated);
        }
    }

    #[test]
    fn mutations_never_panic(h in arb_header(), words in proptest::collection::vec(any::<u32>(), 0..8),
                             edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6)) {
        let mut c = write_stream(&h, &words).unwrap();
        for (i, v) in &edits {
            let at = i.index(c.len());
            c[at] ^= v | 1;
        }
        let _ = read(&c);
    }
}
