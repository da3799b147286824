//! The fixture flake of the CLI-driven VM tests, a thin layer over
//! [`NixFixture`]: its `nixosConfigurations.vm` is made by the fixture's
//! `mkVm`, so `system.build.nixos-shell` (built by the real `nix` with
//! `/bin/sh`) holds the harness' run script of one [`Era`] as
//! `bin/run-vm-vm` and a manifest sharing home and one read-only extra
//! directory, the layout the NixOS module builds. In the virtiofs era the
//! manifest also names the script's shared memory backend, as the module
//! does when the run script has one.
//!
//! Beside the [`NixFixture`] tree (`work/` holds the flake, `home/` is HOME,
//! `tmp/` TMPDIR):
//!
//! ```text
//! home/project/    the cwd nixos-shell starts in (inside HOME, as a user's is)
//! data/            an extraMount of the manifest, read-only at /srv/data
//! extra/           a directory for --mount
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::nix_fixture::NixFixture;
use crate::support::vm::{self, Console, Era, Permit, RunScript};

/// The extra mount the manifest declares.
pub const DATA_GUEST_PATH: &str = "/srv/data";

pub struct Fixture {
    /// The fixture underneath: the flake in `work/`, the run script.
    pub nix: NixFixture,
}

impl Fixture {
    /// A fixture whose run script starts the VM as NixOS' of `era` would.
    pub fn new(era: Era) -> Fixture {
        Fixture::with_prelude(era, "")
    }

    /// A fixture whose run script runs `prelude` (sh) first.
    pub fn with_prelude(era: Era, prelude: &str) -> Fixture {
        let fixture = Fixture {
            nix: NixFixture::new(),
        };
        for dir in ["home/project", "data", "extra"] {
            std::fs::create_dir_all(fixture.path(dir)).expect("create a fixture dir");
        }
        fixture
            .nix
            .write_run_script(&RunScript::new(era, "vm").prelude(prelude).text());
        let data = serde_json::Value::from(fixture.path("data").to_string_lossy()).to_string();
        let memory_backend = match era {
            Era::NineP => String::new(),
            Era::Virtiofs => format!(
                r#"memoryBackend = {{ id = "{}"; size = {}; }};"#,
                vm::MEMORY_BACKEND_ID,
                vm::MEMORY_MIB
            ),
        };
        fixture.nix.flake(&format!(
            r#"{{
      nixosConfigurations.vm = mkVm {{
        modules = [ {{
          system.name = "vm";
          fixture = {{
            mountNixProfile = false;
            cache = "none";
            msize = 104857600;
            extraMounts = [ {{
              guestPath = "{DATA_GUEST_PATH}";
              target = {data};
              tag = "adata";
              cache = "loose";
              readOnly = true;
            }} ];
            {memory_backend}
          }};
        }} ];
      }};
    }}"#
        ));
        fixture
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.nix.root.join(rel)
    }

    pub fn home(&self) -> PathBuf {
        self.nix.home()
    }

    pub fn cwd(&self) -> PathBuf {
        self.path("home/project")
    }

    /// `nixos-shell ARGS path:<flake>#vm`, started in the project directory
    /// with [`NixFixture::cli`]'s clean environment (this fixture's HOME and
    /// TMPDIR, offline nix) and a login's TERM, LOGNAME and SHELL.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = self.nix.cli(args);
        command
            .arg(format!("path:{}#vm", self.nix.work().display()))
            .current_dir(self.cwd())
            .env("LOGNAME", "tester")
            .env("SHELL", "/bin/sh")
            .env("TERM", "xterm-nixos-shell-test");
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

    /// Fails the test if a virtiofsd the run script started still runs:
    /// call once nixos-shell has ended, when the script must have stopped
    /// them (every path of the fixture is under its root).
    pub fn assert_no_virtiofsd_left(&self) {
        let left = vm::kill_virtiofsd_under(&self.nix.root);
        assert!(left.is_empty(), "virtiofsd outlived the VM: {left:?}");
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
