//! The relay's three HTTP/1.1 upgrade endpoints (`federation-spec.md` section 13): a
//! listener's slot, a connecting peer's request, the listener's taking of one conversation.
//! Every refusal is a problem answer before `101 Switching Protocols`; after it, the
//! connection belongs to the relay's tasks.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pd_proto::relay::{UPGRADE_PROTOCOL, is_conversation_id};
use pd_proto::{Address, ProblemType};

use super::splice::{Splice, SpliceEnd};
use super::{Refusal, slot};
use crate::http::ClientIpKey;
use crate::http::error::ApiError;
use crate::http::extract::bearer_token;
use crate::state::AppState;

/// `Retry-After` of refusals by a limit, in seconds.
const RETRY_AFTER_SECS: u64 = 30;

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let detail = refusal.to_string();
        match refusal {
            Refusal::Disabled | Refusal::NoSlot(_) | Refusal::NoConversation(_) => {
                Self::new(ProblemType::NotFound, detail)
            }
            Refusal::UserSlots(..) | Refusal::UserConversations(..) | Refusal::Budget(_) => {
                Self::new(ProblemType::RateLimited, detail).with_retry_after(RETRY_AFTER_SECS)
            }
            Refusal::Slots | Refusal::Conversations | Refusal::ShuttingDown => {
                Self::new(ProblemType::Unavailable, detail).with_retry_after(RETRY_AFTER_SECS)
            }
            Refusal::NotTaken(_) => Self::new(ProblemType::RemoteUnreachable, detail),
        }
    }
}

/// The request's upgrade, when it asks for `Upgrade: pd-relay/1` over HTTP/1.1 (else 400
/// `invalid-request`).
fn upgrade_of(req: &mut Request) -> Result<OnUpgrade, ApiError> {
    let asks = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE_PROTOCOL));
    let connection_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !asks || !connection_upgrade {
        return Err(ApiError::new(
            ProblemType::InvalidRequest,
            format!(
                "a relay request is an HTTP/1.1 upgrade: send `Connection: Upgrade` and \
                 `Upgrade: {UPGRADE_PROTOCOL}`"
            ),
        ));
    }
    req.extensions_mut().remove::<OnUpgrade>().ok_or_else(|| {
        ApiError::new(
            ProblemType::InvalidRequest,
            "a relay request is an HTTP/1.1 upgrade; this connection cannot be upgraded",
        )
    })
}

/// `101 Switching Protocols` to `pd-relay/1`.
fn switching() -> Response {
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(UPGRADE_PROTOCOL));
    response
}

/// The address of the path: one of this node's users (else 400 `wrong-domain`), and the
/// relay offered (else 404).
fn local_address(state: &AppState, raw: &str) -> Result<Address, ApiError> {
    if !state.relay.enabled() {
        return Err(state.relay.refused(Refusal::Disabled).into());
    }
    let address = Address::parse(raw).map_err(|e| {
        ApiError::new(
            ProblemType::InvalidAddress,
            format!(
                "{:?} is not a valid address: {e}",
                raw.chars().take(300).collect::<String>()
            ),
        )
    })?;
    if !state.registry.is_local(&address) {
        return Err(ApiError::new(
            ProblemType::WrongDomain,
            format!(
                "{address} is not a user of this node; its relay is at the node of {}",
                address.host()
            ),
        ));
    }
    Ok(address)
}

/// The session token proves the account `address` (else 401 `unauthenticated`).
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    address: &Address,
) -> Result<(), ApiError> {
    let unauthenticated = |detail: String| ApiError::new(ProblemType::Unauthenticated, detail);
    let token = bearer_token(headers).ok_or_else(|| {
        unauthenticated(format!(
            "a relay slot needs the session token of {address} (Authorization: Bearer)"
        ))
    })?;
    match state.registry.session(token).await? {
        Some(session) if &session.address == address => Ok(()),
        Some(_) => Err(unauthenticated(format!(
            "the session token is not one of {address}"
        ))),
        None => Err(unauthenticated(
            "the session token is unknown or expired; log in again".into(),
        )),
    }
}

fn peer_of(connect: Option<Extension<ConnectInfo<SocketAddr>>>) -> Result<SocketAddr, ApiError> {
    connect
        .map(|Extension(ConnectInfo(peer))| peer)
        .ok_or_else(|| ApiError::internal("the peer address of the connection is unknown"))
}

