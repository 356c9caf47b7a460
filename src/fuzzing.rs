//! Entry points for the fuzz targets (`fuzz/`), thin wrappers over the library: kept here so
//! that every fuzz finding can become a named regression test (`tests/fuzz_regressions.rs`)
//! that calls the same function.

use crate::bitstream::header::{Header, MODEL_ID_LEN};
use crate::codec::{self, DecodeOptions};
use crate::error::Result;
use crate::model::Model;

/// Work limit of [`decode_resealed`]: tiles × steps (keeps one fuzz run short).
pub const FUZZ_MAX_WORK: u64 = 256;

/// Makes arbitrary bytes reach the decoder's body path: where the header fields parse, writes
/// `model`'s id into `model_id` and recomputes `header_crc` (and, for a lossy stream, the body
/// CRC in `check`). Returns false when the fields do not parse (the bytes are left as they
/// are).
pub fn reseal(bytes: &mut [u8], model_sha256: &[u8; 32]) -> bool {
    let Ok(at) = Header::seal_offsets(bytes) else { return false };
    let crc_at = at.header_crc;
    if crc_at + 4 > bytes.len() {
        return false;
    }
    bytes[at.model_id..at.model_id + MODEL_ID_LEN].copy_from_slice(&model_sha256[..MODEL_ID_LEN]);
    let lossy = bytes[5] & 1 == 0;
    if lossy {
        let body = &bytes[crc_at + 4..];
        let crc = crc32fast::hash(&body[..body.len() / 4 * 4]);
        bytes[crc_at - 4..crc_at].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes[..crc_at]);
    bytes[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    true
}

/// Reseals `data` for `model` and decodes it with a small work limit. Must never panic; any
/// outcome (an image or an error) is fine.
pub fn decode_resealed(model: &Model, data: &[u8]) -> Result<()> {
    let mut b = data.to_vec();
    reseal(&mut b, &model.sha256());
    let opts = DecodeOptions { max_work: FUZZ_MAX_WORK, max_pixels: 1 << 16, ..DecodeOptions::default() };
    codec::decode(model, &b, &opts, &mut |_, _| {})?;
    Ok(())
}

/// [`decode_resealed`] with the model the stream's variance field asks for: `learned` (a
/// `learn_sigma` model) when it names the learned variance (code 3), else `plain`, so that
/// mutations reach the learned-variance body as well as the per-step one.
pub fn decode_resealed_pick(plain: &Model, learned: &Model, data: &[u8]) -> Result<()> {
    let wants_learned = data.get(5).is_some_and(|f| f >> 6 == 3);
    decode_resealed(if wants_learned { learned } else { plain }, data)
}
