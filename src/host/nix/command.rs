//! The `nix build` invocation: a value built by small chained methods whose
//! pure [`NixBuild::argv`] the tests compare exactly, and the thin edge that
//! runs it ([`NixBuild::run`]).
//!
//! Every build is `nix build --json`, with `--out-link <path>` or
//! `--no-link`: stdout carries the JSON, parsed here; stderr goes to the
//! user through `output`.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use super::outcome::{self, Ended, Verdict};
use super::output;
use crate::cli::NixFlags;
use crate::host::signals::{self, Stream};
use crate::host::stop::Stop;

/// The flags that make `nix build` and flakes available on any Nix >= 2.4.
const FEATURES: [&str; 2] = ["--extra-experimental-features", "nix-command flakes"];

/// One `nix build`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NixBuild {
    target: Target,
    /// Where nix keeps the result as a GC root; `None` for none.
    out_link: Option<Utf8PathBuf>,
    flags: NixFlags,
    impure: bool,
    args: Vec<(String, String)>,
    /// Where nix runs, when not where nixos-shell does.
    cwd: Option<Utf8PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Installable(String),
    Expr(String),
}

/// How a build ended, when it did not stop the run (a failure of nix's or
/// a signal is a [`Stop`], an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The store path built (the first output `out`).
    Built(Utf8PathBuf),
    /// The configuration does not exist: nix said an installable's attribute
    /// is missing (`None`), or our lookup found none and said so.
    MissingAttribute(Option<String>),
}

/// What a finished nix process left: how it ended, its stdout (the JSON),
/// and the stderr `output` held back.
struct Finished {
    status: ExitStatus,
    stdout: String,
    held: Vec<u8>,
}

impl NixBuild {
    /// Builds an installable such as `.#nixosConfigurations.vm.config...`.
    pub fn installable(installable: impl Into<String>, out_link: Option<&Utf8Path>) -> Self {
        Self::new(Target::Installable(installable.into()), out_link)
    }

    /// Builds the value of a Nix expression (a function given `--argstr`s).
    pub fn expr(expr: impl Into<String>, out_link: Option<&Utf8Path>) -> Self {
        Self::new(Target::Expr(expr.into()), out_link)
    }

    fn new(target: Target, out_link: Option<&Utf8Path>) -> Self {
        NixBuild {
            target,
            out_link: out_link.map(Utf8Path::to_owned),
            flags: NixFlags::default(),
            impure: false,
            args: Vec::new(),
            cwd: None,
        }
    }

    /// Runs nix in `dir` (for a flake reference relative to it).
    pub fn current_dir(mut self, dir: Utf8PathBuf) -> Self {
        self.cwd = Some(dir);
        self
    }

    /// Where nix runs, when not where nixos-shell does.
    pub fn cwd(&self) -> Option<&Utf8Path> {
        self.cwd.as_deref()
    }

    /// The flags passed through from the command line.
    pub fn flags(mut self, flags: &NixFlags) -> Self {
        self.flags = flags.clone();
        self
    }

    /// Allows impure evaluation (the search path, absolute paths, getFlake).
    pub fn impure(mut self) -> Self {
        self.impure = true;
        self
    }

    /// Gives the expression's function a string argument.
    pub fn argstr(mut self, name: &str, value: impl Into<String>) -> Self {
        self.args.push((name.to_owned(), value.into()));
        self
    }

    /// The whole command line, starting with `nix`.
    pub fn argv(&self) -> Vec<String> {
        let mut argv: Vec<String> = ["nix", "build"].map(String::from).to_vec();
        argv.extend(FEATURES.map(String::from));
        argv.push("--json".to_owned());
        match &self.out_link {
            Some(link) => argv.extend(["--out-link".to_owned(), link.to_string()]),
            None => argv.push("--no-link".to_owned()),
        }
        argv.extend(flag_argv(&self.flags));
        if self.impure && !self.flags.impure {
            argv.push("--impure".to_owned());
        }
        for (name, value) in &self.args {
            argv.extend(["--argstr".to_owned(), name.clone(), value.clone()]);
        }
        match &self.target {
            Target::Installable(installable) => argv.push(installable.clone()),
            Target::Expr(expr) => argv.extend(["--expr".to_owned(), expr.clone()]),
        }
        argv
    }

    /// Runs the build. stdout (the JSON) is captured; stderr reaches the
    /// user through nixos-shell (`output`: a pseudo-terminal when ours is
    /// a terminal, so nix still draws its progress bar). Through, not
    /// inherited, because the error nix ends with decides what happens next:
    /// a missing attribute starts the fallback lookup (and its message would
    /// only confuse), and our own expressions' `throw` is shown as the one
    /// line it is, without nix's trace hint. Everything else nix says
    /// reaches the user unchanged.
    pub fn run(&self) -> Result<Outcome> {
        let finished = self.spawn_and_wait()?;
        let ended = Ended {
            installable: matches!(self.target, Target::Installable(_)),
            stop: Stop::of(finished.status),
            caught: signals::received(),
        };
        let held = &finished.held;
        match outcome::judge(ended, &output::held_lines(held)) {
            Verdict::Built => {
                show(held);
                parse_output(&finished.stdout).map(Outcome::Built)
            }
            Verdict::Missing(message) => Ok(Outcome::MissingAttribute(message)),
            Verdict::Refused(own) => {
                if self.flags.show_trace {
                    show(held);
                }
                bail!("{own}")
            }
            Verdict::Stopped { stop, show: shown } => {
                if shown {
                    show(held);
                }
                Err(stop.into())
            }
        }
    }

