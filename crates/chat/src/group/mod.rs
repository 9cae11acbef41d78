//! Group conversations (`federation-spec.md` section 12.6): one group's state as this side
//! sees it — its members and the keys this side checked for them, the channels (links) it
//! holds in the group, the per-author order of posts — and the rules for a post that
//! arrives: verify it, then print it and forward it unchanged on every other link.
//!
//! The two runners live beside it: `hub` runs `chat connect A B …` (the member who connects
//! the others and forwards between them), `joined` holds the invitations and groups of
//! `chat listen`. `check` checks a member's key through this side's own home node.

pub(crate) mod check;
pub(crate) mod hub;
pub(crate) mod joined;

use std::collections::BTreeMap;

use pd_proto::chat::Frame;
use pd_proto::group::{
    ChangeKind, GroupChange, GroupId, GroupLine, MAX_MEMBERS, PostError, PostOrder,
};
use pd_proto::signed::MAX_PAYLOAD_LEN;
use pd_proto::{Address, PublicKey, SecretKey, Signed};

/// The id of one channel (a conversation of `chat listen`, a peer of `chat connect`).
pub(crate) type LinkId = u64;

/// One member as this side knows it.
#[derive(Debug, Clone)]
struct Seat {
    /// The key this side's home node vouches for; `None` when it could not be checked (its
    /// posts are refused).
    key: Option<PublicKey>,
    /// The link this member is reached through; `None` for this side itself.
    via: Option<LinkId>,
    /// The member who brought it in (its inviter, or the author of its `added` change):
    /// the only one whose `dropped` change about it is accepted. This side for the members
    /// it holds a link with.
    by: Address,
}

/// A post that passed every check.
#[derive(Debug, Clone)]
pub(crate) enum Accepted {
    /// A line to print.
    Line(GroupLine),
    /// A membership change (already applied, except an `added` member's key, which the
    /// caller checks and then sets with [`Group::admit`]).
    Change(Box<GroupChange>),
}

/// One group, as one member sees it.
#[derive(Debug)]
pub(crate) struct Group {
    id: GroupId,
    me: Address,
    members: BTreeMap<Address, Seat>,
    /// The links of this group this side holds, with the peer at the other end.
    links: BTreeMap<LinkId, Address>,
    order: PostOrder,
    counter: u64,
}

impl Group {
    /// A group with this side as its only member.
    pub(crate) fn new(id: GroupId, me: Address, my_key: PublicKey) -> Self {
        let mut members = BTreeMap::new();
        members.insert(
            me.clone(),
            Seat {
                key: Some(my_key),
                via: None,
                by: me.clone(),
            },
        );
        Self {
            order: PostOrder::new(id.clone()),
            id,
            me,
            members,
            links: BTreeMap::new(),
            counter: 0,
        }
    }

    /// The group id.
    pub(crate) fn id(&self) -> &GroupId {
        &self.id
    }

    /// The label telling this group apart from other conversations (`#` and six
    /// characters of its id).
    pub(crate) fn label(&self) -> String {
        self.id.label()
    }

    /// How many members there are, this side included.
    pub(crate) fn size(&self) -> usize {
        self.members.len()
    }

    /// Whether `address` is a member.
    pub(crate) fn is_member(&self, address: &Address) -> bool {
        self.members.contains_key(address)
    }

    /// The other members, in address order.
    pub(crate) fn others(&self) -> Vec<Address> {
        self.members
            .keys()
            .filter(|a| **a != self.me)
            .cloned()
            .collect()
    }

    /// Every member with its checked key (if any), in address order.
    pub(crate) fn roster(&self) -> Vec<(Address, Option<PublicKey>)> {
        self.members
            .iter()
            .map(|(a, seat)| (a.clone(), seat.key))
            .collect()
    }

    /// The links this side holds in the group.
    pub(crate) fn links(&self) -> Vec<LinkId> {
        self.links.keys().copied().collect()
    }

    /// Adds a link to `peer` (a member reached directly).
    pub(crate) fn add_link(&mut self, link: LinkId, peer: Address, key: PublicKey) {
        self.links.insert(link, peer.clone());
        self.members.insert(
            peer,
            Seat {
                key: Some(key),
                via: Some(link),
                by: self.me.clone(),
            },
        );
    }

    /// Sets a member reached through `via` and brought in by `by`, with the key this side
    /// checked for it (or `None` when the check failed: its posts are refused).
    pub(crate) fn admit(
        &mut self,
        member: Address,
        key: Option<PublicKey>,
        via: LinkId,
        by: Address,
    ) {
        self.members.insert(
            member,
            Seat {
                key,
                via: Some(via),
                by,
            },
        );
    }

