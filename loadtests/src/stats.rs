//! Results of one run: what wrk's script wrote, turned into throughput, percentiles and
//! error counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What `lua/signet.lua` writes in `done()`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawResult {
    pub mode: String,
    pub duration_us: u64,
    pub completed: u64,
    pub bytes: u64,
    pub sent: u64,
    pub unmatched: u64,
    pub max_us: f64,
    pub socket_errors: SocketErrors,
    pub statuses: BTreeMap<String, u64>,
    /// The answers that were not a success, by HTTP status (absent: every non-2xx one).
    #[serde(default)]
    pub failed: Option<BTreeMap<String, u64>>,
    /// `[bucket key, count]`, see [`bucket_upper_us`].
    pub histogram: Vec<(u64, u64)>,
    /// Completed flows (successes of a multi-step workload's final step).
    #[serde(default)]
    pub flows: u64,
    /// Per step of a multi-step workload.
    #[serde(default)]
    pub steps: BTreeMap<String, RawStep>,
}

/// One step's share of a run, as the script writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct RawStep {
    /// Its place in the flow.
    #[serde(default)]
    pub order: u32,
    pub ok: u64,
    pub failed: u64,
    pub max_us: f64,
    pub histogram: Vec<(u64, u64)>,
}

/// One step of a multi-step scenario in the result file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    pub step: String,
    /// Successful answers of this step.
    pub ok: u64,
    pub failed: u64,
    /// Successful answers per second.
    pub ok_throughput: f64,
    /// Over every answer of this step.
    pub latency: Latency,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketErrors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
}

