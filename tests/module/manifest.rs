//! The manifest the module really builds, in both eras, decoded with the
//! CLI's own `Manifest` type.

use nixos_shell::schema::manifest::{
    CacheMode, ExtraMount, Manifest, MemoryBackend, MANIFEST_PATH,
};

use super::standin;
use crate::support::vm::Era;

fn built_manifest(era: Era, module: &str) -> Manifest {
    let (_dir, standin) = standin(era);
    let result = standin
        .build(module)
        .unwrap_or_else(|err| panic!("the {} era's build failed:\n{err}", era.name()));
    let text = std::fs::read_to_string(result.join(MANIFEST_PATH)).expect("the manifest");
    let manifest: Manifest = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("the CLI cannot read the module's manifest ({err}):\n{text}"));
    let script = result.join(format!("bin/run-{}-vm", manifest.name));
    assert!(script.is_file(), "no run script at {}", script.display());
    manifest
}

const MOUNTS: &str = r#"{
  system.name = "dev";
  virtualisation.memorySize = 768;
  nixos-shell.mounts = {
    mountHomeReadOnly = true;
    cache = "mmap";
    extraMounts = {
      "/srv/data" = "/data";
      "/var/www" = { target = "/srv/www"; cache = "none"; readOnly = true; };
      "/var" = /srv/var;
    };
  };
}"#;

#[test]
fn the_manifest_carries_the_shares_with_their_coerced_targets_cache_modes_and_tags() {
    let manifest = built_manifest(Era::NineP, MOUNTS);
    assert_eq!(manifest.version, 2);
    assert_eq!(manifest.name, "dev");
    assert_eq!(manifest.system, "x86_64-linux");
    assert_eq!(manifest.disk_image.as_deref(), Some("./dev.qcow2"));
    assert!(manifest.inherit_path);
    let mounts = &manifest.mounts;
    assert!(mounts.mount_home && mounts.mount_home_read_only && mounts.mount_nix_profile);
    assert_eq!(mounts.cache, CacheMode::Mmap);
    assert_eq!(mounts.msize, 512000);
    let tag = |path: &str| format!("a{:x}", md5_hex(path))[..31].to_owned();
    assert_eq!(
        mounts.extra_mounts,
        [
            ExtraMount {
                guest_path: "/srv/data".into(),
                target: "/data".into(),
                tag: tag("/srv/data"),
                cache: CacheMode::Mmap,
                read_only: false,
            },
            ExtraMount {
                guest_path: "/var".into(),
                // A path stays the host's path, never copied to the store.
                target: "/srv/var".into(),
                tag: tag("/var"),
                cache: CacheMode::Mmap,
                read_only: false,
            },
            ExtraMount {
                guest_path: "/var/www".into(),
                target: "/srv/www".into(),
                tag: "ae4d04fcf8f1486030e6781b8ac0087".to_owned(),
                cache: CacheMode::None,
                read_only: true,
            },
        ]
    );
}

#[test]
fn the_memory_backend_is_named_exactly_in_the_virtiofs_era() {
    assert_eq!(built_manifest(Era::NineP, MOUNTS).memory_backend, None);
    assert_eq!(
        built_manifest(Era::Virtiofs, MOUNTS).memory_backend,
        Some(MemoryBackend {
            id: "mem0".to_owned(),
            size: 768
        })
    );
    let off = built_manifest(
        Era::Virtiofs,
        "{ virtualisation.qemu.enableSharedMemory = false; }",
    );
    assert_eq!(off.memory_backend, None);
}

#[test]
fn a_tmpfs_root_has_no_disk_image() {
    let manifest = built_manifest(Era::Virtiofs, "{ virtualisation.diskImage = null; }");
    assert_eq!(manifest.disk_image, None);
}

/// The MD5 of `text` as the module hashes guest paths, from nix itself.
fn md5_hex(text: &str) -> u128 {
    let out = crate::support::nix::command("nix-instantiate")
        .args(["--eval", "--expr"])
        .arg(format!(
            "builtins.hashString \"md5\" {}",
            serde_json::Value::from(text)
        ))
        .output()
        .expect("run nix-instantiate");
    let hex = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_matches('"')
        .to_owned();
    u128::from_str_radix(&hex, 16).expect("an md5")
}
