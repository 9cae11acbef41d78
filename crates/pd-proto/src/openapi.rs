//! OpenAPI schemas of the types that serialise as strings or envelopes (feature `openapi`),
//! with the constraints a node enforces: patterns and lengths that generated requests can
//! rely on (section 2.2 for addresses, section 3 for keys and signatures).
//!
//! The patterns describe the normal forms a node writes, which it also accepts. They are a
//! little narrower than what a node accepts in requests (it also takes upper case,
//! trailing dots and Unicode host names, and normalises them), and the last label of a
//! DNS name starts with a letter (as every top-level domain does), which keeps generated
//! hosts from reading as IPv4 numbers (`a@0`, `a@b.0x`), which section 2.2 refuses.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::address::{Address, Host};
use crate::keys::{PublicKey, Signature};
use crate::signed::{MAX_PAYLOAD_LEN, Signed};

/// The name of an address in normal form: 1 to 64 characters, lowercase (section 2.2).
const NAME: &str = "[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?";

/// A DNS name in normal form, its last label starting with a letter.
const DNS_NAME: &str =
    "(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\\.)*[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?";

/// An IPv4 address as a canonical dotted quad.
const IPV4: &str = "(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}\
                    (?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";

/// An IPv6 address in RFC 4291 text form, lowercase, in brackets.
const IPV6: &str = "\\[(?:(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\
                    |(?:[0-9a-f]{1,4}:){1,7}:\
                    |(?:[0-9a-f]{1,4}:){1,6}:[0-9a-f]{1,4}\
                    |(?:[0-9a-f]{1,4}:){1,5}(?::[0-9a-f]{1,4}){1,2}\
                    |(?:[0-9a-f]{1,4}:){1,4}(?::[0-9a-f]{1,4}){1,3}\
                    |(?:[0-9a-f]{1,4}:){1,3}(?::[0-9a-f]{1,4}){1,4}\
                    |(?:[0-9a-f]{1,4}:){1,2}(?::[0-9a-f]{1,4}){1,5}\
                    |[0-9a-f]{1,4}:(?::[0-9a-f]{1,4}){1,6}\
                    |:(?:(?::[0-9a-f]{1,4}){1,7}|:)\
                    |::ffff:(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}\
                    (?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))\\]";

/// A port from 1 to 65535 without leading zeros.
const PORT: &str = "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}\
                    |655[0-2][0-9]|6553[0-5])";

/// Longest address in normal form, in bytes (section 2.2, step 8).
pub const MAX_ADDRESS_LEN: usize = 255;

/// Longest host in normal form with a port: a DNS name of 253 bytes and `:65535`.
const MAX_HOST_LEN: usize = 253 + 6;

/// The pattern of a host in normal form with an optional port, without anchors.
pub fn host_pattern() -> String {
    format!("(?:{DNS_NAME}|{IPV4}|{IPV6})(?::{PORT})?")
}

/// The pattern of an address in normal form, anchored.
pub fn address_pattern() -> String {
    format!("^{NAME}@{}$", host_pattern())
}

/// The pattern of the addresses of one node's users, anchored: any name at `host`.
pub fn local_address_pattern(host: &Host) -> String {
    format!("^{NAME}@{}$", escape(&host.to_string()))
}

/// The pattern of a WebFinger resource: `acct:` and an address, anchored.
pub fn acct_pattern() -> String {
    format!("^acct:{NAME}@{}$", host_pattern())
}

/// Escapes the regular-expression metacharacters that a host in normal form can hold.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '.' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Unpadded base64url of exactly `bytes` bytes: the last character carries only zero
/// padding bits (section 1: decoders refuse non-zero trailing bits).
fn base64url_exact(bytes: usize) -> (String, usize) {
    let chars = (bytes * 8).div_ceil(6);
    let last = match bytes % 3 {
        1 => "[AQgw]",
        2 => "[AEIMQUYcgkosw048]",
        _ => "[A-Za-z0-9_-]",
    };
    (format!("^[A-Za-z0-9_-]{{{}}}{last}$", chars - 1), chars)
}

/// Unpadded, canonical base64url of any length.
const BASE64URL: &str = "^(?:[A-Za-z0-9_-]{4})*\
                         (?:[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048]|[A-Za-z0-9_-][AQgw])?$";

fn string(description: &str, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .examples([example])
}

