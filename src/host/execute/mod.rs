//! A plan executed: the builds run, then the VM composed from their result
//! (`compose::VmRecipe::compose`) runs in this terminal. Everything here
//! touches the machine: the [`session`] directory and its [`sockets`], the
//! [`disk`] image and its lock (and the [`release`] it was made with), the served [`ports`] and the shares'
//! daemons (their threads and poll loops), and QEMU itself ([`launch`];
//! `host::terminal` saves and restores this terminal), with the attach
//! relay (`attach::relay`) while it runs. A run is one or more boots: a
//! `--switch --restart` ends one and the run starts the next from the new
//! build (`run` loops over [`boot`]), keeping what outlives a boot (the
//! session, the disk and its lock, the attach socket and registry entry).

pub mod disk;
pub mod host_nix;
pub mod launch;
pub mod ports;
pub mod release;
pub mod session;
pub mod sockets;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use anyhow::{bail, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::host::attach;
use crate::host::attach::registry::{self, Registration, VmInfo};
use crate::host::attach::relay;
use crate::host::compose::ports::socket_name;
use crate::host::compose::{Found, Plan, Vm, VmRecipe};
use crate::host::gather::Gathered;
use crate::host::nix::{Builds, Built, Identity};
use crate::host::settings::disk::DiskChoice;
use crate::host::shares::virtiofs::{self, Owner};
use crate::host::shares::{self, Exported, Shares};
use crate::host::signals;
use crate::host::stop::Stop;
use crate::schema::facts::TERMINFO_DIR;
use crate::schema::manifest::Manifest;
use crate::schema::ports::Port;
use launch::Console;
use session::Session;
use sockets::SocketDir;

/// The file name of the attach clients' socket, beside the ports'.
const ATTACH_SOCKET: &str = "attach.sock";

/// How much of the console a command that ended without its status shows.
const CONSOLE_TAIL_LINES: usize = 20;

/// What a detached VM's holder runs with: the pipe the nixos-shell that
/// detached it waits on until the guest answers, and the console's log
/// that nixos-shell chose for it (`host::detach`).
pub struct Holding {
    pub ready: OwnedFd,
    pub console_log: Utf8PathBuf,
}

/// Executes `plan`, made with the layout of `session`: builds, then runs
/// the VM in this terminal, or as a detached VM's holder with `holding`;
/// nixos-shell's exit status. A `--switch --restart` that comes while the
/// VM runs ends this boot and starts the next one here, from the build it
/// names: the same session, disk image and run-time settings, and the
/// same terminal or log ([`boot`] is one boot).
pub fn run(plan: &Plan, session: Session, holding: Option<Holding>) -> Result<u8> {
    let Some(recipe) = &plan.vm else {
        bail!("a plan without a VM reached the run; report this");
    };
    let mut built = plan.builds.realise()?;
    let manifest = &built.result.manifest;
    let disk = disk::choose(
        &recipe.host.env,
        &recipe.run.vm.disk,
        manifest.disk_image.as_deref(),
        &manifest.name,
        &built.identity,
        session.ephemeral_image(&manifest.name),
    )?;
    let state_image = disk::state_dir(&recipe.host.env)
        .map(|dir| dir.join(disk::state_image_name(&manifest.name, &built.identity)));
    let config = recipe.run.build.config.as_ref();
    let reset = (disk.image.is_some() && disk.image == state_image)
        .then(|| format!("nixos-shell --reset{}", attach::described_as_flag(config)));
    if let Some(line) = disk.image.as_deref().and_then(|image| {
        release::check(image, manifest.state_version.as_deref(), reset.as_deref())
    }) {
        eprintln!("nixos-shell: {line}");
    }
    session.prepare_vm()?;
    let console_log = holding.as_ref().map(|holding| holding.console_log.clone());
    let mut held = None;
    let mut waiter = holding.map(|holding| relay::Waiter::Pipe(holding.ready));
    let code = loop {
        let ended = boot(
            recipe,
            &built,
            &session,
            &disk,
            console_log.as_deref(),
            &mut held,
            waiter.take(),
        )?;
        let restart = match ended {
            Ended::Status(code) => break code,
            Ended::Restart(restart) => restart,
        };
        eprintln!(
            "nixos-shell: the VM powered off; starting it again from {}",
            restart.build
        );
        let next = Builds::Ready {
            result: restart.build.clone(),
            identity: built.identity.clone(),
        };
        match next.realise() {
            Ok(next) => built = next,
            Err(err) => {
                relay::refuse(restart.client, &format!("the VM did not restart: {err:#}"));
                return Err(err);
            }
        }
        waiter = Some(relay::Waiter::Client(restart.client));
    };
    drop(held);
    drop(disk);
    session.close()?;
    Ok(code)
}

/// What outlives one boot of the VM: its sockets' directory, and the
/// attach clients' socket with the registry's entry for it (so that a
/// client finds the VM across a restart, and the build `--switch` keeps
/// beside the entry stays kept).
struct Held {
    sockets: SocketDir,
    attach: Option<(relay::Listener, Registration)>,
}

/// How one boot ended.
enum Ended {
    /// The VM ended: nixos-shell's exit status.
    Status(u8),
    /// `--switch --restart` powered it off, to start again from a build.
    Restart(relay::Restart),
}

/// One boot of the VM of `built`: composed, served, run until QEMU ends.
/// The first boot makes what is `held` across boots; `waiter` is told
/// when the guest answers.
fn boot(
    recipe: &VmRecipe,
    built: &Built,
    session: &Session,
    disk: &disk::Disk,
    console_log: Option<&Utf8Path>,
    held: &mut Option<Held>,
    waiter: Option<relay::Waiter>,
) -> Result<Ended> {
    let manifest = &built.result.manifest;
    let gathered = Gathered::read(recipe.host);
    let shares = recipe.shares(manifest, &gathered)?;
    for note in shares::store_copy_notes(&shares) {
        eprintln!("nixos-shell: {note}");
    }
    let info = vm_info(recipe, manifest, &shares, disk, console_log);
    let exported = shares.export();
    let ports = recipe.ports(manifest, &gathered);
    let names = socket_names(&exported, &ports);
    let held = hold(held, recipe, built, session, &ports, &names, &info)?;
    let socket_dir = held.sockets.path().to_owned();
    let vm = recipe.compose(
        built,
        Found {
            gathered: &gathered,
            shares: exported,
            disk_image: disk.image.as_deref(),
            socket_dir: &socket_dir,
        },
    );
    // A restart would run the command again: refused by the relay.
    let restarts: Option<relay::RestartSlot> = vm.facts.command.is_none().then(Default::default);
    let clients = attach_clients(held, &ports, waiter, &restarts)?;
    let code = execute(&vm, session, disk, &socket_dir, clients, console_log);
    remove_boot_sockets(&socket_dir, &names);
    ended(code, restarts)
}

/// What the registry says of this boot of the VM of `manifest`.
fn vm_info(
    recipe: &VmRecipe,
    manifest: &Manifest,
    shares: &Shares,
    disk: &disk::Disk,
    console_log: Option<&Utf8Path>,
) -> VmInfo {
    VmInfo {
        name: manifest.name.clone(),
        config: attach::described(recipe.run.build.config.as_ref()),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        detached: console_log.is_some(),
        disk_image: disk.image.clone(),
        forwards: recipe
            .run
            .vm
            .forwards
            .iter()
            .map(ToString::to_string)
            .collect(),
        shares: shares.described(),
        console_log: console_log.map(Utf8Path::to_owned),
        sessions: 0,
    }
}

/// What this boot keeps across boots: made on the first (the sockets'
/// directory for `names`, the attach clients' socket and the registry's
/// entry with `info`), checked against `names` and updated with `info`
/// on a later one.
fn hold<'a>(
    held: &'a mut Option<Held>,
    recipe: &VmRecipe,
    built: &Built,
    session: &Session,
    ports: &[Port],
    names: &[String],
    info: &VmInfo,
) -> Result<&'a mut Held> {
    Ok(match held {
        Some(held) => {
            held.sockets.check(names)?;
            if let Some((_, entry)) = &held.attach {
                entry.update(&built.result.path, info)?;
            }
            held
        }
        None => {
            let sockets = SocketDir::create(&session.sockets(), names)?;
            let attach = attachable(recipe, built, ports, sockets.path(), info)?;
            held.insert(Held { sockets, attach })
        }
    })
}

