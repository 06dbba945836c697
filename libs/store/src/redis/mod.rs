//! [`RedisStore`]: the short-lived state of a Signet cluster in Redis: a single Redis, Redis
//! behind Sentinel, or a Redis Cluster.
//!
//! # URLs
//!
//! | form | topology |
//! |---|---|
//! | `redis://[user:password@]host[:port][/db]`, `rediss://...` (TLS), `redis+unix:///path` | one Redis |
//! | `redis+sentinel://[user:password@]host:port[,host:port...]/<master name>[/db]` (`rediss+sentinel://`: TLS to sentinels and master) | the master Sentinel names (default sentinel port 26379) |
//! | `redis+cluster://[user:password@]host:port[,host:port...]` (`rediss+cluster://`) | a Redis Cluster, discovered from these seed nodes |
//!
//! The user and password (percent-encoded in the URL) are those of the Redis data nodes;
//! sentinels are reached without credentials. A URL that cannot be used is refused at once
//! with [`StoreError::Config`]; a Redis that does not answer within
//! [`RedisConfig::connect_timeout`] is [`StoreError::Unavailable`]; neither message contains
//! the credentials. [`RedisStore::connect`] also refuses a single-Redis URL that names a
//! Cluster node, a Sentinel or a read-only replica, with a message saying what to use.
//!
//! # Data model
//!
//! Every key starts with [`RedisConfig::prefix`] (`signet` by default; below `P`). Keys that
//! must change together share a hash tag (`{...}`), so they live in one Cluster slot and one
//! Lua script changes them atomically.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:e:<namespace>:<key>` | hash | an entry: `v` value, `i` the index keys it is in (newline-separated), `w` write nonce (Cluster only); Redis TTL = the entry's TTL |
//! | `P:{f:<id>}:r` | hash | a refresh-token family: `cur` current token key, `v` its value, `i` the session/subject index keys it is in, `w` |
//! | `P:{f:<id>}:x` | set | the family's retired token keys (same TTL as `r`) |
//! | `P:{f:<id>}:i` | hash | index of the entries tied to the family: field per member key, `#g` generation |
//! | `P:{s:<sid>}:i` | hash | index of a session: entries and family records (`P:{f:<id>}:r`) |
//! | `P:{u:<sub>}:i` | hash | index of a subject, likewise |
//!
//! An index's TTL is pushed out to the longest TTL of anything put into it, so an index
//! never forgets a live member. Counters are entries whose `v` is the count (`HINCRBY`).
//!
//! Every operation is one Lua script (see `scripts.rs`) or one read command:
//! `consume` (`HMGET`+`DEL`), `insert`, `incr`, `rotate` (compare the current key, retire
//! it, or on a retired key delete the family) are each a single script on a single key or
//! hash tag, so they are atomic in every topology.
//!
//! ## Single Redis and Sentinel
//!
//! All keys are on one node, so every change is one script, whatever slots its keys hash
//! to: a put writes the entry and its index memberships together; a delete by index deletes
//! the index, its members, a member family's retired set and the entries tied to that family,
//! and removes the members from their other indexes, all in one script. No state is ever
//! half-written.
//!
//! ## Redis Cluster
//!
//! An entry and its indexes hash to different slots, so a change spanning them cannot be one
//! script. Each step is one atomic script on one slot, and the steps are ordered so that the
//! invariant "a live entry is a member of each of its indexes" always holds (a member that
//! points at nothing is harmless and expires with the index):
//!
//! - **put with indexes**: (1) add the member to each index and read the index's
//!   generation `#g`; (2) write the entry with a fresh nonce `w`; (3) check each index still
//!   has the member at the same generation. If a delete by index started in between (the
//!   generation moved), the put deletes its own entry if it still holds its nonce: the put
//!   is ordered before the racing delete. Then stale memberships of an overwritten entry are
//!   dropped.
//! - **delete by index** (and reuse, `delete_family`): (1) bump the index's generation and
//!   read its members, leaving them in place; (2) delete each member (one script per member
//!   slot; a family record takes its retired set and hands back its own index's members,
//!   deleted next); (3) remove the deleted members from the index. A delete that fails half
//!   way leaves the members listed, so running it again finishes it.
//! - **create_family with a session/subject**: as a put; on an existing id the memberships
//!   it added are taken back.
//!
//! So in Cluster, atomicity is per slot, and a multi-slot change is a sequence of atomic
//! steps that never leaves a live entry unreachable from its indexes. Removing a deleted
//! entry's membership from its *other* indexes is best effort (a leftover points at nothing).
//! When rotation detects reuse, the family is deleted atomically; if deleting the entries
//! tied to it then fails, [`Rotation::Reused`] is still returned (the caller must publish the
//! revocation), the failure is logged, and those entries stay listed under the family for a
//! later [`Store::delete_family`].
//!
//! # Connections
//!
//! See `conn.rs`: a connection manager (single), re-resolution of the master after errors
//! (Sentinel), the cluster client (Cluster). Commands are not retried; every answer must come
//! within [`RedisConfig::response_timeout`]. An answer that is not what Signet wrote (a key
//! of another Redis type, a hash without its value, a reply of an unexpected shape) is
//! [`StoreError::Decode`], never a miss.

