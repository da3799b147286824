//! nixos-shell's own virtiofs daemons around a QEMU that fails: the CLI
//! runs a fixture flake's VM whose run script (the 9p era's, so every
//! virtiofsd is nixos-shell's) starts a stand-in QEMU that records what it
//! was given and fails before connecting to anything. The daemons are up,
//! their sockets bound, before QEMU starts; they do not outlive a QEMU that
//! never reached them (virtiofsd ends by itself only when a connected QEMU
//! goes away); and their sockets go with them. No VM boots here.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fs::write_executable;
use crate::support::vm::{Era, BOOT_TIMEOUT};
use crate::support::vm_fixture::{Fixture, Shares, DATA_GUEST_PATH};
use crate::PATHS;

const STAND_IN_QEMU: &str = include_str!("stand-in-qemu.sh");

/// What the stand-in QEMU saw, and how nixos-shell ended.
struct Seen {
    status: Option<i32>,
    stderr: String,
    /// Sockets named in QEMU's arguments that existed when it started (the
    /// daemons', `*.sock`, and the ports').
    sockets: Vec<String>,
    /// Command lines of the virtiofsd processes running then.
    daemons: Vec<String>,
}

/// Runs nixos-shell on `fx`'s VM with `tmpdir` as its TMPDIR and the
/// stand-in QEMU first on PATH.
fn run(fx: &Fixture, tmpdir: &Path) -> Seen {
    let bin = fx.path("stand-in-bin");
    write_executable(&bin.join("qemu-system-x86_64"), STAND_IN_QEMU);
    let record = fx.path("qemu-record");
    let mut cli: Command = fx.command(&[]);
    let path = cli
        .get_envs()
        .find(|(name, _)| *name == "PATH")
        .and_then(|(_, value)| value)
        .map(|value| value.to_string_lossy().into_owned())
        .expect("the fixture's PATH");
    // Its streams in files, not pipes: a daemon that outlived it would hold
    // a pipe open, and reading it to its end would never finish.
    let stderr = fx.path("stderr");
    cli.env("PATH", format!("{}:{path}", bin.display()))
        .env("TMPDIR", tmpdir)
        .env("STAND_IN_QEMU_RECORD", &record)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).unwrap());
    let mut child = cli.spawn().expect("start nixos-shell");
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("nixos-shell did not end within {BOOT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&record).unwrap_or_default();
    let field = |prefix: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(str::to_owned)
            .collect()
    };
    Seen {
        status: status.code(),
        stderr: std::fs::read_to_string(&stderr).unwrap_or_default(),
        sockets: field("socket "),
        daemons: field("daemon "),
    }
}

/// The fixture: shares over virtiofs, a run script of the 9p era (whose
/// own shares are QEMU's, so every daemon is nixos-shell's).
fn fixture() -> Fixture {
    Fixture::with_protocol(PATHS, Era::NineP, Shares::Virtiofs)
}

/// Fails unless a daemon serving each of the fixture's shares (the home,
/// the module's extra mount) ran when QEMU started.
fn assert_served(fx: &Fixture, seen: &Seen) {
    for dir in [fx.home(), fx.path("data")] {
        let flag = format!("--shared-dir={}", dir.display());
        assert!(
            seen.daemons.iter().any(|d| d.contains(&flag)),
            "no virtiofsd with {flag} when QEMU started (it serves {DATA_GUEST_PATH} and the home): {:?}",
            seen.daemons
        );
    }
}

#[test]
fn the_daemons_serve_before_qemu_starts_and_end_with_a_qemu_that_failed() {
    let fx = fixture();
    let tmpdir = fx.path("tmp");
    let seen = run(&fx, &tmpdir);

    assert_eq!(seen.status, Some(3), "QEMU's status: {}", seen.stderr);
    let daemon_sockets = seen.sockets.iter().filter(|s| s.ends_with(".sock")).count();
    assert_eq!(
        daemon_sockets, 2,
        "both daemons' sockets: {:?}",
        seen.sockets
    );
    for socket in &seen.sockets {
        assert!(
            Path::new(socket).starts_with(&tmpdir),
            "{socket} is not in the session's directory"
        );
    }
    assert_served(&fx, &seen);
    fx.assert_no_virtiofsd_left();
    assert_eq!(
        fx.nix.leftovers(),
        Vec::<String>::new(),
        "sockets left behind"
    );
}

#[test]
fn a_tmpdir_too_long_for_a_socket_path_gets_its_sockets_in_a_short_directory() {
    let fx = fixture();
    let tmpdir: PathBuf = fx.path(&"long-".repeat(24));
    std::fs::create_dir_all(&tmpdir).unwrap();
    assert!(tmpdir.join("home.sock").as_os_str().len() > 108);
    let seen = run(&fx, &tmpdir);

    assert_eq!(seen.status, Some(3), "QEMU's status: {}", seen.stderr);
    let daemon_sockets = seen.sockets.iter().filter(|s| s.ends_with(".sock")).count();
    assert_eq!(
        daemon_sockets, 2,
        "both daemons' sockets: {:?}",
        seen.sockets
    );
    for socket in &seen.sockets {
        assert!(
            socket.starts_with("/tmp/") && socket.len() < 108,
            "{socket}"
        );
    }
    assert_served(&fx, &seen);
    fx.assert_no_virtiofsd_left();
    let sockets_dir = Path::new(&seen.sockets[0]).parent().unwrap();
    assert!(
        !sockets_dir.exists(),
        "{} left behind",
        sockets_dir.display()
    );
    assert!(
        std::fs::read_dir(&tmpdir).unwrap().next().is_none(),
        "left in TMPDIR"
    );
}
