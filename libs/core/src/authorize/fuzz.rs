//! Property tests of the authorization request (`check_client`, then `check_request`): any
//! set of parameters, near-valid or arbitrary, never panics and always gets the same answer;
//! a redirect URI is only ever one the client registered (or its loopback port variant);
//! an accepted request holds only what the client may ask for; an error that redirects
//! goes to the checked redirect URI with the request's `state`.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::bootstrap;
use crate::client::Client;
use crate::commands::{decide, Command};
use crate::fuzz::{config, nasty_string};
use crate::redirect_uri::fuzz::may_accept;
use crate::scope::ScopeResource;
use crate::secret::SecretInput;
use crate::validation::from_json;

#[derive(Debug, Clone)]
struct P(BTreeMap<String, String>);

impl Params for P {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

fn apply(p: &mut Projection, cmd: Command) {
    let d = decide(p, cmd).unwrap();
    let subject = d.event.subject();
    p.apply(p.seq() + 1, &subject, d.event).unwrap();
}

/// Built once: every case reads the same configuration.
static PROJECTION: std::sync::LazyLock<Projection> = std::sync::LazyLock::new(projection);

fn projection() -> Projection {
    let mut p = Projection::new();
    for s in bootstrap::standard_identity_resources() {
        apply(&mut p, Command::CreateScope(ScopeKind::Identity, s));
    }
    let api: ScopeResource = from_json(br#"{"name": "orders.read"}"#).unwrap();
    apply(&mut p, Command::CreateScope(ScopeKind::Api, api));
    let off: ScopeResource = from_json(br#"{"name": "orders.off", "enabled": false}"#).unwrap();
    apply(&mut p, Command::CreateScope(ScopeKind::Api, off));
    for client in [
        serde_json::json!({
            "clientId": "web", "allowedGrantTypes": ["authorization_code"],
            "redirectUris": ["https://app.example/cb", "http://127.0.0.1/cb"],
            "requireClientSecret": false, "allowOfflineAccess": true,
            "allowedScopes": ["openid", "profile", "orders.read", "orders.off"]
        }),
        serde_json::json!({
            "clientId": "spa", "allowedGrantTypes": ["implicit"],
            "redirectUris": ["https://spa.example/cb"], "requireClientSecret": false,
            "allowAccessTokensViaBrowser": true, "allowedScopes": ["openid", "email"]
        }),
        serde_json::json!({
            "clientId": "hybrid", "allowedGrantTypes": ["hybrid"], "requirePkce": false,
            "allowPlainTextPkce": true,
            "redirectUris": ["http://[::1]:8080/cb?x=1"], "requireClientSecret": false,
            "allowedScopes": ["openid", "orders.read"]
        }),
        serde_json::json!({
            "clientId": "backend", "allowedGrantTypes": ["client_credentials"],
            "clientSecrets": [{"value": "0123456789abcdef-secret"}],
            "allowedScopes": ["orders.read"]
        }),
        serde_json::json!({
            "clientId": "off", "enabled": false, "allowedGrantTypes": ["authorization_code"],
            "redirectUris": ["https://off.example/cb"], "requireClientSecret": false
        }),
    ] {
        let c: Client<SecretInput> = from_json(client.to_string().as_bytes()).unwrap();
        apply(&mut p, Command::CreateClient(Box::new(c)));
    }
    p
}

const CHALLENGE: &str = "mUC84QHW1XnmFGk31dqlZ81-q8-qS-OxrweG_XEDeIU";

/// A value for a parameter: mostly ones that mean something for it.
fn value_for(name: &'static str) -> BoxedStrategy<String> {
    let meaningful: Vec<&'static str> = match name {
        "client_id" => vec!["web", "spa", "hybrid", "backend", "off", "WEB", "web "],
        "redirect_uri" => vec![
            "https://app.example/cb",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5000/cb",
            "http://[::1]/cb",
            "http://[::1]:9/cb?x=1",
            "http://[::1]:8080/cb?x=1",
            "https://spa.example/cb",
            "https://app.example/cb/",
            "https://app.example/cb#x",
            "http://127.0.0.1:5000@evil.example/cb",
        ],
        "response_type" => vec![
            "code",
            "token",
            "id_token",
            "code id_token",
            "id_token token",
            "code id_token token",
            "code code",
            "none",
            " code",
        ],
        "response_mode" => vec!["query", "fragment", "form_post", "jwt"],
        "scope" => vec![
            "openid",
            "openid profile",
            "orders.read",
            "openid offline_access",
            "orders.off",
            "openid  profile",
            "openid \"x\"",
            "email",
            "offline_access",
        ],
        "code_challenge" => vec![CHALLENGE, "short"],
        "code_challenge_method" => vec!["S256", "plain", "s256"],
        "prompt" => vec!["none", "login consent", "none login", "select_account", " "],
        "max_age" => vec!["0", "60", "-1", "18446744073709551616", "1e3"],
        _ => vec!["x", "eyJhbGciOiJub25lIn0.e30."],
    };
    prop_oneof![
        3 => prop::sample::select(meaningful).prop_map(str::to_owned),
        1 => nasty_string(),
    ]
    .boxed()
}

const NAMES: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "ui_locales",
    "request",
    "request_uri",
];

/// A good request of each interactive client, which [`params`] then edits.
fn template(client: usize) -> Vec<(&'static str, &'static str)> {
    match client {
        0 => vec![
            ("client_id", "web"),
            ("redirect_uri", "https://app.example/cb"),
            ("response_type", "code"),
            ("scope", "openid profile orders.read"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("state", "s"),
        ],
        1 => vec![
            ("client_id", "spa"),
            ("redirect_uri", "https://spa.example/cb"),
            ("response_type", "id_token token"),
            ("scope", "openid email"),
            ("nonce", "n"),
        ],
        _ => vec![
            ("client_id", "hybrid"),
            ("redirect_uri", "http://[::1]:8080/cb?x=1"),
            ("response_type", "code id_token"),
            ("scope", "openid orders.read"),
            ("nonce", "n"),
            ("response_mode", "form_post"),
        ],
    }
}

/// A good request with some parameters dropped, replaced or added.
fn params() -> impl Strategy<Value = P> {
    let edits: Vec<BoxedStrategy<Option<Option<String>>>> = NAMES
        .iter()
        .map(|n| prop::option::weighted(0.25, prop::option::weighted(0.8, value_for(n))).boxed())
        .collect();
    (0usize..3, edits).prop_map(|(client, edits)| {
        let mut m: BTreeMap<String, String> = template(client)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for (name, edit) in NAMES.iter().zip(edits) {
            match edit {
                None => {}
                Some(None) => {
                    m.remove(*name);
                }
                Some(Some(v)) => {
                    m.insert((*name).to_owned(), v);
                }
            }
        }
        P(m)
    })
}

type Outcome = Result<(String, Result<AuthorizeRequest, Box<RedirectError>>), PageError>;

fn run(p: &Projection, prm: &P) -> Outcome {
    let (client, uri) = check_client(p, prm)?;
    Ok((uri.clone(), check_request(p, client, &uri, prm)))
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn authorization_requests_are_answered_safely_and_deterministically(prm in params()) {
        let p = &*PROJECTION;
        let first = run(p, &prm);
        prop_assert_eq!(&first, &run(p, &prm));
        let Ok((uri, result)) = first else { return Ok(()) };
        let client = p.client(prm.get("client_id").unwrap()).unwrap();
        prop_assert!(client.client.enabled);
        let registered = &client.client.redirect_uris;
        match prm.get("redirect_uri") {
            Some(requested) => {
                prop_assert_eq!(&uri, requested);
                prop_assert!(registered.iter().any(|g| may_accept(g, &uri)), "{uri:?}");
            }
            None => prop_assert_eq!(registered.as_slice(), std::slice::from_ref(&uri)),
        }
        match result {
            Err(e) => {
                prop_assert_eq!(&e.redirect_uri, &uri);
                prop_assert_eq!(e.state.as_deref(), prm.get("state"));
            }
            Ok(r) => {
                prop_assert_eq!(&r.redirect_uri, &uri);
                prop_assert!(!r.scopes.is_empty());
                for (i, s) in r.scopes.iter().enumerate() {
                    prop_assert!(!r.scopes[..i].contains(s), "{s} twice");
                    if s == OFFLINE_ACCESS {
                        prop_assert!(client.client.allow_offline_access);
                    } else {
                        prop_assert!(client.client.allowed_scopes.contains(s), "{s}");
                        prop_assert!(p.scope(s).is_some_and(|e| e.scope.enabled), "{s}");
                    }
                }
                prop_assert!(client.allows(r.response_type.grant_type()));
                prop_assert!(!(r.response_type.returns_tokens() && r.response_mode == ResponseMode::Query));
                if let Some(c) = &r.code_challenge {
                    prop_assert!(valid_pkce_value(&c.challenge));
                    prop_assert!(c.method == PkceMethod::S256 || client.client.allow_plain_text_pkce);
                } else {
                    prop_assert!(!(r.response_type.code && client.client.require_pkce));
                }
                if r.response_type.id_token {
                    prop_assert!(r.is_oidc() && r.nonce.is_some());
                }
            }
        }
    }

    #[test]
    fn response_type_and_prompt_parsers_are_total(s in ".{0,30}") {
        if let Some(rt) = ResponseType::parse(&s) {
            prop_assert!(rt.code || rt.id_token || rt.token);
        }
        if let Some(p) = Prompt::parse(&s) {
            prop_assert!(!(p.none && (p.login || p.consent || p.select_account)));
        }
        let _ = ResponseMode::parse(&s);
        let c = CodeChallenge { challenge: s.clone(), method: PkceMethod::Plain };
        prop_assert_eq!(c.verify(&s), valid_pkce_value(&s));
    }
}
