//! Dynamic client registration (RFC 7591, RFC 7592): the initial access tokens an admin
//! creates (`/admin/v1/InitialAccessToken`) with the policy they carry, and the mapping of a
//! registration request's metadata onto the client model under that policy.
//!
//! Pure: the caller generates identifiers and secrets, passes `now`, and appends the events.
//!
//! Redirect URI patterns (`redirectUriPatterns`): each is `scheme://host[:port]/path`, where
//! the host may start with `*.` (any one or more labels before the rest of the host, never
//! the bare rest) and the path may hold `*` (any run of characters, `/` included; the query
//! counts as part of the path). A registered URI must pass the server's redirect URI rules
//! and, when the token lists patterns, match one of them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::client::{Client, GrantType};
use crate::secret::{SecretInput, JSON_WEB_KEY, SHARED_SECRET};
use crate::validation::{check_name, Collector, ValidationErrors};
use crate::UnixTime;

/// The grant types a registration may ask for (`grant_types`), RFC 7591 section 2.
pub const REGISTRATION_GRANT_TYPES: &[&str] = &[
    "authorization_code",
    "implicit",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:device_code",
];

/// The token endpoint authentication methods a registration may ask for.
pub const AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
];

/// An initial access token's lifetime when the admin names none: one day.
pub const DEFAULT_IAT_LIFETIME: u32 = 86_400;
/// The longest lifetime an initial access token may have: one year.
pub const MAX_IAT_LIFETIME: u32 = 31_536_000;

fn yes() -> bool {
    true
}
fn default_grants() -> Vec<String> {
    vec!["authorization_code".to_owned()]
}
fn default_scopes() -> Vec<String> {
    vec!["openid".to_owned()]
}

/// What an initial access token lets registered clients be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegistrationPolicy {
    /// The `grant_types` a registration may ask for: `authorization_code`, `implicit`,
    /// `refresh_token`, `client_credentials`,
    /// `urn:ietf:params:oauth:grant-type:device_code`.
    #[serde(default = "default_grants")]
    #[cfg_attr(feature = "openapi", schema(default = default_grants))]
    pub allowed_grant_types: Vec<String>,
    /// The scopes a registered client may be given (each must exist). A registration
    /// without `scope` gets all of them.
    #[serde(default = "default_scopes")]
    #[cfg_attr(feature = "openapi", schema(default = default_scopes))]
    pub allowed_scopes: Vec<String>,
    /// Patterns every redirect URI must match (see the README); empty: any URI the
    /// server's rules accept (https; http on loopback and private-use schemes only for
    /// `application_type: native`).
    #[serde(default)]
    pub redirect_uri_patterns: Vec<String>,
    /// Upper bound of the registered client's access token lifetime, in seconds; null: the
    /// client default (3600).
    #[serde(default)]
    pub max_access_token_lifetime: Option<u32>,
    /// Upper bound of the registered client's refresh token lifetimes, in seconds; null:
    /// the client defaults (30 days absolute, 15 days sliding).
    #[serde(default)]
    pub max_refresh_token_lifetime: Option<u32>,
    /// Whether clients with a secret or key (`client_secret_basic`, `client_secret_post`,
    /// `private_key_jwt`) may register.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub allow_confidential_clients: bool,
    /// Whether public clients (`token_endpoint_auth_method: none`) may register.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub allow_public_clients: bool,
}

impl Default for RegistrationPolicy {
    fn default() -> Self {
        RegistrationPolicy {
            allowed_grant_types: default_grants(),
            allowed_scopes: default_scopes(),
            redirect_uri_patterns: Vec::new(),
            max_access_token_lifetime: None,
            max_refresh_token_lifetime: None,
            allow_confidential_clients: true,
            allow_public_clients: false,
        }
    }
}

