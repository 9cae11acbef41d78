//! The relay of a home node (`federation-spec.md` section 13): the upgrade token, the
//! control frames on a listener's slot, the one-time conversation ids, the relay endpoint
//! form, and the framing of control frames. Reading and writing them on a stream is the
//! node's and the client's business.

use serde::{Deserialize, Serialize};

use crate::address::{Address, Host};
use crate::records::Endpoint;

/// The `Upgrade` token of every relay request.
pub const UPGRADE_PROTOCOL: &str = "pd-relay/1";
/// Largest control frame body, in bytes.
pub const MAX_CONTROL_FRAME_LEN: usize = 1024;
/// The scheme prefix of a relay endpoint (`relay+https://HOST:PORT/`).
pub const ENDPOINT_SCHEME_PREFIX: &str = "relay+";
/// Length of a conversation id in bytes (written as 32 lowercase hexadecimal digits).
pub const CONVERSATION_ID_LEN: usize = 16;
/// A node sends `ping` on a slot after this many seconds without sending anything.
pub const SLOT_PING_SECS: u64 = 20;
/// A side of a slot that received nothing for this many seconds considers it dead.
pub const SLOT_IDLE_SECS: u64 = 60;

/// One control frame on a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ControlFrame {
    /// Node to listener: a peer is waiting; open `GET /v1/relay/{address}/accept/{id}`.
    Incoming {
        /// The one-time conversation id (32 lowercase hexadecimal digits).
        id: String,
    },
    /// Either side: are you there?
    Ping,
    /// Either side: the answer to `ping`.
    Pong,
}

/// Why a control frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The length prefix is 0 or above [`MAX_CONTROL_FRAME_LEN`].
    #[error("control frame length {0} out of range (1 to {MAX_CONTROL_FRAME_LEN})")]
    Length(usize),
    /// The body is not a known control frame.
    #[error("invalid control frame: {0}")]
    Body(String),
}

impl ControlFrame {
    /// The frame on the wire: a 4-byte big-endian length, then the JSON body.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising these plain enums cannot fail.
        let body = serde_json::to_vec(self).unwrap_or_default();
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(4 + body.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Checks a length prefix.
    pub fn check_len(len: usize) -> Result<(), ControlError> {
        if (1..=MAX_CONTROL_FRAME_LEN).contains(&len) {
            Ok(())
        } else {
            Err(ControlError::Length(len))
        }
    }

    /// Parses a body (without its length prefix); an `incoming` id must be well-formed.
    pub fn decode(body: &[u8]) -> Result<Self, ControlError> {
        Self::check_len(body.len())?;
        let frame: Self =
            serde_json::from_slice(body).map_err(|e| ControlError::Body(e.to_string()))?;
        if let Self::Incoming { id } = &frame
            && !is_conversation_id(id)
        {
            return Err(ControlError::Body(
                "an incoming id is 32 lowercase hexadecimal digits".into(),
            ));
        }
        Ok(frame)
    }
}

/// A fresh random conversation id: 128 bits, 32 lowercase hexadecimal digits.
pub fn new_conversation_id() -> String {
    let bytes: [u8; CONVERSATION_ID_LEN] = rand::random();
    data_encoding::HEXLOWER.encode(&bytes)
}

/// Whether `id` has the form of a conversation id.
pub fn is_conversation_id(id: &str) -> bool {
    id.len() == 2 * CONVERSATION_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where a relay endpoint leads: the node's origin (`https://HOST:PORT`) and whether it is
/// spoken to over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayEndpoint {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The host and port, as written in the endpoint.
    pub authority: String,
}

impl RelayEndpoint {
    /// Reads a `relay+http://HOST:PORT/` or `relay+https://HOST:PORT/` endpoint; `None` for
    /// any other endpoint.
    pub fn parse(endpoint: &Endpoint) -> Option<Self> {
        let rest = endpoint.as_str().strip_prefix(ENDPOINT_SCHEME_PREFIX)?;
        let (scheme, rest) = rest.split_once("://")?;
        let scheme = if scheme.eq_ignore_ascii_case("https") {
            "https"
        } else if scheme.eq_ignore_ascii_case("http") {
            "http"
        } else {
            return None;
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        Host::parse(authority).ok()?.port()?;
        Some(Self {
            scheme,
            authority: authority.to_owned(),
        })
    }

    /// The endpoint naming the relay of the node at `scheme://host:port`.
    pub fn endpoint(scheme: &str, host: &str, port: u16) -> Result<Endpoint, crate::RecordError> {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Endpoint::parse(&format!(
            "{ENDPOINT_SCHEME_PREFIX}{scheme}://{host}:{port}/"
        ))
    }

    /// The URL a connecting peer opens to reach `address` through this relay.
    pub fn connect_url(&self, address: &Address) -> String {
        format!(
            "{}://{}{}",
            self.scheme,
            self.authority,
            crate::paths::fill(crate::paths::RELAY_CONNECT, &address.to_string())
        )
    }

    /// The host part of the authority (without the port), for messages.
    pub fn host(&self) -> &str {
        match self.authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => &self.authority,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_round_trip_and_are_checked() {
        let id = new_conversation_id();
        assert!(is_conversation_id(&id));
        let frame = ControlFrame::Incoming { id: id.clone() };
        let wire = frame.encode();
        assert_eq!(
            &wire[..4],
            &u32::try_from(wire.len() - 4).unwrap().to_be_bytes()
        );
        assert_eq!(ControlFrame::decode(&wire[4..]).unwrap(), frame);
        assert_eq!(
            String::from_utf8(ControlFrame::Ping.encode()[4..].to_vec()).unwrap(),
            r#"{"type":"ping"}"#
        );
        assert!(ControlFrame::decode(br#"{"type":"incoming","id":"ABC"}"#).is_err());
        assert!(ControlFrame::decode(br#"{"type":"hello"}"#).is_err());
        assert!(ControlFrame::decode(b"").is_err());
        assert!(ControlFrame::check_len(MAX_CONTROL_FRAME_LEN + 1).is_err());
    }

    #[test]
    fn relay_endpoints_name_an_origin_with_a_port() {
        let e = RelayEndpoint::endpoint("https", "pd.blackmesa.us", 443).unwrap();
        assert_eq!(e.as_str(), "relay+https://pd.blackmesa.us:443/");
        let relay = RelayEndpoint::parse(&e).unwrap();
        assert_eq!(relay.host(), "pd.blackmesa.us");
        let gordon = Address::parse("gordon.freeman@blackmesa.us").unwrap();
        assert_eq!(
            relay.connect_url(&gordon),
            "https://pd.blackmesa.us:443/v1/relay/gordon.freeman@blackmesa.us"
        );
        let v6 = RelayEndpoint::endpoint("http", "::1", 8080).unwrap();
        assert_eq!(v6.as_str(), "relay+http://[::1]:8080/");
        assert!(RelayEndpoint::parse(&Endpoint::parse("tcp://127.0.0.1:7000").unwrap()).is_none());
        assert!(
            RelayEndpoint::parse(&Endpoint::parse("relay+ftp://h.example:21/").unwrap()).is_none()
        );
        // The grammar of section 5.2 needs the port: `relay+https` has no default one.
        assert!(Endpoint::parse("relay+https://pd.blackmesa.us/").is_err());
    }
}
