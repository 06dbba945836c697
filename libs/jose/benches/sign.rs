//! Signatures per second, per algorithm, three ways:
//!
//! - `raw_signature`: aws-lc-rs alone, signing a fixed 300-byte message with a key pair
//!   parsed once and kept. This is the limit; nothing that signs can go faster.
//! - `jws_signer`: our [`JwsSigner::sign`] on a realistic RFC 9068 claims payload (~300
//!   bytes of JSON): pre-encoded header, base64url payload, signature, base64url signature.
//!   Its distance to `raw_signature` is what the JWS framing costs.
//! - `jsonwebtoken_encode`: `jsonwebtoken::encode` with an `EncodingKey` built per call, i.e.
//!   the private key parsed on every signature, plus the header and the claims serialized
//!   from `serde_json::Value`s. This is the baseline a straightforward implementation gets.
//!
//! Run with `cargo bench -p signet-jose --bench sign` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
    RSA_PSS_SHA256,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use signet_jose::{generate_pkcs8, verify_compact, Algorithm, JwsSigner, SigningKey};

/// A realistic RFC 9068 access-token payload: 309 bytes of JSON.
const CLAIMS: &str = concat!(
    r#"{"iss":"https://id.example.com/auth","sub":"billing-service","#,
    r#""aud":"https://api.example.com/billing","exp":1767229200,"nbf":1767225600,"#,
    r#""iat":1767225600,"jti":"3q2-7wT0bG9y0dHlKq9x8A","client_id":"billing-service","#,
    r#""scope":"billing.read billing.write","role":["billing.reader","billing.writer"],"#,
    r#""tenant":"acme"}"#
);

/// The kept aws-lc-rs key pair of the `raw_signature` benchmark.
enum RawPair {
    Rsa(RsaKeyPair, &'static dyn aws_lc_rs::signature::RsaEncoding),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl RawPair {
    fn new(alg: Algorithm, pkcs8: &[u8]) -> Self {
        match alg {
            Algorithm::RS256 => RawPair::Rsa(
                RsaKeyPair::from_pkcs8(pkcs8).expect("RSA PKCS#8"),
                &RSA_PKCS1_SHA256,
            ),
            Algorithm::PS256 => RawPair::Rsa(
                RsaKeyPair::from_pkcs8(pkcs8).expect("RSA PKCS#8"),
                &RSA_PSS_SHA256,
            ),
            Algorithm::ES256 => RawPair::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .expect("P-256 PKCS#8"),
            ),
            Algorithm::EdDSA => {
                RawPair::Ed(Ed25519KeyPair::from_pkcs8(pkcs8).expect("Ed25519 PKCS#8"))
            }
        }
    }

    /// Signs `msg` into `sig` (cleared first), as the kept-key-pair path does.
    fn sign(&self, rng: &SystemRandom, msg: &[u8], sig: &mut Vec<u8>) {
        sig.clear();
        match self {
            RawPair::Rsa(pair, padding) => {
                sig.resize(pair.public_modulus_len(), 0);
                pair.sign(*padding, rng, msg, sig).expect("RSA signature");
            }
            RawPair::Ec(pair) => {
                sig.extend_from_slice(pair.sign(rng, msg).expect("ECDSA signature").as_ref())
            }
            RawPair::Ed(pair) => sig.extend_from_slice(pair.sign(msg).as_ref()),
        }
    }
}

/// Reads one DER TLV: returns (tag, contents, rest).
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let (&tag, rest) = input.split_first().expect("DER tag");
    let (&first, mut rest) = rest.split_first().expect("DER length");
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let (contents, rest) = rest.split_at(len);
    (tag, contents, rest)
}

