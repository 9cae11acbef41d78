//! `chat listen`: accept conversations. Binds a port, publishes a signed presence record
//! with the endpoints to the home node (and republishes it at half its lifetime), checks
//! each connecting peer's claimed address through the home node (or, while the home node
//! cannot be reached, against the answer stored for it in the contacts), holds several
//! conversations at once, and on leaving says goodbye to every peer and withdraws the record
//! within one bounded time. When the home node offers a relay, it also publishes the relay
//! endpoint and holds a slot there (`crate::relay`); conversations taken through the relay
//! are accepted like TCP connections, with the same checks.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use pd_client::{ClientError, LookupMode};
use pd_proto::wire::{PublishResponse, Source};
use pd_proto::{Address, Endpoint, ProblemType};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_rustls::TlsAcceptor;

use crate::account::{Account, Answer, is_problem, now_secs};
use crate::console::{
    Console, HELP, Input, InputMode, LISTEN_COMMANDS, Line, Signal, Signals, View, parse_line,
};
use crate::contacts::age;
use crate::error::{ChatError, EXIT_HOME_UNREACHABLE, EXIT_REMOTE_UNREACHABLE};
use crate::group::joined::Groups;
use crate::output::rfc3339;
use crate::peer::PeerError;
use crate::peer::cert::{IdentityCert, PeerCert};
use crate::peer::frame::RefuseReason;
use crate::peer::known::{KeyCheck, KnownPeers};
use crate::peer::session::{self, Command, Event};
use crate::relay::{self, Relayed};
use crate::settings::{ListenOptions, RelayUse};

/// At most this many connections (conversations and handshakes) at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time allowed for leaving: the goodbyes to every peer and the withdrawal of the record,
/// which run at the same time.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait before retrying a failed publication.
const REPUBLISH_RETRY: Duration = Duration::from_secs(30);

/// How long the first publication waits for the relay slot to be held.
const SLOT_WAIT: Duration = Duration::from_secs(3);

/// One open conversation.
#[derive(Debug)]
struct Conversation {
    id: u64,
    peer: Address,
    commands: mpsc::Sender<Command>,
}

/// The open conversations and which one typed lines go to.
#[derive(Debug, Default)]
struct Conversations {
    open: Vec<Conversation>,
    current: Option<u64>,
    /// Whether typed lines are read (no "type to send" hints in service mode).
    console: bool,
    /// Set once the listener is leaving: no more "now talking to" lines.
    leaving: bool,
    /// The group invitations and groups carried by the conversations.
    groups: Groups,
}

impl Conversations {
    fn current(&self) -> Option<&Conversation> {
        self.open.iter().find(|c| Some(c.id) == self.current)
    }

    /// Adds a conversation; an older one with the same peer is closed (the peer reconnected).
    fn add(&mut self, conversation: Conversation, console: &mut Console<'_>) {
        if let Some(index) = self.open.iter().position(|c| c.peer == conversation.peer) {
            let old = self.open.remove(index);
            let _ = old
                .commands
                .try_send(Command::Bye(Some("replaced by a new connection".into())));
            if self.current == Some(old.id) {
                self.current = Some(conversation.id);
            }
        }
        if self.current.is_none() {
            self.current = Some(conversation.id);
            if self.console {
                console.status(format!(
                    "talking to {} (type to send; /help for commands)",
                    conversation.peer
                ));
            }
        }
        self.open.push(conversation);
        self.show(console);
    }

    fn remove(&mut self, id: u64, console: &mut Console<'_>) {
        self.open.retain(|c| c.id != id);
        if self.current == Some(id) {
            self.current = self.open.last().map(|c| c.id);
            if !self.leaving && self.console {
                match self.open.last() {
                    Some(next) => console.status(format!("now talking to {}", next.peer)),
                    None => console.status("no conversation left; waiting for peers"),
                }
            }
        }
        self.show(console);
    }

    fn switch(&mut self, address: &Address, console: &mut Console<'_>) {
        match self.open.iter().find(|c| &c.peer == address) {
            Some(c) => {
                self.current = Some(c.id);
                console.status(format!("now talking to {address}"));
            }
            None => console.status(format!("no conversation with {address} (/list)")),
        }
        self.show(console);
    }

