//! The chat client library.
