//! The HTTP/1.1 server under both listeners: hyper's HTTP/1 connection, with the settings
//! that `axum::serve` leaves at their defaults or does not expose. Over `axum::serve` it
//! adds a bound on how long a request's head may take (and so on idle keep-alive
//! connections), and `TCP_NODELAY` on every connection; it drops the HTTP/1-or-2
//! detection of hyper-util's `auto` connection, which Signet never needed (it serves
//! HTTP/1.1 only, as before).
//!
//! It is also the one place that says who the client is: every request carries the peer
//! (`ConnectInfo<SocketAddr>`) and the client's address as resolved from it and, from a
//! trusted proxy only, `X-Forwarded-For` ([`super::client_addr::ClientAddr`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use super::client_addr::TrustedProxies;
use super::client_cert::{CertPolicy, PresentedCert};

/// How long a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server loop tells handlers about who sent a request: the trusted proxies (for
/// the client's address and certificate header) and how client certificates are read.
#[derive(Debug, Clone, Default)]
pub struct Edge {
    pub trusted: TrustedProxies,
    pub certs: CertPolicy,
}

/// How long a client may take to send a request's head (the request line and headers),
/// counted from when the connection waits for one; a keep-alive connection idle that long
/// between requests is closed too. Without it a client sending its headers a byte at a
/// time holds a connection (and its task) forever. hyper's default.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets
/// every connection finish the request it is on (idle ones close at once) and returns when
/// all are gone. Handlers see the peer as `ConnectInfo<SocketAddr>` and the client as
/// [`super::client_addr::ClientAddr`] (the peer unless it is one of `trusted` proxies).
/// With `tls`, every connection is TLS first; a client certificate presented in the
/// handshake reaches handlers as a [`PresentedCert`], as does a certificate header from a
/// trusted proxy ([`super::client_cert`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    edge: Arc<Edge>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        no_delay(&tcp);
        let router = router.clone();
        let certs = edge.certs.clone();
        let edge = edge.clone();
        let service = move |tls_cert: Option<PresentedCert>| {
            let router = router.clone();
            let edge = edge.clone();
            hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                let client = edge.trusted.client_addr(peer.ip(), req.headers());
                // A trusted proxy's header names the client's certificate; otherwise the
                // handshake's, if any.
                let cert = edge
                    .certs
                    .from_header(&edge.trusted, peer.ip(), req.headers())
                    .or_else(|| tls_cert.clone());
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(client);
                if let Some(cert) = cert {
                    req.extensions_mut().insert(cert);
                }
                router.clone().oneshot(req)
            })
        };
        match &tls {
            None => {
                let connection = graceful.watch(
                    http.serve_connection(TokioIo::new(WriteBatch::new(tcp)), service(None)),
                );
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        // A peer that went away, a malformed request (hyper answered 400),
                        // a head past the timeout: the connection's business, not the
                        // server's.
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let http = http.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                    let stream = match handshake {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %peer, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let tls_cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.split_first())
                        .map(|(leaf, rest)| certs.parse(leaf, rest));
                    let connection = watcher.watch(http.serve_connection(
                        TokioIo::new(WriteBatch::new(stream)),
                        service(tls_cert),
                    ));
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Sets `TCP_NODELAY`. Each answer leaves in one write, but a client that pipelines gets
/// several writes in a row, and Nagle's algorithm held every one after the first until the
/// client's delayed ACK, 40 ms later.
fn no_delay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
}

/// A failed `accept`: a connection reset before it was taken is nobody's problem; anything
/// else (out of file descriptors, most often) is logged, and the loop waits a second
/// rather than spin on an error that will repeat.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What hyper writes on a connection, held until the connection next waits for input.
///
/// hyper writes each answer and flushes it at once. A client that pipelines (several
/// requests in one write) then gets one system call per answer, and the answers of one
/// batch leave in as many segments. Here a flush only marks the answer done; the bytes go
/// out together, in one write, as soon as hyper asks to read again, which it does right
/// after an answer unless the next request is already in its buffer. So a client that
/// sends one request at a time sees no difference (the write happens at the same point,
/// before the connection waits), and a pipelined batch is answered with one write.
///
/// hyper's own `pipeline_flush` does the same by looking at its read buffer, and holds an
/// answer forever when that buffer keeps a stray empty line after a request (RFC 9112
/// section 2.2: servers ignore it); this flushes whenever the read would wait, whatever is
/// buffered above it. An answer is held only while hyper works on a request that was
/// already read, at most that request's time (itself bounded by the request timeout).
/// Signet's answers are whole bodies; a streamed body would wait here between its chunks
/// (until 64 KiB gather or the connection reads), so an endpoint that streams must not be
/// served through this.
struct WriteBatch<T> {
    io: T,
    held: Vec<u8>,
    /// `held[..sent]` is on its way.
    sent: usize,
}

impl<T> WriteBatch<T> {
    /// Above this many held bytes, writes wait until the socket takes some.
    const LIMIT: usize = 64 * 1024;

    fn new(io: T) -> Self {
        WriteBatch {
            io,
            held: Vec::new(),
            sent: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> WriteBatch<T> {
    /// Writes out everything held.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.held.len() {
            match ready!(Pin::new(&mut self.io).poll_write(cx, &self.held[self.sent..])) {
                Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => self.sent += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.held.clear();
        self.sent = 0;
        if self.held.capacity() > Self::LIMIT {
            self.held = Vec::new();
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Ready when there is room to hold more.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.held.len() >= Self::LIMIT {
            ready!(self.poll_send(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for WriteBatch<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.held.is_empty() {
            // Pending: the socket takes no more for now (its waker is set); reading goes
            // on regardless, so that a client that writes before it reads cannot stall
            // the connection.
            if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteBatch<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx))?;
        this.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx))?;
        let mut n = 0;
        for b in bufs {
            this.held.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Marks the bytes written so far as complete; they leave with the next read (see the
    /// type), or at shutdown.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn pair() -> (WriteBatch<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, server) = tokio::join!(client, listener.accept());
        (WriteBatch::new(server.unwrap().0), client.unwrap())
    }

    /// Polls one read of `w` (nothing is there to read: it stays pending).
    async fn poll_read_once(w: &mut WriteBatch<TcpStream>) {
        poll_fn(|cx| {
            let mut space = [0u8; 16];
            let mut buf = ReadBuf::new(&mut space);
            assert!(Pin::new(&mut *w).poll_read(cx, &mut buf).is_pending());
            Poll::Ready(())
        })
        .await;
    }

    async fn read_exactly(peer: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(5), peer.read_exact(&mut got))
            .await
            .expect("the held bytes arrive")
            .unwrap();
        got
    }

    #[tokio::test]
    async fn flushed_answers_leave_together_when_the_connection_reads_again() {
        let (mut w, mut peer) = pair().await;
        w.write_all(b"first ").await.unwrap();
        w.flush().await.unwrap();
        w.write_all(b"second").await.unwrap();
        w.flush().await.unwrap();
        // Nothing was written to the socket yet.
        tokio::task::yield_now().await;
        let mut probe = [0u8; 1];
        assert_eq!(
            peer.try_read(&mut probe).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
        assert_eq!(w.held, b"first second");
        // The connection waits for input: both leave, in one write.
        poll_read_once(&mut w).await;
        assert!(w.held.is_empty());
        assert_eq!(read_exactly(&mut peer, 12).await, b"first second");

        // Reading still works through it.
        peer.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        w.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }

    #[tokio::test]
    async fn shutdown_sends_what_is_held_first() {
        let (mut w, mut peer) = pair().await;
        w.write_all(b"last answer").await.unwrap();
        w.flush().await.unwrap();
        w.shutdown().await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"last answer");
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_holds_back_the_writer_at_the_limit() {
        let (mut w, mut peer) = pair().await;
        // Far more than the socket buffers take: the writer must wait, not hold it all.
        let chunk = vec![7u8; 16 * 1024];
        let mut accepted = 0usize;
        let stalled = loop {
            match tokio::time::timeout(Duration::from_millis(200), w.write(&chunk)).await {
                Ok(n) => accepted += n.unwrap(),
                Err(_) => break true,
            }
            if accepted > 64 * 1024 * 1024 {
                break false;
            }
        };
        assert!(stalled, "held {accepted} bytes without waiting");
        assert!(w.held.len() <= WriteBatch::<TcpStream>::LIMIT + chunk.len());
        // Once the peer reads, everything accepted arrives.
        let reader = tokio::spawn(async move { read_exactly(&mut peer, accepted).await });
        w.shutdown().await.unwrap();
        assert!(reader.await.unwrap().iter().all(|&b| b == 7));
    }
}
