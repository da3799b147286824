//! Values the host role's unit tests share, written once.

use std::collections::BTreeMap;

use crate::schema::manifest::{CacheMode, ExtraMount, Manifest, Mounts, Protocol};

/// A manifest of a VM named `nixos` sharing home, the nix profile and one
/// read-only extra mount, over 9p.
pub fn manifest() -> Manifest {
    Manifest {
        version: 1,
        name: "nixos".to_owned(),
        system: "x86_64-linux".to_owned(),
        disk_image: Some("./nixos.qcow2".to_owned()),
        inherit_path: true,
        memory_backend: None,
        memory_size: Some(500),
        mounts: Mounts {
            mount_home: true,
            mount_home_read_only: false,
            mount_nix_profile: true,
            protocol: Protocol::NineP,
            virtiofsd: None,
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

/// An environment of these variables.
pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
