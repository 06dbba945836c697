//! HTTP to the server: an admin token with `client_credentials` (HTTP Basic, scope
//! `signet.admin`) at the token endpoint, then the admin API with `Authorization: Bearer`.
//! Every failure becomes one [`Failure`] line with its exit code.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use super::{ConnectionArgs, Exit, Failure, Kind, SECRET_ENV};

/// Where the server is and who the CLI is: the resolved flags and environment.
pub struct Connection {
    /// The admin listener's base URL (without `/admin/v1`).
    pub admin_base: Url,
    pub token_url: Url,
    pub client_id: String,
    secret: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("admin_base", &self.admin_base.as_str())
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("secret", &"..")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Parses an `http`/`https` URL given by `what` (a flag and its variable, for messages).
fn parse_http_url(what: &str, value: &str) -> Result<Url, Failure> {
    let bad = |reason: String| {
        Failure::usage(format!(
            "invalid {what} {value:?}: {reason} (expected e.g. http://127.0.0.1:8081)"
        ))
    };
    let url = Url::parse(value.trim()).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "the scheme must be http or https, not {}",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(bad("no host".to_owned()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("no query or fragment allowed".to_owned()));
    }
    Ok(url)
}

/// The admin listener's base: trailing slashes and a trailing `/admin/v1` are dropped, so
/// both `http://host:8081` and `http://host:8081/admin/v1/` work.
pub fn admin_base(value: &str) -> Result<Url, Failure> {
    let mut url = parse_http_url("admin URL (--url / SIGNET_ADMIN_URL)", value)?;
    let mut path = url.path().trim_end_matches('/').to_owned();
    if let Some(p) = path.strip_suffix("/admin/v1") {
        path = p.trim_end_matches('/').to_owned();
    }
    url.set_path(&path);
    Ok(url)
}

/// The token endpoint: `--token-url`, else `<issuer>/oauth2/token`.
pub fn token_url(token_url: Option<&str>, issuer: &str) -> Result<Url, Failure> {
    if let Some(t) = token_url {
        return parse_http_url("token URL (--token-url / SIGNET_ADMIN_TOKEN_URL)", t);
    }
    let mut url = parse_http_url("issuer (--issuer / SIGNET_ISSUER)", issuer)?;
    let path = format!("{}/oauth2/token", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

/// The secret: `--client-secret-file` (trailing newline dropped), else the environment.
pub fn secret(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Failure> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::usage(format!(
                "cannot read the secret file {}: {e}",
                path.display()
            ))
        })?;
        let s = text.trim_end_matches(['\r', '\n']).to_owned();
        if s.is_empty() {
            return Err(Failure::usage(format!(
                "the secret file {} is empty",
                path.display()
            )));
        }
        return Ok(s);
    }
    env(SECRET_ENV).filter(|s| !s.is_empty()).ok_or_else(|| {
        Failure::usage(format!(
            "no admin secret: set {SECRET_ENV} or pass --client-secret-file PATH"
        ))
    })
}

impl Connection {
    /// Resolves flags and environment (`env` reads a variable) into a connection.
    pub fn resolve(
        args: &ConnectionArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Connection, Failure> {
        Ok(Connection {
            admin_base: admin_base(&args.url)?,
            token_url: token_url(args.token_url.as_deref(), &args.issuer)?,
            client_id: args.client_id.clone(),
            secret: secret(args.client_secret_file.as_deref(), env)?,
            timeout: super::timeout(args.timeout),
        })
    }
}

/// The deepest cause of an error, which says what happened ("Connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn unreachable(
    what: &str,
    hint: &str,
    url: &Url,
    e: &reqwest::Error,
    timeout: Duration,
) -> Failure {
    if e.is_timeout() {
        Failure::new(
            Exit::Connect,
            format!(
                "no answer from the {what} at {url} within {}s; {hint}",
                timeout.as_secs()
            ),
        )
    } else {
        Failure::new(
            Exit::Connect,
            format!(
                "cannot connect to the {what} at {url}: {}; {hint}",
                root_cause(e)
            ),
        )
    }
}

const ADMIN_HINT: &str = "check --url or SIGNET_ADMIN_URL";
const TOKEN_HINT: &str = "check --issuer / SIGNET_ISSUER or --token-url";

/// RFC 6749 section 2.3.1: the id and secret are form-urlencoded before Basic encoding.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `error` and `error_description` of a JSON error body (RFC 6749 and the admin API).
fn error_parts(body: &Value) -> (Option<&str>, Option<&str>) {
    (
        body.get("error").and_then(Value::as_str),
        body.get("error_description").and_then(Value::as_str),
    )
}

