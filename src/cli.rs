//! The command lines of both roles, as clap structs and nothing else.
//! Validation into high-level settings happens in `host::settings`.

use camino::Utf8PathBuf;
use clap::Parser;

/// `nixos-shell [OPTIONS] [CONFIG] [-- QEMU_ARGS...]`
#[derive(Debug, Parser)]
#[command(name = "nixos-shell", version, about)]
pub struct HostArgs {}

/// `nixos-shell-guest`: run by the module's systemd unit before login.
#[derive(Debug, Parser)]
#[command(
    name = "nixos-shell-guest",
    version,
    about = "Guest role of nixos-shell: mounts the host's shares, installs root's keys, \
             writes the login environment and runs --command, before the console login"
)]
pub struct GuestArgs {
    /// The console a command runs on and whose size follows the host terminal.
    #[arg(long, default_value = "/dev/hvc0")]
    pub console: Utf8PathBuf,
}
