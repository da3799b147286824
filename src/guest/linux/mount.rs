//! Mounting one share with mount(2): 9p by tag through QEMU's virtio
//! transport, or virtiofs by the tag of its `vhost-user-fs-pci` device.
//! A share already mounted where it goes is left as it is, so the early
//! step run again (by hand, or by a switch) stacks no second mount; one
//! that does not mount in time is given up, so the boot goes on.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::mount::MountFlags;
use rustix::pipe::PipeFlags;
use rustix::process::{Signal, WaitOptions};

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
        Protocol::NineP => {
            mount_9p(
                &share.tag,
                &share.guest_path,
                &options(share.msize, share.cache),
                share.read_only,
            )?;
            answers(&share.tag, &share.guest_path)
        }
        Protocol::Virtiofs => {
            mount(
                c"virtiofs",
                &share.tag,
                &share.guest_path,
                "",
                share.read_only,
            )?;
            answers(&share.tag, &share.guest_path)?;
            if share.cache == CacheMode::None {
                return Ok(());
            }
            set_read_ahead(&share.tag, &share.guest_path, VIRTIOFS_READ_AHEAD_KB)
        }
    }
}

/// How long one share may take to mount (its read-ahead included). A
/// share answers in milliseconds; one whose daemon is gone, or whose
/// vhost-user device never started (virtiofsd without the guest's memory
/// shared), never answers, and the mount would block the early step, and
/// with it the whole boot, for ever.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);

/// [`mount_share`], given up after `timeout`: the error names the share
/// and what to try. The mount runs in a child process, which reports a
/// failure on a pipe and ends: one whose share never answers is killed and
/// left behind (a request the kernel already sent waits for its answer
/// uninterruptibly, so a thread of this process would keep it from ever
/// ending, and the boot waits for it), and the share is covered
/// ([`cover`]), so that nothing later (a login's `cd`) blocks on it.
/// The caller must have started no thread.
pub fn mount_share_within(share: &GuestMount, timeout: Duration) -> anyhow::Result<()> {
    let (read_end, write_end) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC).context("cannot mount a share: no pipe")?;
    // SAFETY: the guest role has started no thread, so the child is a
    // whole copy of this process.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("cannot mount a share: no process"),
        0 => {
            drop(read_end);
            let code = match mount_share(share) {
                Ok(()) => 0,
                Err(err) => {
                    let _ = File::from(write_end).write_all(format!("{err:#}").as_bytes());
                    1
                }
            };
            // SAFETY: ends the child at once, without the parent's exit
            // handlers.
            unsafe { libc::_exit(code) }
        }
        pid => {
            drop(write_end);
            let child = rustix::process::Pid::from_raw(pid);
            match read_until_closed(read_end, timeout) {
                Some(message) => {
                    if let Some(child) = child {
                        let _ = rustix::process::waitpid(Some(child), WaitOptions::empty());
                    }
                    if message.is_empty() {
                        Ok(())
                    } else {
                        Err(anyhow::anyhow!(message))
                    }
                }
                None => {
                    if let Some(child) = child {
                        let _ = rustix::process::kill_process(child, Signal::KILL);
                    }
                    cover(&share.guest_path);
                    anyhow::bail!("{}", timed_out(share, timeout))
                }
            }
        }
    }
}

/// Hides a share that never answered under an empty read-only tmpfs at
/// `target`, so that a program entering its guest path finds an empty
/// directory instead of waiting for ever. Not unmounted: the last unmount
/// of a virtiofs share waits, uninterruptibly, for every request it sent
/// (the kernel's virtio_fs_kill_sb drains its queues), which never end.
fn cover(target: &Utf8Path) {
    let Ok(target_c) = CString::new(target.as_str()) else {
        return;
    };
    let _ = rustix::mount::mount(
        c"nixos-shell-absent",
        &target_c,
        c"tmpfs",
        MountFlags::RDONLY,
        c"mode=0755",
    );
}

