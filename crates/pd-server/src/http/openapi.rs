//! `GET /openapi.json`: the OpenAPI document of the API, generated from the handlers.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::{accounts, federation, lookup, metrics, presence, sessions, webfinger, well_known};

/// The API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "PD node API", description = "Federated peer discovery: accounts, presence records and lookups."),
    paths(
        accounts::create, accounts::rotate, accounts::delete,
        presence::put, presence::withdraw,
        sessions::create, lookup::get, federation::lookup, webfinger::get,
        well_known::healthz, well_known::get, well_known::allowlist, metrics::get, get,
    ),
    components(schemas(pd_proto::Problem)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "node", responses((status = 200, description = "This document")))]
pub(crate) async fn get() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
