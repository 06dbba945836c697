//! Resource indicators (RFC 8707): the `resource` parameter names the APIs a token is for.
//! A value is an absolute URI without a fragment (section 2); it matches an enabled API
//! resource by its `name` (exact string comparison, as IdentityServer does, so resources
//! meant for indicators are named by URI, such as `https://api.example.com`). The token's
//! `aud` is narrowed to the named resources and its API scopes to theirs.

use signet_jose::Algorithm;

use crate::oauth::{ErrorCode, OAuthError};
use crate::projection::Projection;
use crate::scope::ScopeKind;

/// At most this many `resource` values in one request.
pub const MAX_RESOURCES: usize = 16;

fn invalid_target(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidTarget, d)
}

/// Checks the `resource` values of a request (RFC 8707 section 2): each an absolute URI
/// without a fragment. Returns them in request order without duplicates; empty values are
/// treated as omitted (RFC 6749 section 3.1).
pub fn parse_resources<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for v in values.into_iter().filter(|v| !v.is_empty()) {
        let shown: String = v.chars().take(64).collect();
        let parsed = url::Url::parse(v).map_err(|_| {
            invalid_target(format!(
                "resource {shown:?} is not an absolute URI (RFC 8707 section 2)"
            ))
        })?;
        if v.contains('#') || parsed.fragment().is_some() {
            return Err(invalid_target(format!(
                "resource {shown:?} must not include a fragment (RFC 8707 section 2)"
            )));
        }
        if !out.iter().any(|r| r == v) {
            out.push(v.to_owned());
        }
        if out.len() > MAX_RESOURCES {
            return Err(invalid_target(format!(
                "at most {MAX_RESOURCES} resource values are accepted"
            )));
        }
    }
    Ok(out)
}

/// A grant narrowed to the requested resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowed<'p> {
    /// The requested resources (the token's `aud`), in request order.
    pub audiences: Vec<&'p str>,
    /// The granted scopes kept: identity scopes, and the API scopes the requested
    /// resources hold; in the order given.
    pub scopes: Vec<String>,
    /// The algorithm signing the token: `default_alg` unless the resources restrict it.
    pub alg: Algorithm,
}

/// Narrows `scopes` (already granted or allowed) to `resources` (non-empty, from
/// [`parse_resources`]). Each resource must be an enabled API resource holding at least one
/// of `scopes`, else `invalid_target` (RFC 8707 section 2).
pub fn narrow<'p, S: AsRef<str>>(
    p: &'p Projection,
    resources: &[String],
    scopes: &[S],
    default_alg: Algorithm,
) -> Result<Narrowed<'p>, OAuthError> {
    let mut audiences: Vec<&'p str> = Vec::new();
    let mut allowed_algs: Option<Vec<Algorithm>> = None;
    for r in resources {
        let shown: String = r.chars().take(64).collect();
        let Some(entry) = p.api_resource(r).filter(|e| e.resource.enabled) else {
            return Err(invalid_target(format!(
                "resource {shown:?} is not a known API resource"
            )));
        };
        let held = scopes
            .iter()
            .any(|s| entry.resource.scopes.iter().any(|h| h == s.as_ref()));
        if !held {
            return Err(invalid_target(format!(
                "the request has no scope of resource {shown:?} that the client may use"
            )));
        }
        audiences.push(entry.resource.name.as_str());
        let algs = &entry.resource.allowed_access_token_signing_algorithms;
        if !algs.is_empty() {
            allowed_algs = Some(match allowed_algs {
                None => algs.clone(),
                Some(prev) => prev.into_iter().filter(|a| algs.contains(a)).collect(),
            });
        }
    }
    let kept: Vec<String> = scopes
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| match p.scope(s) {
            Some(e) if e.kind == ScopeKind::Api => audiences.iter().any(|a| {
                p.api_resource(a)
                    .is_some_and(|r| r.resource.scopes.iter().any(|h| h == s))
            }),
            // Identity scopes (and offline_access) are about the user, not an API: kept.
            _ => true,
        })
        .map(str::to_owned)
        .collect();
    let alg = match allowed_algs {
        None => default_alg,
        Some(algs) if algs.contains(&default_alg) => default_alg,
        Some(algs) => *algs.first().ok_or_else(|| {
            invalid_target("the requested resources allow no common signing algorithm")
        })?,
    };
    Ok(Narrowed {
        audiences,
        scopes: kept,
        alg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_values_must_be_absolute_uris_without_fragment() {
        let ok =
            parse_resources(["https://a.example/x", "urn:api:b", "https://a.example/x"]).unwrap();
        assert_eq!(ok, vec!["https://a.example/x", "urn:api:b"]);
        for bad in [
            "/relative",
            "api",
            "https://a.example/#f",
            "https://a.example/#",
        ] {
            let e = parse_resources([bad]).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidTarget, "{bad}");
        }
        assert!(parse_resources([""]).unwrap().is_empty());
        let many: Vec<String> = (0..=MAX_RESOURCES)
            .map(|i| format!("https://r{i}.example"))
            .collect();
        assert!(parse_resources(many.iter().map(String::as_str)).is_err());
    }

    fn projection() -> Projection {
        use crate::events::Event;
        let scope = |name: &str| {
            let mut s = crate::bootstrap::admin_scope();
            s.name = name.to_owned();
            s
        };
        let resource = |name: &str, scopes: &[&str], enabled: bool, algs: &[Algorithm]| {
            let mut r = crate::bootstrap::admin_resource()
                .map_secrets(|_| -> crate::secret::StoredSecret { unreachable!() });
            r.name = name.to_owned();
            r.enabled = enabled;
            r.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
            r.allowed_access_token_signing_algorithms = algs.to_vec();
            Event::ApiResourceCreated(Box::new(r))
        };
        let events = vec![
            Event::ApiScopeCreated(scope("read")),
            Event::ApiScopeCreated(scope("orders.write")),
            Event::ApiScopeCreated(scope("billing.write")),
            resource(
                "https://orders",
                &["read", "orders.write"],
                true,
                &[Algorithm::ES256],
            ),
            resource("https://billing", &["read", "billing.write"], true, &[]),
            resource("https://off", &["read"], false, &[]),
        ];
        let mut p = Projection::new();
        for (i, e) in events.into_iter().enumerate() {
            let subject = e.subject();
            p.apply(i as u64 + 1, &subject, e).unwrap();
        }
        p
    }

    #[test]
    fn narrowing_keeps_the_named_resources_their_scopes_and_identity_scopes() {
        let p = projection();
        let scopes = ["openid", "read", "orders.write", "billing.write"];
        // A scope both resources hold: only the named one is the audience.
        let n = narrow(&p, &["https://orders".into()], &scopes, Algorithm::RS256).unwrap();
        assert_eq!(n.audiences, ["https://orders"]);
        assert_eq!(n.scopes, ["openid", "read", "orders.write"]);
        assert_eq!(n.alg, Algorithm::ES256, "the resource's algorithm");
        let n = narrow(
            &p,
            &["https://billing".into(), "https://orders".into()],
            &scopes,
            Algorithm::RS256,
        )
        .unwrap();
        assert_eq!(n.audiences, ["https://billing", "https://orders"]);
        assert_eq!(n.scopes.len(), 4);
        for bad in ["https://off", "https://unknown"] {
            let e = narrow(&p, &[bad.into()], &scopes, Algorithm::RS256).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidTarget, "{bad}");
        }
        // No requested scope of the resource.
        let e = narrow(
            &p,
            &["https://billing".into()],
            &["orders.write"],
            Algorithm::RS256,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTarget);
    }
}
