//! The host role: from the command line to a running VM. Its folders are
//! its phases, in the order a run goes; each imports only earlier ones:
//!
//! 1. [`read`] reads the host once (environment, cwd, user, home, terminal),
//!    and [`gather`] what else the VM takes from it; [`settings`] checks the
//!    command line into a [`Mode`] that carries only its own values.
//! 2. [`nix`] resolves CONFIG into the `nix build`s that realise it, as
//!    values; runs them and judges how nix ended; reads the result.
//! 3. [`compose`] makes the [`Plan`]: the builds, and what composes the VM
//!    from their result (QEMU's arguments and environment, the host facts,
//!    the ports, the disk; [`shares`] owns what is shared into it). Pure.
//! 4. [`execute`] runs a plan: the builds, then the VM in this terminal,
//!    with the threads and poll loops that serve it.
//!
//! Beside them: [`switch`] switches a running VM to a new build of its
//! configuration (`--switch`, `--watch`); [`attach`] is the attach
//! feature's host side (the registry
//! of running VMs, the relay a run serves, the client `--attach` runs,
//! found without building, and `--stop`); [`detach`] starts a VM that
//! goes on without the terminal; [`reset`] deletes a configuration's
//! disk image; [`dry_run`] prints a plan; [`generate`] prints
//! shell completions and the man page for packagers; [`signals`] passes the
//! signals that end a session to the child of the moment and keeps
//! nixos-shell alive to clean up after it; [`stop`] is how a step ended
//! early, an error mapped here to the exit status; [`qemu`] the QEMU option
//! syntax that shares and ports both write; [`terminal`] saves and restores
//! this terminal.
//!
//! This file only orchestrates: one function per mode.

mod attach;
mod compose;
mod detach;
mod dry_run;
mod execute;
mod gather;
mod generate;
mod nix;
mod qemu;
mod read;
mod reset;
mod settings;
mod shares;
mod signals;
mod stop;
mod switch;
mod terminal;
#[cfg(test)]
mod test_data;

use anyhow::Result;

use crate::cli::HostArgs;
use compose::layout::Layout;
use compose::Plan;
use execute::session::Session;
use read::Host;
use settings::{Build, Dry, Mode, Run, Switch, Target};
use stop::Stop;

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
        Mode::Attach(attach) => attach::run(&attach, &host),
        Mode::Stop(target) => stop_vm(&target, &host),
        Mode::Reset(target) => reset::run(&target, &host),
        Mode::Console(target) => console(&target, &host),
        Mode::List { json } => attach::list::run(&attach::registry::dir(&host.env), json),
        Mode::BuildOnly(build) => build_only(&build, &host),
        Mode::DryRun(dry) => dry_run(&dry, &host),
        Mode::Run(run) => run_vm(&run, &host),
        Mode::Switch(switch) => run_switch(&switch, &host),
        Mode::Detach(run) => detach_vm(&run, &host),
        Mode::Hold(run, hold) => hold_vm(&run, &hold, &host),
    }
}

/// `--attach --console`: CONFIG names the detached VM whose console log
/// is followed; nothing builds.
fn console(target: &Target, host: &Host) -> Result<u8> {
    let entry = attach::running(target, host)?;
    attach::console::run(&entry, &attach::registry::info_of(&entry)?)
}

/// `--stop`: CONFIG names the VM, whose holder stops it; nothing builds.
fn stop_vm(target: &Target, host: &Host) -> Result<u8> {
    attach::holder::stop(&attach::running(target, host)?)
}

/// `--switch [--watch]`: CONFIG names the running VM (nothing builds
/// when none runs); the build a run would make is activated in it.
fn run_switch(switch: &Switch, host: &Host) -> Result<u8> {
    switch::run(switch, host)
}

/// `--build-only`: builds and prints the run script. Nothing to keep while
/// nothing runs: the result's GC root is `--out-link`'s, or none.
fn build_only(build: &Build, host: &Host) -> Result<u8> {
    let built = Plan::build_only(build, host)?.builds.realise()?;
    println!("{}", built.result.run_script);
    Ok(0)
}

/// `--dry-run`: prints the plan of the run, or of the build alone, with
/// stand-ins for the session's directory and what only the build decides.
fn dry_run(dry: &Dry, host: &Host) -> Result<u8> {
    print!("{}", dry_run::render(&dry_plan(dry, host)?)?);
    Ok(0)
}

