//! Client certificates (mutual TLS, RFC 8705): what Signet reads from one and how a
//! registered subject DN is compared with it.
//!
//! A certificate yields its SHA-256 thumbprint (`x5t#S256`, section 3.1: base64url of the
//! SHA-256 of the DER) and its subject DN. Subject DNs (a certificate's, or one written as
//! an `X509Name` secret, RFC 4514) are compared in a canonical form ([`canonical_dn`]):
//!
//! - attribute types are case-insensitive and a known name equals its OID (`CN`, `cn` and
//!   `2.5.4.3` are one type; known: CN, C, L, ST, O, OU, STREET, DC, UID, SERIALNUMBER,
//!   EMAILADDRESS/E);
//! - values are unescaped (RFC 4514 `\,` and `\2C` forms), trimmed, runs of whitespace
//!   become one space, and letters are compared case-insensitively (X.520 caseIgnoreMatch,
//!   as LDAP and Java's `X500Principal` do);
//! - the attributes of a multi-valued RDN (`+`) are compared as a set;
//! - the RDN order matters (RFC 4514 writes the last RDN of the certificate first).
//!
//! A `#`-prefixed hex value (a raw BER value) is not decoded: it is compared as text.

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Attribute type names and their OIDs.
const NAMES: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("C", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("STREET", "2.5.4.9"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1"),
    ("E", "1.2.840.113549.1.9.1"),
];

/// Why bytes are not a usable certificate, or text not a DN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("is not a DER X.509 certificate")]
    NotACertificate,
    #[error("is not a distinguished name (RFC 4514, e.g. CN=client,O=Example,C=SE): {0}")]
    BadDn(&'static str),
}

/// What Signet reads from a client certificate (the leaf of the presented chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// `x5t#S256`: base64url (no padding) of the SHA-256 of the DER.
    pub thumbprint: String,
    /// The subject DN in canonical form ([`canonical_dn`]).
    pub subject: String,
}

/// base64url of the SHA-256 of `der`: the certificate's `x5t#S256`.
pub fn thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, der))
}

/// Parses a DER certificate (nothing may follow it) and reads its thumbprint and subject.
pub fn certificate_facts(der: &[u8]) -> Result<CertificateFacts, CertError> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| CertError::NotACertificate)?;
    if !rest.is_empty() {
        return Err(CertError::NotACertificate);
    }
    // The certificate lists the most significant RDN first; RFC 4514 the least.
    let mut rdns: Vec<Vec<(String, String)>> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|a| {
                    let value = match a.as_str() {
                        Ok(s) => s.to_owned(),
                        // Not a string type: its BER bytes in hex, as RFC 4514 writes it.
                        Err(_) => format!("#{}", hex(a.attr_value().data)),
                    };
                    (a.attr_type().to_id_string(), value)
                })
                .collect()
        })
        .collect();
    rdns.reverse();
    Ok(CertificateFacts {
        thumbprint: thumbprint(der),
        subject: canonical(rdns),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The canonical form of an RFC 4514 DN string (see the module for what is normalised).
pub fn canonical_dn(dn: &str) -> Result<String, CertError> {
    let mut rdns = Vec::new();
    for rdn in split_unescaped(dn, ',')? {
        let mut attrs = Vec::new();
        for atv in split_unescaped(&rdn, '+')? {
            let (t, v) = atv
                .split_once('=')
                .ok_or(CertError::BadDn("each attribute is TYPE=value"))?;
            let t = t.trim();
            let oid = oid_of(t).ok_or(CertError::BadDn(
                "unknown attribute type: use CN, C, L, ST, STREET, O, OU, SERIALNUMBER, DC, UID, EMAILADDRESS or a dotted OID",
            ))?;
            attrs.push((oid, unescape(v)?));
        }
        rdns.push(attrs);
    }
    if rdns.is_empty() {
        return Err(CertError::BadDn("it is empty"));
    }
    Ok(canonical(rdns))
}

fn oid_of(t: &str) -> Option<String> {
    if let Some((_, oid)) = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(t)) {
        return Some((*oid).to_owned());
    }
    let dotted = t
        .strip_prefix("oid.")
        .or_else(|| t.strip_prefix("OID."))
        .unwrap_or(t);
    let ok = !dotted.is_empty()
        && dotted
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| dotted.to_owned())
}

/// Splits at `sep` where it is not escaped with a backslash (escapes are kept).
fn split_unescaped(s: &str, sep: char) -> Result<Vec<String>, CertError> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            cur.push(c);
            cur.push(
                chars
                    .next()
                    .ok_or(CertError::BadDn("it ends with a backslash"))?,
            );
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    if parts.iter().any(|p| p.trim().is_empty()) && !(parts.len() == 1 && s.trim().is_empty()) {
        return Err(CertError::BadDn("an empty RDN or attribute"));
    }
    Ok(parts.into_iter().filter(|p| !p.trim().is_empty()).collect())
}

