//! `signet admin`: a command-line client of the admin API (`/admin/v1`), in the spirit of
//! `kubectl` and Keycloak's `kcadm`.
//!
//! ```text
//! signet admin <kind> list | get ID | create -f FILE | update -f FILE | delete ID
//! signet admin apply -f FILE [--dry-run] [--replace-secrets]
//! signet admin key list | get KID | rotate --alg ALG | import --alg ALG -f KEY.pem | revoke KID
//! signet admin events [--aggregate KIND] [--since SEQ] [--limit N] [--follow]
//! signet admin user list --username NAME | get ID | create -f FILE | update -f FILE | delete ID
//! signet admin user apply -f FILE [--dry-run] [--replace-passwords]
//! signet admin user sessions ID | logout ID [--sid SID]
//! ```
//!
//! `<kind>` is `client`, `api-resource`, `api-scope`, `identity-resource` or
//! `initial-access-token` (create prints the token's value once; update keeps it). The CLI gets an
//! access token with `client_credentials` (HTTP Basic, scope `signet.admin`) at the token
//! endpoint, then calls the admin API with it. The secret comes from
//! `SIGNET_ADMIN_CLIENT_SECRET` or `--client-secret-file`, never from a flag value (flags
//! show in `ps`).
//!
//! Exit codes (also in `signet admin --help`):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the server refused the request (a 4xx other than authentication, or a 5xx), or `apply` stopped midway |
//! | 2 | usage error or invalid file (nothing was sent) |
//! | 3 | authentication failed (wrong, expired or missing-scope admin credentials) |
//! | 4 | cannot reach the server (wrong URL, connection refused, timeout, not a Signet admin API) |
//! | 5 | not found (`get`, `update`, `delete` or `key revoke` of an id that does not exist) |
//!
//! Every failure prints one line on stderr; an invalid file also prints one line per problem.
//!
//! Layout: [`client`] talks HTTP, [`spec`] reads and validates files, [`apply`] plans and
//! carries out an apply, [`output`] renders tables, plans and diffs, [`key`] has the
//! signing-key verbs (keys are not declarative: `apply` leaves them alone), [`events`] reads
//! the audit trail, [`user`] has the users and their sessions (users have server-generated
//! ids and write-only passwords, so they have their own verbs and `user apply`).

pub mod apply;
pub mod client;
pub mod events;
pub mod key;
pub mod output;
pub mod spec;
pub mod user;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use self::client::{AdminApi, Connection};
use self::spec::{Problem, Source};

/// The default admin listener.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8081";
/// The default issuer (its token endpoint is `<issuer>/oauth2/token`).
pub const DEFAULT_ISSUER: &str = "http://127.0.0.1:8080";
/// The environment variable holding the admin client's secret.
pub const SECRET_ENV: &str = "SIGNET_ADMIN_CLIENT_SECRET";

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the server refused the request (4xx other than authentication, 5xx), or apply stopped midway
  2  usage error or invalid file (nothing was sent)
  3  authentication failed (wrong or expired secret, client without scope signet.admin)
  4  cannot reach the server (wrong URL, connection refused, timeout, not a Signet admin API)
  5  not found (get, update, delete or key revoke of an id that does not exist)

Credentials: the admin client's secret comes from SIGNET_ADMIN_CLIENT_SECRET or from the
file named by --client-secret-file (never from a flag value: flags show in `ps`).";

/// The process exit code of a failure (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: the server refused, or an apply stopped midway.
    Refused = 1,
    /// 2: usage error or invalid file.
    Usage = 2,
    /// 3: authentication failed.
    Auth = 3,
    /// 4: cannot reach the server.
    Connect = 4,
    /// 5: no object with that id.
    NotFound = 5,
}

/// Why a command failed: one line for people, the exit code for scripts, and for an invalid
/// file one line per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    pub problems: Vec<String>,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(Exit::Usage, message)
    }

    /// An invalid file: every problem on its own line, then the summary.
    pub fn invalid(source: &Source, problems: &[Problem]) -> Self {
        let n = problems.len();
        Failure {
            exit: Exit::Usage,
            message: format!(
                "{} is invalid ({n} problem{}); nothing was written",
                source.name(),
                if n == 1 { "" } else { "s" }
            ),
            problems: problems.iter().map(|p| p.render(source)).collect(),
        }
    }

    fn print(&self) {
        let mut err = std::io::stderr().lock();
        for p in &self.problems {
            let _ = writeln!(err, "{p}");
        }
        let _ = writeln!(err, "signet admin: {}", self.message);
    }
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// The server's JSON, for scripts.
    Json,
}

