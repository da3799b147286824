//! `nixos-shell --detach`: a run whose VM goes on without this terminal.
//!
//! This nixos-shell builds as a run does (nix's output in the terminal),
//! then starts the VM's holder: itself again (`exec` of the same binary,
//! no bare fork of a process with threads), in a session of its own with
//! no controlling terminal, with the hidden `--hold` that hands it the
//! session directory (and the build's out-link in it, the GC root), the
//! identity of the build and a pipe. The holder runs the VM as a run does
//! (`host::execute`), its console in a log, and writes to the pipe once
//! the guest's attach server answers; this side waits on the pipe and
//! returns then. The holder's own messages go to the console's log (beside
//! the disk image: `execute::detached_console_log`), where they are found
//! later; this side chooses the log, locked while the VM runs, and hands
//! it to the holder with `--hold`. A holder that ends before writing closes
//! the pipe unwritten: the log's tail is shown and nothing runs. QEMU and
//! its daemons die with the holder (`signals::die_with_parent`).

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::{flock, FlockOperation};
use rustix::io::{fcntl_getfd, fcntl_setfd, Errno, FdFlags};

use crate::host::execute::launch;
use crate::host::execute::session::Session;
use crate::host::execute::Holding;
use crate::host::nix::{Builds, Identity};
use crate::host::settings::Hold;
use crate::host::signals;
use crate::host::stop::Stop;

/// How many lines of the log a failed start shows.
const FAILURE_TAIL_LINES: usize = 20;

/// Starts the holder of the VM that `session` holds the build of, its
/// messages and console in `preferred` (emptied first) unless another VM
/// writes that ([`claim_log`]); returns the log once the guest answers, or
/// fails with the log's tail.
pub fn start(session: Session, identity: &Identity, preferred: &Utf8Path) -> Result<Utf8PathBuf> {
    let (ready_read, ready_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .context("could not create a pipe for the VM's nixos-shell")?;
    let flags = fcntl_getfd(&ready_write).context("could not set up the pipe")?;
    fcntl_setfd(&ready_write, flags - FdFlags::CLOEXEC).context("could not set up the pipe")?;
    // Appended to by the holder and by its console alike.
    let (log, messages) = claim_log(preferred, &session)?;
    let exe = std::env::current_exe().context("could not find nixos-shell's own executable")?;
    let root = session.keep();
    let mut holder = Command::new(exe);
    holder
        .arg("--hold")
        .arg(root.as_str())
        .arg(identity.as_str())
        .arg(ready_write.as_raw_fd().to_string())
        .arg(log.as_str())
        .args(run_args(std::env::args_os().skip(1)))
        .stdin(Stdio::null())
        .stdout(
            messages
                .try_clone()
                .context("could not set up the VM's log")?,
        )
        .stderr(
            messages
                .try_clone()
                .context("could not set up the VM's log")?,
        );
    // SAFETY: setsid is async-signal-safe and touches no memory of ours.
    unsafe {
        holder.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    let child = holder.spawn();
    drop(ready_write);
    let mut child = match child {
        Ok(child) => child,
        Err(err) => {
            let _ = std::fs::remove_dir_all(root.as_std_path());
            return Err(err).context("could not start the VM's nixos-shell");
        }
    };
    match wait_ready(&ready_read, &mut child) {
        Ok(true) => Ok(log),
        Ok(false) => {
            let status = child.wait().ok().and_then(|s| s.code()).unwrap_or(1);
            // Its own removal, unless it ended before it adopted the directory.
            let _ = std::fs::remove_dir_all(root.as_std_path());
            // Read through this side's own copy: a log in the session went
            // with it.
            let said = launch::tail_of(&messages, FAILURE_TAIL_LINES);
            if !said.is_empty() {
                eprintln!("{said}");
            }
            let kept = if log.exists() {
                format!("; its log is {log}")
            } else {
                String::new()
            };
            bail!("the VM did not start (its nixos-shell ended with status {status}){kept}")
        }
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(root.as_std_path());
            Err(err)
        }
    }
}

/// The console's log of a VM whose place for it is `preferred`, emptied
/// and opened for its holder, with its path. The log is locked (flock(2))
/// while the VM runs: the lock belongs to the open file, which the holder
/// keeps as its standard output and error, and QEMU and the daemons as
/// theirs. So a log another VM of the same configuration (or of the same
/// `--disk PATH`) writes is never emptied: this VM logs in its session
/// instead, beside the temporary disk image it falls back to
/// (`execute::disk::choose`), and that log goes with the VM.
fn claim_log(preferred: &Utf8Path, session: &Session) -> Result<(Utf8PathBuf, File)> {
    if let Some(file) = try_claim(preferred)? {
        return Ok((preferred.to_owned(), file));
    }
    let own = session
        .root()
        .join(preferred.file_name().unwrap_or("console.log"));
    match try_claim(&own)? {
        Some(file) => Ok((own, file)),
        None => {
            bail!("{own} in this run's own directory is locked by another process; report this")
        }
    }
}

/// `log`, opened, locked and emptied of an earlier VM's; `None` when a
/// running VM holds its lock.
fn try_claim(log: &Utf8Path) -> Result<Option<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(log)
        .with_context(|| format!("could not create {log}"))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("could not lock {log}")),
    }
    file.set_len(0)
        .with_context(|| format!("could not empty {log}"))?;
    Ok(Some(file))
}

