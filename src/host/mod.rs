//! The host role: from the command line to a running VM. This file only
//! orchestrates, in the order a run goes:
//!
//! 1. read: [`context`] reads the host once (environment, cwd, user, home,
//!    terminal); [`settings`] checks the command line.
//! 2. resolve: [`resolve`] decides what to build.
//! 3. plan: [`build`] plans the `nix build`s that [`nix`] runs
//!    ([`nix_output`] carries nix's stderr to the user).
//! 4. build: [`build::realise`] runs them and reads the [`result`]: its run
//!    script and manifest.
//! 5. compose: [`disk`] picks the disk image, [`launch`] the shares and the
//!    VM command, [`virtiofs`] the shares' daemons, [`ports`] the
//!    virtio-serial ports (their sockets in [`sockets`]), [`facts`] the host
//!    facts the guest reads from the [`session`] directory.
//! 6. run: [`ports`] listens, [`virtiofs`] starts the daemons, [`vm`] runs
//!    the VM in this terminal ([`terminal`] saves and restores it), then the
//!    daemons are stopped and the ports' output drained. Throughout,
//!    [`signals`] passes the signals that end a session to the child of the
//!    moment and keeps nixos-shell alive to clean up after it.
//!
//! [`dry_run`] prints steps 3 and 5 instead; [`generate`] prints shell
//! completions and the man page for packagers, before anything else.

mod build;
mod context;
mod disk;
mod dry_run;
mod facts;
mod generate;
mod launch;
mod nix;
mod nix_output;
mod ports;
mod resolve;
mod result;
mod session;
mod settings;
mod signals;
mod sockets;
mod terminal;
#[cfg(test)]
mod test_data;
mod virtiofs;
mod vm;

use std::io::Write;

use anyhow::{Context, Result};
use camino::Utf8Path;

use crate::cli::HostArgs;
use crate::schema::facts::CommandIo;
use build::{Locations, Realised};
use context::Host;
use session::Session;
use settings::{Mode, Settings};
use sockets::SocketDir;

/// How much of the console a command that ended without its status shows.
const CONSOLE_TAIL_LINES: usize = 20;