/// `signet admin`.
#[derive(Debug, Args)]
#[command(
    after_help = EXIT_CODES_HELP,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct AdminArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// Where the admin API is and how to authenticate (every admin subcommand takes these).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Admin API")]
pub struct ConnectionArgs {
    /// Base URL of the admin listener
    #[arg(
        long,
        env = "SIGNET_ADMIN_URL",
        default_value = DEFAULT_URL,
        global = true,
        value_name = "URL"
    )]
    pub url: String,
    /// Token endpoint [default: <issuer>/oauth2/token]
    #[arg(
        long,
        env = "SIGNET_ADMIN_TOKEN_URL",
        global = true,
        value_name = "URL"
    )]
    pub token_url: Option<String>,
    /// The server's issuer URL, used to find the token endpoint
    #[arg(
        long,
        env = "SIGNET_ISSUER",
        default_value = DEFAULT_ISSUER,
        global = true,
        value_name = "URL"
    )]
    pub issuer: String,
    /// The admin client's id
    #[arg(
        long,
        env = "SIGNET_ADMIN_CLIENT_ID",
        default_value = signet_core::bootstrap::ADMIN_CLIENT_ID,
        global = true,
        value_name = "ID"
    )]
    pub client_id: String,
    /// File holding the admin client's secret [else env: SIGNET_ADMIN_CLIENT_SECRET]
    #[arg(long, global = true, value_name = "PATH")]
    pub client_secret_file: Option<PathBuf>,
    /// Output format
    #[arg(
        short,
        long,
        value_enum,
        default_value = "table",
        global = true,
        value_name = "FORMAT"
    )]
    pub output: OutputFormat,
    /// Seconds to wait for each HTTP request
    #[arg(long, default_value_t = 30, global = true, value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Clients (/admin/v1/Client), by clientId
    #[command(visible_alias = "clients")]
    Client(KindArgs),
    /// API resources (/admin/v1/Resource/ApiResource), by name
    #[command(visible_alias = "api-resources")]
    ApiResource(KindArgs),
    /// API scopes (/admin/v1/Resource/ApiScope), by name
    #[command(visible_alias = "api-scopes")]
    ApiScope(KindArgs),
    /// Identity resources (/admin/v1/Resource/IdentityResource), by name
    #[command(visible_alias = "identity-resources")]
    IdentityResource(KindArgs),
    /// Initial access tokens for dynamic client registration
    /// (/admin/v1/InitialAccessToken), by id; `create` prints the token once
    #[command(visible_alias = "initial-access-tokens")]
    InitialAccessToken(KindArgs),
    /// Upstream identity providers users sign in through (/admin/v1/IdentityProvider), by
    /// scheme; the clientSecret is write-only
    #[command(visible_alias = "identity-providers")]
    IdentityProvider(KindArgs),
    /// Signing keys (/admin/v1/Key), by kid: list, get, rotate, import, revoke
    #[command(visible_alias = "keys")]
    Key(key::KeyArgs),
    /// Users (/admin/v1/User), by sub or username, and their sessions: list, get, create,
    /// update, delete, apply, sessions, logout
    #[command(visible_alias = "users")]
    User(user::UserArgs),
    /// The audit trail (/admin/v1/Events): one JSON line per change, secrets redacted
    Events(events::EventsArgs),
    /// Create what is missing and replace what differs, from a file of many objects
    #[command(after_help = APPLY_HELP)]
    Apply(ApplyArgs),
}

const APPLY_HELP: &str = "\
The file (YAML or JSON; `-` reads standard input) holds objects of the form
  {kind: Client | ApiResource | ApiScope | IdentityResource | InitialAccessToken |
         IdentityProvider,
   spec: {...admin API body...}}
as a list, as a YAML multi-document stream (---), or as a JSON array. Every object is
validated before anything is written. Objects on the server but not in the file are left
alone. Writes go in dependency order: ApiScope and IdentityResource, ApiResource,
IdentityProvider, Client, InitialAccessToken. An InitialAccessToken's spec needs an id; when it is created its value
is printed once, and a replacement keeps the value (lifetime and expiresAt are not compared:
change them with `initial-access-token update`).

Secret values are write-only: apply compares what the server shows of a secret (how many,
description, expiration, type). A spec without clientSecrets/apiSecrets keeps the stored
secrets (an IdentityProvider without clientSecret keeps its stored one). To rotate a value, change its description or expiration too, or use
--replace-secrets.";

