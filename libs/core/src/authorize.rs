//! The authorization endpoint's rules (RFC 6749 sections 3.1 and 4.1, RFC 7636, OIDC Core
//! sections 3.1.2, 3.2.2 and 3.3.2): which client and redirect URI a request names, whether
//! the rest of it is acceptable for that client, and PKCE.
//!
//! Checking happens in two steps because their errors go to different places. Errors of
//! [`check_client`] (no such client, a redirect URI that is not registered) must never
//! redirect: the user sees an error page. Errors of [`check_request`] go back to the
//! client's (now verified) redirect URI, with `state` and `iss`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::client::GrantType;
use crate::commands::OFFLINE_ACCESS;
use crate::grants::client_credentials::valid_scope_token;
use crate::oauth::{ErrorCode, OAuthError};
use crate::projection::{ClientEntry, Projection};
use crate::redirect_uri::redirect_uri_matches;
use crate::scope::ScopeKind;

/// The longest value accepted for any single authorization request parameter.
pub const MAX_PARAM_LEN: usize = 2048;

/// `response_type` (OAuth 2.0 Multiple Response Type Encoding Practices): a set of `code`,
/// `id_token` and `token`; order does not matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseType {
    pub code: bool,
    pub id_token: bool,
    pub token: bool,
}

impl ResponseType {
    /// `None` for anything but a non-empty set of the three values without repeats
    /// (`none` is not supported).
    pub fn parse(s: &str) -> Option<Self> {
        let mut r = ResponseType {
            code: false,
            id_token: false,
            token: false,
        };
        for part in s.split(' ') {
            let slot = match part {
                "code" => &mut r.code,
                "id_token" => &mut r.id_token,
                "token" => &mut r.token,
                _ => return None,
            };
            if *slot {
                return None;
            }
            *slot = true;
        }
        Some(r)
    }

    /// The client grant type that allows this response type: `code` alone is the
    /// authorization code flow, `code` with anything else hybrid, the rest implicit.
    pub fn grant_type(self) -> GrantType {
        match (self.code, self.id_token || self.token) {
            (true, false) => GrantType::AuthorizationCode,
            (true, true) => GrantType::Hybrid,
            _ => GrantType::Implicit,
        }
    }

    /// Whether tokens travel in the authorization response (so never in a query string).
    pub fn returns_tokens(self) -> bool {
        self.id_token || self.token
    }

    /// The default response mode: query for `code`, fragment otherwise.
    pub fn default_mode(self) -> ResponseMode {
        if self.returns_tokens() {
            ResponseMode::Fragment
        } else {
            ResponseMode::Query
        }
    }
}

/// `response_mode` (OAuth 2.0 Multiple Response Type Encoding Practices, Form Post).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

impl ResponseMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "query" => Some(ResponseMode::Query),
            "fragment" => Some(ResponseMode::Fragment),
            "form_post" => Some(ResponseMode::FormPost),
            _ => None,
        }
    }
}

/// `prompt` (OIDC Core section 3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    pub select_account: bool,
}

impl Prompt {
    pub fn parse(s: &str) -> Option<Self> {
        let mut p = Prompt::default();
        for part in s.split(' ').filter(|p| !p.is_empty()) {
            match part {
                "none" => p.none = true,
                "login" => p.login = true,
                "consent" => p.consent = true,
                "select_account" => p.select_account = true,
                _ => return None,
            }
        }
        // `none` with any other value is an error (section 3.1.2.1).
        if p.none && (p.login || p.consent || p.select_account) {
            return None;
        }
        Some(p)
    }
}

/// `code_challenge_method` (RFC 7636 section 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PkceMethod {
    S256,
    Plain,
}

/// A PKCE challenge as the authorization request carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeChallenge {
    pub challenge: String,
    pub method: PkceMethod,
}

/// RFC 7636 section 4.1: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" /
/// "~"` (the same rule for verifiers and S256/plain challenges).
pub fn valid_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

