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

mod fixture;
mod machine;
mod measure;
mod nix;
mod proc;
mod stats;
mod table;
mod words;

// The VM tests' harness (it allows its own dead code).
#[path = "../../tests/support/vm.rs"]
mod vm;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use fixture::Fixture;
use nix::NixWrapper;
use stats::{differences, ratios, summarize};
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
    if wanted("cli") {
        rows.extend(bench.cli_overhead(&bench.ours()));
        rows.extend(match bench.original() {
            Some(original) => bench.cli_overhead(&original),
            None => skipped_original(&["CLI overhead"]),
        });
    }
    if wanted("warm") {
        rows.extend(bench.warm_start(&bench.ours()));
        rows.extend(match bench.original() {
            Some(original) => bench.warm_start(&original),
            None => skipped_original(&["warm start"]),
        });
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

fn skipped_original(figures: &[&str]) -> Vec<Row> {
    figures
        .iter()
        .map(|f| {
            Row::new(
                format!("original nixos-shell: {f}"),
                Unit::Seconds,
                Outcome::Skipped("set NIXOS_SHELL_ORIGINAL to its path".into()),
            )
        })
        .collect()
}

/// A program measured: ours or the original.
struct Tool {
    name: &'static str,
    program: PathBuf,
    ours: bool,
}

/// The benchmark's state: a private directory holding fixtures, eval
/// caches and the nix wrapper, and the settings every run shares.
struct Bench {
    root: tempfile::TempDir,
    nix_config: String,
    real_nix: PathBuf,
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
        let real_dir = nix::real_nix_dir()?;
        let wrapper = NixWrapper::create(&root.path().join("wrapper"), &real_dir)?;
        // A home of its own: the VM shares it, and no keys or state of the
        // user's take part.
        std::fs::create_dir_all(root.path().join("home"))?;
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
            real_nix: real_dir.join("nix"),
            wrapper,
            fast_runs: runs.unwrap_or(FAST_RUNS),
            eval_runs: runs.unwrap_or(EVAL_RUNS),
            boot_runs: runs.unwrap_or(BOOT_RUNS),
            root,
        })
    }

    fn ours(&self) -> Tool {
        Tool {
            name: "nixos-shell",
            program: PathBuf::from(CLI),
            ours: true,
        }
    }

    fn original(&self) -> Option<Tool> {
        std::env::var_os("NIXOS_SHELL_ORIGINAL").map(|p| Tool {
            name: "original nixos-shell",
            program: PathBuf::from(p),
            ours: false,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// A command run offline with the eval cache under `cache`, from the
    /// benchmark's directory.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>, cache: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("NIX_CONFIG", &self.nix_config)
            .env("XDG_CACHE_HOME", cache)
            .env("XDG_STATE_HOME", self.path("state"))
            .env("HOME", self.path("home"))
            .current_dir(self.root.path());
        cmd
    }

    /// A new, empty cache directory.
    fn fresh_cache(&self) -> Result<PathBuf> {
        let dir = tempfile::Builder::new()
            .prefix("cache.")
            .tempdir_in(self.root.path())?
            .keep();
        Ok(dir)
    }

    /// Writes a fixture flake once; returns `<dir>#vm`.
    fn fixture(&self, name: &str, fixture: &Fixture) -> Result<String> {
        let dir = self.path(name);
        if !dir.join("flake.nix").is_file() {
            fixture::write_flake(&dir, fixture)?;
        }
        Ok(format!("{}#vm", dir.display()))
    }

    // --- CLI overhead ----------------------------------------------------

    fn cli_overhead(&self, tool: &Tool) -> Vec<Row> {
        let labels = [
            format!("{}: `--build-only` of a built fixture", tool.name),
            format!("{}: its `nix build`, run directly", tool.name),
            format!("{}: CLI overhead (difference, run by run)", tool.name),
            format!("{}: nix processes per run", tool.name),
        ];
        eprintln!("costs: CLI overhead of {}", tool.name);
        match self.try_cli_overhead(tool) {
            Ok((cli, direct, calls)) => {
                let overhead = summarize(&differences(&cli, &direct));
                let count = Row::new(
                    labels[3].clone(),
                    Unit::Count,
                    measured(summarize(&[calls as f64])),
                );
                let mut rows = vec![
                    Row::new(labels[0].clone(), Unit::Seconds, measured(summarize(&cli))),
                    Row::new(
                        labels[1].clone(),
                        Unit::Seconds,
                        measured(summarize(&direct)),
                    ),
                    Row::new(labels[2].clone(), Unit::Seconds, measured(overhead)),
                    count,
                ];
                if tool.ours {
                    rows[2] = rows[2].clone().goal("< 5 ms", |v| v < 0.005);
                    rows[3] = rows[3].clone().goal("= 1", |v| v == 1.0);
                }
                rows
            }
            Err(err) => failed(&labels, &err),
        }
    }

    /// Times `tool --build-only` and its `nix build` in pairs; returns both
    /// series and the number of nix processes one run starts.
    fn try_cli_overhead(&self, tool: &Tool) -> Result<(Vec<f64>, Vec<f64>, usize)> {
        let installable = self.fixture(
            "plain",
            &Fixture {
                load_size: 0,
                run_script: fixture::NOT_BOOTABLE,
                mount_home: false,
            },
        )?;
        let cache = self.path("cache-cli");
        let args = ["--build-only", installable.as_str()];

        // A first run through the wrapper builds the fixture and logs the
        // nix processes it starts.
        self.wrapper.take_calls()?;
        let mut counted = self.command(&tool.program, &cache);
        counted.args(args).env("PATH", self.wrapper.path_env()?);
        measure::timed(&mut counted)?;
        let calls = self.wrapper.take_calls()?;
        let logged_build = calls
            .iter()
            .find(|argv| argv[0] == "nix" && argv.iter().any(|a| a == "build"))
            .with_context(|| format!("{} started no `nix build`: {calls:?}", tool.name))?;

        let build_argv = if tool.ours {
            let mut dry = self.command(&tool.program, &cache);
            dry.arg("--dry-run").arg(&installable);
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
        let out_dir = self.path("direct-out");
        std::fs::create_dir_all(&out_dir)?;
        let direct_args = with_out_link(&build_argv[1..], &out_dir.join("result"));

        let mut cli_times = Vec::new();
        let mut direct_times = Vec::new();
        for i in 0..2 + self.fast_runs {
            let mut cli = self.command(&tool.program, &cache);
            cli.args(args);
            let mut direct = self.command(&self.real_nix, &cache);
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
        Ok((cli_times, direct_times, calls.len()))
    }

    // --- warm start --------------------------------------------------------

    fn warm_start(&self, tool: &Tool) -> Vec<Row> {
        let mut labels = vec![
            format!(
                "{}: first run, empty eval cache (~2 s evaluation)",
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
        match self.try_warm_start(tool) {
            Ok(series) => {
                let cold = measured(summarize(&series.cold));
                let warm = measured(summarize(&series.warm));
                let mut rows = vec![
                    Row::new(labels[0].clone(), Unit::Seconds, cold),
                    Row::new(labels[1].clone(), Unit::Seconds, warm),
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
                            Outcome::Fact(series.cache_evidence.unwrap_or_else(|| {
                                "no: nix -vvv reported no cached drvPath".into()
                            })),
                        )
                        .goal_met("yes", cached),
                    );
                    rows.push(Row::new(
                        labels[4].clone(),
                        Unit::Seconds,
                        measured(summarize(&series.overrides)),
                    ));
                    // A re-evaluation would make this ratio cold / warm,
                    // about 70; equal within noise is 1 give or take a fifth.
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
            Err(err) => failed(&labels, &err),
        }
    }

    fn try_warm_start(&self, tool: &Tool) -> Result<WarmSeries> {
        let installable = self.fixture(
            "eval-load",
            &Fixture {
                load_size: fixture::LOAD_SIZE,
                run_script: fixture::NOT_BOOTABLE,
                mount_home: false,
            },
        )?;
        let run = |cache: &Path, extra: &[&str]| -> Result<measure::Timed> {
            let mut cmd = self.command(&tool.program, cache);
            cmd.args(extra).args(["--build-only", installable.as_str()]);
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
                    .map(|l| format!("yes: nix says \"{}\"", l.trim()));
            }
        }
        Ok(series)
    }

    // --- boot to command and peak RSS -----------------------------------

    fn boot(&self) -> Vec<Row> {
        let labels = [
            "nixos-shell: `--command true`, start to exit".to_string(),
            "the same VM's run script without nixos-shell, boot to power-off".to_string(),
            "boot-to-command overhead (ours / bare - 1, run by run)".to_string(),
            "nixos-shell: peak RSS while the VM runs (VmHWM)".to_string(),
        ];
        eprintln!("costs: boot to command");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.try_boot()))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the VM harness panicked".into());
                Err(anyhow::anyhow!(what))
            });
        match result {
            Ok(series) => {
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
            Err(err) => failed(&labels, &err),
        }
    }

    fn try_boot(&self) -> Result<BootSeries> {
        let assets = vm::assets();
        let script = vm::run_script_text("vm", &assets.kernel, &assets.initramfs);
        let installable = self.fixture(
            "boot",
            &Fixture {
                load_size: 0,
                run_script: &script,
                mount_home: true,
            },
        )?;
        let bare_script = self.path("boot").join("run-vm-vm");
        std::fs::set_permissions(
            &bare_script,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        // Both start from one directory, so both find the disk image the
        // first run created.
        let cwd = self.path("boot-cwd");
        std::fs::create_dir_all(&cwd)?;
        let cache = self.path("cache-boot");

        let ours = || -> Result<(f64, u64)> {
            let mut cmd = self.command(CLI, &cache);
            cmd.args(["--command", "true", installable.as_str()])
                .current_dir(&cwd);
            let start = Instant::now();
            let mut console = vm::Console::spawn(cmd, 24, 80);
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
        let bare = || -> Result<f64> {
            // The disk image nixos-shell gives it (its own, made on the
            // first run): the run script then finds one as it does under
            // nixos-shell.
            let mut cmd = Command::new(&bare_script);
            cmd.current_dir(&cwd)
                .env("NIX_DISK_IMAGE", cwd.join("vm.qcow2"));
            let start = Instant::now();
            let mut console = vm::Console::spawn(cmd, 24, 80);
            let pid = proc::only_child(Duration::from_secs(5))?;
            console.wait_for_shell();
            console.send("poweroff -f\n");
            let watched = proc::watch(pid, BOOT_TIMEOUT)?;
            console.wait(Duration::from_secs(10));
            Ok(watched.exited.duration_since(start).as_secs_f64())
        };

        // Warm-up: builds the fixture and creates the disk image.
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

fn failed(labels: &[String], err: &anyhow::Error) -> Vec<Row> {
    eprintln!("costs: {err:#}");
    labels
        .iter()
        .map(|l| {
            Row::new(
                l.clone(),
                Unit::Seconds,
                Outcome::Failed(format!("{err:#}")),
            )
        })
        .collect()
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
