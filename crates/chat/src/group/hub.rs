//! `chat connect A B …`: the member who starts a group. It opens a channel to each address
//! exactly as a two-person `chat connect` does (lookup through the home node, known peers,
//! the handshake's key check), invites everyone, and then forwards: every post that arrives
//! on one channel is checked and sent on unchanged on the others. `/invite` opens one more
//! channel (in a two-person `chat connect`, it hands its conversation over with
//! [`adopt`]); a channel that ends without `left` is announced as `dropped`.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;

use pd_proto::group::{ChangeKind, MAX_MEMBERS, Member};
use pd_proto::{Address, PublicKey};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use super::{Accepted, Group, LinkId, check, describe_refusal};
use crate::account::{Account, now_secs};
use crate::cmd::connect::open;
use crate::cmd::listen::LEAVE_TIMEOUT;
use crate::console::parse_line;
use crate::console::{Console, GROUP_COMMANDS, GROUP_HELP, Input, InputMode, Line, Signals, View};
use crate::error::ChatError;
use crate::peer::PeerError;
use crate::peer::cert::IdentityCert;
use crate::peer::frame::Frame;
use crate::peer::session::{self, ClientChannel, Command, End, Event};

/// A channel whose peer was invited and has not answered yet.
#[derive(Debug)]
struct Invited {
    peer: Address,
    key: PublicKey,
    /// Whether the others must be told once it joins (`/invite`), rather than having been
    /// named in their own invitations (the first members).
    announce: bool,
}

/// The channels of the group and where to send on them.
#[derive(Debug, Default)]
struct Links {
    commands: BTreeMap<LinkId, mpsc::Sender<Command>>,
    invited: BTreeMap<LinkId, Invited>,
    next: LinkId,
}

impl Links {
    fn send(&self, link: LinkId, frame: Frame) {
        if let Some(commands) = self.commands.get(&link) {
            let _ = commands.try_send(Command::Frame(frame));
        }
    }

    fn send_all(&self, links: &[LinkId], frame: &Frame) {
        for link in links {
            self.send(*link, frame.clone());
        }
    }
}

/// A two-person conversation of `chat connect` that becomes a group (`/invite`): its
/// channel's task, where to send on it, and where its events arrive.
pub(crate) struct Adopted {
    /// The peer.
    pub(crate) peer: Address,
    /// The peer's checked key.
    pub(crate) key: PublicKey,
    /// The conversation, run as link 1 (`session::converse` with id 1).
    pub(crate) conversation: Pin<Box<dyn Future<Output = End> + Send>>,
    /// Where to send on it.
    pub(crate) commands: mpsc::Sender<Command>,
    /// Where its events arrive.
    pub(crate) events: mpsc::Receiver<Event>,
    /// A sender of the same events channel, for the channels opened next.
    pub(crate) events_tx: mpsc::Sender<Event>,
}

impl std::fmt::Debug for Adopted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adopted").field("peer", &self.peer).finish()
    }
}

/// A group being run by this side: the group, its channels and their tasks, and the one
/// channel their events arrive on.
struct Hub {
    group: Group,
    links: Links,
    tasks: JoinSet<(LinkId, Address, End)>,
    events: mpsc::Receiver<Event>,
    events_tx: mpsc::Sender<Event>,
}

impl Hub {
    fn new(
        account: &Account,
        events: mpsc::Receiver<Event>,
        events_tx: mpsc::Sender<Event>,
    ) -> Self {
        Self {
            group: Group::new(
                pd_proto::group::GroupId::random(),
                account.address().clone(),
                account.key().public(),
            ),
            links: Links::default(),
            tasks: JoinSet::new(),
            events,
            events_tx,
        }
    }

    /// Runs a channel opened to `peer` as the next link.
    fn add_channel(&mut self, peer: &Address, channel: ClientChannel) -> LinkId {
        spawn_link(
            &mut self.links,
            &mut self.tasks,
            &self.events_tx,
            peer,
            channel,
        )
    }

