//! `GET /openapi.json`: the OpenAPI document of the API, generated from the handlers.

use axum::Json;
use axum::extract::State;
use pd_proto::Host;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, ResponseBuilder};

use super::{
    accounts, federation, lookup, metrics, presence, sessions, webfinger, well_known, whoami,
};
use crate::state::AppState;

/// The API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "PD node API", description = "Federated peer discovery: accounts, presence records and lookups."),
    paths(
        accounts::create, accounts::rotate, accounts::delete,
        presence::put, presence::withdraw,
        sessions::create, lookup::get, federation::lookup, whoami::get, webfinger::get,
        well_known::healthz, well_known::get, well_known::allowlist, metrics::get, get,
        crate::relay::http::slot, crate::relay::http::connect, crate::relay::http::accept,
    ),
    components(schemas(pd_proto::Problem)),
    modifiers(&BearerAuth, &CommonResponses, &Parameters),
)]
pub struct ApiDoc;

impl ApiDoc {
    /// The document as one node serves it: the account operations' `{address}` only takes
    /// addresses of `domain` (any other is `wrong-domain`), which the generic document
    /// cannot say.
    pub fn for_domain(domain: &Host) -> utoipa::openapi::OpenApi {
        let mut doc = Self::openapi();
        let pattern = pd_proto::openapi::local_address_pattern(domain);
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/v1/accounts/{address}") {
                continue;
            }
            for operation in operations(item) {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.name == "address" && parameter.parameter_in == ParameterIn::Path {
                        parameter.schema = Some(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .description(Some(format!(
                                    "An address of this node's domain, {domain}, in normal form"
                                )))
                                .pattern(Some(pattern.clone()))
                                .min_length(Some(3))
                                .max_length(Some(pd_proto::openapi::MAX_ADDRESS_LEN))
                                .into(),
                        );
                    }
                }
            }
        }
        doc
    }
}

/// Every operation of a path item.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
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
}

/// The parameters' constraints, which the generated parameters do not carry (they are
/// plain strings): an `{address}` in a path is an [`pd_proto::Address`], the lookup `mode`
/// an enum, the WebFinger `resource` an `acct:` URI.
struct Parameters;

impl utoipa::Modify for Parameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.parameter_in == ParameterIn::Path && parameter.name == "address" {
                        parameter.schema = Some(Ref::from_schema_name("Address").into());
                        continue;
                    }
                    if parameter.parameter_in != ParameterIn::Query {
                        continue;
                    }
                    match parameter.name.as_str() {
                        "mode" => {
                            parameter.schema = Some(pd_proto::openapi::lookup_mode_schema());
                        }
                        "resource" => {
                            parameter.schema = Some(
                                ObjectBuilder::new()
                                    .schema_type(Type::String)
                                    .description(Some("acct: and an address (section 2)"))
                                    .pattern(Some(pd_proto::openapi::acct_pattern()))
                                    .min_length(Some(8))
                                    .max_length(Some(5 + pd_proto::openapi::MAX_ADDRESS_LEN))
                                    .into(),
                            );
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

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
            for operation in operations(item) {
                Self::add(operation);
            }
        }
    }
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = pd_proto::paths::OPENAPI, tag = "node", responses((status = 200, description = "This document")))]
pub(crate) async fn get(State(state): State<AppState>) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::for_domain(&state.config.domain))
}
