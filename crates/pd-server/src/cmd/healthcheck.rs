//! `pd-server healthcheck`: one `GET /healthz` at the node (or `--url`), for container
//! health checks.

use std::time::Duration;

use crate::config::Config;
use crate::healthcheck;

/// Runs `healthcheck`; the answer goes to stdout.
pub(crate) async fn run(
    config: &Config,
    url: Option<url::Url>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let (url, verify) = match url {
        Some(url) => (url, true),
        None => (healthcheck::default_url(config)?, false),
    };
    let body = healthcheck::check(&url, verify, timeout).await?;
    #[allow(clippy::print_stdout)]
    {
        println!("{}", body.trim_end());
    }
    Ok(())
}
