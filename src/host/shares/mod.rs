//! The shares: the host directories the VM mounts besides the run script's
//! own (the Nix store, xchg): the home, the Nix profile, the module's
//! `extraMounts` and the `--mount` flags.
//!
//! One record per share ([`Share`]), collected and checked once
//! ([`Shares::collect`]: a home of `/`, a share at a reserved guest path,
//! two shares at one guest path); one [`Transport`] for them all, the
//! manifest's protocol; and one `match` on it ([`Shares::export`]) turns
//! them into what the run needs: QEMU's arguments, the daemons to start
//! ([`virtiofs`]), whether the guest's memory must be shared, and the
//! guest's mounts.

pub mod virtiofs;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::host::qemu;
use crate::host::settings::mount::{check_guest_path, refuse_two_at_one_path};
use crate::host::settings::MountFlag;
use crate::schema::facts::GuestMount;
use crate::schema::manifest::{CacheMode, Manifest, Mounts, Protocol};
use virtiofs::Daemon;

/// The tag of the home share.
pub const HOME_TAG: &str = "home";
/// The tag of the Nix profile's share.
const NIX_PROFILE_TAG: &str = "nixprofile";

/// Where a share comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Home,
    NixProfile,
    /// `nixos-shell.mounts.extraMounts`.
    ExtraMount,
    /// `--mount`.
    MountFlag,
}

/// One share, as the host exports it and the guest mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub source: Source,
    pub tag: String,
    pub host: Utf8PathBuf,
    pub guest: Utf8PathBuf,
    pub cache: CacheMode,
    pub read_only: bool,
}

/// How every share of a run reaches the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// QEMU's own 9p server, mounted with this `msize`.
    NineP { msize: u64 },
    /// A virtiofsd per share: the manifest's, if it names one.
    Virtiofs { virtiofsd: Option<Utf8PathBuf> },
}

/// The shares of a run and their transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shares {
    transport: Transport,
    shares: Vec<Share>,
}

/// What the shares need of the run, from [`Shares::export`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// `-virtfs` values, one per share over 9p.
    virtfs: Vec<String>,
    /// The daemons, one per share over virtiofs.
    pub daemons: Vec<Daemon>,
    /// The manifest's virtiofsd, which runs them.
    pub virtiofsd: Option<Utf8PathBuf>,
    /// Whether the guest's memory must be shared (virtiofsd maps it).
    pub shared_memory: bool,
    /// The guest's mounts, parents before children.
    pub guest_mounts: Vec<GuestMount>,
}

impl Shares {
    /// Each share as `HOST:GUEST`, with `:ro` when read-only: for the
    /// registry's `--list`.
    pub fn described(&self) -> Vec<String> {
        self.shares
            .iter()
            .map(|share| {
                let ro = if share.read_only { ":ro" } else { "" };
                format!("{}:{}{ro}", share.host, share.guest)
            })
            .collect()
    }

    /// The module's shares (home unless `no_home`, the nix profile when
    /// there is one, the extra mounts) and the `--mount` ones, checked: a
    /// home of `/` would share the host's whole root, a share must not go
    /// where the guest's system or nixos-shell's own directory is, and two
    /// shares cannot be at one guest path.
    pub fn collect(
        manifest: &Manifest,
        home: &Utf8Path,
        nix_profile: Option<&Utf8Path>,
        flags: &[MountFlag],
        no_home: bool,
    ) -> Result<Shares> {
        let mounts = &manifest.mounts;
        let mut shares = module_shares(mounts, home, nix_profile, no_home)?;
        shares.extend(flag_shares(flags, mounts.cache));
        refuse_two_at_one_path(shares.iter().map(|s| (s.host.as_path(), s.guest.as_path())))?;
        let transport = match mounts.protocol {
            Protocol::NineP => Transport::NineP {
                msize: mounts.msize,
            },
            Protocol::Virtiofs => Transport::Virtiofs {
                virtiofsd: mounts.virtiofsd.clone(),
            },
        };
        Ok(Shares { transport, shares })
    }

    /// What the shares need of the run: the one place that looks at the
    /// transport.
    pub fn export(&self) -> Exported {
        let mounts = |protocol, msize| -> Vec<GuestMount> {
            let mut mounts: Vec<GuestMount> = self
                .shares
                .iter()
                .map(|share| GuestMount {
                    tag: share.tag.clone(),
                    guest_path: share.guest.clone(),
                    cache: share.cache,
                    read_only: share.read_only,
                    msize,
                    protocol,
                })
                .collect();
            mounts.sort_by_key(|m| m.guest_path.components().count());
            mounts
        };
        match &self.transport {
            Transport::NineP { msize } => Exported {
                virtfs: self.shares.iter().map(virtfs).collect(),
                daemons: Vec::new(),
                virtiofsd: None,
                shared_memory: false,
                guest_mounts: mounts(Protocol::NineP, *msize),
            },
            Transport::Virtiofs { virtiofsd } => {
                let daemons: Vec<Daemon> = self
                    .shares
                    .iter()
                    .map(|share| Daemon {
                        tag: share.tag.clone(),
                        shared_dir: share.host.clone(),
                        read_only: share.read_only,
                        cache: share.cache,
                    })
                    .collect();
                Exported {
                    virtfs: Vec::new(),
                    shared_memory: !daemons.is_empty(),
                    daemons,
                    virtiofsd: virtiofsd.clone(),
                    // virtiofs has no msize; the guest ignores it.
                    guest_mounts: mounts(Protocol::Virtiofs, 0),
                }
            }
        }
    }
}