/// An initial access token as an admin writes it (`POST /admin/v1/InitialAccessToken`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InitialAccessTokenInput {
    /// The token's id (printable ASCII without spaces or dots); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// What the token is for.
    #[serde(default)]
    pub description: Option<String>,
    /// When the token stops being accepted (RFC 3339); exclusive with `lifetime`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Seconds from creation until the token stops being accepted (default 86400, at most
    /// a year); exclusive with `expiresAt`.
    #[serde(default)]
    pub lifetime: Option<u32>,
    /// How many registrations the token allows, counted across the cluster; null: any
    /// number until it expires.
    #[serde(default)]
    pub max_uses: Option<u32>,
    /// The `grant_types` a registration may ask for.
    #[serde(default = "default_grants")]
    #[cfg_attr(feature = "openapi", schema(default = default_grants))]
    pub allowed_grant_types: Vec<String>,
    /// The scopes a registered client may be given (each must exist).
    #[serde(default = "default_scopes")]
    #[cfg_attr(feature = "openapi", schema(default = default_scopes))]
    pub allowed_scopes: Vec<String>,
    /// Patterns every redirect URI must match, e.g. `https://*.example.com/*`.
    #[serde(default)]
    pub redirect_uri_patterns: Vec<String>,
    /// Upper bound of a registered client's access token lifetime, in seconds.
    #[serde(default)]
    pub max_access_token_lifetime: Option<u32>,
    /// Upper bound of a registered client's refresh token lifetimes, in seconds.
    #[serde(default)]
    pub max_refresh_token_lifetime: Option<u32>,
    /// Whether confidential clients may register.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub allow_confidential_clients: bool,
    /// Whether public clients may register.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub allow_public_clients: bool,
}

/// An initial access token as events and the projection hold it: the SHA-256 of its value,
/// never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InitialAccessToken {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// SHA-256 of the token's secret part, base64url.
    pub sha256: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
    pub policy: RegistrationPolicy,
}

/// An initial access token as reads return it: everything but its hash, plus its uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct InitialAccessTokenView {
    pub id: String,
    pub description: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it stops being accepted (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub max_uses: Option<u32>,
    /// Registrations made with it so far.
    pub uses: u32,
    #[serde(flatten)]
    pub policy: RegistrationPolicy,
}

fn rfc3339(t: UnixTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl InitialAccessToken {
    pub fn view(&self, uses: u32) -> InitialAccessTokenView {
        InitialAccessTokenView {
            id: self.id.clone(),
            description: self.description.clone(),
            created_at: rfc3339(self.created_at),
            expires_at: rfc3339(self.expires_at),
            max_uses: self.max_uses,
            uses,
            policy: self.policy.clone(),
        }
    }
}

impl InitialAccessTokenInput {
    /// Checks the body on its own (the scopes' existence is checked against the projection
    /// by the command) and turns it into the stored record.
    pub fn into_record(
        self,
        id: String,
        sha256: String,
        now: UnixTime,
    ) -> Result<InitialAccessToken, ValidationErrors> {
        self.into_record_at(id, sha256, now, now)
    }

    /// [`Self::into_record`] for a token created at `created_at` (a replacement keeps its
    /// creation time, value and uses; `lifetime` counts from creation).
    pub fn into_record_at(
        self,
        id: String,
        sha256: String,
        created_at: UnixTime,
        now: UnixTime,
    ) -> Result<InitialAccessToken, ValidationErrors> {
        let mut c = Collector::default();
        check_name(&mut c, "id", &id);
        c.check(!id.contains('.'), "id", "must not contain a dot");
        let expires_at = match (self.expires_at, self.lifetime) {
            (Some(_), Some(_)) => {
                c.push("lifetime", "give expiresAt or lifetime, not both");
                now
            }
            (Some(at), None) => {
                let at = at.unix_timestamp();
                c.check(at > now, "expiresAt", "must be in the future");
                c.check(
                    at - created_at <= i64::from(MAX_IAT_LIFETIME),
                    "expiresAt",
                    format!("must be at most {MAX_IAT_LIFETIME} seconds after creation"),
                );
                at
            }
            (None, l) => {
                let l = l.unwrap_or(DEFAULT_IAT_LIFETIME);
                c.check(
                    (1..=MAX_IAT_LIFETIME).contains(&l),
                    "lifetime",
                    format!("must be 1 to {MAX_IAT_LIFETIME} seconds"),
                );
                created_at + i64::from(l)
            }
        };
        c.check(
            self.max_uses != Some(0),
            "maxUses",
            "must be a positive number or null",
        );
        let policy = RegistrationPolicy {
            allowed_grant_types: self.allowed_grant_types,
            allowed_scopes: self.allowed_scopes,
            redirect_uri_patterns: self.redirect_uri_patterns,
            max_access_token_lifetime: self.max_access_token_lifetime,
            max_refresh_token_lifetime: self.max_refresh_token_lifetime,
            allow_confidential_clients: self.allow_confidential_clients,
            allow_public_clients: self.allow_public_clients,
        };
        policy.check(&mut c);
        c.finish()?;
        Ok(InitialAccessToken {
            id,
            description: self.description,
            sha256,
            created_at,
            expires_at,
            max_uses: self.max_uses,
            policy,
        })
    }
}

impl RegistrationPolicy {
    fn check(&self, c: &mut Collector) {
        c.check(
            !self.allowed_grant_types.is_empty(),
            "allowedGrantTypes",
            "must name at least one grant type",
        );
        for (i, g) in self.allowed_grant_types.iter().enumerate() {
            c.check(
                REGISTRATION_GRANT_TYPES.contains(&g.as_str()),
                format!("allowedGrantTypes[{i}]"),
                format!("must be one of {}", REGISTRATION_GRANT_TYPES.join(", ")),
            );
        }
        crate::validation::check_unique(
            c,
            "allowedGrantTypes",
            self.allowed_grant_types.iter().map(String::as_str),
        );
        crate::validation::check_unique(
            c,
            "allowedScopes",
            self.allowed_scopes.iter().map(String::as_str),
        );
        for (i, p) in self.redirect_uri_patterns.iter().enumerate() {
            if let Err(rule) = UriPattern::parse(p) {
                c.push(format!("redirectUriPatterns[{i}]"), rule);
            }
        }
        for (field, v) in [
            ("maxAccessTokenLifetime", self.max_access_token_lifetime),
            ("maxRefreshTokenLifetime", self.max_refresh_token_lifetime),
        ] {
            c.check(
                v != Some(0),
                field,
                "must be a positive number of seconds or null",
            );
        }
        c.check(
            self.allow_confidential_clients || self.allow_public_clients,
            "allowPublicClients",
            "allowConfidentialClients and allowPublicClients cannot both be false",
        );
    }
}

/// A parsed redirect URI pattern (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriPattern {
    scheme: String,
    /// `Some(suffix)` for `*.suffix`.
    wildcard_suffix: Option<String>,
    host: String,
    port: Option<u16>,
    path: String,
}

