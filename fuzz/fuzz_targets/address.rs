//! libFuzzer entry point of the `address` target (`pd_fuzz::targets::address`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pd_fuzz::targets::address(data));
