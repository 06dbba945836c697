//! The scenarios: what the requests of each look like, and what they need registered (and,
//! for one-time inputs, minted) first.
//!
//! A scenario is a [`Workload`] that wrk's script (`lua/signet.lua`) runs:
//! - [`Workload::Fixed`]: prepared requests sent round-robin (`client_credentials_*`,
//!   `jwks`, `introspection*`, `healthz`);
//! - [`Workload::Steps`]: request templates (`{name}` marks a value) chained by what the
//!   answers carry. The script keeps a queue per wrk thread of the next steps to send:
//!   `refresh_token` starts from a pool of minted refresh tokens and puts back the rotated
//!   token of every answer (each token is used once); `authorization_code` alternates an
//!   authorize request (302 with a code) and the code's redemption; `login` goes through the
//!   authorize redirect, the login page and the login form. An answer is a success only
//!   with the step's status and every value it must carry; then the next step is queued.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use signet_jose::Algorithm;

/// One prepared HTTP/1.1 request: the request line and headers (without the blank line that
/// ends them; wrk's script adds `X-Request-Id` there) and the body. In a [`Step`] both are
/// templates, and the head has no `Content-Length` (the script adds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRequest {
    pub head: String,
    pub body: String,
}

/// Where a step finds a value in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Body,
    /// A response header, by its lower-case name.
    Header(String),
}

/// A value an answer must carry: the first capture of a Lua pattern, kept as `var` for
/// the next steps (or only checked, without a name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub var: Option<String>,
    pub from: Source,
    pub pattern: String,
}

/// One step of a multi-step workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub request: PreparedRequest,
    /// The expected status; any other answer is an error.
    pub status: u16,
    pub captures: Vec<Capture>,
    /// The step queued after a success, with the values known so far.
    pub next: Option<String>,
    /// A success of this step completes a flow (`flows` in the result).
    pub completes_flow: bool,
}

/// A queued step with its values, before the run (one per minted refresh token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub step: String,
    pub vars: Vec<(String, String)>,
}

/// What wrk runs for one scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// Sent round-robin; a 2xx answer (holding `body_must`, a Lua pattern, if given) is a
    /// success.
    Fixed {
        requests: Vec<PreparedRequest>,
        body_must: Option<String>,
    },
    /// Steps chained through their answers. With an empty queue the script sends `start`
    /// (without values), or the first step when there is none (which then fails: a pool
    /// ran dry because answers were lost).
    Steps {
        steps: Vec<Step>,
        start: Option<String>,
        seeds: Vec<Seed>,
    },
}

impl Workload {
    pub fn is_empty(&self) -> bool {
        match self {
            Workload::Fixed { requests, .. } => requests.is_empty(),
            Workload::Steps { steps, .. } => steps.is_empty(),
        }
    }
}

/// One-time inputs minted right before a run (a run uses them up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Minted {
    /// `refresh_token`: one per family, each never used.
    pub refresh_tokens: Vec<String>,
    /// `introspection*`: the access token to introspect.
    pub access_token: Option<String>,
}

/// What a scenario needs minted before each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Nothing,
    /// Refresh tokens from this many code flows.
    RefreshTokens(usize),
    /// An access token of the `client_credentials` client for ES256 (JWT), or of the
    /// reference-token client.
    AccessToken {
        reference: bool,
    },
}

/// A load-test scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// `POST /oauth2/token` with `grant_type=client_credentials` and HTTP Basic client
    /// authentication, for a client whose only API resource allows only this algorithm.
    ClientCredentials(Algorithm),
    /// `GET /oauth2/jwks`.
    Jwks,
    /// `POST /oauth2/token` with `grant_type=refresh_token`: each request presents a refresh
    /// token never used before (one-time tokens rotate; the answer's new token goes back
    /// into the script's queue). One rotation, an access token and an ID token (ES256).
    RefreshToken,
    /// The authorization-code flow of a signed-in user who consented earlier, two requests a
    /// flow: `GET /oauth2/authorize` with the SSO session cookie (302 with a code), then
    /// `POST /oauth2/token` with `grant_type=authorization_code`, the code and the PKCE
    /// verifier. A request is one of the two steps; `flows` counts redeemed codes.
    AuthorizationCode,
    /// `POST /oauth2/introspect` by an API resource (its name and API secret, HTTP Basic) of
    /// an access token meant for it: a JWT (ES256), or (`reference`) a reference token, which
    /// costs a store read instead of a signature check. A success is `"active": true`.
    Introspection { reference: bool },
    /// A sign-in through the login page, three requests a flow: `GET /oauth2/authorize`
    /// without a session (302 to the login page), `GET /login` (the form), `POST /login`
    /// with the password (argon2id, deliberately slow; 302 back to the client with a code).
    Login,
    /// `GET /healthz`: not in the standard suite; the floor of any request on the node (the
    /// HTTP stack, routing and middleware with nothing behind them).
    Healthz,
}

