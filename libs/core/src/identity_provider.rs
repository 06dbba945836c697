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
    /// An LDAP directory: not built yet, refused.
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

fn code() -> String {
    "code".to_owned()
}

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
    /// `oidc`; `oauth2` and `ldap` are refused until built.
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
    /// Only `code`.
    #[serde(default = "code")]
    pub response_type: String,
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
}

impl std::fmt::Debug for IdentityProviderInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityProviderInput")
            .field("scheme", &self.scheme)
            .field("client_secret", &self.client_secret.as_ref().map(|_| ".."))
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
    /// The client secret sealed by the issuer (base64url of nonce and ciphertext); never
    /// the plaintext.
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
    pub client_auth_method: UpstreamAuthMethod,
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
}

impl IdentityProvider {
    pub fn view(&self) -> IdentityProviderView {
        IdentityProviderView {
            scheme: self.scheme.clone(),
            display_name: self.display_name.clone(),
            enabled: self.enabled,
            provider_type: self.provider_type,
            authority: self.authority.clone(),
            client_id: self.client_id.clone(),
            has_client_secret: self.client_secret_sealed.is_some(),
            client_auth_method: self.auth_method(),
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

impl IdentityProviderInput {
    /// Checks the body on its own; `sealed` is the client secret already sealed (or the
    /// stored one kept on `PUT`).
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
            ProviderType::Ldap => c.push("type", "ldap is not supported yet; use oidc or oauth2"),
        }
        if let Some(d) = &self.display_name {
            c.check(
                !d.trim().is_empty() && d.chars().count() <= 200,
                "displayName",
                "must be 1 to 200 characters",
            );
        }
        match &self.client_id {
            Some(id) => c.check(
                !id.is_empty() && id.len() <= 512 && !id.chars().any(char::is_control),
                "clientId",
                "must be 1 to 512 characters without control characters",
            ),
            None => c.push("clientId", "is required"),
        }
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
        c.check(
            self.response_type == "code",
            "responseType",
            "only code is supported (the authorization code flow with PKCE)",
        );
        c.finish()?;
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
            response_type: self.response_type,
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
        assert_eq!(fields(e), ["type"]);
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
            UpstreamAuthMethod::PrivateKeyJwt
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
}
