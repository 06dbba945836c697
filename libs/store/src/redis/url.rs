//! Parsing of the Redis URL forms [`super::RedisStore`] accepts (see the module docs there).
//! Errors and [`Target::display`] never contain the user name or password.

use crate::{Result, StoreError};

/// Where to connect, parsed from a URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One Redis: the URL is handed to the `redis` crate as given.
    Single { url: String, display: String },
    /// Redis behind Sentinel.
    Sentinel {
        /// `redis://host:port` (or `rediss://`) of each sentinel, without credentials.
        sentinels: Vec<String>,
        master: String,
        db: i64,
        auth: Auth,
        tls: bool,
        display: String,
    },
    /// A Redis Cluster.
    Cluster {
        /// `redis://host:port` (or `rediss://`) of each seed node, without credentials.
        nodes: Vec<String>,
        auth: Auth,
        tls: bool,
        display: String,
    },
}

#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Auth {
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Target {
    /// The URL without credentials, for messages.
    pub fn display(&self) -> &str {
        match self {
            Target::Single { display, .. }
            | Target::Sentinel { display, .. }
            | Target::Cluster { display, .. } => display,
        }
    }

    pub fn is_tls(&self) -> bool {
        match self {
            Target::Single { url, .. } => url.starts_with("rediss://"),
            Target::Sentinel { tls, .. } | Target::Cluster { tls, .. } => *tls,
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.display())
    }
}

fn invalid(reason: impl std::fmt::Display) -> StoreError {
    StoreError::Config(format!("invalid Redis URL: {reason}"))
}

const FORMS: &str = "expected redis://[user:password@]host[:port][/db], rediss://..., \
     redis+sentinel://[user:password@]host:port[,host:port...]/master-name[/db], \
     redis+cluster://[user:password@]host:port[,host:port...] (or rediss+sentinel://, \
     rediss+cluster://), redis+unix:///path or unix:///path";

/// Parses one of the accepted URL forms.
pub(crate) fn parse(url: &str) -> Result<Target> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(invalid(format_args!("no scheme; {FORMS}")));
    };
    let scheme_lc = scheme.to_ascii_lowercase();
    match scheme_lc.as_str() {
        "redis+unix" | "unix" => {
            let path = rest.split(['?', '#']).next().unwrap_or_default();
            if path.is_empty() {
                return Err(invalid("no socket path"));
            }
            Ok(Target::Single {
                url: url.to_owned(),
                display: format!("{scheme_lc}://{path}"),
            })
        }
        "redis" | "rediss" => {
            let parts = split_authority(rest)?;
            if parts.hosts.len() != 1 {
                return Err(invalid(
                    "several hosts in a redis:// URL: use redis+cluster:// or redis+sentinel://",
                ));
            }
            let host = &parts.hosts[0];
            let path = parts.path.trim_matches('/');
            if !path.is_empty() && path.parse::<i64>().is_err() {
                return Err(invalid("the path of a redis:// URL is a database number"));
            }
            let display = format!("{scheme_lc}://{host}{}", parts.path);
            Ok(Target::Single {
                url: url.to_owned(),
                display,
            })
        }
        "redis+sentinel" | "rediss+sentinel" => {
            let tls = scheme_lc.starts_with("rediss");
            let parts = split_authority(rest)?;
            let mut segments = parts.path.trim_matches('/').split('/');
            let master = segments.next().unwrap_or_default();
            if master.is_empty() {
                return Err(invalid(
                    "a redis+sentinel:// URL needs the master name as its path: redis+sentinel://host:26379/mymaster",
                ));
            }
            let db = match segments.next() {
                None | Some("") => 0,
                Some(db) => db
                    .parse::<i64>()
                    .map_err(|_| invalid("the database after the master name must be a number"))?,
            };
            if segments.next().is_some() {
                return Err(invalid("too many path segments after the master name"));
            }
            let node_scheme = if tls { "rediss" } else { "redis" };
            let display = format!("{scheme_lc}://{}{}", parts.hosts.join(","), parts.path);
            Ok(Target::Sentinel {
                sentinels: parts
                    .hosts
                    .iter()
                    .map(|h| format!("{node_scheme}://{}", with_port(h, 26379)))
                    .collect(),
                master: percent_decode(master)?,
                db,
                auth: parts.auth,
                tls,
                display,
            })
        }
        "redis+cluster" | "rediss+cluster" => {
            let tls = scheme_lc.starts_with("rediss");
            let parts = split_authority(rest)?;
            if !parts.path.trim_matches('/').is_empty() {
                return Err(invalid(
                    "a Redis Cluster has only database 0: no path after the nodes",
                ));
            }
            let node_scheme = if tls { "rediss" } else { "redis" };
            let display = format!("{scheme_lc}://{}", parts.hosts.join(","));
            Ok(Target::Cluster {
                nodes: parts
                    .hosts
                    .iter()
                    .map(|h| format!("{node_scheme}://{}", with_port(h, 6379)))
                    .collect(),
                auth: parts.auth,
                tls,
                display,
            })
        }
        _ => Err(invalid(format_args!(
            "unknown scheme {:?}; {FORMS}",
            scheme.chars().take(32).collect::<String>()
        ))),
    }
}

