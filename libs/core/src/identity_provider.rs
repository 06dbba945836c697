//! Upstream identity providers (issue 16): the admin API's `/IdentityProvider` bodies, their
//! rules, and the record the `identity_provider.*` events carry.
//!
//! A provider is an OpenID Connect authority Signet signs users in through (the
//! authorization code flow with PKCE, state and nonce). Its `clientSecret` is write-only:
//! the record holds it sealed ([`IdentityProvider::client_secret_sealed`], AES-256-GCM under
//! a key derived from the node's KEK or cluster secret, sealed by the issuer), never in
//! plaintext, and reads never return it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validation::{Collector, ValidationErrors};

/// The longest scheme, in characters.
pub const SCHEME_MAX: usize = 64;
/// The scopes asked for when the body names none.
pub const DEFAULT_SCOPES: &[&str] = &["openid", "profile", "email"];

/// The kind of upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    /// OpenID Connect: discovery at `{authority}/.well-known/openid-configuration`.
    Oidc,
    /// OAuth 2.0 without OpenID Connect (GitHub's shape): not built yet, refused.
    Oauth2,
    /// An LDAP directory: users type their directory username and password into Signet's
    /// form; Signet binds as the service account, searches the user, and binds as them.
    Ldap,
}

/// How Signet authenticates to the provider's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UpstreamAuthMethod {
    /// The client secret in the form body (the default with a secret).
    ClientSecretPost,
    /// The client secret in HTTP Basic authentication (RFC 6749 section 2.3.1).
    ClientSecretBasic,
    /// A JWT signed with Signet's own signing key (RFC 7523), whose public half the
    /// provider reads from Signet's JWKS (`{issuer}/.well-known/jwks.json`): no shared secret.
    PrivateKeyJwt,
    /// A public client: PKCE only (the default without a secret).
    None,
}

fn yes() -> bool {
    true
}

/// The LDAP operations' deadline when the body names none, in seconds.
pub const LDAP_DEFAULT_TIMEOUT: u64 = 5;
/// The longest LDAP deadline accepted, in seconds.
pub const LDAP_MAX_TIMEOUT: u64 = 60;
/// The attribute that identifies a directory user for good when the body names none
/// (OpenLDAP's `entryUUID`, RFC 4530; Active Directory: `objectGUID`).
pub const LDAP_DEFAULT_SUBJECT: &str = "entryUUID";
/// The placeholder of `userSearchFilter` the escaped username replaces.
pub const USERNAME_PLACEHOLDER: &str = "{username}";
/// Directory attribute → Signet claim when the body names no `attributeMappings`.
pub const LDAP_DEFAULT_MAPPINGS: &[(&str, &str)] = &[
    ("cn", "name"),
    ("givenName", "given_name"),
    ("mail", "email"),
    ("sn", "family_name"),
    ("uid", "preferred_username"),
];
/// The claim the roles of `groupRoleMappings` fill (an array of strings).
pub const ROLES_CLAIM: &str = "roles";

/// The body of `POST` and `PUT /admin/v1/IdentityProvider`.
#[derive(Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityProviderInput {
    /// The provider's id: `[A-Za-z0-9_-]{1,64}`. It names the provider in
    /// `identityProviderRestrictions`, in `acr_values=idp:<scheme>`, in the `idp` claim and
    /// in the callback `{issuer}/federation/{scheme}/callback`.
    pub scheme: String,
    /// The button's text on the login page (default: the scheme).
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `oidc`, `oauth2` or `ldap`.
    #[serde(rename = "type")]
    pub provider_type: ProviderType,
    /// The issuer URL the discovery document is read from: https, or http on a loopback
    /// host only (development and tests).
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// Write-only. Absent on `PUT`: the stored secret stays. Absent on `POST`: a public
    /// client (PKCE only).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// `client_secret_post` (the default with a secret), `client_secret_basic`,
    /// `private_key_jwt` (Signet signs an assertion with its own key; no secret) or `none`
    /// (the default without a secret).
    #[serde(default)]
    pub client_auth_method: Option<UpstreamAuthMethod>,
    /// `oidc` only: also read the user's claims from the provider's userinfo endpoint (with
    /// the access token of the sign-in) and add those the ID token lacks. Default `false`.
    #[serde(default)]
    pub get_claims_from_userinfo_endpoint: bool,
    /// Default `openid profile email`; must contain `openid`.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Upstream claim name → the Signet user claim it fills. Without mappings, the standard
    /// profile claims (`name`, `given_name`, `family_name`, `email`, `email_verified`,
    /// `preferred_username`, `picture`, `locale`) are copied as they are.
    #[serde(default)]
    pub claim_mappings: BTreeMap<String, String>,
    /// Only `code` (the default); `oidc` and `oauth2` only.
    #[serde(default)]
    pub response_type: Option<String>,
    /// `oauth2` only: where the browser is sent to sign in.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// `oauth2` only: where the code is redeemed (the answer must be JSON with an
    /// `access_token`).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// `oauth2` only: where the user's claims are read with the access token.
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    /// `oauth2` only: the userinfo member that identifies the user for good (GitHub: `id`;
    /// never the login or e-mail, which change); a string or an integer.
    #[serde(default)]
    pub subject_claim: Option<String>,
    /// E-mail domains whose users this provider serves (home-realm discovery): an
    /// authorization request whose `login_hint` is `someone@<domain>` goes straight to this
    /// provider, when the client may use it. A domain belongs to one provider at most.
    #[serde(default)]
    pub domains: Vec<String>,
    /// `ldap` only: `ldaps://host[:port]`, or `ldap://host[:port]` with `startTls: true`
    /// (plain `ldap://` without StartTLS only on a loopback host: the password would cross
    /// the network in the clear).
    #[serde(default)]
    pub url: Option<String>,
    /// `ldap` only: upgrade an `ldap://` connection with StartTLS (RFC 4513 section 3)
    /// before anything is sent. Default false.
    #[serde(default)]
    pub start_tls: Option<bool>,
    /// `ldap` only: the PEM certificate(s) of the authority that signs the directory's TLS
    /// certificate; when set, only it is trusted. Default: the system's trust store.
    #[serde(default)]
    pub ca_certificate: Option<String>,
    /// `ldap` only: the service account's DN, bound to search for users.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// `ldap` only, write-only: the service account's password, sealed at rest. Required
    /// on `POST`; absent on `PUT`: the stored one stays.
    #[serde(default)]
    pub bind_password: Option<String>,
    /// `ldap` only: the DN under which users are searched (whole subtree).
    #[serde(default)]
    pub user_search_base: Option<String>,
    /// `ldap` only: the filter that finds a user, with `{username}` exactly once (the
    /// username typed, escaped per RFC 4515): `(uid={username})`, Active Directory
    /// `(sAMAccountName={username})`.
    #[serde(default)]
    pub user_search_filter: Option<String>,
    /// `ldap` only: the attribute that identifies the user for good (default `entryUUID`;
    /// Active Directory `objectGUID`). A binary value (such as `objectGUID`) is taken as
    /// lowercase hex.
    #[serde(default)]
    pub subject_attribute: Option<String>,
    /// `ldap` only: directory attribute → Signet user claim. Default: `cn`→`name`,
    /// `givenName`→`given_name`, `sn`→`family_name`, `mail`→`email`,
    /// `uid`→`preferred_username`.
    #[serde(default)]
    pub attribute_mappings: Option<BTreeMap<String, String>>,
    /// `ldap` only: group DN → a value of the user's `roles` claim, for each group the
    /// user's `memberOf` attribute names (Active Directory has it; OpenLDAP with the
    /// `memberof` overlay). DNs compare case-insensitively.
    #[serde(default)]
    pub group_role_mappings: Option<BTreeMap<String, String>>,
    /// `ldap` only: the deadline of the whole directory exchange (connect, TLS, binds,
    /// search), 1 to 60 seconds, default 5.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

