//! Signals while nixos-shell runs a child (nix, then the VM) and the
//! child's lifetime.
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
//! Killed outright (SIGKILL), nixos-shell cannot pass anything on: the
//! child is started with a parent-death signal ([`die_with_parent`]), TERM,
//! which a run script's `exec` of QEMU keeps, so QEMU ends with it.
//!
//! Handlers, not `SIG_IGN`: an ignored signal stays ignored across `exec`,
//! so the child would no longer stop on it; a handler is reset in the child.

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

/// The signals that end a session, which the child gets instead.
const PASSED_ON: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];

/// How often [`wait`] looks for a signal or the child's end.
const POLL: Duration = Duration::from_millis(20);

struct Caught {
    signals: Signals,
    /// The last signal caught, once one was.
    last: Option<i32>,
}

fn caught() -> &'static Mutex<Option<Caught>> {
    static CAUGHT: OnceLock<Mutex<Option<Caught>>> = OnceLock::new();
    CAUGHT.get_or_init(|| Mutex::new(None))
}

/// Catches INT, TERM, HUP and QUIT from now on (idempotent). Were that to
/// fail, a signal would end nixos-shell as it ends any program.
pub fn install() {
    let mut caught = caught().lock().unwrap_or_else(|e| e.into_inner());
    if caught.is_none() {
        *caught = Signals::new(PASSED_ON).ok().map(|signals| Caught {
            signals,
            last: None,
        });
    }
}

/// The signals caught since the last call, and whether any ever was.
fn take_pending() -> (Vec<i32>, Option<i32>) {
    let mut guard = caught().lock().unwrap_or_else(|e| e.into_inner());
    let Some(caught) = guard.as_mut() else {
        return (Vec::new(), None);
    };
    let pending: Vec<i32> = caught.signals.pending().collect();
    if let Some(&last) = pending.last() {
        caught.last = Some(last);
    }
    (pending, caught.last)
}

/// The signal that should end nixos-shell, if one was caught: it exits
/// 128 + that number once it has cleaned up.
pub fn received() -> Option<i32> {
    take_pending().1
}

/// The exit status after signal `signal`.
pub fn exit_status(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(1)
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

/// Waits for `child` to end, passing it every signal nixos-shell catches
/// meanwhile; its exit status.
pub fn wait(child: &mut Child) -> io::Result<ExitStatus> {
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::other("the child has no valid process id"))?;
    loop {
        for signal in take_pending().0 {
            let Some(signal) = Signal::from_named_raw(signal) else {
                continue;
            };
            for process in std::iter::once(pid).chain(descendants(pid)) {
                // A process may have ended meanwhile; nothing to pass then.
                let _ = kill_process(process, signal);
            }
        }
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(POLL);
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

    #[test]
    fn descendants_are_found_through_proc() {
        let mut shell = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(shell.id() as i32).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut found = descendants(pid);
        while found.len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            found = descendants(pid);
        }
        assert_eq!(found.len(), 2, "{found:?}");
        for process in found.iter().chain([&pid]) {
            let _ = kill_process(*process, Signal::KILL);
        }
        let _ = shell.wait();
    }
}
