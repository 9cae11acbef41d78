//! `pd-server doctor DOMAIN`: the report of each step of reaching another node.

use anyhow::{Context as _, anyhow};
use pd_federation::trust::TrustPolicy;
use pd_proto::Host;

use super::trust::with_kept_lists;
use crate::config::Config;
use crate::doctor;

/// Runs `doctor`: the report goes to stdout, as text or JSON; an error when a step failed.
#[allow(clippy::print_stdout)]
pub(crate) async fn run(config: &Config, target: &str, json: bool) -> anyhow::Result<()> {
    let host =
        Host::parse(target.trim()).map_err(|e| anyhow!("{target:?} is not a valid domain: {e}"))?;
    let policy = TrustPolicy::new(config.domain.clone(), config.resolved_trust()?)
        .context("invalid trust policy")?;
    let policy = with_kept_lists(config, policy).await?;
    let report = doctor::diagnose(config, policy, &host).await;
    if json {
        let text = serde_json::to_string_pretty(&report).context("failed to format the report")?;
        println!("{text}");
    } else {
        print!("{}", report.to_text());
    }
    match report.failures() {
        0 => Ok(()),
        n => Err(anyhow!(
            "{n} of {} checks failed for {host}",
            report.steps.len()
        )),
    }
}
