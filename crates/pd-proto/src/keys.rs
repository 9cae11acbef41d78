//! Ed25519 keys and signatures with their text forms and human fingerprints.
//!
//! Public keys and signatures travel as unpadded base64url. Verification is always
//! `verify_strict`, and small-order ("weak") public keys are refused when a key is parsed, so
//! no code path can accept one.

use std::fmt;
use std::str::FromStr;

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not valid unpadded base64url.
    #[error("not valid base64url")]
    Encoding,
    /// The decoded value has the wrong length.
    #[error("wrong length: expected {expected} bytes, got {got}")]
    Length {
        /// Expected length in bytes.
        expected: usize,
        /// Actual length in bytes.
        got: usize,
    },
    /// The bytes are not a valid curve point.
    #[error("not a valid ed25519 public key")]
    InvalidKey,
    /// The key is of small order and would let signatures verify for any message.
    #[error("weak (small-order) ed25519 public key refused")]
    WeakKey,
    /// The signature does not verify under the key.
    #[error("signature does not verify")]
    BadSignature,
    /// A secret key file is malformed.
    #[error("malformed secret key: {0}")]
    SecretKey(&'static str),
}

fn decode_fixed<const N: usize>(s: &str) -> Result<[u8; N], KeyError> {
    let bytes = BASE64URL_NOPAD
        .decode(s.as_bytes())
        .map_err(|_| KeyError::Encoding)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Length {
        expected: N,
        got: bytes.len(),
    })
}

/// An ed25519 public key that is known not to be weak.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Length of the raw key in bytes.
    pub const LENGTH: usize = 32;

    /// Parses raw key bytes, refusing invalid, non-canonical and weak keys.
    ///
    /// The encoding must be canonical: the one the decoded point compresses back to (its
    /// `y` below the field prime). ed25519-dalek accepts an encoding with `y ≥ p` and
    /// hashes those bytes as given, so two spellings of one key would verify different
    /// signatures; refusing them keeps one spelling per key (section 3 of the spec).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidKey)?;
        if key.is_weak() {
            return Err(KeyError::WeakKey);
        }
        if key.to_edwards().compress().to_bytes() != *bytes {
            return Err(KeyError::InvalidKey);
        }
        Ok(Self(key))
    }

    /// Decodes raw key bytes that [`PublicKey::from_bytes`] accepted before they were
    /// stored (a node's own database): still refused if they are not a point on the curve,
    /// but not checked again for weakness and canonical form, which cost most of a parse
    /// (a field inversion). Bytes from the network go through [`PublicKey::from_bytes`].
    pub fn from_stored_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| KeyError::InvalidKey)
    }

    /// The raw key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Verifies `signature` over `message` with `verify_strict`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        self.0
            .verify_strict(message, &signature.0)
            .map_err(|_| KeyError::BadSignature)
    }

    /// A short fingerprint for people to compare: the first 15 bytes of the SHA-256 of the
    /// key, in lowercase base32, as six groups of four characters
    /// (`abcd-efgh-ijkl-mnop-qrst-uvwx`).
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        let text = BASE32_NOPAD.encode(&digest[..15]).to_ascii_lowercase();
        let groups: Vec<&str> = (0..6).map(|i| &text[i * 4..i * 4 + 4]).collect();
        groups.join("-")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        with_base64(self.0.as_bytes(), |s| f.write_str(s))
    }
}

/// Calls `f` with the unpadded base64url text of `bytes` (at most 64), encoded on the
/// stack: keys and signatures are written on every lookup answer.
fn with_base64<R>(bytes: &[u8], f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 86];
    let len = BASE64URL_NOPAD.encode_len(bytes.len());
    let out = &mut buf[..len];
    BASE64URL_NOPAD.encode_mut(bytes, out);
    // base64url output is ASCII.
    f(std::str::from_utf8(out).unwrap_or_default())
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(&decode_fixed::<32>(s)?)
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(ed25519_dalek::Signature);

impl Signature {
    /// The raw 64 signature bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }

    /// Builds a signature from its raw bytes (validity is checked at verification).
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        Self(ed25519_dalek::Signature::from_bytes(bytes))
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        with_base64(&self.0.to_bytes(), |s| f.write_str(s))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from_bytes(&decode_fixed::<64>(s)?))
    }
}

