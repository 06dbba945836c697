//! The client's address, computed once per request by the server loop ([`super::server`])
//! and handed to handlers and the request span as the [`ClientAddr`] extension.
//!
//! Behind a load balancer every connection comes from the balancer, so the peer address
//! says nothing about the client. `X-Forwarded-For` says more, but anyone can send it: it
//! is believed only from the peers of `--trusted-proxies`. The chain is read from the
//! right (each proxy appends the address it saw): the client is the right-most entry that
//! is not itself a trusted proxy. Nothing else forwarded is read: not RFC 7239
//! `Forwarded` (HAProxy's `option forwardfor` writes `X-Forwarded-For`), not
//! `X-Forwarded-Proto` (the issuer URL decides the scheme), not the PROXY protocol.
//!
//! This module must not decide anything by the address (throttling does that, in
//! [`super::login`]); it only says which address is the client's.

use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The address of the client that sent a request: the peer, or, when the peer is a
/// trusted proxy, the address it forwarded (see the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The proxies whose `X-Forwarded-For` is believed (`--trusted-proxies`): addresses and
/// CIDR ranges. Empty (the default): no header is believed, the client is the peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

#[derive(Debug, thiserror::Error)]
#[error("invalid trusted proxy {value:?}: expected an IP address or a CIDR range such as 10.0.0.0/8 or fd00::/8")]
pub struct TrustedProxiesError {
    value: String,
}

static X_FORWARDED_FOR: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-forwarded-for");

