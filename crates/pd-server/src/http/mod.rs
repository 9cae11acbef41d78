//! The HTTP API: the router, its layers and the handlers, one module per resource.
//!
//! Layers, outermost first: request id, tracing, request-id propagation, one layer for the
//! timeout (503 problem), request metrics and internal-error logging, the request head
//! limits (414 and 431 problems), body limit (413 problem via the JSON extractor). Write
//! routes carry a per-client-IP rate limit, and the lookup and WebFinger routes another one
//! (429 problem with `Retry-After`); see [`limits`].

pub mod error;
pub mod extract;
pub mod limits;

mod accounts;
mod federation;
pub mod lookup;
mod metrics;
mod openapi;
mod presence;
mod sessions;
pub mod webfinger;
mod well_known;
mod whoami;

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use futures::future::BoxFuture;
use ipnet::IpNet;
use pd_proto::{ProblemType, paths};
use tower::{Layer, Service, ServiceBuilder};
use tower_governor::errors::GovernorError;
use tower_governor::key_extractor::KeyExtractor;
use tower_http::cors::{Any, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use openapi::ApiDoc;

use self::error::InternalError;
use crate::metrics::{Metrics, RequestLabels};
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The node's router with all layers; serve it with connect info (`SocketAddr`).
pub fn router(state: AppState) -> Router {
    let rates = &state.config.rate_limit;
    let client_ip = ClientIpKey::new(state.config.trusted_proxies.clone());
    let write_limit = limits::per_client_ip(
        client_ip.clone(),
        rates.writes_per_second,
        rates.burst,
        "write requests",
    );
    // One bucket per client for lookups and WebFinger queries together.
    let lookup_limit = limits::per_client_ip(
        client_ip.clone(),
        rates.lookups_per_second,
        rates.lookup_burst,
        "lookups",
    );
    let writes = Router::new()
        .route(paths::ACCOUNTS, post(accounts::create))
        .route(paths::PRESENCE, put(presence::put))
        .route(paths::PRESENCE_WITHDRAW, post(presence::withdraw))
        .route(paths::ROTATE, post(accounts::rotate))
        .route(paths::DELETE, post(accounts::delete))
        .route(paths::SESSIONS, post(sessions::create))
        .route_layer(write_limit);
    let relay_limit = limits::per_client_ip(
        client_ip.clone(),
        state.config.relay.connects_per_second,
        state.config.relay.connect_burst,
        "relay requests",
    );
    let relay = Router::new()
        .route(
            paths::RELAY_CONNECT,
            get(crate::relay::http::connect)
                .layer::<_, Infallible>(relay_limit)
                .layer(Extension(client_ip.clone())),
        )
        .route(paths::RELAY_SLOT, get(crate::relay::http::slot))
        .route(paths::RELAY_ACCEPT, get(crate::relay::http::accept));
    let reads = Router::new()
        .route(paths::LOOKUP, get(lookup::get).layer(lookup_limit.clone()))
        .route(paths::FEDERATION_LOOKUP, get(federation::lookup))
        .route(paths::WHOAMI, get(whoami::get).layer(Extension(client_ip)))
        .route(
            paths::WEBFINGER,
            // The CORS layer answers preflights (every OPTIONS) for the route.
            get(webfinger::get)
                .layer(lookup_limit)
                .options(webfinger::options)
                .layer(
                    CorsLayer::new()
                        .allow_origin(Any)
                        .allow_methods([Method::GET]),
                ),
        )
        .route(paths::HEALTHZ, get(well_known::healthz))
        .route(paths::WELL_KNOWN, get(well_known::get))
        .route(paths::ALLOWLIST, get(well_known::allowlist))
        .route(paths::METRICS, get(metrics::get))
        .route(paths::OPENAPI, get(openapi::get));
    let timeout = state.config.limits.request_timeout;
    let max_body = state.config.limits.max_body_bytes;
    writes
        .merge(reads)
        .merge(relay)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, CounterRequestId::new()))
                .layer(TraceLayer::new_for_http().make_span_with(make_span))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(ObserveLayer {
                    metrics: state.metrics.clone(),
                    timeout,
                })
                .layer(limits::HeadLimitsLayer::new(&state.config.limits))
                .layer(DefaultBodyLimit::max(max_body)),
        )
        .with_state(state)
}

fn make_span(req: &Request) -> tracing::Span {
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or_default();
    // Only formatted if the span is enabled and recorded: no per-request `String`.
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    tracing::info_span!(
        "request",
        http.method = %req.method(),
        http.uri = %req.uri(),
        http.route = route,
        peer.addr = tracing::field::display(PeerAddr(peer)),
        request.id = request_id,
    )
}

