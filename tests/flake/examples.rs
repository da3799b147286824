//! Every file in `examples/` is a configuration of our flake
//! (`nixosConfigurations.<name>`) whose `system.build.nixos-shell` builds
//! through the stand-in, in both eras, and carries a manifest the CLI reads.

use nixos_shell::schema::manifest::{Manifest, MANIFEST_PATH};

use crate::support::nix::host_system;
use crate::support::our_flake::OurFlake;
use crate::support::vm::Era;
use crate::PATHS;

fn example_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(PATHS.checkout().join("examples"))
        .expect("read examples/")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".nix")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_builds_its_nixos_shell_in_both_eras() {
    let names = example_names();
    assert!(names.len() >= 10, "{names:?}");
    for era in Era::ALL {
        let world = OurFlake::new(PATHS, era, "#!/bin/sh\n# the run script of @name@\n");
        let attribute =
            |name: &str| format!("nixosConfigurations.{name}.config.system.build.nixos-shell");
        // Where each one's run script runs: a darwin host's cannot be built
        // on this machine, only evaluated.
        let systems: std::collections::BTreeMap<String, String> = world.eval_json(
            "nixosConfigurations",
            "builtins.mapAttrs (_: c: c.config.virtualisation.host.pkgs.stdenv.hostPlatform.system)",
        );
        assert_eq!(
            systems.keys().cloned().collect::<Vec<_>>(),
            names,
            "nixosConfigurations are not the examples"
        );
        assert_eq!(systems["darwin"], "aarch64-darwin");
        let buildable: Vec<String> = names
            .iter()
            .filter(|name| systems[*name] == host_system())
            .map(|name| format!("path:{}#{}", world.flake.display(), attribute(name)))
            .collect();
        let mut args = vec!["build", "--no-link", "--json"];
        args.extend(buildable.iter().map(String::as_str));
        let built = world.nix_ok(&args, &world.root);
        let results: Vec<serde_json::Value> =
            serde_json::from_slice(&built.stdout).expect("nix build printed JSON");
        assert_eq!(results.len(), buildable.len());
        for result in results {
            let out = result["outputs"]["out"].as_str().expect("an out path");
            let text = std::fs::read_to_string(std::path::Path::new(out).join(MANIFEST_PATH))
                .unwrap_or_else(|err| panic!("{out} has no manifest: {err}"));
            let manifest: Manifest = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("unreadable manifest in {out}: {err}"));
            // The module shares the guest's memory on a Linux host.
            assert!(
                manifest.memory_backend.is_some(),
                "{} era: {text}",
                era.name()
            );
        }
        let darwin = world.nix_ok(
            &[
                "eval",
                "--raw",
                &format!(
                    "path:{}#{}.drvPath",
                    world.flake.display(),
                    attribute("darwin")
                ),
            ],
            &world.root,
        );
        assert!(String::from_utf8_lossy(&darwin.stdout).ends_with(".drv"));
    }
}
