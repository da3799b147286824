//! `nixos-shell --attach --console [CONFIG]`: the console of a detached VM,
//! its log so far and then what it adds, until a key (or Ctrl-C) is
//! pressed or the VM ends; the VM goes on. The log is the one its holder
//! writes (`execute::launch`), named in its registry entry; following it
//! waits in poll(2) on inotify, the holder's pidfd, this terminal and the
//! caught signals, never on a timer.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::inotify;
use rustix::io::Errno;
use rustix::process::{pidfd_open, Pid, PidfdFlags};

use super::registry::{Entry, VmInfo};
use crate::host::signals;
use crate::host::terminal;

/// Shows the console of the VM of `entry`, whose registry `info` it is;
/// 0 once the user leaves or the VM ends.
pub fn run(entry: &Entry, info: &VmInfo) -> Result<u8> {
    let Some(log) = info.console_log.as_deref() else {
        bail!(
            "the VM {} runs in a terminal, not detached: its console is there",
            info.name
        );
    };
    let holder = i32::try_from(entry.pid)
        .ok()
        .and_then(Pid::from_raw)
        .map(|pid| pidfd_open(pid, PidfdFlags::empty()))
        .transpose()
        .context("could not watch the VM's nixos-shell")?;
    let watch = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
        .context("could not watch the console's log")?;
    let mut file = File::open(log).with_context(|| format!("could not open {log}"))?;
    let mut watched = watch_log(&watch, log)?;
    // A key leaves: the terminal hands each at once and shows none.
    let _raw = terminal::SavedTerminal::raw();
    eprint!(
        "nixos-shell: the console of {} (press a key to leave)\r\n",
        info.name
    );
    let stdin = std::io::stdin();
    let wake = signals::wake_fd();
    loop {
        if copy_new(&mut file, log)? {
            let _ = inotify::remove_watch(&watch, watched);
            watched = watch_log(&watch, log)?;
            copy_new(&mut file, log)?;
        }
        let mut fds = vec![
            PollFd::new(&watch, PollFlags::IN),
            PollFd::new(&stdin, PollFlags::IN),
        ];
        if let Some(holder) = &holder {
            fds.push(PollFd::new(holder, PollFlags::IN));
        }
        if let Some(wake) = &wake {
            fds.push(PollFd::new(wake, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(err) => return Err(err).context("could not wait for the console"),
        }
        let key = !fds[1].revents().is_empty();
        let ended = holder.is_some() && !fds[2].revents().is_empty();
        drop(fds);
        drain(&watch);
        if key {
            // Taken, not left for the shell to read next.
            let _ = rustix::io::read(std::io::stdin().as_fd(), &mut [0u8; 64]);
        }
        if key || ended || !signals::take().is_empty() {
            copy_new(&mut file, log)?;
            return Ok(0);
        }
    }
}

/// Watches the file now at `log` for what is added and for its renaming.
fn watch_log(watch: &OwnedFd, log: &Utf8Path) -> Result<i32> {
    inotify::add_watch(
        watch,
        log.as_str(),
        inotify::WatchFlags::MODIFY | inotify::WatchFlags::MOVE_SELF,
    )
    .with_context(|| format!("could not watch {log}"))
}

/// Writes what the log has that was not shown; a log that started again
/// (renamed aside, `launch`'s bound) is followed into the new file:
/// `true` then, for the new file to be watched.
fn copy_new(file: &mut File, log: &Utf8Path) -> Result<bool> {
    let mut stdout = std::io::stdout().lock();
    std::io::copy(file, &mut stdout).context("could not show the console")?;
    stdout.flush().context("could not show the console")?;
    let now = std::fs::metadata(log).ok();
    let ours = file.metadata().ok();
    Ok(match (now, ours) {
        (Some(now), Some(ours)) if now.ino() != ours.ino() => {
            *file = File::open(log).with_context(|| format!("could not open {log}"))?;
            true
        }
        _ => false,
    })
}

/// Takes the inotify events that woke the wait; what changed is read again
/// whole.
fn drain(watch: &OwnedFd) {
    let mut buf = [0u8; 4096];
    while rustix::io::read(watch.as_fd(), &mut buf).is_ok_and(|n| n > 0) {}
}
