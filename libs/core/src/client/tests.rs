use super::*;
use crate::redirect_uri::RedirectUriPolicy;
use crate::validation::from_json;

const REFERENCE: &str = include_str!("../../../../tests/fixtures/reference-client.json");

fn parse(json: serde_json::Value) -> Client<SecretInput> {
    from_json(json.to_string().as_bytes()).unwrap()
}

fn backend() -> serde_json::Value {
    serde_json::json!({
        "clientId": "svc",
        "allowedGrantTypes": ["client_credentials"],
        "clientSecrets": [{"value": "a-long-generated-secret"}],
        "allowedScopes": ["api.read"],
    })
}

fn rules(json: serde_json::Value) -> Vec<(String, String)> {
    match from_json::<Client<SecretInput>>(json.to_string().as_bytes()) {
        Ok(c) => c
            .validate()
            .err()
            .map(|e| e.errors.into_iter().map(|f| (f.field, f.rule)).collect())
            .unwrap_or_default(),
        Err(e) => e.errors.into_iter().map(|f| (f.field, f.rule)).collect(),
    }
}

fn fields(json: serde_json::Value) -> Vec<String> {
    rules(json).into_iter().map(|(f, _)| f).collect()
}

#[test]
fn defaults_follow_the_reference() {
    let c = parse(serde_json::json!({"clientId": "x"}));
    assert!(c.enabled && c.require_client_secret && c.require_pkce && c.include_jwt_id);
    assert!(c.allow_remember_consent && c.enable_local_login);
    assert!(c.front_channel_logout_session_required && c.back_channel_logout_session_required);
    assert!(!c.require_consent && !c.allow_plain_text_pkce && !c.allow_offline_access);
    assert_eq!(c.protocol_type, "oidc");
    assert_eq!(c.identity_token_lifetime, 300);
    assert_eq!(c.access_token_lifetime, 3600);
    assert_eq!(c.authorization_code_lifetime, 300);
    assert_eq!(c.absolute_refresh_token_lifetime, 2_592_000);
    assert_eq!(c.sliding_refresh_token_lifetime, 1_296_000);
    assert_eq!(c.device_code_lifetime, 300);
    assert_eq!(c.refresh_token_usage, TokenUsage::OneTimeOnly);
    assert_eq!(c.refresh_token_expiration, TokenExpiration::Absolute);
    assert_eq!(c.access_token_type, AccessTokenType::Jwt);
    assert_eq!(c.consent_lifetime, None);
    // `new` and an empty body agree on every default.
    assert_eq!(c, Client::<SecretInput>::new("x"));
}

#[test]
fn reference_body_parses_validates_and_serializes_back() {
    let c: Client<SecretInput> = from_json(REFERENCE.as_bytes()).unwrap();
    c.validate().unwrap();
    assert_eq!(c.allowed_grant_types, vec![GrantType::Implicit]);
    assert_eq!(c.refresh_token_usage, TokenUsage::OneTimeOnly);
    let view = serde_json::to_value(c.map_secrets(SecretInput::into_stored).view()).unwrap();
    let original: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
    for (k, v) in original.as_object().unwrap() {
        if k != "clientSecrets" {
            assert_eq!(&view[k], v, "field {k}");
        }
    }
    assert!(view["clientSecrets"][0].get("value").is_none());
}

#[test]
fn ui_and_backend_flows_never_mix() {
    let mut j = backend();
    j["allowedGrantTypes"] = serde_json::json!(["client_credentials", "authorization_code"]);
    j["redirectUris"] = serde_json::json!(["https://app/cb"]);
    assert_eq!(fields(j), vec!["allowedGrantTypes"]);
    let j = serde_json::json!({"clientId": "w", "allowedGrantTypes": ["implicit", "authorization_code"], "redirectUris": ["https://a/cb"], "requireClientSecret": false});
    assert_eq!(fields(j), vec!["allowedGrantTypes"]);
}

