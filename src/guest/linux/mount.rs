//! Mounting one share with mount(2): 9p by tag through QEMU's virtio
//! transport, or virtiofs by the tag of its `vhost-user-fs-pci` device.

use std::ffi::CString;

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
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

/// The read-ahead of a virtiofs share whose cache mode caches, in KiB: one
/// request of the largest size virtiofsd takes (1 MiB). FUSE holds every
/// mount's read-ahead to the kernel's default of 128 KiB, whatever the
/// daemon offers, so a sequential read would cross the share in eight round
/// trips per MiB instead of one. Read-ahead only fetches sooner what a
/// reader of the same open file asks for next, through the same page cache:
/// how long cached data is trusted is still the daemon's cache policy.
pub const VIRTIOFS_READ_AHEAD_KB: u32 = 1024;

/// Mounts a share the host facts list at its guest path (created when
/// missing), read-only when asked. A virtiofs share has no options: the
/// host's virtiofsd chose its caching; one that caches gets a larger
/// read-ahead ([`VIRTIOFS_READ_AHEAD_KB`]). Cache mode `none` is left as
/// it is: its reads bypass the page cache, so read-ahead has nothing to do.
pub fn mount_share(share: &GuestMount) -> anyhow::Result<()> {
    match share.protocol {
        Protocol::NineP => mount_9p(
            &share.tag,
            &share.guest_path,
            &options(share.msize, share.cache),
            share.read_only,
        ),
        Protocol::Virtiofs => {
            mount(
                c"virtiofs",
                &share.tag,
                &share.guest_path,
                "",
                share.read_only,
            )?;
            if share.cache == CacheMode::None {
                return Ok(());
            }
            set_read_ahead(&share.tag, &share.guest_path, VIRTIOFS_READ_AHEAD_KB)
        }
    }
}

/// Sets the read-ahead of the file system mounted at `target` (the share
/// `tag`) to `kib`, in the sysfs entry of its backing device.
fn set_read_ahead(tag: &str, target: &Utf8Path, kib: u32) -> anyhow::Result<()> {
    let dev = rustix::fs::stat(target.as_std_path())
        .with_context(|| format!("share {tag} is mounted at {target}, but cannot stat it"))?
        .st_dev;
    let file = read_ahead_file(dev);
    std::fs::write(&file, format!("{kib}\n")).with_context(|| {
        format!("share {tag} is mounted at {target}, but its read-ahead could not be set in {file}")
    })
}

/// The sysfs file holding the read-ahead (KiB) of the file system whose
/// device number is `dev`: FUSE, virtiofs included, names a mount's backing
/// device after its anonymous device number, `MAJOR:MINOR`.
pub fn read_ahead_file(dev: rustix::fs::Dev) -> Utf8PathBuf {
    Utf8PathBuf::from(format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    ))
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
    fn a_virtiofs_mounts_read_ahead_is_set_through_its_anonymous_device() {
        assert_eq!(
            read_ahead_file(rustix::fs::makedev(0, 29)),
            "/sys/class/bdi/0:29/read_ahead_kb"
        );
        assert_eq!(
            read_ahead_file(rustix::fs::makedev(0, 300)),
            "/sys/class/bdi/0:300/read_ahead_kb"
        );
    }

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
