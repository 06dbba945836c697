//! The limit: how many signatures one core makes per second with a kept key pair
//! (`signet_jose::SigningKey`, parsed once), over a JWS signing input the size of a real
//! access token's. The runner measures it in a child process pinned with `taskset`, so it
//! runs on the core the server gets.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use signet_jose::{generate_pkcs8, Algorithm, SigningKey};

use crate::server::thread_cpu_time;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignRate {
    pub alg: String,
    pub signatures: u64,
    pub seconds: f64,
    /// Signatures per second of wall time on one thread.
    pub rate: f64,
    /// CPU time the signing thread ran (less than `seconds` when other processes took
    /// turns on its core).
    pub cpu_seconds: Option<f64>,
    /// Signatures per second of the thread's CPU time: the rate of a core of its own.
    pub rate_per_cpu_second: Option<f64>,
}

impl SignRate {
    /// Two measurements as one (their signatures and times added).
    pub fn mean(a: &SignRate, b: &SignRate) -> SignRate {
        let signatures = a.signatures + b.signatures;
        let seconds = a.seconds + b.seconds;
        let cpu_seconds = a.cpu_seconds.zip(b.cpu_seconds).map(|(x, y)| x + y);
        SignRate {
            alg: a.alg.clone(),
            signatures,
            seconds,
            rate: signatures as f64 / seconds,
            cpu_seconds,
            rate_per_cpu_second: cpu_seconds
                .filter(|c| *c > 0.0)
                .map(|c| signatures as f64 / c),
        }
    }
}

/// A signing input like the server's: `base64url(header).base64url(claims)` of a typical
/// `client_credentials` access token (378 bytes for ES256).
pub fn signing_input(alg: Algorithm) -> Vec<u8> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header = format!(
        r#"{{"alg":"{alg}","kid":"{}-0123456789abcdef","typ":"at+jwt"}}"#,
        alg.as_str().to_lowercase()
    );
    let claims = r#"{"iss":"http://127.0.0.1:8080","sub":"signet-lt-es256","aud":"signet-lt-es256-api","exp":1795415139,"nbf":1795411539,"iat":1795411539,"jti":"qMF5NK14EDjSApCsLEg8JQ","client_id":"signet-lt-es256","scope":"signet-lt.es256"}"#;
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    )
    .into_bytes()
}

/// Signs on this thread for about `duration` (after a short warm-up) and counts.
pub fn measure(alg: Algorithm, duration: Duration) -> Result<SignRate> {
    let der = generate_pkcs8(alg)?;
    let key = SigningKey::from_pkcs8("bench", alg, &der)?;
    let msg = signing_input(alg);
    let mut sig = Vec::with_capacity(512);
    let mut sign = || -> Result<()> {
        sig.clear();
        key.sign_into(&msg, &mut sig).context("signing failed")
    };
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        sign()?;
    }
    let start = Instant::now();
    let cpu_start = thread_cpu_time();
    let mut n: u64 = 0;
    loop {
        // Check the clock every few signatures only.
        for _ in 0..16 {
            sign()?;
        }
        n += 16;
        if start.elapsed() >= duration {
            break;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = match (cpu_start, thread_cpu_time()) {
        (Some(a), Some(b)) => Some((b - a).as_secs_f64()),
        _ => None,
    };
    Ok(SignRate {
        alg: alg.as_str().to_owned(),
        signatures: n,
        seconds,
        rate: n as f64 / seconds,
        cpu_seconds,
        rate_per_cpu_second: cpu_seconds.filter(|c| *c > 0.0).map(|c| n as f64 / c),
    })
}

/// Runs `measure` in a child process (`<this exe> sign ...`) pinned to `cpus`.
pub fn measure_pinned(
    alg: Algorithm,
    duration: Duration,
    cpus: Option<&str>,
    boost: bool,
) -> Result<SignRate> {
    let exe = std::env::current_exe()?;
    let mut cmd = crate::server::launcher(&exe, cpus, boost);
    cmd.arg("sign")
        .arg("--alg")
        .arg(alg.as_str())
        .arg("--seconds")
        .arg(format!("{}", duration.as_secs_f64()));
    let out =
        crate::server::output_boosted(&mut cmd, boost).context("running the signing child")?;
    if !out.status.success() {
        anyhow::bail!(
            "signing child failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_every_algorithm() {
        for alg in Algorithm::ALL {
            let r = measure(alg, Duration::from_millis(20)).unwrap();
            assert!(r.signatures >= 16 && r.rate > 0.0, "{r:?}");
        }
        assert!(signing_input(Algorithm::ES256).len() > 300);
    }
}
