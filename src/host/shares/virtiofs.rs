//! The virtiofs shares' daemons: one `virtiofsd` per share, started before
//! QEMU and stopped after it, whichever way the run ends.
//!
//! A [`Daemon`] is pure: what it serves, the name of its socket, its
//! arguments ([`Daemon::argv`]) and QEMU's end of it ([`Daemon::qemu_args`]).
//! [`start`] is the edge: it binds each daemon's socket (in the run's
//! sockets directory) and spawns the daemon with that listening socket
//! (`--fd`), so the socket exists before QEMU connects and nothing waits
//! for a daemon to create it: a connection that comes before the daemon
//! accepts waits in the socket's backlog. The daemons are nixos-shell's own
//! children, not QEMU's, so the signals `signals` passes to the VM do not
//! reach them; [`Running`] stops and reaps them when it is dropped (after
//! the VM, on an error, after a signal), and the parent-death signal stops
//! them when nixos-shell is killed outright.
//!
//! Who owns what the guest writes: the daemon runs as the invoking user with
//! `--sandbox=none` (its namespace sandbox needs privileges users seldom
//! have, and the user may read their own home anyway). An unprivileged
//! daemon cannot write as any other user, so it is told to write every
//! guest user's files as the host user (`--translate-uid
//! squash-guest:0:UID:...`): what root creates in the shared home in the
//! guest belongs to the user on the host, and a non-root guest user's
//! writes work instead of failing. The host's owners reach the guest as
//! they are, as with 9p. Run as root, the daemon writes as the guest's user.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};

use crate::host::{qemu, signals};
use crate::schema::manifest::CacheMode;

/// How long a daemon may take to end once told to.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Every guest user id: the count of a `--translate-uid` range from 0.
const ALL_IDS: u32 = u32::MAX;

/// The host user the daemons run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    /// nixos-shell's own user and group.
    pub fn current() -> Owner {
        Owner {
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
        }
    }
}

/// One daemon: the share it serves and its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    pub tag: String,
    pub shared_dir: Utf8PathBuf,
    pub read_only: bool,
    pub cache: CacheMode,
}

impl Daemon {
    /// The file name of its socket.
    pub fn socket_name(&self) -> String {
        format!("{}.sock", self.tag)
    }

    /// Its socket in `socket_dir`.
    pub fn socket(&self, socket_dir: &Utf8Path) -> Utf8PathBuf {
        socket_dir.join(self.socket_name())
    }

    /// virtiofsd's arguments (without the program) for a daemon of `owner`
    /// that finds its listening socket on file descriptor `listener`.
    pub fn argv(&self, owner: Owner, listener: i32) -> Vec<String> {
        let mut argv = vec![
            format!("--fd={listener}"),
            format!("--shared-dir={}", self.shared_dir),
            "--sandbox=none".to_owned(),
            format!("--cache={}", cache_policy(self.cache)),
            // virtiofsd says a few lines on every start, onto the console
            // the user is about to get; errors only.
            "--log-level=error".to_owned(),
        ];
        if self.read_only {
            argv.push("--readonly".to_owned());
        }
        if owner.uid != 0 {
            argv.push(format!(
                "--translate-uid=squash-guest:0:{}:{ALL_IDS}",
                owner.uid
            ));
            argv.push(format!(
                "--translate-gid=squash-guest:0:{}:{ALL_IDS}",
                owner.gid
            ));
        }
        argv
    }

    /// QEMU's end of the share: the daemon's socket in `socket_dir` as a
    /// character device and the `vhost-user-fs-pci` device on it.
    pub fn qemu_args(&self, socket_dir: &Utf8Path) -> [String; 4] {
        let id = format!("vfs-{}", self.tag);
        [
            "-chardev".to_owned(),
            format!(
                "socket,id={id},path={}",
                qemu::escape(self.socket(socket_dir).as_str())
            ),
            "-device".to_owned(),
            format!(
                "vhost-user-fs-pci,queue-size=1024,chardev={id},tag={}",
                self.tag
            ),
        ]
    }
}

