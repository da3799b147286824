//! `cargo bench --bench costs`: what a nixos-shell run costs, measured
//! against the `nix build` it runs, against a second run of an unchanged
//! flake, and against booting the same VM without it. Prints the machine
//! and a markdown table (BENCHMARKS.md explains each figure).
//!
//! Each figure is the median of several runs after a warm-up, with min and
//! max; each comparison is computed run by run from pairs taken one after
//! the other (their order alternating), so drift in the machine's load
//! touches both sides. Everything runs offline against fixture flakes
//! written here, with the real `nix` and the real QEMU harness of the VM
//! tests (`tests/support/vm.rs`).
//!
//! Arguments (after `--`): section names to run only some of them:
//! `cli`, `warm`, `boot` (boot to command and peak RSS). Environment:
//! `NIXOS_SHELL_ORIGINAL` = path of the original (bash) nixos-shell, to
//! measure it beside ours; `NIXOS_SHELL_BENCH_RUNS` = runs per figure;
//! `NIXOS_SHELL_BENCH_KEEP` set = keep the benchmark's temporary directory.

mod load;
mod machine;
mod measure;
mod nix;
mod proc;
mod stats;
mod table;
mod words;

// The integration tests' fixtures, reused rather than copied: `support`
// holds the nix fixture (a fixture `<nixpkgs/nixos>`, module and `mkVm`)
// and the QEMU harness; `vm_fixture` the flake the VM tests boot.
#[allow(dead_code)]
#[path = "../../tests/support/mod.rs"]
mod support;
#[allow(dead_code)]
#[path = "../../tests/vm/fixture.rs"]
mod vm_fixture;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use nix::NixWrapper;
use stats::{differences, ratios, summarize};
use support::nix_fixture::NixFixture;
use support::vm::Console;
use table::{Outcome, Row, Unit};

/// The CLI under test, built by cargo for this benchmark.
const CLI: &str = env!("CARGO_BIN_EXE_nixos-shell");

