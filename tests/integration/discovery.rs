//! Discovery and the JWKS under an issuer URL with a path: accurate documents, every route
//! under the path, public members only, bounded caching.

use serde_json::Value;
use signet_tests::{Serve, ServeOptions};

#[tokio::test]
async fn discovery_under_an_issuer_path() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = Serve::start(
        dir.path(),
        ServeOptions {
            issuer_path: "/auth".into(),
            ..Default::default()
        },
    )
    .await?;
    assert!(s.issuer.ends_with("/auth"));
    for doc in ["openid-configuration", "oauth-authorization-server"] {
        let d: Value = s
            .http()
            .get(format!("{}/.well-known/{doc}", s.issuer))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(d["issuer"], s.issuer.as_str(), "{doc}");
        assert_eq!(d["token_endpoint"], format!("{}/oauth2/token", s.issuer));
        assert_eq!(d["jwks_uri"], format!("{}/oauth2/jwks", s.issuer));
        assert_eq!(
            d["grant_types_supported"],
            serde_json::json!([
                "authorization_code",
                "implicit",
                "refresh_token",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:token-exchange",
                "urn:ietf:params:oauth:grant-type:device_code"
            ])
        );
        assert_eq!(
            d["device_authorization_endpoint"],
            format!("{}/oauth2/device_authorization", s.issuer)
        );
        assert_eq!(d["resource_indicators_supported"], true, "{doc}");
        assert_eq!(
            d["token_endpoint_auth_methods_supported"],
            serde_json::json!([
                "client_secret_basic",
                "client_secret_post",
                "client_secret_jwt",
                "private_key_jwt",
                "none"
            ])
        );
        assert_eq!(
            d["authorization_endpoint"],
            format!("{}/oauth2/authorize", s.issuer)
        );
        assert_eq!(d["authorization_response_iss_parameter_supported"], true);
        // Dynamic client registration is off unless `--dynamic-client-registration`
        // (`registration.rs` checks the document with it on).
        assert!(d.get("registration_endpoint").is_none(), "{doc}");
        assert_eq!(
            d["introspection_endpoint"],
            format!("{}/oauth2/introspect", s.issuer)
        );
        assert_eq!(
            d["revocation_endpoint"],
            format!("{}/oauth2/revoke", s.issuer)
        );
        assert_eq!(
            d["code_challenge_methods_supported"],
            serde_json::json!(["S256", "plain"])
        );
        if doc == "openid-configuration" {
            assert_eq!(d["userinfo_endpoint"], format!("{}/userinfo", s.issuer));
            assert_eq!(
                d["subject_types_supported"],
                serde_json::json!(["public", "pairwise"])
            );
            assert_eq!(
                d["end_session_endpoint"],
                format!("{}/oauth2/logout", s.issuer)
            );
            for flag in [
                "frontchannel_logout_supported",
                "frontchannel_logout_session_supported",
                "backchannel_logout_supported",
                "backchannel_logout_session_supported",
            ] {
                assert_eq!(d[flag], true, "{flag}");
            }
        }
        let scopes = d["scopes_supported"].as_array().unwrap();
        assert!(scopes.iter().any(|s| s == "openid"));
        assert!(
            !scopes.iter().any(|s| s == "signet.admin"),
            "hidden from discovery"
        );
    }
    // Nothing is served outside the issuer path.
    let r = s
        .http()
        .get(format!("{}/.well-known/openid-configuration", s.public))
        .send()
        .await?;
    assert_eq!(r.status(), 404);

    let r = s
        .http()
        .get(format!("{}/oauth2/jwks", s.issuer))
        .send()
        .await?;
    let cache = r.headers()["cache-control"].to_str()?.to_owned();
    let max_age: u64 = cache.split("max-age=").nth(1).unwrap().parse()?;
    assert!(max_age > 0 && max_age <= 3600, "{cache}");
    let jwks: Value = r.json().await?;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 4);
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(k.get(private).is_none(), "private member {private} in {k}");
        }
        assert_eq!(k["use"], "sig");
    }
    let (status, _, body) = s
        .token_request(
            Some(("signet-admin", &s.admin_secret)),
            &[("grant_type", "client_credentials")],
        )
        .await?;
    assert_eq!(status, 200, "token endpoint under the path: {body}");
    assert_eq!(
        s.http()
            .get(format!("{}/healthz", s.issuer))
            .send()
            .await?
            .status(),
        200
    );
    s.stop().await?;
    Ok(())
}
