//! The virtiofsd the virtiofs era's run script starts: where it is, and
//! killing those a test's VM left behind.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::fs::on_path;

/// The virtiofsd the virtiofs-era run script starts, by absolute path (as
/// qemu-vm.nix names its store path): the tests' environments, like the
/// CLI's, need not have it on PATH. Debian 12 has no package for it; later
/// distributions install it as /usr/libexec/virtiofsd.
pub fn virtiofsd() -> PathBuf {
    find_virtiofsd().unwrap_or_else(|| {
        panic!(
            "virtiofsd is missing: the virtiofs-era VM tests' run script and nixos-shell's \
             virtiofs shares start it; install it with `cargo install virtiofsd` (after \
             apt-get install libseccomp-dev libcap-ng-dev pkg-config) and put ~/.cargo/bin on PATH"
        )
    })
}

/// [`virtiofsd`], or `None` where it is missing: the stand-in nixpkgs'
/// package wraps it, and tests that build without booting need not have it.
pub fn find_virtiofsd() -> Option<PathBuf> {
    static VIRTIOFSD: OnceLock<Option<PathBuf>> = OnceLock::new();
    VIRTIOFSD
        .get_or_init(|| {
            on_path("virtiofsd").or_else(|| {
                let libexec = PathBuf::from("/usr/libexec/virtiofsd");
                libexec.is_file().then_some(libexec)
            })
        })
        .clone()
}

/// Kills every running virtiofsd that mentions `path` (as its shared
/// directory or socket) and returns their command lines: a test asserts
/// the list is empty once its VM has ended, and one that fails still
/// leaves no daemon running (nor holding cargo's output open).
pub fn kill_virtiofsd_under(path: &Path) -> Vec<String> {
    kill_processes_under(path, "virtiofsd")
}

/// Kills every running process whose program's name ends with `program`
/// and whose command line mentions `path`, and returns their command
/// lines (see [`kill_virtiofsd_under`]).
pub fn kill_processes_under(path: &Path, program: &str) -> Vec<String> {
    processes_under(path, program)
        .into_iter()
        .map(|(pid, cmdline)| {
            // SAFETY: signals a process this test's VM started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            cmdline
        })
        .collect()
}

/// The running processes whose program's name ends with `program` and
/// whose command line mentions `path`: their ids and command lines.
pub fn processes_under(path: &Path, program: &str) -> Vec<(libc::pid_t, String)> {
    let needle = path.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        let name = cmdline.split(' ').next().unwrap_or("");
        if name.ends_with(program) && cmdline.contains(&needle) {
            found.push((pid, cmdline.trim_end().to_owned()));
        }
    }
    found
}
