//! Where a user's running VMs are found: one entry per VM a nixos-shell of
//! theirs runs whose guest serves attaches, a symbolic link named
//! `<identity key>.<pid>` (the key that names the configuration's disk
//! image, the pid of the nixos-shell that runs it) to its attach socket in
//! that run's private session directory. The directory is the user's
//! runtime directory's `nixos-shell/` (`$XDG_RUNTIME_DIR`), else
//! `nixos-shell-<uid>/` in `$TMPDIR` (else `/tmp`), and is the user's alone
//! (mode 0700): nothing is found there that another user put.
//!
//! Beside each link, its companions (each goes with the link):
//! `<identity key>.<pid>.json` says what `--list` shows of the VM
//! ([`VmInfo`]), written whole before it is renamed into place, and
//! rewritten so by the holder's relay when an attach session opens or
//! ends ([`SessionCount`]);
//! `<identity key>.<pid>.build` links to the build result the VM runs, so
//! that `--switch` knows which system runs without asking the guest; and
//! `<identity key>.<pid>.result` is the out-link (a GC root) of the last
//! build `--switch` made for it, so that the host's garbage collector
//! leaves the system the VM was switched to while it runs.
//!
//! An entry of a nixos-shell that was killed outright stays behind; the
//! next lookup notices its process is gone and removes it.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::host::nix::Identity;

/// The registry's directory for a host with `env`; pure.
pub fn dir(env: &BTreeMap<String, String>) -> Utf8PathBuf {
    let set = |name: &str| env.get(name).filter(|v| v.starts_with('/'));
    match set("XDG_RUNTIME_DIR") {
        Some(runtime) => Utf8Path::new(runtime).join("nixos-shell"),
        None => Utf8Path::new(set("TMPDIR").map_or("/tmp", String::as_str)).join(format!(
            "nixos-shell-{}",
            rustix::process::geteuid().as_raw()
        )),
    }
}

/// Creates `dir` for this user alone, or checks that it is theirs alone.
fn own(dir: &Utf8Path) -> Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err).with_context(|| format!("could not create {dir}")),
    }
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("could not read {dir}"))?;
    let uid = rustix::process::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        bail!("{dir} is not a directory of yours alone (mode 0700); remove it and try again");
    }
    Ok(())
}

/// What a run knows of its VM that `--list` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmInfo {
    /// The VM's `system.name`.
    pub name: String,
    /// CONFIG as given, or `this directory`.
    pub config: String,
    /// When it started, in seconds since the epoch.
    pub started: u64,
    /// Whether it runs detached (`--detach`), without a terminal.
    pub detached: bool,
    /// Its disk image, if it has one.
    pub disk_image: Option<Utf8PathBuf>,
    /// Its forwards, as `--forward` takes them.
    pub forwards: Vec<String>,
    /// Its shares, `HOST:GUEST[:ro]`.
    pub shares: Vec<String>,
    /// The log its console goes to, when it runs detached.
    #[serde(default)]
    pub console_log: Option<Utf8PathBuf>,
    /// The attach sessions open in it now (kept by its relay).
    #[serde(default)]
    pub sessions: u32,
}

/// A running VM's entry, removed when dropped.
#[derive(Debug)]
pub struct Registration {
    link: Utf8PathBuf,
    /// What its info file says, and whether the entry is gone: shared
    /// with the relay's [`SessionCount`], which then writes nothing that
    /// would outlive the entry.
    shared: Arc<Mutex<Shared>>,
}

/// An entry's info as last written, and whether the entry is removed.
#[derive(Debug)]
struct Shared {
    info: VmInfo,
    removed: bool,
}

/// What the holder's relay rewrites of its entry while the VM runs: the
/// number of attach sessions in its info file, replaced whole (written
/// beside it, then renamed) when it changes.
#[derive(Debug)]
pub struct SessionCount {
    info_file: Utf8PathBuf,
    shared: Arc<Mutex<Shared>>,
}

impl SessionCount {
    /// Records that `sessions` attach sessions are open, unless that is
    /// what the entry says already or the entry is gone.
    pub fn set(&mut self, sessions: u32) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.removed || shared.info.sessions == sessions {
            return;
        }
        shared.info.sessions = sessions;
        // A count not written is a stale column of `--list`, not a reason
        // to end the VM; the next change writes it again.
        let _ = write_info(&self.info_file, &shared.info);
    }
}

/// The suffix of the info file beside an entry's link.
const INFO_SUFFIX: &str = ".json";

