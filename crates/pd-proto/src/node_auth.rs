//! Node-to-node request signatures: the canonical bytes a node signs and the
//! `Authorization: PD-Node ...` header that carries the signature. No I/O.
//!
//! The scheme follows Matrix's `X-Matrix` authorization: the signature covers the method,
//! the path and query, the origin and destination domains, a timestamp and a hash of the
//! body, so a signed request cannot be replayed against another node, another path or
//! much later.
//!
//! Canonical bytes (fields joined by `\n`, no trailing newline):
//!
//! ```text
//! pd-v1-node-request
//! <METHOD>
//! <path and query, exactly as sent>
//! <origin domain>
//! <destination domain>
//! <timestamp, Unix seconds, decimal>
//! <lowercase hex SHA-256 of the body>
//! ```
//!
//! Header value:
//!
//! ```text
//! PD-Node origin="a.example",destination="b.example:8443",key="ed25519:abcdefgh",ts="1790000000",sig="<base64url>"
//! ```

use std::fmt;
use std::str::FromStr;

use data_encoding::HEXLOWER;
use sha2::{Digest, Sha256};

use crate::address::Host;
use crate::keys::{KeyError, PublicKey, Signature};

/// The authorization scheme name.
pub const SCHEME: &str = "PD-Node";

/// First line of the canonical bytes; separates node request signatures from every other
/// signature in the protocol.
pub const SIGNING_TAG: &str = "pd-v1-node-request";

/// Prefix of every server key id.
pub const KEY_ID_PREFIX: &str = "ed25519:";

/// Longest accepted key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Longest accepted header value, in bytes.
const MAX_HEADER_LEN: usize = 2048;

