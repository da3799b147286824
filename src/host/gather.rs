//! What a run reads from the machine for the VM, beside the [`Host`] read
//! at start: the public keys allowed to log in (`~/.ssh/*.pub` and the
//! ssh-agent's), the nix profile, where `$SHELL` leads, and the terminfo
//! entry of `$TERM`. Read once the build has succeeded (a run that fails
//! to build asks the agent nothing); failures only mean less to hand over.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use camino::{Utf8Path, Utf8PathBuf};

use crate::host::read::Host;
use crate::host::terminal::terminfo::{self, Entry};

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
    /// The host's `nix-daemon` on `PATH`, which serves the guest's nix
    /// (`execute::host_nix`); `None` without nix on the host.
    pub nix_daemon: Option<Utf8PathBuf>,
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
            nix_daemon: nix_daemon(&host.env),
        }
    }
}

/// The first `nix-daemon` on `PATH` that is a file: the host's nix, whose
/// `--stdio` (nix 2.8 and later) serves one client as the user.
pub fn nix_daemon(env: &BTreeMap<String, String>) -> Option<Utf8PathBuf> {
    env.get("PATH")?
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Utf8Path::new(dir).join("nix-daemon"))
        .find(|path| path.is_file())
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