    /// Shows the current conversation in the prompt and offers the open ones to `/to`.
    fn show(&self, console: &Console<'_>) {
        let group = self.current.and_then(|id| self.groups.prompt(id));
        console.set_prompt(group.unwrap_or_else(|| prompt(self.current().map(|c| &c.peer))));
        console.set_peers(self.open.iter().map(|c| c.peer.to_string()).collect());
    }
}

fn prompt(current: Option<&Address>) -> String {
    current.map_or_else(|| "no conversation".to_owned(), Address::to_string)
}

/// Why the listener leaves.
enum Leave {
    /// The user asked (`/quit`, end of input, Ctrl+C at the line editor, a broken input).
    User(&'static str),
    /// A signal arrived.
    Signal(Signal),
}

impl Leave {
    fn describe(&self) -> &'static str {
        match self {
            Self::User(why) => why,
            Self::Signal(signal) => signal.describe(),
        }
    }
}

/// Runs `chat listen` until the user leaves or a signal arrives.
pub(crate) async fn listen(
    account: Account,
    options: ListenOptions,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let mut console = Console::new(out);
    let mut signals = Signals::new()?;
    let account = Arc::new(account);
    let identity = IdentityCert::new(account.key(), account.address())
        .map_err(|e| PeerError::Setup(e.to_string()))?;
    let acceptor = session::acceptor(&identity).map_err(|e| PeerError::Setup(e.to_string()))?;
    let listener = TcpListener::bind(options.bind)
        .await
        .map_err(|e| PeerError::Setup(format!("cannot listen on {}: {e}", options.bind)))?;
    let local = listener
        .local_addr()
        .map_err(|e| PeerError::Setup(format!("cannot listen on {}: {e}", options.bind)))?;

    // Starting: which endpoints to publish, and the first publication. Both ask the home
    // node, so both give way to Ctrl+C.
    let (endpoints, relay_endpoint) = tokio::select! {
        endpoints = with_relay(&account, &options, local, &mut console) => endpoints?,
        signal = signals.recv() => {
            return Err(interrupted(signal, "stopped before listening".into()));
        }
    };
    let shown: Vec<&str> = endpoints.iter().map(Endpoint::as_str).collect();
    let (events_tx, mut events) = mpsc::channel::<Event>(256);
    // The relay slot, held for as long as the listener runs; it hands over the
    // conversations it takes. Taken before the first publication, so that a peer who
    // finds the relay endpoint finds the slot held (waiting a bounded time: a relay that
    // does not answer yet must not keep the direct endpoints unpublished).
    let (relayed_tx, mut relayed) = mpsc::channel::<Relayed>(16);
    let mut slot = JoinSet::new();
    if let Some(endpoint) = relay_endpoint {
        let (held_tx, held) = oneshot::channel();
        slot.spawn(relay::hold_slot(
            Arc::clone(&account),
            endpoint,
            relayed_tx,
            events_tx.clone(),
            held_tx,
        ));
        tokio::select! {
            _ = held => {}
            () = tokio::time::sleep(SLOT_WAIT) => console.status(format!(
                "no relay slot held after {} s; publishing anyway (it is retried)",
                SLOT_WAIT.as_secs()
            )),
            signal = signals.recv() => {
                slot.shutdown().await;
                return Err(interrupted(signal, "stopped before listening".into()));
            }
        }
    }
    let first = tokio::select! {
        first = account.publish(&endpoints, options.ttl) => first,
        signal = signals.recv() => {
            // The record may have been stored just as the signal came: withdraw it.
            let _ = timeout(LEAVE_TIMEOUT, account.withdraw()).await;
            return Err(interrupted(signal, "stopped before listening".into()));
        }
    };
    let mut published: Option<PublishResponse> = None;
    let mut republish_at = Instant::now() + options.ttl / 2;
    match first {
        Ok(answer) => {
            console.status(format!(
                "listening as {} on {local}; published {} until {}",
                account.address(),
                shown.join(", "),
                rfc3339(answer.expires_at)
            ));
            published = Some(answer);
        }
        Err(e) if e.report().1 == EXIT_HOME_UNREACHABLE => {
            console.status(format!(
                "listening as {} on {local}; could not publish {} ({}); retrying every {} s \
                 (peers who stored your record can still connect)",
                account.address(),
                shown.join(", "),
                e.report().0,
                REPUBLISH_RETRY.as_secs()
            ));
            republish_at = Instant::now() + REPUBLISH_RETRY.min(options.ttl / 4);
        }
        Err(e) => return Err(e),
    }
    if options.allow.is_empty() {
        console.status("accepting every authenticated peer (restrict with --allow ADDRESS)");
    } else {
        let allowed: Vec<String> = options.allow.iter().map(ToString::to_string).collect();
        console.status(format!(
            "accepting only {} (--allow); anyone else is refused",
            allowed.join(", ")
        ));
    }

    let input = InputMode::detect(options.no_console, true);
    if input == InputMode::None {
        console
            .status("no console: received lines go to stdout; leave with Ctrl+C or SIGTERM (kill)");
    }
    console.start_input(
        input,
        View {
            prompt: prompt(None),
            commands: LISTEN_COMMANDS,
        },
    )?;

    let known = Arc::new(KnownPeers::new(account.home().clone()));
    let allow = Arc::new(options.allow.clone());
    let mut tasks = JoinSet::new();
    let mut conversations = Conversations {
        console: input != InputMode::None,
        ..Conversations::default()
    };
    let mut next_id = 0_u64;

    let leave = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, from)) => {
                    // No waiting for the peer's delayed ACKs between small writes (see
                    // `session::connect`); a failure only costs latency.
                    let _ = tcp.set_nodelay(true);
                    if tasks.len() >= MAX_CONNECTIONS {
                        console.status(format!(
                            "turned away a connection from {from}: {MAX_CONNECTIONS} are open"
                        ));
                        continue;
                    }
                    next_id += 1;
                    let connection = Connection {
                        id: next_id,
                        from: from.to_string(),
                        acceptor: acceptor.clone(),
                        account: Arc::clone(&account),
                        known: Arc::clone(&known),
                        allow: Arc::clone(&allow),
                        events: events_tx.clone(),
                    };
                    tasks.spawn(connection.run(tcp));
                }
                Err(e) => {
                    console.status(format!("accepting a connection failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(Relayed { io, from }) = relayed.recv() => {
                if tasks.len() >= MAX_CONNECTIONS {
                    console.status(format!(
                        "turned away a conversation from {from}: {MAX_CONNECTIONS} are open"
                    ));
                    continue;
                }
                next_id += 1;
                let connection = Connection {
                    id: next_id,
                    from,
                    acceptor: acceptor.clone(),
                    account: Arc::clone(&account),
                    known: Arc::clone(&known),
                    allow: Arc::clone(&allow),
                    events: events_tx.clone(),
                };
                tasks.spawn(connection.run(io));
            }
            Some(event) = events.recv() => {
                handle_event(event, &mut conversations, &account, &allow, &mut console).await?;
            }
            Some(_) = tasks.join_next() => {}
            input = console.next_input() => match input {
                Input::Line(line) => match parse_line(&line) {
                    Line::Empty => {}
                    Line::Quit => break Leave::User("quit"),
                    Line::Help => console.status(HELP),
                    Line::Invalid(why) => console.status(why),
                    Line::List => list(&conversations, &mut console),
                    Line::To(address) => conversations.switch(&address, &mut console),
                    Line::Text(text) => match conversations.current {
                        Some(id) if conversations.groups.is_group(id) => {
                            conversations.groups.send(&account, id, text, &mut console);
                        }
                        _ => send_text(&conversations, text, &mut console),
                    },
                    Line::Members => match conversations.current {
                        Some(id) => conversations.groups.members(id, &mut console),
                        None => console.status("no conversation open"),
                    },
                    Line::Leave => match conversations.current {
                        Some(id) => conversations.groups.leave(&account, id, &mut console),
                        None => console.status("no conversation open"),
                    },
                    Line::Join => {
                        if let Some(id) = conversations.groups.join(&account, &mut console) {
                            conversations.current = Some(id);
                            conversations.show(&console);
                        }
                    }
                    Line::Decline => conversations.groups.decline(&mut console),
                    Line::Invite(_) => console.status(
                        "chat listen does not invite; start a group with chat connect ADDRESS ADDRESS",
                    ),
                },
                Input::Unusable(why) => console.status(format!("not sent: {why}")),
                Input::End => break Leave::User("end of input"),
                Input::Interrupt => break Leave::Signal(Signal::Interrupt),
                Input::Failed(e) => {
                    console.status(format!("cannot read the input ({e}); leaving"));
                    break Leave::User("unreadable input");
                }
            },
            () = sleep_until(republish_at) => {
                match account.publish(&endpoints, options.ttl).await {
                    Ok(answer) => {
                        if published.is_none() {
                            console.status(format!(
                                "published {} until {}",
                                shown.join(", "),
                                rfc3339(answer.expires_at)
                            ));
                        }
                        published = Some(answer);
                        republish_at = Instant::now() + options.ttl / 2;
                    }
                    Err(e) => {
                        console.status(format!(
                            "could not publish the presence record (retrying): {}",
                            e.report().0
                        ));
                        republish_at = Instant::now() + REPUBLISH_RETRY.min(options.ttl / 4);
                    }
                }
            }
            signal = signals.recv() => break Leave::Signal(signal),
        }
    };

    // Leaving. The terminal gets its mode back first, so a second Ctrl+C is a signal again;
    // no new connection is accepted; every peer is told goodbye while the record is
    // withdrawn, all within LEAVE_TIMEOUT; a second signal leaves at once.
    console.stop_input();
    drop(listener);
    slot.shutdown().await;
    drop(relayed);
    console.status(format!(
        "{}: saying goodbye to {} peer(s)",
        leave.describe(),
        conversations.open.len()
    ));
    conversations.leaving = true;
    conversations.groups.leave_all(&account);
    for conversation in &conversations.open {
        let _ = conversation.commands.try_send(Command::Bye(None));
    }
    drop(events_tx);
    let deadline = Instant::now() + LEAVE_TIMEOUT;
    let record_until = published.as_ref().map(|p| rfc3339(p.expires_at));
    let publishes = record_until.is_some();
    let withdrawal = async {
        if publishes {
            Some(account.withdraw().await)
        } else {
            None
        }
    };
    tokio::pin!(withdrawal);
    let mut withdrawn: Option<Option<Result<(), ChatError>>> = None;
    let mut goodbyes_done = false;
    while !(goodbyes_done && withdrawn.is_some()) {
        tokio::select! {
            event = events.recv(), if !goodbyes_done => match event {
                Some(Event::Opened { commands, .. }) => {
                    let _ = commands.try_send(Command::Bye(Some("leaving".into())));
                }
                Some(event) => {
                    handle_event(event, &mut conversations, &account, &allow, &mut console).await?
                }
                None => goodbyes_done = true,
            },
            result = &mut withdrawal, if withdrawn.is_none() => withdrawn = Some(result),
            () = sleep_until(deadline) => break,
            signal = signals.recv() => {
                let record = record_until.as_ref().map_or_else(String::new, |until| {
                    format!("; the presence record stays valid until {until}")
                });
                return Err(interrupted(
                    signal,
                    format!("left without waiting for the goodbyes{record}"),
                ));
            }
        }
    }
    if !goodbyes_done {
        console.status("some peers did not answer in time; closing anyway");
    }
    tasks.shutdown().await;
    match (withdrawn, record_until) {
        (_, None) => {
            console.status("no presence record was published, so none to withdraw");
            Ok(())
        }
        (Some(Some(Ok(()))), _) => {
            console.status(format!(
                "withdrew the presence record of {}",
                account.address()
            ));
            Ok(())
        }
        (Some(Some(Err(cause))), Some(until)) => {
            let (why, code) = cause.report();
            Err(ChatError::NotWithdrawn { until, why, code })
        }
        (_, Some(until)) => Err(ChatError::NotWithdrawn {
            until,
            why: format!(
                "the home server did not answer within {} s",
                LEAVE_TIMEOUT.as_secs()
            ),
            code: EXIT_HOME_UNREACHABLE,
        }),
    }
}

