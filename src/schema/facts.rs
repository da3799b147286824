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

use std::io::Read;

use camino::{Utf8Path, Utf8PathBuf};
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
/// The most bytes of [`RESULT_FILE`] the host reads: a [`GuestResult`] is
/// a few dozen, and the guest writes the session share, so what it leaves
/// there (a file that never ends, a link to one) must not make the host
/// read without end.
pub const MAX_RESULT_LEN: usize = 4096;
/// The terminfo directory inside the session share, in ncurses' layout
/// (`<first letter>/<name>`), when it holds the host's entry for `TERM`.
pub const TERMINFO_DIR: &str = "terminfo";

/// The guest role's own directory: everything it writes in the guest is
/// under it, so no share may be mounted there.
pub const GUEST_DIR: &str = "/run/nixos-shell";

/// Where the guest role mounts the session share.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // guest role only
pub const GUEST_SESSION_DIR: &str = "/run/nixos-shell/session";

/// Where the guest records each `--switch`'s activation (its output and
/// status, `guest::linux::switch`), which the host names when the
/// activation outlives its session.
pub const GUEST_SWITCH_DIR: &str = "/run/nixos-shell/switch";
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
    /// Why the guest's nix keeps its own store though the build would
    /// relay it to the host's (`schema::host_nix`): said once, at the first
    /// login. Whether it is relayed is [`Port::HostNix`] in
    /// [`HostFacts::ports`].
    #[serde(default)]
    pub host_nix_note: Option<String>,
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

/// What is wrong with the guest's [`RESULT_FILE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadResult {
    /// More than [`MAX_RESULT_LEN`] bytes.
    TooLong,
    /// A link, a FIFO, a directory: anything but a regular file.
    NotAFile,
    /// It could not be read (the error).
    Unreadable(String),
    /// Not the JSON of a [`GuestResult`] (the parser's error).
    Json(String),
    /// An exit code no process ends with.
    Status(i32),
}

impl std::fmt::Display for BadResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadResult::TooLong => write!(f, "it is longer than {MAX_RESULT_LEN} bytes"),
            BadResult::NotAFile => write!(f, "it is not a regular file"),
            BadResult::Unreadable(err) => write!(f, "it cannot be read: {err}"),
            BadResult::Json(err) => write!(f, "it is not a result: {err}"),
            BadResult::Status(code) => {
                write!(f, "its exit status {code} is not one of 0 to 255")
            }
        }
    }
}

impl std::error::Error for BadResult {}

impl GuestResult {
    /// The command's exit status from the bytes of [`RESULT_FILE`].
    pub fn status_from(bytes: &[u8]) -> Result<u8, BadResult> {
        let result: GuestResult =
            serde_json::from_slice(bytes).map_err(|err| BadResult::Json(err.to_string()))?;
        super::exit_status(result.exit_code).ok_or(BadResult::Status(result.exit_code))
    }

