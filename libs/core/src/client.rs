//! The client model of the admin API's `/Client` resource, with the reference AuthService's
//! field names, types and defaults, and the rules a client must satisfy on its own.
//! Rules that need the rest of the configuration (scopes that exist) live in `commands`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_repr::{Deserialize_repr, Serialize_repr};

use crate::redirect_uri::{check_redirect_uri, RedirectUriPolicy};
use crate::secret::{SecretInput, SecretView, StoredSecret};
use crate::validation::{
    check_absolute_uri, check_name, check_origin, check_unique, Collector, ValidationErrors,
};
use crate::Algorithm;

/// Grant types a client may be allowed. Unknown names are refused when the body is read.
/// ROPC (`password`) is absent on purpose (RFC 9700 section 2.4); refresh tokens are
/// governed by `allowOfflineAccess`, not by a grant type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum GrantType {
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    #[serde(rename = "implicit")]
    Implicit,
    #[serde(rename = "hybrid")]
    Hybrid,
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
    /// RFC 8693: exchanging a user's API key for a short-lived access token.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

impl GrantType {
    /// Flows where a user signs in through a browser.
    pub fn is_interactive(self) -> bool {
        matches!(
            self,
            GrantType::AuthorizationCode | GrantType::Implicit | GrantType::Hybrid
        )
    }
}

/// `refreshTokenUsage`: whether a refresh token is reused. 0 re-use: the handle stays the
/// same when tokens are refreshed; 1 one time only: a refresh issues a new handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(default = 1))]
#[repr(u8)]
pub enum TokenUsage {
    ReUse = 0,
    #[default]
    OneTimeOnly = 1,
}

/// `refreshTokenExpiration`: how a refresh token expires. 0 sliding: each refresh renews its
/// lifetime by `slidingRefreshTokenLifetime`, never beyond `absoluteRefreshTokenLifetime`;
/// 1 absolute: it expires `absoluteRefreshTokenLifetime` after issuance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(default = 1))]
#[repr(u8)]
pub enum TokenExpiration {
    Sliding = 0,
    #[default]
    Absolute = 1,
}

/// `accessTokenType`: 0 a self-contained JWT, verifiable with the published keys alone and
/// valid until it expires; 1 a reference token, an opaque handle the API resolves with the
/// server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(default = 0))]
#[repr(u8)]
pub enum AccessTokenType {
    #[default]
    Jwt = 0,
    Reference = 1,
}

/// `profile`: a security profile the client is held to. The profile does not switch
/// behaviour on behind the operator's back: a client that sets it must set every flag the
/// profile demands (a client that does not is a `400` naming the flag), so reading the
/// client shows what is enforced. The profile adds only the rules no flag expresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ClientProfile {
    /// The FAPI 2.0 Security Profile: pushed authorization requests, PKCE S256, the code
    /// flow only, DPoP-bound (sender-constrained) tokens, `private_key_jwt` with the issuer identifier (a string) as the only
    /// accepted assertion audience, authorization codes of at most 60 seconds, https
    /// redirect URIs, refresh tokens that are not rotated (so a lost response loses
    /// nothing), no tokens through the browser.
    #[serde(rename = "fapi2")]
    Fapi2,
}

/// The longest authorization code lifetime the FAPI 2.0 profile allows, in seconds.
pub const FAPI2_MAX_CODE_LIFETIME: u32 = 60;

/// A claim attached to a client (`claims`), emitted into its access tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientClaim {
    /// The claim type (its name in the token, behind `clientClaimsPrefix`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The claim value.
    pub value: String,
    /// The value's type, e.g. `http://www.w3.org/2001/XMLSchema#string`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
}

/// The schema of [`Algorithm`] in the OpenAPI document.
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[schema(as = Algorithm, description = "A JWS signing algorithm.")]
#[allow(clippy::upper_case_acronyms)]
pub enum AlgorithmSchema {
    RS256,
    PS256,
    ES256,
    EdDSA,
}

fn yes() -> bool {
    true
}
fn oidc() -> String {
    "oidc".to_owned()
}
fn s300() -> u32 {
    300
}
fn s3600() -> u32 {
    3600
}
fn s30d() -> u32 {
    2_592_000
}
fn s15d() -> u32 {
    1_296_000
}