/// virtiofsd's `--cache` for a share's cache mode: `none` promises to see
/// every change made on the host at once, which only `never` keeps; the 9p
/// modes that cache (`loose`, `fscache`, `mmap`) trade that for speed, as
/// `auto` does (cached, revalidated after a timeout).
pub fn cache_policy(cache: CacheMode) -> &'static str {
    match cache {
        CacheMode::None => "never",
        CacheMode::Loose | CacheMode::Fscache | CacheMode::Mmap => "auto",
    }
}

/// The running daemons, with the directory each serves; stopped and
/// reaped when dropped.
pub struct Running {
    children: Vec<(Utf8PathBuf, Child)>,
}

/// Starts one `program` per daemon, each with its socket in `socket_dir`
/// already bound.
pub fn start(
    program: Option<&Utf8Path>,
    daemons: &[Daemon],
    socket_dir: &Utf8Path,
    owner: Owner,
) -> Result<Running> {
    let mut running = Running {
        children: Vec::new(),
    };
    if daemons.is_empty() {
        return Ok(running);
    }
    let Some(program) = program else {
        bail!("the manifest asks for virtiofs shares but names no virtiofsd; rebuild the VM with this nixos-shell's module, or set nixos-shell.mounts.protocol = \"9p\"");
    };
    for daemon in daemons {
        let socket = daemon.socket(socket_dir);
        let listener = UnixListener::bind(&socket)
            .with_context(|| format!("could not create the socket {socket}"))?;
        // The daemon's copy: not closed on exec. Only this thread spawns
        // now, and the listener is closed right after, so no other child
        // inherits it.
        let flags = fcntl_getfd(&listener).context("could not read a socket's flags")?;
        fcntl_setfd(&listener, flags - FdFlags::CLOEXEC)
            .context("could not hand a socket to virtiofsd")?;
        let mut command = Command::new(program);
        command
            .args(daemon.argv(owner, listener.as_raw_fd()))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // Its own process group: Ctrl-C typed before QEMU takes the
        // terminal must not stop a share under the VM; nixos-shell stops
        // the daemons itself.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        signals::die_with_parent(&mut command);
        let child = command.spawn().map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "virtiofsd {program} does not exist; build the VM again (it brings virtiofsd), or set nixos-shell.mounts.protocol = \"9p\""
            ),
            _ => anyhow::Error::new(err).context(format!("could not start virtiofsd {program}")),
        })?;
        // Now the daemon's alone: once it ends, QEMU's connection fails
        // instead of waiting in the backlog of a socket nobody serves.
        drop(listener);
        running.children.push((daemon.shared_dir.clone(), child));
    }
    Ok(running)
}

impl Running {
    /// What to say about daemons that ended with a failure while the VM
    /// ran (a share QEMU could not use): their shares, or `None`.
    pub fn failed(&mut self) -> Option<String> {
        let failed: Vec<String> = self
            .children
            .iter_mut()
            .filter_map(|(dir, child)| match child.try_wait() {
                Ok(Some(status)) if !status.success() => Some(dir.to_string()),
                _ => None,
            })
            .collect();
        (!failed.is_empty()).then(|| {
            format!(
                "virtiofsd could not serve {}; its message is above, or set nixos-shell.mounts.protocol = \"9p\"",
                failed.join(", ")
            )
        })
    }
}

