//! The VM command, composed as a value: the run script found in the build
//! result, the environment it documents, and the arguments it hands to QEMU
//! (which land after `$QEMU_OPTS`, so later ones win).
//!
//! Arguments, in order: `-m` (--memory, with a memory backend of that size
//! when the run script has one), `-smp` (--cores), the session share,
//! one `-virtfs` per share (home, nix profile, the module's extraMounts,
//! each --mount), then the user's `-- QEMU_ARGS`. Environment: only what
//! the user did not set, or appended to what they did (`QEMU_NET_OPTS`).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::settings::{Settings, UserMount};
use crate::schema::facts::{self, Mount};
use crate::schema::manifest::{
    CacheMode, Manifest, MemoryBackend, MANIFEST_PATH, MANIFEST_VERSION,
};

/// One 9p share: a QEMU `-virtfs` and a mount in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub tag: String,
    pub host: Utf8PathBuf,
    pub guest: Utf8PathBuf,
    pub cache: CacheMode,
    pub read_only: bool,
}

impl Share {
    /// The `-virtfs` option value. QEMU splits options at commas; a comma in
    /// a path is written twice.
    pub fn virtfs(&self) -> String {
        virtfs(&self.host, &self.tag, self.read_only)
    }

    /// The guest's view of it, for the host facts.
    pub fn mount(&self, msize: u64) -> Mount {
        Mount {
            tag: self.tag.clone(),
            guest_path: self.guest.clone(),
            cache: self.cache,
            read_only: self.read_only,
            msize,
        }
    }
}

fn virtfs(host: &Utf8Path, tag: &str, read_only: bool) -> String {
    let path = host.as_str().replace(',', ",,");
    let ro = if read_only { ",readonly=on" } else { "" };
    format!("local,path={path},security_model=none,mount_tag={tag}{ro}")
}

/// The shares of a run, in QEMU argument order.
pub fn shares(
    manifest: &Manifest,
    home: &Utf8Path,
    nix_profile: Option<&Utf8Path>,
    no_home: bool,
    user_mounts: &[UserMount],
) -> Vec<Share> {
    let mounts = &manifest.mounts;
    let mut shares = Vec::new();
    if mounts.mount_home && !no_home {
        shares.push(Share {
            tag: "home".to_owned(),
            host: home.to_owned(),
            guest: home.to_owned(),
            cache: mounts.cache,
            read_only: mounts.mount_home_read_only,
        });
    }
    if let Some(profile) = nix_profile.filter(|_| mounts.mount_nix_profile) {
        shares.push(Share {
            tag: "nixprofile".to_owned(),
            host: profile.to_owned(),
            guest: profile.to_owned(),
            cache: mounts.cache,
            read_only: false,
        });
    }
    for extra in &mounts.extra_mounts {
        shares.push(Share {
            tag: extra.tag.clone(),
            host: extra.target.clone(),
            guest: extra.guest_path.clone(),
            cache: extra.cache,
            read_only: extra.read_only,
        });
    }
    for (n, mount) in user_mounts.iter().enumerate() {
        shares.push(Share {
            tag: format!("mount{n}"),
            host: mount.host.clone(),
            guest: mount.guest.clone(),
            cache: mounts.cache,
            read_only: mount.read_only,
        });
    }
    shares
}

