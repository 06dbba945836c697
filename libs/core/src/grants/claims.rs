//! RFC 9068 access-token claims, written straight into a byte buffer: no intermediate
//! `serde_json::Value`, no map. Strings go through serde_json's escaper.

use crate::UnixTime;

/// The claims of a JWT access token (RFC 9068 section 2.2).
#[derive(Debug, Clone)]
pub struct AccessTokenClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    /// One or more audiences; a single one is written as a string.
    pub aud: &'a [&'a str],
    pub client_id: &'a str,
    pub scopes: &'a [&'a str],
    pub iat: UnixTime,
    pub exp: UnixTime,
    pub jti: Option<&'a str>,
    /// Extra members, already JSON (`"k":v,...`), e.g. the client's claims; may be empty.
    pub extra_json: &'a str,
}

fn string(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail, and a &str always serializes.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn int(out: &mut Vec<u8>, n: i64) {
    let mut buf = itoa_buf(n);
    out.append(&mut buf);
}

fn itoa_buf(n: i64) -> Vec<u8> {
    n.to_string().into_bytes()
}

impl AccessTokenClaims<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"iss\":");
        string(out, self.iss);
        out.extend_from_slice(b",\"sub\":");
        string(out, self.sub);
        out.extend_from_slice(b",\"aud\":");
        match self.aud {
            [one] => string(out, one),
            many => {
                out.push(b'[');
                for (i, a) in many.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    string(out, a);
                }
                out.push(b']');
            }
        }
        out.extend_from_slice(b",\"exp\":");
        int(out, self.exp);
        out.extend_from_slice(b",\"nbf\":");
        int(out, self.iat);
        out.extend_from_slice(b",\"iat\":");
        int(out, self.iat);
        if let Some(jti) = self.jti {
            out.extend_from_slice(b",\"jti\":");
            string(out, jti);
        }
        out.extend_from_slice(b",\"client_id\":");
        string(out, self.client_id);
        out.extend_from_slice(b",\"scope\":\"");
        for (i, s) in self.scopes.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            // Scope tokens are printable ASCII without '"' or '\\' (RFC 6749 section 3.3),
            // checked when they were parsed, so they need no escaping.
            out.extend_from_slice(s.as_bytes());
        }
        out.push(b'"');
        if !self.extra_json.is_empty() {
            out.push(b',');
            out.extend_from_slice(self.extra_json.as_bytes());
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json_with_rfc9068_members() {
        let claims = AccessTokenClaims {
            iss: "https://id.example/auth",
            sub: "svc\"1",
            aud: &["api1", "api2"],
            client_id: "svc\"1",
            scopes: &["read", "write"],
            iat: 1000,
            exp: 4600,
            jti: Some("abc"),
            extra_json: r#""client_role":["a","b"]"#,
        };
        let mut out = Vec::new();
        claims.write_json(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["sub"], "svc\"1");
        assert_eq!(v["aud"], serde_json::json!(["api1", "api2"]));
        assert_eq!(v["scope"], "read write");
        assert_eq!(v["exp"], 4600);
        assert_eq!(v["nbf"], 1000);
        assert_eq!(v["client_role"], serde_json::json!(["a", "b"]));

        let one = AccessTokenClaims {
            aud: &["api1"],
            jti: None,
            extra_json: "",
            ..claims
        };
        let mut out = Vec::new();
        one.write_json(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["aud"], "api1");
        assert!(v.get("jti").is_none());
    }
}
