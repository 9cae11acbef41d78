//! `chat connect ADDRESS`: look the user up through the home node (or, while it cannot be
//! reached, take the answer stored in the contacts), check its key against the known peers,
//! open the secure channel to its endpoints, then send the lines typed or piped in and print
//! what arrives until either side leaves.

use std::io::Write;

use pd_client::LookupMode;
use pd_proto::wire::Source;
use pd_proto::{Address, Endpoint, PublicKey};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::listen::LEAVE_TIMEOUT;
use crate::account::{Account, Answer, now_secs};
use crate::console::{
    CONNECT_COMMANDS, Console, HELP, Input, InputMode, Line, Signal, Signals, View, parse_line,
};
use crate::contacts::age;
use crate::error::ChatError;
use crate::group;
use crate::peer::PeerError;
use crate::peer::cert::IdentityCert;
use crate::peer::frame::check_text;
use crate::peer::known::{KeyCheck, KnownPeers};
use crate::peer::session::{self, ClientChannel, Command, End, Event};

/// Checks the key the home node vouches for (or the stored answer holds) against the one
/// remembered for `peer`, before connecting: a changed key with no signed rotation is
/// refused. Nothing is remembered yet.
fn check_known_key(account: &Account, peer: &Address, answer: &Answer) -> Result<(), ChatError> {
    let found = answer.lookup();
    let key = *found.public_key();
    let known = KnownPeers::new(account.home().clone());
    match known.peek(peer, &key, |old| found.rotated_from(old).is_ok())? {
        KeyCheck::Changed { known } => Err(PeerError::KeyChanged {
            address: peer.clone(),
            known: known.fingerprint(),
            current: key.fingerprint(),
        }
        .into()),
        KeyCheck::Known | KeyCheck::FirstContact | KeyCheck::Rotated { .. } => Ok(()),
    }
}

/// Remembers the key of `peer` once the handshake proved the peer holds it (a first
/// conversation, or a key rotation signed by the remembered key), and says so.
fn remember_known_key(
    account: &Account,
    peer: &Address,
    answer: &Answer,
    console: &mut Console<'_>,
) -> Result<(), ChatError> {
    let found = answer.lookup();
    let key = *found.public_key();
    let known = KnownPeers::new(account.home().clone());
    match known.check(peer, &key, |old| found.rotated_from(old).is_ok())? {
        KeyCheck::Known => {}
        KeyCheck::FirstContact => console.status(format!(
            "first conversation with {peer}: remembering its key {}",
            key.fingerprint()
        )),
        KeyCheck::Rotated { previous } => console.status(format!(
            "{peer} rotated its key from {} to {} (signed by the old key); remembered",
            previous.fingerprint(),
            key.fingerprint()
        )),
        KeyCheck::Changed { known } => {
            return Err(PeerError::KeyChanged {
                address: peer.clone(),
                known: known.fingerprint(),
                current: key.fingerprint(),
            }
            .into());
        }
    }
    Ok(())
}

/// Why the user is leaving.
#[derive(Debug, Clone, Copy)]
enum Leave {
    /// `/quit`, the end of the input, or an input that cannot be read.
    User,
    /// A signal.
    Signal(Signal),
}