/// RFC 7636 appendix B's verifier and its S256 challenge: one fixed pair for every flow.
pub const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mJ0LbmCqxJW9X8Nqn_H96LJPLkgK0Y";
pub const PKCE_CHALLENGE: &str = "mUC84QHW1XnmFGk31dqlZ81-q8-qS-OxrweG_XEDeIU";

/// The SSO session cookie and the interaction binding cookie of the issuer's pages.
pub const SESSION_COOKIE: &str = "signet_session";
pub const INTERACTION_COOKIE: &str = "signet_interaction";

/// Percent-encodes everything but RFC 3986's unreserved characters (for queries and form
/// bodies alike).
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Checks that an answer's `Location` holds a code (an authorization response, not an
/// error sent back to the client).
impl Step {
    /// A `GET` step (no body) that leads to `next` and does not complete a flow.
    fn get(name: &str, head: String, status: u16, captures: Vec<Capture>, next: &str) -> Step {
        Step {
            name: name.into(),
            request: PreparedRequest {
                head,
                body: String::new(),
            },
            status,
            captures,
            next: Some(next.into()),
            completes_flow: false,
        }
    }
}

fn code_in_location(var: Option<&str>) -> Capture {
    Capture {
        var: var.map(str::to_owned),
        from: Source::Header("location".into()),
        pattern: "[?&]code=([^&#]+)".into(),
    }
}

impl Scenario {
    /// The standard suite, in the order it runs.
    pub const STANDARD: [Scenario; 8] = [
        Scenario::ClientCredentials(Algorithm::RS256),
        Scenario::ClientCredentials(Algorithm::PS256),
        Scenario::ClientCredentials(Algorithm::ES256),
        Scenario::ClientCredentials(Algorithm::EdDSA),
        Scenario::Jwks,
        Scenario::RefreshToken,
        Scenario::AuthorizationCode,
        Scenario::Introspection { reference: false },
    ];

    /// Scenarios outside the standard suite (`--scenarios` names them).
    pub const EXTRA: [Scenario; 3] = [
        Scenario::Introspection { reference: true },
        Scenario::Login,
        Scenario::Healthz,
    ];

    /// Every scenario: the standard suite, then the extras.
    pub fn all() -> Vec<Scenario> {
        Scenario::STANDARD
            .into_iter()
            .chain(Scenario::EXTRA)
            .collect()
    }

    pub fn name(&self) -> String {
        match self {
            Scenario::ClientCredentials(alg) => {
                format!("client_credentials_{}", alg.as_str().to_lowercase())
            }
            Scenario::Jwks => "jwks".to_owned(),
            Scenario::RefreshToken => "refresh_token".to_owned(),
            Scenario::AuthorizationCode => "authorization_code".to_owned(),
            Scenario::Introspection { reference: false } => "introspection".to_owned(),
            Scenario::Introspection { reference: true } => "introspection_reference".to_owned(),
            Scenario::Login => "login".to_owned(),
            Scenario::Healthz => "healthz".to_owned(),
        }
    }

    pub fn algorithm(&self) -> Option<Algorithm> {
        match self {
            Scenario::ClientCredentials(alg) => Some(*alg),
            _ => None,
        }
    }

