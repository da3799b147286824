//! Root's authorized keys, in the directory the module adds (with `%u`) to
//! sshd's `AuthorizedKeysFile`. Never in a home directory: the host's home
//! is mounted in the guest.

use std::os::unix::fs::PermissionsExt;

use anyhow::Context;
use camino::Utf8Path;

/// The file's content: one key a line, blank entries dropped.
pub fn text(keys: &[String]) -> String {
    keys.iter()
        .map(|key| key.trim())
        .filter(|key| !key.is_empty())
        .map(|key| format!("{key}\n"))
        .collect()
}

/// Writes `keys` to `path`, owned by root and not writable by others (sshd's
/// StrictModes checks the file and its directories).
pub fn install(path: &Utf8Path, keys: &[String]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {parent}"))?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot set the mode of {parent}"))?;
    }
    std::fs::write(path, text(keys))
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)))
        .with_context(|| format!("cannot write the authorized keys {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_a_line_without_blanks() {
        let keys = vec![
            "ssh-ed25519 AAAA alice@host\n".to_owned(),
            "  ".to_owned(),
            "ssh-rsa BBBB agent".to_owned(),
        ];
        assert_eq!(
            text(&keys),
            "ssh-ed25519 AAAA alice@host\nssh-rsa BBBB agent\n"
        );
        assert_eq!(text(&[]), "");
    }
}
