//! nixos-shell: one binary, two roles.
//!
//! - On the host (`nixos-shell`), it resolves a `vm.nix` or a flake attribute
//!   into one `nix build`, gathers the user's host facts and runs the VM's
//!   script in this terminal: see [`host`].
//! - In the guest (invoked as `nixos-shell-guest`, a link the package
//!   installs), a systemd unit of the NixOS module runs it before the console
//!   login to apply those facts: see [`guest`].
//!
//! Both roles share the data formats in [`schema`] and the shell quoting in
//! [`shell`]. `main` only picks the role, runs it and turns an error chain
//! into one line and an exit status.

mod cli;
mod guest;
mod host;
mod shell;

// The shared documents live in the library, so tests read them too.
use nixos_shell::schema;

use std::ffi::OsStr;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

/// The file name that selects the guest role.
const GUEST_ROLE_NAME: &str = "nixos-shell-guest";

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let invoked_as = Path::new(&argv0).file_name().unwrap_or(OsStr::new(""));
    let result = if invoked_as == GUEST_ROLE_NAME {
        guest::run(cli::GuestArgs::parse())
    } else {
        host::run(cli::HostArgs::parse())
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("nixos-shell: {err:#}");
            ExitCode::FAILURE
        }
    }
}
