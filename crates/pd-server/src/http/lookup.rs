//! The lookup endpoint, the node's hot path: extract (address, mode, and the session when
//! `lookup_access = "users"`), look up through the [`Directory`](crate::directory::Directory),
//! encode. Failures become problems through `From<LookupError> for ApiError`.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pd_proto::{LookupMode, ProblemType};

use super::error::ApiError;
use super::extract::{AddressPath, bearer_token};
use crate::config::LookupAccess;
use crate::directory::Answer;
use crate::state::AppState;

/// `GET /v1/lookup/{address}`: a user's key and current presence record.
#[utoipa::path(
    get, path = pd_proto::paths::LOOKUP, tag = "lookup",
    params(
        ("address" = String, Path, description = "The address to look up"),
        ("mode" = Option<String>, Query, description = "normal (default), cache-only or refresh; only for other domains' users"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's key and current presence record (the stored envelope, or null)", body = pd_proto::wire::LookupResponse),
        (status = 400, description = "invalid-address", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 401, description = "unauthenticated (lookup_access = users)", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 403, description = "refused-by-policy (this node does not federate with the domain) or remote-refused", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown-user, or not-cached (mode=cache-only)", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate-limited: too many lookups from this client, or this node's cap on uncached lookups of the domain (with Retry-After)", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 502, description = "no-pd-node or bad-remote-answer", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 504, description = "remote-unreachable (with Retry-After while the peer is backed off)", body = pd_proto::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    AddressPath(address): AddressPath,
    ModeQuery(mode): ModeQuery,
    _: LookupAuth,
) -> Result<Response, ApiError> {
    let answer = state.directory.lookup(&address, mode).await?;
    json(&answer)
}

/// The answer as an `application/json` response.
pub(crate) fn json(answer: &Answer) -> Result<Response, ApiError> {
    let body = answer.to_json().map_err(ApiError::internal)?;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// With `lookup_access = "users"`, a valid session token (else 401 unauthenticated). An
/// extractor, after the address and the mode, so the request's headers are read in place
/// rather than cloned.
#[derive(Debug, Clone, Copy)]
pub struct LookupAuth;

impl FromRequestParts<AppState> for LookupAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.config.lookup_access == LookupAccess::Users {
            authenticate(state, &parts.headers).await?;
        }
        Ok(Self)
    }
}

/// The `mode` query parameter ([`LookupMode`]); other parameters are ignored, a bad mode
/// is 400 invalid-request.
#[derive(Debug, Clone, Copy)]
pub struct ModeQuery(pub LookupMode);

impl<S: Send + Sync> FromRequestParts<S> for ModeQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let mut mode = LookupMode::Normal;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if key != LookupMode::QUERY_PARAMETER {
                continue;
            }
            mode = LookupMode::parse(&value).ok_or_else(|| {
                ApiError::new(
                    ProblemType::InvalidRequest,
                    format!(
                        "mode must be normal, cache-only or refresh, not {:?}",
                        value.chars().take(40).collect::<String>()
                    ),
                )
            })?;
        }
        Ok(Self(mode))
    }
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
