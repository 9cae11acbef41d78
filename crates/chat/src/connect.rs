//! `chat connect ADDRESS`: look the user up through the home node, check its key against
//! the known peers, open the secure channel to its endpoints, then send the lines read from
//! stdin and print what arrives until either side leaves.

use std::io::Write;

use pd_client::{LookupMode, VerifiedLookup};
use pd_proto::Address;
use pd_proto::wire::Source;
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;

use crate::account::{Account, now_secs};
use crate::console::{Console, HELP, Line, Signals, parse_line};
use crate::error::ChatError;
use crate::peer::PeerError;
use crate::peer::cert::IdentityCert;
use crate::peer::frame::check_text;
use crate::peer::known::{KeyCheck, KnownPeers};
use crate::peer::session::{self, Command, End, Event};

/// Checks the key the home node vouches for against the one remembered for `peer`.
fn check_known_key(
    account: &Account,
    peer: &Address,
    found: &VerifiedLookup,
    console: &mut Console<'_>,
) -> Result<(), ChatError> {
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
    // A cached answer may name endpoints the user no longer listens on: when it leads
    // nowhere, ask the user's home node again, once.
    let mut mode = None;
    let (channel, endpoint, key) = loop {
        let found = account.lookup(&peer, mode).await?;
        let cached = matches!(found.response.source, Source::Cache | Source::Stale);
        let retry = cached && mode.is_none();
        let now = now_secs();
        let Some(presence) = found.presence.as_ref().filter(|p| p.is_live(now)) else {
            if retry {
                mode = Some(LookupMode::Refresh);
                continue;
            }
            return Err(PeerError::Offline(peer).into());
        };
        let key = *found.public_key();
        check_known_key(&account, &peer, &found, &mut console)?;
        match session::connect(&peer, key, &presence.endpoints, &identity).await {
            Ok((channel, endpoint)) => break (channel, endpoint, key),
            Err(PeerError::Unreachable { .. }) if retry => mode = Some(LookupMode::Refresh),
            Err(e) => return Err(e.into()),
        }
    };
    console.status(format!(
        "connected to {peer} at {endpoint} (fingerprint {})",
        key.fingerprint()
    ));

    let (commands, commands_rx) = mpsc::channel(64);
    let (events_tx, mut events) = mpsc::channel(256);
    let mut conversation = tokio::spawn(session::converse(
        channel,
        1,
        peer.clone(),
        commands_rx,
        events_tx,
    ));
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut reading = true;
    let end = loop {
        tokio::select! {
            end = &mut conversation => {
                break end.unwrap_or_else(|e| End::Disconnected(format!("the conversation failed: {e}")));
            }
            Some(event) = events.recv() => {
                if let Event::Message(message) = event {
                    console.message(&message.peer, &message.text)?;
                }
            }
            line = lines.next_line(), if reading => {
                let leave = match line {
                    Ok(Some(line)) => match parse_line(&line) {
                        Line::Empty => false,
                        Line::Text(text) => {
                            match check_text(&text) {
                                Ok(()) => {
                                    let _ = commands.send(Command::Send(text)).await;
                                }
                                Err(why) => console.status(format!("not sent: {why}")),
                            }
                            false
                        }
                        Line::Quit => true,
                        Line::Help => {
                            console.status(HELP);
                            false
                        }
                        Line::List | Line::To(_) => {
                            console.status("chat connect holds one conversation; /list and /to are for chat listen");
                            false
                        }
                        Line::Invalid(why) => {
                            console.status(why);
                            false
                        }
                    },
                    Ok(None) => true,
                    Err(e) => {
                        console.status(format!("cannot read the input ({e}); leaving"));
                        true
                    }
                };
                if leave {
                    reading = false;
                    let _ = commands.send(Command::Bye(None)).await;
                }
            }
            signal = signals.recv() => {
                console.status(format!("{signal}: saying goodbye to {peer}"));
                reading = false;
                let _ = commands.send(Command::Bye(None)).await;
            }
        }
    };
    // Messages that arrived before the end are still queued: print them first.
    while let Ok(event) = events.try_recv() {
        if let Event::Message(message) = event {
            console.message(&message.peer, &message.text)?;
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
