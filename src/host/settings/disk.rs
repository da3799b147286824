//! `--disk PATH` and `--ephemeral`: the one choice of the root disk image
//! the command line makes, and what an existing `--disk` must be.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// The first bytes of every qcow2 image: "QFI" and 0xfb.
const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// What the command line says about the disk image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskChoice {
    /// Nothing: the configuration's image (`host::compose::disk` decides).
    Default,
    /// `--ephemeral`: a throwaway image.
    Ephemeral,
    /// `--disk`: this image.
    Given(DiskFlag),
}

/// `--disk`: the path as given (for messages) and absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFlag {
    pub spec: String,
    pub path: Utf8PathBuf,
}

impl DiskChoice {
    /// The flag that made the choice, for messages; `None` for the default.
    pub fn flag(&self) -> Option<&'static str> {
        match self {
            DiskChoice::Default => None,
            DiskChoice::Ephemeral => Some("--ephemeral"),
            DiskChoice::Given(_) => Some("--disk"),
        }
    }
}

impl DiskFlag {
    /// A path where the run script may create a new image, or an existing
    /// qcow2 image. Anything else (a text file, a device, a raw image) would
    /// be handed to the guest as a writable disk and overwritten.
    pub fn check(&self) -> Result<()> {
        let (disk, spec) = (&self.path, &self.spec);
        if spec.is_empty() {
            bail!("--disk needs a path: a new file (created) or a qcow2 image");
        }
        let meta = match std::fs::metadata(disk) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => {
                return Err(err).with_context(|| format!("--disk {spec:?}: cannot read {disk}"))
            }
        };
        if meta.is_dir() {
            bail!("--disk {spec:?}: {disk} is a directory; name an image file in it, e.g. {disk}/vm.qcow2");
        }
        if !(meta.is_file() && starts_with_qcow2_magic(disk)) {
            bail!(
                "--disk {spec:?}: {disk} is not a qcow2 image and would be overwritten as the VM's disk; \
                 pass a new path (it is created) or an image from `qemu-img create -f qcow2`"
            );
        }
        Ok(())
    }
}

fn starts_with_qcow2_magic(path: &Utf8Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == QCOW2_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(path: &Utf8Path, spec: &str) -> DiskFlag {
        DiskFlag {
            spec: spec.to_owned(),
            path: path.to_owned(),
        }
    }

    /// Regression: an existing text file, /dev/null or random bytes were
    /// handed to the guest as a writable raw disk and overwritten.
    #[test]
    fn a_disk_is_a_new_path_or_a_qcow2_image() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(cwd.join("notes.txt"), "my notes").unwrap();
        std::fs::write(cwd.join("vm.qcow2"), b"QFI\xfb\0\0\0\x03").unwrap();
        flag(&cwd.join("new.qcow2"), "new.qcow2").check().unwrap();
        flag(&cwd.join("vm.qcow2"), "vm.qcow2").check().unwrap();
        for (path, spec) in [
            (cwd.join("notes.txt"), "notes.txt"),
            ("/dev/null".into(), "/dev/null"),
        ] {
            let err = format!("{:#}", flag(&path, spec).check().unwrap_err());
            assert!(err.contains("is not a qcow2 image"), "{spec}: {err}");
        }
        assert_eq!(
            std::fs::read_to_string(cwd.join("notes.txt")).unwrap(),
            "my notes"
        );
    }

    #[test]
    fn a_directory_or_nothing_is_not_a_disk() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        assert!(format!("{:#}", flag(cwd, ".").check().unwrap_err()).contains("is a directory"));
        assert_eq!(
            format!("{:#}", flag(cwd, "").check().unwrap_err()),
            "--disk needs a path: a new file (created) or a qcow2 image"
        );
    }
}
