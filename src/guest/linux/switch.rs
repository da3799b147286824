//! `nixos-shell-guest switch TOPLEVEL`, which `nixos-shell --switch` runs
//! through an attach session once the host has built TOPLEVEL: checks that
//! the new system is visible in this guest's store, then activates it as
//! nixos-rebuild does, `switch-to-configuration test` (no boot entry) in a
//! transient unit of its own, and follows it: its output on this step's
//! streams and its exit status this step's.
//!
//! The activation does not depend on this step, nor on the attach server
//! whose session runs it: a switch may stop or restart that server (a
//! unit renamed or removed, a user's `systemctl restart`), and with it
//! every process of the server's unit, this step included. So the
//! activation (`nixos-shell-guest activate`, [`activate`]) writes its
//! output into a record under [`RECORDS`] and its status there when it
//! ends; this step only follows the record. The host names the activation
//! (`--id`) and, when its session was lost, runs the step again with the
//! bytes it has (`--stdout`, `--stderr`): an activation that runs or ran
//! under that name is followed from there, never started twice.
//!
//! Unlike the other steps, this one fails with the activation's status:
//! the host reports it, nothing here runs in a unit of the boot.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use camino::{Utf8Path, Utf8PathBuf};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::inotify;
use rustix::io::Errno;
use rustix::process::{pidfd_open, Pid, PidfdFlags};

use super::command;

/// The status when the system cannot be activated at all (not visible,
/// not switchable, nothing to run it with).
pub const REFUSED: u8 = 1;

/// Where the kernel drops its dentry and inode caches (proc(5),
/// `/proc/sys/vm/drop_caches`: 2 frees dentries and inodes).
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// The activations' records, one directory each ([`Record`]); under /run,
/// so they go with the boot.
const RECORDS: &str = crate::schema::facts::GUEST_SWITCH_DIR;

/// How long an ended activation's record is kept: far longer than a
/// client takes to come back for its status.
const KEEP: Duration = Duration::from_secs(600);

/// Where a follower starts in the record's two streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offsets {
    pub stdout: u64,
    pub stderr: u64,
}

/// Switches this guest to `toplevel` under the name `id` (this process'
/// when none is given), following the activation from `from`: its exit
/// status. `registration` (the new system's closure) is loaded into the
/// guest's Nix database first.
pub fn switch(
    toplevel: &Utf8Path,
    id: Option<&str>,
    from: Offsets,
    registration: Option<&Utf8Path>,
) -> u8 {
    let Some(id) = switch_name(id) else {
        return REFUSED;
    };
    let record = Record(Utf8Path::new(RECORDS).join(&id));
    // Started already: the client lost its session and follows it again.
    if record.0.is_dir() {
        return record.follow(from, None);
    }
    let program = toplevel.join(SWITCH_PROGRAM);
    if !switchable(toplevel, &program) {
        return REFUSED;
    }
    prune(Utf8Path::new(RECORDS));
    if let Err(err) = record.create() {
        eprintln!(
            "nixos-shell: cannot create the switch's record {}: {err}",
            record.0
        );
        return REFUSED;
    }
    let guest_path = super::guest_path();
    if let Some(registration) = registration {
        record.register(registration, &guest_path);
    }
    start_activation(&record, &program, &guest_path, &id, from)
}

/// The switch's name: `id`, else one of this process'; `None` (said) when
/// it is not letters, digits and -.
fn switch_name(id: Option<&str>) -> Option<String> {
    let id = id.map_or_else(|| format!("g{}", std::process::id()), str::to_owned);
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        eprintln!("nixos-shell: the switch's name {id:?} is not letters, digits and -");
        return None;
    }
    Some(id)
}

/// Whether `toplevel` can be switched to here, with its `program`; what
/// is not is said.
fn switchable(toplevel: &Utf8Path, program: &Utf8Path) -> bool {
    if !visible(toplevel, |path| path.exists()) {
        eprintln!(
            "nixos-shell: {toplevel} is not visible in the VM's store; \
             restart the VM to run it (its store is not the host's, or lags behind it)"
        );
        return false;
    }
    if !program.is_file() {
        eprintln!(
            "nixos-shell: {toplevel} has no {SWITCH_PROGRAM} (system.switch.enable = false); \
             restart the VM to run it"
        );
        return false;
    }
    true
}

