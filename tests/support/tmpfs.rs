//! A small file system of a test's own, to fill up: a size-limited tmpfs mounted in a private
//! mount namespace (inside an unprivileged user namespace, so no root is needed), held open
//! by a holder process. Processes started through [`Tmpfs::launcher`] join that namespace and
//! see the tmpfs at [`Tmpfs::dir`]; the test reaches it through `/proc/<holder>/root`
//! ([`Tmpfs::host_path`]). Dropping the [`Tmpfs`] kills the holder; the tmpfs goes with the
//! last process in the namespace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const FILLER: &str = "filler";

/// A mounted tmpfs; see the module docs.
pub struct Tmpfs {
    holder: Child,
    pid: u32,
    /// The mount point (an empty directory outside the namespace).
    dir: PathBuf,
    _base: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it: `16m`). `Ok(None)` when this
    /// machine does not allow unprivileged user namespaces (or lacks `unshare`), after saying
    /// so on stderr: the caller skips its test.
    pub async fn mount(size: &str) -> Result<Option<Tmpfs>> {
        let base = tempfile::tempdir()?;
        let dir = base.path().join("mnt");
        std::fs::create_dir(&dir)?;
        let spawned = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            // The holder: mounts, says so, then waits on its stdin (held by this process).
            .arg("mount -t tmpfs -o size=\"$1\" tmpfs \"$0\" && echo mounted && exec cat")
            .arg(&dir)
            .arg(size)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut holder = match spawned {
            Ok(child) => child,
            Err(e) => {
                skip(&format!("cannot run unshare: {e}"));
                return Ok(None);
            }
        };
        let stdout = holder.stdout.take().context("holder stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
        if !matches!(&line, Ok(Ok(Some(l))) if l == "mounted") {
            let mut err = String::new();
            if let Some(mut e) = holder.stderr.take() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), e.read_to_string(&mut err)).await;
            }
            let _ = holder.start_kill();
            skip(&format!(
                "unshare --user --map-root-user --mount could not mount a tmpfs: {}",
                err.trim()
            ));
            return Ok(None);
        }
        let pid = holder.id().context("holder pid")?;
        Ok(Some(Tmpfs {
            holder,
            pid,
            dir,
            _base: base,
        }))
    }

    /// The mount point, as processes started through [`Tmpfs::launcher`] see it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The command that runs a program inside the namespace (for
    /// [`crate::ServeOptions::launcher`]): `nsenter` into the holder's user and mount
    /// namespaces, then exec.
    pub fn launcher(&self) -> Vec<String> {
        [
            "nsenter",
            "--target",
            &self.pid.to_string(),
            "--user",
            "--mount",
            "--",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `rel` under the mount point, as this process reaches it (through the holder's root).
    pub fn host_path(&self, rel: &str) -> PathBuf {
        let inside = self.dir.join(rel);
        let inside = inside.strip_prefix("/").unwrap_or(&inside);
        Path::new("/proc")
            .join(self.pid.to_string())
            .join("root")
            .join(inside)
    }

    /// Takes every free byte with a filler file, down to the last page; returns its size.
    pub fn fill(&self) -> Result<u64> {
        let path = self.host_path(FILLER);
        let mut f = std::fs::File::create(&path).with_context(|| path.display().to_string())?;
        let zeros = vec![0u8; 1 << 20];
        let mut written = 0u64;
        for chunk in [1 << 20, 4096, 1] {
            loop {
                match f.write(&zeros[..chunk]) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(e) => return Err(e).context("filling the tmpfs"),
                }
            }
        }
        if written == 0 {
            bail!("the tmpfs was full already");
        }
        Ok(written)
    }

    /// Removes the filler: the space is free again.
    pub fn free(&self) -> Result<()> {
        std::fs::remove_file(self.host_path(FILLER)).context("removing the filler")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = self.holder.start_kill();
    }
}

fn skip(why: &str) {
    eprintln!(
        "\n*** SKIPPED: this test needs a tmpfs in an unprivileged user namespace, and {why}. \
         (Enable user namespaces: sysctl kernel.unprivileged_userns_clone=1, or run outside \
         a container that forbids unshare.) ***\n"
    );
}