/// The command line of this run without `--detach`, for the holder: the
/// flags before `--` (after it, QEMU's arguments stay as they are).
fn run_args(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut qemu = false;
    args.filter(|arg| {
        qemu |= arg == "--";
        qemu || arg != "--detach"
    })
    .collect()
}

/// Sleeps until the holder writes to `ready` (`true`) or ends without it
/// (`false`); a signal that ends a session ends the holder and is this
/// side's stop.
fn wait_ready(ready: &OwnedFd, child: &mut Child) -> Result<bool> {
    let wake = signals::wake_fd();
    loop {
        let mut fds = vec![PollFd::new(ready, PollFlags::IN)];
        if let Some(wake) = &wake {
            fds.push(PollFd::new(wake, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(err) => return Err(err).context("could not wait for the VM"),
        }
        let readable = !fds[0].revents().is_empty();
        drop(fds);
        if readable {
            let mut byte = [0u8; 1];
            return match rustix::io::read(ready, &mut byte) {
                Ok(1) => Ok(true),
                Err(Errno::INTR) => continue,
                _ => Ok(false),
            };
        }
        if let Some(&signal) = signals::take().last() {
            let _ = child.kill();
            return Err(Stop::Signal(signal).into());
        }
    }
}

/// The holder's side: takes over `hold`'s session and pipe; the plan's
/// builds are the build `--detach` made, at `out_link` (`--out-link`'s)
/// or in the session.
pub fn holding(hold: &Hold, out_link: Option<&Utf8Path>) -> (Session, Holding, Builds) {
    // SAFETY: `--hold`'s FD is the pipe's write end that `--detach`
    // handed this process, and nothing else here owns it.
    let ready = unsafe { OwnedFd::from_raw_fd(hold.ready_fd) };
    // Not for QEMU and the daemons: the pipe closes with this process.
    if let Ok(flags) = fcntl_getfd(&ready) {
        let _ = fcntl_setfd(&ready, flags | FdFlags::CLOEXEC);
    }
    let session = Session::adopt(hold.session.clone());
    let builds = Builds::Ready {
        result: out_link.map_or_else(|| session.out_link(), Utf8Path::to_owned),
        identity: Identity::new(&hold.identity),
    };
    let holding = Holding {
        ready,
        console_log: hold.console_log.clone(),
    };
    (session, holding, builds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_runs_without_detach_and_qemu_keeps_its_arguments() {
        let args = ["--detach", ".#vm", "--memory", "1G", "--", "--detach"].map(OsString::from);
        assert_eq!(
            run_args(args.into_iter()),
            [".#vm", "--memory", "1G", "--", "--detach"].map(OsString::from)
        );
    }
}
