//! Signals while nixos-shell runs a child (nix, then the VM and its
//! daemons), and waiting for the children.
//!
//! nixos-shell must outlive the signals that end a session (INT, TERM, HUP,
//! QUIT) to clean up after its child: the private temp dir (out-link, an
//! ephemeral disk image), the terminal's settings, the disk lock. So it
//! catches them ([`install`]) instead of dying, passes each to the child
//! it waits for and to the child's descendants ([`wait`]), waits for the
//! child to end, and then exits 128 + N. The descendants too, because a run
//! script may run QEMU (and its virtiofsd) as children instead of `exec`ing
//! it, and a shell runs its own trap only once its foreground child has
//! ended. Ctrl-C typed in the terminal reaches them all directly (same
//! process group) and nixos-shell too; passing it again does no harm.
//!
//! Waiting never polls on a timer: SIGCHLD is caught too, and every caught
//! signal writes a byte into one self-pipe (signal-hook's), so a wait
//! sleeps in poll(2) on that pipe and wakes the moment a child ends or a
//! signal arrives. A child that ended before the wait began is seen by the
//! `try_wait` that comes first; one that ends after it wrote its byte.
//!
//! Killed outright (SIGKILL), nixos-shell cannot pass anything on: the
//! child is started with a parent-death signal ([`die_with_parent`]), TERM,
//! which a run script's `exec` of QEMU keeps, so QEMU ends with it.
//!
//! Handlers, not `SIG_IGN`: an ignored signal stays ignored across `exec`,
//! so the child would no longer stop on it; a handler is reset in the child.
//! (An ignored SIGCHLD would also make the kernel reap children itself.)

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{kill_process, Pid, Signal};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGWINCH};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

/// The signals that end a session, which the child gets instead.
const PASSED_ON: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];

struct Caught {
    delivery: SignalDelivery<UnixStream, SignalOnly>,
    /// The last session signal caught, once one was.
    last: Option<i32>,
}

