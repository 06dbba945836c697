//! Command-line flags, `SIGNET_*` environment variables and the TOML file, merged in that
//! order of precedence (flag, then environment, then file, then the default) into the
//! libraries' validated configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use signet_core::redirect_uri::RedirectUriPolicy;
use signet_core::Algorithm;
use signet_issuer::config::IssuerUrl;
use signet_issuer::config::{Backend, ClusterSettings};
use signet_issuer::http::client_addr::TrustedProxies;
use signet_issuer::NodeConfig;
use signet_keymanager::cluster::KeyManagerConfig;
use signet_keymanager::KeyPolicy;

#[derive(Debug, Parser)]
#[command(
    name = "signet",
    version,
    about = "Signet: an OAuth 2.0 / OpenID Connect authorization server"
)]
pub struct Cli {
    /// TOML configuration file (keys as the long flags, with underscores).
    #[arg(long, env = "SIGNET_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(
        long,
        env = "SIGNET_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Export traces over OTLP/HTTP to this collector URL (e.g. http://127.0.0.1:4318);
    /// needs a build with `--features otlp`.
    #[arg(long, env = "SIGNET_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the all-in-one node on embedded storage (event log, key manager and issuer in
    /// one process).
    Serve(ServeArgs),
    /// Run one stateless issuer node of a cluster: configuration from NATS JetStream,
    /// signing keys leased from the key managers.
    Issuer(IssuerArgs),
    /// Run a key manager of a cluster: owns the signing keys (sealed under the KEK in
    /// JetStream KV) and leases them to issuers.
    Keymanager(KeyManagerArgs),
    /// Manage clients, API resources and scopes through the admin API (like kubectl/kcadm).
    Admin(crate::admin::AdminArgs),
}

