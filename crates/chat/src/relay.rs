//! The client side of the home node's relay (`federation-spec.md` section 13): which relay
//! endpoint `chat listen` publishes, the slot it holds (pings answered, re-established with
//! backoff) and the conversations it takes through it, and the happy-eyeballs race of
//! `chat connect` between the direct endpoints and the relay. The relayed stream carries
//! the same TLS channel as a TCP connection, with the same checks.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use pd_proto::relay::{
    ControlFrame, MAX_CONTROL_FRAME_LEN, RelayEndpoint, SLOT_IDLE_SECS, UPGRADE_PROTOCOL,
};
use pd_proto::{Address, Endpoint, ProblemType, PublicKey, paths};
use rustls::pki_types::ServerName;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use url::Url;

use crate::account::{Account, is_problem};
use crate::error::ChatError;
use crate::peer::PeerError;
use crate::peer::cert::IdentityCert;
use crate::peer::session::{self, Attempt, BoxIo, ClientChannel, Event};

/// How long `chat connect` gives the direct endpoints before trying the relay too.
pub(crate) const HAPPY_EYEBALLS_DELAY: Duration = Duration::from_millis(250);
/// First wait before taking a slot again; doubled after each failure.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest wait before taking a slot again.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A slot that stayed up this long counts as healthy: the next loss retries at once.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// Time allowed for writing one control frame.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The relay endpoint naming the home node's relay, when the home node offers one; a
/// reason in words when it does not.
pub(crate) async fn offered_endpoint(account: &Account) -> Result<Endpoint, String> {
    let server = account.server();
    if server.path() != "/" {
        return Err(format!(
            "the home node's API is under a path ({}), which a relay endpoint cannot name",
            server.path()
        ));
    }
    let offered = account
        .client()
        .well_known()
        .await
        .map_err(|e| format!("cannot read the home node's well-known document: {e}"))?;
    if !offered.relay {
        return Err("the home node does not offer a relay".into());
    }
    let (Some(host), Some(port)) = (server.host_str(), server.port_or_known_default()) else {
        return Err(format!(
            "the home node's URL {server} names no host and port"
        ));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    RelayEndpoint::endpoint(server.scheme(), host, port).map_err(|e| e.to_string())
}

/// `the relay of HOST`, for messages.
pub(crate) fn describe(relay: &RelayEndpoint) -> String {
    format!("the relay of {}", relay.host())
}

fn relay_url(server: &Url, path: &str) -> Url {
    let mut url = server.clone();
    url.set_path(path);
    url.set_query(None);
    url
}

/// The codec of control frames (section 13.3).
fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_CONTROL_FRAME_LEN)
        .new_codec()
}

/// A conversation taken through the relay, for the listener to accept like a TCP one.
pub(crate) struct Relayed {
    /// The stream (the TLS channel of section 12 runs over it).
    pub(crate) io: BoxIo,
    /// `the relay of HOST`.
    pub(crate) from: String,
}

