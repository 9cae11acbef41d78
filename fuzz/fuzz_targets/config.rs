//! libFuzzer entry point of the `config` target (`pd_fuzz::targets::config`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pd_fuzz::targets::config(data));
