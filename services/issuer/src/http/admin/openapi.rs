//! The admin API's OpenAPI 3.1 document, generated from the Rust types (`utoipa`): the
//! models of `signet-core` (feature `openapi`) with the reference's field descriptions and
//! defaults, and the `#[utoipa::path]` annotations of the handlers. Each resource module
//! brings its own part (paths and tags); this module adds what is the whole API's (info,
//! security, the error responses of [`super::common`], this document) and merges the parts
//! of [`super::RESOURCES`] in order.
//!
//! Served at `GET /admin/v1/openapi.json` without a token: the schema is not data. A unit
//! test drives the real admin router with every operation of the document, so the document
//! and the routes cannot drift apart.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use signet_core::validation::FieldError;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::common::{
    BadRequest, Conflict, ErrorBody, Forbidden, NotFound, PayloadTooLarge, Unauthorized,
    Unavailable, UnsupportedMediaType, ValidationError,
};
use crate::http::error::ApiError;

/// Where the document is served on the admin listener.
pub const PATH: &str = "/admin/v1/openapi.json";

/// The name of the bearer security scheme (as in `security(...)` below).
const BEARER: &str = "bearer";

/// What is the whole API's; the resources' parts are merged into it ([`document_model`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Signet admin API",
        description = "Configuration API of a Signet node (clients, API resources, API scopes, identity resources, users and signing keys) and its audit trail, with the field names and defaults of the IdentityServer-style AuthService configuration API.\n\nEvery operation but this document needs a bearer access token issued by this server with scope `signet.admin` (`client_credentials` at the public `/oauth2/token` endpoint). Writes answer once they are durable and applied. Invalid bodies get 400 with the offending `field` and the `rule` it broke."
    ),
    paths(document),
    components(
        schemas(ErrorBody, ValidationError, FieldError),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            Unavailable
        )
    ),
    modifiers(&BearerScheme),
    security(("bearer" = ["signet.admin"]))
)]
pub struct AdminApi;

/// The tag of this document, last in the list of tags.
#[derive(OpenApi)]
#[openapi(tags((name = "Meta", description = "This document.")))]
struct Meta;

/// The whole document: [`AdminApi`], then every resource's part, then [`Meta`].
pub fn document_model() -> utoipa::openapi::OpenApi {
    let mut doc = AdminApi::openapi();
    for resource in super::RESOURCES {
        doc.merge((resource.api)());
    }
    doc.merge(Meta::openapi());
    doc
}

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An RFC 9068 access token issued by this server for the API resource `signet` with scope `signet.admin` (RFC 6750).",
                    ))
                    .build(),
            ),
        );
    }
}
/// The OpenAPI 3.1 document of the admin API (no token needed).
#[utoipa::path(
    get,
    path = "/admin/v1/openapi.json",
    tag = "Meta",
    security(()),
    responses((status = 200, description = "This document.", content_type = "application/json", body = Object))
)]
pub async fn document() -> Response {
    static DOCUMENT: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        json()
            .and_then(|doc| serde_json::to_vec(&doc))
            .map_err(|e| e.to_string())
    });
    match body {
        Ok(body) => {
            let mut resp = body.clone().into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => ApiError::Internal(format!("the OpenAPI document: {e}")).into_response(),
    }
}

/// Names of the generic models' schemas: utoipa names `Client<SecretInput>` after its
/// type arguments (`Client_Secret`); the document calls what is written `Client` and what
/// is read `ClientView`.
const SCHEMA_NAMES: [(&str, &str); 4] = [
    ("Client_Secret", "Client"),
    ("Client_SecretView", "ClientView"),
    ("ApiResource_Secret", "ApiResource"),
    ("ApiResource_SecretView", "ApiResourceView"),
];

/// The document as JSON.
pub fn json() -> Result<Value, serde_json::Error> {
    let mut doc = serde_json::to_value(document_model())?;
    if let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") {
        for (from, to) in SCHEMA_NAMES {
            if let Some(schema) = schemas.remove(from) {
                schemas.insert(to.to_owned(), schema);
            }
        }
    }
    rename_refs(&mut doc);
    Ok(doc)
}

fn rename_refs(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    if let Some((_, to)) = SCHEMA_NAMES.iter().find(|(from, _)| *from == name) {
                        *r = format!("#/components/schemas/{to}");
                    }
                }
            }
            map.values_mut().for_each(rename_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rename_refs),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