impl Drop for Running {
    /// TERM to each daemon still running (one QEMU reached ends with QEMU;
    /// one it never reached waits forever), then reaps it; KILL for one
    /// that does not end soon.
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if let Ok(None) = child.try_wait() {
                if let Some(pid) = i32::try_from(child.id())
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for (_, child) in &mut self.children {
            if !matches!(signals::wait_until(child, deadline), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemons() -> [Daemon; 2] {
        [
            Daemon {
                tag: "home".to_owned(),
                shared_dir: "/home/a".into(),
                read_only: false,
                cache: CacheMode::Loose,
            },
            Daemon {
                tag: "mount0".to_owned(),
                shared_dir: "/data,x".into(),
                read_only: true,
                cache: CacheMode::Loose,
            },
        ]
    }

    #[test]
    fn a_users_daemon_writes_every_guest_users_files_as_that_user() {
        let [_, mount] = daemons();
        assert_eq!(
            mount.argv(
                Owner {
                    uid: 1000,
                    gid: 100
                },
                3
            ),
            [
                "--fd=3",
                "--shared-dir=/data,x",
                "--sandbox=none",
                "--cache=auto",
                "--log-level=error",
                "--readonly",
                "--translate-uid=squash-guest:0:1000:4294967295",
                "--translate-gid=squash-guest:0:100:4294967295",
            ]
        );
    }

    #[test]
    fn roots_daemon_writes_as_the_guests_user() {
        let [home, _] = daemons();
        assert_eq!(
            home.argv(Owner { uid: 0, gid: 0 }, 4),
            [
                "--fd=4",
                "--shared-dir=/home/a",
                "--sandbox=none",
                "--cache=auto",
                "--log-level=error",
            ]
        );
    }

    #[test]
    fn qemu_reaches_the_daemon_through_a_vhost_user_fs_device() {
        let [home, _] = daemons();
        assert_eq!(
            home.qemu_args("/s,1".into()),
            [
                "-chardev",
                "socket,id=vfs-home,path=/s,,1/home.sock",
                "-device",
                "vhost-user-fs-pci,queue-size=1024,chardev=vfs-home,tag=home",
            ]
        );
    }

    #[test]
    fn cache_none_never_caches_and_the_others_cache() {
        assert_eq!(cache_policy(CacheMode::None), "never");
        for cache in [CacheMode::Loose, CacheMode::Fscache, CacheMode::Mmap] {
            assert_eq!(cache_policy(cache), "auto");
        }
    }

    #[test]
    fn running_daemons_hold_their_sockets_and_are_stopped_and_reaped_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        // A stand-in daemon: waits to be stopped.
        let program = root.join("virtiofsd");
        std::fs::write(&program, "#!/bin/sh\nexec sleep 60\n").unwrap();
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let daemons = daemons();
        let running = start(Some(&program), &daemons, root, Owner::current()).unwrap();
        let pids: Vec<u32> = running.children.iter().map(|(_, c)| c.id()).collect();
        assert_eq!(pids.len(), 2);
        for (daemon, pid) in daemons.iter().zip(&pids) {
            // The daemon holds the listening socket QEMU connects to: its
            // inode, from the kernel's list of Unix sockets by path, is
            // among the daemon's open files (inherited before its exec,
            // which spawn waited for).
            let socket = daemon.socket(root);
            let sockets = std::fs::read_to_string("/proc/net/unix").unwrap();
            let inode = sockets
                .lines()
                .find(|line| line.ends_with(socket.as_str()))
                .and_then(|line| line.split_whitespace().nth(6))
                .unwrap_or_else(|| panic!("no socket at {socket}"));
            let held = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|link| link.to_string_lossy() == format!("socket:[{inode}]"));
            assert!(held, "daemon {pid} does not hold {socket}");
            std::os::unix::net::UnixStream::connect(&socket).unwrap();
        }
        drop(running);
        for pid in pids {
            assert!(
                !Utf8Path::new(&format!("/proc/{pid}")).exists(),
                "daemon {pid} still runs or was not reaped"
            );
        }
    }

    #[test]
    fn a_missing_virtiofsd_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let Err(err) = start(
            Some("/nonexistent/virtiofsd".into()),
            &daemons(),
            root,
            Owner::current(),
        ) else {
            panic!("a missing virtiofsd started");
        };
        assert_eq!(
            err.to_string(),
            "virtiofsd /nonexistent/virtiofsd does not exist; build the VM again (it brings virtiofsd), or set nixos-shell.mounts.protocol = \"9p\""
        );
    }
}
