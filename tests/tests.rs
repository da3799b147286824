//! Integration tests, built as one binary. They drive the real `nix`
//! (offline, against fixtures the tests write) and a real QEMU VM, with the
//! fixtures and the harness of the test-support crate (`support`).

mod cli;
mod flake;
mod module;
mod vm;

use nixos_shell_test_support as support;

/// The binary under test and its checkout, for the support crate's
/// fixtures: these `env!`s name them only in this package's own tests.
const PATHS: support::Paths = support::Paths::new(
    env!("CARGO_BIN_EXE_nixos-shell"),
    env!("CARGO_MANIFEST_DIR"),
);
