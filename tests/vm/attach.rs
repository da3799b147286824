//! `nixos-shell --attach`: sessions in the VM that already runs, through
//! pipes and through a pseudo-terminal, driven by the real CLI on both
//! sides, the guest role's attach server started as the module's unit.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use crate::support::vm::{Console, Era, BOOT_TIMEOUT, PRINT_SIZE_ON_WINCH, WAITING_FOR_WINCH};
use crate::support::vm_fixture::{Fixture, COLS, ROWS};
use crate::PATHS;

/// How long an attached session may take for one step (far below what a
/// user would wait for; the figure is in the benchmark).
const STEP: Duration = Duration::from_secs(30);

/// The fixture's VM, booted to its login shell on a terminal.
fn running(fx: &Fixture) -> Console {
    let mut vm = fx.start(&[]);
    vm.wait_for_shell();
    vm
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The next line of `out`.
fn next_line(out: &mut impl BufRead) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line
}

/// Powers the VM off from its console; it ends as after any `poweroff`.
fn power_off(mut vm: Console) {
    vm.send("poweroff\n");
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));
}

#[test]
fn a_command_gets_its_output_its_directory_and_its_exit_status() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = running(&fx);
    let out = fx
        .attach_piped(&["-c", "echo out; echo err >&2; pwd; exit 7"])
        .finish(b"", STEP);
    assert_eq!(out.status.code(), Some(7), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("out\n{}\n", fx.cwd().display()));
    assert_eq!(text(&out.stderr), "err\n");
    // The VM's own console is unharmed. The marker is split in the typed
    // line (which the console echoes), so only the output matches.
    let (said, status) = vm.sh("echo console-still-\"here\"");
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("console-still-here"), "{said}");
    power_off(vm);
}

#[test]
fn a_pipe_through_an_attach_comes_back_byte_for_byte() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let vm = running(&fx);
    let mut input = b"x\n\r\n\0tab\there\n".to_vec();
    input.extend((0..=255u8).cycle().take(300_000));
    input.extend(b"no final newline");
    let out = fx.attach_piped(&["-c", "cat"]).finish(&input, STEP);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(
        out.stdout == input,
        "{} bytes came back of {}",
        out.stdout.len(),
        input.len()
    );
    // A reader that goes away: the command gets SIGPIPE, as in a pipeline.
    let mut yes = fx.attach_piped(&["-c", "yes; echo yes-ended-with-$? >&2"]);
    let mut stdout = BufReader::new(yes.stdout());
    assert_eq!(next_line(&mut stdout), "y\n");
    drop(stdout);
    let status = yes.wait(STEP);
    let stderr = text(&yes.stderr());
    assert!(stderr.contains("yes-ended-with-141"), "{stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
    power_off(vm);
}

/// One attach waits for its input while another runs and ends: each is a
/// session of its own, its program an ordinary task (the attach server
/// runs as a batch task, which its children would inherit).
#[test]
fn two_attaches_at_once_are_sessions_of_their_own() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let vm = running(&fx);
    let mut waiting = fx.attach_piped(&["-c", "echo first-up; read line; echo first-got-$line"]);
    let mut first_out = BufReader::new(waiting.stdout());
    assert_eq!(next_line(&mut first_out), "first-up\n");
    // It also prints its scheduling policy (/proc's stat, field 41): an
    // ordinary task's (0), not the attach server's batch one (3).
    let second = fx
        .attach_piped(&["-c", "echo second-ran; cut -d' ' -f41 /proc/$$/stat"])
        .finish(b"", STEP);
    assert_eq!(text(&second.stdout), "second-ran\n0\n");
    assert_eq!(second.status.code(), Some(0));
    let mut stdin = waiting.stdin();
    stdin.write_all(b"hello\n").unwrap();
    drop(stdin);
    assert_eq!(next_line(&mut first_out), "first-got-hello\n");
    assert_eq!(waiting.wait(STEP).code(), Some(0));
    power_off(vm);
}

