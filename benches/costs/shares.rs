//! The share figures: what the shared home costs the guest over 9p and over
//! virtiofs (`nixos-shell.mounts.protocol`), side by side: untar 1,000
//! small files into it, `ls -lR` them, write 64 MiB and read them back.
//!
//! Two VMs of the VM tests' fixture flake run at once, one per protocol,
//! both with the module's default cache mode (`loose`; virtiofsd's
//! `--cache=auto`), each started by nixos-shell as a user would. The steps
//! alternate between them, so drift in the machine's load touches both,
//! and each ratio is computed run by run. The guest times each step itself
//! (`/proc/uptime`, 10 ms) so that the console's latency is not counted;
//! the guest's page cache is dropped before the listing and the read, which
//! would otherwise never reach the share.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use nixos_shell_test_support::bench::stats::ratios;
use nixos_shell_test_support::vm::{Console, Era, Permit};
use nixos_shell_test_support::vm_fixture::{Fixture, ShareOptions, Shares};

use crate::table::{Row, Unit};
use crate::{guarded, Bench, PATHS};

/// The files of the untar and listing steps.
const FILES: usize = 1000;
/// Their size in bytes (a multiple of 10, the length of the line each
/// repeats): small, as source files are.
const FILE_SIZE: usize = 2000;

/// One step of the workload, and the goal virtiofs is held to.
struct Step {
    name: &'static str,
    /// sh run in the bench directory of the home, with `$i` the run.
    command: &'static str,
    /// Drop the guest's page cache first.
    cold: bool,
    /// At least this many times faster over virtiofs (9p / virtiofs).
    goal: f64,
}

const STEPS: [Step; 4] = [
    Step {
        name: "untar 1,000 small files",
        command: "mkdir r$i && tar -xf files.tar -C r$i",
        cold: false,
        goal: 1.8,
    },
    Step {
        name: "`ls -lR` of them",
        command: "ls -lR r$i >/dev/null",
        cold: true,
        goal: 4.0,
    },
    Step {
        name: "64 MiB sequential write (buffered)",
        command: "dd if=/dev/zero of=big$i bs=1M count=64 2>/dev/null",
        cold: false,
        goal: 5.0,
    },
    Step {
        name: "64 MiB sequential read",
        command: "dd if=big$i of=/dev/null bs=1M 2>/dev/null",
        cold: true,
        goal: 1.0,
    },
];

impl Bench {
    pub(crate) fn shares(&self) -> Vec<Row> {
        let mut labels = Vec::new();
        for step in &STEPS {
            labels.push(format!("shared home over 9p: {}", step.name));
            labels.push(format!("shared home over virtiofs: {}", step.name));
            labels.push(format!("{}: 9p / virtiofs (run by run)", step.name));
        }
        eprintln!("costs: shares");
        let series = match guarded(&labels, || self.try_shares()) {
            Ok(series) => series,
            Err(rows) => return rows,
        };
        let mut rows = Vec::new();
        for (n, step) in STEPS.iter().enumerate() {
            let (nine_p, virtiofs) = (&series.nine_p[n], &series.virtiofs[n]);
            rows.push(Row::measured(labels[3 * n].clone(), Unit::Seconds, nine_p));
            rows.push(Row::measured(
                labels[3 * n + 1].clone(),
                Unit::Seconds,
                virtiofs,
            ));
            let goal = step.goal;
            rows.push(
                Row::measured(
                    labels[3 * n + 2].clone(),
                    Unit::Ratio,
                    &ratios(nine_p, virtiofs),
                )
                .goal(&format!(">= {goal}"), move |v| v >= goal),
            );
        }
        rows
    }