/// Runs `chat connect` until the input ends, the user leaves, the peer leaves or a signal
/// arrives.
pub(crate) async fn connect(
    account: Account,
    peer: Address,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let mut console = Console::new(out);
    let mut signals = Signals::new()?;
    let identity = IdentityCert::new(account.key(), account.address())
        .map_err(|e| PeerError::Setup(e.to_string()))?;
    let (channel, endpoint, key) = tokio::select! {
        opened = open(&account, &peer, &identity, &mut console) => opened?,
        signal = signals.recv() => {
            return Err(ChatError::Interrupted {
                message: format!("{}: stopped connecting to {peer}", signal.describe()),
                code: signal.exit_code(),
            });
        }
    };
    console.status(format!(
        "connected to {peer} {endpoint} (fingerprint {})",
        key.fingerprint()
    ));
    if let Err(e) = account.contacts().record_talk(&peer, now_secs()) {
        console.status(format!(
            "could not note the conversation in the contacts: {}",
            e.report().0
        ));
    }

    console.start_input(
        InputMode::detect(false, false),
        View {
            prompt: peer.to_string(),
            commands: CONNECT_COMMANDS,
        },
    )?;
    let (commands, commands_rx) = mpsc::channel(64);
    let (events_tx, mut events) = mpsc::channel(256);
    // Boxed, and a sender kept, so that `/invite` can hand the conversation to a group.
    let mut conversation = Box::pin(session::converse(
        channel,
        1,
        peer.clone(),
        commands_rx,
        events_tx.clone(),
    ));
    // Once the user leaves, the goodbye has LEAVE_TIMEOUT; a second signal leaves at once.
    let mut leaving: Option<Instant> = None;
    let end = loop {
        let deadline = leaving.unwrap_or_else(Instant::now);
        let leave = tokio::select! {
            end = &mut conversation => break end,
            Some(event) = events.recv() => {
                if let Event::Message(message) = event {
                    console.message(&message.peer, &message.text).await?;
                }
                None
            }
            input = console.next_input() => match input {
                Input::Line(line) => match parse_line(&line) {
                    Line::Empty => None,
                    Line::Text(text) => {
                        match check_text(&text) {
                            Ok(()) => {
                                let _ = commands.send(Command::Send(text)).await;
                            }
                            Err(why) => console.status(format!("not sent: {why}")),
                        }
                        None
                    }
                    Line::Quit => Some(Leave::User),
                    Line::Help => {
                        console.status(HELP);
                        None
                    }
                    Line::List | Line::To(_) | Line::Join | Line::Decline => {
                        console.status(
                            "chat connect holds one conversation; /list, /to, /join and /decline \
                             are for chat listen",
                        );
                        None
                    }
                    Line::Leave => Some(Leave::User),
                    Line::Invite(address) => {
                        let opened =
                            group::hub::open_invitee(&account, &identity, &peer, &address, &mut console)
                                .await;
                        if let Some((channel, invitee_key)) = opened {
                            let first = group::hub::Adopted {
                                peer,
                                key,
                                conversation,
                                commands,
                                events,
                                events_tx,
                            };
                            let invitee = (address, channel, invitee_key);
                            return group::hub::adopt(
                                &account,
                                &identity,
                                &mut console,
                                &mut signals,
                                first,
                                invitee,
                            )
                            .await;
                        }
                        None
                    }
                    Line::Members => {
                        console.status(format!(
                            "a two-person conversation: {peer} ({}) and you",
                            key.fingerprint()
                        ));
                        None
                    }
                    Line::Invalid(why) => {
                        console.status(why);
                        None
                    }
                },
                Input::Unusable(why) => {
                    console.status(format!("not sent: {why}"));
                    None
                }
                Input::End => Some(Leave::User),
                Input::Interrupt => Some(Leave::Signal(Signal::Interrupt)),
                Input::Failed(e) => {
                    console.status(format!("cannot read the input ({e}); leaving"));
                    Some(Leave::User)
                }
            },
            signal = signals.recv() => {
                if leaving.is_some() {
                    return Err(ChatError::Interrupted {
                        message: format!(
                            "{}: left without waiting for {peer}'s goodbye",
                            signal.describe()
                        ),
                        code: signal.exit_code(),
                    });
                }
                Some(Leave::Signal(signal))
            }
            () = sleep_until(deadline), if leaving.is_some() => {
                console.status(format!("{peer} did not answer the goodbye in time; closing anyway"));
                break End::Left;
            }
        };
        if let Some(leave) = leave
            && leaving.is_none()
        {
            // The terminal gets its mode back first, so a second Ctrl+C is a signal again.
            console.stop_input();
            match leave {
                Leave::Signal(signal) => {
                    console.status(format!("{}: saying goodbye to {peer}", signal.describe()))
                }
                Leave::User => {}
            }
            leaving = Some(Instant::now() + LEAVE_TIMEOUT);
            let _ = commands.try_send(Command::Bye(None));
        }
    };
    console.stop_input();
    // Messages that arrived before the end are still queued: print them first.
    while let Ok(event) = events.try_recv() {
        if let Event::Message(message) = event {
            console.message(&message.peer, &message.text).await?;
        }
    }
    let line = end.describe(&peer);
    match end {
        End::Left | End::Bye(_) => {
            console.status(line);
            Ok(())
        }
        End::Disconnected(_) | End::Vanished | End::ProtocolError(_) => {
            Err(PeerError::Ended(line).into())
        }
    }
}

/// Finds `peer` (through the home node, or in the contacts while it cannot be reached),
/// checks its key, and opens the channel to the first endpoint that answers. A cached answer
/// may name endpoints the user no longer listens on: when it leads nowhere, the user's home
/// node is asked again, once.
pub(crate) async fn open(
    account: &Account,
    peer: &Address,
    identity: &IdentityCert,
    console: &mut Console<'_>,
) -> Result<(ClientChannel, String, PublicKey), ChatError> {
    let mut mode = None;
    loop {
        let answer = account.lookup_or_stored(peer, mode).await?;
        let now = now_secs();
        let retry = match &answer {
            Answer::Live(found) => {
                matches!(found.source(), Source::Cache | Source::Stale) && mode.is_none()
            }
            Answer::Stored { contact, why } => {
                console.status(format!(
                    "{why}: using the record of {peer} stored {} ago",
                    age(contact.fetched_at, now)
                ));
                false
            }
        };
        let found = answer.lookup();
        let endpoints: Vec<Endpoint> = match (found.presence(), &answer) {
            (Some(presence), _) if presence.is_live(now) => presence.endpoints.clone(),
            (Some(presence), Answer::Stored { .. }) => {
                console.status(format!(
                    "its presence record expired {} ago; trying its endpoints anyway",
                    age(presence.expires_at, now)
                ));
                presence.endpoints.clone()
            }
            _ if retry => {
                mode = Some(LookupMode::Refresh);
                continue;
            }
            _ => return Err(PeerError::Offline(peer.clone()).into()),
        };
        let key = *found.public_key();
        check_known_key(account, peer, &answer)?;
        let shown: Vec<&str> = endpoints.iter().map(Endpoint::as_str).collect();
        console.status(format!("connecting to {peer} at {}", shown.join(", ")));
        match crate::relay::connect(account, peer, key, &endpoints, identity).await {
            Ok((channel, endpoint)) => {
                remember_known_key(account, peer, &answer, console)?;
                return Ok((channel, endpoint, key));
            }
            Err(PeerError::Unreachable { .. }) if retry => mode = Some(LookupMode::Refresh),
            Err(e) => return Err(e.into()),
        }
    }
}
