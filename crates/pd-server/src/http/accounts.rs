//! Account endpoints: register, rotate the key, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use pd_proto::wire::{AccountInfo, DeleteRequest, RegisterRequest, RotateRequest};

use super::error::ApiError;
use super::extract::{AddressPath, ApiJson};
use crate::state::AppState;

/// `POST /v1/accounts`: creates an account.
#[utoipa::path(
    post, path = pd_proto::paths::ACCOUNTS, tag = "accounts",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created", body = AccountInfo),
        (status = 400, description = "invalid-request, invalid-signature, invalid-key, stale-request or wrong-domain", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 403, description = "registration-closed or invite-required", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 409, description = "name-taken", body = pd_proto::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let info: AccountInfo = state.registry.register(req).await?;
    state.metrics.registrations.inc();
    Ok((StatusCode::CREATED, axum::Json(info)))
}

/// `POST /v1/accounts/{address}/rotate`: replaces the account key.
#[utoipa::path(
    post, path = pd_proto::paths::ROTATE, tag = "accounts",
    params(("address" = pd_proto::Address, Path, description = "The account's address")),
    request_body = RotateRequest,
    responses(
        (status = 200, description = "Key replaced; the account with its new key", body = AccountInfo),
        (status = 400, description = "Malformed, badly signed or stale request", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown-user", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 409, description = "replayed", body = pd_proto::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn rotate(
    State(state): State<AppState>,
    AddressPath(address): AddressPath,
    ApiJson(req): ApiJson<RotateRequest>,
) -> Result<axum::Json<AccountInfo>, ApiError> {
    Ok(axum::Json(state.registry.rotate(&address, req).await?))
}

/// `POST /v1/accounts/{address}/delete`: deletes the account and its presence record.
#[utoipa::path(
    post, path = pd_proto::paths::DELETE, tag = "accounts",
    params(("address" = pd_proto::Address, Path, description = "The account's address")),
    request_body(content = pd_proto::openapi::SignedEnvelope, description = "A signed Deletion"),
    responses(
        (status = 204, description = "Account deleted"),
        (status = 400, description = "Malformed, badly signed or stale request", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown-user", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 409, description = "replayed", body = pd_proto::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    AddressPath(address): AddressPath,
    ApiJson(req): ApiJson<DeleteRequest>,
) -> Result<StatusCode, ApiError> {
    state.registry.delete(&address, req).await?;
    Ok(StatusCode::NO_CONTENT)
}
