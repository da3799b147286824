//! The host role: from the command line to a running VM. Its folders are
//! its phases, in the order a run goes:
//!
//! 1. [`read`] reads the host once (environment, cwd, user, home, terminal);
//!    [`settings`] checks the command line into typed values.
//! 2. [`nix`] resolves CONFIG, plans the `nix build`s as values, runs them
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
mod dry_run;
mod generate;
mod nix;
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

use anyhow::Result;

use crate::cli::HostArgs;
use nix::{Installable, Request};
use read::Host;
use settings::{Attach, Build, Dry, Mode, Run};
use stop::Stop;
use vm::session::Session;

/// Runs the mode the command line asks for: nixos-shell's exit status.
pub fn run(args: HostArgs) -> Result<u8> {
    signals::install();
    match run_mode(args) {
        Err(err) => Stop::status_of(&err).ok_or(err),
        ran => ran,
    }
}

/// The mode's own function: its exit status, or an error (a [`Stop`] too).
fn run_mode(args: HostArgs) -> Result<u8> {
    let host = Host::read()?;
    match Mode::from_args(args, &host)? {
        Mode::Generate(page) => page.print(),
        Mode::Attach(attach) => run_attach(&attach, &host),
        Mode::BuildOnly(build) => build_only(&build, &host),
        Mode::DryRun(dry) => dry_run(&dry, &host),
        Mode::Run(run) => run_vm(&run, &host),
    }
}

/// `--attach`: CONFIG names the VM; nothing builds.
fn run_attach(attach: &Attach, host: &Host) -> Result<u8> {
    let installable = nix::resolve(attach.target.config.as_ref(), &host.cwd)?;
    attach::run(&installable, attach, host)
}

/// `--build-only`: builds and prints the run script. Nothing to keep while
/// nothing runs: the result's GC root is `--out-link`'s, or none.
fn build_only(build: &Build, host: &Host) -> Result<u8> {
    let installable = resolve(build, host)?;
    let request = Request::new(&installable, build, host);
    let built = request.plan(build.out_link.as_deref())?.realise()?;
    println!("{}", built.result.run_script);
    Ok(0)
}

/// `--dry-run`: prints what the run, or the build alone, would execute.
fn dry_run(dry: &Dry, host: &Host) -> Result<u8> {
    let (build, run) = match dry {
        Dry::BuildOnly(build) => (build, None),
        Dry::Run(run) => (&run.build, Some(run)),
    };
    let installable = resolve(build, host)?;
    let request = Request::new(&installable, build, host);
    dry_run::print(&request, run, build.out_link.as_deref(), host)
}

/// Builds the VM, its result kept in the session unless `--out-link` says
/// where, and runs it.
fn run_vm(run: &Run, host: &Host) -> Result<u8> {
    // Ports and disks matter only to a VM that starts; checked before the
    // build so that their errors come first.
    run.vm.check_host()?;
    let installable = resolve(&run.build, host)?;
    let request = Request::new(&installable, &run.build, host);
    let session = Session::create()?;
    let out_link = run
        .build
        .out_link
        .clone()
        .unwrap_or_else(|| session.out_link());
    let built = request.plan(Some(&out_link))?.realise()?;
    vm::run(host, run, &built, session)
}

/// What CONFIG names.
fn resolve(build: &Build, host: &Host) -> Result<Installable> {
    nix::resolve(build.config.as_ref(), &host.cwd)
}