impl std::fmt::Debug for IdentityProviderInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityProviderInput")
            .field("scheme", &self.scheme)
            .field("client_secret", &self.client_secret.as_ref().map(|_| ".."))
            .field("bind_password", &self.bind_password.as_ref().map(|_| ".."))
            .finish_non_exhaustive()
    }
}

/// The standard claims copied when a provider has no `claimMappings`.
pub const DEFAULT_MAPPED_CLAIMS: &[&str] = &[
    "name",
    "given_name",
    "family_name",
    "email",
    "email_verified",
    "preferred_username",
    "picture",
    "locale",
];

/// What the events carry and the projection holds.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityProvider {
    pub scheme: String,
    pub display_name: String,
    pub enabled: bool,
    #[serde(rename = "type")]
    pub provider_type: ProviderType,
    pub authority: String,
    pub client_id: String,
    /// The provider's secret sealed by the issuer (base64url of nonce and ciphertext); never
    /// the plaintext: an `oidc`/`oauth2` provider's client secret, an `ldap` provider's
    /// bind password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_sealed: Option<String>,
    /// Absent in records made before it existed: the default ([`IdentityProvider::auth_method`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth_method: Option<UpstreamAuthMethod>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub get_claims_from_userinfo_endpoint: bool,
    pub scopes: Vec<String>,
    pub claim_mappings: BTreeMap<String, String>,
    pub response_type: String,
    /// The OAuth 2.0 endpoints and subject claim of an `oauth2` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Endpoints>,
    /// E-mail domains (lowercase) whose `login_hint` goes straight to this provider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// The directory of an `ldap` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldap: Option<LdapDirectory>,
}

/// Where and how an `ldap` provider finds and checks its users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapDirectory {
    pub url: String,
    pub start_tls: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
    pub bind_dn: String,
    pub user_search_base: String,
    pub user_search_filter: String,
    pub subject_attribute: String,
    pub attribute_mappings: BTreeMap<String, String>,
    pub group_role_mappings: BTreeMap<String, String>,
    pub timeout_seconds: u64,
}

impl LdapDirectory {
    /// The search filter for `username`: the filter with its placeholder replaced by the
    /// username escaped per RFC 4515 ([`escape_filter_value`]).
    pub fn filter_for(&self, username: &str) -> String {
        self.user_search_filter
            .replacen(USERNAME_PLACEHOLDER, &escape_filter_value(username), 1)
    }

    /// The attributes a sign-in reads from the user's entry.
    pub fn attributes(&self) -> Vec<String> {
        let mut a: Vec<String> = self.attribute_mappings.keys().cloned().collect();
        a.push(self.subject_attribute.clone());
        if !self.group_role_mappings.is_empty() {
            a.push("memberOf".to_owned());
        }
        a.sort();
        a.dedup();
        a
    }

    /// The user's claims from their entry's attributes (first value of each mapped
    /// attribute; `attrs` keys compare case-insensitively, as LDAP attribute names do), and
    /// `roles` from the groups `member_of` names.
    pub fn map_attributes(
        &self,
        attrs: &std::collections::HashMap<String, Vec<String>>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let find = |name: &str| {
            attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.first())
        };
        let mut out = serde_json::Map::new();
        for (from, to) in &self.attribute_mappings {
            if let Some(v) = find(from) {
                out.insert(to.clone(), serde_json::Value::String(v.clone()));
            }
        }
        if !self.group_role_mappings.is_empty() {
            let groups: Vec<String> = attrs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("memberOf"))
                .flat_map(|(_, v)| v.iter().map(|g| normalize_dn(g)))
                .collect();
            let mut roles: Vec<serde_json::Value> = Vec::new();
            for (group, role) in &self.group_role_mappings {
                let role = serde_json::Value::String(role.clone());
                if groups.contains(&normalize_dn(group)) && !roles.contains(&role) {
                    roles.push(role);
                }
            }
            out.insert(ROLES_CLAIM.to_owned(), serde_json::Value::Array(roles));
        }
        out
    }
}

