//! Running the host's `--command`: `SHELL -c CMD` (the user's shell when
//! the guest has it, else `/bin/sh`) in a new session, in the host's cwd,
//! with the host's HOME, USER, TERM and PATH; on the console as its
//! controlling terminal (so Ctrl-C reaches it), or with its streams on the
//! virtio-serial ports (`schema::facts::CommandIo`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::pipe::PipeFlags;

use super::{ports, session};
use crate::schema::facts::HostFacts;
use crate::schema::host_nix;
use crate::schema::ports::Port;

/// The status reported when the command could not be started at all (as a
/// shell reports a command it cannot execute).
pub const FAILED_TO_START: i32 = 126;

/// The shell that runs the command when the user's is not in the guest.
pub const SHELL: &str = "/bin/sh";

/// Where a NixOS guest keeps its programs: a systemd unit's own `PATH` lacks
/// them, a login shell has them.
const NIXOS_PATH: [&str; 4] = [
    "/run/wrappers/bin",
    "/root/.nix-profile/bin",
    "/nix/var/nix/profiles/default/bin",
    "/run/current-system/sw/bin",
];

/// The guest's `PATH` for the command: NixOS' system directories that
/// exist, then the role's own `PATH`.
pub fn guest_path(own: Option<&str>, exists: impl Fn(&str) -> bool) -> String {
    NIXOS_PATH
        .into_iter()
        .filter(|dir| exists(dir))
        .chain(own.filter(|p| !p.is_empty()))
        .collect::<Vec<_>>()
        .join(":")
}

/// What the guest adds to a command's environment besides the facts.
#[derive(Debug, Clone, Default)]
pub struct GuestEnv<'a> {
    /// The guest's `PATH`, kept after the host's.
    pub path: Option<&'a str>,
    /// The directory that holds the terminal's terminfo entry, when there
    /// is one.
    pub terminfo_dir: Option<Utf8PathBuf>,
    /// The role's own `TERMINFO_DIRS`, kept after that directory.
    pub terminfo_dirs: Option<&'a str>,
}

impl<'a> GuestEnv<'a> {
    /// For a command of `facts` (the host's terminal's entry in the
    /// session share): `guest_path`, and the role's own `TERMINFO_DIRS`
    /// in `own_terminfo_dirs`.
    pub fn of(facts: &HostFacts, guest_path: &'a str, own_terminfo_dirs: Option<&'a str>) -> Self {
        GuestEnv {
            path: Some(guest_path),
            terminfo_dir: session::terminfo_dir(facts),
            terminfo_dirs: own_terminfo_dirs,
        }
    }
}

/// Whether the run relays the guest's nix to the host's daemon.
pub fn relays_host_nix(facts: &HostFacts) -> bool {
    facts.ports.contains(&Port::HostNix)
}

/// The variables set for the command; the rest of the environment is the
/// guest role's own.
pub fn environment(facts: &HostFacts, guest: &GuestEnv) -> BTreeMap<String, String> {
    let guest_path = guest.path;
    let mut env = BTreeMap::new();
    env.insert("HOME".to_owned(), facts.home.to_string());
    env.insert("USER".to_owned(), facts.user.clone());
    if let Some(term) = &facts.term {
        env.insert("TERM".to_owned(), term.clone());
    }
    let path = match (facts.path.as_deref(), guest_path) {
        (Some(host), Some(guest)) if !guest.is_empty() => Some(format!("{host}:{guest}")),
        (Some(host), _) => Some(host.to_owned()),
        (None, guest) => guest.map(str::to_owned),
    };
    if let Some(path) = path {
        env.insert("PATH".to_owned(), path);
    }
    if let Some(dir) = &guest.terminfo_dir {
        let dirs = match guest.terminfo_dirs.filter(|dirs| !dirs.is_empty()) {
            Some(guest) => format!("{dir}:{guest}"),
            None => dir.to_string(),
        };
        env.insert("TERMINFO_DIRS".to_owned(), dirs);
    }
    // Nix in the guest builds into the host's store through the guest
    // role's relay (`guest::host_nix`); nix's `unix://` store
    // (UDSRemoteStore) connects to that socket. Not `daemon`/`auto`: those
    // reach the guest's own daemon, or as root its local store.
    if relays_host_nix(facts) {
        env.insert("NIX_REMOTE".to_owned(), host_nix::NIX_REMOTE.to_owned());
    }
    env
}

