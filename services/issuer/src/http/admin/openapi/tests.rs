//! The OpenAPI document against the routes and the models.

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
    let public = crate::http::public_router(node.state().clone());
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
    let router = crate::http::admin_router(node.state().clone());
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
        (
            "/admin/v1/InitialAccessToken",
            "/admin/v1/InitialAccessToken/{id}",
        ),
        (
            "/admin/v1/IdentityProvider",
            "/admin/v1/IdentityProvider/{scheme}",
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
        "DELETE /admin/v1/User/{sub}/factors",
        "DELETE /admin/v1/User/{sub}/ExternalLogin/{scheme}",
        "GET /admin/v1/User/{sub}/Session",
        "DELETE /admin/v1/User/{sub}/Session",
        "GET /admin/v1/User/{sub}/Session/{sid}",
        "DELETE /admin/v1/User/{sub}/Session/{sid}",
        "GET /admin/v1/Key",
        "POST /admin/v1/Key/rotate",
        "POST /admin/v1/Key/import",
        "GET /admin/v1/Key/{kid}",
        "DELETE /admin/v1/Key/{kid}",
        "POST /admin/v1/revocations",
        "GET /admin/v1/Events",
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
        "/admin/v1/User/a/Session/b/c",
        "/admin/v1/Events/1",
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
            "factors",
            "mustChangePassword",
            "createdAt",
            "updatedAt",
            "externalLogins"
        ])
    );
    // The factors list the passkeys (names and times, never a key).
    let factors = schemas["UserFactors"]["properties"].as_object().unwrap();
    assert!(factors.contains_key("passkeys"), "{factors:?}");
    let passkey = resolve(&doc, &factors["passkeys"]["items"]);
    assert_eq!(
        passkey["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["id", "name", "createdAt", "lastUsedAt"])
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
    let view = serde_json::to_value(super::super::keys::KeyView::from(&record)).unwrap();
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

/// An ldap provider's fields are in the identity provider schemas; the bind password is
/// write-only.
#[test]
fn identity_provider_schemas_describe_ldap_providers() {
    let doc = json().unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let input = &schemas["IdentityProviderInput"]["properties"];
    for field in [
        "url",
        "startTls",
        "caCertificate",
        "bindDn",
        "bindPassword",
        "userSearchBase",
        "userSearchFilter",
        "subjectAttribute",
        "attributeMappings",
        "groupRoleMappings",
        "timeoutSeconds",
    ] {
        assert!(input.get(field).is_some(), "{field}: {input}");
    }
    let view = &schemas["IdentityProviderView"]["properties"];
    assert!(view.get("hasBindPassword").is_some(), "{view}");
    assert!(view.get("bindPassword").is_none(), "{view}");
    assert!(view.get("userSearchFilter").is_some(), "{view}");
    let types = doc.to_string();
    assert!(types.contains("\"ldap\""), "the type enum names ldap");
}
