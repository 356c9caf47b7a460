//! Fuzz target: the whole decoder on arbitrary bytes, with the tiny test model. The input is
//! resealed first (model id and CRCs recomputed, `ddpm_codec::fuzzing::reseal`) so that
//! mutations reach the entropy decoder, the channel simulation and the lossless step, not only
//! the header CRC. Must never panic (errors are fine); the work limit keeps each run short.
//!
//! Run (stable Rust): `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none decode_resealed fuzz/corpus/decode format/vectors`
#![no_main]

use std::sync::OnceLock;

use ddpm_codec::model::Model;
use libfuzzer_sys::fuzz_target;

static MODEL: OnceLock<Model> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let model = MODEL.get_or_init(|| {
        Model::from_bytes(
            include_bytes!("../../tests/fixtures/tiny/model.safetensors"),
            include_str!("../../tests/fixtures/tiny/config.json"),
        )
        .expect("tiny model")
    });
    let _ = ddpm_codec::fuzzing::decode_resealed(model, data);
});
