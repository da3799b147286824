//! The VM command, composed as a value: the run script of the build, the
//! environment it documents, and the arguments it hands to QEMU (which land
//! after `$QEMU_OPTS`, so later ones win).
//!
//! Arguments, in order: `-m` (--memory, with a memory backend of that size
//! when the run script has one or virtiofs needs one), a shared memory
//! backend of the VM's size when virtiofs needs one and neither the run
//! script nor --memory brings it, `-smp` (--cores), the session share, then
//! per share (the module's: home, nix profile, extraMounts; then each
//! --mount) one `-virtfs` (9p) or the `vhost-user-fs-pci` device of its
//! virtiofsd (`host::virtiofs`), then the virtio-serial ports of the run
//! (`host::ports`), then the user's `-- QEMU_ARGS`.
//! Environment: only what the user did not set, or appended to what they
//! did (`QEMU_NET_OPTS`).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::ports::{self, PortSocket};
use super::settings::{check_guest_path, MountFlag, Settings};
use super::virtiofs::Daemon;
use crate::schema::facts::{self, GuestMount};
use crate::schema::manifest::{CacheMode, Manifest, MemoryBackend};

/// The tag of the home share.
const HOME_TAG: &str = "home";

/// A host directory exported to QEMU (`-virtfs`, or through a virtiofsd)
/// under a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub tag: String,
    pub host: Utf8PathBuf,
    pub guest: Utf8PathBuf,
    /// `None`: the manifest's default cache mode (a `--mount` has none of
    /// its own).
    pub cache: Option<CacheMode>,
    pub read_only: bool,
}

impl Share {
    /// The `-virtfs` option value. QEMU splits options at commas; a comma in
    /// a path is written twice.
    pub fn virtfs(&self) -> String {
        virtfs(&self.host, &self.tag, self.read_only)
    }
}

fn virtfs(host: &Utf8Path, tag: &str, read_only: bool) -> String {
    let path = host.as_str().replace(',', ",,");
    let ro = if read_only { ",readonly=on" } else { "" };
    format!("local,path={path},security_model=none,mount_tag={tag}{ro}")
}

/// The shares the module asks for: home (unless `no_home`), the nix
/// profile (when found), the extraMounts.
pub fn module_shares(
    manifest: &Manifest,
    home: &Utf8Path,
    nix_profile: Option<&Utf8Path>,
    no_home: bool,
) -> Vec<Share> {
    let mounts = &manifest.mounts;
    let mut shares = Vec::new();
    if mounts.mount_home && !no_home {
        shares.push(Share {
            tag: HOME_TAG.to_owned(),
            host: home.to_owned(),
            guest: home.to_owned(),
            cache: Some(mounts.cache),
            read_only: mounts.mount_home_read_only,
        });
    }
    if let Some(profile) = nix_profile.filter(|_| mounts.mount_nix_profile) {
        shares.push(Share {
            tag: "nixprofile".to_owned(),
            host: profile.to_owned(),
            guest: profile.to_owned(),
            cache: Some(mounts.cache),
            read_only: false,
        });
    }
    shares.extend(mounts.extra_mounts.iter().map(|extra| Share {
        tag: extra.tag.clone(),
        host: extra.target.clone(),
        guest: extra.guest_path.clone(),
        cache: Some(extra.cache),
        read_only: extra.read_only,
    }));
    shares
}

/// A line for each extra mount whose host directory is a flake's copy in
/// the Nix store (`/nix/store/<hash>-source/...`): a path such as `./data`
/// in a flake names that copy, which is shared read-only and never sees the
/// user's edits, where in a `vm.nix` it is the directory itself.
pub fn store_copy_notes(manifest: &Manifest) -> Vec<String> {
    manifest
        .mounts
        .extra_mounts
        .iter()
        .filter(|extra| {
            extra
                .target
                .strip_prefix("/nix/store")
                .ok()
                .and_then(|rest| rest.components().next())
                .is_some_and(|name| name.as_str().ends_with("-source"))
        })
        .map(|extra| {
            format!(
                "extraMounts.\"{}\" shares {}, a flake's copy in the Nix store (read-only, not your \
                 directory): to share the directory itself, write it as a string, e.g. \"/home/you/project/data\"",
                extra.guest_path, extra.target
            )
        })
        .collect()
}

