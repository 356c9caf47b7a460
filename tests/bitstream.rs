//! Container format tests: format/SPEC.md against src/bitstream, the test vectors in
//! format/vectors/, round trips, truncation, corruption, limits.

use std::path::PathBuf;

use ddpm_codec::bitstream::{
    read_stream, write_stream, Channels, ColourMode, Header, Limits, ScheduleKind, Stream,
    VarianceCode, HEADER_FIXED_LEN,
};
use ddpm_codec::error::Error;
use ddpm_codec::schedule::{even_taus, quadratic_taus};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- helpers

fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn sample_header(taus: Vec<u16>, lossless: bool) -> Header {
    Header {
        model_sha256: core::array::from_fn(|i| (i * 7 + 3) as u8),
        width: 100,
        height: 70,
        channels: Channels::Rgb,
        colour_mode: ColourMode::Rgb,
        tile_size: 32,
        batch_tiles: 12,
        t_max: *taus.last().unwrap(),
        taus,
        variance: VarianceCode::Small,
        chunk_bits_q8: 0x0A00,
        margin_bits: 6,
        min_log2_candidates: 8,
        max_log2_candidates: 18,
        skip_below_q8: 0x0040,
        seed: 0x0102_0304_0506_0708,
        lossless,
        body_words: 0,
        body_crc32: 0,
        pixel_crc32: 0xA1B2_C3D4,
    }
}

fn to_u16(taus: Vec<usize>) -> Vec<u16> {
    taus.into_iter().map(|t| t as u16).collect()
}

fn sample_stream() -> Stream {
    Stream {
        header: sample_header(vec![1, 2, 40, 1000], true),
        words_needed: vec![0, 3, 7, 12], // P = (4 − 1) + 1
        words: (0..12u32).map(|i| i.wrapping_mul(0x9E37_79B9)).collect(),
        truncated: false,
    }
}

/// Offsets of the sections of a valid file: (table_len offset, body offset).
fn sections(bytes: &[u8]) -> (usize, usize) {
    let h = u32::from_le_bytes(bytes[5..9].try_into().unwrap()) as usize;
    let table_at = 13 + h;
    let l = u32::from_le_bytes(bytes[table_at..table_at + 4].try_into().unwrap()) as usize;
    (table_at, table_at + 8 + l)
}

/// Recomputes the header CRC after a deliberate edit of header fields.
fn reseal_header(bytes: &mut [u8]) {
    let h = u32::from_le_bytes(bytes[5..9].try_into().unwrap()) as usize;
    let crc = crc32fast::hash(&bytes[..9 + h]);
    bytes[9 + h..13 + h].copy_from_slice(&crc.to_le_bytes());
}

/// Valid file with header field bytes at `field_offset` (relative to the fields) replaced.
fn patched(field_offset: usize, value: &[u8]) -> Vec<u8> {
    let mut b = write_stream(&sample_stream()).unwrap();
    b[9 + field_offset..9 + field_offset + value.len()].copy_from_slice(value);
    reseal_header(&mut b);
    b
}

fn read(b: &[u8]) -> Result<Stream, Error> {
    read_stream(b, &Limits::default())
}

#[track_caller]
fn expect_format(r: Result<Stream, Error>, needle: &str) {
    match r {
        Err(Error::Format(m)) => assert!(m.contains(needle), "message {m:?} lacks {needle:?}"),
        other => panic!("expected Format error containing {needle:?}, got {other:?}"),
    }
}

#[track_caller]
fn expect_limits(r: Result<Stream, Error>) {
    assert!(
        matches!(r, Err(Error::LimitsExceeded(_))),
        "expected LimitsExceeded, got {r:?}"
    );
}

/// Checks the canonical-encoding property: any successfully read input re-serialises to
/// exactly its bytes up to the last whole body word.
fn check_canonical(input: &[u8], s: &Stream) {
    let again = write_stream(s).expect("a stream that was read must be writable");
    assert!(again.len() <= input.len() && input.len() - again.len() < 4);
    assert_eq!(&input[..again.len()], &again[..]);
}

// ---------------------------------------------------------------- spec ⇔ code