/// The process's one delivery of caught signals; `None` when the handlers
/// could not be installed (then a signal ends nixos-shell as it ends any
/// program, and waits block in `waitpid` instead).
fn caught() -> MutexGuard<'static, Option<Caught>> {
    static CAUGHT: OnceLock<Mutex<Option<Caught>>> = OnceLock::new();
    CAUGHT
        .get_or_init(|| {
            let delivery = UnixStream::pair().and_then(|(read, write)| {
                SignalDelivery::with_pipe(
                    read,
                    write,
                    SignalOnly,
                    PASSED_ON.iter().chain(&[SIGCHLD]),
                )
            });
            Mutex::new(delivery.ok().map(|delivery| Caught {
                delivery,
                last: None,
            }))
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Catches INT, TERM, HUP, QUIT (and SIGCHLD, to wake waits) from now on;
/// idempotent.
pub fn install() {
    drop(caught());
}

/// The session signals caught since the last call, and whether any ever
/// was; drains the self-pipe.
fn take_pending(caught: &mut Option<Caught>) -> (Vec<i32>, Option<i32>) {
    let Some(caught) = caught.as_mut() else {
        return (Vec::new(), None);
    };
    let pending: Vec<i32> = caught
        .delivery
        .pending()
        .filter(|signal| PASSED_ON.contains(signal))
        .collect();
    if let Some(&last) = pending.last() {
        caught.last = Some(last);
    }
    (pending, caught.last)
}

/// Sleeps until a signal arrives (SIGCHLD included) or `deadline` passes;
/// returns at once without a delivery.
fn sleep_for_signal(caught: &Option<Caught>, deadline: Option<Instant>) {
    let Some(caught) = caught else {
        return;
    };
    let timeout = deadline.map(|deadline| {
        let left = deadline.saturating_duration_since(Instant::now());
        Timespec {
            tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: left.subsec_nanos().into(),
        }
    });
    let mut ready = [PollFd::new(caught.delivery.get_read(), PollFlags::IN)];
    // EINTR (another signal) only wakes the caller early, who looks again.
    let _ = poll(&mut ready, timeout.as_ref());
}

/// A descriptor that reads as ready whenever a signal was caught, for a
/// poll(2) loop of its own (an attached session's); [`take`] then says
/// which. `None` without a delivery.
pub fn wake_fd() -> Option<OwnedFd> {
    let caught = caught();
    let read = caught.as_ref()?.delivery.get_read().try_clone().ok()?;
    Some(OwnedFd::from(read))
}

/// The VM's process while it runs (0: none), for [`end_vm`].
static VM: AtomicI32 = AtomicI32::new(0);

/// Notes `child` as the VM's process until it ends ([`VmNoted`] unnotes).
pub fn note_vm(child: &Child) -> VmNoted {
    let pid = pid_of(child).map_or(0, |pid| pid.as_raw_nonzero().get());
    VM.store(pid, Ordering::SeqCst);
    VmNoted(())
}

/// The VM noted by [`note_vm`], unnoted when dropped, right after its
/// process is reaped: the pid could be reused only in that moment, and
/// only by a process of this user's started just then.
pub struct VmNoted(());

impl Drop for VmNoted {
    fn drop(&mut self) {
        VM.store(0, Ordering::SeqCst);
    }
}

/// Ends the VM's process with TERM, as a caught TERM would, from another
/// thread than the one that waits for it (a `--stop` whose guest did not
/// power off in time). Nothing when no VM runs.
pub fn end_vm() {
    if let Some(pid) = Pid::from_raw(VM.load(Ordering::SeqCst)) {
        let _ = kill_process(pid, Signal::TERM);
    }
}

/// The session signals caught since the last call, in order.
pub fn take() -> Vec<i32> {
    take_pending(&mut caught()).0
}

/// SIGWINCH, caught from now on into a self-pipe of its own that a
/// poll(2) loop watches: a terminal's resizes, for the resize port and an
/// attached session.
pub fn resizes() -> io::Result<SignalDelivery<UnixStream, SignalOnly>> {
    let (read, write) = UnixStream::pair()?;
    SignalDelivery::with_pipe(read, write, SignalOnly, [SIGWINCH])
}

/// The signal that should end nixos-shell, if one was caught: it exits
/// 128 + that number once it has cleaned up (`stop::Stop::Signal`).
pub fn received() -> Option<i32> {
    take_pending(&mut caught()).1
}

/// Gives `command`'s process TERM when nixos-shell dies, however it dies.
/// Linux only: other systems have no parent-death signal, and a child
/// outlives a nixos-shell killed outright there.
#[cfg(target_os = "linux")]
pub fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
    // memory of the parent; it is all that runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::TERM))?;
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_command: &mut Command) {}

/// The process id of `child` for kill(2).
fn pid_of(child: &Child) -> io::Result<Pid> {
    i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::other("the child has no valid process id"))
}

/// Waits for `child` to end, passing it every signal nixos-shell catches
/// meanwhile; its exit status.
pub fn wait(child: &mut Child) -> io::Result<ExitStatus> {
    wait_reading(child, &mut [])
}

/// One of a child's output streams, read while [`wait_reading`] waits for
/// the child: each chunk goes to `take` as it comes.
pub struct Stream<'a> {
    fd: BorrowedFd<'a>,
    take: &'a mut dyn FnMut(&[u8]),
    open: bool,
}

impl<'a> Stream<'a> {
    pub fn new(fd: BorrowedFd<'a>, take: &'a mut dyn FnMut(&[u8])) -> Stream<'a> {
        Stream {
            fd,
            take,
            open: true,
        }
    }

    /// Reads what is there; closes the stream at its end or on an error
    /// (a pseudo-terminal's end reads as EIO on Linux).
    fn read(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        match rustix::io::read(self.fd, &mut buf) {
            Ok(0) => self.open = false,
            Ok(n) => (self.take)(&buf[..n]),
            Err(Errno::INTR | Errno::AGAIN) => {}
            Err(_) => self.open = false,
        }
    }
}