struct Authority {
    auth: Auth,
    hosts: Vec<String>,
    /// `/...`, or empty.
    path: String,
}

/// Splits `[user[:password]@]host[:port][,host[:port]...][/path][?query]`.
fn split_authority(rest: &str) -> Result<Authority> {
    let rest = rest.split('#').next().unwrap_or_default();
    let (rest, _query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let auth = match userinfo {
        None => Auth::default(),
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            Auth {
                user: (!user.is_empty())
                    .then(|| percent_decode(user))
                    .transpose()?,
                password: password.map(percent_decode).transpose()?,
            }
        }
    };
    let hosts: Vec<String> = hosts.split(',').map(str::to_owned).collect();
    for host in &hosts {
        check_host(host)?;
    }
    Ok(Authority {
        auth,
        hosts,
        path: path.to_owned(),
    })
}

fn check_host(host: &str) -> Result<()> {
    if host.is_empty() {
        return Err(invalid("empty host"));
    }
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, tail)) if !addr.is_empty() => (addr, tail.strip_prefix(':')),
            _ => return Err(invalid("bad IPv6 host")),
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(invalid("bad host name"));
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(invalid("bad port"));
        }
    }
    Ok(())
}

fn with_port(host: &str, default: u16) -> String {
    let has_port = if host.starts_with('[') {
        host.contains("]:")
    } else {
        host.contains(':')
    };
    if has_port {
        host.to_owned()
    } else {
        format!("{host}:{default}")
    }
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid("bad percent-encoding in the user info or path"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("percent-encoded text is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_error(url: &str) -> String {
        match parse(url) {
            Err(StoreError::Config(m)) => m,
            other => panic!("{url}: expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn single() {
        for (url, display) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://u:p%40ss@host/3", "redis://host/3"),
            (
                "rediss://:secret@redis.example:6380/0?protocol=resp3",
                "rediss://redis.example:6380/0",
            ),
            ("redis://[::1]:6379", "redis://[::1]:6379"),
            ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ] {
            match parse(url) {
                Ok(Target::Single { url: u, display: d }) => {
                    assert_eq!(u, url);
                    assert_eq!(d, display);
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert!(parse("rediss://h").map(|t| t.is_tls()).unwrap_or(false));
    }

    #[test]
    fn sentinel() {
        let t = parse("redis+sentinel://user:pa%3Ass@s1:26379,s2,[::1]:26380/mymaster/2").unwrap();
        assert_eq!(
            t,
            Target::Sentinel {
                sentinels: vec![
                    "redis://s1:26379".into(),
                    "redis://s2:26379".into(),
                    "redis://[::1]:26380".into()
                ],
                master: "mymaster".into(),
                db: 2,
                auth: Auth {
                    user: Some("user".into()),
                    password: Some("pa:ss".into())
                },
                tls: false,
                display: "redis+sentinel://s1:26379,s2,[::1]:26380/mymaster/2".into(),
            }
        );
        assert!(config_error("redis+sentinel://s1:26379").contains("master name"));
        assert!(config_error("redis+sentinel://s1/m/x").contains("number"));
    }

    #[test]
    fn cluster() {
        let t = parse("rediss+cluster://:pw@n1:7000,n2:7001").unwrap();
        assert_eq!(
            t,
            Target::Cluster {
                nodes: vec!["rediss://n1:7000".into(), "rediss://n2:7001".into()],
                auth: Auth {
                    user: None,
                    password: Some("pw".into())
                },
                tls: true,
                display: "rediss+cluster://n1:7000,n2:7001".into(),
            }
        );
        assert!(config_error("redis+cluster://n1:7000/1").contains("database 0"));
    }

    #[test]
    fn errors_are_clear_and_never_show_credentials() {
        for (url, needle) in [
            ("localhost:6379", "no scheme"),
            ("http://user:hunter2@host", "unknown scheme"),
            ("redis://user:hunter2@", "empty host"),
            ("redis://user:hunter2@h:99999", "bad port"),
            ("redis://user:hunter2@h:0", "bad port"),
            ("redis://user:hunter2@a,b", "redis+cluster://"),
            ("redis://user:hunter2@h/x", "database number"),
            ("redis://user:hunter2@h h", "bad host"),
            ("redis+sentinel://user:hunter2%zz@h/m", "percent"),
        ] {
            let m = config_error(url);
            assert!(m.contains(needle), "{url}: {m}");
            assert!(!m.contains("hunter2"), "{url}: {m}");
        }
        let t = parse("redis+cluster://user:hunter2@n1:7000").unwrap();
        assert!(!format!("{t:?} {}", t.display()).contains("hunter2"));
    }
}