/// Parses the field table of SPEC.md § 2 and checks, byte by byte, that `encode_fields` puts
/// every field at the offset and with the width the spec states: once with explicit taus
/// (S = 2K) and once for each generated schedule kind (S = 0, no `taus` field).
#[test]
fn spec_field_table_matches_encoder() {
    let spec = std::fs::read_to_string(repo_path("format/SPEC.md")).unwrap();
    let k = 3usize;
    let cases = [
        (vec![7, 300, 999], ScheduleKind::Explicit),
        (to_u16(even_taus(999, 3).unwrap()), ScheduleKind::Even),
        (
            to_u16(quadratic_taus(999, 3).unwrap()),
            ScheduleKind::Quadratic,
        ),
    ];
    for (taus, kind) in cases {
        let mut h = sample_header(taus, true);
        h.body_words = 0x1122_3344;
        h.body_crc32 = 0x5566_7788;
        h.variance = VarianceCode::Large;
        h.channels = Channels::Rgba;
        assert_eq!(h.schedule_kind(), kind);
        let s_len = if kind == ScheduleKind::Explicit {
            2 * k
        } else {
            0
        };
        let enc = h.encode_fields();
        assert_eq!(enc.len(), HEADER_FIXED_LEN + s_len);
        assert_eq!(enc.len(), h.header_len());

        let mut rows = 0;
        let mut end_seen = false;
        let mut taus_seen = false;
        for line in spec.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 5 || cells[1].is_empty() || !cells[1].as_bytes()[0].is_ascii_digit() {
                continue;
            }
            let off = match cells[1].split_once(" + ") {
                Some((a, "S")) => a.parse::<usize>().unwrap() + s_len,
                None => cells[1].parse::<usize>().unwrap(),
                Some(_) => panic!("unexpected offset expression {}", cells[1]),
            };
            let (name, ty) = (cells[2], cells[3]);
            if name == "(end)" {
                assert_eq!(off, enc.len(), "(end) offset");
                end_seen = true;
                continue;
            }
            rows += 1;
            if name == "taus" {
                // Present only for schedule_kind 0; its row must say so.
                assert!(
                    cells[4].contains("only if schedule_kind = 0"),
                    "taus row: {line}"
                );
                taus_seen = true;
                if kind != ScheduleKind::Explicit {
                    continue;
                }
            }
            let le = |v: u64, n: usize| v.to_le_bytes()[..n].to_vec();
            let expected: Vec<u8> = match name {
                "model_sha256" => h.model_sha256.to_vec(),
                "width" => le(h.width.into(), 4),
                "height" => le(h.height.into(), 4),
                "channels" => vec![4],
                "colour_mode" => vec![0],
                "tile_size" => le(32, 2),
                "batch_tiles" => le(h.batch_tiles.into(), 2),
                "t_max" => le(h.t_max.into(), 2),
                "num_steps" => le(k as u64, 2),
                "schedule_kind" => vec![kind.code()],
                "taus" => h.taus.iter().flat_map(|t| t.to_le_bytes()).collect(),
                "variance" => vec![1],
                "chunk_bits_q8" => le(h.chunk_bits_q8.into(), 2),
                "margin_bits" => vec![h.margin_bits],
                "min_log2_candidates" => vec![h.min_log2_candidates],
                "max_log2_candidates" => vec![h.max_log2_candidates],
                "skip_below_q8" => le(h.skip_below_q8.into(), 2),
                "seed" => le(h.seed, 8),
                "flags" => vec![1],
                "body_words" => le(h.body_words.into(), 4),
                "body_crc32" => le(h.body_crc32.into(), 4),
                "pixel_crc32" => le(h.pixel_crc32.into(), 4),
                other => panic!("SPEC.md names a field the test does not know: {other}"),
            };
            let width = match ty {
                "u8" => 1,
                "u16" => 2,
                "u32" => 4,
                "u64" => 8,
                "[u8; 32]" => 32,
                "[u16; K]" => 2 * k,
                other => panic!("unknown type {other}"),
            };
            assert_eq!(expected.len(), width, "{name}: type width");
            assert_eq!(
                &enc[off..off + width],
                &expected[..],
                "{name} at offset {off} ({kind:?})"
            );
        }
        assert_eq!(rows, 22, "SPEC.md § 2 should list 22 fields");
        assert!(end_seen && taus_seen);
    }
}

/// The enumerated-codes table of SPEC.md § 2 lists exactly the `schedule_kind` codes the
/// reader accepts.
#[test]
fn spec_schedule_kind_codes() {
    let spec = std::fs::read_to_string(repo_path("format/SPEC.md")).unwrap();
    let mut codes: Vec<u8> = spec
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells.len() >= 4 && cells[1] == "schedule_kind")
                .then(|| cells[2].parse::<u8>().ok())
                .flatten()
        })
        .collect();
    codes.sort_unstable();
    assert_eq!(codes, vec![0, 1, 2]);
    for v in 0..=255u8 {
        assert_eq!(
            ScheduleKind::try_from(v).is_ok(),
            codes.contains(&v),
            "code {v}"
        );
    }
    // The spec's worked examples.
    assert!(spec.contains("kind 1, K = 3: [333, 667, 1000]"));
    assert_eq!(even_taus(1000, 3).unwrap(), vec![333, 667, 1000]);
    assert_eq!(quadratic_taus(1000, 3).unwrap(), vec![111, 444, 1000]);
    let q20 = quadratic_taus(1000, 20).unwrap();
    let q20s: Vec<String> = q20.iter().map(usize::to_string).collect();
    let flat: String = spec.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(&format!("[{}]", q20s.join(", "))),
        "SPEC's K = 20 example"
    );
}

// ---------------------------------------------------------------- test vectors

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(repo_path(&format!("format/vectors/{name}"))).unwrap()
}

#[test]
fn vectors_match_readme_hashes() {
    let readme = std::fs::read_to_string(repo_path("format/vectors/README.md")).unwrap();
    let mut n = 0;
    for name in [
        "valid.ddpc",
        "valid_quadratic.ddpc",
        "truncated.ddpc",
        "corrupt_header.ddpc",
        "corrupt_body.ddpc",
    ] {
        let hash: String = Sha256::digest(vector(name))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let line = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("README lacks {name}"));
        assert!(
            line.contains(&hash),
            "README hash of {name} is stale (now {hash})"
        );
        let size = format!("| {} |", vector(name).len());
        assert!(line.contains(&size), "README size of {name} is stale");
        n += 1;
    }
    assert_eq!(n, 5);
}

