//! Powering the VM off once the command is done.

use std::process::Command;

use camino::Utf8Path;

/// Present when systemd is the init system.
const SYSTEMD_RUNTIME: &str = "/run/systemd/system";

/// Flushes the file systems and powers off: through systemd when it runs
/// (an orderly shutdown; `--no-block` because this runs inside a unit that
/// the shutdown itself waits for), else with reboot(2) directly.
pub fn power_off() -> anyhow::Result<()> {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
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
    // SAFETY: reboot(2) with a valid command; it returns only on failure.
    let rc = unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        anyhow::bail!("cannot power off: {err}");
    }
    Ok(())
}
