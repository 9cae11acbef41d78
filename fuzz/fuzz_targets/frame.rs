//! libFuzzer entry point of the `frame` target (`pd_fuzz::targets::frame`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pd_fuzz::targets::frame(data));
