//! Property tests of the form and query parsers of the protocol endpoints and pages
//! (`OAuthForm::parse`, `PageParams::parse`, `is_form`): any bytes get an answer, the same
//! one every time; an accepted body has no repeated parameter and gives back exactly what
//! a form encoder wrote; an error never echoes more than a short prefix of the body.

use std::collections::BTreeMap;

use axum::http::{header, HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::*;
use crate::http::browser::PageParams;
use crate::http::fuzz::config;

/// Bytes that look like a form: names, `=`, `&`, `+`, escapes (good and broken), UTF-8.
fn form_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "grant_type",
            "scope",
            "client_id",
            "=",
            "&",
            "+",
            "%",
            "%2",
            "%zz",
            "%26",
            "%3D",
            "%C3%A9",
            "%FF",
            "%00",
            "a",
            "",
            ";",
            "&&",
            "==",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..4),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_body_gets_the_same_answer(body in prop_oneof![form_like(), prop::collection::vec(any::<u8>(), 0..200)]) {
        let first = OAuthForm::parse(&body);
        let again = OAuthForm::parse(&body);
        match (&first, &again) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a, b);
                for (i, (k, _)) in a.iter().enumerate() {
                    prop_assert!(!a[..i].iter().any(|(seen, _)| seen == k), "{k:?} twice");
                }
            }
            (Err(a), Err(b)) => {
                prop_assert_eq!(a, b);
                prop_assert!(a.description.contains("is repeated"));
                // At most 64 bytes of the name, quoted and escaped.
                prop_assert!(a.description.len() < 64 * 10 + 40, "{}", a.description);
            }
            _ => prop_assert!(false, "{first:?} then {again:?}"),
        }
        if let Ok(p) = PageParams::parse(&body) {
            prop_assert!(p.0.iter().all(|(_, v)| v.len() <= signet_core::authorize::MAX_PARAM_LEN));
        }
    }

    #[test]
    fn a_form_encoder_output_parses_back(
        params in prop::collection::btree_map(".{0,12}", ".{0,24}", 0..8),
    ) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let parsed: BTreeMap<String, String> = OAuthForm::parse(body.as_bytes())
            .unwrap()
            .into_iter()
            .collect();
        prop_assert_eq!(parsed, params);
    }

    #[test]
    fn content_type_check_is_total(value in prop::collection::vec(any::<u8>(), 0..60)) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            headers.insert(header::CONTENT_TYPE, v);
        }
        let form = is_form(&headers);
        prop_assert_eq!(form, is_form(&headers));
        if form {
            let text = String::from_utf8_lossy(&value).to_ascii_lowercase();
            prop_assert!(text.contains("application/x-www-form-urlencoded"), "{text:?}");
        }
    }
}