    /// Signs a line of this side's. Refuses text that is not a valid line or too long to
    /// fit a post.
    pub(crate) fn line(&mut self, key: &SecretKey, text: String) -> Result<Frame, String> {
        pd_proto::chat::check_text(&text)?;
        let post = Signed::sign(
            key,
            &GroupLine {
                group: self.id.clone(),
                author: self.me.clone(),
                counter: self.counter + 1,
                time: pd_proto::now_micros(),
                text,
            },
        );
        if post.payload().len() > MAX_PAYLOAD_LEN {
            return Err(format!(
                "a group line holds at most {MAX_PAYLOAD_LEN} bytes with its envelope \
                 (a little under 4 000 bytes of text)"
            ));
        }
        self.counter += 1;
        Ok(Frame::GroupLine { post })
    }

    /// Signs a membership change made by this side, and applies it.
    pub(crate) fn change(
        &mut self,
        key: &SecretKey,
        change: ChangeKind,
        member: Address,
        member_key: Option<PublicKey>,
    ) -> Frame {
        self.counter += 1;
        if matches!(change, ChangeKind::Left | ChangeKind::Dropped) {
            self.members.remove(&member);
        }
        Frame::GroupMember {
            post: Signed::sign(
                key,
                &GroupChange {
                    group: self.id.clone(),
                    author: self.me.clone(),
                    counter: self.counter,
                    time: pd_proto::now_micros(),
                    change,
                    member,
                    key: member_key,
                },
            ),
        }
    }

    /// Checks a group frame that arrived on `from` (section 12.6): a post by a member whose
    /// key was checked, for this group, newer than the author's earlier posts, dated near
    /// now. A change is applied (a member who left or was dropped is removed; an added one
    /// waits for [`Group::admit`]).
    pub(crate) fn receive(&mut self, frame: &Frame, now: u64) -> Result<Accepted, PostError> {
        // This side's own posts never come back on a tree: one that does is an echo (or a
        // replay) by a forwarder, and this side keeps no counter for itself.
        let author = match frame {
            Frame::GroupLine { post } => post.decode_unverified()?.author,
            Frame::GroupMember { post } => post.decode_unverified()?.author,
            _ => return Err(PostError::Content("not a post".into())),
        };
        if author == self.me {
            return Err(PostError::Content("a post of yours came back".into()));
        }
        let members = &self.members;
        let key_of = |author: &Address| members.get(author).and_then(|seat| seat.key);
        match frame {
            Frame::GroupLine { post } => self.order.accept(post, key_of, now).map(Accepted::Line),
            Frame::GroupMember { post } => {
                let change = self.order.accept(post, key_of, now)?;
                match change.change {
                    ChangeKind::Added if self.members.len() >= MAX_MEMBERS => {
                        return Err(PostError::Content(format!(
                            "adding {} would make more than {MAX_MEMBERS} members",
                            change.member
                        )));
                    }
                    ChangeKind::Added => {}
                    ChangeKind::Left => {
                        self.members.remove(&change.member);
                    }
                    ChangeKind::Dropped => match self.members.get(&change.member) {
                        Some(seat) if seat.by == change.author => {
                            self.members.remove(&change.member);
                        }
                        Some(_) => {
                            return Err(PostError::Content(format!(
                                "{} cannot drop {}: only the member who brought it in can",
                                change.author, change.member
                            )));
                        }
                        None => {}
                    },
                }
                Ok(Accepted::Change(Box::new(change)))
            }
            _ => Err(PostError::Content("not a post".into())),
        }
    }

    /// The links a post that arrived on `from` goes on to.
    pub(crate) fn forward_to(&self, from: LinkId) -> Vec<LinkId> {
        self.links.keys().copied().filter(|l| *l != from).collect()
    }

    /// A link ended: it and every member reached only through it leave this side's view.
    /// Returns those members (the peer at the link's end first).
    pub(crate) fn link_ended(&mut self, link: LinkId) -> Vec<Address> {
        let Some(peer) = self.links.remove(&link) else {
            return Vec::new();
        };
        let mut gone = vec![peer.clone()];
        let behind: Vec<Address> = self
            .members
            .iter()
            .filter(|(a, seat)| seat.via == Some(link) && **a != peer)
            .map(|(a, _)| a.clone())
            .collect();
        self.members.retain(|_, seat| seat.via != Some(link));
        gone.extend(behind);
        gone
    }

    /// The `/members` line: each member with its fingerprint.
    pub(crate) fn describe_members(&self) -> String {
        let names: Vec<String> = self
            .members
            .iter()
            .map(|(address, seat)| {
                let key = seat
                    .key
                    .map_or_else(|| "key not checked".to_owned(), |k| k.fingerprint());
                if *address == self.me {
                    format!("{address} (you, {key})")
                } else {
                    format!("{address} ({key})")
                }
            })
            .collect();
        format!(
            "{} members of {}: {}",
            self.members.len(),
            self.label(),
            names.join(", ")
        )
    }
}

/// One line for the user about a membership change that passed the checks.
pub(crate) fn describe_change(change: &GroupChange, label: &str) -> String {
    match change.change {
        ChangeKind::Added => format!("{} added {} to {label}", change.author, change.member),
        ChangeKind::Left => format!("{} left {label}", change.member),
        ChangeKind::Dropped => format!(
            "{} was dropped from {label} ({} can no longer reach it)",
            change.member, change.author
        ),
    }
}