    /// Invites the peers of `opened` (first members: the others learn of them from their own
    /// invitations, not from an `added` change).
    fn invite_first(&mut self, account: &Account, opened: Vec<(LinkId, Address, PublicKey)>) {
        let mut members = vec![Member {
            address: account.address().clone(),
            key: account.key().public(),
        }];
        members.extend(opened.iter().map(|(_, peer, key)| Member {
            address: peer.clone(),
            key: *key,
        }));
        for (link, peer, key) in opened {
            self.links.send(
                link,
                Frame::GroupInvite {
                    group: self.group.id().clone(),
                    members: members.clone(),
                },
            );
            self.links.invited.insert(
                link,
                Invited {
                    peer,
                    key,
                    announce: false,
                },
            );
        }
    }
}

/// `/invite ADDRESS` in a two-person `chat connect`: opens the channel to `address` and, once
/// it is open, turns the conversation into a group of three (both peers are invited). On
/// failure the two-person conversation goes on.
pub(crate) async fn open_invitee(
    account: &Account,
    identity: &IdentityCert,
    peer: &Address,
    address: &Address,
    console: &mut Console<'_>,
) -> Option<(ClientChannel, PublicKey)> {
    if address == peer || address == account.address() {
        console.status(format!("{address} is already in the conversation"));
        return None;
    }
    match open(account, address, identity, console).await {
        Ok((channel, endpoint, key)) => {
            console.status(format!(
                "connected to {address} {endpoint} (fingerprint {})",
                key.fingerprint()
            ));
            let _ = account.contacts().record_talk(address, now_secs());
            Some((channel, key))
        }
        Err(e) => {
            console.status(format!("could not invite {address}: {}", e.report().0));
            None
        }
    }
}

/// Turns the two-person conversation `first` into a group with `invitee` (whose channel
/// [`open_invitee`] opened) and runs it like `chat connect A B`.
pub(crate) async fn adopt(
    account: &Account,
    identity: &IdentityCert,
    console: &mut Console<'_>,
    signals: &mut Signals,
    first: Adopted,
    invitee: (Address, ClientChannel, PublicKey),
) -> Result<(), ChatError> {
    let Adopted {
        peer,
        key,
        conversation,
        commands,
        events,
        events_tx,
    } = first;
    let mut hub = Hub::new(account, events, events_tx);
    hub.links.next = 1;
    hub.links.commands.insert(1, commands);
    let task_peer = peer.clone();
    hub.tasks
        .spawn(async move { (1, task_peer, conversation.await) });
    let (address, channel, invitee_key) = invitee;
    let link = hub.add_channel(&address, channel);
    hub.invite_first(
        account,
        vec![(1, peer.clone(), key), (link, address.clone(), invitee_key)],
    );
    let label = hub.group.label();
    console.status(format!(
        "the conversation with {peer} is now the group {label}: invited {peer} and {address}; \
         waiting for them to join"
    ));
    console.set_prompt(label);
    run(account, identity, console, signals, hub).await
}

/// Runs `chat connect` with several addresses until the user leaves or nobody else remains.
pub(crate) async fn connect(
    account: Account,
    peers: Vec<Address>,
    out: &mut dyn Write,
) -> Result<(), ChatError> {
    let mut console = Console::new(out);
    let mut signals = Signals::new()?;
    let identity = IdentityCert::new(account.key(), account.address())
        .map_err(|e| PeerError::Setup(e.to_string()))?;
    let (events_tx, events) = mpsc::channel::<Event>(256);
    let mut hub = Hub::new(&account, events, events_tx);
    let label = hub.group.label();

    // Open every channel first, then invite everyone with the full list.
    let mut opened = Vec::new();
    let mut last_error = None;
    for peer in &peers {
        let result = tokio::select! {
            result = open(&account, peer, &identity, &mut console) => result,
            signal = signals.recv() => {
                return Err(ChatError::Interrupted {
                    message: format!("{}: stopped connecting to {peer}", signal.describe()),
                    code: signal.exit_code(),
                });
            }
        };
        match result {
            Ok((channel, endpoint, key)) => {
                console.status(format!(
                    "connected to {peer} {endpoint} (fingerprint {})",
                    key.fingerprint()
                ));
                let _ = account.contacts().record_talk(peer, now_secs());
                let link = hub.add_channel(peer, channel);
                opened.push((link, peer.clone(), key));
            }
            Err(e) => {
                console.status(format!("not in the conversation: {}", e.report().0));
                last_error = Some(e);
            }
        }
    }
    if opened.is_empty() {
        return Err(last_error.unwrap_or_else(|| ChatError::Usage("nobody to talk with".into())));
    }
    hub.invite_first(&account, opened);
    let invited: Vec<String> = hub
        .links
        .invited
        .values()
        .map(|i| i.peer.to_string())
        .collect();
    console.status(format!(
        "invited {} to the conversation {label}; waiting for them to join",
        invited.join(", ")
    ));
    console.start_input(
        InputMode::detect(false, false),
        View {
            prompt: label.clone(),
            commands: GROUP_COMMANDS,
        },
    )?;
    run(&account, &identity, &mut console, &mut signals, hub).await
}

