//! Extractors that answer bad requests with our problem documents instead of axum's plain
//! text: JSON bodies, address path segments and bearer tokens.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use pd_proto::{Address, ProblemType};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body: `Content-Type: application/json` (else 415), at most the configured
/// size (else 413), and well-formed for `T` (else 400 invalid-request).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !is_json(content_type) {
            return Err(ApiError::new(
                ProblemType::UnsupportedMediaType,
                format!("expected Content-Type application/json, got {content_type:?}"),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ProblemType::PayloadTooLarge,
                    "the request body exceeds the node's size limit",
                )
            } else {
                ApiError::new(ProblemType::InvalidRequest, rejection.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            ApiError::new(
                ProblemType::InvalidRequest,
                format!("the body is not a valid request: {e}"),
            )
        })
    }
}

/// A `{address}` path segment, percent-decoded and parsed (else 400 invalid-address).
#[derive(Debug, Clone)]
pub struct AddressPath(pub Address);

impl<S: Send + Sync> FromRequestParts<S> for AddressPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::new(
                    ProblemType::InvalidAddress,
                    format!("the address in the path is malformed: {}", e.body_text()),
                )
            })?;
        Address::parse(&raw).map(AddressPath).map_err(|e| {
            ApiError::new(
                ProblemType::InvalidAddress,
                format!(
                    "{:?} is not a valid address: {e}",
                    raw.chars().take(300).collect::<String>()
                ),
            )
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer_token(parts: &axum::http::HeaderMap) -> Option<&str> {
    let value = parts.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
        assert!(!is_json("application/jsonx"));
    }
}