mod conn;
mod scripts;
mod url;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use redis::{RedisError, Value};

use self::conn::Conn;
use self::scripts as lua;
use crate::{
    dedup_index, ttl_millis, validate_family, validate_index, validate_key, FamilyToken, Index,
    Namespace, Result, Rotation, Store, StoreError,
};

/// How many member deletions a Cluster delete-by-index runs at once.
const PARALLEL: usize = 16;
/// Members per `INDEX_FORGET` call.
const HDEL_CHUNK: usize = 500;

/// Checks that `url` is one of the accepted forms, without connecting, and returns it
/// without credentials (for messages). The error names what is wrong and never echoes
/// a password.
pub fn check_url(url: &str) -> Result<String> {
    url::parse(url).map(|t| t.display().to_owned())
}

/// Where and how to connect.
#[derive(Clone)]
pub struct RedisConfig {
    /// One of the URL forms in the module docs.
    pub url: String,
    /// The first part of every key (default `signet`): several deployments can share one
    /// Redis with distinct prefixes. Same rules as keys.
    pub prefix: String,
    /// Bound on connecting (default 5 s).
    pub connect_timeout: Duration,
    /// Bound on each answer (default 5 s).
    pub response_timeout: Duration,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            prefix: "signet".into(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
        }
    }

    pub fn with_prefix(mut self, prefix: impl Into<String>) -> RedisConfig {
        self.prefix = prefix.into();
        self
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = url::parse(&self.url)
            .map(|t| t.display().to_owned())
            .unwrap_or_else(|_| "<invalid>".into());
        f.debug_struct("RedisConfig")
            .field("url", &url)
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

/// The Redis [`Store`].
pub struct RedisStore {
    conn: Conn,
    /// Single Redis or Sentinel: every change is one script.
    local: bool,
    prefix: String,
    display: String,
    nonce_seed: u64,
    nonce: AtomicU64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("redis", &self.display)
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn decode(what: &str) -> StoreError {
    StoreError::Decode(format!("unexpected Redis answer to {what}"))
}

/// Maps a Redis error (whose text never holds keys or credentials) to a store error.
fn backend(e: RedisError) -> StoreError {
    let text = e.to_string();
    if text.contains("SIGNETNOTCOUNTER") {
        StoreError::NotACounter
    } else if let Some(i) = text.find("SIGNETDECODE") {
        StoreError::Decode(text[i + "SIGNETDECODE".len()..].trim().to_owned())
    } else if text.contains("WRONGTYPE") {
        StoreError::Decode("a Signet key holds a value of another Redis type".into())
    } else if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
    {
        StoreError::Unavailable(format!("Redis: {text}"))
    } else {
        StoreError::Backend(format!("Redis: {text}"))
    }
}

fn as_bytes(v: Value, what: &str) -> Result<Vec<u8>> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::VerbatimString { text, .. } => Ok(text.into_bytes()),
        _ => Err(decode(what)),
    }
}