/// Why an `Authorization: PD-Node` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeAuthHeaderError {
    /// The value does not start with the `PD-Node` scheme.
    #[error("authorization scheme is not {SCHEME}")]
    WrongScheme,
    /// The parameter list is not `name="value"` pairs separated by commas.
    #[error("malformed authorization header: {0}")]
    Malformed(&'static str),
    /// A parameter appears more than once.
    #[error("parameter {0:?} appears more than once")]
    Duplicate(String),
    /// A required parameter is absent.
    #[error("parameter {0:?} is missing")]
    Missing(&'static str),
    /// The origin or destination is not a valid host.
    #[error("parameter {0:?} is not a valid host")]
    BadHost(&'static str),
    /// The key id is not `ed25519:` followed by 1-56 characters of `A-Z a-z 0-9 _ -`.
    #[error("key id is malformed")]
    BadKeyId,
    /// The timestamp is not a decimal number of seconds.
    #[error("timestamp is malformed")]
    BadTimestamp,
    /// The signature is not a base64url ed25519 signature.
    #[error("signature is malformed: {0}")]
    BadSignature(KeyError),
}

/// The parsed content of an `Authorization: PD-Node ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAuthorization {
    /// The domain of the node that sent the request.
    pub origin: Host,
    /// The domain of the node the request is for.
    pub destination: Host,
    /// Which of the origin's server keys signed (`ed25519:...`).
    pub key_id: String,
    /// When the request was signed (Unix seconds).
    pub timestamp: u64,
    /// The signature over [`request_signing_bytes`].
    pub signature: Signature,
}

/// The bytes a node signs for one request.
///
/// `method` is uppercased; `path_and_query` must be exactly the request target as sent
/// (percent-encoding included), relative to the node's API root.
pub fn request_signing_bytes(
    method: &str,
    path_and_query: &str,
    origin: &Host,
    destination: &Host,
    timestamp: u64,
    body: &[u8],
) -> Vec<u8> {
    let body_hash = HEXLOWER.encode(&Sha256::digest(body));
    format!(
        "{SIGNING_TAG}\n{}\n{path_and_query}\n{origin}\n{destination}\n{timestamp}\n{body_hash}",
        method.to_ascii_uppercase()
    )
    .into_bytes()
}

/// The key id a node publishes for `key`: `ed25519:` followed by the first eight
/// characters of the key's fingerprint, without the group separators.
pub fn server_key_id(key: &PublicKey) -> String {
    let fingerprint: String = key.fingerprint().chars().filter(|c| *c != '-').collect();
    format!("{KEY_ID_PREFIX}{}", &fingerprint[..8])
}

/// Whether `id` is a well-formed key id.
pub fn is_valid_key_id(id: &str) -> bool {
    id.len() <= MAX_KEY_ID_LEN
        && id.strip_prefix(KEY_ID_PREFIX).is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

impl NodeAuthorization {
    /// The canonical bytes this authorization's signature must cover for a request.
    pub fn signing_bytes(&self, method: &str, path_and_query: &str, body: &[u8]) -> Vec<u8> {
        request_signing_bytes(
            method,
            path_and_query,
            &self.origin,
            &self.destination,
            self.timestamp,
            body,
        )
    }

    /// Parses a header value. Unknown parameters are ignored; duplicated parameters,
    /// missing required ones and malformed values are refused.
    pub fn parse(value: &str) -> Result<Self, NodeAuthHeaderError> {
        if value.len() > MAX_HEADER_LEN {
            return Err(NodeAuthHeaderError::Malformed("header too long"));
        }
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            return Err(NodeAuthHeaderError::WrongScheme);
        }
        let params = parse_params(rest)?;
        let get = |name: &'static str| -> Result<&str, NodeAuthHeaderError> {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .ok_or(NodeAuthHeaderError::Missing(name))
        };
        let origin =
            Host::parse(get("origin")?).map_err(|_| NodeAuthHeaderError::BadHost("origin"))?;
        let destination = Host::parse(get("destination")?)
            .map_err(|_| NodeAuthHeaderError::BadHost("destination"))?;
        let key_id = get("key")?;
        if !is_valid_key_id(key_id) {
            return Err(NodeAuthHeaderError::BadKeyId);
        }
        let ts = get("ts")?;
        if ts.is_empty() || ts.len() > 20 || !ts.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NodeAuthHeaderError::BadTimestamp);
        }
        let timestamp = ts
            .parse::<u64>()
            .map_err(|_| NodeAuthHeaderError::BadTimestamp)?;
        let signature = get("sig")?
            .parse::<Signature>()
            .map_err(NodeAuthHeaderError::BadSignature)?;
        Ok(Self {
            origin,
            destination,
            key_id: key_id.to_owned(),
            timestamp,
            signature,
        })
    }
}

/// Splits `name="value", name=token, ...` into pairs, refusing duplicates. Parameter
/// names are compared case-insensitively and returned lowercase.
fn parse_params(input: &str) -> Result<Vec<(String, String)>, NodeAuthHeaderError> {
    let mut params: Vec<(String, String)> = Vec::new();
    let mut rest = input.trim_start();
    while !rest.is_empty() {
        let (name, after_name) = rest
            .split_once('=')
            .ok_or(NodeAuthHeaderError::Malformed("parameter without '='"))?;
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(NodeAuthHeaderError::Malformed("bad parameter name"));
        }
        let after_name = after_name.trim_start();
        let (value, after_value) = if let Some(quoted) = after_name.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, escaped)) => value.push(escaped),
                        None => return Err(NodeAuthHeaderError::Malformed("dangling escape")),
                    },
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c if c.is_control() => {
                        return Err(NodeAuthHeaderError::Malformed("control character"));
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or(NodeAuthHeaderError::Malformed("unterminated quote"))?;
            (value, &quoted[end..])
        } else {
            let end = after_name.find(',').unwrap_or(after_name.len());
            let token = after_name[..end].trim();
            if token.is_empty() || token.chars().any(|c| c.is_control() || c == '"') {
                return Err(NodeAuthHeaderError::Malformed("bad token value"));
            }
            (token.to_owned(), &after_name[end..])
        };
        if params.iter().any(|(n, _)| *n == name) {
            return Err(NodeAuthHeaderError::Duplicate(name));
        }
        params.push((name, value));
        let after_value = after_value.trim_start();
        rest = match after_value.strip_prefix(',') {
            Some(more) => more.trim_start(),
            None if after_value.is_empty() => "",
            None => {
                return Err(NodeAuthHeaderError::Malformed(
                    "expected ',' between parameters",
                ));
            }
        };
    }
    Ok(params)
}

