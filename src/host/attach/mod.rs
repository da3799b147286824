//! `nixos-shell --attach [CONFIG] [-c CMD]`: a session in the VM of CONFIG
//! that already runs, from another terminal or a script: a login shell, or
//! CMD with `--command`'s semantics. No nix runs and nothing is evaluated:
//! CONFIG resolves to the identity that names the configuration's disk
//! image, and the [`registry`] leads from it to the attach socket of the
//! nixos-shell that runs that VM, which relays the [`session`] to the
//! guest (`schema::attach`).
//!
//! The whole feature's host side is here: the [`registry`] a run enters its
//! VM in, the [`relay`] it serves while the VM runs (`host::execute`), the
//! client's [`session`], and the requests a client makes of the VM's
//! holder itself ([`holder`]: `--stop`), `--list` ([`list`]) and the
//! console of a detached VM ([`console`]: `--attach --console`). [`running`] finds the VM of a
//! CONFIG for every mode that acts on one.

pub mod console;
pub mod holder;
pub mod list;
pub mod registry;
pub mod relay;
mod session;

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use crate::host::nix;
use crate::host::read::Host;
use crate::host::settings::{Attach, Config, Target};
use crate::host::signals;
use crate::host::stop::Stop;
use crate::host::terminal::{self, terminfo};
use crate::schema::attach::{
    Decoder, Frame, HolderRequest, Kind, Request, SwitchFrom, REQUEST_VERSION,
};
use crate::schema::facts::GUEST_SWITCH_DIR;
use registry::Entry;

/// The entry of the running VM of `target`, found without nix: CONFIG
/// resolves to the identities that name its disk image, and the registry
/// leads from them to the VM's holder. Every mode that acts on a running
/// VM asks here, so that all answer a missing VM with the same line.
pub fn running(target: &Target, host: &Host) -> Result<Entry> {
    let config = target.config.as_ref();
    let installable = nix::resolve(config, &host.cwd)?;
    let registry = registry::dir(&host.env);
    match registry::find(&registry, &installable.identities())? {
        Some(entry) => Ok(entry),
        None => bail!(
            "no VM of {} is running; start one with `{}`",
            described(config),
            start_command(config)
        ),
    }
}

/// Connects to the holder of the VM of `entry`.
pub fn connect(entry: &Entry) -> Result<UnixStream> {
    let socket = &entry.socket;
    UnixStream::connect(socket).with_context(|| {
        format!("could not reach the VM's nixos-shell at {socket}; it may have just ended")
    })
}

/// Attaches to the running VM of `attach`'s CONFIG: the session's exit
/// status.
pub fn run(attach: &Attach, host: &Host) -> Result<u8> {
    let stream = connect(&running(&attach.target, host)?)?;
    session::run(stream, &request(attach, host))
}

/// How long a `--switch` whose session was lost waits for the guest's
/// attach server to come back: its unit restarts it at once (the
/// module's `Restart=on-failure`, or the switch's own restart), within
/// seconds even under TCG.
const SWITCH_COMEBACK: Duration = Duration::from_secs(120);

/// Switches the VM of `entry` to the system `toplevel` (the guest role's
/// `switch` step, over an attach session with pipes): its output on this
/// process' streams, its exit status. The activation outlives the session
/// (the guest records its output and status, `guest::linux::switch`): a
/// session lost halfway, when the switch restarted the guest's attach
/// server, is opened again once the server is back (the holder says when,
/// [`await_server`]), and follows the same activation from the bytes this
/// side has.
pub fn switch(
    entry: &Entry,
    toplevel: &Utf8Path,
    registration: Option<&Utf8Path>,
    host: &Host,
) -> Result<u8> {
    let mut from = SwitchFrom {
        id: switch_id(),
        ..SwitchFrom::default()
    };
    let mut lost_since: Option<Instant> = None;
    loop {
        let request = Request {
            version: REQUEST_VERSION,
            command: None,
            terminal: false,
            cwd: host.cwd.clone(),
            term: None,
            terminfo: None,
            size: None,
            switch: Some(toplevel.to_owned()),
            switch_from: Some(from.clone()),
            switch_registration: registration.map(Utf8Path::to_owned),
        };
        let mut delivered = session::Delivered {
            stdout: from.stdout,
            stderr: from.stderr,
        };
        let ended = session::run_counting(connect(entry)?, &request, false, &mut delivered);
        let lost = match ended {
            Ok(code) => return Ok(code),
            Err(err) => err.downcast::<session::Lost>()?,
        };
        // A session that delivered something was up: the wait starts anew.
        if (delivered.stdout, delivered.stderr) != (from.stdout, from.stderr) {
            (from.stdout, from.stderr) = (delivered.stdout, delivered.stderr);
            lost_since = None;
        }
        let since = match lost_since {
            Some(since) => since,
            None => {
                eprintln!(
                    "nixos-shell: {lost}; following the switch again once the VM's attach server is back"
                );
                *lost_since.insert(Instant::now())
            }
        };
        if !await_server(entry, since + SWITCH_COMEBACK)? {
            bail!(
                "the VM's attach server did not come back within {} s, so the switch's status is unknown \
                 (in the VM: {GUEST_SWITCH_DIR}/{}/status)",
                SWITCH_COMEBACK.as_secs(),
                from.id
            );
        }
    }
}

