//! Sign-in through an LDAP directory or Active Directory (issue 16, `type: "ldap"`).
//!
//! The provider's button (or `acr_values=idp:<scheme>`) leads to Signet's own directory
//! form, `GET /federation/{scheme}/ldap?interaction=...`; its `POST` (CSRF-checked like
//! the login form, same throttle as the password form) runs the exchange
//! ([`authenticate`]), all of it within the provider's `timeoutSeconds`:
//!
//! 1. a TCP connection to an address the outbound guard allows (link-local and cloud
//!    metadata addresses are refused; private ones are allowed, since directories live on
//!    internal networks), then TLS: `ldaps://`, or StartTLS (RFC 4513 section 3) before
//!    anything else is sent; the server certificate is checked against `caCertificate`
//!    when set, else the system's trust store;
//! 2. a simple bind as the service account (`bindDn`, the sealed `bindPassword`);
//! 3. a subtree search under `userSearchBase` with `userSearchFilter`, the username
//!    escaped per RFC 4515 ([`signet_core::identity_provider::escape_filter_value`]):
//!    exactly one entry, else the sign-in fails;
//! 4. a simple bind as that entry's DN with the password typed. An empty password is
//!    refused before: a simple bind with a DN and no password is an *unauthenticated*
//!    bind that many servers answer with success (RFC 4513 section 5.1.2).
//!
//! The entry's `subjectAttribute` (hex for binary values such as `objectGUID`) links the
//! identity to a Signet user, created just in time exactly as an OIDC sign-in does
//! ([`super::provision`]); the session's `amr` is `["pwd"]` and its `idp` the scheme. The
//! directory password is used for the bind only: never stored, logged, or put in an
//! event. A wrong password and an unknown user get the same message; a directory that is
//! down or refuses the service account gets a page saying so (and a warning in the log),
//! never a 5xx.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, StdStream};
use signet_core::authorize::Params;
use signet_core::identity_provider::{IdentityProvider, LdapDirectory, ProviderType};

use super::super::browser::{
    branding, load_interaction, render_for, Interaction, InteractionError, PageParams,
};
use super::super::client_addr::ClientAddr;
use super::super::login::Attempt;
use super::failure_page;
use crate::state::AppState;

/// LDAP result code `sizeLimitExceeded`.
const SIZE_LIMIT_EXCEEDED: u32 = 4;
/// The longest username and password accepted from the form.
const FIELD_MAX: usize = 256;

const FAILED: &str = "The username or password is wrong.";
const THROTTLED: &str = "Too many sign-in attempts. Wait a few minutes and try again.";
const UNREACHABLE: &str = "The directory could not be reached. Try again later, or go back to the application and sign in another way.";

/// Why a directory sign-in failed. The message is for the log: it names hosts, DNs and
/// result codes, never a password.
#[derive(Debug, thiserror::Error)]
pub enum LdapFailure {
    #[error("the directory could not be reached: {0}")]
    Unreachable(String),
    #[error("the directory did not answer within {0} s")]
    TimedOut(u64),
    #[error("the directory refused the service account's bind (result code {0})")]
    ServiceBind(u32),
    #[error("the bind password cannot be opened on this node")]
    Sealed,
    #[error("the directory's answer is not usable: {0}")]
    Protocol(String),
    /// No entry, or more than one, matches the username.
    #[error("{0} entries match the username")]
    NotFound(usize),
    /// The user's bind was refused: the password is wrong (or the account locked).
    #[error("the user's bind was refused (result code {0})")]
    UserBind(u32),
    #[error("the entry has no {0} attribute")]
    NoSubject(String),
}

impl LdapFailure {
    /// Whether the person typing is the cause (same answer for every such case).
    fn is_credentials(&self) -> bool {
        matches!(self, LdapFailure::NotFound(_) | LdapFailure::UserBind(_))
    }
}

impl From<ldap3::LdapError> for LdapFailure {
    fn from(e: ldap3::LdapError) -> Self {
        match e {
            ldap3::LdapError::Io { .. }
            | ldap3::LdapError::Timeout { .. }
            | ldap3::LdapError::EndOfStream
            | ldap3::LdapError::Rustls { .. } => LdapFailure::Unreachable(e.to_string()),
            other => LdapFailure::Protocol(other.to_string()),
        }
    }
}

