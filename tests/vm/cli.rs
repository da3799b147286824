//! What a user does, driven by the real CLI: it builds the fixture
//! flake with the real `nix`, writes the host facts and starts the run
//! script, which boots the busybox guest under QEMU (TCG) on a
//! pseudo-terminal.
//!
//! The core scenarios run once per era of NixOS' run script ([`Era`]: 9p,
//! virtiofs), as `nine_p::<scenario>` and `virtiofs::<scenario>`: the CLI
//! must work with the nixpkgs users build with, before and after qemu-vm.nix
//! moved its shares to virtiofs. Scenarios that do not touch what changed
//! between the eras (the terminal, two VMs, the facts) run in the 9p era.
//!
//! The share scenarios (home both ways, read-only shares, --mount) run in
//! each era over each protocol of the CLI's own shares
//! (`nixos-shell.mounts.protocol`, [`Shares`]): `<era>::<protocol>::NAME`.
//! The other scenarios share with the module's default, virtiofs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::vm::{kill_processes_under, processes_under};
use crate::support::vm::{
    same_settings, Console, Era, Permit, Piped, Pty, BOOT_TIMEOUT, MEMORY_MIB,
};
use crate::support::vm_fixture::{self as fixture, Fixture, Shares, COLS, DATA_GUEST_PATH, ROWS};
use crate::PATHS;

/// One `#[test]` per scenario and era: `nine_p::NAME` and `virtiofs::NAME`
/// call the scenario function `NAME(era)`.
macro_rules! in_both_eras {
    ($($scenario:ident),* $(,)?) => {
        mod nine_p {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::Era::NineP)
            })*
        }
        mod virtiofs {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::Era::Virtiofs)
            })*
        }
    };
}

/// One `#[test]` per share scenario, era and protocol:
/// `<era>_era::<protocol>_shares::NAME` call `NAME(era, protocol)`.
macro_rules! in_each_era_over_each_protocol {
    ($($scenario:ident),* $(,)?) => {
        in_each_era_over_each_protocol!(@era nine_p_era, NineP, $($scenario),*);
        in_each_era_over_each_protocol!(@era virtiofs_era, Virtiofs, $($scenario),*);
    };
    (@era $module:ident, $era:ident, $($scenario:ident),*) => {
        mod $module {
            mod virtiofs_shares {
                $(#[test]
                fn $scenario() {
                    super::super::$scenario(super::super::Era::$era, super::super::Shares::Virtiofs)
                })*
            }
            mod nine_p_shares {
                $(#[test]
                fn $scenario() {
                    super::super::$scenario(super::super::Era::$era, super::super::Shares::NineP)
                })*
            }
        }
    };
}

in_each_era_over_each_protocol!(
    home_is_mounted_at_the_hosts_path_both_ways,
    read_only_mounts_refuse_writes_and_leave_the_host_files_untouched,
);

in_both_eras!(
    the_login_environment_has_the_hosts_cwd_term_and_size,
    command_output_reaches_the_terminal_and_its_status_is_the_exit_status,
    memory_and_cores_flags_size_the_guest,
    a_forwarded_port_reaches_a_server_in_the_guest,
    ephemeral_leaves_no_disk_image_behind,
    the_run_scripts_own_shares_reach_the_guest,
);

