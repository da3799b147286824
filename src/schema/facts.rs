//! Host facts: everything about the invoking user that the VM needs at run
//! time, and the guest's answer.
//!
//! The VM closure is pure: the module never reads the user's environment.
//! Instead the CLI writes a [`HostFacts`] document into a private session
//! directory and shares that directory with the guest as an extra 9p share
//! (tag [`SESSION_TAG`]), passed to QEMU as an ordinary argument of the run
//! script. Before the console login the guest role mounts it at
//! [`GUEST_SESSION_DIR`], applies the facts and, when a command was given,
//! writes a [`GuestResult`] back next to them.
//!
//! A VM started without nixos-shell has no such share: the guest role notices
//! the missing tag and does nothing.

use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use super::manifest::{CacheMode, Protocol};
use super::ports::Port;

/// The facts version this crate writes and understands.
pub const FACTS_VERSION: u32 = 1;

/// The 9p mount tag of the session share.
pub const SESSION_TAG: &str = "nixos-shell";
/// The host facts' file name inside the session share.
pub const FACTS_FILE: &str = "facts.json";
/// The guest's answer's file name inside the session share.
pub const RESULT_FILE: &str = "result.json";
/// The terminfo directory inside the session share, in ncurses' layout
/// (`<first letter>/<name>`), when it holds the host's entry for `TERM`.
pub const TERMINFO_DIR: &str = "terminfo";

/// The guest role's own directory: everything it writes in the guest is
/// under it, so no share may be mounted there.
pub const GUEST_DIR: &str = "/run/nixos-shell";

/// Where the guest role mounts the session share.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // guest role only
pub const GUEST_SESSION_DIR: &str = "/run/nixos-shell/session";
/// The login environment the guest role writes; the module's shell init
/// sources it (POSIX `sh` syntax).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // guest role only
pub const GUEST_LOGIN_ENV: &str = "/run/nixos-shell/login-env.sh";
/// The directory of authorized keys files, one per user (`%u`); the module
/// adds `GUEST_AUTHORIZED_KEYS_DIR/%u` to sshd's `AuthorizedKeysFile`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // guest role only
pub const GUEST_AUTHORIZED_KEYS_DIR: &str = "/run/nixos-shell/authorized-keys";

/// What the host tells the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostFacts {
    /// Schema version; this crate reads `1`.
    pub version: u32,
    /// The invoking user's name (`$USER`), for messages and the nix profile.
    pub user: String,
    /// The invoking user's home directory; the login shell's `HOME`.
    pub home: Utf8PathBuf,
    /// The directory nixos-shell was started in; the login shell and
    /// `command` start there when it exists in the guest.
    pub cwd: Utf8PathBuf,
    /// The host terminal's `TERM`, when set.
    #[serde(default)]
    pub term: Option<String>,
    /// The directory of the session share ([`TERMINFO_DIR`]) that holds the
    /// host's compiled terminfo entry for `term`, when the host has one: the
    /// guest puts it first in `TERMINFO_DIRS`, so a terminal the guest's
    /// database lacks (kitty's, foot's, one compiled by the user) is known.
    #[serde(default)]
    pub terminfo_dir: Option<Utf8PathBuf>,
    /// The host's `PATH`, put before the guest's own; `None` when the
    /// module's `inheritPath` is off or host and guest platforms differ.
    #[serde(default)]
    pub path: Option<String>,
    /// The name of the user's login shell (`bash`, `zsh`, ...), from `$SHELL`.
    #[serde(default)]
    pub shell: Option<String>,
    /// That shell's binary in the Nix store, when `$SHELL` leads there and
    /// host and guest run the same platform: the guest runs it through the
    /// shared store when its configuration has no such shell of its own.
    #[serde(default)]
    pub shell_path: Option<Utf8PathBuf>,
    /// The virtio-serial ports the host offers (`schema::ports`), so the
    /// guest waits only for those: the resize port when the console is the
    /// host's terminal, the stdio ports when the command's streams are
    /// nixos-shell's own. The console's size is never in the facts: it
    /// comes from the resize port alone, which always has the latest.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Public keys allowed to log in as root over ssh: the user's
    /// `~/.ssh/*.pub` and the keys of a reachable ssh-agent.
    #[serde(default)]
    pub authorized_keys: Vec<String>,
    /// Shares to mount, in order (parents before children).
    #[serde(default)]
    pub mounts: Vec<GuestMount>,
    /// A shell command to run instead of a login; the guest then powers off
    /// and reports the status in a [`GuestResult`].
    #[serde(default)]
    pub command: Option<String>,
    /// Where the command's standard streams go.
    #[serde(default)]
    pub command_io: CommandIo,
}

/// Where `--command`'s standard streams go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CommandIo {
    /// The console, as the command's controlling terminal: nixos-shell's
    /// stdin and stdout are a terminal, and the command is interactive
    /// (Ctrl-C reaches it, full-screen programs work).
    #[default]
    Console,
    /// The virtio-serial ports [`Port::STDIO`](super::ports::Port::STDIO),
    /// byte for byte: nixos-shell runs in a pipeline or with a redirection.
    Ports,
}

/// One share the CLI passed to QEMU, as the guest mounts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestMount {
    /// The mount tag QEMU (9p) or the virtiofs device was given.
    pub tag: String,
    /// Where to mount it in the guest (created when missing).
    pub guest_path: Utf8PathBuf,
    /// The 9p cache mode.
    pub cache: CacheMode,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
    /// 9p `msize` in bytes.
    pub msize: u64,
    /// How the share reaches the guest. Facts without it (an older host)
    /// mean 9p; an older guest ignores it and mounts 9p, and says so when
    /// that fails, so the facts' version stays the same.
    #[serde(default)]
    pub protocol: Protocol,
}

/// What the guest hands back after running [`HostFacts::command`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestResult {
    /// Schema version; this crate reads `1`.
    pub version: u32,
    /// The command's exit status; `128 + N` when signal `N` killed it.
    pub exit_code: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_round_trip_and_tolerate_unknown_and_missing_optional_fields() {
        let json = r#"{"version": 1, "user": "alice", "home": "/home/alice",
                       "cwd": "/home/alice/src", "somethingNew": {"x": 1}}"#;
        let facts: HostFacts = serde_json::from_str(json).unwrap();
        assert_eq!(facts.home, "/home/alice");
        assert_eq!(facts.term, None);
        assert!(facts.mounts.is_empty());
        let again: HostFacts =
            serde_json::from_str(&serde_json::to_string(&facts).unwrap()).unwrap();
        assert_eq!(again, facts);
    }

    #[test]
    fn a_mount_without_a_protocol_is_9p_and_virtiofs_is_named() {
        let json = r#"{"tag": "home", "guestPath": "/home/a", "cache": "loose",
                       "msize": 512000}"#;
        let mount: GuestMount = serde_json::from_str(json).unwrap();
        assert_eq!(mount.protocol, Protocol::NineP);
        let mount = GuestMount {
            protocol: Protocol::Virtiofs,
            ..mount
        };
        let json = serde_json::to_value(&mount).unwrap();
        assert_eq!(json["protocol"], "virtiofs");
        let again: GuestMount = serde_json::from_value(json).unwrap();
        assert_eq!(again, mount);
    }

    #[test]
    fn result_uses_camel_case() {
        let result = GuestResult {
            version: 1,
            exit_code: 7,
        };
        assert_eq!(
            serde_json::to_string(&result).unwrap(),
            r#"{"version":1,"exitCode":7}"#
        );
    }
}