/// Starts the activation `id` of `program` into `record`, with systemd-run
/// where the guest has it, and follows it from `from`: its status.
fn start_activation(
    record: &Record,
    program: &Utf8Path,
    guest_path: &str,
    id: &str,
    from: Offsets,
) -> u8 {
    let systemd_run = on_path(guest_path, "systemd-run");
    let own = match std::env::current_exe().map(Utf8PathBuf::try_from) {
        Ok(Ok(own)) => own,
        _ => {
            eprintln!("nixos-shell: cannot find this program to run the activation with");
            return REFUSED;
        }
    };
    let argv = activation(&own, &record.0, program, systemd_run.as_deref(), id);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env("PATH", guest_path)
        .stdin(Stdio::null());
    match &systemd_run {
        // systemd-run without --wait returns once the unit's process runs
        // (`--service-type=exec`, systemd-run(1)); what it says on failure
        // is this step's to say.
        Some(_) => match cmd.status() {
            Ok(status) if status.success() => record.follow(from, None),
            Ok(status) => {
                eprintln!("nixos-shell: systemd-run could not start the activation ({status})");
                REFUSED
            }
            Err(err) => {
                eprintln!("nixos-shell: cannot run {}: {err}", argv[0]);
                REFUSED
            }
        },
        // No systemd (the test harness' busybox guest, never NixOS): the
        // activation runs in a process group of its own, apart from this
        // step, which a restart of the server may end as systemd would.
        None => {
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0);
            match cmd.spawn() {
                Ok(child) => record.follow(from, Some(child)),
                Err(err) => {
                    eprintln!("nixos-shell: cannot run {}: {err}", argv[0]);
                    REFUSED
                }
            }
        }
    }
}

/// `nixos-shell-guest activate RECORD PROGRAM`: runs `PROGRAM test` with
/// its output in the record, and records its status when it ends.
pub fn activate(record: &Utf8Path, program: &Utf8Path) -> u8 {
    let record = Record(record.to_owned());
    let code = match record.run(program) {
        Ok(code) => code,
        Err(err) => {
            // The unit's journal (or nobody, without systemd) has it; the
            // status says the activation did not run.
            eprintln!("nixos-shell: cannot run {program}: {err}");
            REFUSED
        }
    };
    if let Err(err) = record.end(code) {
        eprintln!("nixos-shell: cannot record the activation's status: {err}");
    }
    code
}

/// One activation's directory: `stdout` and `stderr` as it writes them,
/// `status` (its exit status, in decimal) once it ended, `pid` (the
/// activation's) while it runs.
struct Record(Utf8PathBuf);

