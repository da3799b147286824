//! What the figures were taken on: cores, CPU, kernel, nix and QEMU
//! versions, the date and the load, printed above the table.

use std::process::Command;

/// One `- name: value` line per fact, ready for BENCHMARKS.md.
pub fn describe(checkout: &std::path::Path) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "unknown".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let checkout = checkout.to_string_lossy();
    let facts = [
        // The figures are true of this commit; `-dirty` when the tree had
        // changes that no commit holds.
        (
            "commit",
            first_line("git", &["-C", &checkout, "describe", "--always", "--dirty"]),
        ),
        ("date (UTC)", first_line("date", &["-u", "+%Y-%m-%d %H:%M"])),
        ("cores (nproc)", cores),
        ("CPU", cpu),
        ("memory", memory),
        ("kernel", read_trimmed("/proc/sys/kernel/osrelease")),
        ("nix", first_line("nix", &["--version"])),
        ("QEMU", first_line("qemu-system-x86_64", &["--version"])),
        ("load average at start", load_average()),
    ];
    facts
        .iter()
        .map(|(name, value)| format!("- {name}: {value}\n"))
        .collect()
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    let text = read_trimmed("/proc/loadavg");
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| format!("unknown ({program} failed or is missing)"))
}

/// CPU time the rest of the machine used while the figures were taken: all
/// busy time (/proc/stat) minus this process's and its reaped children's
/// (getrusage), so a reader can tell a quiet run from a shared one.
pub struct OtherLoad {
    busy: f64,
    own: f64,
    start: std::time::Instant,
}

impl OtherLoad {
    pub fn start() -> OtherLoad {
        OtherLoad {
            busy: busy_seconds(),
            own: own_seconds(),
            start: std::time::Instant::now(),
        }
    }

    /// `- CPU used by other processes: ...` for the machine's description.
    pub fn describe(&self) -> String {
        let wall = self.start.elapsed().as_secs_f64();
        let others = ((busy_seconds() - self.busy) - (own_seconds() - self.own)).max(0.0);
        format!(
            "- CPU used by other processes during the run: {others:.1} core-seconds in {wall:.0} s \
             ({:.2} cores on average)\n",
            others / wall.max(1e-9)
        )
    }
}

/// Busy time of all CPUs since boot, in seconds: every field of the `cpu`
/// line of /proc/stat but idle and iowait (guest time is already in user).
fn busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let busy: f64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    busy / ticks.max(1.0)
}

/// User and system time of this process and its reaped descendants.
fn own_seconds() -> f64 {
    let usage = |who| {
        // SAFETY: rusage is plain data that getrusage fills.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer; `who` is RUSAGE_SELF or RUSAGE_CHILDREN.
        unsafe { libc::getrusage(who, &mut ru) };
        let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        secs(ru.ru_utime) + secs(ru.ru_stime)
    };
    usage(libc::RUSAGE_SELF) + usage(libc::RUSAGE_CHILDREN)
}
