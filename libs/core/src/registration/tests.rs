use super::*;
use serde_json::json;

fn policy() -> RegistrationPolicy {
    RegistrationPolicy {
        allowed_grant_types: vec![
            "authorization_code".into(),
            "refresh_token".into(),
            "client_credentials".into(),
        ],
        allowed_scopes: vec![
            "openid".into(),
            "orders.read".into(),
            "offline_access".into(),
        ],
        allow_public_clients: true,
        ..RegistrationPolicy::default()
    }
}

fn meta(v: serde_json::Value) -> Metadata {
    Metadata::from_object(v.as_object().unwrap()).unwrap()
}

#[test]
fn patterns_match_hosts_paths_and_ports() {
    let p = UriPattern::parse("https://*.example.com/*").unwrap();
    let m = |s: &str| p.matches(&url::Url::parse(s).unwrap());
    assert!(m("https://app.example.com/cb"));
    assert!(m("https://a.b.example.com/x/y?z=1"));
    assert!(
        !m("https://example.com/cb"),
        "the bare domain is not a subdomain"
    );
    assert!(!m("https://evilexample.com/cb"));
    assert!(!m("https://app.example.com.evil.net/cb"));
    assert!(!m("http://app.example.com/cb"));
    assert!(
        !m("https://app.example.com:8443/cb"),
        "no port in the pattern: default only"
    );
    let p = UriPattern::parse("https://app.example.com:8443/oauth/*/done").unwrap();
    assert!(p.matches(&url::Url::parse("https://app.example.com:8443/oauth/a/b/done").unwrap()));
    assert!(!p.matches(&url::Url::parse("https://app.example.com:8443/oauth/done").unwrap()));
    let p = UriPattern::parse("http://[::1]:8080/cb").unwrap();
    assert!(p.matches(&url::Url::parse("http://[::1]:8080/cb").unwrap()));
    for bad in [
        "example.com/cb",
        "ftp://x/y",
        "https://*/x",
        "https://*.com/x",
        "https://a/#f",
        "https://u@a/",
        "https://a:x/",
    ] {
        assert!(UriPattern::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn metadata_maps_onto_a_client() {
    let m = meta(json!({
        "redirect_uris": ["https://app.example.com/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "client_name": "App",
        "scope": "openid offline_access",
        "unknown_member": {"ignored": true},
    }));
    let (c, b) = build_client(&m, &policy(), "c1", "s".repeat(43).as_str()).unwrap();
    assert_eq!(c.allowed_grant_types, vec![GrantType::AuthorizationCode]);
    assert!(c.allow_offline_access);
    assert_eq!(c.allowed_scopes, vec!["openid", "offline_access"]);
    assert_eq!(b.token_endpoint_auth_method, "client_secret_basic");
    assert!(b.uses_shared_secret && c.require_client_secret);
    c.validate().unwrap();
    // Defaults: authorization_code + code, all the token's scopes.
    let m = meta(
        json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"}),
    );
    let (c, _) = build_client(&m, &policy(), "c2", "x").unwrap();
    assert!(!c.require_client_secret && c.client_secrets.is_empty());
    assert_eq!(
        c.allowed_scopes,
        vec!["openid", "orders.read"],
        "offline_access only with refresh_token"
    );
}

#[test]
fn refusals_name_the_rule() {
    let p = policy();
    let err = |v: serde_json::Value| {
        let m = Metadata::from_object(v.as_object().unwrap());
        match m {
            Err(e) => e,
            Ok(m) => build_client(&m, &p, "c", "secret-secret-secret").unwrap_err(),
        }
    };
    for (body, code) in [
        (
            json!({"redirect_uris": ["javascript:alert(1)"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["data:text/html,x"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["http://app.example.com/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb#frag"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["http://127.0.0.1/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": "https://a.example/cb"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["implicit"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "scope": "admin"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "scope": "offline_access"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "jwks_uri": "https://a.example/jwks"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "client_name": 5}),
            "invalid_client_metadata",
        ),
    ] {
        assert_eq!(err(body.clone()).code(), code, "{body}");
    }
    // Native apps may use loopback http and private-use schemes.
    let m = meta(
        json!({"application_type": "native", "redirect_uris": ["http://127.0.0.1/cb", "com.example.app:/cb"], "token_endpoint_auth_method": "none"}),
    );
    build_client(&m, &p, "n", "x").unwrap();
    // Patterns restrict further.
    let strict = RegistrationPolicy {
        redirect_uri_patterns: vec!["https://*.example.com/*".into()],
        ..policy()
    };
    let m = meta(json!({"redirect_uris": ["https://other.org/cb"]}));
    assert_eq!(
        build_client(&m, &strict, "c", "x").unwrap_err().code(),
        "invalid_redirect_uri"
    );
    let m = meta(json!({"redirect_uris": ["https://app.example.com/cb"]}));
    build_client(&m, &strict, "c", "x").unwrap();
    // Public clients only when the token allows them.
    let m = meta(
        json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"}),
    );
    assert!(build_client(&m, &RegistrationPolicy::default(), "c", "x").is_err());
}

#[test]
fn lifetimes_are_capped_and_metadata_reads_back() {
    let p = RegistrationPolicy {
        max_access_token_lifetime: Some(600),
        max_refresh_token_lifetime: Some(86_400),
        ..policy()
    };
    let m = meta(
        json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["authorization_code", "refresh_token"], "scope": "openid offline_access", "token_endpoint_auth_method": "client_secret_post"}),
    );
    let (c, b) = build_client(&m, &p, "c", "secret-secret-secret").unwrap();
    assert_eq!(c.access_token_lifetime, 600);
    assert_eq!(c.absolute_refresh_token_lifetime, 86_400);
    assert_eq!(c.sliding_refresh_token_lifetime, 86_400);
    let info = RegistrationInfo {
        token_sha256: "h".into(),
        initial_access_token: "t".into(),
        policy: p,
        token_endpoint_auth_method: b.token_endpoint_auth_method,
        application_type: b.application_type,
        issued_at: 5,
        software_statement_iss: None,
    };
    let stored = c.map_secrets(crate::secret::SecretInput::into_stored);
    let md = metadata_of(&stored, &info);
    assert_eq!(
        md["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(md["response_types"], json!(["code"]));
    assert_eq!(md["token_endpoint_auth_method"], "client_secret_post");
    assert_eq!(md["scope"], "openid offline_access");
    assert!(!serde_json::to_string(&md)
        .unwrap()
        .contains("secret-secret"));
}

#[test]
fn initial_access_token_bodies() {
    let input: InitialAccessTokenInput = serde_json::from_value(json!({"maxUses": 2})).unwrap();
    let t = input.into_record("t1".into(), "h".into(), 1000).unwrap();
    assert_eq!(t.expires_at, 1000 + i64::from(DEFAULT_IAT_LIFETIME));
    assert_eq!(t.policy, RegistrationPolicy::default());
    for (body, field) in [
        (json!({"maxUses": 0}), "maxUses"),
        (json!({"lifetime": 0}), "lifetime"),
        (
            json!({"lifetime": 10, "expiresAt": "2030-01-01T00:00:00Z"}),
            "lifetime",
        ),
        (json!({"expiresAt": "1970-01-01T00:00:00Z"}), "expiresAt"),
        (
            json!({"allowedGrantTypes": ["password"]}),
            "allowedGrantTypes[0]",
        ),
        (json!({"allowedGrantTypes": []}), "allowedGrantTypes"),
        (
            json!({"redirectUriPatterns": ["nope"]}),
            "redirectUriPatterns[0]",
        ),
        (
            json!({"allowConfidentialClients": false}),
            "allowPublicClients",
        ),
        (
            json!({"maxAccessTokenLifetime": 0}),
            "maxAccessTokenLifetime",
        ),
    ] {
        let input: InitialAccessTokenInput = serde_json::from_value(body.clone()).unwrap();
        let e = input.into_record("t".into(), "h".into(), 1000).unwrap_err();
        assert_eq!(e.errors[0].field, field, "{body}");
    }
    let e = InitialAccessTokenInput::deserialize(json!({"bogus": 1})).unwrap_err();
    assert!(e.to_string().contains("bogus"));
    let e = serde_json::from_value::<InitialAccessTokenInput>(json!({}))
        .unwrap()
        .into_record("a.b".into(), "h".into(), 1)
        .unwrap_err();
    assert_eq!(e.errors[0].field, "id");
}

#[test]
fn software_statement_claims_take_precedence() {
    let mut body = json!({"client_name": "Plain", "redirect_uris": ["https://a.example/cb"], "software_statement": "x.y.z"})
        .as_object()
        .unwrap()
        .clone();
    let claims =
        json!({"iss": "https://vendor.example", "client_name": "Signed", "exp": 2000, "jti": "1"});
    let iss = merge_software_statement(&mut body, claims.to_string().as_bytes(), 1000).unwrap();
    assert_eq!(iss, "https://vendor.example");
    assert_eq!(body["client_name"], "Signed");
    assert!(!body.contains_key("software_statement") && !body.contains_key("jti"));
    for (claims, now) in [
        (json!({"client_name": "no iss"}), 1000),
        (json!({"iss": "v", "exp": 999}), 1000),
        (json!({"iss": "v", "nbf": 5000}), 1000),
        (json!(["not", "an", "object"]), 1000),
    ] {
        let e = merge_software_statement(&mut Map::new(), claims.to_string().as_bytes(), now)
            .unwrap_err();
        assert_eq!(e.code(), "invalid_software_statement", "{claims}");
    }
}

#[test]
fn keys_at_a_jwks_uri_and_dpop_binding_map_onto_the_client() {
    let m = meta(json!({
        "redirect_uris": ["https://a.example/cb"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": "https://a.example/jwks",
        "dpop_bound_access_tokens": true,
    }));
    let (c, b) = build_client(&m, &policy(), "k", "unused").unwrap();
    assert_eq!(c.jwks_uri.as_deref(), Some("https://a.example/jwks"));
    assert!(c.client_secrets.is_empty() && c.require_client_secret && c.require_dpop);
    assert!(!b.uses_shared_secret);
    let c = c.map_secrets(SecretInput::into_stored);
    let info = RegistrationInfo {
        token_sha256: String::new(),
        initial_access_token: "t".into(),
        policy: policy(),
        token_endpoint_auth_method: b.token_endpoint_auth_method,
        application_type: b.application_type,
        issued_at: 0,
        software_statement_iss: None,
    };
    let back = metadata_of(&c, &info);
    assert_eq!(back["jwks_uri"], "https://a.example/jwks");
    assert_eq!(back["dpop_bound_access_tokens"], true);
    // Both key sources, or a plain-http jwks_uri: refused.
    let both = json!({"redirect_uris": ["https://a.example/cb"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": "https://a.example/jwks", "jwks": {"keys": []}});
    assert!(Metadata::from_object(both.as_object().unwrap()).is_err());
    let m = meta(json!({"redirect_uris": ["https://a.example/cb"],
        "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "http://a.example/jwks"}));
    let (c, _) = build_client(&m, &policy(), "k", "unused").unwrap();
    assert!(
        c.validate().is_err(),
        "the client rules refuse a plain-http jwksUri"
    );
}
