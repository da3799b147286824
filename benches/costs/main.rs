//! `cargo bench --bench costs`: what a nixos-shell run costs, measured
//! against the `nix build` it runs, against a second run of an unchanged
//! flake, and against booting the same VM without it. Prints the machine
//! and a markdown table (BENCHMARKS.md explains each figure).
//!
//! Each figure is the median of several runs after a warm-up, with min and
//! max; each comparison is computed run by run from pairs taken one after
//! the other (their order alternating), so drift in the machine's load
//! touches both sides. Everything runs offline with the real `nix`,
//! against fixture flakes written by the integration tests' own fixture
//! code, and boots with the VM tests' QEMU harness: both are the
//! test-support crate's (`test-support/`).
//!
//! Arguments (after `--`): section names to run only some of them:
//! `cli`, `warm`, `boot` (boot to command and peak RSS), `resize` (the
//! console following the terminal), `attach` (`--attach`'s start and its
//! pipes), `shares` (the shared home over 9p and over virtiofs), `background`
//! (`--detach`, `--list` and `--stop`), `host-nix` (nix in the guest through
//! the host's store and in its own), `switch` (`--switch` against
//! `--switch --restart`, and `--watch`), `long-life`
//! (one VM for at least 15 minutes: what the host holds at the end). Environment:
//! `NIXOS_SHELL_ORIGINAL` = path of the original (bash) nixos-shell, to
//! measure it beside ours; `NIXOS_SHELL_BENCH_RUNS` = runs per figure;
//! `NIXOS_SHELL_BENCH_KEEP` set = keep the benchmark's temporary directory.

mod attach;
mod background;
mod boot;
mod host_nix;
mod load;
mod long_life;
mod machine;
mod measure;
mod nix;
mod overhead;
mod proc;
mod resize;
mod shares;
mod switch;
mod table;
mod warm;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result};
use nixos_shell_test_support::nix_fixture::NixFixture;
use nixos_shell_test_support::Paths;

use nix::NixWrapper;
use table::{Outcome, Row, Unit};

/// The sections one may ask for by name.
const SECTIONS: [&str; 10] = [
    "cli",
    "warm",
    "boot",
    "resize",
    "attach",
    "shares",
    "background",
    "host-nix",
    "switch",
    "long-life",
];

/// The CLI under test, built by cargo for this benchmark, and its checkout,
/// for the test-support crate's fixtures: these `env!`s name them only in
/// this package's own benches and tests.
const PATHS: Paths = Paths::new(
    env!("CARGO_BIN_EXE_nixos-shell"),
    env!("CARGO_MANIFEST_DIR"),
);

/// Runs per figure, by how long one run takes. A warm build's time varies
/// by a few ms from run to run; 61 pairs keep the median of their
/// differences within a fraction of a millisecond.
const FAST_RUNS: usize = 61;
const EVAL_RUNS: usize = 5;
const BOOT_RUNS: usize = 5;

/// How long one VM boot may take before the figure fails.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// The runtime overrides of the overrides figure.
const OVERRIDES: [&str; 6] = ["--memory", "1G", "--cores", "2", "--forward", "8080:80"];