    /// The path under the issuer URL (of the first step).
    pub fn path(&self) -> &'static str {
        match self {
            Scenario::ClientCredentials(_) | Scenario::RefreshToken => "/oauth2/token",
            Scenario::Jwks => "/oauth2/jwks",
            Scenario::AuthorizationCode | Scenario::Login => "/oauth2/authorize",
            Scenario::Introspection { .. } => "/oauth2/introspect",
            Scenario::Healthz => "/healthz",
        }
    }

    /// How many requests make one flow (1: every request stands alone).
    pub fn steps_per_flow(&self) -> u32 {
        match self {
            Scenario::AuthorizationCode => 2,
            Scenario::Login => 3,
            _ => 1,
        }
    }

    /// Whether each request is built from the previous answer (a [`Workload::Steps`]), so
    /// that a connection cannot pipeline.
    pub fn chained(&self) -> bool {
        matches!(
            self,
            Scenario::RefreshToken | Scenario::AuthorizationCode | Scenario::Login
        )
    }

    /// What must be minted before a run with `connections` connections.
    pub fn needs(&self, connections: u32) -> Need {
        match self {
            // Each connection holds at most one token in flight; twice as many leaves room
            // for an uneven split over wrk's threads.
            Scenario::RefreshToken => Need::RefreshTokens((connections.max(1) as usize) * 2),
            Scenario::Introspection { reference } => Need::AccessToken {
                reference: *reference,
            },
            _ => Need::Nothing,
        }
    }

    /// The workload wrk runs for this scenario against `issuer` (the issuer URL, which may
    /// carry a path), with the fixtures `setup` registered and what was minted for the run.
    pub fn requests(&self, issuer: &url_parts::Issuer, fx: &Fixtures, minted: &Minted) -> Workload {
        let path = format!("{}{}", issuer.path, self.path());
        let host = &issuer.host_port;
        let form_post = |path: &str, basic: &str| {
            format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\n\
                 Authorization: Basic {basic}\r\n"
            )
        };
        let fixed = |head: String, body: String, body_must: Option<&str>| Workload::Fixed {
            requests: vec![PreparedRequest { head, body }],
            body_must: body_must.map(str::to_owned),
        };
        let web_basic = STANDARD.encode(format!("{}:{}", fx.web_client_id(), fx.secret));
        match self {
            Scenario::ClientCredentials(alg) => {
                let body = "grant_type=client_credentials".to_owned();
                let basic = STANDARD.encode(format!("{}:{}", fx.client_id(*alg), fx.secret));
                let head = format!(
                    "{}Content-Length: {}\r\n",
                    form_post(&path, &basic),
                    body.len()
                );
                fixed(head, body, None)
            }
            Scenario::Jwks | Scenario::Healthz => fixed(
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n"),
                String::new(),
                None,
            ),
            Scenario::Introspection { .. } => {
                let token = minted.access_token.as_deref().unwrap_or_default();
                let body = format!("token={}&token_type_hint=access_token", pct(token));
                let basic =
                    STANDARD.encode(format!("{}:{}", fx.resource(Algorithm::ES256), fx.secret));
                let head = format!(
                    "{}Content-Length: {}\r\n",
                    form_post(&path, &basic),
                    body.len()
                );
                fixed(head, body, Some(r#""active":%s*true"#))
            }
            Scenario::RefreshToken => Workload::Steps {
                steps: vec![Step {
                    name: "refresh".into(),
                    request: PreparedRequest {
                        head: form_post(&path, &web_basic),
                        body: "grant_type=refresh_token&refresh_token={token}".into(),
                    },
                    status: 200,
                    captures: vec![Capture {
                        var: Some("token".into()),
                        from: Source::Body,
                        pattern: r#""refresh_token"%s*:%s*"([^"]+)""#.into(),
                    }],
                    next: Some("refresh".into()),
                    completes_flow: true,
                }],
                start: None,
                seeds: minted
                    .refresh_tokens
                    .iter()
                    .map(|t| Seed {
                        step: "refresh".into(),
                        vars: vec![("token".into(), t.clone())],
                    })
                    .collect(),
            },
            Scenario::AuthorizationCode => {
                let authorize = format!(
                    "GET {}?{} HTTP/1.1\r\nHost: {host}\r\nCookie: {SESSION_COOKIE}={}\r\n",
                    path,
                    fx.authorize_query(&fx.code_flow_scope()),
                    fx.session,
                );
                let token_path = format!("{}/oauth2/token", issuer.path);
                Workload::Steps {
                    steps: vec![
                        Step::get(
                            "authorize",
                            authorize,
                            302,
                            vec![code_in_location(Some("code"))],
                            "token",
                        ),
                        Step {
                            name: "token".into(),
                            request: PreparedRequest {
                                head: form_post(&token_path, &web_basic),
                                body: format!(
                                    "grant_type=authorization_code&code={{code}}\
                                     &redirect_uri={}&code_verifier={PKCE_VERIFIER}",
                                    pct(&fx.redirect_uri())
                                ),
                            },
                            status: 200,
                            captures: vec![Capture {
                                var: None,
                                from: Source::Body,
                                pattern: r#""access_token"%s*:%s*"([^"]+)""#.into(),
                            }],
                            next: None,
                            completes_flow: true,
                        },
                    ],
                    start: Some("authorize".into()),
                    seeds: Vec::new(),
                }
            }
            Scenario::Login => {
                let authorize = format!(
                    "GET {}?{} HTTP/1.1\r\nHost: {host}\r\n",
                    path,
                    fx.authorize_query(&fx.code_flow_scope()),
                );
                let login_path = format!("{}/login", issuer.path);
                let cookie = format!("Cookie: {INTERACTION_COOKIE}={{binding}}\r\n");
                Workload::Steps {
                    steps: vec![
                        Step::get(
                            "authorize",
                            authorize,
                            302,
                            vec![
                                Capture {
                                    var: Some("interaction".into()),
                                    from: Source::Header("location".into()),
                                    pattern: "/login%?interaction=([^&#]+)".into(),
                                },
                                Capture {
                                    var: Some("binding".into()),
                                    from: Source::Header("set-cookie".into()),
                                    pattern: format!("{INTERACTION_COOKIE}=([^;]+)"),
                                },
                            ],
                            "login_page",
                        ),
                        Step::get(
                            "login_page",
                            format!(
                                "GET {login_path}?interaction={{interaction}} HTTP/1.1\r\n\
                                 Host: {host}\r\n{cookie}"
                            ),
                            200,
                            vec![Capture {
                                var: Some("csrf".into()),
                                from: Source::Body,
                                pattern: r#"name="csrf" value="([^"]+)""#.into(),
                            }],
                            "login_post",
                        ),
                        Step {
                            name: "login_post".into(),
                            request: PreparedRequest {
                                head: format!(
                                    "POST {login_path} HTTP/1.1\r\nHost: {host}\r\n{cookie}\
                                     Content-Type: application/x-www-form-urlencoded\r\n"
                                ),
                                body: format!(
                                    "interaction={{interaction}}&csrf={{csrf}}\
                                     &username={}&password={}",
                                    pct(&fx.username()),
                                    pct(&fx.password)
                                ),
                            },
                            status: 302,
                            captures: vec![code_in_location(None)],
                            next: None,
                            completes_flow: true,
                        },
                    ],
                    start: Some("authorize".into()),
                    seeds: Vec::new(),
                }
            }
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::all()
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let names: Vec<String> = Scenario::all().iter().map(|s| s.name()).collect();
                format!("unknown scenario {s:?} (known: {})", names.join(", "))
            })
    }
}

