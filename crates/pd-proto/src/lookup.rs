//! The lookup answer as a reader may rely on it: [`verify_lookup_answer`], the one check
//! every reader of a [`LookupResponse`] applies (the client, the node relaying another
//! node's answer, the fuzz targets), and [`VerifiedLookup`], the only way to hold an answer
//! that passed it. Also the lookup's query vocabulary ([`LookupMode`]) and the fast
//! writers of an answer: a node's answer about its own user
//! ([`LookupResponse::write_local`]), and an answer served many times from a cache
//! ([`LookupResponse::json_head`] once, [`LookupResponse::write_with_head`] per answer).

use crate::rotation::{link_known_key, verify_rotation_chain};
use crate::wire::{LookupResponse, RotationProof, Source};
use crate::{Address, Presence, PublicKey, RecordError, RotationError, SignedError};

/// Why a lookup answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupAnswerError {
    /// The answer is about another address than the one asked.
    #[error("asked for {asked}, the answer is about {answered}")]
    AddressMismatch {
        /// The address that was asked.
        asked: String,
        /// The address in the answer.
        answered: String,
    },
    /// The answer's key-rotation proofs do not form a chain ending at the answer's key.
    #[error("key rotation proofs do not verify: {0}")]
    Rotation(#[from] RotationError),
    /// The presence record does not verify under the answer's key for the asked address.
    #[error("signed record does not verify: {0}")]
    Signature(#[from] SignedError),
    /// The presence record verifies but its content is refused at the time of reading
    /// ([`VerifiedLookup::check_record`]; an expired record is dropped instead).
    #[error("presence record refused: {0}")]
    Record(RecordError),
}

/// A lookup answer that passed [`verify_lookup_answer`]: it is about exactly the asked
/// address, its rotation proofs form a chain ending at its key, and its presence record (if
/// any) verifies under that key for that address. There is no other way to make one.
#[derive(Debug, Clone)]
pub struct VerifiedLookup {
    response: LookupResponse,
    presence: Option<Presence>,
}

/// Checks a lookup answer for `asked`: it is about exactly `asked`, its key-rotation proofs
/// form a chain that ends at its key, and its presence record verifies under that key for
/// `asked`. The answer is kept as received.
pub fn verify_lookup_answer(
    asked: &Address,
    response: LookupResponse,
) -> Result<VerifiedLookup, LookupAnswerError> {
    if &response.address != asked {
        return Err(LookupAnswerError::AddressMismatch {
            asked: asked.to_string(),
            answered: response.address.to_string(),
        });
    }
    verify_rotation_chain(asked, &response.rotations, &response.public_key)?;
    let presence = response
        .presence
        .as_ref()
        .map(|signed| signed.verify(&response.public_key, asked))
        .transpose()?;
    Ok(VerifiedLookup { response, presence })
}

impl VerifiedLookup {
    /// The answer as received (or as [`VerifiedLookup::check_record`] left it).
    pub fn response(&self) -> &LookupResponse {
        &self.response
    }

    /// The answer, giving up the decoded presence record.
    pub fn into_response(self) -> LookupResponse {
        self.response
    }

    /// The decoded, verified presence record, if the answer carries one.
    pub fn presence(&self) -> Option<&Presence> {
        self.presence.as_ref()
    }

    /// The user's current key.
    pub fn public_key(&self) -> &PublicKey {
        &self.response.public_key
    }

    /// The proofs of the user's most recent key rotations, oldest first; the last one
    /// introduces [`VerifiedLookup::public_key`]. Empty when the key was never rotated.
    pub fn rotations(&self) -> &[RotationProof] {
        &self.response.rotations
    }

    /// Where the answer came from.
    pub fn source(&self) -> Source {
        self.response.source
    }

    /// Whether `known`, a key of this user remembered from earlier (trust on first use),
    /// leads to the current key: `Ok(0)` when it is the current key, `Ok(n)` when the
    /// answer proves `n` rotations from it to the current key, and
    /// [`RotationError::Unlinked`] when nothing links them (a key change the user did not
    /// sign, or one older than the proofs a node keeps).
    pub fn rotated_from(&self, known: &PublicKey) -> Result<usize, RotationError> {
        link_known_key(
            &self.response.address,
            known,
            &self.response.rotations,
            &self.response.public_key,
        )
    }

    /// Whether the user has a presence record that is still valid at `now_secs`.
    pub fn is_online(&self, now_secs: u64) -> bool {
        self.presence.as_ref().is_some_and(|p| p.is_live(now_secs))
    }

    /// The node's reading of another node's answer before it caches or relays it: the
    /// presence record's content is checked at `now_micros` (an expired record is dropped
    /// from the answer, any other fault refuses it), and `ttl` is bounded by the record's
    /// remaining lifetime.
    pub fn check_record(mut self, now_micros: u64) -> Result<Self, LookupAnswerError> {
        let Some(presence) = &self.presence else {
            return Ok(self);
        };
        match presence.validate(now_micros) {
            Ok(()) => {
                let left = presence.expires_at.saturating_sub(now_micros / 1_000_000);
                self.response.ttl = self.response.ttl.min(left);
            }
            Err(RecordError::Expired) => {
                self.response.presence = None;
                self.presence = None;
            }
            Err(e) => return Err(LookupAnswerError::Record(e)),
        }
        Ok(self)
    }

    /// The same answer, marked as coming from `source`.
    pub fn with_source(mut self, source: Source) -> Self {
        self.response.source = source;
        self
    }
}

/// How a node answers a lookup of another domain's user: the `mode` query parameter of
/// `GET /v1/lookup/{address}` (absent means normal). A node's own users are answered the
/// same way in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LookupMode {
    /// Use the cache when fresh, ask the user's home node otherwise (serving a stale answer
    /// if it fails).
    #[default]
    Normal,
    /// Answer from a fresh cache entry only (an expired one is not served); never contact
    /// the home node.
    CacheOnly,
    /// Ask the user's home node even when the cache is fresh, and store the new answer.
    Refresh,
}

