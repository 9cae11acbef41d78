//! `pd-server trust explain|export|import`: the trust policy from the configuration (and
//! the kept copies of subscribed lists), without fetching anything.

use std::time::SystemTime;

use anyhow::{Context as _, anyhow};
use pd_federation::trust::{EntryKind, Trust, TrustConfig, TrustPolicy, lists, restore_archived};
use pd_proto::Host;

use crate::cli::{ListFormatArg, TrustCommand};
use crate::config::Config;
use crate::store::{Store, StoreSpec};

/// Runs a `trust` subcommand; output goes to stdout.
#[allow(clippy::print_stdout)]
pub(crate) async fn run(config: &Config, command: TrustCommand) -> anyhow::Result<()> {
    let now = SystemTime::now();
    match command {
        TrustCommand::Explain { target } => {
            let host = Host::parse(target.trim())
                .map_err(|e| anyhow!("{target:?} is not a valid domain: {e}"))?;
            let policy = TrustPolicy::new(config.domain.clone(), config.resolved_trust()?)
                .context("invalid trust policy")?;
            let policy = with_kept_lists(config, policy).await?;
            for sub in &policy.local().subscriptions {
                if !policy.subscribed().contains_key(&sub.url) {
                    eprintln!(
                        "note: subscribed list {} has no kept copy in {}; it is not considered",
                        sub.url,
                        config.data_dir.display()
                    );
                }
            }
            println!("{}", crate::admin::explain(&policy, &host, now).line);
        }
        TrustCommand::Export { format, kind } => {
            let policy = TrustPolicy::new(config.domain.clone(), config.resolved_trust()?)
                .context("invalid trust policy")?;
            let kind = EntryKind::from(kind);
            let entries = policy.effective(kind, now);
            match format {
                ListFormatArg::Text => print!("{}", lists::export_text(&entries)),
                ListFormatArg::Csv => print!("{}", lists::export_mastodon_csv(&entries, kind)),
            }
        }
        TrustCommand::Import { file, kind } => {
            let bytes = std::fs::read(&file)
                .with_context(|| format!("failed to read {}", file.display()))?;
            let mut parsed = lists::parse(&bytes)
                .with_context(|| format!("failed to parse {}", file.display()))?;
            let name = file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            lists::mark_imported(&mut parsed.entries, &name, now);
            for warning in &parsed.warnings {
                eprintln!("warning: line {}: {}", warning.line, warning.message);
            }
            let mut snippet = TrustConfig::default();
            match EntryKind::from(kind) {
                EntryKind::Allow => snippet.allow = parsed.entries,
                EntryKind::Deny => snippet.deny = parsed.entries,
            }
            // Nested under `trust`, so entries with metadata (arrays of tables) land in
            // `[[trust.deny]]` rather than at the top level when pasted.
            #[derive(serde::Serialize)]
            struct Snippet {
                trust: TrustConfig,
            }
            let text = toml::to_string(&Snippet { trust: snippet })
                .context("failed to format the entries")?;
            print!("{text}");
        }
    }
    Ok(())
}

/// `policy` with the copies of its subscribed lists kept in the node's store (when the
/// node has a store and the policy subscribes to any list).
pub(crate) async fn with_kept_lists(
    config: &Config,
    policy: TrustPolicy,
) -> anyhow::Result<TrustPolicy> {
    let spec = config.store_spec();
    let missing = matches!(&spec, StoreSpec::Sqlite(path) if !path.exists());
    if policy.local().subscriptions.is_empty() || missing {
        return Ok(policy);
    }
    let store = Store::connect(&spec)
        .await
        .with_context(|| format!("failed to open the store {spec}"))?;
    let trust = Trust::new(policy);
    restore_archived(&trust, &store).await;
    store.close().await.context("failed to close the store")?;
    Ok(trust.current().as_ref().clone())
}