impl CodeChallenge {
    /// RFC 7636 section 4.6, compared in constant time.
    pub fn verify(&self, verifier: &str) -> bool {
        if !valid_pkce_value(verifier) {
            return false;
        }
        let computed = match self.method {
            PkceMethod::S256 => signet_jose::b64url(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
            ),
            PkceMethod::Plain => verifier.to_owned(),
        };
        computed.as_bytes().ct_eq(self.challenge.as_bytes()).into()
    }
}

/// A checked authorization request: every value the rest of the flow needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// Whether the request named `redirect_uri` (then the token request must repeat it).
    pub redirect_uri_explicit: bool,
    pub response_type: ResponseType,
    pub response_mode: ResponseMode,
    /// Requested scopes in request order, without duplicates; all allowed for the client.
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    pub prompt: Prompt,
    pub max_age: Option<u64>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    /// RFC 8707 `resource` values: API resource names the access token is narrowed to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// RFC 9449 section 10 `dpop_jkt`: the thumbprint of the key the code is bound to; the
    /// token request must carry a DPoP proof made with that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// The authentication level the request asks for ([`requested_acr`]): from
    /// `acr_values` (voluntary) or an `acr` member of the `claims` parameter's `id_token`
    /// (essential when it says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<RequestedAcr>,
    /// The upstream identity provider `acr_values=idp:<scheme>` asks to sign in through
    /// (IdentityServer's convention); other ACR values are voluntary and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_hint: Option<String>,
}

/// A level an authorization request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedAcr {
    pub level: crate::mfa::Level,
    /// OIDC Core 5.5.1.1: an essential `acr` must be met, or the request fails; a
    /// voluntary one (`acr_values`) is met when possible.
    pub essential: bool,
}

/// The level a request asks for: the weakest known value of `acr_values` (OIDC Core
/// 3.1.2.1, any value satisfies), and of the `claims` parameter's `id_token.acr` (`value`
/// or `values`, OIDC Core 5.5.1.1), the stronger of the two. Unknown values are ignored
/// (a client may list values of other servers); a `claims` parameter that is not a JSON
/// object is refused.
pub fn requested_acr(
    acr_values: Option<&str>,
    claims: Option<&str>,
) -> Result<Option<RequestedAcr>, OAuthError> {
    use crate::mfa::Level;
    let mut out: Option<RequestedAcr> =
        acr_values
            .and_then(Level::from_acr_values)
            .map(|level| RequestedAcr {
                level,
                essential: false,
            });
    if let Some(c) = claims {
        let v: serde_json::Value = serde_json::from_str(c)
            .ok()
            .filter(serde_json::Value::is_object)
            .ok_or_else(|| {
                OAuthError::invalid_request("claims must be a JSON object (OIDC Core 5.5)")
            })?;
        if let Some(acr) = v.get("id_token").and_then(|t| t.get("acr")) {
            let mut names: Vec<&str> = Vec::new();
            if let Some(s) = acr.get("value").and_then(|x| x.as_str()) {
                names.push(s);
            }
            if let Some(list) = acr.get("values").and_then(|x| x.as_array()) {
                names.extend(list.iter().filter_map(|x| x.as_str()));
            }
            let essential = acr.get("essential").and_then(|e| e.as_bool()) == Some(true);
            if let Some(level) = names.into_iter().filter_map(Level::parse).min() {
                let stronger =
                    out.is_none_or(|o| level > o.level || (level == o.level && essential));
                if stronger {
                    out = Some(RequestedAcr { level, essential });
                }
            }
        }
    }
    Ok(out)
}

/// Whether `s` can be a JWK SHA-256 thumbprint (RFC 7638): 43 base64url characters.
pub fn valid_jkt(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl AuthorizeRequest {
    /// An OpenID Connect request (scope `openid`): ID tokens, `nonce`, `prompt`.
    pub fn is_oidc(&self) -> bool {
        self.scopes.iter().any(|s| s == "openid")
    }
}

/// An error that must not redirect (RFC 6749 section 4.1.2.1): shown on the error page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub struct PageError {
    pub error: ErrorCode,
    pub description: String,
}

