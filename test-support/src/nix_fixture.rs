//! Fixtures for driving the real CLI against the real `nix`, offline.
//!
//! A [`NixFixture`] is a temp dir holding:
//!
//! ```text
//! home/                         HOME of the CLI (the real home is never touched)
//! bin/nix                       a wrapper around the real nix that logs each call
//! nix.log                       "call" per nix process, "exit N" when it ends
//! work/                         the CLI's cwd: vm.nix, flake.nix, ... as a test writes them
//! work/fixture/nixpkgs/nixos/   a fixture <nixpkgs/nixos>: a tiny module system
//! work/fixture/module/          a fixture nixos-shell module (NIXOS_SHELL_MODULE),
//!                               beside the real module's lib.nix
//! work/fixture/run-vm           the run script every build installs as bin/run-<name>-vm
//! ```
//!
//! (`bin/nix` is `nix_fixture/nix.sh`, the default run script
//! `nix_fixture/run-vm.sh`.)
//!
//! The fixture module builds `system.build.nixos-shell` with `/bin/sh`: the run
//! script above plus `share/nixos-shell/manifest.json` from `config.fixture.*`.
//! The default run script records its arguments, environment and cwd into
//! `$NIXOS_SHELL_TEST_RECORD`, copies the session's facts.json beside it,
//! plays the guest for `--command` (writes result.json with exit code
//! `$NIXOS_SHELL_TEST_GUEST_EXIT`, unless `$NIXOS_SHELL_TEST_NO_RESULT`) and
//! exits with `$NIXOS_SHELL_TEST_EXIT`. Replace it with
//! [`NixFixture::write_run_script`] (the VM tests put a real QEMU there).
//!
//! Flakes get the fixture tree inside them (pure evaluation can only read
//! the flake): in `flake.nix`, `nixos` is the fixture `<nixpkgs/nixos>`,
//! `shellModule` the fixture module, `mkVm` a `lib.mkVm` look-alike.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fs::{copy_dir, write_executable};
use crate::nix::{host_system, offline_config, real_nix};
use crate::sh::quote;
use crate::template::fill;
use crate::Paths;

const NIXOS: &str = include_str!("nix_fixture/nixos.nix");

const MODULE: &str = include_str!("nix_fixture/module.nix");

const RECORDING_RUN_SCRIPT: &str = include_str!("nix_fixture/run-vm.sh");
const NIX_WRAPPER: &str = include_str!("nix_fixture/nix.sh");

/// While this file (under the root) exists, nix calls wait; a waiting one
/// writes the other.
const NIX_HOLD: &str = "nix.hold";
const NIX_HELD: &str = "nix.held";

/// Every fixture flake: its outputs in scope of `nixos`, `shellModule`,
/// `mkVm` and `system`.
const FLAKE: &str = include_str!("nix_fixture/flake.nix.in");

pub struct NixFixture {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    paths: Paths,
}

impl NixFixture {
    /// Writes the fixture tree for the CLI of `paths`; panics when nix is
    /// missing.
    pub fn new(paths: Paths) -> NixFixture {
        let nix = real_nix();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        for empty in ["home", "tmp"] {
            std::fs::create_dir_all(root.join(empty)).unwrap();
        }
        write("work/fixture/nixpkgs/nixos/default.nix", NIXOS);
        write("work/fixture/module/default.nix", MODULE);
        // The CLI's own expressions import the module's lib.nix (shared
        // helpers): the real one, beside the fixture module.
        std::fs::copy(
            paths.checkout().join("nixosModules/nixos-shell/lib.nix"),
            root.join("work/fixture/module/lib.nix"),
        )
        .expect("copy the module's lib.nix");
        write("work/fixture/run-vm", RECORDING_RUN_SCRIPT);
        write_executable(
            &root.join("bin/nix"),
            &fill(
                NIX_WRAPPER,
                &[
                    ("log", &quote(&root.join("nix.log").to_string_lossy())),
                    ("hold", &quote(&root.join(NIX_HOLD).to_string_lossy())),
                    ("held", &quote(&root.join(NIX_HELD).to_string_lossy())),
                    ("nix", &quote(&nix.to_string_lossy())),
                ],
            ),
        );
        NixFixture {
            _dir: dir,
            root,
            paths,
        }
    }

