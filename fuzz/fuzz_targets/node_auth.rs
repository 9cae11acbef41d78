//! libFuzzer entry point of the `node_auth` target (`pd_fuzz::targets::node_auth`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pd_fuzz::targets::node_auth(data));
