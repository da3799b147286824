//! How a step ended a run before its end, and the one place that maps it
//! to nixos-shell's exit status: a child failed with a status (nix's
//! message is above), or a signal stopped it (caught by nixos-shell and
//! passed on, or the child's own).

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

impl Stop {
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