/// Runs the group until the user leaves or nobody else remains.
async fn run(
    account: &Account,
    identity: &IdentityCert,
    console: &mut Console<'_>,
    signals: &mut Signals,
    hub: Hub,
) -> Result<(), ChatError> {
    let Hub {
        mut group,
        mut links,
        mut tasks,
        mut events,
        events_tx,
    } = hub;
    let label = group.label();
    let me = account.address().clone();
    let mut leaving: Option<Instant> = None;
    // How the most recent channel ended when it broke (no goodbye): if it was the last
    // one, the conversation ends as a broken two-person one does (exit 15).
    let mut last_broke: Option<String> = None;
    loop {
        if leaving.is_none() && links.commands.is_empty() {
            console.stop_input();
            tasks.shutdown().await;
            if let Some(line) = last_broke {
                return Err(
                    PeerError::Ended(format!("{line}; nobody else is left in {label}")).into(),
                );
            }
            console.status(format!("nobody else is left in {label}"));
            console.status(format!("left the conversation {label}"));
            return Ok(());
        }
        let leave = tokio::select! {
            Some(ended) = tasks.join_next() => {
                if let Ok((link, peer, end)) = ended {
                    // What the channel delivered before it ended (a `left`, last lines)
                    // is already queued: handle it first.
                    while let Ok(event) = events.try_recv() {
                        on_event(account, &mut group, &mut links, event, console).await?;
                    }
                    last_broke = (!matches!(end, End::Left | End::Bye(_))).then(|| end.describe(&peer));
                    link_ended(account, &mut group, &mut links, link, &peer, &end, console);
                    if leaving.is_some() && tasks.is_empty() {
                        break;
                    }
                }
                false
            }
            Some(event) = events.recv() => {
                on_event(account, &mut group, &mut links, event, console).await?;
                false
            }
            input = console.next_input(), if leaving.is_none() => match input {
                Input::Line(line) => match parse_line(&line) {
                    Line::Empty => false,
                    Line::Text(text) => {
                        send_line(account, &mut group, &links, text, console);
                        false
                    }
                    Line::Invite(address) => {
                        invite(account, identity, &mut group, &mut links, address, console, &mut tasks, &events_tx).await;
                        false
                    }
                    Line::Members => {
                        members_status(&group, &links, console);
                        false
                    }
                    Line::Quit | Line::Leave => true,
                    Line::Help => {
                        console.status(GROUP_HELP);
                        false
                    }
                    Line::List | Line::To(_) | Line::Join | Line::Decline => {
                        console.status("chat connect holds one conversation; /list, /to, /join and /decline are for chat listen");
                        false
                    }
                    Line::Invalid(why) => {
                        console.status(why);
                        false
                    }
                },
                Input::Unusable(why) => {
                    console.status(format!("not sent: {why}"));
                    false
                }
                Input::End | Input::Interrupt => true,
                Input::Failed(e) => {
                    console.status(format!("cannot read the input ({e}); leaving"));
                    true
                }
            },
            signal = signals.recv() => {
                if leaving.is_some() {
                    return Err(ChatError::Interrupted {
                        message: format!("{}: left without waiting for the goodbyes", signal.describe()),
                        code: signal.exit_code(),
                    });
                }
                console.status(format!("{}: leaving {label}", signal.describe()));
                true
            }
            () = sleep_until(leaving.unwrap_or_else(Instant::now)), if leaving.is_some() => {
                console.status("some members did not answer the goodbye in time; closing anyway");
                break;
            }
        };
        if leave && leaving.is_none() {
            console.stop_input();
            let left = group.change(account.key(), ChangeKind::Left, me.clone(), None);
            for commands in links.commands.values() {
                let _ = commands.try_send(Command::Frame(left.clone()));
                let _ = commands.try_send(Command::Bye(None));
            }
            leaving = Some(Instant::now() + LEAVE_TIMEOUT);
            if tasks.is_empty() {
                break;
            }
        }
    }
    console.stop_input();
    // Posts that arrived before the end are still queued: show them first.
    while let Ok(event) = events.try_recv() {
        on_event(account, &mut group, &mut links, event, console).await?;
    }
    tasks.shutdown().await;
    console.status(format!("left the conversation {label}"));
    Ok(())
}

