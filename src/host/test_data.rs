//! Values the host role's unit tests share, written once: a sample
//! manifest, environments, a host, and modes made the one way a run
//! makes them (parsed from a command line).

use std::collections::BTreeMap;

use anyhow::Result;
use clap::Parser;

use crate::cli::HostArgs;
use crate::host::read::Host;
use crate::host::settings::{Mode, Run, VmSettings};
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
        attach: false,
        state_version: None,
        switch: Default::default(),
        host_nix: false,
        host_store: None,
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

/// A host with environment `env` in `cwd`, its standard streams a
/// terminal that is not its controlling one (so no resize port).
pub fn host_in(env: BTreeMap<String, String>, cwd: &str) -> Host {
    Host::from_parts(env, cwd.into(), false, true)
}

/// A host with environment `env`, in `/w`.
pub fn host(env: BTreeMap<String, String>) -> Host {
    host_in(env, "/w")
}

/// The mode of the command line `args` (without the program's name) on
/// `host`, or why it is refused.
pub fn try_mode_on(host: &Host, args: &[&str]) -> Result<Mode> {
    let args =
        HostArgs::try_parse_from(std::iter::once("nixos-shell").chain(args.iter().copied()))?;
    Mode::from_args(args, host)
}

/// [`try_mode_on`] an empty environment in `/w`.
pub fn try_mode(args: &[&str]) -> Result<Mode> {
    try_mode_on(&host(env(&[])), args)
}

/// The values of the run of `args`, which must be valid and start a VM.
pub fn run_settings(args: &[&str]) -> Run {
    match try_mode(args) {
        Ok(Mode::Run(run)) => run,
        other => panic!("{args:?} is no run: {other:?}"),
    }
}

/// The VM's values of the run of `args`.
pub fn settings(args: &[&str]) -> VmSettings {
    run_settings(args).vm
}