const VECTOR_WORDS: [u32; 5] = [0xDEAD_BEEF, 1, 0x1234_5678, 0xCAFE_BABE, 0];

#[test]
fn vector_valid() {
    let bytes = vector("valid.ddpc");
    assert_eq!(bytes.len(), 129);
    let s = read(&bytes).unwrap();
    let h = &s.header;
    assert_eq!(bytes[4], 2, "version");
    assert_eq!(u32::from_le_bytes(bytes[5..9].try_into().unwrap()), 86);
    assert_eq!(h.header_len(), 86);
    assert_eq!(h.schedule_kind(), ScheduleKind::Explicit);
    assert_eq!(bytes[9 + 50], 0, "schedule_kind");
    let model: [u8; 32] = core::array::from_fn(|i| i as u8);
    assert_eq!(h.model_sha256, model);
    assert_eq!((h.width, h.height), (3, 2));
    assert_eq!(h.channels, Channels::Rgb);
    assert_eq!(h.colour_mode, ColourMode::Rgb);
    assert_eq!((h.tile_size, h.batch_tiles, h.t_max), (32, 16, 1000));
    assert_eq!(h.taus, vec![10, 500, 1000]);
    assert_eq!(h.variance, VarianceCode::Small);
    assert_eq!(h.chunk_bits_q8, 2048);
    assert_eq!(
        (h.margin_bits, h.min_log2_candidates, h.max_log2_candidates),
        (6, 8, 16)
    );
    assert_eq!(h.skip_below_q8, 64);
    assert_eq!(h.seed, 0x0123_4567_89AB_CDEF);
    assert!(h.lossless);
    assert_eq!(h.body_words, 5);
    assert_eq!(h.body_crc32, 0x8963_E3C9);
    assert_eq!(h.pixel_crc32, 0xDCF5_7F85);
    assert_eq!(
        h.pixel_crc32,
        crc32fast::hash(&(0u8..18).collect::<Vec<_>>())
    );
    assert_eq!(s.words_needed, vec![1, 3, 5]);
    assert_eq!(s.words, VECTOR_WORDS.to_vec());
    assert!(!s.truncated);
    assert_eq!(s.packets_available(), 3);
    // Our writer produces the vector byte for byte.
    assert_eq!(write_stream(&s).unwrap(), bytes);
}

const QUAD_WORDS_NEEDED: [u32; 20] = [1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 8];

#[test]
fn vector_valid_quadratic() {
    let bytes = vector("valid_quadratic.ddpc");
    assert_eq!(bytes.len(), 138);
    let s = read(&bytes).unwrap();
    let h = &s.header;
    assert_eq!(u32::from_le_bytes(bytes[5..9].try_into().unwrap()), 80);
    assert_eq!(bytes[9 + 50], 2, "schedule_kind");
    assert_eq!(h.schedule_kind(), ScheduleKind::Quadratic);
    assert_eq!(h.header_len(), 80);
    let model: [u8; 32] = core::array::from_fn(|i| i as u8);
    assert_eq!(h.model_sha256, model);
    assert_eq!((h.width, h.height), (3, 2));
    assert_eq!(
        (h.channels, h.colour_mode),
        (Channels::Rgb, ColourMode::Rgb)
    );
    assert_eq!((h.tile_size, h.batch_tiles, h.t_max), (32, 16, 1000));
    assert_eq!(h.num_steps(), 20);
    assert_eq!(h.taus, to_u16(quadratic_taus(1000, 20).unwrap()));
    assert_eq!(
        h.taus,
        vec![
            2, 10, 22, 40, 62, 90, 122, 160, 202, 250, 302, 360, 422, 490, 562, 640, 722, 810, 902,
            1000
        ]
    );
    // The README lists the same taus.
    let readme = std::fs::read_to_string(repo_path("format/vectors/README.md")).unwrap();
    let listed: Vec<String> = h.taus.iter().map(u16::to_string).collect();
    assert!(readme.contains(&format!("[{}]", listed.join(", "))));
    assert_eq!(h.variance, VarianceCode::Large);
    assert_eq!(h.chunk_bits_q8, 2048);
    assert_eq!(
        (h.margin_bits, h.min_log2_candidates, h.max_log2_candidates),
        (6, 8, 16)
    );
    assert_eq!(h.skip_below_q8, 64);
    assert_eq!(h.seed, 0xFEDC_BA98_7654_3210);
    assert!(h.lossless);
    assert_eq!(h.body_words, 8);
    assert_eq!(h.body_crc32, 0x5481_3E1B);
    assert_eq!(h.pixel_crc32, 0xDCF5_7F85);
    assert_eq!(s.words_needed, QUAD_WORDS_NEEDED.to_vec());
    let words: Vec<u32> = (1..=8u32).map(|n| n.wrapping_mul(0x9E37_79B9)).collect();
    assert_eq!(s.words, words);
    assert!(!s.truncated);
    assert_eq!(s.packets_available(), 20);
    let (t, body_at) = sections(&bytes);
    assert_eq!((t, body_at), (93, 106));
    assert_eq!(&bytes[t + 4..t + 9], &[0x55, 0xAE, 0xB5, 0xAD, 0x20]);
    // Our writer produces the vector byte for byte.
    assert_eq!(write_stream(&s).unwrap(), bytes);
}

