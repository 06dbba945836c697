//! The load tools stay runnable: every scenario of the standard suite (signet-loadtests),
//! closed loop and open loop, for a second each against a `serve` node the suite starts from
//! the binary under test. Needs `wrk` (scripts/test.sh installs it); the figures themselves
//! are in loadtests/RESULTS.md, not asserted here.

use std::time::Duration;

use signet_loadtests::{run_suite, Node, Scenario, SuiteOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_closed_and_open_loop_without_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("suite.json");
    let rate = 100.0;
    let opts = SuiteOptions {
        node: Node::Local {
            signet_bin: Some(signet_tests::signet_bin()),
            cpus: None,
        },
        client_cpus: None,
        duration: Duration::from_secs(1),
        warmup: Duration::ZERO,
        connections: 4,
        open_connections: 8,
        open_rate: Some(rate),
        out: out.clone(),
        ..SuiteOptions::default()
    };
    run_suite(&opts).await?;

    // The result file, as a script reading it would.
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    let runs = json["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2 * Scenario::STANDARD.len(), "{json}");
    for (i, sc) in Scenario::STANDARD.iter().enumerate() {
        for (run, mode) in runs[2 * i..2 * i + 2].iter().zip(["closed", "open"]) {
            assert_eq!(run["scenario"], sc.name().as_str());
            assert_eq!(run["mode"], mode);
            assert_eq!(run["errors"], 0, "{run}");
            let completed = run["completed"].as_u64().unwrap();
            let ok = run["statuses"]["200"].as_u64().unwrap_or(0);
            assert_eq!(ok, completed, "{run}");
            assert_eq!(run["latency"]["samples"].as_u64(), Some(completed), "{run}");
            let secs = run["duration_s"].as_f64().unwrap();
            assert!((0.9..5.0).contains(&secs), "{run}");
            if mode == "closed" {
                assert!(
                    completed >= 20,
                    "a closed-loop second answered {completed}: {run}"
                );
            } else {
                // A constant arrival rate: about `rate` per second, neither a burst nor a stall.
                let expected = rate * secs;
                let c = completed as f64;
                assert!(
                    c > 0.5 * expected && c < 1.2 * expected,
                    "{c} vs {expected}: {run}"
                );
                assert_eq!(run["rate"].as_f64(), Some(rate));
            }
            let p = &run["latency"];
            let (p50, p99, max) = (
                p["p50_us"].as_f64(),
                p["p99_us"].as_f64(),
                p["max_us"].as_f64(),
            );
            assert!(p50 > Some(0.0) && p50 <= p99 && p99 <= max, "{run}");
        }
    }
    Ok(())
}