#[test]
fn unknown_grant_types_fields_and_values_name_the_field() {
    let mut j = backend();
    j["allowedGrantTypes"] = serde_json::json!(["password"]);
    let r = rules(j);
    assert_eq!(r[0].0, "allowedGrantTypes[0]");
    assert!(r[0].1.contains("unknown variant `password`"), "{r:?}");
    let mut j = backend();
    j["bogusField"] = serde_json::json!(1);
    assert!(rules(j)[0].1.contains("unknown field `bogusField`"));
    let mut j = backend();
    j["refreshTokenUsage"] = serde_json::json!(7);
    assert_eq!(fields(j), vec!["refreshTokenUsage"]);
    let mut j = backend();
    j["accessTokenLifetime"] = serde_json::json!(-5);
    assert_eq!(fields(j), vec!["accessTokenLifetime"]);
    let mut j = backend();
    j["allowedIdentityTokenSigningAlgorithms"] = serde_json::json!(["HS256"]);
    assert_eq!(fields(j), vec!["allowedIdentityTokenSigningAlgorithms[0]"]);
}

#[test]
fn lifetimes_uris_origins_and_secrets() {
    let mut j = backend();
    j["accessTokenLifetime"] = serde_json::json!(0);
    j["consentLifetime"] = serde_json::json!(0);
    assert_eq!(fields(j), vec!["accessTokenLifetime", "consentLifetime"]);

    let j = serde_json::json!({"clientId": "w", "allowedGrantTypes": ["authorization_code"], "requireClientSecret": false,
        "redirectUris": ["https://a/cb#x", "/relative", "https://a/ok", "https://a/ok"],
        "allowedCorsOrigins": ["https://a/"], "logoUri": "nope"});
    assert_eq!(
        fields(j),
        vec![
            "redirectUris[0]",
            "redirectUris[1]",
            "redirectUris[3]",
            "logoUri",
            "allowedCorsOrigins[0]"
        ]
    );
    let j = serde_json::json!({"clientId": "w", "allowedGrantTypes": ["authorization_code"], "requireClientSecret": false});
    assert_eq!(fields(j), vec!["redirectUris"]);

    let mut j = backend();
    j["clientSecrets"] = serde_json::json!([{"value": ""}]);
    assert_eq!(fields(j), vec!["clientSecrets", "clientSecrets[0].value"]);
    let mut j = backend();
    j["requireClientSecret"] = serde_json::json!(false);
    assert_eq!(fields(j), vec!["requireClientSecret"]);
    let mut j = backend();
    j["allowedGrantTypes"] = serde_json::json!([]);
    assert_eq!(fields(j), vec!["allowedGrantTypes"]);
}

#[test]
fn client_claims_cannot_overwrite_protocol_claims() {
    let mut j = backend();
    j["claims"] = serde_json::json!([{"type": "sub", "value": "admin"}]);
    assert_eq!(fields(j), vec!["claims[0].type"]);
    let mut j = backend();
    j["claims"] = serde_json::json!([{"type": "sub", "value": "admin"}]);
    j["clientClaimsPrefix"] = serde_json::json!("client_");
    assert!(fields(j).is_empty());
}

