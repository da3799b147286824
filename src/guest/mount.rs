//! Mounting one share with mount(2): 9p by tag through QEMU's virtio
//! transport, or virtiofs by the tag of its `vhost-user-fs-pci` device.

use std::ffi::CString;

use anyhow::Context;
use camino::Utf8Path;
use rustix::mount::MountFlags;

use crate::schema::facts::GuestMount;
use crate::schema::manifest::{CacheMode, Protocol};

/// The 9p mount options for a share, in the form NixOS' own
/// `virtualisation.fileSystems` entries use.
pub fn options(msize: u64, cache: CacheMode) -> String {
    format!(
        "trans=virtio,version=9p2000.L,msize={msize},cache={}",
        cache.as_mount_option()
    )
}

/// Mounts a share the host facts list at its guest path (created when
/// missing), read-only when asked. A virtiofs share has no options: the
/// host's virtiofsd chose its caching.
pub fn mount_share(share: &GuestMount) -> anyhow::Result<()> {
    match share.protocol {
        Protocol::NineP => mount_9p(
            &share.tag,
            &share.guest_path,
            &options(share.msize, share.cache),
            share.read_only,
        ),
        Protocol::Virtiofs => mount(
            c"virtiofs",
            &share.tag,
            &share.guest_path,
            "",
            share.read_only,
        ),
    }
}

/// Mounts the 9p share `tag` at `target`.
pub fn mount_9p(
    tag: &str,
    target: &Utf8Path,
    options: &str,
    read_only: bool,
) -> anyhow::Result<()> {
    mount(c"9p", tag, target, options, read_only)
}

/// Mounts the share `tag` of file system `fs` at `target`, created when
/// missing.
fn mount(
    fs: &std::ffi::CStr,
    tag: &str,
    target: &Utf8Path,
    options: &str,
    read_only: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(target)
        .with_context(|| format!("cannot create mount point {target} for share {tag}"))?;
    let source = CString::new(tag).context("a share's tag contains a NUL byte")?;
    let target_c = CString::new(target.as_str()).context("a guest path contains a NUL byte")?;
    let data = CString::new(options).context("mount options contain a NUL byte")?;
    let flags = if read_only {
        MountFlags::RDONLY
    } else {
        MountFlags::empty()
    };
    rustix::mount::mount(&source, &target_c, fs, flags, data.as_c_str()).with_context(|| {
        format!(
            "cannot mount the {} share {tag} at {target} ({options})",
            fs.to_string_lossy()
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_transport_version_msize_and_cache() {
        assert_eq!(
            options(104857600, CacheMode::Loose),
            "trans=virtio,version=9p2000.L,msize=104857600,cache=loose"
        );
        assert_eq!(
            options(16384, CacheMode::None),
            "trans=virtio,version=9p2000.L,msize=16384,cache=none"
        );
    }
}
