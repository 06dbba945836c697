//! Runs Debian's `wrk` (4.1) with `lua/signet.lua` and reads back the script's result.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::scenario::{Source, Workload};
use crate::stats::{Mode, RawResult, RunResult};

/// The wrk script, embedded so that the binary runs from anywhere.
pub const SCRIPT: &str = include_str!("../lua/signet.lua");

/// How to run wrk for one measurement.
#[derive(Debug, Clone)]
pub struct WrkRun {
    /// Full URL wrk connects to (its path is not used: the prepared requests carry theirs).
    pub url: String,
    pub workload: Workload,
    pub mode: Mode,
    pub connections: u32,
    pub threads: u32,
    /// HTTP/1.1 pipelining depth (1: none): each write carries this many requests. Only for
    /// prepared requests; chained steps wait for each answer.
    pub pipeline: u32,
    /// Whole seconds (wrk's resolution), at least 1.
    pub duration: Duration,
    /// `taskset -c` list for wrk, e.g. `"1"`.
    pub cpus: Option<String>,
    /// Run wrk at the highest priority (see [`crate::server::launcher`]).
    pub boost: bool,
}

/// The `wrk` executable: `$WRK`, else `wrk` on the `PATH`.
pub fn wrk_bin() -> PathBuf {
    std::env::var_os("WRK")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("wrk"))
}

/// Fails with an install hint when wrk is missing.
pub fn check_wrk() -> Result<String> {
    let out = Command::new(wrk_bin())
        .arg("-v")
        .output()
        .with_context(|| {
            format!(
                "cannot run {:?}: install wrk (Debian: apt-get install wrk) or set WRK",
                wrk_bin()
            )
        })?;
    // `wrk -v` prints its version and usage and exits 1.
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    if !first.starts_with("wrk ") {
        bail!("{:?} does not look like wrk: {first:?}", wrk_bin());
    }
    Ok(first
        .split(" Copyright")
        .next()
        .unwrap_or(first)
        .trim()
        .to_owned())
}

/// A Lua string literal for any bytes.
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b' '..=b'~' => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

fn lua_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "nil".to_owned(), lua_string)
}

/// The Lua file the script loads (`SIGNET_LT_REQUESTS`): the workload as a table.
fn workload_lua(w: &Workload) -> String {
    let mut out = String::from("return {\n");
    match w {
        Workload::Fixed {
            requests,
            body_must,
        } => {
            out.push_str("  requests = {\n");
            for r in requests {
                out.push_str(&format!(
                    "    {{ head = {}, body = {} }},\n",
                    lua_string(&r.head),
                    lua_string(&r.body)
                ));
            }
            out.push_str("  },\n");
            out.push_str(&format!(
                "  body_must = {},\n",
                lua_opt(body_must.as_deref())
            ));
        }
        Workload::Steps {
            steps,
            start,
            seeds,
        } => {
            out.push_str("  steps = {\n");
            for (i, s) in steps.iter().enumerate() {
                out.push_str(&format!(
                    "    [{}] = {{ order = {i}, head = {}, body = {}, status = {}, next = {}, final = {},\n      captures = {{\n",
                    lua_string(&s.name),
                    lua_string(&s.request.head),
                    lua_string(&s.request.body),
                    s.status,
                    lua_opt(s.next.as_deref()),
                    s.completes_flow,
                ));
                for c in &s.captures {
                    let header = match &c.from {
                        Source::Body => None,
                        Source::Header(h) => Some(h.to_lowercase()),
                    };
                    out.push_str(&format!(
                        "        {{ var = {}, header = {}, pattern = {} }},\n",
                        lua_opt(c.var.as_deref()),
                        lua_opt(header.as_deref()),
                        lua_string(&c.pattern)
                    ));
                }
                out.push_str("      } },\n");
            }
            out.push_str("  },\n");
            let first = steps.first().map(|s| s.name.as_str());
            out.push_str(&format!("  first = {},\n", lua_opt(first)));
            out.push_str(&format!("  start = {},\n", lua_opt(start.as_deref())));
            out.push_str("  seeds = {\n");
            for seed in seeds {
                let vars: Vec<String> = seed
                    .vars
                    .iter()
                    .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_string(v)))
                    .collect();
                out.push_str(&format!(
                    "    {{ step = {}, vars = {{ {} }} }},\n",
                    lua_string(&seed.step),
                    vars.join(", ")
                ));
            }
            out.push_str("  },\n");
        }
    }
    out.push_str("}\n");
    out
}

