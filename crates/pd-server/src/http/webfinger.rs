//! WebFinger (RFC 7033): `GET /.well-known/webfinger?resource=acct:name@domain` for this
//! node's users, so existing WebFinger tools can resolve PD addresses.
//!
//! The JRD names the account key in the property [`PUBLIC_KEY_PROPERTY`] (base64url, as
//! everywhere in the API) and links to the lookup endpoint with the relation
//! [`LOOKUP_REL`]; the link is `{base}/v1/lookup/{address}` under the node's real API base:
//! the configured `base_url` of a delegated domain, else `https://{domain}`. CORS is open
//! (`Access-Control-Allow-Origin: *`).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use pd_proto::{Address, ProblemType};

use super::error::ApiError;
use crate::registry::RegistryError;
use crate::state::AppState;

/// JRD property holding the account's public key.
pub const PUBLIC_KEY_PROPERTY: &str = "https://pd.example/ns/public-key";

/// JRD link relation of the lookup endpoint.
pub const LOOKUP_REL: &str = "https://pd.example/ns/lookup";

/// Media type of a JRD.
const JRD: &str = "application/jrd+json";

/// `OPTIONS /.well-known/webfinger`: lets the route accept the method so that the CORS
/// layer around it answers preflights (it answers every `OPTIONS` itself; without this
/// route the request would end as 405 before reaching the layer).
pub(crate) async fn options() -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        )],
    )
}

/// `GET /.well-known/webfinger?resource=acct:name@domain`.
#[utoipa::path(
    get, path = pd_proto::paths::WEBFINGER, tag = "discovery",
    params(("resource" = String, Query, description = "acct:name@domain")),
    responses(
        (status = 200, description = "A JRD (application/jrd+json) with the account key and a link to the lookup endpoint"),
        (status = 400, description = "invalid-request: missing or malformed resource", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown-user (also for other domains)", body = pd_proto::Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate-limited: too many lookups from this client (with Retry-After)", body = pd_proto::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let query = uri.query().unwrap_or_default();
    let mut resources = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "resource")
        .map(|(_, v)| v.into_owned());
    let (Some(resource), None) = (resources.next(), resources.next()) else {
        return Err(ApiError::new(
            ProblemType::InvalidRequest,
            "expected exactly one resource=acct:name@domain parameter",
        ));
    };
    let Some(acct) = resource
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("acct:"))
        .map(|_| &resource[5..])
    else {
        return Err(ApiError::new(
            ProblemType::InvalidRequest,
            "the resource must be an acct: URI (acct:name@domain)",
        ));
    };
    let address = Address::parse(acct).map_err(|e| {
        ApiError::new(
            ProblemType::InvalidRequest,
            format!(
                "{:?} is not a valid address: {e}",
                acct.chars().take(300).collect::<String>()
            ),
        )
    })?;
    let unknown = || {
        ApiError::new(
            ProblemType::UnknownUser,
            format!("{address} is not a user of this node"),
        )
    };
    if !state.registry.is_local(&address) {
        return Err(unknown());
    }
    let found = match state.registry.lookup_local(&address).await {
        Ok(found) => found,
        Err(RegistryError::UnknownUser(_)) => return Err(unknown()),
        Err(e) => return Err(e.into()),
    };
    let key = serde_json::to_value(found.key).map_err(ApiError::internal)?;
    let jrd = serde_json::json!({
        "subject": format!("acct:{address}"),
        "properties": { PUBLIC_KEY_PROPERTY: key },
        "links": [{
            "rel": LOOKUP_REL,
            "type": "application/json",
            "href": format!(
                "{}/v1/lookup/{}",
                state.config.public_base_url(),
                url::form_urlencoded::byte_serialize(address.to_string().as_bytes())
                    .collect::<String>()
            ),
        }],
    });
    let body = serde_json::to_vec(&jrd).map_err(ApiError::internal)?;
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JRD));
    Ok(response)
}
