//! Watching a running process: finding the child just spawned (through
//! /proc), its peak resident set (`VmHWM`) and the moment it exits (its
//! pidfd).

use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Result};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{pidfd_open, Pid, PidfdFlags};

/// How often a watched process's memory is looked at.
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
    /// When it exited (became a zombie), to within the wake-up of a poll.
    pub exited: Instant,
    /// The same moment on the wall clock, to compare with a time another
    /// process wrote down.
    pub exited_at: SystemTime,
}

/// Watches `pid` until it exits, reading its peak resident set every
/// [`POLL`]. `VmHWM` is the kernel's high-water mark of the resident set,
/// so a read misses only growth in the last interval before exit. The exit
/// itself is seen at once: the process's pidfd becomes readable when it
/// exits, and the poll that reads `VmHWM` waits on it. Fails after
/// `timeout`.
pub fn watch(pid: u32, timeout: Duration) -> Result<Watched> {
    let raw = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| anyhow!("{pid} is not a process id"))?;
    let pidfd = pidfd_open(raw, PidfdFlags::empty())
        .map_err(|err| anyhow!("cannot watch process {pid}: {err}"))?;
    let deadline = Instant::now() + timeout;
    let mut peak_rss = 0;
    let interval = Timespec {
        tv_sec: 0,
        tv_nsec: POLL.subsec_nanos().into(),
    };
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(kb) = field(&status, "VmHWM:")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            peak_rss = peak_rss.max(kb * 1024);
        }
        let mut ready = [PollFd::new(&pidfd, PollFlags::IN)];
        if poll(&mut ready, Some(&interval)).is_ok_and(|n| n > 0) {
            return Ok(Watched {
                peak_rss,
                exited: Instant::now(),
                exited_at: SystemTime::now(),
            });
        }
        if Instant::now() >= deadline {
            bail!("process {pid} still runs after {timeout:?}");
        }
    }
}

fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or("")
}
