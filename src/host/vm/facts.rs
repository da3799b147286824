//! The host facts (`schema::facts::HostFacts`) of a run: the user, home,
//! cwd, TERM and its terminfo entry, PATH, login shell, ssh public keys, the
//! ports, the shares to mount and the command. [`compose`] is pure; what it
//! needs from the machine beyond the [`Host`] (the keys in `~/.ssh` and the
//! ssh-agent, the nix profile, where `$SHELL` leads, the terminfo entry) is
//! [`Gathered`] first.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use camino::{Utf8Path, Utf8PathBuf};

use crate::host::read::Host;
use crate::host::terminal::terminfo::{self, Entry};
use crate::schema::facts::{GuestMount, HostFacts, FACTS_VERSION, TERMINFO_DIR};
use crate::schema::manifest::Manifest;
use crate::schema::ports::Port;

/// What the facts take from the machine besides the [`Host`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gathered {
    /// The public keys allowed to log in as root.
    pub authorized_keys: Vec<String>,
    /// The user's nix profile, when there is one.
    pub nix_profile: Option<Utf8PathBuf>,
    /// `$SHELL`'s binary when it leads into the Nix store.
    pub shell_store_path: Option<Utf8PathBuf>,
    /// The compiled terminfo entry for `$TERM`, when the host has one.
    pub terminfo: Option<Entry>,
}

impl Gathered {
    /// Reads them; failures only mean less to hand over.
    pub fn read(host: &Host) -> Gathered {
        Gathered {
            authorized_keys: authorized_keys(&host.home, &host.env),
            nix_profile: nix_profile(&host.home, &host.user),
            shell_store_path: shell_store_path(&host.env),
            terminfo: host.env.get("TERM").and_then(|term| {
                terminfo::find(term, &host.env, &host.home, &terminfo::SYSTEM_DIRS)
            }),
        }
    }
}

/// What the facts say of the run beyond the host: the shares to mount, the
/// ports offered, the command.
pub struct RunFacts<'a> {
    pub mounts: Vec<GuestMount>,
    pub ports: &'a [Port],
    pub command: Option<String>,
}

/// The host facts of a run; pure. `host_system` is where QEMU runs (this
/// machine, or `--host-system`): the host's `PATH` and shell go to a guest
/// of the same platform only.
pub fn compose(
    host: &Host,
    manifest: &Manifest,
    host_system: &str,
    gathered: &Gathered,
    run: RunFacts,
) -> HostFacts {
    let env = &host.env;
    let same_platform = manifest.system == host_system;
    let path = env
        .get("PATH")
        .filter(|_| manifest.inherit_path && same_platform)
        .cloned();
    let shell = env
        .get("SHELL")
        .and_then(|s| Utf8Path::new(s).file_name().map(str::to_owned));
    HostFacts {
        version: FACTS_VERSION,
        user: host.user.clone(),
        home: host.home.clone(),
        cwd: host.cwd.clone(),
        term: env.get("TERM").cloned(),
        terminfo_dir: gathered.terminfo.as_ref().map(|_| TERMINFO_DIR.into()),
        path,
        shell,
        shell_path: gathered.shell_store_path.clone().filter(|_| same_platform),
        ports: run.ports.to_vec(),
        authorized_keys: gathered.authorized_keys.clone(),
        mounts: run.mounts,
        command_io: host.command_io(),
        command: run.command,
    }
}

/// Where `$SHELL` leads when that is a Nix store path (through links such
/// as `/run/current-system/sw/bin/zsh`): a binary a guest of the host's
/// platform can run through the shared store.
pub fn shell_store_path(env: &BTreeMap<String, String>) -> Option<Utf8PathBuf> {
    let shell = env.get("SHELL")?;
    let real = std::fs::canonicalize(shell).ok()?;
    let real = Utf8PathBuf::from_path_buf(real).ok()?;
    real.starts_with("/nix/store/").then_some(real)
}

