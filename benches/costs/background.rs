//! The background figures: `nixos-shell --detach` from start to its exit
//! against a run in a terminal from start to the guest's first prompt
//! (what a detached VM waits for, the guest answering, comes no later),
//! `--list` with five VMs running, and `--stop` from start until the last
//! process of the VM (its holder, QEMU, virtiofsd) is gone. In the VM
//! tests' QEMU harness, with the boot figures' fixture.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use nixos_shell_test_support::bench::stats::ratios;
use nixos_shell_test_support::vm::{kill_processes_under, processes_under, Console, Era};
use nixos_shell_test_support::vm_fixture::{self, Fixture};

use crate::measure::timed;
use crate::table::{Row, Unit};
use crate::{guarded, Bench, BOOT_TIMEOUT, PATHS};

/// How many VMs run while `--list` is timed.
const LISTED_VMS: usize = 5;

/// `--list` runs for its figure: nothing boots, so many are cheap.
const LISTS: usize = 21;

/// The programs a VM's run leaves running until it has ended: its holder
/// first (QEMU and its daemons die with it), as the detach tests' guard.
const PROGRAMS: [&str; 3] = ["nixos-shell", "qemu-system-x86_64", "virtiofsd"];

/// Ends, when dropped, whatever a detached VM of the fixture left running:
/// a holder lives in a session of its own, so a figure that fails before
/// its `--stop` would otherwise leave its VM running for good.
struct Holders<'a>(&'a Fixture);

impl Drop for Holders<'_> {
    fn drop(&mut self) {
        for program in PROGRAMS {
            kill_processes_under(&self.0.nix.root, program);
        }
    }
}

impl Bench {
    pub(crate) fn background(&self) -> Vec<Row> {
        let labels = [
            "nixos-shell --detach, start to exit".to_string(),
            "nixos-shell in a terminal, start to the guest's prompt".to_string(),
            "--detach / the run in a terminal (run by run)".to_string(),
            format!("nixos-shell --list with {LISTED_VMS} VMs running"),
            "nixos-shell --stop, start until the VM's last process is gone".to_string(),
        ];
        eprintln!("costs: background VMs");
        let series = match guarded(&labels, || self.try_background()) {
            Ok(series) => series,
            Err(rows) => return rows,
        };
        vec![
            Row::measured(labels[0].clone(), Unit::Seconds, &series.detach),
            Row::measured(labels[1].clone(), Unit::Seconds, &series.foreground),
            Row::measured(
                labels[2].clone(),
                Unit::Ratio,
                &ratios(&series.detach, &series.foreground),
            )
            .goal("<= 1.05", |v| v <= 1.05),
            Row::measured(labels[3].clone(), Unit::Seconds, &series.list)
                .goal("< 10 ms", |v| v < 0.010),
            Row::measured(labels[4].clone(), Unit::Seconds, &series.stop)
                .goal("< 3 s", |v| v < 3.0),
        ]
    }

    fn try_background(&self) -> Result<BackgroundSeries> {
        let fx = Fixture::new(PATHS, Era::NineP);
        let _holders = Holders(&fx);
        let env = self.vm_env()?;
        // Both with a throwaway disk image, which each run creates alike.
        let detach = || -> Result<f64> {
            Ok(timed(&mut env(fx.command(&["--detach", "--ephemeral"])))?.seconds)
        };
        let stop = || -> Result<f64> {
            let mut command = env(fx.command(&["--stop"]));
            let start = Instant::now();
            timed(&mut command)?;
            let gone = all_gone(&fx, Duration::from_secs(10))?;
            Ok(gone.duration_since(start).as_secs_f64())
        };
        let foreground = || -> Result<f64> {
            let command = env(fx.command(&["--ephemeral"]));
            let start = Instant::now();
            let mut vm = Console::spawn(command, vm_fixture::ROWS, vm_fixture::COLS);
            vm.wait_for_shell();
            let seconds = start.elapsed().as_secs_f64();
            vm.send("poweroff\n");
            let status = vm.wait(BOOT_TIMEOUT);
            if !status.success() {
                bail!(
                    "nixos-shell ended with {status} after poweroff; the terminal showed:\n{}",
                    vm.transcript()
                );
            }
            Ok(seconds)
        };

        let mut series = BackgroundSeries::default();
        // Warm-up: builds the fixture.
        detach()?;
        stop()?;
        foreground()?;
        for i in 0..self.boot_runs {
            eprintln!("costs:   pair {}/{}", i + 1, self.boot_runs);
            let (d, f) = if i % 2 == 0 {
                let d = detach()?;
                series.stop.push(stop()?);
                (d, foreground()?)
            } else {
                let f = foreground()?;
                let d = detach()?;
                series.stop.push(stop()?);
                (d, f)
            };
            series.detach.push(d);
            series.foreground.push(f);
        }

        // Five VMs of the one configuration, each on a disk image of its
        // own: five entries in the registry, as five configurations make.
        eprintln!("costs:   {LISTED_VMS} VMs for --list");
        for n in 0..LISTED_VMS {
            let image = fx.path(&format!("disks/{n}.qcow2"));
            let image = image.to_string_lossy();
            timed(&mut env(fx.command(&["--detach", "--disk", &image])))?;
        }
        for _ in 0..=LISTS {
            let listed = timed(&mut env(fx.nix.cli(&["--list"])))?;
            let rows = listed.stdout.lines().count();
            if rows != LISTED_VMS + 1 {
                bail!(
                    "--list showed {} VMs, not {LISTED_VMS}:\n{}",
                    rows.saturating_sub(1),
                    listed.stdout
                );
            }
            series.list.push(listed.seconds);
        }
        // The first, a warm-up.
        series.list.remove(0);
        for _ in 0..LISTED_VMS {
            timed(&mut env(fx.command(&["--stop"])))?;
        }
        all_gone(&fx, Duration::from_secs(10))?;
        Ok(series)
    }
}

/// When no process of a VM of `fx` runs any more (looked for every
/// millisecond), within `timeout`.
fn all_gone(fx: &Fixture, timeout: Duration) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        let left: Vec<String> = PROGRAMS
            .iter()
            .flat_map(|program| processes_under(&fx.nix.root, program))
            .map(|(_, cmdline)| cmdline)
            .collect();
        if left.is_empty() {
            return Ok(now);
        }
        if now > deadline {
            bail!("still running {timeout:?} after --stop: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[derive(Default)]
struct BackgroundSeries {
    detach: Vec<f64>,
    foreground: Vec<f64>,
    list: Vec<f64>,
    stop: Vec<f64>,
}
