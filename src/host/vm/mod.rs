//! The VM: composed as one value from the build, the host and the command
//! line ([`compose`], pure, which `--dry-run` prints too), then run in this
//! terminal ([`run`]).
//!
//! - [`disk`] picks the disk image; [`facts`] the host facts the guest reads
//!   from the [`session`] directory, with the terminfo entry of the host's
//!   terminal beside them; [`ports`] the virtio-serial ports, whose
//!   sockets (and the shares' daemons') are in [`sockets`]; [`command`] the
//!   run script's arguments and environment.
//! - [`launch`] starts QEMU (`host::terminal` saves and restores this
//!   terminal), while the ports are served and the shares' daemons run;
//!   [`attach`] relays `nixos-shell --attach` sessions to the guest.

pub mod attach;
pub mod command;
pub mod disk;
pub mod facts;
pub mod launch;
pub mod ports;
pub mod release;
pub mod session;
pub mod sockets;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::host::attach::registry::{self, Registration};
use crate::host::build::Built;
use crate::host::read::Host;
use crate::host::settings::Settings;
use crate::host::shares::virtiofs::{self, Owner};
use crate::host::shares::{self, Exported, Shares};
use crate::host::signals;
use crate::host::stop::Stop;
use crate::host::terminal::terminfo::Entry;
use crate::schema::facts::{CommandIo, HostFacts, TERMINFO_DIR};
use crate::schema::manifest::Manifest;
use crate::schema::ports::Port;
use command::{Parts, VmCommand};
use facts::{Gathered, RunFacts};
use launch::Console;
use ports::PortSocket;
use session::{Layout, Session};
use sockets::SocketDir;

/// The file name of the attach clients' socket, beside the ports'.
const ATTACH_SOCKET: &str = "attach.sock";

/// How much of the console a command that ended without its status shows.
const CONSOLE_TAIL_LINES: usize = 20;

/// A VM, ready to run.
pub struct Vm {
    pub command: VmCommand,
    pub facts: HostFacts,
    /// The host's terminfo entry for `TERM`, written beside the facts.
    pub terminfo: Option<Entry>,
    pub shares: Exported,
    pub ports: Vec<PortSocket>,
    /// Where QEMU's console goes: the terminal, or a log.
    pub console_log: Option<Utf8PathBuf>,
}

/// What a VM is made of.
pub struct Inputs<'a> {
    pub host: &'a Host,
    pub settings: &'a Settings,
    pub built: &'a Built,
    pub session: &'a Layout,
    /// The shares, exported ([`Shares::export`]).
    pub shares: Exported,
    pub gathered: &'a Gathered,
    /// The ports the run needs ([`needed_ports`]).
    pub ports: &'a [Port],
    pub socket_dir: &'a Utf8Path,
    pub disk_image: Option<&'a Utf8Path>,
}

/// The ports of a run on `host` with `settings` of a build with
/// `manifest`: the resize port when the console is this terminal, the
/// stdio ports when the command's streams are nixos-shell's own, the attach
/// port when the guest serves attaches.
pub fn needed_ports(host: &Host, settings: &Settings, manifest: &Manifest) -> Vec<Port> {
    let command_io = settings.command.as_ref().map(|_| host.command_io());
    ports::needed(command_io, host.terminal, manifest.attach)
}

/// Composes the VM; pure.
pub fn compose(inputs: Inputs) -> Vm {
    let (host, settings, manifest) = (inputs.host, inputs.settings, &inputs.built.result.manifest);
    let exported = inputs.shares;
    let ports = ports::sockets(inputs.ports, inputs.socket_dir);
    let command = command::compose(&Parts {
        run_script: &inputs.built.result.run_script,
        manifest,
        settings,
        env: &host.env,
        session: inputs.session,
        shares: &exported,
        socket_dir: inputs.socket_dir,
        ports: &ports,
        disk_image: inputs.disk_image,
    });
    let host_system = settings.host_system.as_deref().unwrap_or(&host.system);
    let facts = facts::compose(
        host,
        manifest,
        host_system,
        inputs.gathered,
        RunFacts {
            mounts: exported.guest_mounts.clone(),
            ports: inputs.ports,
            command: settings.command.clone(),
        },
    );
    let console_log = (facts.command.is_some() && facts.command_io == CommandIo::Ports)
        .then(|| inputs.session.console_log());
    Vm {
        command,
        facts,
        terminfo: inputs.gathered.terminfo.clone(),
        shares: exported,
        ports,
        console_log,
    }
}

