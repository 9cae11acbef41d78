//! The message protocol inside the TLS channel: length-prefixed JSON frames, their types and
//! limits, and the codec that reads and writes them (`federation-spec.md`, "Peer-to-peer
//! chat").
//!
//! A frame is a 4-byte big-endian length `L` (1 ≤ L ≤ [`MAX_FRAME_LEN`]) followed by `L` bytes
//! of one UTF-8 JSON object with a `type` member. Anything else ends the session.

use bytes::{Buf as _, BufMut as _, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

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
    /// The reason in words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NotAllowed => "you are not on its list of allowed peers",
            Self::UnknownUser => "its home node does not know your address",
            Self::KeyMismatch => "your key is not the key registered for your address",
            Self::KeyChanged => "it remembers another key for your address",
            Self::LookupFailed => "it could not look your address up",
            Self::ShuttingDown => "it is shutting down",
            Self::Other => "for a reason this version does not know",
        }
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more than the limit (or zero).
    #[error("frame of {0} bytes (the limit is {MAX_FRAME_LEN})")]
    BadLength(u64),
    /// The body is not a frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The connection ended in the middle of a frame.
    #[error("the connection ended in the middle of a frame")]
    Truncated,
    /// The connection failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// Whether the error is the peer breaking the protocol (rather than the network failing).
    pub fn is_protocol(&self) -> bool {
        matches!(self, Self::BadLength(_) | Self::Malformed(_))
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

    /// The `hello` of this software.
    pub fn hello() -> Self {
        Self::Hello {
            version: PROTOCOL_VERSION,
            agent: concat!("chat/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Reads and writes frames on a byte stream (with `tokio_util::codec::Framed`).
#[derive(Debug, Default)]
pub struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(prefix) = src.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len == 0 || len > MAX_FRAME_LEN {
            return Err(FrameError::BadLength(len as u64));
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let body = src.split_to(len);
        let frame: Frame =
            serde_json::from_slice(&body).map_err(|e| FrameError::Malformed(e.to_string()))?;
        frame.check().map_err(FrameError::Malformed)?;
        Ok(Some(frame))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        frame.check().map_err(FrameError::Malformed)?;
        let body = serde_json::to_vec(&frame).map_err(|e| FrameError::Malformed(e.to_string()))?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|&len| len as usize <= MAX_FRAME_LEN)
            .ok_or(FrameError::BadLength(body.len() as u64))?;
        dst.reserve(4 + body.len());
        dst.put_u32(len);
        dst.extend_from_slice(&body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frame: Frame) -> BytesMut {
        let mut buf = BytesMut::new();
        FrameCodec.encode(frame, &mut buf).unwrap();
        buf
    }

    fn raw(body: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.put_u32(body.len() as u32);
        buf.extend_from_slice(body);
        buf
    }

    #[test]
    fn frames_round_trip_and_match_the_spec_examples() {
        for frame in [
            Frame::hello(),
            Frame::Refuse {
                reason: RefuseReason::KeyMismatch,
                detail: "d".into(),
            },
            Frame::Msg {
                text: "hi\tthere".into(),
            },
            Frame::Ping,
            Frame::bye(None),
            Frame::bye(Some("user left")),
        ] {
            let mut buf = encode(frame.clone());
            assert_eq!(FrameCodec.decode(&mut buf).unwrap(), Some(frame));
            assert!(buf.is_empty());
        }
        assert_eq!(
            &encode(Frame::Msg { text: "hi".into() })[..],
            b"\x00\x00\x00\x1a{\"type\":\"msg\",\"text\":\"hi\"}"
        );
        assert_eq!(&encode(Frame::bye(None))[4..], br#"{"type":"bye"}"#);
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let full = encode(Frame::Msg { text: "hi".into() });
        let mut buf = BytesMut::from(&full[..6]);
        assert_eq!(FrameCodec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&full[6..]);
        assert!(FrameCodec.decode(&mut buf).unwrap().is_some());
        let mut cut = BytesMut::from(&full[..6]);
        assert!(matches!(
            FrameCodec.decode_eof(&mut cut),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn oversize_empty_and_garbage_frames_are_protocol_errors() {
        let mut huge = BytesMut::new();
        huge.put_u32(MAX_FRAME_LEN as u32 + 1);
        let err = FrameCodec.decode(&mut huge).unwrap_err();
        assert!(err.is_protocol());
        assert_eq!(err.to_string(), "frame of 65537 bytes (the limit is 65536)");
        let mut empty = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert!(FrameCodec.decode(&mut empty).unwrap_err().is_protocol());
        for body in [
            &b"not json"[..],
            br#"{"type":"shout","text":"x"}"#,
            br#"{"text":"no type"}"#,
            br#"{"type":"msg"}"#,
            br#"{"type":"msg","text":""}"#,
            b"{\"type\":\"msg\",\"text\":\"\\u001b[2J\"}",
            br#"{"type":"bye","reason":"line\nbreak"}"#,
        ] {
            let err = FrameCodec.decode(&mut raw(body)).unwrap_err();
            assert!(err.is_protocol(), "{body:?}: {err}");
        }
        let long = serde_json::to_vec(&Frame::Msg {
            text: "x".repeat(MAX_TEXT_LEN + 1),
        })
        .unwrap();
        assert!(FrameCodec.decode(&mut raw(&long)).is_err());
    }

    #[test]
    fn unknown_members_and_refusal_reasons_are_tolerated() {
        let mut buf = raw(br#"{"type":"msg","text":"hi","lang":"en"}"#);
        assert_eq!(
            FrameCodec.decode(&mut buf).unwrap(),
            Some(Frame::Msg { text: "hi".into() })
        );
        let mut buf = raw(br#"{"type":"refuse","reason":"busy"}"#);
        assert_eq!(
            FrameCodec.decode(&mut buf).unwrap(),
            Some(Frame::Refuse {
                reason: RefuseReason::Other,
                detail: String::new()
            })
        );
    }

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
    }
}
