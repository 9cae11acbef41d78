//! The lookup endpoint, the node's hot path. A local user's stored presence envelope and
//! rotation proofs are placed in the response as stored, without parsing or re-serialising
//! them. Other domains'
//! users are resolved through federation: the trust policy first (a refused domain causes
//! no network traffic), then the resolver's cache or one signed upstream lookup.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pd_federation::resolver::ResolveError;
use pd_proto::wire::{LookupResponse, Source};
use pd_proto::{Address, LookupMode, ProblemType, now_micros};

use super::error::ApiError;
use super::extract::{AddressPath, bearer_token};
use crate::config::LookupAccess;
use crate::registry::RegistryError;
use crate::state::AppState;

/// Seconds a lookup answer without a presence record may be reused.
const NO_PRESENCE_TTL: u64 = 60;

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
    if !state.registry.is_local(&address) {
        return remote(&state, &address, mode).await;
    }
    local(&state, &address).await
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

/// The `mode` query parameter (`normal`, `cache-only`, `refresh`); other parameters are
/// ignored, a bad mode is 400 invalid-request.
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

/// Answers a lookup of another domain's user: trust policy, then the resolver.
pub async fn remote(
    state: &AppState,
    address: &Address,
    mode: LookupMode,
) -> Result<Response, ApiError> {
    let federation = &state.federation;
    let host = address.host();
    let verdict = federation.trust.decide(host);
    if !verdict.allowed {
        state.metrics.refused_lookup(verdict.why.as_str());
        state.metrics.lookup("remote", "refused");
        // The deciding entry's reason is private; the client only learns the domain.
        return Err(ApiError::new(
            ProblemType::RefusedByPolicy,
            format!("this node does not federate with {}", host.hostname()),
        ));
    }
    match federation.resolver.lookup(address, mode).await {
        Ok(resolved) => {
            let source = match resolved.response.source {
                Source::Local => "local",
                Source::Cache => "cache",
                Source::Remote => "remote",
                Source::Stale => "stale",
            };
            state.metrics.lookup(source, "found");
            let mut response = resolved.response;
            response.ttl = resolved.ttl_secs;
            let body = serde_json::to_vec(&response).map_err(ApiError::internal)?;
            let mut response = body.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        Err(e) => {
            let result = match e {
                ResolveError::UnknownUser => "not_found",
                ResolveError::RateLimited { .. } => "rate_limited",
                ResolveError::DelegationRefused(_) => {
                    state.metrics.refused_lookup("delegation_refused");
                    "refused"
                }
                _ => "error",
            };
            state.metrics.lookup("remote", result);
            Err(resolve_error(address, e))
        }
    }
}

/// The problem answered for a failed remote lookup.
fn resolve_error(address: &Address, e: ResolveError) -> ApiError {
    let host = address.host().hostname();
    match e {
        ResolveError::UnknownUser => ApiError::new(
            ProblemType::UnknownUser,
            format!("{host} has no user {address}"),
        ),
        ResolveError::NoNode => ApiError::new(
            ProblemType::NoPdNode,
            format!("{host} does not run a PD node"),
        ),
        ResolveError::Unreachable(why) => ApiError::new(
            ProblemType::RemoteUnreachable,
            format!("the node of {host} is unreachable: {why}"),
        ),
        ResolveError::BadAnswer(why) => ApiError::new(
            ProblemType::BadRemoteAnswer,
            format!("the node of {host} gave an invalid answer: {why}"),
        ),
        ResolveError::RemoteRefused => ApiError::new(
            ProblemType::RemoteRefused,
            format!("{host} does not accept lookups from this node"),
        ),
        ResolveError::PeerBackingOff { retry_in } => ApiError::new(
            ProblemType::RemoteUnreachable,
            format!(
                "the node of {host} failed recently; next attempt in {} s",
                retry_in.as_secs().max(1)
            ),
        )
        .with_retry_after(retry_in.as_secs()),
        ResolveError::DelegationRefused(target) => ApiError::new(
            ProblemType::RefusedByPolicy,
            format!("the node of {host} is at {target}, which this node does not federate with"),
        ),
        ResolveError::NotCached => ApiError::new(
            ProblemType::NotCached,
            format!("no fresh cached answer for {address} (mode=cache-only)"),
        ),
        ResolveError::RateLimited {
            per_second,
            retry_in,
        } => ApiError::new(
            ProblemType::RateLimited,
            format!(
                "this node sends at most {per_second} uncached lookups a second to {host}; \
                 retry in {} s",
                retry_in.as_secs().max(1)
            ),
        )
        .with_retry_after(retry_in.as_secs() + u64::from(retry_in.subsec_nanos() > 0)),
        other => ApiError::new(
            ProblemType::RemoteUnreachable,
            format!("the lookup at {host} failed: {other}"),
        ),
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
        Some(p) => (Some(&*p.envelope), p.expires_at.saturating_sub(now)),
        None => (None, NO_PRESENCE_TTL),
    };
    let rotations = found.rotations.as_ref().map(|r| &*r.json);
    let mut body = Vec::new();
    LookupResponse::write_local(&mut body, address, &found.key, presence, rotations, ttl)
        .map_err(ApiError::internal)?;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
