//! `nixos-shell --switch --watch`: stays in the foreground and switches
//! the running VM again on each save of the configuration's sources (the
//! local flake's directory, or the module file's), the saves of one burst
//! (changes within [`QUIET`] of each other) counted once. One status line
//! per round, with its time; a failed build or switch prints its error and
//! waits for the next save. Ctrl-C ends the watch, never the VM. The
//! status line says how much of the round the build took (`(build 1.2s)`),
//! the rest being the switch's own.
//!
//! The kernel tells of changes (`notify`: inotify on Linux, FSEvents on
//! macOS); nothing polls on a timer.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use notify::{RecursiveMode, Watcher};

use super::{once, Running, Switched};
use crate::host::nix::resolve::FlakeRef;
use crate::host::nix::Installable;
use crate::host::read::Host;
use crate::host::settings::Switch;
use crate::host::signals;
use crate::host::stop::Stop;

/// How long the sources must stay unchanged before a round starts.
pub const QUIET: Duration = Duration::from_millis(300);

/// What the watch hears of.
enum Heard {
    /// A file under the watched directory changed.
    Changed(std::path::PathBuf),
    /// Ctrl-C (or another signal that ends nixos-shell).
    Stop(i32),
}

/// Watches the sources of `installable` and switches `running` on every
/// burst of saves, until a signal ends the watch: exits 0 then.
pub fn run(
    switch: &Switch,
    host: &Host,
    installable: &Installable,
    running: Running,
) -> Result<u8> {
    let dir = sources(installable)?;
    let (tx, rx) = mpsc::channel();
    let changes = tx.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for path in event.paths {
                let _ = changes.send(Heard::Changed(path));
            }
        }
    })
    .context("could not watch the configuration's files")?;
    watcher
        .watch(dir.as_std_path(), RecursiveMode::Recursive)
        .with_context(|| format!("could not watch {dir}"))?;
    stop_on_signal(tx);
    eprintln!("nixos-shell: watching {dir}; Ctrl-C ends the watch, not the VM");
    loop {
        // Blocks until a relevant change, or a signal.
        if let Some(signal) = next_change(&rx, &dir, None) {
            return ended(signal);
        }
        // The burst: until QUIET passes without a change.
        if let Some(signal) = next_change(&rx, &dir, Some(QUIET)) {
            return ended(signal);
        }
        let started = Instant::now();
        let round = once(switch, host, &running);
        let build = match &round {
            Ok(round) => format!(" (build {:.1}s)", round.build.as_secs_f64()),
            Err(_) => String::new(),
        };
        let line = match round.map(|round| round.switched) {
            Ok(Switched::Ran(0)) => "switched".to_owned(),
            Ok(Switched::Ran(status)) => format!("the switch failed with status {status}"),
            Ok(Switched::Unchanged) => "unchanged".to_owned(),
            // --restart does not go with --watch (the parser says so).
            Ok(Switched::Restarted) => "restarted".to_owned(),
            Err(err) => {
                if let Some(Stop::Signal(signal)) = err.downcast_ref::<Stop>() {
                    return ended(*signal);
                }
                // A Stop's message (nix's error) is above already.
                if Stop::status_of(&err).is_none() {
                    eprintln!("nixos-shell: {err:#}");
                }
                "the build or switch failed".to_owned()
            }
        };
        eprintln!(
            "nixos-shell: [{}] {line} in {:.1}s{build}; waiting for the next save",
            clock(SystemTime::now()),
            started.elapsed().as_secs_f64()
        );
    }
}

/// How the watch ends on a signal: the VM runs on, and so does nothing
/// else of this nixos-shell.
fn ended(_signal: i32) -> Result<u8> {
    eprintln!("nixos-shell: the watch ended; the VM runs on");
    Ok(0)
}

/// Waits for a change under `dir` that is a source, for at most `quiet`
/// (forever without); a signal that ends nixos-shell, if one came.
/// Returns `None` on a change (`quiet: None`) or once quiet (`Some`).
fn next_change(rx: &Receiver<Heard>, dir: &Utf8Path, quiet: Option<Duration>) -> Option<i32> {
    loop {
        let heard = match quiet {
            None => rx.recv().ok()?,
            Some(quiet) => match rx.recv_timeout(quiet) {
                Ok(heard) => heard,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            },
        };
        match heard {
            Heard::Stop(signal) => return Some(signal),
            Heard::Changed(path) if is_source(&path, dir) && quiet.is_none() => return None,
            Heard::Changed(_) => {}
        }
    }
}

