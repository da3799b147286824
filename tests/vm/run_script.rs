//! The virtiofs era's run script on the host, with a stand-in QEMU that
//! records what it was given and fails before connecting to anything: the
//! daemons are up before QEMU starts, serve the right directories, and do
//! not outlive a QEMU that never reached them (virtiofsd only ends by
//! itself when a connected QEMU goes away). No VM boots here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::fs::write_executable;
use crate::support::vm::{kill_virtiofsd_under, Era, RunScript};
use crate::PATHS;

const STAND_IN_QEMU: &str = include_str!("stand-in-qemu.sh");

/// What the stand-in QEMU saw.
struct Seen {
    status: Option<i32>,
    /// Sockets that existed when QEMU started.
    sockets: Vec<String>,
    /// Command lines of the virtiofsd processes running then.
    daemons: Vec<String>,
}

/// Runs the virtiofs-era script with `tmpdir` as TMPDIR (and USE_TMPDIR)
/// and `shared` as SHARED_DIR, the stand-in QEMU first on PATH.
fn run(base: &Path, tmpdir: &Path, shared: &Path) -> Seen {
    let bin = base.join("bin");
    write_executable(&bin.join("qemu-system-x86_64"), STAND_IN_QEMU);
    let script = base.join("run-vm-vm");
    RunScript::new(PATHS, Era::Virtiofs, "vm").write(&script);
    let image = base.join("vm.qcow2");
    std::fs::write(&image, "").unwrap();
    let record = base.join("record");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut child = Command::new(&script)
        .current_dir(base)
        .env("PATH", path)
        .env("TMPDIR", tmpdir)
        .env("USE_TMPDIR", "1")
        .env("SHARED_DIR", shared)
        .env("NIX_DISK_IMAGE", &image)
        .env("STAND_IN_QEMU_RECORD", &record)
        .spawn()
        .expect("start the run script");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run script did not end within a minute");
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
        sockets: field("socket "),
        daemons: field("daemon "),
    }
}

fn dirs(base: &Path, tmpdir: &str) -> (PathBuf, PathBuf) {
    let tmpdir = base.join(tmpdir);
    let shared = base.join("shared");
    std::fs::create_dir_all(&tmpdir).unwrap();
    std::fs::create_dir_all(&shared).unwrap();
    (tmpdir, shared)
}

/// The names left in `dir`.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn virtiofsd_serves_xchg_and_shared_before_qemu_starts_and_ends_with_a_qemu_that_failed() {
    let base = tempfile::tempdir().unwrap();
    let (tmpdir, shared) = dirs(base.path(), "tmp");
    let seen = run(base.path(), &tmpdir, &shared);

    assert_eq!(seen.status, Some(3), "the script keeps QEMU's exit status");
    let socket = |tag: &str| tmpdir.join(format!("{tag}.sock")).display().to_string();
    assert_eq!(seen.sockets, [socket("shared"), socket("xchg")]);
    for dir in [tmpdir.join("xchg"), shared] {
        let flag = format!("--shared-dir={}", dir.display());
        assert!(
            seen.daemons.iter().any(|d| d.contains(&flag)),
            "no virtiofsd with {flag} when QEMU started: {:?}",
            seen.daemons
        );
    }
    let left = kill_virtiofsd_under(base.path());
    assert!(left.is_empty(), "virtiofsd outlived the script: {left:?}");
    assert_eq!(
        entries(&tmpdir),
        ["xchg"],
        "sockets or pid files left behind"
    );
}

#[test]
fn a_tmpdir_too_long_for_a_socket_path_gets_its_sockets_in_a_short_directory() {
    let base = tempfile::tempdir().unwrap();
    let (tmpdir, shared) = dirs(base.path(), &"long-".repeat(24));
    assert!(tmpdir.join("shared.sock").as_os_str().len() > 108);
    let seen = run(base.path(), &tmpdir, &shared);

    assert_eq!(seen.status, Some(3));
    assert_eq!(seen.sockets.len(), 2, "both sockets: {:?}", seen.sockets);
    for socket in &seen.sockets {
        assert!(
            socket.starts_with("/tmp/nix-vm.") && socket.len() < 108,
            "{socket}"
        );
    }
    let left = kill_virtiofsd_under(base.path());
    assert!(left.is_empty(), "virtiofsd outlived the script: {left:?}");
    let sockets_dir = Path::new(&seen.sockets[0]).parent().unwrap();
    assert!(
        !sockets_dir.exists(),
        "{} left behind",
        sockets_dir.display()
    );
}
