//! The client certificate of a request (mutual TLS, RFC 8705), from exactly two sources:
//!
//! - Signet's own TLS termination (`--tls-cert`/`--tls-key`): client certificates are
//!   requested but optional, and any certificate is accepted at the TLS layer (RFC 8705
//!   section 2.2: self-signed certificates must pass; the TLS layer still checks that the
//!   client holds the certificate's private key). The leaf of the chain the client sent
//!   is attached to every request on that connection.
//! - Behind a load balancer, the header `--tls-client-cert-header` (default
//!   `X-SSL-Client-Cert`), believed **only** from a peer in `--trusted-proxies`. Its value
//!   is the leaf certificate as the balancer writes it: base64 DER (HAProxy's
//!   `%[ssl_c_der,base64]`) or URL-encoded PEM (nginx's `$ssl_client_escaped_cert`); an
//!   empty value means no certificate. The same header from any other peer makes the
//!   request fail (`invalid_client`) wherever a certificate counts, and is logged.
//!
//! When both are there (a trusted proxy that re-encrypts and forwards the header) the
//! header wins: the TLS certificate is then the proxy's own.
//!
//! Whether a certificate chains to a trusted CA (`--tls-client-ca`, the PEM roots of
//! `tls_client_auth`) is decided here too, once per connection or request; the client's
//! registration decides the rest ([`super::client_auth`]).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use signet_core::mtls::CertificateFacts;
use signet_core::oauth::OAuthError;

use super::client_addr::TrustedProxies;

/// The default `--tls-client-cert-header`.
pub const DEFAULT_CERT_HEADER: &str = "x-ssl-client-cert";

/// The largest certificate header value read (a certificate is a few KiB).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// A certificate the client presented, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The DER of the leaf certificate.
    pub der: Vec<u8>,
    /// Its thumbprint and canonical subject DN.
    pub facts: CertificateFacts,
    /// It chains to a `--tls-client-ca` root (always false without one).
    pub pki_trusted: bool,
}

/// What a request carries about a client certificate: a request extension set by the
/// server loop when there is anything to say (absent: no certificate).
#[derive(Debug, Clone)]
pub enum PresentedCert {
    Valid(Arc<ClientCertificate>),
    /// The certificate header came from a peer that is not a trusted proxy.
    Untrusted,
    /// The certificate (header or TLS) could not be parsed.
    Malformed,
}

impl PresentedCert {
    /// The certificate for a request, or the error that a refused one is.
    pub fn certificate(
        presented: Option<&PresentedCert>,
    ) -> Result<Option<&Arc<ClientCertificate>>, OAuthError> {
        match presented {
            None => Ok(None),
            Some(PresentedCert::Valid(c)) => Ok(Some(c)),
            Some(PresentedCert::Untrusted) => Err(OAuthError::invalid_client(
                "a client certificate header is accepted only from a trusted proxy",
            )),
            Some(PresentedCert::Malformed) => Err(OAuthError::invalid_request(
                "the client certificate is not a valid X.509 certificate",
            )),
        }
    }
}

/// How the server reads client certificates: the header and who may send it, and the
/// roots of `tls_client_auth`.
#[derive(Debug, Clone)]
pub struct CertPolicy {
    pub header: HeaderName,
    pub roots: Option<Arc<dyn ClientCertVerifier>>,
}

impl Default for CertPolicy {
    fn default() -> Self {
        CertPolicy {
            header: HeaderName::from_static(DEFAULT_CERT_HEADER),
            roots: None,
        }
    }
}

impl CertPolicy {
    /// Sets the header a trusted proxy forwards the certificate in
    /// (`--tls-client-cert-header`).
    pub fn set_header(&mut self, name: &str) -> Result<(), axum::http::header::InvalidHeaderName> {
        self.header = HeaderName::try_from(name.trim())?;
        Ok(())
    }

