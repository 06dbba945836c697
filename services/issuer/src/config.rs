//! The issuer's typed configuration, validated once at start and passed down.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use signet_core::Algorithm;
use url::Url;

/// A validated issuer URL: `http(s)://host[:port][/path]`, no query, no fragment, no
/// trailing slash (OIDC Discovery section 3: `iss` must equal it exactly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerUrl {
    url: String,
    path: String,
    https: bool,
    /// `scheme://host[:port]`, as browsers send it in `Origin`.
    origin: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid issuer URL {value:?}: {reason}")]
pub struct IssuerUrlError {
    value: String,
    reason: &'static str,
}

impl IssuerUrl {
    pub fn parse(value: &str) -> Result<Self, IssuerUrlError> {
        let err = |reason| IssuerUrlError {
            value: value.to_owned(),
            reason,
        };
        let u = Url::parse(value).map_err(|_| err("not an absolute URL"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(err("the scheme must be http or https"));
        }
        if u.host().is_none() {
            return Err(err("a host is required"));
        }
        if u.query().is_some() || u.fragment().is_some() {
            return Err(err("no query or fragment is allowed"));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(err("no user information is allowed"));
        }
        let trimmed = value.trim_end_matches('/');
        let path = u.path().trim_end_matches('/').to_owned();
        Ok(IssuerUrl {
            url: trimmed.to_owned(),
            path,
            https: u.scheme() == "https",
            origin: u.origin().ascii_serialization(),
        })
    }

    /// The exact `iss` value.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The web origin of the issuer (`scheme://host[:port]`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The path prefix every public route lives under (`""` or e.g. `/auth`).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn is_https(&self) -> bool {
        self.https
    }

    /// `http://<addr>` for a listen address; an unspecified address (`0.0.0.0`, `[::]`)
    /// becomes the loopback address of its family, which reaches it from this machine.
    pub fn from_listen(addr: SocketAddr) -> Self {
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let url = format!("http://{}", SocketAddr::new(ip, addr.port()));
        IssuerUrl {
            origin: url.clone(),
            url,
            path: String::new(),
            https: false,
        }
    }

    /// The port the issuer URL names (its scheme's default when it names none).
    pub fn port(&self) -> Option<u16> {
        Url::parse(&self.url).ok()?.port_or_known_default()
    }

    /// Whether the issuer's host is a loopback name or address.
    pub fn is_loopback(&self) -> bool {
        match Url::parse(&self.url).ok().as_ref().and_then(Url::host) {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
    }

    /// An absolute endpoint URL under the issuer, e.g. `endpoint("/oauth2/token")`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }
}

/// Where a node keeps configuration and gets its keys.
#[derive(Debug, Clone)]
pub enum Backend {
    /// `signet serve`: event log, key manager and sealed keys in one data directory.
    Embedded {
        data_dir: PathBuf,
        /// The KEK file; `None`: `<data_dir>/kek` (created when absent).
        kek_file: Option<PathBuf>,
    },
    /// `signet issuer`: the JetStream event log; keys leased from key managers.
    Cluster(ClusterSettings),
}

/// How a stateless issuer reaches the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// NATS URL(s), comma-separated.
    pub nats_url: String,
    /// The JetStream stream of configuration events (`SIGNET_EVENTS`).
    pub stream: String,
    /// Replicas of the stream when this node creates it.
    pub replicas: usize,
    /// The cluster secret (base64, 32+ bytes) that authenticates key-lease requests.
    pub cluster_secret_file: PathBuf,
    /// This issuer's name in lease requests and logs.
    pub issuer_id: String,
    /// Where short-lived shared state lives: `redis://`, `rediss://`, `redis+sentinel://`
    /// or `redis+cluster://` (see `signet_store::redis`).
    pub redis_url: String,
}