impl Record {
    /// Makes the directory and its two empty streams, before anything runs.
    fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(RECORDS)?;
        std::fs::create_dir(&self.0)?;
        File::create(self.0.join("stdout"))?;
        File::create(self.0.join("stderr"))?;
        Ok(())
    }

    /// Runs `program test` with its streams appended to the record's.
    fn run(&self, program: &Utf8Path) -> std::io::Result<u8> {
        let append = |name: &str| {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(self.0.join(name))
        };
        std::fs::write(self.0.join("pid"), std::process::id().to_string())?;
        let status = Command::new(program)
            .arg("test")
            .stdin(Stdio::null())
            .stdout(append("stdout")?)
            .stderr(append("stderr")?)
            .status()?;
        Ok(u8::try_from(command::exit_code(status)).unwrap_or(REFUSED))
    }

    /// Loads `registration` into the guest's own Nix database, as
    /// qemu-vm.nix does at boot for the system the VM booted
    /// (`nix-store --load-db < ${regInfo}/registration`;
    /// nixos/modules/virtualisation/qemu-vm.nix): otherwise the guest's nix
    /// takes the new system for garbage, invalid, which its collector may
    /// delete from the store's writable layer. Only where the guest has a
    /// `nix-store` and a database of its own (a system with `nix.enable`);
    /// elsewhere nothing to do. What it says goes to the record's streams,
    /// before the activation's; a failure is said there and the switch goes
    /// on.
    fn register(&self, registration: &Utf8Path, guest_path: &str) {
        let Some(nix_store) = on_path(guest_path, "nix-store") else {
            return;
        };
        if !Utf8Path::new(NIX_DB).is_file() {
            return;
        }
        let append = |name: &str| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(self.0.join(name))
        };
        let loaded = (|| -> std::io::Result<std::process::ExitStatus> {
            Command::new(&nix_store)
                .arg("--load-db")
                .stdin(File::open(registration)?)
                .stdout(append("stdout")?)
                .stderr(append("stderr")?)
                .env("PATH", guest_path)
                // The guest's own store, never the host's through the relay
                // (`NIX_REMOTE` of root's sessions, `guest::linux::host_nix`).
                .env_remove("NIX_REMOTE")
                .status()
        })();
        let said = match loaded {
            Ok(status) if status.success() => return,
            Ok(status) => format!("{nix_store} --load-db ended with {status}"),
            Err(err) => format!("cannot run {nix_store} --load-db < {registration}: {err}"),
        };
        if let Ok(mut stderr) = append("stderr") {
            let _ = writeln!(
                stderr,
                "nixos-shell: the new system is not registered in the guest's Nix database ({said}); switching anyway"
            );
        }
    }

    /// Records `code` whole: written aside, then renamed into place.
    fn end(&self, code: u8) -> std::io::Result<()> {
        let aside = self.0.join("status.new");
        std::fs::write(&aside, code.to_string())?;
        std::fs::rename(&aside, self.0.join("status"))
    }

    /// The recorded status, once there is one.
    fn status(&self) -> Option<u8> {
        std::fs::read_to_string(self.0.join("status"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    /// A pidfd of the activation's process, from the `pid` it wrote:
    /// `Ok(None)` while it has not written it yet, `Err` once the process
    /// is gone.
    fn pidfd(&self) -> Result<Option<OwnedFd>, Gone> {
        let Ok(pid) = std::fs::read_to_string(self.0.join("pid")) else {
            return Ok(None);
        };
        // Written whole after its creation: an empty file is read again at
        // its next change.
        let Some(pid) = pid.trim().parse().ok().and_then(Pid::from_raw) else {
            return Ok(None);
        };
        match pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::SRCH) => Err(Gone),
            // Nothing to watch it with (a kernel before 5.3): its end is
            // only seen through its status.
            Err(_) => Ok(None),
        }
    }

    /// Copies the record's streams to this step's from `from` until the
    /// activation ended: its status. `child` is the activation's process
    /// when this step started it (reaped at the end).
    fn follow(&self, from: Offsets, child: Option<std::process::Child>) -> u8 {
        let code = self.copy_until_ended(from);
        if let Some(mut child) = child {
            let _ = child.wait();
        }
        code
    }

    /// Follows the record without a timer: it waits in poll(2) on inotify
    /// (the streams' writes, the status renamed into place, the `pid`
    /// written), on a pidfd of the activation (its end without a status:
    /// its unit stopped, the process killed), and on this step's own
    /// streams (their reader, the session's server, gone).
    fn copy_until_ended(&self, from: Offsets) -> u8 {
        // Watched before anything is read: what changes after the read
        // wakes the wait.
        let watch = match self.watch() {
            Ok(watch) => watch,
            Err(err) => return self.cannot("watch", &err),
        };
        let (mut out, mut err) = match self.open_streams(from) {
            Ok(streams) => streams,
            Err(e) => return self.cannot("read", &e),
        };
        let mut chunk = vec![0; 64 * 1024];
        let mut pidfd: Option<OwnedFd> = None;
        let mut gone = false;
        loop {
            if pidfd.is_none() && !gone {
                match self.pidfd() {
                    Ok(fd) => pidfd = fd,
                    Err(Gone) => gone = true,
                }
            }
            // Read after the process was seen gone and before the last
            // copy: once a status is there, all the output is in the files.
            let ended = self.status();
            let vanished = ended.is_none() && gone;
            let copied = copy(&mut out, &mut std::io::stdout(), &mut chunk)
                .and_then(|()| copy(&mut err, &mut std::io::stderr(), &mut chunk));
            if copied.is_err() {
                // Nobody reads this session any more (its server ended):
                // the client follows the record again from what it has.
                return REFUSED;
            }
            if let Some(code) = ended {
                return code;
            }
            if vanished {
                eprintln!(
                    "nixos-shell: the activation ended without a status (its unit stopped?); \
                     see {}",
                    self.0
                );
                return REFUSED;
            }
            match wait_for_change(&watch, pidfd.as_ref()) {
                Ok(Woken::Unread) => return REFUSED,
                Ok(Woken::Changed { gone: seen_gone }) => gone |= seen_gone,
                Err(err) => return self.cannot("follow", &err),
            }
        }
    }

    /// Says that this step cannot `what` the record, for `err`: the
    /// status for it.
    fn cannot(&self, what: &str, err: &dyn std::fmt::Display) -> u8 {
        eprintln!(
            "nixos-shell: cannot {what} the switch's record {}: {err}",
            self.0
        );
        REFUSED
    }

    /// An inotify watch of the record's directory, non-blocking: what is
    /// written, created or renamed into it.
    fn watch(&self) -> rustix::io::Result<OwnedFd> {
        inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).and_then(
            |watch| {
                inotify::add_watch(
                    &watch,
                    self.0.as_str(),
                    inotify::WatchFlags::MODIFY
                        | inotify::WatchFlags::CLOSE_WRITE
                        | inotify::WatchFlags::CREATE
                        | inotify::WatchFlags::MOVED_TO,
                )
                .map(|_| watch)
            },
        )
    }

    /// The record's two streams, opened at `from`.
    fn open_streams(&self, from: Offsets) -> std::io::Result<(File, File)> {
        let open = |name: &str, at: u64| -> std::io::Result<File> {
            let mut file = File::open(self.0.join(name))?;
            file.seek(SeekFrom::Start(at))?;
            Ok(file)
        };
        match (open("stdout", from.stdout), open("stderr", from.stderr)) {
            (Ok(out), Ok(err)) => Ok((out, err)),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }
}

