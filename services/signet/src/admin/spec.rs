//! Files of objects: reading them (YAML or JSON, one or many objects), and checking every
//! object on its own with `signet-core`'s typed models and rules, before anything is sent.
//!
//! An object in an `apply` file is `{kind: Client|ApiResource|ApiScope|IdentityResource,
//! spec: {...}}`, where `spec` is the admin API body (camelCase). A file holds a list of
//! them, a YAML multi-document stream of objects or lists, or a JSON array (or several
//! JSON values one after another). `create -f` and `update -f` take one object, as such a
//! document or as a bare body.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use signet_core::client::{Client, ClientPolicy};
use signet_core::commands::OFFLINE_ACCESS;
use signet_core::identity_provider::IdentityProviderInput;
use signet_core::registration::InitialAccessTokenInput;
use signet_core::resource::ApiResource;
use signet_core::scope::ScopeResource;
use signet_core::secret::{SecretInput, SecretView};
use signet_core::validation::{from_json, FieldError, ValidationErrors};

use super::{Failure, Kind};

/// Where a file comes from: a path, or standard input (`-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

/// The two syntaxes a file may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Source {
    pub fn from_arg(path: &Path) -> Source {
        if path == Path::new("-") {
            Source::Stdin
        } else {
            Source::File(path.to_path_buf())
        }
    }

    /// How the source is named in messages.
    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "<stdin>".to_owned(),
            Source::File(p) => p.display().to_string(),
        }
    }

    pub fn read(&self) -> Result<String, Failure> {
        let mut text = String::new();
        let result = match self {
            Source::Stdin => std::io::stdin().read_to_string(&mut text).map(|_| ()),
            Source::File(p) => std::fs::read_to_string(p).map(|t| text = t),
        };
        result.map_err(|e| Failure::usage(format!("cannot read {}: {e}", self.name())))?;
        Ok(text)
    }

    /// The syntax the file name announces (`.json`, `.yaml`, `.yml`), if any.
    pub fn format_hint(&self) -> Option<Format> {
        let Source::File(p) = self else { return None };
        let ext = p.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// The syntax of `text`: the file name's, else JSON when it starts like JSON, else YAML.
pub fn detect(hint: Option<Format>, text: &str) -> Format {
    hint.unwrap_or_else(|| {
        match text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .chars()
            .next()
        {
            Some('{' | '[') => Format::Json,
            _ => Format::Yaml,
        }
    })
}

/// Which object of a file a problem is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// 1-based position in the file.
    pub index: usize,
    pub kind: Option<Kind>,
    pub id: Option<String>,
}

/// One thing wrong with a file: `FILE: object N (Kind id): field: rule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub object: Option<ObjectRef>,
    pub field: Option<String>,
    pub rule: String,
}

impl Problem {
    /// A problem with the file as a whole (its syntax).
    pub fn file(rule: impl Into<String>) -> Self {
        Problem {
            object: None,
            field: None,
            rule: rule.into(),
        }
    }

    pub fn render(&self, source: &Source) -> String {
        let mut s = source.name();
        if let Some(o) = &self.object {
            s.push_str(&format!(": object {}", o.index));
            match (o.kind, &o.id) {
                (Some(k), Some(id)) => s.push_str(&format!(" ({} {id})", k.name())),
                (Some(k), None) => s.push_str(&format!(" ({})", k.name())),
                (None, Some(id)) => s.push_str(&format!(" ({id})")),
                (None, None) => {}
            }
        }
        if let Some(f) = &self.field {
            s.push_str(": ");
            s.push_str(f);
        }
        s.push_str(": ");
        s.push_str(&self.rule);
        s
    }
}

/// An object in its typed form, with the defaults of every field it left out.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    Client(Box<Client<SecretInput>>),
    ApiResource(Box<ApiResource<SecretInput>>),
    Scope(ScopeResource),
    InitialAccessToken(Box<InitialAccessTokenInput>),
    IdentityProvider(Box<IdentityProviderInput>),
}

