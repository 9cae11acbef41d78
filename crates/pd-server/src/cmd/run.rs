//! `pd-server run` (the default): binds the node, reloads the trust policy on SIGHUP and
//! shuts down on Ctrl+C or SIGTERM; also the node's tracing set-up.

use crate::Server;
use crate::config::{Config, LogFormat};

/// Runs the node until Ctrl+C or SIGTERM.
pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    init_tracing(config.log_format);
    let server = Server::bind(config).await?;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut hangup = Hangup::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = hangup.recv() => match server.reload_trust().await {
                Ok(diff) => {
                    tracing::info!("trust policy reloaded on SIGHUP: {}", diff.summary());
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "SIGHUP: trust policy not reloaded");
                }
            },
        }
    }
    server.shutdown().await
}

/// SIGHUP, which reloads the trust policy (unix only).
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Self {
        Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Completes on the next SIGHUP (never, where there is none).
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut() {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// Sets up logging to stderr in the configured format (`RUST_LOG` overrides the level).
/// Text is coloured only when stderr is a terminal (and `NO_COLOR` is unset), so a journal
/// or a log file gets plain lines.
pub fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pd_server=info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on Ctrl+C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
