//! The Herald under test: the release binary as a child process, on a
//! fresh data directory, so its memory can be read from /proc.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

pub const ADMIN_KEY: &str = "bench-admin-key-0123456789abcdef";

pub struct Herald {
    child: Child,
    pub base: String,
    pub data_dir: tempfile::TempDir,
}

impl Herald {
    pub fn start(binary: &Path, extra_args: &[String]) -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let mut child = Command::new(binary)
            .arg("serve")
            .args(["--data-dir", &data_dir.path().display().to_string()])
            .args(["--listen", "127.0.0.1:0", "--allow-target-cidr", "127.0.0.0/8"])
            .args(extra_args)
            .env("HERALD_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(address) = line.strip_prefix("herald listening on ") {
                        break address.trim().to_owned();
                    }
                }
                _ => bail!("herald exited before listening"),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Self { child, base, data_dir })
    }

    /// (current, peak) resident set size in MiB.
    pub fn rss_mib(&self) -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> f64 {
            status
                .lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
                .map_or(0.0, |kib| kib / 1024.0)
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }

    /// Sizes of the database file and of its WAL, in MiB.
    pub fn disk_mib(&self) -> (f64, f64) {
        let size =
            |name: &str| std::fs::metadata(self.data_dir.path().join(name)).map_or(0.0, |m| m.len() as f64 / 1048576.0);
        (size("herald.db"), size("herald.db-wal"))
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// CPU time this process has used so far (user + system).
    pub fn cpu(&self) -> Duration {
        cpu_of(self.child.id()).unwrap_or_default()
    }
}

/// A benchmark that fails half way must not leave Herald running.
impl Drop for Herald {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU time (user + system) of process `pid` so far, from /proc.
pub fn cpu_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time used so far by every process named `name` (e.g. all of
/// PostgreSQL's backends, whoever they serve).
pub fn cpu_of_all(name: &str) -> Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == name))
        .filter_map(cpu_of)
        .sum()
}

/// `target/release/herald` next to this benchmark's own binary.
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("herald")))
        .unwrap_or_else(|| PathBuf::from("target/release/herald"))
}
