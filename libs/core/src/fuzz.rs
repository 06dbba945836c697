//! Shared pieces of the property tests ("fuzz" tests) that feed the parsers facing the
//! network arbitrary and near-valid input: the bounded configuration every property uses,
//! and generators of JSON bodies built from the admin API's own member names and values.
//!
//! Test-only (compiled for this crate's tests, and for other crates' tests through the
//! `proptest` feature). The properties themselves sit next to each parser (`*/fuzz.rs`),
//! so `cargo test -p signet-core fuzz` runs them all.

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};

/// `cases` runs per property: bounded so the suite stays quick on CI's two cores.
/// `PROPTEST_CASES` in the environment overrides it for longer local runs. Failures are not
/// persisted to files: a minimal failing input becomes a regular regression test instead.
pub fn config(cases: u32) -> Config {
    let defaults = Config::default();
    let env = std::env::var("PROPTEST_CASES").ok();
    Config {
        cases: env.and_then(|v| v.parse().ok()).unwrap_or(cases),
        failure_persistence: None,
        ..defaults
    }
}

/// Strings a parser is likely to trip on: empty, huge, control characters, non-ASCII,
/// look-alikes, and values that are valid somewhere in the admin API.
pub fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "", " ", "a", "openid", "profile", "offline_access", "signet.admin",
            "authorization_code", "client_credentials", "implicit", "hybrid",
            "urn:ietf:params:oauth:grant-type:device_code",
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "SharedSecret", "JsonWebKey", "oidc", "RS256", "ES256", "PS256", "EdDSA", "none",
            "https://app.example/cb", "http://127.0.0.1:3000/cb", "http://[::1]/cb",
            "http://localhost/cb", "com.example.app:/cb", "javascript:alert(1)",
            "https://app.example/cb#frag", "https://app.example", "data:text/html,x",
            "0123456789abcdef-secret", "2030-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
            "alice", "ＡＬＩＣＥ", "bob smith", "b\u{43e}b", "\u{0}", "\u{202e}", "\u{feff}",
            "alice@example.com", "1990-02-31", "0000-12-25", "OneTimeOnly", "ReUse",
            "Absolute", "Sliding", "Jwt", "Reference", "%00", "%zz", "..", "\\", "\"",
        ]).prop_map(str::to_owned),
        2 => ".{0,40}",
        1 => "[\\x00-\\x7f]{0,20}",
        1 => (1usize..300, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
    ]
}

/// Any JSON value, biased towards strings and numbers that mean something to the models.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![
            0i64,
            1,
            -1,
            60,
            3600,
            2_592_000,
            4_294_967_295,
            4_294_967_296,
            i64::MAX,
            i64::MIN,
        ])
        .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((nasty_string(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A JSON object whose members are mostly the given names (an admin API model's own), with
/// arbitrary values, sometimes an unknown member.
pub fn json_object(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        8 => prop::sample::select(names).prop_map(str::to_owned),
        1 => nasty_string(),
    ];
    // Lists of strings (grant types, URIs, scopes) and of small objects (secrets, claims)
    // are what most members hold: generate them directly, not only by chance.
    let strings =
        prop::collection::vec(nasty_string().prop_map(Value::String), 0..4).prop_map(Value::Array);
    let small_object = prop::collection::vec(
        (
            prop::sample::select(SECRET_MEMBERS).prop_map(str::to_owned),
            prop_oneof![nasty_string().prop_map(Value::String), json_value()],
        ),
        0..4,
    )
    .prop_map(|kv| Value::Object(kv.into_iter().collect()));
    let value = prop_oneof![
        4 => json_value(),
        2 => strings,
        1 => prop::collection::vec(small_object.clone(), 0..3).prop_map(Value::Array),
        1 => small_object,
    ];
    prop::collection::vec((name, value), 0..12).prop_map(|members| {
        let mut m = Map::new();
        for (k, v) in members {
            m.insert(k, v);
        }
        Value::Object(m)
    })
}

/// The members of a client body (`POST /admin/v1/Client`).
pub const CLIENT_MEMBERS: &[&str] = &[
    "clientId",
    "clientName",
    "clientUri",
    "logoUri",
    "enabled",
    "protocolType",
    "description",
    "pairWiseSubjectSalt",
    "userCodeType",
    "identityTokenLifetime",
    "accessTokenLifetime",
    "authorizationCodeLifetime",
    "absoluteRefreshTokenLifetime",
    "slidingRefreshTokenLifetime",
    "consentLifetime",
    "userSsoLifetime",
    "deviceCodeLifetime",
    "refreshTokenUsage",
    "updateAccessTokenClaimsOnRefresh",
    "refreshTokenExpiration",
    "accessTokenType",
    "enableLocalLogin",
    "includeJwtId",
    "requireClientSecret",
    "requireConsent",
    "allowRememberConsent",
    "requirePkce",
    "allowPlainTextPkce",
    "requireRequestObject",
    "allowAccessTokensViaBrowser",
    "alwaysSendClientClaims",
    "clientClaimsPrefix",
    "alwaysIncludeUserClaimsInIdToken",
    "allowOfflineAccess",
    "coordinateLifetimeWithUserSession",
    "frontChannelLogoutUri",
    "frontChannelLogoutSessionRequired",
    "backChannelLogoutUri",
    "backChannelLogoutSessionRequired",
    "clientSecrets",
    "redirectUris",
    "postLogoutRedirectUris",
    "allowedCorsOrigins",
    "allowedGrantTypes",
    "allowedScopes",
    "allowedIdentityTokenSigningAlgorithms",
    "identityProviderRestrictions",
    "claims",
    "properties",
];

/// The members of an API resource body.
pub const API_RESOURCE_MEMBERS: &[&str] = &[
    "name",
    "displayName",
    "enabled",
    "description",
    "showInDiscoveryDocument",
    "apiSecrets",
    "scopes",
    "allowedAccessTokenSigningAlgorithms",
    "userClaims",
    "properties",
];

/// The members of an API scope or identity resource body.
pub const SCOPE_MEMBERS: &[&str] = &[
    "name",
    "displayName",
    "enabled",
    "description",
    "showInDiscoveryDocument",
    "required",
    "emphasize",
    "userClaims",
    "properties",
];

/// The members of a user body (`POST` and `PUT /admin/v1/User`), and of its claims.
pub const USER_MEMBERS: &[&str] = &[
    "username",
    "password",
    "claims",
    "enabled",
    "name",
    "email",
    "email_verified",
    "address",
    "birthdate",
    "updated_at",
    "website",
    "sub",
    "formatted",
    "country",
    "phone_number",
];

/// The members of a secret (`clientSecrets[i]`, `apiSecrets[i]`) and of a client claim.
pub const SECRET_MEMBERS: &[&str] = &[
    "description",
    "value",
    "expiration",
    "type",
    "valueType",
    "name",
    "email",
    "formatted",
];