/// Holds a slot on the home node's relay for as long as it runs: takes it, answers pings,
/// takes every conversation offered and passes it to `incoming`, and takes a new slot with
/// backoff when it is lost. Tells the user what happens through `events` (notices), and
/// `held` once the first slot is taken (so that the endpoint is published only when it
/// leads somewhere).
pub(crate) async fn hold_slot(
    account: Arc<Account>,
    relay: RelayEndpoint,
    incoming: mpsc::Sender<Relayed>,
    events: mpsc::Sender<Event>,
    held: oneshot::Sender<()>,
) {
    let mut held = Some(held);
    let server = account.server().clone();
    let address = account.address().to_string();
    let slot_url = relay_url(&server, &paths::fill(paths::RELAY_SLOT, &address));
    let name = describe(&relay);
    let mut backoff = BACKOFF_FIRST;
    let mut fresh_token = false;
    let mut was_up = false;
    let mut takers = JoinSet::new();
    loop {
        let token = match account.session_token(fresh_token).await {
            Ok(token) => token,
            Err(e) => {
                let _ = events
                    .send(Event::Notice(format!(
                        "cannot log in to take a slot on {name} ({}); retrying in {} s",
                        e.report().0,
                        backoff.as_secs()
                    )))
                    .await;
                sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let upgraded = match account
            .client()
            .upgrade(&slot_url, Some(&token), UPGRADE_PROTOCOL)
            .await
        {
            Ok(upgraded) => upgraded,
            Err(e) => {
                fresh_token = is_problem(&e, ProblemType::Unauthenticated);
                let _ = events
                    .send(Event::Notice(format!(
                        "could not take a slot on {name} ({e}); retrying in {} s",
                        backoff.as_secs()
                    )))
                    .await;
                sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        fresh_token = false;
        if let Some(held) = held.take() {
            let _ = held.send(());
        }
        let notice = if was_up {
            format!("re-established the relay slot on {name}; reachable through it again")
        } else {
            format!("holding a relay slot on {name}")
        };
        let _ = events.send(Event::Notice(notice)).await;
        was_up = true;
        let since = Instant::now();
        let mut control = Framed::new(upgraded, codec());
        let mut heard = Instant::now();
        let idle = Duration::from_secs(SLOT_IDLE_SECS);
        let why = loop {
            let frame = tokio::select! {
                frame = control.next() => frame,
                () = sleep_until(heard + idle) => {
                    break format!("nothing heard for {} s", idle.as_secs());
                }
                Some(_) = takers.join_next() => continue,
            };
            heard = Instant::now();
            let body = match frame {
                None => break "the home node closed it".to_owned(),
                Some(Err(e)) => break e.to_string(),
                Some(Ok(body)) => body,
            };
            match ControlFrame::decode(&body) {
                Ok(ControlFrame::Ping) => {
                    let pong = ControlFrame::Pong.encode();
                    let sent = timeout(
                        WRITE_TIMEOUT,
                        control.send(bytes::Bytes::copy_from_slice(&pong[4..])),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break "the home node stopped reading".to_owned();
                    }
                }
                Ok(ControlFrame::Pong) => {}
                Ok(ControlFrame::Incoming { id }) => {
                    let url = relay_url(
                        &server,
                        &paths::fill(paths::RELAY_ACCEPT, &address).replace("{id}", &id),
                    );
                    let account = Arc::clone(&account);
                    let token = token.clone();
                    let incoming = incoming.clone();
                    let events = events.clone();
                    let from = name.clone();
                    takers.spawn(async move {
                        match account
                            .client()
                            .upgrade(&url, Some(&token), UPGRADE_PROTOCOL)
                            .await
                        {
                            Ok(upgraded) => {
                                let io: BoxIo = Box::new(upgraded);
                                let _ = incoming.send(Relayed { io, from }).await;
                            }
                            Err(e) => {
                                let _ = events
                                    .send(Event::Notice(format!(
                                        "could not take a conversation offered by {from}: {e}"
                                    )))
                                    .await;
                            }
                        }
                    });
                }
                Err(e) => break format!("it broke the relay protocol: {e}"),
            }
        };
        if since.elapsed() >= HEALTHY_AFTER {
            backoff = BACKOFF_FIRST;
        }
        let _ = events
            .send(Event::Notice(format!(
                "lost the relay slot on {name} ({why}); taking a new one in {} s",
                backoff.as_secs()
            )))
            .await;
        sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Opens the channel to `peer` (which must hold `expected`) through the relay of `relay`.
async fn through_relay(
    account: &Account,
    peer: &Address,
    expected: PublicKey,
    relay: &RelayEndpoint,
    identity: &IdentityCert,
) -> Result<ClientChannel, Attempt> {
    let label = describe(relay);
    let url = Url::parse(&relay.connect_url(peer))
        .map_err(|e| Attempt::Failed(format!("{label}: {e}")))?;
    let upgraded = account
        .client()
        .upgrade(&url, None, UPGRADE_PROTOCOL)
        .await
        .map_err(|e| Attempt::Failed(format!("{label}: {e}")))?;
    // The name is not checked (the listener's key is, section 12.3) and an IP address
    // sends no SNI: the relay learns nothing from the handshake.
    let name = ServerName::IpAddress(Ipv4Addr::UNSPECIFIED.into());
    session::open_over(peer, expected, &label, Box::new(upgraded), name, identity).await
}

/// Tries every relay endpoint in order; the first channel wins.
async fn relayed(
    account: &Account,
    peer: &Address,
    expected: PublicKey,
    relays: &[RelayEndpoint],
    identity: &IdentityCert,
) -> Result<(ClientChannel, String), PeerError> {
    let mut failures = Vec::new();
    for relay in relays {
        match through_relay(account, peer, expected, relay, identity).await {
            Ok(channel) => return Ok((channel, describe(relay))),
            Err(Attempt::Failed(why)) => failures.push(why),
            Err(Attempt::Final(e)) => return Err(e),
        }
    }
    Err(PeerError::Unreachable {
        address: peer.clone(),
        tried: failures.join("; "),
    })
}

/// Opens the channel to `peer` at `endpoints`: the direct (`tcp://`) endpoints first, the
/// relay endpoints [`HAPPY_EYEBALLS_DELAY`] later (at once when the direct ones failed);
/// the first channel wins, and says how it was reached (`at tcp://…` or `via the relay
/// of …`). A key mismatch on any path ends the attempt (possible impersonation).
pub(crate) async fn connect(
    account: &Account,
    peer: &Address,
    expected: PublicKey,
    endpoints: &[Endpoint],
    identity: &IdentityCert,
) -> Result<(ClientChannel, String), PeerError> {
    let relays: Vec<RelayEndpoint> = endpoints.iter().filter_map(RelayEndpoint::parse).collect();
    let direct: Vec<Endpoint> = endpoints
        .iter()
        .filter(|e| RelayEndpoint::parse(e).is_none())
        .cloned()
        .collect();
    let mut direct_try =
        (!direct.is_empty()).then(|| Box::pin(session::connect(peer, expected, &direct, identity)));
    let mut relay_try = None;
    let delay = sleep(if direct_try.is_some() {
        HAPPY_EYEBALLS_DELAY
    } else {
        Duration::ZERO
    });
    tokio::pin!(delay);
    let mut relay_due = !relays.is_empty();
    let mut failures: Vec<PeerError> = Vec::new();
    loop {
        if direct_try.is_none() && relay_try.is_none() && !relay_due {
            break;
        }
        tokio::select! {
            outcome = async {
                match direct_try.as_mut() {
                    Some(attempt) => attempt.await,
                    None => std::future::pending().await,
                }
            }, if direct_try.is_some() => {
                direct_try = None;
                match outcome {
                    Ok((channel, endpoint)) => return Ok((channel, format!("at {endpoint}"))),
                    Err(e @ PeerError::KeyMismatch { .. }) => return Err(e),
                    Err(e) => {
                        failures.push(e);
                        // No reason to wait any longer for the relay.
                        delay.as_mut().reset(Instant::now());
                    }
                }
            }
            outcome = async {
                match relay_try.as_mut() {
                    Some(attempt) => attempt.await,
                    None => std::future::pending().await,
                }
            }, if relay_try.is_some() => {
                relay_try = None;
                match outcome {
                    Ok((channel, how)) => return Ok((channel, format!("via {how}"))),
                    Err(e @ PeerError::KeyMismatch { .. }) => return Err(e),
                    Err(e) => failures.push(e),
                }
            }
            () = &mut delay, if relay_due => {
                relay_due = false;
                relay_try = Some(Box::pin(relayed(account, peer, expected, &relays, identity)));
            }
        }
    }
    // Every path failed: a refusal or a broken protocol says more than unreachability.
    let mut tried = Vec::new();
    for failure in failures {
        match failure {
            PeerError::Unreachable { tried: why, .. } if !why.is_empty() => tried.push(why),
            PeerError::Unreachable { .. } => {}
            other => return Err(other),
        }
    }
    Err(PeerError::Unreachable {
        address: peer.clone(),
        tried: tried.join("; "),
    })
}

/// `chat listen`'s choice of endpoints to publish with the relay: an error in words when
/// `--relay-only` cannot be honoured.
pub(crate) fn relay_only_refused(why: &str) -> ChatError {
    PeerError::Setup(format!(
        "--relay-only needs a relay on the home node, but {why}"
    ))
    .into()
}
