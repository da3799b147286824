//! The warm-start figures: a flake with ~2 s of evaluation built with an
//! empty eval cache, then again unchanged, then with runtime overrides.

use std::path::Path;

use anyhow::Result;

use nixos_shell_test_support::bench::stats::ratios;

use crate::table::{Outcome, Row, Unit};
use crate::{guarded, measure, Bench, Flakes, Tool, OVERRIDES};

impl Bench {
    pub(crate) fn warm_start(&self, flakes: &Flakes, tool: &Tool) -> Vec<Row> {
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
            Row::measured(labels[0].clone(), Unit::Seconds, &series.cold),
            Row::measured(labels[1].clone(), Unit::Seconds, &series.warm),
            Row::measured(
                labels[2].clone(),
                Unit::Ratio,
                &ratios(&series.warm, &series.cold),
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
            rows.push(Row::measured(
                labels[4].clone(),
                Unit::Seconds,
                &series.overrides,
            ));
            // A re-evaluation would make this ratio cold / warm, about 70;
            // equal within noise is 1 give or take a fifth.
            rows.push(
                Row::measured(
                    labels[5].clone(),
                    Unit::Ratio,
                    &ratios(&series.overrides, &series.warm),
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
}

#[derive(Default)]
struct WarmSeries {
    cold: Vec<f64>,
    warm: Vec<f64>,
    overrides: Vec<f64>,
    /// nix's own word that the drvPath came from its eval cache.
    cache_evidence: Option<String>,
}
