//! No accepted field is silently ignored (issue 18, item 4): a walk over every field of the
//! admin API's bodies (`/Client`, `/Resource/ApiResource`, `/Resource/ApiScope` and
//! `/Resource/IdentityResource`, `/User`) that sets each to a value other than its default
//! and proves that validation either refuses it, naming exactly that field, or accepts it
//! because the field is listed below as taking effect, with where it does.
//!
//! The fields come from the serialized defaults, so a field added to a model later fails
//! this test until it is classified here (the user bodies, which are never serialized, are
//! destructured exhaustively instead: a new field fails to compile).

use serde_json::{json, Map, Value};

use crate::client::Client;
use crate::resource::ApiResource;
use crate::scope::ScopeResource;
use crate::secret::{SecretInput, StoredSecret};
use crate::validation::{from_json, ValidationErrors};

/// What setting a field to a non-default value does.
enum Class {
    /// It takes effect; the text says where.
    Effect(&'static str),
    /// Validation refuses it (the feature is missing), naming the field.
    Refused,
    /// It takes effect when the other members given are set too (a profile that demands
    /// other flags); alone it is refused, naming those flags.
    EffectWith(&'static str, fn() -> Value),
}
use Class::*;

/// One field: its non-default sample (`None`: derived from the default) and its class.
type Entry = (&'static str, Option<Value>, Class);

/// A value of the default's type that differs from it: a flipped boolean, another number
/// (the enums' other member), another string; nulls, arrays and objects need a sample.
fn other_than(default: &Value) -> Option<Value> {
    match default {
        Value::Bool(b) => Some(json!(!b)),
        Value::Number(n) => n.as_u64().map(|n| json!(if n == 0 { 1 } else { n - 1 })),
        Value::String(_) => Some(json!("walk-other")),
        _ => None,
    }
}

/// Walks `defaults`' fields over `base` (a valid body): each field's sample must either
/// validate (class `Effect`) or be refused naming exactly that field.
fn walk(
    model: &str,
    defaults: Value,
    base: Value,
    table: &[Entry],
    validate: impl Fn(&Value) -> Result<Value, ValidationErrors>,
) {
    let defaults = defaults.as_object().cloned().unwrap_or_default();
    validate(&base).unwrap_or_else(|e| panic!("{model}: the base body is invalid: {e:?}"));
    for (name, _, _) in table {
        assert!(
            defaults.contains_key(*name),
            "{model}.{name} is classified but is no field: remove it from the table"
        );
    }
    for (field, default) in &defaults {
        let Some((_, sample, class)) = table.iter().find(|(n, _, _)| n == field) else {
            panic!(
                "{model}.{field} is not classified: make it take effect (and list it as \
                 Effect with where) or refuse non-default values in validation (Refused)"
            );
        };
        let sample = sample
            .clone()
            .or_else(|| other_than(default))
            .unwrap_or_else(|| panic!("{model}.{field}: give a sample value"));
        let mut body: Map<String, Value> = base.as_object().cloned().unwrap_or_default();
        body.insert(field.clone(), sample.clone());
        if let EffectWith(at, others) = class {
            assert!(
                validate(&Value::Object(body.clone())).is_err(),
                "{model}.{field} = {sample} alone is accepted, yet listed as needing others ({at})"
            );
            for (k, v) in others().as_object().cloned().unwrap_or_default() {
                body.insert(k, v);
            }
        }
        let body = Value::Object(body);
        match (class, validate(&body)) {
            (EffectWith(_, _), Ok(read)) => {
                assert_ne!(&read[field], default, "{model}.{field}");
            }
            (EffectWith(at, _), Err(e)) => {
                panic!("{model}.{field} = {sample} with its companions is refused, yet listed as ({at}): {e:?}")
            }
            (Effect(_), Ok(read)) => {
                assert_ne!(
                    &read[field], default,
                    "{model}.{field}: the sample {sample} must differ from the default"
                );
            }
            (Effect(at), Err(e)) => {
                panic!("{model}.{field} = {sample} is refused, yet listed as ({at}): {e:?}")
            }
            (Refused, Ok(_)) => panic!("{model}.{field} = {sample} is accepted but does nothing"),
            (Refused, Err(e)) => {
                assert!(
                    e.errors
                        .iter()
                        .all(|f| f.field == *field || f.field.starts_with(&format!("{field}["))),
                    "{model}.{field}: the refusal must name the field: {e:?}"
                );
            }
        }
    }
}

fn client(body: &Value) -> Result<Value, ValidationErrors> {
    let c: Client<SecretInput> = from_json(body.to_string().as_bytes())?;
    c.validate()?;
    Ok(serde_json::to_value(c.map_secrets(SecretInput::into_stored).view()).unwrap_or_default())
}

#[test]
fn every_client_field_takes_effect_or_is_refused() {
    let table: Vec<Entry> = vec![
        (
            "clientId",
            None,
            Effect("the client's key: projection, client_auth, every grant"),
        ),
        (
            "clientName",
            Some(json!("Walk")),
            Effect("login and consent pages (browser::branding)"),
        ),
        (
            "clientUri",
            Some(json!("https://walk.example/")),
            Effect("consent page link (browser::branding)"),
        ),
        (
            "logoUri",
            Some(json!("https://walk.example/logo.png")),
            Effect("login and consent pages (browser::branding)"),
        ),
        (
            "enabled",
            None,
            Effect("client_auth and authorize refuse a disabled client"),
        ),
        ("protocolType", None, Refused),
        (
            "description",
            Some(json!("walk")),
            Effect(
                "documentation for admins: read back by GET, no protocol meaning in the reference",
            ),
        ),
        (
            "pairWiseSubjectSalt",
            Some(json!("salt")),
            Effect("authorize::subject_for (pairwise sub)"),
        ),
        (
            "userCodeType",
            Some(json!("Numeric")),
            Effect("http::device: the shape of the client's user codes"),
        ),
        (
            "identityTokenLifetime",
            None,
            Effect("user_tokens::id_token exp"),
        ),
        (
            "accessTokenLifetime",
            None,
            Effect("exp of every access token (client_credentials, user_tokens)"),
        ),
        (
            "authorizationCodeLifetime",
            None,
            Effect("http::authorize: the code's TTL"),
        ),
        (
            "absoluteRefreshTokenLifetime",
            None,
            Effect("grants::refresh_token::issue"),
        ),
        (
            "slidingRefreshTokenLifetime",
            None,
            Effect("grants::refresh_token sliding window"),
        ),
        (
            "consentLifetime",
            Some(json!(60)),
            Effect("http::authorize: remembered consent's TTL"),
        ),
        (
            "userSsoLifetime",
            Some(json!(60)),
            Effect("http::authorize: re-authentication after this age"),
        ),
        (
            "deviceCodeLifetime",
            None,
            Effect("http::device: the TTL of device and user codes, expires_in"),
        ),
        (
            "refreshTokenUsage",
            None,
            Effect("grants::refresh_token: rotate or reuse"),
        ),
        (
            "updateAccessTokenClaimsOnRefresh",
            None,
            Effect("grants::refresh_token: reload the user's claims at refresh"),
        ),
        (
            "refreshTokenExpiration",
            None,
            Effect("grants::refresh_token: sliding or absolute"),
        ),
        (
            "accessTokenType",
            None,
            Effect("user_tokens and client_credentials: reference tokens"),
        ),
        ("enableLocalLogin", None, Effect("login: the password form hidden and refused")),
        (
            "includeJwtId",
            None,
            Effect("jti of access tokens (client_credentials, user_tokens)"),
        ),
        (
            "requireClientSecret",
            None,
            Effect("client_auth: public clients"),
        ),
        (
            "requireConsent",
            None,
            Effect("http::authorize: the consent step"),
        ),
        (
            "allowRememberConsent",
            None,
            Effect("consent page: the remember box"),
        ),
        ("requirePkce", None, Effect("authorize::check_pkce")),
        ("allowPlainTextPkce", None, Effect("authorize::check_pkce")),
        (
            "requireRequestObject",
            None,
            EffectWith(
                "http::authorize and http::par: a request without a signed request object is refused",
                || json!({"jwksUri": "https://walk.example/jwks"}),
            ),
        ),
        (
            "requirePushedAuthorization",
            None,
            Effect("http::authorize: a request not pushed to /oauth2/par is refused"),
        ),
        (
            "profile",
            Some(json!("fapi2")),
            EffectWith(
                "validation demands the FAPI 2.0 flags; client_auth: the assertion aud is the issuer only",
                || {
                    json!({"requirePushedAuthorization": true, "authorizationCodeLifetime": 60,
                           "jwksUri": "https://walk.example/jwks", "requireDPoP": true})
                },
            ),
        ),
        (
            "requireDPoP",
            None,
            Effect("http::token: a token request without a DPoP proof is refused"),
        ),
        (
            "allowAccessTokensViaBrowser",
            None,
            Effect("authorize: response types with token"),
        ),
        (
            "alwaysSendClientClaims",
            None,
            Effect("user_tokens::access_token: client claims"),
        ),
        (
            "clientClaimsPrefix",
            Some(json!("client_")),
            Effect("Client::claim_name, in every token's client claims"),
        ),
        (
            "alwaysIncludeUserClaimsInIdToken",
            None,
            Effect("user_tokens::id_token"),
        ),
        (
            "allowOfflineAccess",
            None,
            Effect("offline_access and refresh tokens (commands, authorize, grants)"),
        ),
        (
            "coordinateLifetimeWithUserSession",
            None,
            Effect("grants::refresh_token: the family ends with the session"),
        ),
        (
            "frontChannelLogoutUri",
            Some(json!("https://walk.example/logout")),
            Effect("sessions::end and logout: an iframe on the signed-out page"),
        ),
        (
            "frontChannelLogoutSessionRequired",
            None,
            Effect("sessions::front_channel_uri: iss and sid in the iframe's query"),
        ),
        (
            "backChannelLogoutUri",
            Some(json!("https://walk.example/logout")),
            Effect("backchannel: a logout token POSTed when the session ends"),
        ),
        (
            "backChannelLogoutSessionRequired",
            None,
            Effect("backchannel::logout_claims: sid is always sent"),
        ),
        (
            "jwksUri",
            Some(json!("https://walk.example/jwks")),
            Effect("client_jwks: the client's keys for private_key_jwt and request objects"),
        ),
        (
            "clientSecrets",
            Some(json!([{"value": "walk-secret-0123456789"}])),
            Effect("client_auth"),
        ),
        (
            "redirectUris",
            Some(json!(["https://walk.example/other"])),
            Effect("authorize: exact redirect URI match"),
        ),
        (
            "postLogoutRedirectUris",
            Some(json!(["https://walk.example/"])),
            Effect("logout: exact post_logout_redirect_uri match (RP-Initiated Logout)"),
        ),
        (
            "allowedCorsOrigins",
            Some(json!(["https://walk.example"])),
            Effect("http::cors"),
        ),
        (
            "allowedGrantTypes",
            Some(json!(["implicit"])),
            Effect("every grant and authorize check Client::allows"),
        ),
        (
            "allowedScopes",
            Some(json!(["openid"])),
            Effect("authorize and grants: the scopes a client may get"),
        ),
        (
            "allowedIdentityTokenSigningAlgorithms",
            Some(json!(["ES256"])),
            Effect("user_tokens::id_token_alg"),
        ),
        (
            "identityProviderRestrictions",
            Some(json!(["Facebook"])),
            Effect("login and federation: the providers offered"),
        ),
        (
            "claims",
            Some(json!([{"type": "role", "value": "walker"}])),
            Effect("projection claims_json, in access tokens"),
        ),
        (
            "properties",
            Some(json!({"backgroundImageUri": "https://walk.example/bg.png"})),
            Effect("free-form for admins; backgroundImageUri brands the login page"),
        ),
    ];
    let defaults = serde_json::to_value(Client::<StoredSecret>::new("walk").view()).unwrap();
    let base = json!({
        "clientId": "walk",
        "allowedGrantTypes": ["authorization_code"],
        "redirectUris": ["https://walk.example/cb"],
    });
    walk("Client", defaults, base, &table, client);
}

#[test]
fn the_reference_client_is_accepted_and_sets_no_refused_field() {
    let reference: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/reference-client.json"
    ))
    .unwrap();
    client(&reference).unwrap();
}

#[test]
fn every_api_resource_field_takes_effect_or_is_refused() {
    let table: Vec<Entry> = vec![
        (
            "name",
            None,
            Effect("the aud of tokens with its scopes (projection audiences)"),
        ),
        (
            "displayName",
            Some(json!("Walk API")),
            Effect("documentation for admins: read back by GET"),
        ),
        (
            "enabled",
            None,
            Effect("projection: a disabled resource is no audience"),
        ),
        (
            "description",
            Some(json!("walk")),
            Effect("documentation for admins: read back by GET"),
        ),
        (
            "showInDiscoveryDocument",
            None,
            Effect("discovery: its scopes leave scopes_supported"),
        ),
        (
            "apiSecrets",
            Some(json!([{"value": "walk-secret-0123456789"}])),
            Effect("introspect: the API authenticates"),
        ),
        (
            "scopes",
            Some(json!(["walk.read"])),
            Effect("projection audiences: aud of access tokens"),
        ),
        (
            "allowedAccessTokenSigningAlgorithms",
            Some(json!(["ES256"])),
            Effect("grants::client_credentials::audiences_and_alg"),
        ),
        (
            "userClaims",
            Some(json!(["email"])),
            Effect("authorize::access_token_claims: user claims in access tokens"),
        ),
        (
            "properties",
            Some(json!({"k": "v"})),
            Effect("free-form for admins: read back by GET"),
        ),
    ];
    let defaults = serde_json::to_value(ApiResource::<StoredSecret> {
        name: "walk".into(),
        display_name: None,
        enabled: true,
        description: None,
        show_in_discovery_document: true,
        api_secrets: vec![],
        scopes: vec![],
        allowed_access_token_signing_algorithms: vec![],
        user_claims: vec![],
        properties: Default::default(),
    })
    .unwrap();
    // The defaults above are the ones an empty body gets.
    let parsed: ApiResource<SecretInput> = from_json(br#"{"name":"walk"}"#).unwrap();
    assert_eq!(
        serde_json::to_value(parsed.map_secrets(SecretInput::into_stored)).unwrap(),
        defaults
    );
    walk(
        "ApiResource",
        defaults,
        json!({"name": "walk"}),
        &table,
        |body| {
            let r: ApiResource<SecretInput> = from_json(body.to_string().as_bytes())?;
            r.validate()?;
            Ok(serde_json::to_value(r.map_secrets(SecretInput::into_stored).view()).unwrap())
        },
    );
}

#[test]
fn every_scope_field_takes_effect_or_is_refused() {
    let table: Vec<Entry> = vec![
        ("name", None, Effect("the scope's name in requests and tokens")),
        ("displayName", Some(json!("Walk")), Effect("consent page")),
        ("enabled", None, Effect("authorize and grants refuse a disabled scope; discovery")),
        ("description", Some(json!("walk")), Effect("consent page")),
        ("showInDiscoveryDocument", None, Effect("discovery: scopes_supported and claims_supported")),
        ("required", None, Effect("consent page: cannot be de-selected")),
        ("emphasize", None, Effect("consent page: emphasized")),
        ("userClaims", Some(json!(["email"])), Effect("identity: released_claims (ID token, userinfo); API: authorize::access_token_claims")),
        ("properties", Some(json!({"signet:apiKeys": "true"})), Effect("signet:apiKeys puts the scope on users' API keys; requiredAcr sets the level every sign-in must reach; others free-form")),
    ];
    let defaults: ScopeResource = from_json(br#"{"name":"walk"}"#).unwrap();
    walk(
        "ScopeResource",
        serde_json::to_value(defaults).unwrap(),
        json!({"name": "walk"}),
        &table,
        |body| {
            let s: ScopeResource = from_json(body.to_string().as_bytes())?;
            s.validate()?;
            Ok(serde_json::to_value(s).unwrap())
        },
    );
}

#[test]
fn every_user_field_takes_effect() {
    use crate::user::{NewUser, UserReplacement};
    // Exhaustive patterns: a field added to a user body does not compile until it is
    // classified here. Each one is checked and kept in the record the server reads:
    // username and password at sign-in (login), claims in ID tokens, userinfo and access
    // tokens (released_claims, access_token_claims), enabled at sign-in, at every grant
    // (user_tokens::active_user) and in introspection.
    let body = json!({
        "username": "walker",
        "password": "walk-password-1",
        "claims": {"email": "walker@example.com"},
        "enabled": false,
        "mustChangePassword": true,
    });
    let NewUser {
        username,
        password,
        claims,
        enabled,
        must_change_password,
    } = from_json(body.to_string().as_bytes()).unwrap();
    let checked = NewUser {
        username,
        password,
        claims,
        enabled,
        must_change_password,
    }
    .check()
    .unwrap();
    assert_eq!(checked.username, "walker");
    assert_eq!(
        checked.password.as_ref().map(|p| p.expose()),
        Some("walk-password-1")
    );
    assert_eq!(checked.claims["email"], "walker@example.com");
    assert!(!checked.enabled);
    // mustChangePassword: kept in the record; the sign-in asks for a new password
    // (login::finish_sign_in) and the change clears it.
    assert!(checked.must_change_password);

    let UserReplacement {
        username,
        password,
        claims,
        enabled,
        must_change_password,
    } = from_json(body.to_string().as_bytes()).unwrap();
    let checked = UserReplacement {
        username,
        password,
        claims,
        enabled,
        must_change_password,
    }
    .check()
    .unwrap();
    assert_eq!(checked.username, "walker");
    assert!(checked.password.is_some());
    assert_eq!(checked.claims["email"], "walker@example.com");
    assert!(!checked.enabled);
    assert!(checked.must_change_password);
}

#[test]
fn fields_of_newer_reference_versions_are_refused_by_name() {
    // IdentityServer fields this model does not have (yet) are unknown members: refused,
    // naming the member, never dropped.
    let field = "cibaLifetime";
    let body = json!({"clientId": "walk", field: true});
    let e = client(&body).unwrap_err();
    assert_eq!(e.errors.len(), 1, "{e:?}");
    assert_eq!(e.errors[0].field, field, "{e:?}");
    assert!(e.errors[0].rule.contains("unknown field"), "{e:?}");
    // requireDPoP is supported now: it takes effect (tests/integration/dpop.rs).
    if let Err(e) = client(&json!({"clientId": "walk", "requireDPoP": true})) {
        assert!(e.errors.iter().all(|e| e.field != "requireDPoP"), "{e:?}");
    }
}

/// `/InitialAccessToken` bodies are never serialized, so the walk above cannot list their
/// fields: they are destructured exhaustively instead (a new field fails to compile here),
/// and each non-default sample must change the stored record (every field takes effect;
/// where is said beside it). Invalid values are refused naming the field
/// (`registration::tests::initial_access_token_bodies`).
#[test]
fn every_initial_access_token_field_takes_effect() {
    use crate::registration::{InitialAccessToken, InitialAccessTokenInput};
    let record = |body: Value| -> InitialAccessToken {
        let input: InitialAccessTokenInput =
            from_json(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        let id = input.id.clone().unwrap_or_else(|| "generated".into());
        input
            .into_record(id, "hash".into(), 1_000)
            .unwrap_or_else(|e| panic!("{body}: {e:?}"))
    };
    let defaults: InitialAccessTokenInput = from_json(b"{}").unwrap();
    let InitialAccessTokenInput {
        id: _,
        description: _,
        expires_at: _,
        lifetime: _,
        max_uses: _,
        allowed_grant_types: _,
        allowed_scopes: _,
        redirect_uri_patterns: _,
        max_access_token_lifetime: _,
        max_refresh_token_lifetime: _,
        allow_confidential_clients: _,
        allow_public_clients: _,
    } = defaults;
    let base = record(json!({}));
    for (field, sample, effect) in [
        (
            "id",
            json!("named"),
            "the record's key: the token value's prefix, the URL",
        ),
        ("description", json!("walk"), "read back by GET; for admins"),
        (
            "expiresAt",
            json!("1970-01-01T01:00:00Z"),
            "registration refuses the token after it",
        ),
        ("lifetime", json!(60), "expiresAt = creation + lifetime"),
        (
            "maxUses",
            json!(3),
            "registration refuses the token once used up (register::take_use)",
        ),
        (
            "allowedGrantTypes",
            json!(["client_credentials"]),
            "registration::build_client",
        ),
        (
            "allowedScopes",
            json!(["profile"]),
            "registration::build_client",
        ),
        (
            "redirectUriPatterns",
            json!(["https://*.example.com/*"]),
            "registration::build_client",
        ),
        (
            "maxAccessTokenLifetime",
            json!(600),
            "caps the registered client's accessTokenLifetime",
        ),
        (
            "maxRefreshTokenLifetime",
            json!(600),
            "caps the registered client's refresh lifetimes",
        ),
        (
            "allowConfidentialClients",
            json!(false),
            "registration::build_client",
        ),
        (
            "allowPublicClients",
            json!(true),
            "registration::build_client",
        ),
    ] {
        let mut body = json!({});
        body[field] = sample.clone();
        if field == "allowConfidentialClients" {
            body["allowPublicClients"] = json!(true);
        }
        let r = record(body);
        assert_ne!(
            r, base,
            "{field} = {sample} changes nothing, yet listed as ({effect})"
        );
    }
}
