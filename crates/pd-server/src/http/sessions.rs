//! Session endpoint: a signed login yields a short-lived lookup token.

use axum::extract::State;
use pd_proto::wire::{LoginRequest, LoginResponse};

use super::error::ApiError;
use super::extract::ApiJson;
use crate::state::AppState;

/// `POST /v1/sessions`: exchanges a signed login for a bearer token.
#[utoipa::path(
    post, path = pd_proto::paths::SESSIONS, tag = "sessions",
    request_body(content = pd_proto::openapi::SignedEnvelope, description = "A signed Login"),
    responses(
        (status = 200, description = "A bearer token", body = LoginResponse),
        (status = 400, description = "Malformed, badly signed or stale request", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown-user", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 409, description = "replayed", body = pd_proto::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<axum::Json<LoginResponse>, ApiError> {
    let (token, expires_in) = state.registry.login(req).await?;
    Ok(axum::Json(LoginResponse { token, expires_in }))
}