#[test]
fn vector_truncated() {
    let s = read(&vector("truncated.ddpc")).unwrap();
    assert!(s.truncated);
    assert_eq!(s.header.body_words, 5);
    assert_eq!(s.words_needed, vec![1, 3, 5]);
    assert_eq!(s.words, VECTOR_WORDS[..2].to_vec());
    assert_eq!(s.packets_available(), 1);
    assert_eq!(s.header, read(&vector("valid.ddpc")).unwrap().header);
}

/// The single byte where `name` differs from valid.ddpc, and the XOR there; the README's row
/// names that byte.
fn flipped_byte(name: &str) -> (usize, u8) {
    let (v, c) = (vector("valid.ddpc"), vector(name));
    assert_eq!(v.len(), c.len());
    let diff: Vec<usize> = (0..v.len()).filter(|&i| v[i] != c[i]).collect();
    assert_eq!(diff.len(), 1, "{name} differs in {diff:?}");
    let readme = std::fs::read_to_string(repo_path("format/vectors/README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with(&format!("| `{name}` |")))
        .unwrap();
    assert!(
        line.contains(&format!("byte {} (", diff[0])),
        "README byte of {name}"
    );
    (diff[0], v[diff[0]] ^ c[diff[0]])
}

#[test]
fn vector_corrupt_header() {
    assert!(
        matches!(read(&vector("corrupt_header.ddpc")), Err(Error::Checksum(m)) if m.contains("header CRC"))
    );
    // Width's low byte: file offset 9 + 32.
    assert_eq!(flipped_byte("corrupt_header.ddpc"), (9 + 32, 0x01));
}

#[test]
fn vector_corrupt_body() {
    assert!(
        matches!(read(&vector("corrupt_body.ddpc")), Err(Error::Checksum(m)) if m.contains("body CRC"))
    );
    // Any prefix of it is still readable (the body CRC is not checked on a prefix).
    let b = vector("corrupt_body.ddpc");
    let s = read(&b[..b.len() - 1]).unwrap();
    assert!(s.truncated);
    assert_eq!(s.words[1], 0x0000_0081);
    // Body word 1's low byte.
    let (_, body_at) = sections(&b);
    assert_eq!(flipped_byte("corrupt_body.ddpc"), (body_at + 4, 0x80));
}

// ---------------------------------------------------------------- truncation & corruption

#[test]
fn every_prefix_is_a_prefix_or_a_truncated_header() {
    let mut files = vec![
        vector("valid.ddpc"),
        vector("valid_quadratic.ddpc"),
        write_stream(&sample_stream()).unwrap(),
    ];
    let mut s = sample_stream();
    s.words.clear();
    s.words_needed = vec![0; 4];
    files.push(write_stream(&s).unwrap()); // empty body
    for bytes in files {
        let (_, body_at) = sections(&bytes);
        let full = read(&bytes).unwrap();
        for n in 0..bytes.len() {
            let r = read(&bytes[..n]);
            if n < body_at {
                expect_format(r, "truncated header");
            } else {
                let p = r.unwrap_or_else(|e| panic!("prefix {n}: {e}"));
                assert!(p.truncated);
                assert_eq!(p.header, full.header);
                assert_eq!(p.words_needed, full.words_needed);
                assert_eq!(p.words, full.words[..(n - body_at) / 4].to_vec());
                check_canonical(&bytes[..n], &p);
            }
        }
    }
}

#[test]
fn single_bit_flips_are_detected() {
    for bytes in [
        vector("valid.ddpc"),
        vector("valid_quadratic.ddpc"),
        write_stream(&sample_stream()).unwrap(),
    ] {
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                match read(&b) {
                    Err(Error::Checksum(_)) | Err(Error::Format(_)) => {}
                    other => panic!("flip of byte {i} bit {bit}: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn no_packets_stream() {
    // K = 1 without the lossless step: P = 0, empty table (table_len 0), empty body.
    let s = Stream {
        header: sample_header(vec![1000], false),
        words_needed: vec![],
        words: vec![],
        truncated: false,
    };
    assert_eq!(s.header.num_packets(), 0);
    let b = write_stream(&s).unwrap();
    let (t, body_at) = sections(&b);
    assert_eq!(&b[t..t + 4], &[0, 0, 0, 0]);
    assert_eq!(body_at, b.len());
    let r = read(&b).unwrap();
    assert!(!r.truncated && r.words_needed.is_empty() && r.words.is_empty());
    assert_eq!(r.packets_available(), 0);
    // A non-empty table or a body is then invalid.
    let mut s2 = s.clone();
    s2.words = vec![1];
    assert!(matches!(write_stream(&s2), Err(Error::Parameter(_))));
    let mut c = b[..t].to_vec();
    let sec = [1u8, 0, 0, 0, 0x80];
    c.extend_from_slice(&sec);
    c.extend_from_slice(&crc32fast::hash(&sec).to_le_bytes());
    expect_format(read(&c), "table_len 1 outside 0..=0");
    let mut c = b.clone();
    c.extend_from_slice(&[0; 4]);
    expect_format(read(&c), "trailing bytes");
}

#[test]
fn wrong_magic_and_version() {
    let mut b = vector("valid.ddpc");
    b[0] = b'X';
    expect_format(read(&b), "bad magic");
    expect_format(read(b"PNG"), "bad magic");
    expect_format(read(b"DDP"), "truncated header");
    for v in [1u8, 3] {
        let mut b = vector("valid.ddpc");
        b[4] = v;
        expect_format(read(&b), &format!("unsupported format version {v}"));
    }
    // A genuine version-1 layout (taus right after num_steps, header_len 79 + 2K) is rejected
    // for its version before anything else is looked at.
    let mut b = vector("valid.ddpc");
    b[4] = 1;
    b.remove(9 + 50);
    b[5..9].copy_from_slice(&85u32.to_le_bytes());
    expect_format(read(&b), "unsupported format version 1");
}

#[test]
fn trailing_garbage() {
    let mut b = vector("valid.ddpc");
    b.push(0);
    expect_format(read(&b), "trailing bytes");
    let mut b = vector("valid.ddpc");
    b.extend_from_slice(&[1, 2, 3, 4, 5]);
    expect_format(read(&b), "trailing bytes");
}

// Field offsets (SPEC.md § 2) in the sample stream, K = 4, explicit taus: S = 2K = 8.
const K4: usize = 8;
const OFF_WIDTH: usize = 32;
const OFF_HEIGHT: usize = 36;
const OFF_CHANNELS: usize = 40;
const OFF_COLOUR: usize = 41;
const OFF_TILE: usize = 42;
const OFF_BATCH: usize = 44;
const OFF_TMAX: usize = 46;
const OFF_K: usize = 48;
const OFF_KIND: usize = 50;
const OFF_TAUS: usize = 51;
const OFF_VARIANCE: usize = 51 + K4;
const OFF_CHUNK: usize = 52 + K4;
const OFF_MINLOG: usize = 55 + K4;
const OFF_MAXLOG: usize = 56 + K4;
const OFF_FLAGS: usize = 67 + K4;
const OFF_BODY_WORDS: usize = 68 + K4;

#[test]
fn absurd_geometry() {
    expect_format(read(&patched(OFF_WIDTH, &0u32.to_le_bytes())), "empty");
    expect_limits(read(&patched(OFF_WIDTH, &65536u32.to_le_bytes())));
    expect_limits(read(&patched(OFF_HEIGHT, &u32::MAX.to_le_bytes())));
    let mut b = patched(OFF_WIDTH, &65535u32.to_le_bytes());
    b[9 + OFF_HEIGHT..9 + OFF_HEIGHT + 4].copy_from_slice(&65535u32.to_le_bytes());
    reseal_header(&mut b);
    expect_limits(read(&b));
    // 8192 x 8192 = 2^26 pixels is allowed.
    let mut b = patched(OFF_WIDTH, &8192u32.to_le_bytes());
    b[9 + OFF_HEIGHT..9 + OFF_HEIGHT + 4].copy_from_slice(&8192u32.to_le_bytes());
    reseal_header(&mut b);
    read(&b).unwrap();
    expect_format(
        read(&patched(OFF_TILE, &64u16.to_le_bytes())),
        "tile_size 64 is not supported",
    );
    expect_format(
        read(&patched(OFF_BATCH, &0u16.to_le_bytes())),
        "batch_tiles is 0",
    );
    expect_limits(read(&patched(OFF_BATCH, &4097u16.to_le_bytes())));
    read(&patched(OFF_BATCH, &4096u16.to_le_bytes())).unwrap();
}

#[test]
fn bad_taus_and_steps() {
    // taus are [1, 2, 40, 1000]
    expect_format(
        read(&patched(OFF_TAUS + 4, &2u16.to_le_bytes())),
        "strictly increasing",
    );
    expect_format(
        read(&patched(OFF_TAUS + 4, &1u16.to_le_bytes())),
        "strictly increasing",
    );
    expect_format(
        read(&patched(OFF_TAUS, &0u16.to_le_bytes())),
        "taus[0] is 0",
    );
    expect_format(
        read(&patched(OFF_TMAX, &999u16.to_le_bytes())),
        "differs from t_max",
    );
    expect_format(read(&patched(OFF_TMAX, &0u16.to_le_bytes())), "t_max is 0");
    expect_format(
        read(&patched(OFF_K, &5u16.to_le_bytes())),
        "does not match num_steps",
    );
    expect_format(
        read(&patched(OFF_K, &0u16.to_le_bytes())),
        "does not match num_steps",
    );
    expect_format(
        read(&patched(OFF_CHUNK, &0u16.to_le_bytes())),
        "chunk_bits_q8 is 0",
    );
    // schedule_kind: unknown codes; a generated kind does not match the explicit length.
    for c in [3u8, 4, 255] {
        expect_format(
            read(&patched(OFF_KIND, &[c])),
            &format!("unknown schedule_kind code {c}"),
        );
    }
    for c in [1u8, 2] {
        expect_format(read(&patched(OFF_KIND, &[c])), "does not match num_steps");
    }
    expect_format(read(&patched(OFF_MAXLOG, &[33])), "max_log2_candidates 33");
    expect_format(read(&patched(OFF_MINLOG, &[19])), "min_log2_candidates 19");
    // K and t_max above the limits (a proper file with 10001 steps).
    let taus: Vec<u16> = (1..=10001).collect();
    let mut s = sample_stream();
    s.header = sample_header(taus, false);
    s.words_needed = vec![0; 10000];
    s.words.clear();
    assert!(matches!(write_stream(&s), Err(Error::LimitsExceeded(_))));
}

#[test]
fn unknown_enum_codes_and_flags() {
    for c in [0u8, 2, 5, 255] {
        expect_format(read(&patched(OFF_CHANNELS, &[c])), "unknown channels code");
    }
    expect_format(
        read(&patched(OFF_CHANNELS, &[1])),
        "requires colour_mode = 1",
    );
    expect_format(
        read(&patched(OFF_COLOUR, &[2])),
        "unknown colour_mode code 2",
    );
    expect_format(
        read(&patched(OFF_VARIANCE, &[2])),
        "unknown variance code 2",
    );
    expect_format(read(&patched(OFF_FLAGS, &[0x03])), "unknown flag bits");
    expect_format(read(&patched(OFF_FLAGS, &[0x80 | 1])), "unknown flag bits");
    // Clearing the lossless flag changes P from 4 to 3: the table then has a code left over.
    expect_format(read(&patched(OFF_FLAGS, &[0])), "step table");
}

/// A stream whose header holds `taus` (t_max = the last tau), lossless, with an empty body.
fn stream_with(taus: Vec<u16>) -> Stream {
    let k = taus.len();
    Stream {
        header: sample_header(taus, true),
        words_needed: vec![0; k],
        words: vec![],
        truncated: false,
    }
}

#[test]
fn generated_schedules() {
    for (t, k) in [
        (1000usize, 20usize),
        (1000, 1000),
        (1000, 1),
        (7, 3),
        (10000, 10000),
    ] {
        for (taus, kind) in [
            (even_taus(t, k).unwrap(), ScheduleKind::Even),
            (quadratic_taus(t, k).unwrap(), ScheduleKind::Quadratic),
        ] {
            let s = stream_with(to_u16(taus));
            let b = write_stream(&s).unwrap();
            let h = &s.header;
            // Even wins where both lists agree (K = 1, K = T).
            let expect =
                if kind == ScheduleKind::Quadratic && h.taus == to_u16(even_taus(t, k).unwrap()) {
                    ScheduleKind::Even
                } else {
                    kind
                };
            assert_eq!(h.schedule_kind(), expect, "T={t} K={k}");
            assert_eq!(b[9 + OFF_KIND], expect.code());
            assert_eq!(h.header_len(), 80);
            assert_eq!(u32::from_le_bytes(b[5..9].try_into().unwrap()), 80);
            assert_eq!(read(&b).unwrap(), s);
        }
    }
}

#[test]
fn non_canonical_schedule_kind_is_rejected() {
    // K = 1: even and quadratic both give [T]; the canonical code is 1, so 2 is rejected.
    let b = write_stream(&stream_with(vec![1000])).unwrap();
    assert_eq!(b[9 + OFF_KIND], 1);
    let mut c = b.clone();
    c[9 + OFF_KIND] = 2;
    reseal_header(&mut c);
    expect_format(read(&c), "non-canonical schedule_kind 2");
    // Explicit (kind 0) taus that equal a generated list.
    for (taus, canonical) in [
        (to_u16(even_taus(1000, 4).unwrap()), 1),
        (to_u16(quadratic_taus(1000, 4).unwrap()), 2),
    ] {
        let b = write_stream(&stream_with(taus.clone())).unwrap();
        assert_eq!(b[9 + OFF_KIND], canonical);
        let mut c = b[..9 + OFF_KIND].to_vec();
        c.push(0);
        for t in &taus {
            c.extend_from_slice(&t.to_le_bytes());
        }
        c.extend_from_slice(&b[9 + OFF_KIND + 1..]);
        let h = u32::from_le_bytes(c[5..9].try_into().unwrap()) + 8;
        c[5..9].copy_from_slice(&h.to_le_bytes());
        reseal_header(&mut c);
        expect_format(read(&c), "non-canonical schedule_kind 0");
    }
}

#[test]
fn generated_kind_bounds() {
    // Kind 1 with K patched above T, to 0, and above the limit.
    let s = stream_with(to_u16(even_taus(1000, 4).unwrap()));
    let b = write_stream(&s).unwrap();
    let with_k = |k: u16| {
        let mut c = b.clone();
        c[9 + OFF_K..9 + OFF_K + 2].copy_from_slice(&k.to_le_bytes());
        reseal_header(&mut c);
        c
    };
    expect_format(read(&with_k(0)), "requires 1 <= num_steps <= t_max");
    expect_format(read(&with_k(1001)), "requires 1 <= num_steps <= t_max");
    expect_limits(read(&with_k(10001)));
    expect_limits(read(&with_k(u16::MAX)));
    // A different valid K regenerates another schedule; then the step table no longer fits P.
    expect_format(read(&with_k(5)), "step table");
}

/// Header + step table overhead in bytes of a lossless stream (what the report quotes):
/// 9 (magic, version, header_len) + header_len + 4 (CRC) + 4 (table_len) + table + 4 (CRC).
#[test]
fn header_sizes() {
    let overhead = |taus: Vec<u16>| {
        let s = stream_with(taus);
        let b = write_stream(&s).unwrap();
        let (_, body_at) = sections(&b);
        (s.header.header_len(), body_at)
    };
    // Empty body: every packet's delta is 0, a 1-bit code each.
    assert_eq!(
        overhead(to_u16(quadratic_taus(1000, 20).unwrap())),
        (80, 80 + 13 + 3 + 8)
    );
    assert_eq!(
        overhead(to_u16(even_taus(1000, 1000).unwrap())),
        (80, 80 + 13 + 125 + 8)
    );
    assert_eq!(
        overhead(to_u16(quadratic_taus(1000, 1000).unwrap())),
        (80, 80 + 13 + 125 + 8)
    );
    // Explicit K = 1000 (not a generated list): 80 + 2000.
    let taus: Vec<u16> = (2..=1001).collect();
    assert_eq!(overhead(taus).0, 2080);
}

#[test]
fn length_fields() {
    // header_len beyond the structural maximum, and beyond a lowered limit.
    let mut b = vector("valid.ddpc");
    b[5..9].copy_from_slice(&0x0100_0000u32.to_le_bytes());
    expect_format(read(&b), "header_len");
    let mut b = vector("valid.ddpc");
    b[5..9].copy_from_slice(&79u32.to_le_bytes());
    expect_format(read(&b), "header_len 79 outside 80..=131150");
    let b = vector("valid.ddpc");
    let tight = Limits {
        max_header_len: 82,
        ..Limits::default()
    };
    assert!(matches!(
        read_stream(&b, &tight),
        Err(Error::LimitsExceeded(_))
    ));
    let tight = Limits {
        max_table_len: 1,
        ..Limits::default()
    };
    assert!(matches!(
        read_stream(&b, &tight),
        Err(Error::LimitsExceeded(_))
    ));
    let tight = Limits {
        max_body_words: 4,
        ..Limits::default()
    };
    assert!(matches!(
        read_stream(&b, &tight),
        Err(Error::LimitsExceeded(_))
    ));
    // body_words larger than the file: a valid prefix with a consistent table is impossible
    // here (the table's last entry must equal body_words), so it is a table error.
    expect_format(
        read(&patched(OFF_BODY_WORDS, &6u32.to_le_bytes())),
        "body_words",
    );
    expect_limits(read(&patched(OFF_BODY_WORDS, &u32::MAX.to_le_bytes())));
    // table_len 0 and huge.
    let (t, _) = sections(&b);
    for bad in [0u32, 26, u32::MAX] {
        let mut c = b.clone();
        c[t..t + 4].copy_from_slice(&bad.to_le_bytes());
        expect_format(read(&c), "table_len");
    }
}

#[test]
fn table_errors_behind_a_valid_crc() {
    let b = vector("valid.ddpc");
    let (t, _) = sections(&b);
    let with_table = |table: &[u8]| {
        let mut c = b[..t].to_vec();
        let mut sec = (table.len() as u32).to_le_bytes().to_vec();
        sec.extend_from_slice(table);
        let crc = crc32fast::hash(&sec);
        c.extend_from_slice(&sec);
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&b[b.len() - 20..]);
        c
    };
    read(&with_table(&[0x4D, 0x80])).unwrap();
    expect_format(read(&with_table(&[0x4D, 0x81])), "padding");
    expect_format(read(&with_table(&[0x4D, 0x80, 0x00])), "left over");
    expect_format(read(&with_table(&[0x4D])), "runs past");
    expect_format(
        read(&with_table(&[0x00, 0x00, 0x00, 0x00, 0x00])),
        "more than 32 leading zeros",
    );
    // deltas 1, 2, 3: last entry 6 ≠ body_words 5
    expect_format(read(&with_table(&[0x4D, 0x00])), "body_words");
}

// ---------------------------------------------------------------- property tests

prop_compose! {
    fn arb_header()(
        width in 1u32..=65535,
        hfrac in 0.0f64..1.0,
        ch in 0usize..4,
        batch in 1u16..=4096,
        t_max in 1u16..=10000,
        raw_taus in proptest::collection::vec(1u16..=10000, 0..40),
        sched in 0u8..4,
        kfrac in 0.0f64..1.0,
        variance in any::<bool>(),
        chunk in 1u16..,
        margin in any::<u8>(),
        logs in (0u8..=32, 0u8..=32),
        skip in any::<u16>(),
        seed in any::<u64>(),
        lossless in any::<bool>(),
        sha in any::<[u8; 32]>(),
        pixel_crc in any::<u32>(),
    ) -> Header {
        let max_h = ((1u64 << 26) / u64::from(width)).min(65535) as f64;
        let height = 1 + (hfrac * (max_h - 1.0)) as u32;
        let (channels, colour_mode) = [
            (Channels::Grey, ColourMode::GreyReplicated),
            (Channels::Rgb, ColourMode::Rgb),
            (Channels::Rgb, ColourMode::GreyReplicated),
            (Channels::Rgba, ColourMode::Rgb),
        ][ch];
        // sched 0, 1: random explicit list; 2: even; 3: quadratic (K up to min(T, 2000)).
        let k = 1 + (kfrac * f64::from(t_max.min(2000) - 1)) as usize;
        let taus: Vec<u16> = match sched {
            2 => to_u16(even_taus(t_max.into(), k).unwrap()),
            3 => to_u16(quadratic_taus(t_max.into(), k).unwrap()),
            _ => {
                let mut taus: Vec<u16> = raw_taus.into_iter().filter(|&t| t < t_max).collect();
                taus.sort_unstable();
                taus.dedup();
                taus.push(t_max);
                taus
            }
        };
        Header {
            model_sha256: sha, width, height, channels, colour_mode, tile_size: 32,
            batch_tiles: batch, t_max, taus,
            variance: if variance { VarianceCode::Large } else { VarianceCode::Small },
            chunk_bits_q8: chunk, margin_bits: margin,
            min_log2_candidates: logs.0.min(logs.1), max_log2_candidates: logs.0.max(logs.1),
            skip_below_q8: skip, seed, lossless, body_words: 0, body_crc32: 0,
            pixel_crc32: pixel_crc,
        }
    }
}

prop_compose! {
    fn arb_stream()(header in arb_header())(
        words in proptest::collection::vec(any::<u32>(), 0..64),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), header.num_packets()),
        header in Just(header),
    ) -> Stream {
        // P = 0 (K = 1, no lossless step) forces an empty body.
        let words = if cuts.is_empty() { Vec::new() } else { words };
        let mut wn: Vec<u32> = cuts.iter().map(|c| c.index(words.len() + 1) as u32).collect();
        wn.sort_unstable();
        if let Some(last) = wn.last_mut() {
            *last = words.len() as u32;
        }
        Stream { header, words_needed: wn, words, truncated: false }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn header_round_trip(h in arb_header()) {
        let enc = h.encode_fields();
        prop_assert_eq!(enc.len(), h.header_len());
        let (t, k) = (usize::from(h.t_max), h.taus.len());
        let is_even = even_taus(t, k).map(to_u16).ok() == Some(h.taus.clone());
        let is_quad = quadratic_taus(t, k).map(to_u16).ok() == Some(h.taus.clone());
        let kind = h.schedule_kind();
        let expect = if is_even {
            ScheduleKind::Even
        } else if is_quad {
            ScheduleKind::Quadratic
        } else {
            ScheduleKind::Explicit
        };
        prop_assert_eq!(kind, expect);
        prop_assert_eq!(enc[50], kind.code());
        prop_assert_eq!(enc.len(), 80 + if kind == ScheduleKind::Explicit { 2 * k } else { 0 });
        prop_assert_eq!(Header::decode_fields(&enc, &Limits::default()).unwrap(), h);
    }

    #[test]
    fn stream_round_trip(s in arb_stream(), cut in any::<proptest::sample::Index>()) {
        let bytes = write_stream(&s).unwrap();
        let r = read(&bytes).unwrap();
        prop_assert_eq!(r.header.body_words as usize, s.words.len());
        prop_assert_eq!(r.header.body_crc32, crc32fast::hash(&bytes[bytes.len() - 4 * s.words.len()..]));
        let mut expect = s.clone();
        expect.header.body_words = r.header.body_words;
        expect.header.body_crc32 = r.header.body_crc32;
        prop_assert_eq!(&r, &expect);
        prop_assert_eq!(r.packets_available(), r.words_needed.len());
        // A truncated stream round-trips too, and equals the file cut at that word.
        let keep = cut.index(s.words.len() + 1);
        let mut t = r.clone();
        t.words.truncate(keep);
        t.truncated = keep < s.words.len();
        let tb = write_stream(&t).unwrap();
        prop_assert_eq!(&tb[..], &bytes[..tb.len()]);
        prop_assert_eq!(read(&tb).unwrap(), t.clone());
        let avail = t.words_needed.iter().take_while(|&&n| n as usize <= keep).count();
        prop_assert_eq!(t.packets_available(), avail);
    }

    /// Random edits of valid streams: never a panic, and whatever reads successfully is the
    /// canonical encoding of what was read.
    #[test]
    fn mutations_never_panic(s in arb_stream(), edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>(), 0u8..4), 1..6)) {
        let mut b = write_stream(&s).unwrap();
        for (at, v, kind) in edits {
            match kind {
                0 => { let i = at.index(b.len()); b[i] = v; }
                1 => { let i = at.index(b.len() + 1); b.truncate(i); }
                2 => { let i = at.index(b.len() + 1); b.insert(i, v); }
                _ => { if !b.is_empty() { let i = at.index(b.len()); b.remove(i); } }
            }
            if b.is_empty() { break; }
        }
        if let Ok(r) = read(&b) {
            check_canonical(&b, &r);
        }
    }
}

// ---------------------------------------------------------------- regressions from fuzzing
//
// cargo-fuzz (fuzz/: targets read_stream and read_stream_resealed, ~40 M executions in all,
// seeded with format/vectors/) found no panic and no non-canonical accepted input so far.
// Any future finding gets a named test here.