/// The peer address as a span field, formatted lazily (empty when unknown).
struct PeerAddr(Option<SocketAddr>);

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => Ok(()),
        }
    }
}

/// Request ids for requests that arrive without `x-request-id`: a random per-process
/// prefix and a counter, unique like a UUID for logging purposes but without a random draw
/// per request.
#[derive(Debug, Clone)]
struct CounterRequestId {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl CounterRequestId {
    fn new() -> Self {
        Self {
            prefix: format!("{:016x}", rand::random::<u64>()).into(),
            next: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl MakeRequestId for CounterRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n:x}", self.prefix);
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// The node's own middleware in one layer: the request timeout (503 timeout problem),
/// then the request counter by route and status and the logging of internal errors (once).
/// One hand-written layer instead of `from_fn`, `HandleError` and `Timeout` saves a boxed
/// service clone and two futures per request.
#[derive(Debug, Clone)]
struct ObserveLayer {
    metrics: Arc<Metrics>,
    timeout: Duration,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
            timeout: self.timeout,
        }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Debug, Clone)]
struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
    timeout: Duration,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = route_label(req.extensions().get::<MatchedPath>());
        let metrics = self.metrics.clone();
        let timeout = self.timeout;
        let inner = self.inner.call(req);
        Box::pin(async move {
            let response = match tokio::time::timeout(timeout, inner).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_elapsed) => ApiError::new(
                    ProblemType::Timeout,
                    "the request took longer than the node allows",
                )
                .with_retry_after(error::RETRY_AFTER_SECS)
                .into_response(),
            };
            if let Some(InternalError(cause)) = response.extensions().get::<InternalError>() {
                metrics.store_errors.inc();
                tracing::error!(error = %cause, "request failed");
            }
            if let Some(kind) = response.extensions().get::<ProblemType>() {
                metrics.problem(*kind);
            }
            metrics
                .requests
                .get_or_create(&RequestLabels {
                    route,
                    status: response.status().as_u16(),
                })
                .inc();
            Ok(response)
        })
    }
}

/// The routes of [`router`], so the request counter's route label is borrowed rather than
/// allocated for them; any other matched path is still counted, as an owned label.
const ROUTES: &[&str] = &[
    paths::LOOKUP,
    paths::FEDERATION_LOOKUP,
    paths::WHOAMI,
    paths::WEBFINGER,
    paths::HEALTHZ,
    paths::WELL_KNOWN,
    paths::ALLOWLIST,
    paths::METRICS,
    paths::OPENAPI,
    paths::ACCOUNTS,
    paths::PRESENCE,
    paths::PRESENCE_WITHDRAW,
    paths::ROTATE,
    paths::DELETE,
    paths::SESSIONS,
    paths::RELAY_CONNECT,
    paths::RELAY_SLOT,
    paths::RELAY_ACCEPT,
];

fn route_label(matched: Option<&MatchedPath>) -> Cow<'static, str> {
    let Some(path) = matched.map(MatchedPath::as_str) else {
        return Cow::Borrowed("unmatched");
    };
    ROUTES
        .iter()
        .find(|r| **r == path)
        .map_or_else(|| Cow::Owned(path.to_owned()), |r| Cow::Borrowed(*r))
}

pub(crate) async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        ProblemType::NotFound,
        format!("no resource at {}", req.uri().path()),
    )
}

pub(crate) async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        ProblemType::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Rate-limit key: the client's IP. `X-Forwarded-For` is believed only when the peer is one
/// of the trusted proxies; then the rightmost address that is not itself a trusted proxy is
/// the client.
#[derive(Debug, Clone)]
pub struct ClientIpKey {
    trusted: Arc<Vec<IpNet>>,
}

impl ClientIpKey {
    /// A key extractor trusting `X-Forwarded-For` from `trusted` proxies.
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self {
            trusted: Arc::new(trusted),
        }
    }

    /// The client IP of a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.forwarded_client(peer, headers).unwrap_or(peer)
    }

    /// The client a trusted proxy names in `X-Forwarded-For`: `None` when `peer` is not a
    /// trusted proxy or names no client, so the client is `peer` itself.
    pub fn forwarded_client(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let is_trusted = |ip: &IpAddr| self.trusted.iter().any(|net| net.contains(ip));
        if !is_trusted(&peer) {
            return None;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        forwarded
            .iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .or_else(|| forwarded.first())
            .copied()
    }
}

impl KeyExtractor for ClientIpKey {
    type Key = IpAddr;

    fn extract<T>(&self, req: &axum::http::Request<T>) -> Result<Self::Key, GovernorError> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or(GovernorError::UnableToExtractKey)?;
        Ok(limits::rate_key(self.client_ip(peer, req.headers())))
    }
}
