//! Group conversations on the chat channel (`federation-spec.md` section 12.6): the group id,
//! the member list of an invitation, the two signed posts (`group-line` and `group-member`),
//! their limits, and the per-author order check every receiver applies before it prints or
//! forwards a post. Moving the frames is the client's business (`chat::group`).
//!
//! A post is a [`Signed`] envelope: its signing bytes are those of every signed record
//! (`"pd-v1" 0x0A purpose 0x0A author 0x0A payload`) with the purposes `group-line` and
//! `group-member`, so a post cannot be taken for any other signed record, nor a line for a
//! membership change.

use std::collections::{HashMap, HashSet};
use std::fmt;

use data_encoding::BASE64URL_NOPAD;
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::chat::check_text;
use crate::keys::PublicKey;
use crate::signed::{Purpose, Record, Signed, SignedError};

/// Most members a group holds, its creator included.
pub const MAX_MEMBERS: usize = 16;
/// Length of a group id in bytes (before base64url).
pub const GROUP_ID_LEN: usize = 16;
/// Largest difference between a post's `time` and the receiver's clock, in microseconds
/// (the same five minutes as every other signed operation).
pub const POST_TIME_WINDOW_MICROS: u64 = crate::MAX_CLOCK_SKEW_MICROS;

/// A group's identifier: 16 random bytes, as 22 characters of unpadded base64url.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupId(String);

impl GroupId {
    /// A new random group id.
    pub fn random() -> Self {
        let bytes: [u8; GROUP_ID_LEN] = rand::random();
        Self::from_bytes(&bytes)
    }

    /// The id made of these bytes.
    pub fn from_bytes(bytes: &[u8; GROUP_ID_LEN]) -> Self {
        Self(BASE64URL_NOPAD.encode(bytes))
    }

    /// The id as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short label for people telling conversations apart: `#` and the id's first six
    /// characters.
    pub fn label(&self) -> String {
        format!("#{}", &self.0[..6])
    }
}

impl TryFrom<String> for GroupId {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match BASE64URL_NOPAD.decode(text.as_bytes()) {
            Ok(bytes) if bytes.len() == GROUP_ID_LEN => Ok(Self(text)),
            _ => Err(format!(
                "a group id is {GROUP_ID_LEN} bytes in unpadded base64url"
            )),
        }
    }
}

impl From<GroupId> for String {
    fn from(id: GroupId) -> Self {
        id.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", self.0)
    }
}

/// A member as an invitation or an `added` change names it: its address and the key the
/// sender checked for it. Receivers check the key against their own home node's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's address.
    pub address: Address,
    /// The member's account key, as the sender's home node vouched for it.
    pub key: PublicKey,
}

/// One line of a group, signed by its author (purpose `group-line`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLine {
    /// Which group.
    pub group: GroupId,
    /// Who wrote it.
    pub author: Address,
    /// The author's post counter in this group: 1 for its first post, then one more for
    /// each (lines and membership changes share it).
    pub counter: u64,
    /// When it was written, in microseconds since the Unix epoch.
    pub time: u64,
    /// What was said (the rules of a `msg` text).
    pub text: String,
}

/// What a membership change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// `member` joined, invited by the author.
    Added,
    /// The author left (`member` is the author).
    Left,
    /// `member` can no longer be reached by the author: its channel ended without goodbye,
    /// or it declined the invitation.
    Dropped,
}

/// A change of a group's membership, signed by the member who made it (purpose
/// `group-member`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupChange {
    /// Which group.
    pub group: GroupId,
    /// Who made the change.
    pub author: Address,
    /// The author's post counter (shared with its lines).
    pub counter: u64,
    /// When, in microseconds since the Unix epoch.
    pub time: u64,
    /// What changed.
    pub change: ChangeKind,
    /// Whom it is about.
    pub member: Address,
    /// For `added`: the key the author checked for `member`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PublicKey>,
}

impl Record for GroupLine {
    const PURPOSE: Purpose = Purpose::GroupLine;
    fn address(&self) -> &Address {
        &self.author
    }
}

impl Record for GroupChange {
    const PURPOSE: Purpose = Purpose::GroupMember;
    fn address(&self) -> &Address {
        &self.author
    }
}

/// The part of a post that the order check reads.
pub trait Post: Record {
    /// The group.
    fn group(&self) -> &GroupId;
    /// The author's counter.
    fn counter(&self) -> u64;
    /// The time, in microseconds.
    fn time(&self) -> u64;
    /// Checks the members the JSON shape cannot express.
    fn check(&self) -> Result<(), String>;
}

impl Post for GroupLine {
    fn group(&self) -> &GroupId {
        &self.group
    }
    fn counter(&self) -> u64 {
        self.counter
    }
    fn time(&self) -> u64 {
        self.time
    }
    fn check(&self) -> Result<(), String> {
        check_text(&self.text)
    }
}

