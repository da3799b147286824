//! The boot figures: `nixos-shell --command true` in the VM tests' QEMU
//! harness against the same run script started without it, and
//! nixos-shell's peak resident set while its VM runs.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use nixos_shell_test_support::stats::ratios;
use nixos_shell_test_support::vm::{Console, Era};
use nixos_shell_test_support::vm_fixture::{self, Fixture};

use crate::table::{Row, Unit};
use crate::{guarded, like, proc, Bench, BOOT_TIMEOUT, PATHS};

impl Bench {
    pub(crate) fn boot(&self) -> Vec<Row> {
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
            Row::measured(labels[0].clone(), Unit::Seconds, &series.ours),
            Row::measured(labels[1].clone(), Unit::Seconds, &series.bare),
            Row::measured(labels[2].clone(), Unit::Ratio, &overhead).goal("<= 0.10", |v| v <= 0.10),
            Row::measured(labels[3].clone(), Unit::Bytes, &rss)
                .goal("< 10 MiB", |v| v < 10.0 * 1024.0 * 1024.0),
        ]
    }

    fn try_boot(&self) -> Result<BootSeries> {
        // The VM tests' fixture flake: the harness' run script (Debian's
        // kernel, the busybox initramfs with the guest role) and a manifest
        // sharing home and one extra directory. The 9p era's script: the
        // figures in BENCHMARKS.md were taken with it.
        let fx = Fixture::new(PATHS, Era::NineP);
        let script = fx.built_run_script();
        let image = fx.path("tmp/bare.qcow2");
        // The real nix on PATH, as in the nix figures: not the fixture's
        // call-counting wrapper.
        let path = self.path_env()?;

        let ours = || -> Result<(f64, u64)> {
            let mut cmd = fx.command(&["--command", "true"]);
            cmd.env("NIX_CONFIG", &self.nix_config).env("PATH", &path);
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
            let mut cmd = like(&fx.command(&[]), &script);
            cmd.env("NIX_DISK_IMAGE", &image).env("PATH", &path);
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
struct BootSeries {
    ours: Vec<f64>,
    bare: Vec<f64>,
    peak_rss: Vec<u64>,
}