/// The plan `--dry-run` prints: the one [`run_plan`] makes for the run it
/// shows, in the stand-in session.
fn dry_plan<'a>(dry: &'a Dry, host: &'a Host) -> Result<Plan<'a>> {
    match dry {
        Dry::BuildOnly(build) => Plan::build_only(build, host),
        Dry::Run(run) => run_plan(run, host, dry_run::layout()),
    }
}

/// The plan a run executes in a session at `layout`.
fn run_plan<'a>(run: &'a Run, host: &'a Host, layout: Layout) -> Result<Plan<'a>> {
    Plan::run(run, host, layout)
}

/// Builds the VM, its result kept in the session unless `--out-link` says
/// where, and runs it.
fn run_vm(run: &Run, host: &Host) -> Result<u8> {
    // Ports and disks matter only to a VM that starts; checked before the
    // build so that their errors come first.
    run.vm.check_host()?;
    let session = Session::create()?;
    let plan = run_plan(run, host, session.layout().clone())?;
    execute::run(&plan, session, None)
}

/// `--detach`: builds as a run does, then starts the VM's holder without
/// a terminal and returns once the guest answers.
fn detach_vm(run: &Run, host: &Host) -> Result<u8> {
    run.vm.check_host()?;
    let session = Session::create()?;
    let plan = run_plan(run, host, session.layout().clone())?;
    let built = plan.builds.realise()?;
    let log = execute::detached_console_log(
        &host.env,
        &built.result.manifest.name,
        &built.identity,
        &run.vm.disk,
        &session,
    );
    let log = detach::start(session, &built.identity, &log)?;
    let config = attach::described_as_flag(run.build.config.as_ref());
    println!(
        "nixos-shell: {} runs in the background, its console in {log}; \
         attach with `nixos-shell --attach{config}`, stop it with `nixos-shell --stop{config}`",
        built.result.manifest.name
    );
    Ok(0)
}

/// A detached VM's holder (hidden `--hold`): the run of the build that
/// `--detach` made, in the session it handed over.
fn hold_vm(run: &Run, hold: &settings::Hold, host: &Host) -> Result<u8> {
    let (session, holding, builds) = detach::holding(hold, run.build.out_link.as_deref());
    let mut plan = run_plan(run, host, session.layout().clone())?;
    plan.builds = builds;
    execute::run(&plan, session, Some(holding))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::test_data::{env, host_in, try_mode_on};
    use crate::sh;

    #[test]
    fn a_dry_run_prints_the_plan_a_run_executes() {
        let host = host_in(
            env(&[("NIXOS_SHELL_MODULE", "/m"), ("NIXOS_SHELL_NIXPKGS", "/np")]),
            "/w",
        );
        let flags = ["github:o/r#vm", "--memory", "2G", "--ephemeral", "-c", "id"];
        let Mode::Run(run) = try_mode_on(&host, &flags).unwrap() else {
            panic!("no run")
        };
        let dry_flags: Vec<&str> = std::iter::once("--dry-run").chain(flags).collect();
        let Mode::DryRun(dry) = try_mode_on(&host, &dry_flags).unwrap() else {
            panic!("no dry run")
        };
        // The plan the dry run prints is the one the run makes in the same
        // session, by value.
        let plan = dry_plan(&dry, &host).unwrap();
        assert_eq!(plan, run_plan(&run, &host, dry_run::layout()).unwrap());
        // And what it prints is that plan: its builds, then its VM.
        let text = dry_run::render(&plan).unwrap();
        let steps = plan.builds.steps();
        assert_eq!(steps.len(), 2);
        for step in steps {
            assert!(text.contains(&sh::join(step.build.argv())), "{text}");
        }
        let vm_line = text.lines().last().unwrap();
        assert!(
            vm_line.ends_with(
                "'<result>/bin/run-<name>-vm' -m 2G -virtfs \
                 'local,path=<private-temp-dir>/share,security_model=none,mount_tag=nixos-shell'"
            ),
            "{vm_line}"
        );
        assert!(
            vm_line.starts_with("NIX_DISK_IMAGE='<private-temp-dir>/<name>.qcow2' "),
            "{vm_line}"
        );
    }
}
