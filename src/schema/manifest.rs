//! The build manifest: what the NixOS module exports about a VM so that the
//! CLI can start it without evaluating anything again.
//!
//! The module writes it with `builtins.toJSON` into the derivation at
//! `config.system.build.nixos-shell`, which holds:
//!
//! ```text
//! $out/bin/run-<system.name>-vm               the NixOS run script (a link)
//! $out/share/nixos-shell/manifest.json        this document
//! ```
//!
//! Field names are the module's option names (camelCase), so a reader can go
//! from a key here straight to `nixosModules/nixos-shell/options.nix`.

use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

/// Where the manifest lives inside a build result.
pub const MANIFEST_PATH: &str = "share/nixos-shell/manifest.json";

/// The newest manifest version this crate understands. Version 2 added
/// [`Manifest::memory_backend`]; a version-1 manifest has none, which is
/// what it meant. Version 3 added [`Mounts::protocol`] with
/// [`Mounts::virtiofsd`], and [`Manifest::memory_size`]; versions 1 and 2
/// shared over 9p only, which is what their missing protocol means.
/// Version 4 added [`Manifest::switch`]; an older manifest's is unknown.
/// Version 5 added [`Switch::registration`]; an older manifest has none,
/// and a switch leaves the guest's Nix database as it is.
pub const MANIFEST_VERSION: u32 = 5;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Schema version; this crate reads `1` to [`MANIFEST_VERSION`].
    pub version: u32,
    /// `config.system.name`: names the run script (`run-<name>-vm`) and the
    /// default disk image.
    pub name: String,
    /// The guest's platform (`pkgs.stdenv.hostPlatform.system`), e.g.
    /// `x86_64-linux`. The host's `PATH` is handed over only when the host
    /// runs the same platform (it names store paths the guest can run).
    pub system: String,
    /// `virtualisation.diskImage`: `null` for a tmpfs root (no image at
    /// all), otherwise the configured path, relative paths being relative to
    /// the directory the VM is started from (the NixOS default is
    /// `./<name>.qcow2`).
    #[serde(default)]
    pub disk_image: Option<String>,
    /// `nixos-shell.inheritPath`: hand the host's `PATH` to the login shell.
    #[serde(default = "yes")]
    pub inherit_path: bool,
    /// The shares the module asks for; the CLI turns them into QEMU
    /// arguments at run time and the guest role mounts them.
    pub mounts: Mounts,
    /// The shared memory backend the run script gives QEMU, if any. NixOS
    /// adds one (`virtualisation.qemu.enableSharedMemory`) since its shares
    /// moved to virtiofs; QEMU then refuses a `-m` of another size, so
    /// `--memory` must bring a backend of its own.
    #[serde(default)]
    pub memory_backend: Option<MemoryBackend>,
    /// `virtualisation.memorySize` in MiB (version 3): the size of the
    /// shared memory backend virtiofs shares need when the run script
    /// brings none.
    #[serde(default)]
    pub memory_size: Option<u64>,
    /// Whether the guest serves `nixos-shell --attach` (the module's
    /// `nixos-shell-attach.service`): the CLI then offers the attach port
    /// and lets clients find the VM. A build of an older module has not,
    /// and `--attach` says so instead of waiting for it.
    #[serde(default)]
    pub attach: bool,
    /// `system.stateVersion`, which the CLI keeps beside a disk image it
    /// creates and compares on later runs (`host::vm::release`). Optional
    /// in version 3: a manifest without it (an older module) means unknown,
    /// and an older CLI ignores it.
    #[serde(default)]
    pub state_version: Option<String>,
    /// `nixos-shell.hostNix.enable`: the guest's nix may build into the
    /// host's store (`schema::host_nix`). An older module's build has no
    /// relay, which is what its missing field means.
    #[serde(default)]
    pub host_nix: bool,
    /// Whether the guest's store shows the host's
    /// (`virtualisation.mountHostNixStore` without `useNixStoreImage`):
    /// only then can what the host builds later (a new system for
    /// `--switch`, what the host's daemon builds for the guest's nix) show
    /// in the guest. `None` where the module did not know.
    #[serde(default)]
    pub host_store: Option<bool>,
    /// What `nixos-shell --switch` needs to know of the system (version 4).
    #[serde(default)]
    pub switch: Switch,
}

