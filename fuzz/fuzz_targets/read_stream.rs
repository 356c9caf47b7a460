//! Fuzz target: `read_stream` on arbitrary bytes must never panic, and whatever it accepts
//! must be the canonical encoding of what it returned (SPEC.md leaves no freedom except a
//! partial last body word of a truncated file).
//!
//! Run: `cargo +nightly fuzz run read_stream fuzz/corpus/read_stream format/vectors`
#![no_main]

use ddpm_codec::bitstream::{read_stream, write_stream, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(stream) = read_stream(data, &Limits::default()) {
        let again = write_stream(&stream).expect("a stream that was read must be writable");
        assert!(again.len() <= data.len() && data.len() - again.len() < 4);
        assert_eq!(&data[..again.len()], &again[..]);
    }
});
