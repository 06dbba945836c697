//! `signet admin user`: the people who sign in (`/admin/v1/User`) and their sessions
//! (`/admin/v1/User/{sub}/Session`).
//!
//! ```text
//! signet admin user list --username NAME | get ID | create -f FILE | update -f FILE | delete ID
//! signet admin user apply -f FILE [--dry-run] [--replace-passwords]
//! signet admin user sessions ID | logout ID [--sid SID]
//! ```
//!
//! `ID` is a user's `sub` or, failing that, a username (the server generates `sub`s, so
//! files name users by `username`). The admin API looks users up by username and does not
//! enumerate them: `list` needs `--username`. A file holds users as bare bodies
//! (`{username, password, claims, enabled}`) or as `{kind: User, spec: {...}}` documents;
//! `update -f` and `apply` find each user by its `username`, or by a `sub` member when the
//! username changes. Passwords are write-only: `apply` sets one when it creates a user, and
//! on an existing user only with `--replace-passwords`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};
use signet_core::user::{NewUser, UserReplacement};
use signet_core::validation::from_json;

use super::client::{not_signet, AdminApi, Connection};
use super::output::{cell, render, utc};
use super::spec::{self, Problem, Source};
use super::{compact, emit, ConnectionArgs, Exit, Failure, OutputFormat};

/// `signet admin user`.
#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub verb: UserVerb,
}