impl UriPattern {
    pub fn parse(p: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("{why}: a pattern is scheme://host[:port]/path, the host may start with \"*.\", the path may hold \"*\"")
        };
        let (scheme, rest) = p.split_once("://").ok_or_else(|| bad("no scheme"))?;
        if !matches!(scheme, "https" | "http") && !scheme.contains('.') {
            return Err(bad(
                "the scheme must be https, http or a private-use scheme",
            ));
        }
        if p.contains('#') {
            return Err(bad("a pattern cannot have a fragment"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(bad("no user information"));
        }
        let (host, port) =
            if let Some(end) = authority.find(']').filter(|_| authority.starts_with('[')) {
                match &authority[end + 1..] {
                    "" => (&authority[..=end], None),
                    p => (
                        &authority[..=end],
                        Some(
                            p.strip_prefix(':')
                                .and_then(|p| p.parse::<u16>().ok())
                                .ok_or_else(|| bad("the port must be a number"))?,
                        ),
                    ),
                }
            } else {
                match authority.rsplit_once(':') {
                    Some((h, p)) => (
                        h,
                        Some(
                            p.parse::<u16>()
                                .map_err(|_| bad("the port must be a number"))?,
                        ),
                    ),
                    None => (authority, None),
                }
            };
        let (wildcard_suffix, host) = match host.strip_prefix("*.") {
            Some(s) => (Some(s.to_ascii_lowercase()), String::new()),
            None => (None, host.to_ascii_lowercase()),
        };
        let plain = wildcard_suffix.as_deref().unwrap_or(&host);
        if plain.is_empty() || plain.contains('*') {
            return Err(bad("the host must be a name, optionally after \"*.\""));
        }
        if wildcard_suffix.as_ref().is_some_and(|s| !s.contains('.')) {
            return Err(bad(
                "\"*.\" must be followed by a domain of two labels or more",
            ));
        }
        Ok(UriPattern {
            scheme: scheme.to_ascii_lowercase(),
            wildcard_suffix,
            host,
            port,
            path: path.to_owned(),
        })
    }

    /// Whether the (already parsed) URI matches.
    pub fn matches(&self, u: &url::Url) -> bool {
        if u.scheme() != self.scheme {
            return false;
        }
        let host = u.host_str().unwrap_or("").to_ascii_lowercase();
        let host_ok = match &self.wildcard_suffix {
            Some(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|h| h.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
            None => host == self.host,
        };
        let port_ok = match self.port {
            Some(p) => u.port_or_known_default() == Some(p),
            None => u.port().is_none(),
        };
        if !host_ok || !port_ok {
            return false;
        }
        let mut path = u.path().to_owned();
        if let Some(q) = u.query() {
            path.push('?');
            path.push_str(q);
        }
        glob(&self.path, &path)
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// What the registration adds to a client: stored beside it in the projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistrationInfo {
    /// SHA-256 of the registration access token (RFC 7592), base64url.
    pub token_sha256: String,
    /// The initial access token the client was registered with.
    pub initial_access_token: String,
    /// That token's policy, which updates stay under.
    pub policy: RegistrationPolicy,
    /// `token_endpoint_auth_method` as registered.
    pub token_endpoint_auth_method: String,
    /// `application_type` as registered (`web` or `native`).
    pub application_type: String,
    /// When the client id was issued (RFC 7591 `client_id_issued_at`).
    pub issued_at: UnixTime,
    /// The `iss` of the software statement whose claims were used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_statement_iss: Option<String>,
}

/// A client registered through `/oauth2/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisteredClient {
    pub client: Client,
    pub registration: RegistrationInfo,
}

/// A registration refused (RFC 7591 section 3.2.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// RFC 7591 section 3.2.2: a redirect URI is invalid or not allowed.
    #[error("{0}")]
    InvalidRedirectUri(String),
    /// RFC 7591 section 3.2.2: some metadata is invalid or not allowed.
    #[error("{0}")]
    InvalidClientMetadata(String),
    /// RFC 7591 section 3.2.2: the software statement is invalid (signature, claims).
    #[error("{0}")]
    InvalidSoftwareStatement(String),
    /// RFC 7591 section 3.2.2: software statements are not accepted here, or not from
    /// this issuer.
    #[error("{0}")]
    UnapprovedSoftwareStatement(String),
}

impl RegistrationError {
    pub fn code(&self) -> &'static str {
        match self {
            RegistrationError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            RegistrationError::InvalidClientMetadata(_) => "invalid_client_metadata",
            RegistrationError::InvalidSoftwareStatement(_) => "invalid_software_statement",
            RegistrationError::UnapprovedSoftwareStatement(_) => "unapproved_software_statement",
        }
    }

