//! Typed HTTP client for the PD API.
