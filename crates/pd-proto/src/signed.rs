//! Signed envelopes and their canonical signing bytes.
//!
//! A signed record travels as `{"payload": B64URL(bytes), "signature": B64URL(sig)}`. The
//! payload bytes are the JSON document the signer produced; they are kept and served exactly
//! as received, so any later reader can check the signature itself. The signature is made
//! over the *signing bytes*:
//!
//! ```text
//! "pd-v1" 0x0A purpose 0x0A address 0x0A payload
//! ```
//!
//! where `purpose` names what the signature is for (`presence`, `register`, ...) and
//! `address` is the normalised `name@host` the record is about. A signature made for one
//! purpose, or for an address at another host, is therefore useless anywhere else.

use std::fmt;
use std::marker::PhantomData;

use data_encoding::BASE64URL_NOPAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::keys::{KeyError, PublicKey, SecretKey, Signature};
use crate::records::RecordError;

/// Largest accepted payload, in bytes.
pub const MAX_PAYLOAD_LEN: usize = 4096;

/// The domain-separation tag that starts every signing input.
pub const SIGNING_TAG: &str = "pd-v1";

/// What a signature is for. Each purpose has its own string in the signing bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// Creating an account (proof of possession of the key).
    Register,
    /// Publishing a presence record.
    Presence,
    /// Withdrawing the presence record.
    Withdraw,
    /// Key rotation, signed by the old key.
    Rotate,
    /// Key rotation, countersigned by the new key (proof of possession).
    RotateAccept,
    /// Deleting the account.
    Delete,
    /// Obtaining a lookup session token.
    Login,
    /// A line of a group conversation, signed by its author (section 12.6).
    GroupLine,
    /// A change of a group's membership, signed by the member who made it (section 12.6).
    GroupMember,
}

impl Purpose {
    /// The purpose string placed in the signing bytes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Presence => "presence",
            Self::Withdraw => "withdraw",
            Self::Rotate => "rotate",
            Self::RotateAccept => "rotate-accept",
            Self::Delete => "delete",
            Self::Login => "login",
            Self::GroupLine => "group-line",
            Self::GroupMember => "group-member",
        }
    }
}

