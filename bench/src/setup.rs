//! The servers under test: a real node with one registered user who has published a presence
//! record, and the bare HTTP stack (axum on its own) answering the same bytes.

use std::net::SocketAddr;

use anyhow::{Context as _, bail, ensure};
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use bytes::Bytes;
use pd_client::{ClientOptions, PdClient};
use pd_proto::wire::RegisterRequest;
use pd_proto::{Address, Endpoint, Login, Presence, Registration, SecretKey, Signed, now_micros};
use pd_server::Server;
use pd_server::config::{Config, LookupAccess};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

use crate::load::{self, Target};

/// The user every lookup asks for.
const USER: &str = "bench@localhost";

/// Lifetime of the published presence record: longer than any run.
const PRESENCE_TTL_SECS: u64 = 6 * 3600;

/// A running node with one published user, and the lookup request to send it.
#[derive(Debug)]
pub(crate) struct Node {
    server: Server,
    _data: TempDir,
    /// `GET /v1/lookup/bench@localhost`, with the session token when lookups need one.
    pub(crate) target: Target,
    /// The session token sent with every lookup, when lookups need one.
    pub(crate) token: Option<String>,
    /// A real lookup answer's body and content type.
    pub(crate) body: Bytes,
    pub(crate) content_type: String,
}

impl Node {
    /// Starts a node with `access`, registers the user, publishes its presence, logs in,
    /// and checks that a lookup answers 200 with a verifying record (and, with `users`
    /// access, that a lookup without the token is refused).
    pub(crate) async fn start(access: LookupAccess) -> anyhow::Result<Self> {
        let data = tempfile::tempdir().context("failed to create a data dir")?;
        let mut config = Config::for_tests(data.path());
        config.lookup_access = access;
        let server = Server::bind(config).await?;
        let base = Url::parse(&server.base_url()).context("the node's base URL is invalid")?;
        let client = PdClient::new(base, &ClientOptions::default())?;

        let key = SecretKey::generate();
        let address = Address::parse(USER)?;
        let session_token = prepare_user(&client, &key, &address).await?;
        let token = match access {
            LookupAccess::Users => Some(session_token.as_str()),
            LookupAccess::Public => None,
        };
        let verified = client
            .lookup(&address, token, None)
            .await
            .context("the lookup answer did not verify")?;
        ensure!(
            verified.presence().is_some(),
            "the lookup answer has no presence record"
        );

        let path = format!("/v1/lookup/{USER}");
        let target = Target::get(server.http_addr(), &path, token);
        let answer = load::fetch(&target).await?;
        ensure!(
            answer.status == 200,
            "the lookup answered {}",
            answer.status
        );
        let content_type = answer
            .content_type
            .context("the lookup answer has no Content-Type")?;
        if access == LookupAccess::Users {
            let anonymous = load::fetch(&Target::get(server.http_addr(), &path, None)).await?;
            if anonymous.status != 401 {
                bail!(
                    "a lookup without a token answered {}, expected 401",
                    anonymous.status
                );
            }
        }
        let token = token.map(str::to_owned);
        Ok(Self {
            server,
            _data: data,
            target,
            token,
            body: answer.body,
            content_type,
        })
    }

    /// Stops the node and closes its store.
    pub(crate) async fn shutdown(self) -> anyhow::Result<()> {
        self.server.shutdown().await
    }
}

/// The bare HTTP stack: axum serving fixed bytes on the lookup route.
#[derive(Debug)]
pub(crate) struct Baseline {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
    pub(crate) target: Target,
}

impl Baseline {
    /// Serves `body` with `content_type` on `GET /v1/lookup/{address}` (127.0.0.1, a free
    /// port). Requests carry `token` like the node's, so both servers parse the same bytes;
    /// the handler ignores the address and the `Authorization` header.
    pub(crate) async fn start(
        body: Bytes,
        content_type: &str,
        token: Option<&str>,
    ) -> anyhow::Result<Self> {
        let content_type =
            HeaderValue::from_str(content_type).context("the content type is not a header")?;
        let app = Router::new().route(
            "/v1/lookup/{address}",
            get(move || {
                let body = body.clone();
                let content_type = content_type.clone();
                async move { ([(header::CONTENT_TYPE, content_type)], body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("failed to bind the baseline server")?;
        let addr = listener
            .local_addr()
            .context("failed to read the baseline's address")?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self {
            stop,
            task,
            target: Target::get(addr, &format!("/v1/lookup/{USER}"), token),
        })
    }

    /// Stops the server and waits for it.
    pub(crate) async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task
            .await
            .context("the baseline server task failed")?
            .context("the baseline server failed")
    }
}

/// Registers `address` with `key`, at sequence number `seq`.
pub(crate) async fn register(
    client: &PdClient,
    key: &SecretKey,
    address: &Address,
    seq: u64,
) -> anyhow::Result<()> {
    client
        .register(&RegisterRequest {
            registration: Signed::sign(
                key,
                &Registration {
                    address: address.clone(),
                    public_key: key.public(),
                    seq,
                },
            ),
            invite: None,
        })
        .await
        .with_context(|| format!("failed to register {address}"))?;
    Ok(())
}

/// Registers `address` with `key`, publishes a presence record (one endpoint, a few hours
/// of lifetime) and logs in; returns the session token.
pub(crate) async fn prepare_user(
    client: &PdClient,
    key: &SecretKey,
    address: &Address,
) -> anyhow::Result<String> {
    // Every signed operation needs a sequence number above the last one.
    let seq = now_micros();
    register(client, key, address, seq).await?;
    let presence = Presence {
        address: address.clone(),
        endpoints: vec![Endpoint::parse("tcp://203.0.113.5:7000")?],
        seq: seq + 1,
        expires_at: now_micros() / 1_000_000 + PRESENCE_TTL_SECS,
    };
    client
        .publish_presence(address, &Signed::sign(key, &presence))
        .await
        .context("failed to publish the presence record")?;
    let session = client
        .login(&Signed::sign(
            key,
            &Login {
                address: address.clone(),
                seq: seq + 2,
            },
        ))
        .await
        .context("failed to log in")?;
    Ok(session.token)
}