    /// The bytes of [`RESULT_FILE`] at `path` as the guest left it: a
    /// regular file, never reached through a link (the share's links are
    /// the guest's), of at most [`MAX_RESULT_LEN`] bytes; `None` when there
    /// is none.
    pub fn read(path: &Utf8Path) -> Result<Option<Vec<u8>>, BadResult> {
        use rustix::fs::{FileType, Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::open(path.as_std_path(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            // O_NOFOLLOW's answer for a link.
            Err(rustix::io::Errno::LOOP) => return Err(BadResult::NotAFile),
            Err(err) => return Err(BadResult::Unreadable(err.to_string())),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|err| BadResult::Unreadable(err.to_string()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(BadResult::NotAFile);
        }
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(MAX_RESULT_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| BadResult::Unreadable(err.to_string()))?;
        if bytes.len() > MAX_RESULT_LEN {
            return Err(BadResult::TooLong);
        }
        Ok(Some(bytes))
    }
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

    #[test]
    fn a_result_is_read_back_as_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join(RESULT_FILE);
        assert_eq!(GuestResult::read(&path), Ok(None));
        let result = GuestResult {
            version: FACTS_VERSION,
            exit_code: 42,
        };
        std::fs::write(&path, serde_json::to_vec(&result).unwrap()).unwrap();
        let bytes = GuestResult::read(&path).unwrap().unwrap();
        assert_eq!(GuestResult::status_from(&bytes), Ok(42));
    }

    #[test]
    fn a_result_the_guest_left_as_a_link_a_fifo_or_a_flood_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        // Before, the host read the file whole, and through a link: a
        // guest's link to /dev/zero made it read until memory ran out, and
        // one to a FIFO made it wait for good.
        let link = dir.join("link.json");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert_eq!(GuestResult::read(&link), Err(BadResult::NotAFile));
        let fifo = dir.join("fifo.json");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fifo.as_std_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(GuestResult::read(&fifo), Err(BadResult::NotAFile));
        let big = dir.join("big.json");
        let padded = format!(
            "{{\"version\":1,\"exitCode\":0{}}}",
            " ".repeat(MAX_RESULT_LEN)
        );
        std::fs::write(&big, padded).unwrap();
        assert_eq!(GuestResult::read(&big), Err(BadResult::TooLong));
        assert!(BadResult::TooLong
            .to_string()
            .contains(&MAX_RESULT_LEN.to_string()));
    }

    #[test]
    fn a_status_no_process_has_is_refused_not_truncated() {
        // Before, 256 & 0xff read as success.
        assert_eq!(
            GuestResult::status_from(br#"{"version":1,"exitCode":256}"#),
            Err(BadResult::Status(256))
        );
    }

    /// Generated results and bytes: every result reads back as its status
    /// when it is one; anything else is refused with why.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::schema::proptest_config())]

            #[test]
            fn a_result_reads_back_or_says_why_not(
                version in any::<u32>(),
                exit_code in any::<i32>(),
                garbage in prop::collection::vec(any::<u8>(), 0..200),
            ) {
                let json = serde_json::to_vec(&GuestResult { version, exit_code }).unwrap();
                match GuestResult::status_from(&json) {
                    Ok(status) => prop_assert_eq!(i32::from(status), exit_code),
                    Err(err) => {
                        prop_assert_eq!(err, BadResult::Status(exit_code));
                        prop_assert!(!(0..=255).contains(&exit_code));
                    }
                }
                match GuestResult::status_from(&garbage) {
                    Ok(status) => prop_assert_eq!(
                        serde_json::from_slice::<GuestResult>(&garbage).ok().map(|r| r.exit_code),
                        Some(i32::from(status))
                    ),
                    Err(BadResult::Json(err)) => prop_assert!(!err.is_empty()),
                    Err(BadResult::Status(code)) => prop_assert!(!(0..=255).contains(&code)),
                    Err(other) => prop_assert!(false, "{}", other),
                }
            }

            #[test]
            fn host_facts_round_trip(facts in facts()) {
                let json = serde_json::to_vec(&facts).unwrap();
                prop_assert_eq!(serde_json::from_slice::<HostFacts>(&json).unwrap(), facts);
            }
        }

        fn mount() -> impl Strategy<Value = GuestMount> {
            (
                any::<String>(),
                any::<String>(),
                proptest::sample::select(CacheMode::ALL.to_vec()),
                any::<u64>(),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(tag, guest_path, cache, msize, read_only, virtiofs)| {
                    GuestMount {
                        tag,
                        guest_path: guest_path.into(),
                        cache,
                        read_only,
                        msize,
                        protocol: if virtiofs {
                            Protocol::Virtiofs
                        } else {
                            Protocol::NineP
                        },
                    }
                })
        }

        fn facts() -> impl Strategy<Value = HostFacts> {
            let strings = (
                any::<String>(),
                any::<String>(),
                any::<String>(),
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<String>()),
            );
            let rest = (
                prop::collection::vec(
                    proptest::sample::select(vec![
                        Port::Resize,
                        Port::Attach,
                        Port::HostNix,
                        Port::Stdin,
                        Port::Stdout,
                        Port::Stderr,
                    ]),
                    0..5,
                ),
                prop::collection::vec(any::<String>(), 0..3),
                prop::collection::vec(mount(), 0..3),
                any::<bool>(),
            );
            (any::<u32>(), strings, rest).prop_map(
                |(
                    version,
                    (user, home, cwd, term, terminfo_dir, path, shell, shell_path, command),
                    (ports, authorized_keys, mounts, on_ports),
                )| HostFacts {
                    version,
                    user,
                    home: home.into(),
                    cwd: cwd.into(),
                    term,
                    terminfo_dir: terminfo_dir.map(Into::into),
                    path,
                    host_nix_note: shell.clone(),
                    shell,
                    shell_path: shell_path.map(Into::into),
                    ports,
                    authorized_keys,
                    mounts,
                    command,
                    command_io: if on_ports {
                        CommandIo::Ports
                    } else {
                        CommandIo::Console
                    },
                },
            )
        }
    }
}
