//! Tokens signed here verify with an independent library (jsonwebtoken) from the public JWK
//! alone, for every algorithm; and our own verifier refuses tampering and foreign keys.

use std::sync::Arc;

use jsonwebtoken::{decode, decode_header, jwk::Jwk as JwtJwk, DecodingKey, Validation};
use signet_jose::{generate_pkcs8, verify_compact, Algorithm, JwsSigner, SigningKey};

fn key(alg: Algorithm, kid: &str) -> Arc<SigningKey> {
    let der = generate_pkcs8(alg).unwrap();
    Arc::new(SigningKey::from_pkcs8(kid, alg, &der).unwrap())
}

#[test]
fn every_algorithm_verifies_with_jsonwebtoken() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    for alg in Algorithm::ALL {
        let key = key(alg, &format!("k-{alg}"));
        let signer = JwsSigner::new(key.clone(), "at+jwt");
        let token = signer
            .sign(br#"{"sub":"svc","exp":4102444800,"aud":"api"}"#)
            .unwrap();
        let header = decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let jwk_json = serde_json::to_value(key.public_jwk()).unwrap();
        assert!(jwk_json.get("d").is_none(), "no private member in a JWK");
        let jwk: JwtJwk = serde_json::from_value(jwk_json).unwrap();
        let dk = DecodingKey::from_jwk(&jwk).unwrap();
        let mut v = Validation::new(header.alg);
        v.set_audience(&["api"]);
        let data = decode::<serde_json::Value>(&token, &dk, &v).unwrap();
        assert_eq!(data.claims["sub"], "svc");

        // Our verifier agrees, and refuses a tampered payload and a key of another kid.
        let ok = verify_compact(&token, |kid| (kid == key.kid()).then(|| key.public_jwk()));
        assert_eq!(
            ok.unwrap().payload,
            br#"{"sub":"svc","exp":4102444800,"aud":"api"}"#
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = signet_jose::b64url(br#"{"sub":"admin"}"#);
        parts[1] = &forged;
        let tampered = parts.join(".");
        assert!(verify_compact(&tampered, |_| Some(key.public_jwk())).is_err());
        let other = self::key(alg, "other");
        assert!(verify_compact(&token, |_| Some(other.public_jwk())).is_err());
    }
}

#[test]
fn alg_none_and_hmac_are_refused() {
    let key = key(Algorithm::ES256, "k");
    let h = signet_jose::b64url(br#"{"alg":"none","kid":"k"}"#);
    let p = signet_jose::b64url(b"{}");
    let token = format!("{h}.{p}.");
    assert!(verify_compact(&token, |_| Some(key.public_jwk())).is_err());
    let h = signet_jose::b64url(br#"{"alg":"HS256","kid":"k"}"#);
    let token = format!("{h}.{p}.AAAA");
    assert!(verify_compact(&token, |_| Some(key.public_jwk())).is_err());
    // A header naming another of our algorithms than the key's own is refused too.
    let h = signet_jose::b64url(br#"{"alg":"EdDSA","kid":"k"}"#);
    let token = format!("{h}.{p}.AAAA");
    assert!(verify_compact(&token, |_| Some(key.public_jwk())).is_err());
}

#[test]
fn pem_import_and_small_rsa_rejected() {
    let der = generate_pkcs8(Algorithm::EdDSA).unwrap();
    let pem_text = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
    let k = SigningKey::from_pem("imported", Algorithm::EdDSA, &pem_text).unwrap();
    assert_eq!(k.public_jwk().crv.as_deref(), Some("Ed25519"));
    assert!(SigningKey::from_pem("x", Algorithm::RS256, &pem_text).is_err());
    assert!(SigningKey::from_pem("x", Algorithm::RS256, "not pem").is_err());
}
