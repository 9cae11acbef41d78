//! `pd-server init`: sets up the data directory, the store's schema and the server key on
//! purpose.

use anyhow::Context as _;

use crate::config::Config;
use crate::server_keys;
use crate::store::sqlite::{self, FileState};
use crate::store::{Store, StoreSpec};

/// Runs `init`: creates the data directory, the store's schema and the server key where
/// they are missing, and says what it did.
pub(crate) async fn run(config: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("failed to create {}", config.data_dir.display()))?;
    let spec = config.store_spec();
    let before = match &spec {
        StoreSpec::Sqlite(path) => {
            let path = path.clone();
            Some(
                tokio::task::spawn_blocking(move || sqlite::file_state(&path))
                    .await
                    .context("the database check failed")??,
            )
        }
        StoreSpec::Postgres(_) => None,
    };
    let store = Store::connect(&spec)
        .await
        .with_context(|| format!("failed to open the store {spec}"))?;
    let had_key = server_keys::read_current(&config.data_dir)?.is_some();
    let keys = server_keys::load_for_store(
        &store,
        &config.data_dir,
        config.federation.max_request_age,
        pd_proto::now_secs(),
    )
    .await?;
    store.close().await?;
    let database = match before {
        Some(FileState::Initialised) => format!("{spec} was already set up; left as it is"),
        Some(FileState::Empty) => format!("set up the empty database {spec}"),
        Some(FileState::Missing) => format!("created the database {spec}"),
        None => format!("set up the schema of {spec} (existing data left as it is)"),
    };
    let key = if had_key && !spec.is_shared() {
        "kept the server key"
    } else {
        "the server key is"
    };
    eprintln!("{database}; {key} {}", keys.current_id());
    Ok(())
}