fn write_quoted(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in value.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

impl fmt::Display for NodeAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME} origin=")?;
        write_quoted(f, &self.origin.to_string())?;
        f.write_str(",destination=")?;
        write_quoted(f, &self.destination.to_string())?;
        f.write_str(",key=")?;
        write_quoted(f, &self.key_id)?;
        write!(f, ",ts=\"{}\",sig=\"{}\"", self.timestamp, self.signature)
    }
}

impl FromStr for NodeAuthorization {
    type Err = NodeAuthHeaderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    fn sample() -> NodeAuthorization {
        let key = SecretKey::from_seed(&[3; 32]);
        let origin = host("a.example");
        let destination = host("b.example:8443");
        let bytes = request_signing_bytes(
            "GET",
            "/v1/x?y=1",
            &origin,
            &destination,
            1_790_000_000,
            b"",
        );
        NodeAuthorization {
            origin,
            destination,
            key_id: server_key_id(&key.public()),
            timestamp: 1_790_000_000,
            signature: key.sign(&bytes),
        }
    }

    #[test]
    fn canonical_bytes_have_the_documented_shape() {
        let bytes = request_signing_bytes(
            "get",
            "/v1/federation/lookup/alice%40b.example?x=1",
            &host("A.example"),
            &host("b.example:8443"),
            1_790_000_000,
            b"",
        );
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "pd-v1-node-request\nGET\n/v1/federation/lookup/alice%40b.example?x=1\na.example\n\
             b.example:8443\n1790000000\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_field_changes_the_bytes() {
        let base =
            || request_signing_bytes("GET", "/p", &host("a.example"), &host("b.example"), 1, b"x");
        let variants = [
            request_signing_bytes(
                "POST",
                "/p",
                &host("a.example"),
                &host("b.example"),
                1,
                b"x",
            ),
            request_signing_bytes("GET", "/q", &host("a.example"), &host("b.example"), 1, b"x"),
            request_signing_bytes("GET", "/p", &host("c.example"), &host("b.example"), 1, b"x"),
            request_signing_bytes("GET", "/p", &host("a.example"), &host("c.example"), 1, b"x"),
            request_signing_bytes("GET", "/p", &host("a.example"), &host("b.example"), 2, b"x"),
            request_signing_bytes("GET", "/p", &host("a.example"), &host("b.example"), 1, b"y"),
        ];
        for v in variants {
            assert_ne!(v, base());
        }
    }

    #[test]
    fn header_round_trips() {
        let auth = sample();
        let text = auth.to_string();
        assert!(text.starts_with(
            "PD-Node origin=\"a.example\",destination=\"b.example:8443\",key=\"ed25519:"
        ));
        assert_eq!(NodeAuthorization::parse(&text).unwrap(), auth);
    }

    #[test]
    fn header_parsing_is_tolerant_of_spacing_case_tokens_and_unknown_params() {
        let auth = sample();
        let text = format!(
            "pd-node  Origin = a.example , destination=\"b.example:8443\", extra=\"x\\\"y\", key=\"{}\",ts=1790000000, sig=\"{}\"",
            auth.key_id, auth.signature
        );
        assert_eq!(NodeAuthorization::parse(&text).unwrap(), auth);
    }