/// The shares `--mount` asks for, tagged `mount0`, `mount1`, ...
pub fn flag_shares(flags: &[MountFlag]) -> Vec<Share> {
    flags
        .iter()
        .enumerate()
        .map(|(n, flag)| Share {
            tag: format!("mount{n}"),
            host: flag.host.clone(),
            guest: flag.guest.clone(),
            cache: None,
            read_only: flag.read_only,
        })
        .collect()
}

/// Fails with one line when the shares cannot all be mounted as asked: a
/// home of `/` (it would share the host's whole root, read-write), a
/// module share at a reserved guest path, or two shares at one guest path.
pub fn check_shares(module_shares: &[Share], flag_shares: &[Share]) -> Result<()> {
    for share in module_shares {
        if share.tag == HOME_TAG && share.host == "/" {
            bail!("HOME is /, and sharing it would share the host's whole root; set HOME to your home directory, or pass --no-home");
        }
        check_guest_path(&share.guest)
            .with_context(|| format!("the module's share of {}", share.host))?;
    }
    let all: Vec<&Share> = module_shares.iter().chain(flag_shares).collect();
    for (n, share) in all.iter().enumerate() {
        if let Some(other) = all[..n].iter().find(|other| other.guest == share.guest) {
            bail!(
                "{} and {} would both be shared at {} in the guest; give the --mount another guest path (HOST:GUEST)",
                other.host,
                share.host,
                share.guest
            );
        }
    }
    Ok(())
}

/// The guest's mounts of `shares` for the host facts, parents before
/// children.
pub fn guest_mounts<'a>(
    shares: impl IntoIterator<Item = &'a Share>,
    manifest: &Manifest,
) -> Vec<GuestMount> {
    let mut mounts: Vec<GuestMount> = shares
        .into_iter()
        .map(|share| GuestMount {
            tag: share.tag.clone(),
            guest_path: share.guest.clone(),
            cache: share.cache.unwrap_or(manifest.mounts.cache),
            read_only: share.read_only,
            msize: manifest.mounts.msize,
            protocol: manifest.mounts.protocol,
        })
        .collect();
    mounts.sort_by_key(|m| m.guest_path.components().count());
    mounts
}

/// The command that starts the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmCommand {
    pub program: Utf8PathBuf,
    pub args: Vec<String>,
    /// Variables to set; everything else is inherited.
    pub env: BTreeMap<String, String>,
}

/// What [`compose`] needs.
pub struct Launch<'a> {
    pub run_script: &'a Utf8Path,
    pub settings: &'a Settings,
    /// The session share's host directory.
    pub session_share: &'a Utf8Path,
    /// The run script's TMPDIR unless the user set TMPDIR and USE_TMPDIR.
    pub private_tmp: &'a Utf8Path,
    /// The module's shares, then the `--mount` ones.
    pub module_shares: &'a [Share],
    pub flag_shares: &'a [Share],
    /// `NIX_DISK_IMAGE` to set, if any (see `host::disk`).
    pub disk_image: Option<&'a Utf8Path>,
    /// The shared memory backend the run script passes, from the manifest.
    pub memory_backend: Option<&'a MemoryBackend>,
    /// The VM's memory in MiB (the manifest's `memorySize`): the size of the
    /// backend virtiofs needs when neither the run script nor --memory
    /// brings one.
    pub memory_size: Option<u64>,
    /// The virtiofsd of each share, in the shares' order, when the shares
    /// are virtiofs (`host::virtiofs::plan`); empty for 9p.
    pub daemons: &'a [Daemon],
    /// The virtio-serial ports of the run (`host::ports::plan`).
    pub ports: &'a [PortSocket],
    /// The environment nixos-shell was started with.
    pub env: &'a BTreeMap<String, String>,
}