impl LookupMode {
    /// The name of the query parameter.
    pub const QUERY_PARAMETER: &'static str = "mode";

    /// The value of the query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::CacheOnly => "cache-only",
            Self::Refresh => "refresh",
        }
    }

    /// The mode a query parameter value names, if any.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Normal, Self::CacheOnly, Self::Refresh]
            .into_iter()
            .find(|mode| mode.as_str() == value)
    }
}

impl LookupResponse {
    /// Writes, to `out`, the answer about one of a node's own users from what the node
    /// stores: the presence envelope and the rotation proofs as JSON text, placed as they
    /// are (no parsing, no re-serialising). `presence` is `None` without a record,
    /// `rotations` is `None` when the key was never rotated (the member is then absent).
    /// The bytes are those `serde_json` writes for the same [`LookupResponse`] with
    /// `source: "local"` (a test holds them to it).
    pub fn write_local(
        out: &mut Vec<u8>,
        address: &Address,
        public_key: &PublicKey,
        presence: Option<&str>,
        rotations: Option<&str>,
        ttl: u64,
    ) -> Result<(), serde_json::Error> {
        out.reserve(160 + presence.map_or(4, str::len) + rotations.map_or(0, |r| r.len() + 14));
        // Addresses and keys serialise as JSON strings without characters that need
        // escaping, but go through serde anyway so the output is valid JSON by construction.
        out.extend_from_slice(b"{\"address\":");
        serde_json::to_writer(&mut *out, address)?;
        out.extend_from_slice(b",\"public_key\":");
        serde_json::to_writer(&mut *out, public_key)?;
        out.extend_from_slice(b",\"presence\":");
        out.extend_from_slice(presence.unwrap_or("null").as_bytes());
        if let Some(rotations) = rotations {
            out.extend_from_slice(b",\"rotations\":");
            out.extend_from_slice(rotations.as_bytes());
        }
        write_tail(out, Source::Local, ttl)
    }

    /// The answer's members before `source` as JSON text: the opening brace, `address`,
    /// `public_key`, `presence` and, when there are any, `rotations`. An answer served many
    /// times (from a cache) is encoded once this way; [`LookupResponse::write_with_head`]
    /// then completes it for each request.
    pub fn json_head(&self) -> Result<String, serde_json::Error> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"address\":");
        serde_json::to_writer(&mut out, &self.address)?;
        out.extend_from_slice(b",\"public_key\":");
        serde_json::to_writer(&mut out, &self.public_key)?;
        out.extend_from_slice(b",\"presence\":");
        serde_json::to_writer(&mut out, &self.presence)?;
        if !self.rotations.is_empty() {
            out.extend_from_slice(b",\"rotations\":");
            serde_json::to_writer(&mut out, &self.rotations)?;
        }
        // serde_json writes UTF-8.
        String::from_utf8(out).map_err(|e| serde_json::Error::io(std::io::Error::other(e)))
    }

    /// Writes, to `out`, the answer whose members before `source` are `head` (from
    /// [`LookupResponse::json_head`]) with `source` and `ttl`: the bytes `serde_json` writes
    /// for that answer (a test holds them to it).
    pub fn write_with_head(
        out: &mut Vec<u8>,
        head: &str,
        source: Source,
        ttl: u64,
    ) -> Result<(), serde_json::Error> {
        out.reserve(head.len() + 40);
        out.extend_from_slice(head.as_bytes());
        write_tail(out, source, ttl)
    }
}