/// Everything a node needs to run, already validated.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub issuer: IssuerUrl,
    /// No issuer was configured: once the public listener is bound, `issuer` becomes
    /// `http://<its address>` (an unspecified address such as 0.0.0.0 names loopback).
    pub issuer_from_listen: bool,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub backend: Backend,
    /// Signs access tokens when an API resource does not restrict the algorithm.
    pub default_algorithm: Algorithm,
    /// `SIGNET_ADMIN_CLIENT_SECRET`: the bootstrap admin client's secret.
    pub admin_client_secret: Option<String>,
    /// `Cache-Control: max-age` of the JWKS. Kept below the key pre-publication window.
    pub jwks_max_age: Duration,
    /// Deadline for in-flight requests after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Serve `/metrics` on the public listener too (it is always on the admin listener).
    pub public_metrics: bool,
    /// Key rotation schedule of the in-process key manager (`serve`).
    pub key_policy: signet_keymanager::KeyPolicy,
    /// What the server adds to the client rules: lifetime bounds (`--lifetime-limits`) and
    /// which redirect URIs clients may register (`--insecure-allow-any-redirect-uri`).
    pub client_policy: signet_core::client::ClientPolicy,
    /// The load balancers whose `X-Forwarded-For` names the client (`--trusted-proxies`);
    /// empty: the client is the peer.
    pub trusted_proxies: crate::http::client_addr::TrustedProxies,
    /// How long an SSO session lasts from sign-in (`--session-lifetime`).
    pub session_lifetime: Duration,
    /// Rules for new passwords (`--password-min-length`, `--allow-common-passwords`).
    pub password_policy: signet_core::user::PasswordPolicy,
    /// Outbound HTTP: timeouts, body bound, and whether loopback and private addresses may
    /// be contacted (`--allow-private-outbound`).
    pub outbound: signet_outbound::OutboundConfig,
    /// Back-channel logout delivery: retries and their backoff.
    pub backchannel: BackchannelConfig,
    /// Every authorization request must be pushed first (RFC 9126 section 5,
    /// `--require-pushed-authorization-requests`).
    pub require_pushed_authorization_requests: bool,
    /// The polling interval devices are told (RFC 8628 `interval`,
    /// `--device-poll-interval`).
    pub device_poll_interval: Duration,
    /// DPoP proofs at the token endpoint must carry a server nonce (RFC 9449 section 8,
    /// `--dpop-nonce`).
    pub dpop_nonce: bool,
    /// Serve `/oauth2/register` (RFC 7591/7592) for holders of an initial access token
    /// (`--dynamic-client-registration`); off: 404 there, and discovery does not name it.
    pub dynamic_client_registration: bool,
    /// The public keys whose software statements registration accepts (RFC 7591 section
    /// 2.3, `--registration-software-statement-jwks`); `None`: a software statement is
    /// refused with `unapproved_software_statement`.
    pub software_statement_keys: Option<Vec<signet_jose::ClientKey>>,
    /// TLS on the public listener (`--tls-cert`, `--tls-key`): rustls, client certificates
    /// requested but optional (mutual TLS, RFC 8705). `None`: plain HTTP.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// How client certificates are read: the header a trusted proxy sets
    /// (`--tls-client-cert-header`) and the roots of `tls_client_auth` (`--tls-client-ca`).
    pub cert_policy: crate::http::client_cert::CertPolicy,
    /// Where a load balancer serves the endpoints with client certificates requested
    /// (`--mtls-base-url`): discovery's `mtls_endpoint_aliases` point there.
    pub mtls_base_url: Option<IssuerUrl>,
    /// `--mtls-listen`: a second TLS listener for the public endpoints that asks for client
    /// certificates (the main one then does not), with its TLS configuration.
    pub mtls_listen: Option<SocketAddr>,
    pub mtls_tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// `--smtp-url` and `--smtp-from`: e-mail (password reset, address verification);
    /// `None`: those features are off.
    pub mailer: Option<crate::mail::Mailer>,
    /// How long an e-mailed link (reset, verification) stays valid (`--email-link-ttl`).
    pub email_link_ttl: Duration,
}

impl NodeConfig {
    /// Whether client certificates can reach this node: it terminates TLS itself, or a
    /// load balancer forwards them (`--mtls-base-url`). Discovery offers mutual TLS only
    /// then.
    pub fn mtls(&self) -> bool {
        (self.tls.is_some() && self.mtls_listen.is_none()) || self.mtls_base_url.is_some()
    }
}

/// The trusted keys of `--registration-software-statement-jwks`: every key of the JWKS
/// file must be a public signing key this server can verify with (a bad file stops the
/// start, with the reason).
pub fn software_statement_keys(
    path: &std::path::Path,
) -> Result<Vec<signet_jose::ClientKey>, String> {
    let what = format!("registration_software_statement_jwks {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| format!("{what}: {e}"))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{what}: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| format!("{what}: a JWKS needs a non-empty \"keys\" array"))?;
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            signet_jose::ClientKey::parse(&k.to_string())
                .map_err(|e| format!("{what}: keys[{i}]: {e}"))
        })
        .collect()
}