/// What the setup registered through the admin API, all with the same secret:
/// - per algorithm an API scope `<prefix>.<alg>`, an API resource `<prefix>-<alg>-api`
///   (allowing only that algorithm; the ES256 one also has the secret as API secret, for
///   introspection) and a `client_credentials` client `<prefix>-<alg>`;
/// - `<prefix>-reference`: a `client_credentials` client with reference access tokens;
/// - `<prefix>-web`: a confidential web app (code + PKCE, `offline_access`, consent
///   required and remembered) and a user `<prefix>-user` who signed in and consented once:
///   `session` is the value of the SSO session cookie.
#[derive(Debug, Clone)]
pub struct Fixtures {
    pub prefix: String,
    pub secret: String,
    pub password: String,
    pub session: String,
}

impl Fixtures {
    pub fn client_id(&self, alg: Algorithm) -> String {
        format!("{}-{}", self.prefix, alg.as_str().to_lowercase())
    }

    pub fn scope(&self, alg: Algorithm) -> String {
        format!("{}.{}", self.prefix, alg.as_str().to_lowercase())
    }

    pub fn resource(&self, alg: Algorithm) -> String {
        format!("{}-{}-api", self.prefix, alg.as_str().to_lowercase())
    }

    pub fn reference_client_id(&self) -> String {
        format!("{}-reference", self.prefix)
    }