/// What ended a follower's wait.
enum Woken {
    /// This step's streams lost their reader.
    Unread,
    /// The record may have changed (or a signal came): look again;
    /// `gone` when the activation's process ended.
    Changed { gone: bool },
}

/// Waits until the record `watch`ed changes, the activation's `pidfd`
/// ends or this step's streams lose their reader, and takes the watch's
/// events.
fn wait_for_change(watch: &OwnedFd, pidfd: Option<&OwnedFd>) -> rustix::io::Result<Woken> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    // A pipe's writer is told POLLERR once its reader is gone,
    // asked for or not (poll(2)).
    let mut fds = vec![
        PollFd::new(watch, PollFlags::IN),
        PollFd::new(&stdout, PollFlags::empty()),
        PollFd::new(&stderr, PollFlags::empty()),
    ];
    if let Some(pidfd) = pidfd {
        fds.push(PollFd::new(pidfd, PollFlags::IN));
    }
    match poll(&mut fds, None) {
        Ok(_) | Err(Errno::INTR) => {}
        Err(err) => return Err(err),
    }
    let unread = PollFlags::ERR | PollFlags::HUP;
    if fds[1].revents().intersects(unread) || fds[2].revents().intersects(unread) {
        return Ok(Woken::Unread);
    }
    let gone = fds.get(3).is_some_and(|fd| !fd.revents().is_empty());
    drop(fds);
    // Taken: what changed is read again whole.
    let mut events = [0u8; 4096];
    while rustix::io::read(watch, &mut events).is_ok_and(|n| n > 0) {}
    Ok(Woken::Changed { gone })
}

/// The activation's process is gone.
struct Gone;

/// The guest's own Nix database (a local store's, nix's `state` dir).
const NIX_DB: &str = "/nix/var/nix/db/db.sqlite";