/// One valid object of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// 1-based position in the file.
    pub index: usize,
    pub kind: Kind,
    pub id: String,
    /// The body as written (what is sent: members left out get the server's defaults, and
    /// an absent secrets member keeps the stored secrets on a replace).
    pub body: Value,
    pub typed: Typed,
    /// Whether the body has the kind's secrets member (`clientSecrets`, `apiSecrets`).
    pub has_secrets: bool,
    /// A rule that holds only when the object already exists: a `client_credentials`
    /// client without a `clientSecrets` member keeps its stored secrets, but cannot be
    /// created that way.
    pub needs_secrets: Option<FieldError>,
}

fn secret_view(s: SecretInput) -> SecretView {
    SecretView {
        description: s.description,
        expiration: s.expiration,
        kind: s.kind,
    }
}

impl Doc {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            index: self.index,
            kind: Some(self.kind),
            id: Some(self.id.clone()),
        }
    }

    pub fn problem(&self, field: impl Into<String>, rule: impl Into<String>) -> Problem {
        Problem {
            object: Some(self.object_ref()),
            field: Some(field.into()),
            rule: rule.into(),
        }
    }

    /// The object as the server would show it after writing this body: every default
    /// filled in, secrets without their values, and no secrets member when the body has
    /// none (the stored secrets stay, so they are not compared).
    pub fn desired(&self) -> Value {
        let v = match &self.typed {
            Typed::Client(c) => serde_json::to_value((**c).clone().map_secrets(secret_view)),
            Typed::ApiResource(r) => serde_json::to_value((**r).clone().map_secrets(secret_view)),
            Typed::Scope(s) => serde_json::to_value(s),
            // As written, without the expiry (the server shows when it ends, not how it
            // was asked for).
            // As the server shows it: defaults filled in, the secret only as
            // hasClientSecret (compared only when the file has a clientSecret member).
            Typed::IdentityProvider(i) => {
                let secret = i
                    .client_secret
                    .as_ref()
                    .or(i.bind_password.as_ref())
                    .map(|_| String::new());
                match (**i).clone().into_record(secret) {
                    Ok(r) => {
                        let mut v = serde_json::to_value(r.view());
                        if let Ok(Value::Object(m)) = &mut v {
                            if !self.has_secrets {
                                m.remove("hasClientSecret");
                                m.remove("hasBindPassword");
                            }
                        }
                        v
                    }
                    Err(_) => Ok(self.body.clone()),
                }
            }
            Typed::InitialAccessToken(_) => {
                let mut body = self.body.clone();
                if let Some(m) = body.as_object_mut() {
                    m.remove("lifetime");
                    m.remove("expiresAt");
                }
                Ok(body)
            }
        };
        let mut v = v.unwrap_or(Value::Null);
        if !self.has_secrets {
            if let (Some(field), Some(map)) = (self.kind.secrets_field(), v.as_object_mut()) {
                map.remove(field);
            }
        }
        v
    }

    /// What forbids creating this object (as opposed to replacing it), if anything.
    pub fn creation_problem(&self) -> Option<Problem> {
        self.needs_secrets.as_ref().map(|e| {
            self.problem(
                e.field.clone(),
                format!(
                    "{} (the object does not exist yet, so the file must hold its secrets)",
                    e.rule
                ),
            )
        })
    }

    /// The scope names this object refers to, with their field paths.
    pub fn scope_refs(&self) -> Vec<(String, &str)> {
        match &self.typed {
            Typed::Client(c) => c
                .allowed_scopes
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("allowedScopes[{i}]"), s.as_str()))
                .collect(),
            Typed::ApiResource(r) => r
                .scopes
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("scopes[{i}]"), s.as_str()))
                .collect(),
            Typed::InitialAccessToken(t) => t
                .allowed_scopes
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("allowedScopes[{i}]"), s.as_str()))
                .collect(),
            Typed::Scope(_) | Typed::IdentityProvider(_) => Vec::new(),
        }
    }
}

