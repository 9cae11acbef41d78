//! `pd-server backup DIR`: a consistent copy of the data directory while the node runs.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::backup;
use crate::config::Config;

/// Runs `backup`; what was written is said on stderr.
pub(crate) async fn run(config: Config, dir: PathBuf) -> anyhow::Result<()> {
    let to = dir.clone();
    let written = tokio::task::spawn_blocking(move || backup::backup(&config, &to))
        .await
        .context("backup task failed")??;
    let mut parts = vec![format!("pd.sqlite3 ({} bytes)", written.database_bytes)];
    if written.server_key {
        parts.push("server.key".into());
    }
    if written.retired_keys > 0 {
        parts.push(format!("{} retired key(s)", written.retired_keys));
    }
    eprintln!("backed up to {}: {}", dir.display(), parts.join(", "));
    Ok(())
}