/// An ed25519 secret key. Its `Debug` form never shows the secret.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// Prefix of the text form written to key files.
    const TEXT_PREFIX: &'static str = "pd-ed25519-secret:";

    /// Generates a new key from the operating system's random source.
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// Builds a key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message))
    }

    /// The text form stored in key files: `pd-ed25519-secret:` followed by the base64url seed.
    pub fn to_text(&self) -> String {
        format!(
            "{}{}\n",
            Self::TEXT_PREFIX,
            BASE64URL_NOPAD.encode(&self.0.to_bytes())
        )
    }

    /// The key as a PKCS#8 v1 document (DER, RFC 8410: the seed without the public key),
    /// the form TLS libraries and tools load ed25519 keys from. The bytes are secret: write
    /// them only to private files.
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, KeyError> {
        use ed25519_dalek::pkcs8::{EncodePrivateKey as _, KeypairBytes};
        let document = KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_der()
        .map_err(|_| KeyError::SecretKey("cannot encode as PKCS#8"))?;
        Ok(document.as_bytes().to_vec())
    }

    /// Parses the text form written by [`SecretKey::to_text`].
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let body = text
            .trim()
            .strip_prefix(Self::TEXT_PREFIX)
            .ok_or(KeyError::SecretKey("missing 'pd-ed25519-secret:' prefix"))?;
        let seed = decode_fixed::<32>(body).map_err(|_| KeyError::SecretKey("bad seed"))?;
        Ok(Self::from_seed(&seed))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public())
    }
}

macro_rules! text_serde {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                with_base64(&self.to_bytes(), |s| serializer.serialize_str(s))
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_serde!(PublicKey);
text_serde!(Signature);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_text_round_trip_and_fingerprint_shape() {
        let key = SecretKey::from_seed(&[7; 32]).public();
        let text = key.to_string();
        assert_eq!(text.len(), 43);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        let fp = key.fingerprint();
        assert_eq!(fp.len(), 29);
        assert_eq!(fp.split('-').count(), 6);
        assert_ne!(fp, SecretKey::from_seed(&[8; 32]).public().fingerprint());
    }

    #[test]
    fn stored_keys_decode_to_the_same_key_and_bytes_off_the_curve_are_refused() {
        let key = SecretKey::from_seed(&[9; 32]).public();
        assert_eq!(PublicKey::from_stored_bytes(&key.to_bytes()), Ok(key));
        // No point has y = 2 (its x would need the square root of a non-residue).
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(PublicKey::from_bytes(&off_curve), Err(KeyError::InvalidKey));
        assert_eq!(
            PublicKey::from_stored_bytes(&off_curve),
            Err(KeyError::InvalidKey)
        );
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity), Err(KeyError::WeakKey));
        assert_eq!(
            BASE64URL_NOPAD.encode(&identity).parse::<PublicKey>(),
            Err(KeyError::WeakKey)
        );
    }

    #[test]
    fn bad_encodings_are_refused() {
        assert_eq!("!!".parse::<PublicKey>(), Err(KeyError::Encoding));
        assert_eq!(
            "AAAA".parse::<PublicKey>(),
            Err(KeyError::Length {
                expected: 32,
                got: 3
            })
        );
        assert!("AAAA".parse::<Signature>().is_err());
    }

    #[test]
    fn signatures_verify_strictly() {
        let sk = SecretKey::from_seed(&[1; 32]);
        let sig = sk.sign(b"hello");
        sk.public().verify(b"hello", &sig).unwrap();
        assert_eq!(
            sk.public().verify(b"hellO", &sig),
            Err(KeyError::BadSignature)
        );
        let other = SecretKey::from_seed(&[2; 32]).public();
        assert_eq!(other.verify(b"hello", &sig), Err(KeyError::BadSignature));
    }

    #[test]
    fn secret_key_text_round_trip() {
        let sk = SecretKey::from_seed(&[9; 32]);
        let back = SecretKey::from_text(&sk.to_text()).unwrap();
        assert_eq!(back.public(), sk.public());
        assert!(SecretKey::from_text("garbage").is_err());
        assert!(!format!("{sk:?}").contains(&BASE64URL_NOPAD.encode(&[9; 32])));
    }
}
