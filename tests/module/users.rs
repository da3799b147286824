//! Modules in the shapes users wrote for the original nixos-shell
//! (`tests/fixtures/users/`), evaluated with this one's module: the
//! manifest is what they meant.

use nixos_shell::schema::manifest::{CacheMode, Manifest, MANIFEST_PATH};

use super::standin;
use crate::support::vm::Era;
use crate::PATHS;

fn fixtures() -> std::path::PathBuf {
    PATHS.checkout().join("tests/fixtures/users")
}

/// The manifest the module builds for the fixture `file`.
fn manifest(file: &str) -> Manifest {
    let (_dir, standin) = standin(Era::NineP);
    let module = format!("import {}", fixtures().join(file).display());
    let result = standin
        .build(&module)
        .unwrap_or_else(|err| panic!("{file} does not build:\n{err}"));
    let text = std::fs::read_to_string(result.join(MANIFEST_PATH)).expect("the manifest");
    serde_json::from_str(&text).expect("a manifest the CLI reads")
}

#[test]
fn home_profile_and_caching_turned_off() {
    let manifest = manifest("mounts-off.nix");
    assert!(!manifest.mounts.mount_home);
    assert!(!manifest.mounts.mount_nix_profile);
    assert_eq!(manifest.mounts.cache, CacheMode::None);
}

#[test]
fn extra_mounts_in_every_shape_users_wrote() {
    let manifest = manifest("extra-mounts.nix");
    let here = fixtures();
    let mounts: Vec<(&str, String, CacheMode)> = manifest
        .mounts
        .extra_mounts
        .iter()
        .map(|m| (m.guest_path.as_str(), m.target.to_string(), m.cache))
        .collect();
    assert_eq!(
        mounts,
        [
            // The trailing slash is the directory's.
            ("/etc/nixos", "/etc/nixos".to_owned(), CacheMode::Loose),
            ("/home/me/x", "/home/me/x".to_owned(), CacheMode::Loose),
            // A path beside a vm.nix stays where it is on the host.
            (
                "/map-data",
                here.join("map-data").display().to_string(),
                CacheMode::Loose
            ),
            ("/project", here.display().to_string(), CacheMode::None),
            (
                "/srv/plain",
                "/srv/plain-on-host".to_owned(),
                CacheMode::Loose
            ),
        ],
        "a key that evaluates to null is no mount"
    );
    assert_eq!(manifest.memory_size, Some(1024));
}
