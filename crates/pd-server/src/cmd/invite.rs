//! `pd-server invite create`: a single-use invite token, printed on stdout.

use std::time::Duration;

use anyhow::Context as _;

use crate::config::Config;
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
    #[allow(clippy::print_stdout)]
    {
        println!("{token}");
    }
    Ok(())
}
