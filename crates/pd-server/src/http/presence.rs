//! Presence endpoints: publish and withdraw a user's presence record.

use axum::extract::State;
use axum::http::StatusCode;
use pd_proto::wire::{PublishRequest, PublishResponse, WithdrawRequest};

use super::error::ApiError;
use super::extract::{AddressPath, ApiJson};
use crate::state::AppState;

/// `PUT /v1/accounts/{address}/presence`: stores a signed presence record.
#[utoipa::path(
    put, path = pd_proto::paths::PRESENCE, tag = "presence",
    params(("address" = pd_proto::Address, Path, description = "The account's address")),
    request_body(content = pd_proto::openapi::SignedEnvelope, description = "A signed Presence record"),
    responses(
        (status = 200, description = "Stored", body = PublishResponse),
        (status = 400, description = "invalid-request, invalid-signature or invalid-record", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown-user", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 409, description = "replayed", body = pd_proto::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn put(
    State(state): State<AppState>,
    AddressPath(address): AddressPath,
    ApiJson(req): ApiJson<PublishRequest>,
) -> Result<axum::Json<PublishResponse>, ApiError> {
    Ok(axum::Json(state.registry.publish(&address, req).await?))
}

/// `POST /v1/accounts/{address}/presence/withdraw`: drops the presence record.
#[utoipa::path(
    post, path = pd_proto::paths::PRESENCE_WITHDRAW, tag = "presence",
    params(("address" = pd_proto::Address, Path, description = "The account's address")),
    request_body(content = pd_proto::openapi::SignedEnvelope, description = "A signed Withdrawal"),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 400, description = "Malformed, badly signed or stale request", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown-user", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 409, description = "replayed", body = pd_proto::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    AddressPath(address): AddressPath,
    ApiJson(req): ApiJson<WithdrawRequest>,
) -> Result<StatusCode, ApiError> {
    state.registry.withdraw(&address, req).await?;
    Ok(StatusCode::NO_CONTENT)
}
