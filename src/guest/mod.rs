//! The guest role (`nixos-shell-guest`): applies the host facts, one unit
//! of the module per step ([`GuestStep`](crate::cli::GuestStep)).
//!
//! - `prepare`, early in the boot (before `sysinit.target`, so before every
//!   ordinary service): finds the session share the CLI passed to QEMU (9p
//!   tag [`SESSION_TAG`](crate::schema::facts::SESSION_TAG)), reads the
//!   host facts from it, mounts the shares, installs root's authorized keys
//!   and writes root's login environment.
//! - `follow-resizes` (`linux::resize`), after `prepare` and before `command`
//!   and the console's getty: the one owner of the console's size, which it
//!   keeps at the host terminal's for as long as the VM runs; it is started
//!   once the console has the terminal's latest size.
//! - `serve-attach` (`linux::attach`), after `prepare`, while the VM runs: the
//!   sessions of `nixos-shell --attach`.
//! - `command`, once the system is up and before the console's getty: when
//!   the host asked for a command, runs it (on the console, or with its
//!   streams on the virtio-serial ports of `schema::ports`), hands its
//!   status back and powers off.
//!
//! The role never stops the boot: a VM started without nixos-shell has no
//! session share and the role does nothing; malformed facts are reported on
//! the console and ignored; a step that fails is reported and the others go
//! on. The process exits 0 in all those cases, so no unit ever fails.
//!
//! Everything is Linux-only (mount(2), reboot(2), TIOCSCTTY, sysfs), so it
//! lives in [`linux`]: the role runs in a NixOS guest. The crate still
//! builds for a macOS host, whose binary refuses the role in one line.

#[cfg(target_os = "linux")]
pub(crate) mod linux;
#[cfg(target_os = "linux")]
pub use linux::run;

/// On any other system (a macOS host): no guest role.
#[cfg(not(target_os = "linux"))]
pub fn run(args: crate::cli::GuestArgs) -> anyhow::Result<u8> {
    let _ = args.step;
    anyhow::bail!("the guest role runs only in a Linux guest")
}
