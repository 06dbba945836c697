//! The load tools stay runnable: every scenario (signet-loadtests: the standard suite and
//! the extras), closed loop and open loop, for a second each against a `serve` node the
//! suite starts from the binary under test, with no error: every answer has the status
//! (and content) its step expects. Needs `wrk` (scripts/test.sh installs it); the figures
//! themselves are in loadtests/RESULTS.md, not asserted here.

use std::time::Duration;

use serde_json::Value;
use signet_loadtests::{run_suite, Node, Scenario, SuiteOptions};

/// Runs `scenarios` closed loop, then open loop at `rate`, and checks every run.
async fn suite(
    scenarios: &[Scenario],
    rate: f64,
    threads: u32,
    pipeline: u32,
) -> anyhow::Result<Vec<Value>> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("suite.json");
    let opts = SuiteOptions {
        node: Node::Local {
            signet_bin: Some(signet_tests::signet_bin()),
            cpus: None,
        },
        client_cpus: None,
        scenarios: scenarios.to_vec(),
        duration: Duration::from_secs(1),
        warmup: Duration::ZERO,
        connections: 4,
        open_connections: 8,
        threads,
        pipeline,
        open_rate: Some(rate),
        out: out.clone(),
        ..SuiteOptions::default()
    };
    run_suite(&opts).await?;

    // The result file, as a script reading it would.
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    let runs = json["runs"].as_array().expect("runs").clone();
    assert_eq!(runs.len(), 2 * scenarios.len(), "{json}");
    for (i, sc) in scenarios.iter().enumerate() {
        for (run, mode) in runs[2 * i..2 * i + 2].iter().zip(["closed", "open"]) {
            check_run(*sc, run, mode, rate);
            // Chained requests wait for their answers: never pipelined.
            let depth = if sc.chained() { 1 } else { pipeline };
            assert_eq!(run["pipeline"], depth, "{run}");
        }
    }
    Ok(runs)
}

