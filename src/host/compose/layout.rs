//! Where the files of one run go, under its private temp dir (which
//! `host::execute::session` creates and removes):
//!
//! ```text
//! <tmp>/nixos-shell.XXXXXX/
//!   result        the out-link holding the build while the VM runs
//!   share/        the session share (tag `nixos-shell`): facts.json, result.json
//!   tmp/          TMPDIR of the run script (unless the user set TMPDIR and USE_TMPDIR)
//!   sockets/      the virtiofsd and virtio port sockets, when their paths fit
//!   console.log   the guest console, when --command's streams are nixos-shell's own
//!   <name>.qcow2  the --ephemeral disk image
//! ```
//!
//! Names only, for a real session or for `--dry-run`'s placeholder.

use camino::{Utf8Path, Utf8PathBuf};

/// Where a session's files are, under its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: Utf8PathBuf,
}

impl Layout {
    /// A session under `root` (a placeholder such as `<private-temp-dir>`
    /// for `--dry-run`).
    pub fn under(root: impl Into<Utf8PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// The session's directory.
    pub fn root(&self) -> &Utf8Path {
        &self.root
    }

    pub fn out_link(&self) -> Utf8PathBuf {
        self.root.join("result")
    }

    pub fn share(&self) -> Utf8PathBuf {
        self.root.join("share")
    }

    pub fn tmp(&self) -> Utf8PathBuf {
        self.root.join("tmp")
    }

    pub fn sockets(&self) -> Utf8PathBuf {
        self.root.join("sockets")
    }

    pub fn console_log(&self) -> Utf8PathBuf {
        self.root.join("console.log")
    }

    pub fn ephemeral_image(&self, name: &str) -> Utf8PathBuf {
        self.root.join(format!("{name}.qcow2"))
    }
}
