//! Outbound HTTP for the server's own requests (back-channel logout today; a client's
//! `jwksUri`, request URIs and upstream identity providers later), built so that a URL an
//! administrator or a client registered cannot turn the server against its own network:
//!
//! - only `http` and `https` URLs, without user information;
//! - no redirect is followed: a 3xx answer is an error ([`OutboundError::Redirected`]);
//! - short connect and total timeouts, and a bounded response body;
//! - no proxy from the environment (a proxy would resolve names where we cannot check);
//! - every address is checked ([`check_ip`]) where it is chosen: IP literals before any
//!   connection, names inside the resolver ([`GuardedResolver`], a
//!   [`reqwest::dns::Resolve`] that drops refused addresses, so DNS rebinding between a
//!   check and the connection cannot slip through), and the peer of the answer again.
//!
//! Always refused: unspecified, link-local (`169.254.0.0/16`, `fe80::/10`), cloud metadata
//! addresses, multicast, broadcast and reserved ranges. Loopback and private ranges
//! (`127.0.0.0/8`, `::1`, `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`,
//! `100.64.0.0/10`, `fc00::/7`) are refused unless [`OutboundConfig::allow_private`] is
//! set (`--allow-private-outbound`).
//!
//! Errors never carry a response body, a request body or a URL's query.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// How outbound requests behave.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Allow loopback and private addresses (development, tests, receivers on an internal
    /// network).
    pub allow_private: bool,
    /// Time to establish a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time for the whole exchange, body included.
    pub timeout: Duration,
    /// The largest response body read; a longer one is an error.
    pub max_body: usize,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            allow_private: false,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            max_body: 64 * 1024,
        }
    }
}

/// Why an outbound request failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("invalid outbound URL: {0}")]
    InvalidUrl(&'static str),
    /// The destination is an address the guard refuses; nothing was sent.
    #[error("outbound request to {host} refused: {reason}")]
    Refused { host: String, reason: &'static str },
    #[error("could not resolve {host}")]
    Resolve { host: String },
    #[error("could not connect")]
    Connect,
    #[error("timed out")]
    Timeout,
    /// The receiver answered with a redirect, which is never followed.
    #[error("the receiver redirected (HTTP {status}); redirects are not followed")]
    Redirected { status: u16 },
    #[error("the response body exceeds {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("HTTP exchange failed: {0}")]
    Http(String),
}

impl OutboundError {
    /// Whether trying again later may succeed (connection failures and timeouts); a
    /// refused address, a bad URL or a redirect will not change by waiting.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OutboundError::Resolve { .. }
                | OutboundError::Connect
                | OutboundError::Timeout
                | OutboundError::Http(_)
                | OutboundError::BodyTooLarge { .. }
        )
    }
}

/// What the guard says about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A public address.
    Public,
    /// Loopback or a private range: allowed only with `allow_private`.
    Private,
    /// Never contacted; the reason names the range.
    Forbidden(&'static str),
}

