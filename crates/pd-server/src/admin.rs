//! The admin surface, served on its own listener (`admin_listen`, loopback only, no
//! authentication; off by default): peer state, retry and cache flush, trust explain,
//! reload and export.
//!
//! - `GET /admin/peers`: tracked peers (state, consecutive failures, last error, seconds
//!   until the next attempt) and the static routes.
//! - `POST /admin/peers/{domain}/retry`: forget a peer's backoff (404 if not tracked).
//! - `POST /admin/cache/flush/{domain}`: drop cached lookups and the discovery route and
//!   keys of a domain.
//! - `GET /admin/trust/explain/{domain}`: the verdict and the deciding entry.
//! - `POST /admin/trust/reload`: read the trust policy again, like SIGHUP.
//! - `GET /admin/trust/subscriptions`: each subscribed list with its last attempt, last
//!   success, last error and entry count.
//! - `GET /admin/trust/export?format=text|csv&kind=allow|deny`: the entries in force.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pd_federation::trust::{EntryKind, lists};
use pd_proto::{Host, ProblemType};
use serde_json::{Value, json};

use crate::http::ApiError;
use crate::state::AppState;

/// The admin router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/admin/peers", get(peers))
        .route("/admin/peers/{domain}/retry", post(retry))
        .route("/admin/cache/flush/{domain}", post(flush))
        .route("/admin/trust/explain/{domain}", get(explain))
        .route("/admin/trust/reload", post(reload))
        .route("/admin/trust/export", get(export))
        .route("/admin/trust/subscriptions", get(subscriptions))
        .fallback(crate::http::not_found)
        .method_not_allowed_fallback(crate::http::method_not_allowed)
        .layer(middleware::from_fn(loopback_only))
        .with_state(state)
}

/// Defence in depth: the listener is on loopback, and so must every peer be.
async fn loopback_only(req: Request, next: Next) -> Response {
    let loopback = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback());
    if !loopback {
        return ApiError::new(
            ProblemType::NotFound,
            "the admin surface only answers loopback clients",
        )
        .into_response();
    }
    next.run(req).await
}

fn parse_domain(raw: &str) -> Result<Host, ApiError> {
    Host::parse(raw).map_err(|e| {
        ApiError::new(
            ProblemType::InvalidRequest,
            format!(
                "{:?} is not a valid domain: {e}",
                raw.chars().take(200).collect::<String>()
            ),
        )
    })
}

fn unix(t: Option<SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(Value::Null, |d| json!(d.as_secs()))
}

async fn peers(State(state): State<AppState>) -> Json<Value> {
    let tracked: Vec<Value> = state
        .federation
        .resolver
        .peers()
        .into_iter()
        .map(|p| {
            json!({
                "domain": p.host.to_string(),
                "state": p.health.as_str(),
                "failures": p.failures,
                "retry_in_secs": p.retry_in.map(|d| d.as_secs()),
                "last_error": p.last_error,
                "last_failure_at": unix(p.last_failure_at),
                "last_success_at": unix(p.last_success_at),
            })
        })
        .collect();
    let routes: Vec<Value> = state
        .config
        .federation
        .peers
        .iter()
        .map(|p| json!({ "domain": p.domain.to_string(), "url": p.url.as_str() }))
        .collect();
    Json(json!({ "peers": tracked, "static_routes": routes }))
}

async fn retry(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let host = parse_domain(&domain)?;
    if !state.federation.resolver.retry_now(&host) {
        return Err(ApiError::new(
            ProblemType::NotFound,
            format!("{host} is not a tracked peer"),
        ));
    }
    tracing::info!(remote.host = %host, "peer backoff cleared by the admin");
    Ok(Json(json!({ "domain": host.to_string(), "retry": "now" })))
}

async fn flush(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let host = parse_domain(&domain)?;
    let flushed = state.federation.resolver.flush_domain(&host).await;
    state.federation.discovery.flush(&host).await;
    tracing::info!(remote.host = %host, flushed, "cache of a domain flushed by the admin");
    Ok(Json(
        json!({ "domain": host.to_string(), "flushed_entries": flushed }),
    ))
}

async fn explain(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let host = parse_domain(&domain)?;
    let verdict = state.federation.trust.decide(&host);
    Ok(Json(json!({
        "domain": host.to_string(),
        "allowed": verdict.allowed,
        "reason": verdict.why.as_str(),
        "explanation": verdict.explain(&host),
    })))
}

async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.federation.reload_trust(&state.config).await {
        Ok(diff) => {
            let names = |v: &[pd_federation::trust::DiffEntry]| {
                v.iter().map(ToString::to_string).collect::<Vec<_>>()
            };
            Ok(Json(json!({
                "changed": !diff.is_empty(),
                "mode": diff.mode_after.to_string(),
                "added": names(&diff.added),
                "removed": names(&diff.removed),
                "modified": names(&diff.changed),
            })))
        }
        Err(e) => {
            tracing::error!(error = %e, "trust policy not reloaded; the previous policy stays in force");
            Err(ApiError::new(
                ProblemType::InvalidRequest,
                format!(
                    "the trust policy was not reloaded (the previous policy stays in force): {e}"
                ),
            ))
        }
    }
}

async fn subscriptions(State(state): State<AppState>) -> Json<Value> {
    let status = state.federation.subscriptions();
    let lists: Vec<Value> = state
        .federation
        .trust
        .current()
        .local()
        .subscriptions
        .iter()
        .map(|sub| {
            let s = status.get(&sub.url).cloned().unwrap_or_default();
            json!({
                "url": sub.url.as_str(),
                "kind": sub.kind.to_string(),
                "refresh_secs": sub.refresh.as_secs(),
                "last_attempt": unix(s.last_attempt),
                "last_success": unix(s.last_success),
                "last_error": s.last_error,
                "entries": s.entries,
            })
        })
        .collect();
    Json(json!({ "subscriptions": lists }))
}

async fn export(State(state): State<AppState>, uri: axum::http::Uri) -> Result<Response, ApiError> {
    let mut format = "text".to_owned();
    let mut kind = EntryKind::Deny;
    let query = uri.query().unwrap_or_default();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "format" => format = value.into_owned(),
            "kind" => kind = parse_kind(&value)?,
            _ => {}
        }
    }
    let entries = state
        .federation
        .trust
        .current()
        .effective(kind, SystemTime::now());
    let (body, content_type) = match format.as_str() {
        "text" => (lists::export_text(&entries), "text/plain; charset=utf-8"),
        "csv" => (
            lists::export_mastodon_csv(&entries, kind),
            "text/csv; charset=utf-8",
        ),
        other => {
            return Err(ApiError::new(
                ProblemType::InvalidRequest,
                format!("format must be text or csv, not {other:?}"),
            ));
        }
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

/// Parses `allow` or `deny`.
pub fn parse_kind(value: &str) -> Result<EntryKind, ApiError> {
    match value {
        "allow" => Ok(EntryKind::Allow),
        "deny" => Ok(EntryKind::Deny),
        other => Err(ApiError::new(
            ProblemType::InvalidRequest,
            format!("kind must be allow or deny, not {other:?}"),
        )),
    }
}