/// A DN as group mappings compare it: lowercase, without spaces around `,` and `=`.
fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// Escapes a value for an LDAP search filter (RFC 4515 section 3): `*`, `(`, `)`, `\` and
/// NUL become `\2a`, `\28`, `\29`, `\5c` and `\00`; other control characters are escaped
/// too. Other characters, UTF-8 included, stay as they are (RFC 4515's UTF1SUBSET/UTFMB).
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        if matches!(ch, '*' | '(' | ')' | '\\') || ch.is_ascii_control() {
            out.push_str(&format!("\\{:02x}", ch as u32));
        } else {
            out.push(ch);
        }
    }
    out
}

/// Where an OAuth 2.0-only provider (GitHub's shape) signs users in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuth2Endpoints {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: String,
    pub subject_claim: String,
}

impl std::fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityProvider")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What reads answer: the record without its secret, saying whether it has one.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct IdentityProviderView {
    pub scheme: String,
    pub display_name: String,
    pub enabled: bool,
    #[serde(rename = "type")]
    pub provider_type: ProviderType,
    pub authority: String,
    pub client_id: String,
    /// Whether a client secret is stored (it is never shown).
    pub has_client_secret: bool,
    /// `oidc` and `oauth2`: how Signet authenticates at the token endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth_method: Option<UpstreamAuthMethod>,
    pub get_claims_from_userinfo_endpoint: bool,
    pub scopes: Vec<String>,
    pub claim_mappings: BTreeMap<String, String>,
    pub response_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_claim: Option<String>,
    pub domains: Vec<String>,
    /// The directory of an `ldap` provider (its `bindPassword` is never shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_tls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_dn: Option<String>,
    /// `ldap` only: whether a bind password is stored (it is never shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_bind_password: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_search_base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_search_filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_attribute: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute_mappings: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_role_mappings: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

impl IdentityProvider {
    pub fn view(&self) -> IdentityProviderView {
        let l = self.ldap.as_ref();
        IdentityProviderView {
            scheme: self.scheme.clone(),
            display_name: self.display_name.clone(),
            enabled: self.enabled,
            provider_type: self.provider_type,
            authority: self.authority.clone(),
            client_id: self.client_id.clone(),
            has_client_secret: self.client_secret_sealed.is_some() && l.is_none(),
            client_auth_method: l.is_none().then(|| self.auth_method()),
            get_claims_from_userinfo_endpoint: self.get_claims_from_userinfo_endpoint,
            scopes: self.scopes.clone(),
            claim_mappings: self.claim_mappings.clone(),
            response_type: self.response_type.clone(),
            authorization_endpoint: self
                .oauth2
                .as_ref()
                .map(|o| o.authorization_endpoint.clone()),
            token_endpoint: self.oauth2.as_ref().map(|o| o.token_endpoint.clone()),
            userinfo_endpoint: self.oauth2.as_ref().map(|o| o.userinfo_endpoint.clone()),
            subject_claim: self.oauth2.as_ref().map(|o| o.subject_claim.clone()),
            domains: self.domains.clone(),
            url: l.map(|l| l.url.clone()),
            start_tls: l.map(|l| l.start_tls),
            ca_certificate: l.and_then(|l| l.ca_certificate.clone()),
            bind_dn: l.map(|l| l.bind_dn.clone()),
            has_bind_password: l.map(|_| self.client_secret_sealed.is_some()),
            user_search_base: l.map(|l| l.user_search_base.clone()),
            user_search_filter: l.map(|l| l.user_search_filter.clone()),
            subject_attribute: l.map(|l| l.subject_attribute.clone()),
            attribute_mappings: l.map(|l| l.attribute_mappings.clone()),
            group_role_mappings: l.map(|l| l.group_role_mappings.clone()),
            timeout_seconds: l.map(|l| l.timeout_seconds),
        }
    }

    /// How Signet authenticates to the token endpoint: as configured, else
    /// `client_secret_post` with a secret and `none` without.
    pub fn auth_method(&self) -> UpstreamAuthMethod {
        self.client_auth_method
            .unwrap_or(match self.client_secret_sealed {
                Some(_) => UpstreamAuthMethod::ClientSecretPost,
                None => UpstreamAuthMethod::None,
            })
    }

    /// Whether a `login_hint` names a user of one of this provider's domains.
    pub fn serves_hint(&self, login_hint: &str) -> bool {
        hint_domain(login_hint).is_some_and(|d| self.domains.contains(&d))
    }

    /// The Signet claims an upstream identity's claims map to (strings, numbers and booleans
    /// only; user claim rules are checked by the caller).
    pub fn map_claims(
        &self,
        upstream: &serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        let pairs: Vec<(&str, &str)> = if self.claim_mappings.is_empty() {
            DEFAULT_MAPPED_CLAIMS.iter().map(|c| (*c, *c)).collect()
        } else {
            self.claim_mappings
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        };
        for (from, to) in pairs {
            if crate::user::PROTOCOL_CLAIMS.contains(&to) {
                continue;
            }
            if let Some(v) = upstream.get(from) {
                if matches!(
                    v,
                    serde_json::Value::String(_)
                        | serde_json::Value::Bool(_)
                        | serde_json::Value::Number(_)
                ) {
                    out.insert(to.to_owned(), v.clone());
                }
            }
        }
        out
    }
}