/// The directory the command starts in: the host's cwd when the guest has
/// it (home or an extra mount), else the home directory, else `/`.
pub fn working_dir(facts: &HostFacts, is_dir: impl Fn(&Utf8Path) -> bool) -> Utf8PathBuf {
    [facts.cwd.as_path(), facts.home.as_path()]
        .into_iter()
        .find(|dir| is_dir(dir))
        .unwrap_or(Utf8Path::new("/"))
        .to_owned()
}

/// `shell -c command` (else `/bin/sh`) in the host's cwd with the host's
/// variables, `guest_path` being the guest's `PATH`.
fn shell_command(
    command: &str,
    facts: &HostFacts,
    shell: Option<&Utf8Path>,
    guest_path: &str,
) -> Command {
    let mut child = Command::new(shell.unwrap_or(Utf8Path::new(SHELL)));
    child
        .arg("-c")
        .arg(command)
        .current_dir(working_dir(facts, |dir| dir.is_dir()))
        .envs(environment(
            facts,
            &GuestEnv::of(
                facts,
                guest_path,
                std::env::var("TERMINFO_DIRS").ok().as_deref(),
            ),
        ));
    child
}

/// Starts the command in a session of its own; with `take_console`, its
/// standard input (the console) becomes its controlling terminal, so that
/// Ctrl-C typed there reaches it.
pub fn spawn_in_new_session(mut child: Command, take_console: bool) -> std::io::Result<Child> {
    // SAFETY: the closure runs between fork and exec, where only
    // async-signal-safe calls may be made; it makes system calls only
    // (signal(2), sched_setscheduler(2), setsid(2), ioctl(2)), which take
    // no lock and allocate nothing, and turns their errno into an
    // `io::Error` without allocating. Standard input is already the console when it runs.
    unsafe {
        child.pre_exec(move || {
            // The signals a terminal sends, at their defaults whatever the
            // role inherited: a job an init script starts in the
            // background ignores SIGINT and SIGQUIT (POSIX, Shell Command
            // Language 2.11), and ignored signals survive exec.
            for signal in [libc::SIGINT, libc::SIGQUIT] {
                libc::signal(signal, libc::SIG_DFL);
            }
            // An ordinary task, whatever its starter runs as (the attach
            // server is a batch task, which its children would inherit:
            // `SCHED_RESET_ON_FORK` resets only real-time policies).
            let ordinary = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_OTHER, &ordinary);
            rustix::process::setsid()?;
            // rustix's `ioctl_tiocsctty` passes 0, which fails when the
            // console is another session's controlling terminal, as busybox
            // init makes it for the role's own session; 1 takes it over,
            // which root may.
            if take_console && libc::ioctl(0, libc::TIOCSCTTY, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    child.spawn()
}

/// The exit status of `status`: `128 + N` when signal N ended it.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(FAILED_TO_START)
}

/// Runs `command` with `shell` (else `/bin/sh`) on `console` and waits for
/// it, `guest_path` being the guest's `PATH`; returns its exit status.
pub fn run_on_console(
    console: &Utf8Path,
    command: &str,
    facts: &HostFacts,
    shell: Option<&Utf8Path>,
    guest_path: &str,
) -> anyhow::Result<i32> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open(console)
        .with_context(|| format!("cannot open the console {console} to run the command"))?;
    let stdin = tty.try_clone().context("cannot duplicate the console")?;
    let stdout = tty.try_clone().context("cannot duplicate the console")?;
    let mut child = shell_command(command, facts, shell, guest_path);
    child
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(tty));
    let status = spawn_in_new_session(child, true)
        .and_then(|mut child| child.wait())
        .with_context(|| format!("cannot run {command:?} on {console}"))?;
    Ok(exit_code(status))
}

