//! Connections to the three Redis topologies, each reconnecting by itself:
//!
//! - single Redis: the `redis` crate's `ConnectionManager` (reconnects in the background
//!   after a broken connection);
//! - Sentinel: a multiplexed connection to the master that Sentinel names; a connection or
//!   `READONLY` error (the master was demoted by a failover) drops it, and the next call asks
//!   Sentinel for the current master again;
//! - Redis Cluster: the `redis` crate's cluster connection (follows `MOVED`/`ASK`, refreshes
//!   the slot map, reconnects to nodes).
//!
//! A call is never retried here after a failure: a retried `consume` could lose a value the
//! first attempt took. The caller sees the error; the next call uses a fresh connection.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, RedisConnectionInfo, RedisError, RedisResult, Script, TlsMode,
    Value,
};

use super::url::{Auth, Target};
use crate::{Result, StoreError};

#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Sentinel(Arc<SentinelConn>),
    Cluster(ClusterConnection),
}

pub(crate) struct SentinelConn {
    client: tokio::sync::Mutex<SentinelClient>,
    current: std::sync::Mutex<Option<MultiplexedConnection>>,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    display: String,
}

/// Installs aws-lc-rs as rustls' process-wide provider if none is installed yet (the
/// workspace's rustls is built with more than one provider, so none is picked implicitly).
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: some provider is installed.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

fn redis_info(auth: &Auth, db: i64) -> RedisConnectionInfo {
    let mut info = RedisConnectionInfo::default().set_db(db);
    if let Some(user) = &auth.user {
        info = info.set_username(user);
    }
    if let Some(password) = &auth.password {
        info = info.set_password(password);
    }
    info
}

/// Maps a connection-time failure to a clear, credential-free message.
fn unreachable(target: &Target, timeout: Duration, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!(
        "cannot connect to Redis at {} (timeout {timeout:?}): {e}",
        target.display()
    ))
}

impl Conn {
    /// Connects within `connect_timeout` (each answer later must come within
    /// `response_timeout`).
    pub async fn connect(
        target: &Target,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Conn> {
        if target.is_tls() {
            ensure_crypto_provider();
        }
        let attempt = async {
            match target {
                Target::Single { url, .. } => {
                    let client = redis::Client::open(url.as_str())
                        .map_err(|e| StoreError::Config(format!("invalid Redis URL: {e}")))?;
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(connect_timeout))
                        .set_response_timeout(Some(response_timeout))
                        .set_number_of_retries(2)
                        .set_max_delay(Duration::from_secs(2));
                    let manager = ConnectionManager::new_with_config(client, config)
                        .await
                        .map_err(|e| unreachable(target, connect_timeout, e))?;
                    Ok(Conn::Single(manager))
                }
                Target::Sentinel {
                    sentinels,
                    master,
                    db,
                    auth,
                    tls,
                    display,
                } => {
                    let mut node = SentinelNodeConnectionInfo::default()
                        .set_redis_connection_info(redis_info(auth, *db));
                    if *tls {
                        node = node.set_tls_mode(TlsMode::Secure);
                    }
                    let client = SentinelClient::build(
                        sentinels.clone(),
                        master.clone(),
                        Some(node),
                        SentinelServerType::Master,
                    )
                    .map_err(|e| StoreError::Config(format!("invalid Sentinel setup: {e}")))?;
                    let conn = Arc::new(SentinelConn {
                        client: tokio::sync::Mutex::new(client),
                        current: std::sync::Mutex::new(None),
                        config: AsyncConnectionConfig::new()
                            .set_connection_timeout(Some(connect_timeout))
                            .set_response_timeout(Some(response_timeout)),
                        connect_timeout,
                        display: display.clone(),
                    });
                    conn.get().await?;
                    Ok(Conn::Sentinel(conn))
                }
                Target::Cluster {
                    nodes, auth, tls, ..
                } => {
                    let mut builder = ClusterClientBuilder::new(nodes.clone())
                        .connection_timeout(connect_timeout)
                        .response_timeout(response_timeout)
                        .retries(3);
                    if let Some(user) = &auth.user {
                        builder = builder.username(user);
                    }
                    if let Some(password) = &auth.password {
                        builder = builder.password(password);
                    }
                    if *tls {
                        builder = builder.tls(TlsMode::Secure);
                    }
                    let client = builder.build().map_err(|e| {
                        StoreError::Config(format!("invalid Redis Cluster setup: {e}"))
                    })?;
                    let conn = client.get_async_connection().await.map_err(|e| {
                        if e.to_string().contains("cluster support disabled") {
                            StoreError::Config(format!(
                                "{} is not a Redis Cluster: use redis:// for a single Redis",
                                target.display()
                            ))
                        } else {
                            unreachable(target, connect_timeout, e)
                        }
                    })?;
                    Ok(Conn::Cluster(conn))
                }
            }
        };
        // The bound holds whatever the client library does inside (retries, DNS, TLS).
        let bound = connect_timeout.saturating_mul(2) + Duration::from_millis(500);
        match tokio::time::timeout(bound, attempt).await {
            Ok(result) => result,
            Err(_) => Err(unreachable(target, connect_timeout, "timed out")),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    pub async fn query(&self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => cmd.query_async(&mut c.clone()).await,
            Conn::Cluster(c) => cmd.query_async(&mut c.clone()).await,
            Conn::Sentinel(s) => {
                let mut c = s.get().await.map_err(to_redis_error)?;
                let result = cmd.query_async(&mut c).await;
                s.check(&result);
                result
            }
        }
    }

    pub async fn script(
        &self,
        script: &Script,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> RedisResult<Value> {
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(*k);
        }
        for a in args {
            invocation.arg(*a);
        }
        match self {
            Conn::Single(c) => invocation.invoke_async(&mut c.clone()).await,
            Conn::Cluster(c) => invocation.invoke_async(&mut c.clone()).await,
            Conn::Sentinel(s) => {
                let mut c = s.get().await.map_err(to_redis_error)?;
                let result = invocation.invoke_async(&mut c).await;
                s.check(&result);
                result
            }
        }
    }
}

fn to_redis_error(e: StoreError) -> RedisError {
    RedisError::from((redis::ErrorKind::Io, "no Redis master", e.to_string()))
}

impl SentinelConn {
    /// The connection to the current master, asking Sentinel when there is none.
    async fn get(&self) -> Result<MultiplexedConnection> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let mut client = self.client.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let c = tokio::time::timeout(
            self.connect_timeout,
            client.get_async_connection_with_config(&self.config),
        )
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "no Redis master from Sentinel at {} within {:?}",
                self.display, self.connect_timeout
            ))
        })?
        .map_err(|e| {
            StoreError::Unavailable(format!(
                "no Redis master from Sentinel at {}: {e}",
                self.display
            ))
        })?;
        if let Ok(mut current) = self.current.lock() {
            *current = Some(c.clone());
        }
        Ok(c)
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    /// Forgets the connection after an error that means it is broken or no longer talks
    /// to the master.
    fn check<T>(&self, result: &RedisResult<T>) {
        if let Err(e) = result {
            let readonly = e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
            if readonly
                || e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.is_unrecoverable_error()
            {
                if let Ok(mut current) = self.current.lock() {
                    *current = None;
                }
            }
        }
    }
}