fn path_str(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Waits for nixos-shell to end and expects `code`; then no virtiofsd the
/// run script started may be left.
fn expect_exit(fx: &Fixture, vm: &mut Console, code: i32) {
    let status = vm.wait(BOOT_TIMEOUT);
    assert_eq!(
        status.code(),
        Some(code),
        "nixos-shell ended with {status}; the terminal showed:\n{}",
        vm.transcript()
    );
    fx.assert_no_virtiofsd_left();
}

/// Ends the VM from its shell and expects nixos-shell to exit 0.
fn power_off(fx: &Fixture, vm: &mut Console) {
    vm.send("poweroff\n");
    expect_exit(fx, vm, 0);
}

/// Fails unless the guest has `guest_path` mounted over `protocol`, and a
/// virtiofsd serves `host_dir` exactly when that is virtiofs.
fn assert_shared_over(vm: &mut Console, guest_path: &str, host_dir: &Path, protocol: Shares) {
    let (out, status) = vm.sh(&format!("grep ' {guest_path} ' /proc/mounts"));
    assert_eq!(status, 0, "{guest_path} is not mounted: {out}");
    assert!(
        out.contains(&format!(" {guest_path} {} ", protocol.name())),
        "{guest_path} is not a {} mount: {out}",
        protocol.name()
    );
    let option = format!("--shared-dir={}", host_dir.display());
    let daemons: Vec<String> = processes_under(host_dir, "virtiofsd")
        .into_iter()
        .map(|(_, cmdline)| cmdline)
        .filter(|cmdline| cmdline.split(' ').any(|word| word == option))
        .collect();
    assert_eq!(
        daemons.len(),
        usize::from(protocol == Shares::Virtiofs),
        "{} shares of {}, virtiofsd serving it: {daemons:?}",
        protocol.name(),
        host_dir.display()
    );
}

fn home_is_mounted_at_the_hosts_path_both_ways(era: Era, protocol: Shares) {
    let fx = Fixture::with_protocol(PATHS, era, protocol);
    std::fs::write(fx.home().join("from-host"), "written on the host\n").unwrap();
    let mut vm = fx.start(&[]);
    vm.wait_for_shell();
    let home = path_str(&fx.home());
    assert_shared_over(&mut vm, &home, &fx.home(), protocol);
    let (out, status) = vm.sh(&format!("cat '{home}/from-host'"));
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("written on the host"), "{out}");
    let (out, status) = vm.sh(&format!("echo written in the guest > '{home}/from-guest'"));
    assert_eq!(status, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(fx.home().join("from-guest")).unwrap(),
        "written in the guest\n"
    );
    // What the guest's root creates belongs to the user nixos-shell runs as.
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(fx.home().join("from-guest")).unwrap(),
    );
    // SAFETY: getuid has no preconditions.
    assert_eq!(owner, unsafe { libc::getuid() });
    power_off(&fx, &mut vm);
}

fn the_login_environment_has_the_hosts_cwd_term_and_size(era: Era) {
    let fx = Fixture::new(PATHS, era);
    // Root's keys come from the same host facts; checked on the way.
    std::fs::create_dir_all(fx.home().join(".ssh")).unwrap();
    std::fs::write(
        fx.home().join(".ssh/id_test.pub"),
        "ssh-ed25519 AAAAkey tester@host\n",
    )
    .unwrap();
    let mut vm = fx.start(&[]);
    vm.wait_for_shell();
    let (out, _) = vm.sh("echo \"cwd=$(pwd) term=$TERM\"");
    assert!(
        out.contains(&format!(
            "cwd={} term=xterm-nixos-shell-test",
            path_str(&fx.cwd())
        )),
        "{out}"
    );
    let (out, _) = vm.sh("stty size");
    assert!(out.contains(&format!("{ROWS} {COLS}")), "{out}");
    let (out, _) = vm.sh("cat /run/nixos-shell/authorized-keys/root");
    assert!(out.contains("ssh-ed25519 AAAAkey tester@host"), "{out}");
    power_off(&fx, &mut vm);
}

fn read_only_mounts_refuse_writes_and_leave_the_host_files_untouched(era: Era, protocol: Shares) {
    let fx = Fixture::with_protocol(PATHS, era, protocol);
    std::fs::write(fx.path("data/file"), "module data\n").unwrap();
    std::fs::write(fx.path("extra/file"), "mounted by flag\n").unwrap();
    let mount = format!("{}:/mnt/extra:ro", path_str(&fx.path("extra")));
    let mut vm = fx.start(&["--mount", &mount]);
    vm.wait_for_shell();
    assert_shared_over(&mut vm, DATA_GUEST_PATH, &fx.path("data"), protocol);
    assert_shared_over(&mut vm, "/mnt/extra", &fx.path("extra"), protocol);
    // The manifest's read-only extra mount.
    let (out, status) = vm.sh(&format!("cat {DATA_GUEST_PATH}/file"));
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("module data"), "{out}");
    let (out, status) = vm.sh(&format!("touch {DATA_GUEST_PATH}/new"));
    assert_ne!(status, 0, "a write to the read-only mount succeeded: {out}");
    assert!(!fx.path("data/new").exists());
    // A read-only --mount at its guest path.
    let (out, status) = vm.sh("cat /mnt/extra/file");
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("mounted by flag"), "{out}");
    let (out, status) = vm.sh("echo changed in the guest > /mnt/extra/file");
    assert_ne!(status, 0, "a write to --mount ...:ro succeeded: {out}");
    let (out, status) = vm.sh("touch /mnt/extra/new");
    assert_ne!(status, 0, "a file was created in --mount ...:ro: {out}");
    power_off(&fx, &mut vm);
    assert_eq!(
        std::fs::read_to_string(fx.path("extra/file")).unwrap(),
        "mounted by flag\n"
    );
    assert!(!fx.path("extra/new").exists());
}

