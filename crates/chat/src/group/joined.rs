//! The groups of `chat listen`: invitations that arrive on its conversations (shown with
//! their members, each member's key checked through this side's own home node, then joined
//! at once when `--allow` names the inviter, or with `/join` / `/decline`), and the groups
//! it joined, each over the conversation with its inviter.

use std::collections::BTreeMap;

use pd_proto::Address;
use pd_proto::group::{ChangeKind, GroupId, Member, check_members};
use tokio::sync::mpsc;

use super::{Accepted, Group, LinkId, check, describe_refusal};
use crate::account::Account;
use crate::console::Console;
use crate::error::ChatError;
use crate::peer::frame::Frame;
use crate::peer::session::{Command, End};

/// An invitation waiting for `/join` or `/decline`.
#[derive(Debug)]
struct Invitation {
    link: LinkId,
    inviter: Address,
    group: GroupId,
    /// The members, every key checked.
    members: Vec<Member>,
    commands: mpsc::Sender<Command>,
}

/// The invitations and groups of one `chat listen`.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    invitations: Vec<Invitation>,
    joined: BTreeMap<LinkId, (Group, mpsc::Sender<Command>)>,
}

impl Groups {
    /// Whether the conversation `link` carries a group.
    pub(crate) fn is_group(&self, link: LinkId) -> bool {
        self.joined.contains_key(&link)
    }

    /// The prompt for the conversation `link` when it carries a group.
    pub(crate) fn prompt(&self, link: LinkId) -> Option<String> {
        self.joined
            .get(&link)
            .map(|(group, _)| format!("{} ({} members)", group.label(), group.size()))
    }

    /// What `/list` shows for the conversation `link` when it carries a group.
    pub(crate) fn describe(&self, link: LinkId) -> Option<String> {
        self.joined.get(&link).map(|(group, _)| {
            let others: Vec<String> = group.others().iter().map(ToString::to_string).collect();
            format!("{} with {}", group.label(), others.join(", "))
        })
    }

