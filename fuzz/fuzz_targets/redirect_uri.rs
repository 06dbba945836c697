//! Redirect-URI matching: `registered NUL requested`. An accepted URI is byte-equal to the
//! registered one, or both are `http` on the same loopback IP literal and equal once the
//! port after it is removed (RFC 8252 section 7.3).
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_core::redirect_uri::redirect_uri_matches;

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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((registered, requested)) = text.split_once('\0') else {
        return;
    };
    if !redirect_uri_matches(registered, requested) || registered == requested {
        return;
    }
    let (a, b) = (
        without_loopback_port(registered),
        without_loopback_port(requested),
    );
    assert!(
        a.is_some() && a == b,
        "{requested:?} accepted for {registered:?}"
    );
    let r = url::Url::parse(requested).expect("an accepted loopback URI parses");
    let g = url::Url::parse(registered).expect("a registered loopback URI parses");
    assert_eq!(r.host(), g.host());
    assert_eq!((r.path(), r.query()), (g.path(), g.query()));
    assert!(r.username().is_empty() && r.password().is_none());
});
