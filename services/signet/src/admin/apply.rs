//! `signet admin apply`: bring the server to what a file declares, for the objects the file
//! names (nothing is deleted).
//!
//! 1. Every object is checked on its own ([`super::spec`]); any problem stops here.
//! 2. The server's objects are read, and the file is checked against them: a scope named
//!    by a client or an API resource must exist on the server or in the file, a name is
//!    either an API scope or an identity resource, and a client created by the file must
//!    carry its secrets. Any problem stops here too: nothing has been written yet.
//! 3. Each object is planned: *create* (missing), *replace* (differs) or *unchanged*.
//!    The comparison is between the object as the server would show it after the write
//!    (the spec with every default filled in, see [`Doc::desired`]) and what it shows now.
//! 4. Writes go in dependency order (API scopes and identity resources, API resources,
//!    clients) and stop at the first refusal.
//!
//! Secrets are write-only: the server shows a secret's description, expiration and type,
//! never its value. So a spec's secrets are compared by what the server shows (how many,
//! and those three members); a changed value alone is not seen. A spec without its secrets
//! member is compared without secrets and keeps the stored ones. `--replace-secrets`
//! replaces every existing object whose spec has secrets.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use signet_core::commands::OFFLINE_ACCESS;

use super::client::AdminApi;
use super::spec::{Doc, Problem, Source, Typed};
use super::{created_token, emit, output, Exit, Failure, Kind, OutputFormat};

/// `apply` flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub dry_run: bool,
    pub replace_secrets: bool,
}

/// One top-level field that differs: its value on the server, and in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create,
    Replace(Vec<Change>),
    Unchanged,
}

impl Action {
    pub fn label(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Replace(_) => "replace",
            Action::Unchanged => "unchanged",
        }
    }
}

/// What to do with one object of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Step<'a> {
    pub doc: &'a Doc,
    pub action: Action,
}

/// The server's objects: per kind, id to the JSON it shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    pub objects: HashMap<Kind, BTreeMap<String, Value>>,
}

impl Current {
    /// Builds the map from the server's lists.
    pub fn from_lists(lists: impl IntoIterator<Item = (Kind, Vec<Value>)>) -> Self {
        let mut objects = HashMap::new();
        for (kind, items) in lists {
            let map: BTreeMap<String, Value> = items
                .into_iter()
                .filter_map(|v| {
                    let id = v.get(kind.id_field())?.as_str()?.to_owned();
                    Some((id, v))
                })
                .collect();
            objects.insert(kind, map);
        }
        Current { objects }
    }

    pub fn get(&self, kind: Kind, id: &str) -> Option<&Value> {
        self.objects.get(&kind)?.get(id)
    }

    /// Which scope kind the server has under `name`, if any.
    fn scope_kind(&self, name: &str) -> Option<Kind> {
        [Kind::ApiScope, Kind::IdentityResource]
            .into_iter()
            .find(|k| self.get(*k, name).is_some())
    }
}

/// The top-level fields of `desired` whose value differs on the server (`current`).
/// Fields only the server shows are not compared: this CLI does not know them.
pub fn diff(desired: &Value, current: &Value) -> Vec<Change> {
    let Some(want) = desired.as_object() else {
        return Vec::new();
    };
    let null = Value::Null;
    want.iter()
        .filter_map(|(field, new)| {
            let old = current.get(field).unwrap_or(&null);
            (old != new).then(|| Change {
                field: field.clone(),
                old: old.clone(),
                new: new.clone(),
            })
        })
        .collect()
}

/// Checks the file against the server and decides each object's action, in write order.
/// Any problem fails the whole plan.
pub fn plan<'a>(
    docs: &'a [Doc],
    current: &Current,
    options: Options,
) -> Result<Vec<Step<'a>>, Vec<Problem>> {
    let mut problems = Vec::new();
    // Scopes the file declares, by name.
    let file_scopes: HashMap<&str, Kind> = docs
        .iter()
        .filter(|d| matches!(d.kind, Kind::ApiScope | Kind::IdentityResource))
        .map(|d| (d.id.as_str(), d.kind))
        .collect();
    let scope_kind = |name: &str| {
        file_scopes
            .get(name)
            .copied()
            .or_else(|| current.scope_kind(name))
    };

    let mut steps = Vec::new();
    for doc in docs {
        // A name is an API scope or an identity resource, and stays what it is.
        if matches!(doc.kind, Kind::ApiScope | Kind::IdentityResource) {
            if let Some(other) = current.scope_kind(&doc.id).filter(|k| *k != doc.kind) {
                problems.push(doc.problem(
                    "name",
                    format!(
                        "{:?} exists on the server as an {}; a name is either an ApiScope or an IdentityResource",
                        doc.id,
                        other.name()
                    ),
                ));
            }
        }
        // What the object names must exist by the time it is written.
        for (field, name) in doc.scope_refs() {
            match (&doc.typed, scope_kind(name)) {
                (Typed::Client(c), _) if name == OFFLINE_ACCESS => {
                    if !c.allow_offline_access {
                        problems.push(doc.problem(
                            field,
                            "offline_access needs allowOfflineAccess: true",
                        ));
                    }
                }
                (Typed::Client(_), Some(_)) => {}
                (Typed::InitialAccessToken(_), Some(_)) => {}
                (Typed::InitialAccessToken(_), None) if name == OFFLINE_ACCESS => {}
                (Typed::InitialAccessToken(_), None) => problems.push(doc.problem(
                    field,
                    format!("scope {name:?} exists neither on the server nor in the file"),
                )),
                (Typed::Client(_), None) => problems.push(doc.problem(
                    field,
                    format!("scope {name:?} exists neither on the server nor in the file (add it as an ApiScope or IdentityResource)"),
                )),
                (_, Some(Kind::ApiScope)) => {}
                (_, Some(_)) => problems.push(doc.problem(
                    field,
                    format!("{name:?} is an IdentityResource, not an ApiScope"),
                )),
                (_, None) => problems.push(doc.problem(
                    field,
                    format!("ApiScope {name:?} exists neither on the server nor in the file"),
                )),
            }
        }
        let action = match current.get(doc.kind, &doc.id) {
            None => {
                if let Some(p) = doc.creation_problem() {
                    problems.push(p);
                }
                Action::Create
            }
            Some(existing) => {
                let mut changes = diff(&doc.desired(), existing);
                if options.replace_secrets && doc.has_secrets {
                    if let Some(field) = doc.kind.secrets_field() {
                        if !changes.iter().any(|c| c.field == field) {
                            changes.push(Change {
                                field: field.to_owned(),
                                old: json!("(stored values, write-only)"),
                                new: json!("(the file's values, --replace-secrets)"),
                            });
                        }
                    }
                }
                if changes.is_empty() {
                    Action::Unchanged
                } else {
                    Action::Replace(changes)
                }
            }
        };
        steps.push(Step { doc, action });
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.object.as_ref().map_or(0, |o| o.index));
        return Err(problems);
    }
    // Dependencies first; within a kind, the file's order.
    steps.sort_by_key(|s| (s.doc.kind, s.doc.index));
    Ok(steps)
}

