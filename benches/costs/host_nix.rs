//! The host-nix figures: `nix-build` in the guest of a trivial derivation
//! that no store has yet, through the host's nix-daemon (the relayed
//! socket) and in the guest's own store (`--no-host-nix`), and of a path
//! the host already has. Timed in the guest, around the command alone, by
//! the guest's clock (`/proc/uptime`, 10 ms steps): the boot is not in
//! the figures. The nix client is the host's own, staged for the guest as
//! the VM tests stage it (`test-support/src/guest_nix.rs`).

use std::process::Stdio;

use anyhow::{bail, Context, Result};

use nixos_shell_test_support::bench::stats::ratios;
use nixos_shell_test_support::guest_nix::{
    GuestNix, MOUNT_HOST_STORE, NB, OWN_STORE, STORE_SHARE, WAIT_FOR_RELAY,
};
use nixos_shell_test_support::nix::fresh_derivation;
use nixos_shell_test_support::vm::Era;
use nixos_shell_test_support::vm_fixture::Fixture;

use crate::table::{Row, Unit};
use crate::{guarded, Bench, PATHS};

/// Shell for the guest: `timed LABEL I COMMAND…` runs the command and
/// prints `timed LABEL I START END` (the guest's uptime around it), or
/// `failed LABEL I` and its output.
const TIMED: &str = "timed() { l=$1; n=$2; shift 2; read s _ < /proc/uptime; \
if o=$(\"$@\" 2>&1); then read e _ < /proc/uptime; echo \"timed $l $n $s $e\"; \
else echo \"failed $l $n: $o\"; fi; }";

impl Bench {
    pub(crate) fn host_nix(&self) -> Vec<Row> {
        let labels = [
            "nix-build in the guest of a new derivation, through the host".to_string(),
            "nix-build in the guest of a new derivation, in its own store (--no-host-nix)"
                .to_string(),
            "through the host / own store (run by run)".to_string(),
            "nix-build in the guest of a path the host has".to_string(),
            "nix-build --version in the guest (the client's own start)".to_string(),
        ];
        eprintln!("costs: host-nix");
        let series = match guarded(&labels, || self.try_host_nix()) {
            Ok(series) => series,
            Err(rows) => return rows,
        };
        vec![
            Row::measured(labels[0].clone(), Unit::Seconds, &series.through_host),
            Row::measured(labels[1].clone(), Unit::Seconds, &series.own_store),
            Row::measured(
                labels[2].clone(),
                Unit::Ratio,
                &ratios(&series.through_host, &series.own_store),
            ),
            Row::measured(labels[3].clone(), Unit::Seconds, &series.host_has)
                .goal("< 1 s", |v| v < 1.0),
            Row::measured(labels[4].clone(), Unit::Seconds, &series.client_start),
        ]
    }

    /// Two VMs, one per store; each builds one new derivation per run
    /// (the first a warm-up), the host's VM then each again. The host's VM
    /// first times the client's start alone, what every figure includes.
    fn try_host_nix(&self) -> Result<HostNixSeries> {
        let fx = Fixture::new(PATHS, Era::NineP);
        let client = GuestNix::stage(&fx.path("nix-client"));
        let runs = self.boot_runs + 1;
        for i in 0..runs {
            client.write(&format!("new-{i}"), &fresh_derivation("bench").expression);
        }
        let each = |label: &str, command: &str| {
            (0..runs)
                .map(|i| {
                    format!(
                        "timed {label} {i} {}; ",
                        command.replace("@i@", &i.to_string())
                    )
                })
                .collect::<String>()
        };
        let build = "nb new-@i@ --no-out-link";
        let through_host = format!(
            "{NB}; {TIMED}; {WAIT_FOR_RELAY}; {MOUNT_HOST_STORE}; {}{}{}",
            each("client-start", "nix_build --version"),
            each("through-host", build),
            each("host-has", build),
        );
        let own_store = format!("{NB}; {TIMED}; {OWN_STORE}; {}", each("own-store", build));
        let host_text = self.guest_run(&fx, &client, &[], &through_host)?;
        let own_text = self.guest_run(&fx, &client, &["--no-host-nix"], &own_store)?;
        let times = |text: &str, label: &str| -> Result<Vec<f64>> {
            let mut times = Vec::new();
            for line in text.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                if words.first() == Some(&"failed") && words.get(1) == Some(&label) {
                    bail!("a guest nix-build failed:\n{text}");
                }
                if let ["timed", l, _, start, end] = words[..] {
                    if l == label {
                        let start: f64 = start.parse().context("the guest's uptime")?;
                        let end: f64 = end.parse().context("the guest's uptime")?;
                        times.push(end - start);
                    }
                }
            }
            if times.len() != runs {
                bail!("{label}: {} of {runs} builds timed:\n{text}", times.len());
            }
            // The first is the warm-up.
            times.remove(0);
            Ok(times)
        };
        Ok(HostNixSeries {
            through_host: times(&host_text, "through-host")?,
            host_has: times(&host_text, "host-has")?,
            client_start: times(&host_text, "client-start")?,
            own_store: times(&own_text, "own-store")?,
        })
    }

    /// One VM with the staged client, running `script` as its command;
    /// its output.
    fn guest_run(
        &self,
        fx: &Fixture,
        client: &GuestNix,
        args: &[&str],
        script: &str,
    ) -> Result<String> {
        let mount = client.mount();
        let mut cli_args = vec!["--mount", &mount];
        cli_args.extend_from_slice(args);
        cli_args.extend_from_slice(&["-c", script]);
        let mut command =
            self.vm_env()?(fx.command_with_qemu_args(&cli_args, &["-virtfs", STORE_SHARE]));
        let out = command
            .stdin(Stdio::null())
            .output()
            .context("start nixos-shell")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("nixos-shell {args:?} ended with {}:\n{text}", out.status);
        }
        Ok(text)
    }
}

#[derive(Default)]
struct HostNixSeries {
    through_host: Vec<f64>,
    own_store: Vec<f64>,
    host_has: Vec<f64>,
    client_start: Vec<f64>,
}