/// `program` in the first directory of `path` that has it.
fn on_path(path: &str, program: &str) -> Option<Utf8PathBuf> {
    path.split(':')
        .map(|dir| Utf8Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// Copies what `from` has now to `to`.
fn copy(from: &mut File, to: &mut impl Write, chunk: &mut [u8]) -> std::io::Result<()> {
    loop {
        match from.read(chunk)? {
            0 => return to.flush(),
            n => to.write_all(&chunk[..n])?,
        }
    }
}

/// Removes the records of activations that ended more than [`KEEP`] ago.
fn prune(records: &Utf8Path) {
    let Ok(entries) = records.read_dir_utf8() else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let status = entry.path().join("status");
        let old = std::fs::metadata(&status)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|ended| now.duration_since(ended).ok())
            .is_some_and(|age| age > KEEP);
        if old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The toplevel's program that activates it (NixOS's
/// nixos/modules/system/activation/switchable-system.nix installs it unless
/// `system.switch.enable = false`).
const SWITCH_PROGRAM: &str = "bin/switch-to-configuration";

/// Whether `toplevel` is in the store as the guest sees it, `exists`
/// looking. The host's store reaches the guest through a share (9p
/// `cache=loose` or virtiofs `--cache=always`) under an overlay or a bind
/// at /nix/store (nixos/modules/virtualisation/qemu-vm.nix,
/// `virtualisation.fileSystems."/nix/store"`); a lookup of the name made
/// before the host built it may have left a negative dentry the overlay
/// keeps (linux Documentation/filesystems/overlayfs.rst, "Changes to
/// underlying filesystems"), so on a miss the dentries are dropped once
/// and the lookup repeated.
fn visible(toplevel: &Utf8Path, exists: impl Fn(&Utf8Path) -> bool) -> bool {
    if exists(toplevel) {
        return true;
    }
    // Root only; a failure leaves the second lookup to say.
    let _ = std::fs::write(DROP_CACHES, "2");
    exists(toplevel)
}

/// The command that runs `activate RECORD PROGRAM` (this program, `own`):
/// in a transient unit through `systemd_run`, as nixos-rebuild runs
/// switch-to-configuration "to protect against PTY failures/network
/// disconnections during rebuild" (pkgs/by-name/ni/nixos-rebuild/nixos-rebuild.sh).
/// switch-to-configuration only compares and stops the active units that
/// have a file in /etc/systemd/system, stopping one whose file the new
/// system lacks (X-StopOnRemoval, default true; the loop over
/// `current_active_units` in pkgs/by-name/sw/switch-to-configuration-ng/src/main.rs):
/// a transient unit has none, so the activation survives the stop or
/// restart of the unit that serves this very session. Without `--wait` and
/// `--pipe` the service runs "in a clean and detached execution
/// environment, with the service manager as its parent process", and
/// systemd-run returns "after the command has begun execution"
/// (systemd-run(1), with `--service-type=exec`); `--collect` unloads the
/// unit when it ends, even failed. The unit's name is ours and unique
/// (`id`), so it never collides with nixos-rebuild's or another switch's.
/// `LOCALE_ARCHIVE` is passed as nixos-rebuild passes it.
///
/// Without systemd-run (the test harness' busybox guest, never a NixOS
/// one) the command is `activate` itself.
fn activation(
    own: &Utf8Path,
    record: &Utf8Path,
    program: &Utf8Path,
    systemd_run: Option<&Utf8Path>,
    id: &str,
) -> Vec<Utf8PathBuf> {
    let mut argv: Vec<Utf8PathBuf> = Vec::new();
    if let Some(systemd_run) = systemd_run {
        argv.push(systemd_run.to_owned());
        for arg in [
            "-E",
            "LOCALE_ARCHIVE",
            "--collect",
            "--no-ask-password",
            "--quiet",
            "--service-type=exec",
        ] {
            argv.push(arg.into());
        }
        argv.push(format!("--unit=nixos-shell-switch-{id}").into());
    }
    argv.push(own.to_owned());
    argv.push("activate".into());
    argv.push(record.to_owned());
    argv.push(program.to_owned());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn the_activation_runs_in_a_transient_unit_when_systemd_can_run_one() {
        let own = Utf8Path::new("/nix/store/g/bin/nixos-shell-guest");
        let record = Utf8Path::new("/run/nixos-shell/switch/7");
        let program = Utf8Path::new("/nix/store/s/bin/switch-to-configuration");
        let argv = activation(
            own,
            record,
            program,
            Some("/run/current-system/sw/bin/systemd-run".into()),
            "7",
        );
        let argv: Vec<&str> = argv.iter().map(|a| a.as_str()).collect();
        assert_eq!(argv[0], "/run/current-system/sw/bin/systemd-run");
        // Its streams are the record's, not this step's: no --pipe, and
        // no --wait for a status this step may not live to see.
        assert!(!argv.contains(&"--wait") && !argv.contains(&"--pipe"));
        assert!(argv.contains(&"--unit=nixos-shell-switch-7"));
        let tail = [own.as_str(), "activate", record.as_str(), program.as_str()];
        assert_eq!(argv[argv.len() - 4..], tail);
        assert_eq!(
            activation(own, record, program, None, "7"),
            tail.map(Utf8PathBuf::from)
        );
    }

    #[test]
    fn a_follower_gets_the_output_from_its_offsets_then_the_status() {
        let dir = tempfile::tempdir().unwrap();
        let record = Record(Utf8Path::from_path(dir.path()).unwrap().join("r"));
        std::fs::create_dir(&record.0).unwrap();
        std::fs::write(record.0.join("stdout"), "seen\nnew\n").unwrap();
        std::fs::write(record.0.join("stderr"), "").unwrap();
        assert_eq!(record.status(), None);
        record.end(4).unwrap();
        assert_eq!(record.status(), Some(4));
        let mut out = File::open(record.0.join("stdout")).unwrap();
        out.seek(SeekFrom::Start(5)).unwrap();
        let mut got = Vec::new();
        copy(&mut out, &mut got, &mut [0; 3]).unwrap();
        assert_eq!(got, b"new\n");
    }

    /// Follows `record` on a thread of its own: its answer, or `None` when
    /// there is none within a hang guard.
    fn follow_apart(record: &Record) -> std::sync::mpsc::Receiver<u8> {
        let (tell, answer) = std::sync::mpsc::channel();
        let record = Record(record.0.clone());
        std::thread::spawn(move || {
            let _ = tell.send(record.copy_until_ended(Offsets::default()));
        });
        answer
    }

    /// A hang guard, far above what waking takes.
    const GUARD: Duration = Duration::from_secs(60);

    #[test]
    fn a_follower_wakes_for_the_status_and_for_an_activation_gone_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let record = Record(Utf8Path::from_path(dir.path()).unwrap().join("r"));
        std::fs::create_dir(&record.0).unwrap();
        std::fs::write(record.0.join("stdout"), "").unwrap();
        std::fs::write(record.0.join("stderr"), "").unwrap();
        // An activation that runs until its input ends.
        let mut running = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::fs::write(record.0.join("pid"), running.id().to_string()).unwrap();
        let answer = follow_apart(&record);
        record.end(3).unwrap();
        assert_eq!(answer.recv_timeout(GUARD), Ok(3));

        // The same, gone without a status.
        std::fs::remove_file(record.0.join("status")).unwrap();
        let answer = follow_apart(&record);
        drop(running.stdin.take());
        running.wait().unwrap();
        assert_eq!(answer.recv_timeout(GUARD), Ok(REFUSED));
    }

    #[test]
    fn a_system_not_seen_at_first_is_looked_up_again_once() {
        let looked = Cell::new(0);
        let seen_second_time = |_: &Utf8Path| {
            looked.set(looked.get() + 1);
            looked.get() == 2
        };
        assert!(visible("/nix/store/s".into(), seen_second_time));
        looked.set(0);
        assert!(!visible("/nix/store/s".into(), |_| {
            looked.set(looked.get() + 1);
            false
        }));
        assert_eq!(looked.get(), 2);
    }
}