/// A registered client. `S` is the shape of its secrets: [`SecretInput`] when written,
/// [`StoredSecret`] in events and the projection, [`SecretView`] when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "A client application that requests tokens. Members left out get their default.",
        bound = "S: utoipa::ToSchema"
    )
)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    bound(serialize = "S: Serialize", deserialize = "S: Deserialize<'de>")
)]
pub struct Client<S = StoredSecret> {
    /// Unique ID of the client.
    #[cfg_attr(feature = "openapi", schema(example = "configportalclient"))]
    pub client_id: String,
    /// Display name of the client (for logs and the consent screen).
    #[serde(default)]
    pub client_name: Option<String>,
    /// URI of further information about the client (for the consent screen).
    #[serde(default)]
    pub client_uri: Option<String>,
    /// URI of the client's logo (for the consent screen).
    #[serde(default)]
    pub logo_uri: Option<String>,
    /// Whether the client is enabled.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub enabled: bool,
    /// The protocol type; `oidc` is the only one.
    #[serde(default = "oidc")]
    #[cfg_attr(feature = "openapi", schema(default = oidc))]
    pub protocol_type: String,
    /// Description of the client application.
    #[serde(default)]
    pub description: Option<String>,
    /// Salt for pair-wise subject identifiers of this client's users.
    #[serde(default)]
    pub pair_wise_subject_salt: Option<String>,
    /// Type of the device flow user code: null, `""` or `"Consonants"` (the default: 8
    /// characters from `BCDFGHJKLMNPQRSTVWXZ`, shown `XXXX-XXXX`), or `"Numeric"` (9
    /// digits, shown `XXX-XXX-XXX`).
    #[serde(default)]
    pub user_code_type: Option<String>,
    /// Lifetime of an identity token, in seconds (5 minutes).
    #[serde(default = "s300")]
    #[cfg_attr(feature = "openapi", schema(default = s300))]
    pub identity_token_lifetime: u32,
    /// Lifetime of an access token, in seconds (1 hour).
    #[serde(default = "s3600")]
    #[cfg_attr(feature = "openapi", schema(default = s3600))]
    pub access_token_lifetime: u32,
    /// Lifetime of an authorization code, in seconds (5 minutes).
    #[serde(default = "s300")]
    #[cfg_attr(feature = "openapi", schema(default = s300))]
    pub authorization_code_lifetime: u32,
    /// Maximum lifetime of a refresh token, in seconds (30 days).
    #[serde(default = "s30d")]
    #[cfg_attr(feature = "openapi", schema(default = s30d))]
    pub absolute_refresh_token_lifetime: u32,
    /// Sliding lifetime of a refresh token, in seconds (15 days); at most
    /// `absoluteRefreshTokenLifetime`.
    #[serde(default = "s15d")]
    #[cfg_attr(feature = "openapi", schema(default = s15d))]
    pub sliding_refresh_token_lifetime: u32,
    /// Lifetime of a user's consent, in seconds; null: it does not expire.
    #[serde(default)]
    pub consent_lifetime: Option<u32>,
    /// Maximum time since the user last authenticated, in seconds; null: no limit.
    #[serde(default)]
    pub user_sso_lifetime: Option<u32>,
    /// Lifetime of a device code and its user code, in seconds (5 minutes).
    #[serde(default = "s300")]
    #[cfg_attr(feature = "openapi", schema(default = s300))]
    pub device_code_lifetime: u32,
    /// Whether a refresh token is reused (0) or replaced at each refresh (1).
    #[serde(default)]
    pub refresh_token_usage: TokenUsage,
    /// Whether a refresh reloads the user's current claims into the new access token;
    /// false: it carries the user claims of the grant, as the first access token did.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub update_access_token_claims_on_refresh: bool,
    /// Sliding (0) or absolute (1) refresh token expiration.
    #[serde(default)]
    pub refresh_token_expiration: TokenExpiration,
    /// Self-contained JWT (0) or reference (1) access tokens.
    #[serde(default)]
    pub access_token_type: AccessTokenType,
    /// Whether local login is allowed for this client. Must be true: local login is the
    /// only sign-in until external identity providers exist.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub enable_local_login: bool,
    /// Whether JWT access tokens carry an identifier (`jti`).
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub include_jwt_id: bool,
    /// Whether the client must present a secret at the token endpoint; false: a public client.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub require_client_secret: bool,
    /// Whether a consent screen is shown.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub require_consent: bool,
    /// Whether the user may have consent decisions remembered.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub allow_remember_consent: bool,
    /// Whether authorization-code requests need a proof key (PKCE).
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub require_pkce: bool,
    /// Whether the proof key may use the `plain` method (not recommended).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub allow_plain_text_pkce: bool,
    /// Whether authorization requests must be signed request objects (RFC 9101: the
    /// `request` parameter at `/oauth2/authorize`, or inside a push to `/oauth2/par`),
    /// signed with one of the client's `JsonWebKey` secrets; a plain request or push is
    /// refused with `invalid_request`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub require_request_object: bool,
    /// Whether authorization requests must be pushed to `/oauth2/par` first (RFC 9126
    /// section 5); a plain authorization request is refused with `invalid_request`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub require_pushed_authorization: bool,
    /// A security profile the client is held to (`"fapi2"`: the FAPI 2.0 Security
    /// Profile); null: none. See [`ClientProfile`]: the client must set the flags the
    /// profile demands.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub profile: Option<ClientProfile>,
    /// Whether every token request must carry a DPoP proof (RFC 9449), so every access
    /// token is DPoP-bound (IdentityServer's `requireDPoP`); a request without one is
    /// refused with `invalid_dpop_proof`.
    #[serde(default, rename = "requireDPoP")]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub require_dpop: bool,
    /// Whether access tokens may be transmitted through the browser.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub allow_access_tokens_via_browser: bool,
    /// Whether client claims go into every access token, not only client-credentials ones.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub always_send_client_claims: bool,
    /// Prefix put before the client claim types; null: no prefix.
    #[serde(default)]
    pub client_claims_prefix: Option<String>,
    /// Whether user claims always go into the identity token (rather than through userinfo).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub always_include_user_claims_in_id_token: bool,
    /// Whether offline access (refresh tokens) is allowed.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub allow_offline_access: bool,
    /// Whether the client's refresh tokens end with the user's session (sign-out, an
    /// administrator or the user ending it). False: a refresh token, always issued for
    /// `offline_access`, outlives the session it was issued in (OpenID Connect
    /// Back-Channel Logout 1.0 section 2.7), and the access tokens refreshed from it do not
    /// carry the session's `sid`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub coordinate_lifetime_with_user_session: bool,
    /// The client's logout URI for OpenID Connect Front-Channel Logout: the signed-out page
    /// loads it in a hidden iframe when a session the client took part in ends. An absolute
    /// http(s) URL without a fragment.
    #[serde(default)]
    pub front_channel_logout_uri: Option<String>,
    /// Whether `iss` and `sid` are added to `frontChannelLogoutUri`'s query.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub front_channel_logout_session_required: bool,
    /// The client's logout URI for OpenID Connect Back-Channel Logout: a logout token is
    /// POSTed to it (from a durable queue, with retries) when a session the client took
    /// part in ends. An absolute http(s) URL without a fragment.
    #[serde(default)]
    pub back_channel_logout_uri: Option<String>,
    /// Whether the logout token must carry `sid`. Signet's logout tokens always carry both
    /// `sid` and `sub`, so either value is honoured.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = yes))]
    pub back_channel_logout_session_required: bool,
    /// Where the client publishes its public keys (a JWK Set, RFC 7517 section 5) for
    /// `private_key_jwt` and signed request objects: https (http only on a loopback host).
    /// Fetched through the outbound guard, cached no longer than the answer's
    /// `Cache-Control` (at most an hour), refetched (rate-limited) on an unknown `kid`. The
    /// keys join the client's `JsonWebKey` secrets; the client then authenticates with
    /// `private_key_jwt` only.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Secrets for the flows that authenticate the client. Write-only: reads return their
    /// description, expiration and type; a `PUT` without this member keeps the stored ones.
    #[serde(default = "Vec::new")]
    #[cfg_attr(feature = "openapi", schema(default = json!([])))]
    pub client_secrets: Vec<S>,
    /// URIs tokens or authorization codes may be returned to (absolute, no fragment,
    /// matched exactly; https, http on a loopback host, or a private-use scheme such as
    /// com.example.app:/cb; a loopback IP URI matches any port, RFC 8252).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = json!([])))]
    pub redirect_uris: Vec<String>,
    /// URIs the user may be redirected to after logout (checked like `redirectUris`); kept
    /// for the end-session endpoint, which does not exist yet.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = json!([])))]
    pub post_logout_redirect_uris: Vec<String>,
    /// Origins allowed to call from a browser (CORS), as `scheme://host[:port]`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = json!([])))]
    pub allowed_cors_origins: Vec<String>,
    /// The grant types the client may use: a UI-centric flow (`implicit`,
    /// `authorization_code`, `hybrid`) or a backend flow (`client_credentials`), never both.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = json!([])))]
    pub allowed_grant_types: Vec<GrantType>,
    /// The scopes the client may request (each must exist); empty: none.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = json!([])))]
    pub allowed_scopes: Vec<String>,
    /// Signing algorithms for identity tokens; empty: the server's default.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Vec<AlgorithmSchema>, default = json!([]))
    )]
    pub allowed_identity_token_signing_algorithms: Vec<Algorithm>,
    /// External identity providers the client may use; empty: all of them. Not supported
    /// yet (no external identity providers): must be empty.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = json!([])))]
    pub identity_provider_restrictions: Vec<String>,
    /// Claims of the client, included in its access tokens.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = json!([])))]
    pub claims: Vec<ClientClaim>,
    /// Custom properties of the client.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = json!({})))]
    pub properties: BTreeMap<String, String>,
}