/// Flags every node that serves HTTP has (`serve`, `issuer`).
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The issuer URL: `iss` of every token; may carry a path such as /auth
    /// [default: http://<listen address>, e.g. http://127.0.0.1:8080]
    #[arg(long, env = "SIGNET_ISSUER")]
    pub issuer: Option<String>,
    /// Address of the public endpoints [default: 127.0.0.1:8080]
    #[arg(long, env = "SIGNET_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address of the admin API [default: 127.0.0.1:8081]
    #[arg(long, env = "SIGNET_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Access-token signing algorithm when an API resource does not restrict it
    /// (RS256, PS256, ES256, EdDSA) [default: RS256]
    #[arg(long, env = "SIGNET_DEFAULT_ALGORITHM")]
    pub default_algorithm: Option<String>,
    /// JWKS Cache-Control max-age in seconds [default: 900]
    #[arg(long, env = "SIGNET_JWKS_MAX_AGE")]
    pub jwks_max_age: Option<u64>,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT [default: 10]
    #[arg(long, env = "SIGNET_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<u64>,
    /// Also serve /metrics on the public listener (it is always on the admin listener)
    /// [default: true]
    #[arg(long, env = "SIGNET_PUBLIC_METRICS")]
    pub public_metrics: Option<bool>,
    /// Upper bounds of clients' lifetime fields, `FIELD=SECONDS,...` over the defaults
    /// (identity and access tokens and codes 86400, refresh tokens, consent and SSO
    /// sessions 31536000, device codes 3600); e.g. `authorizationCodeLifetime=600`
    #[arg(long, env = "SIGNET_LIFETIME_LIMITS")]
    pub lifetime_limits: Option<String>,
    /// Seconds devices wait between polls of the device flow (RFC 8628 `interval`, 1 to
    /// 60); one that polls faster is told `slow_down` [default: 5]
    #[arg(long, env = "SIGNET_DEVICE_POLL_INTERVAL")]
    pub device_poll_interval: Option<u64>,
    /// DEVELOPMENT ONLY: accept any redirect URI scheme and host when clients are
    /// registered (plain http on any host, ftp:, ...; never javascript:, data:, file:).
    /// Without it: https, http on loopback, private-use schemes (OAuth 2.1, RFC 8252)
    #[arg(long, env = "SIGNET_INSECURE_ALLOW_ANY_REDIRECT_URI")]
    pub insecure_allow_any_redirect_uri: bool,
    /// Load balancers whose X-Forwarded-For names the client (for login throttling and
    /// logs): addresses or CIDR ranges, comma-separated, e.g. `10.0.0.0/8,fd00::/8`.
    /// From any other peer the header is ignored [default: none]
    #[arg(long, env = "SIGNET_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Serve the public endpoints over TLS with this certificate chain (PEM; the leaf
    /// first). Client certificates are requested but optional (mutual TLS, RFC 8705); needs
    /// --tls-key and an https --issuer
    #[arg(long, env = "SIGNET_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, env = "SIGNET_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that issue client certificates for `tls_client_auth` (subject
    /// DN, X509Name secrets); without it tls_client_auth is not offered
    /// (self_signed_tls_client_auth needs no CA)
    #[arg(long, env = "SIGNET_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// The header in which a trusted proxy (--trusted-proxies) forwards the client's
    /// certificate: base64 DER or URL-encoded PEM; from any other peer it is refused
    /// [default: X-SSL-Client-Cert]
    #[arg(long, env = "SIGNET_TLS_CLIENT_CERT_HEADER")]
    pub tls_client_cert_header: Option<String>,
    /// Behind a load balancer that asks for client certificates on its own host: its base
    /// URL (as --issuer, e.g. https://mtls.id.example). Discovery then offers mutual TLS and
    /// names these endpoints in mtls_endpoint_aliases [default: none]
    #[arg(long, env = "SIGNET_MTLS_BASE_URL")]
    pub mtls_base_url: Option<String>,
    /// With --tls-cert: a second address for the public endpoints that asks for client
    /// certificates; the --listen one then does not (browsers there are never asked for
    /// one). Discovery's mtls_endpoint_aliases point here (the issuer's host at this port,
    /// unless --mtls-base-url says otherwise) [default: none]
    #[arg(long, env = "SIGNET_MTLS_LISTEN")]
    pub mtls_listen: Option<SocketAddr>,
    /// Seconds an SSO session lasts from sign-in, whatever clients do (a client's
    /// `userSsoLifetime` may ask for less) [default: 36000 (10 hours)]
    #[arg(long, env = "SIGNET_SESSION_LIFETIME")]
    pub session_lifetime: Option<u64>,
    /// The shortest password accepted wherever a password is set (admin API, account
    /// page), in characters, 8 to 128 [default: 10]
    #[arg(long, env = "SIGNET_PASSWORD_MIN_LENGTH")]
    pub password_min_length: Option<usize>,
    /// Accept passwords on the shipped list of the 10,000 most common ones (refused by
    /// default, compared case-insensitively)
    #[arg(long, env = "SIGNET_ALLOW_COMMON_PASSWORDS")]
    pub allow_common_passwords: bool,
    /// The SMTP relay for e-mail (password reset, address verification), in lettre's URL
    /// form: smtps://user:password@host[:465], smtp://user:password@host[:587]?tls=required,
    /// or plain smtp://host[:25] for a loopback relay only. The password is never logged
    /// [default: none: the e-mail features are off]
    #[arg(long, env = "SIGNET_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The From address of e-mail, with an optional display name
    /// ("Example <no-reply@example.com>"); required with --smtp-url
    #[arg(long, env = "SIGNET_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// How long a password-reset or e-mail-verification link stays valid, in seconds
    /// (`900`, `900s`), 1 to 86400 [default: 1800 (30 minutes)]
    #[arg(long, env = "SIGNET_EMAIL_LINK_TTL")]
    pub email_link_ttl: Option<String>,
    /// Let the server's own requests (back-channel logout) reach loopback and private
    /// addresses (127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10,
    /// ::1, fc00::/7). Link-local and cloud metadata addresses are refused regardless
    #[arg(long, env = "SIGNET_ALLOW_PRIVATE_OUTBOUND")]
    pub allow_private_outbound: bool,
    /// Delay before a failed back-channel logout delivery is tried again, doubling with
    /// each attempt (at most 10 minutes apart): `2s`, `250ms`, or seconds [default: 2s]
    #[arg(long, env = "SIGNET_BACKCHANNEL_RETRY_BASE")]
    pub backchannel_retry_base: Option<String>,
    /// Attempts of a back-channel logout delivery before it is given up (1 to 50)
    /// [default: 8]
    #[arg(long, env = "SIGNET_BACKCHANNEL_MAX_ATTEMPTS")]
    pub backchannel_max_attempts: Option<u32>,
    /// Refuse authorization requests that were not pushed to /oauth2/par first (RFC 9126
    /// section 5), for every client; without it only clients with
    /// `requirePushedAuthorization` must push [default: false]
    #[arg(long, env = "SIGNET_REQUIRE_PUSHED_AUTHORIZATION_REQUESTS")]
    pub require_pushed_authorization_requests: bool,
    /// DPoP proofs at the token endpoint must carry a server nonce (RFC 9449 section 8):
    /// a proof without one is answered `use_dpop_nonce` with a `DPoP-Nonce` header; nonces
    /// rotate every 5 minutes and are valid at every node [default: false]
    #[arg(long, env = "SIGNET_DPOP_NONCE")]
    pub dpop_nonce: bool,
    /// Serve dynamic client registration at /oauth2/register (RFC 7591, managed through
    /// /oauth2/register/{client_id}, RFC 7592) for holders of an initial access token
    /// (`/admin/v1/InitialAccessToken`); open registration is not offered [default: false]
    #[arg(long, env = "SIGNET_DYNAMIC_CLIENT_REGISTRATION")]
    pub dynamic_client_registration: bool,
    /// A JWKS file (`{"keys": [...]}`, public RSA 2048+, P-256 or Ed25519 keys) whose
    /// signed software statements registration accepts (RFC 7591 section 2.3; their claims
    /// override the plain metadata). Without it a software statement is refused
    /// (`unapproved_software_statement`)
    #[arg(
        long,
        env = "SIGNET_REGISTRATION_SOFTWARE_STATEMENT_JWKS",
        value_name = "PATH"
    )]
    pub registration_software_statement_jwks: Option<PathBuf>,
}

