//! The order the guest role's steps run in, as the module's units run them
//! (the initramfs' inittab follows them: the early step, a stand-in for the
//! services after it, the command, the login), what the login environment
//! applies to, and which nixpkgs eras boot.

use crate::support::vm::{
    Console, Era, BOOT_TIMEOUT, MEMORY_MIB, MOUNTS_SEEN_BY_SERVICES, OTHER_USER,
};
use crate::support::vm_fixture::{Fixture, ShareOptions, Shares, COLS, DATA_GUEST_PATH, ROWS};
use crate::PATHS;

/// A shell command printing each mount point as `M:<path>` on a line.
const MOUNT_POINTS: &str = "cut -d' ' -f2 /proc/mounts | sed 's/^/M:/'";

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

/// Regression: a share that never mounted blocked the early step, which
/// has no start timeout, and with it the whole boot, with no message. Here
/// the virtiofs shares' daemons cannot serve the guest (its memory is not
/// shared: a later `-machine memory-backend` replaces nixos-shell's shared
/// one, the failure of nixpkgs #552774); the run script's own shares are
/// 9p. The boot goes on to the login, the console names each share, and
/// nothing is left mounted where they go.
#[test]
fn a_share_that_never_mounts_is_named_and_the_boot_goes_on() {
    let fx = Fixture::with_protocol(PATHS, Era::NineP, Shares::Virtiofs);
    let backend = format!("memory-backend-ram,id=unshared,size={MEMORY_MIB}M");
    let mut vm = Console::spawn(
        fx.command_with_qemu_args(
            &[],
            &["-object", &backend, "-machine", "memory-backend=unshared"],
        ),
        ROWS,
        COLS,
    );
    vm.wait_for_shell();
    let home = fx.home().display().to_string();
    let transcript = vm.transcript();
    for guest in [home.as_str(), DATA_GUEST_PATH] {
        assert!(
            transcript.contains(&format!(" did not mount at {guest} within ")),
            "{guest} is not named:\n{transcript}"
        );
    }
    assert!(
        transcript.contains("the boot goes on without it"),
        "{transcript}"
    );
    // What is there instead: an empty directory, which answers.
    for guest in [home.as_str(), DATA_GUEST_PATH] {
        let (listing, status) = vm.sh(&format!("ls -A {guest} | wc -l"));
        assert_eq!(status, 0, "{listing}");
        assert!(listing.trim_end().ends_with("\n0"), "{guest}: {listing}");
    }
    // Ctrl-a x: QEMU quits. Not `poweroff`: its `sync` waits for ever on
    // the shares whose daemon is gone (the kernel's request is sent).
    vm.send("\x01x");
    vm.wait(BOOT_TIMEOUT);
}

/// Regression: the early step mounted every share again when run a second
/// time (as a switch did, restarting its unit), one mount over the other.
/// Run again, it leaves the mounts as they are, in both protocols.
#[test]
fn the_early_step_run_again_stacks_no_mount() {
    for protocol in [Shares::Virtiofs, Shares::NineP] {
        let fx = Fixture::with_protocol(PATHS, Era::NineP, protocol);
        let mut vm = fx.start(&[]);
        vm.wait_for_shell();
        let (before, status) = vm.sh(MOUNT_POINTS);
        assert_eq!(status, 0, "{before}");
        // As a restart of its unit would: without a word (the session
        // share, 9p, refuses a second mount of its tag, EBUSY, and the
        // step stopped there).
        let (out, status) = vm.sh("nixos-shell-guest prepare");
        assert_eq!(status, 0, "{out}");
        assert!(!out.contains("warning"), "{}: {out}", protocol.name());
        let (after, _) = vm.sh(MOUNT_POINTS);
        let points = |text: &str| -> Vec<String> {
            text.lines()
                .filter_map(|line| line.trim_end().strip_prefix("M:"))
                .map(str::to_owned)
                .collect()
        };
        let (before, after) = (points(&before), points(&after));
        assert!(
            before.iter().any(|point| point == DATA_GUEST_PATH),
            "{}: {before:?}",
            protocol.name()
        );
        assert_eq!(before, after, "{} shares", protocol.name());
        vm.send("poweroff\n");
        assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0), "{}", vm.transcript());
    }
}