/// What a refusal says, on one line: every field error of a 400, else the description.
pub fn refusal_text(status: StatusCode, body: &Value) -> String {
    if let Some(errors) = body.get("errors").and_then(Value::as_array) {
        let parts: Vec<String> = errors
            .iter()
            .filter_map(|e| {
                Some(format!(
                    "{}: {}",
                    e.get("field")?.as_str()?,
                    e.get("rule")?.as_str()?
                ))
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    match error_parts(body) {
        (_, Some(d)) => d.to_owned(),
        (Some(c), None) => c.to_owned(),
        (None, None) => format!("HTTP {status}"),
    }
}

/// An authenticated admin API session.
pub struct AdminApi {
    http: reqwest::Client,
    base: Url,
    token: String,
    timeout: Duration,
}

impl AdminApi {
    /// Builds the HTTP client and gets an admin token.
    pub async fn connect(conn: &Connection) -> Result<AdminApi, Failure> {
        let http = reqwest::Client::builder()
            .timeout(conn.timeout)
            .connect_timeout(conn.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("signet-admin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Failure::new(
                    Exit::Refused,
                    format!("cannot set up HTTP: {}", root_cause(&e)),
                )
            })?;
        let token = fetch_token(&http, conn).await?;
        Ok(AdminApi {
            http,
            base: conn.admin_base.clone(),
            token,
            timeout: conn.timeout,
        })
    }

    /// `<base>/admin/v1/<segments>`, each percent-encoded as one path segment.
    pub fn admin_url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut s) = url.path_segments_mut() {
            s.pop_if_empty().extend(["admin", "v1"]).extend(segments);
        }
        url
    }

    /// `<base>/admin/v1/<kind path>[/<id>]`, the id percent-encoded as one path segment.
    pub fn url(&self, kind: Kind, id: Option<&str>) -> Url {
        object_url(&self.base, kind, id)
    }

    pub(super) async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String), Failure> {
        let mut req = self
            .http
            .request(method, url.clone())
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| unreachable("admin API", ADMIN_HINT, url, &e, self.timeout))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| unreachable("admin API", ADMIN_HINT, url, &e, self.timeout))?;
        Ok((status, text))
    }

    /// The failure for an answer that is not the expected one.
    pub(super) fn refused(
        &self,
        status: StatusCode,
        text: &str,
        action: &str,
        url: &Url,
    ) -> Failure {
        let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        if body.is_null() && !status.is_server_error() {
            return not_signet(url, status);
        }
        let detail = refusal_text(status, &body);
        match status {
            StatusCode::UNAUTHORIZED => Failure::new(
                Exit::Auth,
                format!(
                    "authentication failed: the admin API at {} refused the access token ({detail}); do --url and --issuer name the same server?",
                    self.base
                ),
            ),
            StatusCode::FORBIDDEN => Failure::new(
                Exit::Auth,
                format!("access denied: {detail} (the admin client needs scope signet.admin)"),
            ),
            s if s.is_server_error() => Failure::new(
                Exit::Refused,
                format!("cannot {action}: the server failed (HTTP {}): {detail}", s.as_u16()),
            ),
            _ => Failure::new(Exit::Refused, format!("cannot {action}: {detail}")),
        }
    }

    /// Tells a missing object (exit 5) from a wrong URL (exit 4): the collection must list.
    async fn missing(&self, kind: Kind, id: &str, hint: &str) -> Failure {
        match self.list(kind).await {
            Ok(_) => Failure::new(
                Exit::NotFound,
                format!("{}/{id} not found{hint}", kind.cli_name()),
            ),
            Err(f) => f,
        }
    }

    /// Every object of `kind`: the raw answer and its items.
    pub async fn list(&self, kind: Kind) -> Result<(String, Vec<Value>), Failure> {
        let url = self.url(kind, None);
        let (status, text) = self.call(Method::GET, &url, None).await?;
        if status != StatusCode::OK {
            if status == StatusCode::NOT_FOUND {
                return Err(not_signet(&url, status));
            }
            return Err(self.refused(status, &text, &format!("list {}", kind.cli_name()), &url));
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(items)) => Ok((text, items)),
            _ => Err(not_signet(&url, status)),
        }
    }

    /// One object: the raw answer and its value.
    pub async fn get(&self, kind: Kind, id: &str) -> Result<(String, Value), Failure> {
        let url = self.url(kind, Some(id));
        let (status, text) = self.call(Method::GET, &url, None).await?;
        match status {
            StatusCode::OK => match serde_json::from_str::<Value>(&text) {
                Ok(v @ Value::Object(_)) => Ok((text, v)),
                _ => Err(not_signet(&url, status)),
            },
            StatusCode::NOT_FOUND => Err(self.missing(kind, id, "").await),
            s => Err(self.refused(s, &text, &format!("get {}/{id}", kind.cli_name()), &url)),
        }
    }

    /// `POST` (201); returns the server's view of the new object.
    pub async fn create(&self, kind: Kind, id: &str, body: &Value) -> Result<String, Failure> {
        let url = self.url(kind, None);
        let (status, text) = self.call(Method::POST, &url, Some(body)).await?;
        match status {
            StatusCode::CREATED | StatusCode::OK => Ok(text),
            StatusCode::NOT_FOUND => Err(not_signet(&url, status)),
            StatusCode::CONFLICT => {
                let mut f = self.refused(
                    StatusCode::CONFLICT,
                    &text,
                    &format!("create {}/{id}", kind.cli_name()),
                    &url,
                );
                f.message.push_str(" (use update or apply)");
                Err(f)
            }
            s => Err(self.refused(s, &text, &format!("create {}/{id}", kind.cli_name()), &url)),
        }
    }

    /// `PUT` (200); returns the server's view of the replaced object.
    pub async fn replace(&self, kind: Kind, id: &str, body: &Value) -> Result<String, Failure> {
        let url = self.url(kind, None);
        let (status, text) = self.call(Method::PUT, &url, Some(body)).await?;
        match status {
            StatusCode::OK => Ok(text),
            StatusCode::NOT_FOUND => Err(self.missing(kind, id, " (use create or apply)").await),
            s => Err(self.refused(s, &text, &format!("replace {}/{id}", kind.cli_name()), &url)),
        }
    }

    /// `DELETE` (204).
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<(), Failure> {
        let url = self.url(kind, Some(id));
        let (status, text) = self.call(Method::DELETE, &url, None).await?;
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            StatusCode::NOT_FOUND => Err(self.missing(kind, id, "").await),
            s => Err(self.refused(s, &text, &format!("delete {}/{id}", kind.cli_name()), &url)),
        }
    }
}