/// `2s`, `250ms` or a bare number of seconds.
fn parse_duration(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Some(ms) = v.strip_suffix("ms") {
        return ms.trim().parse().ok().map(Duration::from_millis);
    }
    v.strip_suffix('s')
        .unwrap_or(v)
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// The signing-key rotation schedule (`serve` and `keymanager`).
#[derive(Debug, Args)]
pub struct RotationArgs {
    /// Seconds a key signs before the next one takes over [default: 2592000 (30 days)]
    #[arg(long, env = "SIGNET_KEY_ROTATE_AFTER")]
    pub key_rotate_after: Option<u64>,
    /// Seconds a new key is in the JWKS before it signs; more than the longest JWKS cache
    /// (3600) [default: 7200]
    #[arg(long, env = "SIGNET_KEY_PREPUBLISH")]
    pub key_prepublish: Option<u64>,
    /// Seconds a retired key stays in the JWKS (at least the longest token lifetime is
    /// kept anyway) [default: 86400]
    #[arg(long, env = "SIGNET_KEY_RETIRE_FOR")]
    pub key_retire_for: Option<u64>,
}

impl RotationArgs {
    fn policy(self, file: &FileConfig) -> anyhow::Result<KeyPolicy> {
        let mut p = KeyPolicy::default();
        if let Some(s) = self.key_rotate_after.or(file.key_rotate_after) {
            p.rotate_after = Duration::from_secs(s);
        }
        if let Some(s) = self.key_prepublish.or(file.key_prepublish) {
            p.prepublish = Duration::from_secs(s);
        }
        if let Some(s) = self.key_retire_for.or(file.key_retire_for) {
            p.retire_for = Duration::from_secs(s);
        }
        p.validate()?;
        Ok(p)
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub rotation: RotationArgs,
    /// Directory for the event log, sealed keys and the KEK [default: ./signet-data]
    #[arg(long, env = "SIGNET_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Key-encryption key file (32 random bytes, base64); created with mode 0600 when
    /// absent [default: <data-dir>/kek]
    #[arg(long, env = "SIGNET_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
}

/// How cluster processes reach NATS JetStream.
#[derive(Debug, Args)]
pub struct NatsArgs {
    /// NATS URL(s), comma-separated [default: nats://127.0.0.1:4222]
    #[arg(long = "nats", env = "SIGNET_NATS_URL")]
    pub nats: Option<String>,
    /// JetStream stream of configuration events [default: SIGNET_EVENTS]
    #[arg(long, env = "SIGNET_STREAM")]
    pub stream: Option<String>,
    /// Replicas of the streams and buckets this process creates [default: 1]
    #[arg(long, env = "SIGNET_REPLICAS")]
    pub replicas: Option<usize>,
    /// The cluster secret (32+ random bytes, base64) that authenticates key leases
    #[arg(long, env = "SIGNET_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct IssuerArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// This issuer's name in key-lease requests and logs [default: issuer-<listen port>]
    #[arg(long, env = "SIGNET_ISSUER_ID")]
    pub issuer_id: Option<String>,
    /// Redis for short-lived shared state: redis://[user:pass@]host:port[/db],
    /// rediss://..., redis+sentinel://host:port,host:port/<master>[/db] or
    /// redis+cluster://host:port,host:port [default: redis://127.0.0.1:6379]
    #[arg(long = "redis", env = "SIGNET_REDIS_URL")]
    pub redis: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeyManagerArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub rotation: RotationArgs,
    /// Key-encryption key file (32 random bytes, base64); created with mode 0600 and a
    /// warning when absent [default: ./signet-kek]
    #[arg(long, env = "SIGNET_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// Seconds a key lease lasts; issuers renew at half of it [default: 600]
    #[arg(long, env = "SIGNET_LEASE_TTL")]
    pub lease_ttl: Option<u64>,
}

/// The TOML file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub issuer: Option<String>,
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub kek_file: Option<PathBuf>,
    pub default_algorithm: Option<String>,
    pub jwks_max_age: Option<u64>,
    pub shutdown_grace: Option<u64>,
    pub public_metrics: Option<bool>,
    pub lifetime_limits: Option<String>,
    pub device_poll_interval: Option<u64>,
    pub insecure_allow_any_redirect_uri: Option<bool>,
    pub trusted_proxies: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub tls_client_cert_header: Option<String>,
    pub mtls_base_url: Option<String>,
    pub mtls_listen: Option<SocketAddr>,
    pub session_lifetime: Option<u64>,
    pub password_min_length: Option<usize>,
    pub allow_common_passwords: Option<bool>,
    pub smtp_url: Option<String>,
    pub smtp_from: Option<String>,
    pub email_link_ttl: Option<String>,
    pub allow_private_outbound: Option<bool>,
    pub backchannel_retry_base: Option<String>,
    pub backchannel_max_attempts: Option<u32>,
    pub require_pushed_authorization_requests: Option<bool>,
    pub dpop_nonce: Option<bool>,
    pub dynamic_client_registration: Option<bool>,
    pub registration_software_statement_jwks: Option<PathBuf>,
    pub nats: Option<String>,
    pub stream: Option<String>,
    pub replicas: Option<usize>,
    pub cluster_secret_file: Option<PathBuf>,
    pub issuer_id: Option<String>,
    pub redis: Option<String>,
    pub lease_ttl: Option<u64>,
    pub key_rotate_after: Option<u64>,
    pub key_prepublish: Option<u64>,
    pub key_retire_for: Option<u64>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a valid Signet config file", path.display()))
    }
}