/// The user a directory vouched for.
#[derive(Debug)]
pub struct DirectoryUser {
    /// The value of the subject attribute (hex for binary values).
    pub subject: String,
    pub dn: String,
    /// Attribute name → values (binary values as hex).
    pub attributes: HashMap<String, Vec<String>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The system's trust store (`rustls-native-certs`), loaded once: what a directory without
/// `caCertificate` is checked against.
static SYSTEM_ROOTS: std::sync::LazyLock<Arc<rustls::RootCertStore>> =
    std::sync::LazyLock::new(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "a system CA certificate could not be loaded");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system CA certificates for LDAP");
        Arc::new(roots)
    });

/// The TLS settings for `dir`: its `caCertificate` alone when set, else the system's
/// trust store. Always with aws-lc-rs (never the process's default provider).
fn tls_config(dir: &LdapDirectory) -> Result<Arc<rustls::ClientConfig>, LdapFailure> {
    use rustls::pki_types::pem::PemObject;
    let roots = match &dir.ca_certificate {
        None => SYSTEM_ROOTS.clone(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert =
                    cert.map_err(|_| LdapFailure::Protocol("caCertificate is not PEM".into()))?;
                roots
                    .add(cert)
                    .map_err(|e| LdapFailure::Protocol(format!("caCertificate: {e}")))?;
            }
            Arc::new(roots)
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| LdapFailure::Protocol(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TCP connection to the directory, at an address the outbound guard allows.
async fn connect(dir: &LdapDirectory) -> Result<std::net::TcpStream, LdapFailure> {
    let url = url::Url::parse(&dir.url).map_err(|_| LdapFailure::Protocol("the url".into()))?;
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url
        .port()
        .unwrap_or(if url.scheme() == "ldaps" { 636 } else { 389 });
    // Private addresses are allowed (a directory is usually internal); link-local, cloud
    // metadata and the other forbidden ranges never are.
    let addrs = signet_outbound::GuardedResolver::new(true)
        .resolve_host(&host)
        .await
        .map_err(|e| LdapFailure::Unreachable(e.to_string()))?;
    let mut last = None;
    for a in addrs {
        match tokio::net::TcpStream::connect((a.ip(), port)).await {
            Ok(s) => {
                return s
                    .into_std()
                    .map_err(|e| LdapFailure::Unreachable(e.to_string()))
            }
            Err(e) => last = Some(e),
        }
    }
    Err(LdapFailure::Unreachable(format!(
        "{host}:{port}: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// Checks `username` and `password` against the directory (see the module's steps), within
/// `dir.timeout_seconds`.
pub async fn authenticate(
    dir: &LdapDirectory,
    bind_password: &str,
    username: &str,
    password: &str,
) -> Result<DirectoryUser, LdapFailure> {
    // RFC 4513 section 5.1.2: a DN with an empty password is an unauthenticated bind.
    if username.is_empty() || password.is_empty() {
        return Err(LdapFailure::NotFound(0));
    }
    let deadline = Duration::from_secs(dir.timeout_seconds);
    tokio::time::timeout(deadline, exchange(dir, bind_password, username, password))
        .await
        .map_err(|_| LdapFailure::TimedOut(dir.timeout_seconds))?
}

async fn exchange(
    dir: &LdapDirectory,
    bind_password: &str,
    username: &str,
    password: &str,
) -> Result<DirectoryUser, LdapFailure> {
    let stream = connect(dir).await?;
    let settings = LdapConnSettings::new()
        .set_starttls(dir.start_tls)
        .set_std_stream(StdStream::Tcp(stream))
        .set_config(tls_config(dir)?);
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &dir.url).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!(error = %e, "LDAP connection ended");
        }
    });
    let result = async {
        let bound = ldap.simple_bind(&dir.bind_dn, bind_password).await?;
        if bound.rc != 0 {
            return Err(LdapFailure::ServiceBind(bound.rc));
        }
        let attributes = dir.attributes();
        let found = ldap
            .with_search_options(ldap3::SearchOptions::new().sizelimit(2))
            .search(
                &dir.user_search_base,
                Scope::Subtree,
                &dir.filter_for(username),
                attributes,
            )
            .await?;
        if found.1.rc != 0 && found.1.rc != SIZE_LIMIT_EXCEEDED {
            return Err(LdapFailure::Protocol(format!(
                "the search answered result code {}",
                found.1.rc
            )));
        }
        // Continuation references (Active Directory's referrals) are not entries.
        let entries: Vec<SearchEntry> = found
            .0
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(SearchEntry::construct)
            .collect();
        let [entry] = <[SearchEntry; 1]>::try_from(entries)
            .map_err(|all| LdapFailure::NotFound(all.len()))?;
        let bound = ldap.simple_bind(&entry.dn, password).await?;
        if bound.rc != 0 {
            return Err(LdapFailure::UserBind(bound.rc));
        }
        let mut attributes: HashMap<String, Vec<String>> = entry.attrs;
        for (name, values) in entry.bin_attrs {
            attributes.insert(name, values.iter().map(|v| hex(v)).collect());
        }
        // objectGUID is binary even when its bytes happen to be UTF-8: always hex.
        if dir.subject_attribute.eq_ignore_ascii_case("objectGUID") {
            for (name, values) in attributes.iter_mut() {
                if name.eq_ignore_ascii_case("objectGUID") && values.iter().all(|v| !is_hex(v)) {
                    *values = values.iter().map(|v| hex(v.as_bytes())).collect();
                }
            }
        }
        let subject = attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&dir.subject_attribute))
            .and_then(|(_, v)| v.first())
            .filter(|s| !s.is_empty() && s.len() <= 200)
            .cloned()
            .ok_or_else(|| LdapFailure::NoSubject(dir.subject_attribute.clone()))?;
        Ok(DirectoryUser {
            subject,
            dn: entry.dn,
            attributes,
        })
    }
    .await;
    let _ = ldap.unbind().await;
    result
}

/// Whether `s` is 32 lowercase hex digits (an `objectGUID` already converted).
fn is_hex(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The ldap provider `scheme`, if the interaction's client may use it.
fn provider(
    state: &AppState,
    interaction: &Interaction,
    scheme: &str,
) -> Option<Arc<IdentityProvider>> {
    let p = state.projection.load();
    super::offered(&p, interaction.request.as_ref())
        .into_iter()
        .find(|i| i.scheme == scheme && i.provider_type == ProviderType::Ldap)
        .cloned()
}

/// Where a provider's button sends the browser: the directory form of interaction `id`.
pub fn form_location(state: &AppState, scheme: &str, id: &str) -> String {
    state
        .config
        .issuer
        .endpoint(&format!("/federation/{scheme}/ldap?interaction={id}"))
}

fn form_page(
    state: &AppState,
    idp: &IdentityProvider,
    id: &str,
    interaction: &Interaction,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let p = state.projection.load();
    let request = interaction.request.as_ref();
    let mut ctx = branding(request.and_then(|r| p.client(&r.client_id)).map(|c| &**c));
    ctx["action"] = state
        .config
        .issuer
        .endpoint(&format!("/federation/{}/ldap", idp.scheme))
        .into();
    ctx["provider"] = idp.display_name.clone().into();
    ctx["interaction"] = id.into();
    ctx["csrf"] = interaction.csrf.clone().into();
    ctx["username"] = username.into();
    ctx["error"] = error.into();
    render_for(
        "directory.html",
        status,
        ctx,
        request.map(|r| r.redirect_uri.as_str()),
    )
}

/// `GET /federation/{scheme}/ldap?interaction=...`: the directory's sign-in form.
pub async fn form(
    State(state): State<AppState>,
    Path(scheme): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = PageParams::parse(query.unwrap_or_default().as_bytes()).ok();
    let id = params
        .as_ref()
        .and_then(|p| p.get("interaction"))
        .unwrap_or_default()
        .to_owned();
    let interaction = match load_interaction(&state, &headers, Some(&id), None).await {
        Ok(i) => i,
        Err(e) => return e.into_page(&state),
    };
    let Some(idp) = provider(&state, &interaction, &scheme) else {
        return failure_page(
            &state,
            "This sign-in service is not available to this application.",
        );
    };
    let hint = interaction
        .request
        .as_ref()
        .and_then(|r| r.login_hint.clone())
        .unwrap_or_default();
    form_page(&state, &idp, &id, &interaction, &hint, None, StatusCode::OK)
}

/// `POST /federation/{scheme}/ldap`: the directory form's username and password.
pub async fn submit(
    State(state): State<AppState>,
    Path(scheme): Path<String>,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Response {
    let headers = &parts.headers;
    let addr = parts.extensions.get::<ClientAddr>().map(|c| c.0);
    let (params, id, interaction) =
        match super::super::browser::posted_interaction(&state, headers, &body).await {
            Ok(found) => found,
            Err(page) => return page,
        };
    let Some(idp) = provider(&state, &interaction, &scheme) else {
        return failure_page(
            &state,
            "This sign-in service is not available to this application.",
        );
    };
    let Some(dir) = idp.ldap.clone() else {
        return InteractionError::Gone.into_page(&state);
    };
    let username = params.get("username").unwrap_or_default();
    let password = params.get("password").unwrap_or_default();
    let again = |error: &str, status| {
        form_page(
            &state,
            &idp,
            &id,
            &interaction,
            username,
            Some(error),
            status,
        )
    };
    // Checked before anything reaches the directory: an empty password would make the
    // user's bind an unauthenticated one (RFC 4513 section 5.1.2).
    if username.is_empty()
        || password.is_empty()
        || username.len() > FIELD_MAX
        || password.len() > FIELD_MAX
    {
        return again(FAILED, StatusCode::BAD_REQUEST);
    }
    // The password form's throttle, counted per provider and directory username.
    let account = format!(
        "ldap\u{0}{scheme}\u{0}{}",
        signet_core::user::username_key(username)
    );
    let attempt = match Attempt::for_account(&state, headers, account, addr).await {
        Ok(a) => a,
        Err(e) => return super::oauth_error_page(&state, None, e),
    };
    match attempt.throttled().await {
        Ok(true) => return again(THROTTLED, StatusCode::TOO_MANY_REQUESTS),
        Ok(false) => {}
        Err(e) => return super::oauth_error_page(&state, None, e),
    }
    let bind_password = match idp.client_secret_sealed.as_ref().and_then(|sealed| {
        state
            .config_sealer()
            .and_then(|s| s.open_idp_secret(&scheme, sealed))
    }) {
        Some(p) => p,
        None => {
            tracing::warn!(scheme, error = %LdapFailure::Sealed, "directory sign-in failed");
            metrics::counter!(crate::telemetry::FEDERATION_FAILURES).increment(1);
            return again(UNREACHABLE, StatusCode::OK);
        }
    };
    let user = match authenticate(&dir, &bind_password, username, password).await {
        Ok(u) => u,
        Err(e) if e.is_credentials() => {
            if matches!(e, LdapFailure::NotFound(n) if n > 1) {
                tracing::warn!(scheme, error = %e, "userSearchFilter matches more than one entry");
            }
            metrics::counter!(crate::telemetry::LOGIN_FAILURES).increment(1);
            if let Err(e) = attempt.failed().await {
                return super::oauth_error_page(&state, None, e);
            }
            return again(FAILED, StatusCode::OK);
        }
        Err(e) => {
            tracing::warn!(scheme, error = %e, "directory sign-in failed");
            metrics::counter!(crate::telemetry::FEDERATION_FAILURES).increment(1);
            return again(UNREACHABLE, StatusCode::OK);
        }
    };
    tracing::debug!(scheme, dn = %user.dn, "directory bind succeeded");
    let mapped = dir.map_attributes(&user.attributes);
    let record = match super::provision(&state, &scheme, &user.subject, mapped).await {
        Ok(r) => r,
        Err(page) => return page,
    };
    let device_cookie = match attempt.known_from_now_on().await {
        Ok(c) => c,
        Err(e) => return super::oauth_error_page(&state, None, e),
    };
    let mut resp = super::finish(
        &state,
        headers,
        addr,
        &id,
        interaction,
        &record.sub,
        vec![signet_core::mfa::AMR_PWD.into()],
        (scheme, None),
    )
    .await;
    if let Some(c) = device_cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory(ca: Option<&str>) -> LdapDirectory {
        LdapDirectory {
            url: "ldaps://127.0.0.1:1".into(),
            start_tls: false,
            ca_certificate: ca.map(str::to_owned),
            bind_dn: "cn=s,dc=x".into(),
            user_search_base: "dc=x".into(),
            user_search_filter: "(uid={username})".into(),
            subject_attribute: "objectGUID".into(),
            attribute_mappings: Default::default(),
            group_role_mappings: Default::default(),
            timeout_seconds: 1,
        }
    }

    #[test]
    fn binary_values_are_hex() {
        assert_eq!(hex(&[0x00, 0xab, 0x10]), "00ab10");
        assert!(is_hex("0123456789abcdef0123456789abcdef"));
        assert!(!is_hex("0123456789ABCDEF0123456789ABCDEF"));
    }

    #[test]
    fn a_certificate_that_is_not_one_is_an_error_not_a_panic() {
        let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            tls_config(&directory(Some(junk))),
            Err(LdapFailure::Protocol(_))
        ));
        assert!(tls_config(&directory(None)).is_ok(), "the system roots");
    }

    #[tokio::test]
    async fn an_empty_password_never_reaches_the_directory() {
        // The directory is unreachable: the answer proves nothing was tried.
        let e = authenticate(&directory(None), "x", "alice", "")
            .await
            .unwrap_err();
        assert!(e.is_credentials(), "{e}");
        let e = authenticate(&directory(None), "x", "alice", "pw")
            .await
            .unwrap_err();
        assert!(!e.is_credentials(), "{e}");
    }
}