/// Runs the VM of `built` in this terminal, in `session`; nixos-shell's
/// exit status.
pub fn run(host: &Host, settings: &Settings, built: &Built, session: Session) -> Result<u8> {
    let manifest = &built.result.manifest;
    let gathered = Gathered::read(host);
    let shares = Shares::collect(
        manifest,
        &host.home,
        gathered.nix_profile.as_deref(),
        &settings.mounts,
        settings.no_home,
    )?;
    for note in shares::store_copy_notes(&shares) {
        eprintln!("nixos-shell: {note}");
    }
    let disk = disk::choose(
        &host.env,
        &settings.disk,
        manifest.disk_image.as_deref(),
        &manifest.name,
        &built.identity,
        session.ephemeral_image(&manifest.name),
    )?;
    if let Some(image) = &disk.image {
        if let Some(line) = release::check(image, manifest.state_version.as_deref()) {
            eprintln!("nixos-shell: {line}");
        }
    }
    session.prepare_vm()?;
    let ports = needed_ports(host, settings, manifest);
    let exported = shares.export();
    let port_names = ports.iter().map(|&port| ports::socket_name(port));
    let attach_socket = ports
        .contains(&Port::Attach)
        .then_some(ATTACH_SOCKET.to_owned());
    let sockets = SocketDir::create(
        &session.sockets(),
        exported
            .socket_names()
            .chain(port_names)
            .chain(attach_socket),
    )?;
    let vm = compose(Inputs {
        host,
        settings,
        built,
        session: &session,
        shares: exported,
        gathered: &gathered,
        ports: &ports,
        socket_dir: sockets.path(),
        disk_image: disk.image.as_deref(),
    });
    // Attachable from the moment QEMU starts: a client that comes while
    // the VM boots waits for the guest's attach server.
    let attachable = if ports.contains(&Port::Attach) {
        let socket = sockets.path().join(ATTACH_SOCKET);
        let clients = attach::listen(&socket)?;
        let entry = registry::register(&registry::dir(&host.env), &built.identity, &socket)?;
        Some((clients, entry))
    } else {
        None
    };
    let code = execute(&vm, &session, &disk, sockets.path(), attachable)?;
    drop(disk);
    session.close()?;
    Ok(code)
}

/// Runs a composed VM: the facts written, the ports served, the daemons
/// started, QEMU in this terminal; then everything stopped. The exit
/// status: QEMU's, or with a command the command's.
fn execute(
    vm: &Vm,
    session: &Session,
    disk: &disk::Disk,
    socket_dir: &Utf8Path,
    attachable: Option<(attach::Clients, Registration)>,
) -> Result<u8> {
    // The entry lasts as long as the VM runs, and goes with this function.
    let (clients, _entry) = attachable.unzip();
    if let Some(entry) = &vm.terminfo {
        entry.install(&session.share().join(TERMINFO_DIR))?;
    }
    session.write_facts(&vm.facts)?;
    if let Some(signal) = signals::received() {
        return Ok(Stop::Signal(signal).exit_status());
    }
    let console = match &vm.console_log {
        Some(log) => Console::Log(log),
        None => Console::Terminal,
    };
    let serving = ports::listen(&vm.ports)?.serve(clients)?;
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
        (Err(Stop::Signal(signal)), _) => Stop::Signal(signal).exit_status(),
        (Ok(()), None) => 0,
        (Err(Stop::Status(status)), None) => {
            eprintln!("nixos-shell: {}", qemu_failed(status));
            status
        }
        (ended, Some(_)) => {
            let failed = ended.err().map(|stop| qemu_failed(stop.exit_status()));
            session
                .command_status(failed)
                .inspect_err(|_| console.show_tail(CONSOLE_TAIL_LINES))?
        }
    })
}