/// Claim names that protocol code sets; a client claim may not overwrite them.
pub const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "auth_time",
    "acr",
    "amr",
    "azp",
    "nonce",
    "sid",
    "cnf",
    "at_hash",
    "c_hash",
    "typ",
    "act",
    "may_act",
];

impl<S> Client<S> {
    /// Seconds the longest-lived token, code or refresh token of this client can live: how
    /// long a revocation of everything it was issued must be remembered.
    pub fn longest_lifetime(&self) -> i64 {
        [
            self.identity_token_lifetime,
            self.access_token_lifetime,
            self.authorization_code_lifetime,
            self.absolute_refresh_token_lifetime,
            self.sliding_refresh_token_lifetime,
            self.device_code_lifetime,
        ]
        .into_iter()
        .map(i64::from)
        .max()
        .unwrap_or(0)
    }

    /// A client with the reference defaults for every field.
    pub fn new(client_id: impl Into<String>) -> Self {
        Client {
            client_id: client_id.into(),
            client_name: None,
            client_uri: None,
            logo_uri: None,
            enabled: true,
            protocol_type: oidc(),
            description: None,
            pair_wise_subject_salt: None,
            user_code_type: None,
            identity_token_lifetime: s300(),
            access_token_lifetime: s3600(),
            authorization_code_lifetime: s300(),
            absolute_refresh_token_lifetime: s30d(),
            sliding_refresh_token_lifetime: s15d(),
            consent_lifetime: None,
            user_sso_lifetime: None,
            device_code_lifetime: s300(),
            refresh_token_usage: TokenUsage::default(),
            update_access_token_claims_on_refresh: false,
            refresh_token_expiration: TokenExpiration::default(),
            access_token_type: AccessTokenType::default(),
            enable_local_login: true,
            include_jwt_id: true,
            require_client_secret: true,
            require_consent: false,
            allow_remember_consent: true,
            require_pkce: true,
            allow_plain_text_pkce: false,
            require_request_object: false,
            require_pushed_authorization: false,
            profile: None,
            require_dpop: false,
            allow_access_tokens_via_browser: false,
            always_send_client_claims: false,
            client_claims_prefix: None,
            always_include_user_claims_in_id_token: false,
            allow_offline_access: false,
            coordinate_lifetime_with_user_session: false,
            front_channel_logout_uri: None,
            front_channel_logout_session_required: true,
            back_channel_logout_uri: None,
            back_channel_logout_session_required: true,
            jwks_uri: None,
            client_secrets: Vec::new(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            allowed_cors_origins: Vec::new(),
            allowed_grant_types: Vec::new(),
            allowed_scopes: Vec::new(),
            allowed_identity_token_signing_algorithms: Vec::new(),
            identity_provider_restrictions: Vec::new(),
            claims: Vec::new(),
            properties: BTreeMap::new(),
        }
    }

    /// Maps the secrets to another shape, keeping every other field.
    pub fn map_secrets<T>(self, f: impl FnMut(S) -> T) -> Client<T> {
        let Client {
            client_id,
            client_name,
            client_uri,
            logo_uri,
            enabled,
            protocol_type,
            description,
            pair_wise_subject_salt,
            user_code_type,
            identity_token_lifetime,
            access_token_lifetime,
            authorization_code_lifetime,
            absolute_refresh_token_lifetime,
            sliding_refresh_token_lifetime,
            consent_lifetime,
            user_sso_lifetime,
            device_code_lifetime,
            refresh_token_usage,
            update_access_token_claims_on_refresh,
            refresh_token_expiration,
            access_token_type,
            enable_local_login,
            include_jwt_id,
            require_client_secret,
            require_consent,
            allow_remember_consent,
            require_pkce,
            allow_plain_text_pkce,
            require_request_object,
            require_pushed_authorization,
            profile,
            require_dpop,
            allow_access_tokens_via_browser,
            always_send_client_claims,
            client_claims_prefix,
            always_include_user_claims_in_id_token,
            allow_offline_access,
            coordinate_lifetime_with_user_session,
            front_channel_logout_uri,
            front_channel_logout_session_required,
            back_channel_logout_uri,
            back_channel_logout_session_required,
            jwks_uri,
            client_secrets,
            redirect_uris,
            post_logout_redirect_uris,
            allowed_cors_origins,
            allowed_grant_types,
            allowed_scopes,
            allowed_identity_token_signing_algorithms,
            identity_provider_restrictions,
            claims,
            properties,
        } = self;
        Client {
            client_secrets: client_secrets.into_iter().map(f).collect(),
            client_id,
            client_name,
            client_uri,
            logo_uri,
            enabled,
            protocol_type,
            description,
            pair_wise_subject_salt,
            user_code_type,
            identity_token_lifetime,
            access_token_lifetime,
            authorization_code_lifetime,
            absolute_refresh_token_lifetime,
            sliding_refresh_token_lifetime,
            consent_lifetime,
            user_sso_lifetime,
            device_code_lifetime,
            refresh_token_usage,
            update_access_token_claims_on_refresh,
            refresh_token_expiration,
            access_token_type,
            enable_local_login,
            include_jwt_id,
            require_client_secret,
            require_consent,
            allow_remember_consent,
            require_pkce,
            allow_plain_text_pkce,
            require_request_object,
            require_pushed_authorization,
            profile,
            require_dpop,
            allow_access_tokens_via_browser,
            always_send_client_claims,
            client_claims_prefix,
            always_include_user_claims_in_id_token,
            allow_offline_access,
            coordinate_lifetime_with_user_session,
            front_channel_logout_uri,
            front_channel_logout_session_required,
            back_channel_logout_uri,
            back_channel_logout_session_required,
            jwks_uri,
            redirect_uris,
            post_logout_redirect_uris,
            allowed_cors_origins,
            allowed_grant_types,
            allowed_scopes,
            allowed_identity_token_signing_algorithms,
            identity_provider_restrictions,
            claims,
            properties,
        }
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.allowed_grant_types.contains(&grant)
    }

    /// The claim name a client claim gets in tokens: its type behind `clientClaimsPrefix`.
    pub fn claim_name(&self, claim: &ClientClaim) -> String {
        format!(
            "{}{}",
            self.client_claims_prefix.as_deref().unwrap_or(""),
            claim.kind
        )
    }
}

/// Upper bounds of a client's lifetime fields, in seconds: a server setting
/// (`--lifetime-limits`), so an operator's typo cannot make a token live for decades.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifetimeLimits(BTreeMap<&'static str, u32>);

/// The lifetime fields, with their default upper bounds.
const LIFETIME_LIMITS: &[(&str, u32)] = &[
    ("identityTokenLifetime", 86_400),
    ("accessTokenLifetime", 86_400),
    // RFC 6749 section 4.1.2 recommends at most ten minutes; the reference's real-life
    // client uses 30,800 s, so the default bound is a day and operators may lower it.
    ("authorizationCodeLifetime", 86_400),
    ("absoluteRefreshTokenLifetime", 31_536_000),
    ("slidingRefreshTokenLifetime", 31_536_000),
    ("consentLifetime", 31_536_000),
    ("userSsoLifetime", 31_536_000),
    ("deviceCodeLifetime", 3_600),
];

impl Default for LifetimeLimits {
    fn default() -> Self {
        LifetimeLimits(LIFETIME_LIMITS.iter().copied().collect())
    }
}

/// A `--lifetime-limits` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid lifetime limit {0:?}: expected FIELD=SECONDS with a positive number of seconds and FIELD one of identityTokenLifetime, accessTokenLifetime, authorizationCodeLifetime, absoluteRefreshTokenLifetime, slidingRefreshTokenLifetime, consentLifetime, userSsoLifetime, deviceCodeLifetime")]
pub struct LifetimeLimitError(String);

impl LifetimeLimits {
    /// The bound of `field`.
    pub fn of(&self, field: &str) -> u32 {
        self.0.get(field).copied().unwrap_or(u32::MAX)
    }

