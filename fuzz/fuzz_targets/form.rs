//! Form bodies and query strings of the protocol endpoints and pages: `OAuthForm::parse`,
//! `PageParams::parse`. Never a panic; the same answer twice; no repeated name accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_issuer::http::browser::PageParams;
use signet_issuer::http::form::OAuthForm;

fuzz_target!(|data: &[u8]| {
    let first = OAuthForm::parse(data);
    assert_eq!(first, OAuthForm::parse(data));
    if let Ok(params) = first {
        for (i, (k, _)) in params.iter().enumerate() {
            assert!(!params[..i].iter().any(|(seen, _)| seen == k));
        }
    }
    let _ = PageParams::parse(data);
});
