//! nixos-shell run by an ordinary user, the usual case: uid 65534 through
//! `setpriv`, with a HOME and TMPDIR of its own. Nix here is single-user
//! (a store root owns), so the test builds the VM as root first and the user
//! runs the build result, as `nixos-shell /nix/store/...` does without nix.

use std::os::unix::fs::{chown, MetadataExt};
use std::path::Path;
use std::process::Command;

use crate::support::vm::{processes_under, Console, Era, BOOT_TIMEOUT};
use crate::support::vm_fixture::{Fixture, Shares, COLS, ROWS};
use crate::PATHS;

/// The user: `nobody` on Debian.
const UID: u32 = 65534;

/// Hands `path` and everything below it to the user.
fn give_to_user(path: &Path) {
    chown(path, Some(UID), Some(UID)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap().flatten() {
            give_to_user(&entry.path());
        }
    }
}

/// The uid a process runs as, from `/proc/<pid>/status`.
fn uid_of(pid: libc::pid_t) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn an_ordinary_user_shares_home_over_virtiofs_and_owns_what_the_guests_root_writes() {
    let fx = Fixture::for_another_user(PATHS, Era::NineP, Shares::Virtiofs);
    let script = fx.built_run_script();
    let result = script.parent().and_then(Path::parent).unwrap().to_owned();
    give_to_user(&fx.home());
    give_to_user(&fx.path("tmp"));

    let template = fx.nix.cli(&[]);
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(fx.user_cli())
        .arg(&result)
        .env_clear()
        .current_dir(fx.cwd());
    for (name, value) in template.get_envs() {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    command
        .env("USER", "nobody")
        .env("LOGNAME", "nobody")
        .env("SHELL", "/bin/sh")
        .env("TERM", "xterm-nixos-shell-test");
    let mut vm = Console::spawn(command, ROWS, COLS);
    vm.wait_for_shell();

    let daemons = processes_under(&fx.home(), "virtiofsd");
    assert!(!daemons.is_empty(), "no virtiofsd serves the home");
    for (pid, cmdline) in &daemons {
        assert_eq!(
            uid_of(*pid),
            Some(UID),
            "{cmdline} does not run as the user"
        );
    }
    let home = fx.home();
    let (out, status) = vm.sh(&format!(
        "id -u; echo by root > '{0}/by-root' && mkdir '{0}/dir-by-root'",
        home.display()
    ));
    assert_eq!(status, 0, "{out}");
    // The writer is the guest's root: `id -u` said 0 on a line of its own.
    assert!(out.lines().any(|line| line.trim() == "0"), "{out:?}");
    for made in ["by-root", "dir-by-root"] {
        let meta = std::fs::metadata(home.join(made)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (UID, UID),
            "{made}, made by the guest's root, is not the user's"
        );
    }
    assert_eq!(
        std::fs::read_to_string(home.join("by-root")).unwrap(),
        "by root\n"
    );

    vm.send("poweroff\n");
    let status = vm.wait(BOOT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{}", vm.transcript());
    fx.assert_no_virtiofsd_left();
}