pub fn run(args: HostArgs) -> Result<u8> {
    if let Some(text) = generate::requested(&args)? {
        std::io::stdout()
            .write_all(&text)
            .context("could not write to standard output")?;
        return Ok(0);
    }
    signals::install();

    // Read.
    let host = Host::read()?;
    let settings = Settings::from_args(args, &host.cwd)?;
    disk::refuse_conflict(&host.env, settings.ephemeral, settings.disk_path())?;
    // Ports and disks matter only to a VM that starts.
    if settings.mode == Mode::Run {
        settings.check_host()?;
    }

    // Resolve and plan.
    let installable = resolve::resolve(settings.config.as_ref(), &host.cwd)?;
    let locations = Locations::from_env(&host.env);
    let plan = |out_link: Option<&Utf8Path>| {
        build::plan(&installable, &settings, &locations, out_link, &host.cwd)
    };
    match settings.mode {
        Mode::DryRun { build_only } => {
            let session = Utf8Path::new("<private-temp-dir>");
            let vm_link = (!build_only).then(|| session.join("result"));
            let plan = plan(settings.out_link.as_deref().or(vm_link.as_deref()))?;
            return dry_run::print(&plan, &settings, &host, session, build_only);
        }
        // Nothing to keep while nothing runs: the result's GC root is
        // --out-link's, or none.
        Mode::BuildOnly => {
            return Ok(
                match build::realise(&plan(settings.out_link.as_deref())?)? {
                    Realised::Built { build, .. } => {
                        println!("{}", build.run_script);
                        0
                    }
                    Realised::Failed(code) => code,
                    Realised::Signalled(signal) => signals::exit_status(signal),
                },
            );
        }
        Mode::Run => {}
    }
    let session = Session::create()?;
    let out_link = settings
        .out_link
        .clone()
        .unwrap_or_else(|| session.out_link());
    let plan = plan(Some(&out_link))?;

    // Build.
    let (built, identity) = match build::realise(&plan)? {
        Realised::Built { build, identity } => (build, identity),
        Realised::Failed(code) => return Ok(code),
        Realised::Signalled(signal) => return Ok(signals::exit_status(signal)),
    };

    // Compose.
    session.prepare_vm()?;
    let manifest = &built.manifest;
    let disk = disk::choose(
        &host.env,
        (settings.ephemeral, settings.disk_path()),
        manifest.disk_image.as_deref(),
        &manifest.name,
        &identity,
        session.ephemeral_image(&manifest.name),
    )?;
    let profile = facts::nix_profile(&host.home, &host.user);
    let module_shares =
        launch::module_shares(manifest, &host.home, profile.as_deref(), settings.no_home);
    for note in launch::store_copy_notes(manifest) {
        eprintln!("nixos-shell: {note}");
    }
    let flag_shares = launch::flag_shares(&settings.mounts);
    launch::check_shares(&module_shares, &flag_shares)?;
    let host_system = settings.host_system.as_deref().unwrap_or(&host.system);
    session.write_facts(&facts::compose(
        &host,
        manifest,
        host_system,
        facts::shell_store_path(&host.env).as_deref(),
        facts::authorized_keys(&host.home, &host.env),
        launch::guest_mounts(module_shares.iter().chain(&flag_shares), manifest),
        settings.command.clone(),
    ))?;
    let command_io = settings.command.as_ref().map(|_| host.command_io());
    let ports = ports::needed(command_io, host.terminal.is_some());
    let sockets = SocketDir::create(
        &session.sockets(),
        virtiofs::socket_names(&manifest.mounts, module_shares.iter().chain(&flag_shares))
            .into_iter()
            .chain(ports.iter().map(|&port| ports::socket_name(port))),
    )?;
    let daemons = virtiofs::plan(
        &manifest.mounts,
        module_shares.iter().chain(&flag_shares),
        sockets.path(),
    );
    let ports = ports::sockets(&ports, sockets.path());
    let command = launch::compose(&launch::Launch {
        run_script: &built.run_script,
        settings: &settings,
        session_share: &session.share(),
        private_tmp: &session.tmp(),
        module_shares: &module_shares,
        flag_shares: &flag_shares,
        disk_image: disk.image.as_deref(),
        memory_backend: manifest.memory_backend.as_ref(),
        memory_size: manifest.memory_size,
        daemons: &daemons,
        ports: &ports,
        env: &host.env,
    });

    // Run.
    if let Some(signal) = signals::received() {
        return Ok(signals::exit_status(signal));
    }
    let console_log = session.console_log();
    let console = match command_io {
        Some(CommandIo::Ports) => vm::Console::Log(&console_log),
        _ => vm::Console::Terminal,
    };
    let serving = ports::listen(&ports)?.serve()?;
    let mut running = virtiofs::start(
        manifest.mounts.virtiofsd.as_deref(),
        &daemons,
        virtiofs::Owner::current(),
    )?;
    let ended = vm::start(&command, disk.lock(), console)?;
    // A share's daemon that failed is why QEMU did, if it did.
    let daemon_failed = running.failed();
    drop(running);
    serving.finish();
    let qemu_failed = |status| {
        daemon_failed
            .clone()
            .unwrap_or_else(|| vm::failure_hint(status, disk.image.as_deref()))
    };
    let code = match (ended, &settings.command) {
        (vm::Ended::Signalled(signal), _) => signals::exit_status(signal),
        (vm::Ended::Exited(0), None) => 0,
        (vm::Ended::Exited(status), None) => {
            eprintln!("nixos-shell: {}", qemu_failed(status));
            status
        }
        (vm::Ended::Exited(status), Some(_)) => session
            .command_status(status, &qemu_failed(status))
            .inspect_err(|_| console.show_tail(CONSOLE_TAIL_LINES))?,
    };
    drop(disk);
    session.close()?;
    Ok(code)
}