    fn try_shares(&self) -> Result<ShareSeries> {
        let fixture = |protocol| {
            Fixture::with_shares(
                PATHS,
                Era::NineP,
                ShareOptions {
                    protocol: Some(protocol),
                    cache: "loose",
                },
            )
        };
        let nine_p = fixture(Shares::NineP);
        let virtiofs = fixture(Shares::Virtiofs);
        for fx in [&nine_p, &virtiofs] {
            write_tarball(&fx.path("tree"), &fx.home().join("bench/files.tar"))?;
        }
        let permit = Permit::acquire(2);
        let mut vms = [
            nine_p.start_with(&[], Some(permit)),
            virtiofs.start_with(&[], None),
        ];
        for (vm, fx) in vms.iter_mut().zip([&nine_p, &virtiofs]) {
            vm.wait_for_shell();
            let home = fx.home();
            let (out, status) = vm.sh(&format!("cd '{}/bench'", home.display()));
            if status != 0 {
                bail!("the guest has no {}/bench: {out}", home.display());
            }
        }
        let mut series = ShareSeries::default();
        // Run 0 warms up (the guest's programs, the host's cache of the
        // tarball) and is not counted.
        for run in 0..=self.boot_runs {
            if run > 0 {
                eprintln!("costs:   run {run}/{}", self.boot_runs);
            }
            for (n, step) in STEPS.iter().enumerate() {
                // The order alternates run by run.
                let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
                for which in order {
                    let seconds = timed_step(&mut vms[which], step, run)?;
                    if run > 0 {
                        let side = if which == 0 {
                            &mut series.nine_p
                        } else {
                            &mut series.virtiofs
                        };
                        side[n].push(seconds);
                    }
                }
            }
            // The big file goes now, as it always did (left on the host,
            // it made the next write a fifth slower). The untarred trees stay
            // (the fixture's directory goes at the end): ext4 without a
            // journal, as on this machine, does not reuse an inode freed
            // in the last minute (six while its inode table is unwritten),
            // so each create of the next untar would scan past the
            // thousands of inodes just freed. That cost is the host file
            // system's, the same over both protocols, and grew run by run.
            for vm in &mut vms {
                vm.sh(&format!("rm -f big{run}"));
            }
        }
        for vm in &mut vms {
            vm.send("poweroff\n");
            vm.wait(Duration::from_secs(120));
        }
        Ok(series)
    }
}

/// Runs `step` of run `run` in the guest and returns the seconds it took by
/// the guest's clock.
fn timed_step(vm: &mut Console, step: &Step, run: usize) -> Result<f64> {
    let drop_caches = if step.cold {
        "sync; echo 3 > /proc/sys/vm/drop_caches; "
    } else {
        ""
    };
    // Centiseconds since boot, integer: busybox sh has no fractions.
    let now = "$(sed 's/ .*//; s/[.]//' /proc/uptime)";
    let command = format!(
        "i={run}; {drop_caches}s={now}; {cmd}; rc=$?; e={now}; echo \"took $((e - s)) cs, status $rc\"",
        cmd = step.command
    );
    let (out, _) = vm.sh(&command);
    // Untimed, the guest then sends the host what the step left in its
    // page cache: over 9p (`loose`) `dd` returns with more than half of its
    // 64 MiB still to send, which takes the guest another second or more.
    // Unwaited, that ran beside the other VM's next step and slowed it.
    vm.sh("sync");
    let took = out
        .lines()
        .filter_map(|line| line.trim().strip_prefix("took "))
        .find_map(|rest| {
            let (cs, status) = rest.split_once(" cs, status ")?;
            Some((cs.parse::<u64>().ok()?, status.trim().to_owned()))
        });
    match took {
        Some((cs, status)) if status == "0" => Ok(cs as f64 / 100.0),
        Some((_, status)) => bail!(
            "`{}` failed in the guest (status {status}): {out}",
            step.command
        ),
        None => bail!("no timing from `{}`: {out}", step.command),
    }
}

/// [`FILES`] files of [`FILE_SIZE`] bytes in 40 directories under `tree`,
/// archived into `tarball` with the host's tar (the guest's busybox reads
/// it).
fn write_tarball(tree: &Path, tarball: &Path) -> Result<()> {
    for n in 0..FILES {
        let dir = tree.join(format!("d{:02}", n % 40));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let text = format!("file {n:04}\n").repeat(FILE_SIZE / 10);
        std::fs::write(dir.join(format!("f{n:04}.txt")), text)
            .context("cannot write a file of the tarball")?;
    }
    let parent = tarball.parent().context("the tarball has no directory")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let status = Command::new("tar")
        .arg("-cf")
        .arg(tarball)
        .arg("-C")
        .arg(tree)
        .arg(".")
        .status()
        .context("cannot run tar")?;
    if !status.success() {
        bail!("tar failed ({status}) to archive {}", tree.display());
    }
    Ok(())
}

#[derive(Default)]
struct ShareSeries {
    nine_p: [Vec<f64>; 4],
    virtiofs: [Vec<f64>; 4],
}
