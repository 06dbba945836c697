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
    /// `[bucket key, count]`, see [`bucket_upper_us`].
    pub histogram: Vec<(u64, u64)>,
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
    pub duration_s: f64,
    /// Requests written (open loop: compare with `rate * duration_s`).
    pub sent: u64,
    /// Answers received.
    pub completed: u64,
    /// Answers per second over the run.
    pub throughput: f64,
    /// 2xx answers per second.
    pub ok_throughput: f64,
    pub latency: Latency,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<String, u64>,
    pub socket_errors: SocketErrors,
    /// Answers without the echoed `X-Request-Id` (latency unknown).
    pub unmatched: u64,
    /// Non-2xx answers + socket errors + unmatched answers.
    pub errors: u64,
}

impl RunResult {
    pub fn from_raw(
        scenario: &str,
        mode: Mode,
        connections: u32,
        threads: u32,
        raw: &RawResult,
    ) -> RunResult {
        let duration_s = raw.duration_us as f64 / 1e6;
        let ok: u64 = raw
            .statuses
            .iter()
            .filter(|(s, _)| s.starts_with('2'))
            .map(|(_, n)| n)
            .sum();
        let not_ok: u64 = raw.statuses.values().sum::<u64>() - ok;
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
        }
    }

    /// `"-"` or `"503: 12, read: 1"`.
    pub fn error_summary(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .filter(|(s, _)| !s.starts_with('2'))
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
        let r = RunResult::from_raw("jwks", Mode::Closed, 4, 1, &raw);
        assert_eq!(r.errors, 13);
        assert_eq!(r.throughput, 55.0);
        assert_eq!(r.ok_throughput, 50.0);
        assert_eq!(r.error_summary(), "503: 10, read: 2, unmatched: 1");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["mode"], "closed");
    }
}
