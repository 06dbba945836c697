//! The admin API's OpenAPI 3.1 document, generated from the Rust types (`utoipa`): the
//! models of `signet-core` (feature `openapi`) with the reference's field descriptions and
//! defaults, and the `#[utoipa::path]` annotations of the handlers in [`super::admin`].
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
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use super::error::ApiError;
use super::{admin, admin_revocations, admin_users};

/// Where the document is served on the admin listener.
pub const PATH: &str = "/admin/v1/openapi.json";

/// The name of the bearer security scheme (as in `security(...)` below).
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Signet admin API",
        description = "Configuration API of a Signet node (clients, API resources, API scopes, identity resources, users and signing keys), with the field names and defaults of the IdentityServer-style AuthService configuration API.\n\nEvery operation but this document needs a bearer access token issued by this server with scope `signet.admin` (`client_credentials` at the public `/oauth2/token` endpoint). Writes answer once they are durable and applied. Invalid bodies get 400 with the offending `field` and the `rule` it broke."
    ),
    paths(
        document,
        admin::list_clients,
        admin::create_client,
        admin::replace_client,
        admin::get_client,
        admin::delete_client,
        admin::list_resources,
        admin::create_resource,
        admin::replace_resource,
        admin::get_resource,
        admin::delete_resource,
        admin::list_api_scopes,
        admin::create_api_scope,
        admin::replace_api_scope,
        admin::get_api_scope,
        admin::delete_api_scope,
        admin::list_identity,
        admin::create_identity,
        admin::replace_identity,
        admin::get_identity,
        admin::delete_identity,
        admin::list_keys,
        admin::rotate_key,
        admin::import_key,
        admin::get_key,
        admin::revoke_key,
        admin_users::create_user,
        admin_users::find_users,
        admin_users::get_user,
        admin_users::replace_user,
        admin_users::delete_user,
        admin_revocations::revoke,
    ),
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
    security(("bearer" = ["signet.admin"])),
    tags(
        (name = "Client", description = "Client applications that request tokens."),
        (name = "ApiResource", description = "APIs that tokens are issued for."),
        (name = "ApiScope", description = "Scopes of the APIs."),
        (name = "IdentityResource", description = "Scopes of user identity data (`openid`, `profile`, ...)."),
        (name = "User", description = "People who sign in: username, password (write-only, stored as an argon2id hash), OIDC claims, enabled. The server generates each user's `sub`."),
        (name = "Key", description = "The signing keys of tokens: list them, rotate or import the active key of an algorithm, revoke a key. Public halves only."),
        (name = "Meta", description = "This document."),
    )
)]
pub struct AdminApi;

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

/// The body of an admin API error, for every status but 400.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)] // a schema only
pub struct ErrorBody {
    /// A code: `unauthorized`, `invalid_token`, `insufficient_scope`, `not_found`,
    /// `conflict`, `method_not_allowed`, `unsupported_media_type`, `payload_too_large`,
    /// `unavailable` or `internal_error`.
    #[schema(example = "not_found")]
    error: String,
    /// What went wrong, in words (never secrets or internal details).
    error_description: String,
}

/// The body of a 400: every rule the request body broke; `field` and `rule` repeat the first.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
pub struct ValidationError {
    /// Always `invalid_body`.
    #[schema(example = "invalid_body")]
    error: String,
    /// The first broken rule, in words.
    error_description: String,
    /// The offending member of the first broken rule, as a JSON path (`redirectUris[1]`);
    /// `body` when the body is not JSON of the right shape at all.
    #[schema(example = "accessTokenLifetime")]
    field: String,
    /// The first broken rule.
    rule: String,
    /// Every broken rule.
    #[schema(min_items = 1)]
    errors: Vec<FieldError>,
}

/// The body is invalid: not JSON, of the wrong shape, or breaking a rule.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct BadRequest(ValidationError);

/// No bearer token, or an invalid, expired or foreign one, or one of a disabled client
/// (RFC 6750; the `WWW-Authenticate` header has the challenge).
#[derive(ToResponse)]
#[response(headers(("WWW-Authenticate" = String, description = "The Bearer challenge.")))]
#[allow(dead_code)]
pub struct Unauthorized(ErrorBody);