fn check_run(sc: Scenario, run: &Value, mode: &str, rate: f64) {
    assert_eq!(run["scenario"], sc.name().as_str());
    assert_eq!(run["mode"], mode);
    assert_eq!(run["errors"], 0, "{run}");
    assert_eq!(run["failed"], serde_json::json!({}), "{run}");
    let completed = run["completed"].as_u64().unwrap();
    let by_status: u64 = run["statuses"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(by_status, completed, "{run}");
    // What each scenario's answers are: 200 (and 302 from the authorization endpoint
    // and the login form).
    let ok = run["statuses"]["200"].as_u64().unwrap_or(0);
    let redirects = run["statuses"]["302"].as_u64().unwrap_or(0);
    match sc {
        Scenario::AuthorizationCode | Scenario::Login => {
            assert!(ok > 0 && redirects > 0, "{run}");
            assert_eq!(ok + redirects, completed, "{run}");
        }
        _ => assert_eq!(ok, completed, "{run}"),
    }
    assert_eq!(run["latency"]["samples"].as_u64(), Some(completed), "{run}");
    let secs = run["duration_s"].as_f64().unwrap();
    assert!((0.9..5.0).contains(&secs), "{run}");

    // Multi-step scenarios report each step and the flows; every step succeeded.
    let steps = run["steps"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    match sc {
        Scenario::RefreshToken => assert_eq!(names, ["refresh"], "{run}"),
        Scenario::AuthorizationCode => assert_eq!(names, ["authorize", "token"], "{run}"),
        Scenario::Login => {
            assert_eq!(names, ["authorize", "login_page", "login_post"], "{run}")
        }
        _ => assert!(steps.is_empty(), "{run}"),
    }
    for s in &steps {
        assert!(s["ok"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(s["failed"], 0, "{run}");
    }
    if names.len() > 1 {
        let flows = run["flows"].as_u64().unwrap();
        let first = steps[0]["ok"].as_u64().unwrap();
        // Every flow began with the first step; at most one flow per connection was cut
        // short by the end of the run.
        assert!(flows > 0 && flows <= first, "{run}");
        let conns = run["connections"].as_u64().unwrap();
        assert!(first - flows <= conns, "{run}");
    } else {
        assert!(run.get("flows").is_none(), "{run}");
    }
    if sc == Scenario::RefreshToken {
        // The pool holds two tokens per connection, each used once: far more refreshes
        // than minted tokens, with no error, means every answer's rotated token worked
        // (a reused one would have revoked its family and failed from then on).
        let pool = 2 * run["connections"].as_u64().unwrap();
        assert!(
            completed > 2 * pool,
            "{completed} refreshes from {pool} tokens: {run}"
        );
    }

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_closed_and_open_loop_without_errors() -> anyhow::Result<()> {
    // Every scenario but `login`, whose password hashing (argon2id, about 20 MiB and tens
    // of milliseconds each) gets a lower rate of its own below.
    let fast: Vec<Scenario> = Scenario::all()
        .into_iter()
        .filter(|s| *s != Scenario::Login)
        .collect();
    assert!(fast.len() + 1 == Scenario::all().len());
    assert!(Scenario::STANDARD.iter().all(|s| fast.contains(s)));
    suite(&fast, 100.0, 1, 1).await?;
    suite(&[Scenario::Login], 30.0, 1, 1).await?;
    // Two wrk threads: each takes its own share of the refresh tokens (a token sent by
    // both would be reused, revoking its family, and fail).
    suite(&[Scenario::RefreshToken], 100.0, 2, 1).await?;
    // Pipelined: eight requests per write, each answered in order and matched to its own
    // stamp (the open loop's count and every latency sample are checked as above); the
    // chained scenario among them runs unpipelined.
    suite(
        &[
            Scenario::ClientCredentials(signet_jose::Algorithm::EdDSA),
            Scenario::Jwks,
            Scenario::RefreshToken,
        ],
        200.0,
        1,
        8,
    )
    .await?;
    Ok(())
}

/// `scale` against a local cluster it brings up itself (`deploy/local/cluster.sh`: NATS,
/// Redis with Sentinel, key managers, three issuers, HAProxy): 1 then 2 issuers in rotation,
/// both default scenarios, a second per run and a 2-step ladder, with no error; the result
/// file says which issuers served, where every process ran and how much memory each
/// issuer held. The cluster is gone afterwards. Needs what `cluster.sh` needs
/// (scripts/test.sh installs nats-server, redis-server and haproxy) and `wrk`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_measures_one_and_two_issuers_behind_the_load_balancer() -> anyhow::Result<()> {
    use signet_loadtests::scale::{free_port_block, ClusterSource, Pinning, DEFAULT_SCENARIOS};
    use signet_loadtests::{run_scale, ScaleOptions};

    let dir = tempfile::tempdir()?;
    let out = dir.path().join("scale.json");
    // Below the ranges other tests take ports from (faults.rs: 3000 and up, free_port:
    // 12000 and up), so that no test started meanwhile takes one of the cluster's.
    let base = free_port_block(82, 1100, 3000)?;
    // Pinned, but to every core: the pinning runs without taking cores from other tests.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all = format!("0-{}", cores - 1);
    let ladder = vec![0.25, 0.5];
    let opts = ScaleOptions {
        cluster: ClusterSource::Start {
            signet_bin: Some(signet_tests::signet_bin()),
            script: None,
            port_base: Some(base),
            env: vec![
                (
                    "NATS_SERVER".into(),
                    signet_tests::nats::nats_server_bin().display().to_string(),
                ),
                (
                    "REDIS_SERVER".into(),
                    signet_tests::redis::redis_server_bin()
                        .display()
                        .to_string(),
                ),
                (
                    "REDIS_CLI".into(),
                    signet_tests::redis::redis_cli_bin().display().to_string(),
                ),
                (
                    "HAPROXY".into(),
                    signet_tests::lb::haproxy_bin().display().to_string(),
                ),
            ],
        },
        nodes: vec![1, 2],
        ladder: ladder.clone(),
        pinning: Pinning::parse(Some(&all), Some(&all), None),
        duration: Duration::from_secs(1),
        warmup: Duration::ZERO,
        connections: 4,
        open_connections: 8,
        out: out.clone(),
        ..ScaleOptions::default()
    };
    let started = std::time::Instant::now();
    let report = run_scale(&opts).await?;
    eprintln!("loadtests: scale took {:?}", started.elapsed());
    assert_eq!(report.errors(), 0);
    // `cluster.sh down` ran: the load balancer's and the first issuer's ports are free.
    for port in [base + 80, base + 81, base + 50, base] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still taken after scale"
        );
    }

    // The result file, as a script reading it would.
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    assert_eq!(json["command"], "scale");
    assert_eq!(json["started_cluster"], true);
    assert_eq!(json["ladder"], serde_json::json!(ladder));
    let placement = json["placement"].as_array().expect("placement");
    let names: Vec<&str> = placement
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "issuer-1", "issuer-2", "issuer-3", "haproxy", "nats-1", "redis-1",
    ] {
        assert!(names.contains(&name), "{name} not placed: {json}");
    }
    assert_eq!(placement.len(), 15, "{json}");
    assert!(
        placement
            .iter()
            .all(|p| p["pid"].as_u64() > Some(0)
                && !p["cpus"].as_str().unwrap_or_default().is_empty())
    );
    let rest = json["rss_kib_at_rest"].as_object().expect("rss at rest");
    assert_eq!(rest.len(), 3, "{json}");
    assert!(rest.values().all(|v| v.as_u64() > Some(1024)), "{json}");

    let scenarios = json["scenarios"].as_array().expect("scenarios");
    let expected: Vec<String> = DEFAULT_SCENARIOS.iter().map(|s| s.name()).collect();
    let got: Vec<&str> = scenarios
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(got, expected);
    for s in scenarios {
        let by_nodes = s["by_nodes"].as_array().unwrap();
        let nodes: Vec<u64> = by_nodes
            .iter()
            .map(|n| n["nodes"].as_u64().unwrap())
            .collect();
        assert_eq!(nodes, [1, 2], "{s}");
        for n in by_nodes {
            let nodes = n["nodes"].as_u64().unwrap() as usize;
            let max = &n["max"];
            assert_eq!(max["mode"], "closed", "{max}");
            assert_eq!(max["step"], "max");
            let maximum = max["ok_throughput"].as_f64().unwrap();
            assert!(max["completed"].as_u64() > Some(0), "{max}");
            let steps = n["ladder"].as_array().unwrap();
            assert_eq!(steps.len(), ladder.len(), "{n}");
            for (step, f) in steps.iter().zip(&ladder) {
                assert_eq!(step["mode"], "open", "{step}");
                assert_eq!(step["fraction"].as_f64(), Some(*f));
                let rate = step["rate"].as_f64().unwrap();
                assert!((rate - (maximum * f).max(1.0)).abs() < 1e-6, "{step}");
                assert!(step["sent"].as_u64() > Some(0), "{step}");
            }
            for run in std::iter::once(max).chain(steps) {
                assert_eq!(run["errors"], 0, "{run}");
                assert_eq!(run["failed"], serde_json::json!({}), "{run}");
                let completed = run["completed"].as_u64().unwrap();
                assert_eq!(
                    run["statuses"]["200"].as_u64().unwrap_or(0),
                    completed,
                    "{run}"
                );
                assert_eq!(run["latency"]["samples"].as_u64(), Some(completed));
                let issuers = run["issuers"].as_array().unwrap();
                assert_eq!(issuers.len(), 3, "{run}");
                for (i, issuer) in issuers.iter().enumerate() {
                    let in_rotation = i < nodes;
                    assert_eq!(issuer["in_rotation"], in_rotation, "{run}");
                    // HAProxy sent the run's requests to the issuers in rotation only.
                    let routed = issuer["requests"].as_u64().expect("requests routed");
                    if in_rotation {
                        assert!(routed > 0, "issuer-{} idle: {run}", i + 1);
                    } else {
                        assert_eq!(routed, 0, "issuer-{} out of rotation: {run}", i + 1);
                    }
                    for key in ["rss_kib_before", "rss_kib_max", "rss_kib_after"] {
                        assert!(issuer[key].as_u64() > Some(1024), "{key}: {run}");
                    }
                }
            }
        }
    }
    Ok(())
}
