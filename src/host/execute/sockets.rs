//! The directory of a run's Unix sockets: the virtiofsd daemons' and the
//! virtio-serial ports'. `bind(2)` takes at most 107 bytes of path, and a
//! long TMPDIR is common enough (macOS-style per-user temp dirs, nested
//! sessions) to need a shorter place.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// The longest socket path `bind(2)` takes: `sun_path` is 108 bytes,
/// NUL included.
pub const MAX_SOCKET_PATH: usize = 107;

/// Where the sockets go: `preferred` (in the session directory) when the
/// longest socket path fits `sun_path`, else a short private directory
/// under /tmp, removed when this is dropped.
pub struct SocketDir {
    path: Utf8PathBuf,
    _private: Option<tempfile::TempDir>,
}

impl SocketDir {
    /// Creates the directory for sockets with these file `names`.
    pub fn create(
        preferred: &Utf8Path,
        names: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<SocketDir> {
        let longest = names
            .into_iter()
            .map(|name| name.as_ref().len())
            .max()
            .unwrap_or(0);
        let fits = |dir: &Utf8Path| dir.as_str().len() + 1 + longest <= MAX_SOCKET_PATH;
        if fits(preferred) {
            std::fs::create_dir_all(preferred)
                .with_context(|| format!("could not create {preferred}"))?;
            return Ok(SocketDir {
                path: preferred.to_owned(),
                _private: None,
            });
        }
        let private = tempfile::Builder::new()
            .prefix("nixos-shell.")
            .tempdir_in("/tmp")
            .context("could not create a directory for the VM's sockets in /tmp")?;
        let path = Utf8PathBuf::from_path_buf(private.path().to_owned())
            .map_err(|p| anyhow::anyhow!("{} is not UTF-8", p.display()))?;
        if !fits(&path) {
            bail!("the socket path {path}/… is longer than {MAX_SOCKET_PATH} bytes; shorten the share tags");
        }
        Ok(SocketDir {
            path,
            _private: Some(private),
        })
    }

    /// Checks that sockets with these file `names` fit here too: a VM
    /// restarted from a new build keeps the directory its first boot chose.
    pub fn check(&self, names: impl IntoIterator<Item = impl AsRef<str>>) -> Result<()> {
        let longest = names
            .into_iter()
            .map(|name| name.as_ref().len())
            .max()
            .unwrap_or(0);
        if self.path.as_str().len() + 1 + longest > MAX_SOCKET_PATH {
            bail!(
                "the socket path {}/… is longer than {MAX_SOCKET_PATH} bytes; shorten the share tags",
                self.path
            );
        }
        Ok(())
    }

    pub fn path(&self) -> &Utf8Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_session_path_gets_its_sockets_in_a_short_private_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let short = root.join("sockets");
        let long_name = "a0123456789abcdef0123456789abcd.sock";
        let sockets = SocketDir::create(&short, ["home.sock", long_name]).unwrap();
        assert_eq!(sockets.path(), short);
        assert!(short.is_dir());
        let long = root.join("x".repeat(80));
        let sockets = SocketDir::create(&long, [long_name]).unwrap();
        let path = sockets.path().to_owned();
        assert!(path.as_str().starts_with("/tmp/nixos-shell."), "{path}");
        assert!(path.join(long_name).as_str().len() <= MAX_SOCKET_PATH);
        assert!(!long.exists());
        drop(sockets);
        assert!(!path.exists(), "the private directory outlived its use");
    }
}
