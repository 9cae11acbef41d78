//! libFuzzer entry point of the `lookup_answer` target (`pd_fuzz::targets::lookup_answer`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pd_fuzz::targets::lookup_answer(data));
