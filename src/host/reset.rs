//! `nixos-shell --reset [CONFIG]`: deletes the configuration's disk image
//! in the state directory (`<name>-<identity key>.qcow2`,
//! `execute::disk::state_image_name`), with its lock, the record of the
//! release it was made with (`execute::release`) and its detached
//! console's log, after saying which file it is. Found by the identity's
//! key, without nix; refused while a VM of CONFIG runs. An `--ephemeral`
//! image is gone anyway and a `--disk` one is the user's: neither is
//! touched.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::host::attach::{self, registry};
use crate::host::execute::{disk, release};
use crate::host::nix;
use crate::host::read::Host;
use crate::host::settings::Target;

/// Deletes the state disk image of `target`'s configuration; 0, also when
/// there is none (said in one line).
pub fn run(target: &Target, host: &Host) -> Result<u8> {
    let config = target.config.as_ref();
    let installable = nix::resolve(config, &host.cwd)?;
    let identities = installable.identities();
    let described = attach::described(config);
    if registry::find(&registry::dir(&host.env), &identities)?.is_some() {
        bail!(
            "a VM of {described} is running on its disk image; stop it first with `nixos-shell --stop{}`",
            attach::described_as_flag(config)
        );
    }
    let Some(dir) = disk::state_dir(&host.env) else {
        bail!("no state directory: neither XDG_STATE_HOME nor HOME is set");
    };
    let keys: Vec<String> = identities.iter().map(nix::Identity::key).collect();
    let images = images_of(&dir, &keys);
    if images.is_empty() {
        eprintln!("nixos-shell: no disk image of {described} in {dir}; nothing to reset");
        return Ok(0);
    }
    // A VM that runs without an entry (its guest serves no attaches)
    // still holds the image's lock; held here until the image is gone.
    let mut locks = Vec::new();
    for image in &images {
        match disk::try_lock(image)? {
            Some(lock) => locks.push(lock),
            None => bail!("{image} is in use by a running VM; stop it first"),
        }
    }
    for image in images {
        eprintln!("nixos-shell: deleting the disk image {image}");
        std::fs::remove_file(&image).with_context(|| format!("could not delete {image}"))?;
        let stem = image.as_str().trim_end_matches(".qcow2");
        for beside in [
            release::record_path(&image),
            Utf8PathBuf::from(format!("{image}.lock")),
            Utf8PathBuf::from(format!("{stem}.console.log")),
            Utf8PathBuf::from(format!("{stem}.console.log.old")),
        ] {
            match std::fs::remove_file(&beside) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(err).with_context(|| format!("could not delete {beside}"));
                }
                _ => {}
            }
        }
    }
    drop(locks);
    Ok(0)
}

/// The images in `dir` named for one of `keys`.
fn images_of(dir: &Utf8Path, keys: &[String]) -> Vec<Utf8PathBuf> {
    let Ok(entries) = dir.read_dir_utf8() else {
        return Vec::new();
    };
    let mut found: Vec<Utf8PathBuf> = entries
        .flatten()
        .filter(|entry| {
            keys.iter().any(|key| {
                entry
                    .file_name()
                    .strip_suffix(".qcow2")
                    .and_then(|stem| stem.strip_suffix(key.as_str()))
                    .is_some_and(|name| name.ends_with('-'))
            })
        })
        .map(|entry| entry.path().to_owned())
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_images_of_a_key_are_found_by_name_and_no_other() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        for name in [
            "vm-0123.qcow2",
            "other-0123.qcow2",
            "vm-4567.qcow2",
            "vm-0123.qcow2.lock",
            "vm0123.qcow2",
        ] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        assert_eq!(
            images_of(dir, &["0123".to_owned()]),
            [dir.join("other-0123.qcow2"), dir.join("vm-0123.qcow2")]
        );
        assert_eq!(
            images_of(&dir.join("missing"), &["0123".to_owned()]),
            Vec::<Utf8PathBuf>::new()
        );
    }
}