/// One line for the user about a refused post.
pub(crate) fn describe_refusal(error: &PostError, from: &Address, label: &str) -> String {
    format!("refused a post of {label} forwarded by {from}: {error}; not shown")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn lines_are_accepted_once_forwarded_elsewhere_and_links_take_their_members_along() {
        let alice = SecretKey::from_seed(&[1; 32]);
        let bob = SecretKey::from_seed(&[2; 32]);
        let carol = SecretKey::from_seed(&[3; 32]);
        let id = GroupId::from_bytes(&[9; 16]);
        let mut at_bob = Group::new(id.clone(), addr("bob@b.example"), bob.public());
        at_bob.add_link(1, addr("alice@a.example"), alice.public());
        at_bob.admit(
            addr("carol@c.example"),
            Some(carol.public()),
            1,
            addr("alice@a.example"),
        );
        let mut at_alice = Group::new(id.clone(), addr("alice@a.example"), alice.public());
        at_alice.add_link(7, addr("bob@b.example"), bob.public());
        at_alice.add_link(8, addr("carol@c.example"), carol.public());
        let mut at_carol = Group::new(id, addr("carol@c.example"), carol.public());
        let line = at_carol.line(&carol, "hello".into()).unwrap();

        let now = pd_proto::now_micros();
        assert!(matches!(at_alice.receive(&line, now), Ok(Accepted::Line(l)) if l.text == "hello"));
        assert_eq!(at_alice.forward_to(8), vec![7]);
        assert!(matches!(at_bob.receive(&line, now), Ok(Accepted::Line(_))));
        assert!(matches!(
            at_bob.receive(&line, now),
            Err(PostError::Replayed { .. })
        ));
        // Carol's own line echoed back to her is refused.
        at_carol.add_link(3, addr("alice@a.example"), alice.public());
        assert!(matches!(
            at_carol.receive(&line, now),
            Err(PostError::Content(why)) if why.contains("came back")
        ));
        assert_eq!(at_bob.size(), 3);
        let gone = at_bob.link_ended(1);
        assert_eq!(gone, vec![addr("alice@a.example"), addr("carol@c.example")]);
        assert_eq!(at_bob.size(), 1);
        assert!(at_bob.links().is_empty());
    }

    #[test]
    fn only_the_member_who_brought_someone_in_can_drop_it() {
        let alice = SecretKey::from_seed(&[1; 32]);
        let bob = SecretKey::from_seed(&[2; 32]);
        let carol = SecretKey::from_seed(&[3; 32]);
        let id = GroupId::from_bytes(&[9; 16]);
        let mut at_dave = Group::new(
            id.clone(),
            addr("dave@d.example"),
            SecretKey::from_seed(&[4; 32]).public(),
        );
        at_dave.add_link(1, addr("alice@a.example"), alice.public());
        for (who, key) in [("bob@b.example", &bob), ("carol@c.example", &carol)] {
            at_dave.admit(addr(who), Some(key.public()), 1, addr("alice@a.example"));
        }
        // Bob claims Carol is gone: refused, Carol stays.
        let mut at_bob = Group::new(id.clone(), addr("bob@b.example"), bob.public());
        let by_bob = at_bob.change(&bob, ChangeKind::Dropped, addr("carol@c.example"), None);
        let now = pd_proto::now_micros();
        assert!(matches!(
            at_dave.receive(&by_bob, now),
            Err(PostError::Content(why)) if why.contains("only the member who brought it in")
        ));
        assert_eq!(at_dave.size(), 4);
        // Alice, who brought Carol in, can.
        let mut at_alice = Group::new(id, addr("alice@a.example"), alice.public());
        let by_alice = at_alice.change(&alice, ChangeKind::Dropped, addr("carol@c.example"), None);
        assert!(matches!(
            at_dave.receive(&by_alice, now),
            Ok(Accepted::Change(_))
        ));
        assert_eq!(at_dave.size(), 3);
        assert!(!at_dave.is_member(&addr("carol@c.example")));
    }

    #[test]
    fn a_member_whose_key_was_not_checked_cannot_post() {
        let alice = SecretKey::from_seed(&[1; 32]);
        let dave = SecretKey::from_seed(&[4; 32]);
        let id = GroupId::from_bytes(&[9; 16]);
        let mut at_alice = Group::new(id.clone(), addr("alice@a.example"), alice.public());
        at_alice.add_link(
            7,
            addr("bob@b.example"),
            SecretKey::from_seed(&[2; 32]).public(),
        );
        at_alice.admit(addr("dave@d.example"), None, 7, addr("bob@b.example"));
        let mut at_dave = Group::new(id, addr("dave@d.example"), dave.public());
        let line = at_dave.line(&dave, "hi".into()).unwrap();
        assert!(matches!(
            at_alice.receive(&line, pd_proto::now_micros()),
            Err(PostError::UnknownAuthor(_))
        ));
        assert!(at_alice.describe_members().contains("key not checked"));
    }
}
