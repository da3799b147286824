//! Nix in the guest builds into the host's store (README "Nix in the
//! guest"): a `--command` gets `NIX_REMOTE` naming the guest role's relay,
//! whose socket the relay serves once it has the CLI's host-nix port;
//! `--no-host-nix` leaves both out. The relay's bytes, from a real nix
//! client to the host's `nix-daemon --stdio`, are tested on the host
//! (`host::execute::host_nix`): the test initramfs has no nix client.

use crate::support::vm::{Era, BOOT_TIMEOUT};
use crate::support::vm_fixture::Fixture;
use crate::PATHS;

/// Waits (at most 10 s, in the guest) for the relay's socket, then says
/// what the command sees.
const PROBE: &str = "i=0; while [ ! -S /run/nixos-shell/host-nix.sock ] && [ $i -lt 100 ]; do \
sleep 0.1; i=$((i+1)); done; \
if [ -S /run/nixos-shell/host-nix.sock ]; then s=yes; else s=no; fi; \
echo \"remote=[${NIX_REMOTE:-}] socket=$s\"";

#[test]
fn a_command_names_the_relayed_host_nix_and_no_host_nix_leaves_it_out() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = fx.start(&["-c", PROBE]);
    vm.expect(
        "remote=[unix:///run/nixos-shell/host-nix.sock] socket=yes",
        BOOT_TIMEOUT,
    );
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));

    let mut vm = fx.start(&["--no-host-nix", "-c", PROBE]);
    vm.expect("remote=[] socket=no", BOOT_TIMEOUT);
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));
}