impl SocketErrors {
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// The upper bound, in microseconds, of the script's histogram bucket `key`: exact below
/// 1024 µs (1 µs buckets), then 512 buckets per power of two.
pub fn bucket_upper_us(key: u64) -> f64 {
    if key < 1024 {
        (key + 1) as f64
    } else {
        let e = (key / 1024) as i32;
        let m = (key % 1024) as f64;
        (m + 1.0) / 1024.0 * 2f64.powi(e)
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub samples: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Percentiles from the bucketed histogram (each the upper bound of its bucket, never
    /// above the exact maximum).
    pub fn from_histogram(hist: &[(u64, u64)], max_us: f64) -> Latency {
        let mut buckets: Vec<(f64, u64)> =
            hist.iter().map(|&(k, n)| (bucket_upper_us(k), n)).collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let samples: u64 = buckets.iter().map(|b| b.1).sum();
        if samples == 0 {
            return Latency::default();
        }
        let sum: f64 = buckets.iter().map(|&(v, n)| v * n as f64).sum();
        let pct = |p: f64| -> f64 {
            let rank = ((p / 100.0) * samples as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for &(v, n) in &buckets {
                seen += n;
                if seen >= rank {
                    return v.min(max_us);
                }
            }
            max_us
        };
        Latency {
            samples,
            mean_us: (sum / samples as f64).min(max_us),
            p50_us: pct(50.0),
            p90_us: pct(90.0),
            p99_us: pct(99.0),
            p999_us: pct(99.9),
            max_us,
        }
    }
}

/// How a run offered its load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    /// Each connection sends its next request when the previous answer arrived.
    Closed,
    /// Constant arrival rate (requests per second over all connections).
    Open { rate: f64 },
}

impl Mode {
    pub fn label(&self) -> String {
        match self {
            Mode::Closed => "closed".to_owned(),
            Mode::Open { rate } => format!("open {rate:.0}/s"),
        }
    }
}

/// One run of one scenario, as it goes into the JSON result file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub scenario: String,
    #[serde(flatten)]
    pub mode: Mode,
    pub connections: u32,
    pub threads: u32,
    /// HTTP/1.1 pipelining depth: requests written at once on a connection (1: none).
    #[serde(default = "one")]
    pub pipeline: u32,
    pub duration_s: f64,
    /// Requests written (open loop: compare with `rate * duration_s`).
    pub sent: u64,
    /// Answers received.
    pub completed: u64,
    /// Answers per second over the run.
    pub throughput: f64,
    /// Successful answers (2xx, or the status and content a step expects) per second.
    pub ok_throughput: f64,
    pub latency: Latency,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<String, u64>,
    pub socket_errors: SocketErrors,
    /// Answers without the echoed `X-Request-Id` (latency unknown).
    pub unmatched: u64,
    /// The answers that were not a success, by HTTP status (for a step, an answer without
    /// its expected status and content).
    pub failed: BTreeMap<String, u64>,
    /// Failed answers + socket errors + unmatched answers.
    pub errors: u64,
    /// Multi-step scenarios: completed flows (a request is one step of a flow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_throughput: Option<f64>,
    /// Multi-step scenarios (and `refresh_token`): per step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
}

pub(crate) fn one() -> u32 {
    1
}

impl RunResult {
    pub fn from_raw(
        scenario: &str,
        mode: Mode,
        connections: u32,
        threads: u32,
        pipeline: u32,
        raw: &RawResult,
    ) -> RunResult {
        let duration_s = raw.duration_us as f64 / 1e6;
        let failed: BTreeMap<String, u64> = match &raw.failed {
            Some(f) => f.clone(),
            None => raw
                .statuses
                .iter()
                .filter(|(s, _)| !s.starts_with('2'))
                .map(|(s, n)| (s.clone(), *n))
                .collect(),
        };
        let not_ok: u64 = failed.values().sum();
        let ok = raw.statuses.values().sum::<u64>().saturating_sub(not_ok);
        let per_s = |n: u64| {
            if duration_s > 0.0 {
                n as f64 / duration_s
            } else {
                0.0
            }
        };
        RunResult {
            scenario: scenario.to_owned(),
            mode,
            connections,
            threads,
            pipeline,
            duration_s,
            sent: raw.sent,
            completed: raw.completed,
            throughput: per_s(raw.completed),
            ok_throughput: per_s(ok),
            latency: Latency::from_histogram(&raw.histogram, raw.max_us),
            statuses: raw.statuses.clone(),
            socket_errors: raw.socket_errors,
            unmatched: raw.unmatched,
            errors: not_ok + raw.socket_errors.total() + raw.unmatched,
            failed,
            flows: (raw.steps.len() > 1).then_some(raw.flows),
            flow_throughput: (raw.steps.len() > 1).then(|| per_s(raw.flows)),
            steps: {
                let mut steps: Vec<(&String, &RawStep)> = raw.steps.iter().collect();
                steps.sort_by_key(|(_, s)| s.order);
                steps
            }
            .into_iter()
            .map(|(name, s)| StepResult {
                step: name.clone(),
                ok: s.ok,
                failed: s.failed,
                ok_throughput: per_s(s.ok),
                latency: Latency::from_histogram(&s.histogram, s.max_us),
            })
            .collect(),
        }
    }

    /// `"-"` or `"503: 12, read: 1"`.
    pub fn error_summary(&self) -> String {
        let mut parts: Vec<String> = self
            .failed
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let e = &self.socket_errors;
        for (name, n) in [
            ("connect", e.connect),
            ("read", e.read),
            ("write", e.write),
            ("timeout", e.timeout),
            ("unmatched", self.unmatched),
        ] {
            if n > 0 {
                parts.push(format!("{name}: {n}"));
            }
        }
        if parts.is_empty() {
            "-".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// `1234.5` µs as `1.23 ms`, `87` µs as `87 µs`.
pub fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bucket key the Lua script computes for `v` µs (math.frexp).
    fn lua_key(v: f64) -> u64 {
        if v < 1024.0 {
            v.floor() as u64
        } else {
            let e = v.log2().floor() as i32 + 1;
            let m = v / 2f64.powi(e);
            (e as u64) * 1024 + (m * 1024.0).floor() as u64
        }
    }

    #[test]
    fn buckets_bound_their_values_within_two_per_mille() {
        for v in [
            0.0,
            1.5,
            999.9,
            1023.0,
            1024.0,
            1500.0,
            12_345.0,
            2_000_000.0,
        ] {
            let upper = bucket_upper_us(lua_key(v));
            assert!(upper > v, "{v} -> {upper}");
            assert!(upper <= (v * 1.002).max(v + 1.0), "{v} -> {upper}");
        }
    }

    #[test]
    fn percentiles() {
        // 1000 samples: 1..=1000 µs, one each.
        let hist: Vec<(u64, u64)> = (1..=1000).map(|v| (lua_key(v as f64), 1)).collect();
        let l = Latency::from_histogram(&hist, 1000.0);
        assert_eq!(l.samples, 1000);
        assert_eq!(l.p50_us, 501.0);
        assert_eq!(l.p99_us, 991.0);
        assert_eq!(l.p999_us, 1000.0);
        assert_eq!(l.max_us, 1000.0);
        assert!(Latency::from_histogram(&[], 0.0).samples == 0);
    }

    #[test]
    fn errors_count_non_2xx_socket_errors_and_unmatched() {
        let raw: RawResult = serde_json::from_str(
            r#"{"mode":"closed","duration_us":2000000,"completed":110,"bytes":1,"sent":111,
                "unmatched":1,"max_us":900.0,
                "socket_errors":{"connect":0,"read":2,"write":0,"timeout":0},
                "statuses":{"200":100,"503":10},"histogram":[[100,110]]}"#,
        )
        .unwrap();
        let r = RunResult::from_raw("jwks", Mode::Closed, 4, 1, 1, &raw);
        assert_eq!(r.errors, 13);
        assert_eq!(r.throughput, 55.0);
        assert_eq!(r.ok_throughput, 50.0);
        assert_eq!(r.error_summary(), "503: 10, read: 2, unmatched: 1");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["mode"], "closed");
        assert!(json.get("flows").is_none() && json.get("steps").is_none());
    }

    #[test]
    fn steps_judge_by_expectation_and_count_flows() {
        // A code flow: 60 authorize answers (302, one an error redirect without a code),
        // 59 token answers (200, one 400).
        let raw: RawResult = serde_json::from_str(
            r#"{"mode":"closed","duration_us":1000000,"completed":119,"bytes":1,"sent":120,
                "unmatched":0,"max_us":900.0,
                "socket_errors":{"connect":0,"read":0,"write":0,"timeout":0},
                "statuses":{"200":58,"302":60,"400":1},"failed":{"302":1,"400":1},
                "histogram":[[100,119]],"flows":58,
                "steps":{"token":{"order":1,"ok":58,"failed":1,"max_us":900.0,"histogram":[[100,59]]},
                         "authorize":{"order":0,"ok":59,"failed":1,"max_us":150.0,"histogram":[[100,60]]}}}"#,
        )
        .unwrap();
        let r = RunResult::from_raw("authorization_code", Mode::Closed, 4, 1, 1, &raw);
        assert_eq!(r.errors, 2);
        assert_eq!(r.ok_throughput, 117.0);
        assert_eq!(r.flows, Some(58));
        assert_eq!(r.flow_throughput, Some(58.0));
        assert_eq!(r.error_summary(), "302: 1, 400: 1");
        assert_eq!(r.steps.len(), 2);
        assert_eq!(r.steps[0].step, "authorize");
        assert_eq!(r.steps[0].latency.samples, 60);
        assert_eq!(r.steps[1].ok_throughput, 58.0);
        // One step (refresh_token): per step, but no flows.
        let raw: RawResult = serde_json::from_str(
            r#"{"mode":"closed","duration_us":1000000,"completed":10,"bytes":1,"sent":10,
                "unmatched":0,"max_us":900.0,
                "socket_errors":{"connect":0,"read":0,"write":0,"timeout":0},
                "statuses":{"200":10},"failed":{},"histogram":[[100,10]],"flows":10,
                "steps":{"refresh":{"ok":10,"failed":0,"max_us":900.0,"histogram":[[100,10]]}}}"#,
        )
        .unwrap();
        let r = RunResult::from_raw("refresh_token", Mode::Closed, 4, 1, 1, &raw);
        assert_eq!((r.errors, r.flows, r.steps.len()), (0, None, 1));
        assert_eq!(r.error_summary(), "-");
    }
}
