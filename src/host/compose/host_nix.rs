//! Whether a run relays the guest's nix to the host's nix-daemon
//! (`schema::host_nix`), and what the guest says when it does not; pure.

use camino::{Utf8Path, Utf8PathBuf};

use crate::schema::manifest::Manifest;

/// What the guest's nix gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostNix {
    /// The host's daemon, this one, started per connection.
    Relay(Utf8PathBuf),
    /// Its own store; the line the guest says once, when the user did not
    /// choose it.
    Own(Option<&'static str>),
}

/// Said when the guest's store is an image of its own.
pub const NOT_THE_HOST_STORE: &str =
    "the guest's store is not the host's (a store image); nix in the guest uses its own store";

/// Said when the host has no nix-daemon.
pub const NO_DAEMON: &str =
    "the host has no nix-daemon on its PATH; nix in the guest uses its own store";

/// The choice for a VM of `manifest`, `--no-host-nix` given or not,
/// `nix_daemon` the host's (if any).
pub fn decide(manifest: &Manifest, no_host_nix: bool, nix_daemon: Option<&Utf8Path>) -> HostNix {
    if !manifest.host_nix || no_host_nix {
        return HostNix::Own(None);
    }
    // Unknown (an older module) counts as not: no relay where its builds
    // might not show.
    if manifest.host_store != Some(true) {
        return HostNix::Own(Some(NOT_THE_HOST_STORE));
    }
    match nix_daemon {
        Some(daemon) => HostNix::Relay(daemon.to_owned()),
        None => HostNix::Own(Some(NO_DAEMON)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::test_data;

    #[test]
    fn the_host_daemon_serves_a_shared_store_unless_refused() {
        let mut manifest = test_data::manifest();
        manifest.host_nix = true;
        manifest.host_store = Some(true);
        let daemon = Some(Utf8Path::new("/bin/nix-daemon"));
        assert_eq!(
            decide(&manifest, false, daemon),
            HostNix::Relay("/bin/nix-daemon".into())
        );
        assert_eq!(decide(&manifest, true, daemon), HostNix::Own(None));
        assert_eq!(
            decide(&manifest, false, None),
            HostNix::Own(Some(NO_DAEMON))
        );
        manifest.host_store = Some(false);
        assert_eq!(
            decide(&manifest, false, daemon),
            HostNix::Own(Some(NOT_THE_HOST_STORE))
        );
        manifest.host_nix = false;
        manifest.host_store = Some(true);
        assert_eq!(decide(&manifest, false, daemon), HostNix::Own(None));
    }
}