fn command_output_reaches_the_terminal_and_its_status_is_the_exit_status(era: Era) {
    let fx = Fixture::new(PATHS, era);
    let mut vm = fx.start(&["--command", "echo \"output-$((6*7)) in $(pwd)\"; exit 7"]);
    vm.expect(
        &format!("output-42 in {}", path_str(&fx.cwd())),
        BOOT_TIMEOUT,
    );
    expect_exit(&fx, &mut vm, 7);
}

/// In the virtiofs era the run script's memory backend has the script's
/// size, which QEMU holds a later `-m` to: the CLI brings its own backend.
fn memory_and_cores_flags_size_the_guest(era: Era) {
    let fx = Fixture::new(PATHS, era);
    // Both slots: two vCPUs under TCG want both of this machine's cores; a
    // second VM beside them has stalled the guest's RCU past the timeout.
    let mut vm = fx.start_with(
        &[
            "--memory",
            "512",
            "--cores",
            "2",
            "--command",
            "echo \"guest has $(awk '/^MemTotal:/ { print $2 }' /proc/meminfo) kB \
         and $(nproc) cpus.\"",
        ],
        Some(Permit::acquire(2)),
    );
    vm.expect("guest has ", BOOT_TIMEOUT);
    let seen = vm.expect(" cpus.", BOOT_TIMEOUT);
    let words: Vec<&str> = seen.split_whitespace().collect();
    let (kib, cpus) = match words[..] {
        [kib, "kB", "and", cpus, "cpus."] => (kib.parse::<u64>(), cpus.parse::<u32>()),
        _ => panic!(
            "unexpected output {seen:?}; the terminal showed:\n{}",
            vm.transcript()
        ),
    };
    let mib = kib.expect("MemTotal in kB") / 1024;
    // The kernel keeps some for itself: clearly above the script's 256 MiB,
    // at most the 512 asked for.
    assert!(
        mib > u64::from(MEMORY_MIB) + 128 && mib <= 512,
        "MemTotal {mib} MiB for --memory 512 (the run script says {MEMORY_MIB})"
    );
    assert_eq!(cpus.expect("nproc's count"), 2);
    expect_exit(&fx, &mut vm, 0);
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// The fixture's VM forwarding a port of 127.0.0.1 to the guest's port 80,
/// booted to its shell, and that port. The kernel names a port free now,
/// but anything may take it before QEMU listens there (nixos-shell checks
/// it before the build, QEMU binds it after): a start that fails for that
/// reason is tried again with another port.
fn start_forwarding_a_free_port(fx: &Fixture) -> (Console, u16) {
    const ATTEMPTS: usize = 5;
    let mut failures = Vec::new();
    for _ in 0..ATTEMPTS {
        let port = free_port();
        let mut vm = fx.start(&["--forward", &format!("127.0.0.1:{port}:80")]);
        match vm.wait_for_shell_unless_ended() {
            Ok(()) => return (vm, port),
            // nixos-shell's own refusal, or QEMU's ("Could not set up host
            // forwarding rule").
            Err(failure)
                if failure.contains("is in use") || failure.contains("forwarding rule") =>
            {
                failures.push(failure);
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    panic!("{ATTEMPTS} ports were taken before QEMU listened: {failures:#?}");
}

/// `GET /` on 127.0.0.1:`port`, retried until a body arrives or `timeout`.
fn http_get(port: u16, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(20)))?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        })();
        match attempt {
            Ok(response) if !response.is_empty() => return response,
            Ok(_) => last = "empty response".to_owned(),
            Err(err) => last = err.to_string(),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("no answer on 127.0.0.1:{port} within {timeout:?}: {last}");
}

fn a_forwarded_port_reaches_a_server_in_the_guest(era: Era) {
    let fx = Fixture::new(PATHS, era);
    let (mut vm, port) = start_forwarding_a_free_port(&fx);
    let (out, status) = vm.sh(
        "mkdir -p /tmp/www && echo \"served-$((20+3))\" > /tmp/www/index.html \
         && httpd -p 80 -h /tmp/www",
    );
    assert_eq!(status, 0, "{out}");
    let response = http_get(port, Duration::from_secs(60));
    assert!(response.contains("served-23"), "{response}");
    power_off(&fx, &mut vm);
}

fn ephemeral_leaves_no_disk_image_behind(era: Era) {
    let fx = Fixture::new(PATHS, era);
    let mut vm = fx.start(&["--ephemeral"]);
    vm.wait_for_shell();
    let images = fixture::disk_images(fx.path("").as_path());
    assert_eq!(images.len(), 1, "one image while the VM runs: {images:?}");
    power_off(&fx, &mut vm);
    let images = fixture::disk_images(fx.path("").as_path());
    assert!(images.is_empty(), "left behind: {images:?}");
    let leftovers: Vec<_> = std::fs::read_dir(fx.path("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(leftovers.is_empty(), "left in TMPDIR: {leftovers:?}");
}

/// qemu-vm.nix's own shares, which the guest's initrd mounts: `$TMPDIR/xchg`
/// at /tmp/xchg and SHARED_DIR at /tmp/shared, over the era's file system.
/// The user's TMPDIR and USE_TMPDIR reach the script, so its xchg is known.
fn the_run_scripts_own_shares_reach_the_guest(era: Era) {
    let fx = Fixture::new(PATHS, era);
    let tmpdir = fx.path("script-tmp");
    let shared = fx.path("shared");
    std::fs::create_dir_all(tmpdir.join("xchg")).unwrap();
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(tmpdir.join("xchg/from-host"), "xchg from the host\n").unwrap();
    std::fs::write(shared.join("from-host"), "shared from the host\n").unwrap();
    let mut command = fx.command(&[]);
    command
        .env("TMPDIR", &tmpdir)
        .env("USE_TMPDIR", "1")
        .env("SHARED_DIR", &shared);
    let mut vm = Console::spawn(command, ROWS, COLS);
    vm.wait_for_shell();

    let fs_type = match era {
        Era::NineP => "9p",
        Era::VirtiofsEarly | Era::Virtiofs => "virtiofs",
    };
    for (tag, dir) in [("xchg", "/tmp/xchg"), ("shared", "/tmp/shared")] {
        let (out, status) = vm.sh(&format!("grep '^{tag} {dir} ' /proc/mounts"));
        assert_eq!(status, 0, "{tag} is not mounted at {dir}: {out}");
        assert!(
            out.contains(&format!("{tag} {dir} {fs_type} ")),
            "{tag} is not a {fs_type} mount: {out}"
        );
        let (out, status) = vm.sh(&format!("cat {dir}/from-host"));
        assert_eq!(status, 0, "{out}");
        assert!(out.contains(&format!("{tag} from the host")), "{out}");
        let (out, status) = vm.sh(&format!("echo {tag} from the guest > {dir}/from-guest"));
        assert_eq!(status, 0, "{out}");
    }
    power_off(&fx, &mut vm);
    assert_eq!(
        std::fs::read_to_string(tmpdir.join("xchg/from-guest")).unwrap(),
        "xchg from the guest\n"
    );
    assert_eq!(
        std::fs::read_to_string(shared.join("from-guest")).unwrap(),
        "shared from the guest\n"
    );
}

#[test]
fn ctrl_a_x_ends_the_vm_and_restores_the_terminal() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let pty = Pty::open(ROWS, COLS);
    let before = pty.termios();
    let mut vm = Console::spawn_on(pty, fx.command(&[]), Some(Permit::acquire(1)));
    vm.wait_for_shell();
    let during = vm.pty().termios();
    assert_eq!(
        during.c_lflag & libc::ICANON,
        0,
        "QEMU should have put the terminal in raw mode"
    );
    vm.send("\x01x");
    // Asserted before the console is dropped: dropping it kills the process
    // group, which would hide a QEMU or a daemon that outlived the run.
    expect_exit(&fx, &mut vm, 0);
    let qemu = kill_processes_under(&fx.nix.root, "qemu-system-x86_64");
    assert!(qemu.is_empty(), "QEMU outlived nixos-shell: {qemu:?}");
    let after = vm.pty().termios();
    assert!(
        same_settings(&before, &after),
        "terminal settings changed: before {before:?}, after {after:?}"
    );
}

#[test]
fn two_vms_started_at_once_from_one_directory_get_their_own_disk_images() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let permit = Permit::acquire(2);
    let mut first = fx.start_with(&[], Some(permit));
    let mut second = fx.start_with(&[], None);
    first.wait_for_shell();
    second.wait_for_shell();
    let images = fixture::disk_images(fx.path("").as_path());
    assert_eq!(images.len(), 2, "two images while both run: {images:?}");
    assert!(
        !fx.cwd().join("vm.qcow2").exists(),
        "a disk image was left in the cwd"
    );
    // The second VM's daemons still run while the first ends: once it has,
    // the second still reads a file written in the shared home only now.
    first.send("poweroff\n");
    let status = first.wait(BOOT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{}", first.transcript());
    let late = fx.home().join("written-after-the-first-ended");
    std::fs::write(&late, "second-still-shares\n").unwrap();
    let (seen, status) = second.sh(&format!("cat {}", path_str(&late)));
    assert_eq!(status, 0, "{seen}");
    assert!(seen.contains("second-still-shares"), "{seen}");
    power_off(&fx, &mut second);
}

#[test]
fn malformed_host_facts_still_reach_the_guests_shell() {
    // The run script replaces the facts the CLI wrote, as a nixos-shell that
    // does not match the guest's could.
    let fx = Fixture::with_prelude(
        PATHS,
        Era::NineP,
        r#"for arg in "$@"; do
  case "$arg" in
    *mount_tag=nixos-shell*)
      dir=${arg#local,path=}; dir=${dir%%,security_model=*}
      printf '{"version": 1, "user": ' > "$dir/facts.json" ;;
  esac
done"#,
    );
    let mut vm = fx.start(&[]);
    vm.expect("are malformed", BOOT_TIMEOUT);
    vm.wait_for_shell();
    let (out, status) = vm.sh("echo alive");
    assert_eq!(status, 0, "{out}");
    power_off(&fx, &mut vm);
}

/// `nix build` once, or a closure received with `nix copy`: the build
/// result boots with run-time flags, and nix never runs.
#[test]
fn a_built_result_runs_its_command_without_nix() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let script = fx.built_run_script();
    let result = script.parent().and_then(Path::parent).unwrap();
    std::os::unix::fs::symlink(result, fx.cwd().join("result")).unwrap();
    let calls = fx.nix.nix_calls().0;
    let mut cli = fx.nix.cli(&[
        "./result",
        "--memory",
        "300",
        "--command",
        "echo from-the-result; exit 4",
    ]);
    cli.current_dir(fx.cwd()).env("SHELL", "/bin/sh");
    let out = Piped::spawn(cli).finish(b"", BOOT_TIMEOUT);
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(4), &b"from-the-result\n"[..]),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fx.nix.nix_calls().0, calls, "nix ran for a build result");
}

