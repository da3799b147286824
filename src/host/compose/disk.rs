//! Which root disk image the VM gets (`NIX_DISK_IMAGE`), from the command
//! line's [`DiskChoice`] and the manifest, chosen before any file is
//! touched (`host::execute::disk` makes the files and takes the lock):
//!
//! - `--ephemeral`: an image in the private temp dir, deleted afterwards;
//! - `--disk PATH`: that image;
//! - the user's `NIX_DISK_IMAGE`: left alone (with one of those flags it
//!   was refused already: `settings`);
//! - the manifest's `diskImage` is null (tmpfs root): nothing;
//! - it is relative (NixOS's default `./<name>.qcow2`): one image per
//!   configuration under `${XDG_STATE_HOME:-~/.local/state}/nixos-shell/`,
//!   instead of a stray file in the cwd that two VMs of the same name share.
//!   An flock on a lock file beside it is held while the VM runs; when
//!   another nixos-shell holds it, this VM gets an ephemeral image;
//! - it is absolute: the run script's own default is left alone.

use std::collections::BTreeMap;

use camino::Utf8PathBuf;

use crate::host::settings::disk::DiskChoice;
use crate::host::settings::DISK_IMAGE_ENV;

/// The choice, before any file is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskPlan {
    /// Set nothing: the user's `NIX_DISK_IMAGE`, a tmpfs root, or the
    /// module's absolute path.
    LeaveAlone,
    /// An image in the private temp dir.
    Ephemeral,
    /// This image (`--disk`, absolute).
    Given(Utf8PathBuf),
    /// The per-configuration image in the state directory, locked.
    State,
}

/// Decides the disk image; pure. A flag wins over `NIX_DISK_IMAGE` (the two
/// together were refused).
pub fn plan(
    env: &BTreeMap<String, String>,
    choice: &DiskChoice,
    manifest_image: Option<&str>,
) -> DiskPlan {
    match choice {
        DiskChoice::Ephemeral => DiskPlan::Ephemeral,
        DiskChoice::Given(disk) => DiskPlan::Given(disk.path.clone()),
        DiskChoice::Default if env.contains_key(DISK_IMAGE_ENV) => DiskPlan::LeaveAlone,
        DiskChoice::Default => match manifest_image {
            Some(image) if !image.starts_with('/') => DiskPlan::State,
            _ => DiskPlan::LeaveAlone,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::settings::disk::DiskFlag;
    use crate::host::test_data::env;

    #[test]
    fn a_flag_chooses_the_image() {
        let rel = Some("./nixos.qcow2");
        let given = DiskChoice::Given(DiskFlag {
            spec: "/d".to_owned(),
            path: "/d".into(),
        });
        assert_eq!(
            plan(&env(&[]), &DiskChoice::Ephemeral, rel),
            DiskPlan::Ephemeral
        );
        assert_eq!(plan(&env(&[]), &given, None), DiskPlan::Given("/d".into()));
    }

    #[test]
    fn without_a_flag_the_users_image_the_state_directory_or_the_scripts_own() {
        let none = env(&[]);
        let user = env(&[("NIX_DISK_IMAGE", "/mine.qcow2")]);
        let rel = Some("./nixos.qcow2");
        assert_eq!(plan(&user, &DiskChoice::Default, rel), DiskPlan::LeaveAlone);
        assert_eq!(
            plan(&user, &DiskChoice::Default, None),
            DiskPlan::LeaveAlone
        );
        assert_eq!(
            plan(&none, &DiskChoice::Default, None),
            DiskPlan::LeaveAlone
        );
        assert_eq!(plan(&none, &DiskChoice::Default, rel), DiskPlan::State);
        assert_eq!(
            plan(&none, &DiskChoice::Default, Some("/var/x.qcow2")),
            DiskPlan::LeaveAlone
        );
    }
}