    /// A client validation failure as the registration endpoint answers it: a broken rule
    /// of the redirect URIs is `invalid_redirect_uri`, any other `invalid_client_metadata`.
    pub fn from_validation(e: &ValidationErrors) -> Self {
        let first = e.errors.first();
        let field = first.map(|f| f.field.as_str()).unwrap_or("");
        let rule = first.map(|f| f.rule.as_str()).unwrap_or("invalid");
        let name = metadata_name(field);
        if field.starts_with("redirectUris") {
            RegistrationError::InvalidRedirectUri(format!("{name}: {rule}"))
        } else {
            RegistrationError::InvalidClientMetadata(format!("{name}: {rule}"))
        }
    }
}

/// The registration metadata name of a client model field path (for error messages).
fn metadata_name(field: &str) -> String {
    let (head, tail) = match field.find('[') {
        Some(i) => (&field[..i], &field[i..]),
        None => (field, ""),
    };
    let name = match head {
        "redirectUris" => "redirect_uris",
        "postLogoutRedirectUris" => "post_logout_redirect_uris",
        "allowedGrantTypes" => "grant_types",
        "allowedScopes" => "scope",
        "clientUri" => "client_uri",
        "logoUri" => "logo_uri",
        "clientName" => "client_name",
        "frontChannelLogoutUri" => "frontchannel_logout_uri",
        "backChannelLogoutUri" => "backchannel_logout_uri",
        "clientSecrets" => "jwks",
        "requireClientSecret" => "token_endpoint_auth_method",
        other => other,
    };
    format!("{name}{tail}")
}

/// The registration request's metadata, read from its JSON object. Members this server
/// does not understand are ignored (RFC 7591 section 2) and not echoed back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    pub redirect_uris: Vec<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub scope: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub jwks: Option<Value>,
    /// Where the client publishes its keys (the client's `jwksUri`).
    pub jwks_uri: Option<String>,
    /// RFC 9449 section 5.2: every access token DPoP-bound (the client's `requireDPoP`).
    pub dpop_bound_access_tokens: Option<bool>,
    pub application_type: Option<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub frontchannel_logout_uri: Option<String>,
    pub frontchannel_logout_session_required: Option<bool>,
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: Option<bool>,
    pub require_pushed_authorization_requests: Option<bool>,
    /// RFC 7591 `client_id` (only in an RFC 7592 update, where it must match).
    pub client_id: Option<String>,
    /// RFC 7592 section 2.2: a `client_secret` in an update must be the current one.
    pub client_secret: Option<String>,
}

fn meta_err(s: impl Into<String>) -> RegistrationError {
    RegistrationError::InvalidClientMetadata(s.into())
}