/// The token lacks the `signet.admin` scope.
#[derive(ToResponse)]
#[response(headers(("WWW-Authenticate" = String, description = "The Bearer challenge, error `insufficient_scope`.")))]
#[allow(dead_code)]
pub struct Forbidden(ErrorBody);

/// No such object.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct NotFound(ErrorBody);

/// The object exists already, is still in use or protected, or was changed by a racing
/// write (read it again and retry).
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Conflict(ErrorBody);

/// The body exceeds 1 MiB.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct PayloadTooLarge(ErrorBody);

/// The body is not JSON (`Content-Type: application/json` or `*+json`).
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct UnsupportedMediaType(ErrorBody);

/// The node is shutting down, a stored write was not applied in time, (users) the users
/// projection store or the short-lived state store is unavailable, or (signing keys) the
/// key manager is not available or did not answer.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Unavailable(ErrorBody);

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
    let mut doc = serde_json::to_value(AdminApi::openapi())?;
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
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use axum::Router;
    use serde_json::json;
    use signet_core::client::Client;
    use signet_core::resource::ApiResource;
    use signet_core::scope::ScopeResource;
    use signet_core::secret::StoredSecret;
    use signet_core::validation::from_json;
    use tower::ServiceExt;

    use super::*;
    use crate::{Node, NodeConfig};

    const ADMIN_SECRET: &str = "openapi-test-admin-secret-0123456789";
    const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

    async fn call(router: &Router, req: Request<Body>) -> (StatusCode, Value) {
        let resp = router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, body)
    }

    /// A node on a temporary directory, its admin router and an admin token.
    async fn admin() -> (tempfile::TempDir, Node, Router, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let node = Node::start(NodeConfig {
            listen: any_port,
            admin_listen: any_port,
            admin_client_secret: Some(ADMIN_SECRET.to_owned()),
            ..NodeConfig::new(dir.path().to_path_buf())
        })
        .await
        .expect("node start");
        node.state().spawn_follower();
        let public = super::super::public_router(node.state().clone());
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("signet-admin:{ADMIN_SECRET}"),
        );
        let (status, body) = call(
            &public,
            Request::post("/oauth2/token")
                .header("authorization", format!("Basic {basic}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(
                    "grant_type=client_credentials&scope=signet.admin",
                ))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["access_token"].as_str().expect("token").to_owned();
        let router = super::super::admin_router(node.state().clone());
        (dir, node, router, token)
    }

    /// Whether the router answered "no such route" (rather than a handler's 404).
    fn no_route(status: StatusCode, body: &Value) -> bool {
        status == StatusCode::NOT_FOUND
            && body["error_description"]
                .as_str()
                .is_some_and(|d| d.starts_with("no such"))
    }

    /// Every operation of the document is served, every other method on its paths is 405,
    /// and paths outside it are 404: the document and the routes are the same set.
    #[tokio::test]
    async fn document_matches_the_routes() {
        let doc = json().unwrap();
        let (_dir, _node, router, token) = admin().await;
        let paths = doc["paths"].as_object().expect("paths");
        let mut operations = BTreeSet::new();
        for (path, item) in paths {
            // A name no object has: handlers answer their own 404, never a route's.
            let concrete = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        "absent-openapi-probe"
                    } else {
                        seg
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            for method in METHODS {
                let documented = item.get(method.to_ascii_lowercase()).is_some();
                // A non-JSON body: writes stop at 415 and write nothing.
                let req = Request::builder()
                    .method(Method::from_bytes(method.as_bytes()).unwrap())
                    .uri(&concrete)
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "text/plain")
                    .body(Body::from("probe"))
                    .unwrap();
                let (status, body) = call(&router, req).await;
                if documented {
                    operations.insert(format!("{method} {path}"));
                    assert!(
                        status != StatusCode::METHOD_NOT_ALLOWED && !no_route(status, &body),
                        "{method} {path} is documented but not served: {status} {body}"
                    );
                    assert!(
                        item[method.to_ascii_lowercase()]["responses"]
                            .get(status.as_str())
                            .is_some(),
                        "{method} {path} answered the undocumented status {status}: {body}"
                    );
                } else {
                    assert_eq!(
                        status,
                        StatusCode::METHOD_NOT_ALLOWED,
                        "{method} {path} is served but not documented: {body}"
                    );
                    assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
                }
            }
        }
        // The admin API as README documents it, plus this document.
        let mut expected = BTreeSet::from(["GET /admin/v1/openapi.json".to_owned()]);
        for (collection, item) in [
            ("/admin/v1/Client", "/admin/v1/Client/{clientId}"),
            (
                "/admin/v1/Resource/ApiResource",
                "/admin/v1/Resource/ApiResource/{name}",
            ),
            (
                "/admin/v1/Resource/ApiScope",
                "/admin/v1/Resource/ApiScope/{name}",
            ),
            (
                "/admin/v1/Resource/IdentityResource",
                "/admin/v1/Resource/IdentityResource/{name}",
            ),
        ] {
            for m in ["GET", "POST", "PUT"] {
                expected.insert(format!("{m} {collection}"));
            }
            for m in ["GET", "DELETE"] {
                expected.insert(format!("{m} {item}"));
            }
        }
        for op in [
            "POST /admin/v1/User",
            "GET /admin/v1/User",
            "GET /admin/v1/User/{sub}",
            "PUT /admin/v1/User/{sub}",
            "DELETE /admin/v1/User/{sub}",
            "GET /admin/v1/Key",
            "POST /admin/v1/Key/rotate",
            "POST /admin/v1/Key/import",
            "GET /admin/v1/Key/{kid}",
            "DELETE /admin/v1/Key/{kid}",
            "POST /admin/v1/revocations",
        ] {
            expected.insert(op.to_owned());
        }
        assert_eq!(operations, expected);
        // Paths the document does not have are no routes.
        for path in [
            "/admin/v1",
            "/admin/v1/",
            "/admin/v1/Nope",
            "/admin/v1/Client/a/b",
            "/admin/v1/Resource",
            "/admin/v1/Resource/Other",
            "/admin/v1/Resource/ApiScope/a/b",
            "/admin/v1/Key/a/b",
            "/admin/v1/Key/rotate/now",
            "/admin/v1/User/a/b",
            "/admin/v1/openapi.yaml",
            "/admin/v2/Client",
        ] {
            for method in METHODS {
                let req = Request::builder()
                    .method(Method::from_bytes(method.as_bytes()).unwrap())
                    .uri(path)
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::empty())
                    .unwrap();
                let (status, body) = call(&router, req).await;
                assert!(no_route(status, &body), "{method} {path}: {status} {body}");
            }
        }
    }

    #[tokio::test]
    async fn the_document_is_served_without_a_token() {
        let (_dir, _node, router, _) = admin().await;
        let (status, body) = call(&router, Request::get(PATH).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json().unwrap());
        // The rest of the admin API still wants one.
        let (status, _) = call(
            &router,
            Request::get("/admin/v1/Client")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = call(&router, Request::post(PATH).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"], "method_not_allowed");
    }

    #[test]
    fn it_is_openapi_3_1_with_bearer_security() {
        let doc = json().unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
        assert_eq!(doc["security"], json!([{"bearer": ["signet.admin"]}]));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(doc["paths"][PATH]["get"]["security"], json!([{}]));
        // Every write takes its model and documents the error statuses.
        for (path, model) in [
            ("/admin/v1/Client", "Client"),
            ("/admin/v1/Resource/ApiResource", "ApiResource"),
            ("/admin/v1/Resource/ApiScope", "ScopeResource"),
            ("/admin/v1/Resource/IdentityResource", "ScopeResource"),
        ] {
            for method in ["post", "put"] {
                let op = &doc["paths"][path][method];
                assert_eq!(
                    op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
                    format!("#/components/schemas/{model}"),
                    "{method} {path}"
                );
                for status in ["400", "401", "403", "409", "413", "415"] {
                    assert!(
                        op["responses"].get(status).is_some(),
                        "{method} {path} {status}"
                    );
                }
            }
        }
        // The key operations take their bodies and document the key manager's statuses.
        for (path, model) in [
            ("/admin/v1/Key/rotate", "RotateKey"),
            ("/admin/v1/Key/import", "ImportKey"),
        ] {
            let op = &doc["paths"][path]["post"];
            assert_eq!(
                op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{model}"),
                "{path}"
            );
            for status in ["201", "400", "401", "403", "409", "413", "415", "503"] {
                assert!(op["responses"].get(status).is_some(), "{path} {status}");
            }
            assert_eq!(
                op["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/NewKey",
                "{path}"
            );
        }
        for status in ["204", "404", "503"] {
            assert!(
                doc["paths"]["/admin/v1/Key/{kid}"]["delete"]["responses"]
                    .get(status)
                    .is_some(),
                "DELETE /admin/v1/Key/{{kid}} {status}"
            );
        }
        assert_eq!(
            doc["components"]["responses"]["BadRequest"]["content"]["application/json"]["schema"]
                ["$ref"],
            "#/components/schemas/ValidationError"
        );
        let required = &doc["components"]["schemas"]["ValidationError"]["required"];
        for member in ["error", "error_description", "field", "rule", "errors"] {
            assert!(
                required.as_array().unwrap().contains(&json!(member)),
                "{member}"
            );
        }
        // The generic models carry their own names, and every reference resolves.
        let text = doc.to_string();
        assert!(!text.contains("_Secret"), "a generic schema name is left");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "Client",
            "ClientView",
            "ApiResource",
            "ApiResourceView",
            "Key",
            "KeyState",
            "NewKey",
            "RotateKey",
            "ImportKey",
        ] {
            assert!(schemas.contains_key(name), "{name}");
        }
        for r in text.split("\"$ref\":\"").skip(1) {
            let r = &r[..r.find('"').unwrap()];
            assert!(doc.pointer(&r[1..]).is_some(), "dangling {r}");
        }
        // Reads never show a secret's value.
        let view = &schemas["ClientView"]["properties"]["clientSecrets"]["items"];
        assert!(view["properties"].get("value").is_none(), "{view}");
    }

    /// The user operations take their bodies, the password is write-only and required only
    /// to create, and reads show neither the password nor its hash.
    #[test]
    fn user_schemas() {
        let doc = json().unwrap();
        for (path, method, model) in [
            ("/admin/v1/User", "post", "NewUser"),
            ("/admin/v1/User/{sub}", "put", "UserReplacement"),
        ] {
            let op = &doc["paths"][path][method];
            assert_eq!(
                op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{model}"),
                "{method} {path}"
            );
            for status in ["400", "401", "403", "409", "413", "415", "503"] {
                assert!(
                    op["responses"].get(status).is_some(),
                    "{method} {path} {status}"
                );
            }
            let schema = &doc["components"]["schemas"][model];
            assert_eq!(schema["additionalProperties"], false, "{model}");
            let password = &schema["properties"]["password"];
            assert_eq!(password["writeOnly"], true, "{model}: {password}");
            assert_eq!(password["minLength"], 8, "{model}: {password}");
            let required = schema["required"].as_array().unwrap();
            assert_eq!(
                required.contains(&json!("password")),
                model == "NewUser",
                "{model}: {required:?}"
            );
            assert!(required.contains(&json!("username")), "{model}");
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let view = schemas["User"]["properties"].as_object().unwrap();
        assert_eq!(
            view.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            BTreeSet::from([
                "sub",
                "username",
                "claims",
                "enabled",
                "createdAt",
                "updatedAt"
            ])
        );
        let claims = &schemas["UserClaims"]["properties"];
        assert!(
            claims["email_verified"]["type"]
                .to_string()
                .contains("boolean"),
            "{claims}"
        );
        assert_eq!(schemas["Address"]["additionalProperties"], false);
        for status in ["200", "404"] {
            assert!(doc["paths"]["/admin/v1/User/{sub}"]["get"]["responses"]
                .get(status)
                .is_some());
        }
    }

    /// Resolves a property's schema through a `$ref`.
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => doc.pointer(&r[1..]).expect("ref resolves"),
            None => schema,
        }
    }

    /// Every member of the models has a description, and the document's defaults are the
    /// ones the server applies to a member left out.
    #[test]
    fn descriptions_and_defaults_are_the_servers() {
        let doc = json().unwrap();
        let client: Client<StoredSecret> = from_json(br#"{"clientId": "x"}"#).unwrap();
        let resource: ApiResource<StoredSecret> = from_json(br#"{"name": "x"}"#).unwrap();
        let scope: ScopeResource = from_json(br#"{"name": "x"}"#).unwrap();
        for (name, defaults) in [
            ("Client", serde_json::to_value(&client).unwrap()),
            ("ApiResource", serde_json::to_value(&resource).unwrap()),
            ("ScopeResource", serde_json::to_value(&scope).unwrap()),
        ] {
            let schema = &doc["components"]["schemas"][name];
            assert_eq!(schema["additionalProperties"], false, "{name}");
            let props = schema["properties"].as_object().unwrap();
            let defaults = defaults.as_object().unwrap();
            assert_eq!(
                props.keys().collect::<BTreeSet<_>>(),
                defaults.keys().collect::<BTreeSet<_>>(),
                "{name}: the schema's members are the model's"
            );
            for (member, value) in defaults {
                let prop = &props[member];
                assert!(
                    prop["description"].as_str().is_some_and(|d| d.len() > 10),
                    "{name}.{member} has no description"
                );
                let required = schema["required"]
                    .as_array()
                    .is_some_and(|r| r.contains(&json!(member)));
                if required || value.is_null() {
                    continue;
                }
                let default = prop
                    .get("default")
                    .or_else(|| resolve(&doc, prop).get("default"));
                assert_eq!(default, Some(value), "{name}.{member}: documented default");
            }
        }
        // The key schemas: every member described; the view's members are what the
        // handler serializes; the request bodies refuse unknown members.
        let record = signet_core::keys::PublicKeyRecord {
            jwk: signet_jose::SigningKey::from_pkcs8(
                "k1",
                signet_core::Algorithm::ES256,
                &signet_jose::generate_pkcs8(signet_core::Algorithm::ES256).unwrap(),
            )
            .unwrap()
            .public_jwk()
            .clone(),
            state: signet_core::keys::KeyState::Retired,
            published_at: 1,
            activated_at: Some(2),
            retired_at: Some(3),
        };
        let view = serde_json::to_value(admin::KeyView::from(&record)).unwrap();
        assert_eq!(view["state"], "retired");
        assert_eq!(view["jwk"]["kid"], "k1");
        assert!(view["jwk"].get("d").is_none(), "public data only");
        for (name, members) in [
            (
                "Key",
                view.as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            ),
            ("NewKey", vec!["kid", "alg"]),
            ("RotateKey", vec!["alg"]),
            ("ImportKey", vec!["alg", "pem"]),
        ] {
            let schema = &doc["components"]["schemas"][name];
            let props = schema["properties"].as_object().expect(name);
            assert_eq!(
                props.keys().map(String::as_str).collect::<BTreeSet<_>>(),
                members.into_iter().collect::<BTreeSet<_>>(),
                "{name}: the schema's members are the model's"
            );
            for (member, prop) in props {
                assert!(
                    prop["description"].as_str().is_some_and(|d| d.len() > 5),
                    "{name}.{member} has no description: {prop}"
                );
            }
            if matches!(name, "RotateKey" | "ImportKey") {
                assert_eq!(schema["additionalProperties"], false, "{name}");
            }
        }
        assert_eq!(
            doc["components"]["schemas"]["KeyState"]["enum"],
            json!(["published", "active", "retired"])
        );
        let lifetime = &doc["components"]["schemas"]["Client"]["properties"]["accessTokenLifetime"];
        assert_eq!(lifetime["default"], 3600);
        assert!(lifetime["description"]
            .as_str()
            .unwrap()
            .contains("Lifetime of an access token"));
        let usage = &doc["components"]["schemas"]["TokenUsage"];
        assert_eq!(
            (usage["enum"].clone(), usage["default"].clone()),
            (json!([0, 1]), json!(1))
        );
    }
}