fn main() -> ExitCode {
    let sections: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match run(&sections) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("costs: some figures failed; see the table");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("costs: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the machine and the table; `Ok(false)` when a figure failed.
fn run(sections: &[String]) -> Result<bool> {
    if let Some(unknown) = sections.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
        anyhow::bail!(
            "no section {unknown:?}: name some of {}, or none for all",
            SECTIONS.join(", ")
        );
    }
    let wanted = |name: &str| sections.is_empty() || sections.iter().any(|s| s == name);
    let bench = Bench::new()?;
    let machine = machine::describe(PATHS.checkout());
    let others = machine::OtherLoad::start();
    let mut rows = Vec::new();
    let tools: Vec<Tool> = std::iter::once(Tool::ours())
        .chain(Tool::original())
        .collect();
    if wanted("cli") || wanted("warm") {
        match guarded(&["fixture flakes".into()], Flakes::new) {
            Ok(flakes) => {
                for tool in tools.iter().filter(|_| wanted("cli")) {
                    rows.extend(bench.cli_overhead(&flakes, tool));
                }
                for tool in tools.iter().filter(|_| wanted("warm")) {
                    rows.extend(bench.warm_start(&flakes, tool));
                }
            }
            Err(failed) => rows.extend(failed),
        }
        if tools.len() == 1 {
            rows.push(Row::new(
                "original nixos-shell: CLI overhead and warm start",
                Unit::Seconds,
                Outcome::Skipped("set NIXOS_SHELL_ORIGINAL to its path".into()),
            ));
        }
    }
    if wanted("boot") {
        rows.extend(bench.boot());
    }
    if wanted("resize") {
        rows.extend(bench.resize());
    }
    if wanted("attach") {
        rows.extend(bench.attach());
    }
    if wanted("shares") {
        rows.extend(bench.shares());
    }
    if wanted("background") {
        rows.extend(bench.background());
    }
    if wanted("host-nix") {
        rows.extend(bench.host_nix());
    }
    if wanted("switch") {
        rows.extend(bench.switch());
    }
    if wanted("long-life") {
        rows.extend(bench.long_life());
    }
    println!(
        "{machine}- load average at end: {}\n{}",
        machine::load_average(),
        others.describe()
    );
    println!("{}", table::render(&rows));
    Ok(rows
        .iter()
        .all(|r| !matches!(r.outcome, Outcome::Failed(_))))
}

/// Runs a section, turning an error or a panic (the test fixtures panic on
/// failure) into failed rows under `labels`.
fn guarded<T>(labels: &[String], section: impl FnOnce() -> Result<T>) -> Result<T, Vec<Row>> {
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(section)).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a fixture panicked".into());
            Err(anyhow::anyhow!(what))
        });
    result.map_err(|err| failed_rows(labels, &err))
}

/// Rows for figures a failure prevented: the first says why, the others
/// point to it.
fn failed_rows(labels: &[String], err: &anyhow::Error) -> Vec<Row> {
    eprintln!("costs: {err:#}");
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let why = if i == 0 {
                format!("{err:#}")
            } else {
                "as above".into()
            };
            Row::new(l.clone(), Unit::Seconds, Outcome::Failed(why))
        })
        .collect()
}

/// A program measured: ours or the original.
struct Tool {
    name: &'static str,
    program: PathBuf,
    ours: bool,
}

impl Tool {
    fn ours() -> Tool {
        Tool {
            name: "nixos-shell",
            program: PATHS.cli().to_owned(),
            ours: true,
        }
    }

    fn original() -> Option<Tool> {
        std::env::var_os("NIXOS_SHELL_ORIGINAL").map(|p| Tool {
            name: "original nixos-shell",
            program: PathBuf::from(p),
            ours: false,
        })
    }

    /// `--build-only` of a flake attribute: ours takes the flake reference
    /// as CONFIG, the original only after `--flake`.
    fn build_only(&self, installable: &str) -> Vec<String> {
        let mut args = vec!["--build-only".to_string()];
        if !self.ours {
            args.push("--flake".into());
        }
        args.push(installable.into());
        args
    }
}

/// The fixture flakes of the nix figures, written by the CLI tests' nix
/// fixture: configurations made by its `lib.mkVm` look-alike over its
/// `<nixpkgs/nixos>`, one plain and one carrying the evaluation load.
struct Flakes {
    fixture: NixFixture,
    plain: String,
    eval_load: String,
}

impl Flakes {
    fn new() -> Result<Flakes> {
        let fixture = NixFixture::new(PATHS);
        let vm = |modules: &str| {
            format!("{{ nixosConfigurations.vm = mkVm {{ modules = [ {{ system.name = \"vm\"; }} {modules} ]; }}; }}")
        };
        fixture.flake_in("plain", &vm(""));
        fixture.flake_in("eval-load", &vm(&load::module()));
        let installable = |dir: &str| format!("path:{}#vm", fixture.work().join(dir).display());
        Ok(Flakes {
            plain: installable("plain"),
            eval_load: installable("eval-load"),
            fixture,
        })
    }

