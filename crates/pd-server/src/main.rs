//! The `pd-server` binary.
fn main() {}
