//! The real `nix`, as every test and figure runs it, and derivations it
//! must build.

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

/// A derivation no store has yet, so that nix must build it (the host-nix
/// tests and figures): a file holding a word and a nonce of this run. Like
/// nixpkgs' `runCommandLocal` (`runCommandWith`'s `runLocal`:
/// `preferLocalBuild = true; allowSubstitutes = false;`) it prefers a
/// local build and no substitutes, so nix asks no build hook (a guest's staged nix has none).
#[derive(Debug, Clone)]
pub struct FreshDerivation {
    /// The Nix expression (`derivation { … }`, built with the host's
    /// `/bin/sh`), for `nix-build -E` or a `.nix` file.
    pub expression: String,
    /// What its output holds once built.
    pub content: String,
}

/// A [`FreshDerivation`] named `host-nix-WORD` whose output holds `WORD`
/// and a nonce no earlier call made: this process's id, the time and a
/// count of the calls, so neither an earlier run nor a sibling test (the
/// store outlives both) has built it.
pub fn fresh_derivation(word: &str) -> FreshDerivation {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let nonce = format!(
        "{}-{nanos}-{}",
        std::process::id(),
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let content = format!("{word} {nonce}\n");
    FreshDerivation {
        expression: format!(
            r#"derivation {{ name = "host-nix-{word}"; system = builtins.currentSystem; builder = "/bin/sh"; preferLocalBuild = true; allowSubstitutes = false; args = [ "-c" "echo {word} {nonce} > $out" ]; }}"#
        ),
        content,
    }
}