/// The attach clients this boot serves, when the guest has the attach
/// port; without it a `waiter` would never be told the guest is up.
fn attach_clients(
    held: &Held,
    ports: &[Port],
    waiter: Option<relay::Waiter>,
    restarts: &Option<relay::RestartSlot>,
) -> Result<Option<relay::Clients>> {
    Ok(match (&held.attach, ports.contains(&Port::Attach)) {
        (Some((listener, entry)), true) => {
            let mut clients = listener.clients(waiter, restarts.clone());
            clients.count_in(entry.session_count());
            Some(clients)
        }
        _ => {
            if waiter.is_some() {
                bail!(
                    "the VM's guest does not answer on nixos-shell's channel, so nixos-shell cannot \
                     tell when it is up; include the nixos-shell module in the configuration"
                );
            }
            None
        }
    })
}

/// Removes this boot's sockets of `names` from `socket_dir`.
fn remove_boot_sockets(socket_dir: &Utf8Path, names: &[String]) {
    // The next boot binds its own: the ports' and the daemons' sockets go
    // with this one (the attach clients' stays).
    for name in names.iter().filter(|name| *name != ATTACH_SOCKET) {
        let _ = std::fs::remove_file(socket_dir.join(name));
    }
}

/// How the boot whose QEMU ended with `code` ended: a restart when one
/// was asked for in its `restarts` slot.
fn ended(code: Result<u8>, restarts: Option<relay::RestartSlot>) -> Result<Ended> {
    let restart = restarts.and_then(|slot| slot.lock().ok().and_then(|mut slot| slot.take()));
    match (code, restart) {
        // Powered off for the restart, whatever QEMU made of it.
        (Ok(_), Some(restart)) => Ok(Ended::Restart(restart)),
        (code, _) => code.map(Ended::Status),
    }
}

