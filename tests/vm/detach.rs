//! `nixos-shell --detach`: the VM goes on without the terminal that
//! started it, is reached with `--attach` and ended with `--stop`, and a
//! holder killed outright takes everything with it.

use std::time::{Duration, Instant};

use crate::support::strace::Sleeps;
use crate::support::vm::{
    kill_processes_under, processes_under, Console, Era, Permit, Piped, BOOT_TIMEOUT,
};
use crate::support::vm_fixture::{disk_images, Fixture, COLS, ROWS};
use crate::PATHS;

/// How long an attached command may take (far below what a user waits).
const STEP: Duration = Duration::from_secs(60);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Ends, when dropped, whatever a test's `--detach` left running under
/// its fixture: a holder lives in a session of its own, so a test that
/// fails before its `--stop` would otherwise leave its VM running for good.
/// The holder first (its QEMU and daemons die with it), then anything else.
struct Holders<'a>(&'a Fixture);

impl Drop for Holders<'_> {
    fn drop(&mut self) {
        for program in ["nixos-shell", "qemu-system-x86_64", "virtiofsd"] {
            kill_processes_under(&self.0.nix.root, program);
        }
    }
}

/// `--detach ARGS` on a terminal of its own, ended with status 0; the
/// terminal is closed (hung up) once it has. The caller holds the VM's
/// slot for as long as the VM runs.
fn detach(fx: &Fixture, args: &[&str]) -> String {
    let mut flags = vec!["--detach"];
    flags.extend_from_slice(args);
    detach_with(fx.command(&flags))
}

/// [`detach`]'s run of `command`, a `--detach`.
fn detach_with(command: std::process::Command) -> String {
    let mut start = Console::spawn_with(command, ROWS, COLS, None);
    let status = start.wait(BOOT_TIMEOUT);
    // Its last line may still be on its way through the terminal when the
    // process has ended: read until it (or a drain's time) is there.
    let _ = start.expect_unless_ended("stop it with", STEP);
    let said = start.transcript();
    assert_eq!(status.code(), Some(0), "{said}");
    // Dropping the console closes its terminal: a hangup for anything
    // still on it.
    drop(start);
    said
}

/// An attached command's output and status.
fn attach(fx: &Fixture, command: &str) -> (String, Option<i32>, String) {
    let out = fx.attach_piped(&["-c", command]).finish(b"", STEP);
    (text(&out.stdout), out.status.code(), text(&out.stderr))
}

/// `nixos-shell --stop` of the fixture's VM; it must succeed.
fn stop(fx: &Fixture) {
    let stop = Piped::spawn_with(fx.command(&["--stop"]), None).finish(b"", BOOT_TIMEOUT);
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop.stderr));
}

/// Leaves `--attach --console` with a key; it must end with status 0.
fn leave_console(mut console: Console) {
    console.send("q");
    assert_eq!(
        console.wait(STEP).code(),
        Some(0),
        "{}",
        console.transcript()
    );
}

/// `nixos-shell --list ARGS`' output; it must succeed.
fn list(fx: &Fixture, args: &[&str]) -> String {
    let mut flags = vec!["--list"];
    flags.extend_from_slice(args);
    let out = fx.nix.cli(&flags).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// The entries of the registry of running VMs in the fixture's TMPDIR.
fn registry_entries(fx: &Fixture) -> Vec<String> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let dir = fx.nix.tmp().join(format!("nixos-shell-{uid}"));
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The script of the README: detach, a command in the VM, stop; the
/// terminal that started the VM is gone before the command runs.
#[test]
fn a_detached_vm_outlives_its_terminal_answers_and_stops() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let _slot = Permit::acquire(1);
    let _holders = Holders(&fx);
    let said = detach(&fx, &["--ephemeral"]);
    assert!(said.contains("runs in the background"), "{said}");
    assert!(said.contains("nixos-shell --stop"), "{said}");
    let (out, status, err) = attach(&fx, "echo still-\"here\"");
    assert_eq!((out.as_str(), status), ("still-here\n", Some(0)), "{err}");
    // The console: the log so far, followed until a key leaves it, the
    // VM running on.
    let mut console = fx.attach(&["--console"]);
    console.expect("login shell ready", STEP);
    // What the console says from now on comes too (the stand-in guest's
    // console is hvc0).
    let (_, status, err) = attach(&fx, "echo followed-\"line\" >/dev/hvc0");
    assert_eq!(status, Some(0), "{err}");
    console.expect("followed-line", STEP);
    leave_console(console);
    let (out, status, err) = attach(&fx, "echo after-\"console\"");
    assert_eq!(
        (out.as_str(), status),
        ("after-console\n", Some(0)),
        "{err}"
    );
    // The attach sessions, from the registry alone: none (the attaches
    // above have ended, and neither the console nor --list opens one), one
    // while an attach is open, none once it has ended.
    let sessions = || {
        let json: serde_json::Value = serde_json::from_str(&list(&fx, &["--json"])).unwrap();
        json[0]["sessions"].clone()
    };
    assert_eq!(sessions(), 0);
    let mut open = fx.attach_piped(&["-c", "echo open; read line"]);
    let mut said = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(open.stdout()), &mut said).unwrap();
    assert_eq!(said, "open\n");
    assert_eq!(sessions(), 1);
    let table = list(&fx, &[]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].ends_with(" SESSIONS"), "{table}");
    assert!(lines[1].ends_with(" 1"), "{table}");
    std::io::Write::write_all(&mut open.stdin(), b"done\n").unwrap();
    assert_eq!(open.wait(STEP).code(), Some(0), "{}", text(&open.stderr()));
    assert_eq!(sessions(), 0);
    let table = list(&fx, &[]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("NAME "), "{table}");
    assert!(lines[1].ends_with(" 0"), "{table}");
    assert!(lines[1].contains("#vm"), "{table}");
    assert!(lines[1].contains(" yes "), "{table}");
    let json: serde_json::Value = serde_json::from_str(&list(&fx, &["--json"])).unwrap();
    let vms = json.as_array().unwrap();
    assert_eq!(vms.len(), 1, "{json}");
    assert_eq!(vms[0]["detached"], true, "{json}");
    assert!(
        vms[0]["config"].as_str().unwrap().ends_with("#vm"),
        "{json}"
    );
    assert!(vms[0]["pid"].as_u64().is_some(), "{json}");
    // The build the VM runs, the one --switch compares with.
    let build = vms[0]["build"].as_str().unwrap_or_default();
    assert!(
        build.starts_with("/nix/store/") && std::path::Path::new(build).join("bin").is_dir(),
        "{json}"
    );
    stop(&fx);
    fx.assert_ended_cleanly(None);
    assert_eq!(registry_entries(&fx), Vec::<String>::new());
    assert_eq!(list(&fx, &["--json"]).trim(), "[]");
    let (_, status, err) = attach(&fx, "true");
    assert_eq!(status, Some(1));
    assert!(err.contains("no VM of"), "{err}");
}

