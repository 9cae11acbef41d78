//! The admin listener (`admin_listen`; off by default): the operator's status pages and
//! the JSON admin surface, behind one access guard (`admin/access.rs`): loopback clients
//! only, or, with `[admin] token`, anyone holding the token.
//!
//! The status pages (`admin/pages.rs`): `/` (overview), `/peers`, `/trust`, `/relay`, with POST forms
//! for retry, cache flush and trust reload. The JSON surface:
//!
//! - `GET /admin/peers`: tracked peers (state, consecutive failures, last error, seconds
//!   until the next attempt, latency, this node's trust verdict) and the static routes.
//! - `POST /admin/peers/{domain}/retry`: forget a peer's backoff (404 if not tracked).
//! - `POST /admin/cache/flush/{domain}`: drop cached lookups and the discovery route and
//!   keys of a domain.
//! - `GET /admin/trust/explain/{domain}`: the verdict and the deciding entry.
//! - `POST /admin/trust/reload`: read the trust policy again, like SIGHUP.
//! - `GET /admin/trust/subscriptions`: each subscribed list with its last attempt, last
//!   success, last error and entry count.
//! - `GET /admin/trust/export?format=text|csv&kind=allow|deny`: the entries in force.
//! - `GET /admin/relay`: the relay's slots and relayed conversations (addresses, bytes,
//!   age; never content).
//!
//! Both call the operations in [`ops`], so a page's button and its JSON endpoint do the
//! same thing.

mod access;
mod chart;
pub mod ops;
mod pages;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pd_federation::trust::{EntryKind, lists};
use pd_proto::{ProblemType, admin};

pub use self::ops::{Explanation, explain};
use crate::http::ApiError;
use crate::state::AppState;

/// The state of the admin router: the node's, and the status pages' own.
#[derive(Debug, Clone, FromRef)]
pub(crate) struct AdminState {
    app: AppState,
    pages: Arc<pages::Pages>,
}

/// The admin router: the status pages and the JSON surface, behind the access guard.
pub fn router(state: AppState) -> Router {
    let access = Arc::new(access::Access::new(&state.config));
    let admin = AdminState {
        pages: Arc::new(pages::Pages::new()),
        app: state,
    };
    Router::new()
        .route("/admin/peers", get(peers))
        .route("/admin/peers/{domain}/retry", post(retry))
        .route("/admin/cache/flush/{domain}", post(flush))
        .route("/admin/trust/explain/{domain}", get(explain_json))
        .route("/admin/trust/reload", post(reload))
        .route("/admin/trust/export", get(export))
        .route("/admin/trust/subscriptions", get(subscriptions))
        .route("/admin/relay", get(relay))
        .merge(pages::router())
        .fallback(pages::not_found)
        .method_not_allowed_fallback(crate::http::method_not_allowed)
        .layer(middleware::from_fn_with_state(access, access::guard))
        .with_state(admin)
}

fn unix(t: Option<SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

fn millis(d: Option<std::time::Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn peers(State(state): State<AppState>) -> Json<admin::PeersReport> {
    let peers = ops::peers(&state)
        .into_iter()
        .map(|p| {
            let condition = p.state().as_str().to_owned();
            let s = p.status;
            admin::PeerReport {
                domain: s.host.to_string(),
                state: s.health.as_str().to_owned(),
                condition,
                failures: s.failures,
                retry_in_secs: s.retry_in.map(|d| d.as_secs()),
                last_error: s.last_error,
                last_failure_at: unix(s.last_failure_at),
                last_success_at: unix(s.last_success_at),
                latency_ms: millis(s.latency),
                last_latency_ms: millis(s.last_latency),
                refuses_this_node: s.refuses_us,
                trust: admin::TrustVerdict {
                    allowed: p.verdict.allowed,
                    reason: p.verdict.why.as_str().to_owned(),
                    explanation: p.explanation,
                },
            }
        })
        .collect();
    let static_routes = ops::static_routes(&state)
        .into_iter()
        .map(|(domain, url)| admin::StaticRoute {
            domain: domain.to_string(),
            url: url.into(),
        })
        .collect();
    Json(admin::PeersReport {
        peers,
        static_routes,
    })
}

async fn retry(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Json<admin::RetryAnswer>, ApiError> {
    let host = ops::parse_domain(&domain)?;
    ops::retry(&state, &host)?;
    Ok(Json(admin::RetryAnswer {
        domain: host.to_string(),
        retry: "now".to_owned(),
    }))
}

async fn flush(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Json<admin::FlushAnswer>, ApiError> {
    let host = ops::parse_domain(&domain)?;
    let flushed_entries = ops::flush(&state, &host).await;
    Ok(Json(admin::FlushAnswer {
        domain: host.to_string(),
        flushed_entries,
    }))
}

async fn explain_json(
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Json<admin::ExplainAnswer>, ApiError> {
    let host = ops::parse_domain(&domain)?;
    let explained = explain(&state.federation.trust.current(), &host, SystemTime::now());
    Ok(Json(admin::ExplainAnswer {
        domain: host.to_string(),
        verdict: admin::TrustVerdict {
            allowed: explained.verdict.allowed,
            reason: explained.verdict.why.as_str().to_owned(),
            explanation: explained.line,
        },
    }))
}

async fn reload(State(state): State<AppState>) -> Result<Json<admin::ReloadAnswer>, ApiError> {
    let diff = ops::reload(&state).await?;
    let names = |v: &[pd_federation::trust::DiffEntry]| {
        v.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    Ok(Json(admin::ReloadAnswer {
        changed: !diff.is_empty(),
        mode: diff.mode_after.to_string(),
        added: names(&diff.added),
        removed: names(&diff.removed),
        modified: names(&diff.changed),
    }))
}

/// The relay's slots and conversations.
async fn relay(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "enabled": state.relay.enabled(),
        "slots": state.relay.slots(),
        "conversations": state.relay.conversations(),
    }))
}

async fn subscriptions(State(state): State<AppState>) -> Json<admin::SubscriptionsReport> {
    let subscriptions = ops::subscriptions(&state)
        .into_iter()
        .map(|sub| {
            let s = sub.status;
            admin::SubscriptionReport {
                url: sub.config.url.to_string(),
                kind: sub.config.kind.to_string(),
                refresh_secs: sub.config.refresh.as_secs(),
                last_attempt: unix(s.last_attempt),
                last_success: unix(s.last_success),
                last_error: s.last_error,
                entries: s.entries,
            }
        })
        .collect();
    Json(admin::SubscriptionsReport { subscriptions })
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
