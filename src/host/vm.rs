//! Running the VM command in this terminal: the edge where the composed
//! [`VmCommand`] becomes QEMU's process. The terminal's settings are saved
//! before QEMU puts it in raw mode and restored after, whatever happened.

use std::process::Command;

use anyhow::{Context, Result};

use super::launch::VmCommand;
use super::{nix, terminal};

/// Runs the VM; its exit status (128 + N after signal N).
pub fn start(command: &VmCommand) -> Result<u8> {
    let saved = terminal::SavedTerminal::save();
    let status = Command::new(&command.program)
        .args(&command.args)
        .envs(&command.env)
        .status()
        .with_context(|| format!("could not start {}", command.program));
    drop(saved);
    Ok(nix::exit_code(&status?))
}
