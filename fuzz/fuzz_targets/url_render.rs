#![no_main]

// The harness is shared with the stable corpus replay in `cargo test`.
#[allow(dead_code)]
#[path = "../../tests/it/fuzz_harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::url_render(data));
