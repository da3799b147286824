//! The order the guest role's steps run in, as the module's units run them
//! (the initramfs' inittab follows them: the early step, a stand-in for the
//! services after it, the command, the login), what the login environment
//! applies to, and which nixpkgs eras boot.

use crate::support::vm::{Console, Era, BOOT_TIMEOUT, MOUNTS_SEEN_BY_SERVICES, OTHER_USER};
use crate::support::vm_fixture::{Fixture, ShareOptions, Shares, COLS, DATA_GUEST_PATH, ROWS};
use crate::PATHS;

/// The guest paths of `mounts` (the text of /proc/mounts).
fn mount_points(mounts: &str) -> Vec<&str> {
    mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect()
}

/// Regression: the shares were mounted by a unit that raced the services
/// of multi-user.target, which could start on the empty directory. The
/// order of the units is the module's, checked where it is declared
/// (`module::defaults`, the shares are mounted before every service); the
/// initramfs here only follows it. What this proves is the guest role's
/// part: once its early step has returned, every share is mounted (the
/// home, the module's read-only extra mount and a `--mount`), as the next
/// step in the inittab sees them.
#[test]
fn every_share_is_mounted_once_the_early_step_returns() {
    for protocol in [Shares::Virtiofs, Shares::NineP] {
        let fx = Fixture::with_protocol(PATHS, Era::NineP, protocol);
        let extra = fx.path("extra");
        let mount = format!("{}:/mnt/extra:ro", extra.display());
        let mut vm = fx.start(&["--mount", &mount]);
        vm.wait_for_shell();
        let (seen, status) = vm.sh(&format!("cat {MOUNTS_SEEN_BY_SERVICES}"));
        assert_eq!(status, 0, "{seen}");
        let points = mount_points(&seen);
        let home = fx.home().display().to_string();
        for guest in [home.as_str(), DATA_GUEST_PATH, "/mnt/extra"] {
            assert!(
                points.contains(&guest),
                "{} shares: {guest} not mounted when services started:\n{seen}",
                protocol.name()
            );
        }
        vm.send("poweroff\n");
        assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0), "{}", vm.transcript());
    }
}

/// Regression: every user's login shell sourced the host user's facts, so
/// a login of another user ended in the host's home and directory.
#[test]
fn another_users_login_keeps_its_own_home_and_directory() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = fx.start(&[]);
    vm.wait_for_shell();
    let (root, _) = vm.sh("printf 'root:%s:%s\\n' \"$HOME\" \"$(pwd)\"");
    assert!(
        root.contains(&format!(
            "root:{}:{}",
            fx.home().display(),
            fx.cwd().display()
        )),
        "root's login has the host's facts: {root}"
    );
    let (other, status) = vm.sh(&format!(
        "su - {OTHER_USER} -c 'printf \"{OTHER_USER}:%s:%s:%s\\n\" \"$HOME\" \"$(pwd)\" \"$USER\"'"
    ));
    assert_eq!(status, 0, "{other}");
    let home = format!("/home/{OTHER_USER}");
    assert!(
        other.contains(&format!("{OTHER_USER}:{home}:{home}:{OTHER_USER}")),
        "{OTHER_USER}'s login: {other}"
    );
    vm.send("poweroff\n");
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));
}

/// Regression: in nixpkgs between #552774 (the store over virtiofs) and
/// #563324 (shared memory by default) the run script's own virtiofsd needs
/// the guest's memory shared, and only nixos-shell's own virtiofs shares
/// brought a shared backend: with 9p shares, or none, the VM did not boot.
/// The module now asks qemu-vm.nix for shared memory on a Linux host; every
/// era boots with 9p shares, with --no-home and with the defaults.
#[test]
fn every_era_boots_with_9p_shares_without_home_and_with_the_defaults() {
    for era in Era::ALL {
        let cases = [
            (
                ShareOptions {
                    protocol: Some(Shares::NineP),
                    ..ShareOptions::default()
                },
                &["-c", "true"][..],
                "9p shares",
            ),
            (
                ShareOptions {
                    protocol: Some(Shares::NineP),
                    ..ShareOptions::default()
                },
                &["--no-home", "-c", "true"][..],
                "--no-home",
            ),
            (ShareOptions::default(), &["-c", "true"][..], "the defaults"),
        ];
        for (shares, args, what) in cases {
            let fx = Fixture::with_shares(PATHS, era, shares);
            let mut vm = Console::spawn(fx.command(args), ROWS, COLS);
            let status = vm.wait(BOOT_TIMEOUT);
            assert_eq!(
                status.code(),
                Some(0),
                "{} era, {what}: the terminal showed:\n{}",
                era.name(),
                vm.transcript()
            );
        }
    }
}