/// What a build says about switching a running VM to another build; each
/// `None` where the module did not know (an older module, or a nixpkgs
/// without the option).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Switch {
    /// `config.system.build.toplevel`: the system the VM runs.
    #[serde(default)]
    pub toplevel: Option<Utf8PathBuf>,
    /// `system.switch.enable`: the system has `bin/switch-to-configuration`.
    #[serde(default)]
    pub switchable: Option<bool>,
    /// The registration of the system's closure (qemu-vm.nix's `regInfo`,
    /// its `registration` file), which the guest's Nix database loads at
    /// boot and a switch loads again for the new system (version 5).
    #[serde(default)]
    pub registration: Option<Utf8PathBuf>,
}

/// `-object memory-backend-memfd,id=<id>,size=<size>M,share=on` together
/// with `-machine memory-backend=<id>`, as NixOS's run script passes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryBackend {
    /// The backend's QEMU object id (`mem0` in NixOS).
    pub id: String,
    /// Its size in MiB: `virtualisation.memorySize`.
    pub size: u64,
}

/// `nixos-shell.mounts.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mounts {
    /// Share the user's home directory at the same path in the guest.
    pub mount_home: bool,
    /// Share the home directory read-only.
    #[serde(default)]
    pub mount_home_read_only: bool,
    /// Share the user's nix profile at the same path in the guest.
    pub mount_nix_profile: bool,
    /// How the shares reach the guest; 9p before version 3.
    #[serde(default)]
    pub protocol: Protocol,
    /// The host's `virtiofsd`, which the CLI starts once per share when
    /// [`Mounts::protocol`] is virtiofs; `None` for 9p.
    #[serde(default)]
    pub virtiofsd: Option<Utf8PathBuf>,
    /// The default 9p cache mode for every share.
    pub cache: CacheMode,
    /// 9p `msize` (bytes) used when mounting the shares.
    pub msize: u64,
    /// `nixos-shell.mounts.extraMounts`, one entry per guest path.
    #[serde(default)]
    pub extra_mounts: Vec<ExtraMount>,
}

/// One `nixos-shell.mounts.extraMounts.<guestPath>` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtraMount {
    /// Where the share appears in the guest (the attribute name).
    pub guest_path: Utf8PathBuf,
    /// The host directory shared (`target`).
    pub target: Utf8PathBuf,
    /// The 9p mount tag the module derived from the guest path: at most 31
    /// bytes, never starting with a digit.
    pub tag: String,
    /// The 9p cache mode for this share.
    pub cache: CacheMode,
    /// Mount read-only (QEMU refuses writes too).
    #[serde(default)]
    pub read_only: bool,
}

/// `nixos-shell.mounts.protocol`: how a share reaches the guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// One `virtiofsd` per share, a `vhost-user-fs-pci` device in QEMU.
    #[serde(rename = "virtiofs")]
    Virtiofs,
    /// QEMU's own 9p server (`-virtfs`); what manifests before version 3
    /// mean.
    #[default]
    #[serde(rename = "9p")]
    NineP,
}

/// A 9p cache mode (see the kernel's `Documentation/filesystems/9p.rst`);
/// over virtiofs it picks virtiofsd's `--cache` (see `host::shares::virtiofs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    None,
    Loose,
    Fscache,
    Mmap,
}

impl CacheMode {
    /// Every mode, as the module's option type lists them (a test holds the
    /// two lists equal).
    pub const ALL: [CacheMode; 4] = [
        CacheMode::None,
        CacheMode::Loose,
        CacheMode::Fscache,
        CacheMode::Mmap,
    ];