fn as_string(v: Value, what: &str) -> Result<String> {
    String::from_utf8(as_bytes(v, what)?).map_err(|_| decode(what))
}

fn as_int(v: &Value, what: &str) -> Result<i64> {
    match v {
        Value::Int(n) => Ok(*n),
        _ => Err(decode(what)),
    }
}

fn as_array(v: Value, what: &str) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        _ => Err(decode(what)),
    }
}

/// Field/value pairs of `HGETALL` (RESP2 flat array or RESP3 map).
fn as_pairs(v: Value, what: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    match v {
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Ok((as_bytes(k, what)?, as_bytes(v, what)?)))
            .collect(),
        other => {
            let flat = as_array(other, what)?;
            if flat.len() % 2 != 0 {
                return Err(decode(what));
            }
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((as_bytes(k, what)?, as_bytes(v, what)?));
            }
            Ok(out)
        }
    }
}

fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split('\n').filter(|s| !s.is_empty())
}

fn flag(local: bool) -> &'static [u8] {
    if local {
        b"1"
    } else {
        b"0"
    }
}

impl RedisStore {
    /// Connects (within [`RedisConfig::connect_timeout`]) and checks that the server is
    /// usable for the URL's topology.
    pub async fn connect(config: RedisConfig) -> Result<RedisStore> {
        validate_key("key prefix", &config.prefix)
            .map_err(|e| StoreError::Config(format!("Redis {e}")))?;
        let target = url::parse(&config.url)?;
        let conn = Conn::connect(&target, config.connect_timeout, config.response_timeout).await?;
        let local = !conn.is_cluster();
        let store = RedisStore {
            conn,
            local,
            prefix: config.prefix,
            display: target.display().to_owned(),
            nonce_seed: nonce_seed(),
            nonce: AtomicU64::new(0),
        };
        store.check_server(&target).await?;
        Ok(store)
    }

    async fn check_server(&self, target: &url::Target) -> Result<()> {
        if !self.local {
            self.conn.query(&redis::cmd("PING")).await.map_err(|e| {
                StoreError::Unavailable(format!("Redis Cluster at {}: {e}", self.display))
            })?;
            return Ok(());
        }
        let info = self
            .conn
            .query(&redis::cmd("INFO"))
            .await
            .map_err(|e| StoreError::Unavailable(format!("Redis at {}: {e}", self.display)))?;
        let info = as_string(info, "INFO")?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        let hint = match (field("redis_mode").as_str(), field("role").as_str()) {
            ("cluster", _) => Some("is a Redis Cluster node: use redis+cluster://host:port,..."),
            ("sentinel", _) => Some("is a Sentinel: use redis+sentinel://host:port/<master name>"),
            (_, "slave" | "replica") => Some("is a read-only replica: point at the master"),
            _ => None,
        };
        match hint {
            Some(hint) if matches!(target, url::Target::Single { .. }) => Err(StoreError::Config(
                format!("Redis at {} {hint}", self.display),
            )),
            Some(hint) => Err(StoreError::Unavailable(format!(
                "the master Sentinel named at {} {hint}",
                self.display
            ))),
            None => Ok(()),
        }
    }

    fn next_nonce(&self) -> String {
        let n = self.nonce.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{n:x}", self.nonce_seed)
    }

    fn entry_key(&self, ns: Namespace, key: &str) -> String {
        format!("{}:e:{}:{key}", self.prefix, ns.as_str())
    }

    /// Record, retired set and index of a family.
    fn family_keys(&self, id: &str) -> [String; 3] {
        let p = &self.prefix;
        [
            format!("{p}:{{f:{id}}}:r"),
            format!("{p}:{{f:{id}}}:x"),
            format!("{p}:{{f:{id}}}:i"),
        ]
    }