/// The signing keys (`/admin/v1/Key`): not a configuration kind (nothing to create or
/// replace from a file), so they have their own calls.
impl AdminApi {
    /// `<base>/admin/v1/Key[/<tail>]`, the tail percent-encoded as one path segment.
    pub fn key_url(&self, tail: Option<&str>) -> Url {
        key_url(&self.base, tail)
    }

    /// Tells a missing key (exit 5) from a wrong URL (exit 4): the collection must list.
    async fn missing_key(&self, kid: &str) -> Failure {
        match self.list_keys().await {
            Ok(_) => Failure::new(Exit::NotFound, format!("key/{kid} not found")),
            Err(f) => f,
        }
    }

    /// Every signing key: the raw answer and its items.
    pub async fn list_keys(&self) -> Result<(String, Vec<Value>), Failure> {
        let url = self.key_url(None);
        let (status, text) = self.call(Method::GET, &url, None).await?;
        if status != StatusCode::OK {
            if status == StatusCode::NOT_FOUND {
                return Err(not_signet(&url, status));
            }
            return Err(self.refused(status, &text, "list keys", &url));
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(items)) => Ok((text, items)),
            _ => Err(not_signet(&url, status)),
        }
    }

    /// One signing key: the raw answer and its value.
    pub async fn get_key(&self, kid: &str) -> Result<(String, Value), Failure> {
        let url = self.key_url(Some(kid));
        let (status, text) = self.call(Method::GET, &url, None).await?;
        match status {
            StatusCode::OK => match serde_json::from_str::<Value>(&text) {
                Ok(v @ Value::Object(_)) => Ok((text, v)),
                _ => Err(not_signet(&url, status)),
            },
            StatusCode::NOT_FOUND => Err(self.missing_key(kid).await),
            s => Err(self.refused(s, &text, &format!("get key/{kid}"), &url)),
        }
    }

    /// `POST /Key/rotate` or `/Key/import` (201): the raw answer and `{kid, alg}`.
    async fn new_key(
        &self,
        op: &str,
        action: &str,
        body: &Value,
    ) -> Result<(String, Value), Failure> {
        let url = self.key_url(Some(op));
        let (status, text) = self.call(Method::POST, &url, Some(body)).await?;
        match status {
            StatusCode::CREATED | StatusCode::OK => match serde_json::from_str::<Value>(&text) {
                Ok(v) if v.get("kid").and_then(Value::as_str).is_some() => Ok((text, v)),
                _ => Err(not_signet(&url, status)),
            },
            StatusCode::NOT_FOUND => Err(not_signet(&url, status)),
            s => Err(self.refused(s, &text, action, &url)),
        }
    }

    /// Rotates the active key of `alg` now.
    pub async fn rotate_key(&self, alg: &str) -> Result<(String, Value), Failure> {
        self.new_key(
            "rotate",
            &format!("rotate the {alg} key"),
            &serde_json::json!({ "alg": alg }),
        )
        .await
    }

    /// Imports a PEM private key as the active key of `alg`. The PEM goes in the body only:
    /// no failure message carries it.
    pub async fn import_key(&self, alg: &str, pem: &str) -> Result<(String, Value), Failure> {
        self.new_key(
            "import",
            &format!("import the {alg} key"),
            &serde_json::json!({ "alg": alg, "pem": pem }),
        )
        .await
    }

    /// `DELETE /Key/<kid>` (204): revokes the key.
    pub async fn revoke_key(&self, kid: &str) -> Result<(), Failure> {
        let url = self.key_url(Some(kid));
        let (status, text) = self.call(Method::DELETE, &url, None).await?;
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            StatusCode::NOT_FOUND => Err(self.missing_key(kid).await),
            s => Err(self.refused(s, &text, &format!("revoke key/{kid}"), &url)),
        }
    }
}

