//! The scenarios: what one request of each looks like, and what it needs registered first.
//!
//! A scenario is a list of prepared requests that wrk sends round-robin (see
//! `lua/signet.lua`). Scenarios for endpoints that do not exist yet (`refresh_token`, the
//! authorization-code flow, introspection) join this list when their endpoints do: a
//! scenario whose requests are single-use (a rotating refresh token) prepares one request
//! per use in [`Scenario::requests`], and a multi-step flow (login, code, token) becomes one
//! scenario per step with its inputs prepared the same way.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use signet_jose::Algorithm;

/// One prepared HTTP/1.1 request: the request line and headers (without the blank line that
/// ends them; wrk's script adds `X-Request-Id` there) and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRequest {
    pub head: String,
    pub body: String,
}

/// A load-test scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// `POST /oauth2/token` with `grant_type=client_credentials` and HTTP Basic client
    /// authentication, for a client whose only API resource allows only this algorithm.
    ClientCredentials(Algorithm),
    /// `GET /oauth2/jwks`.
    Jwks,
    /// `GET /healthz`: not in the standard suite; the floor of any request on the node (the
    /// HTTP stack, routing and middleware with nothing behind them).
    Healthz,
}

impl Scenario {
    /// The standard suite, in the order it runs.
    pub const STANDARD: [Scenario; 5] = [
        Scenario::ClientCredentials(Algorithm::RS256),
        Scenario::ClientCredentials(Algorithm::PS256),
        Scenario::ClientCredentials(Algorithm::ES256),
        Scenario::ClientCredentials(Algorithm::EdDSA),
        Scenario::Jwks,
    ];

    pub fn name(&self) -> String {
        match self {
            Scenario::ClientCredentials(alg) => {
                format!("client_credentials_{}", alg.as_str().to_lowercase())
            }
            Scenario::Jwks => "jwks".to_owned(),
            Scenario::Healthz => "healthz".to_owned(),
        }
    }

    pub fn algorithm(&self) -> Option<Algorithm> {
        match self {
            Scenario::ClientCredentials(alg) => Some(*alg),
            Scenario::Jwks | Scenario::Healthz => None,
        }
    }

    /// The path under the issuer URL.
    pub fn path(&self) -> &'static str {
        match self {
            Scenario::ClientCredentials(_) => "/oauth2/token",
            Scenario::Jwks => "/oauth2/jwks",
            Scenario::Healthz => "/healthz",
        }
    }

    /// The requests wrk sends for this scenario against `issuer` (the issuer URL, which may
    /// carry a path), with the fixtures `setup` registered.
    pub fn requests(&self, issuer: &url_parts::Issuer, fx: &Fixtures) -> Vec<PreparedRequest> {
        let path = format!("{}{}", issuer.path, self.path());
        match self {
            Scenario::ClientCredentials(alg) => {
                let body = "grant_type=client_credentials".to_owned();
                let basic = STANDARD.encode(format!("{}:{}", fx.client_id(*alg), fx.secret));
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: {host}\r\n\
                     Content-Type: application/x-www-form-urlencoded\r\n\
                     Authorization: Basic {basic}\r\nContent-Length: {len}\r\n",
                    host = issuer.host_port,
                    len = body.len(),
                );
                vec![PreparedRequest { head, body }]
            }
            Scenario::Jwks | Scenario::Healthz => vec![PreparedRequest {
                head: format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", issuer.host_port),
                body: String::new(),
            }],
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
        Scenario::STANDARD
            .into_iter()
            .chain([Scenario::Healthz])
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let names: Vec<String> = Scenario::STANDARD
                    .iter()
                    .chain(&[Scenario::Healthz])
                    .map(|s| s.name())
                    .collect();
                format!("unknown scenario {s:?} (known: {})", names.join(", "))
            })
    }
}

/// What the setup registered through the admin API: one client per algorithm, all with the
/// same secret (`<prefix>-<alg>`, e.g. `signet-lt-es256`).
#[derive(Debug, Clone)]
pub struct Fixtures {
    pub prefix: String,
    pub secret: String,
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

    #[test]
    fn names_round_trip_and_requests_are_well_formed() {
        for sc in Scenario::STANDARD.into_iter().chain([Scenario::Healthz]) {
            assert_eq!(sc.name().parse::<Scenario>().unwrap(), sc);
        }
        assert!("refresh_token".parse::<Scenario>().is_err());
        let issuer = url_parts::Issuer::parse("http://127.0.0.1:8080/auth").unwrap();
        let fx = Fixtures {
            prefix: "signet-lt".into(),
            secret: "s3cret".into(),
        };
        let r = &Scenario::ClientCredentials(Algorithm::ES256).requests(&issuer, &fx)[0];
        assert!(r.head.starts_with("POST /auth/oauth2/token HTTP/1.1\r\n"));
        assert!(r.head.ends_with("Content-Length: 29\r\n"));
        let basic = STANDARD.encode("signet-lt-es256:s3cret");
        assert!(r
            .head
            .contains(&format!("Authorization: Basic {basic}\r\n")));
        assert_eq!(r.body, "grant_type=client_credentials");
        let r = &Scenario::Jwks.requests(&issuer, &fx)[0];
        assert_eq!(
            r.head,
            "GET /auth/oauth2/jwks HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
        );
    }
}
