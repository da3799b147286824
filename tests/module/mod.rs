//! The project's NixOS module under nixpkgs' real module system (the
//! stand-in nixpkgs of `support::standin`), in both eras of qemu-vm.nix:
//! what it defaults and lets the user override, what it refuses, and the
//! manifest it builds, read back with the CLI's own schema.

mod defaults;
mod manifest;
mod terminfo;
mod users;

use crate::support::standin::StandIn;
use crate::support::vm::Era;
use crate::PATHS;

/// A stand-in of `era` in a fresh temporary directory, with a run script
/// template that only names what the module must not care about.
pub fn standin(era: Era) -> (tempfile::TempDir, StandIn) {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let standin = StandIn::write(
        PATHS,
        dir.path(),
        era,
        "#!/bin/sh\n# run script of @name@: -m @memorySize@ -smp @cores@\n",
    );
    (dir, standin)
}