/// Runs per figure, by how long one run takes.
const FAST_RUNS: usize = 15;
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
    let wanted = |name: &str| sections.is_empty() || sections.iter().any(|s| s == name);
    let bench = Bench::new()?;
    let machine = machine::describe();
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
    println!(
        "{machine}- load average at end: {}\n",
        machine::load_average()
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
            program: PathBuf::from(CLI),
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
        let fixture = NixFixture::new();
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

    // --- CLI overhead ----------------------------------------------------

    fn cli_overhead(&self, flakes: &Flakes, tool: &Tool) -> Vec<Row> {
        let labels = [
            format!("{}: nix processes per run", tool.name),
            format!("{}: `--build-only` of a built flake", tool.name),
            format!("{}: its `nix build`, run directly", tool.name),
            format!("{}: CLI overhead (difference, run by run)", tool.name),
        ];
        eprintln!("costs: CLI overhead of {}", tool.name);
        let cache = self.root.path().join("cache-cli");
        let args = tool.build_only(&flakes.plain);
        let (calls, failure) = match guarded(&labels, || {
            self.count_nix_calls(flakes, tool, &args, &cache)
        }) {
            Ok(counted) => counted,
            Err(rows) => return rows,
        };
        let names: Vec<String> = calls
            .iter()
            .map(|argv| argv.iter().take(2).cloned().collect::<Vec<_>>().join(" "))
            .collect();
        if let Some(err) = failure {
            // What the run started before it failed is still worth knowing.
            let mut rows = vec![Row::new(
                labels[0].clone(),
                Unit::Count,
                Outcome::Fact(format!(
                    "{} ({}) before the run failed",
                    calls.len(),
                    names.join(", ")
                )),
            )];
            rows.extend(failed_rows(&labels[1..], &err));
            return rows;
        }
        let mut count = Row::new(
            labels[0].clone(),
            Unit::Count,
            measured(summarize(&[calls.len() as f64])),
        );
        if tool.ours {
            count = count.goal("= 1", |v| v == 1.0);
        }
        let (cli, direct) = match guarded(&labels[1..], || {
            self.time_cli_overhead(flakes, tool, &args, &cache, &calls)
        }) {
            Ok(series) => series,
            Err(rows) => return std::iter::once(count).chain(rows).collect(),
        };
        let mut overhead = Row::new(
            labels[3].clone(),
            Unit::Seconds,
            measured(summarize(&differences(&cli, &direct))),
        );
        if tool.ours {
            overhead = overhead.goal("< 5 ms", |v| v < 0.005);
        }
        vec![
            count,
            Row::new(labels[1].clone(), Unit::Seconds, measured(summarize(&cli))),
            Row::new(
                labels[2].clone(),
                Unit::Seconds,
                measured(summarize(&direct)),
            ),
            overhead,
        ]
    }

    /// Runs `tool ARGS` once through the nix wrapper (which also builds the
    /// fixture): the nix processes it started, with their exact arguments,
    /// and why it failed if it did.
    fn count_nix_calls(
        &self,
        flakes: &Flakes,
        tool: &Tool,
        args: &[String],
        cache: &Path,
    ) -> Result<(Vec<Vec<String>>, Option<anyhow::Error>)> {
        self.wrapper.take_calls()?;
        let mut counted = self.command(flakes, &tool.program, cache)?;
        counted.args(args).env("PATH", self.wrapper.path_env()?);
        let failure = measure::timed(&mut counted).err();
        Ok((self.wrapper.take_calls()?, failure))
    }

    /// Times `tool ARGS` and the `nix build` it runs in alternating pairs,
    /// after two pairs of warm-up.
    fn time_cli_overhead(
        &self,
        flakes: &Flakes,
        tool: &Tool,
        args: &[String],
        cache: &Path,
        calls: &[Vec<String>],
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let logged_build = calls
            .iter()
            .find(|argv| argv[0] == "nix" && argv.iter().any(|a| a == "build"))
            .with_context(|| format!("{} started no `nix build`: {calls:?}", tool.name))?;
        // Ours says what it runs: the figure takes the argv from --dry-run
        // and checks it against what the run really started.
        let build_argv = if tool.ours {
            let mut dry = self.command(flakes, &tool.program, cache)?;
            dry.arg("--dry-run").arg(&flakes.plain);
            let printed = words::nix_build_argv(&measure::timed(&mut dry)?.stdout)?;
            if without_out_link(&printed[1..]) != without_out_link(&logged_build[1..]) {
                bail!(
                    "--dry-run prints {printed:?} but the run started {logged_build:?}: they must agree"
                );
            }
            printed
        } else {
            logged_build.clone()
        };
        let out_dir = self.root.path().join("direct-out");
        std::fs::create_dir_all(&out_dir)?;
        let direct_args = with_out_link(&build_argv[1..], &out_dir.join("result"));

        let mut cli_times = Vec::new();
        let mut direct_times = Vec::new();
        for i in 0..2 + self.fast_runs {
            let mut cli = self.command(flakes, &tool.program, cache)?;
            cli.args(args);
            let mut direct = self.command(flakes, self.real_nix_dir.join("nix"), cache)?;
            direct.args(&direct_args);
            let (c, d) = if i % 2 == 0 {
                let c = measure::timed(&mut cli)?.seconds;
                (c, measure::timed(&mut direct)?.seconds)
            } else {
                let d = measure::timed(&mut direct)?.seconds;
                (measure::timed(&mut cli)?.seconds, d)
            };
            if i >= 2 {
                cli_times.push(c);
                direct_times.push(d);
            }
        }
        Ok((cli_times, direct_times))
    }

    // --- warm start --------------------------------------------------------

    fn warm_start(&self, flakes: &Flakes, tool: &Tool) -> Vec<Row> {
        let mut labels = vec![
            format!(
                "{}: first run, empty eval cache (~2 s of evaluation)",
                tool.name
            ),
            format!("{}: second run, unchanged flake", tool.name),
            format!("{}: warm / cold (run by run)", tool.name),
        ];
        if tool.ours {
            labels.extend([
                format!("{}: second run served by nix's eval cache", tool.name),
                format!("{}: warm run with `{}`", tool.name, OVERRIDES.join(" ")),
                format!("{}: with overrides / warm (run by run)", tool.name),
            ]);
        }
        eprintln!("costs: warm start of {}", tool.name);
        let series = match guarded(&labels, || self.try_warm_start(flakes, tool)) {
            Ok(series) => series,
            Err(rows) => return rows,
        };
        let mut rows = vec![
            Row::new(
                labels[0].clone(),
                Unit::Seconds,
                measured(summarize(&series.cold)),
            ),
            Row::new(
                labels[1].clone(),
                Unit::Seconds,
                measured(summarize(&series.warm)),
            ),
            Row::new(
                labels[2].clone(),
                Unit::Ratio,
                measured(summarize(&ratios(&series.warm, &series.cold))),
            ),
        ];
        if tool.ours {
            rows[2] = rows[2].clone().goal("<= 0.1", |v| v <= 0.1);
            let cached = series.cache_evidence.is_some();
            rows.push(
                Row::new(
                    labels[3].clone(),
                    Unit::Count,
                    Outcome::Fact(
                        series
                            .cache_evidence
                            .unwrap_or_else(|| "no: nix -vvv reported no cached drvPath".into()),
                    ),
                )
                .goal_met("yes", cached),
            );
            rows.push(Row::new(
                labels[4].clone(),
                Unit::Seconds,
                measured(summarize(&series.overrides)),
            ));
            // A re-evaluation would make this ratio cold / warm, about 70;
            // equal within noise is 1 give or take a fifth.
            rows.push(
                Row::new(
                    labels[5].clone(),
                    Unit::Ratio,
                    measured(summarize(&ratios(&series.overrides, &series.warm))),
                )
                .goal("0.8 to 1.25 (no re-evaluation)", |v| {
                    (0.8..=1.25).contains(&v)
                }),
            );
        }
        rows
    }

    fn try_warm_start(&self, flakes: &Flakes, tool: &Tool) -> Result<WarmSeries> {
        let run = |cache: &Path, extra: &[&str]| -> Result<measure::Timed> {
            let mut cmd = self.command(flakes, &tool.program, cache)?;
            cmd.args(extra).args(tool.build_only(&flakes.eval_load));
            measure::timed(&mut cmd)
        };
        let overrides: &[&str] = if tool.ours { &OVERRIDES } else { &[] };
        // Warm-up: builds the fixture, so that later runs only evaluate.
        let cache = self.fresh_cache()?;
        run(&cache, &[])?;
        run(&cache, &[])?;

        let mut series = WarmSeries::default();
        for i in 0..self.eval_runs {
            eprintln!("costs:   pair {}/{}", i + 1, self.eval_runs);
            let cache = self.fresh_cache()?;
            series.cold.push(run(&cache, &[])?.seconds);
            if tool.ours && i % 2 == 1 {
                series.overrides.push(run(&cache, overrides)?.seconds);
                series.warm.push(run(&cache, &[])?.seconds);
            } else {
                series.warm.push(run(&cache, &[])?.seconds);
                if tool.ours {
                    series.overrides.push(run(&cache, overrides)?.seconds);
                }
            }
            if tool.ours && i + 1 == self.eval_runs {
                // Ask nix itself, through the CLI's -v pass-through, whether
                // the drvPath came from the eval cache.
                let verbose = run(&cache, &["-vvv"])?;
                series.cache_evidence = verbose
                    .stderr
                    .lines()
                    .find(|l| l.contains("using cached") && l.contains(".drvPath"))
                    .map(|l| format!("yes: nix -vvv says \"{}\"", l.trim()));
            }
        }
        Ok(series)
    }

    // --- boot to command and peak RSS -----------------------------------

    fn boot(&self) -> Vec<Row> {
        let labels = [
            "nixos-shell: `--command true`, start to exit".to_string(),
            "the same run script without nixos-shell, start to power-off".to_string(),
            "boot-to-command overhead (ours / bare - 1, run by run)".to_string(),
            "nixos-shell: peak RSS while the VM runs (VmHWM)".to_string(),
        ];
        eprintln!("costs: boot to command");
        let series = match guarded(&labels, || self.try_boot()) {
            Ok(series) => series,
            Err(rows) => return rows,
        };
        let overhead: Vec<f64> = ratios(&series.ours, &series.bare)
            .into_iter()
            .map(|r| r - 1.0)
            .collect();
        let rss: Vec<f64> = series.peak_rss.iter().map(|b| *b as f64).collect();
        vec![
            Row::new(
                labels[0].clone(),
                Unit::Seconds,
                measured(summarize(&series.ours)),
            ),
            Row::new(
                labels[1].clone(),
                Unit::Seconds,
                measured(summarize(&series.bare)),
            ),
            Row::new(
                labels[2].clone(),
                Unit::Ratio,
                measured(summarize(&overhead)),
            )
            .goal("<= 0.10", |v| v <= 0.10),
            Row::new(labels[3].clone(), Unit::Bytes, measured(summarize(&rss)))
                .goal("< 10 MiB", |v| v < 10.0 * 1024.0 * 1024.0),
        ]
    }

    fn try_boot(&self) -> Result<BootSeries> {
        // The VM tests' fixture flake: the harness' run script (Debian's
        // kernel, the busybox initramfs with the guest role) and a manifest
        // sharing home and one extra directory.
        let fx = vm_fixture::Fixture::new();
        let image = fx.path("tmp/bare.qcow2");

        let ours = || -> Result<(f64, u64)> {
            let mut cmd = fx.command(&["--command", "true"]);
            cmd.env("NIX_CONFIG", &self.nix_config);
            let start = Instant::now();
            let mut console = Console::spawn(cmd, vm_fixture::ROWS, vm_fixture::COLS);
            let pid = proc::only_child(Duration::from_secs(5))?;
            let watched = proc::watch(pid, BOOT_TIMEOUT)?;
            let status = console.wait(Duration::from_secs(10));
            if !status.success() {
                bail!(
                    "nixos-shell --command true exited with {status}; the terminal showed:\n{}",
                    console.transcript()
                );
            }
            Ok((
                watched.exited.duration_since(start).as_secs_f64(),
                watched.peak_rss,
            ))
        };
        // The same script started by hand, in the same environment, with a
        // disk image of its own (nixos-shell gives it one too); the console
        // is told to power off as soon as the login shell is up.
        let bare = || -> Result<f64> {
            let mut cmd = like(&fx.command(&[]), fx.path("flake/run-vm"));
            cmd.env("NIX_DISK_IMAGE", &image);
            let start = Instant::now();
            let mut console = Console::spawn(cmd, vm_fixture::ROWS, vm_fixture::COLS);
            let pid = proc::only_child(Duration::from_secs(5))?;
            console.wait_for_shell();
            console.send("poweroff -f\n");
            let watched = proc::watch(pid, BOOT_TIMEOUT)?;
            console.wait(Duration::from_secs(10));
            Ok(watched.exited.duration_since(start).as_secs_f64())
        };

        // Warm-up: builds the fixture and creates both disk images.
        ours()?;
        bare()?;
        let mut series = BootSeries::default();
        for i in 0..self.boot_runs {
            eprintln!("costs:   pair {}/{}", i + 1, self.boot_runs);
            let (o, rss, b) = if i % 2 == 0 {
                let (o, rss) = ours()?;
                (o, rss, bare()?)
            } else {
                let b = bare()?;
                let (o, rss) = ours()?;
                (o, rss, b)
            };
            series.ours.push(o);
            series.peak_rss.push(rss);
            series.bare.push(b);
        }
        Ok(series)
    }
}