/// RFC 4514 section 3: `\` followed by a special character, or by two hex digits (a byte
/// of the UTF-8 value).
fn unescape(v: &str) -> Result<String, CertError> {
    let mut bytes = Vec::with_capacity(v.len());
    let mut it = v.bytes().peekable();
    while let Some(b) = it.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        let first = it
            .next()
            .ok_or(CertError::BadDn("it ends with a backslash"))?;
        let is_hex = |c: u8| c.is_ascii_hexdigit();
        match it.peek().copied() {
            Some(second) if is_hex(first) && is_hex(second) => {
                it.next();
                let pair = [first, second];
                let text =
                    std::str::from_utf8(&pair).map_err(|_| CertError::BadDn("bad escape"))?;
                bytes.push(
                    u8::from_str_radix(text, 16).map_err(|_| CertError::BadDn("bad escape"))?,
                );
            }
            _ => bytes.push(first),
        }
    }
    String::from_utf8(bytes).map_err(|_| CertError::BadDn("an escaped value is not UTF-8"))
}

/// RDNs (least significant first, attributes as (OID, raw value)) in canonical form.
fn canonical(rdns: Vec<Vec<(String, String)>>) -> String {
    let rdns: Vec<String> = rdns
        .into_iter()
        .map(|attrs| {
            let mut attrs: Vec<String> = attrs
                .into_iter()
                .map(|(oid, value)| format!("{oid}={}", escape(&fold(&value))))
                .collect();
            attrs.sort();
            attrs.join("+")
        })
        .collect();
    rdns.join(",")
}

/// Trimmed, whitespace runs as one space, lowercase.
fn fold(v: &str) -> String {
    v.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, ',' | '+' | '\\' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn names_oids_case_spaces_and_escapes_normalise() {
        let a = canonical_dn("CN=Client  One, O=Example\\, Inc.,C=SE").unwrap();
        let b = canonical_dn("cn=client one,2.5.4.10=EXAMPLE\\2c INC.,c=se").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "2.5.4.3=client one,2.5.4.10=example\\, inc.,2.5.4.6=se");
        // Multi-valued RDNs compare as sets; the RDN order matters.
        assert_eq!(
            canonical_dn("CN=a+UID=b,O=x").unwrap(),
            canonical_dn("UID=b+CN=a,O=x").unwrap()
        );
        assert_ne!(
            canonical_dn("CN=a,O=x").unwrap(),
            canonical_dn("O=x,CN=a").unwrap()
        );
        // A comma in a value is not a separator once escaped.
        assert_ne!(
            canonical_dn("CN=a\\,O=x").unwrap(),
            canonical_dn("CN=a,O=x").unwrap()
        );
    }

    #[test]
    fn bad_dns_are_refused() {
        for bad in ["", "CN", "CN=a,,O=b", "FOO=a", "CN=a\\", "CN=\\ff\\fe"] {
            assert!(canonical_dn(bad).is_err(), "{bad:?}");
        }
    }

    /// `openssl req -x509 -newkey ec -subj "/C=SE/O=Example, Inc./CN=Client One"`.
    pub(crate) const CERT_B64: &str = "MIIByzCCAXGgAwIBAgIUWVqNQID8DzUsB0dCCfSS7ILUnEgwCgYIKoZIzj0EAwIwOjELMAkGA1UEBhMCU0UxFjAUBgNVBAoMDUV4YW1wbGUsIEluYy4xEzARBgNVBAMMCkNsaWVudCBPbmUwIBcNMjYxMjAzMTYzNTAwWhgPMjEyNjExMDkxNjM1MDBaMDoxCzAJBgNVBAYTAlNFMRYwFAYDVQQKDA1FeGFtcGxlLCBJbmMuMRMwEQYDVQQDDApDbGllbnQgT25lMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAETgmtciT2ULLBa8vZGHPxHQ4nLCWTaxthk1Bt2Qa++GWln/NRf+6s4v9LS54BYXkF+CpGJAf2CQm8wEQn73LM76NTMFEwHQYDVR0OBBYEFKnkpLEG4+x4j0+h2rNU1HdYA2ikMB8GA1UdIwQYMBaAFKnkpLEG4+x4j0+h2rNU1HdYA2ikMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAIfap+QzZA6kL37W4jEFUx0pmu5VMIo/hW3as6hvUQ2nAiBhnwIWwf+4qfvqPl/1jkARYv3IoArj7T89126g84G0AQ==";

    #[test]
    fn a_certificate_yields_its_thumbprint_and_subject() {
        use base64::engine::general_purpose::STANDARD;
        let der = STANDARD.decode(CERT_B64).unwrap();
        let facts = certificate_facts(&der).unwrap();
        assert_eq!(facts.thumbprint, thumbprint(&der));
        assert_eq!(facts.thumbprint.len(), 43);
        // As `openssl x509 -subject -nameopt RFC2253` prints it, in other case.
        assert_eq!(
            facts.subject,
            canonical_dn("cn=client one,o=Example\\, Inc.,c=SE").unwrap()
        );
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(certificate_facts(&trailing).is_err());
    }

    #[test]
    fn non_certificates_are_refused() {
        assert_eq!(
            certificate_facts(b"not a certificate"),
            Err(CertError::NotACertificate)
        );
    }
}