    /// A group frame arrived on the conversation `link` with `peer`. `labelled`: whether
    /// lines are printed with their group's label (more than one conversation is open).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn on_frame(
        &mut self,
        account: &Account,
        allow: &[Address],
        link: LinkId,
        peer: &Address,
        frame: Frame,
        commands: Option<&mpsc::Sender<Command>>,
        labelled: bool,
        console: &mut Console<'_>,
    ) -> Result<Option<LinkId>, ChatError> {
        match frame {
            Frame::GroupInvite { group, members } => {
                let Some(commands) = commands else {
                    return Ok(None);
                };
                let decline = |reason: String| {
                    let _ = commands.try_send(Command::Frame(Frame::GroupDecline {
                        group: group.clone(),
                        reason,
                    }));
                };
                if self.joined.contains_key(&link)
                    || self.invitations.iter().any(|i| i.link == link)
                {
                    decline("one group at a time on a conversation".into());
                    return Ok(None);
                }
                if let Err(why) = check_members(&members) {
                    console.status(format!("refused an invitation of {peer}: {why}"));
                    decline(why);
                    return Ok(None);
                }
                let me = account.address();
                let mine = members.iter().find(|m| &m.address == me);
                if mine.is_none_or(|m| m.key != account.key().public())
                    || !members.iter().any(|m| &m.address == peer)
                {
                    let why = "the invitation must name you (with your key) and the inviter";
                    console.status(format!("refused an invitation of {peer}: {why}"));
                    decline(why.into());
                    return Ok(None);
                }
                let others: Vec<String> = members
                    .iter()
                    .filter(|m| &m.address != me && &m.address != peer)
                    .map(|m| m.address.to_string())
                    .collect();
                console.status(format!(
                    "{peer} invites you to a conversation with {}",
                    if others.is_empty() {
                        "nobody else yet".to_owned()
                    } else {
                        others.join(", ")
                    }
                ));
                for member in members.iter().filter(|m| &m.address != me) {
                    if let Err(why) =
                        check::member_key(account, &member.address, member.key, console).await
                    {
                        console.status(format!(
                            "refused the invitation of {peer} to {}: {why}",
                            group.label()
                        ));
                        decline(format!("key of {} does not match", member.address));
                        return Ok(None);
                    }
                }
                self.invitations.push(Invitation {
                    link,
                    inviter: peer.clone(),
                    group,
                    members,
                    commands: commands.clone(),
                });
                if allow.contains(peer) {
                    return Ok(self.join(account, console));
                }
                console.status("type /join to join the conversation, or /decline");
                Ok(None)
            }
            post @ (Frame::GroupLine { .. } | Frame::GroupMember { .. }) => {
                let Some((group, _)) = self.joined.get_mut(&link) else {
                    console.status(format!(
                        "ignored a group post from {peer}: no group joined on that conversation"
                    ));
                    return Ok(None);
                };
                let label = group.label();
                match group.receive(&post, pd_proto::now_micros()) {
                    Ok(Accepted::Line(line)) => {
                        let shown = labelled.then_some(label.as_str());
                        console
                            .group_message(shown, &line.author, &line.text)
                            .await?;
                    }
                    Ok(Accepted::Change(change)) => {
                        check::take_change(account, group, &change, link, console).await;
                    }
                    Err(error) => console.status(describe_refusal(&error, peer, &label)),
                }
                Ok(None)
            }
            Frame::GroupJoin { .. } | Frame::GroupDecline { .. } => {
                console.status(format!(
                    "ignored an answer to an invitation from {peer}: chat listen invites nobody"
                ));
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// `/join`: joins the group of the last invitation. Returns its conversation.
    pub(crate) fn join(&mut self, account: &Account, console: &mut Console<'_>) -> Option<LinkId> {
        let Some(invitation) = self.invitations.pop() else {
            console.status("no invitation to join");
            return None;
        };
        let Invitation {
            link,
            inviter,
            group: id,
            members,
            commands,
        } = invitation;
        let me = account.address().clone();
        let mut group = Group::new(id.clone(), me.clone(), account.key().public());
        for member in members.iter().filter(|m| m.address != me) {
            if member.address == inviter {
                group.add_link(link, member.address.clone(), member.key);
            } else {
                group.admit(
                    member.address.clone(),
                    Some(member.key),
                    link,
                    inviter.clone(),
                );
            }
        }
        let _ = commands.try_send(Command::Frame(Frame::GroupJoin { group: id }));
        console.status(format!(
            "joined {} ({} members; /members lists them, /leave leaves)",
            group.label(),
            group.size()
        ));
        self.joined.insert(link, (group, commands));
        Some(link)
    }

    /// `/decline`: declines the last invitation; the conversation with the inviter stays.
    pub(crate) fn decline(&mut self, console: &mut Console<'_>) {
        let Some(invitation) = self.invitations.pop() else {
            console.status("no invitation to decline");
            return;
        };
        let _ = invitation
            .commands
            .try_send(Command::Frame(Frame::GroupDecline {
                group: invitation.group.clone(),
                reason: "declined".into(),
            }));
        console.status(format!(
            "declined the invitation of {} to {}",
            invitation.inviter,
            invitation.group.label()
        ));
    }

    /// Sends a typed line to the group of the conversation `link`.
    pub(crate) fn send(
        &mut self,
        account: &Account,
        link: LinkId,
        text: String,
        console: &mut Console<'_>,
    ) {
        let Some((group, commands)) = self.joined.get_mut(&link) else {
            return;
        };
        match group.line(account.key(), text) {
            Ok(frame) => {
                if commands.try_send(Command::Frame(frame)).is_err() {
                    console.status("not sent: the conversation is not keeping up");
                }
            }
            Err(why) => console.status(format!("not sent: {why}")),
        }
    }

    /// `/members` for the conversation `link`.
    pub(crate) fn members(&self, link: LinkId, console: &mut Console<'_>) {
        match self.joined.get(&link) {
            Some((group, _)) => console.status(group.describe_members()),
            None => console.status("the current conversation is not a group"),
        }
    }

    /// `/leave`: says so to the group of the conversation `link`, then goodbye.
    pub(crate) fn leave(&mut self, account: &Account, link: LinkId, console: &mut Console<'_>) {
        let Some((mut group, commands)) = self.joined.remove(&link) else {
            console.status("the current conversation is not a group (/quit leaves everything)");
            return;
        };
        let left = group.change(
            account.key(),
            ChangeKind::Left,
            account.address().clone(),
            None,
        );
        let _ = commands.try_send(Command::Frame(left));
        let _ = commands.try_send(Command::Bye(None));
        console.status(format!("left {}", group.label()));
    }

    /// Leaving `chat listen`: says `left` to every group (each conversation's goodbye
    /// follows on the same channel).
    pub(crate) fn leave_all(&mut self, account: &Account) {
        for (group, commands) in self.joined.values_mut() {
            let left = group.change(
                account.key(),
                ChangeKind::Left,
                account.address().clone(),
                None,
            );
            let _ = commands.try_send(Command::Frame(left));
        }
        self.joined.clear();
        self.invitations.clear();
    }

    /// The conversation `link` ended: its group (if any) ends for this side, since the
    /// inviter connected it to every other member.
    pub(crate) fn ended(&mut self, link: LinkId, end: &End, console: &mut Console<'_>) {
        self.invitations.retain(|i| i.link != link);
        let Some((mut group, _)) = self.joined.remove(&link) else {
            return;
        };
        let label = group.label();
        let mut gone = group.link_ended(link);
        let inviter = if gone.is_empty() {
            return;
        } else {
            gone.remove(0)
        };
        let rest: Vec<String> = gone.iter().map(ToString::to_string).collect();
        console.status(format!(
            "{label} ended for you: {} was your link to it ({}){}",
            inviter,
            end.describe(&inviter),
            if rest.is_empty() {
                String::new()
            } else {
                format!("; {} can no longer be reached", rest.join(", "))
            }
        ));
    }
}
