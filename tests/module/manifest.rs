//! The manifest the module really builds, in both eras, decoded with the
//! CLI's own `Manifest` type.

use nixos_shell::schema::manifest::{CacheMode, Manifest, MemoryBackend, Protocol, MANIFEST_PATH};

use super::standin;
use crate::support::vm::Era;
use crate::PATHS;

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

/// The configuration whose manifest is known in advance, and that
/// manifest: the same pair `nix flake check` compares (checks/linux/manifest.nix).
fn known() -> (String, Manifest) {
    let checks = PATHS.checkout().join("checks/linux/manifest");
    let expected = std::fs::read_to_string(checks.join("expected.json")).expect("expected.json");
    let expected = serde_json::from_str(&expected).expect("expected.json is a manifest");
    (
        format!("import {}", checks.join("module.nix").display()),
        expected,
    )
}

#[test]
fn the_manifest_carries_the_shares_with_their_coerced_targets_cache_modes_and_tags() {
    let (module, expected) = known();
    for era in Era::ALL {
        let mut manifest = built_manifest(era, &module);
        manifest.memory_backend = None;
        // A store path: checked by virtiofs_shares_name_the_hosts_virtiofsd.
        manifest.mounts.virtiofsd = None;
        // A store path: the system the VM runs, which --switch compares.
        let toplevel = manifest.switch.toplevel.take();
        assert!(
            toplevel
                .as_ref()
                .is_some_and(|t| t.as_str().ends_with("-nixos-system-dev")),
            "{toplevel:?}"
        );
        // A store path: the registration of the system's closure, which
        // --switch loads into the guest's Nix database; the toplevel's
        // lines among it.
        let registration = manifest.switch.registration.take();
        let lines = registration
            .as_ref()
            .and_then(|r| std::fs::read_to_string(r).ok())
            .unwrap_or_default();
        let toplevel = toplevel.unwrap_or_default();
        assert!(
            lines.lines().any(|line| line == toplevel.as_str()),
            "{registration:?}: {lines}"
        );
        assert_eq!(manifest, expected, "{} era", era.name());
    }
    // Spelled out, what the expected manifest says about the shares.
    let extra = &expected.mounts.extra_mounts;
    assert_eq!(
        extra
            .iter()
            .map(|m| m.guest_path.as_str())
            .collect::<Vec<_>>(),
        ["/srv/data", "/var", "/var/www"],
        "sorted by guest path"
    );
    assert_eq!(extra[1].target, "/srv/var", "a path stays the host's path");
    assert_eq!(extra[0].cache, CacheMode::Mmap, "the default cache mode");
    assert!(extra[2].read_only && extra[2].cache == CacheMode::None);
    for mount in extra {
        assert_eq!(
            mount.tag,
            format!("a{:x}", md5_hex(mount.guest_path.as_str()))[..31]
        );
    }
}

/// Regression: between nixpkgs #552774 and #563324 the run script's own
/// virtiofsd needed shared memory that nothing turned on. The module turns
/// it on for a Linux host in every era whose qemu-vm.nix has the option,
/// and the manifest names the backend the run script then brings; the
/// user's own setting wins, and a darwin host (9p, no memfd) gets none.
#[test]
fn a_linux_host_shares_the_guests_memory_in_every_era_and_the_manifest_says_so() {
    let (module, _) = known();
    let mem0 = Some(MemoryBackend {
        id: "mem0".to_owned(),
        size: 768,
    });
    for era in Era::ALL {
        assert_eq!(
            built_manifest(era, &module).memory_backend,
            mem0,
            "{} era",
            era.name()
        );
        let off = built_manifest(era, "{ virtualisation.qemu.enableSharedMemory = false; }");
        assert_eq!(off.memory_backend, None, "{} era", era.name());
    }
    let darwin = r#"{ pkgs, ... }: {
      virtualisation.host.pkgs = import pkgs.path { system = "aarch64-darwin"; };
    }"#;
    let shared_on_darwin = |era| {
        let (_dir, world) = standin(era);
        world
            .eval(darwin, "config.virtualisation.qemu.enableSharedMemory")
            .unwrap()
    };
    assert_eq!(
        shared_on_darwin(Era::Virtiofs),
        serde_json::json!(true),
        "the virtiofs era's own default stands"
    );
    assert_eq!(
        shared_on_darwin(Era::NineP),
        serde_json::json!(false),
        "nothing turned on for a darwin host"
    );
}

/// Virtiofs by default on a Linux host, in both eras, with the host
/// package set's virtiofsd, which the stand-in copies from the real one: the
/// path the CLI starts, as it would start nixpkgs'.
#[test]
fn virtiofs_shares_name_the_hosts_virtiofsd() {
    for era in Era::ALL {
        let manifest = built_manifest(era, "{ }");
        assert_eq!(manifest.version, 5);
        assert_eq!(
            manifest.mounts.protocol,
            Protocol::Virtiofs,
            "{} era",
            era.name()
        );
        assert_eq!(
            manifest.memory_size,
            Some(500),
            "the module's default memory"
        );
        let virtiofsd = manifest.mounts.virtiofsd.expect("a virtiofsd");
        assert!(
            virtiofsd.starts_with("/nix/store/") && virtiofsd.ends_with("bin/virtiofsd"),
            "{virtiofsd}"
        );
        // Never skipped: where the machine has no virtiofsd, the stand-in's
        // package is a stub that says so and fails, and so does this test.
        let out = std::process::Command::new(&virtiofsd)
            .arg("--version")
            .output()
            .expect("run the manifest's virtiofsd");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("virtiofsd"),
            "{virtiofsd} --version: {out:?}"
        );
    }
}

#[test]
fn nine_p_shares_need_no_virtiofsd() {
    let manifest = built_manifest(Era::Virtiofs, r#"{ nixos-shell.mounts.protocol = "9p"; }"#);
    assert_eq!(manifest.mounts.protocol, Protocol::NineP);
    assert_eq!(manifest.mounts.virtiofsd, None);
}

/// virtiofsd runs on Linux only: a darwin host's VM shares over 9p unless
/// told otherwise.
#[test]
fn a_darwin_host_defaults_to_9p() {
    let (_dir, standin) = super::standin(Era::Virtiofs);
    let darwin = r#"{ pkgs, ... }: {
      virtualisation.host.pkgs = import pkgs.path { system = "aarch64-darwin"; };
    }"#;
    let protocol = standin
        .eval(darwin, "config.nixos-shell.mounts.protocol")
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(protocol, "9p");
    let linux = standin
        .eval("{ }", "config.nixos-shell.mounts.protocol")
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(linux, "virtiofs");
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