/// The error of a process ended by `signal` before it could finish.
fn interrupted(signal: Signal, what: String) -> ChatError {
    ChatError::Interrupted {
        message: format!("{}: {what}", signal.describe()),
        code: signal.exit_code(),
    }
}

async fn handle_event(
    event: Event,
    conversations: &mut Conversations,
    account: &Account,
    allow: &[Address],
    console: &mut Console<'_>,
) -> Result<(), ChatError> {
    match event {
        Event::Opened {
            id,
            peer,
            key,
            from,
            commands,
        } => {
            console.status(format!(
                "{peer} connected from {from} (fingerprint {})",
                key.fingerprint()
            ));
            conversations.add(Conversation { id, peer, commands }, console);
        }
        Event::Message(message) => console.message(&message.peer, &message.text).await?,
        Event::Ended { id, peer, end } => {
            console.status(end.describe(&peer));
            conversations.groups.ended(id, &end, console);
            conversations.remove(id, console);
        }
        Event::Group { id, peer, frame } => {
            let commands = conversations
                .open
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.commands.clone());
            let labelled = conversations.open.len() > 1;
            let joined = conversations
                .groups
                .on_frame(
                    account,
                    allow,
                    id,
                    &peer,
                    frame,
                    commands.as_ref(),
                    labelled,
                    console,
                )
                .await?;
            if let Some(id) = joined {
                conversations.current = Some(id);
            }
            conversations.show(console);
        }
        Event::Failed { from, failure, .. } => console.status(failure.describe(&from)),
        Event::Notice(text) => console.status(text),
    }
    Ok(())
}

