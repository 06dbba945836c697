//! Bad-input fuzzing of the admin API from its own OpenAPI document: schemathesis (PyPI,
//! installed into `target/venv` by `scripts/test.sh`, which exports `SCHEMATHESIS`) runs
//! against a real `signet serve` with an admin token and a bounded number of examples per
//! operation. No answer may be a 5xx or stray from the document (status, content type,
//! headers, body schema); schema-violating bodies must be refused; and every 4xx must be a
//! JSON error body, a 400 naming the `field` and the `rule` (`tests/schemathesis/hooks.py`).
//!
//! The seed is fixed so a failure reproduces; set `SIGNET_SCHEMATHESIS_SEED` to explore
//! other inputs, and `SIGNET_SCHEMATHESIS_EXAMPLES` for more examples per operation.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use signet_tests::{Serve, ServeOptions};

/// Examples per operation and phase: bounded, so the run stays well under a minute.
const MAX_EXAMPLES: u32 = 30;
const SEED: u64 = 20_251_123;
/// Checks of schemathesis, plus ours from the hooks file.
const CHECKS: &[&str] = &[
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "ignored_auth",
    "signet_error_body",
];
/// The whole run, however slow the machine.
const PATIENCE: Duration = Duration::from_secs(300);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

/// `$SCHEMATHESIS`, or the one `scripts/test.sh` installs; never a silent skip.
fn schemathesis() -> PathBuf {
    let install = "run scripts/test.sh once (it installs schemathesis into target/venv), \
                   or set SCHEMATHESIS to a schemathesis executable";
    let bin = match std::env::var_os("SCHEMATHESIS") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/venv/bin/schemathesis"),
    };
    assert!(
        bin.is_file(),
        "schemathesis is missing ({} does not exist): {install}",
        bin.display()
    );
    bin
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_only_json_errors() -> anyhow::Result<()> {
    let bin = schemathesis();
    let hooks = workspace_root().join("tests/schemathesis/hooks.py");
    assert!(hooks.is_file(), "{} is missing", hooks.display());
    let dir = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let s = Serve::start(dir.path(), ServeOptions::default()).await?;
    let token = s.admin_token().await?;
    let schema_url = format!("{}/openapi.json", s.admin);
    let doc: Value = s.http().get(&schema_url).send().await?.json().await?;
    let operations: usize = doc["paths"]
        .as_object()
        .context("paths")?
        .values()
        .map(|item| item.as_object().map_or(0, |m| m.len()))
        .sum();
    assert!(operations >= 20, "{operations} operations in the document");

    let seed: u64 = env_or("SIGNET_SCHEMATHESIS_SEED", SEED);
    let examples: u32 = env_or("SIGNET_SCHEMATHESIS_EXAMPLES", MAX_EXAMPLES);
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.arg("run")
        .arg(&schema_url)
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", &CHECKS.join(",")])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &examples.to_string()])
        .args(["--seed", &seed.to_string()])
        // One worker: the node's state then follows from the seed alone.
        .args(["--workers", "1"])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "10"])
        .arg("--no-color")
        .env("SCHEMATHESIS_HOOKS", &hooks)
        // Its caches (`.schemathesis`, `.hypothesis`) go to a temporary directory.
        .current_dir(work.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let start = Instant::now();
    let out = tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .with_context(|| format!("schemathesis did not finish within {PATIENCE:?}"))?
        .with_context(|| format!("run {}", bin.display()))?;
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!(
        "{} run {schema_url} --seed {seed} --max-examples {examples} (SCHEMATHESIS_HOOKS={}) \
         exited {} after {elapsed:.1?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        bin.display(),
        hooks.display(),
        out.status,
    );
    assert!(out.status.success(), "{report}");
    // Not vacuous: every operation schemathesis found was tested (it leaves out the
    // document's own `GET /admin/v1/openapi.json`).
    let number_after = |label: &str| -> Option<&str> {
        let line = stdout.lines().find_map(|l| l.trim().strip_prefix(label))?;
        Some(line.trim())
    };
    let selected = number_after("Selected:").unwrap_or_default();
    let tested = number_after("Tested:").unwrap_or_default();
    let all = format!("{tested}/{tested}");
    assert!(
        selected == all && tested.parse::<usize>().unwrap_or(0) + 1 >= operations,
        "not every one of the {operations} operations was tested \
         (selected {selected:?}, tested {tested:?}):\n{report}"
    );
    println!("{report}");
    s.stop().await?;
    Ok(())
}