    /// The defaults with some bounds replaced: `FIELD=SECONDS[,FIELD=SECONDS...]`.
    pub fn parse(spec: &str) -> Result<Self, LifetimeLimitError> {
        let mut limits = Self::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || LifetimeLimitError(part.to_owned());
            let (field, secs) = part.split_once('=').ok_or_else(bad)?;
            let key = LIFETIME_LIMITS
                .iter()
                .map(|(f, _)| *f)
                .find(|f| *f == field.trim())
                .ok_or_else(bad)?;
            let secs: u32 = secs
                .trim()
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(bad)?;
            limits.0.insert(key, secs);
        }
        Ok(limits)
    }
}

/// What the server's configuration adds to the client rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientPolicy {
    /// Upper bounds of the lifetime fields (`--lifetime-limits`).
    pub lifetimes: LifetimeLimits,
    /// How strictly redirect URIs are checked (`--insecure-allow-any-redirect-uri`).
    pub redirect_uris: RedirectUriPolicy,
}

impl ClientPolicy {
    /// The loosest policy any server may run with: for client-side checks (`signet admin
    /// apply`) that leave these rules to the server.
    pub fn lenient() -> Self {
        ClientPolicy {
            lifetimes: LifetimeLimits(
                LIFETIME_LIMITS
                    .iter()
                    .map(|(f, _)| (*f, u32::MAX))
                    .collect(),
            ),
            redirect_uris: RedirectUriPolicy::AllowAny,
        }
    }
}

