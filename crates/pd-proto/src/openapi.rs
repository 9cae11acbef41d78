//! OpenAPI schemas of the types that serialise as strings or envelopes (feature `openapi`).

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::address::{Address, Host};
use crate::keys::{PublicKey, Signature};
use crate::signed::Signed;

fn string(description: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .examples([example])
        .into()
}

macro_rules! string_schema {
    ($ty:ty, $name:literal, $description:literal, $example:literal) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string($description, $example)
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
    "A user address `name@host[:port]` in normal form (lowercase, ASCII host)",
    "alice@chat.example"
);
string_schema!(
    Host,
    "Host",
    "A host name or IP literal with an optional port, in normal form",
    "chat.example"
);
string_schema!(
    PublicKey,
    "PublicKey",
    "An ed25519 public key, 32 bytes as unpadded base64url",
    "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
);
string_schema!(
    Signature,
    "Signature",
    "An ed25519 signature, 64 bytes as unpadded base64url",
    "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
);

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
                    "The record's JSON bytes, unpadded base64url",
                    "eyJhZGRyZXNzIjoi...",
                ),
            )
            .required("payload")
            .property("signature", Signature::schema())
            .required("signature")
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
