//! What a client asks of the nixos-shell that holds a running VM (the
//! holder, in the foreground of a terminal or detached) itself, rather
//! than of a session in the guest: a [`HolderRequest`] in a
//! [`Kind::Holder`] frame on the holder's attach socket, which its relay
//! handles (`relay`) and never passes to the guest.
//!
//! `--stop` asks the holder to stop its VM and then waits for the holder's
//! process to be gone, on a pidfd in poll(2): no timer, and the holder
//! goes last (after QEMU and its daemons), so that once it is gone,
//! everything is.
//!
//! `--switch --restart` asks the holder to start its VM again from a new
//! build ([`restart`]) and waits on the same connection for the holder's
//! answer: the new guest's hello, or one line why not.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use rustix::io::Errno;
use rustix::process::{pidfd_open, Pid, PidfdFlags};

use super::registry::Entry;
use crate::schema::attach::{Decoder, Frame, HolderRequest, Kind};

/// `--stop`: asks the holder of `entry` to stop its VM and waits until it
/// is gone; 0 then.
pub fn stop(entry: &Entry) -> Result<u8> {
    // The pidfd first: it names this process even if the holder ends and
    // its pid is reused before the wait.
    let Some(holder) = pidfd(entry.pid)? else {
        return Ok(0);
    };
    let mut stream = super::connect(entry)?;
    let frame = Frame::json(Kind::Holder, 0, &HolderRequest::Stop);
    stream
        .write_all(&frame.encode())
        .context("could not ask the VM's nixos-shell to stop it; it may have just ended")?;
    // Its pidfd reads as ready once it ended; a signal that ends a session
    // ends this wait, the VM going on stopping without this side.
    super::wait_readable(holder.as_fd(), None)?;
    Ok(0)
}

/// `--switch --restart`: asks the holder of `entry` to start its VM again
/// from the build result `build`, and waits until the new guest answers
/// (its hello). Fails with the holder's line when it refuses, or when the
/// new VM ended before it answered (`console` says where its console
/// shows why).
pub fn restart(entry: &Entry, build: &Utf8Path, console: &str) -> Result<()> {
    let mut stream = super::connect(entry)?;
    let frame = Frame::json(
        Kind::Holder,
        0,
        &HolderRequest::Restart {
            build: build.to_owned(),
        },
    );
    stream
        .write_all(&frame.encode())
        .context("could not ask the VM's nixos-shell to restart it; it may have just ended")?;
    let mut decoder = Decoder::default();
    loop {
        // A signal that ends a session ends this wait: the restart goes on
        // without this side.
        super::wait_readable(stream.as_fd(), None)?;
        let read = decoder.read_from(&stream);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) if frame.kind == Kind::Hello => return Ok(()),
                Ok(Some(frame)) if frame.kind == Kind::Refused => {
                    bail!("{}", String::from_utf8_lossy(&frame.payload))
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(err) => bail!("the VM's nixos-shell sent {err} instead of an answer"),
            }
        }
        match read {
            Ok(0) | Err(Errno::CONNRESET) => {
                bail!("the VM did not come back: it ended before the new build answered; {console} says why")
            }
            Ok(_) | Err(Errno::INTR | Errno::AGAIN) => {}
            Err(err) => return Err(err).context("could not hear from the VM's nixos-shell"),
        }
    }
}

/// A pidfd of process `pid`; `None` when it is already gone.
fn pidfd(pid: u32) -> Result<Option<OwnedFd>> {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(None);
    };
    match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::SRCH) => Ok(None),
        Err(err) => Err(err).context("could not watch the VM's nixos-shell"),
    }
}