impl TrustedProxies {
    /// Parses `CIDR,CIDR,...` (a bare address is one host: /32 or /128). Whitespace around
    /// entries is ignored; an empty list trusts nobody.
    pub fn parse(spec: &str) -> Result<Self, TrustedProxiesError> {
        let mut nets = Vec::new();
        for item in spec.split(',').map(str::trim) {
            if item.is_empty() && spec.trim().is_empty() {
                continue;
            }
            let err = || TrustedProxiesError {
                value: item.to_owned(),
            };
            let net = match IpNet::from_str(item) {
                Ok(net) => net.trunc(),
                Err(_) => IpNet::from(IpAddr::from_str(item).map_err(|_| err())?),
            };
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` carrying `headers`.
    ///
    /// From an untrusted peer: the peer, whatever the headers say (a spoofed
    /// `X-Forwarded-For` is ignored). From a trusted one: walking `X-Forwarded-For` (all
    /// its fields, in order) from the right, the first address that is not a trusted proxy;
    /// when every entry is trusted, the left-most. A malformed entry ends the walk at the
    /// last address known good (the trusted hop that forwarded it): what lies left of it
    /// cannot be told from a forgery.
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddr {
        let mut addr = peer.to_canonical();
        if self.is_empty() || !self.contains(addr) {
            return ClientAddr(addr);
        }
        let mut entries = Vec::new();
        for value in headers.get_all(&X_FORWARDED_FOR) {
            match value.to_str() {
                Ok(v) => entries.extend(v.split(',').map(str::trim)),
                // Not visible ASCII: nothing in it can be trusted, nor anything before it.
                Err(_) => entries.clear(),
            }
        }
        for entry in entries.iter().rev() {
            let Some(ip) = parse_entry(entry) else {
                break;
            };
            addr = ip;
            if !self.contains(ip) {
                break;
            }
        }
        ClientAddr(addr)
    }
}

/// One `X-Forwarded-For` entry: an IPv4 or IPv6 address, optionally with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`) or IPv6 brackets.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(entry) {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = std::net::SocketAddr::from_str(entry) {
        return Some(sa.ip().to_canonical());
    }
    let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
    std::net::Ipv6Addr::from_str(inner)
        .ok()
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn lb() -> TrustedProxies {
        TrustedProxies::parse("10.0.0.0/8, 192.168.1.7,fd00::/8").unwrap()
    }

    #[test]
    fn lists_of_ranges_and_addresses_parse_and_bad_ones_are_named() {
        let t = lb();
        assert!(t.contains(ip("10.1.2.3")));
        assert!(t.contains(ip("192.168.1.7")));
        assert!(!t.contains(ip("192.168.1.8")));
        assert!(t.contains(ip("fd12::1")));
        assert!(t.contains(ip("::ffff:10.9.9.9")), "IPv4-mapped");
        assert!(!t.contains(ip("2001:db8::1")));
        // Host bits in a range are dropped, not refused.
        assert!(TrustedProxies::parse("10.1.2.3/8")
            .unwrap()
            .contains(ip("10.200.0.1")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse("  ").unwrap().is_empty());
        for bad in [
            "10.0.0.0/33",
            "10.0.0",
            "example.com",
            "10.0.0.0/8,",
            ",10.0.0.0/8",
            "fd00::/129",
            "10.0.0.0/8;10.1.0.0/16",
        ] {
            let e = TrustedProxies::parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid trusted proxy"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let h = xff(&["203.0.113.9"]);
        assert_eq!(
            lb().client_addr(ip("198.51.100.4"), &h).0,
            ip("198.51.100.4")
        );
        // Nobody is trusted by default.
        assert_eq!(
            TrustedProxies::default().client_addr(ip("10.0.0.1"), &h).0,
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_trusted_peer_names_the_right_most_untrusted_hop() {
        let t = lb();
        let peer = ip("10.0.0.1");
        assert_eq!(
            t.client_addr(peer, &xff(&["203.0.113.9"])).0,
            ip("203.0.113.9")
        );
        // The client sent a forged entry first; the proxy appended what it saw.
        assert_eq!(
            t.client_addr(peer, &xff(&["1.2.3.4, 203.0.113.9"])).0,
            ip("203.0.113.9")
        );
        // Two trusted hops: the inner proxy is skipped.
        assert_eq!(
            t.client_addr(peer, &xff(&["1.2.3.4, 203.0.113.9, 10.5.5.5"]))
                .0,
            ip("203.0.113.9")
        );
        // Several header fields are one list, in order.
        assert_eq!(
            t.client_addr(peer, &xff(&["1.2.3.4", "203.0.113.9", "192.168.1.7"]))
                .0,
            ip("203.0.113.9")
        );
        // Every hop trusted: the left-most.
        assert_eq!(
            t.client_addr(peer, &xff(&["10.7.7.7, 10.5.5.5"])).0,
            ip("10.7.7.7")
        );
        // No header: the proxy itself.
        assert_eq!(t.client_addr(peer, &HeaderMap::new()).0, peer);
    }

    #[test]
    fn ipv6_and_ports_are_understood() {
        let t = lb();
        assert_eq!(
            t.client_addr(ip("fd00::1"), &xff(&["2001:db8::7"])).0,
            ip("2001:db8::7")
        );
        assert_eq!(
            t.client_addr(ip("::ffff:10.0.0.1"), &xff(&["[2001:db8::7]:443"]))
                .0,
            ip("2001:db8::7")
        );
        assert_eq!(
            t.client_addr(ip("10.0.0.1"), &xff(&["[2001:db8::8]"])).0,
            ip("2001:db8::8")
        );
        assert_eq!(
            t.client_addr(ip("10.0.0.1"), &xff(&["203.0.113.9:5555"])).0,
            ip("203.0.113.9")
        );
        // An IPv4-mapped peer outside the ranges is its IPv4 self.
        assert_eq!(
            t.client_addr(ip("::ffff:198.51.100.4"), &xff(&["1.2.3.4"]))
                .0,
            ip("198.51.100.4")
        );
    }

    #[test]
    fn malformed_entries_stop_at_the_last_good_hop() {
        let t = lb();
        let peer = ip("10.0.0.1");
        for bad in ["unknown", "", "not an address", "1.2.3", "[::1", "_hidden"] {
            assert_eq!(t.client_addr(peer, &xff(&[bad])).0, peer, "{bad:?}");
        }
        // Garbage left of a good untrusted entry does not matter.
        assert_eq!(
            t.client_addr(peer, &xff(&["garbage, 203.0.113.9"])).0,
            ip("203.0.113.9")
        );
        // Garbage between trusted hops: the last trusted hop before it.
        assert_eq!(
            t.client_addr(peer, &xff(&["203.0.113.9, junk, 10.5.5.5"]))
                .0,
            ip("10.5.5.5")
        );
        // A header that is not ASCII: ignored, with everything before it.
        let mut h = xff(&["198.51.100.1"]);
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(t.client_addr(peer, &h).0, peer);
    }
}