/// Runs `command` like [`run_on_console`], its standard streams on the
/// virtio-serial ports [`Port::STDIO`]: nixos-shell's own on the host.
///
/// Standard input is the port itself (it reads as end of file once the
/// host's input ends). Output goes through a pipe that a relay thread
/// copies to the port: a write to a port whose host end is gone blocks
/// forever, while the relay sees the hang-up and closes the pipe, so the
/// command gets SIGPIPE as in a pipeline on the host.
pub fn run_with_ports(
    command: &str,
    facts: &HostFacts,
    shell: Option<&Utf8Path>,
    guest_path: &str,
) -> anyhow::Result<i32> {
    let open = |port: Port, write: bool| -> anyhow::Result<File> {
        let device = ports::wait_for(port).with_context(|| {
            format!(
                "the host passes the command's streams on virtio ports, but the guest has no port {}",
                port.name()
            )
        })?;
        OpenOptions::new()
            .read(!write)
            .write(write)
            .open(&device)
            .with_context(|| format!("cannot open the port {device}"))
    };
    let stdin = open(Port::Stdin, false)?;
    let stdout = open(Port::Stdout, true)?;
    let stderr = open(Port::Stderr, true)?;
    let (out_read, out_write) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC).context("cannot create a pipe")?;
    let (err_read, err_write) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC).context("cannot create a pipe")?;
    let mut child = shell_command(command, facts, shell, guest_path);
    child
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(out_write))
        .stderr(Stdio::from(err_write));
    // Spawned and dropped at once, so that the pipes' write ends are the
    // command's alone and read as closed when it ends.
    let spawned = spawn_in_new_session(child, false);
    let mut running = spawned.with_context(|| format!("cannot run {command:?}"))?;
    let done = Arc::new(AtomicBool::new(false));
    let relays: Vec<_> = [(out_read, stdout), (err_read, stderr)]
        .into_iter()
        .map(|(pipe, port)| {
            let done = Arc::clone(&done);
            thread::spawn(move || relay(File::from(pipe), port, &done))
        })
        .collect();
    let status = running.wait().context("cannot wait for the command")?;
    done.store(true, Ordering::Relaxed);
    for relay in relays {
        let _ = relay.join();
    }
    Ok(exit_code(status))
}

/// How long a relay waits for more output once the command has ended: what
/// the command wrote is in the pipe at once; a process it left running may
/// keep writing, and the VM must still power off.
const DRAIN_WAIT: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 50_000_000,
};

/// Copies `pipe` to `port` until the pipe ends, the host stops reading, or
/// `done` is set and the pipe has stayed empty for [`DRAIN_WAIT`].
///
/// The port is made non-blocking and each write waits in poll(2), which
/// wakes on room or on the host's hang-up. A blocking write waits only for
/// room, and a port whose host end is gone has none until the host comes
/// back, which it does not: such a write sleeps for good, and the command,
/// its pipe full, with it (Linux's drivers/char/virtio_console.c,
/// `port_fops_write` and `will_write_block`). Polling once before a
/// blocking write is not enough: the host may hang up in between, and one
/// write takes at most 32 KiB there, so a 64 KiB chunk is two writes.
fn relay(mut pipe: File, port: File, done: &AtomicBool) {
    if rustix::fs::fcntl_setfl(&port, OFlags::NONBLOCK).is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut ready = [PollFd::new(&pipe, PollFlags::IN)];
        if !matches!(poll(&mut ready, Some(&DRAIN_WAIT)), Ok(n) if n > 0) {
            if done.load(Ordering::Relaxed) {
                return;
            }
            continue;
        }
        let n = match pipe.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !send(&port, &buf[..n]) {
            return;
        }
    }
}