/// The detached VM's console logs, in the state directory beside the
/// disk images.
fn console_logs(fx: &Fixture) -> Vec<std::path::PathBuf> {
    let dir = fx.home().join(".local/state/nixos-shell");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".console.log"))
        .collect()
}

/// `--detach` returns once the guest answers on its channel: a `--stop`
/// at once finds a guest that can be asked to power off, not one too
/// early in its boot, whose QEMU its holder would end, saying so in the
/// log (beside the disk images, with the console).
#[test]
fn detach_returns_once_the_guest_answers() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let _slot = Permit::acquire(1);
    let _holders = Holders(&fx);
    // Waiting for the guest, it sleeps on no timer (strace leaves the
    // holder alone: it starts by exec).
    let (traced, sleeps) = Sleeps::trace(&fx.command(&["--detach", "--ephemeral"]));
    detach_with(traced);
    assert_eq!(sleeps.own(), Vec::<String>::new());
    stop(&fx);
    let logs = console_logs(&fx);
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(log.contains("login shell ready"), "{log}");
    assert!(!log.contains("ending QEMU"), "{log}");
    fx.assert_ended_cleanly(None);
}

/// `--disk PATH`: the console's log lies beside PATH (not in the state
/// directory), the registry names it, and `--attach --console` shows it.
#[test]
fn a_detached_vm_on_a_given_disk_logs_beside_it() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let _slot = Permit::acquire(1);
    let _holders = Holders(&fx);
    let image = fx.path("disks/own.qcow2");
    let said = detach(&fx, &["--disk", image.to_str().unwrap()]);
    let log = fx.path("disks/own.qcow2.console.log");
    assert!(said.contains(log.to_str().unwrap()), "{said}");
    assert!(image.exists(), "no image at {}", image.display());
    assert_eq!(console_logs(&fx), Vec::<std::path::PathBuf>::new());
    let json: serde_json::Value = serde_json::from_str(&list(&fx, &["--json"])).unwrap();
    assert_eq!(json[0]["consoleLog"], log.to_str().unwrap(), "{json}");
    let mut console = fx.attach(&["--console"]);
    console.expect("login shell ready", STEP);
    leave_console(console);
    stop(&fx);
    fx.assert_ended_cleanly(None);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("login shell ready"), "{logged}");
}

