//! Finding the CLI's virtio-serial ports (`schema::ports`) by name: the
//! kernel lists each port under `/sys/class/virtio-ports/<vportNpM>/name`,
//! and its device is `/dev/<vportNpM>` (NixOS' udev also links it as
//! `/dev/virtio-ports/<name>`, which a busybox guest lacks).

use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

use crate::schema::ports::Port;

/// Where the kernel lists the ports.
pub const SYSFS_PORTS: &str = "/sys/class/virtio-ports";

/// How long a port may take to show its name: the host sends the names
/// after the device is probed.
const NAME_TIMEOUT: Duration = Duration::from_secs(2);

/// The device of `port` among the ports listed in `class_dir`; `None` when
/// the host offers no such port.
pub fn find(class_dir: &Utf8Path, port: Port) -> Option<Utf8PathBuf> {
    let entries = class_dir.read_dir_utf8().ok()?;
    entries.flatten().find_map(|entry| {
        let name = std::fs::read_to_string(entry.path().join("name")).ok()?;
        (name.trim_end() == port.name()).then(|| Utf8Path::new("/dev").join(entry.file_name()))
    })
}

/// [`find`] in [`SYSFS_PORTS`], waiting briefly for the names to arrive
/// when the guest has ports but not yet this one.
pub fn wait_for(port: Port) -> Option<Utf8PathBuf> {
    let class_dir = Utf8Path::new(SYSFS_PORTS);
    let deadline = Instant::now() + NAME_TIMEOUT;
    loop {
        if let Some(device) = find(class_dir, port) {
            return Some(device);
        }
        if !class_dir.is_dir() || Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_found_by_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let class = Utf8Path::from_path(dir.path()).unwrap();
        for (entry, name) in [("vport0p0", ""), ("vport1p1", "org.nixos-shell.stdout\n")] {
            std::fs::create_dir(class.join(entry)).unwrap();
            std::fs::write(class.join(entry).join("name"), name).unwrap();
        }
        assert_eq!(
            find(class, Port::Stdout).as_deref(),
            Some(Utf8Path::new("/dev/vport1p1"))
        );
        assert_eq!(find(class, Port::Stdin), None);
        assert_eq!(find(&class.join("missing"), Port::Stdout), None);
    }
}
