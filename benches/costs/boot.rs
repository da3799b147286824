//! The boot figures: `nixos-shell --command true` in the VM tests' QEMU
//! harness against the same run script started without it, nixos-shell's
//! peak resident set while its VM runs, and how long it takes to end once
//! QEMU has.

use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use nixos_shell_test_support::bench::stats::ratios;
use nixos_shell_test_support::fs::{on_path, write_executable};
use nixos_shell_test_support::sh::quote;
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
            "nixos-shell: from QEMU's exit to its own".to_string(),
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
            Row::measured(labels[4].clone(), Unit::Seconds, &series.after_qemu)
                .goal("< 5 ms", |v| v < 0.005),
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
        // call-counting wrapper; and before it QEMU in a wrapper that
        // writes down when QEMU exits (both runs take it, so that they
        // stay alike).
        let qemu_exit = fx.path("tmp/qemu-exit");
        let path = std::env::join_paths(
            std::iter::once(self.qemu_wrapper()?).chain(std::env::split_paths(&self.path_env()?)),
        )?;

        let ours = || -> Result<(f64, u64, f64)> {
            let mut cmd = fx.command(&["--command", "true"]);
            cmd.env("NIX_CONFIG", &self.nix_config)
                .env("PATH", &path)
                .env(QEMU_EXIT_ENV, &qemu_exit);
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
            let qemu_exited: f64 = std::fs::read_to_string(&qemu_exit)?.trim().parse()?;
            let exited = watched.exited_at.duration_since(UNIX_EPOCH)?.as_secs_f64();
            Ok((
                watched.exited.duration_since(start).as_secs_f64(),
                watched.peak_rss,
                exited - qemu_exited,
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
            let ((o, rss, after), b) = if i % 2 == 0 {
                let o = ours()?;
                (o, bare()?)
            } else {
                let b = bare()?;
                (ours()?, b)
            };
            series.ours.push(o);
            series.peak_rss.push(rss);
            series.after_qemu.push(after);
            series.bare.push(b);
        }
        Ok(series)
    }

    /// A directory holding `qemu-system-x86_64`: the real one run as a
    /// child, and the moment it exited (bash's `$EPOCHREALTIME`, read
    /// without starting a process) written to the file `$QEMU_EXIT_ENV`
    /// names. What the figure measures from there includes this wrapper's
    /// own exit, so it errs against nixos-shell.
    fn qemu_wrapper(&self) -> Result<PathBuf> {
        let real = on_path("qemu-system-x86_64")
            .context("qemu-system-x86_64 is not on PATH (Debian package qemu-system-x86)")?;
        let dir = self.root.path().join("qemu-wrapper");
        std::fs::create_dir_all(&dir)?;
        write_executable(
            &dir.join("qemu-system-x86_64"),
            &format!(
                "#!/bin/bash\n{} \"$@\"\nstatus=$?\n[ -z \"${{{QEMU_EXIT_ENV}:-}}\" ] || echo \"$EPOCHREALTIME\" > \"${QEMU_EXIT_ENV}\"\nexit $status\n",
                quote(&real.to_string_lossy())
            ),
        );
        Ok(dir)
    }
}

/// The variable naming the file the QEMU wrapper writes its exit time to.
const QEMU_EXIT_ENV: &str = "NIXOS_SHELL_BENCH_QEMU_EXIT";

#[derive(Default)]
struct BootSeries {
    ours: Vec<f64>,
    bare: Vec<f64>,
    peak_rss: Vec<u64>,
    /// From QEMU's exit to nixos-shell's, in seconds.
    after_qemu: Vec<f64>,
}
