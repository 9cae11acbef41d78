//! One conversation over the secure channel: opening it from either side (TLS handshake,
//! the identity checks, the `hello` exchange) and running it (frames in and out, keepalive,
//! goodbye, a clean close).
//!
//! Order on the listening side: the TLS handshake completes, the listener checks the
//! claimed address, and only then sends `hello` (or `refuse`); the connecting side sends
//! nothing before it has read the listener's `hello`. So no application data moves before
//! both sides' checks have passed.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use pd_proto::{Address, Endpoint, PublicKey};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::codec::Framed;

use crate::peer::PeerError;
use crate::peer::cert::{IdentityCert, PeerCert, read_peer_cert};
use crate::peer::frame::{self, Frame, FrameCodec, RefuseReason};
use crate::peer::tls::{self, ALPN, ListenerVerifier};

/// Time allowed for a TCP connection to one endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for the TLS handshake and the `hello` exchange (the listener's lookup of the
/// connecting peer included).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// A side that sent nothing for this long sends a `ping`.
pub const PING_AFTER: Duration = Duration::from_secs(15);
/// A peer from which nothing arrived for this long has vanished.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Time allowed for one frame to be written.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a closing side keeps reading (and discarding) so that its last frames are not lost
/// to a connection reset.
const LINGER: Duration = Duration::from_secs(2);

/// A framed channel over some TLS stream.
pub type Channel<S> = Framed<S, FrameCodec>;

/// What the owner of a conversation asks of it.
#[derive(Debug)]
pub enum Command {
    /// Send one message.
    Send(String),
    /// Say goodbye and close.
    Bye(Option<String>),
    /// Send a group frame (section 12.6).
    Frame(Frame),
}

/// How a conversation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// This side ended it (the user left).
    Left,
    /// The peer said goodbye, with its reason if it gave one.
    Bye(Option<String>),
    /// The connection closed or failed without a goodbye.
    Disconnected(String),
    /// Nothing arrived for [`IDLE_TIMEOUT`].
    Vanished,
    /// The peer broke the protocol; it was told so.
    ProtocolError(String),
}

impl End {
    /// Whether the conversation ended normally (by one side's goodbye).
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Left | Self::Bye(None))
    }

    /// One line for the user.
    pub fn describe(&self, peer: &Address) -> String {
        match self {
            Self::Left => format!("left the conversation with {peer}"),
            Self::Bye(None) => format!("{peer} left"),
            Self::Bye(Some(reason)) => format!("{peer} left: {reason}"),
            Self::Disconnected(why) => format!("{peer} disconnected ({why})"),
            Self::Vanished => format!(
                "{peer} disconnected (nothing heard for {} s)",
                IDLE_TIMEOUT.as_secs()
            ),
            Self::ProtocolError(why) => {
                format!("ended the conversation with {peer}: it broke the protocol ({why})")
            }
        }
    }
}

/// A message that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Which conversation.
    pub id: u64,
    /// Who said it (the checked address).
    pub peer: Address,
    /// What was said.
    pub text: String,
}

/// What conversations report to their owner.
#[derive(Debug)]
pub enum Event {
    /// An incoming conversation passed every check and is open.
    Opened {
        /// Which conversation.
        id: u64,
        /// The checked address of the peer.
        peer: Address,
        /// The peer's key.
        key: PublicKey,
        /// Where the peer connected from (`IP:PORT`, or `the relay of HOST`).
        from: String,
        /// What to send it.
        commands: mpsc::Sender<Command>,
    },
    /// A message arrived.
    Message(Incoming),
    /// A group frame arrived (section 12.6); the group logic checks it.
    Group {
        /// Which conversation.
        id: u64,
        /// From whom (the checked address of the channel's peer).
        peer: Address,
        /// The frame.
        frame: Frame,
    },
    /// A conversation ended.
    Ended {
        /// Which conversation.
        id: u64,
        /// With whom.
        peer: Address,
        /// How.
        end: End,
    },
    /// Something the user should read (a warning about a peer's key, an address accepted
    /// by its stored key while the home node was unreachable).
    Notice(String),
    /// An incoming connection did not become a conversation.
    Failed {
        /// Which connection.
        id: u64,
        /// Where it came from (`IP:PORT`, or `the relay of HOST`).
        from: String,
        /// Why.
        failure: AcceptFailure,
    },
}