/// Composes the VM command; pure.
pub fn compose(launch: &Launch) -> VmCommand {
    let settings = launch.settings;
    let mut env = BTreeMap::new();
    if !(launch.env.contains_key("TMPDIR") && launch.env.contains_key("USE_TMPDIR")) {
        env.insert("TMPDIR".to_owned(), launch.private_tmp.to_string());
        env.insert("USE_TMPDIR".to_owned(), "1".to_owned());
    }
    if !settings.forwards.is_empty() {
        let mut net: Vec<String> = launch
            .env
            .get("QEMU_NET_OPTS")
            .filter(|v| !v.is_empty())
            .cloned()
            .into_iter()
            .collect();
        net.extend(settings.forwards.iter().map(|f| f.hostfwd()));
        env.insert("QEMU_NET_OPTS".to_owned(), net.join(","));
    }
    if let Some(image) = launch.disk_image {
        env.insert("NIX_DISK_IMAGE".to_owned(), image.to_string());
    }

    // virtiofsd maps the guest's memory: it must be a shared backend.
    let needs_shared_memory = !launch.daemons.is_empty();
    let mut args = Vec::new();
    if let Some(memory) = &settings.memory {
        args.extend(["-m".to_owned(), memory.clone()]);
        if launch.memory_backend.is_some() || needs_shared_memory {
            args.extend(memory_backend_args(memory));
        }
    } else if needs_shared_memory && launch.memory_backend.is_none() {
        // The run script's own (9p era) has none; one of the size its `-m`
        // gives, which QEMU holds the backend to.
        if let Some(size) = launch.memory_size {
            args.extend(memory_backend_args(&format!("{size}M")));
        }
    }
    if let Some(cores) = settings.cores {
        args.extend(["-smp".to_owned(), cores.to_string()]);
    }
    // The session share is 9p whatever the other shares use: the guest
    // role finds it by the tag 9p lists in sysfs on any kernel (virtiofs
    // tags only since Linux 6.9), so a VM started without nixos-shell is
    // told apart without a failing mount; it carries two small files, so
    // speed does not matter, and it needs no daemon.
    args.extend([
        "-virtfs".to_owned(),
        virtfs(launch.session_share, facts::SESSION_TAG, false),
    ]);
    if launch.daemons.is_empty() {
        for share in launch.module_shares.iter().chain(launch.flag_shares) {
            args.extend(["-virtfs".to_owned(), share.virtfs()]);
        }
    } else {
        for daemon in launch.daemons {
            args.extend(daemon.qemu_args());
        }
    }
    args.extend(ports::qemu_args(launch.ports));
    args.extend(settings.qemu_args.iter().cloned());
    VmCommand {
        program: launch.run_script.to_owned(),
        args,
        env,
    }
}

/// The QEMU object id of the memory backend `--memory` brings along.
const MEMORY_BACKEND_ID: &str = "nixos-shell-mem";

