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
//! [`sh`]. `main` only picks the role, runs it and turns an error chain
//! into one line and an exit status.

mod cli;
mod guest;
mod host;
mod sh;

// The shared documents live in the library, so tests read them too.
use nixos_shell::schema;

use std::ffi::OsStr;
use std::path::Path;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue};
use clap::Parser;

/// The file name that selects the guest role.
const GUEST_ROLE_NAME: &str = "nixos-shell-guest";

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let invoked_as = Path::new(&argv0).file_name().unwrap_or(OsStr::new(""));
    let result = if invoked_as == GUEST_ROLE_NAME {
        parse().map(guest::run)
    } else {
        parse().map(host::run)
    };
    match result {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(err)) => {
            eprintln!("nixos-shell: {err:#}");
            ExitCode::FAILURE
        }
        Err(usage) => {
            eprintln!("nixos-shell: {usage}");
            ExitCode::from(USAGE_STATUS)
        }
    }
}

/// The exit status of a command line that does not parse, as clap's own.
const USAGE_STATUS: u8 = 2;

/// The command line as `T`. Help and version are printed, and exit, as
/// clap does; a usage error becomes one line saying what was wrong and
/// what to write instead, like every other refusal of nixos-shell's (clap's
/// own rendering adds a usage block and a pointer to `--help`).
fn parse<T: Parser>() -> Result<T, String> {
    T::try_parse().map_err(|err| {
        if !err.use_stderr() {
            err.exit();
        }
        let rendered = err.to_string();
        let what = rendered
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        let instead = match (
            err.get(ContextKind::ValidValue),
            err.get(ContextKind::SuggestedArg)
                .or(err.get(ContextKind::SuggestedValue)),
            err.get(ContextKind::Suggested),
        ) {
            (Some(ContextValue::Strings(valid)), _, _) if !valid.is_empty() => {
                format!("use one of {}", valid.join(", "))
            }
            (_, Some(ContextValue::String(similar)), _) => format!("did you mean '{similar}'?"),
            (_, _, Some(ContextValue::StyledStrs(tips))) if !tips.is_empty() => tips[0].to_string(),
            _ => "see --help".to_owned(),
        };
        format!("{what}; {instead}")
    })
}