#[derive(Default)]
struct WarmSeries {
    cold: Vec<f64>,
    warm: Vec<f64>,
    overrides: Vec<f64>,
    /// nix's own word that the drvPath came from its eval cache.
    cache_evidence: Option<String>,
}

#[derive(Default)]
struct BootSeries {
    ours: Vec<f64>,
    bare: Vec<f64>,
    peak_rss: Vec<u64>,
}

fn measured(summary: Option<stats::Summary>) -> Outcome {
    match summary {
        Some(s) => Outcome::Measured(s),
        None => Outcome::Failed("no runs".into()),
    }
}

/// `args` without the value of `--out-link`/`-o`, which names a private
/// temporary directory that differs from run to run.
fn without_out_link(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for arg in args {
        if skip {
            out.push("<out-link>".into());
            skip = false;
        } else {
            skip = arg == "--out-link" || arg == "-o";
            out.push(arg.clone());
        }
    }
    out
}

/// `args` with the value of `--out-link`/`-o` replaced by `link`.
fn with_out_link(args: &[String], link: &Path) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut replace = false;
    for arg in args {
        if replace {
            out.push(link.as_os_str().to_owned());
            replace = false;
        } else {
            replace = arg == "--out-link" || arg == "-o";
            out.push(OsString::from(arg));
        }
    }
    out
}
