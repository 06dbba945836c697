//! Property tests of the HTTP Basic client credentials (RFC 6749 section 2.3.1): any
//! `Authorization` header gets the same answer every time and never panics; both parts
//! decode as application/x-www-form-urlencoded values (`+` is a space, `%XX` a byte, every
//! other byte itself), so whatever id and secret a client encodes come back unchanged.

use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use proptest::prelude::*;

use super::*;
use crate::http::fuzz::config;

/// An independent decoder of one form-urlencoded value (WHATWG URL, "percent-decode" after
/// replacing `+`): the oracle `form_unescape` must agree with.
fn oracle(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn basic_header(value: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(value) {
        h.insert(header::AUTHORIZATION, v);
    }
    h
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Parts as clients send them: plain, encoded, half-encoded, broken escapes.
fn part() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._~-]{0,20}",
        "[A-Za-z0-9%+&=:;/ ]{0,20}",
        prop::collection::vec(
            prop::sample::select(vec![
                "a", "%", "%4", "%41", "%zz", "+", "&", "=", "%26", "%C3", "%A9", ":", "é"
            ]),
            0..8
        )
        .prop_map(|v| v.concat()),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn basic_parts_decode_as_form_values(s in part()) {
        prop_assert_eq!(form_unescape(&s), oracle(&s));
    }

    #[test]
    fn encoded_credentials_come_back_unchanged(id in ".{0,24}", secret in ".{0,40}") {
        let value = format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(&id), encode(&secret))));
        let got = basic_id_secret(&basic_header(value.as_bytes())).unwrap();
        prop_assert_eq!(got, Some((id, secret)));
    }

    #[test]
    fn any_authorization_header_gets_the_same_answer(
        value in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..80),
            (prop::sample::select(vec!["Basic ", "basic  ", "Bearer ", "Basic", "BASIC\t"]), part(), part())
                .prop_map(|(s, a, b)| format!("{s}{}", STANDARD.encode(format!("{a}:{b}"))).into_bytes()),
            (prop::sample::select(vec!["Basic ", "Basic =", "Basic  "]), prop::collection::vec(any::<u8>(), 0..30))
                .prop_map(|(s, raw)| format!("{s}{}", STANDARD.encode(raw)).into_bytes()),
        ],
    ) {
        let headers = basic_header(&value);
        let first = basic_id_secret(&headers);
        prop_assert_eq!(&first, &basic_id_secret(&headers));
        if let Err(e) = first {
            prop_assert_eq!(e.code.as_str(), "invalid_client");
            // The same description for every failure: nothing about the header leaks.
            prop_assert_eq!(e.description, FAILED);
        }
    }
}
