//! The PD node: a federated peer-discovery server, as a library with a thin binary.
//!
//! [`Server::bind`] starts a node from a [`Config`]; [`http::router`] is the HTTP API over
//! an [`AppState`]; [`registry::Registry`] holds the domain logic over the
//! [`store::Store`] (embedded SQLite, or PostgreSQL shared by several replicas).

#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod admin;
pub mod backup;
pub mod cli;
mod cmd;
pub mod config;
pub mod directory;
pub mod doctor;
pub mod federation;
pub mod healthcheck;
pub mod http;
mod listener;
pub mod metrics;
pub mod registry;
pub mod relay;
pub mod server;
pub mod server_keys;
pub mod state;
pub mod store;

pub use config::Config;
pub use http::router;
pub use registry::RegistryError;
pub use server::Server;
pub use state::AppState;
