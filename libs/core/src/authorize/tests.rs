use std::collections::HashMap;

use super::*;
use crate::bootstrap;
use crate::client::Client;
use crate::commands::{decide, Command};
use crate::scope::ScopeResource;
use crate::secret::SecretInput;
use crate::validation::from_json;

struct P(HashMap<&'static str, &'static str>);

impl Params for P {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).copied().filter(|v| !v.is_empty())
    }
}

fn params(pairs: &[(&'static str, &'static str)]) -> P {
    P(pairs.iter().copied().collect())
}

fn apply(p: &mut Projection, cmd: Command) {
    let d = decide(p, cmd).unwrap();
    let subject = d.event.subject();
    p.apply(p.seq() + 1, &subject, d.event).unwrap();
}

const CHALLENGE: &str = "mUC84QHW1XnmFGk31dqlZ81-q8-qS-OxrweG_XEDeIU";
const VERIFIER: &str = "dBjftJeZ4CVP-mJ0LbmCqxJW9X8Nqn_H96LJPLkgK0Y";

fn projection() -> Projection {
    let mut p = Projection::new();
    for s in bootstrap::standard_identity_resources() {
        apply(&mut p, Command::CreateScope(ScopeKind::Identity, s));
    }
    let c: Client<SecretInput> = from_json(
        serde_json::json!({
            "clientId": "web", "allowedGrantTypes": ["authorization_code"],
            "redirectUris": ["https://app.example/cb"], "requireClientSecret": false,
            "allowedScopes": ["openid", "profile"]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    apply(&mut p, Command::CreateClient(Box::new(c)));
    p
}

fn good() -> Vec<(&'static str, &'static str)> {
    vec![
        ("client_id", "web"),
        ("redirect_uri", "https://app.example/cb"),
        ("response_type", "code"),
        ("scope", "openid profile"),
        ("state", "xyz"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

fn check(
    p: &Projection,
    pairs: &[(&'static str, &'static str)],
) -> Result<AuthorizeRequest, String> {
    let prm = params(pairs);
    let (client, uri) = check_client(p, &prm).map_err(|e| format!("page:{}", e.error.as_str()))?;
    check_request(p, client, &uri, &prm).map_err(|e| {
        assert_eq!(e.state.as_deref(), prm.get("state"));
        e.error.code.as_str().to_owned()
    })
}

fn with(over: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = good()
        .into_iter()
        .filter(|(k, _)| !over.iter().any(|(o, _)| o == k))
        .collect();
    v.extend(over.iter().copied().filter(|(_, v)| !v.is_empty()));
    v
}

#[test]
fn a_good_code_request_is_accepted() {
    let p = projection();
    let r = check(&p, &good()).unwrap();
    assert_eq!(r.response_mode, ResponseMode::Query);
    assert_eq!(r.scopes, ["openid", "profile"]);
    assert!(r.is_oidc());
    assert!(r.code_challenge.unwrap().verify(VERIFIER));
}

#[test]
fn client_and_redirect_errors_never_redirect() {
    let p = projection();
    assert_eq!(
        check(&p, &with(&[("client_id", "nope")])).unwrap_err(),
        "page:invalid_client"
    );
    assert_eq!(
        check(&p, &with(&[("redirect_uri", "https://app.example/cb/")])).unwrap_err(),
        "page:invalid_request"
    );
    assert_eq!(
        check(&p, &with(&[("redirect_uri", "https://evil.example/cb")])).unwrap_err(),
        "page:invalid_request"
    );
}

#[test]
fn other_errors_redirect_with_their_code() {
    let p = projection();
    for (over, code) in [
        (vec![("response_type", "")], "invalid_request"),
        (
            vec![("response_type", "code code")],
            "unsupported_response_type",
        ),
        (vec![("response_type", "id_token")], "unauthorized_client"),
        (vec![("scope", "openid email")], "invalid_scope"),
        (vec![("scope", "")], "invalid_scope"),
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", "short")], "invalid_request"),
        (vec![("prompt", "none login")], "invalid_request"),
        (vec![("max_age", "-1")], "invalid_request"),
        (vec![("request", "eyJ")], "request_not_supported"),
        (vec![("response_mode", "jwt")], "invalid_request"),
    ] {
        assert_eq!(check(&p, &with(&over)).unwrap_err(), code, "{over:?}");
    }
}

#[test]
fn pkce_verification() {
    let c = CodeChallenge {
        challenge: CHALLENGE.into(),
        method: PkceMethod::S256,
    };
    assert!(c.verify(VERIFIER));
    assert!(!c.verify(CHALLENGE));
    assert!(!c.verify("short"));
    let plain = CodeChallenge {
        challenge: VERIFIER.into(),
        method: PkceMethod::Plain,
    };
    assert!(plain.verify(VERIFIER));
}

#[test]
fn response_types() {
    let rt = ResponseType::parse("id_token code").unwrap();
    assert_eq!(rt.grant_type(), GrantType::Hybrid);
    assert_eq!(rt.default_mode(), ResponseMode::Fragment);
    assert_eq!(
        ResponseType::parse("token").unwrap().grant_type(),
        GrantType::Implicit
    );
    assert!(ResponseType::parse("none").is_none());
    assert!(ResponseType::parse("").is_none());
}

#[test]
fn half_hashes_follow_the_spec_example() {
    // OIDC Core appendix A.3-ish: at_hash is the left half of SHA-256, base64url.
    let h = half_hash(
        signet_jose::Algorithm::RS256,
        "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y",
    );
    assert_eq!(h.len(), 22);
}

/// The reference model: `allowOfflineAccess` alone lets a client ask for `offline_access`
/// (its real-life client does not list the scope in `allowedScopes`).
#[test]
fn offline_access_follows_allow_offline_access() {
    let mut p = projection();
    let scope = [("scope", "openid offline_access")];
    assert_eq!(check(&p, &with(&scope)).unwrap_err(), "invalid_scope");
    let c: Client<SecretInput> = from_json(
        serde_json::json!({
            "clientId": "web", "allowedGrantTypes": ["authorization_code"],
            "redirectUris": ["https://app.example/cb"], "requireClientSecret": false,
            "allowedScopes": ["openid", "profile"], "allowOfflineAccess": true
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    apply(
        &mut p,
        Command::ReplaceClient {
            client: Box::new(c),
            keep_secrets: false,
        },
    );
    let r = check(&p, &with(&scope)).unwrap();
    assert_eq!(r.scopes, ["openid", "offline_access"]);
}

/// RFC 8252 section 7.3: a native app registers `http://127.0.0.1/cb` and asks with the
/// ephemeral port it listens on; the answer goes to that port. Nothing else relaxes.
#[test]
fn a_loopback_redirect_uri_matches_any_port_and_the_request_keeps_its_own() {
    let mut p = projection();
    let c: Client<SecretInput> = from_json(
        serde_json::json!({
            "clientId": "native", "allowedGrantTypes": ["authorization_code"],
            "redirectUris": ["http://127.0.0.1/cb", "com.example.app:/cb"],
            "requireClientSecret": false, "allowedScopes": ["openid"]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    apply(&mut p, Command::CreateClient(Box::new(c)));
    let with = |uri: &'static str| params(&[("client_id", "native"), ("redirect_uri", uri)]);
    let (_, uri) = check_client(&p, &with("http://127.0.0.1:51234/cb")).unwrap();
    assert_eq!(uri, "http://127.0.0.1:51234/cb");
    let (_, uri) = check_client(&p, &with("com.example.app:/cb")).unwrap();
    assert_eq!(uri, "com.example.app:/cb");
    for bad in [
        "http://127.0.0.1:51234/cb/",
        "http://localhost:51234/cb",
        "https://127.0.0.1:51234/cb",
        "com.example.app:/cb2",
    ] {
        assert!(check_client(&p, &with(bad)).is_err(), "{bad}");
    }
}

#[test]
fn access_tokens_carry_the_user_claims_of_their_api_scopes_and_resources() {
    let mut p = projection();
    let scope =
        |j: serde_json::Value| -> ScopeResource { from_json(j.to_string().as_bytes()).unwrap() };
    apply(
        &mut p,
        Command::CreateScope(
            ScopeKind::Api,
            scope(
                serde_json::json!({"name": "inv.read", "userClaims": ["email", "sub", "family"]}),
            ),
        ),
    );
    apply(
        &mut p,
        Command::CreateScope(
            ScopeKind::Api,
            scope(serde_json::json!({"name": "inv.write"})),
        ),
    );
    let resource: crate::resource::ApiResource<SecretInput> = from_json(
        serde_json::json!({"name": "inventory", "scopes": ["inv.write"], "userClaims": ["role"]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    apply(&mut p, Command::CreateApiResource(Box::new(resource)));
    let user = serde_json::json!({
        "email": "a@example.com", "role": "buyer", "family": "x", "name": "A"
    });
    let user = user.as_object().unwrap();
    let names = |scopes: &[&str]| -> Vec<String> {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        access_token_claims(&p, &scopes, user)
            .keys()
            .cloned()
            .collect()
    };
    // The API scope's own claims (never protocol ones nor `family`), the resource's
    // claims through a scope it holds, nothing for identity scopes.
    assert_eq!(names(&["inv.read"]), ["email"]);
    assert_eq!(names(&["inv.write"]), ["role"]);
    assert_eq!(names(&["openid", "profile"]), Vec::<String>::new());
    assert_eq!(names(&["inv.read", "inv.write"]), ["email", "role"]);
}
