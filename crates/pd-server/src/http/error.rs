//! The one error type of the HTTP edge: every refusal becomes an RFC 9457
//! `application/problem+json` body with a stable problem type.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pd_proto::ProblemType;
use pd_proto::problem::PROBLEM_CONTENT_TYPE;

use pd_federation::resolver::ResolveError;

use crate::directory::LookupError;
use crate::registry::RegistryError;

/// An internal failure's description, carried to the logging middleware in a response
/// extension so it is logged exactly once and never sent to the client.
#[derive(Debug, Clone)]
pub struct InternalError(pub String);

/// `Retry-After` (seconds) of the answers when the database is unavailable or a request
/// took too long.
pub(crate) const RETRY_AFTER_SECS: u64 = 5;

/// An error answered with a problem document.
#[derive(Debug)]
pub struct ApiError {
    kind: ProblemType,
    detail: String,
    internal: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// A problem of `kind` with a human detail.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            internal: None,
            retry_after: None,
        }
    }

    /// An internal error: the client sees a generic 500, the log sees `cause`.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self {
            kind: ProblemType::Internal,
            detail: "the node failed to handle the request".into(),
            internal: Some(cause.to_string()),
            retry_after: None,
        }
    }

    /// A store failure: 503 `unavailable` (with `Retry-After`) when the database cannot be
    /// reached, a generic 500 otherwise; the log sees the cause either way.
    pub fn store(cause: crate::store::StoreError) -> Self {
        if cause.is_unavailable() {
            Self {
                kind: ProblemType::Unavailable,
                detail: "the node's database is unavailable; retry shortly".into(),
                internal: Some(cause.to_string()),
                retry_after: Some(RETRY_AFTER_SECS),
            }
        } else {
            Self::internal(cause)
        }
    }

    /// 429 with a `Retry-After` header: too many `what` (e.g. "lookups") from the client.
    pub fn rate_limited(what: &str, wait_secs: u64) -> Self {
        Self {
            retry_after: Some(wait_secs.max(1)),
            ..Self::new(
                ProblemType::RateLimited,
                format!("too many {what}; retry in {} s", wait_secs.max(1)),
            )
        }
    }

    /// Adds a `Retry-After` header (seconds, at least 1).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// The problem type.
    pub fn kind(&self) -> ProblemType {
        self.kind
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let problem = self.kind.with_detail(self.detail);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if self.kind == ProblemType::Unauthenticated {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(internal) = self.internal {
            response.extensions_mut().insert(InternalError(internal));
        }
        // For the request metrics, which count problem answers by type.
        response.extensions_mut().insert(self.kind);
        response
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let e = match e {
            RegistryError::Store(store) => return Self::store(store),
            other => other,
        };
        let kind = match &e {
            RegistryError::WrongDomain(_) => ProblemType::WrongDomain,
            RegistryError::InvalidRequest(_) => ProblemType::InvalidRequest,
            RegistryError::InvalidSignature(_) => ProblemType::InvalidSignature,
            RegistryError::InvalidKey(_) => ProblemType::InvalidKey,
            RegistryError::InvalidRecord(_) | RegistryError::InvalidContent(_) => {
                ProblemType::InvalidRecord
            }
            RegistryError::Stale(_) => ProblemType::StaleRequest,
            RegistryError::RegistrationClosed => ProblemType::RegistrationClosed,
            RegistryError::InviteRequired => ProblemType::InviteRequired,
            RegistryError::NameTaken(_) => ProblemType::NameTaken,
            RegistryError::UnknownUser(_) => ProblemType::UnknownUser,
            RegistryError::Replayed { .. } => ProblemType::Replayed,
            RegistryError::Store(_) => ProblemType::Internal,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::store(e)
    }
}

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        let (address, e) = match e {
            LookupError::Local(e) => return e.into(),
            // The deciding entry's reason is private; the client only learns the domain.
            LookupError::Refused { address } => {
                return Self::new(
                    ProblemType::RefusedByPolicy,
                    format!(
                        "this node does not federate with {}",
                        address.host().hostname()
                    ),
                );
            }
            LookupError::Remote { address, error } => (address, error),
        };
        let host = address.host().hostname();
        match e {
            ResolveError::UnknownUser => Self::new(
                ProblemType::UnknownUser,
                format!("{host} has no user {address}"),
            ),
            ResolveError::NoNode => Self::new(
                ProblemType::NoPdNode,
                format!("{host} does not run a PD node"),
            ),
            ResolveError::Unreachable(why) => Self::new(
                ProblemType::RemoteUnreachable,
                format!("the node of {host} is unreachable: {why}"),
            ),
            ResolveError::BadAnswer(why) => Self::new(
                ProblemType::BadRemoteAnswer,
                format!("the node of {host} gave an invalid answer: {why}"),
            ),
            ResolveError::RemoteRefused => Self::new(
                ProblemType::RemoteRefused,
                format!("{host} does not accept lookups from this node"),
            ),
            ResolveError::PeerBackingOff { retry_in } => Self::new(
                ProblemType::RemoteUnreachable,
                format!(
                    "the node of {host} failed recently; next attempt in {} s",
                    retry_in.as_secs().max(1)
                ),
            )
            .with_retry_after(retry_in.as_secs()),
            ResolveError::DelegationRefused(target) => Self::new(
                ProblemType::RefusedByPolicy,
                format!(
                    "the node of {host} is at {target}, which this node does not federate with"
                ),
            ),
            ResolveError::NotCached => Self::new(
                ProblemType::NotCached,
                format!("no fresh cached answer for {address} (mode=cache-only)"),
            ),
            ResolveError::RateLimited {
                per_second,
                retry_in,
            } => Self::new(
                ProblemType::RateLimited,
                format!(
                    "this node sends at most {per_second} uncached lookups a second to {host}; \
                     retry in {} s",
                    retry_in.as_secs().max(1)
                ),
            )
            .with_retry_after(retry_in.as_secs() + u64::from(retry_in.subsec_nanos() > 0)),
            other => Self::new(
                ProblemType::RemoteUnreachable,
                format!("the lookup at {host} failed: {other}"),
            ),
        }
    }
}
