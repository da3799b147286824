//! The stand-in nixpkgs (`tests/support/standin-nixpkgs/`, see its README):
//! nixpkgs' real `lib/` and module system, NixOS's option declarations for
//! what the project's module touches, and `qemu-vm.nix` in one [`Era`], so
//! that tests evaluate and build the project's real NixOS module with the
//! real `nix` on a machine that has no nixpkgs.
//!
//! nixpkgs' `lib/` comes from `NIXPKGS_LIB`, else from `<nixpkgs/lib>`; CI
//! sets `NIXPKGS_LIB`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::nix_fixture::{copy_dir, real_nix, NIX_CONF};
use super::vm::Era;

/// The checkout, whose `nixosModules/`, `flake.nix`, ... the tests use.
pub fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// nixpkgs' `lib/` directory; fails the test with one line saying how to
/// provide it.
pub fn nixpkgs_lib() -> PathBuf {
    if let Some(dir) = std::env::var_os("NIXPKGS_LIB").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("default.nix").is_file(),
            "NIXPKGS_LIB={} has no default.nix: point it at nixpkgs' lib/ directory",
            dir.display()
        );
        return dir;
    }
    let nix = real_nix();
    let out = Command::new(nix.with_file_name("nix-instantiate"))
        .args(["--eval", "--expr", "toString <nixpkgs/lib>"])
        .env("NIX_CONFIG", NIX_CONF)
        .output()
        .expect("run nix-instantiate");
    let found = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_matches('"')
        .to_owned();
    assert!(
        out.status.success() && Path::new(&found).join("default.nix").is_file(),
        "these tests need nixpkgs' lib/: set NIXPKGS_LIB to its directory, or put nixpkgs in NIX_PATH"
    );
    PathBuf::from(found)
}

/// A stand-in nixpkgs tree written into a directory.
pub struct StandIn {
    pub root: PathBuf,
}

impl StandIn {
    /// Writes the stand-in into `root` with qemu-vm.nix of `era` and
    /// `run_vm` as the run script template (`@name@`, `@memorySize@` and
    /// `@cores@` are the configuration's).
    pub fn write(root: &Path, era: Era, run_vm: &str) -> StandIn {
        copy_dir(&checkout().join("tests/support/standin-nixpkgs"), root);
        copy_dir(&nixpkgs_lib(), &root.join("lib"));
        let write = |rel: &str, text: &str| {
            std::fs::write(root.join(rel), text)
                .unwrap_or_else(|err| panic!("cannot write {rel} of the stand-in: {err}"))
        };
        write(
            "nixos/modules/virtualisation/qemu-vm.nix",
            &format!(
                "# The era these tests chose.\n{{ imports = [ ./qemu-vm-{}.nix ]; }}\n",
                era.name()
            ),
        );
        write("run-vm", run_vm);
        write("nixos-shell-binary", env!("CARGO_BIN_EXE_nixos-shell"));
        StandIn {
            root: root.to_owned(),
        }
    }

    /// A Nix expression evaluating to NixOS's evaluated configuration of
    /// the project's module and `module` (Nix code) for x86_64-linux.
    pub fn configuration(&self, module: &str) -> String {
        format!(
            "(import {root}/nixos/lib/eval-config.nix {{\n  system = \"x86_64-linux\";\n  modules = [ {module_dir} ({module}) ];\n}})",
            root = self.root.display(),
            module_dir = checkout().join("nixosModules/nixos-shell").display(),
        )
    }

    /// `nix-instantiate --eval --strict --json` of `expr` in scope of
    /// `config` and `options` of [`Self::configuration`]; the JSON value,
    /// or nix's stderr.
    pub fn eval(&self, module: &str, expr: &str) -> Result<serde_json::Value, String> {
        let text = format!(
            "let eval = {}; inherit (eval) config options; in {expr}",
            self.configuration(module)
        );
        let out = nix_command("nix-instantiate")
            .args(["--eval", "--strict", "--json", "--expr", &text])
            .output()
            .expect("run nix-instantiate");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(serde_json::from_slice(&out.stdout).expect("nix printed JSON"))
    }

    /// Builds `config.system.build.nixos-shell` of the module with the real
    /// nix; its store path, or nix's stderr.
    pub fn build(&self, module: &str) -> Result<PathBuf, String> {
        let text = format!(
            "{}.config.system.build.nixos-shell",
            self.configuration(module)
        );
        let out = nix_command("nix-build")
            .args(["--no-out-link", "--expr", &text])
            .output()
            .expect("run nix-build");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    }
}

/// One of nix's commands, beside the real `nix`, with the tests' settings.
fn nix_command(name: &str) -> Command {
    let mut command = Command::new(real_nix().with_file_name(name));
    command.env("NIX_CONFIG", NIX_CONF);
    command
}
