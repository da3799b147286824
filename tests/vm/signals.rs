//! Signals sent to nixos-shell while its VM runs (a closed terminal,
//! `kill`, `timeout`, a service manager): the VM ends, no QEMU or virtiofsd
//! survives, the session (with its ephemeral disk image) is removed, the
//! terminal is restored and nixos-shell exits 128+N. Killed outright,
//! nixos-shell takes QEMU and its virtiofsd daemons with it. The fixture
//! shares home over virtiofs (the module's default), so every run here
//! has a daemon of nixos-shell's own to stop.

use std::time::{Duration, Instant};

use crate::support::vm::{
    kill_processes_under, processes_under, Console, Era, Permit, Pty, BOOT_TIMEOUT,
};
use crate::support::vm_fixture::{Fixture, COLS, ROWS};
use crate::PATHS;

/// Fails unless nixos-shell's virtiofsd serves the home: the daemon whose
/// end the tests check.
fn assert_serves_home(fx: &Fixture) {
    let daemons = processes_under(&fx.home(), "virtiofsd");
    assert!(
        !daemons.is_empty(),
        "no virtiofsd serves the home while the VM runs"
    );
}

/// Sends `signal` to nixos-shell alone (not its process group: what
/// `kill PID` does) once the guest's shell is up, and checks that nothing
/// of the run is left.
fn a_signal_ends_the_run_cleanly(era: Era, signal: i32) {
    let fx = Fixture::new(PATHS, era);
    let pty = Pty::open(ROWS, COLS);
    let before = pty.termios();
    let mut vm = Console::spawn_on(pty, fx.command(&["--ephemeral"]), Some(Permit::acquire(1)));
    vm.wait_for_shell();
    assert!(
        !fx.nix.leftovers().is_empty(),
        "the session should exist now"
    );
    assert_serves_home(&fx);
    let pid = i32::try_from(vm.pid()).unwrap();
    // SAFETY: signals the nixos-shell this test started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let status = vm.wait(BOOT_TIMEOUT);
    assert_eq!(
        status.code(),
        Some(128 + signal),
        "{} era, signal {signal}: nixos-shell ended with {status}; the terminal showed:\n{}",
        era.name(),
        vm.transcript()
    );
    fx.assert_ended_cleanly(Some((vm.pty(), &before)));
}

#[test]
fn term_ends_the_vm_and_nixos_shell_exits_143() {
    a_signal_ends_the_run_cleanly(Era::NineP, libc::SIGTERM);
}

#[test]
fn hup_ends_the_vm_and_nixos_shell_exits_129() {
    a_signal_ends_the_run_cleanly(Era::NineP, libc::SIGHUP);
}

#[test]
fn quit_ends_the_vm_and_nixos_shell_exits_131() {
    a_signal_ends_the_run_cleanly(Era::NineP, libc::SIGQUIT);
}

/// Regression: SIGINT sent to nixos-shell alone was ignored during the VM,
/// and the run exited 0 when the VM ended.
#[test]
fn int_sent_to_nixos_shell_alone_ends_the_vm_and_exits_130() {
    a_signal_ends_the_run_cleanly(Era::NineP, libc::SIGINT);
}

/// The virtiofs era's run script runs QEMU and virtiofsd as its children:
/// they get the signal too, not only the script.
#[test]
fn term_ends_a_virtiofs_era_vm_and_its_daemons() {
    a_signal_ends_the_run_cleanly(Era::Virtiofs, libc::SIGTERM);
}

/// SIGKILL cannot be caught: QEMU gets TERM as its parent-death signal,
/// which the run script's `exec` keeps, and so do nixos-shell's virtiofsd
/// daemons.
#[test]
fn kill_takes_qemu_with_nixos_shell() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = fx.start(&[]);
    vm.wait_for_shell();
    assert_serves_home(&fx);
    let pid = i32::try_from(vm.pid()).unwrap();
    // SAFETY: signals the nixos-shell this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && !(processes_under(&fx.nix.root, "qemu-system-x86_64").is_empty()
            && processes_under(&fx.nix.root, "virtiofsd").is_empty())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let qemu = kill_processes_under(&fx.nix.root, "qemu-system-x86_64");
    assert!(
        qemu.is_empty(),
        "QEMU outlived a killed nixos-shell: {qemu:?}"
    );
    fx.assert_no_virtiofsd_left();
}
