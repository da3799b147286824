//! The stand-in nixpkgs (`standin-nixpkgs/` beside this crate's sources,
//! see its README):
//! nixpkgs' real `lib/` and module system, NixOS's option declarations for
//! what the project's module touches, and `qemu-vm.nix` in one [`Era`], so
//! that tests evaluate and build the project's real NixOS module with the
//! real `nix` on a machine that has no nixpkgs.
//!
//! nixpkgs' `lib/` comes from `NIXPKGS_LIB`, else from `<nixpkgs/lib>`; CI
//! sets `NIXPKGS_LIB`.

use std::path::{Path, PathBuf};

use crate::fs::copy_dir;
use crate::nix;
use crate::vm::Era;
use crate::Paths;

/// The stand-in's tree, which [`StandIn::write`] copies.
const TREE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/standin-nixpkgs");

/// nixpkgs' `lib/` directory; fails the test with one line saying how to
/// provide it.
fn nixpkgs_lib() -> PathBuf {
    if let Some(dir) = std::env::var_os("NIXPKGS_LIB").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("default.nix").is_file(),
            "NIXPKGS_LIB={} has no default.nix: point it at nixpkgs' lib/ directory",
            dir.display()
        );
        return dir;
    }
    let out = nix::command("nix-instantiate")
        .args(["--eval", "--expr", "toString <nixpkgs/lib>"])
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
    paths: Paths,
}

impl StandIn {
    /// Writes the stand-in into `root` with qemu-vm.nix of `era` and
    /// `run_vm` as the run script template (`@name@`, `@memorySize@` and
    /// `@cores@` are the configuration's); its nixos-shell package is the
    /// binary of `paths`, and it evaluates the module of their checkout.
    pub fn write(paths: Paths, root: &Path, era: Era, run_vm: &str) -> StandIn {
        copy_dir(Path::new(TREE), root);
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
        write("nixos-shell-binary", &paths.cli().to_string_lossy());
        // The stand-in's virtiofsd package is a copy of this one (none: a
        // stub that says so).
        let virtiofsd = crate::vm::find_virtiofsd().unwrap_or_default();
        write("virtiofsd-binary", &virtiofsd.to_string_lossy());
        StandIn {
            root: root.to_owned(),
            paths,
        }
    }

    /// A Nix expression evaluating to NixOS's evaluated configuration of
    /// the project's module and `module` (Nix code) for x86_64-linux.
    pub fn configuration(&self, module: &str) -> String {
        format!(
            "(import {root}/nixos/lib/eval-config.nix {{\n  system = \"x86_64-linux\";\n  modules = [ {module_dir} ({module}) ];\n}})",
            root = self.root.display(),
            module_dir = self
                .paths
                .checkout()
                .join("nixosModules/nixos-shell")
                .display(),
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
        let out = nix::command("nix-instantiate")
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
        let out = nix::command("nix-build")
            .args(["--no-out-link", "--expr", &text])
            .output()
            .expect("run nix-build");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    }
}
