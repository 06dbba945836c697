//! The node under load: a `signet serve` this runner starts on free loopback ports in a
//! temporary directory (optionally pinned with `taskset`), or a running one (`--target`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where the load goes and how to administer it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The issuer URL (public endpoints live under it).
    pub issuer: String,
    /// The admin listener, e.g. `http://127.0.0.1:8081` (the API is under `/admin/v1`).
    pub admin: String,
    pub admin_client_id: String,
    pub admin_secret: String,
}

/// A `signet serve` child process; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct LocalServer {
    child: Child,
    pub target: Target,
    _dir: tempfile::TempDir,
}

/// A command for `prog`, pinned to `cpus` (`taskset -c`) and, with `boost`, ahead of other
/// work: the real-time class (`chrt -f 1`: it runs as soon as it is runnable, so neither its
/// share of the core nor its wake-up latency depends on what else runs) where permitted,
/// else in a session of its own (`setsid`, hence its own scheduler autogroup) at
/// `nice -n -20` (call [`boost_autogroup`] on the child once spawned). None of the boosted
/// programs spins except the bounded signing loop, and the kernel keeps 5% of each core
/// for others (`sched_rt_runtime_us`).
pub fn launcher(prog: &Path, cpus: Option<&str>, boost: bool) -> Command {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if boost {
        if realtime_permitted() {
            args.extend(["chrt", "-f", "1"].map(Into::into));
        } else {
            args.extend(["setsid", "nice", "-n", "-20"].map(Into::into));
        }
    }
    if let Some(c) = cpus {
        args.extend(["taskset".into(), "-c".into(), c.into()]);
    }
    args.push(prog.as_os_str().to_owned());
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    cmd
}

/// Whether `chrt -f 1` may run a program here (root or CAP_SYS_NICE).
pub fn realtime_permitted() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        Command::new("chrt")
            .args(["-f", "1", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Raises the scheduler autogroup of `pid` (a child started by a boosting [`launcher`]) to
/// nice -20: with autogroups (`/proc/sys/kernel/sched_autogroup_enabled`), the kernel shares
/// a core between sessions first, so a process's own nice value counts only against its
/// own session. Waits (at most 2 s) until the child is in a session of its own; does
/// nothing where autogroups are off or the write is refused.
pub fn boost_autogroup(pid: u32) {
    if realtime_permitted() {
        return; // `launcher` used the real-time class: no session of its own to boost.
    }
    let group = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_owned))
    };
    let own = group("/proc/self/autogroup");
    let path = format!("/proc/{pid}/autogroup");
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match group(&path) {
            None => return,
            Some(g) if Some(&g) != own.as_ref() => {
                let _ = std::fs::write(&path, "-20");
                return;
            }
            Some(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Runs `cmd` to completion like `Command::output`, boosting its autogroup first.
pub fn output_boosted(cmd: &mut Command, boost: bool) -> std::io::Result<std::process::Output> {
    if !boost {
        return cmd.output();
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    boost_autogroup(child.id());
    child.wait_with_output()
}

/// The `signet` binary beside this executable (`target/<profile>/signet`).
pub fn sibling_signet_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?;
    // Test and example executables live one level down (deps/, examples/).
    if matches!(
        dir.file_name().and_then(|n| n.to_str()),
        Some("deps" | "examples")
    ) {
        dir = dir.parent()?;
    }
    Some(dir.join("signet"))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

fn http_ok(url: &str) -> bool {
    // A tiny blocking GET, to avoid needing a runtime here.
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

impl LocalServer {
    /// Starts `bin serve` and waits (at most 60 s) until `/readyz` answers 200. `cpus` is a
    /// `taskset -c` list for the server; `boost`: see [`launcher`].
    pub fn start(bin: &Path, cpus: Option<&str>, boost: bool) -> Result<LocalServer> {
        if !bin.exists() {
            bail!(
                "{} is missing: build it first (cargo build --release -p signet)",
                bin.display()
            );
        }
        let mut last = None;
        for _ in 0..5 {
            match Self::try_start(bin, cpus, boost) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("could not start signet")))
    }

    fn try_start(bin: &Path, cpus: Option<&str>, boost: bool) -> Result<LocalServer> {
        let dir = tempfile::tempdir()?;
        let (public, admin) = (free_port()?, free_port()?);
        let issuer = format!("http://127.0.0.1:{public}");
        let secret = format!("loadtests-admin-{:032x}", rand_u128());
        let mut cmd = launcher(bin, cpus, boost);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--issuer")
            .arg(&issuer)
            .arg("--listen")
            .arg(format!("127.0.0.1:{public}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin}"))
            .env("SIGNET_ADMIN_CLIENT_SECRET", &secret)
            .env(
                "SIGNET_LOG",
                std::env::var("SIGNET_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        if boost {
            boost_autogroup(child.id());
        }
        let ready = format!("{issuer}/readyz");
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("signet exited during start-up ({status}); port taken?");
            }
            if http_ok(&ready) {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("signet was not ready within 60 s");
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        Ok(LocalServer {
            child,
            target: Target {
                issuer,
                admin: format!("http://127.0.0.1:{admin}"),
                admin_client_id: "signet-admin".into(),
                admin_secret: secret,
            },
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process in KiB (Linux), if readable.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// CPU time the server's threads have run so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        process_cpu_time(self.pid())
    }
}

/// CPU time all threads of `pid` have run, from `/proc/<pid>/task/*/schedstat` (nanoseconds;
/// exited threads are not counted, and a node's worker threads live as long as it does).
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        if let Some(v) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            ns += v;
        }
    }
    Some(Duration::from_nanos(ns))
}

/// CPU time of the calling thread (`/proc/thread-self/schedstat`).
pub fn thread_cpu_time() -> Option<Duration> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 128 random bits from the OS, for secrets (no extra crate: the kernel has them).
pub fn rand_u128() -> u128 {
    use std::io::Read;
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    u128::from_le_bytes(b)
}
