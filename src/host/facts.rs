//! Gathering the host facts (`schema::facts::HostFacts`) at run time: the
//! user, home, cwd, TERM, PATH, login shell, terminal size, ssh public keys,
//! the shares to mount and the command. The composition is pure; reading
//! `~/.ssh`, asking the ssh-agent and finding the nix profile are the edge.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use camino::{Utf8Path, Utf8PathBuf};

use super::context::Host;
use crate::schema::facts::{GuestMount, HostFacts, FACTS_VERSION};
use crate::schema::manifest::Manifest;

/// The host facts of a run; pure. `host_system` is where QEMU runs (this
/// machine, or `--host-system`): the host's `PATH` goes to a guest of the
/// same platform only.
pub fn compose(
    host: &Host,
    manifest: &Manifest,
    host_system: &str,
    shell_store_path: Option<&Utf8Path>,
    authorized_keys: Vec<String>,
    mounts: Vec<GuestMount>,
    command: Option<String>,
) -> HostFacts {
    let env = &host.env;
    let path = env
        .get("PATH")
        .filter(|_| manifest.inherit_path && manifest.system == host_system)
        .cloned();
    let shell = env
        .get("SHELL")
        .and_then(|s| Utf8Path::new(s).file_name().map(str::to_owned));
    let shell_path = shell_store_path
        .filter(|_| manifest.system == host_system)
        .map(Utf8Path::to_owned);
    HostFacts {
        version: FACTS_VERSION,
        user: host.user.clone(),
        home: host.home.clone(),
        cwd: host.cwd.clone(),
        term: env.get("TERM").cloned(),
        path,
        shell,
        shell_path,
        terminal: host.terminal,
        authorized_keys,
        mounts,
        command_io: host.command_io(),
        command,
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
    use crate::schema::ports::TerminalSize;

    fn manifest(system: &str, inherit_path: bool) -> Manifest {
        Manifest {
            system: system.to_owned(),
            inherit_path,
            ..test_data::manifest()
        }
    }

    fn host(pairs: &[(&str, &str)], cwd: &str) -> Host {
        Host::from_parts(
            test_data::env(pairs),
            cwd.into(),
            Some(TerminalSize { rows: 24, cols: 80 }),
            true,
        )
    }

    fn facts(host: &Host, manifest: &Manifest, host_system: &str) -> HostFacts {
        let keys = vec!["ssh-ed25519 AAA a@b".to_owned()];
        let zsh = Some(Utf8Path::new("/nix/store/x-zsh/bin/zsh"));
        compose(
            host,
            manifest,
            host_system,
            zsh,
            keys,
            vec![],
            Some("make".to_owned()),
        )
    }

    #[test]
    fn composes_the_facts() {
        let alice = host(
            &[
                ("USER", "alice"),
                ("HOME", "/home/alice"),
                ("TERM", "xterm"),
                ("PATH", "/bin"),
                ("SHELL", "/run/current-system/sw/bin/zsh"),
            ],
            "/home/alice/p",
        );
        let facts = facts(&alice, &manifest("x86_64-linux", true), "x86_64-linux");
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
        assert_eq!(facts.terminal, Some(TerminalSize { rows: 24, cols: 80 }));

        let other = super::tests::facts(&alice, &manifest("aarch64-linux", true), "x86_64-linux");
        assert_eq!(other.path, None);
        assert_eq!(
            other.shell_path, None,
            "another platform cannot run the host's shell"
        );
        let off = super::tests::facts(&alice, &manifest("x86_64-linux", false), "x86_64-linux");
        assert_eq!(off.path, None);
        let piped = Host {
            interactive: false,
            ..alice.clone()
        };
        let piped = super::tests::facts(&piped, &manifest("x86_64-linux", true), "x86_64-linux");
        assert_eq!(piped.command_io, CommandIo::Ports);
        let bare = super::tests::facts(&host(&[], "/"), &manifest("x", true), "x");
        assert_eq!((bare.user.as_str(), bare.home.as_str()), ("root", "/root"));
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