/// `GET /v1/relay/{address}/slot`: the listener `address` holds a slot.
#[utoipa::path(
    get, path = pd_proto::paths::RELAY_SLOT, tag = "relay",
    params(
        ("address" = String, Path, description = "The listener's address, a user of this node"),
        ("Upgrade" = String, Header, description = "pd-relay/1"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "Switching to the slot's control frames (section 13.3)"),
        (status = 400, description = "invalid-address, wrong-domain, or invalid-request (not an upgrade to pd-relay/1)", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 401, description = "unauthenticated: no session token of this account", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: the node offers no relay", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate-limited: the user holds as many slots as allowed (with Retry-After)", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: the relay holds as many slots as it can (with Retry-After)", body = pd_proto::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn slot(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let address = local_address(&state, &raw)?;
    authenticate(&state, req.headers(), &address).await?;
    let peer = peer_of(connect)?;
    let upgrade = upgrade_of(&mut req)?;
    let relay = Arc::clone(&state.relay);
    let (guard, control) = relay.take_slot(&address, peer)?;
    relay.idle.exempt(peer);
    let stop = relay.stop.subscribe();
    relay.spawn(async move {
        let _guard = guard;
        let io = match upgrade.await {
            Ok(io) => io,
            Err(e) => {
                tracing::debug!(error = %e, %address, "relay slot upgrade failed");
                return;
            }
        };
        tracing::info!(%address, peer.addr = %peer, "relay slot opened");
        let end = slot::run(TokioIo::new(io), control, stop).await;
        tracing::info!(%address, ?end, "relay slot closed");
    })?;
    Ok(switching())
}

/// `GET /v1/relay/{address}`: a connecting peer asks to be relayed to the listener
/// `address`.
#[utoipa::path(
    get, path = pd_proto::paths::RELAY_CONNECT, tag = "relay",
    params(
        ("address" = String, Path, description = "The listener's address, a user of this node"),
        ("Upgrade" = String, Header, description = "pd-relay/1"),
    ),
    responses(
        (status = 101, description = "Switching: the connection now carries the TLS channel of section 12 to the listener"),
        (status = 400, description = "invalid-address, wrong-domain, or invalid-request (not an upgrade to pd-relay/1)", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found (no relay, or the user holds no slot) or unknown-user", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate-limited: too many relay requests from this client, or the user's limits (with Retry-After)", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: the relay carries as many conversations as it can (with Retry-After)", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 504, description = "remote-unreachable: the listener did not take the conversation in time", body = pd_proto::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn connect(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Extension(client_ip): Extension<ClientIpKey>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let address = local_address(&state, &raw)?;
    let peer = peer_of(connect)?;
    let upgrade = upgrade_of(&mut req)?;
    let relay = Arc::clone(&state.relay);
    let from = client_ip.client_ip(peer.ip(), req.headers());
    let (guard, taken) = match relay.offer(&address, from) {
        Ok(offered) => offered,
        Err(Refusal::NoSlot(_)) => {
            // An unknown user is named as such; a known one is just not listening here.
            state.registry.lookup_local(&address).await?;
            return Err(Refusal::NoSlot(address).into());
        }
        Err(refusal) => return Err(refusal.into()),
    };
    // The wait ends before the request timeout, so the answer is this relay's own.
    let wait = relay
        .config
        .accept_timeout
        .min(state.config.limits.request_timeout.mul_f32(0.8));
    let listener = match tokio::time::timeout(wait, taken).await {
        Ok(Ok(listener)) => listener,
        _ => return Err(relay.refused(Refusal::NotTaken(address)).into()),
    };
    relay.idle.exempt(peer);
    let mut guard = guard;
    guard.waiting = None;
    let splice = Splice {
        bytes_per_second: relay.config.bytes_per_second,
        idle_timeout: relay.config.idle_timeout,
        budget: relay.budget(&address),
        bytes: guard.bytes().unwrap_or_default(),
        metrics: Arc::clone(&relay.metrics),
    };
    let stop = relay.stop.subscribe();
    relay.metrics.relay_conversations_total.inc();
    relay.spawn(async move {
        let _guard = guard;
        let (connector, listener) = match tokio::join!(upgrade, listener) {
            (Ok(a), Ok(b)) => (TokioIo::new(a), TokioIo::new(b)),
            (a, b) => {
                tracing::debug!(
                    connector = a.is_ok(),
                    listener = b.is_ok(),
                    %address,
                    "relayed conversation: an upgrade failed"
                );
                return;
            }
        };
        tracing::info!(%address, "relayed conversation opened");
        let end = splice.run(connector, listener, stop).await;
        if end == SpliceEnd::Budget {
            tracing::info!(%address, "relayed conversation closed: hourly byte budget used up");
        } else {
            tracing::info!(%address, ?end, "relayed conversation closed");
        }
    })?;
    Ok(switching())
}

/// `GET /v1/relay/{address}/accept/{id}`: the listener `address` takes the conversation
/// offered with `id` on its slot.
#[utoipa::path(
    get, path = pd_proto::paths::RELAY_ACCEPT, tag = "relay",
    params(
        ("address" = String, Path, description = "The listener's address, a user of this node"),
        ("id" = String, Path, description = "The one-time id of an `incoming` control frame"),
        ("Upgrade" = String, Header, description = "pd-relay/1"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "Switching: the connection now carries the TLS channel of section 12 from the connecting peer"),
        (status = 400, description = "invalid-address, wrong-domain, or invalid-request (not an upgrade, or a malformed id)", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 401, description = "unauthenticated: no session token of this account", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: no conversation waits with this id for this user", body = pd_proto::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn accept(
    State(state): State<AppState>,
    Path((raw, id)): Path<(String, String)>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let address = local_address(&state, &raw)?;
    if !is_conversation_id(&id) {
        return Err(ApiError::new(
            ProblemType::InvalidRequest,
            "a conversation id is 32 lowercase hexadecimal digits",
        ));
    }
    authenticate(&state, req.headers(), &address).await?;
    let peer = peer_of(connect)?;
    let upgrade = upgrade_of(&mut req)?;
    state.relay.take(&address, &id, upgrade)?;
    state.relay.idle.exempt(peer);
    Ok(switching())
}
