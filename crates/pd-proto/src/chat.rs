//! The frames of the peer-to-peer chat channel (`federation-spec.md` section 12.4): their
//! types, members and limits. Reading and writing them on a stream is the client's business
//! (`chat::peer::frame`).

use serde::{Deserialize, Serialize};

use crate::group::{self, GroupChange, GroupId, GroupLine, Member};
use crate::signed::Signed;

/// Version of the frame protocol sent in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame body, in bytes.
pub const MAX_FRAME_LEN: usize = 64 * 1024;
/// Largest message text, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 16 * 1024;
/// Largest `agent`, `reason` or `detail` string, in bytes.
pub const MAX_NOTE_LEN: usize = 256;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Frame {
    /// Opens the conversation: sent by the listener once it accepted the connecting peer,
    /// then by the connecting peer in answer.
    Hello {
        /// The frame protocol version.
        version: u32,
        /// The software, e.g. `chat/0.1.0`.
        #[serde(default)]
        agent: String,
    },
    /// Sent by the listener instead of `hello` when it does not accept the peer; the
    /// listener then closes the connection.
    Refuse {
        /// Why, as a machine-readable word.
        reason: RefuseReason,
        /// Why, in words.
        #[serde(default)]
        detail: String,
    },
    /// One line of text.
    Msg {
        /// The text: no control characters except tab.
        text: String,
    },
    /// Keeps the session alive; carries nothing.
    Ping,
    /// Ends the session; the sender closes the connection after it.
    Bye {
        /// Why, when not simply because the user left.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Invites the receiver into a group (section 12.6): who is in it, with the keys the
    /// inviter checked.
    #[serde(rename = "group-invite")]
    GroupInvite {
        /// Which group.
        group: GroupId,
        /// Every member, the inviter and the receiver included.
        members: Vec<Member>,
    },
    /// Accepts an invitation.
    #[serde(rename = "group-join")]
    GroupJoin {
        /// Which group.
        group: GroupId,
    },
    /// Declines an invitation.
    #[serde(rename = "group-decline")]
    GroupDecline {
        /// Which group.
        group: GroupId,
        /// Why, in words.
        #[serde(default)]
        reason: String,
    },
    /// A line of a group, signed by its author; forwarded unchanged.
    #[serde(rename = "group-line")]
    GroupLine {
        /// The signed line.
        post: Signed<GroupLine>,
    },
    /// A membership change, signed by the member who made it; forwarded unchanged.
    #[serde(rename = "group-member")]
    GroupMember {
        /// The signed change.
        post: Signed<GroupChange>,
    },
}

/// Why a listener refused a connecting peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefuseReason {
    /// The listener accepts only some addresses, not this one.
    NotAllowed,
    /// The claimed address does not exist.
    UnknownUser,
    /// The claimed address is registered with another key than the one presented.
    KeyMismatch,
    /// The listener remembers another key for this address and no signed rotation links it
    /// to the presented key.
    KeyChanged,
    /// The listener could not look the address up (its home node failed, or federation
    /// policy refused it).
    LookupFailed,
    /// The listener is shutting down.
    ShuttingDown,
    /// Any other reason (a newer peer's reason this version does not know).
    #[serde(other)]
    Other,
}

impl RefuseReason {
    /// The reason in words, for the side that was refused (the listener's own messages
    /// say it from its side).
    pub fn describe(self) -> &'static str {
        match self {
            Self::NotAllowed => "it accepts only the peers it allows (listen --allow), and not you",
            Self::UnknownUser => "its home node does not know your address",
            Self::KeyMismatch => "your key is not the key registered for your address",
            Self::KeyChanged => "it remembers another key for your address",
            Self::LookupFailed => "it could not look your address up",
            Self::ShuttingDown => "it is shutting down",
            Self::Other => "for a reason this version does not know",
        }
    }
}

/// Whether `text` may be sent as a message.
pub fn check_text(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("empty message".into());
    }
    if text.len() > MAX_TEXT_LEN {
        return Err(format!(
            "message of {} bytes (the limit is {MAX_TEXT_LEN})",
            text.len()
        ));
    }
    if let Some(c) = text.chars().find(|&c| c.is_control() && c != '\t') {
        return Err(format!("message contains the control character {c:?}"));
    }
    Ok(())
}

fn check_note(what: &str, text: &str) -> Result<(), String> {
    if text.len() > MAX_NOTE_LEN {
        return Err(format!("{what} longer than {MAX_NOTE_LEN} bytes"));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(())
}

impl Frame {
    /// Checks the limits the JSON shape cannot express.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::Hello { agent, .. } => check_note("agent", agent),
            Self::Refuse { detail, .. } => check_note("detail", detail),
            Self::Msg { text } => check_text(text),
            Self::Ping => Ok(()),
            Self::Bye { reason } => reason
                .as_deref()
                .map_or(Ok(()), |reason| check_note("reason", reason)),
            Self::GroupInvite { members, .. } => group::check_members(members),
            Self::GroupDecline { reason, .. } => check_note("reason", reason),
            // A post's members are checked with its signature (group::PostOrder).
            Self::GroupJoin { .. } | Self::GroupLine { .. } | Self::GroupMember { .. } => Ok(()),
        }
    }

    /// A `bye` with a reason cut to the limit.
    pub fn bye(reason: Option<&str>) -> Self {
        Self::Bye {
            reason: reason.map(|r| {
                let clean: String = r.chars().filter(|c| !c.is_control()).collect();
                let mut end = clean.len().min(MAX_NOTE_LEN);
                while !clean.is_char_boundary(end) {
                    end -= 1;
                }
                clean[..end].to_owned()
            }),
        }
    }

    /// A `hello` naming the software `agent` (e.g. `chat/0.1.0`).
    pub fn hello(agent: &str) -> Self {
        Self::Hello {
            version: PROTOCOL_VERSION,
            agent: agent.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert!(check_text("hello, world").is_ok());
        assert!(check_text("tab\tok").is_ok());
        assert!(check_text("").is_err());
        assert!(check_text("bell\u{7}").is_err());
        assert!(check_text("c1\u{85}").is_err());
        assert!(check_text(&"é".repeat(MAX_TEXT_LEN / 2)).is_ok());
        assert!(check_text(&"é".repeat(MAX_TEXT_LEN / 2 + 1)).is_err());
        let bye = Frame::bye(Some(&"é".repeat(MAX_NOTE_LEN)));
        assert!(bye.check().is_ok());
        assert!(Frame::hello("x\ny").check().is_err());
    }
}
