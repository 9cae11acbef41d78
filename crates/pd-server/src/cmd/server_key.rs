//! `pd-server server-key rotate|show`: the server key that signs node-to-node requests.

use std::time::SystemTime;

use anyhow::Context as _;

use crate::cli::ServerKeyCommand;
use crate::config::Config;
use crate::server_keys::{self, KeyRing, ServerKeys};
use crate::store::Store;

/// Runs a `server-key` subcommand; output goes to stdout.
#[allow(clippy::print_stdout)]
pub(crate) async fn run(config: &Config, command: ServerKeyCommand) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let spec = config.store_spec();
    let shared = if spec.is_shared() {
        Some(
            Store::connect(&spec)
                .await
                .with_context(|| format!("failed to open the store {spec}"))?,
        )
    } else {
        None
    };
    let max_age = config.federation.max_request_age;
    match command {
        ServerKeyCommand::Rotate => {
            let rotated = match &shared {
                Some(store) => server_keys::rotate_shared(store, max_age, now).await?,
                None => server_keys::rotate(&config.data_dir, now).with_context(|| {
                    format!(
                        "failed to rotate the server key in {}",
                        config.data_dir.display()
                    )
                })?,
            };
            println!("{}", rotated.new_key_id);
            let reload = config.server_key_reload;
            match &rotated.retired {
                Some(old) => eprintln!(
                    "retired {} (published until {}); running nodes publish the new key within \
                     {} and sign with it {} after the rotation",
                    old.key_id(),
                    format_secs(
                        old.retired_at
                            .saturating_add(config.federation.max_request_age.as_secs())
                    ),
                    humantime::format_duration(reload),
                    humantime::format_duration(KeyRing::switch_delay_for(reload)),
                ),
                None => eprintln!("there was no server key yet; created one"),
            }
        }
        ServerKeyCommand::Show => {
            let keys = match &shared {
                Some(store) => server_keys::inspect_shared(store, max_age, now).await?,
                None => ServerKeys::inspect(&config.data_dir, max_age, now)?,
            };
            let current = keys.current_public();
            println!("{} {}", keys.current_id(), current.fingerprint());
            for retired in keys.retired() {
                println!(
                    "retired {} {} valid until {}",
                    retired.key_id(),
                    retired.public_key.fingerprint(),
                    format_secs(keys.retired_valid_until(retired)),
                );
            }
        }
    }
    Ok(())
}

/// Unix seconds as an RFC 3339 UTC time.
fn format_secs(secs: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}
