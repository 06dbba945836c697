//! Compact JWS signing (RFC 7515 section 7.1) with a header encoded once per key and type.

use std::cell::RefCell;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::{JoseError, SigningKey};

/// base64url without padding (RFC 7515 section 2).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

thread_local! {
    // Scratch space for the raw signature, reused by every signature on this thread.
    static SIG: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Signs payloads with one key and one `typ`; the protected header is encoded once, here.
#[derive(Debug, Clone)]
pub struct JwsSigner {
    key: Arc<SigningKey>,
    header_b64: String,
    sig_b64_len: usize,
}

impl JwsSigner {
    /// `typ` is `at+jwt` for access tokens (RFC 9068) and `JWT` for ID tokens.
    pub fn new(key: Arc<SigningKey>, typ: &str) -> Self {
        let header = serde_json::json!({
            "alg": key.alg().as_str(),
            "kid": key.kid(),
            "typ": typ,
        });
        let header_b64 = b64url(header.to_string().as_bytes());
        let sig_b64_len = base64::encoded_len(key.signature_len(), false).unwrap_or(0);
        JwsSigner {
            key,
            header_b64,
            sig_b64_len,
        }
    }

    pub fn key(&self) -> &Arc<SigningKey> {
        &self.key
    }

    /// Produces `header.payload.signature` for a payload that is already JSON.
    pub fn sign(&self, payload_json: &[u8]) -> Result<String, JoseError> {
        let payload_len = base64::encoded_len(payload_json.len(), false).unwrap_or(0);
        let mut out =
            String::with_capacity(self.header_b64.len() + payload_len + self.sig_b64_len + 2);
        out.push_str(&self.header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(payload_json, &mut out);
        SIG.with(|sig| {
            let mut sig = sig.borrow_mut();
            sig.clear();
            self.key.sign_into(out.as_bytes(), &mut sig)?;
            out.push('.');
            URL_SAFE_NO_PAD.encode_string(&sig[..], &mut out);
            Ok(out)
        })
    }
}