/// `jsonwebtoken`'s aws-lc-rs RSA signer parses its DER with `RsaKeyPair::from_der`, which
/// takes a PKCS#1 `RSAPrivateKey`, not PKCS#8. PKCS#8 v1 is
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey }` and the octet
/// string holds exactly that PKCS#1 structure, so it is unwrapped here, once, before timing.
/// (ES256 and EdDSA take PKCS#8 as is: `from_pkcs8` in both signers.)
fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Vec<u8> {
    let (tag, info, _) = der_tlv(pkcs8);
    assert_eq!(tag, 0x30, "PrivateKeyInfo is a SEQUENCE");
    let (tag, _version, rest) = der_tlv(info);
    assert_eq!(tag, 0x02, "version INTEGER");
    let (tag, _algorithm, rest) = der_tlv(rest);
    assert_eq!(tag, 0x30, "AlgorithmIdentifier SEQUENCE");
    let (tag, private_key, _) = der_tlv(rest);
    assert_eq!(tag, 0x04, "privateKey OCTET STRING");
    RsaKeyPair::from_der(private_key).expect("the PKCS#8 octet string is PKCS#1");
    private_key.to_vec()
}

/// The jsonwebtoken side of one algorithm: its algorithm, header, and the DER its
/// `EncodingKey::from_*_der` wants.
struct JwtBaseline {
    header: jsonwebtoken::Header,
    der: Vec<u8>,
    alg: Algorithm,
}

impl JwtBaseline {
    fn new(alg: Algorithm, kid: &str, pkcs8: &[u8]) -> Self {
        let jwt_alg = match alg {
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::PS256 => jsonwebtoken::Algorithm::PS256,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        };
        let mut header = jsonwebtoken::Header::new(jwt_alg);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(kid.to_owned());
        let der = match alg {
            Algorithm::RS256 | Algorithm::PS256 => pkcs8_to_pkcs1(pkcs8),
            Algorithm::ES256 | Algorithm::EdDSA => pkcs8.to_vec(),
        };
        JwtBaseline { header, der, alg }
    }

    /// The key built (and, inside `encode`, parsed) on every call.
    fn encoding_key(&self) -> jsonwebtoken::EncodingKey {
        match self.alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                jsonwebtoken::EncodingKey::from_rsa_der(&self.der)
            }
            Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_der(&self.der),
            Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_der(&self.der),
        }
    }

    fn encode(&self, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(&self.header, claims, &self.encoding_key()).expect("jsonwebtoken")
    }
}

fn bench_sign(c: &mut Criterion) {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let message = [0x5au8; 300];
    let claims_value: serde_json::Value = serde_json::from_str(CLAIMS).expect("claims JSON");
    let rng = SystemRandom::new();

    for alg in Algorithm::ALL {
        let pkcs8 = generate_pkcs8(alg).expect("key generation");
        let kid = format!("bench-{}", alg.as_str().to_ascii_lowercase());
        let key = Arc::new(SigningKey::from_pkcs8(kid.clone(), alg, &pkcs8).expect("key"));
        let raw = RawPair::new(alg, &pkcs8);
        let signer = JwsSigner::new(key.clone(), "at+jwt");
        let baseline = JwtBaseline::new(alg, &kid, &pkcs8);

        // Once, before timing: both tokens verify with the same public key.
        let find = |k: &str| (k == key.kid()).then(|| key.public_jwk());
        let ours = signer.sign(CLAIMS.as_bytes()).expect("JwsSigner");
        assert_eq!(
            verify_compact(&ours, find).expect("ours").payload,
            CLAIMS.as_bytes()
        );
        let theirs = baseline.encode(&claims_value);
        verify_compact(&theirs, find).expect("jsonwebtoken's token verifies");

        let mut group = c.benchmark_group(format!("sign/{alg}"));
        group
            .throughput(Throughput::Elements(1))
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(30);

        let mut sig = Vec::with_capacity(512);
        group.bench_function("raw_signature", |b| {
            b.iter(|| {
                raw.sign(&rng, black_box(&message), &mut sig);
                black_box(&sig);
            })
        });
        group.bench_function("jws_signer", |b| {
            b.iter(|| signer.sign(black_box(CLAIMS.as_bytes())).expect("sign"))
        });
        group.bench_function("jsonwebtoken_encode", |b| {
            b.iter(|| baseline.encode(black_box(&claims_value)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_sign);
criterion_main!(benches);