    /// The value of the 9p `cache=` mount option.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // guest role only
    pub fn as_mount_option(self) -> &'static str {
        match self {
            CacheMode::None => "none",
            CacheMode::Loose => "loose",
            CacheMode::Fscache => "fscache",
            CacheMode::Mmap => "mmap",
        }
    }
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_module_writes_and_ignores_unknown_fields() {
        let json = r#"{
          "version": 1, "name": "nixos", "system": "x86_64-linux",
          "diskImage": "./nixos.qcow2", "inheritPath": true, "futureField": 3,
          "mounts": {
            "mountHome": true, "mountHomeReadOnly": false, "mountNixProfile": true,
            "cache": "loose", "msize": 104857600,
            "extraMounts": [{"guestPath": "/var/www", "target": "/srv/www",
                             "tag": "a0123456789abcdef0123456789abcd",
                             "cache": "none", "readOnly": true}]
          }
        }"#;
        let manifest: Manifest = serde_json::from_str(json).unwrap();
        assert_eq!(manifest.name, "nixos");
        assert_eq!(manifest.disk_image.as_deref(), Some("./nixos.qcow2"));
        assert_eq!(manifest.mounts.extra_mounts[0].cache, CacheMode::None);
        assert!(manifest.mounts.extra_mounts[0].read_only);
    }

    #[test]
    fn version_2_names_the_run_scripts_memory_backend() {
        let json = r#"{"version": 2, "name": "n", "system": "x86_64-linux",
          "memoryBackend": {"id": "mem0", "size": 1024},
          "mounts": {"mountHome": true, "mountNixProfile": false,
                     "cache": "loose", "msize": 512000}}"#;
        let manifest: Manifest = serde_json::from_str(json).unwrap();
        assert_eq!(
            manifest.memory_backend,
            Some(MemoryBackend {
                id: "mem0".to_owned(),
                size: 1024
            })
        );
    }

    #[test]
    fn version_3_names_the_protocol_and_older_versions_mean_9p() {
        let json = r#"{"version": 3, "name": "n", "system": "x86_64-linux",
          "memorySize": 768, "memoryBackend": null,
          "mounts": {"mountHome": true, "mountNixProfile": false,
                     "cache": "loose", "msize": 512000, "protocol": "virtiofs",
                     "virtiofsd": "/nix/store/x-virtiofsd/bin/virtiofsd"}}"#;
        let manifest: Manifest = serde_json::from_str(json).unwrap();
        assert_eq!(manifest.mounts.protocol, Protocol::Virtiofs);
        assert_eq!(
            manifest.mounts.virtiofsd.as_deref(),
            Some("/nix/store/x-virtiofsd/bin/virtiofsd".into())
        );
        assert_eq!(manifest.memory_size, Some(768));
        let json = json.replace(r#""protocol": "virtiofs","#, r#""protocol": "9p","#);
        let manifest: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(manifest.mounts.protocol, Protocol::NineP);
        for version in [1, 2] {
            let json = format!(
                r#"{{"version": {version}, "name": "n", "system": "x86_64-linux",
                   "mounts": {{"mountHome": true, "mountNixProfile": false,
                              "cache": "loose", "msize": 512000}}}}"#
            );
            let manifest: Manifest = serde_json::from_str(&json).unwrap();
            assert_eq!(
                manifest.mounts.protocol,
                Protocol::NineP,
                "version {version}"
            );
            assert_eq!(manifest.mounts.virtiofsd, None);
            assert_eq!(manifest.memory_size, None);
        }
    }

    #[test]
    fn a_null_disk_image_means_a_tmpfs_root() {
        let json = r#"{"version": 1, "name": "n", "system": "x86_64-linux",
          "diskImage": null,
          "mounts": {"mountHome": false, "mountNixProfile": false,
                     "cache": "mmap", "msize": 16384}}"#;
        let manifest: Manifest = serde_json::from_str(json).unwrap();
        assert_eq!(manifest.disk_image, None);
        assert_eq!(manifest.memory_backend, None);
        assert!(manifest.inherit_path);
        assert!(manifest.mounts.extra_mounts.is_empty());
    }
}
