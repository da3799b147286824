//! Watching a running process through /proc: finding the child just
//! spawned, its peak resident set (`VmHWM`) and the moment it exits.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// How often a watched process is looked at.
pub const POLL: Duration = Duration::from_millis(5);

/// The pid of this process's only living child, waiting up to `timeout`
/// for it to appear. The figures run one child at a time, and reap each
/// before starting the next.
pub fn only_child(timeout: Duration) -> Result<u32> {
    let me = std::process::id();
    let deadline = Instant::now() + timeout;
    loop {
        let children: Vec<u32> = std::fs::read_dir("/proc")?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| parent(*pid) == Some(me))
            .collect();
        match children.as_slice() {
            [pid] => return Ok(*pid),
            [] if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            [] => bail!("no child process appeared within {timeout:?}"),
            many => bail!("expected one child process, found {many:?}"),
        }
    }
}

/// The parent pid of `pid`, from /proc/PID/stat (whose second field, the
/// command name in parentheses, may itself hold spaces and parentheses).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// What a watch saw.
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    /// The last `VmHWM` read before the process exited, in bytes.
    pub peak_rss: u64,
    /// When it was first seen gone or a zombie.
    pub exited: Instant,
}

/// Polls `pid` every [`POLL`] until it has exited (gone, or a zombie not
/// reaped yet), recording its peak resident set. `VmHWM` is the kernel's
/// high-water mark of the resident set, so a poll misses only growth in the
/// last interval before exit; fails after `timeout`.
pub fn watch(pid: u32, timeout: Duration) -> Result<Watched> {
    let deadline = Instant::now() + timeout;
    let mut peak_rss = 0;
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let state = field(&status, "State:");
        if status.is_empty() || state.starts_with('Z') || state.starts_with('X') {
            return Ok(Watched {
                peak_rss,
                exited: Instant::now(),
            });
        }
        if let Some(kb) = field(&status, "VmHWM:")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            peak_rss = peak_rss.max(kb * 1024);
        }
        if Instant::now() >= deadline {
            bail!("process {pid} still runs after {timeout:?}");
        }
        std::thread::sleep(POLL);
    }
}

fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or("")
}
