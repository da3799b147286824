//! The console as the host terminal's: it has the terminal's latest size
//! whenever the terminal was resized (while nix builds, while the VM boots,
//! while a command runs), and the terminal's terminfo entry is known in the
//! guest when only the host has it. Driven by the real CLI through a
//! pseudo-terminal, the guest role started as the module's units start it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::terminfo;
use crate::support::vm::{
    processes_under, Console, Era, BOOT_TIMEOUT, GUEST_OWN_TERMINFO, PRINT_SIZE_ON_WINCH, TPUT,
    WAITING_FOR_WINCH,
};
use crate::support::vm_fixture::{Fixture, COLS, ROWS};
use crate::PATHS;

/// How long a resize may take to reach the guest (see `streams`).
const RESIZE_TIMEOUT: Duration = Duration::from_secs(20);

/// Waits until `ready` holds; panics after `timeout` naming `what`.
fn wait_until(what: &str, timeout: Duration, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The resizes land while nixos-shell waits for nix: each build is held
/// open until the terminal has its new size (the second build is cached
/// and would be done before a resize came).
#[test]
fn a_resize_while_nix_builds_is_the_size_of_the_command_and_of_the_login() {
    let fx = Fixture::new(PATHS, Era::NineP);
    fx.nix.hold_nix();
    let mut vm = fx.start(&["--command", "stty size"]);
    fx.nix.wait_until_nix_held(BOOT_TIMEOUT);
    vm.resize(41, 123);
    fx.nix.release_nix();
    vm.expect("41 123", BOOT_TIMEOUT);
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0), "{}", vm.transcript());

    fx.nix.hold_nix();
    let mut vm = fx.start(&[]);
    fx.nix.wait_until_nix_held(BOOT_TIMEOUT);
    vm.resize(42, 124);
    fx.nix.release_nix();
    vm.wait_for_shell();
    let (size, _) = vm.sh("stty size");
    assert!(size.trim_end().ends_with("\n42 124"), "{size:?}");
    vm.send("poweroff\n");
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));
}

/// Resized once QEMU runs, long before the guest's command starts (the
/// boot takes seconds under TCG); then again while the command waits for
/// SIGWINCH.
#[test]
fn a_resize_while_the_vm_boots_is_the_commands_size_and_later_ones_reach_its_trap() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let command = format!("stty size; {PRINT_SIZE_ON_WINCH}");
    let mut vm = fx.start(&["--command", &command]);
    wait_until("QEMU's start", BOOT_TIMEOUT, || {
        !processes_under(&fx.path("tmp"), "qemu-system-x86_64").is_empty()
    });
    vm.resize(43, 125);
    vm.expect("43 125", BOOT_TIMEOUT);
    vm.expect(WAITING_FOR_WINCH, BOOT_TIMEOUT);
    vm.resize(20, 90);
    vm.expect("resized-to 20 90-", RESIZE_TIMEOUT);
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0), "{}", vm.transcript());
}

/// nixos-shell with `TERM=term` and the other variables of `env`.
fn start_with_term(fx: &Fixture, args: &[&str], term: &str, env: &[(&str, &Path)]) -> Console {
    let mut command = fx.command(args);
    command.env("TERM", term);
    for (name, value) in env {
        command.env(name, value);
    }
    Console::spawn(command, ROWS, COLS)
}

/// What the guest's ncurses says of `TERM`, and of the guest's own entry.
fn longnames() -> String {
    format!("{TPUT} longname; echo; {TPUT} -T {GUEST_OWN_TERMINFO} longname; echo")
}

/// kitty, foot or a user's own `tic` output: an entry in a directory
/// `TERMINFO` names, outside the shared home.
#[test]
fn an_entry_only_the_host_has_is_known_to_the_command_and_the_login() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let dir = fx.path("terminal-app/terminfo");
    terminfo::compile(
        "nixos-shell-host-only",
        "a terminal only the host knows",
        &dir,
    );
    let env = [("TERMINFO", dir.as_path())];
    let mut vm = start_with_term(
        &fx,
        &["--command", &longnames()],
        "nixos-shell-host-only",
        &env,
    );
    vm.expect("a terminal only the host knows", BOOT_TIMEOUT);
    // The guest's own entries are still found.
    vm.expect("DEC VT100", BOOT_TIMEOUT);
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0), "{}", vm.transcript());

    let mut vm = start_with_term(&fx, &[], "nixos-shell-host-only", &env);
    vm.wait_for_shell();
    let (out, status) = vm.sh(&longnames());
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("a terminal only the host knows"), "{out}");
    assert!(out.contains("DEC VT100"), "{out}");
    vm.send("poweroff\n");
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));
}

/// An entry in `~/.terminfo`, which the shared home brings along anyway.
#[test]
fn an_entry_in_the_homes_terminfo_is_known_in_the_guest() {
    let fx = Fixture::new(PATHS, Era::NineP);
    terminfo::compile(
        "nixos-shell-in-home",
        "a terminal of the home's",
        &fx.home().join(".terminfo"),
    );
    let mut vm = start_with_term(&fx, &[], "nixos-shell-in-home", &[]);
    vm.wait_for_shell();
    let (out, status) = vm.sh(&format!("{TPUT} longname"));
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("a terminal of the home's"), "{out}");
    vm.send("poweroff\n");
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));
}

/// A `TERM` no database has: passed on as before, nothing copied, no error.
#[test]
fn a_term_without_an_entry_anywhere_boots_as_before() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = start_with_term(&fx, &[], "nixos-shell-nowhere", &[]);
    vm.wait_for_shell();
    let (out, _) = vm.sh("echo \"term=$TERM\"");
    assert!(out.contains("term=nixos-shell-nowhere"), "{out}");
    let (out, status) = vm.sh(&format!("{TPUT} longname"));
    assert_ne!(status, 0, "the guest knew a terminal no one has: {out}");
    let (out, status) = vm.sh("ls /run/nixos-shell/session/terminfo");
    assert_ne!(status, 0, "something was copied: {out}");
    vm.send("poweroff\n");
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));
}
