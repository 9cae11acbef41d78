//! Integration tests of the node: a real server on 127.0.0.1:0 with a real SQLite store
//! (or PostgreSQL, in `store` and `replicas`), driven over HTTP with real signatures, and
//! its router driven in process (`router`).

mod accounts;
mod admin_browser;
mod admin_pages;
mod backup;
mod cli;
mod connections;
mod data_dir;
mod doctor;
mod federation;
mod healthcheck;
mod hostile;
mod hostile_netns;
mod lifecycle;
mod lookup;
mod node;
mod pg;
mod presence;
mod problems;
mod proxy;
mod rate_limits;
mod replicas;
mod rotations;
mod router;
mod routing;
mod server_key;
mod store;
mod trust;
mod util;
mod webfinger;
mod whoami;
