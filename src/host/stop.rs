//! How a step ended a run before its end: a child failed with a status
//! (its message is above), or a signal stopped it (caught by nixos-shell
//! and passed on, or the child's own). It travels as an error, and
//! `host::run` maps it to nixos-shell's exit status, once, without a line
//! of its own.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// Why a run ends early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A child failed with this exit status.
    Status(u8),
    /// Signal N ended it.
    Signal(i32),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Status(status) => write!(f, "a step failed with status {status}"),
            Stop::Signal(signal) => write!(f, "signal {signal} stopped the run"),
        }
    }
}

impl std::error::Error for Stop {}

impl Stop {
    /// The exit status of a run that ended with `err`: a [`Stop`]'s (said
    /// already), or `None` for an error still to print.
    pub fn status_of(err: &anyhow::Error) -> Option<u8> {
        err.downcast_ref::<Stop>().map(|stop| stop.exit_status())
    }

    /// How a child's `status` stops a run: `None` when it succeeded.
    pub fn of(status: ExitStatus) -> Option<Stop> {
        if status.success() {
            return None;
        }
        Some(match (status.code(), status.signal()) {
            (Some(code), _) => Stop::Status(u8::try_from(code & 0xff).unwrap_or(1)),
            (None, Some(signal)) => Stop::Signal(signal),
            (None, None) => Stop::Status(1),
        })
    }

    /// nixos-shell's exit status: the child's, or 128 + N after signal N.
    pub fn exit_status(self) -> u8 {
        match self {
            Stop::Status(status) => status,
            Stop::Signal(signal) => u8::try_from(128 + signal).unwrap_or(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_childs_end_is_its_status_or_128_and_its_signal() {
        let status = |script: &str| Command::new("sh").args(["-c", script]).status().unwrap();
        assert_eq!(Stop::of(status("exit 0")), None);
        assert_eq!(Stop::of(status("exit 3")), Some(Stop::Status(3)));
        let killed = Stop::of(status("kill -TERM $$")).unwrap();
        assert_eq!(killed, Stop::Signal(15));
        assert_eq!(killed.exit_status(), 143);
        assert_eq!(Stop::Signal(2).exit_status(), 130);
    }
}