/// Any byte stream a channel can run over: a TCP connection, or a connection upgraded by a
/// relay (`crate::peer::relay`).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug> Io for T {}

/// A boxed [`Io`], so that a connecting side holds one channel type whatever the path.
pub type BoxIo = Box<dyn Io>;

/// The channel of a connecting side.
pub type ClientChannel = Channel<tokio_rustls::client::TlsStream<BoxIo>>;

/// How one attempt at opening a channel over a stream failed.
#[derive(Debug)]
pub enum Attempt {
    /// This stream led nowhere (TLS failed, too slow): another endpoint may do better.
    Failed(String),
    /// The listener answered, and the answer ends the attempt to connect (a refusal, a
    /// key mismatch, a broken protocol).
    Final(PeerError),
}

/// Opens a conversation with the listener at `endpoints`, which must hold `expected`: tries
/// each `tcp://` endpoint in order, and stops at the first that answers the handshake.
pub async fn connect(
    peer: &Address,
    expected: PublicKey,
    endpoints: &[Endpoint],
    identity: &IdentityCert,
) -> Result<(ClientChannel, String), PeerError> {
    let mut failures = Vec::new();
    for endpoint in endpoints {
        let Some((host, port)) = tcp_endpoint(endpoint) else {
            failures.push(format!("{}: not a tcp:// endpoint", endpoint.as_str()));
            continue;
        };
        let tcp = match timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                failures.push(format!("{}: {e}", endpoint.as_str()));
                continue;
            }
            Err(_) => {
                failures.push(format!(
                    "{}: no answer within {} s",
                    endpoint.as_str(),
                    CONNECT_TIMEOUT.as_secs()
                ));
                continue;
            }
        };
        // Without TCP_NODELAY, a small write that follows another unacknowledged one (the
        // handshake's last flight, then the first frames) waits for the peer's delayed ACK,
        // about 40 ms on Linux. A failure only costs that latency, so it is not an error.
        let _ = tcp.set_nodelay(true);
        let server_name = match tcp.peer_addr() {
            Ok(addr) => ServerName::IpAddress(addr.ip().into()),
            Err(e) => {
                failures.push(format!("{}: {e}", endpoint.as_str()));
                continue;
            }
        };
        match open_over(
            peer,
            expected,
            endpoint.as_str(),
            Box::new(tcp),
            server_name,
            identity,
        )
        .await
        {
            Ok(channel) => return Ok((channel, endpoint.as_str().to_owned())),
            Err(Attempt::Failed(why)) => failures.push(why),
            Err(Attempt::Final(e)) => return Err(e),
        }
    }
    Err(PeerError::Unreachable {
        address: peer.clone(),
        tried: failures.join("; "),
    })
}