/// Where a detached VM's console (and its holder's messages) should go:
/// beside its disk image ([`console_log_place`]), else in the session.
/// `host::detach` takes it unless another running VM writes it.
pub fn detached_console_log(
    env: &BTreeMap<String, String>,
    name: &str,
    identity: &Identity,
    disk: &DiskChoice,
    session: &Session,
) -> Utf8PathBuf {
    let (dir, log) = console_log_place(env, name, identity, disk);
    match dir {
        Some(dir) if std::fs::create_dir_all(&dir).is_ok() => dir.join(log),
        _ => session.root().join(log),
    }
}

/// The directory and file name of a detached VM's console log; pure. A
/// `--disk PATH` image has `PATH.console.log` beside it; the configuration's
/// image in the state directory has `<name>-<key>.console.log`, named as it
/// is, and so has an `--ephemeral` VM, whose image is not kept (nor would
/// a log in the session be, which goes with the VM). No directory: no
/// state directory (neither `XDG_STATE_HOME` nor `HOME`).
fn console_log_place(
    env: &BTreeMap<String, String>,
    name: &str,
    identity: &Identity,
    disk: &DiskChoice,
) -> (Option<Utf8PathBuf>, String) {
    const SUFFIX: &str = ".console.log";
    if let DiskChoice::Given(given) = disk {
        if let (Some(dir), Some(file)) = (given.path.parent(), given.path.file_name()) {
            return (Some(dir.to_owned()), format!("{file}{SUFFIX}"));
        }
    }
    let image = disk::state_image_name(name, identity);
    let log = format!("{}{SUFFIX}", image.trim_end_matches(".qcow2"));
    (disk::state_dir(env), log)
}

/// The file names of the run's sockets: the shares' daemons', the ports',
/// the attach clients'.
fn socket_names(shares: &Exported, ports: &[Port]) -> Vec<String> {
    let attach = ports
        .contains(&Port::Attach)
        .then(|| ATTACH_SOCKET.to_owned());
    shares
        .socket_names()
        .chain(ports.iter().map(|&port| socket_name(port)))
        .chain(attach)
        .collect()
}