    fn index_key(&self, index: &Index<'_>) -> String {
        let p = &self.prefix;
        match index {
            Index::Family(id) => format!("{p}:{{f:{id}}}:i"),
            Index::Session(id) => format!("{p}:{{s:{id}}}:i"),
            Index::Subject(id) => format!("{p}:{{u:{id}}}:i"),
        }
    }

    /// The family id of a family record key `P:{f:<id>}:r`.
    fn family_of<'k>(&self, member: &'k str) -> Option<&'k str> {
        member
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{f:")?
            .strip_suffix("}:r")
    }

    async fn run(&self, script: &redis::Script, keys: &[&str], args: &[&[u8]]) -> Result<Value> {
        let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        self.conn.script(script, &keys, args).await.map_err(backend)
    }

    async fn query(&self, cmd: &redis::Cmd) -> Result<Value> {
        self.conn.query(cmd).await.map_err(backend)
    }

    /// Cluster: removes deleted members from a taken index (and the index, once empty).
    async fn index_forget(&self, index: &str, members: &[String]) -> Result<()> {
        for chunk in members.chunks(HDEL_CHUNK) {
            let args: Vec<&[u8]> = chunk.iter().map(|m| m.as_bytes()).collect();
            self.run(&lua::INDEX_FORGET, &[index], &args).await?;
        }
        Ok(())
    }

    /// Cluster: drops `member` from each index in `list` other than `except`; a failure only
    /// leaves a harmless dangling member, so it is logged, not returned.
    async fn forget(&self, member: &str, list: &str, except: Option<&str>) {
        let indexes: Vec<&str> = split_list(list).filter(|i| Some(*i) != except).collect();
        let cmds: Vec<redis::Cmd> = indexes
            .iter()
            .map(|i| redis::cmd("HDEL").arg(*i).arg(member).clone())
            .collect();
        let results = futures::future::join_all(cmds.iter().map(|c| self.query(c))).await;
        for r in results {
            if let Err(e) = r {
                tracing::debug!(error = %e, "could not drop a stale index membership");
            }
        }
    }

    /// Cluster: adds `member` to each index; returns each index's generation and whether the
    /// member was new there.
    async fn index_add(
        &self,
        indexes: &[String],
        member: &str,
        ttl: u64,
    ) -> Result<Vec<(String, bool)>> {
        let ttl = ttl.to_string();
        futures::future::try_join_all(indexes.iter().map(|idx| {
            let ttl = ttl.as_bytes();
            async move {
                let v = self
                    .run(&lua::INDEX_ADD, &[idx], &[member.as_bytes(), ttl])
                    .await?;
                let mut a = as_array(v, "an index add")?.into_iter();
                match (a.next(), a.next()) {
                    (Some(generation), Some(added)) => Ok((
                        as_string(generation, "an index add")?,
                        as_int(&added, "an index add")? == 1,
                    )),
                    _ => Err(decode("an index add")),
                }
            }
        }))
        .await
    }

    /// Cluster: whether no delete-by-index started on any of the indexes since `index_add`.
    async fn index_check(
        &self,
        indexes: &[String],
        member: &str,
        gens: &[(String, bool)],
    ) -> Result<bool> {
        let checks = futures::future::try_join_all(indexes.iter().zip(gens).map(
            |(idx, (generation, _))| async move {
                let v = self
                    .run(
                        &lua::INDEX_CHECK,
                        &[idx],
                        &[member.as_bytes(), generation.as_bytes()],
                    )
                    .await?;
                as_int(&v, "an index check")
            },
        ))
        .await?;
        Ok(checks.iter().all(|&c| c == 1))
    }

    /// Cluster: deletes one entry found in index `from`.
    async fn drop_entry(&self, key: &str, from: Option<&str>) -> Result<u64> {
        let v = self.run(&lua::DROP_ENTRY, &[key], &[]).await?;
        let mut a = as_array(v, "an entry delete")?.into_iter();
        let (Some(n), Some(list)) = (a.next(), a.next()) else {
            return Err(decode("an entry delete"));
        };
        let n = as_int(&n, "an entry delete")?;
        let list = as_string(list, "an entry delete")?;
        self.forget(key, &list, from).await;
        Ok(u64::from(n > 0))
    }

    /// Cluster: deletes the entries of a taken index, then removes them from it.
    async fn drop_members(&self, index: &str, members: Vec<String>) -> Result<u64> {
        let removed: Vec<u64> = futures::stream::iter(members.clone())
            .map(|m| self.drop_member(m, index))
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
        self.index_forget(index, &members).await?;
        Ok(removed.iter().sum())
    }

    /// Cluster: deletes one member of a session or subject index.
    async fn drop_member(&self, member: String, index: &str) -> Result<u64> {
        match self.family_of(&member) {
            Some(id) => self.drop_family(id, Some(index)).await,
            None => self.drop_entry(&member, Some(index)).await,
        }
    }

    /// Cluster: deletes one entry of a family index.
    async fn drop_tied(&self, member: String, fi: &str) -> Result<u64> {
        self.drop_entry(&member, Some(fi)).await
    }

    /// Cluster: deletes a family (found in index `from`, if any) and the entries tied to it.
    async fn drop_family(&self, id: &str, from: Option<&str>) -> Result<u64> {
        let [r, x, fi] = self.family_keys(id);
        let v = self.run(&lua::FAMILY_DROP, &[&r, &x, &fi], &[b"0"]).await?;
        let (existed, list, members) = family_drop_reply(v, 1)?;
        self.forget(&r, &list, from).await;
        Ok(existed + self.drop_family_members(&fi, members).await?)
    }

    /// Cluster: the entries of a family index, which hold no families.
    async fn drop_family_members(&self, fi: &str, members: Vec<String>) -> Result<u64> {
        let removed: Vec<u64> = futures::stream::iter(members.clone())
            .map(|m| self.drop_tied(m, fi))
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
        self.index_forget(fi, &members).await?;
        Ok(removed.iter().sum())
    }

    async fn consume_inner(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>> {
        validate_key("key", key)?;
        let entry = self.entry_key(ns, key);
        let v = self
            .run(&lua::CONSUME, &[&entry], &[flag(self.local)])
            .await?;
        let mut a = as_array(v, "a consume")?.into_iter();
        match (a.next(), a.next()) {
            (None, _) => Ok(None),
            (Some(value), Some(list)) => {
                let value = as_bytes(value, "a consume")?;
                if !self.local {
                    let list = as_string(list, "a consume")?;
                    self.forget(&entry, &list, None).await;
                }
                Ok(Some(value))
            }
            _ => Err(decode("a consume")),
        }
    }
}