fn page(error: ErrorCode, description: impl Into<String>) -> PageError {
    PageError {
        error,
        description: description.into(),
    }
}

/// An error that goes back to the client's redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    pub error: OAuthError,
    pub redirect_uri: String,
    pub mode: ResponseMode,
    pub state: Option<String>,
}

/// Parameters of one authorization request, by name. A parameter given twice or longer than
/// [`MAX_PARAM_LEN`] is refused before this is built (at the HTTP edge).
pub trait Params {
    /// The value, `None` when absent or empty (RFC 6749 section 3.1).
    fn get(&self, name: &str) -> Option<&str>;
    /// Every non-empty value of a parameter that may repeat (`resource`, RFC 8707).
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.get(name).into_iter().collect()
    }
}

/// Step one: the client and the redirect URI (exact match, RFC 9700 section 2.1, except
/// the port of a loopback IP redirect URI, RFC 8252 section 7.3). When the
/// request has no `redirect_uri` and the client registered exactly one, that one is used
/// (RFC 6749 section 3.1.2.3); OpenID Connect requests must name it (checked in step two).
pub fn check_client<'p>(
    p: &'p Projection,
    params: &dyn Params,
) -> Result<(&'p Arc<ClientEntry>, String), PageError> {
    let client_id = params
        .get("client_id")
        .ok_or_else(|| page(ErrorCode::InvalidRequest, "the request has no client_id"))?;
    let client = p
        .client(client_id)
        .filter(|c| c.client.enabled)
        .ok_or_else(|| {
            page(
                ErrorCode::InvalidClient,
                "the client is unknown or disabled",
            )
        })?;
    if !client
        .client
        .allowed_grant_types
        .iter()
        .any(|g| g.is_interactive())
    {
        return Err(page(
            ErrorCode::UnauthorizedClient,
            "this client does not sign users in through a browser",
        ));
    }
    let registered = &client.client.redirect_uris;
    let redirect_uri = match params.get("redirect_uri") {
        // The requested URI itself: a loopback one may name another port (RFC 8252 7.3).
        Some(uri) => registered
            .iter()
            .find(|r| redirect_uri_matches(r, uri))
            .map(|_| uri)
            .ok_or_else(|| {
                page(
                    ErrorCode::InvalidRequest,
                    "the redirect_uri is not registered for this client",
                )
            })?,
        None => match registered.as_slice() {
            [only] => only.as_str(),
            _ => {
                return Err(page(
                    ErrorCode::InvalidRequest,
                    "the request has no redirect_uri",
                ))
            }
        },
    };
    Ok((client, redirect_uri.to_owned()))
}

