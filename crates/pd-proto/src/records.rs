//! The payloads users sign: registration, presence, withdrawal, key rotation, deletion and
//! login, with the checks every verifier applies to them.
//!
//! Every payload carries the full address it is about and a `seq`: a microsecond Unix
//! timestamp that only grows. A node keeps the highest `seq` it accepted per account, so a
//! replayed operation is refused, and refuses operations dated outside the allowed clock skew.

use serde::{Deserialize, Serialize};

use crate::address::{Address, Host};
use crate::keys::PublicKey;
use crate::signed::{Purpose, Record};
use crate::{MAX_CLOCK_SKEW_MICROS, MAX_PRESENCE_TTL_SECS};

/// Most endpoints a presence record may list.
pub const MAX_ENDPOINTS: usize = 8;
/// Longest endpoint URL, in bytes.
pub const MAX_ENDPOINT_LEN: usize = 256;

/// Why a record's content (not its signature) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record is dated too far in the future.
    #[error("record is dated {0} s in the future (more than the allowed clock skew)")]
    FromTheFuture(u64),
    /// The operation is dated too far in the past.
    #[error("operation is dated {0} s in the past (more than the allowed clock skew)")]
    TooOld(u64),
    /// The presence record has already expired.
    #[error("record has already expired")]
    Expired,
    /// The presence record claims a lifetime beyond the maximum.
    #[error("record expires {0} s from now, beyond the maximum of {MAX_PRESENCE_TTL_SECS} s")]
    ExpiryTooFar(u64),
    /// An endpoint is malformed.
    #[error("endpoint {0:?} is invalid: {1}")]
    BadEndpoint(String, &'static str),
    /// Too many endpoints.
    #[error("a record may list at most {MAX_ENDPOINTS} endpoints")]
    TooManyEndpoints,
}

/// The start of [`RecordError::BadEndpoint`]'s message.
const BAD_ENDPOINT_PREFIX: &str = "endpoint \"";

impl RecordError {
    /// Whether `message` (a payload decoding error) reports a malformed endpoint: serde
    /// passes the endpoint's [`RecordError::BadEndpoint`] on as text only, and this is how
    /// a decoder tells it from a malformed payload.
    pub fn is_endpoint_message(message: &str) -> bool {
        message.starts_with(BAD_ENDPOINT_PREFIX)
    }
}

/// Where a user can be reached: a URL such as `tcp://203.0.113.5:7000` with a scheme, a host
/// and a port, and nothing else.
///
/// The accepted form is purely syntactic, so that an implementation without a WHATWG URL
/// parser accepts exactly the same strings (section 5.2 of the spec):
/// `scheme "://" host [":" port] ["/"]`, where `host [":" port]` is a host of section 2.2
/// (so no user information, no percent-encoding, no IPv6 zone, a port of 1 to 65535) and
/// the port may be left out only for a scheme with a default port ([`default_port`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint(String);

/// The default port of the WHATWG URL Standard's special schemes, the only schemes whose
/// endpoints may leave the port out (compared case-insensitively).
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        _ => None,
    }
}

impl Endpoint {
    /// Parses and validates an endpoint URL.
    pub fn parse(s: &str) -> Result<Self, RecordError> {
        let bad = |why| RecordError::BadEndpoint(s.chars().take(64).collect(), why);
        if s.len() > MAX_ENDPOINT_LEN {
            return Err(bad("longer than 256 bytes"));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("only printable ASCII characters are allowed"));
        }
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("not of the form scheme://host:port"))?;
        let mut chars = scheme.chars();
        let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return Err(bad("malformed scheme"));
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err(bad("a path is not allowed"));
        }
        if authority.contains('@') {
            return Err(bad("user information is not allowed"));
        }
        if authority.contains(['?', '#']) {
            return Err(bad("a query or fragment is not allowed"));
        }
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let host = Host::parse(authority).map_err(|_| bad("not a valid host and port"))?;
        if host.port().is_none() && default_port(scheme).is_none() {
            return Err(bad("no port"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The endpoint URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Endpoint {
    type Error = RecordError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> Self {
        e.0
    }
}

/// Checks that an operation's `seq` is within the allowed clock skew of `now_micros`.
pub fn check_fresh(seq: u64, now_micros: u64) -> Result<(), RecordError> {
    check_not_future(seq, now_micros)?;
    let age = now_micros.saturating_sub(seq);
    if age > MAX_CLOCK_SKEW_MICROS {
        return Err(RecordError::TooOld(age / 1_000_000));
    }
    Ok(())
}

fn check_not_future(seq: u64, now_micros: u64) -> Result<(), RecordError> {
    let ahead = seq.saturating_sub(now_micros);
    if ahead > MAX_CLOCK_SKEW_MICROS {
        return Err(RecordError::FromTheFuture(ahead / 1_000_000));
    }
    Ok(())
}

/// Creates an account: binds `address` to `public_key`. Signed by that same key, which
/// proves possession of the private half.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The address being registered.
    pub address: Address,
    /// The account key.
    pub public_key: PublicKey,
    /// Microsecond timestamp of the request.
    pub seq: u64,
}

/// Where and until when a user is reachable. Signed by the account key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presence {
    /// The user this record is about.
    pub address: Address,
    /// How to reach the user, best first.
    pub endpoints: Vec<Endpoint>,
    /// Version: a microsecond timestamp, strictly greater than any earlier record's.
    pub seq: u64,
    /// Unix time (seconds) after which the record must not be served.
    pub expires_at: u64,
}

impl Presence {
    /// Checks the record's dates and endpoints against `now_micros`.
    pub fn validate(&self, now_micros: u64) -> Result<(), RecordError> {
        check_not_future(self.seq, now_micros)?;
        let now_secs = now_micros / 1_000_000;
        if self.expires_at <= now_secs {
            return Err(RecordError::Expired);
        }
        let lifetime = self.expires_at - now_secs;
        if lifetime > MAX_PRESENCE_TTL_SECS {
            return Err(RecordError::ExpiryTooFar(lifetime));
        }
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(RecordError::TooManyEndpoints);
        }
        Ok(())
    }

    /// Whether the record is still valid at `now_secs`.
    pub fn is_live(&self, now_secs: u64) -> bool {
        self.expires_at > now_secs
    }
}