/// The largest JWKS max-age: verifiers must see a new key well before it signs, and
/// resource servers cache the JWKS for at most an hour.
const MAX_JWKS_MAX_AGE: u64 = 3600;
/// The longest SSO session `--session-lifetime` accepts (a year, as `userSsoLifetime`).
const MAX_SESSION_LIFETIME: u64 = 365 * 24 * 3600;

impl NodeArgs {
    /// Applies the node flags (over the file) to `config`, and validates them.
    fn apply(self, file: &FileConfig, config: &mut NodeConfig) -> anyhow::Result<()> {
        // Without an issuer, the node names the address it listens on (once bound).
        match self.issuer.or(file.issuer.clone()) {
            Some(issuer) => {
                config.issuer = IssuerUrl::parse(&issuer)?;
                config.issuer_from_listen = false;
            }
            None => config.issuer_from_listen = true,
        }
        if let Some(a) = self.listen.or(file.listen) {
            config.listen = a;
        }
        if let Some(a) = self.admin_listen.or(file.admin_listen) {
            config.admin_listen = a;
        }
        if let Some(alg) = self.default_algorithm.or(file.default_algorithm.clone()) {
            config.default_algorithm = alg.parse::<Algorithm>().context("default_algorithm")?;
        }
        if let Some(secs) = self.jwks_max_age.or(file.jwks_max_age) {
            anyhow::ensure!(
                (1..=MAX_JWKS_MAX_AGE).contains(&secs),
                "jwks_max_age must be between 1 and {MAX_JWKS_MAX_AGE} seconds"
            );
            config.jwks_max_age = Duration::from_secs(secs);
        }
        if let Some(secs) = self.shutdown_grace.or(file.shutdown_grace) {
            config.shutdown_grace = Duration::from_secs(secs);
        }
        if let Some(b) = self.public_metrics.or(file.public_metrics) {
            config.public_metrics = b;
        }
        if let Some(spec) = self.lifetime_limits.or(file.lifetime_limits.clone()) {
            config.client_policy.lifetimes = signet_core::client::LifetimeLimits::parse(&spec)?;
        }
        if self.insecure_allow_any_redirect_uri
            || file.insecure_allow_any_redirect_uri.unwrap_or(false)
        {
            config.client_policy.redirect_uris = RedirectUriPolicy::AllowAny;
        }
        if let Some(secs) = self.device_poll_interval.or(file.device_poll_interval) {
            anyhow::ensure!(
                (1..=60).contains(&secs),
                "device_poll_interval must be between 1 and 60 seconds"
            );
            config.device_poll_interval = Duration::from_secs(secs);
        }
        if let Some(spec) = self.trusted_proxies.or(file.trusted_proxies.clone()) {
            config.trusted_proxies = TrustedProxies::parse(&spec).context("trusted_proxies")?;
        }
        match (
            self.tls_cert.or(file.tls_cert.clone()),
            self.tls_key.or(file.tls_key.clone()),
        ) {
            (Some(cert), Some(key)) => {
                anyhow::ensure!(
                    !config.issuer_from_listen && config.issuer.as_str().starts_with("https://"),
                    "with tls_cert, give the issuer: an https URL that names this node"
                );
                let files = signet_issuer::http::client_cert::TlsFiles { cert, key };
                config.mtls_listen = self.mtls_listen.or(file.mtls_listen);
                let separate = config.mtls_listen.is_some();
                config.tls = Some(signet_issuer::http::client_cert::server_config(
                    &files, !separate,
                )?);
                if separate {
                    config.mtls_tls = Some(signet_issuer::http::client_cert::server_config(
                        &files, true,
                    )?);
                }
            }
            (None, None) => anyhow::ensure!(
                self.mtls_listen.or(file.mtls_listen).is_none(),
                "mtls_listen needs tls_cert and tls_key"
            ),
            _ => anyhow::bail!("tls_cert and tls_key go together"),
        }
        if let Some(path) = self.tls_client_ca.or(file.tls_client_ca.clone()) {
            config.cert_policy.roots = Some(signet_issuer::http::client_cert::client_roots(&path)?);
        }
        if let Some(name) = self
            .tls_client_cert_header
            .or(file.tls_client_cert_header.clone())
        {
            config
                .cert_policy
                .set_header(&name)
                .with_context(|| format!("tls_client_cert_header {name:?} is not a header name"))?;
        }
        if let Some(url) = self.mtls_base_url.or(file.mtls_base_url.clone()) {
            config.mtls_base_url = Some(IssuerUrl::parse(&url).context("mtls_base_url")?);
        }
        if self.require_pushed_authorization_requests
            || file.require_pushed_authorization_requests.unwrap_or(false)
        {
            config.require_pushed_authorization_requests = true;
        }
        if self.dpop_nonce || file.dpop_nonce.unwrap_or(false) {
            config.dpop_nonce = true;
        }
        if self.dynamic_client_registration || file.dynamic_client_registration.unwrap_or(false) {
            config.dynamic_client_registration = true;
        }
        if let Some(path) = self
            .registration_software_statement_jwks
            .or(file.registration_software_statement_jwks.clone())
        {
            config.software_statement_keys = Some(
                signet_issuer::config::software_statement_keys(&path)
                    .map_err(anyhow::Error::msg)?,
            );
        }
        if let Some(secs) = self.session_lifetime.or(file.session_lifetime) {
            anyhow::ensure!(
                (60..=MAX_SESSION_LIFETIME).contains(&secs),
                "session_lifetime must be between 60 and {MAX_SESSION_LIFETIME} seconds"
            );
            config.session_lifetime = Duration::from_secs(secs);
        }
        if let Some(n) = self.password_min_length.or(file.password_min_length) {
            anyhow::ensure!(
                (signet_core::user::PASSWORD_MIN..=128).contains(&n),
                "password_min_length must be between {} and 128 characters",
                signet_core::user::PASSWORD_MIN
            );
            config.password_policy.min_length = n;
        }
        config.password_policy.refuse_common =
            !(self.allow_common_passwords || file.allow_common_passwords.unwrap_or(false));
        match (
            self.smtp_url.or(file.smtp_url.clone()),
            self.smtp_from.or(file.smtp_from.clone()),
        ) {
            (Some(url), Some(from)) => {
                let url = signet_issuer::mail::SmtpUrl::parse(&url)?;
                config.mailer = Some(signet_issuer::mail::Mailer::new(url, &from)?);
            }
            (Some(_), None) => anyhow::bail!("smtp_url needs smtp_from (the From address)"),
            (None, Some(_)) => anyhow::bail!("smtp_from needs smtp_url"),
            (None, None) => {}
        }
        if let Some(v) = self.email_link_ttl.or(file.email_link_ttl.clone()) {
            config.email_link_ttl = parse_duration(&v)
                .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(24 * 3600)).contains(d))
                .with_context(|| {
                    format!("email_link_ttl {v:?}: give 1 to 86400 seconds, e.g. 1800")
                })?;
        }
        config.outbound.allow_private =
            self.allow_private_outbound || file.allow_private_outbound.unwrap_or(false);
        if let Some(v) = self
            .backchannel_retry_base
            .or(file.backchannel_retry_base.clone())
        {
            let d = parse_duration(&v)
                .filter(|d| (Duration::from_millis(10)..=Duration::from_secs(600)).contains(d))
                .with_context(|| {
                    format!("backchannel_retry_base {v:?}: give 10ms to 600s, e.g. 2s or 250ms")
                })?;
            config.backchannel.retry_base = d;
        }
        if let Some(n) = self
            .backchannel_max_attempts
            .or(file.backchannel_max_attempts)
        {
            anyhow::ensure!(
                (1..=50).contains(&n),
                "backchannel_max_attempts must be between 1 and 50"
            );
            config.backchannel.max_attempts = n;
        }
        anyhow::ensure!(
            config.listen != config.admin_listen,
            "listen and admin_listen must differ"
        );
        // Environment only: flags show up in `ps`.
        config.admin_client_secret = std::env::var("SIGNET_ADMIN_CLIENT_SECRET")
            .ok()
            .filter(|s| !s.is_empty());
        Ok(())
    }
}