/// The guest mounts for the host facts: parents before children.
pub fn guest_mounts(shares: &[Share], msize: u64) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = shares.iter().map(|s| s.mount(msize)).collect();
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
    pub run_script: Utf8PathBuf,
    pub settings: &'a Settings,
    /// The session share's host directory.
    pub session_share: &'a Utf8Path,
    /// The run script's TMPDIR unless the user set TMPDIR and USE_TMPDIR.
    pub private_tmp: &'a Utf8Path,
    pub shares: &'a [Share],
    /// `NIX_DISK_IMAGE` to set, if any (see `host::disk`).
    pub disk_image: Option<Utf8PathBuf>,
    /// The shared memory backend the run script passes, from the manifest.
    pub memory_backend: Option<&'a MemoryBackend>,
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
    if let Some(image) = &launch.disk_image {
        env.insert("NIX_DISK_IMAGE".to_owned(), image.to_string());
    }

    let mut args = Vec::new();
    if let Some(memory) = &settings.memory {
        args.extend(["-m".to_owned(), memory.clone()]);
        if launch.memory_backend.is_some() {
            args.extend(memory_backend_args(memory));
        }
    }
    if let Some(cores) = settings.cores {
        args.extend(["-smp".to_owned(), cores.to_string()]);
    }
    args.extend([
        "-virtfs".to_owned(),
        virtfs(launch.session_share, facts::SESSION_TAG, false),
    ]);
    for share in launch.shares {
        args.extend(["-virtfs".to_owned(), share.virtfs()]);
    }
    args.extend(settings.qemu_args.iter().cloned());
    VmCommand {
        program: launch.run_script.clone(),
        args,
        env,
    }
}

/// The QEMU object id of the memory backend `--memory` brings along.
const MEMORY_BACKEND_ID: &str = "nixos-shell-mem";

/// A shared memory backend of `memory` (a `-m` value with its unit, from
/// `settings::parse_memory`) that replaces the run script's. QEMU refuses
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

/// The run script `bin/run-*-vm` in a build result.
pub fn find_run_script(result: &Utf8Path) -> Result<Utf8PathBuf> {
    let bin = result.join("bin");
    let mut found: Vec<Utf8PathBuf> = match bin.read_dir_utf8() {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().to_owned())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.starts_with("run-") && n.ends_with("-vm"))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    found.sort();
    match found.into_iter().next() {
        Some(script) => Ok(script),
        None => bail!(
            "the build result {result} has no bin/run-*-vm; build a configuration that includes the nixos-shell module (system.build.nixos-shell)"
        ),
    }
}

