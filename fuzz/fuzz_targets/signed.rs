//! libFuzzer entry point of the `signed` target (`pd_fuzz::targets::signed`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pd_fuzz::targets::signed(data));
