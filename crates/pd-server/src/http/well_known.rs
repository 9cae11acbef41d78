//! `/healthz` and `/.well-known/pd`: liveness and the node's public identity.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use pd_proto::node_auth::server_key_id;
use pd_proto::wire::{Health, ServerKey, WellKnown};
use pd_proto::{API_VERSION, now_micros};

use crate::state::AppState;

/// How long after a request the published server key is declared valid (30 days).
const KEY_VALIDITY_SECS: u64 = 30 * 24 * 3600;

/// `GET /healthz`: version and store status; 503 when the store does not answer.
#[utoipa::path(
    get, path = "/healthz", tag = "node",
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

/// `GET /.well-known/pd`: the node's domain, server key, API version and policies.
#[utoipa::path(
    get, path = "/.well-known/pd", tag = "node",
    responses((status = 200, description = "The node's domain, server keys, API version and policies", body = WellKnown))
)]
pub(crate) async fn get(State(state): State<AppState>) -> Json<WellKnown> {
    let key_id = server_key_id(&state.server_key);
    Json(WellKnown {
        domain: state.config.domain.clone(),
        api_version: API_VERSION.into(),
        server_keys: vec![ServerKey {
            key_id,
            public_key: state.server_key,
            valid_until: now_micros() / 1_000_000 + KEY_VALIDITY_SECS,
        }],
        lookup_access: state.config.lookup_access.as_str().into(),
        registration: state.config.registration.as_str().into(),
        base_url: None,
    })
}