/// The user's nix profile directory: `~/.local/state/nix/profiles`, else
/// `/nix/var/nix/profiles/per-user/$USER/profile`, when it exists.
pub fn nix_profile(home: &Utf8Path, user: &str) -> Option<Utf8PathBuf> {
    [
        home.join(".local/state/nix/profiles"),
        Utf8PathBuf::from(format!("/nix/var/nix/profiles/per-user/{user}/profile")),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// Every `~/.ssh/*.pub` and the ssh-agent's keys (when SSH_AUTH_SOCK is
/// set); failures only mean fewer keys.
pub fn authorized_keys(home: &Utf8Path, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut files: Vec<Utf8PathBuf> = match home.join(".ssh").read_dir_utf8() {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().to_owned())
            .filter(|p| p.extension() == Some("pub"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    let mut texts: Vec<String> = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect();
    if env.contains_key("SSH_AUTH_SOCK") {
        let agent = Command::new("ssh-add")
            .arg("-L")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        if let Some(out) = agent.ok().filter(|o| o.status.success()) {
            texts.push(String::from_utf8_lossy(&out.stdout).into_owned());
        }
    }
    keys_from(&texts)
}

/// Key lines from files and agent output: trimmed, no comments or blanks,
/// each once, in order.
pub fn keys_from(texts: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for line in texts.iter().flat_map(|t| t.lines()) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || keys.iter().any(|k| k == line) {
            continue;
        }
        keys.push(line.to_owned());
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::test_data;
    use crate::schema::facts::CommandIo;

    fn manifest(system: &str, inherit_path: bool) -> Manifest {
        Manifest {
            system: system.to_owned(),
            inherit_path,
            ..test_data::manifest()
        }
    }

    fn alice() -> Host {
        Host::from_parts(
            test_data::env(&[
                ("USER", "alice"),
                ("HOME", "/home/alice"),
                ("TERM", "xterm"),
                ("PATH", "/bin"),
                ("SHELL", "/run/current-system/sw/bin/zsh"),
            ]),
            "/home/alice/p".into(),
            true,
            true,
        )
    }

    fn gathered() -> Gathered {
        Gathered {
            authorized_keys: vec!["ssh-ed25519 AAA a@b".to_owned()],
            nix_profile: None,
            shell_store_path: Some("/nix/store/x-zsh/bin/zsh".into()),
            terminfo: None,
        }
    }

    /// The facts of `host` with `gathered` for a guest of `system` on an
    /// x86_64-linux host, offered the resize port.
    fn facts_with(host: &Host, gathered: &Gathered, system: &str, inherit_path: bool) -> HostFacts {
        compose(
            host,
            &manifest(system, inherit_path),
            "x86_64-linux",
            gathered,
            RunFacts {
                mounts: vec![],
                ports: &[Port::Resize],
                command: Some("make".to_owned()),
            },
        )
    }

    fn facts(host: &Host, system: &str, inherit_path: bool) -> HostFacts {
        facts_with(host, &gathered(), system, inherit_path)
    }

    #[test]
    fn the_facts_are_the_hosts() {
        let facts = facts(&alice(), "x86_64-linux", true);
        assert_eq!(facts.user, "alice");
        assert_eq!(facts.home, "/home/alice");
        assert_eq!(facts.cwd, "/home/alice/p");
        assert_eq!(facts.term.as_deref(), Some("xterm"));
        assert_eq!(facts.path.as_deref(), Some("/bin"));
        assert_eq!(facts.shell.as_deref(), Some("zsh"));
        assert_eq!(
            facts.shell_path.as_deref(),
            Some(Utf8Path::new("/nix/store/x-zsh/bin/zsh"))
        );
        assert_eq!(facts.command.as_deref(), Some("make"));
        assert_eq!(facts.command_io, CommandIo::Console);
        assert_eq!(facts.authorized_keys, ["ssh-ed25519 AAA a@b"]);
        assert_eq!(facts.ports, [Port::Resize]);
        assert_eq!(facts.terminfo_dir, None);
    }

    #[test]
    fn a_terminfo_entry_of_the_hosts_is_named_in_the_facts() {
        let with_entry = Gathered {
            terminfo: Some(Entry {
                name: "xterm".to_owned(),
                bytes: b"compiled".to_vec(),
            }),
            ..gathered()
        };
        let facts = facts_with(&alice(), &with_entry, "x86_64-linux", true);
        assert_eq!(
            facts.terminfo_dir.as_deref(),
            Some(Utf8Path::new(TERMINFO_DIR))
        );
    }

    #[test]
    fn another_platform_gets_neither_the_path_nor_the_shell() {
        let other = facts(&alice(), "aarch64-linux", true);
        assert_eq!(other.path, None);
        assert_eq!(
            other.shell_path, None,
            "another platform cannot run the host's shell"
        );
    }

    #[test]
    fn inherit_path_off_keeps_the_path() {
        assert_eq!(facts(&alice(), "x86_64-linux", false).path, None);
    }

    #[test]
    fn a_command_in_a_pipeline_takes_the_ports() {
        let piped = Host {
            interactive: false,
            ..alice()
        };
        assert_eq!(
            facts(&piped, "x86_64-linux", true).command_io,
            CommandIo::Ports
        );
    }

    #[test]
    fn an_empty_environment_is_root_at_root() {
        let bare = Host::from_parts(test_data::env(&[]), "/".into(), false, true);
        let facts = facts(&bare, "x86_64-linux", true);
        assert_eq!(
            (facts.user.as_str(), facts.home.as_str()),
            ("root", "/root")
        );
    }

    #[test]
    fn keys_are_deduplicated() {
        let texts = [
            "ssh-ed25519 AAA a@b\n".to_owned(),
            "ssh-ed25519 AAA a@b\n\n# c\nssh-rsa BBB agent\n".to_owned(),
        ];
        assert_eq!(
            keys_from(&texts),
            ["ssh-ed25519 AAA a@b", "ssh-rsa BBB agent"]
        );
    }

    #[test]
    fn reads_public_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let home = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir(home.join(".ssh")).unwrap();
        std::fs::write(home.join(".ssh/id_ed25519.pub"), "ssh-ed25519 X me\n").unwrap();
        std::fs::write(home.join(".ssh/id_ed25519"), "PRIVATE").unwrap();
        assert_eq!(
            authorized_keys(home, &BTreeMap::new()),
            ["ssh-ed25519 X me"]
        );
    }
}
