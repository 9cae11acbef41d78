//! The HTTP API: the router, its layers and the handlers, one module per resource.
//!
//! Layers, outermost first: one layer of the node's own (`ObserveLayer`: the request id,
//! the request span, the timeout (503 problem), request metrics and internal-error
//! logging), the request head limits (414 and 431 problems), body limit (413 problem via
//! the JSON extractor). Write routes carry a per-client-IP rate limit, and the lookup and
//! WebFinger routes another one (429 problem with `Retry-After`); see [`limits`].

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
use tracing::Instrument as _;

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
                .layer(ObserveLayer {
                    metrics: state.metrics.clone(),
                    timeout,
                    ids: RequestIds::new(),
                })
                .layer(limits::HeadLimitsLayer::new(&state.config.limits))
                .layer(DefaultBodyLimit::max(max_body)),
        )
        .with_state(state)
}

/// The request span, at `debug` level: with the default `info`, no span is made (making
/// one formats its fields, the largest single cost of a lookup); `RUST_LOG=
/// info,pd_server::http=debug` turns spans on, with a `debug` event for each answer.
/// Internal errors are logged at `error` with the same fields either way.
fn request_span(req: &Request, route: &str, request_id: &HeaderValue) -> tracing::Span {
    let span = tracing::debug_span!(
        "request",
        http.method = tracing::field::Empty,
        http.uri = tracing::field::Empty,
        http.route = route,
        peer.addr = tracing::field::Empty,
        request.id = tracing::field::Empty,
    );
    if !span.is_disabled() {
        span.record("http.method", tracing::field::display(req.method()));
        span.record("http.uri", tracing::field::display(req.uri()));
        span.record("peer.addr", tracing::field::display(PeerAddr(peer(req))));
        span.record("request.id", request_id.to_str().unwrap_or_default());
    }
    span
}

fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// The peer address as a log field, formatted only when written (empty when unknown).
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
struct RequestIds {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        Self {
            prefix: format!("{:016x}", rand::random::<u64>()).into(),
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The id of `req`: the one the client sent, or a new one (which the handlers do not
    /// read; the span and the answer get it from here).
    fn of(&self, req: &Request) -> HeaderValue {
        if let Some(id) = req.headers().get(&REQUEST_ID) {
            return id.clone();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(self.prefix.len() + 17);
        id.push_str(&self.prefix);
        id.push('-');
        // Writing to a `String` cannot fail.
        let _ = std::fmt::Write::write_fmt(&mut id, format_args!("{n:x}"));
        // Hex digits and a dash: always a valid header value.
        HeaderValue::from_maybe_shared(axum::body::Bytes::from(id))
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}

/// The node's own middleware in one layer: the request id (`x-request-id` from the client,
/// or a new one, echoed on the answer), the request span, the
/// request timeout (503 timeout problem), then the request counter by route and status and
/// the logging of internal errors (once, with method, route, peer and request id). One
/// hand-written layer instead of tower-http's request-id and trace layers, `from_fn`,
/// `HandleError` and `Timeout` saves a boxed service clone, several futures and header
/// copies per request.
#[derive(Debug, Clone)]
struct ObserveLayer {
    metrics: Arc<Metrics>,
    timeout: Duration,
    ids: RequestIds,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
            timeout: self.timeout,
            ids: self.ids.clone(),
        }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Debug, Clone)]
struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
    timeout: Duration,
    ids: RequestIds,
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
        let request_id = self.ids.of(&req);
        let span = request_span(&req, &route, &request_id);
        // Read again only when an internal error is logged.
        let method = req.method().clone();
        let peer = peer(&req);
        let started = (!span.is_disabled()).then(std::time::Instant::now);
        let metrics = self.metrics.clone();
        let timeout = self.timeout;
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(
            async move {
                let mut response = match tokio::time::timeout(timeout, inner).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_elapsed) => ApiError::new(
                        ProblemType::Timeout,
                        "the request took longer than the node allows",
                    )
                    .with_retry_after(error::RETRY_AFTER_SECS)
                    .into_response(),
                };
                let status = response.status().as_u16();
                if let Some(InternalError(cause)) = response.extensions().get::<InternalError>() {
                    metrics.store_errors.inc();
                    tracing::error!(
                        error = %cause,
                        http.method = %method,
                        http.route = &*route,
                        http.status = status,
                        peer.addr = %PeerAddr(peer),
                        request.id = request_id.to_str().unwrap_or_default(),
                        "request failed"
                    );
                }
                if let Some(kind) = response.extensions().get::<ProblemType>() {
                    metrics.problem(*kind);
                }
                if let Some(started) = started {
                    tracing::debug!(
                        http.status = status,
                        latency_us =
                            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                        "answered"
                    );
                }
                metrics
                    .requests
                    .get_or_create(&RequestLabels { route, status })
                    .inc();
                response
                    .headers_mut()
                    .entry(REQUEST_ID)
                    .or_insert(request_id);
                Ok(response)
            }
            .instrument(span),
        )
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
