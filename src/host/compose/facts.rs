//! The host facts (`schema::facts::HostFacts`) of a run: the user, home,
//! cwd, TERM and its terminfo entry, PATH, login shell, ssh public keys, the
//! ports, the shares to mount and the command. [`compose`] is pure; what it
//! needs from the machine beyond the [`Host`] (the keys in `~/.ssh` and the
//! ssh-agent, the nix profile, where `$SHELL` leads, the terminfo entry) is
//! [`Gathered`] first (`host::gather`).

use camino::Utf8Path;

use crate::host::gather::Gathered;
use crate::host::read::Host;
use crate::schema::facts::{GuestMount, HostFacts, FACTS_VERSION, TERMINFO_DIR};
use crate::schema::manifest::Manifest;
use crate::schema::ports::Port;

/// What the facts say of the run beyond the host: the shares to mount, the
/// ports offered, the command.
pub struct RunFacts<'a> {
    pub mounts: Vec<GuestMount>,
    pub ports: &'a [Port],
    pub command: Option<String>,
    /// Why the guest's nix keeps its own store, when the user did not ask.
    pub host_nix_note: Option<String>,
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
        host_nix_note: run.host_nix_note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::terminal::terminfo::Entry;
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
            nix_daemon: None,
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
                host_nix_note: None,
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
}
