//! Compact JWS verification (`verify_compact`) against a real key of each algorithm: no
//! input the fuzzer makes verifies, nothing panics, the same answer twice.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use signet_jose::{generate_pkcs8, verify_compact, Algorithm, SigningKey};

fn keys() -> &'static [Arc<SigningKey>] {
    static KEYS: OnceLock<Vec<Arc<SigningKey>>> = OnceLock::new();
    KEYS.get_or_init(|| {
        Algorithm::ALL
            .iter()
            .map(|alg| {
                let der = generate_pkcs8(*alg).expect("key");
                Arc::new(SigningKey::from_pkcs8(format!("k-{alg}"), *alg, &der).expect("key"))
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let Ok(token) = std::str::from_utf8(rest) else {
        return;
    };
    let key = &keys()[usize::from(k) % keys().len()];
    let first = verify_compact(token, |_| Some(key.public_jwk()));
    assert!(first.is_err(), "{token:?} verified");
    let again = verify_compact(token, |_| Some(key.public_jwk()));
    assert_eq!(format!("{first:?}"), format!("{again:?}"));
});
