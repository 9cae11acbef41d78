//! The commands, one module per subcommand (`listen` and `connect` hold the two long-running
//! ones); [`run`] dispatches the checked settings to them. Each loads what it needs from the
//! home, talks to the home server through `PdClient`, and writes its result to the given
//! output.

use std::io::Write;

use crate::account::Account;
use crate::error::ChatError;
use crate::settings::{Action, Settings};

mod completions;
pub(crate) mod connect;
mod contacts;
mod delete_account;
mod export_cert;
mod fingerprint;
pub mod listen;
mod lookup;
mod publish;
mod register;
mod rotate_key;
mod trust;
mod whoami;
mod withdraw;

/// Runs one command, writing its normal output to `out` and warnings to stderr.
pub async fn run(settings: Settings, out: &mut dyn Write) -> Result<(), ChatError> {
    let Settings {
        home,
        ca_file,
        action,
    } = settings;
    match action {
        Action::Register {
            address,
            server,
            invite,
        } => register::run(&home, ca_file, address, server, invite, out).await,
        Action::RegisterAgain { invite } => register::again(home, ca_file, invite, out).await,
        Action::Whoami { json } => whoami::run(&home, json, out),
        Action::Completions(shell) => completions::run(shell, out),
        Action::Lookup {
            address,
            json,
            mode,
        } => lookup::run(Account::open(home, ca_file)?, &address, mode, json, out).await,
        Action::Publish { endpoints, ttl } => {
            publish::run(Account::open(home, ca_file)?, &endpoints, ttl, out).await
        }
        Action::Withdraw => withdraw::run(Account::open(home, ca_file)?, out).await,
        Action::RotateKey => rotate_key::run(home, ca_file, out).await,
        Action::Listen(options) => {
            listen::listen(Account::open(home, ca_file)?, options, out).await
        }
        Action::Connect(address) => {
            connect::connect(Account::open(home, ca_file)?, address, out).await
        }
        Action::ConnectGroup(addresses) => {
            crate::group::hub::connect(Account::open(home, ca_file)?, addresses, out).await
        }
        Action::Trust {
            address,
            fingerprint,
        } => trust::run(Account::open(home, ca_file)?, &address, fingerprint, out).await,
        Action::Contacts { json } => contacts::list(&home, json, out),
        Action::RemoveContact(address) => contacts::remove(home, &address, out),
        Action::Fingerprint(None) => fingerprint::own(&home, out),
        Action::Fingerprint(Some(address)) => {
            fingerprint::run(Account::open(home, ca_file)?, &address, out).await
        }
        Action::ExportCert { cert, key } => export_cert::run(&home, &cert, &key, out),
        Action::DeleteAccount => delete_account::run(Account::open(home, ca_file)?, out).await,
    }
}