    /// Runs nix to its end, its stderr through `output`, passing it the
    /// signals nixos-shell catches meanwhile.
    fn spawn_and_wait(&self) -> Result<Finished> {
        let argv = self.argv();
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .stdin(Stdio::inherit())
            .stdout(Stdio::piped());
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        signals::die_with_parent(&mut command);
        let (mut child, stderr) = output::spawn(command).map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "`nix` is not on PATH; install Nix (https://nixos.org/download) or add it to PATH"
            ),
            _ => anyhow::Error::new(err).context("could not start `nix`"),
        })?;
        let stdout = OwnedFd::from(
            child
                .stdout
                .take()
                .context("nix's stdout pipe is missing; report this")?,
        );
        // Both streams are read in this thread while it waits for nix.
        let mut json = Vec::new();
        let mut forward = output::Forward::new(std::io::stderr());
        let status = signals::wait_reading(
            &mut child,
            &mut [
                Stream::new(stdout.as_fd(), &mut |bytes| json.extend_from_slice(bytes)),
                Stream::new(stderr.as_fd(), &mut |bytes| forward.feed(bytes)),
            ],
        )
        .context("could not wait for `nix`")?;
        Ok(Finished {
            status,
            stdout: String::from_utf8_lossy(&json).into_owned(),
            held: forward.finish(),
        })
    }
}

/// The pass-through flags as nix's arguments, in a fixed order.
fn flag_argv(flags: &NixFlags) -> Vec<String> {
    let mut argv = Vec::new();
    for path in &flags.include {
        argv.extend(["-I".to_owned(), path.clone()]);
    }
    if let Some(spec) = &flags.builders {
        argv.extend(["--builders".to_owned(), spec.clone()]);
    }
    for pair in flags.option.chunks(2) {
        argv.push("--option".to_owned());
        argv.extend(pair.iter().cloned());
    }
    argv.extend((0..flags.verbose).map(|_| "-v".to_owned()));
    let switches = [
        (flags.show_trace, "--show-trace"),
        (flags.print_build_logs, "--print-build-logs"),
        (flags.keep_going, "--keep-going"),
        (flags.keep_failed, "--keep-failed"),
        (flags.fallback, "--fallback"),
        (flags.repair, "--repair"),
        (flags.refresh, "--refresh"),
        (flags.impure, "--impure"),
        (flags.offline, "--offline"),
    ];
    argv.extend(
        switches
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, flag)| flag.to_owned()),
    );
    argv
}

/// Shows what nix said and `output` held back.
fn show(held: &[u8]) {
    let _ = std::io::stderr().write_all(held);
}

/// One entry of `nix build --json`.
#[derive(Debug, Deserialize)]
struct BuildResult {
    outputs: std::collections::BTreeMap<String, Utf8PathBuf>,
}

/// The `out` output of the single result of `nix build --json`.
pub fn parse_output(json: &str) -> Result<Utf8PathBuf> {
    let results: Vec<BuildResult> = serde_json::from_str(json)
        .with_context(|| format!("nix build printed unexpected JSON {json:?}; report this"))?;
    results
        .into_iter()
        .next()
        .and_then(|r| r.outputs.get("out").cloned())
        .with_context(|| format!("nix build reported no `out` output in {json:?}; report this"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installable_argv() {
        let build = NixBuild::installable(
            "/p#nixosConfigurations.vm.config.system.build.nixos-shell",
            Some("/t/result".into()),
        )
        .flags(&NixFlags {
            print_build_logs: true,
            impure: true,
            ..NixFlags::default()
        })
        .impure();
        assert_eq!(
            build.argv(),
            [
                "nix",
                "build",
                "--extra-experimental-features",
                "nix-command flakes",
                "--json",
                "--out-link",
                "/t/result",
                "--print-build-logs",
                "--impure",
                "/p#nixosConfigurations.vm.config.system.build.nixos-shell"
            ]
        );
    }

    #[test]
    fn expr_argv() {
        let build = NixBuild::expr("{ a }: a", None)
            .impure()
            .argstr("a", "x")
            .argstr("b", "");
        assert_eq!(
            build.argv(),
            [
                "nix",
                "build",
                "--extra-experimental-features",
                "nix-command flakes",
                "--json",
                "--no-link",
                "--impure",
                "--argstr",
                "a",
                "x",
                "--argstr",
                "b",
                "",
                "--expr",
                "{ a }: a"
            ]
        );
    }

    #[test]
    fn pass_through_flags_keep_their_order() {
        use clap::Parser;
        let args = crate::cli::HostArgs::try_parse_from([
            "nixos-shell",
            "-I",
            "nixpkgs=/np",
            "--builders",
            "ssh://b",
            "--option",
            "cores",
            "4",
            "--show-trace",
            "-L",
            "-vv",
            "-k",
            "-K",
            "--fallback",
            "--repair",
            "--refresh",
            "--impure",
            "--offline",
        ])
        .unwrap();
        assert_eq!(
            flag_argv(&args.nix),
            [
                "-I",
                "nixpkgs=/np",
                "--builders",
                "ssh://b",
                "--option",
                "cores",
                "4",
                "-v",
                "-v",
                "--show-trace",
                "--print-build-logs",
                "--keep-going",
                "--keep-failed",
                "--fallback",
                "--repair",
                "--refresh",
                "--impure",
                "--offline"
            ]
        );
    }

    #[test]
    fn parses_nix_build_json() {
        let json = r#"[{"drvPath":"/nix/store/a-x.drv","outputs":{"out":"/nix/store/b-x"}}]"#;
        assert_eq!(parse_output(json).unwrap(), "/nix/store/b-x");
        assert!(format!("{:#}", parse_output("[]").unwrap_err()).contains("no `out` output"));
        assert!(format!("{:#}", parse_output("nope").unwrap_err()).contains("unexpected JSON"));
    }
}