    /// Parses a certificate chain's leaf (DER) with its intermediates.
    pub fn parse(&self, leaf: &[u8], intermediates: &[CertificateDer<'_>]) -> PresentedCert {
        let Ok(facts) = signet_core::mtls::certificate_facts(leaf) else {
            return PresentedCert::Malformed;
        };
        let pki_trusted = self.roots.as_ref().is_some_and(|v| {
            v.verify_client_cert(&CertificateDer::from(leaf), intermediates, UnixTime::now())
                .is_ok()
        });
        PresentedCert::Valid(Arc::new(ClientCertificate {
            der: leaf.to_vec(),
            facts,
            pki_trusted,
        }))
    }

    /// The certificate header of a request from `peer`, if there is one.
    pub fn from_header(
        &self,
        trusted: &TrustedProxies,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Option<PresentedCert> {
        let value = headers.get(&self.header)?;
        if !trusted.contains(peer) {
            tracing::warn!(%peer, header = %self.header, "a client certificate header from a peer that is not a trusted proxy; refused");
            return Some(PresentedCert::Untrusted);
        }
        if value.is_empty() {
            return None;
        }
        if value.len() > MAX_HEADER_BYTES {
            return Some(PresentedCert::Malformed);
        }
        match header_der(value.as_bytes()) {
            Some(der) => Some(self.parse(&der, &[])),
            None => Some(PresentedCert::Malformed),
        }
    }
}

/// The DER in a certificate header: URL-encoded (or plain) PEM, or base64 DER.
fn header_der(value: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    let decoded: Vec<u8> = percent_decode(value);
    let text = std::str::from_utf8(&decoded).ok()?.trim();
    if text.starts_with("-----BEGIN") {
        return CertificateDer::from_pem_slice(text.as_bytes())
            .ok()
            .map(|c| c.to_vec());
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .ok()
}

/// `%XX` escapes decoded (a `+` stays: base64 uses it).
fn percent_decode(v: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            if let (Some(h), Some(l)) = (hex(v[i + 1]), hex(v[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

/// A client-certificate verifier that accepts any certificate (RFC 8705 section 2.2:
/// self-signed ones too) and only checks the handshake signature, proving that the client
/// holds the certificate's private key. The certificate is judged against the client's
/// registration afterwards, never here.
#[derive(Debug)]
struct AnyClientCert {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {reason}")]
    File {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_err(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The TLS files of a node (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The server configuration of a public listener: the certificate chain and key from PEM
/// files, HTTP/1.1, client certificates requested but optional when `client_certs` (not
/// requested at all otherwise: browsers are never asked for one).
pub fn server_config(
    files: &TlsFiles,
    client_certs: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_err("tls_cert", &files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err("tls_cert", &files.cert, e))?;
    if chain.is_empty() {
        return Err(file_err("tls_cert", &files.cert, "no CERTIFICATE in it"));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_err("tls_key", &files.key, e))?;
    let provider = provider();
    let verifier = Arc::new(AnyClientCert {
        algs: provider.signature_verification_algorithms,
    });
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?;
    let mut config = if client_certs {
        builder
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?
    } else {
        builder.with_no_client_auth().with_single_cert(chain, key)?
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The `tls_client_auth` trust anchors of `--tls-client-ca` (PEM, one or more roots).
pub fn client_roots(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(path).map_err(|e| file_err("tls_client_ca", path, e))?
    {
        let cert = cert.map_err(|e| file_err("tls_client_ca", path, e))?;
        roots
            .add(cert)
            .map_err(|e| file_err("tls_client_ca", path, e))?;
    }
    if roots.is_empty() {
        return Err(file_err("tls_client_ca", path, "no CERTIFICATE in it"));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| file_err("tls_client_ca", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_decode_from_base64_der_or_url_encoded_pem() {
        use base64::Engine;
        let der = b"\x30\x03\x02\x01\x01";
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        assert_eq!(header_der(b64.as_bytes()).unwrap(), der);
        let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
        let escaped: String = form_urlencoded::byte_serialize(pem.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        assert_eq!(header_der(escaped.as_bytes()).unwrap(), der);
        assert_eq!(header_der(pem.as_bytes()).unwrap(), der);
        assert!(header_der(b"%%%not base64").is_none());
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let policy = CertPolicy::default();
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let mut headers = HeaderMap::new();
        assert!(policy
            .from_header(&trusted, "10.1.1.1".parse().unwrap(), &headers)
            .is_none());
        headers.insert(DEFAULT_CERT_HEADER, "bm90IGEgY2VydA==".parse().unwrap());
        assert!(matches!(
            policy.from_header(&trusted, "192.0.2.1".parse().unwrap(), &headers),
            Some(PresentedCert::Untrusted)
        ));
        assert!(matches!(
            policy.from_header(&trusted, "10.1.1.1".parse().unwrap(), &headers),
            Some(PresentedCert::Malformed)
        ));
        headers.insert(DEFAULT_CERT_HEADER, "".parse().unwrap());
        assert!(policy
            .from_header(&trusted, "10.1.1.1".parse().unwrap(), &headers)
            .is_none());
    }
}