/// Signs a typed line and sends it to every member who joined.
fn send_line(
    account: &Account,
    group: &mut Group,
    links: &Links,
    text: String,
    console: &mut Console<'_>,
) {
    let joined = group.links();
    if joined.is_empty() {
        console.status("not sent: nobody has joined the conversation yet");
        return;
    }
    match group.line(account.key(), text) {
        Ok(frame) => links.send_all(&joined, &frame),
        Err(why) => console.status(format!("not sent: {why}")),
    }
}

fn members_status(group: &Group, links: &Links, console: &mut Console<'_>) {
    console.status(group.describe_members());
    if !links.invited.is_empty() {
        let invited: Vec<String> = links.invited.values().map(|i| i.peer.to_string()).collect();
        console.status(format!("invited, not joined yet: {}", invited.join(", ")));
    }
}

/// Runs a channel opened to `peer` as the next link of `links`, its task in `tasks`.
fn spawn_link(
    links: &mut Links,
    tasks: &mut JoinSet<(LinkId, Address, End)>,
    events: &mpsc::Sender<Event>,
    peer: &Address,
    channel: ClientChannel,
) -> LinkId {
    links.next += 1;
    let link = links.next;
    let (commands, commands_rx) = mpsc::channel(64);
    links.commands.insert(link, commands);
    let (peer, events) = (peer.clone(), events.clone());
    tasks.spawn(async move {
        let end = session::converse(channel, link, peer.clone(), commands_rx, events).await;
        (link, peer, end)
    });
    link
}

/// `/invite ADDRESS`: opens a channel to it as `chat connect` does, and invites it with the
/// list of members.
#[allow(clippy::too_many_arguments)]
async fn invite(
    account: &Account,
    identity: &IdentityCert,
    group: &mut Group,
    links: &mut Links,
    address: Address,
    console: &mut Console<'_>,
    tasks: &mut JoinSet<(LinkId, Address, End)>,
    events: &mpsc::Sender<Event>,
) {
    if group.size() + links.invited.len() >= MAX_MEMBERS {
        console.status(format!(
            "cannot invite {address}: a conversation holds at most {MAX_MEMBERS} members"
        ));
        return;
    }
    if address == *account.address()
        || group.is_member(&address)
        || links.invited.values().any(|i| i.peer == address)
    {
        console.status(format!(
            "{address} is already in the conversation or invited"
        ));
        return;
    }
    let (channel, endpoint, key) = match open(account, &address, identity, console).await {
        Ok(opened) => opened,
        Err(e) => {
            console.status(format!("could not invite {address}: {}", e.report().0));
            return;
        }
    };
    console.status(format!(
        "connected to {address} {endpoint} (fingerprint {}); invited it to {}",
        key.fingerprint(),
        group.label()
    ));
    let _ = account.contacts().record_talk(&address, now_secs());
    let link = spawn_link(links, tasks, events, &address, channel);
    let mut members: Vec<Member> = group
        .roster()
        .into_iter()
        .filter_map(|(address, key)| key.map(|key| Member { address, key }))
        .collect();
    members.push(Member {
        address: address.clone(),
        key,
    });
    links.send(
        link,
        Frame::GroupInvite {
            group: group.id().clone(),
            members,
        },
    );
    links.invited.insert(
        link,
        Invited {
            peer: address,
            key,
            announce: true,
        },
    );
}