/// The attach clients' socket and the registry's entry for it, when the
/// guest serves attaches: attachable from the moment QEMU starts, since a
/// client that comes while the VM boots waits for the guest's server.
fn attachable(
    recipe: &VmRecipe,
    built: &Built,
    ports: &[Port],
    socket_dir: &Utf8Path,
    info: &VmInfo,
) -> Result<Option<(relay::Listener, Registration)>> {
    if !ports.contains(&Port::Attach) {
        return Ok(None);
    }
    let socket = socket_dir.join(ATTACH_SOCKET);
    let listener = relay::listen(&socket)?;
    let registry = registry::dir(&recipe.host.env);
    let entry = registry::register(
        &registry,
        &built.identity,
        &socket,
        &built.result.path,
        info,
    )?;
    Ok(Some((listener, entry)))
}

/// Runs a composed VM: the facts written, the ports served, the daemons
/// started, QEMU in this terminal; then everything stopped. The exit
/// status: QEMU's, or with a command the command's.
fn execute(
    vm: &Vm,
    session: &Session,
    disk: &disk::Disk,
    socket_dir: &Utf8Path,
    clients: Option<relay::Clients>,
    detached_log: Option<&Utf8Path>,
) -> Result<u8> {
    if let Some(entry) = &vm.terminfo {
        entry.install(&session.share().join(TERMINFO_DIR))?;
    }
    session.write_facts(&vm.facts)?;
    if let Some(signal) = signals::received() {
        return Err(Stop::Signal(signal).into());
    }
    let console = match (detached_log, &vm.console_log) {
        (Some(log), _) => Console::Detached(log),
        (None, Some(log)) => Console::Log(log),
        (None, None) => Console::Terminal,
    };
    let stopped = clients.as_ref().map(relay::Clients::stopped);
    let serving = ports::listen(&vm.ports)?.serve(clients, vm.host_nix_daemon.clone())?;
    let mut running = virtiofs::start(
        vm.shares.virtiofsd.as_deref(),
        &vm.shares.daemons,
        socket_dir,
        Owner::current(),
    )?;
    let ended = launch::start(&vm.command, disk.lock(), console)?;
    // A share's daemon that failed is why QEMU did, if it did.
    let daemon_failed = running.failed();
    drop(running);
    serving.finish();
    let qemu_failed = |status| {
        daemon_failed
            .clone()
            .unwrap_or_else(|| launch::failure_hint(status, disk.image.as_deref()))
    };
    Ok(match (ended, &vm.facts.command) {
        (Some(stop @ Stop::Signal(_)), _) => return Err(stop.into()),
        (None, None) => 0,
        (Some(Stop::Status(status)), None) => {
            eprintln!("nixos-shell: {}", qemu_failed(status));
            status
        }
        // `--stop` powered the VM off before the command ended: as after
        // a `poweroff`, which the user asked for, said in one line.
        (_, Some(_))
            if stopped.as_ref().is_some_and(relay::Stopped::get) && !session.command_reported() =>
        {
            eprintln!(
                "nixos-shell: the VM was stopped (nixos-shell --stop) before the command ended"
            );
            0
        }
        (ended, Some(_)) => {
            let failed = ended.map(|stop| qemu_failed(stop.exit_status()));
            session
                .command_status(failed)
                .inspect_err(|_| console.show_tail(CONSOLE_TAIL_LINES))?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::settings::disk::DiskFlag;
    use crate::host::test_data::env;

    #[test]
    fn a_detached_consoles_log_lies_beside_its_disk_image() {
        let env = env(&[("HOME", "/home/u")]);
        let identity = Identity::new("/p#vm");
        let key = identity.key();
        let place = |disk: &DiskChoice| console_log_place(&env, "vm", &identity, disk);
        let state = Some(Utf8PathBuf::from("/home/u/.local/state/nixos-shell"));
        assert_eq!(
            place(&DiskChoice::Default),
            (state.clone(), format!("vm-{key}.console.log"))
        );
        // No image is kept: the log stays where the state image's would be.
        assert_eq!(
            place(&DiskChoice::Ephemeral),
            (state, format!("vm-{key}.console.log"))
        );
        let given = DiskChoice::Given(DiskFlag {
            spec: "../d/my.qcow2".to_owned(),
            path: "/w/d/my.qcow2".into(),
        });
        assert_eq!(
            place(&given),
            (Some("/w/d".into()), "my.qcow2.console.log".to_owned())
        );
        assert_eq!(
            console_log_place(&BTreeMap::new(), "vm", &identity, &DiskChoice::Default).0,
            None
        );
    }
}
