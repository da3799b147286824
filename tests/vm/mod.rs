//! End-to-end tests in a real QEMU VM (TCG): Debian's kernel, a busybox
//! initramfs holding the guest role, and a fixture of NixOS's run script in
//! both eras of its shared directories (9p, virtiofs).
//!
//! - `detach`: `nixos-shell --detach`: a VM that outlives the terminal
//!   that started it, reached by `--attach`, ended by `--stop`, and gone
//!   with its holder when that is killed.
//! - `guest_role`: the run script started directly with a session share the
//!   test writes by hand, proving the guest role without the CLI.
//! - `attach`: `nixos-shell --attach` sessions in the running VM, through
//!   pipes and a pseudo-terminal, beside the VM's own console and command.
//! - `cli`: what a user does, driven by the real CLI through a fixture
//!   flake (`support::vm_fixture`) built by the real `nix`, each in both
//!   eras.
//! - `console`: the console at the terminal's latest size however early it
//!   was resized, and the terminal's terminfo entry known in the guest.
//! - `guest_units`: the guest role's steps in the order the module's units
//!   run them: every share is mounted once the early step returns,
//!   another user's login is left alone, and every nixpkgs era boots
//!   whatever the shares.
//! - `long_life`: one VM's long life in short (attaches, resizes, pipes):
//!   every output exact, the host's descriptors, memory and children as
//!   they were.
//! - `misbehaving`: a guest program that takes nixos-shell's ports and
//!   writes garbage on them: what it hit ends with one line, the rest goes
//!   on byte for byte, and the host neither grows nor leaks.
//! - `host_nix`: a command's `NIX_REMOTE` names the guest role's relay to
//!   the host's nix-daemon, unless `--no-host-nix`; a real nix client in
//!   the guest builds through it into the host's store.
//! - `streams`: the console following the terminal's size, and
//!   `--command` as a pipe (byte for byte, end of file, a reader that goes
//!   away).
//! - `signals`: signals sent to nixos-shell while its VM runs, and
//!   nixos-shell killed outright: nothing survives or is left behind.
//! - `stop`: `nixos-shell --stop` of a running VM: powered off, its
//!   nixos-shell gone with everything it ran, waited for without a timer.
//! - `unprivileged`: an ordinary user runs a built VM; its virtiofsd runs
//!   as that user, and what the guest's root writes in the home is theirs.
//! - `waits`: nixos-shell's own processes never sleep on a timer while a
//!   VM runs.
//! - `switch`: `nixos-shell --switch` in the running VM: a new build
//!   switched to, its output and status back, an unchanged one left alone,
//!   a failed build harmless, a new kernel named as needing a restart,
//!   and `--restart` booting it in place (in the same terminal, or still
//!   detached), or saying so when the new VM does not boot.
//! - `daemons`: nixos-shell's virtiofs daemons around a stand-in QEMU
//!   that fails: up before QEMU starts, gone with it, sockets and all.
//!
//! The harness' own pure parts (module order, templates, the run script's
//! text) are tested in the support crate, beside them.

mod attach;
mod cli;
mod console;
mod daemons;
mod detach;
mod guest_role;
mod guest_units;
mod host_nix;
mod long_life;
mod misbehaving;
mod signals;
mod stop;
mod streams;
mod switch;
mod unprivileged;
mod waits;
