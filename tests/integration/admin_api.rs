//! The admin API: verbs and status codes of DESIGN.md, the reference client body
//! round-tripping, write-only secrets, and what exists from the start.

use reqwest::Method;
use serde_json::{json, Value};
use signet_tests::{Serve, ServeOptions};

const REFERENCE: &str = include_str!("../fixtures/reference-client.json");

#[tokio::test]
async fn reference_client_body_round_trips() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    // The body's scopes must exist first ("scopes that exist").
    for scope in [
        "identityscope",
        "mediaeditorscope",
        "api1",
        "configportalscope",
    ] {
        s.create("/Resource/ApiScope", json!({"name": scope}))
            .await?;
    }
    let body: Value = serde_json::from_str(REFERENCE)?;
    s.create("/Client", body.clone()).await?;
    // The PUT of the reference document, as the reference shows it.
    let (status, put) = s.admin_call(Method::PUT, "/Client", Some(&body)).await?;
    assert_eq!(status, 200, "{put}");
    let (status, read) = s
        .admin_call(Method::GET, "/Client/mediaeditorfrontend", None)
        .await?;
    assert_eq!(status, 200);
    for (k, v) in body.as_object().unwrap() {
        if k != "clientSecrets" {
            assert_eq!(&read[k], v, "field {k} reads back equal");
        }
    }
    assert_eq!(
        read["clientSecrets"][0]["description"],
        "Client for VidiEditor GUI"
    );
    assert!(
        read["clientSecrets"][0].get("value").is_none(),
        "secrets are write-only"
    );
    // Defaults for what the body left out.
    assert_eq!(read["requirePkce"], true);
    assert_eq!(read["enabled"], true);
    assert_eq!(read["deviceCodeLifetime"], 300);
    s.stop().await?;
    Ok(())
}

#[tokio::test]
async fn verbs_status_codes_and_write_only_secrets() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;

    // Standard identity resources and the admin scope exist from the start.
    let (status, ids) = s
        .admin_call(Method::GET, "/Resource/IdentityResource", None)
        .await?;
    assert_eq!(status, 200);
    let names: Vec<&str> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for n in ["openid", "profile", "email", "address", "phone"] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let (_, email) = s
        .admin_call(Method::GET, "/Resource/IdentityResource/email", None)
        .await?;
    assert_eq!(email["userClaims"], json!(["email", "email_verified"]));

    // ApiScope: POST 201, duplicate 409, PUT 200, GET, list, DELETE 204, then 404.
    let created = s
        .create("/Resource/ApiScope", json!({"name": "inv.read"}))
        .await?;
    assert_eq!(created["enabled"], true);
    assert_eq!(created["showInDiscoveryDocument"], true);
    let (status, body) = s
        .admin_call(
            Method::POST,
            "/Resource/ApiScope",
            Some(&json!({"name": "inv.read"})),
        )
        .await?;
    assert_eq!((status, body["error"].as_str()), (409, Some("conflict")));
    // One namespace for both scope kinds.
    let (status, _) = s
        .admin_call(
            Method::POST,
            "/Resource/ApiScope",
            Some(&json!({"name": "email"})),
        )
        .await?;
    assert_eq!(status, 409);
    let (status, body) = s
        .admin_call(
            Method::PUT,
            "/Resource/ApiScope",
            Some(&json!({"name": "inv.read", "displayName": "Read inventory", "emphasize": true})),
        )
        .await?;
    assert_eq!(
        (status, body["displayName"].as_str()),
        (200, Some("Read inventory"))
    );
    let (status, _) = s
        .admin_call(
            Method::PUT,
            "/Resource/ApiScope",
            Some(&json!({"name": "ghost"})),
        )
        .await?;
    assert_eq!(status, 404);

    // ApiResource with an introspection secret: write-only.
    let r = s
        .create(
            "/Resource/ApiResource",
            json!({"name": "inventory", "scopes": ["inv.read"],
            "apiSecrets": [{"value": "introspection-secret-xyz", "description": "rs"}],
            "userClaims": ["role", {"type": "dept", "value": "x"}]}),
        )
        .await?;
    assert_eq!(
        r["apiSecrets"],
        json!([{"description": "rs", "expiration": null, "type": "SharedSecret"}])
    );
    assert_eq!(r["userClaims"], json!(["role", "dept"]));
    // A scope in use cannot be deleted.
    let (status, body) = s
        .admin_call(Method::DELETE, "/Resource/ApiScope/inv.read", None)
        .await?;
    assert_eq!(status, 409, "{body}");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("inventory"));

    // Client: POST, GET, list, PUT keeps secrets when clientSecrets is absent, DELETE.
    let client = json!({"clientId": "inv-sync", "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"value": "inv-sync-secret-123456"}], "allowedScopes": ["inv.read"]});
    let created = s.create("/Client", client).await?;
    assert!(created["clientSecrets"][0].get("value").is_none());
    assert!(!created.to_string().contains("inv-sync-secret-123456"));
    let (status, list) = s.admin_call(Method::GET, "/Client", None).await?;
    assert_eq!(status, 200);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["clientId"] == "inv-sync"));
    assert!(
        !list.to_string().contains("sha256"),
        "no hashes in reads either"
    );
    let update = json!({"clientId": "inv-sync", "allowedGrantTypes": ["client_credentials"], "allowedScopes": ["inv.read"], "accessTokenLifetime": 120});
    let (status, body) = s.admin_call(Method::PUT, "/Client", Some(&update)).await?;
    assert_eq!(
        (status, body["accessTokenLifetime"].as_i64()),
        (200, Some(120)),
        "{body}"
    );
    let (status, _, token) = s
        .token_request(
            Some(("inv-sync", "inv-sync-secret-123456")),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    assert_eq!((status, token["expires_in"].as_i64()), (200, Some(120)));

    // Disabling a client stops its tokens at once.
    let disabled = json!({"clientId": "inv-sync", "enabled": false, "allowedGrantTypes": ["client_credentials"], "allowedScopes": ["inv.read"]});
    assert_eq!(
        s.admin_call(Method::PUT, "/Client", Some(&disabled))
            .await?
            .0,
        200
    );
    let (status, _, _) = s
        .token_request(
            Some(("inv-sync", "inv-sync-secret-123456")),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    assert_eq!(status, 401);

    assert_eq!(
        s.admin_call(Method::DELETE, "/Client/inv-sync", None)
            .await?
            .0,
        204
    );
    assert_eq!(
        s.admin_call(Method::GET, "/Client/inv-sync", None).await?.0,
        404
    );
    assert_eq!(
        s.admin_call(Method::DELETE, "/Client/inv-sync", None)
            .await?
            .0,
        404
    );
    // The bootstrap admin client cannot be deleted.
    assert_eq!(
        s.admin_call(Method::DELETE, "/Client/signet-admin", None)
            .await?
            .0,
        409
    );
    // Now the resource, then the scope.
    assert_eq!(
        s.admin_call(Method::DELETE, "/Resource/ApiResource/inventory", None)
            .await?
            .0,
        204
    );
    assert_eq!(
        s.admin_call(Method::DELETE, "/Resource/ApiScope/inv.read", None)
            .await?
            .0,
        204
    );
    assert_eq!(
        s.admin_call(Method::GET, "/Resource/ApiScope/inv.read", None)
            .await?
            .0,
        404
    );
    // A deleted id may be registered again.
    s.create("/Resource/ApiScope", json!({"name": "inv.read"}))
        .await?;
    s.stop().await?;
    Ok(())
}
