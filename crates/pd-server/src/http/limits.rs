//! Request limits at the edge, each answered with a problem document: the per-client-IP
//! rate limits of writes and lookups (429 `rate-limited` with `Retry-After`), and the
//! limits on the request head (414 `uri-too-long` for a long request target, 431
//! `headers-too-large` for too many or too large header fields).
//!
//! The head limits sit below those of the HTTP library (set in `crate::listener`), so that
//! the node answers a long URI or large headers itself, in its problem shape. Only a head
//! beyond the library's own limits (a head, long request target included, larger than its
//! 64 KiB read buffer, more header fields than it parses, or a head that is not HTTP) is
//! answered by the library, with a bare status and no body; `deploy/README.md` lists those
//! cases.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::future::{Either, Ready, ready};
use governor::clock::QuantaInstant;
use governor::middleware::NoOpMiddleware;
use pd_proto::ProblemType;
use tower::{Layer, Service};
use tower_governor::GovernorLayer;
use tower_governor::errors::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;

use super::ClientIpKey;
use super::error::ApiError;
use crate::config::Limits;

/// A per-client-IP rate limit layer.
pub(crate) type ClientRateLimit = GovernorLayer<ClientIpKey, NoOpMiddleware<QuantaInstant>>;

/// A rate limit of `per_second` requests a second per client (IPv6 clients by their /64
/// network), with bursts of `burst`; refusals are 429 `rate-limited` naming `what`.
pub(crate) fn per_client_ip(
    client_ip: ClientIpKey,
    per_second: u32,
    burst: u32,
    what: &'static str,
) -> ClientRateLimit {
    let period = Duration::from_secs(1) / per_second.max(1);
    let mut builder = GovernorConfigBuilder::default().key_extractor(client_ip);
    builder
        .period(period.max(Duration::from_nanos(1)))
        .burst_size(burst.max(1))
        .error_handler(move |e| rate_limited(e, what));
    // Period and burst are non-zero, so the builder always produces a configuration.
    let config = builder
        .finish()
        .unwrap_or_else(|| unreachable!("rate limit period and burst are non-zero"));
    GovernorLayer {
        config: Arc::new(config),
    }
}

/// The key of a client for rate limits: its address, or for IPv6 its /64 network, which a
/// single host usually holds whole.
pub(crate) fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The error answer of a rate limiter, in our problem shape.
fn rate_limited(e: GovernorError, what: &str) -> Response {
    match e {
        GovernorError::TooManyRequests { wait_time, .. } => {
            ApiError::rate_limited(what, wait_time).into_response()
        }
        GovernorError::UnableToExtractKey => {
            ApiError::internal("the client address is unknown").into_response()
        }
        GovernorError::Other { msg, .. } => {
            ApiError::internal(msg.unwrap_or_default()).into_response()
        }
    }
}

/// The limits on the request head, checked before routing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimitsLayer {
    max_uri_bytes: usize,
    max_headers: usize,
    max_header_bytes: usize,
}

impl HeadLimitsLayer {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            max_uri_bytes: limits.max_uri_bytes,
            max_headers: limits.max_headers,
            max_header_bytes: limits.max_header_bytes,
        }
    }

    /// The refusal of a request whose head is over a limit, if it is.
    fn check(&self, req: &Request) -> Option<ApiError> {
        let target = req
            .uri()
            .path_and_query()
            .map_or(req.uri().path().len(), |pq| pq.as_str().len());
        if target > self.max_uri_bytes {
            return Some(ApiError::new(
                ProblemType::UriTooLong,
                format!(
                    "the request target has {target} bytes; this node accepts at most {}",
                    self.max_uri_bytes
                ),
            ));
        }
        let headers = req.headers();
        if headers.len() > self.max_headers {
            return Some(ApiError::new(
                ProblemType::HeadersTooLarge,
                format!(
                    "the request has {} header fields; this node accepts at most {}",
                    headers.len(),
                    self.max_headers
                ),
            ));
        }
        // Each field as on the wire: name, ": ", value, CRLF.
        let size: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if size > self.max_header_bytes {
            return Some(ApiError::new(
                ProblemType::HeadersTooLarge,
                format!(
                    "the request's header fields have {size} bytes; this node accepts at most {}",
                    self.max_header_bytes
                ),
            ));
        }
        None
    }
}

impl<S> Layer<S> for HeadLimitsLayer {
    type Service = HeadLimits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeadLimits {
            inner,
            limits: *self,
        }
    }
}

/// The service of [`HeadLimitsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct HeadLimits<S> {
    inner: S,
    limits: HeadLimitsLayer,
}

impl<S> Service<Request> for HeadLimits<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match self.limits.check(&req) {
            Some(refusal) => Either::Left(ready(Ok(refusal.into_response()))),
            None => Either::Right(self.inner.call(req)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_their_64_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(rate_key(a), rate_key(b));
        assert_ne!(rate_key(a), rate_key(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(rate_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(rate_key(mapped), v4);
    }
}
