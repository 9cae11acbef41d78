//! The fuzz targets: one function per parser or verifier that reads untrusted input, each
//! checking properties that must hold for every input (no panic, and the round trips and
//! agreements named on each function).
//!
//! The same functions serve two drivers: the libFuzzer binaries in `fuzz_targets/`
//! (`cargo fuzz run --sanitizer none TARGET`, see `docs/reliability.md`) and the corpus
//! replay in `tests/corpus.rs`, which feeds every kept corpus file and every regression
//! input through them as part of `cargo test`.

#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

pub mod seeds;
pub mod targets;

/// A fuzz target: takes any bytes, panics when a property fails.
pub type Target = fn(&[u8]);

/// Every target by the name of its binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("address", targets::address),
    ("signed", targets::signed),
    ("node_auth", targets::node_auth),
    ("frame", targets::frame),
    ("config", targets::config),
    ("lookup_answer", targets::lookup_answer),
];
