//! The redirect-URI policy (OAuth 2.1 section 2.3.1, RFC 8252 sections 7 and 8.3, RFC 9700
//! section 4.1): which URIs a client may register as `redirectUris` and
//! `postLogoutRedirectUris`, and how the authorization endpoint matches a requested one.
//!
//! Registration accepts `https` URIs (web clients), `http` URIs only on a loopback host
//! (`127.0.0.1`, `[::1]`, or `localhost`, which is accepted with a warning because a name
//! can resolve elsewhere), and private-use schemes in reverse-domain form such as
//! `com.example.app:/cb` (native apps). Everything else is refused: `javascript:`, `data:`,
//! `file:`, `ftp:` and any other scheme. A server started with
//! `--insecure-allow-any-redirect-uri` ([`RedirectUriPolicy::AllowAny`]) accepts any
//! absolute URI for development, still never the script-carrying schemes.
//!
//! Matching is exact byte comparison, except that a loopback IP literal `http` URI matches
//! whatever port the request names (RFC 8252 section 7.3: a native app listens on an
//! ephemeral port it learns only at run time).

use crate::validation::Collector;

/// How strictly registered redirect URIs are checked. Server configuration
/// (`--insecure-allow-any-redirect-uri`), passed into client validation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RedirectUriPolicy {
    /// OAuth 2.1 / RFC 8252: https, http on loopback, private-use schemes.
    #[default]
    Strict,
    /// Development only: any absolute URI except the schemes in [`NEVER_SCHEMES`].
    AllowAny,
}

/// Schemes that are refused under every policy: they run code or read local files in the
/// user agent instead of reaching a client.
pub const NEVER_SCHEMES: &[&str] = &["javascript", "data", "vbscript", "file", "blob", "about"];

/// Loopback hosts on which `http` is allowed, as they appear in a URI.
const LOOPBACK_IPS: &[&str] = &["127.0.0.1", "[::1]"];

/// Checks one registered redirect URI against `policy`. URIs that are not absolute
/// hierarchical URIs without a fragment (`javascript:alert(1)`) are left to
/// [`crate::validation::check_absolute_uri`], which names that rule.
pub fn check_redirect_uri(
    c: &mut Collector,
    field: String,
    value: &str,
    policy: RedirectUriPolicy,
) {
    let Ok(u) = url::Url::parse(value) else {
        return;
    };
    if u.cannot_be_a_base() || u.fragment().is_some() {
        return;
    }
    let scheme = u.scheme();
    if NEVER_SCHEMES.contains(&scheme) {
        c.push(
            field,
            format!("the scheme \"{scheme}:\" is never allowed in a redirect URI"),
        );
        return;
    }
    if policy == RedirectUriPolicy::AllowAny {
        return;
    }
    match scheme {
        "https" => c.check(u.host().is_some(), field, "an https URI needs a host"),
        "http" => {
            let host = u.host_str().unwrap_or("");
            c.check(
                LOOPBACK_IPS.contains(&host) || host == "localhost",
                field,
                "http is allowed only on a loopback host (127.0.0.1, [::1], localhost); use https (OAuth 2.1, RFC 8252 section 8.3)",
            );
        }
        s if is_private_use_scheme(s) => {}
        s => c.push(
            field,
            format!(
                "the scheme \"{s}:\" is not allowed: use https, http on a loopback host, or a private-use scheme in reverse-domain form such as com.example.app:/callback (RFC 8252 section 7.1)"
            ),
        ),
    }
}

/// RFC 8252 section 7.1: a private-use scheme is a reverse domain name, so it has a dot
/// (`com.example.app`); short names such as `ftp` or `myapp` are refused.
fn is_private_use_scheme(s: &str) -> bool {
    s.contains('.') && s.split('.').all(|label| !label.is_empty())
}

/// Whether `value` registers `http` on `localhost`: accepted, but a name may resolve to a
/// non-loopback address (RFC 8252 section 8.3 prefers `127.0.0.1` or `[::1]`); callers warn.
pub fn is_localhost_http(value: &str) -> bool {
    url::Url::parse(value).is_ok_and(|u| u.scheme() == "http" && u.host_str() == Some("localhost"))
}

/// `http://<loopback IP literal>[:port]` and the rest of the URI, or `None`.
fn split_loopback(uri: &str) -> Option<(&str, &str)> {
    let after = uri.strip_prefix("http://")?;
    let host = LOOPBACK_IPS.iter().find(|h| after.starts_with(**h))?;
    let mut rest = &after[host.len()..];
    if let Some(port_and_rest) = rest.strip_prefix(':') {
        let digits = port_and_rest.bytes().take_while(u8::is_ascii_digit).count();
        let port = &port_and_rest[..digits];
        if port.is_empty() || port.len() > 5 || port.parse::<u32>().ok()? > 65535 {
            return None;
        }
        rest = &port_and_rest[digits..];
    }
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return None;
    }
    Some((host, rest))
}

