//! The real-QEMU harness: Debian's kernel, a busybox initramfs holding the
//! guest role, a fixture of NixOS's run script in both eras of its shared
//! directories, and a console driven through a pseudo-terminal.
//!
//! - `assets` checks the host tools and builds the initramfs once per test
//!   run (`assets.rs`; the initramfs' own files are in `initramfs/`). The
//!   guest's init mounts the run script's `xchg` and `shared` shares over
//!   virtiofs or 9p, whichever the script offers.
//! - [`RunScript`] writes a script that follows the contract of NixOS's
//!   `bin/run-<name>-vm` (nixos/modules/virtualisation/qemu-vm.nix) in an
//!   [`Era`]: 9p (`-virtfs`) or virtiofs (a `virtiofsd` per share, started
//!   by the script; `run_script.rs`, text in `run_script/`). CLI tests put it
//!   into a fixture flake's output.
//! - [`Console`] runs a command (the script, or the CLI) on a fresh
//!   pseudo-terminal, records its output and kills its process group on
//!   drop. At most `MAX_VMS` run at once (`slots.rs`): TCG is slow and the
//!   machine small.
//!
//! Every missing tool is a test failure naming how to install it: a Debian
//! package, or for virtiofsd (no Debian 12 package) `cargo install
//! virtiofsd`.

// The benchmark builds this harness too and uses only part of it, the
// re-exports below included.
#![allow(dead_code, unused_imports)]

mod assets;
mod console;
mod run_script;
mod slots;
mod template;

use std::path::Path;
use std::time::Duration;

pub use assets::module_load_order;
pub use console::{Console, Pty};
pub use run_script::{Era, RunScript, MEMORY_BACKEND_ID, MEMORY_MIB};
pub use slots::Permit;
pub use template::fill;

/// Generous bound for a TCG boot on a loaded 2-core machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound for one shell command in a booted guest.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Printed by the initramfs' `/etc/profile` once the login shell has sourced
/// the login environment: the console is ready for commands.
pub const SHELL_READY: &str = "nixos-shell-test: login shell ready";

/// `value` as one single-quoted `sh` word.
pub fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// A `-virtfs` argument pair sharing `path` under `tag`.
pub fn virtfs(path: &Path, tag: &str, read_only: bool) -> [String; 2] {
    let ro = if read_only { ",readonly=on" } else { "" };
    [
        "-virtfs".to_owned(),
        format!(
            "local,path={},security_model=none,mount_tag={tag}{ro}",
            path.display()
        ),
    ]
}

/// Kills every running virtiofsd that mentions `path` (as its shared
/// directory or socket) and returns their command lines: a test asserts
/// the list is empty once its VM has ended, and one that fails still
/// leaves no daemon running (nor holding cargo's output open).
pub fn kill_virtiofsd_under(path: &Path) -> Vec<String> {
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
        let program = cmdline.split(' ').next().unwrap_or("");
        if program.ends_with("virtiofsd") && cmdline.contains(&needle) {
            // SAFETY: signals a daemon this test's run script started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            found.push(cmdline.trim_end().to_owned());
        }
    }
    found
}
