//! The lookup answer as a reader may rely on it: [`verify_lookup_answer`], the one check
//! every reader of a [`LookupResponse`] applies (the client, the node relaying another
//! node's answer, the fuzz targets), and [`VerifiedLookup`], the only way to hold an answer
//! that passed it.

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