impl Post for GroupChange {
    fn group(&self) -> &GroupId {
        &self.group
    }
    fn counter(&self) -> u64 {
        self.counter
    }
    fn time(&self) -> u64 {
        self.time
    }
    fn check(&self) -> Result<(), String> {
        match (self.change, &self.key) {
            (ChangeKind::Added, None) => Err("an added member needs its key".into()),
            (ChangeKind::Left, _) if self.member != self.author => {
                Err("only the member itself can leave".into())
            }
            _ => Ok(()),
        }
    }
}

/// Checks a member list: 2 to [`MAX_MEMBERS`] members, each address once.
pub fn check_members(members: &[Member]) -> Result<(), String> {
    if members.len() > MAX_MEMBERS {
        return Err(format!(
            "{} members (a group holds at most {MAX_MEMBERS})",
            members.len()
        ));
    }
    if members.len() < 2 {
        return Err("a group has at least two members".into());
    }
    let mut seen = HashSet::new();
    for member in members {
        if !seen.insert(&member.address) {
            return Err(format!("{} is named twice", member.address));
        }
    }
    Ok(())
}

/// Why a post was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// The envelope did not decode or verify (altered or forged).
    #[error("its signature does not verify (altered or forged): {0}")]
    Signature(#[from] SignedError),
    /// The author is not a member whose key this side checked.
    #[error("{0} is not a member whose key was checked")]
    UnknownAuthor(Address),
    /// The post belongs to another group.
    #[error("it belongs to another group")]
    WrongGroup,
    /// The counter is not above the last one seen from the author.
    #[error("replayed or out of order (counter {counter}, already saw {last})")]
    Replayed {
        /// The post's counter.
        counter: u64,
        /// The highest counter seen from the author.
        last: u64,
    },
    /// The time is outside the window.
    #[error("dated {0} s away from this clock (the limit is 300 s)")]
    Time(u64),
    /// A member breaks a rule the JSON shape cannot express.
    #[error("{0}")]
    Content(String),
}

/// The highest counter seen from each author of one group, and the check that a new post
/// is signed by its author's checked key, is this group's, is newer than every earlier post
/// of its author and is dated near now. Posts are checked in the order they arrive.
#[derive(Debug, Clone)]
pub struct PostOrder {
    group: GroupId,
    last: HashMap<Address, u64>,
}

impl PostOrder {
    /// An empty record for `group`.
    pub fn new(group: GroupId) -> Self {
        Self {
            group,
            last: HashMap::new(),
        }
    }