/// The verbs of one kind.
#[derive(Debug, Args)]
pub struct KindArgs {
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// List every object of this kind
    #[command(visible_alias = "ls")]
    List,
    /// Show one object
    Get {
        /// The clientId or name
        #[arg(value_name = "ID", allow_hyphen_values = true)]
        id: String,
    },
    /// Create an object from a file (YAML or JSON; `-` reads standard input)
    Create {
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Replace an object with the one in a file (secrets are kept unless the file has them)
    #[command(visible_alias = "replace")]
    Update {
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete an object
    #[command(visible_alias = "rm")]
    Delete {
        /// The clientId or name
        #[arg(value_name = "ID", allow_hyphen_values = true)]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The file of objects (YAML or JSON; `-` reads standard input)
    #[arg(short, long, value_name = "FILE")]
    pub file: PathBuf,
    /// Show what would change, with a diff of each replacement, and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Replace every object whose spec has secrets, even when nothing visible differs
    #[arg(long)]
    pub replace_secrets: bool,
}

/// The kinds of object the admin API manages. The order is the order `apply` writes them
/// in, so that what an object names exists before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ApiScope,
    IdentityResource,
    ApiResource,
    /// Upstream identity providers (before the clients that may name them).
    IdentityProvider,
    Client,
    /// Dynamic client registration's initial access tokens; their value is printed once,
    /// when created (a replacement keeps it).
    InitialAccessToken,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::ApiScope,
        Kind::IdentityResource,
        Kind::ApiResource,
        Kind::IdentityProvider,
        Kind::Client,
        Kind::InitialAccessToken,
    ];

    /// The name in files and in the admin API's paths.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Client => "Client",
            Kind::ApiResource => "ApiResource",
            Kind::ApiScope => "ApiScope",
            Kind::IdentityResource => "IdentityResource",
            Kind::InitialAccessToken => "InitialAccessToken",
            Kind::IdentityProvider => "IdentityProvider",
        }
    }

    /// The name on the command line (`client`, `api-scope`, ...).
    pub fn cli_name(self) -> &'static str {
        match self {
            Kind::Client => "client",
            Kind::ApiResource => "api-resource",
            Kind::ApiScope => "api-scope",
            Kind::IdentityResource => "identity-resource",
            Kind::InitialAccessToken => "initial-access-token",
            Kind::IdentityProvider => "identity-provider",
        }
    }

    /// Path segments under `/admin/v1`.
    pub fn segments(self) -> &'static [&'static str] {
        match self {
            Kind::Client => &["Client"],
            Kind::ApiResource => &["Resource", "ApiResource"],
            Kind::ApiScope => &["Resource", "ApiScope"],
            Kind::IdentityResource => &["Resource", "IdentityResource"],
            Kind::InitialAccessToken => &["InitialAccessToken"],
            Kind::IdentityProvider => &["IdentityProvider"],
        }
    }

    /// The member that identifies an object.
    pub fn id_field(self) -> &'static str {
        match self {
            Kind::Client => "clientId",
            Kind::InitialAccessToken => "id",
            Kind::IdentityProvider => "scheme",
            _ => "name",
        }
    }

    /// The member holding write-only secrets, if the kind has one.
    pub fn secrets_field(self) -> Option<&'static str> {
        match self {
            Kind::Client => Some("clientSecrets"),
            Kind::ApiResource => Some("apiSecrets"),
            Kind::IdentityProvider => Some("clientSecret"),
            _ => None,
        }
    }

    /// API scopes and identity resources share one namespace of names on the server.
    pub fn namespace(self) -> &'static str {
        match self {
            Kind::Client => "client",
            Kind::ApiResource => "API resource",
            Kind::ApiScope | Kind::IdentityResource => "scope",
            Kind::InitialAccessToken => "initial access token",
            Kind::IdentityProvider => "identity provider",
        }
    }

    /// The kind named `s` in a file (exact, as the admin API spells it).
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Runs `signet admin` and returns the process exit code.
pub fn run(args: AdminArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            Failure::new(Exit::Refused, format!("cannot start the runtime: {e}")).print();
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            f.print();
            ExitCode::from(f.exit as u8)
        }
    }
}

