//! `signet admin key`: the signing keys (`/admin/v1/Key`). They are not configuration
//! objects (the key manager creates them), so they have verbs of their own and no place in
//! `apply`:
//!
//! ```text
//! signet admin key list | get KID | rotate --alg ALG | import --alg ALG -f KEY.pem | revoke KID
//! ```
//!
//! `import` reads the PEM private key from a file (or standard input with `-f -`) and sends
//! it in the request body only: it is never printed, not even in a failure.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::{AdminApi, Connection};
use super::{emit, output, ConnectionArgs, Failure, OutputFormat};

/// The algorithms a key can sign with (as the admin API spells them).
pub const ALGORITHMS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

/// A PEM file larger than this is no single private key (RSA 4096 PKCS#8 is ~3.3 KiB).
const MAX_PEM: u64 = 64 * 1024;

/// `signet admin key`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub verb: KeyVerb,
}

#[derive(Debug, Subcommand)]
pub enum KeyVerb {
    /// List the signing keys (published, active, retired)
    #[command(visible_alias = "ls")]
    List,
    /// Show one signing key (its public JWK with -o json)
    Get {
        /// The key id
        #[arg(value_name = "KID")]
        kid: String,
    },
    /// Replace the active key of an algorithm with a new one now (the old one retires and
    /// stays in the JWKS until the tokens it signed expired)
    Rotate {
        /// The algorithm
        #[arg(long, value_name = "ALG", value_parser = ALGORITHMS)]
        alg: String,
    },
    /// Import a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) as the active key of an
    /// algorithm; the file is sent to the server and never printed
    Import {
        /// The algorithm
        #[arg(long, value_name = "ALG", value_parser = ALGORITHMS)]
        alg: String,
        /// The PEM file (`-` reads standard input)
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Revoke a key: it leaves the JWKS at once and the tokens it signed stop verifying
    #[command(visible_alias = "rm")]
    Revoke {
        /// The key id
        #[arg(value_name = "KID")]
        kid: String,
    },
}

/// Reads the PEM of `import -f` (before anything is sent). Failures name the file, never
/// its content.
pub fn read_pem(file: &Path) -> Result<String, Failure> {
    let name = if file == Path::new("-") {
        "standard input".to_owned()
    } else {
        file.display().to_string()
    };
    let cannot =
        |e: std::io::Error| Failure::usage(format!("cannot read the key file {name}: {e}"));
    let mut bytes = Vec::new();
    if file == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_PEM + 1)
            .read_to_end(&mut bytes)
            .map_err(cannot)?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(MAX_PEM + 1).read_to_end(&mut bytes))
            .map_err(cannot)?;
    }
    if bytes.len() as u64 > MAX_PEM {
        return Err(Failure::usage(format!(
            "the key file {name} is larger than {} KiB: not one PEM private key",
            MAX_PEM / 1024
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        Failure::usage(format!(
            "the key file {name} is not text: not a PEM private key"
        ))
    })?;
    if !text.contains("-----BEGIN ") {
        return Err(Failure::usage(format!(
            "the key file {name} holds no PEM block (-----BEGIN ...-----)"
        )));
    }
    Ok(text)
}

/// Runs one `key` verb.
pub async fn run(conn_args: &ConnectionArgs, verb: KeyVerb) -> Result<(), Failure> {
    let format = conn_args.output;
    // The file is read and checked before connecting.
    let pem = match &verb {
        KeyVerb::Import { file, .. } => Some(read_pem(file)?),
        _ => None,
    };
    let conn = Connection::resolve(conn_args, &|k| std::env::var(k).ok())?;
    let api = AdminApi::connect(&conn).await?;
    match verb {
        KeyVerb::List => {
            let (raw, items) = api.list_keys().await?;
            match format {
                OutputFormat::Json => emit(&raw),
                OutputFormat::Table => emit(&output::key_table(&items)),
            }
        }
        KeyVerb::Get { kid } => {
            let (raw, item) = api.get_key(&kid).await?;
            match format {
                OutputFormat::Json => emit(&raw),
                OutputFormat::Table => emit(&output::key_table(std::slice::from_ref(&item))),
            }
        }
        KeyVerb::Rotate { alg } => {
            let (raw, new) = api.rotate_key(&alg).await?;
            match format {
                OutputFormat::Json => emit(&raw),
                OutputFormat::Table => emit(&new_key_line(&new, "created", &alg)),
            }
        }
        KeyVerb::Import { alg, .. } => {
            let pem = pem.unwrap_or_default();
            let (raw, new) = api.import_key(&alg, &pem).await?;
            drop(pem);
            match format {
                OutputFormat::Json => emit(&raw),
                OutputFormat::Table => emit(&new_key_line(&new, "imported", &alg)),
            }
        }
        KeyVerb::Revoke { kid } => {
            api.revoke_key(&kid).await?;
            if format == OutputFormat::Table {
                emit(&format!("key/{kid} revoked"));
            }
        }
    }
    Ok(())
}

/// `key/es256-... created (the active ES256 key)`.
pub fn new_key_line(new: &Value, verb: &str, alg: &str) -> String {
    let kid = new.get("kid").and_then(Value::as_str).unwrap_or_default();
    let alg = new.get("alg").and_then(Value::as_str).unwrap_or(alg);
    format!("key/{kid} {verb} (the active {alg} key)")
}
