//! Running the host's `--command` on the console: `SHELL -c CMD` (the
//! user's shell when the guest has it, else `/bin/sh`) in a new session
//! whose controlling terminal is the console (so Ctrl-C reaches it), in the
//! host's cwd, with the host's HOME, USER, TERM and PATH.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};

use crate::schema::facts::HostFacts;

/// The status reported when the command could not be started at all (as a
/// shell reports a command it cannot execute).
pub const FAILED_TO_START: i32 = 126;

/// The shell that runs the command when the user's is not in the guest.
const SHELL: &str = "/bin/sh";

/// Where a NixOS guest keeps its programs: a systemd unit's own `PATH` lacks
/// them, a login shell has them.
const NIXOS_PATH: [&str; 4] = [
    "/run/wrappers/bin",
    "/root/.nix-profile/bin",
    "/nix/var/nix/profiles/default/bin",
    "/run/current-system/sw/bin",
];

/// The guest's `PATH` for the command: NixOS' system directories that
/// exist, then the role's own `PATH`.
pub fn guest_path(own: Option<&str>, exists: impl Fn(&str) -> bool) -> String {
    NIXOS_PATH
        .into_iter()
        .filter(|dir| exists(dir))
        .chain(own.filter(|p| !p.is_empty()))
        .collect::<Vec<_>>()
        .join(":")
}

/// The variables set for the command; the rest of the environment is the
/// guest role's own. `guest_path` is the guest's `PATH`, kept after the
/// host's.
pub fn environment(facts: &HostFacts, guest_path: Option<&str>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("HOME".to_owned(), facts.home.to_string());
    env.insert("USER".to_owned(), facts.user.clone());
    if let Some(term) = &facts.term {
        env.insert("TERM".to_owned(), term.clone());
    }
    let path = match (facts.path.as_deref(), guest_path) {
        (Some(host), Some(guest)) if !guest.is_empty() => Some(format!("{host}:{guest}")),
        (Some(host), _) => Some(host.to_owned()),
        (None, guest) => guest.map(str::to_owned),
    };
    if let Some(path) = path {
        env.insert("PATH".to_owned(), path);
    }
    env
}

/// The directory the command starts in: the host's cwd when the guest has
/// it (home or an extra mount), else the home directory, else `/`.
pub fn working_dir(facts: &HostFacts, is_dir: impl Fn(&Utf8Path) -> bool) -> Utf8PathBuf {
    [facts.cwd.as_path(), facts.home.as_path()]
        .into_iter()
        .find(|dir| is_dir(dir))
        .unwrap_or(Utf8Path::new("/"))
        .to_owned()
}

/// Runs `command` with `shell` (else `/bin/sh`) on `console` and waits for
/// it, `guest_path` being the guest's `PATH`; returns its exit status,
/// `128 + N` when signal N ended it.
pub fn run_on_console(
    console: &Utf8Path,
    command: &str,
    facts: &HostFacts,
    shell: Option<&Utf8Path>,
    guest_path: &str,
) -> anyhow::Result<i32> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open(console)
        .with_context(|| format!("cannot open the console {console} to run the command"))?;
    let stdin = tty.try_clone().context("cannot duplicate the console")?;
    let stdout = tty.try_clone().context("cannot duplicate the console")?;
    let shell = shell.unwrap_or(Utf8Path::new(SHELL));
    let mut child = Command::new(shell);
    child
        .arg("-c")
        .arg(command)
        .current_dir(working_dir(facts, |dir| dir.is_dir()))
        .envs(environment(facts, Some(guest_path)))
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(tty));
    // SAFETY: the closure runs between fork and exec, where only
    // async-signal-safe calls may be made; it makes two system calls,
    // setsid(2) and ioctl(2), which take no lock and allocate nothing, and
    // turns their errno into an `io::Error` without allocating. Standard
    // input is already the console when it runs.
    unsafe {
        child.pre_exec(|| {
            rustix::process::setsid()?;
            // rustix's `ioctl_tiocsctty` passes 0, which fails when the
            // console is another session's controlling terminal, as busybox
            // init makes it for the role's own session; 1 takes it over,
            // which root may.
            if libc::ioctl(0, libc::TIOCSCTTY, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = child
        .status()
        .with_context(|| format!("cannot run {shell} -c {command:?} on {console}"))?;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(FAILED_TO_START))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        serde_json::from_str(
            r#"{"version":1,"user":"alice","home":"/home/alice","cwd":"/home/alice/src",
                "term":"xterm","path":"/host/bin"}"#,
        )
        .unwrap()
    }

    #[test]
    fn host_path_comes_before_the_guests() {
        let env = environment(&facts(), Some("/run/current-system/sw/bin"));
        let expected: BTreeMap<String, String> = [
            ("HOME", "/home/alice"),
            ("PATH", "/host/bin:/run/current-system/sw/bin"),
            ("TERM", "xterm"),
            ("USER", "alice"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(env, expected);
    }

    #[test]
    fn without_a_host_path_the_guests_stays() {
        let mut facts = facts();
        facts.path = None;
        facts.term = None;
        let env = environment(&facts, Some("/bin"));
        assert_eq!(env.get("PATH").map(String::as_str), Some("/bin"));
        assert!(!env.contains_key("TERM"));
    }

    #[test]
    fn the_guest_path_adds_nixos_system_dirs_that_exist() {
        let nixos = |dir: &str| dir.starts_with("/run/");
        assert_eq!(
            guest_path(Some("/usr/bin:/bin"), nixos),
            "/run/wrappers/bin:/run/current-system/sw/bin:/usr/bin:/bin"
        );
        assert_eq!(guest_path(Some("/bin"), |_| false), "/bin");
        assert_eq!(guest_path(None, |_| false), "");
    }

    #[test]
    fn cwd_falls_back_to_home_then_root() {
        let facts = facts();
        assert_eq!(working_dir(&facts, |_| true), "/home/alice/src");
        assert_eq!(
            working_dir(&facts, |dir| dir == "/home/alice"),
            "/home/alice"
        );
        assert_eq!(working_dir(&facts, |_| false), "/");
    }
}
