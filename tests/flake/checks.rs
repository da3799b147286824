//! The flake's `checks` are the files of `checks/`, discovered: adding a
//! check is adding a file. Evaluated (names only) through the stand-in; the
//! checks themselves need a real nixpkgs (`nix flake check`).

use std::path::Path;

use crate::support::nix::host_system;
use crate::support::our_flake::OurFlake;
use crate::support::vm::Era;
use crate::PATHS;

/// The names of the `.nix` files in `dir`, without the suffix.
fn nix_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| Some(entry.file_name().to_str()?.strip_suffix(".nix")?.to_owned()))
        .collect()
}

/// The checks' names on `system`, as the flake evaluates them.
fn check_names(world: &OurFlake, system: &str) -> Vec<String> {
    world.eval_json(&format!("checks.{system}"), "builtins.attrNames")
}

#[test]
fn every_check_file_is_a_check_and_the_linux_ones_only_on_linux() {
    let checks = PATHS.checkout().join("checks");
    let world = OurFlake::new(PATHS, Era::NineP, "#!/bin/sh\n");
    let everywhere = nix_files(&checks.join("every-platform"));
    assert!(everywhere.contains(&"package".to_owned()), "{everywhere:?}");
    let mut on_linux: Vec<String> = everywhere
        .iter()
        .cloned()
        .chain(nix_files(&checks.join("linux")))
        .chain(
            nix_files(&PATHS.checkout().join("examples"))
                .into_iter()
                .map(|name| format!("example-{name}")),
        )
        .collect();
    on_linux.sort();
    assert!(on_linux.contains(&"vm".to_owned()), "{on_linux:?}");
    assert_eq!(check_names(&world, &host_system()), on_linux);
    let mut on_darwin = everywhere;
    on_darwin.sort();
    assert_eq!(check_names(&world, "aarch64-darwin"), on_darwin);
}

/// Regression: `nix flake check` on x86_64-linux tried to build the darwin
/// example's aarch64-linux system (it pins its guest's platform), which
/// needs a builder of that platform. Every check on this host builds here;
/// the darwin example's guest is still evaluated (its check names its .drv).
#[test]
fn every_check_builds_on_this_host_and_the_darwin_example_is_evaluated() {
    let world = OurFlake::new(PATHS, Era::NineP, "#!/bin/sh\n");
    let system = host_system();
    // The examples' checks only: the others need a real nixpkgs.
    let systems: std::collections::BTreeMap<String, String> = world.eval_json(
        &format!("checks.{system}"),
        r#"cs: builtins.listToAttrs (map (name: { inherit name; value = cs.${name}.system; })
             (builtins.filter (n: builtins.substring 0 8 n == "example-") (builtins.attrNames cs)))"#,
    );
    assert!(systems.contains_key("example-darwin"), "{systems:?}");
    let elsewhere: Vec<_> = systems.iter().filter(|(_, s)| **s != system).collect();
    assert!(
        elsewhere.is_empty(),
        "checks for another platform: {elsewhere:?}"
    );
    let darwin = world.nix_ok(
        &[
            "build",
            "--no-link",
            "--json",
            &format!(
                "path:{}#checks.{system}.example-darwin",
                world.flake.display()
            ),
        ],
        &world.root,
    );
    let built: serde_json::Value =
        serde_json::from_slice(&darwin.stdout).expect("nix build printed JSON");
    let out = built[0]["outputs"]["out"].as_str().expect("an out path");
    let text = std::fs::read_to_string(out).expect("the check's output");
    assert!(
        text.starts_with("aarch64-linux: ") && text.trim_end().ends_with(".drv"),
        "{text}"
    );
}
