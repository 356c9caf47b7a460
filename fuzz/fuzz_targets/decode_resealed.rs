//! Fuzz target: the whole decoder on arbitrary bytes, with the tiny test models (`tiny_sigma`
//! when the variance field names the learned variance, else `tiny`). The input is
//! resealed first (model id and CRCs recomputed, `ddpm_codec::fuzzing::reseal`) so that
//! mutations reach the entropy decoder, the channel simulation and the lossless step, not only
//! the header CRC. Must never panic (errors are fine); the work limit keeps each run short.
//!
//! Run (stable Rust): `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none decode_resealed fuzz/corpus/decode format/vectors`
#![no_main]

use std::sync::OnceLock;

use ddpm_codec::model::Model;
use libfuzzer_sys::fuzz_target;

static MODELS: OnceLock<(Model, Model)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (plain, learned) = MODELS.get_or_init(|| {
        let plain = Model::from_bytes(
            include_bytes!("../../tests/fixtures/tiny/model.safetensors"),
            include_str!("../../tests/fixtures/tiny/config.json"),
        )
        .expect("tiny model");
        let learned = Model::from_bytes(
            include_bytes!("../../tests/fixtures/tiny_sigma/model.safetensors"),
            include_str!("../../tests/fixtures/tiny_sigma/config.json"),
        )
        .expect("tiny_sigma model");
        (plain, learned)
    });
    let _ = ddpm_codec::fuzzing::decode_resealed_pick(plain, learned, data);
});
