//! See `event_fuzz::binary_headers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    event_fuzz::binary_headers(data);
});