    /// The CLI's cwd.
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    /// TMPDIR of the CLI: its private dirs appear here.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Writes a flake whose build nix has never seen (a fresh path in it)
    /// and that waits a minute after touching a marker file: for
    /// interrupting a build that is under way. Wait with
    /// [`WaitingBuild::wait_until_started`].
    pub fn waiting_build(&self) -> WaitingBuild {
        // Builds may run as another user (nixbld): a world-writable dir.
        let dir = tempfile::tempdir().expect("create a temp dir");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("make the marker dir world-writable");
        let started = dir.path().join("build-started");
        let finished = dir.path().join("build-finished");
        // The waiting shell names the marker (its `$0`), so that
        // [`WaitingBuild::left`] finds it; `; :` keeps it from exec'ing
        // sleep.
        self.flake(&format!(
            r#"{{ nixosConfigurations.vm = mkVm {{ modules = [ {{
                 fixture.preBuild = "touch {started}; sh -c 'sleep 60; :' {started}; touch {finished}";
               }} ]; }}; }}"#,
            started = started.display(),
            finished = finished.display()
        ));
        WaitingBuild {
            _dir: dir,
            started,
            finished,
        }
    }

    /// What the CLI left in its TMPDIR.
    pub fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.tmp())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    /// Where the recording run script writes.
    pub fn record_path(&self) -> PathBuf {
        self.root.join("record")
    }

    /// Where the recording run script copies the session share's terminfo
    /// directory, when it has one.
    pub fn recorded_terminfo(&self) -> PathBuf {
        self.root.join("record.terminfo")
    }

    /// Writes a file under `work/`.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.work().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The run script every later build of `work/flake.nix` installs.
    pub fn run_script(&self) -> PathBuf {
        self.work().join("fixture/run-vm")
    }

    /// Replaces the run script every later build installs.
    pub fn write_run_script(&self, text: &str) {
        write_executable(&self.run_script(), text);
    }

    /// Writes `work/<dir>/flake.nix` (dir "" = work) with the given outputs
    /// body, in scope of the fixture flake's (`nixos`, `shellModule`, `mkVm`,
    /// `system`), and the fixture tree beside it.
    pub fn flake_in(&self, dir: &str, outputs: &str) -> PathBuf {
        let text = fill(FLAKE, &[("system", &host_system()), ("outputs", outputs)]);
        if !dir.is_empty() {
            copy_dir(
                &self.work().join("fixture"),
                &self.work().join(dir).join("fixture"),
            );
        }
        let rel = if dir.is_empty() {
            "flake.nix".to_owned()
        } else {
            format!("{dir}/flake.nix")
        };
        self.write(&rel, &text)
    }

    /// [`Self::flake_in`] for `work/flake.nix`.
    pub fn flake(&self, outputs: &str) -> PathBuf {
        self.flake_in("", outputs)
    }

    /// The CLI, ready to run in `work/` with a clean, offline environment.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.paths.cli());
        command
            .args(args)
            .current_dir(self.work())
            .env_clear()
            .env("HOME", self.home())
            .env("USER", "tester")
            .env("TMPDIR", self.tmp())
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.root.join("bin").display()),
            )
            .env("NIX_CONFIG", offline_config())
            .env(
                "NIX_PATH",
                format!("nixpkgs={}", self.work().join("fixture/nixpkgs").display()),
            )
            .env("NIXOS_SHELL_MODULE", self.work().join("fixture/module"))
            .env("NIXOS_SHELL_TEST_RECORD", self.record_path());
        command
    }

    /// Runs the CLI to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(self.cli(args))
    }

    pub fn run_with(&self, mut command: Command) -> Output {
        let output = command.output().expect("the CLI did not start");
        eprintln!(
            "--- nixos-shell {:?}: {}\n--- stdout:\n{}--- stderr:\n{}",
            command.get_args().collect::<Vec<_>>(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// The argument lines of each nix process so far (newlines as spaces).
    pub fn nix_argv(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.root.join("nix.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| l.strip_prefix("call "))
            .map(str::to_owned)
            .collect()
    }

    /// Holds every later nix call before nix starts, until
    /// [`NixFixture::release_nix`]: nixos-shell waits for it as for a
    /// build under way, for as long as the test acts (a cached build is
    /// done in milliseconds).
    pub fn hold_nix(&self) {
        std::fs::write(self.root.join(NIX_HOLD), "").expect("hold nix");
    }

    /// Waits until a nix call is held; panics after `timeout`.
    pub fn wait_until_nix_held(&self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !self.root.join(NIX_HELD).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "no nix call was held within {timeout:?}: {:?}",
                self.nix_argv()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Lets the held nix call go on.
    pub fn release_nix(&self) {
        std::fs::remove_file(self.root.join(NIX_HOLD)).expect("release nix");
    }

    /// How many nix processes ran so far, and their exit statuses.
    pub fn nix_calls(&self) -> (usize, Vec<i32>) {
        let log = std::fs::read_to_string(self.root.join("nix.log")).unwrap_or_default();
        let calls = log.lines().filter(|l| l.starts_with("call ")).count();
        let exits = log
            .lines()
            .filter_map(|l| l.strip_prefix("exit "))
            .map(|c| c.parse().unwrap())
            .collect();
        (calls, exits)
    }

    /// What the recording run script saw.
    pub fn record(&self) -> Record {
        let text = std::fs::read_to_string(self.record_path())
            .expect("the run script did not run (no record)");
        let mut record = Record::default();
        for line in text.lines() {
            if let Some(arg) = line.strip_prefix("arg ") {
                record.args.push(arg.to_owned());
            } else if let Some(kv) = line.strip_prefix("env ") {
                if let Some((k, v)) = kv.split_once('=') {
                    record.env.insert(k.to_owned(), v.to_owned());
                }
            } else if let Some(script) = line.strip_prefix("script ") {
                record.script = script.to_owned();
            } else if let Some(cwd) = line.strip_prefix("cwd ") {
                record.cwd = cwd.to_owned();
            }
        }
        let facts = std::fs::read_to_string(format!("{}.facts.json", self.record_path().display()));
        record.facts = facts.ok().map(|f| serde_json::from_str(&f).unwrap());
        record
    }
}

/// What the recording run script received.
#[derive(Debug, Default)]
pub struct Record {
    pub cwd: String,
    /// The run script's own path (`$0`).
    pub script: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub facts: Option<serde_json::Value>,
}

impl Record {
    /// The values of every `-virtfs`.
    pub fn virtfs(&self) -> Vec<String> {
        self.args
            .windows(2)
            .filter(|w| w[0] == "-virtfs")
            .map(|w| w[1].clone())
            .collect()
    }

    /// The session dir's root (the parent of TMPDIR).
    pub fn session_root(&self) -> PathBuf {
        Path::new(&self.env["TMPDIR"]).parent().unwrap().to_owned()
    }
}

/// The stdout of a run, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A build under way that waits; see [`NixFixture::waiting_build`].
pub struct WaitingBuild {
    _dir: tempfile::TempDir,
    started: PathBuf,
    finished: PathBuf,
}

impl WaitingBuild {
    /// Waits until the builder runs; panics after a minute with `context()`.
    pub fn wait_until_started(&self, context: impl Fn() -> String) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self.started.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the build never started{}",
                context()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Whether the builder got past its wait: nix was not stopped.
    pub fn finished(&self) -> bool {
        self.finished.exists()
    }

    /// The processes of the build still running: nix's (the wrapper's and
    /// the real one's, whose command lines name the fixture `fx`) and the
    /// builder's waiting shell.
    pub fn left(&self, fx: &NixFixture) -> Vec<String> {
        let mut left: Vec<String> = crate::vm::processes_under(&fx.root, "")
            .into_iter()
            .chain(crate::vm::processes_under(&self.started, ""))
            .map(|(_, cmdline)| cmdline)
            .collect();
        left.dedup();
        left
    }
}