/// Runs wrk once; `scenario` names the result.
pub fn run(scenario: &str, spec: &WrkRun) -> Result<RunResult> {
    if spec.workload.is_empty() {
        bail!("scenario {scenario} prepared no request");
    }
    let pipeline = spec.pipeline.max(1);
    if pipeline > 1 && matches!(spec.workload, Workload::Steps { .. }) {
        bail!("{scenario} chains each request to the previous answer: it cannot be pipelined");
    }
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("signet.lua");
    let reqs = dir.path().join("requests.lua");
    let out = dir.path().join("result.json");
    std::fs::write(&script, SCRIPT)?;
    std::fs::write(&reqs, workload_lua(&spec.workload))?;

    let secs = spec.duration.as_secs().max(1);
    let threads = spec.threads.max(1);
    let connections = spec.connections.max(threads);
    let mut cmd = crate::server::launcher(&wrk_bin(), spec.cpus.as_deref(), spec.boost);
    cmd.arg("-t")
        .arg(threads.to_string())
        .arg("-c")
        .arg(connections.to_string())
        .arg("-d")
        .arg(format!("{secs}s"))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(&script)
        .arg(&spec.url)
        .env("SIGNET_LT_REQUESTS", &reqs)
        .env("SIGNET_LT_OUT", &out)
        .env("SIGNET_LT_THREADS", threads.to_string())
        .env("SIGNET_LT_PIPELINE", pipeline.to_string());
    match spec.mode {
        Mode::Closed => {
            cmd.env("SIGNET_LT_MODE", "closed");
        }
        Mode::Open { rate } => {
            if rate.is_nan() || rate <= 0.0 {
                bail!("an open-loop run needs a positive rate, not {rate}");
            }
            cmd.env("SIGNET_LT_MODE", "open")
                .env("SIGNET_LT_RATE", format!("{rate}"));
        }
    }
    let output = crate::server::output_boosted(&mut cmd, spec.boost)
        .with_context(|| format!("running {:?}", wrk_bin()))?;
    if !output.status.success() || !out.exists() {
        bail!(
            "wrk failed ({}) for {scenario}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let raw = read_raw(&out)?;
    Ok(RunResult::from_raw(
        scenario,
        spec.mode,
        connections,
        threads,
        pipeline,
        &raw,
    ))
}

fn read_raw(path: &Path) -> Result<RawResult> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).with_context(|| format!("wrk script wrote {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Capture, PreparedRequest, Seed, Step};

    #[test]
    fn chained_steps_refuse_pipelining_before_wrk_starts() {
        let steps = Workload::Steps {
            steps: vec![Step {
                name: "refresh".into(),
                request: PreparedRequest {
                    head: "POST /t HTTP/1.1\r\n".into(),
                    body: "refresh_token={token}".into(),
                },
                status: 200,
                captures: Vec::new(),
                next: None,
                completes_flow: true,
            }],
            start: None,
            seeds: Vec::new(),
        };
        let spec = WrkRun {
            // Nothing listens there: the run must fail before it connects.
            url: "http://127.0.0.1:9/".into(),
            workload: steps,
            mode: Mode::Closed,
            connections: 1,
            threads: 1,
            pipeline: 2,
            duration: Duration::from_secs(1),
            cpus: None,
            boost: false,
        };
        let err = run("refresh_token", &spec).unwrap_err().to_string();
        assert!(err.contains("cannot be pipelined"), "{err}");
    }

    #[test]
    fn lua_strings_escape_everything_unusual() {
        assert_eq!(lua_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(lua_string("x\r\n"), r#""x\013\010""#);
        let lua = workload_lua(&Workload::Fixed {
            requests: vec![PreparedRequest {
                head: "GET / HTTP/1.1\r\n".into(),
                body: String::new(),
            }],
            body_must: None,
        });
        assert_eq!(
            lua,
            "return {\n  requests = {\n    { head = \"GET / HTTP/1.1\\013\\010\", body = \"\" },\n  },\n  body_must = nil,\n}\n"
        );
    }

    #[test]
    fn steps_become_a_table_of_steps_with_captures_and_seeds() {
        let lua = workload_lua(&Workload::Steps {
            steps: vec![Step {
                name: "refresh".into(),
                request: PreparedRequest {
                    head: "POST /t HTTP/1.1\r\n".into(),
                    body: "refresh_token={token}".into(),
                },
                status: 200,
                captures: vec![
                    Capture {
                        var: Some("token".into()),
                        from: Source::Body,
                        pattern: r#""refresh_token":"([^"]+)""#.into(),
                    },
                    Capture {
                        var: None,
                        from: Source::Header("Location".into()),
                        pattern: "code=(.)".into(),
                    },
                ],
                next: Some("refresh".into()),
                completes_flow: true,
            }],
            start: None,
            seeds: vec![Seed {
                step: "refresh".into(),
                vars: vec![("token".into(), "f.s".into())],
            }],
        });
        assert_eq!(
            lua,
            r#"return {
  steps = {
    ["refresh"] = { order = 0, head = "POST /t HTTP/1.1\013\010", body = "refresh_token={token}", status = 200, next = "refresh", final = true,
      captures = {
        { var = "token", header = nil, pattern = "\"refresh_token\":\"([^\"]+)\"" },
        { var = nil, header = "location", pattern = "code=(.)" },
      } },
  },
  first = "refresh",
  start = nil,
  seeds = {
    { step = "refresh", vars = { ["token"] = "f.s" } },
  },
}
"#
        );
    }
}