/// How back-channel logout deliveries are retried.
#[derive(Debug, Clone)]
pub struct BackchannelConfig {
    /// The delay before the second attempt; it doubles with each attempt after
    /// (`--backchannel-retry-base`).
    pub retry_base: Duration,
    /// The longest delay between two attempts.
    pub retry_max: Duration,
    /// Attempts before a delivery is given up (`--backchannel-max-attempts`).
    pub max_attempts: u32,
    /// Deliveries in flight at once on this node.
    pub concurrency: usize,
}

impl Default for BackchannelConfig {
    fn default() -> Self {
        BackchannelConfig {
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
            max_attempts: 8,
            concurrency: 16,
        }
    }
}

impl BackchannelConfig {
    /// The delay after failed attempt `attempt` (1-based): `retry_base * 2^(attempt-1)`,
    /// at most `retry_max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.retry_base
            .checked_mul(factor)
            .unwrap_or(self.retry_max)
            .min(self.retry_max)
    }
}

impl NodeConfig {
    /// The defaults of DESIGN.md for a cluster issuer.
    pub fn cluster(settings: ClusterSettings) -> Self {
        NodeConfig {
            backend: Backend::Cluster(settings),
            ..NodeConfig::new(PathBuf::new())
        }
    }

    /// The defaults of DESIGN.md, with the data under `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        NodeConfig {
            issuer: IssuerUrl {
                url: "http://127.0.0.1:8080".to_owned(),
                path: String::new(),
                https: false,
                origin: "http://127.0.0.1:8080".to_owned(),
            },
            issuer_from_listen: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            backend: Backend::Embedded {
                data_dir,
                kek_file: None,
            },
            default_algorithm: Algorithm::RS256,
            admin_client_secret: None,
            jwks_max_age: Duration::from_secs(900),
            shutdown_grace: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            public_metrics: true,
            key_policy: signet_keymanager::KeyPolicy::default(),
            client_policy: signet_core::client::ClientPolicy::default(),
            trusted_proxies: crate::http::client_addr::TrustedProxies::default(),
            session_lifetime: Duration::from_secs(10 * 60 * 60),
            password_policy: signet_core::user::PasswordPolicy::default(),
            outbound: signet_outbound::OutboundConfig::default(),
            backchannel: BackchannelConfig::default(),
            require_pushed_authorization_requests: false,
            device_poll_interval: Duration::from_secs(5),
            dpop_nonce: false,
            dynamic_client_registration: false,
            software_statement_keys: None,
            tls: None,
            cert_policy: crate::http::client_cert::CertPolicy::default(),
            mtls_base_url: None,
            mtls_listen: None,
            mtls_tls: None,
            mailer: None,
            email_link_ttl: Duration::from_secs(30 * 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_urls() {
        let i = IssuerUrl::parse("https://id.example.com/auth/").unwrap();
        assert_eq!(i.as_str(), "https://id.example.com/auth");
        assert_eq!(i.path(), "/auth");
        assert!(i.is_https());
        assert_eq!(
            i.endpoint("/oauth2/token"),
            "https://id.example.com/auth/oauth2/token"
        );
        let i = IssuerUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(i.path(), "");
        for bad in [
            "ftp://x",
            "/relative",
            "https://x/?q=1",
            "https://x/#f",
            "https://u:p@x",
        ] {
            assert!(IssuerUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            NodeConfig::new("d".into()).issuer.as_str(),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn backchannel_backoff_doubles_up_to_its_bound() {
        let c = BackchannelConfig {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            ..BackchannelConfig::default()
        };
        let delays: Vec<u128> = (1..=6).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(c.backoff(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn issuer_from_the_listen_address() {
        let i = IssuerUrl::from_listen("127.0.0.1:18080".parse().unwrap());
        assert_eq!(i.as_str(), "http://127.0.0.1:18080");
        assert_eq!(i.port(), Some(18080));
        assert!(i.is_loopback());
        let i = IssuerUrl::from_listen("0.0.0.0:9000".parse().unwrap());
        assert_eq!(i.as_str(), "http://127.0.0.1:9000");
        let i = IssuerUrl::from_listen("[::]:9000".parse().unwrap());
        assert_eq!(i.as_str(), "http://[::1]:9000");
        let i = IssuerUrl::parse("https://id.example.com/auth").unwrap();
        assert_eq!(i.port(), Some(443));
        assert!(!i.is_loopback());
        assert!(IssuerUrl::parse("http://localhost").unwrap().is_loopback());
    }
}
