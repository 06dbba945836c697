//! Property tests of redirect-URI registration and matching. The matching invariant: an
//! accepted redirect URI is byte-equal to the registered one, or both are `http` URIs on
//! the same loopback IP literal that differ only in the port (RFC 8252 section 7.3), which
//! a browser's URL parser (the `url` crate, WHATWG) agrees sends it to the same host, path
//! and query.

use proptest::prelude::*;

use super::*;
use crate::fuzz::config;

/// `uri` with the `:port` right after a loopback IP literal removed.
fn without_loopback_port(uri: &str) -> Option<String> {
    for host in ["http://127.0.0.1", "http://[::1]"] {
        if let Some(rest) = uri.strip_prefix(host) {
            let rest = match rest.strip_prefix(':') {
                Some(p) => p.trim_start_matches(|c: char| c.is_ascii_digit()),
                None => rest,
            };
            return Some(format!("{host}{rest}"));
        }
    }
    None
}

/// Whether accepting `requested` for `registered` is allowed by the invariant.
pub(crate) fn may_accept(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Some(a), Some(b)) = (
        without_loopback_port(registered),
        without_loopback_port(requested),
    ) else {
        return false;
    };
    let (Ok(g), Ok(r)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return false;
    };
    let loopback_ip = matches!(r.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(r.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    a == b
        && r.scheme() == "http"
        && loopback_ip
        && r.host() == g.host()
        && r.username().is_empty()
        && r.password().is_none()
        && r.path() == g.path()
        && r.query() == g.query()
        && r.fragment().is_none()
}

/// The parts of a URI: scheme, host, port, path and query.
type Parts = (
    &'static str,
    &'static str,
    Option<&'static str>,
    String,
    Option<&'static str>,
);

fn parts() -> impl Strategy<Value = Parts> {
    // Mostly http on a loopback IP literal: the one case where bytes may differ.
    let scheme = prop_oneof![
        4 => Just("http"),
        1 => prop::sample::select(vec!["https", "com.example.app", "HTTP"]),
    ];
    let host = prop_oneof![
        2 => Just("127.0.0.1"),
        2 => Just("[::1]"),
        3 => prop::sample::select(vec![
        "localhost",
        "app.example",
        "127.0.0.1.evil.example",
        "127.0.0.2",
        "[0:0:0:0:0:0:0:1]",
        "2130706433",
    ]),
    ];
    let port = prop::option::of(prop::sample::select(vec![
        "0", "1", "80", "3000", "65535", "65536", "8080", "00080", "",
    ]));
    // Few paths and queries, so two URIs often differ only in host or port.
    let path = prop_oneof![
        3 => prop::sample::select(vec!["", "/", "/cb", "/cb/", "/CB", "/a/b"]).prop_map(str::to_owned),
        1 => "(/[a-z]{0,3}){0,3}",
    ];
    let query = prop::option::of(prop::sample::select(vec!["", "a=1", "a=1&b", "%41"]));
    (scheme, host, port, path, query)
}

fn join((s, h, p, path, q): &Parts) -> String {
    let port = p.map(|p| format!(":{p}")).unwrap_or_default();
    let query = q.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{s}://{h}{port}{path}{query}")
}

fn registered_uri() -> impl Strategy<Value = String> {
    parts().prop_map(|p| join(&p))
}

/// Registered and requested URIs that share each part with some probability.
fn related_uris() -> impl Strategy<Value = (String, String)> {
    (
        parts(),
        parts(),
        prop::collection::vec(prop::bool::weighted(0.75), 5),
    )
        .prop_map(|(g, other, keep)| {
            let r = (
                if keep[0] { g.0 } else { other.0 },
                if keep[1] { g.1 } else { other.1 },
                if keep[2] { g.2 } else { other.2 },
                if keep[3] { g.3.clone() } else { other.3 },
                if keep[4] { g.4 } else { other.4 },
            );
            (join(&g), join(&r))
        })
}

/// Characters that change how a URI parses.
const SPECIAL: &[char] = &[
    ':', '/', '?', '#', '@', '[', ']', '%', '\\', '.', '0', '9', ' ', '\t', 'A', '\u{0}',
];

/// A requested URI: the registered one edited a little, or anything.
fn requested_uri(registered: String) -> impl Strategy<Value = String> {
    let len = registered.len();
    let edit = (0..=len, prop::sample::select(SPECIAL), 0u8..5, "[0-9]{0,7}").prop_map(
        move |(at, c, op, digits)| {
            let mut s = registered.clone();
            let at = (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
            match op {
                0 => s.insert(at, c),
                1 if at < s.len() => {
                    s.remove(at);
                }
                2 => s.insert_str(at, &format!(":{digits}")),
                3 => s.insert_str(at, &digits),
                _ => s.truncate(at),
            }
            s
        },
    );
    prop_oneof![4 => edit, 2 => registered_uri(), 1 => "[a-z0-9:/?#@.\\[\\]%]{0,30}"]
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn matching_accepts_only_the_registered_uri_or_a_loopback_port_change(
        (registered, requested) in registered_uri()
            .prop_flat_map(|g| (Just(g.clone()), requested_uri(g))),
    ) {
        let accepted = redirect_uri_matches(&registered, &requested);
        prop_assert_eq!(accepted, redirect_uri_matches(&registered, &requested));
        prop_assert!(
            !accepted || may_accept(&registered, &requested),
            "{requested:?} accepted for {registered:?}"
        );
        // The registered URI always matches itself.
        prop_assert!(redirect_uri_matches(&registered, &registered));
    }

    #[test]
    fn matching_uris_that_differ_in_one_part(
        (registered, requested) in related_uris(),
    ) {
        let accepted = redirect_uri_matches(&registered, &requested);
        prop_assert!(
            !accepted || may_accept(&registered, &requested),
            "{requested:?} accepted for {registered:?}"
        );
    }

    #[test]
    fn matching_arbitrary_strings_never_panics(registered in ".{0,40}", requested in ".{0,40}") {
        let accepted = redirect_uri_matches(&registered, &requested);
        prop_assert!(!accepted || may_accept(&registered, &requested));
    }

    #[test]
    fn registration_rules_are_deterministic(
        value in prop_oneof![registered_uri(), ".{0,40}"],
        any_policy in prop::bool::ANY,
    ) {
        let policy = if any_policy { RedirectUriPolicy::AllowAny } else { RedirectUriPolicy::Strict };
        let rules = |v: &str| {
            let mut c = Collector::default();
            crate::validation::check_absolute_uri(&mut c, "u".into(), v);
            check_redirect_uri(&mut c, "u".into(), v, policy);
            c.finish()
        };
        let first = rules(&value);
        prop_assert_eq!(&first, &rules(&value));
        // Never a script-carrying scheme, under any policy.
        if first.is_ok() {
            let scheme = url::Url::parse(&value).map(|u| u.scheme().to_owned()).unwrap_or_default();
            prop_assert!(!NEVER_SCHEMES.contains(&scheme.as_str()), "{value:?}");
        }
        let _ = is_localhost_http(&value);
    }
}
