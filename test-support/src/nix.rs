//! The real `nix`, as every test and figure runs it.

use std::path::PathBuf;
use std::process::Command;

use crate::fs::on_path;

/// The nix settings of every nix the tests and the benchmark start: offline
/// (no substituters), flakes on, and builds that work as root on a Debian
/// `nix-bin` without `nix-setup-systemd` (no `nixbld` group, so no build
/// users; no sandbox, since the fixtures build with the host's `/bin/sh`).
/// CI's own nix calls read the same file.
pub const NIX_CONF: &str = include_str!("nix.conf");

/// [`NIX_CONF`] and no flake registry at all: nothing resolves a flake by
/// a name the tests did not give it, and nix never fetches the global
/// registry.
pub fn offline_config() -> String {
    format!("{NIX_CONF}flake-registry =\n")
}

/// The real nix; tests fail (never skip) without it.
pub fn real_nix() -> PathBuf {
    on_path("nix").unwrap_or_else(|| {
        panic!(
            "`nix` is not on PATH: these tests drive the real nix; install it \
             (Debian: apt-get install nix-bin)"
        )
    })
}

/// One of nix's commands (`nix-build`, `nix-instantiate`, ...) beside the
/// real `nix`, with [`NIX_CONF`].
pub fn command(name: &str) -> Command {
    let mut command = Command::new(real_nix().with_file_name(name));
    command.env("NIX_CONFIG", NIX_CONF);
    command
}

/// This machine's Nix platform, as the CLI computes it.
pub fn host_system() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}