/// Opens a conversation with the listener `peer`, which must hold `expected`, over `io`
/// (reached at `label`, for messages): the TLS handshake with check 1 of section 12.3,
/// then the greeting.
pub async fn open_over(
    peer: &Address,
    expected: PublicKey,
    label: &str,
    io: BoxIo,
    server_name: ServerName<'static>,
    identity: &IdentityCert,
) -> Result<ClientChannel, Attempt> {
    let unreachable = |why: &str| PeerError::Unreachable {
        address: peer.clone(),
        tried: format!("{label}: {why}"),
    };
    let verifier = ListenerVerifier::new(expected);
    let config = tls::client_config(identity, verifier.clone())
        .map_err(|e| Attempt::Final(PeerError::Setup(e.to_string())))?;
    let handshake = async {
        let tls = TlsConnector::from(config)
            .connect(server_name, io)
            .await
            .map_err(|e| e.to_string())?;
        if tls.get_ref().1.alpn_protocol() != Some(ALPN) {
            return Err("the peer does not speak pd-chat/1".to_owned());
        }
        Ok(tls)
    };
    let tls = match timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => tls,
        outcome => {
            if let Some(presented) = verifier.presented()
                && presented != expected
            {
                return Err(Attempt::Final(PeerError::KeyMismatch {
                    address: peer.clone(),
                    endpoint: label.to_owned(),
                    expected: expected.fingerprint(),
                    presented: presented.fingerprint(),
                }));
            }
            let why = match outcome {
                Ok(Err(e)) => e,
                _ => "TLS handshake timed out".to_owned(),
            };
            return Err(Attempt::Failed(format!("{label}: {why}")));
        }
    };
    let mut channel = Framed::new(tls, FrameCodec);
    let outcome = match timeout(HANDSHAKE_TIMEOUT, channel.next()).await {
        Ok(Some(Ok(Frame::Hello { .. }))) => {
            return match send(&mut channel, frame::hello()).await {
                Ok(()) => Ok(channel),
                Err(e) => Err(Attempt::Final(unreachable(&e))),
            };
        }
        Ok(Some(Ok(Frame::Refuse { reason, detail }))) => {
            close(&mut channel, None).await;
            PeerError::Refused {
                address: peer.clone(),
                reason: reason.describe().to_owned(),
                detail,
            }
        }
        Ok(Some(Ok(Frame::Bye { reason }))) => PeerError::Refused {
            address: peer.clone(),
            reason: "it closed the connection".to_owned(),
            detail: reason.unwrap_or_default(),
        },
        Ok(Some(Ok(other))) => {
            let why = format!("expected hello, got {}", frame_name(&other));
            close_after_protocol_error(&mut channel, &why).await;
            PeerError::Protocol {
                address: peer.clone(),
                detail: why,
            }
        }
        Ok(Some(Err(e))) if e.is_protocol() => {
            let why = e.to_string();
            close_after_protocol_error(&mut channel, &why).await;
            PeerError::Protocol {
                address: peer.clone(),
                detail: why,
            }
        }
        Ok(Some(Err(e))) => unreachable(&e.to_string()),
        Ok(None) => PeerError::Refused {
            address: peer.clone(),
            reason: "it closed the connection".to_owned(),
            detail: String::new(),
        },
        Err(_) => unreachable("no hello in time"),
    };
    Err(Attempt::Final(outcome))
}

/// The host and port of a `tcp://HOST:PORT` endpoint.
pub fn tcp_endpoint(endpoint: &Endpoint) -> Option<(String, u16)> {
    let url = url::Url::parse(endpoint.as_str()).ok()?;
    if url.scheme() != "tcp" {
        return None;
    }
    let host = match url.host()? {
        url::Host::Ipv6(ip) => ip.to_string(),
        other => other.to_string(),
    };
    Some((host, url.port()?))
}

/// Why an incoming connection did not become a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptFailure {
    /// The handshake failed (TLS, ALPN, certificate, time).
    Handshake(String),
    /// The peer was refused after the handshake.
    Refused {
        /// The address the peer claimed.
        claimed: Address,
        /// Why.
        reason: RefuseReason,
        /// Why, in words.
        detail: String,
    },
    /// The peer broke the protocol or went away during the `hello` exchange.
    Hello {
        /// The accepted address.
        peer: Address,
        /// What went wrong.
        detail: String,
    },
}

/// A refusal's reason as the listener says it (the connecting side reads
/// [`RefuseReason::describe`], written for it).
fn refused_because(reason: RefuseReason) -> &'static str {
    match reason {
        RefuseReason::NotAllowed => "not on your --allow list",
        RefuseReason::UnknownUser => "the address is not registered",
        RefuseReason::KeyMismatch => "its key is not the key registered for the address",
        RefuseReason::KeyChanged => "you remember another key for the address",
        RefuseReason::LookupFailed => "the address could not be looked up",
        RefuseReason::ShuttingDown => "shutting down",
        RefuseReason::Other => "for another reason",
    }
}

impl AcceptFailure {
    /// One line for the user.
    pub fn describe(&self, from: &str) -> String {
        match self {
            Self::Handshake(why) => format!("incoming connection from {from} failed: {why}"),
            Self::Refused {
                claimed,
                reason,
                detail,
            } => format!(
                "refused {claimed} (from {from}): {}{}{detail}",
                refused_because(*reason),
                if detail.is_empty() { "" } else { ": " }
            ),
            Self::Hello { peer, detail } => {
                format!("{peer} (from {from}) went away before the conversation began: {detail}")
            }
        }
    }
}