/// Waits until the holder of `entry` says the guest's attach server is up
/// ([`HolderRequest::AwaitServer`]: its relay sees the server's hello),
/// in poll(2) on the socket and the caught signals, until `deadline`:
/// `false` once that passed.
fn await_server(entry: &Entry, deadline: Instant) -> Result<bool> {
    let mut stream = connect(entry)?;
    stream
        .write_all(&Frame::json(Kind::Holder, 0, &HolderRequest::AwaitServer).encode())
        .context("could not reach the VM's nixos-shell; it may have just ended")?;
    let mut decoder = Decoder::default();
    loop {
        if !wait_readable(stream.as_fd(), Some(deadline))? {
            return Ok(false);
        }
        match decoder.read_from(&stream) {
            Ok(0) => bail!(
                "the VM's nixos-shell ended, or cannot say when the VM's attach server is back \
                 (it is older than this one), so the switch's status is unknown"
            ),
            Ok(_) | Err(Errno::INTR | Errno::AGAIN) => {}
            Err(err) => return Err(err).context("could not read from the VM's nixos-shell"),
        }
        while let Some(frame) = decoder.next_frame().map_err(|_| {
            anyhow::anyhow!("the VM's nixos-shell sent what this one cannot read; use the same nixos-shell for both")
        })? {
            match frame.kind {
                Kind::Hello => return Ok(true),
                Kind::VmEnded => bail!("the VM ended, and the switch with it"),
                // The server is lost for now (said at once to every
                // client): the answer comes when it is back.
                _ => {}
            }
        }
    }
}

/// Sleeps until `fd` reads as ready (`true`) or `deadline` passes
/// (`false`), on no timer; a signal that ends a session ends the wait with
/// that signal's stop.
pub(crate) fn wait_readable(fd: BorrowedFd, deadline: Option<Instant>) -> Result<bool> {
    let wake = signals::wake_fd();
    loop {
        let left = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        if left.is_some_and(|left| left.is_zero()) {
            return Ok(false);
        }
        let timeout = left.map(|left| Timespec {
            tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: left.subsec_nanos().into(),
        });
        let mut fds = vec![PollFd::new(&fd, PollFlags::IN)];
        if let Some(wake) = &wake {
            fds.push(PollFd::new(wake, PollFlags::IN));
        }
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(err) => return Err(err).context("could not wait for the VM's nixos-shell"),
        }
        let ready = !fds[0].revents().is_empty();
        drop(fds);
        if let Some(&signal) = signals::take().last() {
            return Err(Stop::Signal(signal).into());
        }
        if ready {
            return Ok(true);
        }
    }
}

/// A name for one activation, unique among this host's switches of the
/// VM: this process and the time.
fn switch_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{}-{nanos}", std::process::id())
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
        switch_from: None,
        switch_registration: None,
    }
}

/// CONFIG as the messages name it.
pub fn described(config: Option<&Config>) -> String {
    match config {
        Some(Config::Given(config) | Config::Flake(config)) => config.clone(),
        None => "this directory".to_owned(),
    }
}

/// CONFIG as the flags that name it again after another flag, with a
/// leading space: ` '.#vm'`, ` --flake .`, or nothing.
pub fn described_as_flag(config: Option<&Config>) -> String {
    match start_command(config).strip_prefix("nixos-shell") {
        Some(rest) => rest.to_owned(),
        None => String::new(),
    }
}

/// The command that starts the VM a mode looked for.
pub fn start_command(config: Option<&Config>) -> String {
    match config {
        Some(Config::Given(config)) => format!("nixos-shell {}", crate::sh::quote(config)),
        Some(Config::Flake(config)) => format!("nixos-shell --flake {}", crate::sh::quote(config)),
        None => "nixos-shell".to_owned(),
    }
}