/// The shortest shared secret accepted: 16 characters (random ones: about 96 bits).
pub const MIN_SECRET_LENGTH: usize = 16;

/// Checks the secrets an admin writes. A `SharedSecret`'s value is long enough to resist
/// guessing (an empty value carries no credential and is allowed). Where `keys` (clients), a
/// `JsonWebKey`'s value is a public JWK this server can verify with, an
/// `X509CertificateBase64`'s a DER certificate in base64 and an `X509Name`'s an RFC 4514
/// DN (mutual TLS, RFC 8705); any other type is refused.
pub fn check_secrets(c: &mut Collector, field: &str, secrets: &[SecretInput], keys: bool) {
    use crate::secret::{
        CLIENT_SECRET_JWT, JSON_WEB_KEY, MIN_JWT_SECRET_LENGTH, SHARED_SECRET, X509_CERTIFICATE,
        X509_NAME, X509_TYPES,
    };
    for (i, s) in secrets.iter().enumerate() {
        let value = s.value.as_deref().filter(|v| !v.is_empty());
        match s.kind.as_str() {
            SHARED_SECRET => {
                if let Some(v) = value {
                    c.check(
                        v.chars().count() >= MIN_SECRET_LENGTH,
                        format!("{field}[{i}].value"),
                        format!("must be at least {MIN_SECRET_LENGTH} characters; use a random value, e.g. `openssl rand -base64 32`"),
                    );
                }
            }
            JSON_WEB_KEY if keys => match value {
                None => c.push(
                    format!("{field}[{i}].value"),
                    "a JsonWebKey secret needs a value: the client's public JWK as a JSON string",
                ),
                Some(v) => {
                    if let Err(e) = signet_jose::ClientKey::parse(v) {
                        c.push(format!("{field}[{i}].value"), e.to_string());
                    }
                }
            },
            CLIENT_SECRET_JWT if keys => match value {
                None => c.push(
                    format!("{field}[{i}].value"),
                    "a ClientSecretJwt secret needs a value: the shared secret the client signs its assertions with",
                ),
                Some(v) => c.check(
                    v.len() >= MIN_JWT_SECRET_LENGTH,
                    format!("{field}[{i}].value"),
                    format!("must be at least {MIN_JWT_SECRET_LENGTH} bytes (an HS256 key is as long as its hash, RFC 7518 section 3.2); use a random value, e.g. `openssl rand -base64 48`"),
                ),
            },
            X509_CERTIFICATE if keys => {
                use base64::Engine;
                let ok = value
                    .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v.trim()).ok())
                    .is_some_and(|der| crate::mtls::certificate_facts(&der).is_ok());
                c.check(
                    ok,
                    format!("{field}[{i}].value"),
                    "an X509CertificateBase64 secret's value is the client's certificate: DER in standard base64 (the PEM body without its BEGIN/END lines and line breaks)",
                );
            }
            X509_NAME if keys => match value.map(crate::mtls::canonical_dn) {
                None => c.push(
                    format!("{field}[{i}].value"),
                    "an X509Name secret needs a value: the subject DN of the client's certificate (RFC 4514, e.g. CN=client,O=Example,C=SE)",
                ),
                Some(Err(e)) => c.push(format!("{field}[{i}].value"), e.to_string()),
                Some(Ok(_)) => {}
            },
            t if t == JSON_WEB_KEY || t == CLIENT_SECRET_JWT || X509_TYPES.contains(&t) => c.push(
                format!("{field}[{i}].type"),
                "only \"SharedSecret\" is supported here",
            ),
            _ => c.push(
                format!("{field}[{i}].type"),
                "must be SharedSecret, JsonWebKey, ClientSecretJwt, X509CertificateBase64 or X509Name",
            ),
        }
    }
    if keys {
        let all_or_none = |matching: &dyn Fn(&str) -> bool| {
            let n = secrets.iter().filter(|s| matching(&s.kind)).count();
            n == 0 || n == secrets.len()
        };
        c.check(
            all_or_none(&|k| k == JSON_WEB_KEY)
                && all_or_none(&|k| k == CLIENT_SECRET_JWT)
                && all_or_none(&|k| X509_TYPES.contains(&k)),
            field,
            "a client's secrets are all SharedSecret (client_secret_basic/post), all JsonWebKey (private_key_jwt), all ClientSecretJwt (client_secret_jwt) or all X509CertificateBase64/X509Name (mutual TLS), never a mix: the secret types decide how the client authenticates",
        );
    }
}