/// Parses the text into JSON values (one per YAML document or JSON value).
pub fn parse_values(text: &str, format: Format) -> Result<Vec<Value>, Problem> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Json => serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                let msg = e.to_string();
                let msg = match msg.rfind(" at line ") {
                    Some(i) => &msg[..i],
                    None => &msg,
                };
                Problem::file(format!(
                    "line {} column {}: invalid JSON: {msg}",
                    e.line(),
                    e.column()
                ))
            }),
        Format::Yaml => {
            // YAML 1.2 core schema: `no`, `on`, `007` and `1_000` are strings, not a
            // boolean or numbers (the "Norway problem" of YAML 1.1).
            let options = serde_saphyr::options! {
                with_snippet: false,
                strict_booleans: true,
                leading_zero_numbers_as_strings: true,
                underscored_numbers_as_strings: true,
            };
            serde_saphyr::from_multiple_with_options::<Value>(text, options).map_err(|e| {
                let msg = e.to_string();
                let one_line = msg.split_whitespace().collect::<Vec<_>>().join(" ");
                Problem::file(format!("invalid YAML: {one_line}"))
            })
        }
    }
}

/// The objects of a file: lists are spread out, empty documents skipped.
pub fn flatten(values: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::new();
    for v in values {
        match v {
            Value::Null => {}
            Value::Array(items) => out.extend(items),
            other => out.push(other),
        }
    }
    out
}

/// Reads and checks an `apply` file: every object, every rule, and duplicate ids. Any
/// problem fails the whole file.
pub fn load(source: &Source) -> Result<Vec<Doc>, Failure> {
    let text = source.read()?;
    let values = parse_values(&text, detect(source.format_hint(), &text))
        .map_err(|p| Failure::invalid(source, &[p]))?;
    let items = flatten(values);
    if items.is_empty() {
        return Err(Failure::usage(format!(
            "{} holds no objects",
            source.name()
        )));
    }
    check_all(&items).map_err(|problems| Failure::invalid(source, &problems))
}

/// Checks every object of a file; either all are valid or every problem is returned.
pub fn check_all(items: &[Value]) -> Result<Vec<Doc>, Vec<Problem>> {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let index = i + 1;
        match envelope(item, index).and_then(|(kind, spec)| check(kind, spec, index)) {
            Ok(d) => docs.push(d),
            Err(mut p) => problems.append(&mut p),
        }
    }
    // Duplicate ids: the second and later occurrences are the problem.
    let mut seen: HashMap<(&str, &str), &Doc> = HashMap::new();
    for d in &docs {
        let key = (d.kind.namespace(), d.id.as_str());
        if let Some(first) = seen.get(&key) {
            let rule = if first.kind == d.kind {
                format!("duplicate: {:?} is also object {}", d.id, first.index)
            } else {
                format!(
                    "duplicate: {:?} is also object {} ({}); API scopes and identity resources share one namespace",
                    d.id,
                    first.index,
                    first.kind.name()
                )
            };
            problems.push(d.problem(d.kind.id_field(), rule));
        } else {
            seen.insert(key, d);
        }
    }
    if problems.is_empty() {
        Ok(docs)
    } else {
        problems.sort_by_key(|p| p.object.as_ref().map_or(0, |o| o.index));
        Err(problems)
    }
}