fn v4_in(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn classify_v4(ip: Ipv4Addr) -> Verdict {
    // Cloud metadata services (AWS, GCP and Azure use 169.254.169.254, link-local below;
    // Alibaba 100.100.100.200; Azure's wire server 168.63.129.16).
    const METADATA: [Ipv4Addr; 2] = [
        Ipv4Addr::new(100, 100, 100, 200),
        Ipv4Addr::new(168, 63, 129, 16),
    ];
    if METADATA.contains(&ip) {
        return Verdict::Forbidden("a cloud metadata address");
    }
    if ip.is_unspecified() || v4_in(ip, [0, 0, 0, 0], 8) {
        return Verdict::Forbidden("an unspecified address");
    }
    if v4_in(ip, [169, 254, 0, 0], 16) {
        return Verdict::Forbidden("a link-local address (169.254.0.0/16, cloud metadata)");
    }
    if ip.is_broadcast() {
        return Verdict::Forbidden("the broadcast address");
    }
    if ip.is_multicast() {
        return Verdict::Forbidden("a multicast address");
    }
    if v4_in(ip, [240, 0, 0, 0], 4) {
        return Verdict::Forbidden("a reserved address (240.0.0.0/4)");
    }
    let private = [
        ([127, 0, 0, 0], 8),
        ([10, 0, 0, 0], 8),
        ([172, 16, 0, 0], 12),
        ([192, 168, 0, 0], 16),
        ([100, 64, 0, 0], 10),
        ([192, 0, 0, 0], 24),
        ([198, 18, 0, 0], 15),
    ];
    if private.iter().any(|(net, bits)| v4_in(ip, *net, *bits)) {
        return Verdict::Private;
    }
    Verdict::Public
}

fn classify_v6(ip: Ipv6Addr) -> Verdict {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let seg = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach an embedded IPv4 address.
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let o = ip.octets();
        return classify_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if seg[0] == 0x2002 {
        let o = ip.octets();
        return classify_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    // AWS's IPv6 instance metadata service.
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Verdict::Forbidden("a cloud metadata address");
    }
    if ip.is_unspecified() {
        return Verdict::Forbidden("an unspecified address");
    }
    if ip.is_multicast() {
        return Verdict::Forbidden("a multicast address");
    }
    if seg[0] & 0xffc0 == 0xfe80 {
        return Verdict::Forbidden("a link-local address (fe80::/10)");
    }
    // Deprecated site-local (fec0::/10) and IPv4-compatible (::/96) addresses.
    if seg[0] & 0xffc0 == 0xfec0 || (seg[..6] == [0; 6] && !ip.is_loopback()) {
        return Verdict::Forbidden("a deprecated address range");
    }
    if ip.is_loopback() || seg[0] & 0xfe00 == 0xfc00 {
        return Verdict::Private;
    }
    Verdict::Public
}

/// Classifies an address (IPv4-mapped, NAT64 and 6to4 addresses as the IPv4 address they
/// carry).
pub fn classify(ip: IpAddr) -> Verdict {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether the guard lets a request reach `ip`; the error names why not.
pub fn check_ip(ip: IpAddr, allow_private: bool) -> Result<(), &'static str> {
    match classify(ip) {
        Verdict::Public => Ok(()),
        Verdict::Private if allow_private => Ok(()),
        Verdict::Private => {
            Err("a loopback or private address (allow with --allow-private-outbound)")
        }
        Verdict::Forbidden(why) => Err(why),
    }
}

/// The resolver's refusal, found again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to refused addresses: {reason}")]
struct ResolveRefused {
    host: String,
    reason: &'static str,
}

/// A resolver that drops every address the guard refuses; a name with none left fails.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl GuardedResolver {
    pub fn new(allow_private: bool) -> Self {
        GuardedResolver { allow_private }
    }

    /// Resolves `host` and keeps the addresses the guard allows.
    pub async fn resolve_host(
        &self,
        host: &str,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        let mut reason = "no address";
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match check_ip(a.ip(), self.allow_private) {
                Ok(()) => true,
                Err(why) => {
                    reason = why;
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            return Err(Box::new(ResolveRefused {
                host: host.to_owned(),
                reason,
            }));
        }
        Ok(allowed)
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addrs = this.resolve_host(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An answer: its status, headers and (bounded) body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

/// The outbound HTTP client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    config: Arc<OutboundConfig>,
}

/// The parts of a checked URL.
fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, OutboundError> {
    let url = url::Url::parse(raw).map_err(|_| OutboundError::InvalidUrl("not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OutboundError::InvalidUrl(
            "the scheme must be http or https",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OutboundError::InvalidUrl("user information is not allowed"));
    }
    let literal = match url.host() {
        None => return Err(OutboundError::InvalidUrl("a host is required")),
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
    };
    // An IP literal never reaches the resolver: check it here.
    if let Some(ip) = literal {
        check_ip(ip, allow_private).map_err(|reason| OutboundError::Refused {
            host: ip.to_string(),
            reason,
        })?;
    }
    Ok(url)
}

/// The host of a URL, for errors (never its path or query).
fn host_of(url: &url::Url) -> String {
    url.host_str().unwrap_or_default().to_owned()
}

impl Outbound {
    pub fn new(config: OutboundConfig) -> Result<Self, OutboundError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .dns_resolver(Arc::new(GuardedResolver::new(config.allow_private)))
            .user_agent(concat!("signet/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OutboundError::Http(e.without_url().to_string()))?;
        Ok(Outbound {
            client,
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &OutboundConfig {
        &self.config
    }

    /// Checks a URL as a request would (scheme, user information, IP literals), without
    /// sending anything.
    pub fn check_url(&self, raw: &str) -> Result<url::Url, OutboundError> {
        check_url(raw, self.config.allow_private)
    }

    /// `POST` of an `application/x-www-form-urlencoded` body.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<Answer, OutboundError> {
        let url = self.check_url(url)?;
        let body = form_urlencode(form);
        let req = self
            .client
            .post(url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            // Token endpoints such as GitHub's answer form-encoded without it.
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        self.send(&url, req).await
    }

    /// [`Outbound::post_form`] authenticated with HTTP Basic as an OAuth 2.0 client:
    /// `client_id` and `secret` each form-urlencoded first (RFC 6749 section 2.3.1).
    pub async fn post_form_basic(
        &self,
        url: &str,
        form: &[(&str, &str)],
        client_id: &str,
        secret: &str,
    ) -> Result<Answer, OutboundError> {
        let url = self.check_url(url)?;
        let body = form_urlencode(form);
        let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let req = self
            .client
            .post(url.clone())
            .basic_auth(enc(client_id), Some(enc(secret)))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        self.send(&url, req).await
    }

    /// `GET`.
    pub async fn get(&self, url: &str) -> Result<Answer, OutboundError> {
        let url = self.check_url(url)?;
        let req = self.client.get(url.clone());
        self.send(&url, req).await
    }

    /// `GET` with `Authorization: Bearer <token>` (an OAuth 2.0 userinfo endpoint).
    pub async fn get_bearer(&self, url: &str, token: &str) -> Result<Answer, OutboundError> {
        let url = self.check_url(url)?;
        let req = self
            .client
            .get(url.clone())
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json");
        self.send(&url, req).await
    }

    async fn send(
        &self,
        url: &url::Url,
        req: reqwest::RequestBuilder,
    ) -> Result<Answer, OutboundError> {
        let mut resp = req.send().await.map_err(|e| map_error(url, &e))?;
        // The address actually connected to, checked again.
        if let Some(peer) = resp.remote_addr() {
            check_ip(peer.ip(), self.config.allow_private).map_err(|reason| {
                OutboundError::Refused {
                    host: host_of(url),
                    reason,
                }
            })?;
        }
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if resp.status().is_redirection() {
            return Err(OutboundError::Redirected { status });
        }
        let limit = self.config.max_body;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(OutboundError::BodyTooLarge { limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| map_error(url, &e))? {
            if body.len() + chunk.len() > limit {
                return Err(OutboundError::BodyTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body: Bytes::from(body),
        })
    }
}

fn form_urlencode(form: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in form.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.extend(url::form_urlencoded::byte_serialize(k.as_bytes()));
        out.push('=');
        out.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
    }
    out
}

/// Maps reqwest's error to ours, finding the resolver's refusal in its source chain.
fn map_error(url: &url::Url, e: &reqwest::Error) -> OutboundError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<ResolveRefused>() {
            return OutboundError::Refused {
                host: r.host.clone(),
                reason: r.reason,
            };
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::NotFound
                || io.to_string().contains("failed to lookup address")
            {
                return OutboundError::Resolve { host: host_of(url) };
            }
        }
        source = s.source();
    }
    if e.is_timeout() {
        OutboundError::Timeout
    } else if e.is_connect() {
        OutboundError::Connect
    } else {
        OutboundError::Http(e.without_url_ref())
    }
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    /// The error's kind without its URL (a query may carry secrets).
    fn without_url_ref(&self) -> String {
        if self.is_body() || self.is_decode() {
            "the response body could not be read".to_owned()
        } else if self.is_request() {
            "the request could not be sent".to_owned()
        } else {
            "the exchange failed".to_owned()
        }
    }
}

#[cfg(test)]
mod tests;