fn list(conversations: &Conversations, console: &mut Console<'_>) {
    if conversations.open.is_empty() {
        console.status("no conversations");
        return;
    }
    let names: Vec<String> = conversations
        .open
        .iter()
        .map(|c| {
            let name = conversations
                .groups
                .describe(c.id)
                .unwrap_or_else(|| c.peer.to_string());
            if Some(c.id) == conversations.current {
                format!("{name} (current)")
            } else {
                name
            }
        })
        .collect();
    console.status(format!("conversations: {}", names.join(", ")));
}

fn send_text(conversations: &Conversations, text: String, console: &mut Console<'_>) {
    let Some(current) = conversations.current() else {
        console.status("nobody to send to yet (no conversation open)");
        return;
    };
    if let Err(why) = crate::peer::frame::check_text(&text) {
        console.status(format!("not sent: {why}"));
        return;
    }
    if current.commands.try_send(Command::Send(text)).is_err() {
        console.status(format!(
            "not sent: {} is not keeping up with the messages",
            current.peer
        ));
    }
}

/// One incoming connection, from the handshake to the end of its conversation.
struct Connection {
    id: u64,
    from: String,
    acceptor: TlsAcceptor,
    account: Arc<Account>,
    known: Arc<KnownPeers>,
    allow: Arc<Vec<Address>>,
    events: mpsc::Sender<Event>,
}