/// The user's shell: the guest's own when it has it (here busybox's ash at
/// /bin/ash), for the console login and for --command.
#[test]
fn the_users_shell_runs_the_login_and_the_command() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut login = fx.command(&[]);
    login.env("SHELL", "/usr/local/bin/ash");
    let mut vm = Console::spawn(login, ROWS, COLS);
    vm.wait_for_shell();
    // The harness' login shell is `/bin/sh -l`; busybox's ash is found on
    // the guest's PATH (/sbin or /bin).
    let zero = login_shell(&mut vm);
    assert!(zero.ends_with("bin/ash"), "{zero}");
    power_off(&fx, &mut vm);

    let mut command = fx.command(&["-c", "echo \"command-zero=$0\""]);
    command.env("SHELL", "/usr/local/bin/ash");
    let mut vm = Console::spawn(command, ROWS, COLS);
    vm.expect("command-zero=", BOOT_TIMEOUT);
    let zero = vm.expect("\n", BOOT_TIMEOUT);
    assert!(zero.trim_end().ends_with("bin/ash"), "{zero:?}");
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));
}

/// A shell the guest cannot run leaves the login shell, and one line says
/// why and what to add.
#[test]
fn a_shell_the_guest_lacks_is_named_and_the_login_still_starts() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut login = fx.command(&[]);
    login.env("SHELL", "/usr/bin/zsh");
    let mut vm = Console::spawn(login, ROWS, COLS);
    vm.expect("your shell zsh is not in this VM", BOOT_TIMEOUT);
    vm.wait_for_shell();
    let zero = login_shell(&mut vm);
    assert_eq!(zero, "/bin/sh");
    power_off(&fx, &mut vm);
}

/// The guest login shell's `$0`.
fn login_shell(vm: &mut Console) -> String {
    let (out, _) = vm.sh("echo \"zero=$0\"");
    out.lines()
        .find_map(|l| l.strip_prefix("zero="))
        .unwrap_or_else(|| panic!("no zero= line in {out:?}"))
        .trim_end()
        .to_owned()
}