/// The first half of accepting a connection: the TLS handshake, the protocol name and the
/// peer's certificate. Nothing has been sent on the channel yet; the caller checks what the
/// certificate claims and then calls [`answer`] before `deadline`.
pub async fn handshake<S>(
    io: S,
    acceptor: TlsAcceptor,
    deadline: Instant,
) -> Result<(PeerCert, Channel<tokio_rustls::server::TlsStream<S>>), AcceptFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let tls = tokio::time::timeout_at(deadline, acceptor.accept(io))
        .await
        .map_err(|_| AcceptFailure::Handshake("TLS handshake timed out".into()))?
        .map_err(|e| AcceptFailure::Handshake(e.to_string()))?;
    let (_, connection) = tls.get_ref();
    if connection.alpn_protocol() != Some(ALPN) {
        return Err(AcceptFailure::Handshake(
            "the peer did not negotiate pd-chat/1 (ALPN)".into(),
        ));
    }
    let cert = connection
        .peer_certificates()
        .and_then(|certs| certs.first())
        .ok_or_else(|| AcceptFailure::Handshake("the peer presented no certificate".into()))
        .and_then(|der| read_peer_cert(der).map_err(|e| AcceptFailure::Handshake(e.to_string())))?;
    Ok((cert, Framed::new(tls, FrameCodec)))
}

/// The second half of accepting a connection: after the caller's checks of `cert`
/// (`checked`), sends `hello` and reads the peer's, or sends `refuse` and closes.
pub async fn answer<S>(
    mut channel: Channel<S>,
    cert: &PeerCert,
    checked: Result<(), (RefuseReason, String)>,
    deadline: Instant,
) -> Result<Channel<S>, AcceptFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Err((reason, detail)) = checked {
        let refusal = Frame::Refuse {
            reason,
            detail: detail.clone(),
        };
        let refusal = if refusal.check().is_ok() {
            refusal
        } else {
            Frame::Refuse {
                reason,
                detail: String::new(),
            }
        };
        close(&mut channel, Some(refusal)).await;
        return Err(AcceptFailure::Refused {
            claimed: cert.address.clone(),
            reason,
            detail,
        });
    }
    let hello_failed = |detail: String| AcceptFailure::Hello {
        peer: cert.address.clone(),
        detail,
    };
    send(&mut channel, frame::hello())
        .await
        .map_err(hello_failed)?;
    match tokio::time::timeout_at(deadline, channel.next()).await {
        Ok(Some(Ok(Frame::Hello { .. }))) => Ok(channel),
        Ok(Some(Ok(Frame::Bye { reason }))) => Err(hello_failed(format!(
            "it said goodbye{}",
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        ))),
        Ok(Some(Ok(other))) => {
            let why = format!("expected hello, got {}", frame_name(&other));
            close_after_protocol_error(&mut channel, &why).await;
            Err(hello_failed(why))
        }
        Ok(Some(Err(e))) => {
            if e.is_protocol() {
                close_after_protocol_error(&mut channel, &e.to_string()).await;
            }
            Err(hello_failed(e.to_string()))
        }
        Ok(None) => Err(hello_failed("it closed the connection".into())),
        Err(_) => Err(hello_failed("no hello in time".into())),
    }
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "hello",
        Frame::Refuse { .. } => "refuse",
        Frame::Msg { .. } => "msg",
        Frame::Ping => "ping",
        Frame::Bye { .. } => "bye",
        Frame::GroupInvite { .. } => "group-invite",
        Frame::GroupJoin { .. } => "group-join",
        Frame::GroupDecline { .. } => "group-decline",
        Frame::GroupLine { .. } => "group-line",
        Frame::GroupMember { .. } => "group-member",
    }
}

async fn send<S>(channel: &mut Channel<S>, frame: Frame) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match timeout(WRITE_TIMEOUT, channel.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the peer stopped reading".to_owned()),
    }
}