/// A channel ended: an invitee that never joined, or a member (and whoever was reached
/// through it), who is announced as dropped unless it said it left.
fn link_ended(
    account: &Account,
    group: &mut Group,
    links: &mut Links,
    link: LinkId,
    peer: &Address,
    end: &End,
    console: &mut Console<'_>,
) {
    links.commands.remove(&link);
    if let Some(invited) = links.invited.remove(&link) {
        console.status(format!(
            "{} did not join: {}",
            invited.peer,
            end.describe(peer)
        ));
        if !invited.announce {
            let dropped = group.change(account.key(), ChangeKind::Dropped, invited.peer, None);
            links.send_all(&group.links(), &dropped);
        }
        return;
    }
    let was_member = group.is_member(peer);
    let gone = group.link_ended(link);
    if !was_member {
        // It said it left; its channel closing is the goodbye.
        return;
    }
    console.status(end.describe(peer));
    for member in gone {
        let dropped = group.change(account.key(), ChangeKind::Dropped, member.clone(), None);
        console.status(format!("dropped {member} from {}", group.label()));
        links.send_all(&group.links(), &dropped);
    }
}

/// A frame that arrived on a channel of the group.
async fn on_event(
    account: &Account,
    group: &mut Group,
    links: &mut Links,
    event: Event,
    console: &mut Console<'_>,
) -> Result<(), ChatError> {
    let label = group.label();
    match event {
        Event::Group { id, peer, frame } => match frame {
            Frame::GroupJoin { group: joined } if *group.id() == joined => {
                let Some(invited) = links.invited.remove(&id) else {
                    console.status(format!("{peer} joined twice; ignored"));
                    return Ok(());
                };
                let others = group.links();
                group.add_link(id, invited.peer.clone(), invited.key);
                console.status(format!(
                    "{} joined {label} ({} members)",
                    invited.peer,
                    group.size()
                ));
                if invited.announce {
                    let added = group.change(
                        account.key(),
                        ChangeKind::Added,
                        invited.peer,
                        Some(invited.key),
                    );
                    links.send_all(&others, &added);
                }
            }
            Frame::GroupDecline {
                group: declined,
                reason,
            } if *group.id() == declined => {
                console.status(format!(
                    "{peer} declined the invitation to {label}{}",
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    }
                ));
                if let Some(commands) = links.commands.get(&id) {
                    let _ = commands.try_send(Command::Bye(None));
                }
                // The channel's end removes it from the invited and tells the others.
            }
            Frame::GroupInvite { group: other, .. } => {
                links.send(
                    id,
                    Frame::GroupDecline {
                        group: other,
                        reason: "already in a group of chat connect".into(),
                    },
                );
            }
            post @ (Frame::GroupLine { .. } | Frame::GroupMember { .. }) => {
                if links.invited.contains_key(&id) {
                    console.status(format!("ignored a post from {peer}, who has not joined"));
                    return Ok(());
                }
                match group.receive(&post, pd_proto::now_micros()) {
                    Ok(Accepted::Line(line)) => {
                        console
                            .group_message(None, &line.author, &line.text)
                            .await?;
                        links.send_all(&group.forward_to(id), &post);
                    }
                    Ok(Accepted::Change(change)) => {
                        check::take_change(account, group, &change, id, console).await;
                        links.send_all(&group.forward_to(id), &post);
                    }
                    Err(error) => console.status(describe_refusal(&error, &peer, &label)),
                }
            }
            Frame::GroupJoin { .. } | Frame::GroupDecline { .. } => {
                console.status(format!("ignored an answer of {peer} about another group"));
            }
            _ => {}
        },
        // A line sent to this side alone (a peer that has not joined yet, or a client
        // speaking two-person frames): shown like a two-person message.
        Event::Message(message) => console.message(&message.peer, &message.text).await?,
        Event::Notice(text) => console.status(text),
        Event::Opened { .. } | Event::Ended { .. } | Event::Failed { .. } => {}
    }
    Ok(())
}
