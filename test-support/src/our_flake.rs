//! The project's own `flake.nix` in a temporary world: the stand-in
//! nixpkgs (`support::standin`), a copy of the checkout's flake locked to
//! it, a HOME and a TMPDIR, and newcomers' projects made from its template.
//!
//! The checkout is used the way README tells a user with a checkout to use
//! it: `nix flake init -t path:CHECKOUT`, then `nix flake lock
//! --override-input nixos-shell path:CHECKOUT`. The checkout here is a copy
//! of the files the flake needs (a `path:` flake of the real checkout would
//! copy `target/` into the store too), whose `nixpkgs` input is locked to
//! the stand-in the same way.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fs::copy_dir;
use crate::nix::{offline_config, real_nix};
use crate::standin::StandIn;
use crate::vm::Era;
use crate::Paths;

/// What `flake.nix` reads from the checkout (the package's Cargo workspace
/// includes this crate).
const FLAKE_FILES: [&str; 11] = [
    "flake.nix",
    "flake.lock",
    "package.nix",
    "Cargo.toml",
    "Cargo.lock",
    "src",
    "test-support",
    "nixosModules",
    "templates",
    "examples",
    "checks",
];

/// A temporary world: the stand-in nixpkgs, a copy of the checkout locked
/// to it, a HOME, a TMPDIR.
pub struct OurFlake {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub flake: PathBuf,
    /// The stand-in nixpkgs' tree.
    nixpkgs: PathBuf,
    paths: Paths,
}

impl OurFlake {
    /// The world for `era` around the checkout and CLI of `paths`, whose
    /// VMs run `run_vm` (see [`StandIn::write`]).
    pub fn new(paths: Paths, era: Era, run_vm: &str) -> OurFlake {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let root = dir.path().to_owned();
        let standin = StandIn::write(paths, &root.join("nixpkgs"), era, run_vm);
        let flake = root.join("nixos-shell");
        std::fs::create_dir_all(&flake).expect("create the checkout's copy");
        for file in FLAKE_FILES {
            let from = paths.checkout().join(file);
            if from.is_dir() {
                copy_dir(&from, &flake.join(file));
            } else {
                std::fs::copy(&from, flake.join(file))
                    .unwrap_or_else(|err| panic!("copy {file} of the checkout: {err}"));
            }
        }
        for empty in ["home", "tmp"] {
            std::fs::create_dir_all(root.join(empty)).expect("create a dir");
        }
        let world = OurFlake {
            _dir: dir,
            root,
            flake,
            nixpkgs: standin.root,
            paths,
        };
        world.nix_ok(
            &[
                "flake",
                "lock",
                "--override-input",
                "nixpkgs",
                &format!("path:{}", world.nixpkgs.display()),
            ],
            &world.flake,
        );
        world
    }

    /// `nix ARGS` in `cwd`, offline, with this world's HOME.
    pub fn nix(&self, args: &[&str], cwd: &Path) -> Output {
        let output = Command::new(real_nix())
            .args(["--extra-experimental-features", "nix-command flakes"])
            .args(args)
            .current_dir(cwd)
            .env("HOME", self.root.join("home"))
            .env("NIX_CONFIG", offline_config())
            .output()
            .expect("run nix");
        eprintln!(
            "--- nix {args:?} in {}: {}\n{}",
            cwd.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// [`Self::nix`], which must succeed.
    pub fn nix_ok(&self, args: &[&str], cwd: &Path) -> Output {
        let output = self.nix(args, cwd);
        assert!(
            output.status.success(),
            "nix {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `nix eval --json` of the flake's `attribute` with `apply` applied:
    /// its value.
    pub fn eval_json<T: serde::de::DeserializeOwned>(&self, attribute: &str, apply: &str) -> T {
        let out = self.nix_ok(
            &[
                "eval",
                "--json",
                &format!("path:{}#{attribute}", self.flake.display()),
                "--apply",
                apply,
            ],
            &self.root,
        );
        serde_json::from_slice(&out.stdout).expect("nix eval printed JSON")
    }

    /// A newcomer's project directory, named `name` under this world,
    /// made as README says: `nix flake init -t`, then the input pointed at
    /// the checkout.
    pub fn project(&self, name: &str) -> PathBuf {
        let project = self.root.join("home").join(name);
        std::fs::create_dir_all(&project).expect("create the project dir");
        let checkout = format!("path:{}", self.flake.display());
        self.nix_ok(&["flake", "init", "-t", &checkout], &project);
        self.nix_ok(
            &[
                "flake",
                "lock",
                "--override-input",
                "nixos-shell",
                &checkout,
            ],
            &project,
        );
        project
    }

    /// A user's flake: the files of the directory `fixture` copied to
    /// `name` in this world's HOME, with `@nixpkgs@` and `@nixos-shell@` in
    /// its `flake.nix` naming the stand-in nixpkgs and this world's copy
    /// of the checkout, locked.
    pub fn user_flake(&self, fixture: &Path, name: &str) -> PathBuf {
        let project = self.root.join("home").join(name);
        copy_dir(fixture, &project);
        let flake = project.join("flake.nix");
        let text = std::fs::read_to_string(&flake).expect("the fixture's flake.nix");
        let text = text
            .replace("@nixpkgs@", &format!("path:{}", self.nixpkgs.display()))
            .replace("@nixos-shell@", &format!("path:{}", self.flake.display()));
        std::fs::write(&flake, text).expect("write the flake");
        self.nix_ok(&["flake", "lock"], &project);
        project
    }

    /// `nixos-shell ARGS` in `cwd` as a user runs it: their HOME, TMPDIR
    /// and TERM, nix offline, and nothing that tells nixos-shell where its
    /// module or nixpkgs are (a flake needs neither).
    pub fn cli(&self, args: &[&str], cwd: &Path) -> Command {
        let mut command = Command::new(self.paths.cli());
        let path = format!(
            "{}:/usr/bin:/bin",
            real_nix().parent().expect("nix's dir").display()
        );
        command
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("HOME", self.root.join("home"))
            .env("USER", "newcomer")
            .env("TMPDIR", self.root.join("tmp"))
            .env("TERM", "xterm-newcomer")
            .env("PATH", path)
            .env("NIX_CONFIG", offline_config());
        command
    }
}
