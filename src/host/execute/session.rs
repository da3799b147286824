//! The private temp dir of one run, removed when it is dropped (after the
//! VM, on errors and after Ctrl-C):
//!
//! ```text
//! <tmp>/nixos-shell.XXXXXX/
//!   result        the out-link holding the build while the VM runs
//!   share/        the session share (tag `nixos-shell`): facts.json, result.json
//!   tmp/          TMPDIR of the run script (unless the user set TMPDIR and USE_TMPDIR)
//!   sockets/      the virtiofsd and virtio port sockets, when their paths fit (see `sockets`)
//!   console.log   the guest console, when --command's streams are nixos-shell's own
//!   <name>.qcow2  the --ephemeral disk image
//! ```
//!
//! `compose::layout::Layout` names those paths, for a real session or for
//! `--dry-run`'s placeholder; [`Session`] owns the directory.

use std::ops::Deref;

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;
use tempfile::TempDir;

use crate::host::compose::layout::Layout;
use crate::schema::facts::{GuestResult, HostFacts, FACTS_FILE, RESULT_FILE};

/// The directory of a run.
pub struct Session {
    dir: Dir,
    layout: Layout,
}

/// Who removes the directory: its [`TempDir`], or, in a detached VM's
/// holder, which took it over from the nixos-shell that built
/// ([`Session::keep`], [`Session::adopt`]), the holder as it ends.
enum Dir {
    Temp(TempDir),
    Adopted(Adopted),
    /// Handed over: not removed here.
    Kept,
}

/// An adopted directory, removed when dropped.
struct Adopted(Utf8PathBuf);

impl Drop for Adopted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.as_std_path());
    }
}

impl Deref for Session {
    type Target = Layout;

    fn deref(&self) -> &Layout {
        &self.layout
    }
}

impl Session {
    /// Creates the directory, empty: a build needs nothing in it but its
    /// out-link ([`Session::prepare_vm`] adds what a VM needs).
    pub fn create() -> Result<Session> {
        let dir = tempfile::Builder::new()
            .prefix("nixos-shell.")
            .tempdir()
            .context("could not create a private temp dir; check TMPDIR")?;
        let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).map_err(|p| {
            anyhow::anyhow!("the temp dir {} is not UTF-8; set TMPDIR", p.display())
        })?;
        Ok(Session {
            dir: Dir::Temp(dir),
            layout: Layout::under(root),
        })
    }

    /// Hands the directory over to another process, which adopts it
    /// ([`Session::adopt`]): this side no longer removes it.
    pub fn keep(mut self) -> Utf8PathBuf {
        if let Dir::Temp(dir) = std::mem::replace(&mut self.dir, Dir::Kept) {
            let _ = dir.keep();
        }
        self.layout.root().to_owned()
    }

    /// The directory at `root` that another nixos-shell created and kept
    /// for this one; removed as a created one is.
    pub fn adopt(root: Utf8PathBuf) -> Session {
        Session {
            dir: Dir::Adopted(Adopted(root.clone())),
            layout: Layout::under(root),
        }
    }

    /// Creates `share/` and `tmp/`, for a VM to start.
    pub fn prepare_vm(&self) -> Result<()> {
        for dir in [self.share(), self.tmp()] {
            std::fs::create_dir(&dir).with_context(|| format!("could not create {dir}"))?;
        }
        Ok(())
    }

    /// Writes the host facts into the session share for the guest.
    pub fn write_facts(&self, facts: &HostFacts) -> Result<()> {
        let path = self.share().join(FACTS_FILE);
        let json =
            serde_json::to_string_pretty(facts).context("could not encode the host facts")?;
        std::fs::write(&path, json).with_context(|| format!("could not write {path}"))
    }

    /// Whether the guest reported its command's status (`result.json` in
    /// the session share).
    pub fn command_reported(&self) -> bool {
        self.share().join(RESULT_FILE).exists()
    }

    /// The guest command's status from `result.json` in the session share,
    /// once the VM ended; `qemu_failed` is what to say when QEMU itself
    /// failed before any guest ran (`None`: it did not fail).
    pub fn command_status(&self, qemu_failed: Option<String>) -> Result<u8> {
        let path = self.share().join(RESULT_FILE);
        let bytes = match (GuestResult::read(&path), qemu_failed) {
            (Ok(Some(bytes)), _) => bytes,
            // QEMU's own errors (a port in use, a locked or broken disk
            // image) end it with a failure before any guest runs.
            (Ok(None), Some(failed)) => bail!("{failed}"),
            (Ok(None), None) => bail!(
                "the VM ended without reporting the command's status ({path} is missing); \
                 check the console output above, and that the configuration includes the nixos-shell module"
            ),
            (Err(err), _) => {
                bail!("{path} is malformed: {err}; check the console output above")
            }
        };
        GuestResult::status_from(&bytes).map_err(|err| {
            anyhow::anyhow!("{path} is malformed: {err}; check the console output above")
        })
    }

    /// Where its files are.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Removes the directory now, reporting a failure.
    pub fn close(mut self) -> Result<()> {
        let root = self.layout.root().to_owned();
        match std::mem::replace(&mut self.dir, Dir::Kept) {
            Dir::Temp(dir) => dir.close(),
            Dir::Adopted(adopted) => {
                let removed = std::fs::remove_dir_all(root.as_std_path());
                drop(adopted);
                removed
            }
            Dir::Kept => Ok(()),
        }
        .with_context(|| format!("could not remove {root}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_for_a_build_then_for_a_vm_and_removed() {
        let session = Session::create().unwrap();
        let root = session.root().to_owned();
        assert!(!session.share().exists());
        session.prepare_vm().unwrap();
        assert!(session.share().is_dir() && session.tmp().is_dir());
        assert_eq!(session.out_link(), root.join("result"));
        session.close().unwrap();
        assert!(!root.exists());
    }
}