/// Two detached VMs of one configuration (issue 28): the second finds the
/// state image in use and falls back to a temporary one; it must not empty
/// the first's log, which the first goes on writing. Each has a log of
/// its own, named in its registry entry, and `--attach --console` shows
/// it; the second's, beside its temporary image, goes with it.
#[test]
fn a_second_detached_vm_of_one_configuration_keeps_the_first_ones_log() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let _slot = Permit::acquire(2);
    let _holders = Holders(&fx);
    detach(&fx, &[]);
    let logs = console_logs(&fx);
    assert_eq!(logs.len(), 1, "{logs:?}");
    let first_log = logs[0].clone();
    // The first's boot, all of it: once its console shows the login.
    let mut console = fx.attach(&["--console"]);
    console.expect("login shell ready", STEP);
    leave_console(console);
    let first_boot = std::fs::read_to_string(&first_log).unwrap();
    assert!(first_boot.contains("login shell ready"), "{first_boot}");
    detach(&fx, &[]);
    let kept = std::fs::read_to_string(&first_log).unwrap();
    assert!(
        kept.starts_with(&first_boot) && !kept.contains("temporary disk image"),
        "{kept}"
    );
    let json: serde_json::Value = serde_json::from_str(&list(&fx, &["--json"])).unwrap();
    let logs: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| vm["consoleLog"].as_str().unwrap())
        .collect();
    assert_eq!(logs.len(), 2, "{json}");
    assert!(logs.contains(&first_log.to_str().unwrap()), "{json}");
    let second_log = std::path::PathBuf::from(
        logs.iter()
            .find(|l| **l != first_log.to_str().unwrap())
            .unwrap(),
    );
    let second = std::fs::read_to_string(&second_log).unwrap();
    assert!(second.contains("temporary disk image"), "{second}");
    // `--attach --console` and `--stop` find the newest VM: the second.
    let mut console = fx.attach(&["--console"]);
    console.expect("temporary disk image", STEP);
    console.expect("login shell ready", STEP);
    leave_console(console);
    stop(&fx);
    assert!(
        !second_log.exists(),
        "{} was left behind",
        second_log.display()
    );
    // Then the first's, its own.
    let mut console = fx.attach(&["--console"]);
    console.expect("login shell ready", STEP);
    console.send("q");
    let said = console.transcript();
    assert_eq!(console.wait(STEP).code(), Some(0), "{said}");
    assert!(!said.contains("temporary disk image"), "{said}");
    stop(&fx);
    fx.assert_ended_cleanly(None);
    // A log beside the kept image stays.
    let logged = std::fs::read_to_string(&first_log).unwrap();
    assert!(logged.starts_with(&first_boot), "{logged}");
}

/// SIGKILL of the holder: QEMU and the daemons die with it (their
/// parent-death signal), and its entry goes at the next lookup.
#[test]
fn a_killed_holder_takes_qemu_and_its_daemons_with_it() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let _slot = Permit::acquire(1);
    let _holders = Holders(&fx);
    detach(&fx, &[]);
    let entries = registry_entries(&fx);
    // The link alone, without its companions (what --list reads, the
    // build the VM runs).
    let links: Vec<&String> = entries
        .iter()
        .filter(|e| e.split('.').count() == 2)
        .collect();
    assert_eq!(links.len(), 1, "{entries:?}");
    let (_, pid) = links[0].split_once('.').unwrap();
    let pid: i32 = pid.parse().unwrap();
    // SAFETY: signals the holder this test's --detach started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && !(processes_under(&fx.nix.root, "qemu-system-x86_64").is_empty()
            && processes_under(&fx.nix.root, "virtiofsd").is_empty())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let qemu = kill_processes_under(&fx.nix.root, "qemu-system-x86_64");
    assert!(qemu.is_empty(), "QEMU outlived a killed holder: {qemu:?}");
    fx.assert_no_virtiofsd_left();
    let (_, status, err) = attach(&fx, "true");
    assert_eq!(status, Some(1));
    assert!(err.contains("no VM of"), "{err}");
    assert_eq!(registry_entries(&fx), Vec::<String>::new());
}

/// A VM that cannot start: `--detach` says why with the log's tail, fails,
/// and nothing runs or is left.
#[test]
fn a_detached_vm_that_fails_to_start_says_why_and_leaves_nothing() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let _slot = Permit::acquire(1);
    let _holders = Holders(&fx);
    let command = fx.command_with_qemu_args(&["--detach", "--ephemeral"], &["-no-such-option"]);
    let out = Piped::spawn_with(command, None).finish(b"", BOOT_TIMEOUT);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("-no-such-option"), "{err}");
    assert!(err.contains("the VM did not start"), "{err}");
    fx.assert_ended_cleanly(None);
    assert_eq!(registry_entries(&fx), Vec::<String>::new());
}

/// `--reset` refuses while the VM of CONFIG runs, then deletes its disk
/// image in the state directory, saying which, and what lies beside it.
#[test]
fn reset_refuses_while_the_vm_runs_and_deletes_its_image_after() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let _slot = Permit::acquire(1);
    let _holders = Holders(&fx);
    detach(&fx, &[]);
    let state = fx.home().join(".local/state/nixos-shell");
    let images = disk_images(&state);
    assert_eq!(images.len(), 1, "{images:?}");
    let reset = || Piped::spawn_with(fx.command(&["--reset"]), None).finish(b"", STEP);
    let refused = reset();
    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused.stderr);
    assert!(err.contains("is running on its disk image"), "{err}");
    assert!(err.contains("nixos-shell --stop"), "{err}");
    assert!(images[0].exists());
    stop(&fx);
    let done = reset();
    let err = text(&done.stderr);
    assert_eq!(done.status.code(), Some(0), "{err}");
    assert_eq!(
        err,
        format!(
            "nixos-shell: deleting the disk image {}\n",
            images[0].display()
        )
    );
    // The image, its lock, its release record and its console's log.
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