/// Splits `{kind, spec}`.
fn envelope(item: &Value, index: usize) -> Result<(Kind, &Map<String, Value>), Vec<Problem>> {
    let at = |kind: Option<Kind>, id: Option<String>, field: Option<&str>, rule: String| Problem {
        object: Some(ObjectRef { index, kind, id }),
        field: field.map(str::to_owned),
        rule,
    };
    let Some(obj) = item.as_object() else {
        return Err(vec![at(
            None,
            None,
            None,
            "must be a mapping with kind and spec".to_owned(),
        )]);
    };
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .and_then(Kind::from_name);
    let spec = obj.get("spec").and_then(Value::as_object);
    let id = match (kind, spec) {
        (Some(k), Some(s)) => s
            .get(k.id_field())
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    };
    let mut problems = Vec::new();
    for key in obj.keys() {
        if key != "kind" && key != "spec" {
            problems.push(at(
                kind,
                id.clone(),
                Some(key),
                "unknown member (an object has only kind and spec)".to_owned(),
            ));
        }
    }
    if kind.is_none() {
        let rule = match obj.get("kind") {
            None => "missing".to_owned(),
            Some(Value::String(k)) if k == "User" => {
                "User objects go in a file of their own: signet admin user apply -f FILE".to_owned()
            }
            Some(v) => format!(
                "{} is not one of Client, ApiResource, ApiScope, IdentityResource, InitialAccessToken, IdentityProvider",
                super::compact(v)
            ),
        };
        problems.push(at(None, None, Some("kind"), rule));
    }
    if spec.is_none() {
        let rule = if obj.contains_key("spec") {
            "must be a mapping (the admin API body)"
        } else {
            "missing"
        };
        problems.push(at(kind, None, Some("spec"), rule.to_owned()));
    }
    match (kind, spec) {
        (Some(k), Some(s)) if problems.is_empty() => Ok((k, s)),
        _ => Err(problems),
    }
}

/// Parses a spec into its typed model (field-naming errors) and runs its rules.
pub fn check(kind: Kind, spec: &Map<String, Value>, index: usize) -> Result<Doc, Vec<Problem>> {
    let raw_id = spec
        .get(kind.id_field())
        .and_then(Value::as_str)
        .map(str::to_owned);
    let to_problems = |id: Option<String>, errors: ValidationErrors| -> Vec<Problem> {
        errors
            .errors
            .into_iter()
            .map(|e| Problem {
                object: Some(ObjectRef {
                    index,
                    kind: Some(kind),
                    id: id.clone(),
                }),
                field: Some(e.field),
                rule: e.rule,
            })
            .collect()
    };
    let body = Value::Object(spec.clone());
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    // An ldap provider's write-only secret is its bindPassword.
    let has_secrets = kind.secrets_field().is_some_and(|f| spec.contains_key(f))
        || (kind == Kind::IdentityProvider && spec.contains_key("bindPassword"));
    let mut needs_secrets = None;
    let (typed, id, result) = match kind {
        Kind::Client => {
            let c: Client<SecretInput> =
                from_json(&bytes).map_err(|e| to_problems(raw_id.clone(), e))?;
            // The server applies its own redirect-URI policy and lifetime bounds (it may be
            // started with --insecure-allow-any-redirect-uri or --lifetime-limits); every
            // other rule is checked here.
            let mut result = c.validate_with(&ClientPolicy::lenient());
            if !has_secrets {
                // Without the member the stored secrets stay: the rule that a
                // client_credentials client has one holds for the stored ones, and matters
                // only if the client must be created.
                if let Err(e) = &mut result {
                    if let Some(i) = e.errors.iter().position(|f| f.field == "clientSecrets") {
                        needs_secrets = Some(e.errors.remove(i));
                    }
                    if e.errors.is_empty() {
                        result = Ok(());
                    }
                }
            }
            let id = c.client_id.clone();
            (Typed::Client(Box::new(c)), id, result)
        }
        Kind::ApiResource => {
            let r: ApiResource<SecretInput> =
                from_json(&bytes).map_err(|e| to_problems(raw_id.clone(), e))?;
            let result = r.validate();
            let id = r.name.clone();
            (Typed::ApiResource(Box::new(r)), id, result)
        }
        Kind::ApiScope | Kind::IdentityResource => {
            let s: ScopeResource = from_json(&bytes).map_err(|e| to_problems(raw_id.clone(), e))?;
            let mut result = s.validate();
            if s.name == OFFLINE_ACCESS {
                let built_in = ValidationErrors::single("name", "offline_access is built in");
                result = match result {
                    Ok(()) => Err(built_in),
                    Err(mut e) => {
                        e.errors.extend(built_in.errors);
                        Err(e)
                    }
                };
            }
            let id = s.name.clone();
            (Typed::Scope(s), id, result)
        }
        Kind::InitialAccessToken => {
            let t: InitialAccessTokenInput =
                from_json(&bytes).map_err(|e| to_problems(raw_id.clone(), e))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let id = t.id.clone().unwrap_or_default();
            // A file names its tokens, so that apply finds them again.
            let mut result = match &t.id {
                None => Err(ValidationErrors::single(
                    "id",
                    "is required in a file (apply finds the token again by it)",
                )),
                Some(_) => Ok(()),
            };
            if let Err(e) = t.clone().into_record(id.clone(), String::new(), now) {
                result = match result {
                    Ok(()) => Err(e),
                    Err(mut first) => {
                        first.errors.extend(e.errors);
                        Err(first)
                    }
                };
            }
            (Typed::InitialAccessToken(Box::new(t)), id, result)
        }
        Kind::IdentityProvider => {
            let i: IdentityProviderInput =
                from_json(&bytes).map_err(|e| to_problems(raw_id.clone(), e))?;
            let mut result = i.clone().into_record(None).map(|_| ());
            if i.bind_password.is_none() {
                // Without the member the stored bind password stays: required only if the
                // provider must be created.
                if let Err(e) = &mut result {
                    if let Some(at) = e.errors.iter().position(|f| f.field == "bindPassword") {
                        needs_secrets = Some(e.errors.remove(at));
                    }
                    if e.errors.is_empty() {
                        result = Ok(());
                    }
                }
            }
            let id = i.scheme.clone();
            (Typed::IdentityProvider(Box::new(i)), id, result)
        }
    };
    result.map_err(|e| to_problems(Some(id.clone()), e))?;
    Ok(Doc {
        index,
        kind,
        id,
        body,
        typed,
        has_secrets,
        needs_secrets,
    })
}

