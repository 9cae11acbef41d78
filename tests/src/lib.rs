//! End-to-end test helpers: locating and running the real `pd-server` and `chat` binaries.
