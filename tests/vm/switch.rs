//! `nixos-shell --switch`: the running VM follows its configuration. The
//! fixture's guest sees the host's store as qemu-vm.nix shares it, and its
//! system (`support::vm_fixture::System`) has a switch-to-configuration
//! whose output, effect (/run/switched) and status the tests see. Driven
//! by the real CLI and the real nix on the host, the guest role's switch
//! step in the guest.
//!
//! What the harness cannot show: the busybox guest has no systemd, so the
//! step runs the activation in a process group of its own instead of in a
//! transient unit (`systemd-run`), which only a NixOS guest exercises;
//! a restart of the attach server is the fixture's stand-in for
//! `systemctl restart` (`System::restarts_attach`).

use std::time::Duration;

use crate::support::guest_nix::GuestNix;
use crate::support::strace::Sleeps;
use crate::support::vm::{
    kill_processes_under, same_settings, Console, Output, Permit, Piped, Pty, BOOT_TIMEOUT,
};
use crate::support::vm_fixture::{Fixture, System, COLS, ROWS};
use crate::PATHS;

/// Far above what a build of the fixture and a switch take; a hang guard.
const SWITCH: Duration = Duration::from_secs(600);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `nixos-shell --switch` of the fixture's configuration, to its end.
fn switch(fx: &Fixture) -> Output {
    switch_with(fx, &[])
}

/// `nixos-shell --switch ARGS` of the fixture's configuration, to its end.
fn switch_with(fx: &Fixture, args: &[&str]) -> Output {
    let mut flags = vec!["--switch"];
    flags.extend_from_slice(args);
    Piped::spawn_with(fx.command(&flags), None).finish(b"", SWITCH)
}

/// What /run/switched in the guest holds ("" without one).
fn switched(fx: &Fixture) -> String {
    let out = fx
        .attach_piped(&["-c", "cat /run/switched 2>/dev/null; true"])
        .finish(b"", SWITCH);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

fn running(fx: &Fixture) -> Console {
    let mut vm = fx.start(&[]);
    vm.wait_for_shell();
    vm
}

fn power_off(mut vm: Console) {
    vm.send("poweroff\n");
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));
}

