//! Finding the 9p shares QEMU offers: the mount tags the kernel's
//! `9pnet_virtio` driver lists in sysfs. virtiofs shares are not looked
//! for: kernels list their tags only since Linux 6.9, so the guest role
//! mounts them and reports a failure.

use std::process::{Command, Stdio};

use camino::Utf8Path;

/// The driver directory whose devices carry a `mount_tag` attribute.
pub const SYSFS_9P_DRIVER: &str = "/sys/bus/virtio/drivers/9pnet_virtio";

/// The kernel modules the shares need; loaded best effort (they may be
/// built in, already loaded, or loaded by the initrd).
const MODULES: [&str; 3] = ["9pnet_virtio", "9p", "virtiofs"];

/// Loads the shares' modules with `modprobe`, ignoring every failure: a missing
/// module shows up later as a missing tag or a failed mount.
pub fn load_modules() {
    for module in MODULES {
        let _ = Command::new("modprobe")
            .arg("-q")
            .arg(module)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The mount tags of all 9p devices under `driver_dir`, sorted; empty when
/// the driver is absent.
pub fn discover(driver_dir: &Utf8Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(driver_dir) else {
        return Vec::new();
    };
    let mut tags: Vec<String> = entries
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("mount_tag")).ok())
        .map(|raw| parse_mount_tag(&raw))
        .filter(|tag| !tag.is_empty())
        .collect();
    tags.sort();
    tags
}

/// A `mount_tag` attribute's content as a tag: the kernel ends it with a NUL
/// (newer kernels) or nothing (older ones).
pub fn parse_mount_tag(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim_end_matches(['\0', '\n'])
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_tags_lose_their_terminator() {
        assert_eq!(parse_mount_tag(b"nixos-shell\0"), "nixos-shell");
        assert_eq!(parse_mount_tag(b"home"), "home");
        assert_eq!(parse_mount_tag(b"home\n"), "home");
    }

    #[test]
    fn discover_reads_each_device_and_skips_other_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        for (device, tag) in [("virtio3", "home\0"), ("virtio1", "nixos-shell\0")] {
            std::fs::create_dir(root.join(device)).unwrap();
            std::fs::write(root.join(device).join("mount_tag"), tag).unwrap();
        }
        std::fs::write(root.join("bind"), "").unwrap();
        std::fs::create_dir(root.join("module")).unwrap();
        assert_eq!(discover(root), ["home", "nixos-shell"]);
        assert!(discover(&root.join("missing")).is_empty());
    }
}