/// Step two: everything else, for a client and redirect URI from [`check_client`].
pub fn check_request(
    p: &Projection,
    client: &ClientEntry,
    redirect_uri: &str,
    params: &dyn Params,
) -> Result<AuthorizeRequest, Box<RedirectError>> {
    let state = params.get("state").map(str::to_owned);
    // Until the response type is known, errors go back the default way for `code`.
    let mut mode = ResponseMode::Query;
    let fail = |mode: ResponseMode, error: OAuthError| {
        Box::new(RedirectError {
            error,
            redirect_uri: redirect_uri.to_owned(),
            mode,
            state: state.clone(),
        })
    };
    if let Some(rt) = params.get("response_type").and_then(ResponseType::parse) {
        mode = rt.default_mode();
    }
    if let Some(m) = params.get("response_mode").and_then(ResponseMode::parse) {
        mode = m;
    }
    if params.get("request").is_some() {
        return Err(fail(
            mode,
            OAuthError::new(
                ErrorCode::RequestNotSupported,
                "request objects are not supported",
            ),
        ));
    }
    if params.get("request_uri").is_some() {
        return Err(fail(
            mode,
            OAuthError::new(
                ErrorCode::RequestUriNotSupported,
                "request_uri is not supported",
            ),
        ));
    }
    let response_type = match params.get("response_type") {
        None => {
            return Err(fail(
                mode,
                OAuthError::invalid_request("response_type is required"),
            ))
        }
        Some(s) => ResponseType::parse(s).ok_or_else(|| {
            fail(
                mode,
                OAuthError::new(
                    ErrorCode::UnsupportedResponseType,
                    "response_type must be code, id_token, token or a combination of them",
                ),
            )
        })?,
    };
    let response_mode = match params.get("response_mode") {
        None => response_type.default_mode(),
        Some(m) => ResponseMode::parse(m).ok_or_else(|| {
            fail(
                mode,
                OAuthError::invalid_request("response_mode must be query, fragment or form_post"),
            )
        })?,
    };
    let mode = response_mode;
    if response_type.returns_tokens() && response_mode == ResponseMode::Query {
        return Err(fail(
            ResponseMode::Fragment,
            OAuthError::invalid_request(
                "tokens are never returned in a query string: use fragment or form_post",
            ),
        ));
    }
    let grant = response_type.grant_type();
    if !client.allows(grant) {
        return Err(fail(
            mode,
            OAuthError::unauthorized_client(format!(
                "the client may not use response_type {}",
                params.get("response_type").unwrap_or_default()
            )),
        ));
    }
    if response_type.token && !client.client.allow_access_tokens_via_browser {
        return Err(fail(
            mode,
            OAuthError::unauthorized_client(
                "the client may not receive access tokens through the browser",
            ),
        ));
    }

    // Scopes: each allowed for the client, known and enabled.
    let requested = params
        .get("scope")
        .ok_or_else(|| fail(mode, OAuthError::invalid_scope("scope is required")))?;
    let scopes = check_scopes(p, client, requested).map_err(|e| fail(mode, e))?;
    let oidc = scopes.iter().any(|s| s == "openid");
    if response_type.id_token && !oidc {
        return Err(fail(
            mode,
            OAuthError::invalid_scope("response_type id_token needs the openid scope"),
        ));
    }
    if oidc && params.get("redirect_uri").is_none() {
        return Err(fail(
            mode,
            OAuthError::invalid_request("OpenID Connect requests must include redirect_uri"),
        ));
    }
    if scopes.is_empty() {
        return Err(fail(mode, OAuthError::invalid_scope("scope is required")));
    }
    // RFC 8707: each resource known and holding a requested scope; checked again (against
    // what was granted) when tokens are issued.
    let resources = crate::grants::resource_indicators::parse_resources(params.get_all("resource"))
        .map_err(|e| fail(mode, e))?;
    if !resources.is_empty() {
        crate::grants::resource_indicators::narrow(
            p,
            &resources,
            &scopes,
            signet_jose::Algorithm::RS256,
        )
        .map_err(|e| fail(mode, e))?;
    }
    let nonce = params.get("nonce").map(str::to_owned);
    // OIDC Core sections 3.2.2.1 and 3.3.2.11: an ID token from the authorization endpoint
    // must carry a nonce.
    if response_type.id_token && nonce.is_none() {
        return Err(fail(
            mode,
            OAuthError::invalid_request("nonce is required when an ID token is returned"),
        ));
    }

    // PKCE (RFC 7636), for responses with a code.
    let code_challenge = match params.get("code_challenge") {
        None => None,
        Some(challenge) => {
            let method = match params.get("code_challenge_method") {
                Some("S256") => PkceMethod::S256,
                Some("plain") | None => PkceMethod::Plain,
                Some(_) => {
                    return Err(fail(
                        mode,
                        OAuthError::invalid_request("code_challenge_method must be S256 or plain"),
                    ))
                }
            };
            if method == PkceMethod::Plain && !client.client.allow_plain_text_pkce {
                return Err(fail(
                    mode,
                    OAuthError::invalid_request("this client must use code_challenge_method S256"),
                ));
            }
            if !valid_pkce_value(challenge) {
                return Err(fail(
                    mode,
                    OAuthError::invalid_request(
                        "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
                    ),
                ));
            }
            Some(CodeChallenge {
                challenge: challenge.to_owned(),
                method,
            })
        }
    };
    if response_type.code && client.client.require_pkce && code_challenge.is_none() {
        return Err(fail(
            mode,
            OAuthError::invalid_request("code_challenge is required (PKCE, RFC 7636)"),
        ));
    }
    let dpop_jkt =
        match params.get("dpop_jkt") {
            None => None,
            Some(jkt) if valid_jkt(jkt) => Some(jkt.to_owned()),
            Some(_) => return Err(fail(
                mode,
                OAuthError::invalid_request(
                    "dpop_jkt must be a JWK SHA-256 thumbprint (RFC 7638): 43 base64url characters",
                ),
            )),
        };
    let prompt = match params.get("prompt") {
        None => Prompt::default(),
        Some(s) => Prompt::parse(s).ok_or_else(|| {
            fail(
                mode,
                OAuthError::invalid_request(
                    "prompt must be none, or a combination of login, consent and select_account",
                ),
            )
        })?,
    };
    let max_age = match params.get("max_age") {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            fail(
                mode,
                OAuthError::invalid_request("max_age must be a non-negative integer"),
            )
        })?),
    };
    let acr =
        requested_acr(params.get("acr_values"), params.get("claims")).map_err(|e| fail(mode, e))?;
    Ok(AuthorizeRequest {
        acr,
        client_id: client.client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        redirect_uri_explicit: params.get("redirect_uri").is_some(),
        response_type,
        response_mode,
        scopes,
        state,
        nonce,
        code_challenge,
        prompt,
        max_age,
        login_hint: params.get("login_hint").map(str::to_owned),
        ui_locales: params.get("ui_locales").map(str::to_owned),
        resources,
        dpop_jkt,
        idp_hint: params.get("acr_values").and_then(|v| {
            v.split(' ')
                .find_map(|a| a.strip_prefix("idp:"))
                .filter(|s| crate::identity_provider::valid_scheme(s))
                .map(str::to_owned)
        }),
    })
}

