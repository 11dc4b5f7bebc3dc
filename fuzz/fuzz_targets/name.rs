//! libFuzzer entry point; the property lives in `kura_fuzz::check_name` (src/lib.rs), which
//! `tests/fuzz_corpus.rs` in the main crate also runs over the corpus and random inputs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kura_fuzz::check_name(data));
