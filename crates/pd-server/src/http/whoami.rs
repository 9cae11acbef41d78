//! `GET /v1/whoami`: the address the node sees the caller coming from, like a STUN
//! reflexive address, so a client behind NAT can publish an endpoint others can reach.

use std::net::SocketAddr;

use axum::Extension;
use axum::Json;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pd_proto::wire::WhoamiResponse;

use super::ClientIpKey;
use super::error::ApiError;

/// `GET /v1/whoami`: the caller's IP address, as the rate limiter sees it (a trusted
/// proxy's `X-Forwarded-For` is believed), and its TCP source port when the node saw the
/// caller's own connection. Needs no authentication: it tells the caller only its own
/// address. Never cached (`Cache-Control: no-store`).
#[utoipa::path(
    get, path = pd_proto::paths::WHOAMI, tag = "node",
    responses(
        (status = 200, description = "The caller's address as the node sees it; `port` is absent when the address came from a trusted proxy's X-Forwarded-For",
         body = WhoamiResponse,
         headers(("Cache-Control" = String, description = "no-store"))),
    )
)]
pub(crate) async fn get(
    Extension(client_ip): Extension<ClientIpKey>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(Extension(ConnectInfo(peer))) = peer else {
        return Err(ApiError::internal(
            "the peer address of the connection is unknown",
        ));
    };
    let answer = match client_ip.forwarded_client(peer.ip(), &headers) {
        // A proxy passes the client's address on, but not its port.
        Some(ip) => WhoamiResponse {
            ip: ip.to_canonical(),
            port: None,
        },
        None => WhoamiResponse {
            ip: peer.ip().to_canonical(),
            port: Some(peer.port()),
        },
    };
    let mut response = Json(answer).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