/// `jwksUri`: an absolute https URL without a fragment, or http on a loopback host (a
/// client under development), never with user information.
fn check_jwks_uri(c: &mut Collector, u: &str) {
    let ok = url::Url::parse(u).is_ok_and(|p| {
        let loopback = match p.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        p.host().is_some()
            && p.fragment().is_none()
            && p.username().is_empty()
            && p.password().is_none()
            && (p.scheme() == "https" || (p.scheme() == "http" && loopback))
    });
    c.check(
        ok,
        "jwksUri",
        "must be an absolute https URL without a fragment or user information (http only on a loopback host)",
    );
}

/// No accepted field is silently ignored: a field whose feature this server lacks is
/// refused when set to anything but its default, naming the field, rather than stored and
/// ignored (an admin would believe, say, that back-channel logout reaches their app). The
/// field walk in `field_coverage` proves every field is either here or takes effect.
/// The client property naming the authentication level (`pwd`, `mfa`, `phr`) every
/// sign-in for this client must reach ([`crate::mfa::Level`]).
pub const REQUIRED_ACR_PROPERTY: &str = "requiredAcr";

impl<S> Client<S> {
    /// The level the client's `requiredAcr` property demands, if any.
    pub fn required_acr(&self) -> Option<crate::mfa::Level> {
        self.properties
            .get(REQUIRED_ACR_PROPERTY)
            .and_then(|v| crate::mfa::Level::parse(v))
    }
}

fn check_unsupported<S>(c: &mut Collector, client: &Client<S>) {
    // Every field has its feature now; identityProviderRestrictions only needs names
    // that can be schemes (a name of a provider not (yet) created is simply not offered).
    for (i, s) in client.identity_provider_restrictions.iter().enumerate() {
        c.check(
            crate::identity_provider::valid_scheme(s),
            format!("identityProviderRestrictions[{i}]"),
            "must be an identity provider scheme: 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
        );
    }
}