impl Metadata {
    /// Reads the members this server understands, each with its JSON type checked.
    pub fn from_object(o: &Map<String, Value>) -> Result<Self, RegistrationError> {
        let string = |k: &str| -> Result<Option<String>, RegistrationError> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(meta_err(format!("{k} must be a string"))),
            }
        };
        let boolean = |k: &str| -> Result<Option<bool>, RegistrationError> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(_) => Err(meta_err(format!("{k} must be a boolean"))),
            }
        };
        let strings = |k: &str| -> Result<Option<Vec<String>>, RegistrationError> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| meta_err(format!("{k} must be an array of strings")))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(meta_err(format!("{k} must be an array of strings"))),
            }
        };
        let redirect_uris = strings("redirect_uris")
            .map_err(|e| RegistrationError::InvalidRedirectUri(e.to_string()))?
            .unwrap_or_default();
        let jwks = match o.get("jwks") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err(meta_err("jwks must be a JWK Set object")),
        };
        let jwks_uri = string("jwks_uri")?;
        if jwks.is_some() && jwks_uri.is_some() {
            // RFC 7591 section 2: the two MUST NOT both be present.
            return Err(meta_err("use jwks or jwks_uri, not both"));
        }
        Ok(Metadata {
            redirect_uris,
            grant_types: strings("grant_types")?,
            response_types: strings("response_types")?,
            client_name: string("client_name")?,
            client_uri: string("client_uri")?,
            logo_uri: string("logo_uri")?,
            scope: string("scope")?,
            token_endpoint_auth_method: string("token_endpoint_auth_method")?,
            jwks,
            jwks_uri,
            dpop_bound_access_tokens: boolean("dpop_bound_access_tokens")?,
            application_type: string("application_type")?,
            post_logout_redirect_uris: strings("post_logout_redirect_uris")?.unwrap_or_default(),
            frontchannel_logout_uri: string("frontchannel_logout_uri")?,
            frontchannel_logout_session_required: boolean("frontchannel_logout_session_required")?,
            backchannel_logout_uri: string("backchannel_logout_uri")?,
            backchannel_logout_session_required: boolean("backchannel_logout_session_required")?,
            require_pushed_authorization_requests: boolean(
                "require_pushed_authorization_requests",
            )?,
            client_id: string("client_id")?,
            client_secret: string("client_secret")?,
        })
    }
}

/// Merges the verified claims of a software statement into the request's metadata (RFC
/// 7591 section 2.3: they take precedence over the plain values). The JWT's own claims
/// (`iss`, `iat`, `exp`, `nbf`, `jti`, `aud`) are not metadata and stay out. Answers the
/// statement's `iss`, which must be present. `now` checks `exp` and `nbf`.
pub fn merge_software_statement(
    body: &mut Map<String, Value>,
    claims: &[u8],
    now: UnixTime,
) -> Result<String, RegistrationError> {
    let invalid = |d: &str| RegistrationError::InvalidSoftwareStatement(d.to_owned());
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(claims) else {
        return Err(invalid(
            "the software statement's payload is not a JSON object",
        ));
    };
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| invalid("the software statement has no iss"))?
        .to_owned();
    if claims
        .get("exp")
        .is_some_and(|e| e.as_i64().is_none_or(|e| e <= now))
    {
        return Err(invalid("the software statement has expired"));
    }
    if claims
        .get("nbf")
        .is_some_and(|n| n.as_i64().is_none_or(|n| n > now + 30))
    {
        return Err(invalid("the software statement is not valid yet"));
    }
    for (k, v) in claims {
        if !matches!(
            k.as_str(),
            "iss" | "iat" | "exp" | "nbf" | "jti" | "aud" | "sub" | "software_statement"
        ) {
            body.insert(k, v);
        }
    }
    body.remove("software_statement");
    Ok(iss)
}

/// What [`build_client`] decided besides the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub token_endpoint_auth_method: String,
    pub application_type: String,
    /// Whether the client authenticates with a shared secret (then it holds `new_secret`).
    pub uses_shared_secret: bool,
}