/// The exact bytes a signature covers.
pub fn signing_bytes(purpose: Purpose, address: &Address, payload: &[u8]) -> Vec<u8> {
    let address = address.to_string();
    let mut out = Vec::with_capacity(
        SIGNING_TAG.len() + purpose.as_str().len() + address.len() + payload.len() + 3,
    );
    out.extend_from_slice(SIGNING_TAG.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(purpose.as_str().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(address.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// A payload type that can be signed: it knows its purpose and the address it is about.
pub trait Record: Serialize + DeserializeOwned {
    /// The purpose string used in the signing bytes.
    const PURPOSE: Purpose;
    /// The address this record is about.
    fn address(&self) -> &Address;
}

/// Why a signed envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignedError {
    /// The payload is larger than [`MAX_PAYLOAD_LEN`].
    #[error("payload is larger than {MAX_PAYLOAD_LEN} bytes")]
    TooLarge,
    /// The payload is not valid JSON of the expected shape.
    #[error("payload is malformed: {0}")]
    Malformed(String),
    /// The payload has the expected shape but a value that a record may not hold (a
    /// malformed presence endpoint): the spec's `invalid-record`, not `invalid-request`.
    #[error("record content is not acceptable: {0}")]
    Content(String),
    /// The payload is about another address than the one expected.
    #[error("record is for {found}, expected {expected}")]
    AddressMismatch {
        /// The address the request was about.
        expected: String,
        /// The address the payload names.
        found: String,
    },
    /// The signature does not verify.
    #[error("signature is invalid: {0}")]
    Signature(#[from] KeyError),
}

/// A payload of type `T` with a signature over its signing bytes.
pub struct Signed<T> {
    payload: Vec<u8>,
    signature: Signature,
    _record: PhantomData<fn() -> T>,
}

impl<T: Record> Signed<T> {
    /// Serialises `record` and signs it with `key`.
    pub fn sign(key: &SecretKey, record: &T) -> Self {
        Self::sign_as(key, T::PURPOSE, record)
    }

    /// Signs `record` for a specific purpose (used for countersignatures).
    fn sign_as(key: &SecretKey, purpose: Purpose, record: &T) -> Self {
        // Serialising plain data structs to JSON cannot fail.
        let payload = serde_json::to_vec(record).unwrap_or_default();
        let signature = key.sign(&signing_bytes(purpose, record.address(), &payload));
        Self {
            payload,
            signature,
            _record: PhantomData,
        }
    }

    /// Rebuilds an envelope from received parts (nothing is checked yet).
    pub fn from_parts(payload: Vec<u8>, signature: Signature) -> Self {
        Self {
            payload,
            signature,
            _record: PhantomData,
        }
    }

    /// Decodes the payload without checking the signature. Use only to find the key to
    /// verify with; never act on the result before [`Signed::verify`].
    pub fn decode_unverified(&self) -> Result<T, SignedError> {
        if self.payload.len() > MAX_PAYLOAD_LEN {
            return Err(SignedError::TooLarge);
        }
        serde_json::from_slice(&self.payload).map_err(|e| {
            let message = e.to_string();
            if RecordError::is_endpoint_message(&message) {
                SignedError::Content(message)
            } else {
                SignedError::Malformed(message)
            }
        })
    }

    /// Decodes the payload, checks that it is about `expected`, and verifies the signature
    /// under `key`. Only a record that passes all three is returned.
    pub fn verify(&self, key: &PublicKey, expected: &Address) -> Result<T, SignedError> {
        self.verify_as(key, T::PURPOSE, expected)
    }

    fn verify_as(
        &self,
        key: &PublicKey,
        purpose: Purpose,
        expected: &Address,
    ) -> Result<T, SignedError> {
        let record = self.decode_unverified()?;
        if record.address() != expected {
            return Err(SignedError::AddressMismatch {
                expected: expected.to_string(),
                found: record.address().to_string(),
            });
        }
        key.verify(
            &signing_bytes(purpose, expected, &self.payload),
            &self.signature,
        )?;
        Ok(record)
    }

    /// The payload bytes exactly as signed.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }
}

/// Countersignature of a key rotation by the new key, over the rotation payload.
impl Signed<crate::records::Rotation> {
    /// Signs the same payload with the new key under the `rotate-accept` purpose.
    pub fn countersign(&self, new_key: &SecretKey, address: &Address) -> Signature {
        new_key.sign(&signing_bytes(
            Purpose::RotateAccept,
            address,
            &self.payload,
        ))
    }

    /// Verifies the new key's countersignature.
    pub fn verify_countersignature(
        &self,
        new_key: &PublicKey,
        address: &Address,
        signature: &Signature,
    ) -> Result<(), SignedError> {
        new_key.verify(
            &signing_bytes(Purpose::RotateAccept, address, &self.payload),
            signature,
        )?;
        Ok(())
    }
}

impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Self {
            payload: self.payload.clone(),
            signature: self.signature,
            _record: PhantomData,
        }
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.payload == other.payload && self.signature == other.signature
    }
}

impl<T> Eq for Signed<T> {}

impl<T> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("payload", &String::from_utf8_lossy(&self.payload))
            .field("signature", &self.signature)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    payload: String,
    signature: Signature,
}

impl<T> Serialize for Signed<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Envelope {
            payload: BASE64URL_NOPAD.encode(&self.payload),
            signature: self.signature,
        }
        .serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Signed<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let env = Envelope::deserialize(deserializer)?;
        if env.payload.len() > MAX_PAYLOAD_LEN * 4 / 3 + 4 {
            return Err(serde::de::Error::custom(SignedError::TooLarge));
        }
        let payload = BASE64URL_NOPAD
            .decode(env.payload.as_bytes())
            .map_err(|_| serde::de::Error::custom("payload is not valid base64url"))?;
        Ok(Self {
            payload,
            signature: env.signature,
            _record: PhantomData,
        })
    }
}
