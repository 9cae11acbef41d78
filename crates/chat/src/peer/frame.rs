//! The message protocol inside the TLS channel on the wire: the codec that reads and writes
//! the length-prefixed JSON frames of `pd_proto::chat` (`federation-spec.md` section 12.4).
//!
//! A frame is a 4-byte big-endian length `L` (1 ≤ L ≤ [`MAX_FRAME_LEN`]) followed by `L` bytes
//! of one UTF-8 JSON object with a `type` member. Anything else ends the session.

use bytes::{Buf as _, BufMut as _, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

pub use pd_proto::chat::{
    Frame, MAX_FRAME_LEN, MAX_NOTE_LEN, MAX_TEXT_LEN, PROTOCOL_VERSION, RefuseReason, check_text,
};

/// The `hello` of this client.
pub fn hello() -> Frame {
    Frame::hello(concat!("chat/", env!("CARGO_PKG_VERSION")))
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
            hello(),
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
}