/// The module's shares: home unless `no_home`, the nix profile when there
/// is one, the extra mounts; each at a guest path a share may take.
fn module_shares(
    mounts: &Mounts,
    home: &Utf8Path,
    nix_profile: Option<&Utf8Path>,
    no_home: bool,
) -> Result<Vec<Share>> {
    let same_path = |source, tag: &str, path: &Utf8Path, read_only| Share {
        source,
        tag: tag.to_owned(),
        host: path.to_owned(),
        guest: path.to_owned(),
        cache: mounts.cache,
        read_only,
    };
    let mut shares = Vec::new();
    if mounts.mount_home && !no_home {
        if home == "/" {
            bail!("HOME is /, and sharing it would share the host's whole root; set HOME to your home directory, or pass --no-home");
        }
        shares.push(same_path(
            Source::Home,
            HOME_TAG,
            home,
            mounts.mount_home_read_only,
        ));
    }
    if let Some(profile) = nix_profile.filter(|_| mounts.mount_nix_profile) {
        shares.push(same_path(
            Source::NixProfile,
            NIX_PROFILE_TAG,
            profile,
            false,
        ));
    }
    for extra in &mounts.extra_mounts {
        shares.push(Share {
            source: Source::ExtraMount,
            tag: extra.tag.clone(),
            host: extra.target.clone(),
            guest: extra.guest_path.clone(),
            cache: extra.cache,
            read_only: extra.read_only,
        });
    }
    for share in &shares {
        check_guest_path(&share.guest)
            .with_context(|| format!("the module's share of {}", share.host))?;
    }
    Ok(shares)
}

impl Exported {
    /// The file names of the daemons' sockets.
    pub fn socket_names(&self) -> impl Iterator<Item = String> + '_ {
        self.daemons.iter().map(Daemon::socket_name)
    }

    /// QEMU's arguments for the shares, the daemons' sockets in
    /// `socket_dir`.
    pub fn qemu_args(&self, socket_dir: &Utf8Path) -> Vec<String> {
        let virtfs = self
            .virtfs
            .iter()
            .flat_map(|value| ["-virtfs".to_owned(), value.clone()]);
        let daemons = self.daemons.iter().flat_map(|d| d.qemu_args(socket_dir));
        virtfs.chain(daemons).collect()
    }
}

/// The `-virtfs` value of a share over 9p; also the session share's.
pub fn virtfs_value(host: &Utf8Path, tag: &str, read_only: bool) -> String {
    let ro = if read_only { ",readonly=on" } else { "" };
    format!(
        "local,path={},security_model=none,mount_tag={tag}{ro}",
        qemu::escape(host.as_str())
    )
}

fn virtfs(share: &Share) -> String {
    virtfs_value(&share.host, &share.tag, share.read_only)
}

/// The shares `--mount` asks for, tagged `mount0`, `mount1`, ..., with the
/// module's default cache mode.
fn flag_shares(flags: &[MountFlag], cache: CacheMode) -> impl Iterator<Item = Share> + '_ {
    flags.iter().enumerate().map(move |(n, flag)| Share {
        source: Source::MountFlag,
        tag: format!("mount{n}"),
        host: flag.host.clone(),
        guest: flag.guest.clone(),
        cache,
        read_only: flag.read_only,
    })
}

/// A line for each extra mount whose host directory is a flake's copy in
/// the Nix store (`/nix/store/<hash>-source/...`): a path such as `./data`
/// in a flake names that copy, which is shared read-only and never sees the
/// user's edits, where in a `vm.nix` it is the directory itself.
pub fn store_copy_notes(shares: &Shares) -> Vec<String> {
    shares
        .shares
        .iter()
        .filter(|share| share.source == Source::ExtraMount)
        .filter(|share| {
            share
                .host
                .strip_prefix("/nix/store")
                .ok()
                .and_then(|rest| rest.components().next())
                .is_some_and(|name| name.as_str().ends_with("-source"))
        })
        .map(|share| {
            format!(
                "extraMounts.\"{}\" shares {}, a flake's copy in the Nix store (read-only, not your \
                 directory): to share the directory itself, write it as a string, e.g. \"/home/you/project/data\"",
                share.guest, share.host
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
