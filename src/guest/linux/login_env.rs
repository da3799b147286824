//! The login environment: a POSIX `sh` snippet the login shell's profile
//! sources (the module's shell init, or `/etc/profile` in the tests'
//! initramfs), so that root's console login starts where the user started
//! nixos-shell, with the host's `HOME`, `USER`, `TERM`, `PATH` and size.
//!
//! For root's logins only: the facts are the host user's, and the module's
//! shell init (`environment.loginShellInit`, which NixOS puts in
//! `/etc/profile`) runs for every user's login shell. Another user of the
//! VM (`su - bob`, `ssh bob@vm`) keeps their own home, directory and shell.

use std::os::unix::fs::PermissionsExt;

use anyhow::Context;
use camino::Utf8Path;

use super::{command, session};
use crate::schema::facts::HostFacts;
use crate::schema::host_nix;
use crate::sh::single_quote;

/// The script for `facts`. The login shell sources it with `sh`'s rules:
/// every value is single-quoted, so no host string is ever expanded by it.
/// With `shell` (the user's, see `guest::shell`), an interactive login
/// becomes that shell at the end, once: the variable it exports keeps the
/// new shell's own login init, which sources this file again, from doing it
/// twice.
pub fn script(facts: &HostFacts, shell: Option<&Utf8Path>) -> String {
    let mut lines = vec![
        format!("export HOME={}", single_quote(facts.home.as_str())),
        format!("export USER={}", single_quote(&facts.user)),
        // An attached login's session has its own directory, TERM and
        // terminfo entry, the client's.
        format!("if [ -z \"${{{ATTACHED}:-}}\" ]; then"),
    ];
    if let Some(term) = &facts.term {
        lines.push(format!("  export TERM={}", single_quote(term)));
    }
    if let Some(dir) = session::terminfo_dir(facts) {
        lines.push(format!("  {TERMINFO}={}", single_quote(dir.as_str())));
    }
    lines.push(format!(
        "  cd {} 2>/dev/null || cd \"$HOME\" 2>/dev/null",
        single_quote(facts.cwd.as_str())
    ));
    lines.push("fi".to_owned());
    // NixOS's /etc/profile sets TERMINFO_DIRS (its shell init sources
    // set-environment) before the login shell init that sources this file
    // (nixos/modules/programs/bash/bash.nix, `environment.etc.profile`:
    // `cfg.shellInit` before `cfg.loginShellInit`): the terminal's entry
    // comes first, the guest's own directories stay after it.
    lines.push(format!(
        "if [ -n \"${{{TERMINFO}:-}}\" ]; then export TERMINFO_DIRS=\"${TERMINFO}${{TERMINFO_DIRS:+:$TERMINFO_DIRS}}\"; fi"
    ));
    if let Some(path) = &facts.path {
        lines.push(format!(
            "export PATH={}\"${{PATH:+:$PATH}}\"",
            single_quote(path)
        ));
    }
    if command::relays_host_nix(facts) {
        lines.push(format!(
            "export NIX_REMOTE={}",
            single_quote(host_nix::NIX_REMOTE)
        ));
    } else if let Some(note) = &facts.host_nix_note {
        // Once per boot, on a terminal: a command's output stays its own.
        lines.push(format!(
            "if [ ! -e {SAID} ] && [ -t 2 ]; then echo {} >&2; : >{SAID} 2>/dev/null; fi",
            single_quote(&format!("nixos-shell: {note}"))
        ));
    }
    if let Some(shell) = shell {
        lines.push(format!(
            "if [ -z \"${{{BECAME}:-}}\" ] && [ -t 0 ]; then export {BECAME}=1; exec {} -l; fi",
            single_quote(shell.as_str())
        ));
    }
    let mut text = String::from(
        "# Written by nixos-shell-guest from the host facts; sourced by every login\n\
         # shell, applied to root's only.\n\
         if [ \"$(id -u)\" = 0 ]; then\n",
    );
    for line in lines {
        text.push_str("  ");
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str("fi\n");
    text
}

/// Exists once a login has said why the guest's nix uses its own store.
const SAID: &str = "/run/nixos-shell/host-nix-said";

/// Set in an attached login's environment (`guest::attach`): the script
/// then leaves the directory, `TERM` and its entry as the session has them.
pub const ATTACHED: &str = "NIXOS_SHELL_ATTACHED";

/// The directory of the terminal's terminfo entry, which the script puts
/// first in `TERMINFO_DIRS`: the host's for the console's login, the
/// client's (in its environment) for an attached one.
pub const TERMINFO: &str = "NIXOS_SHELL_TERMINFO";

/// Set once the login has become the user's shell (an attached login
/// starts as it).
pub const BECAME: &str = "NIXOS_SHELL_USER_SHELL";

/// Writes the script to `path` (parents created), readable by everyone.
pub fn install(path: &Utf8Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {parent}"))?;
    }
    std::fs::write(path, text)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)))
        .with_context(|| format!("cannot write the login environment {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        serde_json::from_str(
            r#"{"version":1,"user":"alice","home":"/home/alice","cwd":"/home/alice/src"}"#,
        )
        .unwrap()
    }

    /// `text` sourced by `sh` as the user `uid` with `HOME=/home/bob`,
    /// starting in `/`: the `HOME` and directory it ends with.
    fn sourced_as(uid: u32, text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let env = Utf8Path::from_path(dir.path())
            .unwrap()
            .join("login-env.sh");
        install(&env, text).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            // `id` as the user would see it; every other command is sh's.
            .arg(format!(
                "id() {{ echo {uid}; }}; cd /; . '{env}'; printf '%s %s' \"$HOME\" \"$(pwd)\""
            ))
            .env("HOME", "/home/bob")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn minimal_facts_set_home_user_and_cwd() {
        assert_eq!(
            script(&facts(), None),
            "# Written by nixos-shell-guest from the host facts; sourced by every login\n\
             # shell, applied to root's only.\n\
             if [ \"$(id -u)\" = 0 ]; then\n\
             \x20 export HOME='/home/alice'\n\
             \x20 export USER='alice'\n\
             \x20 if [ -z \"${NIXOS_SHELL_ATTACHED:-}\" ]; then\n\
             \x20   cd '/home/alice/src' 2>/dev/null || cd \"$HOME\" 2>/dev/null\n\
             \x20 fi\n\
             \x20 if [ -n \"${NIXOS_SHELL_TERMINFO:-}\" ]; then export TERMINFO_DIRS=\"$NIXOS_SHELL_TERMINFO${TERMINFO_DIRS:+:$TERMINFO_DIRS}\"; fi\n\
             fi\n"
        );
    }

    #[test]
    fn term_its_entry_and_path_follow_the_host() {
        let mut facts = facts();
        facts.term = Some("xterm-kitty".into());
        facts.terminfo_dir = Some("terminfo".into());
        facts.path = Some("/run/wrappers/bin:/home/alice/.nix-profile/bin".into());
        let text = script(&facts, None);
        for line in [
            "    export TERM='xterm-kitty'\n",
            "    NIXOS_SHELL_TERMINFO='/run/nixos-shell/session/terminfo'\n",
            "  export PATH='/run/wrappers/bin:/home/alice/.nix-profile/bin'\"${PATH:+:$PATH}\"\n",
        ] {
            assert!(text.contains(line), "{line:?} not in {text}");
        }
    }

    /// The console's size has one owner, the resize follower: a size the
    /// login set from the facts could be older than the one it applied.
    #[test]
    fn the_login_sets_no_size() {
        assert!(!script(&facts(), None).contains("stty"));
    }

    #[test]
    fn an_interactive_login_becomes_the_users_shell_once() {
        let text = script(
            &facts(),
            Some(Utf8Path::new("/run/current-system/sw/bin/zsh")),
        );
        assert!(
            text.ends_with(
                "  if [ -z \"${NIXOS_SHELL_USER_SHELL:-}\" ] && [ -t 0 ]; then \
                 export NIXOS_SHELL_USER_SHELL=1; exec '/run/current-system/sw/bin/zsh' -l; fi\nfi\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_relayed_host_nix_is_named_and_an_unrelayed_one_explained() {
        let mut facts = facts();
        assert!(!script(&facts, None).contains("NIX_REMOTE"));
        facts.ports = vec![crate::schema::ports::Port::HostNix];
        assert!(script(&facts, None)
            .contains("  export NIX_REMOTE='unix:///run/nixos-shell/host-nix.sock'\n"));
        facts.ports = Vec::new();
        facts.host_nix_note = Some("no nix-daemon".into());
        let text = script(&facts, None);
        assert!(!text.contains("NIX_REMOTE"));
        assert!(
            text.contains(
                "  if [ ! -e /run/nixos-shell/host-nix-said ] && [ -t 2 ]; then \
                 echo 'nixos-shell: no nix-daemon' >&2; : >/run/nixos-shell/host-nix-said 2>/dev/null; fi\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_hostile_cwd_stays_one_word() {
        let mut facts = facts();
        facts.cwd = "/tmp/a'; rm -rf /; '".into();
        assert!(script(&facts, None).contains(r"cd '/tmp/a'\''; rm -rf /; '\''' 2>/dev/null"));
    }

    /// Regression: every user's login shell sources the script, and a
    /// login of another user got the host user's home and directory.
    #[test]
    fn the_facts_apply_to_roots_login_and_to_no_one_elses() {
        let text = script(&facts(), None);
        assert_eq!(sourced_as(0, &text), "/home/alice /");
        assert_eq!(sourced_as(1000, &text), "/home/bob /");
    }
}
