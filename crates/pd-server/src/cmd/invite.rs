//! `pd-server invite create`: a single-use invite token, printed on stdout.

use std::time::Duration;

use anyhow::Context as _;

use crate::config::{Config, RegistrationPolicy};
use crate::registry;
use crate::store::Store;

/// Runs `invite create`.
pub(crate) async fn create(config: &Config, expires: Duration) -> anyhow::Result<()> {
    let spec = config.store_spec();
    let store = Store::connect(&spec)
        .await
        .with_context(|| format!("failed to open the store {spec}"))?;
    let token = registry::create_invite(&store, expires).await?;
    store.close().await?;
    if config.registration != RegistrationPolicy::Invite {
        eprintln!(
            "warning: registration is {:?} on this node, so invites are {}: set \
             registration = \"invite\" in the configuration for the token to matter",
            config.registration.as_str(),
            if config.registration == RegistrationPolicy::Open {
                "not needed (anyone may register)"
            } else {
                "refused (nobody may register)"
            }
        );
    }
    #[allow(clippy::print_stdout)]
    {
        println!("{token}");
    }
    Ok(())
}
