//! The lookup endpoint, the node's hot path. A local user's stored presence envelope is
//! placed in the response as stored, without parsing or re-serialising it.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pd_proto::{Address, ProblemType, now_micros};

use super::error::ApiError;
use super::extract::{AddressPath, bearer_token};
use crate::config::LookupAccess;
use crate::registry::RegistryError;
use crate::state::AppState;

/// Seconds a lookup answer without a presence record may be reused.
const NO_PRESENCE_TTL: u64 = 60;

/// `GET /v1/lookup/{address}`: a user's key and current presence record.
#[utoipa::path(
    get, path = "/v1/lookup/{address}", tag = "lookup",
    params(("address" = String, Path, description = "The address to look up")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's key and current presence record (the stored envelope, or null)", body = pd_proto::wire::LookupResponse),
        (status = 400, description = "invalid-address", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 401, description = "unauthenticated (lookup_access = users)", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown-user", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 501, description = "not-implemented: the address belongs to another domain", body = pd_proto::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    AddressPath(address): AddressPath,
) -> Result<Response, ApiError> {
    if state.config.lookup_access == LookupAccess::Users {
        authenticate(&state, &headers).await?;
    }
    if !state.registry.is_local(&address) {
        state.metrics.lookup("remote", "not_implemented");
        return Err(ApiError::new(
            ProblemType::NotImplemented,
            format!(
                "cannot look up {address}: lookups of other domains need federation, which this node does not offer yet"
            ),
        ));
    }
    local(&state, &address).await
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = bearer_token(headers) else {
        return Err(ApiError::new(
            ProblemType::Unauthenticated,
            "lookups on this node need `Authorization: Bearer <token>` from POST /v1/sessions",
        ));
    };
    match state.registry.session(token).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            ProblemType::Unauthenticated,
            "the session token is unknown, expired, or its account's key has changed",
        )),
    }
}

/// Answers a lookup of one of this node's users.
pub async fn local(state: &AppState, address: &Address) -> Result<Response, ApiError> {
    let found = match state.registry.lookup_local(address).await {
        Ok(found) => found,
        Err(e) => {
            let result = if matches!(e, RegistryError::UnknownUser(_)) {
                "not_found"
            } else {
                "error"
            };
            state.metrics.lookup("local", result);
            return Err(e.into());
        }
    };
    state.metrics.lookup("local", "found");
    let now = now_micros() / 1_000_000;
    let (presence, ttl) = match &found.presence {
        Some(p) => (&*p.envelope, p.expires_at.saturating_sub(now)),
        None => ("null", NO_PRESENCE_TTL),
    };
    // Addresses and keys serialise as JSON strings without characters that need escaping,
    // but go through serde anyway so the output is valid JSON by construction.
    let address = serde_json::to_string(address).map_err(ApiError::internal)?;
    let key = serde_json::to_string(&found.key).map_err(ApiError::internal)?;
    let mut body = String::with_capacity(96 + address.len() + key.len() + presence.len());
    body.push_str("{\"address\":");
    body.push_str(&address);
    body.push_str(",\"public_key\":");
    body.push_str(&key);
    body.push_str(",\"presence\":");
    body.push_str(presence);
    body.push_str(",\"source\":\"local\",\"ttl\":");
    body.push_str(&ttl.to_string());
    body.push('}');
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