/// The scopes of a `scope` parameter (RFC 6749 section 3.3) a client may request, in request
/// order without duplicates: each allowed for the client, known and enabled;
/// `offline_access` only when the client allows it. Used at the authorization and device
/// authorization endpoints.
pub fn check_scopes(
    p: &Projection,
    client: &ClientEntry,
    requested: &str,
) -> Result<Vec<String>, OAuthError> {
    let mut scopes: Vec<String> = Vec::new();
    for token in requested.split(' ').filter(|s| !s.is_empty()) {
        if !valid_scope_token(token) {
            return Err(OAuthError::invalid_scope(
                "scope must be space-separated scope tokens (RFC 6749 section 3.3)",
            ));
        }
        // `offline_access` is governed by `allowOfflineAccess` alone, as in the reference
        // client model (its real-life client allows it without listing the scope).
        if token != OFFLINE_ACCESS && !client.client.allowed_scopes.iter().any(|s| s == token) {
            return Err(OAuthError::invalid_scope(format!(
                "scope {token:?} is not allowed for this client"
            )));
        }
        if token == OFFLINE_ACCESS {
            if !client.client.allow_offline_access {
                return Err(OAuthError::invalid_scope(
                    "the client may not request offline_access",
                ));
            }
        } else if !p.scope(token).is_some_and(|e| e.scope.enabled) {
            return Err(OAuthError::invalid_scope(format!(
                "scope {token:?} is unknown or disabled"
            )));
        }
        if !scopes.iter().any(|s| s == token) {
            scopes.push(token.to_owned());
        }
    }
    Ok(scopes)
}