#[test]
fn weak_secrets_foreign_secret_types_and_endless_lifetimes_are_refused() {
    let with = |k: &str, v: serde_json::Value| {
        let mut j = backend();
        j[k] = v;
        fields(j)
    };
    assert_eq!(
        with("clientSecrets", serde_json::json!([{"value": "a"}])),
        ["clientSecrets[0].value"]
    );
    // A public JWK is accepted (private_key_jwt); a private one, an unsupported key and the
    // certificate types (mTLS, not offered yet) are refused, naming the member.
    let ec = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    assert!(with(
        "clientSecrets",
        serde_json::json!([{"type": "JsonWebKey", "value": ec}])
    )
    .is_empty());
    let private = ec.replace(
        "{",
        r#"{"d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI","#,
    );
    for (value, field) in [
        (private.as_str(), "clientSecrets[0].value"),
        (r#"{"kty":"oct","k":"c2VjcmV0"}"#, "clientSecrets[0].value"),
        (
            r#"{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}"#,
            "clientSecrets[0].value",
        ),
        ("not json", "clientSecrets[0].value"),
    ] {
        assert_eq!(
            with(
                "clientSecrets",
                serde_json::json!([{"type": "JsonWebKey", "value": value}])
            ),
            [field],
            "{value}"
        );
    }
    assert_eq!(
        with(
            "clientSecrets",
            serde_json::json!([{"type": "Other", "value": "CN=client,O=Example"}])
        ),
        ["clientSecrets[0].type"]
    );
    // Mutual TLS (RFC 8705): a DER certificate in base64, or an RFC 4514 subject DN.
    let cert = crate::mtls::tests::CERT_B64;
    for (kind, value, errors) in [
        ("X509CertificateBase64", cert, &[][..]),
        ("X509Name", "CN=client,O=Example", &[]),
        (
            "X509CertificateBase64",
            "CN=client",
            &["clientSecrets[0].value"],
        ),
        ("X509CertificateBase64", "AAAA", &["clientSecrets[0].value"]),
        ("X509Name", "no dn", &["clientSecrets[0].value"]),
    ] {
        assert_eq!(
            with(
                "clientSecrets",
                serde_json::json!([{"type": kind, "value": value}])
            ),
            errors,
            "{kind} {value}"
        );
    }
    assert_eq!(
        with(
            "clientSecrets",
            serde_json::json!([{"type": "X509Name", "value": "CN=a"},
                               {"value": "svc-secret-0123456789"}])
        ),
        ["clientSecrets"]
    );
    assert_eq!(
        with(
            "clientSecrets",
            serde_json::json!([{"type": "JsonWebKey", "value": ec},
                               {"value": "svc-secret-0123456789"}])
        ),
        ["clientSecrets"]
    );
    assert_eq!(
        with("accessTokenLifetime", 2_147_483_647u32.into()),
        ["accessTokenLifetime"]
    );
    assert_eq!(
        with("userSsoLifetime", 2_147_483_647u32.into()),
        ["userSsoLifetime"]
    );
    // The bounds are the server's to set.
    let limits = LifetimeLimits::parse("accessTokenLifetime=600").unwrap();
    let mut j = backend();
    j["accessTokenLifetime"] = 3600.into();
    let e = parse(j)
        .validate_with(&ClientPolicy {
            lifetimes: limits,
            ..ClientPolicy::default()
        })
        .unwrap_err();
    assert_eq!(e.errors[0].field, "accessTokenLifetime");
    for bad in [
        "accessTokenLifetime",
        "nope=5",
        "accessTokenLifetime=0",
        "accessTokenLifetime=x",
    ] {
        assert!(LifetimeLimits::parse(bad).is_err(), "{bad}");
    }
    // A stored public key never matches by its value: it is kept as a key, not a hash.
    let stored = SecretInput {
        description: None,
        value: Some(ec.into()),
        expiration: None,
        kind: "JsonWebKey".into(),
        sealed: None,
    }
    .into_stored();
    assert!(stored.sha256.is_none());
    let set = crate::secret::SecretSet::new(&[stored]);
    assert!(!set.matches(&crate::secret::SecretDigest::of(ec), 0));
    assert!(set.has_keys() && set.is_empty());
}

#[test]
fn redirect_uris_follow_the_policy_and_name_the_index() {
    let body = serde_json::json!({
        "clientId": "w", "allowedGrantTypes": ["authorization_code"], "requireClientSecret": false,
        "redirectUris": ["https://app.example/cb", "http://app.example.com/callback",
                         "ftp://files.example/cb", "http://127.0.0.1/cb", "com.example.app:/cb"],
        "postLogoutRedirectUris": ["javascript://app.example/%0Aalert(1)"],
    });
    assert_eq!(
        fields(body.clone()),
        vec![
            "redirectUris[1]",
            "redirectUris[2]",
            "postLogoutRedirectUris[0]"
        ]
    );
    let c = parse(body);
    let relaxed = c
        .validate_with(&ClientPolicy {
            redirect_uris: RedirectUriPolicy::AllowAny,
            ..ClientPolicy::default()
        })
        .unwrap_err();
    let relaxed: Vec<_> = relaxed.errors.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(relaxed, vec!["postLogoutRedirectUris[0]"]);
}

#[test]
fn logout_uris_are_absolute_http_urls_without_fragments() {
    let mut ok = backend();
    ok["frontChannelLogoutUri"] = "https://rp.example/fc?x=1".into();
    ok["frontChannelLogoutSessionRequired"] = false.into();
    ok["backChannelLogoutUri"] = "http://127.0.0.1:9000/bc".into();
    ok["backChannelLogoutSessionRequired"] = false.into();
    assert_eq!(fields(ok), Vec::<String>::new());
    for (uri, why) in [
        ("ftp://rp.example/x", "http or https"),
        ("https://rp.example/x#frag", "fragment"),
        ("/relative", "absolute"),
        ("mailto:a@b", "http or https"),
    ] {
        for field in ["frontChannelLogoutUri", "backChannelLogoutUri"] {
            let mut body = backend();
            body[field] = uri.into();
            let r = rules(body);
            assert!(
                r.iter().any(|(f, m)| f == field && m.contains(why)),
                "{field}={uri}: {r:?}"
            );
        }
    }
}

#[test]
fn the_fapi2_profile_names_every_flag_it_demands() {
    let good = serde_json::json!({
        "clientId": "bank", "profile": "fapi2",
        "allowedGrantTypes": ["authorization_code"],
        "redirectUris": ["https://bank.example/cb"],
        "requirePushedAuthorization": true, "authorizationCodeLifetime": 60,
        "jwksUri": "https://bank.example/jwks", "requireDPoP": true,
        "allowOfflineAccess": true, "refreshTokenUsage": 0,
    });
    assert_eq!(rules(good.clone()), vec![]);
    for (patch, field) in [
        (
            serde_json::json!({"requirePushedAuthorization": false}),
            "requirePushedAuthorization",
        ),
        (
            serde_json::json!({"authorizationCodeLifetime": 61}),
            "authorizationCodeLifetime",
        ),
        (serde_json::json!({"requirePkce": false}), "requirePkce"),
        (serde_json::json!({"requireDPoP": false}), "requireDPoP"),
        (
            serde_json::json!({"allowPlainTextPkce": true}),
            "allowPlainTextPkce",
        ),
        (
            serde_json::json!({"refreshTokenUsage": 1}),
            "refreshTokenUsage",
        ),
        (
            serde_json::json!({"allowAccessTokensViaBrowser": true}),
            "allowAccessTokensViaBrowser",
        ),
        (
            serde_json::json!({"allowedGrantTypes": ["hybrid"]}),
            "allowedGrantTypes",
        ),
        (
            serde_json::json!({"redirectUris": ["http://127.0.0.1/cb"]}),
            "redirectUris[0]",
        ),
        (
            serde_json::json!({"jwksUri": null, "clientSecrets": [{"value": "a-long-generated-secret"}]}),
            "clientSecrets",
        ),
    ] {
        let mut body = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let got = rules(body);
        assert!(
            got.iter()
                .any(|(f, r)| f == field && r.contains("profile fapi2")),
            "{patch}: {got:?}"
        );
    }
    // Keys as JsonWebKey secrets qualify as well as a jwksUri.
    let mut body = good.clone();
    body["jwksUri"] = serde_json::Value::Null;
    body["clientSecrets"] = serde_json::json!([{"type": "JsonWebKey",
        "value": r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#}]);
    assert_eq!(rules(body), vec![]);
    // Mutual TLS (FAPI 2.0 sections 5.3.2.1 and 5.3.2.2) is both the client authentication
    // and the sender constraint: no DPoP needed; DPoP alone still needs a non-shared secret.
    for secret in [
        serde_json::json!({"type": "X509Name", "value": "CN=bank,O=Bank"}),
        serde_json::json!({"type": "X509CertificateBase64", "value": crate::mtls::tests::CERT_B64}),
    ] {
        let mut body = good.clone();
        body["jwksUri"] = serde_json::Value::Null;
        body["requireDPoP"] = false.into();
        body["clientSecrets"] = serde_json::json!([secret]);
        assert_eq!(rules(body), vec![], "{secret}");
    }
    let mut body = good;
    body["requireDPoP"] = false.into();
    assert!(rules(body).iter().any(|(f, _)| f == "requireDPoP"));
}