#[derive(Debug, Subcommand)]
pub enum UserVerb {
    /// Look users up by username (the admin API does not enumerate users)
    #[command(visible_alias = "ls")]
    List {
        /// The username (case-insensitive)
        #[arg(long, value_name = "NAME")]
        username: String,
    },
    /// Show one user (never its password)
    Get {
        /// The user's sub or username
        #[arg(value_name = "ID", allow_hyphen_values = true)]
        id: String,
    },
    /// Create a user from a file (YAML or JSON; `-` reads standard input)
    Create {
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Replace a user with the one in a file, found by `sub` or `username` (without
    /// `password` the stored one stays)
    #[command(visible_alias = "replace")]
    Update {
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete a user (their sessions end, their tokens stop)
    #[command(visible_alias = "rm")]
    Delete {
        /// The user's sub or username
        #[arg(value_name = "ID", allow_hyphen_values = true)]
        id: String,
    },
    /// Remove a user's second factors (TOTP authenticator and recovery codes), for a user
    /// who lost them: they sign in with the password alone until they enroll again
    ResetFactors {
        /// The user's sub or username
        #[arg(value_name = "ID", allow_hyphen_values = true)]
        id: String,
    },
    /// Create the users of a file that are missing and replace those that differ
    Apply {
        /// The file of users (YAML or JSON; `-` reads standard input)
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
        /// Show what would change and write nothing
        #[arg(long)]
        dry_run: bool,
        /// Also set the password of existing users that have one in the file
        #[arg(long)]
        replace_passwords: bool,
    },
    /// List a user's live sessions: where, when, which apps
    Sessions {
        /// The user's sub or username
        #[arg(value_name = "ID", allow_hyphen_values = true)]
        id: String,
    },
    /// End a user's sessions (all of them, or one with --sid): signed out everywhere, the
    /// access tokens issued in them refused
    Logout {
        /// The user's sub or username
        #[arg(value_name = "ID", allow_hyphen_values = true)]
        id: String,
        /// Only this session
        #[arg(long, value_name = "SID", allow_hyphen_values = true)]
        sid: Option<String>,
    },
}

/// One user of a file, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct UserDoc {
    /// 1-based position in the file.
    pub index: usize,
    /// The `sub` the file names, if any (a rename).
    pub sub: Option<String>,
    pub username: String,
    /// The body to send (without `sub`).
    pub body: Map<String, Value>,
}

impl UserDoc {
    fn has_password(&self) -> bool {
        self.body.contains_key("password")
    }
}

fn problem(index: usize, field: Option<String>, rule: impl Into<String>) -> Problem {
    Problem {
        object: Some(spec::ObjectRef {
            index,
            kind: None,
            id: None,
        }),
        field,
        rule: rule.into(),
    }
}

/// Checks one user of a file (a bare body or `{kind: User, spec}`), as the server would:
/// with a password when `creating`.
pub fn check_user(item: &Value, index: usize, creating: bool) -> Result<UserDoc, Vec<Problem>> {
    let body = match item {
        Value::Object(o) if o.contains_key("kind") || o.contains_key("spec") => {
            match (o.get("kind"), o.get("spec")) {
                (Some(Value::String(k)), Some(Value::Object(spec))) if k == "User" => spec.clone(),
                (Some(Value::String(k)), _) if k != "User" => {
                    return Err(vec![problem(
                        index,
                        Some("kind".into()),
                        format!("must be User here, not {k:?}"),
                    )])
                }
                _ => {
                    return Err(vec![problem(
                        index,
                        None,
                        "a document is {kind: User, spec: {...}}",
                    )])
                }
            }
        }
        Value::Object(o) => o.clone(),
        _ => return Err(vec![problem(index, None, "a user is an object")]),
    };
    let mut body = body;
    let sub = match body.remove("sub") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(_) => {
            return Err(vec![problem(
                index,
                Some("sub".into()),
                "must be a non-empty string",
            )])
        }
    };
    let text = Value::Object(body.clone()).to_string();
    let checked = if creating {
        from_json::<NewUser>(text.as_bytes()).and_then(NewUser::check)
    } else {
        from_json::<UserReplacement>(text.as_bytes()).and_then(UserReplacement::check)
    };
    let user = checked.map_err(|e| {
        e.errors
            .iter()
            .map(|f| problem(index, Some(f.field.clone()), f.rule.clone()))
            .collect::<Vec<_>>()
    })?;
    Ok(UserDoc {
        index,
        sub,
        username: user.username,
        body,
    })
}

/// Reads and checks a file of users; any problem fails it whole. `single`: exactly one.
pub fn load_users(source: &Source, creating: bool, single: bool) -> Result<Vec<UserDoc>, Failure> {
    let text = source.read()?;
    let values = spec::parse_values(&text, spec::detect(source.format_hint(), &text))
        .map_err(|p| Failure::invalid(source, &[p]))?;
    let items = spec::flatten(values);
    if items.is_empty() {
        return Err(Failure::invalid(source, &[Problem::file("holds no user")]));
    }
    if single && items.len() > 1 {
        return Err(Failure::invalid(
            source,
            &[Problem::file(format!(
                "holds {} users; this verb takes one (use apply)",
                items.len()
            ))],
        ));
    }
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match check_user(item, i + 1, creating) {
            Ok(d) => docs.push(d),
            Err(p) => problems.extend(p),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for d in &docs {
        if !seen.insert(d.username.to_lowercase()) {
            problems.push(problem(
                d.index,
                Some("username".into()),
                format!("{:?} is in the file twice", d.username),
            ));
        }
    }
    if problems.is_empty() {
        Ok(docs)
    } else {
        Err(Failure::invalid(source, &problems))
    }
}

/// The user calls of the admin API.
impl AdminApi {
    async fn user_json(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<(&str, &str)>,
        body: Option<&Value>,
        action: &str,
    ) -> Result<(StatusCode, String, Value), Failure> {
        let mut url = self.admin_url(segments);
        if let Some((k, v)) = query {
            url.query_pairs_mut().append_pair(k, v);
        }
        let (status, text) = self.call(method, &url, body).await?;
        if status.is_success() {
            let v = if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).map_err(|_| not_signet(&url, status))?
            };
            return Ok((status, text, v));
        }
        if status == StatusCode::NOT_FOUND {
            // A JSON error body is the server's "no such user"; anything else a wrong URL.
            return match serde_json::from_str::<Value>(&text) {
                Ok(v) if v.get("error").is_some() => Ok((status, text, v)),
                _ => Err(not_signet(&url, status)),
            };
        }
        Err(self.refused(status, &text, action, &url))
    }

    /// Users named `username` (at most one): the raw answer and the items.
    pub async fn users_named(&self, username: &str) -> Result<(String, Vec<Value>), Failure> {
        let (status, text, v) = self
            .user_json(
                Method::GET,
                &["User"],
                Some(("username", username)),
                None,
                "look the user up",
            )
            .await?;
        match (status, v) {
            (StatusCode::OK, Value::Array(items)) => Ok((text, items)),
            _ => Err(Failure::new(
                Exit::Connect,
                "GET /admin/v1/User did not answer a list: not a Signet admin API",
            )),
        }
    }