    pub fn web_client_id(&self) -> String {
        format!("{}-web", self.prefix)
    }

    pub fn username(&self) -> String {
        format!("{}-user", self.prefix)
    }

    /// Never reached: the flows read the code from the `Location` header.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1/{}/callback", self.prefix)
    }

    /// The scopes of the `authorization_code` and `login` flows: an ID token and an access
    /// token for the ES256 API.
    pub fn code_flow_scope(&self) -> String {
        format!("openid {}", self.scope(Algorithm::ES256))
    }

    /// The scopes of the flows that mint refresh tokens.
    pub fn offline_scope(&self) -> String {
        format!("openid offline_access {}", self.scope(Algorithm::ES256))
    }

    /// The query of an authorization request of the web app for `scope` (code, PKCE S256).
    pub fn authorize_query(&self, scope: &str) -> String {
        format!(
            "response_type=code&client_id={}&redirect_uri={}&scope={}&state=lt&nonce=lt\
             &code_challenge={PKCE_CHALLENGE}&code_challenge_method=S256",
            pct(&self.web_client_id()),
            pct(&self.redirect_uri()),
            pct(scope),
        )
    }
}

/// The issuer URL split the way the requests need it (no `url` crate needed for this).
pub mod url_parts {
    use anyhow::{bail, Result};

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Issuer {
        /// `http://host:port`
        pub origin: String,
        /// `host:port` for the `Host` header.
        pub host_port: String,
        /// The issuer's path without a trailing slash, `""` at the root.
        pub path: String,
    }