/// Whether `scheme` is a valid provider id.
pub fn valid_scheme(scheme: &str) -> bool {
    !scheme.is_empty()
        && scheme.len() <= SCHEME_MAX
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The domain of a `login_hint` that is an e-mail address, lowercase.
pub fn hint_domain(login_hint: &str) -> Option<String> {
    let (local, domain) = login_hint.trim().rsplit_once('@')?;
    (!local.is_empty() && valid_domain(domain)).then(|| domain.to_ascii_lowercase())
}

/// A DNS name: dot-separated labels of 1 to 63 letters, digits and inner hyphens, at most
/// 253 characters.
pub fn valid_domain(domain: &str) -> bool {
    domain.len() <= 253
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// An https URL, or http on a loopback host; no query, fragment or user information.
fn check_authority(c: &mut Collector, field: &str, value: &str) {
    let ok = url::Url::parse(value).ok().is_some_and(|u| {
        let loopback = match u.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        (u.scheme() == "https" || (u.scheme() == "http" && loopback))
            && u.host().is_some()
            && u.query().is_none()
            && u.fragment().is_none()
            && u.username().is_empty()
            && u.password().is_none()
    });
    c.check(
        ok,
        field,
        "must be an absolute https URL without query, fragment or user information (http only on a loopback host)",
    );
}

/// Whether `url` names a loopback host (an `ldap:` URL's host is not parsed as an IP
/// address by the URL crate: it is parsed here).
fn loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => {
            d == "localhost"
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether `dn` looks like a distinguished name (RFC 4514): `attr=value` pairs separated
/// by commas, without control characters.
fn plausible_dn(dn: &str) -> bool {
    !dn.trim().is_empty()
        && dn.len() <= 1024
        && dn.contains('=')
        && !dn.chars().any(char::is_control)
}

impl IdentityProviderInput {
    /// The `ldap` fields' rules; `has_stored_password`: a sealed bind password is given
    /// (kept on `PUT`).
    fn check_ldap(&self, c: &mut Collector, has_stored_password: bool) {
        let start_tls = self.start_tls.unwrap_or(false);
        match self.url.as_deref().map(url::Url::parse) {
            None => c.push(
                "url",
                "is required for an ldap provider (ldaps://host or ldap://host with startTls)",
            ),
            Some(Err(_)) => c.push("url", "must be an absolute ldap:// or ldaps:// URL"),
            Some(Ok(u)) => {
                let shape = matches!(u.scheme(), "ldap" | "ldaps")
                    && u.host_str().is_some_and(|h| !h.is_empty())
                    && matches!(u.path(), "" | "/")
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty()
                    && u.password().is_none();
                if !shape {
                    c.push(
                        "url",
                        "must be ldap://host[:port] or ldaps://host[:port], without path, query or user information",
                    );
                } else if u.scheme() == "ldap" && !start_tls && !loopback(&u) {
                    c.push(
                        "url",
                        "ldap:// sends passwords in the clear: use ldaps://, or set startTls to true (plain ldap:// only on a loopback host)",
                    );
                } else if u.scheme() == "ldaps" && start_tls {
                    c.push(
                        "startTls",
                        "is for ldap:// URLs (ldaps:// is TLS from the start)",
                    );
                }
            }
        }
        if let Some(pem) = &self.ca_certificate {
            let ok = pem.len() <= 65536
                && ::pem::parse_many(pem)
                    .ok()
                    .is_some_and(|p| !p.is_empty() && p.iter().all(|b| b.tag() == "CERTIFICATE"));
            c.check(ok, "caCertificate", "must be one or more PEM certificates");
        }
        match &self.bind_dn {
            Some(dn) => c.check(
                plausible_dn(dn),
                "bindDn",
                "must be a DN such as cn=signet,dc=example,dc=org (1 to 1024 characters)",
            ),
            None => c.push(
                "bindDn",
                "is required for an ldap provider (the service account that searches users)",
            ),
        }
        match &self.bind_password {
            // An empty password makes a simple bind unauthenticated (RFC 4513 section 5.1.2).
            Some(p) => c.check(
                !p.is_empty() && p.len() <= 4096,
                "bindPassword",
                "must be 1 to 4096 bytes",
            ),
            None => c.check(
                has_stored_password,
                "bindPassword",
                "is required for an ldap provider",
            ),
        }
        match &self.user_search_base {
            Some(dn) => c.check(
                plausible_dn(dn),
                "userSearchBase",
                "must be a DN such as ou=people,dc=example,dc=org (1 to 1024 characters)",
            ),
            None => c.push("userSearchBase", "is required for an ldap provider"),
        }
        match &self.user_search_filter {
            Some(f) => {
                let ok = f.matches(USERNAME_PLACEHOLDER).count() == 1
                    && f.len() <= 1024
                    && f.starts_with('(')
                    && f.ends_with(')')
                    && !f.chars().any(char::is_control);
                c.check(ok, "userSearchFilter", "must be a parenthesized LDAP filter with {username} exactly once, such as (uid={username})");
            }
            None => c.push("userSearchFilter", "is required for an ldap provider, such as (uid={username}) or (sAMAccountName={username})"),
        }
        let attribute = |a: &str| {
            !a.is_empty()
                && a.len() <= 128
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b';')
        };
        if let Some(a) = &self.subject_attribute {
            c.check(
                attribute(a),
                "subjectAttribute",
                "must be an attribute name such as entryUUID or objectGUID",
            );
        }
        for (from, to) in self.attribute_mappings.iter().flatten() {
            c.check(
                attribute(from),
                format!("attributeMappings.{from}"),
                "the directory attribute name must be 1 to 128 letters, digits, '-', '.' or ';'",
            );
            c.check(
                !to.is_empty()
                    && to.len() <= 256
                    && !crate::user::PROTOCOL_CLAIMS.contains(&to.as_str())
                    && to != ROLES_CLAIM,
                format!("attributeMappings.{from}"),
                "must name a user claim (1 to 256 characters), not a protocol claim such as sub, nor roles (filled by groupRoleMappings)",
            );
        }
        for (group, role) in self.group_role_mappings.iter().flatten() {
            c.check(
                plausible_dn(group),
                format!("groupRoleMappings.{group}"),
                "the key must be a group DN such as cn=admins,ou=groups,dc=example,dc=org",
            );
            c.check(
                !role.is_empty() && role.len() <= 256 && !role.chars().any(char::is_control),
                format!("groupRoleMappings.{group}"),
                "the role must be 1 to 256 characters",
            );
        }
        if let Some(t) = self.timeout_seconds {
            c.check(
                (1..=LDAP_MAX_TIMEOUT).contains(&t),
                "timeoutSeconds",
                format!("must be 1 to {LDAP_MAX_TIMEOUT}"),
            );
        }
    }

    /// The directory of a checked `ldap` body.
    fn ldap_directory(&self) -> LdapDirectory {
        LdapDirectory {
            url: self
                .url
                .clone()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned(),
            start_tls: self.start_tls.unwrap_or(false),
            ca_certificate: self.ca_certificate.clone(),
            bind_dn: self.bind_dn.clone().unwrap_or_default(),
            user_search_base: self.user_search_base.clone().unwrap_or_default(),
            user_search_filter: self.user_search_filter.clone().unwrap_or_default(),
            subject_attribute: self
                .subject_attribute
                .clone()
                .unwrap_or_else(|| LDAP_DEFAULT_SUBJECT.to_owned()),
            attribute_mappings: self.attribute_mappings.clone().unwrap_or_else(|| {
                LDAP_DEFAULT_MAPPINGS
                    .iter()
                    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                    .collect()
            }),
            group_role_mappings: self.group_role_mappings.clone().unwrap_or_default(),
            timeout_seconds: self.timeout_seconds.unwrap_or(LDAP_DEFAULT_TIMEOUT),
        }
    }

    /// Checks the body on its own; `sealed` is the provider's secret (client secret or bind
    /// password) already sealed, or the stored one kept on `PUT`.
    pub fn into_record(self, sealed: Option<String>) -> Result<IdentityProvider, ValidationErrors> {
        let mut c = Collector::default();
        let has_secret = sealed.is_some() || self.client_secret.is_some();
        match self.client_auth_method {
            Some(UpstreamAuthMethod::ClientSecretPost | UpstreamAuthMethod::ClientSecretBasic) => {
                c.check(
                    has_secret,
                    "clientAuthMethod",
                    "client_secret_post and client_secret_basic need a clientSecret",
                )
            }
            Some(UpstreamAuthMethod::PrivateKeyJwt | UpstreamAuthMethod::None) => c.check(
                !has_secret,
                "clientSecret",
                "is not used with clientAuthMethod private_key_jwt or none (send \"clientSecret\": null to remove a stored one)",
            ),
            None => {}
        }
        c.check(
            valid_scheme(&self.scheme),
            "scheme",
            "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
        );
        let endpoints = [
            ("authorizationEndpoint", &self.authorization_endpoint),
            ("tokenEndpoint", &self.token_endpoint),
            ("userinfoEndpoint", &self.userinfo_endpoint),
            ("subjectClaim", &self.subject_claim),
        ];
        match self.provider_type {
            ProviderType::Oidc => {
                match &self.authority {
                    Some(a) => check_authority(&mut c, "authority", a),
                    None => c.push("authority", "is required for an oidc provider"),
                }
                for (field, v) in endpoints {
                    c.check(
                        v.is_none(),
                        field,
                        "is only for an oauth2 provider (an oidc one reads its endpoints from discovery)",
                    );
                }
            }
            ProviderType::Oauth2 => {
                c.check(
                    self.authority.is_none(),
                    "authority",
                    "is only for an oidc provider (an oauth2 one names its endpoints)",
                );
                c.check(
                    !self.get_claims_from_userinfo_endpoint,
                    "getClaimsFromUserinfoEndpoint",
                    "is only for an oidc provider (an oauth2 one always reads its userinfoEndpoint)",
                );
                for (field, v) in &endpoints[..3] {
                    match v {
                        Some(u) => check_authority(&mut c, field, u),
                        None => c.push(*field, "is required for an oauth2 provider"),
                    }
                }
                match &self.subject_claim {
                    Some(s) => c.check(
                        !s.is_empty() && s.len() <= 256,
                        "subjectClaim",
                        "must be 1 to 256 characters",
                    ),
                    None => c.push(
                        "subjectClaim",
                        "is required for an oauth2 provider (GitHub: id)",
                    ),
                }
            }
            ProviderType::Ldap => {
                for (field, v) in endpoints {
                    c.check(v.is_none(), field, "is only for an oauth2 provider");
                }
                c.check(
                    self.authority.is_none(),
                    "authority",
                    "is only for an oidc provider (an ldap one names its url)",
                );
                self.check_ldap(&mut c, sealed.is_some());
                c.check(
                    self.client_auth_method.is_none(),
                    "clientAuthMethod",
                    "is only for an oidc or oauth2 provider (a directory is bound with bindDn and bindPassword)",
                );
                c.check(
                    !self.get_claims_from_userinfo_endpoint,
                    "getClaimsFromUserinfoEndpoint",
                    "is only for an oidc provider",
                );
            }
        }
        if self.provider_type != ProviderType::Ldap {
            let ldap_fields = [
                ("url", self.url.is_some()),
                ("startTls", self.start_tls.is_some()),
                ("caCertificate", self.ca_certificate.is_some()),
                ("bindDn", self.bind_dn.is_some()),
                ("bindPassword", self.bind_password.is_some()),
                ("userSearchBase", self.user_search_base.is_some()),
                ("userSearchFilter", self.user_search_filter.is_some()),
                ("subjectAttribute", self.subject_attribute.is_some()),
                ("attributeMappings", self.attribute_mappings.is_some()),
                ("groupRoleMappings", self.group_role_mappings.is_some()),
                ("timeoutSeconds", self.timeout_seconds.is_some()),
            ];
            for (field, present) in ldap_fields {
                c.check(!present, field, "is only for an ldap provider");
            }
        }
        if let Some(d) = &self.display_name {
            c.check(
                !d.trim().is_empty() && d.chars().count() <= 200,
                "displayName",
                "must be 1 to 200 characters",
            );
        }
        let ldap = self.provider_type == ProviderType::Ldap;
        match &self.client_id {
            Some(_) if ldap => c.push("clientId", "is only for an oidc or oauth2 provider"),
            Some(id) => c.check(
                !id.is_empty() && id.len() <= 512 && !id.chars().any(char::is_control),
                "clientId",
                "must be 1 to 512 characters without control characters",
            ),
            None if ldap => {}
            None => c.push("clientId", "is required"),
        }
        c.check(
            !(ldap && self.client_secret.is_some()),
            "clientSecret",
            "is only for an oidc or oauth2 provider (an ldap one has bindPassword)",
        );
        c.check(
            !(ldap && self.scopes.is_some()),
            "scopes",
            "is only for an oidc or oauth2 provider",
        );
        c.check(
            !ldap || self.claim_mappings.is_empty(),
            "claimMappings",
            "is only for an oidc or oauth2 provider (an ldap one has attributeMappings)",
        );
        c.check(
            !(ldap && self.response_type.is_some()),
            "responseType",
            "is only for an oidc or oauth2 provider",
        );
        if let Some(s) = &self.client_secret {
            c.check(
                !s.is_empty() && s.len() <= 4096,
                "clientSecret",
                "must be 1 to 4096 bytes",
            );
        }
        let oidc = self.provider_type == ProviderType::Oidc;
        let scopes: Vec<String> = self.scopes.clone().unwrap_or_else(|| {
            if oidc {
                DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect()
            } else {
                Vec::new()
            }
        });
        c.check(
            !oidc || scopes.iter().any(|s| s == "openid"),
            "scopes",
            "must contain openid",
        );
        for (i, s) in scopes.iter().enumerate() {
            c.check(
                !s.is_empty()
                    && s.bytes().all(|b| {
                        b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
                    }),
                format!("scopes[{i}]"),
                "must be a scope token (RFC 6749 section 3.3)",
            );
        }
        for (from, to) in &self.claim_mappings {
            c.check(
                !from.is_empty() && from.len() <= 256,
                format!("claimMappings.{from}"),
                "the upstream claim name must be 1 to 256 characters",
            );
            c.check(
                !to.is_empty() && to.len() <= 256 && !crate::user::PROTOCOL_CLAIMS.contains(&to.as_str()),
                format!("claimMappings.{from}"),
                "must name a user claim (1 to 256 characters), not a protocol claim such as sub or iss",
            );
        }
        for (i, d) in self.domains.iter().enumerate() {
            c.check(
                valid_domain(d),
                format!("domains[{i}]"),
                "must be a DNS domain such as example.com",
            );
            c.check(
                !self.domains[..i].iter().any(|e| e.eq_ignore_ascii_case(d)),
                format!("domains[{i}]"),
                "is listed twice",
            );
        }
        let response_type = self
            .response_type
            .clone()
            .unwrap_or_else(|| "code".to_owned());
        c.check(
            ldap || response_type == "code",
            "responseType",
            "only code is supported (the authorization code flow with PKCE)",
        );
        c.finish()?;
        let directory = ldap.then(|| self.ldap_directory());
        Ok(IdentityProvider {
            display_name: self
                .display_name
                .map(|d| d.trim().to_owned())
                .unwrap_or_else(|| self.scheme.clone()),
            scheme: self.scheme,
            enabled: self.enabled,
            provider_type: self.provider_type,
            authority: self
                .authority
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned(),
            client_id: self.client_id.unwrap_or_default(),
            client_secret_sealed: sealed,
            client_auth_method: self.client_auth_method,
            get_claims_from_userinfo_endpoint: self.get_claims_from_userinfo_endpoint,
            scopes,
            claim_mappings: self.claim_mappings,
            response_type,
            ldap: directory,
            oauth2: match self.provider_type {
                ProviderType::Oauth2 => Some(OAuth2Endpoints {
                    authorization_endpoint: self.authorization_endpoint.unwrap_or_default(),
                    token_endpoint: self.token_endpoint.unwrap_or_default(),
                    userinfo_endpoint: self.userinfo_endpoint.unwrap_or_default(),
                    subject_claim: self.subject_claim.unwrap_or_default(),
                }),
                _ => None,
            },
            domains: self
                .domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: serde_json::Value) -> Result<IdentityProvider, ValidationErrors> {
        let i: IdentityProviderInput = serde_json::from_value(v)
            .map_err(|e| ValidationErrors::single("body", e.to_string()))?;
        i.into_record(None)
    }

    fn fields(e: ValidationErrors) -> Vec<String> {
        e.errors.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_minimal_provider_gets_defaults() {
        let p = input(serde_json::json!({
            "scheme": "corp", "type": "oidc", "authority": "https://login.example.com/",
            "clientId": "signet"
        }))
        .unwrap();
        assert_eq!(p.display_name, "corp");
        assert_eq!(p.authority, "https://login.example.com");
        assert_eq!(p.scopes, ["openid", "profile", "email"]);
        assert!(p.enabled);
    }

    #[test]
    fn bad_fields_are_named() {
        let e = input(serde_json::json!({
            "scheme": "a b", "type": "oidc", "authority": "http://example.com",
            "scopes": ["profile"], "responseType": "token",
            "claimMappings": {"x": "sub"}
        }))
        .unwrap_err();
        assert_eq!(
            fields(e),
            [
                "scheme",
                "authority",
                "clientId",
                "scopes",
                "claimMappings.x",
                "responseType"
            ]
        );
        let e = input(serde_json::json!({"scheme": "l", "type": "ldap", "authority": "https://a", "clientId": "c"})).unwrap_err();
        assert_eq!(
            fields(e),
            [
                "authority",
                "url",
                "bindDn",
                "bindPassword",
                "userSearchBase",
                "userSearchFilter",
                "clientId"
            ]
        );
        // http on loopback is allowed (development).
        assert!(input(serde_json::json!({"scheme": "l", "type": "oidc", "authority": "http://127.0.0.1:8080", "clientId": "c"})).is_ok());
    }

    #[test]
    fn oauth2_providers_name_their_endpoints_and_oidc_ones_do_not() {
        let e = input(
            serde_json::json!({"scheme": "gh", "type": "oauth2", "clientId": "c",
            "authority": "https://github.com", "tokenEndpoint": "ftp://x"}),
        )
        .unwrap_err();
        assert_eq!(
            fields(e),
            [
                "authority",
                "authorizationEndpoint",
                "tokenEndpoint",
                "userinfoEndpoint",
                "subjectClaim"
            ]
        );
        let e = input(
            serde_json::json!({"scheme": "o", "type": "oidc", "clientId": "c",
            "authority": "https://a", "subjectClaim": "id"}),
        )
        .unwrap_err();
        assert_eq!(fields(e), ["subjectClaim"]);
        let p = input(
            serde_json::json!({"scheme": "gh", "type": "oauth2", "clientId": "c",
            "authorizationEndpoint": "https://github.com/login/oauth/authorize",
            "tokenEndpoint": "https://github.com/login/oauth/access_token",
            "userinfoEndpoint": "https://api.github.com/user", "subjectClaim": "id"}),
        )
        .unwrap();
        assert!(p.scopes.is_empty(), "no openid for OAuth 2.0");
        let o = p.oauth2.as_ref().unwrap();
        assert_eq!(o.subject_claim, "id");
        assert_eq!(
            p.view().token_endpoint.as_deref(),
            Some("https://github.com/login/oauth/access_token")
        );
    }

    #[test]
    fn the_auth_method_defaults_from_the_secret_and_must_fit_it() {
        let base = serde_json::json!({"scheme": "s", "type": "oidc", "authority": "https://a", "clientId": "c"});
        let with = |extra: serde_json::Value| {
            let mut b = base.clone();
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            let i: IdentityProviderInput = serde_json::from_value(b).unwrap();
            i
        };
        let p = with(serde_json::json!({})).into_record(None).unwrap();
        assert_eq!(p.auth_method(), UpstreamAuthMethod::None);
        let p = with(serde_json::json!({}))
            .into_record(Some("sealed".into()))
            .unwrap();
        assert_eq!(p.auth_method(), UpstreamAuthMethod::ClientSecretPost);
        let p = with(serde_json::json!({"clientAuthMethod": "private_key_jwt"}))
            .into_record(None)
            .unwrap();
        assert_eq!(
            p.view().client_auth_method,
            Some(UpstreamAuthMethod::PrivateKeyJwt)
        );
        let e = with(serde_json::json!({"clientAuthMethod": "client_secret_basic"}))
            .into_record(None)
            .unwrap_err();
        assert_eq!(fields(e), ["clientAuthMethod"]);
        let e =
            with(serde_json::json!({"clientAuthMethod": "private_key_jwt", "clientSecret": "x"}))
                .into_record(None)
                .unwrap_err();
        assert_eq!(fields(e), ["clientSecret"]);
        assert!(serde_json::from_value::<IdentityProviderInput>(
            serde_json::json!({"scheme": "s", "type": "oidc", "clientAuthMethod": "tls_client_auth"})
        )
        .is_err());
    }

    #[test]
    fn domains_are_dns_names_and_hints_match_them() {
        let e = input(
            serde_json::json!({"scheme": "s", "type": "oidc", "authority": "https://a",
            "clientId": "c", "domains": ["ok.example", "bad domain", "-x.com", "OK.example"]}),
        )
        .unwrap_err();
        assert_eq!(fields(e), ["domains[1]", "domains[2]", "domains[3]"]);
        let p = input(
            serde_json::json!({"scheme": "s", "type": "oidc", "authority": "https://a",
            "clientId": "c", "domains": ["Contoso.com"]}),
        )
        .unwrap();
        assert_eq!(p.domains, ["contoso.com"]);
        assert!(p.serves_hint("alice@CONTOSO.com"));
        assert!(p.serves_hint(" bob@contoso.com "));
        for no in [
            "alice@fabrikam.com",
            "contoso.com",
            "@contoso.com",
            "a@sub.contoso.com",
            "a@contoso.com.evil",
        ] {
            assert!(!p.serves_hint(no), "{no}");
        }
    }

    #[test]
    fn claims_map_and_skip_protocol_claims() {
        let mut p = input(serde_json::json!({"scheme": "s", "type": "oidc", "authority": "https://a", "clientId": "c"})).unwrap();
        let up = serde_json::json!({"email": "a@b.c", "sub": "x", "groups": ["a"], "name": "A"});
        let up = up.as_object().unwrap();
        let m = p.map_claims(up);
        assert_eq!(
            serde_json::Value::Object(m),
            serde_json::json!({"email": "a@b.c", "name": "A"})
        );
        p.claim_mappings = [("name".to_owned(), "nickname".to_owned())].into();
        let m = p.map_claims(up);
        assert_eq!(
            serde_json::Value::Object(m),
            serde_json::json!({"nickname": "A"})
        );
    }

    fn ldap(extra: serde_json::Value) -> serde_json::Value {
        let mut v = serde_json::json!({
            "scheme": "corp", "type": "ldap", "url": "ldaps://ldap.example.org",
            "bindDn": "cn=signet,dc=example,dc=org", "bindPassword": "s3cret",
            "userSearchBase": "ou=people,dc=example,dc=org",
            "userSearchFilter": "(uid={username})"
        });
        for (k, x) in extra.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        v
    }

    #[test]
    fn an_ldap_provider_gets_defaults() {
        let p = input(ldap(serde_json::json!({}))).unwrap();
        let l = p.ldap.as_ref().unwrap();
        assert_eq!(l.subject_attribute, "entryUUID");
        assert_eq!(l.timeout_seconds, 5);
        assert!(!l.start_tls);
        assert_eq!(l.attribute_mappings["mail"], "email");
        assert_eq!(l.attribute_mappings["uid"], "preferred_username");
        assert!(p.scopes.is_empty());
        let v = serde_json::to_value(p.view()).unwrap();
        assert_eq!(v["hasBindPassword"], false, "nothing sealed was given");
        assert_eq!(v["hasClientSecret"], false);
        assert!(v.get("bindPassword").is_none());
        assert_eq!(v["userSearchFilter"], "(uid={username})");
        // StartTLS on ldap://, and plain ldap:// on loopback only.
        assert!(input(ldap(
            serde_json::json!({"url": "ldap://dc1.corp.example:389", "startTls": true})
        ))
        .is_ok());
        assert!(input(ldap(serde_json::json!({"url": "ldap://127.0.0.1:3890"}))).is_ok());
        assert!(v.get("clientAuthMethod").is_none(), "{v}");
        // The token-endpoint settings are not a directory's.
        let e = input(ldap(serde_json::json!({
            "clientAuthMethod": "private_key_jwt", "getClaimsFromUserinfoEndpoint": true
        })))
        .unwrap_err();
        assert_eq!(
            fields(e),
            ["clientAuthMethod", "getClaimsFromUserinfoEndpoint"]
        );
    }

    #[test]
    fn ldap_fields_are_checked_and_named() {
        let e = input(ldap(serde_json::json!({
            "url": "ldap://ldap.example.org", "bindDn": "signet", "bindPassword": "",
            "userSearchFilter": "(uid={username})(cn={username})", "subjectAttribute": "a b",
            "attributeMappings": {"mail": "sub", "cn": "roles"},
            "groupRoleMappings": {"admins": "admin"}, "timeoutSeconds": 0,
            "caCertificate": "not a pem"
        })))
        .unwrap_err();
        assert_eq!(
            fields(e),
            [
                "url",
                "caCertificate",
                "bindDn",
                "bindPassword",
                "userSearchFilter",
                "subjectAttribute",
                "attributeMappings.cn",
                "attributeMappings.mail",
                "groupRoleMappings.admins",
                "timeoutSeconds"
            ]
        );
        let e = input(ldap(
            serde_json::json!({"url": "ldaps://a", "startTls": true}),
        ))
        .unwrap_err();
        assert_eq!(fields(e), ["startTls"]);
        let e = input(ldap(serde_json::json!({"url": "https://a/x"}))).unwrap_err();
        assert_eq!(fields(e), ["url"]);
        // The OIDC and OAuth 2.0 fields on an ldap provider, and the other way round.
        let e = input(ldap(serde_json::json!({
            "clientId": "c", "clientSecret": "s", "scopes": ["openid"],
            "claimMappings": {"a": "b"}, "responseType": "code", "tokenEndpoint": "https://a"
        })))
        .unwrap_err();
        assert_eq!(
            fields(e),
            [
                "tokenEndpoint",
                "clientId",
                "clientSecret",
                "scopes",
                "claimMappings",
                "responseType"
            ]
        );
        let e = input(
            serde_json::json!({"scheme": "o", "type": "oidc", "authority": "https://a",
            "clientId": "c", "bindPassword": "x", "userSearchFilter": "(uid={username})"}),
        )
        .unwrap_err();
        assert_eq!(fields(e), ["bindPassword", "userSearchFilter"]);
        // On PUT, the stored (sealed) password stays.
        let body: IdentityProviderInput =
            serde_json::from_value(ldap(serde_json::json!({"bindPassword": null}))).unwrap();
        assert!(body.clone().into_record(None).is_err());
        let p = body.into_record(Some("sealed".into())).unwrap();
        assert_eq!(p.view().has_bind_password, Some(true));
    }

    #[test]
    fn filter_values_are_escaped_per_rfc_4515() {
        assert_eq!(escape_filter_value("alice"), "alice");
        assert_eq!(escape_filter_value("*"), "\\2a");
        assert_eq!(escape_filter_value("a(b)c"), "a\\28b\\29c");
        assert_eq!(escape_filter_value("back\\slash"), "back\\5cslash");
        assert_eq!(escape_filter_value("nul\0x"), "nul\\00x");
        assert_eq!(escape_filter_value("tab\t"), "tab\\09");
        // Non-ASCII stays UTF-8 (RFC 4515's UTFMB), which the directory matches as such.
        assert_eq!(escape_filter_value("zoë 山田"), "zoë 山田");
        let p = input(ldap(serde_json::json!({}))).unwrap();
        assert_eq!(
            p.ldap.unwrap().filter_for("admin)(|(uid=*"),
            "(uid=admin\\29\\28|\\28uid=\\2a)"
        );
    }

    #[test]
    fn attributes_map_to_claims_and_groups_to_roles() {
        let p = input(ldap(serde_json::json!({
            "subjectAttribute": "objectGUID",
            "groupRoleMappings": {"CN=Admins, OU=Groups,DC=corp": "admin", "cn=ops,dc=corp": "ops"}
        })))
        .unwrap();
        let l = p.ldap.unwrap();
        assert!(l.attributes().contains(&"memberOf".to_owned()));
        assert!(l.attributes().contains(&"objectGUID".to_owned()));
        let attrs: std::collections::HashMap<String, Vec<String>> = [
            ("MAIL".to_owned(), vec!["a@corp.example".to_owned()]),
            ("cn".to_owned(), vec!["Alice".to_owned(), "Al".to_owned()]),
            (
                "memberOf".to_owned(),
                vec![
                    "cn=admins,ou=groups,dc=corp".to_owned(),
                    "cn=other,dc=corp".to_owned(),
                ],
            ),
        ]
        .into();
        assert_eq!(
            serde_json::Value::Object(l.map_attributes(&attrs)),
            serde_json::json!({"email": "a@corp.example", "name": "Alice", "roles": ["admin"]})
        );
    }
}