/// A login shell in the directory nixos-shell --attach started in, at its
/// terminal's size, following a resize; Ctrl-C reaches the program in
/// front; leaving the shell leaves the VM running.
#[test]
fn an_interactive_attach_is_a_login_shell_in_the_cwd_that_follows_its_terminal() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = running(&fx);
    let mut attached = fx.attach(&[]);
    attached.wait_for_shell();
    let (pwd, _) = attached.sh("pwd");
    assert!(pwd.contains(&fx.cwd().display().to_string()), "{pwd}");
    // The client's TERM (the fixture's), split so only the output matches.
    let (term, _) = attached.sh("echo term-is-\"$TERM\"");
    assert!(term.contains("term-is-xterm-nixos-shell-test"), "{term}");
    let (size, _) = attached.sh("stty size");
    assert!(
        size.trim_end().ends_with(&format!("\n{ROWS} {COLS}")),
        "{size:?}"
    );
    attached.send(&format!("{PRINT_SIZE_ON_WINCH}\n"));
    attached.expect(WAITING_FOR_WINCH, STEP);
    attached.resize(33, 111);
    attached.expect("resized-to 33 111-", STEP);
    // The markers are split in the typed line, so only the output matches.
    attached.send(
        "sh -c 'trap \"echo got-\\$0; exit\" INT; printf \"wait%s\\n\" ing-for-int; while :; do sleep 0.05; done' sigint\n",
    );
    attached.expect("waiting-for-int", STEP);
    attached.send("\x03");
    attached.expect("got-sigint", STEP);
    // `exit 0`: a bare `exit` takes the last status, which is 130 when the
    // INT interrupted the loop's sleep rather than its test.
    attached.send("exit 0\n");
    assert_eq!(
        attached.wait(STEP).code(),
        Some(0),
        "{}",
        attached.transcript()
    );
    // Split in the typed line, as above.
    let (said, status) = vm.sh("echo vm-still-\"runs\"");
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("vm-still-runs"), "{said}");
    power_off(vm);
}

/// The VM started with a command of its own: the attach runs beside it,
/// and the command ends with its own output and status.
#[test]
fn a_vm_running_its_own_command_takes_an_attach_and_ends_as_before() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = fx.start(&[
        "--command",
        "echo first-up; while [ ! -e \"$HOME/attached\" ]; do sleep 0.1; done; echo first-done; exit 4",
    ]);
    vm.expect("first-up", BOOT_TIMEOUT);
    let out = fx
        .attach_piped(&["-c", "touch \"$HOME/attached\"; echo attached-ok"])
        .finish(b"", STEP);
    assert_eq!(
        text(&out.stdout),
        "attached-ok\n",
        "stderr: {}",
        text(&out.stderr)
    );
    vm.expect("first-done", STEP);
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(4), "{}", vm.transcript());
}

/// The VM powers off while a session runs: the attach ends with one line
/// and status 1, and nothing of the session is left.
#[test]
fn an_attach_ends_when_the_vm_powers_off() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let vm = running(&fx);
    let mut attached = fx.attach_piped(&["-c", "echo waiting; sleep 600"]);
    let mut out = BufReader::new(attached.stdout());
    assert_eq!(next_line(&mut out), "waiting\n");
    power_off(vm);
    let status = attached.wait(STEP);
    let stderr = text(&attached.stderr());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("the VM ended"), "{stderr}");
    // Its entry went with it: a new attach finds no VM.
    let again = fx.attach_piped(&["-c", "true"]).finish(b"", STEP);
    assert!(
        text(&again.stderr).contains("no VM of"),
        "{}",
        text(&again.stderr)
    );
}

/// The guest's attach server restarts (the module's unit restarts it on
/// failure) while a session runs: the new server knows none of the old
/// sessions, so each ends with one line instead of waiting forever, and
/// the next attach reaches the new server.
#[test]
fn a_restarted_attach_server_ends_the_sessions_it_forgot() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = running(&fx);
    let mut attached = fx.attach_piped(&["-c", "echo waiting; sleep 600"]);
    let mut out = BufReader::new(attached.stdout());
    assert_eq!(next_line(&mut out), "waiting\n");
    // As the unit would: the server ends, then starts again.
    vm.sh("kill $(ps -o pid,args | grep '[s]erve-attach' | awk '{print $1}'); sleep 1");
    vm.sh("(/bin/nixos-shell-guest serve-attach 2>/dev/null &)");
    let status = attached.wait(STEP);
    let stderr = text(&attached.stderr());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("attach server restarted"), "{stderr}");
    let again = fx.attach_piped(&["-c", "echo again"]).finish(b"", STEP);
    assert_eq!(text(&again.stdout), "again\n", "{}", text(&again.stderr));
    power_off(vm);
}