/// [`wait`], and reads `streams` meanwhile, all in this thread: returns
/// once the child has ended and every stream has reached its end (a
/// process the child left may hold one open a little longer).
pub fn wait_reading(child: &mut Child, streams: &mut [Stream]) -> io::Result<ExitStatus> {
    let pid = pid_of(child)?;
    let mut ended = None;
    loop {
        let mut caught = caught();
        let pending = take_pending(&mut caught).0;
        for signal in pending.into_iter().filter(|_| ended.is_none()) {
            let Some(signal) = Signal::from_named_raw(signal) else {
                continue;
            };
            for process in std::iter::once(pid).chain(descendants(pid)) {
                // A process may have ended meanwhile; nothing to pass then.
                let _ = kill_process(process, signal);
            }
        }
        if ended.is_none() {
            ended = match &*caught {
                // Without a delivery nothing would wake a poll at the
                // child's end: block in waitpid, after the streams.
                None if streams.iter().all(|s| !s.open) => Some(child.wait()?),
                _ => child.try_wait()?,
            };
        }
        if let Some(status) = ended.filter(|_| streams.iter().all(|s| !s.open)) {
            return Ok(status);
        }
        let open: Vec<usize> = (0..streams.len()).filter(|&i| streams[i].open).collect();
        let mut ready: Vec<PollFd> = caught
            .as_ref()
            .filter(|_| ended.is_none())
            .map(|c| PollFd::new(c.delivery.get_read(), PollFlags::IN))
            .into_iter()
            .chain(
                open.iter()
                    .map(|&i| PollFd::new(&streams[i].fd, PollFlags::IN)),
            )
            .collect();
        // EINTR (a signal) only wakes this loop early, which looks again.
        let _ = poll(&mut ready, None);
        let offset = ready.len() - open.len();
        let readable: Vec<usize> = open
            .iter()
            .zip(&ready[offset..])
            .filter(|(_, fd)| !fd.revents().is_empty())
            .map(|(&i, _)| i)
            .collect();
        drop(ready);
        drop(caught);
        for i in readable {
            streams[i].read();
        }
    }
}

/// Waits for `child` to end until `deadline`; `None` if it still runs then.
/// Signals caught meanwhile are kept for [`received`], not passed on: the
/// callers stop children that are ending anyway.
pub fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        let mut caught = caught();
        take_pending(&mut caught);
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if caught.is_none() || Instant::now() >= deadline {
            return Ok(None);
        }
        sleep_for_signal(&caught, Some(deadline));
    }
}

/// The processes below `pid`, from Linux's `/proc/<pid>/task/*/children`;
/// none where there is no such file (another system: the child alone gets
/// the signal then).
fn descendants(pid: Pid) -> Vec<Pid> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        let tasks = format!("/proc/{}/task", parent.as_raw_nonzero());
        let Ok(tasks) = std::fs::read_dir(tasks) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace() {
                if let Some(child) = child.parse().ok().and_then(Pid::from_raw) {
                    if !found.contains(&child) {
                        found.push(child);
                        queue.push(child);
                    }
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn descendants_are_found_through_proc() {
        let mut shell = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = pid_of(&shell).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut found = descendants(pid);
        while found.len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            found = descendants(pid);
        }
        assert_eq!(found.len(), 2, "{found:?}");
        for process in found.iter().chain([&pid]) {
            let _ = kill_process(*process, Signal::KILL);
        }
        let _ = shell.wait();
    }

    #[test]
    fn a_wait_ends_with_the_child_and_a_deadline_ends_a_wait_for_one_that_runs_on() {
        install();
        let mut quick = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        assert_eq!(wait(&mut quick).unwrap().code(), Some(3));
        let mut slow = Command::new("sleep").arg("30").spawn().unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(wait_until(&mut slow, soon).unwrap(), None);
        slow.kill().unwrap();
        let later = Instant::now() + Duration::from_secs(30);
        assert!(wait_until(&mut slow, later).unwrap().is_some());
    }
}
