//! What nixos-shell's integration tests (`tests/`) and its benchmark
//! (`benches/costs/`) share, one module per concern:
//!
//! - [`nix`]: the real `nix` and the settings every nix they start runs
//!   with (offline, builds as root without build users), and derivations
//!   no store has yet.
//! - [`nix_fixture`]: the CLI against the real nix, offline, with fixture
//!   flakes, a fixture `<nixpkgs>` and a run script that records what it
//!   was handed.
//! - [`standin`] and [`our_flake`]: the stand-in nixpkgs (`standin-nixpkgs/`
//!   beside this crate's sources) under which the project's real NixOS
//!   module and its own `flake.nix` evaluate and build.
//! - [`vm`]: the real-QEMU harness: kernel and initramfs, NixOS's run script
//!   in both eras of its shares, a console on a pseudo-terminal, VM slots.
//! - [`long_life`]: one VM's long life by counts (attaches, resizes,
//!   pipes), the host's nixos-shell watched: short in the VM tests, full in
//!   the benchmark.
//! - [`guest_nix`]: the host's nix client staged for the harness's guests
//!   (the host-nix tests and figures).
//! - [`vm_fixture`]: the fixture flake the CLI-driven VM tests and the boot
//!   figures of the benchmark start.
//! - [`sh`], `template`, [`fs`]: quoting and splitting `sh` words,
//!   `@name@` templates for the fixtures' `.sh` and `.nix` files, and small file helpers.
//! - [`strace`]: which sleeps nixos-shell's own processes make.
//! - [`terminfo`]: terminal entries compiled with the host's `tic`.
//! - [`bench`]: the benchmark's pure helpers (statistics, reading
//!   `--dry-run`), apart from the fixtures.
//!
//! Everything fails the test (panics) on a missing tool, with a message that
//! says how to install it; nothing is skipped.

pub mod bench;
pub mod fs;
pub mod guest_nix;
pub mod long_life;
pub mod nix;
pub mod nix_fixture;
pub mod our_flake;
pub mod sh;
pub mod standin;
pub mod strace;
mod template;
pub mod terminfo;
pub mod vm;
pub mod vm_fixture;

use std::path::Path;

/// Where the code under test is: the built `nixos-shell` and the checkout
/// it was built from. Only the root package's own tests and benches know
/// them (`env!("CARGO_BIN_EXE_nixos-shell")` and `env!("CARGO_MANIFEST_DIR")`
/// mean these paths only when compiled there), so each of them makes this
/// value once, as a constant, and hands it to the fixtures that run the CLI
/// or read the checkout.
#[derive(Debug, Clone, Copy)]
pub struct Paths {
    cli: &'static str,
    checkout: &'static str,
}

impl Paths {
    /// `cli`: the binary (`env!("CARGO_BIN_EXE_nixos-shell")`); `checkout`:
    /// the directory of the root `Cargo.toml` (`env!("CARGO_MANIFEST_DIR")`).
    pub const fn new(cli: &'static str, checkout: &'static str) -> Paths {
        Paths { cli, checkout }
    }

    /// The built `nixos-shell`, which is also the guest role in the VMs.
    pub fn cli(self) -> &'static Path {
        Path::new(self.cli)
    }

    /// The checkout, whose `nixosModules/`, `flake.nix`, `examples/`, ...
    /// the tests use.
    pub fn checkout(self) -> &'static Path {
        Path::new(self.checkout)
    }
}
