//! Mounting one 9p share with mount(2).

use std::ffi::CString;

use anyhow::Context;
use camino::Utf8Path;
use rustix::mount::MountFlags;

use crate::schema::facts::GuestMount;
use crate::schema::manifest::CacheMode;

/// The 9p mount options for a share, in the form NixOS' own
/// `virtualisation.fileSystems` entries use.
pub fn options(msize: u64, cache: CacheMode) -> String {
    format!(
        "trans=virtio,version=9p2000.L,msize={msize},cache={}",
        cache.as_mount_option()
    )
}

/// Mounts a share the host facts list at its guest path (created when
/// missing), read-only when asked.
pub fn mount_share(share: &GuestMount) -> anyhow::Result<()> {
    mount_9p(
        &share.tag,
        &share.guest_path,
        &options(share.msize, share.cache),
        share.read_only,
    )
}

/// Mounts the 9p share `tag` at `target`.
pub fn mount_9p(
    tag: &str,
    target: &Utf8Path,
    options: &str,
    read_only: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(target)
        .with_context(|| format!("cannot create mount point {target} for share {tag}"))?;
    let source = CString::new(tag).context("a 9p tag contains a NUL byte")?;
    let target_c = CString::new(target.as_str()).context("a guest path contains a NUL byte")?;
    let data = CString::new(options).context("mount options contain a NUL byte")?;
    let flags = if read_only {
        MountFlags::RDONLY
    } else {
        MountFlags::empty()
    };
    rustix::mount::mount(&source, &target_c, c"9p", flags, data.as_c_str())
        .with_context(|| format!("cannot mount share {tag} at {target} ({options})"))?;
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