/// Reads the one object of `create -f` / `update -f` for `kind`: a `{kind, spec}` document
/// or a bare admin API body.
pub fn load_single(source: &Source, kind: Kind) -> Result<Doc, Failure> {
    let text = source.read()?;
    let values = parse_values(&text, detect(source.format_hint(), &text))
        .map_err(|p| Failure::invalid(source, &[p]))?;
    let items = flatten(values);
    let [item] = items.as_slice() else {
        let message = if items.is_empty() {
            format!("{} holds no object", source.name())
        } else {
            format!(
                "{} holds {} objects; `signet admin apply -f` takes many, `{} create|update -f` one",
                source.name(),
                items.len(),
                kind.cli_name()
            )
        };
        return Err(Failure::usage(message));
    };
    single(item, kind).map_err(|p| Failure::invalid(source, &p))
}

/// Checks one object for `kind`; a `{kind, spec}` document must be of that kind.
pub fn single(item: &Value, kind: Kind) -> Result<Doc, Vec<Problem>> {
    let is_envelope = item
        .as_object()
        .is_some_and(|o| o.contains_key("spec") && o.keys().all(|k| k == "kind" || k == "spec"));
    if is_envelope {
        let (k, spec) = envelope(item, 1)?;
        if k != kind {
            return Err(vec![Problem {
                object: Some(ObjectRef {
                    index: 1,
                    kind: Some(k),
                    id: spec
                        .get(k.id_field())
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                }),
                field: Some("kind".to_owned()),
                rule: format!(
                    "is {}, but this command handles {} (use `signet admin apply -f`)",
                    k.name(),
                    kind.name()
                ),
            }]);
        }
        return check(kind, spec, 1);
    }
    match item.as_object() {
        Some(spec) => check(kind, spec, 1),
        None => Err(vec![Problem {
            object: Some(ObjectRef {
                index: 1,
                kind: Some(kind),
                id: None,
            }),
            field: None,
            rule: "must be a mapping (the admin API body)".to_owned(),
        }]),
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "spec_fuzz.rs"]
mod fuzz;
