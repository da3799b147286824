//! A fixture flake for the CLI-driven VM tests: its
//! `nixosConfigurations.vm.config.system.build.nixos-shell` is a derivation
//! (built by the real `nix` with `/bin/sh`) holding the harness' run script
//! as `bin/run-vm-vm` and a manifest, the layout the NixOS module builds.
//!
//! Each fixture lives in its own temp dir:
//!
//! ```text
//! flake/           the flake (outside home: nix copies it to the store)
//! home/project/    HOME and the cwd nixos-shell starts in
//! data/            an extraMount of the manifest, read-only at /srv/data
//! extra/           a directory for --mount
//! tmp/             TMPDIR of nixos-shell (its private dirs land here)
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::support::vm::{self, Console, Permit};

/// The extra mount the manifest declares.
pub const DATA_GUEST_PATH: &str = "/srv/data";

pub struct Fixture {
    base: tempfile::TempDir,
}

impl Fixture {
    /// A fixture whose run script starts the VM as NixOS' would.
    pub fn new() -> Fixture {
        Fixture::with_prelude("")
    }

    /// A fixture whose run script runs `prelude` (sh) first.
    pub fn with_prelude(prelude: &str) -> Fixture {
        vm::require_program("nix", "nix-bin");
        let base = tempfile::tempdir().expect("create a temp dir");
        let fixture = Fixture { base };
        for dir in ["flake", "home/project", "data", "extra", "tmp"] {
            std::fs::create_dir_all(fixture.path(dir)).expect("create a fixture dir");
        }
        vm::write_run_script_with(&fixture.path("flake/run-vm"), "vm", prelude);
        let manifest = json!({
            "version": 1,
            "name": "vm",
            "system": "x86_64-linux",
            "diskImage": "./vm.qcow2",
            "inheritPath": true,
            "mounts": {
                "mountHome": true,
                "mountHomeReadOnly": false,
                "mountNixProfile": false,
                "cache": "none",
                "msize": 104857600,
                "extraMounts": [{
                    "guestPath": DATA_GUEST_PATH,
                    "target": fixture.path("data"),
                    "tag": "adata",
                    "cache": "loose",
                    "readOnly": true,
                }],
            },
        });
        std::fs::write(fixture.path("flake/manifest.json"), manifest.to_string())
            .expect("write the manifest");
        std::fs::write(fixture.path("flake/flake.nix"), FLAKE).expect("write flake.nix");
        fixture
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.base.path().join(rel)
    }

    pub fn home(&self) -> PathBuf {
        self.path("home")
    }

    pub fn cwd(&self) -> PathBuf {
        self.path("home/project")
    }

    /// `nixos-shell ARGS path:<flake>#vm`, started in the project directory
    /// with a clean environment: this fixture's HOME and TMPDIR, offline nix.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nixos-shell"));
        command
            .args(args)
            .arg(format!("path:{}#vm", self.path("flake").display()))
            .current_dir(self.cwd())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("USER", "tester")
            .env("LOGNAME", "tester")
            .env("SHELL", "/bin/sh")
            .env("TERM", "xterm-nixos-shell-test")
            .env("TMPDIR", self.path("tmp"))
            .env(
                "NIX_CONFIG",
                "substituters =\nexperimental-features = nix-command flakes\n",
            );
        command
    }

    /// Starts nixos-shell on a 30x100 pseudo-terminal.
    pub fn start(&self, args: &[&str]) -> Console {
        Console::spawn(self.command(args), ROWS, COLS)
    }

    /// [`Fixture::start`] under slots the caller holds.
    pub fn start_with(&self, args: &[&str], permit: Option<Permit>) -> Console {
        Console::spawn_with(self.command(args), ROWS, COLS, permit)
    }
}

/// The terminal size nixos-shell sees.
pub const ROWS: u16 = 30;
pub const COLS: u16 = 100;

/// Every `*.qcow2` under `dir`.
pub fn disk_images(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            found.extend(disk_images(&path));
        } else if path.extension().is_some_and(|e| e == "qcow2") {
            found.push(path);
        }
    }
    found.sort();
    found
}

const FLAKE: &str = r#"{
  description = "nixos-shell VM test fixture: the harness' run script and a manifest";
  outputs = { self }: {
    nixosConfigurations.vm.config.system.build.nixos-shell = derivation {
      name = "nixos-shell-fixture-vm";
      system = "x86_64-linux";
      builder = "/bin/sh";
      PATH = "/usr/bin:/bin";
      args = [ "-c" ''
        mkdir -p $out/bin $out/share/nixos-shell
        cp ${./run-vm} $out/bin/run-vm-vm
        chmod 755 $out/bin/run-vm-vm
        cp ${./manifest.json} $out/share/nixos-shell/manifest.json
      '' ];
    };
  };
}
"#;