/// A shared memory backend of `memory` (a `-m` value with its unit, from
/// `settings::parse_memory`) that replaces the run script's, if it has
/// one. QEMU refuses
/// a `-m` other than the backend's size, and the script's object cannot be
/// resized or defined twice; a later `-machine memory-backend=` wins, and
/// the script's unused memfd costs nothing (it is never touched). The
/// backend stays shared (`share=on`): virtiofsd maps the guest's memory.
fn memory_backend_args(memory: &str) -> [String; 4] {
    [
        "-object".to_owned(),
        format!("memory-backend-memfd,id={MEMORY_BACKEND_ID},size={memory},share=on"),
        "-machine".to_owned(),
        format!("memory-backend={MEMORY_BACKEND_ID}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::settings::{parse_forward, Mode, Settings};
    use crate::host::test_data::manifest;
    use crate::schema::manifest::Protocol;

    fn settings() -> Settings {
        Settings {
            config: None,
            nix: Default::default(),
            guest_system: None,
            host_system: None,
            mode: Mode::Run,
            out_link: None,
            memory: Some("2G".to_owned()),
            cores: Some(2),
            forwards: vec![
                parse_forward("8080:80").unwrap(),
                parse_forward("0.0.0.0:53:53/udp").unwrap(),
            ],
            mounts: vec![MountFlag {
                host: "/data,x".into(),
                guest: "/data".into(),
                read_only: true,
            }],
            no_home: false,
            disk: None,
            ephemeral: false,
            command: None,
            qemu_args: vec!["-snapshot".to_owned()],
        }
    }

    fn launch<'a>(
        settings: &'a Settings,
        module_shares: &'a [Share],
        flag_shares: &'a [Share],
        memory_backend: Option<&'a MemoryBackend>,
        env: &'a BTreeMap<String, String>,
    ) -> Launch<'a> {
        Launch {
            run_script: "/r/bin/run-nixos-vm".into(),
            settings,
            session_share: "/s/share".into(),
            private_tmp: "/s/tmp".into(),
            module_shares,
            flag_shares,
            disk_image: Some("/state/nixos.qcow2".into()),
            memory_backend,
            memory_size: Some(500),
            daemons: &[],
            ports: &[],
            env,
        }
    }

    #[test]
    fn a_flakes_store_copy_as_an_extra_mount_gets_one_line() {
        let mut manifest = manifest();
        assert!(store_copy_notes(&manifest).is_empty());
        manifest.mounts.extra_mounts[0].target = "/nix/store/abc-source/data".into();
        let notes = store_copy_notes(&manifest);
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].starts_with(
                "extraMounts.\"/var/www\" shares /nix/store/abc-source/data, a flake's copy in the Nix store"
            ),
            "{notes:?}"
        );
        manifest.mounts.extra_mounts[0].target = "/nix/store/abc-hello-2.12/share".into();
        assert!(store_copy_notes(&manifest).is_empty(), "a package is meant");
    }

    #[test]
    fn shares_in_order() {
        let settings = settings();
        let module = module_shares(&manifest(), "/home/a".into(), Some("/nix/p".into()), false);
        let flags = flag_shares(&settings.mounts);
        let tags: Vec<&str> = module
            .iter()
            .chain(&flags)
            .map(|s| s.tag.as_str())
            .collect();
        assert_eq!(tags, ["home", "nixprofile", "awww", "mount0"]);
        assert_eq!(
            flags[0].virtfs(),
            "local,path=/data,,x,security_model=none,mount_tag=mount0,readonly=on"
        );
        let without_home: Vec<String> =
            module_shares(&manifest(), "/home/a".into(), Some("/nix/p".into()), true)
                .into_iter()
                .map(|s| s.tag)
                .collect();
        assert_eq!(without_home, ["nixprofile", "awww"]);
        let mounts = guest_mounts(module.iter().chain(&flags), &manifest());
        assert_eq!(mounts[0].guest_path, "/data");
        // A --mount takes the module's default cache mode.
        assert_eq!(mounts[0].cache, CacheMode::Loose);
        assert_eq!(mounts[3].guest_path, "/var/www");
        assert_eq!(mounts[3].cache, CacheMode::None);
        assert_eq!(mounts[3].msize, 16384);
    }

    #[test]
    fn composes_arguments_and_environment() {
        let settings = settings();
        let module = module_shares(&manifest(), "/home/a".into(), None, false);
        let env: BTreeMap<String, String> = [(
            "QEMU_NET_OPTS".to_owned(),
            "hostfwd=tcp::2222-:22".to_owned(),
        )]
        .into();
        let command = compose(&launch(&settings, &module, &[], None, &env));
        assert_eq!(command.program, "/r/bin/run-nixos-vm");
        assert_eq!(
            command.args,
            [
                "-m",
                "2G",
                "-smp",
                "2",
                "-virtfs",
                "local,path=/s/share,security_model=none,mount_tag=nixos-shell",
                "-virtfs",
                "local,path=/home/a,security_model=none,mount_tag=home",
                "-virtfs",
                "local,path=/srv/www,security_model=none,mount_tag=awww,readonly=on",
                "-snapshot"
            ]
        );
        let expected: BTreeMap<String, String> = [
            ("NIX_DISK_IMAGE", "/state/nixos.qcow2"),
            (
                "QEMU_NET_OPTS",
                "hostfwd=tcp::2222-:22,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:0.0.0.0:53-:53",
            ),
            ("TMPDIR", "/s/tmp"),
            ("USE_TMPDIR", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        assert_eq!(command.env, expected);
    }

    #[test]
    fn the_users_tmpdir_is_kept_when_both_are_set() {
        let mut settings = settings();
        settings.forwards.clear();
        let env: BTreeMap<String, String> = [
            ("TMPDIR".to_owned(), "/mine".to_owned()),
            ("USE_TMPDIR".to_owned(), "1".to_owned()),
        ]
        .into();
        let mut launch = launch(&settings, &[], &[], None, &env);
        launch.disk_image = None;
        assert!(compose(&launch).env.is_empty());
    }

    #[test]
    fn memory_brings_a_backend_of_its_size_when_the_run_script_has_one() {
        let settings = settings();
        let backend = MemoryBackend {
            id: "mem0".to_owned(),
            size: 500,
        };
        let env = BTreeMap::new();
        let command = compose(&launch(&settings, &[], &[], Some(&backend), &env));
        assert_eq!(
            command.args[..8],
            [
                "-m",
                "2G",
                "-object",
                "memory-backend-memfd,id=nixos-shell-mem,size=2G,share=on",
                "-machine",
                "memory-backend=nixos-shell-mem",
                "-smp",
                "2"
            ]
        );
    }

    fn daemons(module: &[Share]) -> Vec<Daemon> {
        let mut mounts = manifest().mounts;
        mounts.protocol = Protocol::Virtiofs;
        crate::host::virtiofs::plan(&mounts, module, "/s/vfs".into())
    }

    #[test]
    fn virtiofs_shares_get_their_daemons_devices_and_a_backend_of_the_vms_size() {
        let mut settings = settings();
        settings.memory = None;
        settings.cores = None;
        settings.qemu_args.clear();
        let module = module_shares(&manifest(), "/home/a".into(), None, false);
        let daemons = daemons(&module);
        let env = BTreeMap::new();
        let mut launch = launch(&settings, &module, &[], None, &env);
        launch.daemons = &daemons;
        assert_eq!(
            compose(&launch).args,
            [
                "-object",
                "memory-backend-memfd,id=nixos-shell-mem,size=500M,share=on",
                "-machine",
                "memory-backend=nixos-shell-mem",
                "-virtfs",
                "local,path=/s/share,security_model=none,mount_tag=nixos-shell",
                "-chardev",
                "socket,id=vfs-home,path=/s/vfs/home.sock",
                "-device",
                "vhost-user-fs-pci,queue-size=1024,chardev=vfs-home,tag=home",
                "-chardev",
                "socket,id=vfs-awww,path=/s/vfs/awww.sock",
                "-device",
                "vhost-user-fs-pci,queue-size=1024,chardev=vfs-awww,tag=awww",
            ]
        );
        // The run script's own backend serves as it is.
        let backend = MemoryBackend {
            id: "mem0".to_owned(),
            size: 500,
        };
        launch.memory_backend = Some(&backend);
        assert_eq!(
            compose(&launch).args[..2],
            [
                "-virtfs",
                "local,path=/s/share,security_model=none,mount_tag=nixos-shell"
            ]
        );
    }

    #[test]
    fn memory_brings_a_backend_of_its_size_for_virtiofs_shares() {
        let settings = settings();
        let module = module_shares(&manifest(), "/home/a".into(), None, false);
        let daemons = daemons(&module);
        let env = BTreeMap::new();
        let mut launch = launch(&settings, &module, &[], None, &env);
        launch.daemons = &daemons;
        assert_eq!(
            compose(&launch).args[..6],
            [
                "-m",
                "2G",
                "-object",
                "memory-backend-memfd,id=nixos-shell-mem,size=2G,share=on",
                "-machine",
                "memory-backend=nixos-shell-mem",
            ]
        );
    }
}
