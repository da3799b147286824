//! What a run will do, as one value composed before anything runs: the
//! [`Plan`]. Pure: `--dry-run` prints a plan, a run executes it
//! (`host::execute`), and tests compare plans by equality.
//!
//! A plan holds the nix builds (`host::nix`) and, for a run, what composes
//! the VM once they have built ([`VmRecipe::compose`]): the run script's
//! arguments and environment ([`command`]), the host facts the guest reads
//! ([`facts`]), the shares and their daemons (`host::shares`), the
//! virtio-serial ports ([`ports`]), the disk image ([`disk`]), all under
//! the run's files ([`layout`]).
//!
//! The modes to come plan here too: a run that starts its VM detached is a
//! run's plan whose console is a log; one that builds and then acts on a
//! running VM is [`Plan::build_only`]'s builds beside the VM it names (as
//! `--attach` finds one, by the plan's [`Identity`]).

pub mod command;
pub mod disk;
pub mod facts;
pub mod host_nix;
pub mod layout;
pub mod ports;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::host::gather::Gathered;
use crate::host::nix::{self, Builds, Built, Identity, Request};
use crate::host::read::Host;
use crate::host::settings::{Build, Run};
use crate::host::shares::{Exported, Shares};
use crate::host::terminal::terminfo::Entry;
use crate::schema::facts::{CommandIo, HostFacts};
use crate::schema::manifest::Manifest;
use crate::schema::ports::Port;
use command::{Parts, VmCommand};
use disk::DiskPlan;
use facts::RunFacts;
use host_nix::HostNix;
use layout::Layout;
use ports::PortSocket;

/// What an invocation will do, before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a> {
    /// What names the configuration (its disk image, its running VM).
    pub identity: Identity,
    /// The builds that realise it.
    pub builds: Builds,
    /// What the VM is composed from once they have built; `None` for a
    /// build alone.
    pub vm: Option<VmRecipe<'a>>,
}

/// What a run's VM is composed from, besides the build's result and what
/// the machine holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRecipe<'a> {
    pub run: &'a Run,
    pub host: &'a Host,
    /// Where the run's files go.
    pub layout: Layout,
}

/// A VM, composed: what `host::execute` starts and `--dry-run` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    pub command: VmCommand,
    pub facts: HostFacts,
    /// The host's terminfo entry for `TERM`, written beside the facts.
    pub terminfo: Option<Entry>,
    pub shares: Exported,
    pub ports: Vec<PortSocket>,
    /// The host's nix-daemon that serves the host-nix port, when the run
    /// relays the guest's nix to it.
    pub host_nix_daemon: Option<Utf8PathBuf>,
    /// Where QEMU's console goes: the terminal, or a log.
    pub console_log: Option<Utf8PathBuf>,
}

/// What the run found once built, that the VM's composition takes.
pub struct Found<'a> {
    /// What the facts take from the machine.
    pub gathered: &'a Gathered,
    /// The shares, exported ([`Shares::export`]).
    pub shares: Exported,
    /// `NIX_DISK_IMAGE` to set, if any.
    pub disk_image: Option<&'a Utf8Path>,
    /// Where the daemons' and the ports' sockets are.
    pub socket_dir: &'a Utf8Path,
}

impl<'a> Plan<'a> {
    /// The builds of `build` alone (`--build-only`): kept at `--out-link`,
    /// or nowhere.
    pub fn build_only(build: &Build, host: &Host) -> Result<Plan<'a>> {
        let installable = nix::resolve(build.config.as_ref(), &host.cwd)?;
        let request = Request::new(&installable, build, host);
        Ok(Plan {
            identity: installable.identity(),
            builds: request.builds(build.out_link.as_deref())?,
            vm: None,
        })
    }

    /// The run of `run` on `host`, its files under `layout`: the builds
    /// kept at `--out-link`, else in the session while the VM runs.
    pub fn run(run: &'a Run, host: &'a Host, layout: Layout) -> Result<Plan<'a>> {
        let installable = nix::resolve(run.build.config.as_ref(), &host.cwd)?;
        let request = Request::new(&installable, &run.build, host);
        let out_link = run
            .build
            .out_link
            .clone()
            .unwrap_or_else(|| layout.out_link());
        Ok(Plan {
            identity: installable.identity(),
            builds: request.builds(Some(&out_link))?,
            vm: Some(VmRecipe { run, host, layout }),
        })
    }
}

impl VmRecipe<'_> {
    /// The shares of a VM of `manifest`, `gathered` saying where the nix
    /// profile is; checked.
    pub fn shares(&self, manifest: &Manifest, gathered: &Gathered) -> Result<Shares> {
        Shares::collect(
            manifest,
            &self.host.home,
            gathered.nix_profile.as_deref(),
            &self.run.vm.mounts,
            self.run.vm.no_home,
        )
    }

    /// The disk image a VM of `manifest` gets, before any file is touched.
    pub fn disk(&self, manifest: &Manifest) -> DiskPlan {
        let image = manifest.disk_image.as_deref();
        disk::plan(&self.host.env, &self.run.vm.disk, image)
    }

    /// The ports of a VM of `manifest`: the resize port when the console is
    /// this terminal, the stdio ports when the command's streams are
    /// nixos-shell's own, the attach port when the guest serves attaches.
    pub fn ports(&self, manifest: &Manifest, gathered: &Gathered) -> Vec<Port> {
        let command_io = self.run.vm.command.as_ref().map(|_| self.host.command_io());
        let relay = matches!(self.host_nix(manifest, gathered), HostNix::Relay(_));
        ports::needed(command_io, self.host.terminal, manifest.attach, relay)
    }

    /// What the guest's nix of a VM of `manifest` gets: the host's daemon
    /// `gathered` found, unless the build or `--no-host-nix` says no.
    pub fn host_nix(&self, manifest: &Manifest, gathered: &Gathered) -> HostNix {
        host_nix::decide(
            manifest,
            self.run.vm.no_host_nix,
            gathered.nix_daemon.as_deref(),
        )
    }

    /// Composes the VM of `built` with what the run `found`.
    pub fn compose(&self, built: &Built, found: Found) -> Vm {
        let (host, run, manifest) = (self.host, self.run, &built.result.manifest);
        let needed = self.ports(manifest, found.gathered);
        let host_nix = self.host_nix(manifest, found.gathered);
        let ports = ports::sockets(&needed, found.socket_dir);
        let command = command::compose(&Parts {
            run_script: &built.result.run_script,
            manifest,
            settings: &run.vm,
            env: &host.env,
            session: &self.layout,
            shares: &found.shares,
            socket_dir: found.socket_dir,
            ports: &ports,
            disk_image: found.disk_image,
        });
        let host_system = run.build.host_system.as_deref().unwrap_or(&host.system);
        let run_facts = RunFacts {
            mounts: found.shares.guest_mounts.clone(),
            ports: &needed,
            command: run.vm.command.clone(),
            host_nix_note: match &host_nix {
                HostNix::Own(note) => note.map(str::to_owned),
                HostNix::Relay(_) => None,
            },
        };
        let facts = facts::compose(host, manifest, host_system, found.gathered, run_facts);
        let console_log = (facts.command.is_some() && facts.command_io == CommandIo::Ports)
            .then(|| self.layout.console_log());
        Vm {
            command,
            facts,
            terminfo: found.gathered.terminfo.clone(),
            shares: found.shares,
            ports,
            host_nix_daemon: match host_nix {
                HostNix::Relay(daemon) => Some(daemon),
                HostNix::Own(_) => None,
            },
            console_log,
        }
    }
}