    /// Verifies `post` with the key `key_of` gives for its author, then its group, its
    /// counter and its time (`now` in microseconds); only a post that passes everything is
    /// returned, and its counter becomes the author's last.
    pub fn accept<T: Post>(
        &mut self,
        post: &Signed<T>,
        key_of: impl FnOnce(&Address) -> Option<PublicKey>,
        now: u64,
    ) -> Result<T, PostError> {
        let claimed = post.decode_unverified()?;
        let author = claimed.address().clone();
        let key = key_of(&author).ok_or_else(|| PostError::UnknownAuthor(author.clone()))?;
        let record = post.verify(&key, &author)?;
        if record.group() != &self.group {
            return Err(PostError::WrongGroup);
        }
        record.check().map_err(PostError::Content)?;
        let last = self.last.get(&author).copied().unwrap_or(0);
        if record.counter() <= last {
            return Err(PostError::Replayed {
                counter: record.counter(),
                last,
            });
        }
        let skew = record.time().abs_diff(now);
        if skew > POST_TIME_WINDOW_MICROS {
            return Err(PostError::Time(skew / 1_000_000));
        }
        self.last.insert(author, record.counter());
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn line(
        key: &SecretKey,
        author: &str,
        counter: u64,
        time: u64,
        text: &str,
    ) -> Signed<GroupLine> {
        Signed::sign(
            key,
            &GroupLine {
                group: GroupId::from_bytes(&[7; 16]),
                author: addr(author),
                counter,
                time,
                text: text.into(),
            },
        )
    }

    const NOW: u64 = 1_790_000_000_000_000;

    #[test]
    fn signing_bytes_match_the_spec_vector() {
        let key = SecretKey::from_seed(&[1; 32]);
        let post = line(&key, "bob@b.example", 1, NOW, "hi");
        let payload = std::str::from_utf8(post.payload()).unwrap();
        assert_eq!(
            payload,
            r#"{"group":"BwcHBwcHBwcHBwcHBwcHBw","author":"bob@b.example","counter":1,"time":1790000000000000,"text":"hi"}"#
        );
        let bytes = crate::signed::signing_bytes(
            Purpose::GroupLine,
            &addr("bob@b.example"),
            post.payload(),
        );
        assert!(bytes.starts_with(b"pd-v1\ngroup-line\nbob@b.example\n{"));
        key.public().verify(&bytes, post.signature()).unwrap();
        // The signature of the spec's example (section 12.6): Ed25519 is deterministic.
        assert_eq!(
            post.signature().to_string(),
            "WNuXyqFTmHPKbMRvVnoVpPkIc8hLIkoSLwcayNDCxMqzYER3KZFX5YluvoY_yPLdq3oLvO0aP88UePzP-YkFBQ"
        );
    }

    #[test]
    fn a_good_line_is_accepted_once_and_in_order() {
        let key = SecretKey::from_seed(&[1; 32]);
        let mut order = PostOrder::new(GroupId::from_bytes(&[7; 16]));
        let first = line(&key, "bob@b.example", 1, NOW, "one");
        let second = line(&key, "bob@b.example", 2, NOW, "two");
        let got = order.accept(&first, |_| Some(key.public()), NOW).unwrap();
        assert_eq!(got.text, "one");
        assert!(matches!(
            order.accept(&first, |_| Some(key.public()), NOW),
            Err(PostError::Replayed {
                counter: 1,
                last: 1
            })
        ));
        order.accept(&second, |_| Some(key.public()), NOW).unwrap();
        assert!(matches!(
            order.accept(&first, |_| Some(key.public()), NOW),
            Err(PostError::Replayed { .. })
        ));
    }

    #[test]
    fn altered_forged_foreign_and_stale_lines_are_refused() {
        let key = SecretKey::from_seed(&[1; 32]);
        let other = SecretKey::from_seed(&[2; 32]);
        let mut order = PostOrder::new(GroupId::from_bytes(&[7; 16]));
        let good = line(&key, "bob@b.example", 1, NOW, "pay carol");
        // Altered text under the author's signature.
        let altered_payload = String::from_utf8(good.payload().to_vec())
            .unwrap()
            .replace("pay carol", "pay dave!");
        let altered =
            Signed::<GroupLine>::from_parts(altered_payload.into_bytes(), *good.signature());
        assert!(matches!(
            order.accept(&altered, |_| Some(key.public()), NOW),
            Err(PostError::Signature(_))
        ));
        // Signed by someone else in bob's name.
        let forged = line(&other, "bob@b.example", 1, NOW, "hi");
        assert!(matches!(
            order.accept(&forged, |_| Some(key.public()), NOW),
            Err(PostError::Signature(_))
        ));
        // A member nobody checked.
        assert!(matches!(
            order.accept(&good, |_| None, NOW),
            Err(PostError::UnknownAuthor(_))
        ));
        // Another group.
        let elsewhere = Signed::sign(
            &key,
            &GroupLine {
                group: GroupId::from_bytes(&[8; 16]),
                author: addr("bob@b.example"),
                counter: 1,
                time: NOW,
                text: "hi".into(),
            },
        );
        assert_eq!(
            order.accept(&elsewhere, |_| Some(key.public()), NOW),
            Err(PostError::WrongGroup)
        );
        // Too old.
        let stale = line(&key, "bob@b.example", 1, NOW - 301_000_000, "hi");
        assert!(matches!(
            order.accept(&stale, |_| Some(key.public()), NOW),
            Err(PostError::Time(301))
        ));
        // A line signed as a membership change does not verify as a line.
        let change = Signed::sign(
            &key,
            &GroupChange {
                group: GroupId::from_bytes(&[7; 16]),
                author: addr("bob@b.example"),
                counter: 1,
                time: NOW,
                change: ChangeKind::Left,
                member: addr("bob@b.example"),
                key: None,
            },
        );
        let as_line =
            Signed::<GroupLine>::from_parts(change.payload().to_vec(), *change.signature());
        assert!(order.accept(&as_line, |_| Some(key.public()), NOW).is_err());
        // None of the refusals moved the counter: the good line still passes.
        order.accept(&good, |_| Some(key.public()), NOW).unwrap();
    }

    #[test]
    fn member_lists_and_changes_have_limits() {
        let members: Vec<Member> = (0..17)
            .map(|i| Member {
                address: addr(&format!("u{i}@h.example")),
                key: SecretKey::from_seed(&[i as u8 + 1; 32]).public(),
            })
            .collect();
        assert!(check_members(&members[..16]).is_ok());
        assert!(check_members(&members).unwrap_err().contains("at most 16"));
        assert!(check_members(&members[..1]).is_err());
        let twice = vec![members[0].clone(), members[0].clone()];
        assert!(check_members(&twice).unwrap_err().contains("twice"));
        let leave_for_other = GroupChange {
            group: GroupId::from_bytes(&[7; 16]),
            author: addr("bob@b.example"),
            counter: 1,
            time: NOW,
            change: ChangeKind::Left,
            member: addr("carol@c.example"),
            key: None,
        };
        assert!(leave_for_other.check().is_err());
        assert!(GroupId::try_from("short".to_owned()).is_err());
        let id = GroupId::random();
        assert_eq!(GroupId::try_from(id.to_string()).unwrap(), id);
        assert_eq!(id.label().len(), 7);
    }
}
