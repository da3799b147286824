//! The host role: from the command line to a running VM. Its folders are
//! its phases, in the order a run goes:
//!
//! 1. [`read`] reads the host once (environment, cwd, user, home, terminal);
//!    [`settings`] checks the command line into typed values.
//! 2. [`build`] resolves CONFIG, plans the `nix build`s as values, runs them
//!    and reads the result: its run script and manifest.
//! 3. [`vm`] composes the VM from the build, the host and the settings (one
//!    pure value; [`shares`] owns what is shared into it), then runs it in
//!    this terminal.
//!
//! Beside them: [`attach`] is a session in a VM that already runs, found
//! without building; [`dry_run`] prints what a run would execute, from the
//! same composition; [`generate`] prints shell completions and the man page for
//! packagers; [`signals`] passes the signals that end a session to the
//! child of the moment and keeps nixos-shell alive to clean up after it;
//! [`stop`] is how a step ended early; [`qemu`] the QEMU option syntax that
//! shares and ports both write.
//!
//! This file only orchestrates.

mod attach;
mod build;
mod dry_run;
mod generate;
mod qemu;
mod read;
mod settings;
mod shares;
mod signals;
mod stop;
mod terminal;
#[cfg(test)]
mod test_data;
mod vm;

use std::io::Write;

use anyhow::{Context, Result};

use crate::cli::HostArgs;
use build::Request;
use read::Host;
use settings::{Mode, Settings};
use vm::session::Session;

pub fn run(args: HostArgs) -> Result<u8> {
    if let Some(text) = generate::requested(&args)? {
        std::io::stdout()
            .write_all(&text)
            .context("could not write to standard output")?;
        return Ok(0);
    }
    signals::install();
    let host = Host::read()?;
    let settings = Settings::from_args(args, &host)?;
    // Ports and disks matter only to a VM that starts; checked before the
    // build so that their errors come first.
    if settings.mode == Mode::Run {
        settings.check_host()?;
    }
    let installable = build::resolve(settings.config.as_ref(), &host.cwd)?;
    let request = Request::new(&installable, &settings, &host);
    match settings.mode {
        Mode::DryRun { build_only } => dry_run::print(&request, &settings, &host, build_only),
        Mode::BuildOnly => build_only(&request, &settings),
        Mode::Run => run_vm(&request, &settings, &host),
        Mode::Attach => attach::run(&installable, &settings, &host),
    }
}

/// `--build-only`: builds and prints the run script. Nothing to keep while
/// nothing runs: the result's GC root is `--out-link`'s, or none.
fn build_only(request: &Request, settings: &Settings) -> Result<u8> {
    Ok(
        match request.plan(settings.out_link.as_deref())?.realise()? {
            Ok(built) => {
                println!("{}", built.result.run_script);
                0
            }
            Err(stop) => stop.exit_status(),
        },
    )
}

/// Builds the VM, its result kept in the session unless `--out-link` says
/// where, and runs it.
fn run_vm(request: &Request, settings: &Settings, host: &Host) -> Result<u8> {
    let session = Session::create()?;
    let out_link = settings
        .out_link
        .clone()
        .unwrap_or_else(|| session.out_link());
    match request.plan(Some(&out_link))?.realise()? {
        Ok(built) => vm::run(host, settings, &built, session),
        Err(stop) => Ok(stop.exit_status()),
    }
}
