//! The switch figures, on the `--switch` tests' fixture (its guest sees the
//! host's store over 9p, as qemu-vm.nix shares it; its system's
//! switch-to-configuration writes a file): from the end of the build to
//! the switched state, against `--switch --restart` from the end of the
//! build to the restarted VM answering, run by run; and with `--watch`,
//! from the save to the status line saying switched, minus the build.
//!
//! The build is taken out of each figure: a configuration is built first
//! (`--build-only`, timed once more when it is built already, which is
//! the same `nix build` a switch then runs and finds done), and that no-op
//! build's time is subtracted from the `--switch` that follows. The watch
//! subtracts the build time its own status line gives.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use nixos_shell_test_support::bench::stats::ratios;
use nixos_shell_test_support::vm::Console;
use nixos_shell_test_support::vm_fixture::{self, Fixture, System};

use crate::measure::timed;
use crate::table::{Row, Unit};
use crate::{guarded, Bench, BOOT_TIMEOUT, PATHS};

/// The kernels the restart alternates between: each restart needs one.
const KERNELS: [&str; 2] = ["k1", "k2"];

/// The marks of the systems, one per switch: a mark never comes back, so
/// every switch is to a new system. Leaked strings: `System` takes
/// `&'static str`, and there are a few dozen of them.
fn mark(what: &str, run: usize) -> &'static str {
    Box::leak(format!("{what}-{run}").into_boxed_str())
}

impl Bench {
    pub(crate) fn switch(&self) -> Vec<Row> {
        let labels = [
            "--switch: end of the build to switched".to_string(),
            "--switch --restart: end of the build to the new VM answering".to_string(),
            "restart / switch (run by run)".to_string(),
            "--switch --watch: save to switched, minus the build".to_string(),
        ];
        eprintln!("costs: switch");
        let series = match guarded(&labels, || self.try_switch()) {
            Ok(series) => series,
            Err(rows) => return rows,
        };
        vec![
            Row::measured(labels[0].clone(), Unit::Seconds, &series.switch),
            Row::measured(labels[1].clone(), Unit::Seconds, &series.restart),
            Row::measured(
                labels[2].clone(),
                Unit::Ratio,
                &ratios(&series.restart, &series.switch),
            )
            .goal(">= 10 (switch 10x faster)", |v| v >= 10.0),
            Row::measured(labels[3].clone(), Unit::Seconds, &series.watch)
                .goal("< 0.5 s", |v| v < 0.5),
        ]
    }

    fn try_switch(&self) -> Result<SwitchSeries> {
        let fx = Fixture::switchable(PATHS);
        let env = self.vm_env()?;
        let mut vm = Console::spawn(env(fx.command(&[])), vm_fixture::ROWS, vm_fixture::COLS);
        vm.wait_for_shell();
        let mut series = SwitchSeries::default();
        let mut kernel = 0;
        // The end of the build to the state: the command's time minus the
        // same build's when it finds everything built.
        let own_time = |args: &[&str], system: &System, said: &str| -> Result<f64> {
            fx.set_system(system);
            timed(&mut env(fx.command(&["--build-only"])))?;
            let build = timed(&mut env(fx.command(&["--build-only"])))?.seconds;
            let mut flags = vec!["--switch"];
            flags.extend_from_slice(args);
            let run = timed(&mut env(fx.command(&flags)))?;
            if !run.stderr.contains(said) {
                bail!(
                    "`--switch {}` did not say {said:?}: {}",
                    args.join(" "),
                    run.stderr
                );
            }
            Ok(run.seconds - build)
        };
        for i in 0..=self.boot_runs {
            let warm_up = i == 0;
            eprintln!(
                "costs:   run {i}/{}{}",
                self.boot_runs,
                if warm_up { " (warm-up)" } else { "" }
            );
            let switch = |kernel: usize| {
                let system = System {
                    mark: mark("switch", i),
                    kernel: KERNELS[kernel],
                    ..System::default()
                };
                own_time(&[], &system, "switched to ")
            };
            let restart = |kernel: usize| {
                let system = System {
                    mark: mark("restart", i),
                    kernel: KERNELS[kernel],
                    ..System::default()
                };
                own_time(&["--restart"], &system, "the VM restarted with ")
            };
            // The order alternates, so that drift touches both sides.
            let (switched, restarted) = if i % 2 == 0 {
                let switched = switch(kernel)?;
                kernel = 1 - kernel;
                (switched, restart(kernel)?)
            } else {
                kernel = 1 - kernel;
                let restarted = restart(kernel)?;
                (switch(kernel)?, restarted)
            };
            if !warm_up {
                series.switch.push(switched);
                series.restart.push(restarted);
            }
        }
        series.watch = self.watch_rounds(&fx, &env, KERNELS[kernel])?;
        vm.send("poweroff\n");
        let status = vm.wait(BOOT_TIMEOUT);
        if !status.success() {
            bail!("the VM ended with {status}: {}", vm.transcript());
        }
        Ok(series)
    }

    /// `--switch --watch` against the running VM of `fx`, whose kernel is
    /// `kernel`: per run, a save (the system file written) to the status
    /// line saying switched, minus the build time that line gives.
    fn watch_rounds(
        &self,
        fx: &Fixture,
        env: &dyn Fn(Command) -> Command,
        kernel: &'static str,
    ) -> Result<Vec<f64>> {
        let mut watch = Watch::start(env(fx.command(&["--switch", "--watch"])))?;
        watch.until("watching")?;
        let mut figures = Vec::new();
        for i in 0..=self.boot_runs {
            let saved = Instant::now();
            fx.set_system(&System {
                mark: mark("watch", i),
                kernel,
                ..System::default()
            });
            let (line, at) = watch.until("waiting for the next save")?;
            if !line.contains("] switched in ") {
                bail!("the watch's round did not switch: {line}");
            }
            let build = build_seconds(&line)
                .with_context(|| format!("no build time in the watch's line {line:?}"))?;
            if i > 0 {
                figures.push((at - saved).as_secs_f64() - build);
            }
        }
        Ok(figures)
    }
}

#[derive(Default)]
struct SwitchSeries {
    /// Seconds from the end of the build, per run.
    switch: Vec<f64>,
    restart: Vec<f64>,
    watch: Vec<f64>,
}

/// The build time of a watch's status line: `(build 1.2s)`.
fn build_seconds(line: &str) -> Option<f64> {
    let start = line.find("(build ")? + "(build ".len();
    let rest = &line[start..];
    rest[..rest.find("s)")?].parse().ok()
}

/// A running `--switch --watch`: its stderr's lines, with when each came.
struct Watch {
    child: Child,
    lines: Receiver<(String, Instant)>,
}

impl Watch {
    fn start(mut command: Command) -> Result<Watch> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start nixos-shell --switch --watch")?;
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send((line, Instant::now())).is_err() {
                    break;
                }
            }
        });
        Ok(Watch { child, lines })
    }

    /// The next line containing `needle`, and when it came.
    fn until(&mut self, needle: &str) -> Result<(String, Instant)> {
        loop {
            match self.lines.recv_timeout(BOOT_TIMEOUT) {
                Ok((line, at)) if line.contains(needle) => return Ok((line, at)),
                Ok(_) => {}
                Err(_) => bail!("the watch said no {needle:?} within {BOOT_TIMEOUT:?}"),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