/// Maps registration metadata onto a client under the token's policy. `new_secret` becomes
/// the client's shared secret when it authenticates with one. Refuses what the policy does
/// not allow and what this server understands but cannot honour (never weakening it).
/// The client model's own rules and the scopes' existence are checked by the command.
pub fn build_client(
    m: &Metadata,
    policy: &RegistrationPolicy,
    client_id: &str,
    new_secret: &str,
) -> Result<(Client<SecretInput>, Built), RegistrationError> {
    // Grant and response types (RFC 7591 section 2.1), defaults `authorization_code` and
    // `code`, kept consistent.
    let grants = m
        .grant_types
        .clone()
        .unwrap_or_else(|| vec!["authorization_code".to_owned()]);
    for g in &grants {
        if !REGISTRATION_GRANT_TYPES.contains(&g.as_str()) {
            return Err(meta_err(format!(
                "grant_types: {g:?} is not supported; use {}",
                REGISTRATION_GRANT_TYPES.join(", ")
            )));
        }
        if !policy.allowed_grant_types.contains(g) {
            return Err(meta_err(format!(
                "grant_types: {g:?} is not allowed by the initial access token"
            )));
        }
    }
    let has = |g: &str| grants.iter().any(|x| x == g);
    let default_response = if has("authorization_code") {
        vec!["code".to_owned()]
    } else {
        Vec::new()
    };
    let responses = m.response_types.clone().unwrap_or(default_response);
    let mut implicit_response = false;
    let mut code_response = false;
    for r in &responses {
        match r.as_str() {
            "code" => code_response = true,
            "token" | "id_token" | "id_token token" => implicit_response = true,
            other => {
                return Err(meta_err(format!(
                    "response_types: {other:?} is not offered through registration (code, token, id_token, \"id_token token\")"
                )))
            }
        }
    }
    if code_response != has("authorization_code") {
        return Err(meta_err(
            "response_types and grant_types disagree: response type code goes with grant type authorization_code (RFC 7591 section 2.1)",
        ));
    }
    if implicit_response != has("implicit") {
        return Err(meta_err(
            "response_types and grant_types disagree: response types token and id_token go with grant type implicit (RFC 7591 section 2.1)",
        ));
    }
    if has("refresh_token")
        && !has("authorization_code")
        && !has("urn:ietf:params:oauth:grant-type:device_code")
    {
        return Err(meta_err(
            "grant_types: refresh_token needs authorization_code or the device code grant",
        ));
    }
    let mut allowed: Vec<GrantType> = Vec::new();
    for g in &grants {
        let t = match g.as_str() {
            "authorization_code" => GrantType::AuthorizationCode,
            "implicit" => GrantType::Implicit,
            "client_credentials" => GrantType::ClientCredentials,
            "urn:ietf:params:oauth:grant-type:device_code" => GrantType::DeviceCode,
            _ => continue, // refresh_token: allowOfflineAccess below
        };
        if !allowed.contains(&t) {
            allowed.push(t);
        }
    }

    // Client authentication (RFC 7591 section 2, default client_secret_basic).
    let method = m
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| "client_secret_basic".to_owned());
    if !AUTH_METHODS.contains(&method.as_str()) {
        return Err(meta_err(format!(
            "token_endpoint_auth_method: {method:?} is not supported; use {}",
            AUTH_METHODS.join(", ")
        )));
    }
    let public = method == "none";
    if public && !policy.allow_public_clients {
        return Err(meta_err(
            "token_endpoint_auth_method: public clients (none) are not allowed by the initial access token",
        ));
    }
    if !public && !policy.allow_confidential_clients {
        return Err(meta_err(
            "token_endpoint_auth_method: confidential clients are not allowed by the initial access token; use none",
        ));
    }
    if (m.jwks.is_some() || m.jwks_uri.is_some()) && method != "private_key_jwt" {
        return Err(meta_err(
            "jwks and jwks_uri are used only with token_endpoint_auth_method private_key_jwt",
        ));
    }
    let mut secrets = Vec::new();
    match method.as_str() {
        "client_secret_basic" | "client_secret_post" => secrets.push(SecretInput {
            description: Some("issued at registration".into()),
            value: Some(new_secret.to_owned()),
            expiration: None,
            kind: SHARED_SECRET.to_owned(),
            sealed: None,
        }),
        // The secret is sealed by the issuer before the command runs (`sealed`).
        "client_secret_jwt" => secrets.push(SecretInput {
            description: Some("issued at registration (client_secret_jwt)".into()),
            value: Some(new_secret.to_owned()),
            expiration: None,
            kind: crate::secret::CLIENT_SECRET_JWT.to_owned(),
            sealed: None,
        }),
        "private_key_jwt" if m.jwks_uri.is_some() => {}
        "private_key_jwt" => {
            let keys = m
                .jwks
                .as_ref()
                .and_then(|j| j.get("keys"))
                .and_then(Value::as_array)
                .filter(|k| !k.is_empty())
                .ok_or_else(|| {
                    meta_err(
                        "private_key_jwt needs jwks with at least one public key, or a jwks_uri",
                    )
                })?;
            for (i, k) in keys.iter().enumerate() {
                let value = k.to_string();
                if let Err(e) = signet_jose::ClientKey::parse(&value) {
                    return Err(meta_err(format!("jwks.keys[{i}]: {e}")));
                }
                secrets.push(SecretInput {
                    description: k
                        .get("kid")
                        .and_then(Value::as_str)
                        .map(|kid| format!("kid {kid}")),
                    value: Some(value),
                    expiration: None,
                    kind: JSON_WEB_KEY.to_owned(),
                    sealed: None,
                });
            }
        }
        _ => {}
    }

    // Redirect URIs: the server's rules, by application type, then the token's patterns.
    let app_type = m.application_type.clone().unwrap_or_else(|| "web".into());
    if !matches!(app_type.as_str(), "web" | "native") {
        return Err(meta_err("application_type must be web or native"));
    }
    let patterns: Vec<UriPattern> = policy
        .redirect_uri_patterns
        .iter()
        .filter_map(|p| UriPattern::parse(p).ok())
        .collect();
    for (list, name) in [
        (&m.redirect_uris, "redirect_uris"),
        (&m.post_logout_redirect_uris, "post_logout_redirect_uris"),
    ] {
        for (i, uri) in list.iter().enumerate() {
            let bad = |why: &str| {
                let msg = format!("{name}[{i}]: {why}");
                if name == "redirect_uris" {
                    RegistrationError::InvalidRedirectUri(msg)
                } else {
                    meta_err(msg)
                }
            };
            let u = url::Url::parse(uri).map_err(|_| bad("must be an absolute URI"))?;
            if u.fragment().is_some() || uri.contains('#') {
                return Err(bad("must not have a fragment"));
            }
            if u.cannot_be_a_base() || crate::redirect_uri::NEVER_SCHEMES.contains(&u.scheme()) {
                return Err(bad("this scheme is never allowed"));
            }
            let loopback = matches!(u.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
            let allowed_scheme = match u.scheme() {
                "https" => !loopback || app_type == "native",
                "http" => loopback && app_type == "native",
                s => s.contains('.') && app_type == "native",
            };
            if !allowed_scheme {
                return Err(bad(if app_type == "native" {
                    "must be https, http on a loopback host, or a private-use scheme (RFC 8252)"
                } else {
                    "a web client's redirect URIs must be https on a host other than loopback (native apps register with application_type native)"
                }));
            }
            if !patterns.is_empty() && !patterns.iter().any(|p| p.matches(&u)) {
                return Err(bad(
                    "does not match the redirect URI patterns of the initial access token",
                ));
            }
        }
    }

    // Scopes: a subset of the token's; absent, all of them.
    let scopes: Vec<String> = match &m.scope {
        Some(s) => {
            let mut v: Vec<String> = Vec::new();
            for s in s.split(' ').filter(|s| !s.is_empty()) {
                if !policy.allowed_scopes.iter().any(|a| a == s) {
                    return Err(meta_err(format!(
                        "scope: {s:?} is not allowed by the initial access token"
                    )));
                }
                if !v.iter().any(|x| x == s) {
                    v.push(s.to_owned());
                }
            }
            v
        }
        // offline_access only with refresh tokens (below).
        None => policy
            .allowed_scopes
            .iter()
            .filter(|s| has("refresh_token") || *s != crate::commands::OFFLINE_ACCESS)
            .cloned()
            .collect(),
    };
    let offline = has("refresh_token");
    if !offline && scopes.iter().any(|s| s == crate::commands::OFFLINE_ACCESS) {
        return Err(meta_err(
            "scope: offline_access needs the refresh_token grant type",
        ));
    }

    let mut c = Client::new(client_id);
    c.client_name = m.client_name.clone();
    c.client_uri = m.client_uri.clone();
    c.logo_uri = m.logo_uri.clone();
    c.require_client_secret = !public;
    c.client_secrets = secrets;
    c.redirect_uris = m.redirect_uris.clone();
    c.post_logout_redirect_uris = m.post_logout_redirect_uris.clone();
    c.allowed_grant_types = allowed;
    c.allowed_scopes = scopes;
    c.allow_offline_access = offline;
    c.front_channel_logout_uri = m.frontchannel_logout_uri.clone();
    if let Some(b) = m.frontchannel_logout_session_required {
        c.front_channel_logout_session_required = b;
    }
    c.back_channel_logout_uri = m.backchannel_logout_uri.clone();
    if let Some(b) = m.backchannel_logout_session_required {
        c.back_channel_logout_session_required = b;
    }
    c.require_pushed_authorization = m.require_pushed_authorization_requests.unwrap_or(false);
    c.jwks_uri = m.jwks_uri.clone();
    c.require_dpop = m.dpop_bound_access_tokens.unwrap_or(false);
    if let Some(max) = policy.max_access_token_lifetime {
        c.access_token_lifetime = c.access_token_lifetime.min(max);
    }
    if let Some(max) = policy.max_refresh_token_lifetime {
        c.absolute_refresh_token_lifetime = c.absolute_refresh_token_lifetime.min(max);
        c.sliding_refresh_token_lifetime = c.sliding_refresh_token_lifetime.min(max);
    }
    for (name, v) in [("client_uri", &c.client_uri), ("logo_uri", &c.logo_uri)] {
        if let Some(u) = v {
            let web = url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "https" | "http"));
            if !web {
                return Err(meta_err(format!("{name} must be an http or https URL")));
            }
        }
    }
    Ok((
        c,
        Built {
            token_endpoint_auth_method: method,
            application_type: app_type,
            uses_shared_secret: !public && m.jwks.is_none() && m.jwks_uri.is_none(),
        },
    ))
}

