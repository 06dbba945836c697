//! Property tests of compact JWS verification, the parser behind every bearer token the
//! issuer checks: arbitrary strings and well-formed tokens with arbitrary headers never
//! panic and always get the same answer; a token verifies only as it was signed (any edit
//! of its text, however small, is refused), and only with the key and algorithm that
//! signed it.

use std::sync::{Arc, LazyLock};

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::verify_compact;
use crate::{b64url, generate_pkcs8, Algorithm, JwsSigner, SigningKey};

/// Bounded runs; `PROPTEST_CASES` overrides for longer local runs. Failures become
/// regression tests, not files.
fn config(cases: u32) -> Config {
    let env = std::env::var("PROPTEST_CASES").ok();
    Config {
        cases: env.and_then(|v| v.parse().ok()).unwrap_or(cases),
        failure_persistence: None,
        ..Config::default()
    }
}

/// One key per algorithm, generated once.
static KEYS: LazyLock<Vec<Arc<SigningKey>>> = LazyLock::new(|| {
    Algorithm::ALL
        .iter()
        .map(|alg| {
            let der = generate_pkcs8(*alg).unwrap();
            Arc::new(SigningKey::from_pkcs8(format!("k-{alg}"), *alg, &der).unwrap())
        })
        .collect()
});

fn outcome(token: &str, key: &SigningKey) -> String {
    format!("{:?}", verify_compact(token, |_| Some(key.public_jwk())))
}

/// Characters of compact JWS and near them.
const ALPHABET: &[char] = &[
    'A', 'z', '0', '9', '-', '_', '.', '=', '+', '/', ' ', '\u{e9}',
];

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_strings_are_refused_deterministically(token in ".{0,200}", k in 0usize..4) {
        let key = &KEYS[k];
        let first = outcome(&token, key);
        prop_assert!(first.starts_with("Err("), "{first}");
        prop_assert_eq!(first, outcome(&token, key));
    }

    #[test]
    fn arbitrary_headers_and_signatures_are_refused(
        alg in prop::sample::select(vec!["RS256", "PS256", "ES256", "EdDSA", "none", "HS256", "", "rs256"]),
        kid in prop::option::of("k-[A-Za-z0-9]{0,6}"),
        extra in prop::sample::select(vec!["", ",\"typ\":\"at+jwt\"", ",\"typ\":1", ",\"crit\":[\"x\"]", ",\"alg\":\"none\""]),
        payload in prop::collection::vec(any::<u8>(), 0..64),
        signature in prop::collection::vec(any::<u8>(), 0..300),
        k in 0usize..4,
    ) {
        let kid = kid.map(|k| format!(",\"kid\":\"{k}\"")).unwrap_or_default();
        let header = format!("{{\"alg\":\"{alg}\"{kid}{extra}}}");
        let token = format!("{}.{}.{}", b64url(header.as_bytes()), b64url(&payload), b64url(&signature));
        let key = &KEYS[k];
        let first = outcome(&token, key);
        prop_assert!(first.starts_with("Err("), "{first}");
        prop_assert_eq!(first, outcome(&token, key));
    }

    #[test]
    fn a_token_verifies_only_as_signed(
        k in 0usize..4,
        payload in prop::collection::vec(any::<u8>(), 0..80),
        at in any::<prop::sample::Index>(),
        c in prop::sample::select(ALPHABET),
        op in 0u8..4,
    ) {
        let key = &KEYS[k];
        let token = JwsSigner::new(key.clone(), "at+jwt").sign(&payload).unwrap();
        let ok = verify_compact(&token, |kid| (kid == key.kid()).then(|| key.public_jwk())).unwrap();
        prop_assert_eq!(&ok.payload, &payload);
        prop_assert_eq!(ok.alg, key.alg());
        // Another algorithm's key, even under the same kid, is refused.
        let other = &KEYS[(k + 1) % KEYS.len()];
        prop_assert!(verify_compact(&token, |_| Some(other.public_jwk())).is_err());

        let mut edited = token.clone();
        let i = at.index(token.len() + 1);
        match op {
            0 if i < token.len() => edited.replace_range(i..=i, c.encode_utf8(&mut [0; 4])),
            1 if i < token.len() => {
                edited.remove(i);
            }
            2 => edited.insert(i, c),
            _ => edited.truncate(i),
        }
        let result = verify_compact(&edited, |_| Some(key.public_jwk()));
        prop_assert!(result.is_err() || edited == token, "{edited:?} verified");
    }
}
