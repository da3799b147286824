//! The virtio-serial ports between the CLI and the guest role: byte streams
//! that QEMU's console cannot carry.
//!
//! QEMU's console is one terminal for the boot messages, the login and the
//! monitor; it has no window size and turns `\n` into `\r\n`. So the CLI adds
//! a virtio-serial device of its own with named ports, each backed on the
//! host by a Unix socket the CLI listens on before QEMU starts (QEMU
//! connects as a client, so nothing races its start):
//!
//! - [`Port::Resize`]: the host terminal's size. The guest role's resize
//!   follower asks for it ([`SIZE_REQUEST`]) whenever it opens the port; the
//!   host answers with the size it has then, one JSON [`TerminalSize`] per
//!   line (`null` when its terminal has none), and, once asked, sends the
//!   new size after every SIGWINCH. Every line is the size at the moment it
//!   was sent and the port keeps their order, so the last one applied is
//!   always the latest; the follower applies each to the console, which
//!   sends SIGWINCH to its foreground program. The answer, not the size at
//!   QEMU's start, is what the follower waits for before the login or the
//!   command may start: a terminal resized while nix built or the VM booted
//!   is already at its new size then. (A follower of an older nixos-shell
//!   never asks and gets sizes on resizes only; an older host never
//!   answers, but sends a size when QEMU connects, which the follower takes
//!   as the answer.)
//! - [`Port::Attach`]: every `nixos-shell --attach` session in the running
//!   VM, multiplexed ([`super::attach`]), when the build's guest serves
//!   them.
//! - [`Port::Stdin`], [`Port::Stdout`], [`Port::Stderr`]: `--command`'s
//!   standard streams when nixos-shell's own are not both a terminal
//!   ([`super::facts::CommandIo::Ports`]). QEMU holds what the host sends
//!   until the guest opens the port, so input given before the command
//!   starts is kept; the host closing its end reads as end of file in the
//!   guest, and the guest sees the host stop reading as a hang-up.
//!
//! The guest finds a port by its name in `/sys/class/virtio-ports/*/name`.

use serde::{Deserialize, Serialize};

/// One named port; in the host facts by its short name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Port {
    Resize,
    Attach,
    Stdin,
    Stdout,
    Stderr,
}

impl Port {
    /// The port's name, as `virtserialport,name=` gives it to the guest.
    pub const fn name(self) -> &'static str {
        match self {
            Port::Resize => "org.nixos-shell.resize",
            Port::Attach => "org.nixos-shell.attach",
            Port::Stdin => "org.nixos-shell.stdin",
            Port::Stdout => "org.nixos-shell.stdout",
            Port::Stderr => "org.nixos-shell.stderr",
        }
    }

    /// A short name for the port's socket file and QEMU ids.
    pub const fn short(self) -> &'static str {
        match self {
            Port::Resize => "resize",
            Port::Attach => "attach",
            Port::Stdin => "stdin",
            Port::Stdout => "stdout",
            Port::Stderr => "stderr",
        }
    }

    /// The ports `--command`'s streams take.
    pub const STDIO: [Port; 3] = [Port::Stdin, Port::Stdout, Port::Stderr];
}

/// What the follower sends on [`Port::Resize`] to ask for the current size.
pub const SIZE_REQUEST: &[u8] = b"size\n";

/// The host's answer when its terminal has no size to give.
pub const UNKNOWN_SIZE_LINE: &str = "null\n";

/// The host terminal's size in character cells, as [`Port::Resize`]
/// carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
}

impl TerminalSize {
    /// The line [`Port::Resize`] carries for this size.
    pub fn to_line(self) -> String {
        // Two integers always serialize.
        let mut line = serde_json::to_string(&self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// A line of [`Port::Resize`]; `None` for anything else.
    pub fn from_line(line: &str) -> Option<TerminalSize> {
        serde_json::from_str(line.trim_end())
            .ok()
            .filter(|size: &TerminalSize| size.rows > 0 && size.cols > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_is_one_json_line_and_reads_back() {
        let size = TerminalSize {
            rows: 40,
            cols: 100,
        };
        assert_eq!(size.to_line(), "{\"rows\":40,\"cols\":100}\n");
        assert_eq!(TerminalSize::from_line(&size.to_line()), Some(size));
    }

    #[test]
    fn anything_else_on_the_resize_port_is_ignored() {
        for line in [
            "",
            "garbage\n",
            "{\"rows\":0,\"cols\":80}",
            "{\"rows\":-1,\"cols\":80}",
        ] {
            assert_eq!(TerminalSize::from_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn the_unknown_size_is_a_line_that_sets_nothing() {
        assert!(UNKNOWN_SIZE_LINE.ends_with('\n'));
        assert_eq!(TerminalSize::from_line(UNKNOWN_SIZE_LINE), None);
    }

    #[test]
    fn a_port_is_named_in_the_facts_by_its_short_name() {
        for port in [
            Port::Resize,
            Port::Attach,
            Port::Stdin,
            Port::Stdout,
            Port::Stderr,
        ] {
            assert_eq!(serde_json::to_value(port).unwrap(), port.short());
        }
    }

    #[test]
    fn port_names_are_distinct_and_namespaced() {
        let all = [
            Port::Resize,
            Port::Attach,
            Port::Stdin,
            Port::Stdout,
            Port::Stderr,
        ];
        for (n, port) in all.iter().enumerate() {
            assert!(port.name().starts_with("org.nixos-shell."));
            assert!(port.name().ends_with(port.short()));
            assert!(all[..n].iter().all(|other| other.name() != port.name()));
        }
    }
}