/// The audit trail (`/admin/v1/Events`): read-only, paged by sequence.
impl AdminApi {
    /// One page of `GET /Events` with the given query: `{events, next}`.
    pub async fn events(&self, query: &[(&str, String)]) -> Result<Value, Failure> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| not_signet(&self.base, StatusCode::NOT_FOUND))?
            .pop_if_empty()
            .extend(["admin", "v1", "Events"]);
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (k, v)));
        let (status, text) = self.call(Method::GET, &url, None).await?;
        match status {
            StatusCode::OK => match serde_json::from_str::<Value>(&text) {
                Ok(v) if v.get("events").is_some_and(Value::is_array) => Ok(v),
                _ => Err(not_signet(&url, status)),
            },
            StatusCode::NOT_FOUND => Err(not_signet(&url, status)),
            s => Err(self.refused(s, &text, "read the events", &url)),
        }
    }
}

/// `<base>/admin/v1/Key[/<tail>]`.
pub fn key_url(base: &Url, tail: Option<&str>) -> Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(["admin", "v1", "Key"]);
        if let Some(t) = tail {
            segments.push(t);
        }
    }
    url
}

/// `<base>/admin/v1/<kind path>[/<id>]`.
pub fn object_url(base: &Url, kind: Kind, id: Option<&str>) -> Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(["admin", "v1"]);
        segments.extend(kind.segments());
        if let Some(id) = id {
            segments.push(id);
        }
    }
    url
}

pub(super) fn not_signet(url: &Url, status: StatusCode) -> Failure {
    Failure::new(
        Exit::Connect,
        format!(
            "{url} answered HTTP {}: not a Signet admin API (is this the admin listener?); {ADMIN_HINT}",
            status.as_u16()
        ),
    )
}

async fn fetch_token(http: &reqwest::Client, conn: &Connection) -> Result<String, Failure> {
    let url = &conn.token_url;
    let resp = http
        .post(url.clone())
        .basic_auth(
            form_encode(&conn.client_id),
            Some(form_encode(&conn.secret)),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", signet_core::bootstrap::ADMIN_SCOPE),
        ])
        .send()
        .await
        .map_err(|e| unreachable("token endpoint", TOKEN_HINT, url, &e, conn.timeout))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| unreachable("token endpoint", TOKEN_HINT, url, &e, conn.timeout))?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    token_answer(status, &body, url, &conn.client_id)
}

/// Reads the token endpoint's answer.
pub fn token_answer(
    status: StatusCode,
    body: &Value,
    url: &Url,
    client_id: &str,
) -> Result<String, Failure> {
    let (code, description) = error_parts(body);
    match (status, code) {
        (StatusCode::OK, _) => body
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                Failure::new(
                    Exit::Connect,
                    format!("{url} answered without an access token: is it a Signet token endpoint? {TOKEN_HINT}"),
                )
            }),
        (StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED, Some("invalid_client")) => Err(Failure::new(
            Exit::Auth,
            format!(
                "authentication failed: the token endpoint refused client {client_id:?} ({}); the secret ({SECRET_ENV} or --client-secret-file) is wrong or expired",
                description.unwrap_or("invalid_client")
            ),
        )),
        (StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED, Some(code)) => Err(Failure::new(
            Exit::Auth,
            format!(
                "authentication failed: client {client_id:?} cannot get an admin token ({code}: {})",
                description.unwrap_or("no description")
            ),
        )),
        (s, _) if s.is_server_error() => Err(Failure::new(
            Exit::Refused,
            format!(
                "the token endpoint at {url} failed (HTTP {}): {}",
                s.as_u16(),
                description.unwrap_or("no description")
            ),
        )),
        (s, _) => Err(Failure::new(
            Exit::Connect,
            format!(
                "{url} answered HTTP {}: it is not a Signet token endpoint; {TOKEN_HINT}",
                s.as_u16()
            ),
        )),
    }
}
