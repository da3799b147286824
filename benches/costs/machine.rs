//! What the figures were taken on: cores, CPU, kernel, nix and QEMU
//! versions, the date and the load, printed above the table.

use std::process::Command;

/// One `- name: value` line per fact, ready for BENCHMARKS.md.
pub fn describe() -> String {
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
    let facts = [
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
        .unwrap_or_else(|| format!("{program} not found"))
}