/// Whether a requested redirect URI matches a registered one: byte for byte, or, for a
/// loopback IP literal `http` URI, byte for byte apart from the port (RFC 8252 section 7.3).
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    match (split_loopback(registered), split_loopback(requested)) {
        (Some((h1, r1)), Some((h2, r2))) => h1 == h2 && r1 == r2,
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(value: &str, policy: RedirectUriPolicy) -> Vec<String> {
        let mut c = Collector::default();
        check_redirect_uri(&mut c, "redirectUris[0]".into(), value, policy);
        match c.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.errors.into_iter().map(|f| f.rule).collect(),
        }
    }

    #[test]
    fn strict_policy_accepts_web_loopback_and_private_use_uris() {
        for ok in [
            "https://app.example.com/callback",
            "https://app.example.com:8443/cb?x=1",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:3000/callback",
            "http://[::1]:53000/cb",
            "http://localhost:8080/cb",
            "com.example.app:/oauth2redirect",
            "com.example.app://callback",
        ] {
            assert_eq!(
                rules(ok, RedirectUriPolicy::Strict),
                Vec::<String>::new(),
                "{ok}"
            );
        }
    }

    #[test]
    fn strict_policy_refuses_plain_http_and_other_schemes_with_the_rule() {
        let r = rules("http://app.example.com/callback", RedirectUriPolicy::Strict);
        assert!(r[0].contains("loopback") && r[0].contains("https"), "{r:?}");
        let r = rules("http://10.0.0.1/cb", RedirectUriPolicy::Strict);
        assert!(r[0].contains("loopback"), "{r:?}");
        for bad in [
            "ftp://files.example.com/cb",
            "myapp:/cb",
            "ws://127.0.0.1/cb",
        ] {
            let r = rules(bad, RedirectUriPolicy::Strict);
            assert!(r[0].contains("is not allowed"), "{bad}: {r:?}");
        }
        for never in [
            "javascript://app.example/%0Aalert(1)",
            "data://text/html,hi",
            "file:///etc/passwd",
            "vbscript://x/y",
        ] {
            for policy in [RedirectUriPolicy::Strict, RedirectUriPolicy::AllowAny] {
                let r = rules(never, policy);
                assert!(r[0].contains("never allowed"), "{never}: {r:?}");
            }
        }
    }

    #[test]
    fn the_development_policy_allows_any_other_absolute_uri() {
        for ok in [
            "http://app.example.com/callback",
            "ftp://files.example.com/cb",
            "myapp:/cb",
        ] {
            assert!(rules(ok, RedirectUriPolicy::AllowAny).is_empty(), "{ok}");
        }
    }

    #[test]
    fn localhost_is_flagged_for_a_warning() {
        assert!(is_localhost_http("http://localhost:3000/cb"));
        assert!(!is_localhost_http("http://127.0.0.1:3000/cb"));
        assert!(!is_localhost_http("https://localhost/cb"));
    }

    #[test]
    fn loopback_ip_uris_match_any_port_everything_else_exactly() {
        let m = redirect_uri_matches;
        assert!(m("http://127.0.0.1/cb", "http://127.0.0.1:51000/cb"));
        assert!(m("http://127.0.0.1:3000/cb", "http://127.0.0.1:4000/cb"));
        assert!(m("http://[::1]/cb?a=1", "http://[::1]:8/cb?a=1"));
        assert!(m("http://127.0.0.1:3000/cb", "http://127.0.0.1/cb"));
        // Path, query, host and scheme still match byte for byte.
        assert!(!m("http://127.0.0.1/cb", "http://127.0.0.1:5/cb2"));
        assert!(!m("http://127.0.0.1/cb", "http://127.0.0.1:5/CB"));
        assert!(!m("http://127.0.0.1/cb", "http://[::1]:5/cb"));
        assert!(!m(
            "http://127.0.0.1/cb",
            "http://127.0.0.1.evil.example/cb"
        ));
        assert!(!m("http://127.0.0.1/cb", "http://127.0.0.1:99999/cb"));
        assert!(!m("http://127.0.0.1/cb", "http://127.0.0.1:/cb"));
        assert!(!m(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5@evil.example/cb"
        ));
        // localhost and https are exact.
        assert!(!m("http://localhost/cb", "http://localhost:5/cb"));
        assert!(!m("https://app.example/cb", "https://app.example:444/cb"));
        assert!(m("https://app.example/cb", "https://app.example/cb"));
    }
}