    /// `program` in the fixture's clean environment and working directory.
    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        like(&self.fixture.cli(&[]), program)
    }
}

/// A command for `program` with the environment and directory of
/// `template`, which starts from an empty environment.
fn like(template: &Command, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for (name, value) in template.get_envs() {
        if let Some(value) = value {
            cmd.env(name, value);
        }
    }
    if let Some(dir) = template.get_current_dir() {
        cmd.current_dir(dir);
    }
    cmd
}

/// The benchmark's own state: a private directory holding eval caches, an
/// empty flake registry and the nix wrapper, and the settings every run
/// shares.
struct Bench {
    root: tempfile::TempDir,
    nix_config: String,
    real_nix_dir: PathBuf,
    wrapper: NixWrapper,
    fast_runs: usize,
    eval_runs: usize,
    boot_runs: usize,
}

impl Bench {
    fn new() -> Result<Bench> {
        let mut root = tempfile::Builder::new()
            .prefix("nixos-shell-bench.")
            .tempdir()
            .context("cannot create a temporary directory")?;
        if std::env::var_os("NIXOS_SHELL_BENCH_KEEP").is_some() {
            root.disable_cleanup(true);
            eprintln!("costs: keeping {}", root.path().display());
        }
        let registry = root.path().join("registry.json");
        nix::write_empty_registry(&registry)?;
        let real_nix_dir = nix::real_nix_dir()?;
        let wrapper = NixWrapper::create(&root.path().join("wrapper"), &real_nix_dir)?;
        let runs = match std::env::var("NIXOS_SHELL_BENCH_RUNS") {
            Ok(n) => Some(
                n.parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .with_context(|| {
                        format!("NIXOS_SHELL_BENCH_RUNS={n:?}: give a number of runs, 1 or more")
                    })?,
            ),
            Err(_) => None,
        };
        Ok(Bench {
            nix_config: nix::offline_config(&registry),
            real_nix_dir,
            wrapper,
            fast_runs: runs.unwrap_or(FAST_RUNS),
            eval_runs: runs.unwrap_or(EVAL_RUNS),
            boot_runs: runs.unwrap_or(BOOT_RUNS),
            root,
        })
    }

    /// `PATH` for timed runs: the real nix, then the system's tools.
    fn path_env(&self) -> Result<OsString> {
        let dirs = [self.real_nix_dir.clone(), "/usr/bin".into(), "/bin".into()];
        std::env::join_paths(dirs).context("cannot build PATH")
    }

    /// What the VM sections set on each command they run: the offline nix
    /// configuration and [`Bench::path_env`].
    fn vm_env(&self) -> Result<impl Fn(Command) -> Command + '_> {
        let path = self.path_env()?;
        Ok(move |mut command: Command| {
            command
                .env("NIX_CONFIG", &self.nix_config)
                .env("PATH", &path);
            command
        })
    }

    /// `program` as the nix figures run it: the fixture's environment,
    /// offline, the real nix on PATH, its eval cache under `cache`.
    fn command(
        &self,
        flakes: &Flakes,
        program: impl AsRef<OsStr>,
        cache: &Path,
    ) -> Result<Command> {
        let mut cmd = flakes.command(program);
        cmd.env("NIX_CONFIG", &self.nix_config)
            .env("PATH", self.path_env()?)
            .env("XDG_CACHE_HOME", cache);
        Ok(cmd)
    }

    /// A new, empty cache directory.
    fn fresh_cache(&self) -> Result<PathBuf> {
        let dir = tempfile::Builder::new()
            .prefix("cache.")
            .tempdir_in(self.root.path())?
            .keep();
        Ok(dir)
    }
}
