//! See `event_fuzz::record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    event_fuzz::record(data);
});
