//! `GET /metrics`: the Prometheus text exposition.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// `GET /metrics`.
#[utoipa::path(
    get, path = pd_proto::paths::METRICS, tag = "node",
    responses((status = 200, description = "Metrics in the OpenMetrics text format, which Prometheus scrapes", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"))
)]
pub(crate) async fn get(State(state): State<AppState>) -> Response {
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
