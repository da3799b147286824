//! The CLI-overhead figures: the nix processes a `--build-only` run
//! starts, and its wall time against that of the `nix build` it runs.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context, Result};

use nixos_shell_test_support::bench::dry_run;
use nixos_shell_test_support::bench::stats::{differences, summarize};

use crate::table::{Outcome, Row, Unit};
use crate::{failed_rows, guarded, measure, Bench, Flakes, Tool};

impl Bench {
    pub(crate) fn cli_overhead(&self, flakes: &Flakes, tool: &Tool) -> Vec<Row> {
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
        let mut count = Row::measured(labels[0].clone(), Unit::Count, &[calls.len() as f64]);
        if tool.ours {
            count = count.goal("= 1", |v| v == 1.0);
        }
        let (cli, direct) = match guarded(&labels[1..], || {
            self.time_cli_overhead(flakes, tool, &args, &cache, &calls)
        }) {
            Ok(series) => series,
            Err(rows) => return std::iter::once(count).chain(rows).collect(),
        };
        let mut overhead = Row::measured(
            labels[3].clone(),
            Unit::Seconds,
            &differences(&cli, &direct),
        );
        let mut build_only = Row::measured(labels[1].clone(), Unit::Seconds, &cli);
        if tool.ours {
            overhead = overhead.goal("< 2 ms", |v| v < 0.002);
            // The medians of the two series, apart: what a user sees of
            // each, where the row below pairs them run by run.
            let nix_median = summarize(&direct).map_or(f64::NAN, |s| s.median);
            build_only = build_only.goal("median within 2 ms of its nix build's", |v| {
                v - nix_median < 0.002
            });
        }
        vec![
            count,
            build_only,
            Row::measured(labels[2].clone(), Unit::Seconds, &direct),
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
            dry.arg("--dry-run").args(args);
            let printed = dry_run::nix_build_argv(&measure::timed(&mut dry)?.stdout)?;
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