impl ServeArgs {
    /// Merges flags/environment over the file over the defaults, and validates the result.
    pub fn resolve(self, file: Option<&Path>) -> anyhow::Result<NodeConfig> {
        let file = FileConfig::load(file)?;
        let data_dir = self
            .data_dir
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./signet-data"));
        let mut config = NodeConfig::new(data_dir.clone());
        config.backend = Backend::Embedded {
            data_dir,
            kek_file: self.kek_file.or(file.kek_file.clone()),
        };
        config.key_policy = self.rotation.policy(&file)?;
        self.node.apply(&file, &mut config)?;
        Ok(config)
    }
}

/// NATS settings merged over the file; the cluster secret file is required.
fn nats_settings(
    nats: NatsArgs,
    file: &FileConfig,
) -> anyhow::Result<(String, String, usize, PathBuf)> {
    let url = nats
        .nats
        .or(file.nats.clone())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let stream = nats
        .stream
        .or(file.stream.clone())
        .unwrap_or_else(|| "SIGNET_EVENTS".to_owned());
    let replicas = nats.replicas.or(file.replicas).unwrap_or(1);
    anyhow::ensure!(
        (1..=5).contains(&replicas),
        "replicas must be between 1 and 5"
    );
    let secret = nats
        .cluster_secret_file
        .or(file.cluster_secret_file.clone())
        .context("--cluster-secret-file (SIGNET_CLUSTER_SECRET_FILE) is required: issuers and key managers share it")?;
    Ok((url, stream, replicas, secret))
}

