//! The node-to-node API: `GET /v1/federation/lookup/{address}`, a signed lookup from another
//! node. It answers only for this node's own users and never forwards, so a refused node
//! cannot obtain records by asking a node that is trusted.

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use pd_federation::error::NodeAuthError;
use pd_proto::ProblemType;

use super::error::ApiError;
use super::extract::AddressPath;
use super::lookup;
use crate::state::AppState;

/// `GET /v1/federation/lookup/{address}`: the lookup answer for one of this node's users,
/// for a node whose `Authorization: PD-Node ...` signature verifies and whose domain the
/// trust policy allows (checked before its keys are fetched).
#[utoipa::path(
    get, path = pd_proto::paths::FEDERATION_LOOKUP, tag = "federation",
    params(("address" = pd_proto::Address, Path, description = "The address to look up (a user of this node)")),
    responses(
        (status = 200, description = "The user's key and current presence record", body = pd_proto::wire::LookupResponse),
        (status = 400, description = "invalid-address, invalid-request (a query string) or wrong-domain", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 401, description = "invalid-node-signature", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 403, description = "refused-by-policy: this node does not accept lookups from the origin", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown-user", body = pd_proto::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn lookup(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    AddressPath(address): AddressPath,
) -> Result<Response, ApiError> {
    // The endpoint takes no query parameters: a query (even an empty `?`) is refused before
    // any work, so that no parameter can ever change what a signed request means.
    if uri.query().is_some() {
        return Err(ApiError::new(
            ProblemType::InvalidRequest,
            "the node-to-node lookup takes no query parameters",
        ));
    }
    // The signature covers the request target exactly as received, still percent-encoded.
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let federation = &state.federation;
    let origin = match federation
        .verifier
        .verify("GET", &target, &headers, b"", &state.config.domain)
        .await
    {
        Ok(origin) => origin,
        Err(NodeAuthError::Refused(origin)) => {
            let reason = pd_proto::Host::parse(&origin)
                .map(|h| federation.trust.decide(&h).why.as_str())
                .unwrap_or("refused");
            state.metrics.refused_inbound(reason);
            tracing::info!(remote.host = %origin, reason, "refused a lookup from a node the trust policy refuses");
            return Err(ApiError::new(
                ProblemType::RefusedByPolicy,
                format!("this node does not accept lookups from {origin}"),
            ));
        }
        Err(e @ NodeAuthError::DelegationRefused { .. }) => {
            state.metrics.refused_inbound("delegation_refused");
            tracing::info!(error = %e, "refused a lookup from a node whose delegation target the trust policy refuses");
            return Err(ApiError::new(e.problem_type(), e.to_string()));
        }
        Err(e) => {
            state.metrics.refused_inbound("unauthenticated");
            return Err(ApiError::new(e.problem_type(), e.to_string()));
        }
    };
    if !state.registry.is_local(&address) {
        return Err(ApiError::new(
            ProblemType::WrongDomain,
            format!(
                "{address} is not a user of {}; node-to-node lookups are never forwarded",
                state.config.domain
            ),
        ));
    }
    tracing::debug!(remote.host = %origin, %address, "answering a node-to-node lookup");
    let answer = state.directory.local(&address).await?;
    lookup::json(&answer)
}
