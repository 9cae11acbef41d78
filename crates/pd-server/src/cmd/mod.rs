//! One module per `pd-server` subcommand, each with the function that runs it; `cli`
//! parses the command line and calls them.

pub(crate) mod backup;
pub(crate) mod check_config;
pub(crate) mod doctor;
pub(crate) mod healthcheck;
pub(crate) mod init;
pub(crate) mod invite;
pub(crate) mod migrate;
pub(crate) mod run;
pub(crate) mod server_key;
pub(crate) mod trust;