/// The identity and API scopes among `scopes`.
pub fn split_scopes<'s>(p: &Projection, scopes: &'s [String]) -> (Vec<&'s str>, Vec<&'s str>) {
    let mut identity = Vec::new();
    let mut api = Vec::new();
    for s in scopes {
        match p.scope(s).map(|e| e.kind) {
            Some(ScopeKind::Identity) => identity.push(s.as_str()),
            Some(ScopeKind::Api) => api.push(s.as_str()),
            None => {}
        }
    }
    (identity, api)
}

/// The user claims the identity scopes among `scopes` release (their `userClaims`), taken
/// from `claims`. `sub` is never among them: the caller sets it.
pub fn released_claims(
    p: &Projection,
    scopes: &[String],
    claims: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for s in scopes {
        let Some(e) = p.scope(s) else { continue };
        if e.kind != ScopeKind::Identity || !e.scope.enabled {
            continue;
        }
        for c in &e.scope.user_claims {
            if c == "sub" {
                continue;
            }
            if let Some(v) = claims.get(c) {
                out.insert(c.clone(), v.clone());
            }
        }
    }
    out
}

/// Claim names an access token's user claims never take: the protocol's, and `family`
/// (the refresh-token family, which revocation reads).
const NOT_USER_CLAIMS: &[&str] = &["family"];

/// The user claims an access token carries: those the granted API scopes name in their
/// `userClaims`, and those the API resources holding a granted scope (its audiences) name
/// in theirs, taken from `claims`. Protocol claims are never among them.
pub fn access_token_claims(
    p: &Projection,
    scopes: &[String],
    claims: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    let mut take = |name: &str| {
        if crate::user::PROTOCOL_CLAIMS.contains(&name) || NOT_USER_CLAIMS.contains(&name) {
            return;
        }
        if let Some(v) = claims.get(name) {
            out.insert(name.to_owned(), v.clone());
        }
    };
    for s in scopes {
        let Some(e) = p.scope(s) else { continue };
        if e.kind != ScopeKind::Api || !e.scope.enabled {
            continue;
        }
        for c in &e.scope.user_claims {
            take(c);
        }
        for r in p.audiences_of(s) {
            for c in &r.resource.user_claims {
                take(&c.0);
            }
        }
    }
    out
}

/// The subject a client sees: the user's `sub`, or with `pairWiseSubjectSalt` a pairwise
/// identifier (OIDC Core section 8.1) derived from the sector (the redirect URI's host), the
/// user and the salt.
pub fn subject_for(client: &ClientEntry, redirect_uri: &str, sub: &str) -> String {
    match &client.client.pair_wise_subject_salt {
        None => sub.to_owned(),
        Some(salt) => {
            let sector = url::Url::parse(redirect_uri)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            let mut input = Vec::with_capacity(sector.len() + sub.len() + salt.len() + 2);
            input.extend_from_slice(sector.as_bytes());
            input.push(0);
            input.extend_from_slice(sub.as_bytes());
            input.push(0);
            input.extend_from_slice(salt.as_bytes());
            signet_jose::b64url(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input).as_ref(),
            )
        }
    }
}

/// `at_hash` / `c_hash` (OIDC Core section 3.3.2.11): the left half of the hash of the
/// ASCII value, with the hash of the ID token's algorithm (SHA-256 for RS256, PS256 and
/// ES256; SHA-512 for EdDSA with Ed25519, as deployed practice has it).
pub fn half_hash(alg: signet_jose::Algorithm, value: &str) -> String {
    use aws_lc_rs::digest::{digest, SHA256, SHA512};
    let d = match alg {
        signet_jose::Algorithm::EdDSA => digest(&SHA512, value.as_bytes()),
        _ => digest(&SHA256, value.as_bytes()),
    };
    let bytes = d.as_ref();
    signet_jose::b64url(&bytes[..bytes.len() / 2])
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;
