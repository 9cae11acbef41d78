//! `pd-floor`: the bare HTTP stack as its own process, the floor of `pd-bench`'s external
//! load generator mode. axum on its own (one route `/v1/lookup/{address}`, no layers)
//! answering the bytes of a file with a given `Content-Type`, whatever the address and
//! headers of the request.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use bytes::Bytes;
use clap::Parser;

/// Serves fixed bytes on `GET /v1/lookup/{address}`; prints `listening on <addr>` once bound.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The answer's body.
    #[arg(long)]
    body: PathBuf,
    /// The answer's `Content-Type`.
    #[arg(long)]
    content_type: String,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let body = Bytes::from(
        std::fs::read(&cli.body)
            .with_context(|| format!("failed to read {}", cli.body.display()))?,
    );
    let content_type =
        HeaderValue::from_str(&cli.content_type).context("the content type is not a header")?;
    let app = Router::new().route(
        "/v1/lookup/{address}",
        get(move || {
            let body = body.clone();
            let content_type = content_type.clone();
            async move { ([(header::CONTENT_TYPE, content_type)], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("failed to bind {}", cli.listen))?;
    let addr = listener
        .local_addr()
        .context("failed to read the address")?;
    println!("listening on {addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the server failed")
}
