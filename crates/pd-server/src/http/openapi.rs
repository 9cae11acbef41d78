//! `GET /openapi.json`: the OpenAPI document of the API, generated from the handlers.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, ResponseBuilder};

use super::{
    accounts, federation, lookup, metrics, presence, sessions, webfinger, well_known, whoami,
};

/// The API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "PD node API", description = "Federated peer discovery: accounts, presence records and lookups."),
    paths(
        accounts::create, accounts::rotate, accounts::delete,
        presence::put, presence::withdraw,
        sessions::create, lookup::get, federation::lookup, whoami::get, webfinger::get,
        well_known::healthz, well_known::get, well_known::allowlist, metrics::get, get,
    ),
    components(schemas(pd_proto::Problem)),
    modifiers(&BearerAuth, &CommonResponses),
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

/// The answers the layers give on every route (a timeout) and on every route with a body
/// (body limit, content type, write rate limit), added to each operation so the document
/// lists every status a client can see.
struct CommonResponses;

impl CommonResponses {
    fn add(operation: &mut Operation) {
        let mut problem = |status: &str, description: &str| {
            operation
                .responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| {
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/problem+json",
                            Content::new(Some(Ref::from_schema_name("Problem"))),
                        )
                        .build()
                        .into()
                });
        };
        problem(
            "503",
            "timeout (the request took longer than the node's request timeout) or unavailable \
             (the store does not answer in time); with Retry-After",
        );
        problem(
            "414",
            "uri-too-long: the request target exceeds the node's limit",
        );
        problem(
            "431",
            "headers-too-large: too many header fields, or too large ones",
        );
        if operation.request_body.is_some() {
            problem(
                "413",
                "payload-too-large: the body exceeds the node's limit",
            );
            problem(
                "415",
                "unsupported-media-type: the body is not application/json",
            );
            problem(
                "429",
                "rate-limited: too many write requests from this client (with Retry-After)",
            );
        }
    }
}

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
            {
                Self::add(operation);
            }
        }
    }
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = pd_proto::paths::OPENAPI, tag = "node", responses((status = 200, description = "This document")))]
pub(crate) async fn get() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