/// Counts of a plan or of what was done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub created: usize,
    pub replaced: usize,
    pub unchanged: usize,
}

impl Summary {
    pub fn of(steps: &[Step<'_>]) -> Self {
        let mut s = Summary::default();
        for step in steps {
            match step.action {
                Action::Create => s.created += 1,
                Action::Replace(_) => s.replaced += 1,
                Action::Unchanged => s.unchanged += 1,
            }
        }
        s
    }
}

/// Reads the server's objects of every kind.
pub async fn fetch_current(api: &AdminApi) -> Result<Current, Failure> {
    let mut lists = Vec::new();
    for kind in Kind::ALL {
        let (_, items) = api.list(kind).await?;
        lists.push((kind, items));
    }
    Ok(Current::from_lists(lists))
}

/// Plans and (unless a dry run) carries out an apply, printing as it goes.
pub async fn run(
    api: &AdminApi,
    source: &Source,
    docs: &[Doc],
    options: Options,
    format: OutputFormat,
) -> Result<(), Failure> {
    let current = fetch_current(api).await?;
    let steps = plan(docs, &current, options).map_err(|p| Failure::invalid(source, &p))?;
    let summary = Summary::of(&steps);
    if options.dry_run {
        match format {
            OutputFormat::Table => {
                for step in &steps {
                    emit(&output::step_lines(step, true));
                }
                emit(&output::summary_line(summary, true));
            }
            OutputFormat::Json => emit(&output::report(&steps, steps.len(), true).to_string()),
        }
        return Ok(());
    }
    let writes = summary.created + summary.replaced;
    let mut written = 0;
    for (done, step) in steps.iter().enumerate() {
        let doc = step.doc;
        let result = match step.action {
            Action::Create => api
                .create(doc.kind, &doc.id, &doc.body)
                .await
                .map(|raw| created_token(doc.kind, &raw)),
            Action::Replace(_) => api
                .replace(doc.kind, &doc.id, &doc.body)
                .await
                .map(|_| None),
            Action::Unchanged => Ok(None),
        };
        let token = match result {
            Ok(token) => token,
            Err(f) => {
                if format == OutputFormat::Json {
                    emit(&output::report(&steps, done, false).to_string());
                }
                return Err(stopped(f, doc, written, writes));
            }
        };
        if step.action != Action::Unchanged {
            written += 1;
        }
        if format == OutputFormat::Table {
            emit(&output::step_lines(step, false));
        }
        // A new initial access token's value exists only in this answer: print it (in JSON
        // mode as a line of its own before the report).
        if let Some(token) = token {
            match format {
                OutputFormat::Table => emit(&format!(
                    "  token: {token}  (shown once: only its hash is stored)"
                )),
                OutputFormat::Json => emit(
                    &json!({"kind": doc.kind.name(), "id": doc.id, "token": token}).to_string(),
                ),
            }
        }
    }
    match format {
        OutputFormat::Table => emit(&output::summary_line(summary, false)),
        OutputFormat::Json => emit(&output::report(&steps, steps.len(), false).to_string()),
    }
    Ok(())
}

/// The failure of a write midway: which object, why, and how far the apply got.
pub fn stopped(f: Failure, doc: &Doc, written: usize, writes: usize) -> Failure {
    let at = format!(
        "apply stopped at {}/{} (object {})",
        doc.kind.cli_name(),
        doc.id,
        doc.index
    );
    if written == 0 {
        Failure::new(f.exit, format!("{at}: {}; nothing was written", f.message))
    } else {
        Failure::new(
            Exit::Refused,
            format!(
                "{at}: {}; {written} of {writes} writes done, the rest not attempted",
                f.message
            ),
        )
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
