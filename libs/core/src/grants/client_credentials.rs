//! The `client_credentials` grant (RFC 6749 section 4.4): which scopes a client gets, which
//! APIs the token is for, and which algorithm signs it. Client authentication happens
//! before this (the issuer's edge); this module decides on an authenticated client.

use signet_jose::Algorithm;

use crate::client::GrantType;
use crate::commands::OFFLINE_ACCESS;
use crate::oauth::OAuthError;
use crate::projection::{ClientEntry, Projection};
use crate::scope::ScopeKind;

/// What a successful `client_credentials` request is granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant<'p> {
    /// Granted scopes, in request order, without duplicates.
    pub scopes: Vec<&'p str>,
    /// Names of the enabled API resources holding the granted scopes (may be empty).
    pub audiences: Vec<&'p str>,
    pub alg: Algorithm,
}

/// RFC 6749 section 3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Decides the grant for an authenticated client. `scope` is the request's `scope`
/// parameter; when absent, every API scope the client is allowed is granted (RFC 6749
/// section 3.3 lets the server pick a documented default).
pub fn decide<'p>(
    p: &'p Projection,
    client: &'p ClientEntry,
    scope: Option<&str>,
    default_alg: Algorithm,
) -> Result<AccessGrant<'p>, OAuthError> {
    if !client.allows(GrantType::ClientCredentials) {
        return Err(OAuthError::unauthorized_client(
            "the client is not allowed to use the client_credentials grant",
        ));
    }
    let mut scopes: Vec<&'p str> = Vec::new();
    match scope {
        Some(requested) => {
            for token in requested.split(' ') {
                if !valid_scope_token(token) {
                    return Err(OAuthError::invalid_scope(
                        "scope must be space-separated scope tokens (RFC 6749 section 3.3)",
                    ));
                }
                let Some(allowed) = client.client.allowed_scopes.iter().find(|s| *s == token)
                else {
                    return Err(OAuthError::invalid_scope(format!(
                        "scope {token:?} is not allowed for this client"
                    )));
                };
                if token == OFFLINE_ACCESS {
                    return Err(OAuthError::invalid_scope(
                        "offline_access needs a user; client_credentials has none",
                    ));
                }
                match p.scope(token) {
                    Some(e) if e.kind == ScopeKind::Api && e.scope.enabled => {}
                    Some(e) if e.kind == ScopeKind::Identity => {
                        return Err(OAuthError::invalid_scope(format!(
                            "scope {token:?} is an identity scope and needs a user; client_credentials has none"
                        )))
                    }
                    _ => {
                        return Err(OAuthError::invalid_scope(format!(
                            "scope {token:?} is unknown or disabled"
                        )))
                    }
                }
                if !scopes.contains(&allowed.as_str()) {
                    scopes.push(allowed.as_str());
                }
            }
        }
        None => {
            scopes.extend(
                client
                    .client
                    .allowed_scopes
                    .iter()
                    .filter(|s| {
                        p.scope(s)
                            .is_some_and(|e| e.kind == ScopeKind::Api && e.scope.enabled)
                    })
                    .map(String::as_str),
            );
            if scopes.is_empty() {
                return Err(OAuthError::invalid_scope(
                    "no scope was requested and the client is allowed no API scope",
                ));
            }
        }
    }

    let (audiences, alg) = audiences_and_alg(p, &scopes, default_alg)?;
    Ok(AccessGrant {
        scopes,
        audiences,
        alg,
    })
}

/// The API resources that hold `scopes` (the token's `aud`), and the algorithm that signs
/// the token: `default_alg` unless the resources restrict it, then the first algorithm all of
/// them allow.
pub fn audiences_and_alg<'p>(
    p: &'p Projection,
    scopes: &[&str],
    default_alg: Algorithm,
) -> Result<(Vec<&'p str>, Algorithm), OAuthError> {
    let mut audiences: Vec<&'p str> = Vec::new();
    let mut allowed_algs: Option<Vec<Algorithm>> = None;
    for s in scopes {
        for r in p.audiences_of(s) {
            let name = r.resource.name.as_str();
            if audiences.contains(&name) {
                continue;
            }
            audiences.push(name);
            let algs = &r.resource.allowed_access_token_signing_algorithms;
            if !algs.is_empty() {
                allowed_algs = Some(match allowed_algs {
                    None => algs.clone(),
                    Some(prev) => prev.into_iter().filter(|a| algs.contains(a)).collect(),
                });
            }
        }
    }
    let alg = match allowed_algs {
        None => default_alg,
        Some(algs) if algs.contains(&default_alg) => default_alg,
        Some(algs) => *algs.first().ok_or_else(|| {
            OAuthError::invalid_scope(
                "the API resources of the requested scopes allow no common signing algorithm",
            )
        })?,
    };
    Ok((audiences, alg))
}