    /// The user whose `sub` or, failing that, username is `id`: the raw JSON and the user.
    pub async fn resolve_user(&self, id: &str) -> Result<(String, Value), Failure> {
        let (status, text, v) = self
            .user_json(Method::GET, &["User", id], None, None, "get the user")
            .await?;
        if status == StatusCode::OK {
            return Ok((text, v));
        }
        let (_, mut found) = self.users_named(id).await?;
        match found.pop() {
            Some(u) => {
                let text = serde_json::to_string(&u).unwrap_or_default();
                Ok((text, u))
            }
            None => Err(Failure::new(
                Exit::NotFound,
                format!("user/{id} not found (no user has this sub or username)"),
            )),
        }
    }

    async fn write_user(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
        action: &str,
    ) -> Result<(String, Value), Failure> {
        let (status, text, v) = self.user_json(method, segments, None, body, action).await?;
        if status == StatusCode::NOT_FOUND {
            return Err(Failure::new(
                Exit::NotFound,
                format!(
                    "cannot {action}: {}",
                    super::client::refusal_text(status, &v)
                ),
            ));
        }
        Ok((text, v))
    }
}

fn sub_of(user: &Value) -> Result<String, Failure> {
    user.get("sub")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Failure::new(Exit::Connect, "a user without sub: not a Signet admin API"))
}

/// `SUB  USERNAME  ENABLED  CLAIMS`.
pub fn user_table(items: &[Value]) -> String {
    let mut rows: Vec<Vec<String>> = items
        .iter()
        .map(|u| {
            let claims = u
                .get("claims")
                .and_then(Value::as_object)
                .map(|c| c.keys().cloned().collect::<Vec<_>>().join(","))
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| cell(None));
            vec![
                cell(u.get("username")),
                cell(u.get("sub")),
                cell(u.get("enabled")),
                claims,
            ]
        })
        .collect();
    rows.sort();
    render(&["USERNAME", "SUB", "ENABLED", "CLAIMS"], &rows)
}

/// `SID  SIGNED IN  EXPIRES  ADDRESS  CLIENTS  USER AGENT`, newest first (as served).
pub fn session_table(items: &[Value]) -> String {
    let time = |v: Option<&Value>| v.and_then(Value::as_i64).map_or_else(|| cell(None), utc);
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|s| {
            let clients: Vec<Value> = s
                .get("clients")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| c.get("clientId").cloned())
                        .collect()
                })
                .unwrap_or_default();
            let ua: String = s
                .get("userAgent")
                .and_then(Value::as_str)
                .map(|ua| ua.chars().take(60).collect())
                .unwrap_or_else(|| cell(None));
            vec![
                cell(s.get("sid")),
                time(s.get("authTime")),
                time(s.get("expiresAt")),
                cell(s.get("address")),
                cell(Some(&Value::Array(clients))),
                ua,
            ]
        })
        .collect();
    render(
        &[
            "SID",
            "SIGNED IN",
            "EXPIRES",
            "ADDRESS",
            "CLIENTS",
            "USER AGENT",
        ],
        &rows,
    )
}

/// What `apply` does to one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserStep {
    Create,
    Replace(Vec<String>),
    Unchanged,
}

/// What differs between a user of the file and the server's (the fields it shows; a
/// password counts only with `replace_passwords`).
pub fn user_changes(doc: &UserDoc, current: &Value, replace_passwords: bool) -> Vec<String> {
    let mut changes = Vec::new();
    if current.get("username").and_then(Value::as_str) != Some(doc.username.as_str()) {
        changes.push("username".to_owned());
    }
    let claims = doc
        .body
        .get("claims")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    if current.get("claims") != Some(&claims) {
        changes.push("claims".to_owned());
    }
    let enabled = doc
        .body
        .get("enabled")
        .cloned()
        .unwrap_or(Value::Bool(true));
    if current.get("enabled") != Some(&enabled) {
        changes.push("enabled".to_owned());
    }
    let must_change = doc
        .body
        .get("mustChangePassword")
        .cloned()
        .unwrap_or(Value::Bool(false));
    // A server from before the field shows none: false.
    let shown = current
        .get("mustChangePassword")
        .cloned()
        .unwrap_or(Value::Bool(false));
    if shown != must_change {
        changes.push("mustChangePassword".to_owned());
    }
    if replace_passwords && doc.has_password() {
        changes.push("password".to_owned());
    }
    changes
}

