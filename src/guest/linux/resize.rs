//! The resize follower (`nixos-shell-guest follow-resizes`): the one owner
//! of the console's size. A unit of its own that lives as long as the VM
//! (the guest role's other steps end before the login), ordered after
//! `prepare` (it reads the facts) and before the command and the console's
//! getty.
//!
//! It asks the host for the terminal's size on the resize port and applies
//! each size the host sends, in order, to the console, whose foreground
//! program the kernel then sends SIGWINCH (`schema::ports`). It is started
//! as systemd's `Type=forking` defines it (systemd.service(5)): the process
//! the unit runs returns once the host's answer is applied, and a child
//! follows from then on. So the command and the login start with the
//! terminal's latest size, whenever it was resized (while nix built, while
//! the VM booted), and nothing sets an older size after a newer one.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

use camino::Utf8Path;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::pipe::PipeFlags;

use super::report::Reporter;
use super::{console, ports, session};
use crate::schema::ports::{Port, SizeLines, MAX_LINE, SIZE_REQUEST};

/// How long the boot waits for the host's answer before it goes on without
/// it: a host that never answers (its resize thread gone) must not hold the
/// login back for good.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Follows the host terminal's size until the VM powers off; returns at
/// once when the host offers no resize port (a VM started without
/// nixos-shell, or without a terminal, or with a command on the ports).
pub fn follow(console: &Utf8Path, reporter: &Reporter) -> u8 {
    let offered = session::read_facts().is_ok_and(|facts| facts.ports.contains(&Port::Resize));
    if !offered {
        reporter.say("no resize port; the console keeps its size");
        return 0;
    }
    let Some(device) = ports::wait_for(Port::Resize) else {
        reporter.warn(
            "the host offers a resize port the guest does not have; the console keeps its size",
        );
        return 0;
    };
    let port = match File::options().read(true).write(true).open(&device) {
        Ok(port) => port,
        Err(err) => {
            reporter.warn(&format!("cannot open the resize port {device}: {err}"));
            return 0;
        }
    };
    let (answered, told) = match rustix::pipe::pipe_with(PipeFlags::CLOEXEC) {
        Ok(pipe) => pipe,
        Err(err) => {
            reporter.warn(&format!(
                "cannot start following the terminal's size: {err}"
            ));
            return 0;
        }
    };
    // SAFETY: the guest role has started no thread, so the child is a
    // whole copy of this process.
    match unsafe { libc::fork() } {
        -1 => {
            let err = std::io::Error::last_os_error();
            reporter.warn(&format!(
                "cannot start following the terminal's size: {err}"
            ));
            0
        }
        0 => {
            drop(answered);
            // Out of the unit's session: its leader's exit would hang the
            // session's terminal up on us.
            let _ = rustix::process::setsid();
            follow_port(port, console, reporter, told)
        }
        _ => {
            drop(told);
            // The child closes its end once the answer is applied (or it
            // ended, or gave up waiting): end of file either way.
            let mut byte = [0u8; 1];
            let _ = rustix::io::read(&answered, &mut byte);
            0
        }
    }
}

/// The child: asks, applies every size the host sends, and closes `told`
/// once the first answer is applied.
fn follow_port(port: File, console: &Utf8Path, reporter: &Reporter, told: OwnedFd) -> u8 {
    let mut told = Some(told);
    // The write waits until the host's end is connected (QEMU connects it
    // as it starts, before the guest runs).
    if let Err(err) = (&port).write_all(SIZE_REQUEST) {
        reporter.warn(&format!("cannot ask for the terminal's size: {err}"));
        return 0;
    }
    if !readable_within(&port, ANSWER_TIMEOUT) {
        reporter.warn("the host did not send the terminal's size; the login starts without it");
        drop(told.take());
    }
    let mut lines = SizeLines::default();
    let mut buf = [0u8; MAX_LINE];
    loop {
        let n = match (&port).read(&mut buf) {
            // The host's end is gone: the VM is ending.
            Ok(0) => return 0,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                reporter.warn(&format!("cannot read the resize port: {err}"));
                return 0;
            }
        };
        match lines.read(&buf[..n]) {
            Ok(sizes) => {
                for size in &sizes {
                    if let Some(size) = size {
                        reporter.check(console::set_size(console, *size));
                    }
                    // Applied: the unit is started.
                    drop(told.take());
                }
            }
            Err(err) => {
                reporter.warn(&format!(
                    "the host sent {err} on the resize port; the console keeps its size"
                ));
                return 0;
            }
        }
    }
}

/// Whether `port` has something to read within `timeout`.
fn readable_within(port: &File, timeout: Duration) -> bool {
    let timeout = Timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    let mut ready = [PollFd::new(port, PollFlags::IN)];
    matches!(poll(&mut ready, Some(&timeout)), Ok(n) if n > 0)
}
