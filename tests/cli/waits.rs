//! nixos-shell waits for the processes it starts without sleeping on a
//! timer: a child's end wakes it at once (the figures that depend on it
//! are the benchmark's; this is whether it sleeps at all).

use crate::support::nix_fixture::NixFixture;
use crate::support::strace::Sleeps;
use crate::PATHS;

#[test]
fn a_build_is_waited_for_without_sleeping() {
    let fx = NixFixture::new(PATHS);
    fx.flake(r#"{ nixosConfigurations.vm = mkVm { modules = [ ]; }; }"#);
    // Built once first: nix itself may wait on a store it builds in.
    assert!(fx.run(&["--build-only"]).status.success());
    let (traced, sleeps) = Sleeps::trace(&fx.cli(&["--build-only"]));
    let out = fx.run_with(traced);
    assert!(out.status.success(), "{out:?}");
    assert!(
        sleeps.programs().iter().any(|p| p.ends_with("/nix")),
        "the trace saw no nix start: {:?}",
        sleeps.programs()
    );
    assert_eq!(sleeps.own(), Vec::<String>::new());
}
