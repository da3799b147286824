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
//! - `virtiofsd` finds the daemon the virtiofs era starts, and kills any
//!   that outlived a test.
//! - [`Console`] runs a command (the script, or the CLI) on a fresh
//!   pseudo-terminal, records its output and kills its process group on
//!   drop; [`Piped`] runs the CLI with pipes and no terminal, as a script
//!   does. At most `MAX_VMS` run at once (`slots.rs`): TCG is slow and the
//!   machine small.
//! - `host_process` reads the host's nixos-shell through /proc (resident
//!   memory, open descriptors, unreaped children), for the tests of a long
//!   life and of a misbehaving guest.
//!
//! Every missing tool is a test failure naming how to install it: a Debian
//! package, or for virtiofsd (no Debian 12 package) `cargo install
//! virtiofsd`.

mod assets;
mod console;
mod host_process;
mod piped;
mod run_script;
mod slots;
mod virtiofsd;

use std::time::Duration;

pub use assets::{GUEST_OWN_TERMINFO, MOUNTS_SEEN_BY_SERVICES, OTHER_USER, TPUT};
pub use console::{same_settings, Console, Pty};
pub use host_process::{open_fds, rss_kib, zombie_children};
pub use piped::{Output, Piped};
pub use run_script::{virtfs, Era, RunScript, MEMORY_MIB};
pub use slots::Permit;
pub use virtiofsd::{find_virtiofsd, kill_processes_under, kill_virtiofsd_under, processes_under};

/// Generous bound for a TCG boot on a loaded 2-core machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound for one shell command in a booted guest.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// A foreground program for the guest's shell or `--command` that prints
/// [`WAITING_FOR_WINCH`], then `resized-to ROWS COLS-` when SIGWINCH reaches
/// it, and ends. Its output is split in the typed line, so only the output
/// matches either.
pub const PRINT_SIZE_ON_WINCH: &str =
    "sh -c 'trap \"echo resized-to \\$(stty size)-; exit\" WINCH; \
     printf \"waiting-%s\\n\" for-winch; while :; do sleep 0.05; done'";
/// What [`PRINT_SIZE_ON_WINCH`] prints once it waits.
pub const WAITING_FOR_WINCH: &str = "waiting-for-winch";

/// Printed by the initramfs' `/etc/profile` once the login shell has sourced
/// the login environment: the console is ready for commands.
pub(crate) const SHELL_READY: &str = "nixos-shell-test: login shell ready";