impl Connection {
    async fn run<S>(self, io: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let Self {
            id,
            from,
            acceptor,
            account,
            known,
            allow,
            events,
        } = self;
        let deadline = Instant::now() + session::HANDSHAKE_TIMEOUT;
        let mut notices = Vec::new();
        let opened = async {
            let (cert, channel) = session::handshake(io, acceptor, deadline).await?;
            let checked = tokio::time::timeout_at(
                deadline,
                check_peer(&account, &known, &allow, &cert, &mut notices),
            )
            .await
            .unwrap_or_else(|_| {
                Err((
                    RefuseReason::LookupFailed,
                    "the lookup of the address took too long".into(),
                ))
            });
            let channel = session::answer(channel, &cert, checked, deadline).await?;
            Ok((cert, channel))
        };
        let opened = opened.await;
        for notice in notices {
            let _ = events.send(Event::Notice(notice)).await;
        }
        match opened {
            Err(failure) => {
                let _ = events.send(Event::Failed { id, from, failure }).await;
            }
            Ok((cert, channel)) => {
                if let Err(e) = account.contacts().record_talk(&cert.address, now_secs()) {
                    let notice = format!("could not note the conversation in the contacts: {e}");
                    let _ = events.send(Event::Notice(notice)).await;
                }
                let (commands_tx, commands) = mpsc::channel(64);
                let opened = Event::Opened {
                    id,
                    peer: cert.address.clone(),
                    key: cert.key,
                    from,
                    commands: commands_tx,
                };
                if events.send(opened).await.is_err() {
                    return;
                }
                let end =
                    session::converse(channel, id, cert.address.clone(), commands, events.clone())
                        .await;
                let _ = events
                    .send(Event::Ended {
                        id,
                        peer: cert.address,
                        end,
                    })
                    .await;
            }
        }
    }
}

