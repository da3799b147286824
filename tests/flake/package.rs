//! `package.nix`: the crate and its wrapper are two derivations, so that a
//! change of the module rebuilds the wrapper, not the binary every VM's
//! closure carries.

use crate::support::nix::host_system;
use crate::support::our_flake::OurFlake;
use crate::support::vm::Era;
use crate::PATHS;

/// Regression: the binary and its wrapper were one derivation whose inputs
/// held the module tree, so any edit of a `.nix` file of the module rebuilt
/// the crate. The crate (`guest`, the module's guest role) is a derivation
/// of its own, the same after such an edit. (The wrapper's own derivation
/// reads the module with lib.fileset, which the nix of some test machines
/// cannot evaluate: only its name is compared.)
#[test]
fn a_module_change_does_not_rebuild_the_crate() {
    let world = OurFlake::new(PATHS, Era::NineP, "#!/bin/sh\n");
    let package = format!("packages.{}.nixos-shell", host_system());
    let guest = |world: &OurFlake| -> String {
        world.eval_json(&format!("{package}.guest.drvPath"), "x: x")
    };
    let names: (String, String) = (
        world.eval_json(&format!("{package}.name"), "x: x"),
        world.eval_json(&format!("{package}.guest.name"), "x: x"),
    );
    assert_ne!(names.0, names.1, "one derivation for both");
    let before = guest(&world);
    let module = world.flake.join("nixosModules/nixos-shell/guest.nix");
    let mut text = std::fs::read_to_string(&module).expect("read guest.nix");
    text.push_str("# an edit\n");
    std::fs::write(&module, text).expect("edit guest.nix");
    assert_eq!(
        before,
        guest(&world),
        "the crate was rebuilt for a module edit"
    );
}
