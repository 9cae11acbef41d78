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
    post, path = "/v1/accounts", tag = "accounts",
    request_body(content = inline(Object), description = "RegisterRequest: a Signed<Registration> and an optional invite token"),
    responses(
        (status = 201, description = "Account created (AccountInfo)"),
        (status = 400, description = "invalid-request, invalid-signature, invalid-key, stale-request or wrong-domain", content_type = "application/problem+json"),
        (status = 403, description = "registration-closed or invite-required", content_type = "application/problem+json"),
        (status = 409, description = "name-taken", content_type = "application/problem+json"),
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
    post, path = "/v1/accounts/{address}/rotate", tag = "accounts",
    params(("address" = String, Path, description = "The account's address")),
    request_body(content = inline(Object), description = "RotateRequest: a Signed<Rotation> by the old key and the new key's countersignature"),
    responses(
        (status = 200, description = "Key replaced (AccountInfo with the new key)"),
        (status = 400, description = "Malformed, badly signed or stale request", content_type = "application/problem+json"),
        (status = 404, description = "unknown-user", content_type = "application/problem+json"),
        (status = 409, description = "replayed", content_type = "application/problem+json"),
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
    post, path = "/v1/accounts/{address}/delete", tag = "accounts",
    params(("address" = String, Path, description = "The account's address")),
    request_body(content = inline(Object), description = "A Signed<Deletion>"),
    responses(
        (status = 204, description = "Account deleted"),
        (status = 400, description = "Malformed, badly signed or stale request", content_type = "application/problem+json"),
        (status = 404, description = "unknown-user", content_type = "application/problem+json"),
        (status = 409, description = "replayed", content_type = "application/problem+json"),
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
