//! The HTTP Basic `Authorization` header of client authentication (`basic_id_secret`):
//! never a panic, the same answer twice, every failure the same `invalid_client`.
#![no_main]

use axum::http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use signet_issuer::http::client_auth::basic_id_secret;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(data) {
        headers.insert(header::AUTHORIZATION, v);
    }
    let first = basic_id_secret(&headers);
    assert_eq!(first, basic_id_secret(&headers));
    if let Err(e) = first {
        assert_eq!(e.code.as_str(), "invalid_client");
    }
});