/// The client's metadata as registered (RFC 7591 section 3.2.1, RFC 7592 section 3),
/// without credentials: derived from the client as it is now.
pub fn metadata_of(c: &Client, r: &RegistrationInfo) -> Map<String, Value> {
    let mut o = Map::new();
    let mut put = |k: &str, v: Value| {
        o.insert(k.to_owned(), v);
    };
    put("client_id", Value::from(c.client_id.clone()));
    put("client_id_issued_at", Value::from(r.issued_at));
    let mut grants: Vec<&str> = c
        .allowed_grant_types
        .iter()
        .filter_map(|g| match g {
            GrantType::AuthorizationCode => Some("authorization_code"),
            GrantType::Implicit => Some("implicit"),
            GrantType::ClientCredentials => Some("client_credentials"),
            GrantType::DeviceCode => Some("urn:ietf:params:oauth:grant-type:device_code"),
            _ => None,
        })
        .collect();
    if c.allow_offline_access {
        grants.push("refresh_token");
    }
    let mut responses: Vec<&str> = Vec::new();
    if c.allows(GrantType::AuthorizationCode) {
        responses.push("code");
    }
    if c.allows(GrantType::Implicit) {
        responses.extend(["id_token", "id_token token"]);
    }
    put("grant_types", Value::from(grants));
    put("response_types", Value::from(responses));
    put("redirect_uris", Value::from(c.redirect_uris.clone()));
    // From the client as it is now (an admin may have changed its secrets since).
    let method = if !c.require_client_secret {
        "none"
    } else if c.client_secrets.iter().any(|s| s.kind == JSON_WEB_KEY) {
        "private_key_jwt"
    } else if c
        .client_secrets
        .iter()
        .any(|s| s.kind == crate::secret::CLIENT_SECRET_JWT)
    {
        "client_secret_jwt"
    } else if r.token_endpoint_auth_method == "client_secret_post" {
        "client_secret_post"
    } else {
        "client_secret_basic"
    };
    put("token_endpoint_auth_method", Value::from(method));
    put("application_type", Value::from(r.application_type.clone()));
    put("scope", Value::from(c.allowed_scopes.join(" ")));
    if !c.post_logout_redirect_uris.is_empty() {
        put(
            "post_logout_redirect_uris",
            Value::from(c.post_logout_redirect_uris.clone()),
        );
    }
    for (k, v) in [
        ("client_name", &c.client_name),
        ("client_uri", &c.client_uri),
        ("logo_uri", &c.logo_uri),
        ("frontchannel_logout_uri", &c.front_channel_logout_uri),
        ("backchannel_logout_uri", &c.back_channel_logout_uri),
    ] {
        if let Some(v) = v {
            put(k, Value::from(v.clone()));
        }
    }
    if c.front_channel_logout_uri.is_some() {
        put(
            "frontchannel_logout_session_required",
            Value::from(c.front_channel_logout_session_required),
        );
    }
    if c.back_channel_logout_uri.is_some() {
        put(
            "backchannel_logout_session_required",
            Value::from(c.back_channel_logout_session_required),
        );
    }
    put(
        "require_pushed_authorization_requests",
        Value::from(c.require_pushed_authorization),
    );
    if let Some(u) = &c.jwks_uri {
        put("jwks_uri", Value::from(u.clone()));
    }
    put("dpop_bound_access_tokens", Value::from(c.require_dpop));
    let keys: Vec<Value> = c
        .client_secrets
        .iter()
        .filter_map(|s| s.jwk.as_deref())
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect();
    if !keys.is_empty() {
        put("jwks", serde_json::json!({ "keys": keys }));
    }
    if let Some(iss) = &r.software_statement_iss {
        put("software_statement_iss", Value::from(iss.clone()));
    }
    o
}

#[cfg(test)]
mod tests;
