//! `nixos-shell --stop`: the nixos-shell that holds the VM is asked over
//! its attach socket, has the guest power off, and ends as after a
//! `poweroff` typed in its console; `--stop` returns once it is gone,
//! having waited without a timer.

use crate::support::strace::Sleeps;
use crate::support::vm::{Console, Era, Permit, Piped, Pty, BOOT_TIMEOUT};
use crate::support::vm_fixture::{Fixture, COLS, ROWS};
use crate::PATHS;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A VM that holds a terminal: `--stop` from elsewhere powers it off, its
/// nixos-shell exits 0 with the terminal as it was, nothing of the run is
/// left, and a second `--stop` finds no VM.
#[test]
fn stop_powers_off_a_vm_that_holds_a_terminal() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let pty = Pty::open(ROWS, COLS);
    let before = pty.termios();
    let mut vm = Console::spawn_on(pty, fx.command(&["--ephemeral"]), Some(Permit::acquire(1)));
    vm.wait_for_shell();
    let (traced, sleeps) = Sleeps::trace(&fx.command(&["--stop"]));
    let out = Piped::spawn_with(traced, None).finish(b"", BOOT_TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    // `--stop` returned once the holder was gone: it has ended already.
    let status = vm.wait(std::time::Duration::from_secs(5));
    let transcript = vm.transcript();
    assert_eq!(status.code(), Some(0), "{transcript}");
    // The guest powered off: QEMU was not ended on the timeout.
    assert!(!transcript.contains("ending QEMU"), "{transcript}");
    assert_eq!(sleeps.own(), Vec::<String>::new());
    fx.assert_ended_cleanly(Some((vm.pty(), &before)));
    let again = Piped::spawn_with(fx.command(&["--stop"]), None).finish(b"", BOOT_TIMEOUT);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("no VM of path:"),
        "{}",
        text(&again.stderr)
    );
}

/// A `--command` VM in another terminal: `--stop` powers it off before the
/// command ends, and its nixos-shell ends as after a `poweroff`: status 0
/// (regression: 1, for a command that reported no status), saying so in a
/// line, the terminal as it was, nothing of the run left.
#[test]
fn stop_powers_off_a_vm_that_runs_a_command_in_a_terminal() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let pty = Pty::open(ROWS, COLS);
    let before = pty.termios();
    let mut vm = Console::spawn_on(
        pty,
        fx.command(&["--ephemeral", "-c", "echo command-\"started\"; sleep 600"]),
        Some(Permit::acquire(1)),
    );
    vm.expect("command-started", BOOT_TIMEOUT);
    let out = Piped::spawn_with(fx.command(&["--stop"]), None).finish(b"", BOOT_TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let status = vm.wait(std::time::Duration::from_secs(5));
    let transcript = vm.transcript();
    assert_eq!(status.code(), Some(0), "{transcript}");
    assert!(
        transcript.contains("stopped (nixos-shell --stop) before the command ended"),
        "{transcript}"
    );
    assert!(!transcript.contains("ending QEMU"), "{transcript}");
    fx.assert_ended_cleanly(Some((vm.pty(), &before)));
}
