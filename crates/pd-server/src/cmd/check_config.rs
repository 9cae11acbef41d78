//! `pd-server check-config`: validates the configuration (trust policy, outbound client)
//! and prints the policy's warnings.

use anyhow::Context as _;
use pd_federation::trust::TrustPolicy;

use crate::config::Config;

/// Runs `check-config`; the verdict goes to stderr.
pub(crate) fn run(config: &Config) -> anyhow::Result<()> {
    let policy = TrustPolicy::new(config.domain.clone(), config.resolved_trust()?)
        .context("invalid trust policy")?;
    pd_federation::guard::GuardedClient::new(&config.federation)
        .context("failed to build the outbound HTTP client")?;
    for warning in policy.warnings() {
        eprintln!("warning: {warning}");
    }
    eprintln!("configuration is valid (domain {})", config.domain);
    Ok(())
}
