//! The host's nixos-shell seen from outside, through /proc: what it holds
//! (resident memory, open descriptors) and the children it left unreaped,
//! for tests that check it does not grow or leak over a VM's life.

use std::path::PathBuf;

/// `VmRSS` of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|err| panic!("cannot read the status of {pid}: {err}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in the status of {pid}:\n{status}"))
}

/// What the descriptors of `pid` are open on, by descriptor number.
pub fn open_fds(pid: u32) -> Vec<(u32, PathBuf)> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot read {dir}: {err}"))
        .flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            Some((fd, std::fs::read_link(entry.path()).ok()?))
        })
        .collect();
    fds.sort();
    fds
}

/// The children of `pid` that ended and were not reaped (zombies).
pub fn zombie_children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            // /proc/PID/stat: "pid (comm) state ppid ...", comm may hold
            // spaces and parentheses.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                return false;
            };
            let Some(after) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
                return false;
            };
            let mut fields = after.split_whitespace();
            let state = fields.next();
            let parent = fields.next().and_then(|p| p.parse::<u32>().ok());
            state == Some("Z") && parent == Some(pid)
        })
        .collect()
}
