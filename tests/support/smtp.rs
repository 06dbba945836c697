//! A real SMTP server for the e-mail tests: `python -m aiosmtpd` on a free loopback port
//! with aiosmtpd's own `Mailbox` handler, which writes every message it accepts into a
//! Maildir (`<dir>/new/`). Tests read the real messages from there: headers, the decoded
//! body, the link in it.
//!
//! The interpreter is `$SMTP_PYTHON` (`scripts/test.sh` pip-installs a pinned aiosmtpd into
//! `target/venv`), else `target/venv/bin/python` of the workspace.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use crate::{eventually, free_port};

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SMTP_PYTHON") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/venv/bin/python")
}

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Message {
    /// The raw message as received.
    pub raw: String,
    /// The `To` header.
    pub to: String,
    pub subject: String,
    /// Every text part, transfer-decoded (quoted-printable, base64 or plain), concatenated.
    pub body: String,
}

impl Message {
    /// The first link in the body that starts with `prefix`.
    pub fn link(&self, prefix: &str) -> Result<String> {
        let start = self
            .body
            .find(prefix)
            .with_context(|| format!("no link {prefix} in {}", self.body))?;
        let end = self.body[start..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
            .map_or(self.body.len(), |e| start + e);
        Ok(self.body[start..end].to_owned())
    }
}

/// A running `aiosmtpd`. Killed when dropped.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    pub async fn start() -> Result<SmtpServer> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("maildir"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn python -m aiosmtpd (set SMTP_PYTHON, or run scripts/test.sh)")?;
        let mut server = SmtpServer { child, port, dir };
        let ready = eventually(Duration::from_secs(15), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        if ready.is_err() || server.child.try_wait().ok().flatten().is_some() {
            bail!("aiosmtpd did not start on port {port}");
        }
        Ok(server)
    }

    /// `--smtp-url` for this server (plain SMTP on loopback).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<Message> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("maildir/new")) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|raw| parse(&String::from_utf8_lossy(&raw)))
            .collect()
    }

    /// The messages to `to` whose subject is `subject`.
    pub fn messages_to(&self, to: &str, subject: &str) -> Vec<Message> {
        self.messages()
            .into_iter()
            .filter(|m| m.to == to && m.subject == subject)
            .collect()
    }

    /// Waits until `count` messages to `to` with `subject` arrived; returns the last.
    pub async fn wait_for(&self, to: &str, subject: &str, count: usize) -> Result<Message> {
        eventually(Duration::from_secs(15), || async {
            let found = self.messages_to(to, subject);
            (found.len() >= count)
                .then(|| found.last().cloned())
                .flatten()
        })
        .await
        .with_context(|| {
            format!(
                "no message {subject:?} to {to}; received: {:?}",
                self.messages()
                    .iter()
                    .map(|m| (&m.to, &m.subject))
                    .collect::<Vec<_>>()
            )
        })
    }
}

fn header(head: &str, name: &str) -> String {
    // Unfold continuation lines first (RFC 5322 section 2.2.3).
    let unfolded = head.replace("\r\n ", " ").replace("\n ", " ");
    unfolded
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
        .unwrap_or_default()
}

fn parse(raw: &str) -> Message {
    let raw_n = raw.replace("\r\n", "\n");
    let (head, rest) = raw_n.split_once("\n\n").unwrap_or((&raw_n, ""));
    let mut body = String::new();
    // Each MIME part: its headers, a blank line, its content.
    for part in rest.split("\n--") {
        let Some((part_head, content)) = part.split_once("\n\n") else {
            continue;
        };
        let lower = part_head.to_ascii_lowercase();
        if !lower.contains("content-type: text/") {
            continue;
        }
        let content = content.split("\n--").next().unwrap_or_default();
        if lower.contains("quoted-printable") {
            body.push_str(&quoted_printable(content));
        } else if lower.contains("base64") {
            use base64::Engine;
            let compact: String = content.split_whitespace().collect();
            if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(compact) {
                body.push_str(&String::from_utf8_lossy(&b));
            }
        } else {
            body.push_str(content);
        }
        body.push('\n');
    }
    Message {
        raw: raw.to_owned(),
        to: header(head, "To"),
        subject: header(head, "Subject"),
        body,
    }
}

/// RFC 2045 section 6.7 decoding (soft line breaks and `=XX`).
fn quoted_printable(s: &str) -> String {
    let s = s.replace("=\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() + 1 {
            if let Some(v) = std::str::from_utf8(b.get(i + 1..i + 3).unwrap_or_default())
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
