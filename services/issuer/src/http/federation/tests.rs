use std::sync::Arc;

use serde_json::json;
use signet_jose::{generate_pkcs8, Algorithm, ClientKey, JwsSigner, SigningKey};

use super::*;

const ISS: &str = "https://up.example";
const NOW: i64 = 1_800_000_000;

fn key(kid: &str) -> Arc<SigningKey> {
    let der = generate_pkcs8(Algorithm::ES256).unwrap();
    Arc::new(SigningKey::from_pkcs8(kid.to_owned(), Algorithm::ES256, &der).unwrap())
}

fn public(k: &SigningKey) -> ClientKey {
    ClientKey::parse(&serde_json::to_string(k.public_jwk()).unwrap()).unwrap()
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "signet", "sub": "u-1", "nonce": "n-1", "exp": NOW + 300, "iat": NOW})
}

fn sign(k: &Arc<SigningKey>, claims: &Value) -> String {
    JwsSigner::new(k.clone(), "JWT")
        .sign(claims.to_string().as_bytes())
        .unwrap()
}

fn want() -> Expected<'static> {
    Expected {
        issuer: ISS,
        client_id: "signet",
        nonce: "n-1",
        now: NOW,
    }
}

fn check(token: &str, keys: &[ClientKey]) -> Result<Map<String, Value>, IdTokenError> {
    verify_id_token(token, keys, &want())
}

fn with(patch: Value) -> Value {
    let mut c = claims();
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

#[test]
fn a_good_token_verifies_and_each_broken_rule_is_named() {
    let k = key("k1");
    let keys = [public(&k)];
    let ok = check(&sign(&k, &claims()), &keys).unwrap();
    assert_eq!(ok["sub"], "u-1");
    // Several audiences with azp = us, and the leeway on exp and iat.
    let multi = with(
        json!({"aud": ["other", "signet"], "azp": "signet", "exp": NOW - 30, "iat": NOW + 30}),
    );
    assert!(check(&sign(&k, &multi), &keys).is_ok());
    for (patch, err) in [
        (json!({"iss": "https://evil.example"}), IdTokenError::Issuer),
        (json!({"iss": null}), IdTokenError::Issuer),
        (json!({"aud": "someone-else"}), IdTokenError::Audience),
        (
            json!({"aud": ["other", "signet"]}),
            IdTokenError::AuthorizedParty,
        ),
        (json!({"azp": "other"}), IdTokenError::AuthorizedParty),
        (json!({"nonce": "n-2"}), IdTokenError::Nonce),
        (json!({"nonce": null}), IdTokenError::Nonce),
        (json!({"exp": NOW - 61}), IdTokenError::Expired),
        (json!({"exp": null}), IdTokenError::Expired),
        (json!({"iat": NOW + 120}), IdTokenError::IssuedAt),
        (json!({"sub": ""}), IdTokenError::Subject),
        (json!({"sub": "x".repeat(256)}), IdTokenError::Subject),
    ] {
        assert_eq!(
            check(&sign(&k, &with(patch.clone())), &keys),
            Err(err),
            "{patch}"
        );
    }
}

#[test]
fn signatures_other_keys_hmac_and_none_are_refused() {
    let k = key("k1");
    let token = sign(&k, &claims());
    // Signed by a key the provider does not publish (same kid).
    let stranger = key("k1");
    assert!(matches!(
        check(&token, &[public(&stranger)]),
        Err(IdTokenError::Signature(_))
    ));
    // Unknown kid.
    let other = key("k2");
    assert!(matches!(
        check(&token, &[public(&other)]),
        Err(IdTokenError::Signature(_))
    ));
    // A tampered payload.
    let mut parts: Vec<&str> = token.split('.').collect();
    let evil = signet_jose::b64url(with(json!({"sub": "admin"})).to_string().as_bytes());
    parts[1] = &evil;
    assert!(matches!(
        check(&parts.join("."), &[public(&k)]),
        Err(IdTokenError::Signature(_))
    ));
    // alg none and HS256 (keyed with anything public) never verify.
    let body = signet_jose::b64url(claims().to_string().as_bytes());
    for header in [json!({"alg": "none"}), json!({"alg": "HS256", "kid": "k1"})] {
        let h = signet_jose::b64url(header.to_string().as_bytes());
        let forged = format!("{h}.{body}.{}", signet_jose::b64url(b"sig"));
        assert!(
            matches!(
                check(&forged, &[public(&k)]),
                Err(IdTokenError::Signature(_))
            ),
            "{header}"
        );
    }
}

#[test]
fn sealed_secrets_open_only_for_their_scheme_and_key() {
    use crate::sealer::ConfigSealer;
    use signet_keymanager::Kek;
    let s = ConfigSealer::from_kek(&Kek::from_bytes(&[7u8; 32]).unwrap());
    let sealed = s.seal_idp_secret("corp", "top-secret").unwrap();
    assert!(!sealed.contains("top-secret"));
    assert_eq!(
        s.open_idp_secret("corp", &sealed).as_deref(),
        Some("top-secret")
    );
    assert_eq!(
        s.open_idp_secret("other", &sealed),
        None,
        "bound to the scheme"
    );
    let other = ConfigSealer::from_kek(&Kek::from_bytes(&[8u8; 32]).unwrap());
    assert_eq!(other.open_idp_secret("corp", &sealed), None);
    assert_eq!(s.open_totp("corp", &sealed), None, "bound to its purpose");
    assert_ne!(
        s.seal_idp_secret("corp", "top-secret").unwrap(),
        sealed,
        "a fresh nonce each time"
    );
    assert_eq!(s.open_idp_secret("corp", "!!"), None);
    assert_eq!(s.open_idp_secret("corp", ""), None);
}