#[test]
fn a_new_build_is_switched_to_in_the_running_vm_and_its_output_and_status_come_back() {
    let fx = Fixture::switchable(PATHS);
    let vm = running(&fx);

    // The build the VM runs: nothing to do.
    let out = switch(&fx);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("already runs this build; nothing to switch"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(switched(&fx), "", "an unchanged build was activated");

    // A new system: its switch-to-configuration runs in the guest, as
    // `test`, its output here.
    fx.set_system(&System {
        mark: "second",
        ..System::default()
    });
    let out = switch(&fx);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("switch-to-configuration test: second"),
        "stdout: {} stderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("needs a restart"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(switched(&fx), "second");
    // The host keeps what the VM now runs from its garbage collector: an
    // out-link beside the VM's registry entry.
    let kept = kept_build(&fx).expect("no build kept beside the registry entry");
    assert!(kept.contains("nixos-system-vm-second"), "{kept}");

    // Its status comes back as nixos-shell's.
    fx.set_system(&System {
        mark: "third",
        status: 4,
        ..System::default()
    });
    let out = switch(&fx);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_eq!(switched(&fx), "third");

    // A build that fails: nix's error, and the VM as it was, answering.
    fx.set_system(&System {
        mark: "fourth",
        broken: true,
        ..System::default()
    });
    let out = switch(&fx);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("broken on purpose"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(switched(&fx), "third");

    // A new kernel: named as needing a restart, the rest switched.
    fx.set_system(&System {
        mark: "fifth",
        kernel: "k2",
        ..System::default()
    });
    let out = switch(&fx);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("nixos-shell: needs a restart: the kernel changed (boot.kernelPackages)\n"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("needs a restart").count(), 1, "{stderr}");
    assert_eq!(switched(&fx), "fifth");

    // The guest's step itself refuses a system its store does not show.
    let out = fx
        .attach_piped(&[
            "-c",
            "/bin/nixos-shell-guest switch /nix/store/00000000000000000000000000000000-none",
        ])
        .finish(b"", SWITCH);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is not visible in the VM's store"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(switched(&fx), "fifth");
    power_off(vm);
    assert_eq!(kept_build(&fx), None, "the kept build outlived the VM");
}

#[test]
fn a_switch_that_restarts_the_guests_attach_server_still_reports_its_status() {
    let fx = Fixture::switchable(PATHS);
    let vm = running(&fx);
    // Its switch-to-configuration ends the attach server and the session
    // that runs the switch, starts the server again, prints on, and
    // exits 4.
    fx.set_system(&System {
        mark: "restarting",
        status: 4,
        restarts_attach: true,
        ..System::default()
    });
    // Under strace: the wait for the server to come back is on the VM's
    // nixos-shell, which says when, never a retry on a timer.
    let (traced, sleeps) = Sleeps::trace(&fx.command(&["--switch"]));
    let out = Piped::spawn_with(traced, None).finish(b"", SWITCH);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert_eq!(sleeps.own(), Vec::<String>::new());
    // All of its output, each byte once: what came before the restart
    // and what came after.
    assert_eq!(
        text(&out.stdout),
        "switch-to-configuration test: restarting\nafter the restart\n",
        "{stderr}"
    );
    assert!(
        stderr.contains("following the switch again once the VM's attach server is back"),
        "{stderr}"
    );
    assert!(
        stderr.contains("switched, but some units failed to start (status 4)"),
        "{stderr}"
    );
    // The restarted server serves.
    assert_eq!(switched(&fx), "restarting");
    power_off(vm);
}

#[test]
fn a_switched_system_is_registered_in_the_guests_nix_database() {
    let fx = Fixture::switchable(PATHS);
    let staged = fx.path("nix-client");
    GuestNix::stage(&staged);
    let mount = format!("{}:/opt/nix:ro", staged.display());
    let vm = {
        let mut vm = fx.start(&["--mount", &mount]);
        vm.wait_for_shell();
        vm
    };
    // The guest's nix: the host's nix-store through its loader, with a
    // database of its own, as a NixOS guest with nix.enable has.
    let out = fx
        .attach_piped(&["-c", GUEST_NIX_STORE])
        .finish(b"", SWITCH);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    fx.set_system(&System {
        mark: "registered",
        ..System::default()
    });
    let out = switch(&fx);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let manifest: serde_json::Value =
        serde_json::from_str(&kept_build(&fx).expect("no build kept")).unwrap();
    let toplevel = manifest["switch"]["toplevel"].as_str().unwrap();
    let registration = manifest["switch"]["registration"].as_str().unwrap();
    // The new system is valid for the guest's nix; a host path outside
    // its closure (the registration's own) is not: the guest's database
    // answers, not the store's contents.
    let out = fx
        .attach_piped(&[
            "-c",
            &format!(
                "unset NIX_REMOTE; nix-store --check-validity {toplevel} && echo system-valid; \
                 nix-store --check-validity {} 2>/dev/null || echo other-invalid",
                registration.trim_end_matches("/registration")
            ),
        ])
        .finish(b"", SWITCH);
    assert_eq!(
        text(&out.stdout),
        "system-valid\nother-invalid\n",
        "{}",
        text(&out.stderr)
    );
    power_off(vm);
}

/// Puts the host's nix-store (staged at /opt/nix) on the guest's PATH and
/// gives the guest a Nix database of its own (the guest's own store, not
/// the host's that root's `NIX_REMOTE` names).
const GUEST_NIX_STORE: &str = "printf '#!/bin/sh\\nNIX_CONFIG=\"build-users-group =\" exec /opt/nix/lib/ld-linux-x86-64.so.2 --library-path /opt/nix/lib /opt/nix/bin/nix-store \"$@\"\\n' > /bin/nix-store && chmod +x /bin/nix-store && unset NIX_REMOTE && nix-store --init && test -f /nix/var/nix/db/db.sqlite";

/// The manifest of the build `--switch` keeps beside the VM's registry
/// entry (the fixture's TMPDIR holds the registry), if one is kept.
fn kept_build(fx: &Fixture) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let registry = fx.nix.tmp().join(format!("nixos-shell-{uid}"));
    let entries = std::fs::read_dir(registry).ok()?;
    let kept = entries
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".result"))?;
    std::fs::read_to_string(kept.path().join("share/nixos-shell/manifest.json")).ok()
}

#[test]
fn a_vm_whose_store_is_not_the_hosts_is_refused_without_a_build() {
    let fx = Fixture::switchable(PATHS);
    let no_host_store = System {
        host_store: false,
        ..System::default()
    };
    fx.set_system(&no_host_store);
    let vm = running(&fx);
    fx.set_system(&System {
        mark: "second",
        ..no_host_store
    });
    let before = fx.nix.nix_calls().0;
    let out = switch(&fx);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("nixos-shell: the running VM's store is not the host's"),
        "{stderr}"
    );
    assert_eq!(fx.nix.nix_calls().0, before, "something was built");
    assert_eq!(switched(&fx), "");
    power_off(vm);
}

