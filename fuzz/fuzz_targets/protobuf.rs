//! See `event_fuzz::protobuf`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    event_fuzz::protobuf(data);
});
