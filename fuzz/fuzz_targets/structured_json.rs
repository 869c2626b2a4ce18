//! See `event_fuzz::structured_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    event_fuzz::structured_json(data);
});