/// What is written on `pipe` until its writer closes it, or `None` when
/// that takes longer than `timeout`.
fn read_until_closed(pipe: OwnedFd, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut file = File::from(pipe);
    let mut text = Vec::new();
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let left = Timespec::try_from(left).ok()?;
        let mut fds = [PollFd::new(&file, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&left)) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
        let mut buf = [0u8; 4096];
        match file.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&text).into_owned()),
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Some(String::from_utf8_lossy(&text).into_owned()),
        }
    }
}

/// The console's line for a share that did not mount in `timeout`.
pub fn timed_out(share: &GuestMount, timeout: Duration) -> String {
    let what = match share.protocol {
        Protocol::Virtiofs => {
            "its virtiofsd on the host is gone or cannot reach the guest's memory; \
             restart the VM, or set nixos-shell.mounts.protocol = \"9p\""
        }
        Protocol::NineP => "QEMU does not answer for it; restart the VM",
    };
    format!(
        "share {} did not mount at {} within {} s ({what}); the boot goes on without it",
        share.tag,
        share.guest_path,
        timeout.as_secs()
    )
}

/// Whether `/proc/self/mounts` text `mounts` lists a file system of type
/// `fs` from `source` mounted at `target`.
pub fn is_mounted(mounts: &str, source: &str, target: &Utf8Path, fs: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split(' ');
        let (Some(src), Some(dir), Some(kind)) = (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        unescape(src) == source && unescape(dir) == target.as_str() && kind == fs
    })
}

/// A field of `/proc/self/mounts` as it was given: the kernel writes space,
/// tab, newline and backslash as three octal digits after a backslash.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Asks the share mounted at `target` for its file system's figures,
/// which goes to its server whatever the cache mode: a virtiofs mount
/// returns before its daemon has answered once (FUSE's INIT is sent in the
/// background), so a share whose daemon is gone would look mounted and
/// block the first program to touch it (a login's `cd`), not this step.
fn answers(tag: &str, target: &Utf8Path) -> anyhow::Result<()> {
    rustix::fs::statfs(target.as_std_path())
        .with_context(|| format!("share {tag} is mounted at {target}, but does not answer"))?;
    Ok(())
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
/// missing; nothing when it is mounted there already.
fn mount(
    fs: &std::ffi::CStr,
    tag: &str,
    target: &Utf8Path,
    options: &str,
    read_only: bool,
) -> anyhow::Result<()> {
    let fs_name = fs.to_string_lossy();
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
        if is_mounted(&mounts, tag, target, &fs_name) {
            return Ok(());
        }
    }
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
        format!("cannot mount the {fs_name} share {tag} at {target} ({options})")
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
    fn a_share_is_mounted_where_its_tag_and_type_are_listed() {
        let mounts = "proc /proc proc rw 0 0\n\
                      home /home/me virtiofs rw,relatime 0 0\n\
                      a0f3 /srv/my\\040data 9p rw,trans=virtio 0 0\n";
        assert!(is_mounted(
            mounts,
            "home",
            Utf8Path::new("/home/me"),
            "virtiofs"
        ));
        assert!(is_mounted(
            mounts,
            "a0f3",
            Utf8Path::new("/srv/my data"),
            "9p"
        ));
        assert!(!is_mounted(mounts, "home", Utf8Path::new("/home/me"), "9p"));
        assert!(!is_mounted(
            mounts,
            "home",
            Utf8Path::new("/home"),
            "virtiofs"
        ));
        assert!(!is_mounted(
            mounts,
            "data",
            Utf8Path::new("/home/me"),
            "virtiofs"
        ));
    }

    #[test]
    fn a_share_that_does_not_mount_in_time_is_named_with_what_to_try() {
        let share = GuestMount {
            tag: "home".to_owned(),
            guest_path: "/home/me".into(),
            cache: CacheMode::Loose,
            read_only: false,
            msize: 512000,
            protocol: Protocol::Virtiofs,
        };
        let line = timed_out(&share, Duration::from_secs(20));
        assert!(
            line.starts_with("share home did not mount at /home/me within 20 s ("),
            "{line}"
        );
        assert!(line.contains("mounts.protocol = \"9p\""), "{line}");
        assert!(line.ends_with("the boot goes on without it"), "{line}");
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
