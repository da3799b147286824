//! Powering the VM off once the command is done.

use std::process::Command;

use anyhow::Context;
use camino::Utf8Path;
use rustix::system::{reboot, RebootCommand};

/// Present when systemd is the init system.
const SYSTEMD_RUNTIME: &str = "/run/systemd/system";

/// Flushes the file systems and powers off: through systemd when it runs
/// (an orderly shutdown; `--no-block` because this runs inside a unit that
/// the shutdown itself waits for), else with reboot(2) directly.
pub fn power_off() -> anyhow::Result<()> {
    rustix::fs::sync();
    if Utf8Path::new(SYSTEMD_RUNTIME).is_dir() {
        let status = Command::new("systemctl")
            .args(["--no-block", "poweroff"])
            .status();
        match status {
            Ok(status) if status.success() => return Ok(()),
            Ok(status) => eprintln!("nixos-shell-guest: warning: systemctl poweroff: {status}"),
            Err(err) => eprintln!("nixos-shell-guest: warning: cannot run systemctl: {err}"),
        }
    }
    // reboot(2) returns only when it fails.
    reboot(RebootCommand::PowerOff).context("cannot power off")?;
    Ok(())
}