fn exact_base64url(description: &str, example: &str, bytes: usize) -> RefOr<Schema> {
    let (pattern, chars) = base64url_exact(bytes);
    string(description, example)
        .pattern(Some(pattern))
        .min_length(Some(chars))
        .max_length(Some(chars))
        .into()
}

macro_rules! string_schema {
    ($ty:ty, $name:literal, $schema:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

string_schema!(
    Address,
    "Address",
    string(
        "A user address `name@host[:port]` in normal form (lowercase, ASCII host)",
        "alice@chat.example",
    )
    .pattern(Some(address_pattern()))
    .min_length(Some(3))
    .max_length(Some(MAX_ADDRESS_LEN))
    .into()
);
string_schema!(
    Host,
    "Host",
    string(
        "A host name or IP literal with an optional port, in normal form",
        "chat.example",
    )
    .pattern(Some(format!("^{}$", host_pattern())))
    .min_length(Some(1))
    .max_length(Some(MAX_HOST_LEN))
    .into()
);
string_schema!(
    PublicKey,
    "PublicKey",
    exact_base64url(
        "An ed25519 public key, 32 bytes as unpadded base64url (43 characters)",
        "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        PublicKey::LENGTH,
    )
);
string_schema!(
    Signature,
    "Signature",
    exact_base64url(
        "An ed25519 signature, 64 bytes as unpadded base64url (86 characters)",
        "63SIn4dnASm9FGdaZoGTg3Ir7QH0bLb7OpvjB3k3GBCv2sgTOWKh7U6VYRhd8Sl_Fxb1sA_Iscsrnx3Hy70ZCw",
        64,
    )
);

fn string_enum(description: &str, values: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values.iter().copied()))
        .into()
}

/// A lookup session token: 32 random bytes, unpadded base64url.
pub fn token_schema() -> RefOr<Schema> {
    exact_base64url(
        "Bearer token for `Authorization: Bearer <token>` (32 random bytes, base64url)",
        "n3ZqTq1yJ3mV6mZr8R3bQ0b0Xb1nX3t0cS9xY2Ff4kA",
        32,
    )
}

/// `Health.status`.
pub fn health_status_schema() -> RefOr<Schema> {
    string_enum(
        "`ok` when the node can serve, else `unavailable`",
        &["ok", "unavailable"],
    )
}

/// `Health.store`.
pub fn health_store_schema() -> RefOr<Schema> {
    string_enum(
        "`ok` when the store answers, else `error`",
        &["ok", "error"],
    )
}

/// `WellKnown.api_version`.
pub fn api_version_schema() -> RefOr<Schema> {
    string_enum("API version", &["v1"])
}

/// `WellKnown.lookup_access`.
pub fn lookup_access_schema() -> RefOr<Schema> {
    string_enum(
        "Who may call the lookup endpoint (section 9)",
        &["users", "public"],
    )
}

/// `WellKnown.registration`.
pub fn registration_schema() -> RefOr<Schema> {
    string_enum("Registration policy", &["open", "invite", "closed"])
}

/// The lookup `mode` query parameter.
pub fn lookup_mode_schema() -> RefOr<Schema> {
    string_enum(
        "normal (default), cache-only or refresh; only for other domains' users",
        &["normal", "cache-only", "refresh"],
    )
}

/// Schema stand-in for every `Signed<T>` field: the envelope has the same shape whatever
/// the record type.
#[derive(Debug)]
pub struct SignedEnvelope;

impl PartialSchema for SignedEnvelope {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "A signed record: the payload (JSON bytes) and an ed25519 signature over \
                 `pd-v1\\n<purpose>\\n<address>\\n<payload>`",
            ))
            .property(
                "payload",
                string(
                    "The record's JSON bytes (at most 4096), unpadded base64url",
                    "eyJhZGRyZXNzIjoiYWxpY2VAZXhhbXBsZS5jb20iLCJzZXEiOjF9",
                )
                .pattern(Some(BASE64URL))
                .min_length(Some(2))
                .max_length(Some((MAX_PAYLOAD_LEN * 8).div_ceil(6)))
                .content_encoding("base64url")
                .content_media_type("application/json"),
            )
            .required("payload")
            .property("signature", Signature::schema())
            .required("signature")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for SignedEnvelope {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Signed")
    }
}

impl<T> PartialSchema for Signed<T> {
    fn schema() -> RefOr<Schema> {
        SignedEnvelope::schema()
    }
}

impl<T> ToSchema for Signed<T> {
    fn name() -> Cow<'static, str> {
        SignedEnvelope::name()
    }
}
