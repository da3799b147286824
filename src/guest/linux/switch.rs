//! `nixos-shell-guest switch TOPLEVEL`, which `nixos-shell --switch` runs
//! through an attach session once the host has built TOPLEVEL: checks that
//! the new system is visible in this guest's store, then activates it as
//! nixos-rebuild does, `switch-to-configuration test` (no boot entry) in a
//! transient unit of its own, its output on this step's streams and its
//! exit status this step's.
//!
//! Unlike the other steps, this one fails with the activation's status:
//! the host reports it, nothing here runs in a unit of the boot.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

use super::command;

/// The status when the system cannot be activated at all (not visible,
/// not switchable, nothing to run it with).
pub const REFUSED: u8 = 1;

/// Where the kernel drops its dentry and inode caches (proc(5),
/// `/proc/sys/vm/drop_caches`: 2 frees dentries and inodes).
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// Switches this guest to `toplevel`: the activation's exit status.
pub fn switch(toplevel: &Utf8Path) -> u8 {
    let program = toplevel.join(SWITCH_PROGRAM);
    if !visible(toplevel, |path| path.exists()) {
        eprintln!(
            "nixos-shell: {toplevel} is not visible in the VM's store; \
             restart the VM to run it (its store is not the host's, or lags behind it)"
        );
        return REFUSED;
    }
    if !program.is_file() {
        eprintln!(
            "nixos-shell: {toplevel} has no {SWITCH_PROGRAM} (system.switch.enable = false); \
             restart the VM to run it"
        );
        return REFUSED;
    }
    let guest_path = super::guest_path();
    let systemd_run = guest_path
        .split(':')
        .map(|dir| Utf8Path::new(dir).join("systemd-run"))
        .find(|path| path.is_file());
    if systemd_run.is_none() {
        eprintln!("nixos-shell: no systemd-run in this guest; activating in this session");
    }
    let argv = activation(&program, systemd_run.as_deref(), std::process::id());
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env("PATH", &guest_path);
    match cmd.status() {
        Ok(status) => u8::try_from(command::exit_code(status)).unwrap_or(REFUSED),
        Err(err) => {
            eprintln!("nixos-shell: cannot run {}: {err}", argv[0]);
            REFUSED
        }
    }
}

/// The toplevel's program that activates it (NixOS's
/// nixos/modules/system/activation/switchable-system.nix installs it unless
/// `system.switch.enable = false`).
const SWITCH_PROGRAM: &str = "bin/switch-to-configuration";

/// Whether `toplevel` is in the store as the guest sees it, `exists`
/// looking. The host's store reaches the guest through a share (9p
/// `cache=loose` or virtiofs `--cache=always`) under an overlay or a bind
/// at /nix/store (nixos/modules/virtualisation/qemu-vm.nix,
/// `virtualisation.fileSystems."/nix/store"`); a lookup of the name made
/// before the host built it may have left a negative dentry the overlay
/// keeps (linux Documentation/filesystems/overlayfs.rst, "Changes to
/// underlying filesystems"), so on a miss the dentries are dropped once
/// and the lookup repeated.
fn visible(toplevel: &Utf8Path, exists: impl Fn(&Utf8Path) -> bool) -> bool {
    if exists(toplevel) {
        return true;
    }
    // Root only; a failure leaves the second lookup to say.
    let _ = std::fs::write(DROP_CACHES, "2");
    exists(toplevel)
}

/// The command that activates `program` (`TOPLEVEL/bin/switch-to-configuration`)
/// as `test`: in a transient unit through `systemd_run`, as nixos-rebuild
/// does "to protect against PTY failures/network disconnections during
/// rebuild" (pkgs/by-name/ni/nixos-rebuild/nixos-rebuild.sh): the switch
/// never stops a unit without a unit file, so it survives restarting the
/// units that serve this very session. `--wait` propagates the service's
/// exit status and `--pipe` gives it these streams (systemd-run(1)); the
/// unit's name is ours and unique (`id`), so it never collides with
/// nixos-rebuild's or another switch's. `LOCALE_ARCHIVE` is passed as
/// nixos-rebuild passes it.
///
/// Without systemd-run (the test harness' busybox guest, never a NixOS
/// one) the program runs directly in this session: the transient unit is
/// what the harness cannot show.
fn activation(program: &Utf8Path, systemd_run: Option<&Utf8Path>, id: u32) -> Vec<Utf8PathBuf> {
    let mut argv: Vec<Utf8PathBuf> = Vec::new();
    if let Some(systemd_run) = systemd_run {
        argv.push(systemd_run.to_owned());
        for arg in [
            "-E",
            "LOCALE_ARCHIVE",
            "--collect",
            "--no-ask-password",
            "--pipe",
            "--quiet",
            "--service-type=exec",
            "--wait",
        ] {
            argv.push(arg.into());
        }
        argv.push(format!("--unit=nixos-shell-switch-{id}").into());
    }
    argv.push(program.to_owned());
    argv.push("test".into());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn the_activation_runs_in_a_transient_unit_when_systemd_can_run_one() {
        let program = Utf8Path::new("/nix/store/s/bin/switch-to-configuration");
        let argv = activation(
            program,
            Some("/run/current-system/sw/bin/systemd-run".into()),
            7,
        );
        let argv: Vec<&str> = argv.iter().map(|a| a.as_str()).collect();
        assert_eq!(argv[0], "/run/current-system/sw/bin/systemd-run");
        assert!(argv.contains(&"--wait") && argv.contains(&"--pipe"));
        assert!(argv.contains(&"--unit=nixos-shell-switch-7"));
        assert_eq!(argv[argv.len() - 2..], [program.as_str(), "test"]);
        assert_eq!(
            activation(program, None, 7),
            [program.to_owned(), "test".into()]
        );
    }

    #[test]
    fn a_system_not_seen_at_first_is_looked_up_again_once() {
        let looked = Cell::new(0);
        let seen_second_time = |_: &Utf8Path| {
            looked.set(looked.get() + 1);
            looked.get() == 2
        };
        assert!(visible("/nix/store/s".into(), seen_second_time));
        looked.set(0);
        assert!(!visible("/nix/store/s".into(), |_| {
            looked.set(looked.get() + 1);
            false
        }));
        assert_eq!(looked.get(), 2);
    }
}
