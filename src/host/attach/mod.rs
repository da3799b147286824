//! `nixos-shell --attach [CONFIG] [-c CMD]`: a session in the VM of CONFIG
//! that already runs, from another terminal or a script: a login shell, or
//! CMD with `--command`'s semantics. No nix runs and nothing is evaluated:
//! CONFIG resolves to the identity that names the configuration's disk
//! image, and the [`registry`] leads from it to the attach socket of the
//! nixos-shell that runs that VM, which relays the [`session`] to the
//! guest (`schema::attach`).
//!
//! The whole feature's host side is here: the [`registry`] a run enters its
//! VM in, the [`relay`] it serves while the VM runs (`host::execute`), and
//! the client's [`session`].

pub mod registry;
pub mod relay;
mod session;

use std::os::unix::net::UnixStream;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::host::nix::Installable;
use crate::host::read::Host;
use crate::host::settings::{Attach, Config};
use crate::host::terminal::{self, terminfo};
use crate::schema::attach::{Request, REQUEST_VERSION};

/// Attaches to the running VM of `installable`: the session's exit status.
pub fn run(installable: &Installable, attach: &Attach, host: &Host) -> Result<u8> {
    let socket = find_running(installable, attach.target.config.as_ref(), host)?;
    session::run(connect(&socket)?, &request(attach, host))
}

/// The registry's entry (the attach socket) of the running VM of
/// `installable`, CONFIG being `config`; one line when none runs.
pub fn find_running(
    installable: &Installable,
    config: Option<&Config>,
    host: &Host,
) -> Result<Utf8PathBuf> {
    let registry = registry::dir(&host.env);
    match registry::find(&registry, &installable.identities())? {
        Some(socket) => Ok(socket),
        None => bail!(
            "no VM of {} is running; start one with `{}`",
            described(config),
            start_command(config)
        ),
    }
}

/// Connects to the attach socket `socket`.
fn connect(socket: &Utf8Path) -> Result<UnixStream> {
    UnixStream::connect(socket).with_context(|| {
        format!("could not reach the VM's nixos-shell at {socket}; it may have just ended")
    })
}

/// Switches the VM at the attach socket `socket` to the system `toplevel`
/// (the guest role's `switch` step, over an attach session with pipes):
/// its output on this process' streams, its exit status.
pub fn switch(socket: &Utf8Path, toplevel: &Utf8Path, host: &Host) -> Result<u8> {
    let request = Request {
        version: REQUEST_VERSION,
        command: None,
        terminal: false,
        cwd: host.cwd.clone(),
        term: None,
        terminfo: None,
        size: None,
        switch: Some(toplevel.to_owned()),
    };
    session::run_with(connect(socket)?, &request, false)
}

/// What this side asks for.
fn request(attach: &Attach, host: &Host) -> Request {
    let term = host.env.get("TERM").cloned();
    Request {
        version: REQUEST_VERSION,
        command: attach.command.clone(),
        terminal: host.interactive,
        cwd: host.cwd.clone(),
        terminfo: term
            .as_deref()
            .and_then(|term| terminfo::find(term, &host.env, &host.home, &terminfo::SYSTEM_DIRS))
            .map(|entry| entry.bytes),
        term,
        size: host.interactive.then(terminal::size).flatten(),
        switch: None,
    }
}

/// CONFIG as the messages name it.
fn described(config: Option<&Config>) -> String {
    match config {
        Some(Config::Given(config) | Config::Flake(config)) => config.clone(),
        None => "this directory".to_owned(),
    }
}

/// The command that starts the VM of CONFIG `config`.
pub fn start_command(config: Option<&Config>) -> String {
    match config {
        Some(Config::Given(config)) => format!("nixos-shell {}", crate::sh::quote(config)),
        Some(Config::Flake(config)) => format!("nixos-shell --flake {}", crate::sh::quote(config)),
        None => "nixos-shell".to_owned(),
    }
}