/// The members after `rotations`, and the closing brace.
fn write_tail(out: &mut Vec<u8>, source: Source, ttl: u64) -> Result<(), serde_json::Error> {
    use std::io::Write as _;
    out.extend_from_slice(b",\"source\":");
    serde_json::to_writer(&mut *out, &source)?;
    write!(out, ",\"ttl\":{ttl}}}").map_err(serde_json::Error::io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Endpoint, Rotation, SecretKey, Signed};

    fn address() -> Address {
        Address::parse("alice@a.example").unwrap()
    }

    fn answer(with_presence: bool, with_rotation: bool) -> LookupResponse {
        let (old, new) = (
            SecretKey::from_seed(&[1; 32]),
            SecretKey::from_seed(&[2; 32]),
        );
        let presence = with_presence.then(|| {
            Signed::sign(
                &new,
                &Presence {
                    address: address(),
                    endpoints: vec![Endpoint::parse("tcp://192.0.2.1:7000").unwrap()],
                    seq: 1_700_000_000_000_000,
                    expires_at: 1_700_000_600,
                },
            )
        });
        let rotations = if with_rotation {
            let rotation = Signed::sign(
                &old,
                &Rotation {
                    address: address(),
                    new_key: new.public(),
                    seq: 1_600_000_000_000_000,
                },
            );
            let countersignature = rotation.countersign(&new, &address());
            vec![RotationProof::new(old.public(), rotation, countersignature)]
        } else {
            Vec::new()
        };
        LookupResponse {
            address: address(),
            public_key: new.public(),
            presence,
            rotations,
            source: Source::Local,
            ttl: 42,
        }
    }

    #[test]
    fn an_answer_written_from_its_head_is_what_serde_writes() {
        for (with_presence, with_rotation) in
            [(false, false), (true, false), (false, true), (true, true)]
        {
            let mut expected = answer(with_presence, with_rotation);
            let head = expected.json_head().unwrap();
            for (source, ttl) in [
                (Source::Cache, 0),
                (Source::Remote, 7),
                (Source::Stale, 3600),
            ] {
                expected.source = source;
                expected.ttl = ttl;
                let mut written = Vec::new();
                LookupResponse::write_with_head(&mut written, &head, source, ttl).unwrap();
                assert_eq!(
                    String::from_utf8(written).unwrap(),
                    serde_json::to_string(&expected).unwrap(),
                    "presence {with_presence}, rotation {with_rotation}, {source:?}"
                );
            }
        }
    }

    #[test]
    fn the_local_writer_writes_what_serde_writes() {
        for (with_presence, with_rotation) in
            [(false, false), (true, false), (false, true), (true, true)]
        {
            let expected = answer(with_presence, with_rotation);
            let presence = expected
                .presence
                .as_ref()
                .map(|p| serde_json::to_string(p).unwrap());
            let rotations = (!expected.rotations.is_empty())
                .then(|| serde_json::to_string(&expected.rotations).unwrap());
            let mut written = Vec::new();
            LookupResponse::write_local(
                &mut written,
                &expected.address,
                &expected.public_key,
                presence.as_deref(),
                rotations.as_deref(),
                expected.ttl,
            )
            .unwrap();
            assert_eq!(
                String::from_utf8(written.clone()).unwrap(),
                serde_json::to_string(&expected).unwrap(),
                "presence {with_presence}, rotation {with_rotation}"
            );
            let read: LookupResponse = serde_json::from_slice(&written).unwrap();
            assert_eq!(
                serde_json::to_value(read).unwrap(),
                serde_json::to_value(&expected).unwrap()
            );
        }
    }

    #[test]
    fn the_writer_answers_verify_and_lookup_modes_parse_back() {
        let written = answer(true, true);
        let verified = verify_lookup_answer(&address(), written.clone()).unwrap();
        assert_eq!(
            verified.rotated_from(&SecretKey::from_seed(&[1; 32]).public()),
            Ok(1)
        );
        assert!(verified.presence().is_some());
        for mode in [
            LookupMode::Normal,
            LookupMode::CacheOnly,
            LookupMode::Refresh,
        ] {
            assert_eq!(LookupMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(LookupMode::parse("Refresh"), None);
    }
}
