//! The user's shell in the guest: the one the host's `$SHELL` names, when
//! the guest can run it. The guest's own first (the configuration provides
//! it, e.g. `programs.zsh.enable`), else the host's binary through the
//! shared Nix store (the CLI sends its store path only when host and guest
//! run the same platform); otherwise the VM's login shell stays, and one
//! line says why. Nothing here needs the VM to be evaluated again.

use camino::{Utf8Path, Utf8PathBuf};

use crate::schema::facts::HostFacts;

/// The shells every VM's login shell already is or that need nothing.
const ALREADY: [&str; 2] = ["bash", "sh"];

/// What becomes of the user's shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Nothing to change: no `$SHELL`, or the login shell's own.
    Keep,
    /// Run this one.
    Use(Utf8PathBuf),
    /// The guest cannot run it; the line to say.
    Missing(String),
}

/// Chooses the shell for `facts`, looking in `dirs` (the guest's `PATH`)
/// with `exists`.
pub fn choose<'a>(
    facts: &HostFacts,
    dirs: impl IntoIterator<Item = &'a str>,
    exists: impl Fn(&Utf8Path) -> bool,
) -> Choice {
    let Some(name) = facts.shell.as_deref().filter(|n| !n.is_empty()) else {
        return Choice::Keep;
    };
    if ALREADY.contains(&name) {
        return Choice::Keep;
    }
    let own = dirs
        .into_iter()
        .map(|dir| Utf8Path::new(dir).join(name))
        .find(|path| exists(path));
    let host = facts.shell_path.clone().filter(|path| exists(path));
    match own.or(host) {
        Some(path) => Choice::Use(path),
        None => Choice::Missing(format!(
            "your shell {name} is not in this VM, so the VM's login shell stays; add it to the \
             VM's configuration (e.g. programs.{name}.enable = true)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(shell: Option<&str>, shell_path: Option<&str>) -> HostFacts {
        let mut facts: HostFacts =
            serde_json::from_str(r#"{"version":1,"user":"a","home":"/home/a","cwd":"/home/a"}"#)
                .unwrap();
        facts.shell = shell.map(str::to_owned);
        facts.shell_path = shell_path.map(Utf8PathBuf::from);
        facts
    }

    const DIRS: [&str; 2] = ["/run/current-system/sw/bin", "/bin"];

    #[test]
    fn the_guests_own_shell_comes_first_then_the_hosts_store_path() {
        let both =
            |p: &Utf8Path| p == "/run/current-system/sw/bin/zsh" || p == "/nix/store/x-zsh/bin/zsh";
        let zsh = facts(Some("zsh"), Some("/nix/store/x-zsh/bin/zsh"));
        assert_eq!(
            choose(&zsh, DIRS, both),
            Choice::Use("/run/current-system/sw/bin/zsh".into())
        );
        let store_only = |p: &Utf8Path| p == "/nix/store/x-zsh/bin/zsh";
        assert_eq!(
            choose(&zsh, DIRS, store_only),
            Choice::Use("/nix/store/x-zsh/bin/zsh".into())
        );
    }

    #[test]
    fn a_shell_the_guest_cannot_run_says_so_and_bash_needs_nothing() {
        let none = |_: &Utf8Path| false;
        let Choice::Missing(line) = choose(&facts(Some("fish"), None), DIRS, none) else {
            panic!("fish is nowhere");
        };
        assert!(line.contains("programs.fish.enable = true"), "{line}");
        assert_eq!(choose(&facts(Some("bash"), None), DIRS, none), Choice::Keep);
        assert_eq!(choose(&facts(None, None), DIRS, none), Choice::Keep);
    }
}
