//! The disk image of a run, made real: the composition chose it
//! (`compose::disk`, whose header lists the cases); here the files it
//! needs are made, and the per-configuration image in the state directory
//! is locked while the VM runs. When another nixos-shell holds that lock,
//! this VM gets an ephemeral image.

use std::collections::BTreeMap;
use std::fs::File;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

use crate::host::compose::disk::{plan, DiskPlan};
use crate::host::nix::Identity;
use crate::host::settings::disk::DiskChoice;

/// The disk image of a run, and the lock that guards it while the VM runs
/// (released when this is dropped).
#[derive(Debug)]
pub struct Disk {
    /// `NIX_DISK_IMAGE` to set; `None` leaves the run script's choice.
    pub image: Option<Utf8PathBuf>,
    lock: Option<File>,
}

impl Disk {
    /// The lock file, held while this lives (and by whoever inherits it).
    pub fn lock(&self) -> Option<&File> {
        self.lock.as_ref()
    }
}

/// Chooses the disk image of a VM whose manifest names `manifest_image`
/// (`name` is its `system.name`, `identity` that of its configuration):
/// [`plan`], then the files it needs (the state image's lock, a `--disk`'s
/// directory). `ephemeral` is where a throwaway image goes. A flag that
/// chooses an image for a VM without one (a tmpfs root) is refused: it
/// would be silently ignored.
pub fn choose(
    env: &BTreeMap<String, String>,
    choice: &DiskChoice,
    manifest_image: Option<&str>,
    name: &str,
    identity: &Identity,
    ephemeral: Utf8PathBuf,
) -> Result<Disk> {
    if let Some(flag) = choice.flag().filter(|_| manifest_image.is_none()) {
        bail!(
            "{flag} chooses a disk image, but this VM has none (virtualisation.diskImage = null: its root is a tmpfs); drop {flag}"
        );
    }
    let unlocked = |image| Disk { image, lock: None };
    match plan(env, choice, manifest_image) {
        DiskPlan::LeaveAlone => Ok(unlocked(None)),
        DiskPlan::Ephemeral => Ok(unlocked(Some(ephemeral))),
        DiskPlan::Given(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("could not create {dir} for --disk; check the path")
                })?;
            }
            Ok(unlocked(Some(path)))
        }
        DiskPlan::State => {
            let Some(dir) = state_dir(env) else {
                bail!("neither XDG_STATE_HOME nor HOME is set, so the VM's disk image has no home; set one, or pass --ephemeral or --disk PATH");
            };
            let image = dir.join(state_image_name(name, identity));
            match try_lock(&image)? {
                Some(lock) => Ok(Disk {
                    image: Some(image),
                    lock: Some(lock),
                }),
                None => {
                    eprintln!("nixos-shell: {image} is in use by another nixos-shell; this VM gets a temporary disk image");
                    Ok(unlocked(Some(ephemeral)))
                }
            }
        }
    }
}

/// `${XDG_STATE_HOME:-$HOME/.local/state}/nixos-shell`.
pub fn state_dir(env: &BTreeMap<String, String>) -> Option<Utf8PathBuf> {
    match env.get("XDG_STATE_HOME").filter(|d| d.starts_with('/')) {
        Some(dir) => Some(Utf8PathBuf::from(dir).join("nixos-shell")),
        None => env
            .get("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| Utf8PathBuf::from(home).join(".local/state/nixos-shell")),
    }
}

/// `<name>-<hash of identity>.qcow2`: readable, and distinct for two
/// configurations that share `system.name`.
pub fn state_image_name(name: &str, identity: &Identity) -> String {
    format!("{name}-{}.qcow2", identity.key())
}

/// Takes the lock beside `image` without waiting. `Ok(None)` when another
/// process holds it. The lock lasts as long as the returned file is open.
pub fn try_lock(image: &Utf8Path) -> Result<Option<File>> {
    let lock_path = Utf8PathBuf::from(format!("{image}.lock"));
    if let Some(dir) = lock_path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {dir}; check its permissions"))?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("could not open {lock_path}; check its permissions"))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(Errno::WOULDBLOCK) => Ok(None),
        Err(err) => Err(err).with_context(|| format!("could not lock {lock_path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::test_data::env;

    #[test]
    fn a_flag_for_a_vm_without_an_image_is_refused() {
        let err = choose(
            &env(&[]),
            &DiskChoice::Ephemeral,
            None,
            "n",
            &Identity::new("i"),
            "/e".into(),
        )
        .unwrap_err();
        assert!(format!("{err:#}")
            .starts_with("--ephemeral chooses a disk image, but this VM has none"));
    }

    #[test]
    fn state_dir_and_names() {
        assert_eq!(
            state_dir(&env(&[("HOME", "/h")])).unwrap(),
            "/h/.local/state/nixos-shell"
        );
        assert_eq!(
            state_dir(&env(&[("HOME", "/h"), ("XDG_STATE_HOME", "/s")])).unwrap(),
            "/s/nixos-shell"
        );
        assert_eq!(state_dir(&env(&[])), None);
        // The key of an identity names its image for good: images made by
        // an earlier nixos-shell keep being found.
        assert_eq!(
            state_image_name("nixos", &Identity::new("a")),
            "nixos-af63dc4c8601ec8c.qcow2"
        );
        assert_ne!(
            state_image_name("n", &Identity::new("/p#a")),
            state_image_name("n", &Identity::new("/p#b"))
        );
    }

    #[test]
    fn a_held_lock_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let image = Utf8Path::from_path(dir.path()).unwrap().join("sub/x.qcow2");
        let first = try_lock(&image).unwrap();
        assert!(first.is_some());
        assert!(try_lock(&image).unwrap().is_none());
        drop(first);
        assert!(try_lock(&image).unwrap().is_some());
    }
}