/// Writes all of `bytes` to the non-blocking `port`, waiting in poll(2)
/// for room; false once the host has hung up (or the port fails).
fn send(mut port: &File, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        let mut writable = [PollFd::new(port, PollFlags::OUT)];
        match poll(&mut writable, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => return false,
        }
        let revents = writable[0].revents();
        if revents.intersects(PollFlags::HUP | PollFlags::ERR) {
            return false;
        }
        if !revents.contains(PollFlags::OUT) {
            continue;
        }
        match port.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        serde_json::from_str(
            r#"{"version":1,"user":"alice","home":"/home/alice","cwd":"/home/alice/src",
                "term":"xterm","path":"/host/bin"}"#,
        )
        .unwrap()
    }

    #[test]
    fn host_path_comes_before_the_guests() {
        let guest = GuestEnv {
            path: Some("/run/current-system/sw/bin"),
            ..GuestEnv::default()
        };
        let env = environment(&facts(), &guest);
        let expected: BTreeMap<String, String> = [
            ("HOME", "/home/alice"),
            ("PATH", "/host/bin:/run/current-system/sw/bin"),
            ("TERM", "xterm"),
            ("USER", "alice"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(env, expected);
    }

    #[test]
    fn a_relayed_host_nix_is_the_commands_store() {
        let mut facts = facts();
        let env = environment(&facts, &GuestEnv::default());
        assert!(!env.contains_key("NIX_REMOTE"));
        facts.ports = vec![Port::HostNix];
        let env = environment(&facts, &GuestEnv::default());
        assert_eq!(
            env.get("NIX_REMOTE").map(String::as_str),
            Some("unix:///run/nixos-shell/host-nix.sock")
        );
    }

    #[test]
    fn without_a_host_path_the_guests_stays() {
        let mut facts = facts();
        facts.path = None;
        facts.term = None;
        let guest = GuestEnv {
            path: Some("/bin"),
            ..GuestEnv::default()
        };
        let env = environment(&facts, &guest);
        assert_eq!(env.get("PATH").map(String::as_str), Some("/bin"));
        assert!(!env.contains_key("TERM"));
    }

    #[test]
    fn the_hosts_terminfo_entry_comes_before_the_guests_own() {
        let mut facts = facts();
        facts.terminfo_dir = Some("terminfo".into());
        let dirs = |own| {
            environment(&facts, &GuestEnv::of(&facts, "/bin", own))
                .get("TERMINFO_DIRS")
                .cloned()
        };
        assert_eq!(
            dirs(Some("/run/current-system/sw/share/terminfo")).as_deref(),
            Some("/run/nixos-shell/session/terminfo:/run/current-system/sw/share/terminfo")
        );
        assert_eq!(
            dirs(None).as_deref(),
            Some("/run/nixos-shell/session/terminfo")
        );
        let without = self::facts();
        let env = environment(&without, &GuestEnv::of(&without, "/bin", None));
        assert!(!env.contains_key("TERMINFO_DIRS"));
    }

    #[test]
    fn the_guest_path_adds_nixos_system_dirs_that_exist() {
        let nixos = |dir: &str| dir.starts_with("/run/");
        assert_eq!(
            guest_path(Some("/usr/bin:/bin"), nixos),
            "/run/wrappers/bin:/run/current-system/sw/bin:/usr/bin:/bin"
        );
        assert_eq!(guest_path(Some("/bin"), |_| false), "/bin");
        assert_eq!(guest_path(None, |_| false), "");
    }

    #[test]
    fn cwd_falls_back_to_home_then_root() {
        let facts = facts();
        assert_eq!(working_dir(&facts, |_| true), "/home/alice/src");
        assert_eq!(
            working_dir(&facts, |dir| dir == "/home/alice"),
            "/home/alice"
        );
        assert_eq!(working_dir(&facts, |_| false), "/");
    }
}