impl IssuerArgs {
    pub fn resolve(self, file: Option<&Path>) -> anyhow::Result<NodeConfig> {
        let file = FileConfig::load(file)?;
        let (nats_url, stream, replicas, cluster_secret_file) = nats_settings(self.nats, &file)?;
        let issuer_id = self.issuer_id.or(file.issuer_id.clone());
        let redis_url = self
            .redis
            .or(file.redis.clone())
            .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
        signet_store::redis::check_url(&redis_url).context("redis")?;
        let mut config = NodeConfig::cluster(ClusterSettings {
            nats_url,
            stream,
            replicas,
            cluster_secret_file,
            issuer_id: String::new(),
            redis_url,
        });
        self.node.apply(&file, &mut config)?;
        let default_id = format!("issuer-{}", config.listen.port());
        if let Backend::Cluster(c) = &mut config.backend {
            c.issuer_id = issuer_id.unwrap_or(default_id);
        }
        Ok(config)
    }
}

impl KeyManagerArgs {
    pub fn resolve(self, file: Option<&Path>) -> anyhow::Result<KeyManagerConfig> {
        let file = FileConfig::load(file)?;
        let (nats_url, stream, replicas, cluster_secret_file) = nats_settings(self.nats, &file)?;
        let lease_ttl = self.lease_ttl.or(file.lease_ttl).unwrap_or(600);
        anyhow::ensure!(lease_ttl >= 2, "lease_ttl must be at least 2 seconds");
        Ok(KeyManagerConfig {
            nats_url,
            stream,
            replicas,
            kek_file: self
                .kek_file
                .or(file.kek_file.clone())
                .unwrap_or_else(|| PathBuf::from("./signet-kek")),
            cluster_secret_file,
            lease_ttl: Duration::from_secs(lease_ttl),
            policy: self.rotation.policy(&file)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> ServeArgs {
        let mut full = vec!["signet", "serve"];
        full.extend_from_slice(argv);
        match Cli::parse_from(full).command {
            Command::Serve(a) => a,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("signet.toml");
        std::fs::write(&file, "issuer = \"https://id.example/auth\"\nlisten = \"127.0.0.1:9000\"\ndefault_algorithm = \"ES256\"\n").unwrap();
        let c = args(&["--listen", "127.0.0.1:9100"])
            .resolve(Some(&file))
            .unwrap();
        assert_eq!(c.issuer.as_str(), "https://id.example/auth");
        assert_eq!(c.listen, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(c.admin_listen, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(c.default_algorithm, Algorithm::ES256);
        assert!(
            matches!(c.backend, Backend::Embedded { ref data_dir, .. } if data_dir == &PathBuf::from("./signet-data"))
        );
    }

    #[test]
    fn the_issuer_is_derived_unless_given_and_the_redirect_policy_is_strict_by_default() {
        let c = args(&["--listen", "127.0.0.1:18080"])
            .resolve(None)
            .unwrap();
        assert!(c.issuer_from_listen);
        assert_eq!(c.client_policy.redirect_uris, RedirectUriPolicy::Strict);
        let c = args(&[
            "--issuer",
            "https://id.example",
            "--insecure-allow-any-redirect-uri",
        ])
        .resolve(None)
        .unwrap();
        assert!(!c.issuer_from_listen);
        assert_eq!(c.issuer.as_str(), "https://id.example");
        assert_eq!(c.client_policy.redirect_uris, RedirectUriPolicy::AllowAny);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("signet.toml");
        std::fs::write(&file, "insecure_allow_any_redirect_uri = true\n").unwrap();
        let c = args(&[]).resolve(Some(&file)).unwrap();
        assert_eq!(c.client_policy.redirect_uris, RedirectUriPolicy::AllowAny);
    }

    #[test]
    fn dynamic_client_registration_is_off_unless_asked_for() {
        assert!(!args(&[]).resolve(None).unwrap().dynamic_client_registration);
        let c = args(&["--dynamic-client-registration"])
            .resolve(None)
            .unwrap();
        assert!(c.dynamic_client_registration);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("signet.toml");
        std::fs::write(&file, "dynamic_client_registration = true\n").unwrap();
        assert!(
            args(&[])
                .resolve(Some(&file))
                .unwrap()
                .dynamic_client_registration
        );
    }

    #[test]
    fn pushed_authorization_requests_are_required_by_flag_or_file() {
        assert!(
            !args(&[])
                .resolve(None)
                .unwrap()
                .require_pushed_authorization_requests
        );
        let c = args(&["--require-pushed-authorization-requests"])
            .resolve(None)
            .unwrap();
        assert!(c.require_pushed_authorization_requests);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("signet.toml");
        std::fs::write(&file, "require_pushed_authorization_requests = true\n").unwrap();
        let c = args(&[]).resolve(Some(&file)).unwrap();
        assert!(c.require_pushed_authorization_requests);
    }

    #[test]
    fn tls_and_mtls_settings_are_checked() {
        let err = |argv: &[&str]| format!("{:#}", args(argv).resolve(None).unwrap_err());
        assert!(err(&["--tls-cert", "c.pem"]).contains("tls_cert and tls_key go together"));
        assert!(err(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).contains("https URL"));
        let e = err(&[
            "--issuer",
            "https://id.example",
            "--tls-cert",
            "/nonexistent/c.pem",
            "--tls-key",
            "/nonexistent/k.pem",
        ]);
        assert!(e.contains("tls_cert /nonexistent/c.pem"), "{e}");
        assert!(err(&["--tls-client-ca", "/nonexistent/ca.pem"]).contains("tls_client_ca"));
        assert!(err(&["--tls-client-cert-header", "bad header"]).contains("tls_client_cert_header"));
        assert!(err(&["--mtls-base-url", "not a url"]).contains("mtls_base_url"));
        assert!(err(&["--mtls-listen", "127.0.0.1:9443"]).contains("mtls_listen needs tls_cert"));
        let c = args(&[]).resolve(None).unwrap();
        assert!(!c.mtls() && c.tls.is_none());
        assert_eq!(c.cert_policy.header.as_str(), "x-ssl-client-cert");
        let c = args(&[
            "--mtls-base-url",
            "https://mtls.id.example",
            "--tls-client-cert-header",
            "X-Client-Cert",
        ])
        .resolve(None)
        .unwrap();
        assert!(c.mtls());
        assert_eq!(c.cert_policy.header.as_str(), "x-client-cert");
    }

    #[test]
    fn trusted_proxies_come_from_flag_or_file_and_bad_ranges_are_refused() {
        let c = args(&[]).resolve(None).unwrap();
        assert!(c.trusted_proxies.is_empty());
        let c = args(&["--trusted-proxies", "10.0.0.0/8,fd00::/8"])
            .resolve(None)
            .unwrap();
        assert!(c.trusted_proxies.contains("10.2.3.4".parse().unwrap()));
        assert!(c.trusted_proxies.contains("fd00::5".parse().unwrap()));
        assert!(!c.trusted_proxies.contains("192.0.2.1".parse().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("signet.toml");
        std::fs::write(&file, "trusted_proxies = \"127.0.0.2/32\"\n").unwrap();
        let c = args(&[]).resolve(Some(&file)).unwrap();
        assert!(c.trusted_proxies.contains("127.0.0.2".parse().unwrap()));
        assert!(!c.trusted_proxies.contains("127.0.0.1".parse().unwrap()));
        let e = format!(
            "{:#}",
            args(&["--trusted-proxies", "10.0.0.0/40"])
                .resolve(None)
                .unwrap_err()
        );
        assert!(
            e.contains("trusted_proxies") && e.contains("10.0.0.0/40"),
            "{e}"
        );
    }

    #[test]
    fn rotation_schedule_is_configurable_and_checked() {
        let c = args(&["--key-rotate-after", "86400", "--key-prepublish", "4000"])
            .resolve(None)
            .unwrap();
        assert_eq!(c.key_policy.rotate_after, Duration::from_secs(86400));
        assert_eq!(c.key_policy.prepublish, Duration::from_secs(4000));
        // Publishing a key for less than the longest JWKS cache is refused.
        let e = format!(
            "{:#}",
            args(&["--key-prepublish", "600"])
                .resolve(None)
                .unwrap_err()
        );
        assert!(e.contains("prepublish") || e.contains("3600"), "{e}");
    }

    #[test]
    fn outbound_and_backchannel_settings() {
        let c = args(&[]).resolve(None).unwrap();
        assert!(!c.outbound.allow_private);
        assert_eq!(c.backchannel.retry_base, Duration::from_secs(2));
        let c = args(&[
            "--allow-private-outbound",
            "--backchannel-retry-base",
            "250ms",
            "--backchannel-max-attempts",
            "3",
        ])
        .resolve(None)
        .unwrap();
        assert!(c.outbound.allow_private);
        assert_eq!(c.backchannel.retry_base, Duration::from_millis(250));
        assert_eq!(c.backchannel.max_attempts, 3);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("signet.toml");
        std::fs::write(
            &file,
            "allow_private_outbound = true\nbackchannel_retry_base = \"5\"\n",
        )
        .unwrap();
        let c = args(&[]).resolve(Some(&file)).unwrap();
        assert!(c.outbound.allow_private);
        assert_eq!(c.backchannel.retry_base, Duration::from_secs(5));
        for bad in [
            &["--backchannel-retry-base", "soon"][..],
            &["--backchannel-retry-base", "1ms"][..],
            &["--backchannel-max-attempts", "0"][..],
        ] {
            let e = format!("{:#}", args(bad).resolve(None).unwrap_err());
            assert!(e.contains("backchannel"), "{e}");
        }
    }

    #[test]
    fn email_is_off_unless_configured_and_the_smtp_password_is_never_shown() {
        assert!(args(&[]).resolve(None).unwrap().mailer.is_none());
        let c = args(&[
            "--smtp-url",
            "smtps://signet:hunter2-secret@mail.example.com",
            "--smtp-from",
            "Example ID <no-reply@example.com>",
            "--email-link-ttl",
            "900",
        ])
        .resolve(None)
        .unwrap();
        assert_eq!(c.email_link_ttl, Duration::from_secs(900));
        let shown = format!("{c:?}");
        assert!(shown.contains("mail.example.com"), "{shown}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("signet.toml");
        std::fs::write(
            &file,
            "smtp_url = \"smtp://127.0.0.1:2525\"\nsmtp_from = \"no-reply@example.com\"\n",
        )
        .unwrap();
        assert!(args(&[]).resolve(Some(&file)).unwrap().mailer.is_some());
        for (bad, why) in [
            (&["--smtp-url", "smtp://127.0.0.1"][..], "smtp_from"),
            (&["--smtp-from", "a@example.com"][..], "smtp_url"),
            (
                &[
                    "--smtp-url",
                    "smtp://mail.example.com",
                    "--smtp-from",
                    "a@example.com",
                ][..],
                "loopback",
            ),
            (
                &[
                    "--smtp-url",
                    "smtp://127.0.0.1",
                    "--smtp-from",
                    "not an address",
                ][..],
                "smtp_from",
            ),
            (&["--email-link-ttl", "0"][..], "email_link_ttl"),
            (&["--email-link-ttl", "86401"][..], "email_link_ttl"),
        ] {
            let e = format!("{:#}", args(bad).resolve(None).unwrap_err());
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("signet.toml");
        std::fs::write(&file, "isuer = \"typo\"\n").unwrap();
        let e = format!("{:#}", args(&[]).resolve(Some(&file)).unwrap_err());
        assert!(e.contains("unknown field `isuer`"), "{e}");
        let e = format!(
            "{:#}",
            args(&["--issuer", "ftp://x"]).resolve(None).unwrap_err()
        );
        assert!(e.contains("scheme"), "{e}");
        let e = format!(
            "{:#}",
            args(&["--default-algorithm", "HS256"])
                .resolve(None)
                .unwrap_err()
        );
        assert!(e.contains("HS256"), "{e}");
        let e = format!(
            "{:#}",
            args(&["--jwks-max-age", "7200"]).resolve(None).unwrap_err()
        );
        assert!(e.contains("jwks_max_age"), "{e}");
        let e = format!(
            "{:#}",
            args(&["--listen", "127.0.0.1:1", "--admin-listen", "127.0.0.1:1"])
                .resolve(None)
                .unwrap_err()
        );
        assert!(e.contains("must differ"), "{e}");
    }
}
