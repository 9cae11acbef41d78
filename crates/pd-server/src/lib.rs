//! The PD node library.
