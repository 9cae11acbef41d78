//! The `chat` binary.
fn main() {}