/// The server's user a file's user stands for: by `sub` when it names one, else by username.
async fn current_of(api: &AdminApi, doc: &UserDoc) -> Result<Option<Value>, Failure> {
    match &doc.sub {
        Some(sub) => {
            let (status, _, v) = api
                .user_json(Method::GET, &["User", sub], None, None, "get the user")
                .await?;
            Ok((status == StatusCode::OK).then_some(v))
        }
        None => Ok(api.users_named(&doc.username).await?.1.pop()),
    }
}

/// Runs one `user` verb.
pub async fn run(conn_args: &ConnectionArgs, verb: UserVerb) -> Result<(), Failure> {
    let format = conn_args.output;
    // Files are read and checked before connecting.
    let docs = match &verb {
        UserVerb::Create { file } => Some(load_users(&Source::from_arg(file), true, true)?),
        UserVerb::Update { file } => Some(load_users(&Source::from_arg(file), false, true)?),
        UserVerb::Apply { file, .. } => Some(load_users(&Source::from_arg(file), false, false)?),
        _ => None,
    };
    let conn = Connection::resolve(conn_args, &|k| std::env::var(k).ok())?;
    let api = AdminApi::connect(&conn).await?;
    let show = |raw: &str, items: &[Value]| match format {
        OutputFormat::Json => emit(raw),
        OutputFormat::Table => emit(&user_table(items)),
    };
    match verb {
        UserVerb::List { username } => {
            let (raw, items) = api.users_named(&username).await?;
            show(&raw, &items);
        }
        UserVerb::Get { id } => {
            let (raw, user) = api.resolve_user(&id).await?;
            show(&raw, std::slice::from_ref(&user));
        }
        UserVerb::Create { .. } => {
            let doc = docs
                .and_then(|mut d| d.pop())
                .ok_or_else(|| Failure::usage("no user"))?;
            let (raw, user) = api
                .write_user(
                    Method::POST,
                    &["User"],
                    Some(&Value::Object(doc.body)),
                    &format!("create user/{}", doc.username),
                )
                .await?;
            match format {
                OutputFormat::Json => emit(&raw),
                OutputFormat::Table => emit(&format!(
                    "user/{} created (sub {})",
                    doc.username,
                    sub_of(&user)?
                )),
            }
        }
        UserVerb::Update { .. } => {
            let doc = docs
                .and_then(|mut d| d.pop())
                .ok_or_else(|| Failure::usage("no user"))?;
            let current = current_of(&api, &doc).await?.ok_or_else(|| {
                Failure::new(
                    Exit::NotFound,
                    format!("user/{} not found (use create or apply)", doc.username),
                )
            })?;
            let sub = sub_of(&current)?;
            let (raw, _) = api
                .write_user(
                    Method::PUT,
                    &["User", &sub],
                    Some(&Value::Object(doc.body)),
                    &format!("replace user/{}", doc.username),
                )
                .await?;
            match format {
                OutputFormat::Json => emit(&raw),
                OutputFormat::Table => emit(&format!("user/{} replaced", doc.username)),
            }
        }
        UserVerb::Delete { id } => {
            let (_, user) = api.resolve_user(&id).await?;
            let sub = sub_of(&user)?;
            api.write_user(
                Method::DELETE,
                &["User", &sub],
                None,
                &format!("delete user/{id}"),
            )
            .await?;
            if format == OutputFormat::Table {
                emit(&format!("user/{id} deleted"));
            }
        }
        UserVerb::ResetFactors { id } => {
            let (_, user) = api.resolve_user(&id).await?;
            let sub = sub_of(&user)?;
            api.write_user(
                Method::DELETE,
                &["User", &sub, "factors"],
                None,
                &format!("reset the factors of user/{id}"),
            )
            .await?;
            if format == OutputFormat::Table {
                emit(&format!("user/{id}: second factors removed"));
            }
        }
        UserVerb::Apply {
            file,
            dry_run,
            replace_passwords,
        } => {
            let source = Source::from_arg(&file);
            let docs = docs.unwrap_or_default();
            let mut plan = Vec::new();
            for doc in &docs {
                let current = current_of(&api, doc).await?;
                let step = match &current {
                    None => {
                        if !doc.has_password() {
                            return Err(Failure::invalid(
                                &source,
                                &[problem(
                                    doc.index,
                                    Some("password".into()),
                                    format!(
                                        "user {:?} does not exist yet: a new user needs a password",
                                        doc.username
                                    ),
                                )],
                            ));
                        }
                        UserStep::Create
                    }
                    Some(cur) => match user_changes(doc, cur, replace_passwords) {
                        c if c.is_empty() => UserStep::Unchanged,
                        c => UserStep::Replace(c),
                    },
                };
                plan.push((doc, current, step));
            }
            let mut report = Vec::new();
            let mut lines = Vec::new();
            let mut summary = super::apply::Summary::default();
            for (done, (doc, current, step)) in plan.iter().enumerate() {
                let (label, changes) = match step {
                    UserStep::Create => ("create", Vec::new()),
                    UserStep::Replace(c) => ("replace", c.clone()),
                    UserStep::Unchanged => ("unchanged", Vec::new()),
                };
                if !dry_run {
                    let mut body = doc.body.clone();
                    if !replace_passwords && current.is_some() {
                        body.remove("password");
                    }
                    let result = match (step, current) {
                        (UserStep::Create, _) => api
                            .write_user(
                                Method::POST,
                                &["User"],
                                Some(&Value::Object(body)),
                                &format!("create user/{}", doc.username),
                            )
                            .await
                            .map(|_| ()),
                        (UserStep::Replace(_), Some(cur)) => {
                            let sub = sub_of(cur)?;
                            api.write_user(
                                Method::PUT,
                                &["User", &sub],
                                Some(&Value::Object(body)),
                                &format!("replace user/{}", doc.username),
                            )
                            .await
                            .map(|_| ())
                        }
                        _ => Ok(()),
                    };
                    if let Err(mut f) = result {
                        f.exit = Exit::Refused;
                        f.message = format!(
                            "{} (apply stopped after {done} of {} users)",
                            f.message,
                            plan.len()
                        );
                        return Err(f);
                    }
                }
                let done_label = match step {
                    UserStep::Create => "created",
                    UserStep::Replace(_) => "replaced",
                    UserStep::Unchanged => "unchanged",
                };
                let mut line = format!("user/{} {done_label}", doc.username);
                if dry_run && !matches!(step, UserStep::Unchanged) {
                    line.push_str(" (dry run)");
                }
                if !changes.is_empty() {
                    line.push_str(&format!("\n    changed: {}", changes.join(", ")));
                }
                lines.push(line);
                match step {
                    UserStep::Create => summary.created += 1,
                    UserStep::Replace(_) => summary.replaced += 1,
                    UserStep::Unchanged => summary.unchanged += 1,
                }
                report.push(serde_json::json!({
                    "username": doc.username, "action": label, "changed": changes,
                }));
            }
            match format {
                OutputFormat::Json => emit(&compact(&serde_json::json!({
                    "dryRun": dry_run, "users": report,
                }))),
                OutputFormat::Table => {
                    lines.push(super::output::summary_line(summary, dry_run));
                    emit(&lines.join("\n"));
                }
            }
        }
        UserVerb::Sessions { id } => {
            let (_, user) = api.resolve_user(&id).await?;
            let sub = sub_of(&user)?;
            let (_, raw, v) = api
                .user_json(
                    Method::GET,
                    &["User", &sub, "Session"],
                    None,
                    None,
                    &format!("list the sessions of user/{id}"),
                )
                .await?;
            let items = v.as_array().cloned().unwrap_or_default();
            match format {
                OutputFormat::Json => emit(&raw),
                OutputFormat::Table => emit(&session_table(&items)),
            }
        }
        UserVerb::Logout { id, sid } => {
            let (_, user) = api.resolve_user(&id).await?;
            let sub = sub_of(&user)?;
            let mut segments = vec!["User", sub.as_str(), "Session"];
            if let Some(s) = &sid {
                segments.push(s);
            }
            let what = match &sid {
                Some(s) => format!("session {s} of user/{id}"),
                None => format!("every session of user/{id}"),
            };
            api.write_user(Method::DELETE, &segments, None, &format!("end {what}"))
                .await?;
            if format == OutputFormat::Table {
                emit(&format!("{what} ended"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "user_tests.rs"]
mod tests;
