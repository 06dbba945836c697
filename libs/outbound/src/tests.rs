use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn the_guard_classifies_addresses() {
    for public in [
        "8.8.8.8",
        "1.1.1.1",
        "2001:4860:4860::8888",
        "93.184.216.34",
    ] {
        assert_eq!(classify(ip(public)), Verdict::Public, "{public}");
    }
    for private in [
        "127.0.0.1",
        "127.9.9.9",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "::1",
        "fc00::1",
        "fd12:3456::1",
        "::ffff:10.0.0.1",
    ] {
        assert_eq!(classify(ip(private)), Verdict::Private, "{private}");
    }
    for forbidden in [
        "169.254.169.254",
        "169.254.0.1",
        "fe80::1",
        "febf::1",
        "0.0.0.0",
        "0.1.2.3",
        "::",
        "255.255.255.255",
        "224.0.0.1",
        "ff02::1",
        "240.0.0.1",
        "100.100.100.200",
        "168.63.129.16",
        "fd00:ec2::254",
        // The metadata address in disguise: IPv4-mapped, NAT64, 6to4, IPv4-compatible.
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:a9fe:a9fe::1",
        "::a9fe:a9fe",
    ] {
        assert!(
            matches!(classify(ip(forbidden)), Verdict::Forbidden(_)),
            "{forbidden}"
        );
    }
    assert!(check_ip(ip("172.15.255.255"), false).is_ok());
    assert!(check_ip(ip("172.32.0.0"), false).is_ok());
    assert!(check_ip(ip("127.0.0.1"), false).is_err());
    assert!(check_ip(ip("127.0.0.1"), true).is_ok());
    assert!(check_ip(ip("169.254.169.254"), true).is_err());
    assert!(check_ip(ip("fe80::1"), true).is_err());
}

#[tokio::test]
async fn the_resolver_drops_refused_addresses() {
    let strict = GuardedResolver::new(false);
    let err = strict.resolve_host("localhost").await.unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    let relaxed = GuardedResolver::new(true);
    let addrs = relaxed.resolve_host("localhost").await.unwrap();
    assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    // A literal that names the metadata service is refused even when private is allowed.
    let err = relaxed.resolve_host("169.254.169.254").await.unwrap_err();
    assert!(err.to_string().contains("link-local"), "{err}");
}

fn config(allow_private: bool) -> OutboundConfig {
    OutboundConfig {
        allow_private,
        connect_timeout: Duration::from_millis(500),
        timeout: Duration::from_millis(800),
        max_body: 1024,
    }
}

/// A one-route HTTP server on loopback answering every request with `response`; counts
/// requests.
async fn server(response: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                if response.is_empty() {
                    // Hang: never answer.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn loopback_needs_the_flag_and_nothing_is_sent_without_it() {
    let (addr, hits) =
        server("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
    let strict = Outbound::new(config(false)).unwrap();
    for url in [
        format!("http://{addr}/x"),
        format!("http://localhost:{}/x", addr.port()),
    ] {
        let err = strict.post_form(&url, &[("a", "b")]).await.unwrap_err();
        assert!(matches!(err, OutboundError::Refused { .. }), "{url}: {err}");
        assert!(!err.is_transient());
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the server");

    let relaxed = Outbound::new(config(true)).unwrap();
    let answer = relaxed
        .post_form(
            &format!("http://localhost:{}/x", addr.port()),
            &[("a", "b")],
        )
        .await
        .unwrap();
    assert_eq!((answer.status, &answer.body[..]), (200, &b"ok"[..]));
}

#[tokio::test]
async fn link_local_and_metadata_are_never_contacted() {
    let relaxed = Outbound::new(config(true)).unwrap();
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0:80/",
    ] {
        let err = relaxed.get(url).await.unwrap_err();
        assert!(matches!(err, OutboundError::Refused { .. }), "{url}: {err}");
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (target, target_hits) =
        server("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
    let redirect: &'static str = Box::leak(
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{target}/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .into_boxed_str(),
    );
    let (addr, _) = server(redirect).await;
    let relaxed = Outbound::new(config(true)).unwrap();
    let err = relaxed
        .post_form(&format!("http://{addr}/"), &[("logout_token", "t")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, OutboundError::Redirected { status: 307 }),
        "{err}"
    );
    assert_eq!(target_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn bodies_are_bounded_and_hangs_time_out() {
    let big: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{}",
            "x".repeat(4096)
        )
        .into_boxed_str(),
    );
    let (addr, _) = server(big).await;
    let relaxed = Outbound::new(config(true)).unwrap();
    let err = relaxed.get(&format!("http://{addr}/")).await.unwrap_err();
    assert!(
        matches!(err, OutboundError::BodyTooLarge { limit: 1024 }),
        "{err}"
    );

    let (addr, _) = server("").await;
    let err = relaxed.get(&format!("http://{addr}/")).await.unwrap_err();
    assert!(matches!(err, OutboundError::Timeout), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn bad_urls_are_refused_before_anything_is_sent() {
    let o = Outbound::new(config(true)).unwrap();
    for url in [
        "ftp://example.com/",
        "file:///etc/passwd",
        "/relative",
        "http://user:pw@example.com/",
    ] {
        assert!(
            matches!(o.get(url).await, Err(OutboundError::InvalidUrl(_))),
            "{url}"
        );
    }
    // A closed port: a transient connection failure, and no URL in the message.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = o
        .get(&format!("http://127.0.0.1:{port}/?secret=s3cr3t"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[test]
fn forms_are_encoded() {
    assert_eq!(
        form_urlencode(&[("logout_token", "a.b-c_d"), ("x", "a b&c")]),
        "logout_token=a.b-c_d&x=a+b%26c"
    );
}