/// The manifest in a build result.
pub fn read_manifest(result: &Utf8Path) -> Result<Manifest> {
    let path = result.join(MANIFEST_PATH);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("the build result has no {MANIFEST_PATH} ({path}); the nixos-shell module that built it is too old or not nixos-shell's")
    })?;
    let manifest: Manifest = serde_json::from_str(&text).with_context(|| {
        format!("{path} is not a manifest this nixos-shell understands; update nixos-shell")
    })?;
    if manifest.version > MANIFEST_VERSION {
        bail!(
            "{path} is manifest version {}, newer than this nixos-shell reads ({MANIFEST_VERSION}); \
             update nixos-shell to the version of the module that built the VM",
            manifest.version
        );
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::settings::{parse_forward, Settings};
    use crate::schema::manifest::{ExtraMount, Mounts};

    fn manifest() -> Manifest {
        Manifest {
            version: 1,
            name: "nixos".to_owned(),
            system: "x86_64-linux".to_owned(),
            disk_image: Some("./nixos.qcow2".to_owned()),
            inherit_path: true,
            memory_backend: None,
            mounts: Mounts {
                mount_home: true,
                mount_home_read_only: false,
                mount_nix_profile: true,
                cache: CacheMode::Loose,
                msize: 16384,
                extra_mounts: vec![ExtraMount {
                    guest_path: "/var/www".into(),
                    target: "/srv/www".into(),
                    tag: "awww".to_owned(),
                    cache: CacheMode::None,
                    read_only: true,
                }],
            },
        }
    }

    fn settings() -> Settings {
        Settings {
            target: None,
            nix_flags: vec![],
            guest_system: None,
            host_system: None,
            build_only: false,
            dry_run: false,
            out_link: None,
            memory: Some("2G".to_owned()),
            cores: Some(2),
            forwards: vec![
                parse_forward("8080:80").unwrap(),
                parse_forward("0.0.0.0:53:53/udp").unwrap(),
            ],
            mounts: vec![UserMount {
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

    #[test]
    fn shares_in_order() {
        let settings = settings();
        let shares = shares(
            &manifest(),
            "/home/a".into(),
            Some("/nix/p".into()),
            false,
            &settings.mounts,
        );
        let tags: Vec<&str> = shares.iter().map(|s| s.tag.as_str()).collect();
        assert_eq!(tags, ["home", "nixprofile", "awww", "mount0"]);
        assert_eq!(
            shares[3].virtfs(),
            "local,path=/data,,x,security_model=none,mount_tag=mount0,readonly=on"
        );
        let none = shares_without_home();
        assert_eq!(none, ["nixprofile", "awww", "mount0"]);
        let mounts = guest_mounts(&shares, 99);
        assert_eq!(mounts[0].guest_path, "/data");
        assert_eq!(mounts[3].guest_path, "/var/www");
        assert_eq!(mounts[3].msize, 99);
    }

    fn shares_without_home() -> Vec<String> {
        shares(
            &manifest(),
            "/home/a".into(),
            Some("/nix/p".into()),
            true,
            &settings().mounts,
        )
        .into_iter()
        .map(|s| s.tag)
        .collect()
    }

    #[test]
    fn composes_arguments_and_environment() {
        let settings = settings();
        let shares = shares(&manifest(), "/home/a".into(), None, false, &[]);
        let env: BTreeMap<String, String> = [(
            "QEMU_NET_OPTS".to_owned(),
            "hostfwd=tcp::2222-:22".to_owned(),
        )]
        .into();
        let command = compose(&Launch {
            run_script: "/r/bin/run-nixos-vm".into(),
            settings: &settings,
            session_share: "/s/share".into(),
            private_tmp: "/s/tmp".into(),
            shares: &shares,
            disk_image: Some("/state/nixos.qcow2".into()),
            memory_backend: None,
            env: &env,
        });
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
        let command = compose(&Launch {
            run_script: "/r".into(),
            settings: &settings,
            session_share: "/s/share".into(),
            private_tmp: "/s/tmp".into(),
            shares: &[],
            disk_image: None,
            memory_backend: None,
            env: &env,
        });
        assert!(command.env.is_empty());
    }

    #[test]
    fn memory_brings_a_backend_of_its_size_when_the_run_script_has_one() {
        let settings = settings();
        let backend = MemoryBackend {
            id: "mem0".to_owned(),
            size: 500,
        };
        let env = BTreeMap::new();
        let command = compose(&Launch {
            run_script: "/r".into(),
            settings: &settings,
            session_share: "/s/share".into(),
            private_tmp: "/s/tmp".into(),
            shares: &[],
            disk_image: None,
            memory_backend: Some(&backend),
            env: &env,
        });
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

    #[test]
    fn a_manifest_newer_than_this_cli_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("share/nixos-shell")).unwrap();
        let mut newer = serde_json::to_value(manifest()).unwrap();
        newer["version"] = (MANIFEST_VERSION + 1).into();
        std::fs::write(root.join(MANIFEST_PATH), newer.to_string()).unwrap();
        let err = format!("{:#}", read_manifest(root).unwrap_err());
        assert!(err.contains("newer than this nixos-shell reads"), "{err}");
        let mut current = serde_json::to_value(manifest()).unwrap();
        current["version"] = MANIFEST_VERSION.into();
        std::fs::write(root.join(MANIFEST_PATH), current.to_string()).unwrap();
        assert_eq!(read_manifest(root).unwrap().name, "nixos");
    }

    #[test]
    fn finds_the_run_script_or_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        assert!(format!("{:#}", find_run_script(root).unwrap_err()).contains("has no bin/run-*-vm"));
        std::fs::create_dir(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/other"), "").unwrap();
        std::fs::write(root.join("bin/run-box-vm"), "").unwrap();
        assert_eq!(find_run_script(root).unwrap(), root.join("bin/run-box-vm"));
    }
}
