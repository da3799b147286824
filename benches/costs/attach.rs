//! The attach figures: `nixos-shell --attach -c true` from start to exit
//! against a VM that runs (nothing boots, nothing evaluates), and the
//! throughput of a pipe through an attached command, each way, beside the
//! same pipe through `--command`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use nixos_shell_test_support::bench::stats::ratios;
use nixos_shell_test_support::vm::{Console, Era};
use nixos_shell_test_support::vm_fixture::{self, Fixture};

use crate::table::{Row, Unit};
use crate::{guarded, Bench, BOOT_TIMEOUT, PATHS};

/// Attaches per latency figure: nothing boots, so many are cheap.
const ATTACHES: usize = 21;

/// What each pipe carries, each way.
const PIPED: usize = 64 * 1024 * 1024;

/// The command both pipes run: a marker, then `PIPED` bytes out once told
/// to, then a marker and a count of what comes in.
fn pipe_script() -> String {
    format!("echo ready; read go; head -c {PIPED} /dev/zero; echo ready; wc -c")
}

impl Bench {
    pub(crate) fn attach(&self) -> Vec<Row> {
        let labels = [
            "nixos-shell --attach -c true, start to exit (VM running)".to_string(),
            "pipe out of the VM through --attach".to_string(),
            "pipe out of the VM through --command".to_string(),
            "pipe out: --attach / --command (run by run)".to_string(),
            "pipe into the VM through --attach".to_string(),
            "pipe into the VM through --command".to_string(),
            "pipe in: --attach / --command (run by run)".to_string(),
        ];
        eprintln!("costs: attach");
        let series = match guarded(&labels, || self.try_attach()) {
            Ok(series) => series,
            Err(rows) => return rows,
        };
        let (attach_out, attach_in): (Vec<f64>, Vec<f64>) = series.attach.iter().copied().unzip();
        let (command_out, command_in): (Vec<f64>, Vec<f64>) =
            series.command.iter().copied().unzip();
        vec![
            Row::measured(labels[0].clone(), Unit::Seconds, &series.latency)
                .goal("< 0.3 s", |v| v < 0.3),
            Row::measured(labels[1].clone(), Unit::Rate, &attach_out),
            Row::measured(labels[2].clone(), Unit::Rate, &command_out),
            Row::measured(
                labels[3].clone(),
                Unit::Ratio,
                &ratios(&attach_out, &command_out),
            )
            .goal(">= 1 (at least as fast)", |v| v >= 1.0),
            Row::measured(labels[4].clone(), Unit::Rate, &attach_in),
            Row::measured(labels[5].clone(), Unit::Rate, &command_in),
            Row::measured(
                labels[6].clone(),
                Unit::Ratio,
                &ratios(&attach_in, &command_in),
            )
            .goal(">= 1 (at least as fast)", |v| v >= 1.0),
        ]
    }

    fn try_attach(&self) -> Result<AttachSeries> {
        let fx = Fixture::new(PATHS, Era::NineP);
        let env = self.vm_env()?;
        let mut series = AttachSeries::default();
        // The pipes through --command boot a VM each; alternated with the
        // attached ones, each attached pair runs against its own VM.
        for i in 0..=self.boot_runs {
            let warm_up = i == 0;
            eprintln!(
                "costs:   run {i}/{}{}",
                self.boot_runs,
                if warm_up { " (warm-up)" } else { "" }
            );
            let command = through(env(fx.command(&["--command", &pipe_script()])))?;
            let mut vm = Console::spawn(env(fx.command(&[])), vm_fixture::ROWS, vm_fixture::COLS);
            vm.wait_for_shell();
            let attach = through(env(fx.attach_command(&["-c", &pipe_script()])))?;
            if warm_up {
                // The warm-up also gives the latency figure its runs: the
                // VM is up, nothing else runs.
                for _ in 0..=ATTACHES {
                    series
                        .latency
                        .push(attach_true(env(fx.attach_command(&["-c", "true"])))?);
                }
                series.latency.remove(0);
            } else {
                series.command.push(command);
                series.attach.push(attach);
            }
            vm.send("poweroff\n");
            vm.wait(BOOT_TIMEOUT);
        }
        Ok(series)
    }
}

#[derive(Default)]
struct AttachSeries {
    latency: Vec<f64>,
    /// Bytes per second, (out of the VM, into it), per run.
    attach: Vec<(f64, f64)>,
    command: Vec<(f64, f64)>,
}

/// `nixos-shell --attach -c true` to its exit, in seconds.
fn attach_true(mut command: Command) -> Result<f64> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = command.output().context("run nixos-shell --attach")?;
    let elapsed = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "--attach -c true failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(elapsed)
}

/// Runs `command` (nixos-shell with [`pipe_script`]) with pipes: the bytes
/// per second out of the VM, then into it.
fn through(mut command: Command) -> Result<(f64, f64)> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child: Child = command.spawn().context("start nixos-shell")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = BufReader::with_capacity(1 << 20, child.stdout.take().context("stdout")?);
    expect_line(&mut stdout, "ready")?;
    let start = Instant::now();
    stdin.write_all(b"go\n")?;
    let mut left = PIPED;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = stdout.read(&mut buf[..left.min(1 << 20)])?;
        if n == 0 {
            bail!("the output ended {left} bytes early");
        }
        left -= n;
    }
    let out = PIPED as f64 / start.elapsed().as_secs_f64();
    expect_line(&mut stdout, "ready")?;
    let start = Instant::now();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..PIPED / zeros.len() {
        stdin.write_all(&zeros)?;
    }
    drop(stdin);
    let mut count = String::new();
    stdout.read_line(&mut count)?;
    let into = PIPED as f64 / start.elapsed().as_secs_f64();
    if count.trim() != PIPED.to_string() {
        bail!("the command counted {count:?} bytes, not {PIPED}");
    }
    let status = wait(&mut child, BOOT_TIMEOUT)?;
    if !status.success() {
        bail!("nixos-shell ended with {status}");
    }
    Ok((out, into))
}

fn expect_line(out: &mut impl BufRead, want: &str) -> Result<()> {
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim_end() != want {
        bail!("expected {want:?}, got {line:?}");
    }
    Ok(())
}

fn wait(child: &mut Child, timeout: Duration) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("nixos-shell did not end within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