/// `{existed or code, index list, member...}` of `FAMILY_DROP`/`ROTATE` in Cluster mode,
/// starting at element `skip - 1`.
fn family_drop_reply(v: Value, skip: usize) -> Result<(u64, String, Vec<String>)> {
    let what = "a family delete";
    let mut a = as_array(v, what)?.into_iter();
    let head: Vec<Value> = a.by_ref().take(skip + 1).collect();
    if head.len() != skip + 1 {
        return Err(decode(what));
    }
    let existed = match skip {
        1 => u64::from(as_int(&head[0], what)? > 0),
        _ => 0,
    };
    let list = match head.into_iter().last() {
        Some(v) => as_string(v, what)?,
        None => return Err(decode(what)),
    };
    let members = a.map(|m| as_string(m, what)).collect::<Result<Vec<_>>>()?;
    Ok((existed, list, members))
}

/// A random per-store seed, so that nonces of two stores (or processes) never collide.
fn nonce_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> Result<()> {
        match self
            .conn
            .query(&redis::cmd("PING"))
            .await
            .map_err(backend)?
        {
            Value::SimpleString(s) if s == "PONG" => Ok(()),
            _ => Err(decode("PING")),
        }
    }

    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Duration,
        index: &[Index<'_>],
    ) -> Result<()> {
        validate_key("key", key)?;
        validate_index(index)?;
        let ttl = ttl_millis(ttl)?;
        let ttl_s = ttl.to_string();
        let entry = self.entry_key(ns, key);
        let indexes: Vec<String> = dedup_index(index)
            .iter()
            .map(|i| self.index_key(i))
            .collect();
        let list = indexes.join("\n");
        if self.local {
            let mut keys: Vec<&str> = vec![&entry];
            keys.extend(indexes.iter().map(String::as_str));
            self.run(
                &lua::PUT,
                &keys,
                &[value, ttl_s.as_bytes(), list.as_bytes(), b"1", b""],
            )
            .await?;
            return Ok(());
        }
        let nonce = if indexes.is_empty() {
            String::new()
        } else {
            self.next_nonce()
        };
        let gens = self.index_add(&indexes, &entry, ttl).await?;
        let old = self
            .run(
                &lua::PUT,
                &[&entry],
                &[
                    value,
                    ttl_s.as_bytes(),
                    list.as_bytes(),
                    b"0",
                    nonce.as_bytes(),
                ],
            )
            .await?;
        let old = as_string(old, "a put")?;
        if !indexes.is_empty() && !self.index_check(&indexes, &entry, &gens).await? {
            // A delete by one of its indexes ran meanwhile: this put is ordered before it.
            self.run(&lua::DELETE_IF_NONCE, &[&entry], &[nonce.as_bytes()])
                .await?;
            tracing::debug!("a put raced with a delete by index and was undone");
        }
        let stale: Vec<&str> = split_list(&old)
            .filter(|o| !indexes.iter().any(|i| i == o))
            .collect();
        if !stale.is_empty() {
            self.forget(&entry, &stale.join("\n"), None).await;
        }
        Ok(())
    }

    async fn insert(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        validate_key("key", key)?;
        let ttl = ttl_millis(ttl)?.to_string();
        let entry = self.entry_key(ns, key);
        let v = self
            .run(&lua::INSERT, &[&entry], &[value, ttl.as_bytes()])
            .await?;
        Ok(as_int(&v, "an insert")? == 1)
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>> {
        validate_key("key", key)?;
        let entry = self.entry_key(ns, key);
        let v = self.query(redis::cmd("HGETALL").arg(&entry)).await?;
        let pairs = as_pairs(v, "a get")?;
        if pairs.is_empty() {
            return Ok(None);
        }
        pairs
            .into_iter()
            .find_map(|(f, v)| (f == b"v").then_some(v))
            .map(Some)
            .ok_or_else(|| StoreError::Decode("entry without a value".into()))
    }

    async fn consume(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>> {
        self.consume_inner(ns, key).await
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        Ok(self.consume_inner(ns, key).await?.is_some())
    }

    async fn incr(&self, ns: Namespace, key: &str, window: Duration) -> Result<u64> {
        validate_key("key", key)?;
        let window = ttl_millis(window)?.to_string();
        let entry = self.entry_key(ns, key);
        let v = self
            .run(&lua::INCR, &[&entry], &[window.as_bytes()])
            .await?;
        u64::try_from(as_int(&v, "an increment")?).map_err(|_| StoreError::NotACounter)
    }

    async fn create_family(
        &self,
        family: &str,
        token_key: &str,
        value: &[u8],
        ttl: Duration,
        index: &[Index<'_>],
    ) -> Result<()> {
        validate_family(family, token_key, index)?;
        let ttl = ttl_millis(ttl)?;
        let ttl_s = ttl.to_string();
        let [r, x, _] = self.family_keys(family);
        let indexes: Vec<String> = dedup_index(index)
            .iter()
            .map(|i| self.index_key(i))
            .collect();
        let list = indexes.join("\n");
        if self.local {
            let mut keys: Vec<&str> = vec![&r, &x];
            keys.extend(indexes.iter().map(String::as_str));
            let v = self
                .run(
                    &lua::FAMILY_CREATE,
                    &keys,
                    &[
                        token_key.as_bytes(),
                        value,
                        ttl_s.as_bytes(),
                        list.as_bytes(),
                        b"1",
                        b"",
                    ],
                )
                .await?;
            return match as_int(&v, "a family create")? {
                1 => Ok(()),
                _ => Err(StoreError::FamilyExists),
            };
        }
        let nonce = self.next_nonce();
        let gens = self.index_add(&indexes, &r, ttl).await?;
        let v = self
            .run(
                &lua::FAMILY_CREATE,
                &[&r, &x],
                &[
                    token_key.as_bytes(),
                    value,
                    ttl_s.as_bytes(),
                    list.as_bytes(),
                    b"0",
                    nonce.as_bytes(),
                ],
            )
            .await?;
        if as_int(&v, "a family create")? != 1 {
            for (idx, (_, added)) in indexes.iter().zip(&gens) {
                if *added {
                    self.query(redis::cmd("HDEL").arg(idx).arg(&r)).await?;
                }
            }
            return Err(StoreError::FamilyExists);
        }
        if !indexes.is_empty() && !self.index_check(&indexes, &r, &gens).await? {
            self.run(&lua::DELETE_IF_NONCE, &[&r, &x], &[nonce.as_bytes()])
                .await?;
            tracing::debug!("a family create raced with a delete by index and was undone");
        }
        Ok(())
    }

    async fn family_token(&self, family: &str) -> Result<Option<FamilyToken>> {
        validate_key("family id", family)?;
        let [r, _, _] = self.family_keys(family);
        let v = self
            .query(redis::cmd("HMGET").arg(&r).arg("cur").arg("v"))
            .await?;
        let mut a = as_array(v, "a family read")?.into_iter();
        match (a.next(), a.next()) {
            (Some(Value::Nil), Some(Value::Nil)) => Ok(None),
            (Some(key), Some(value)) if key != Value::Nil && value != Value::Nil => {
                Ok(Some(FamilyToken {
                    key: as_string(key, "a family read")?,
                    value: as_bytes(value, "a family read")?,
                }))
            }
            _ => Err(StoreError::Decode(
                "family record without its current token".into(),
            )),
        }
    }

    async fn rotate(
        &self,
        family: &str,
        presented: &str,
        new_key: &str,
        new_value: &[u8],
        ttl: Duration,
    ) -> Result<Rotation> {
        validate_key("family id", family)?;
        validate_key("token key", presented)?;
        validate_key("token key", new_key)?;
        if presented == new_key {
            return Err(StoreError::InvalidArgument(
                "the new token key must differ from the presented one",
            ));
        }
        let ttl = ttl_millis(ttl)?.to_string();
        let [r, x, fi] = self.family_keys(family);
        let v = self
            .run(
                &lua::ROTATE,
                &[&r, &x, &fi],
                &[
                    presented.as_bytes(),
                    new_key.as_bytes(),
                    new_value,
                    ttl.as_bytes(),
                    flag(self.local),
                ],
            )
            .await?;
        let what = "a rotation";
        let mut a = as_array(v, what)?;
        let code = a.first().map(|c| as_int(c, what)).transpose()?;
        match code {
            Some(0) => Ok(Rotation::Unknown),
            Some(1) if a.len() == 2 => Ok(Rotation::Rotated {
                old_value: as_bytes(a.swap_remove(1), what)?,
            }),
            Some(2) if self.local => Ok(Rotation::Reused),
            Some(2) => {
                let (_, list, members) = family_drop_reply(Value::Array(a), 1)?;
                self.forget(&r, &list, None).await;
                if let Err(e) = self.drop_family_members(&fi, members).await {
                    tracing::warn!(
                        error = %e,
                        "refresh-token reuse: the family is deleted, but not all entries tied \
                         to it; delete_family retries"
                    );
                }
                Ok(Rotation::Reused)
            }
            _ => Err(decode(what)),
        }
    }

    async fn delete_family(&self, family: &str) -> Result<u64> {
        validate_key("family id", family)?;
        if !self.local {
            return self.drop_family(family, None).await;
        }
        let [r, x, fi] = self.family_keys(family);
        let v = self.run(&lua::FAMILY_DROP, &[&r, &x, &fi], &[b"1"]).await?;
        let a = as_array(v, "a family delete")?;
        match a.first() {
            Some(n) => Ok(u64::try_from(as_int(n, "a family delete")?).unwrap_or(0)),
            None => Err(decode("a family delete")),
        }
    }

    async fn entries_by(&self, index: Index<'_>, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>> {
        validate_index(&[index])?;
        let idx = self.index_key(&index);
        let prefix = self.entry_key(ns, "");
        let v = self.query(redis::cmd("HKEYS").arg(&idx)).await?;
        let keys: Vec<String> = as_array(v, "an index listing")?
            .into_iter()
            .map(|m| as_string(m, "an index listing"))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter_map(|m| m.strip_prefix(prefix.as_str()).map(str::to_owned))
            .collect();
        let mut out = Vec::new();
        // Entries hash to different slots in a Redis Cluster: one read each.
        for chunk in keys.chunks(64) {
            let values =
                futures::future::try_join_all(chunk.iter().map(|k| self.get(ns, k))).await?;
            for (k, v) in chunk.iter().zip(values) {
                if let Some(v) = v {
                    out.push((k.clone(), v));
                    if out.len() == crate::MAX_LISTED {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn delete_by(&self, index: Index<'_>) -> Result<u64> {
        validate_index(&[index])?;
        let idx = self.index_key(&index);
        let v = self
            .run(&lua::INDEX_DROP, &[&idx], &[flag(self.local)])
            .await?;
        let a = as_array(v, "an index delete")?;
        if self.local {
            return match a.first() {
                Some(n) => Ok(u64::try_from(as_int(n, "an index delete")?).unwrap_or(0)),
                None => Err(decode("an index delete")),
            };
        }
        let members = a
            .into_iter()
            .map(|m| as_string(m, "an index delete"))
            .collect::<Result<Vec<_>>>()?;
        if matches!(index, Index::Family(_)) {
            self.drop_family_members(&idx, members).await
        } else {
            self.drop_members(&idx, members).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_decode_strictly() {
        assert_eq!(
            as_pairs(
                Value::Array(vec![
                    Value::BulkString(b"v".to_vec()),
                    Value::BulkString(b"x".to_vec())
                ]),
                "t"
            )
            .ok(),
            Some(vec![(b"v".to_vec(), b"x".to_vec())])
        );
        assert!(matches!(
            as_pairs(Value::Array(vec![Value::BulkString(b"v".to_vec())]), "t"),
            Err(StoreError::Decode(_))
        ));
        assert!(matches!(
            as_int(&Value::Okay, "t"),
            Err(StoreError::Decode(_))
        ));
        assert!(matches!(
            as_bytes(Value::Int(1), "t"),
            Err(StoreError::Decode(_))
        ));
        let (existed, list, members) = family_drop_reply(
            Value::Array(vec![
                Value::Int(1),
                Value::BulkString(b"a\nb".to_vec()),
                Value::BulkString(b"m1".to_vec()),
            ]),
            1,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (existed, list.as_str(), members),
            (1, "a\nb", vec!["m1".to_owned()])
        );
        assert!(family_drop_reply(Value::Array(vec![Value::Int(1)]), 1).is_err());
    }

    #[test]
    fn config_debug_hides_credentials() {
        let c = RedisConfig::new("redis://user:hunter2@localhost:6379/1");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("localhost"),
            "{shown}"
        );
    }
}
