//! Running the VM command in this terminal: the edge where the composed
//! [`VmCommand`] becomes QEMU's process. The terminal's settings are saved
//! before QEMU puts it in raw mode and restored after, whatever happened;
//! signals sent to nixos-shell reach the VM (`signals`), and the VM dies
//! with nixos-shell.

use std::fs::File;
use std::process::Command;

use anyhow::{Context, Result};
use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};

use super::launch::VmCommand;
use super::{nix, signals, terminal};

/// How the VM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// By itself: its exit status (128 + N after signal N).
    Exited(u8),
    /// After nixos-shell caught signal N and passed it on.
    Signalled(i32),
}

/// Runs the VM. `disk_lock` is the lock of its disk image: the VM inherits
/// it, so the lock lasts as long as QEMU does, even past nixos-shell.
pub fn start(command: &VmCommand, disk_lock: Option<&File>) -> Result<Ended> {
    if let Some(lock) = disk_lock {
        let flags = fcntl_getfd(lock).context("could not read the disk lock's flags")?;
        fcntl_setfd(lock, flags - FdFlags::CLOEXEC)
            .context("could not hand the disk lock to the VM")?;
    }
    let saved = terminal::SavedTerminal::save();
    let mut vm = Command::new(&command.program);
    vm.args(&command.args).envs(&command.env);
    signals::die_with_parent(&mut vm);
    let status = vm
        .spawn()
        .and_then(|mut child| signals::wait(&mut child))
        .with_context(|| format!("could not run {}", command.program));
    drop(saved);
    let status = status?;
    Ok(match signals::received() {
        Some(signal) => Ended::Signalled(signal),
        None => Ended::Exited(nix::exit_code(&status)),
    })
}

/// What to say when QEMU ended with a failure `status`: QEMU said why
/// above; a disk image it could not use (corrupt, locked, not qcow2) is the
/// usual cause, with a way out that loses nothing.
pub fn failure_hint(status: u8, disk_image: Option<&camino::Utf8Path>) -> String {
    let mut hint = format!("QEMU failed (status {status}); its message is above");
    if let Some(image) = disk_image {
        hint.push_str(&format!(
            "; if it is about the disk image, check it with `qemu-img check {}`, or run with --ephemeral",
            crate::shell::quote(image.as_str())
        ));
    }
    hint
}
