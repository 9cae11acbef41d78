//! `/healthz`, `/.well-known/pd` and the opt-in `/.well-known/pd-allowlist.txt`: liveness,
//! the node's public identity, and its allowlist for others to subscribe to.

use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pd_federation::trust::{EntryKind, lists};
use pd_proto::wire::{Health, WellKnown};
use pd_proto::{API_VERSION, ProblemType, now_micros};

use super::error::ApiError;
use crate::state::AppState;

/// `GET /healthz`: version and store status; 503 when the store does not answer.
#[utoipa::path(
    get, path = pd_proto::paths::HEALTHZ, tag = "node",
    responses(
        (status = 200, description = "The node can serve", body = Health),
        (status = 503, description = "The store does not answer", body = Health),
    )
)]
pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let store_ok = state.registry.store().ping().await.is_ok();
    let status = if store_ok { "ok" } else { "unavailable" };
    let code = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Health {
            status: status.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            store: if store_ok { "ok" } else { "error" }.into(),
        }),
    )
}

/// `GET /.well-known/pd`: the node's domain, server keys (the current one, then retired
/// ones still accepted), API version and policies.
#[utoipa::path(
    get, path = pd_proto::paths::WELL_KNOWN, tag = "node",
    responses((status = 200, description = "The node's domain, server keys, API version and policies", body = WellKnown))
)]
pub(crate) async fn get(State(state): State<AppState>) -> Json<WellKnown> {
    Json(WellKnown {
        domain: state.config.domain.clone(),
        api_version: API_VERSION.into(),
        server_keys: state.server_keys.published(now_micros() / 1_000_000),
        lookup_access: state.config.lookup_access.as_str().into(),
        registration: state.config.registration.as_str().into(),
        base_url: None,
        relay: state.config.relay.enabled,
    })
}

/// `GET /.well-known/pd-allowlist.txt`: the allow entries in force, one per line, when
/// `publish_allowlist` is on (else 404).
#[utoipa::path(get, path = pd_proto::paths::ALLOWLIST, tag = "node", responses(
    (status = 200, description = "The node's allow entries, one domain per line", content_type = "text/plain"),
    (status = 404, description = "not-found: the node does not publish its allowlist", body = pd_proto::Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn allowlist(State(state): State<AppState>) -> Result<Response, ApiError> {
    if !state.config.publish_allowlist {
        return Err(ApiError::new(
            ProblemType::NotFound,
            "this node does not publish its allowlist",
        ));
    }
    let entries = state
        .federation
        .trust
        .current()
        .effective(EntryKind::Allow, SystemTime::now());
    let mut response = lists::export_text(&entries).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}