impl Client<SecretInput> {
    /// The rules a client satisfies on its own (the reference's configuration rules), with
    /// the default policy (strict redirect URIs, default lifetime bounds).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        self.validate_with(&ClientPolicy::default())
    }

    /// [`Client::validate`] with the server's policy.
    pub fn validate_with(&self, policy: &ClientPolicy) -> Result<(), ValidationErrors> {
        let limits = &policy.lifetimes;
        let mut c = Collector::default();
        for (field, v) in [
            ("identityTokenLifetime", Some(self.identity_token_lifetime)),
            ("accessTokenLifetime", Some(self.access_token_lifetime)),
            (
                "authorizationCodeLifetime",
                Some(self.authorization_code_lifetime),
            ),
            (
                "absoluteRefreshTokenLifetime",
                Some(self.absolute_refresh_token_lifetime),
            ),
            (
                "slidingRefreshTokenLifetime",
                Some(self.sliding_refresh_token_lifetime),
            ),
            ("consentLifetime", self.consent_lifetime),
            ("userSsoLifetime", self.user_sso_lifetime),
            ("deviceCodeLifetime", Some(self.device_code_lifetime)),
        ] {
            if let Some(v) = v {
                let max = limits.of(field);
                c.check(
                    v <= max,
                    field,
                    format!("must be at most {max} seconds (the server's --lifetime-limits)"),
                );
            }
        }
        check_secrets(&mut c, "clientSecrets", &self.client_secrets, true);
        check_name(&mut c, "clientId", &self.client_id);
        c.check(
            crate::device::UserCodeType::parse(self.user_code_type.as_deref()).is_some(),
            "userCodeType",
            format!(
                "must be null, \"\" or one of {}",
                crate::device::USER_CODE_TYPES
                    .iter()
                    .map(|t| format!("{t:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        c.check(
            self.protocol_type == "oidc",
            "protocolType",
            "must be \"oidc\"",
        );
        for (field, v) in [
            ("identityTokenLifetime", self.identity_token_lifetime),
            ("accessTokenLifetime", self.access_token_lifetime),
            (
                "authorizationCodeLifetime",
                self.authorization_code_lifetime,
            ),
            (
                "absoluteRefreshTokenLifetime",
                self.absolute_refresh_token_lifetime,
            ),
            (
                "slidingRefreshTokenLifetime",
                self.sliding_refresh_token_lifetime,
            ),
            ("deviceCodeLifetime", self.device_code_lifetime),
        ] {
            c.check(v > 0, field, "must be a positive number of seconds");
        }
        for (field, v) in [
            ("consentLifetime", self.consent_lifetime),
            ("userSsoLifetime", self.user_sso_lifetime),
        ] {
            c.check(
                v != Some(0),
                field,
                "must be a positive number of seconds or null",
            );
        }
        c.check(
            self.sliding_refresh_token_lifetime <= self.absolute_refresh_token_lifetime,
            "slidingRefreshTokenLifetime",
            "must not exceed absoluteRefreshTokenLifetime",
        );

        // Grant types: known (enforced by the type), unique, and never a UI-centric flow
        // together with a backend flow.
        let grants = &self.allowed_grant_types;
        c.check(
            !grants.is_empty(),
            "allowedGrantTypes",
            "must name at least one grant type",
        );
        let mut seen = std::collections::HashSet::new();
        for (i, g) in grants.iter().enumerate() {
            c.check(
                seen.insert(*g),
                format!("allowedGrantTypes[{i}]"),
                "duplicate grant type",
            );
        }
        let interactive = grants.iter().any(|g| g.is_interactive());
        if interactive && self.allows(GrantType::ClientCredentials) {
            c.push(
                "allowedGrantTypes",
                "a client uses a UI-centric flow (implicit, authorization_code, hybrid) or a backend flow (client_credentials), never both",
            );
        }
        if self.allows(GrantType::Implicit)
            && (self.allows(GrantType::AuthorizationCode) || self.allows(GrantType::Hybrid))
        {
            c.push(
                "allowedGrantTypes",
                "implicit cannot be combined with authorization_code or hybrid",
            );
        }
        if self.allows(GrantType::AuthorizationCode) && self.allows(GrantType::Hybrid) {
            c.push(
                "allowedGrantTypes",
                "authorization_code cannot be combined with hybrid",
            );
        }
        if interactive && self.redirect_uris.is_empty() {
            c.push(
                "redirectUris",
                "a client with a UI-centric flow needs at least one redirect URI",
            );
        }

        // Secrets: a confidential client that uses client_credentials must have one.
        let usable = self
            .client_secrets
            .iter()
            .filter(|s| s.value.as_deref().is_some_and(|v| !v.is_empty()))
            .count();
        if self.allows(GrantType::ClientCredentials) {
            c.check(
                self.require_client_secret,
                "requireClientSecret",
                "must be true for a client that uses client_credentials",
            );
            c.check(
                usable > 0 || self.jwks_uri.is_some(),
                "clientSecrets",
                "a client_credentials client needs at least one secret with a value (or a jwksUri)",
            );
        }
        if !self.require_client_secret
            && self
                .client_secrets
                .iter()
                .any(|s| s.kind == crate::secret::JSON_WEB_KEY)
        {
            c.push(
                "requireClientSecret",
                "must be true for a client with JsonWebKey secrets (it authenticates with private_key_jwt)",
            );
        }
        if self.require_request_object {
            // Request objects are verified with the client's public keys: without any, no
            // authorization request of this client could ever pass.
            c.check(
                self.jwks_uri.is_some()
                    || self
                        .client_secrets
                        .iter()
                        .any(|s| s.kind == crate::secret::JSON_WEB_KEY),
                "requireRequestObject",
                "needs JsonWebKey secrets or a jwksUri: request objects are signed with the client's keys",
            );
        }
        if !self.require_client_secret
            && self
                .client_secrets
                .iter()
                .any(|s| s.kind == crate::secret::CLIENT_SECRET_JWT)
        {
            c.push(
                "requireClientSecret",
                "must be true for a client with ClientSecretJwt secrets (it authenticates with client_secret_jwt)",
            );
        }
        if !self.require_client_secret
            && self
                .client_secrets
                .iter()
                .any(|s| crate::secret::X509_TYPES.contains(&s.kind.as_str()))
        {
            c.push(
                "requireClientSecret",
                "must be true for a client with X509CertificateBase64 or X509Name secrets (it authenticates with mutual TLS)",
            );
        }
        if let Some(u) = &self.jwks_uri {
            check_jwks_uri(&mut c, u);
            c.check(
                self.require_client_secret,
                "requireClientSecret",
                "must be true for a client with a jwksUri (it authenticates with private_key_jwt)",
            );
            c.check(
                self.client_secrets
                    .iter()
                    .all(|s| s.kind == crate::secret::JSON_WEB_KEY),
                "jwksUri",
                "a client with a jwksUri authenticates with private_key_jwt: its clientSecrets may only be JsonWebKey ones",
            );
        }
        if self.require_client_secret {
            for (i, s) in self.client_secrets.iter().enumerate() {
                c.check(
                    s.value.as_deref().is_some_and(|v| !v.is_empty()),
                    format!("clientSecrets[{i}].value"),
                    "must not be empty when requireClientSecret is true",
                );
            }
        }

        for (list, field) in [
            (&self.redirect_uris, "redirectUris"),
            (&self.post_logout_redirect_uris, "postLogoutRedirectUris"),
        ] {
            for (i, u) in list.iter().enumerate() {
                check_absolute_uri(&mut c, format!("{field}[{i}]"), u);
                check_redirect_uri(&mut c, format!("{field}[{i}]"), u, policy.redirect_uris);
            }
            check_unique(&mut c, field, list.iter().map(String::as_str));
        }
        for (field, v) in [("clientUri", &self.client_uri), ("logoUri", &self.logo_uri)] {
            if let Some(u) = v {
                check_absolute_uri(&mut c, field.to_owned(), u);
            }
        }
        // OIDC Front- and Back-Channel Logout: absolute http(s) URIs without a fragment
        // (the server loads one in an iframe and POSTs to the other).
        for (field, v) in [
            ("frontChannelLogoutUri", &self.front_channel_logout_uri),
            ("backChannelLogoutUri", &self.back_channel_logout_uri),
        ] {
            if let Some(u) = v {
                check_absolute_uri(&mut c, field.to_owned(), u);
                let web = url::Url::parse(u)
                    .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some());
                c.check(web, field, "must be an http or https URL");
            }
        }
        for (i, o) in self.allowed_cors_origins.iter().enumerate() {
            check_origin(&mut c, format!("allowedCorsOrigins[{i}]"), o);
        }
        check_unique(
            &mut c,
            "allowedScopes",
            self.allowed_scopes.iter().map(String::as_str),
        );
        for (i, s) in self.allowed_scopes.iter().enumerate() {
            check_name(&mut c, &format!("allowedScopes[{i}]"), s);
        }
        check_unsupported(&mut c, self);
        if let Some(v) = self.properties.get(REQUIRED_ACR_PROPERTY) {
            c.check(
                crate::mfa::Level::parse(v).is_some(),
                format!("properties.{REQUIRED_ACR_PROPERTY}"),
                "must be an authentication level: pwd, mfa or phr",
            );
        }
        if self.profile == Some(ClientProfile::Fapi2) {
            self.check_fapi2(&mut c);
        }
        for (i, claim) in self.claims.iter().enumerate() {
            let name = self.claim_name(claim);
            c.check(
                !claim.kind.is_empty(),
                format!("claims[{i}].type"),
                "must not be empty",
            );
            c.check(
                !RESERVED_CLAIMS.contains(&name.as_str()),
                format!("claims[{i}].type"),
                format!("{name:?} is a protocol claim and cannot be set by a client"),
            );
        }
        c.finish()
    }
}

impl Client<SecretInput> {
    /// The flags the FAPI 2.0 Security Profile demands, each refused by name when missing.
    fn check_fapi2(&self, c: &mut Collector) {
        const WHY: &str = "profile fapi2";
        // FAPI 2.0 section 5.3.2.1/5.3.2.2: mutual TLS is both a client authentication and a
        // sender constraint (its certificate binds the tokens, RFC 8705 section 3).
        let mtls = !self.client_secrets.is_empty()
            && self
                .client_secrets
                .iter()
                .all(|s| crate::secret::X509_TYPES.contains(&s.kind.as_str()));
        for g in &self.allowed_grant_types {
            c.check(
                !matches!(g, GrantType::Implicit | GrantType::Hybrid),
                "allowedGrantTypes",
                format!("{WHY}: the code flow only (no implicit or hybrid)"),
            );
        }
        for (ok, field, rule) in [
            (self.require_pushed_authorization, "requirePushedAuthorization", "must be true (authorization requests are pushed, RFC 9126)"),
            (self.require_pkce, "requirePkce", "must be true"),
            (
                self.require_dpop || mtls,
                "requireDPoP",
                "must be true unless the client authenticates with mutual TLS (sender-constrained tokens: every token request carries a DPoP proof, or the client's certificate binds them)",
            ),
            (!self.allow_plain_text_pkce, "allowPlainTextPkce", "must be false (S256 only)"),
            (!self.allow_access_tokens_via_browser, "allowAccessTokensViaBrowser", "must be false"),
            (self.require_client_secret, "requireClientSecret", "must be true (a confidential client)"),
            (
                self.authorization_code_lifetime <= FAPI2_MAX_CODE_LIFETIME,
                "authorizationCodeLifetime",
                "must be at most 60 seconds",
            ),
            (
                !self.allow_offline_access || self.refresh_token_usage == TokenUsage::ReUse,
                "refreshTokenUsage",
                "must be 0 (ReUse) when allowOfflineAccess is true: a rotated refresh token is lost when its response is",
            ),
        ] {
            c.check(ok, field, format!("{WHY}: {rule}"));
        }
        let keys = self.jwks_uri.is_some()
            || (!self.client_secrets.is_empty()
                && self
                    .client_secrets
                    .iter()
                    .all(|s| s.kind == crate::secret::JSON_WEB_KEY));
        c.check(
            keys || mtls,
            "clientSecrets",
            format!("{WHY}: the client authenticates with private_key_jwt (JsonWebKey secrets or a jwksUri) or mutual TLS (X509CertificateBase64 or X509Name secrets), no shared secret"),
        );
        for (i, u) in self.redirect_uris.iter().enumerate() {
            c.check(
                u.starts_with("https://"),
                format!("redirectUris[{i}]"),
                format!("{WHY}: must be an https URI"),
            );
        }
    }
}

impl Client<StoredSecret> {
    pub fn view(&self) -> Client<SecretView> {
        self.clone().map_secrets(|s| s.view())
    }
}

#[cfg(test)]
mod tests;