    impl Issuer {
        pub fn parse(issuer: &str) -> Result<Issuer> {
            let issuer = issuer.trim_end_matches('/');
            let Some(rest) = issuer.strip_prefix("http://") else {
                bail!("the issuer URL must be http:// (wrk's TLS is not wired here): {issuer}");
            };
            let (host_port, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            if host_port.is_empty() {
                bail!("no host in the issuer URL {issuer}");
            }
            Ok(Issuer {
                origin: format!("http://{host_port}"),
                host_port: host_port.to_owned(),
                path: path.to_owned(),
            })
        }

        /// The full URL of `path` under the issuer.
        pub fn url(&self, path: &str) -> String {
            format!("{}{}{}", self.origin, self.path, path)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn splits_issuer_urls() {
            let i = Issuer::parse("http://127.0.0.1:8080/auth/").unwrap();
            assert_eq!(i.host_port, "127.0.0.1:8080");
            assert_eq!(i.path, "/auth");
            assert_eq!(
                i.url("/oauth2/jwks"),
                "http://127.0.0.1:8080/auth/oauth2/jwks"
            );
            let i = Issuer::parse("http://localhost:9080").unwrap();
            assert_eq!(i.path, "");
            assert!(Issuer::parse("https://id.example.com").is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Fixtures {
        Fixtures {
            prefix: "signet-lt".into(),
            secret: "s3cret".into(),
            password: "pa ss&word".into(),
            session: "sess10n".into(),
        }
    }

    fn issuer() -> url_parts::Issuer {
        url_parts::Issuer::parse("http://127.0.0.1:8080/auth").unwrap()
    }

    fn fixed(w: Workload) -> (Vec<PreparedRequest>, Option<String>) {
        match w {
            Workload::Fixed {
                requests,
                body_must,
            } => (requests, body_must),
            Workload::Steps { .. } => panic!("not a fixed workload"),
        }
    }

    fn steps(w: Workload) -> (Vec<Step>, Option<String>, Vec<Seed>) {
        match w {
            Workload::Steps {
                steps,
                start,
                seeds,
            } => (steps, start, seeds),
            Workload::Fixed { .. } => panic!("not a multi-step workload"),
        }
    }

    fn content_length(head: &str) -> Option<usize> {
        head.lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map(|v| v.trim().parse().unwrap())
    }

    #[test]
    fn names_round_trip() {
        let all = Scenario::all();
        assert_eq!(all.len(), 11);
        for sc in all {
            assert_eq!(sc.name().parse::<Scenario>().unwrap(), sc);
        }
        assert!("refresh".parse::<Scenario>().is_err());
        assert!(!Scenario::STANDARD.contains(&Scenario::Healthz));
        assert!(Scenario::STANDARD.contains(&Scenario::RefreshToken));
    }

    #[test]
    fn exactly_the_chained_scenarios_build_steps() {
        let minted = Minted {
            access_token: Some("eyJ.a.b".into()),
            refresh_tokens: vec!["fam1.a".into()],
        };
        for sc in Scenario::all() {
            let steps = matches!(
                sc.requests(&issuer(), &fixtures(), &minted),
                Workload::Steps { .. }
            );
            assert_eq!(sc.chained(), steps, "{sc}");
        }
    }

    #[test]
    fn fixed_requests_are_well_formed() {
        let (issuer, fx) = (issuer(), fixtures());
        let none = Minted::default();
        let (r, must) =
            fixed(Scenario::ClientCredentials(Algorithm::ES256).requests(&issuer, &fx, &none));
        let r = &r[0];
        assert!(must.is_none());
        assert!(r.head.starts_with("POST /auth/oauth2/token HTTP/1.1\r\n"));
        assert!(r.head.ends_with("Content-Length: 29\r\n"));
        let basic = STANDARD.encode("signet-lt-es256:s3cret");
        assert!(r
            .head
            .contains(&format!("Authorization: Basic {basic}\r\n")));
        assert_eq!(r.body, "grant_type=client_credentials");
        let (r, _) = fixed(Scenario::Jwks.requests(&issuer, &fx, &none));
        assert_eq!(
            r[0].head,
            "GET /auth/oauth2/jwks HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
        );
    }

    #[test]
    fn introspection_authenticates_as_the_resource_and_wants_an_active_token() {
        let minted = Minted {
            access_token: Some("eyJ.a+b/c=.sig".into()),
            ..Minted::default()
        };
        for reference in [false, true] {
            let sc = Scenario::Introspection { reference };
            assert_eq!(sc.needs(8), Need::AccessToken { reference });
            let (r, must) = fixed(sc.requests(&issuer(), &fixtures(), &minted));
            let r = &r[0];
            assert!(r
                .head
                .starts_with("POST /auth/oauth2/introspect HTTP/1.1\r\n"));
            let basic = STANDARD.encode("signet-lt-es256-api:s3cret");
            assert!(r
                .head
                .contains(&format!("Authorization: Basic {basic}\r\n")));
            assert_eq!(
                r.body,
                "token=eyJ.a%2Bb%2Fc%3D.sig&token_type_hint=access_token"
            );
            assert_eq!(content_length(&r.head), Some(r.body.len()));
            assert_eq!(must.as_deref(), Some(r#""active":%s*true"#));
        }
    }

    #[test]
    fn refresh_token_seeds_every_minted_token_once_and_rotates() {
        let sc = Scenario::RefreshToken;
        assert_eq!(sc.needs(32), Need::RefreshTokens(64));
        let minted = Minted {
            refresh_tokens: vec!["fam1.a".into(), "fam2.b".into()],
            ..Minted::default()
        };
        let (steps, start, seeds) = steps(sc.requests(&issuer(), &fixtures(), &minted));
        assert_eq!(start, None);
        assert_eq!(steps.len(), 1);
        let s = &steps[0];
        assert_eq!(s.name, "refresh");
        assert_eq!(s.next.as_deref(), Some("refresh"));
        assert!(s.completes_flow);
        assert_eq!(s.status, 200);
        assert!(s
            .request
            .head
            .starts_with("POST /auth/oauth2/token HTTP/1.1\r\n"));
        assert!(!s.request.head.contains("Content-Length"));
        let basic = STANDARD.encode("signet-lt-web:s3cret");
        assert!(s
            .request
            .head
            .contains(&format!("Authorization: Basic {basic}\r\n")));
        assert_eq!(
            s.request.body,
            "grant_type=refresh_token&refresh_token={token}"
        );
        assert_eq!(s.captures[0].var.as_deref(), Some("token"));
        assert_eq!(s.captures[0].from, Source::Body);
        assert_eq!(
            seeds,
            vec![
                Seed {
                    step: "refresh".into(),
                    vars: vec![("token".into(), "fam1.a".into())]
                },
                Seed {
                    step: "refresh".into(),
                    vars: vec![("token".into(), "fam2.b".into())]
                },
            ]
        );
    }

    #[test]
    fn authorization_code_alternates_authorize_and_redemption() {
        let sc = Scenario::AuthorizationCode;
        assert_eq!(sc.steps_per_flow(), 2);
        let (steps, start, seeds) = steps(sc.requests(&issuer(), &fixtures(), &Minted::default()));
        assert_eq!(start.as_deref(), Some("authorize"));
        assert!(seeds.is_empty());
        let (a, t) = (&steps[0], &steps[1]);
        assert_eq!((a.status, a.next.as_deref()), (302, Some("token")));
        assert!(!a.completes_flow && t.completes_flow && t.next.is_none());
        assert_eq!(
            a.request.head,
            "GET /auth/oauth2/authorize?response_type=code&client_id=signet-lt-web\
             &redirect_uri=http%3A%2F%2F127.0.0.1%2Fsignet-lt%2Fcallback\
             &scope=openid%20signet-lt.es256&state=lt&nonce=lt\
             &code_challenge=mUC84QHW1XnmFGk31dqlZ81-q8-qS-OxrweG_XEDeIU\
             &code_challenge_method=S256 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
             Cookie: signet_session=sess10n\r\n"
        );
        assert_eq!(
            a.captures,
            vec![Capture {
                var: Some("code".into()),
                from: Source::Header("location".into()),
                pattern: "[?&]code=([^&#]+)".into(),
            }]
        );
        assert!(t
            .request
            .head
            .starts_with("POST /auth/oauth2/token HTTP/1.1\r\n"));
        assert_eq!(
            t.request.body,
            "grant_type=authorization_code&code={code}\
             &redirect_uri=http%3A%2F%2F127.0.0.1%2Fsignet-lt%2Fcallback\
             &code_verifier=dBjftJeZ4CVP-mJ0LbmCqxJW9X8Nqn_H96LJPLkgK0Y"
        );
        assert_eq!(t.status, 200);
    }

    #[test]
    fn login_goes_through_the_login_page() {
        let (steps, start, _) =
            steps(Scenario::Login.requests(&issuer(), &fixtures(), &Minted::default()));
        assert_eq!(start.as_deref(), Some("authorize"));
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["authorize", "login_page", "login_post"]);
        assert!(!steps[0].request.head.contains("Cookie"));
        let vars: Vec<&str> = steps[0]
            .captures
            .iter()
            .filter_map(|c| c.var.as_deref())
            .collect();
        assert_eq!(vars, ["interaction", "binding"]);
        assert!(steps[1]
            .request
            .head
            .starts_with("GET /auth/login?interaction={interaction} HTTP/1.1\r\n"));
        assert!(steps[1]
            .request
            .head
            .contains("Cookie: signet_interaction={binding}\r\n"));
        let post = &steps[2];
        assert!(post
            .request
            .head
            .starts_with("POST /auth/login HTTP/1.1\r\n"));
        assert_eq!(
            post.request.body,
            "interaction={interaction}&csrf={csrf}&username=signet-lt-user\
             &password=pa%20ss%26word"
        );
        assert_eq!((post.status, post.completes_flow), (302, true));
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(pct("aZ0-._~"), "aZ0-._~");
        assert_eq!(pct("a b/c?d=e&f"), "a%20b%2Fc%3Fd%3De%26f");
        assert_eq!(pct("é"), "%C3%A9");
    }
}