/// The listener's checks of a connecting peer: the allow list, then a lookup of the claimed
/// address through this account's home node (the key must be the certificate's; while the
/// home node cannot be reached, the key stored for the address in the contacts), then the
/// known-peers file. Lines for the user go to `notices`.
async fn check_peer(
    account: &Account,
    known: &KnownPeers,
    allow: &[Address],
    cert: &PeerCert,
    notices: &mut Vec<String>,
) -> Result<(), (RefuseReason, String)> {
    let claimed = &cert.address;
    if !allow.is_empty() && !allow.contains(claimed) {
        return Err((RefuseReason::NotAllowed, String::new()));
    }
    let lookup = async |mode| {
        account
            .lookup_or_stored(claimed, mode)
            .await
            .map_err(|err| match &err {
                ChatError::Client(client) if is_problem(client, ProblemType::UnknownUser) => (
                    RefuseReason::UnknownUser,
                    format!("{claimed} is not registered"),
                ),
                other
                    if matches!(
                        other.report().1,
                        EXIT_HOME_UNREACHABLE | EXIT_REMOTE_UNREACHABLE
                    ) =>
                {
                    (
                        RefuseReason::LookupFailed,
                        format!(
                            "could not check {claimed} with the home node (unreachable), and \
                             no record of it is stored"
                        ),
                    )
                }
                other => (RefuseReason::LookupFailed, other.report().0),
            })
    };
    let mut answer = lookup(None).await?;
    // A cached answer may predate a key rotation: ask the peer's home node again.
    if let Answer::Live(found) = &answer
        && *found.public_key() != cert.key
        && matches!(found.source(), Source::Cache | Source::Stale)
    {
        answer = lookup(Some(LookupMode::Refresh)).await?;
    }
    let found = answer.lookup();
    let registered = *found.public_key();
    if let Answer::Stored { contact, why } = &answer {
        let stored = age(contact.fetched_at, now_secs());
        if registered != cert.key {
            return Err((
                RefuseReason::LookupFailed,
                format!(
                    "could not check {claimed} with the home node, and its key {} is not the \
                     one stored for it ({}, {stored} ago)",
                    cert.key.fingerprint(),
                    registered.fingerprint()
                ),
            ));
        }
        notices.push(format!(
            "could not check {claimed} with the home node ({why}): accepted by the key \
             stored {stored} ago"
        ));
    } else if registered != cert.key {
        notices.push(format!(
            "WARNING: possible impersonation: a peer claiming to be {claimed} presented key {}, \
             but its home node vouches for key {}; refused",
            cert.key.fingerprint(),
            registered.fingerprint()
        ));
        return Err((
            RefuseReason::KeyMismatch,
            format!(
                "presented {}, registered {}",
                cert.key.fingerprint(),
                registered.fingerprint()
            ),
        ));
    }
    match known.check(claimed, &cert.key, |old| found.rotated_from(old).is_ok()) {
        Ok(KeyCheck::FirstContact | KeyCheck::Known) => Ok(()),
        Ok(KeyCheck::Rotated { previous }) => {
            notices.push(format!(
                "{claimed} rotated its key from {} to {} (signed by the old key); remembered",
                previous.fingerprint(),
                cert.key.fingerprint()
            ));
            Ok(())
        }
        Ok(KeyCheck::Changed { known }) => {
            notices.push(format!(
                "WARNING: the key of {claimed} has changed: remembered {}, now {}, with no \
                 rotation signed by the old key; refused. If {claimed} confirms the new \
                 fingerprint by another way, run `chat trust {claimed}`",
                known.fingerprint(),
                cert.key.fingerprint()
            ));
            Err((
                RefuseReason::KeyChanged,
                format!(
                    "remembered {}, presented {}",
                    known.fingerprint(),
                    cert.key.fingerprint()
                ),
            ))
        }
        Err(e) => Err((RefuseReason::LookupFailed, e.report().0)),
    }
}