/// The lines a `--watch` writes on stderr, as they come.
struct Watching {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watching {
    fn start(fx: &Fixture) -> Watching {
        let mut child = fx
            .command(&["--switch", "--watch"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start nixos-shell --switch --watch");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watching {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines up to the next one containing `needle`: that line.
    fn until(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(SWITCH) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The rounds so far: one status line each.
    fn rounds(&self) -> usize {
        self.seen
            .iter()
            .filter(|l| l.contains("waiting for the next save"))
            .count()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_watch_switches_once_per_burst_of_saves_and_survives_a_broken_one() {
    let fx = Fixture::switchable(PATHS);
    let vm = running(&fx);
    let mut watch = Watching::start(&fx);
    watch.until("watching");
    // Three saves at once: one round, of the last.
    for mark in ["burst-a", "burst-b", "burst-c"] {
        fx.set_system(&System {
            mark,
            ..System::default()
        });
    }
    let line = watch.until("waiting for the next save");
    assert!(line.contains("] switched in "), "{line}");
    assert_eq!(switched(&fx), "burst-c");
    // A broken save: its error, and the watch goes on.
    fx.set_system(&System {
        mark: "broken",
        broken: true,
        ..System::default()
    });
    let line = watch.until("waiting for the next save");
    assert!(line.contains("failed"), "{line}");
    assert!(
        watch.seen.iter().any(|l| l.contains("broken on purpose")),
        "{:?}",
        watch.seen
    );
    // The fixed save switches.
    fx.set_system(&System {
        mark: "fixed",
        ..System::default()
    });
    let line = watch.until("waiting for the next save");
    assert!(line.contains("] switched in "), "{line}");
    assert_eq!(switched(&fx), "fixed");
    assert_eq!(watch.rounds(), 3, "{:?}", watch.seen);
    // Ctrl-C ends the watch, not the VM.
    // SAFETY: signals the child this test started.
    unsafe { libc::kill(watch.child.id() as libc::pid_t, libc::SIGINT) };
    watch.until("the watch ended; the VM runs on");
    let status = watch.child.wait().expect("wait for the watch");
    assert_eq!(status.code(), Some(0), "{:?}", watch.seen);
    assert_eq!(watch.rounds(), 3, "{:?}", watch.seen);
    assert_eq!(switched(&fx), "fixed");
    power_off(vm);
}

/// `--switch --restart`: a build that needs no restart is switched as
/// without the flag; one that does (a new kernel) is named so, and the
/// nixos-shell that holds the VM starts it again from the new build in
/// the same terminal: the new system on the guest kernel's command line
/// (the run script boots `init=${toplevel}/init`), nothing activated (a
/// boot, not a switch), the console in raw mode again, and the terminal
/// as it was once the VM ends.
#[test]
fn restart_boots_a_build_that_needs_it_in_the_same_terminal() {
    let fx = Fixture::switchable(PATHS);
    let pty = Pty::open(ROWS, COLS);
    let before = pty.termios();
    let mut vm = Console::spawn_on(pty, fx.command(&[]), Some(Permit::acquire(1)));
    vm.wait_for_shell();
    let (cmdline, _) = vm.sh("cat /proc/cmdline");
    assert!(cmdline.contains("-nixos-system-vm-first/init"), "{cmdline}");

    fx.set_system(&System {
        mark: "second",
        ..System::default()
    });
    let out = switch_with(&fx, &["--restart"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        text(&out.stdout).contains("switch-to-configuration test: second"),
        "{stderr}"
    );
    assert!(stderr.contains("switched without one"), "{stderr}");
    assert_eq!(switched(&fx), "second");

    fx.set_system(&System {
        mark: "third",
        kernel: "k2",
        ..System::default()
    });
    let out = switch_with(&fx, &["--restart"]);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stderr}\nthe VM's terminal showed:\n{}",
        vm.transcript()
    );
    assert!(
        stderr.contains("nixos-shell: needs a restart: the kernel changed (boot.kernelPackages)\n"),
        "{stderr}"
    );
    assert!(stderr.contains("the VM restarted with "), "{stderr}");
    // The same terminal: the new boot's shell, running the new system.
    vm.wait_for_shell();
    let (cmdline, status) = vm.sh("cat /proc/cmdline");
    assert_eq!(status, 0, "{cmdline}");
    assert!(cmdline.contains("-nixos-system-vm-third/init"), "{cmdline}");
    assert_eq!(vm.pty().termios().c_lflag & libc::ICANON, 0, "not raw");
    assert_eq!(
        switched(&fx),
        "",
        "the restart activated instead of booting"
    );
    // The VM's entry names the build it now runs.
    let out = switch(&fx);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("already runs this build"),
        "{}",
        text(&out.stderr)
    );
    vm.send("poweroff\n");
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0), "{}", vm.transcript());
    assert!(
        same_settings(&before, &vm.pty().termios()),
        "the terminal's settings were not restored"
    );
    assert!(fx.nix.leftovers().is_empty(), "{:?}", fx.nix.leftovers());
}

/// Ends whatever a test's `--detach` left running under its fixture (a
/// holder lives in a session of its own).
struct Holders<'a>(&'a Fixture);

impl Drop for Holders<'_> {
    fn drop(&mut self) {
        for program in ["nixos-shell", "qemu-system-x86_64"] {
            kill_processes_under(&self.0.nix.root, program);
        }
    }
}

/// `--list --json` of the fixture's VMs.
fn listed(fx: &Fixture) -> Vec<serde_json::Value> {
    let out = fx.nix.cli(&["--list", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json.as_array().unwrap().clone()
}

/// A detached VM restarted by `--switch --restart` is still detached,
/// listed once with the build it now runs, reached by `--attach` on the
/// new system, and stopped by `--stop`.
#[test]
fn a_detached_vm_restarted_is_still_listed_and_attachable() {
    let fx = Fixture::switchable(PATHS);
    let _slot = Permit::acquire(1);
    let _holders = Holders(&fx);
    let mut start = Console::spawn_with(fx.command(&["--detach"]), ROWS, COLS, None);
    assert_eq!(
        start.wait(BOOT_TIMEOUT).code(),
        Some(0),
        "{}",
        start.transcript()
    );
    drop(start);
    let before = listed(&fx);
    assert_eq!(before.len(), 1, "{before:?}");

    fx.set_system(&System {
        mark: "second",
        kernel: "k2",
        ..System::default()
    });
    let out = switch_with(&fx, &["--restart"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("the VM restarted with "), "{stderr}");

    let after = listed(&fx);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["detached"], true, "{after:?}");
    assert_eq!(after[0]["pid"], before[0]["pid"], "another holder");
    assert_ne!(
        after[0]["build"], before[0]["build"],
        "the old build listed"
    );
    let out = fx
        .attach_piped(&["-c", "cat /proc/cmdline"])
        .finish(b"", SWITCH);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("-nixos-system-vm-second/init"),
        "{}",
        text(&out.stdout)
    );
    let stop = Piped::spawn_with(fx.command(&["--stop"]), None).finish(b"", BOOT_TIMEOUT);
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop.stderr));
    assert!(listed(&fx).is_empty());
    assert!(fx.nix.leftovers().is_empty(), "{:?}", fx.nix.leftovers());
}

/// A restart whose new VM does not boot (QEMU refuses a memory size no
/// machine has) says so and exits non-zero; the VM's nixos-shell ends with
/// QEMU's status and its message in its terminal, leaving nothing behind.
#[test]
fn a_restart_whose_new_vm_does_not_boot_says_so() {
    let fx = Fixture::switchable(PATHS);
    let mut vm = running(&fx);
    // 4 PiB: beyond the address space of any host, whatever its memory.
    fx.set_system(&System {
        mark: "unbootable",
        memory: 4_000_000_000,
        ..System::default()
    });
    let out = switch_with(&fx, &["--restart"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs a restart: QEMU's command line changed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the VM did not come back: it ended before the new build answered"),
        "{stderr}"
    );
    assert_ne!(vm.wait(BOOT_TIMEOUT).code(), Some(0), "{}", vm.transcript());
    assert!(
        vm.transcript().contains("QEMU failed"),
        "{}",
        vm.transcript()
    );
    let out = switch(&fx);
    assert!(
        text(&out.stderr).contains("no VM of"),
        "{}",
        text(&out.stderr)
    );
    assert!(fx.nix.leftovers().is_empty(), "{:?}", fx.nix.leftovers());
}