/// Sends `last` (a `bye` or `refuse`) if given, closes the TLS session and the connection's
/// sending side, and reads what is still coming for a moment so the peer's last frames are
/// not lost to a reset.
pub async fn close<S>(channel: &mut Channel<S>, last: Option<Frame>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(frame) = last {
        let _ = send(channel, frame).await;
    }
    let _ = timeout(WRITE_TIMEOUT, channel.get_mut().shutdown()).await;
    let _ = timeout(LINGER, async {
        while let Some(Ok(_)) = channel.next().await {}
    })
    .await;
}

/// Runs an open conversation until one side ends it: messages that arrive go to `events`,
/// `commands` say what to send. Returns how it ended.
pub async fn converse<S>(
    mut channel: Channel<S>,
    id: u64,
    peer: Address,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut heard = Instant::now();
    let mut said = Instant::now();
    loop {
        let ping_at = said + PING_AFTER;
        let give_up_at = heard + IDLE_TIMEOUT;
        tokio::select! {
            frame = channel.next() => {
                heard = Instant::now();
                match frame {
                    Some(Ok(Frame::Msg { text })) => {
                        let message = Incoming { id, peer: peer.clone(), text };
                        if events.send(Event::Message(message)).await.is_err() {
                            close(&mut channel, Some(Frame::bye(None))).await;
                            return End::Left;
                        }
                    }
                    Some(Ok(Frame::Ping)) => {}
                    Some(Ok(
                        frame @ (Frame::GroupInvite { .. }
                        | Frame::GroupJoin { .. }
                        | Frame::GroupDecline { .. }
                        | Frame::GroupLine { .. }
                        | Frame::GroupMember { .. }),
                    )) => {
                        let group = Event::Group { id, peer: peer.clone(), frame };
                        if events.send(group).await.is_err() {
                            close(&mut channel, Some(Frame::bye(None))).await;
                            return End::Left;
                        }
                    }
                    Some(Ok(Frame::Bye { reason })) => {
                        let _ = timeout(WRITE_TIMEOUT, channel.get_mut().shutdown()).await;
                        return End::Bye(reason);
                    }
                    Some(Ok(other)) => {
                        let why = format!("unexpected {} frame", frame_name(&other));
                        return protocol_error(&mut channel, why).await;
                    }
                    Some(Err(e)) if e.is_protocol() => {
                        return protocol_error(&mut channel, e.to_string()).await;
                    }
                    Some(Err(e)) => return End::Disconnected(e.to_string()),
                    None => return End::Disconnected("connection closed without goodbye".into()),
                }
            }
            command = commands.recv() => match command {
                Some(Command::Send(text)) => {
                    if let Err(why) = send(&mut channel, Frame::Msg { text }).await {
                        return End::Disconnected(why);
                    }
                    said = Instant::now();
                }
                Some(Command::Frame(frame)) => {
                    if let Err(why) = send(&mut channel, frame).await {
                        return End::Disconnected(why);
                    }
                    said = Instant::now();
                }
                Some(Command::Bye(reason)) => {
                    close(&mut channel, Some(Frame::bye(reason.as_deref()))).await;
                    return End::Left;
                }
                None => {
                    close(&mut channel, Some(Frame::bye(None))).await;
                    return End::Left;
                }
            },
            () = sleep_until(ping_at) => {
                if let Err(why) = send(&mut channel, Frame::Ping).await {
                    return End::Disconnected(why);
                }
                said = Instant::now();
            }
            () = sleep_until(give_up_at) => {
                close(&mut channel, Some(Frame::bye(Some("no answer")))).await;
                return End::Vanished;
            }
        }
    }
}

async fn protocol_error<S>(channel: &mut Channel<S>, why: String) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    close_after_protocol_error(channel, &why).await;
    End::ProtocolError(why)
}

/// Tells the peer it broke the protocol (`bye` with `protocol error: WHY`) and closes.
async fn close_after_protocol_error<S>(channel: &mut Channel<S>, why: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    close(
        channel,
        Some(Frame::bye(Some(&format!("protocol error: {why}")))),
    )
    .await;
}

/// The TLS acceptor of a listener presenting `identity`.
pub fn acceptor(identity: &IdentityCert) -> Result<TlsAcceptor, tls::TlsSetupError> {
    Ok(TlsAcceptor::from(tls::server_config(identity)?))
}
