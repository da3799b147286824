//! Running one command and timing it: the only place that spawns and waits
//! for the figures' processes.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// A finished command: its wall time and what it printed.
#[derive(Debug)]
pub struct Timed {
    pub seconds: f64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to the end with no input and both outputs captured, timing
/// the wall clock from spawn to exit. A non-zero status is an error that
/// carries the end of its stderr.
pub fn timed(cmd: &mut Command) -> Result<Timed> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let output = cmd
        .output()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    let seconds = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            output.status,
            why(&stderr)
        );
    }
    Ok(Timed {
        seconds,
        stdout,
        stderr,
    })
}

/// The program and its arguments, space-joined, for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The gist of a failed command's stderr: nix's `error:` line when there
/// is one, else its last lines.
fn why(stderr: &str) -> String {
    match stderr.lines().find(|l| l.starts_with("error:")) {
        Some(line) => line.to_string(),
        None => tail(stderr, 6),
    }
}

/// The last `n` non-empty lines of `text`, joined by " / ".
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}