    #[test]
    fn quoted_values_unescape() {
        let params = parse_params(r#"a="x\"y\\z",b="""#).unwrap();
        assert_eq!(params[0], ("a".to_owned(), "x\"y\\z".to_owned()));
        assert_eq!(params[1], ("b".to_owned(), String::new()));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let auth = sample();
        let good = auth.to_string();
        let cases: Vec<(String, NodeAuthHeaderError)> = vec![
            (
                good.replacen("PD-Node", "Bearer", 1),
                NodeAuthHeaderError::WrongScheme,
            ),
            (
                format!("{good},origin=\"c.example\""),
                NodeAuthHeaderError::Duplicate("origin".into()),
            ),
            (
                format!("{good},ORIGIN=\"a.example\""),
                NodeAuthHeaderError::Duplicate("origin".into()),
            ),
            (
                good.replace(",ts=\"1790000000\"", ""),
                NodeAuthHeaderError::Missing("ts"),
            ),
            (
                good.replace("ts=\"1790000000\"", "ts=\"-1\""),
                NodeAuthHeaderError::BadTimestamp,
            ),
            (
                good.replace("ts=\"1790000000\"", "ts=\"99999999999999999999\""),
                NodeAuthHeaderError::BadTimestamp,
            ),
            (
                good.replace("origin=\"a.example\"", "origin=\"a b\""),
                NodeAuthHeaderError::BadHost("origin"),
            ),
            (
                good.replace(&auth.key_id, "rsa:abc"),
                NodeAuthHeaderError::BadKeyId,
            ),
            (
                good.replace(&auth.key_id, "ed25519:"),
                NodeAuthHeaderError::BadKeyId,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(NodeAuthorization::parse(&text), Err(expected), "{text}");
        }
        for text in [
            "PD-Node origin=\"a.example",
            "PD-Node origin",
            "PD-Node origin=\"a\" destination=\"b\"",
            "PD-Node origin=\"a\\",
            "PD-Node =x",
            "PD-Node origin=\"a\u{1}\"",
        ] {
            assert!(
                matches!(
                    NodeAuthorization::parse(text),
                    Err(NodeAuthHeaderError::Malformed(_))
                ),
                "{text}"
            );
        }
        assert!(matches!(
            NodeAuthorization::parse(&good.replace("sig=\"", "sig=\"AA")),
            Err(NodeAuthHeaderError::BadSignature(_))
        ));
    }

    #[test]
    fn key_ids() {
        let id = server_key_id(&SecretKey::from_seed(&[1; 32]).public());
        assert!(is_valid_key_id(&id));
        assert_eq!(id.len(), KEY_ID_PREFIX.len() + 8);
        assert!(!is_valid_key_id("ed25519:a\"b"));
        assert!(!is_valid_key_id(&format!("ed25519:{}", "a".repeat(60))));
    }

    #[test]
    fn signature_verifies_over_signing_bytes() {
        let auth = sample();
        let key = SecretKey::from_seed(&[3; 32]).public();
        key.verify(
            &auth.signing_bytes("GET", "/v1/x?y=1", b""),
            &auth.signature,
        )
        .unwrap();
        assert!(
            key.verify(
                &auth.signing_bytes("GET", "/v1/x?y=2", b""),
                &auth.signature
            )
            .is_err()
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_input_never_panics(input in "\\PC{0,300}") {
            let _ = NodeAuthorization::parse(&input);
            let _ = NodeAuthorization::parse(&format!("PD-Node {input}"));
        }

        #[test]
        fn formatted_headers_parse_back(
            ts in proptest::prelude::any::<u64>(),
            seed in proptest::prelude::any::<[u8; 32]>(),
            port in proptest::option::of(1u16..),
        ) {
            let key = SecretKey::from_seed(&seed);
            let destination = match port {
                Some(p) => host(&format!("b.example:{p}")),
                None => host("b.example"),
            };
            let auth = NodeAuthorization {
                origin: host("a.example"),
                destination,
                key_id: server_key_id(&key.public()),
                timestamp: ts,
                signature: key.sign(b"x"),
            };
            proptest::prop_assert_eq!(NodeAuthorization::parse(&auth.to_string()).unwrap(), auth);
        }
    }
}