/// The suffix of the link beside an entry to the build its VM runs.
const BUILD_SUFFIX: &str = ".build";

/// The suffix of the out-link beside an entry of the build `--switch` made.
const RESULT_SUFFIX: &str = ".result";

/// What stands beside an entry's link and goes with it.
const COMPANIONS: [&str; 3] = [INFO_SUFFIX, BUILD_SUFFIX, RESULT_SUFFIX];

/// The companion of the entry `link` with `suffix`.
fn companion(link: &Utf8Path, suffix: &str) -> Utf8PathBuf {
    Utf8PathBuf::from(format!("{link}{suffix}"))
}

/// The info file beside an entry's `link`.
fn info_path(link: &Utf8Path) -> Utf8PathBuf {
    companion(link, INFO_SUFFIX)
}

/// Where `--switch` keeps the build it makes for the VM of `entry` (nix's
/// `--out-link`), removed with the entry.
pub fn result_link(entry: &Entry) -> Utf8PathBuf {
    companion(&entry.socket, RESULT_SUFFIX)
}

/// The build result the VM of `entry` runs, when its nixos-shell recorded
/// one.
pub fn build_of(entry: &Entry) -> Option<Utf8PathBuf> {
    std::fs::read_link(companion(&entry.socket, BUILD_SUFFIX))
        .ok()
        .and_then(|path| Utf8PathBuf::from_path_buf(path).ok())
}

/// Records that the VM of `entry` now runs the build result `build` (after
/// a switch to all of it): the link replaced at once.
pub fn record_build(entry: &Entry, build: &Utf8Path) -> Result<()> {
    replace_link(build, &companion(&entry.socket, BUILD_SUFFIX))
}

/// Makes `link` point at `target`, replacing what was there at once.
fn replace_link(target: &Utf8Path, link: &Utf8Path) -> Result<()> {
    let next = Utf8PathBuf::from(format!("{link}.next"));
    let _ = std::fs::remove_file(&next);
    std::os::unix::fs::symlink(target, &next)
        .with_context(|| format!("could not create {next}"))?;
    std::fs::rename(&next, link).with_context(|| format!("could not replace {link}"))
}

