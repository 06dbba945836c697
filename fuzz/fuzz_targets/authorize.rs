//! The authorization request: the input is a query string, parsed as the endpoint parses it
//! (`PageParams`), then `check_client` and `check_request` against a fixed configuration.
//! Never a panic; a redirect URI is only ever a registered one or its loopback port variant.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use signet_core::authorize::{check_client, check_request, Params};
use signet_core::bootstrap;
use signet_core::client::Client;
use signet_core::commands::{decide, Command};
use signet_core::projection::Projection;
use signet_core::redirect_uri::redirect_uri_matches;
use signet_core::scope::{ScopeKind, ScopeResource};
use signet_core::secret::SecretInput;
use signet_core::validation::from_json;
use signet_issuer::http::browser::PageParams;

fn apply(p: &mut Projection, cmd: Command) {
    let d = decide(p, cmd).expect("a valid command");
    let subject = d.event.subject();
    p.apply(p.seq() + 1, &subject, d.event).expect("applies");
}

fn projection() -> &'static Projection {
    static P: OnceLock<Projection> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = Projection::new();
        for s in bootstrap::standard_identity_resources() {
            apply(&mut p, Command::CreateScope(ScopeKind::Identity, s));
        }
        let api: ScopeResource = from_json(br#"{"name": "orders.read"}"#).expect("scope");
        apply(&mut p, Command::CreateScope(ScopeKind::Api, api));
        for c in [
            r#"{"clientId": "web", "allowedGrantTypes": ["authorization_code"],
                "redirectUris": ["https://app.example/cb", "http://127.0.0.1/cb"],
                "requireClientSecret": false, "allowOfflineAccess": true,
                "allowedScopes": ["openid", "profile", "orders.read"]}"#,
            r#"{"clientId": "spa", "allowedGrantTypes": ["implicit"],
                "redirectUris": ["https://spa.example/cb"], "requireClientSecret": false,
                "allowAccessTokensViaBrowser": true, "allowedScopes": ["openid", "email"]}"#,
        ] {
            let c: Client<SecretInput> = from_json(c.as_bytes()).expect("client");
            apply(&mut p, Command::CreateClient(Box::new(c)));
        }
        p
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(params) = PageParams::parse(data) else {
        return;
    };
    let p = projection();
    let Ok((client, uri)) = check_client(p, &params) else {
        return;
    };
    assert!(client.client.redirect_uris.iter().any(|g| *g == uri
        || (params.get("redirect_uri") == Some(uri.as_str()) && redirect_uri_matches(g, &uri))));
    if let Err(e) = check_request(p, client, &uri, &params) {
        assert_eq!(e.redirect_uri, uri);
        assert_eq!(e.state.as_deref(), params.get("state"));
    }
});
