//! Fuzz target: `read_stream` on arbitrary bytes must never panic, and whatever it accepts
//! as complete must be the canonical encoding of what it returned.
//!
//! Run (stable Rust): `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none read_stream fuzz/corpus/read_stream format/vectors`
#![no_main]

use ddpm_codec::bitstream::{read_stream, write_stream, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = read_stream(data, &Limits::default()) {
        if !s.truncated {
            let again = write_stream(&s.header, &s.words).expect("a stream that was read must be writable");
            assert_eq!(again, data);
        }
    }
});
