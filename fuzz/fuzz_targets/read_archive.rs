//! Fuzz target: `bitsback::read_archive` on arbitrary bytes must never panic, and whatever it
//! accepts must be written back byte for byte by `write_archive` (up to the choice of the name
//! scheme, which the reader does not constrain: then the re-written archive must read back
//! to the same archive).
//!
//! Run (stable Rust): `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none read_archive fuzz/corpus/read_archive format/vectors`
#![no_main]

use ddpm_codec::bitsback::{read_archive, write_archive, ArchiveLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = read_archive(data, &ArchiveLimits::default()) {
        let again = write_archive(&a).expect("an archive that was read must be writable");
        let back = read_archive(&again, &ArchiveLimits::default()).expect("re-written archive reads");
        assert_eq!(back, a);
    }
});
