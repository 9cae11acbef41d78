//! The paths of the node's HTTP API, as route templates (`{address}` stands for the
//! percent-encoded address): the router, the OpenAPI document, the client and the
//! federation side all name an endpoint through these constants.

/// `POST`: register an account.
pub const ACCOUNTS: &str = "/v1/accounts";
/// `PUT`: publish a presence record.
pub const PRESENCE: &str = "/v1/accounts/{address}/presence";
/// `POST`: withdraw the presence record.
pub const PRESENCE_WITHDRAW: &str = "/v1/accounts/{address}/presence/withdraw";
/// `POST`: rotate the account key.
pub const ROTATE: &str = "/v1/accounts/{address}/rotate";
/// `POST`: delete the account.
pub const DELETE: &str = "/v1/accounts/{address}/delete";
/// `POST`: log in (a lookup session).
pub const SESSIONS: &str = "/v1/sessions";
/// `GET`: a user's key and presence record, asked by a client of the node.
pub const LOOKUP: &str = "/v1/lookup/{address}";
/// `GET`: the signed node-to-node lookup.
pub const FEDERATION_LOOKUP: &str = "/v1/federation/lookup/{address}";
/// `GET` with `Upgrade: pd-relay/1`: a connecting peer asks the relay for a listener.
pub const RELAY_CONNECT: &str = "/v1/relay/{address}";
/// `GET` with `Upgrade: pd-relay/1`: a listener holds a relay slot (its control connection).
pub const RELAY_SLOT: &str = "/v1/relay/{address}/slot";
/// `GET` with `Upgrade: pd-relay/1`: a listener takes one conversation (`{id}` from the slot).
pub const RELAY_ACCEPT: &str = "/v1/relay/{address}/accept/{id}";
/// `GET`: the caller's address as the node sees it.
pub const WHOAMI: &str = "/v1/whoami";
/// `GET`: WebFinger (RFC 7033).
pub const WEBFINGER: &str = "/.well-known/webfinger";
/// `GET`: the node's well-known document (domain, API version, server keys).
pub const WELL_KNOWN: &str = "/.well-known/pd";
/// `GET`: the node's published allow list.
pub const ALLOWLIST: &str = "/.well-known/pd-allowlist.txt";
/// `GET`: liveness and version.
pub const HEALTHZ: &str = "/healthz";
/// `GET`: Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// `GET`: the OpenAPI document.
pub const OPENAPI: &str = "/openapi.json";

/// The placeholder of the address in a route template.
pub const ADDRESS_PLACEHOLDER: &str = "{address}";

/// The segments of `template` (without the leading `/`), with `{address}` replaced by
/// `address` as given (not encoded: a URL builder encodes segments itself).
pub fn segments<'a>(template: &'a str, address: &'a str) -> impl Iterator<Item = &'a str> {
    template
        .trim_start_matches('/')
        .split('/')
        .map(move |segment| {
            if segment == ADDRESS_PLACEHOLDER {
                address
            } else {
                segment
            }
        })
}

/// `template` with `{address}` replaced by `encoded_address`, which the caller has already
/// percent-encoded as one path segment.
pub fn fill(template: &str, encoded_address: &str) -> String {
    template.replacen(ADDRESS_PLACEHOLDER, encoded_address, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_and_split() {
        assert_eq!(
            fill(FEDERATION_LOOKUP, "alice%40b.example"),
            "/v1/federation/lookup/alice%40b.example"
        );
        assert_eq!(
            segments(PRESENCE_WITHDRAW, "alice@b.example").collect::<Vec<_>>(),
            ["v1", "accounts", "alice@b.example", "presence", "withdraw"]
        );
        assert_eq!(
            segments(WELL_KNOWN, "").collect::<Vec<_>>(),
            [".well-known", "pd"]
        );
    }

    #[test]
    fn every_api_path_is_versioned_or_well_known() {
        for path in [
            ACCOUNTS,
            PRESENCE,
            PRESENCE_WITHDRAW,
            ROTATE,
            DELETE,
            SESSIONS,
            LOOKUP,
            FEDERATION_LOOKUP,
            WHOAMI,
            RELAY_CONNECT,
            RELAY_SLOT,
            RELAY_ACCEPT,
        ] {
            assert!(
                path.starts_with(&format!("/{}/", crate::API_VERSION)),
                "{path}"
            );
        }
    }
}