/// Passes a signal that ends nixos-shell to the watch as [`Heard::Stop`].
fn stop_on_signal(tx: Sender<Heard>) {
    let Some(wake) = signals::wake_fd() else {
        return;
    };
    std::thread::spawn(move || loop {
        let mut ready = [rustix::event::PollFd::new(
            &wake,
            rustix::event::PollFlags::IN,
        )];
        if rustix::event::poll(&mut ready, None).is_err() {
            continue;
        }
        if let Some(signal) = signals::received() {
            let _ = tx.send(Heard::Stop(signal));
            return;
        }
    });
}

/// The directory whose files are the configuration's sources: the local
/// flake's, or the module file's.
fn sources(installable: &Installable) -> Result<Utf8PathBuf> {
    match installable {
        Installable::File { path } => Ok(path
            .parent()
            .map_or_else(|| Utf8PathBuf::from("/"), Utf8Path::to_owned)),
        Installable::Flake {
            flake: FlakeRef::Local { dir, .. },
            ..
        } => Ok(dir.clone()),
        Installable::Flake { .. } => {
            bail!("--watch follows files of this machine; CONFIG names a remote flake")
        }
        Installable::Built { .. } => {
            bail!("--watch follows a configuration's files; CONFIG is a build result")
        }
    }
}

/// Whether a change of `path` under `dir` is a change of the
/// configuration: not in `.git`, not a build result link (`result`,
/// `result-*`), not a disk image, nor a file an editor writes beside the
/// one it saves (`.swp`, `~`, `#...#`).
fn is_source(path: &Path, dir: &Utf8Path) -> bool {
    let Ok(relative) = path.strip_prefix(dir.as_std_path()) else {
        return false;
    };
    let mut names = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy());
    if names.any(|name| name == ".git" || name == "result" || name.starts_with("result-")) {
        return false;
    }
    let name = relative
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let editor = name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.starts_with(".#")
        || (name.starts_with('#') && name.ends_with('#'));
    !(name.ends_with(".qcow2") || name.ends_with(".img") || name == "4913" || editor)
}

/// `HH:MM:SS` (UTC) of `now`: when a round ended.
fn clock(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configurations_own_files_count() {
        let dir = Utf8Path::new("/p");
        for source in ["/p/flake.nix", "/p/modules/vm.nix", "/p/flake.lock"] {
            assert!(is_source(Path::new(source), dir), "{source}");
        }
        for other in [
            "/p/.git/index",
            "/p/result",
            "/p/result-vm/bin/run",
            "/p/vm.qcow2",
            "/p/.vm.nix.swp",
            "/p/vm.nix~",
            "/p/#vm.nix#",
            "/elsewhere/vm.nix",
        ] {
            assert!(!is_source(Path::new(other), dir), "{other}");
        }
    }

    #[test]
    fn a_round_is_stamped_with_its_time_of_day() {
        let t = UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 3600 * 13 + 60 * 5 + 9);
        assert_eq!(clock(t), "13:05:09");
    }

    #[test]
    fn a_burst_of_changes_is_one_round_and_a_signal_ends_the_wait() {
        let (tx, rx) = mpsc::channel();
        let dir = Utf8Path::new("/p");
        for _ in 0..5 {
            tx.send(Heard::Changed("/p/vm.nix".into())).unwrap();
        }
        assert_eq!(next_change(&rx, dir, None), None);
        // The rest of the burst is drained within QUIET.
        assert_eq!(next_change(&rx, dir, Some(Duration::from_millis(10))), None);
        assert!(rx.try_recv().is_err());
        tx.send(Heard::Changed("/p/.git/index".into())).unwrap();
        tx.send(Heard::Stop(2)).unwrap();
        assert_eq!(next_change(&rx, dir, None), Some(2));
    }
}