impl Registration {
    /// The entry's session count, for one boot's relay: a boot starts
    /// with none open.
    pub fn session_count(&self) -> SessionCount {
        SessionCount {
            info_file: info_path(&self.link),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Says that the VM now runs the build result `build` and what
    /// `--list` shows of it (after a restart): the info and the build link
    /// replaced at once, the entry itself (and the out-link `--switch`
    /// keeps beside it) left as they are.
    pub fn update(&self, build: &Utf8Path, info: &VmInfo) -> Result<()> {
        let info_file = info_path(&self.link);
        {
            let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            // A new boot has no session open: the last boot's ended with it.
            shared.info = info.clone();
            write_info(&info_file, &shared.info)
                .with_context(|| format!("could not write {info_file}"))?;
        }
        replace_link(build, &companion(&self.link, BUILD_SUFFIX))
    }
}

/// Writes `info` to `path` whole: to a file beside it, renamed into place,
/// so that a reader finds the old or the new, never a part.
fn write_info(path: &Utf8Path, info: &VmInfo) -> std::io::Result<()> {
    let json = serde_json::to_vec(info).map_err(std::io::Error::other)?;
    let partial = Utf8PathBuf::from(format!("{path}.partial"));
    let written = std::fs::write(&partial, json).and_then(|()| std::fs::rename(&partial, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.removed = true;
        for suffix in COMPANIONS {
            let _ = std::fs::remove_file(companion(&self.link, suffix));
        }
        let _ = std::fs::remove_file(&self.link);
        // The directory too, when no other VM runs: nothing is left in the
        // user's TMPDIR. It fails harmlessly while other entries are there.
        if let Some(dir) = self.link.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Enters the VM of `identity`, whose attach socket is `socket` and which
/// runs the build result `build`, in `dir`, with what `--list` shows of it.
pub fn register(
    dir: &Utf8Path,
    identity: &Identity,
    socket: &Utf8Path,
    build: &Utf8Path,
    info: &VmInfo,
) -> Result<Registration> {
    let link = dir.join(format!("{}.{}", identity.key(), std::process::id()));
    // Twice at most: the last VM of another nixos-shell may remove the
    // empty directory between its creation and the link.
    for _ in 0..2 {
        own(dir)?;
        let _ = std::fs::remove_file(&link);
        let written = write_info(&info_path(&link), info);
        // The companions first: an entry found has them beside it.
        let built = companion(&link, BUILD_SUFFIX);
        let _ = std::fs::remove_file(&built);
        let written = written.and_then(|()| std::os::unix::fs::symlink(build, &built));
        match written.and_then(|()| std::os::unix::fs::symlink(socket, &link)) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            linked => linked.with_context(|| format!("could not create {link}"))?,
        }
        return Ok(Registration {
            link,
            shared: Arc::new(Mutex::new(Shared {
                info: info.clone(),
                removed: false,
            })),
        });
    }
    bail!("could not create {link}: its directory keeps disappearing")
}

/// What the entry says of its VM.
pub fn info_of(entry: &Entry) -> Result<VmInfo> {
    let path = info_path(&entry.socket);
    let bytes = std::fs::read(&path).with_context(|| format!("could not read {path}"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{path} is malformed"))
}

/// Every running VM's entry in `dir` and what it says of its VM, oldest
/// first; entries of nixos-shells that are gone are removed.
pub fn list(dir: &Utf8Path) -> Result<Vec<(Entry, VmInfo)>> {
    let mut listed: Vec<(Entry, VmInfo)> = live(dir)?
        .into_iter()
        .filter_map(|(_, pid, link)| {
            let info = std::fs::read(info_path(&link)).ok()?;
            let info: VmInfo = serde_json::from_slice(&info).ok()?;
            Some((Entry { socket: link, pid }, info))
        })
        .collect();
    listed.sort_by_key(|(entry, info)| (info.started, entry.pid));
    Ok(listed)
}

/// A running VM's entry as found: what leads to its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The link to the holder's attach socket, which a client connects to.
    pub socket: Utf8PathBuf,
    /// The holder: the nixos-shell that runs the VM.
    pub pid: u32,
}

/// The entry of the running VM of the first of `identities` that has one,
/// in `dir`; the newest when one configuration runs twice. Entries of
/// nixos-shells that are gone are removed.
pub fn find(dir: &Utf8Path, identities: &[Identity]) -> Result<Option<Entry>> {
    let live = live(dir)?;
    for identity in identities {
        let key = identity.key();
        let newest = live
            .iter()
            .filter(|(k, _, _)| *k == key)
            .max_by_key(|(_, _, link)| {
                std::fs::symlink_metadata(link)
                    .and_then(|m| m.modified())
                    .ok()
            });
        if let Some((_, pid, link)) = newest {
            return Ok(Some(Entry {
                socket: link.clone(),
                pid: *pid,
            }));
        }
    }
    Ok(None)
}

/// The entries of nixos-shells that run, as key, pid and link; the others
/// are removed, with their info and the directory once it is empty.
fn live(dir: &Utf8Path) -> Result<Vec<(String, u32, Utf8PathBuf)>> {
    let Ok(entries) = dir.read_dir_utf8() else {
        return Ok(Vec::new());
    };
    own(dir)?;
    let mut live: Vec<(String, u32, Utf8PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let (link, is_link) = match COMPANIONS
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
        {
            Some(link) => (link, false),
            None => (name, true),
        };
        let Some((key, pid)) = link.split_once('.') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if !running(pid) || (is_link && !entry.path().exists()) {
            let _ = std::fs::remove_file(entry.path());
        } else if is_link {
            live.push((key.to_owned(), pid, entry.path().to_owned()));
        }
    }
    if live.is_empty() {
        // What stale entries leave: an empty directory, removed as a
        // dropped registration removes it.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(live)
}

/// Whether process `pid` still runs.
fn running(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // Signal 0 checks without sending: EPERM would be another user's
    // process, which no entry here can belong to.
    rustix::process::test_kill_process(pid).is_ok() && !zombie(pid)
}

/// Whether process `pid` has ended and waits to be reaped: a detached
/// VM's holder killed outright, whose reaper (the init of a container may
/// be none) has not reaped it yet. Its state is the field after the
/// command's name in `/proc/PID/stat` (proc(5)).
fn zombie(pid: rustix::process::Pid) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()));
    stat.ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::test_data::env;

    fn info(name: &str) -> VmInfo {
        VmInfo {
            name: name.to_owned(),
            config: ".#vm".to_owned(),
            started: 1,
            detached: true,
            disk_image: None,
            forwards: vec!["127.0.0.1:8080:80/tcp".to_owned()],
            shares: Vec::new(),
            console_log: None,
            sessions: 0,
        }
    }

    fn temp() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("registry");
        (dir, path)
    }

    #[test]
    fn the_runtime_directory_comes_first_then_tmpdir() {
        assert_eq!(
            dir(&env(&[("XDG_RUNTIME_DIR", "/run/user/1")])),
            "/run/user/1/nixos-shell"
        );
        let uid = rustix::process::geteuid().as_raw();
        assert_eq!(
            dir(&env(&[("TMPDIR", "/t")])),
            format!("/t/nixos-shell-{uid}")
        );
        assert_eq!(dir(&env(&[])), format!("/tmp/nixos-shell-{uid}"));
    }

    #[test]
    fn a_registered_vm_is_found_until_its_entry_is_dropped() {
        let (_tmp, registry) = temp();
        let socket = registry.with_file_name("attach.sock");
        std::fs::write(&socket, "").unwrap();
        let vm = Identity::new("/p#vm");
        let other = Identity::new("file:/p/vm.nix");
        assert_eq!(find(&registry, std::slice::from_ref(&vm)).unwrap(), None);
        let entry = register(
            &registry,
            &vm,
            &socket,
            "/nix/store/b-vm".into(),
            &info("vm"),
        )
        .unwrap();
        let mode = std::fs::metadata(&registry).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let found = find(&registry, &[other.clone(), vm.clone()])
            .unwrap()
            .unwrap();
        assert_eq!(std::fs::read_link(&found.socket).unwrap(), socket);
        assert_eq!(found.pid, std::process::id());
        assert_eq!(build_of(&found).unwrap(), "/nix/store/b-vm");
        assert_eq!(find(&registry, &[other]).unwrap(), None);
        drop(entry);
        assert_eq!(find(&registry, &[vm]).unwrap(), None);
    }

    #[test]
    fn the_list_shows_what_each_entry_says_until_it_goes_stale() {
        let (_tmp, registry) = temp();
        let socket = registry.with_file_name("attach.sock");
        std::fs::write(&socket, "").unwrap();
        let entry = register(
            &registry,
            &Identity::new("/p#vm"),
            &socket,
            "/b".into(),
            &info("p"),
        )
        .unwrap();
        let listed = list(&registry).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0.pid, std::process::id());
        assert_eq!(listed[0].1, info("p"));
        // A nixos-shell that is gone: its link and its info are removed.
        let stale = registry.join(format!(
            "{}.{}",
            Identity::new("/q#vm").key(),
            (1 << 22) + 1
        ));
        std::os::unix::fs::symlink(&socket, &stale).unwrap();
        std::fs::write(info_path(&stale), serde_json::to_vec(&info("q")).unwrap()).unwrap();
        assert_eq!(list(&registry).unwrap().len(), 1);
        assert!(std::fs::symlink_metadata(&stale).is_err());
        assert!(!info_path(&stale).exists());
        drop(entry);
        assert_eq!(list(&registry).unwrap(), Vec::new());
        assert!(!registry.exists(), "left behind");
    }

    #[test]
    fn the_directory_goes_with_its_last_entry() {
        let (_tmp, registry) = temp();
        let socket = registry.with_file_name("attach.sock");
        let first = register(
            &registry,
            &Identity::new("/p#vm"),
            &socket,
            "/b".into(),
            &info("p"),
        )
        .unwrap();
        let second = register(
            &registry,
            &Identity::new("/q#vm"),
            &socket,
            "/b".into(),
            &info("q"),
        )
        .unwrap();
        drop(first);
        assert!(registry.is_dir(), "removed while another VM runs");
        drop(second);
        assert!(!registry.exists(), "left behind");
    }

    #[test]
    fn the_entry_of_a_nixos_shell_that_is_gone_is_removed() {
        let (_tmp, registry) = temp();
        let socket = registry.with_file_name("attach.sock");
        std::fs::write(&socket, "").unwrap();
        own(&registry).unwrap();
        let vm = Identity::new("/p#vm");
        // No process has pid 2^22 + 1 (Linux's pid_max is at most 2^22).
        let stale = registry.join(format!("{}.{}", vm.key(), (1 << 22) + 1));
        std::os::unix::fs::symlink(&socket, &stale).unwrap();
        assert_eq!(find(&registry, &[vm]).unwrap(), None);
        assert!(std::fs::symlink_metadata(&stale).is_err());
        assert!(!registry.exists());
    }

    #[test]
    fn a_directory_others_may_write_to_is_refused() {
        let (_tmp, registry) = temp();
        std::fs::create_dir(&registry).unwrap();
        std::fs::set_permissions(&registry, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = register(
            &registry,
            &Identity::new("x"),
            "/s".into(),
            "/b".into(),
            &info("x"),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("is not a directory of yours alone"));
    }
}
