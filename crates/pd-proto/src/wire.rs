//! Request and response bodies of the HTTP API (`/v1/...` and the well-known documents).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::address::{Address, Host};
use crate::keys::{PublicKey, Signature};
use crate::records::{Deletion, Login, Presence, Registration, Rotation, Withdrawal};
use crate::signed::Signed;

pub use crate::rotation::RotationProof;

/// `POST /v1/accounts`: create an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The registration, signed by the new account key.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::SignedEnvelope))]
    pub registration: Signed<Registration>,
    /// Invite token, required when the node's registration policy is `invite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
}

/// An account as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountInfo {
    /// The account's address.
    pub address: Address,
    /// The current account key.
    pub public_key: PublicKey,
    /// The key's fingerprint.
    pub fingerprint: String,
}

/// `PUT /v1/accounts/{address}/presence`: publish a presence record.
pub type PublishRequest = Signed<Presence>;

/// Answer to a published presence record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishResponse {
    /// The stored record's sequence number.
    pub seq: u64,
    /// When the stored record expires (Unix seconds).
    pub expires_at: u64,
}

/// `POST /v1/accounts/{address}/presence/withdraw`: withdraw the presence record.
pub type WithdrawRequest = Signed<Withdrawal>;

/// `POST /v1/accounts/{address}/rotate`: replace the account key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// The rotation, signed by the current key.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::SignedEnvelope))]
    pub rotation: Signed<Rotation>,
    /// The new key's signature over the same payload (purpose `rotate-accept`).
    pub new_key_signature: Signature,
}

/// `POST /v1/accounts/{address}/delete`: delete the account.
pub type DeleteRequest = Signed<Deletion>;

/// `POST /v1/sessions`: obtain a lookup session token.
pub type LoginRequest = Signed<Login>;

/// A lookup session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    /// Bearer token for `Authorization: Bearer <token>`.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::token_schema))]
    pub token: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// Where a lookup answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The user is registered at the answering node.
    Local,
    /// A cached answer from the user's home node.
    Cache,
    /// Fetched from the user's home node for this request.
    Remote,
    /// An expired cached answer, served because the home node is unreachable.
    Stale,
}

/// `GET /v1/lookup/{address}`: a user's key and current presence record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LookupResponse {
    /// The address looked up, in normal form.
    pub address: Address,
    /// The account key.
    pub public_key: PublicKey,
    /// The current presence record, if the user is online.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::SignedEnvelope>))]
    pub presence: Option<Signed<Presence>>,
    /// Proofs of the account's most recent key rotations, oldest first (at most
    /// [`MAX_ROTATION_PROOFS`](crate::rotation::MAX_ROTATION_PROOFS)); the last one
    /// introduces `public_key`. Absent when the key was never rotated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 16))]
    pub rotations: Vec<RotationProof>,
    /// Where the answer came from.
    pub source: Source,
    /// Seconds the answer may still be used.
    pub ttl: u64,
}

/// `GET /v1/whoami`: the address the node sees a request coming from, like a STUN
/// reflexive address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoamiResponse {
    /// The caller's IP address: the TCP peer, or the client a trusted proxy names in
    /// `X-Forwarded-For`. An IPv4 address mapped into IPv6 is given as IPv4.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "203.0.113.5"))]
    pub ip: IpAddr,
    /// The TCP source port of the caller's connection; absent when `ip` came from a
    /// trusted proxy, which does not pass the client's port on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = 51234))]
    pub port: Option<u16>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok` when the node can serve, else `unavailable`.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::health_status_schema))]
    pub status: String,
    /// The node's software version.
    pub version: String,
    /// `ok` when the store answers, else `error`.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::health_store_schema))]
    pub store: String,
}

/// A server signing key as published in the well-known document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerKey {
    /// Identifier of the key, `ed25519:<first 8 fingerprint characters>`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^ed25519:[A-Za-z0-9_-]{1,56}$"))]
    pub key_id: String,
    /// The public key.
    pub public_key: PublicKey,
    /// Unix time (seconds) until which signatures by this key are accepted.
    pub valid_until: u64,
}

/// `GET /.well-known/pd`: who this node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WellKnown {
    /// The domain this node serves.
    pub domain: Host,
    /// API version, `v1`.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::api_version_schema))]
    pub api_version: String,
    /// Current server keys.
    pub server_keys: Vec<ServerKey>,
    /// Who may call the lookup endpoint: `users` or `public`.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::lookup_access_schema))]
    pub lookup_access: String,
    /// Registration policy: `open`, `invite` or `closed`.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::registration_schema))]
    pub registration: String,
    /// Base URL of the node's API when it is not `https://<domain>` (delegation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Whether the node offers a relay to its users (section 13); absent means no.
    #[serde(default)]
    pub relay: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn answer() -> serde_json::Value {
        serde_json::json!({
            "address": "alice@example.com",
            "public_key": SecretKey::from_seed(&[1; 32]).public().to_string(),
            "presence": null,
            "source": "local",
            "ttl": 60,
        })
    }

    // Issue 14 (spec section 8.9): the required members, unknown members ignored, and a
    // member of the wrong type or value refusing the whole answer.
    #[test]
    fn lookup_response_members() {
        let parsed: LookupResponse = serde_json::from_value(answer()).unwrap();
        assert!(parsed.presence.is_none() && parsed.rotations.is_empty());

        let mut extra = answer();
        extra["signed_by_a_newer_node"] = serde_json::json!({"anything": [1, 2]});
        serde_json::from_value::<LookupResponse>(extra).unwrap();

        let mut absent = answer();
        absent.as_object_mut().unwrap().remove("presence");
        let parsed: LookupResponse = serde_json::from_value(absent).unwrap();
        assert!(parsed.presence.is_none());

        for member in ["address", "public_key", "source", "ttl"] {
            let mut missing = answer();
            missing.as_object_mut().unwrap().remove(member);
            assert!(
                serde_json::from_value::<LookupResponse>(missing).is_err(),
                "{member} is required"
            );
        }
        for (member, value) in [
            ("source", serde_json::json!("elsewhere")),
            ("ttl", serde_json::json!(-1)),
            ("ttl", serde_json::json!(60.0)),
            ("ttl", serde_json::json!(1e3)),
            ("ttl", serde_json::json!("60")),
        ] {
            let mut bad = answer();
            bad[member] = value.clone();
            assert!(
                serde_json::from_value::<LookupResponse>(bad).is_err(),
                "{member} = {value}"
            );
        }
        // Integers beyond 2^64 - 1 are refused too (spec section 5, numbers).
        let text = answer()
            .to_string()
            .replace("\"ttl\":60", "\"ttl\":18446744073709551616");
        assert!(serde_json::from_str::<LookupResponse>(&text).is_err());
        let text = answer()
            .to_string()
            .replace("\"ttl\":60", "\"ttl\":18446744073709551615");
        serde_json::from_str::<LookupResponse>(&text).unwrap();
    }
}