async fn execute(args: AdminArgs) -> Result<(), Failure> {
    let conn_args = args.conn;
    let format = conn_args.output;
    let (kind, verb) = match args.command {
        AdminCommand::Apply(a) => {
            // Everything in the file is checked before the server is contacted.
            let source = Source::from_arg(&a.file);
            let docs = spec::load(&source)?;
            let conn = Connection::resolve(&conn_args, &|k| std::env::var(k).ok())?;
            let api = AdminApi::connect(&conn).await?;
            let options = apply::Options {
                dry_run: a.dry_run,
                replace_secrets: a.replace_secrets,
            };
            return apply::run(&api, &source, &docs, options, format).await;
        }
        AdminCommand::Key(k) => return key::run(&conn_args, k.verb).await,
        AdminCommand::Events(e) => return events::run(&conn_args, e).await,
        AdminCommand::User(u) => return user::run(&conn_args, u.verb).await,
        AdminCommand::Client(k) => (Kind::Client, k.verb),
        AdminCommand::ApiResource(k) => (Kind::ApiResource, k.verb),
        AdminCommand::ApiScope(k) => (Kind::ApiScope, k.verb),
        AdminCommand::IdentityResource(k) => (Kind::IdentityResource, k.verb),
        AdminCommand::InitialAccessToken(k) => (Kind::InitialAccessToken, k.verb),
        AdminCommand::IdentityProvider(k) => (Kind::IdentityProvider, k.verb),
    };
    // A body from a file is read and checked before connecting, too.
    let body = match &verb {
        Verb::Create { file } => Some(read_single(file, kind, true)?),
        Verb::Update { file } => Some(read_single(file, kind, false)?),
        _ => None,
    };
    let conn = Connection::resolve(&conn_args, &|k| std::env::var(k).ok())?;
    let api = AdminApi::connect(&conn).await?;
    match (verb, body) {
        (Verb::List, _) => {
            let (raw, items) = api.list(kind).await?;
            match format {
                OutputFormat::Json => emit(&raw),
                OutputFormat::Table => emit(&output::table(kind, &items)),
            }
        }
        (Verb::Get { id }, _) => {
            let (raw, item) = api.get(kind, &id).await?;
            match format {
                OutputFormat::Json => emit(&raw),
                OutputFormat::Table => emit(&output::table(kind, std::slice::from_ref(&item))),
            }
        }
        (Verb::Create { .. }, Some(doc)) => {
            let raw = api.create(kind, &doc.id, &doc.body).await?;
            match format {
                OutputFormat::Json => emit(&raw),
                OutputFormat::Table => {
                    emit(&format!("{}/{} created", kind.cli_name(), doc.id));
                    if let Some(token) = created_token(kind, &raw) {
                        emit(&format!(
                            "token: {token}  (shown once: only its hash is stored)"
                        ));
                    }
                }
            }
        }
        (Verb::Update { .. }, Some(doc)) => {
            let raw = api.replace(kind, &doc.id, &doc.body).await?;
            match format {
                OutputFormat::Json => emit(&raw),
                OutputFormat::Table => {
                    emit(&format!("{}/{} replaced", kind.cli_name(), doc.id));
                }
            }
        }
        (Verb::Delete { id }, _) => {
            api.delete(kind, &id).await?;
            if format == OutputFormat::Table {
                emit(&format!("{}/{id} deleted", kind.cli_name()));
            }
        }
        (Verb::Create { .. } | Verb::Update { .. }, None) => {
            return Err(Failure::usage("no object to send"));
        }
    }
    Ok(())
}

/// Reads the one object of `create -f` / `update -f`: a bare admin API body, or one
/// `{kind, spec}` document of the same kind, checked as `apply` checks it.
fn read_single(file: &Path, kind: Kind, creating: bool) -> Result<spec::Doc, Failure> {
    let source = Source::from_arg(file);
    let doc = spec::load_single(&source, kind)?;
    if creating {
        if let Some(p) = doc.creation_problem() {
            return Err(Failure::invalid(&source, &[p]));
        }
    }
    Ok(doc)
}

/// The value of a newly created initial access token, from the server's answer.
pub fn created_token(kind: Kind, raw: &str) -> Option<String> {
    if kind != Kind::InitialAccessToken {
        return None;
    }
    let v: Value = serde_json::from_str(raw).ok()?;
    v.get("token")?.as_str().map(str::to_owned)
}

/// Writes `text` and a newline to stdout. A closed pipe (`| head`) is not an error.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = if text.ends_with('\n') {
        out.write_all(text.as_bytes())
    } else {
        writeln!(out, "{text}")
    };
    let _ = out.flush();
}

/// A short rendering of a JSON value for diffs and tables.
pub fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Seconds as a [`Duration`], at least one.
pub fn timeout(secs: u64) -> Duration {
    Duration::from_secs(secs.max(1))
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