/// The endpoints to publish, with the relay endpoint of the home node last when it offers
/// one and `--no-relay` was not given; `--relay-only` publishes the relay endpoint alone.
/// Also returns the relay endpoint, whose slot the listener then holds.
async fn with_relay(
    account: &Account,
    options: &ListenOptions,
    local: SocketAddr,
    console: &mut Console<'_>,
) -> Result<(Vec<Endpoint>, Option<pd_proto::relay::RelayEndpoint>), ChatError> {
    let mut endpoints = match options.relay {
        RelayUse::Only => Vec::new(),
        RelayUse::Also | RelayUse::Never => {
            endpoints_to_publish(account, options, local, console).await?
        }
    };
    if options.relay == RelayUse::Never {
        return Ok((endpoints, None));
    }
    match relay::offered_endpoint(account).await {
        Ok(endpoint) => {
            let parsed = pd_proto::relay::RelayEndpoint::parse(&endpoint);
            endpoints.truncate(pd_proto::records::MAX_ENDPOINTS - 1);
            endpoints.push(endpoint);
            Ok((endpoints, parsed))
        }
        Err(why) if options.relay == RelayUse::Only => Err(relay::relay_only_refused(&why)),
        Err(why) => {
            console.status(format!("publishing no relay endpoint: {why}"));
            Ok((endpoints, None))
        }
    }
}

/// The endpoints to publish: those given with `--advertise`, or the detected ones.
async fn endpoints_to_publish(
    account: &Account,
    options: &ListenOptions,
    local: SocketAddr,
    console: &mut Console<'_>,
) -> Result<Vec<Endpoint>, ChatError> {
    if options.advertise.is_empty() {
        detect_endpoints(account, local, console).await
    } else {
        Ok(options.advertise.clone())
    }
}

/// The endpoints to publish when `--advertise` is not given: for a specific bind address,
/// that address; for an unspecified one, the address the home node sees this client coming
/// from (its reflexive address) and the address of the interface that reaches the home node.
async fn detect_endpoints(
    account: &Account,
    local: SocketAddr,
    console: &mut Console<'_>,
) -> Result<Vec<Endpoint>, ChatError> {
    let port = local.port();
    let mut ips: Vec<IpAddr> = Vec::new();
    if !local.ip().is_unspecified() {
        ips.push(local.ip());
    } else {
        match account.reflexive_ip().await {
            Ok(ip) => ips.push(ip),
            Err(ChatError::Client(ClientError::Problem(problem))) if problem.status == 404 => {
                console.status(
                    "the home node does not tell clients their address (no /v1/whoami); \
                     publishing the local address only",
                );
            }
            Err(e) if e.report().1 == EXIT_HOME_UNREACHABLE => {
                console.status(format!(
                    "cannot ask the home node which address it sees ({}); publishing the local \
                     address only",
                    e.report().0
                ));
            }
            Err(e) => return Err(e),
        }
        if let Some(ip) = interface_towards(account.server()).await
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
    }
    if ips.is_empty() {
        return Err(PeerError::Setup(
            "cannot tell which address to publish; pass --advertise HOST:PORT".into(),
        )
        .into());
    }
    ips.into_iter()
        .map(|ip| {
            Endpoint::parse(&format!("tcp://{}", SocketAddr::new(ip, port)))
                .map_err(|e| PeerError::Setup(e.to_string()).into())
        })
        .collect()
}

/// The local address of the interface that routes to the home server (no packet is sent:
/// connecting a UDP socket only picks the route).
async fn interface_towards(server: &url::Url) -> Option<IpAddr> {
    let host = server
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = server.port_or_known_default()?;
    let target = timeout(
        Duration::from_secs(3),
        tokio::net::lookup_host((host, port)),
    )
    .await
    .ok()?
    .ok()?
    .next()?;
    let any: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any).await.ok()?;
    socket.connect(target).await.ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}