/// Withdraws the presence record (the user goes offline). Signed by the account key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    /// The user going offline.
    pub address: Address,
    /// Microsecond timestamp of the request.
    pub seq: u64,
}

/// Replaces the account key. Signed by the old key and countersigned by the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// The account whose key changes.
    pub address: Address,
    /// The key that replaces the current one.
    pub new_key: PublicKey,
    /// Microsecond timestamp of the request.
    pub seq: u64,
}

/// Deletes the account. Signed by the account key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deletion {
    /// The account to delete.
    pub address: Address,
    /// Microsecond timestamp of the request.
    pub seq: u64,
}

/// Asks for a short-lived lookup session token. Signed by the account key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The account logging in.
    pub address: Address,
    /// Microsecond timestamp of the request.
    pub seq: u64,
}

macro_rules! record {
    ($ty:ty, $purpose:expr) => {
        impl Record for $ty {
            const PURPOSE: Purpose = $purpose;
            fn address(&self) -> &Address {
                &self.address
            }
        }
    };
}

record!(Registration, Purpose::Register);
record!(Presence, Purpose::Presence);
record!(Withdrawal, Purpose::Withdraw);
record!(Rotation, Purpose::Rotate);
record!(Deletion, Purpose::Delete);
record!(Login, Purpose::Login);

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000_000;

    fn presence(seq: u64, expires_at: u64) -> Presence {
        Presence {
            address: Address::parse("alice@a.example").unwrap(),
            endpoints: vec![Endpoint::parse("tcp://203.0.113.5:7000").unwrap()],
            seq,
            expires_at,
        }
    }

    #[test]
    fn presence_dates_are_checked() {
        let now_s = NOW / 1_000_000;
        presence(NOW, now_s + 3600).validate(NOW).unwrap();
        assert_eq!(
            presence(NOW + 600_000_000, now_s + 3600).validate(NOW),
            Err(RecordError::FromTheFuture(600))
        );
        assert_eq!(
            presence(NOW, now_s).validate(NOW),
            Err(RecordError::Expired)
        );
        assert!(matches!(
            presence(NOW, now_s + MAX_PRESENCE_TTL_SECS + 1).validate(NOW),
            Err(RecordError::ExpiryTooFar(_))
        ));
    }

    #[test]
    fn operations_must_be_fresh() {
        check_fresh(NOW - 1_000_000, NOW).unwrap();
        assert_eq!(
            check_fresh(NOW - 600_000_000, NOW),
            Err(RecordError::TooOld(600))
        );
        assert_eq!(
            check_fresh(NOW + 600_000_000, NOW),
            Err(RecordError::FromTheFuture(600))
        );
    }

    #[test]
    fn endpoints_are_validated() {
        for good in [
            "tcp://[2001:db8::1]:7000",
            "tls://chat.example:443",
            "https://chat.example:443",
            "https://chat.example",
            "HTTPS://Chat.Example",
            "tcp://203.0.113.5:7000/",
            "tcp://chat.example.:07000",
            "x-pd+v1.2://h:1",
        ] {
            Endpoint::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "nonsense",
            "tcp://host",
            "tcp://user@host:1",
            "tcp://@host:1",
            "tcp://host:1/path",
            "tcp://host:1//",
            "tcp://host:1?q",
            "tcp://host:1?",
            "tcp://host:1#",
            "tcp://:1",
            "tcp://",
            "tcp://host:0",
            "tcp://host:65536",
            "tcp://h%41st:1",
            "tcp://[fe80::1%25eth0]:1",
            "tcp://1.2.3.999:1",
            "tcp://under_score:1",
            " tcp://host:1",
            "tcp://ho st:1",
            "tcp://bücher.example:1",
            "tcp:host:1",
            "1tcp://host:1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} accepted");
        }
        let error = serde_json::from_str::<Endpoint>("\"x\"").unwrap_err();
        assert!(
            RecordError::is_endpoint_message(&error.to_string()),
            "{error}"
        );
        let error = Endpoint::parse("tcp://h").unwrap_err();
        assert!(
            RecordError::is_endpoint_message(&error.to_string()),
            "{error}"
        );
        let error = serde_json::from_str::<Endpoint>("7").unwrap_err();
        assert!(
            !RecordError::is_endpoint_message(&error.to_string()),
            "{error}"
        );
    }
}
