//! Every file in `examples/` is a configuration of our flake
//! (`nixosConfigurations.<name>`) whose `system.build.nixos-shell` builds
//! through the stand-in, in both eras, and carries a manifest the CLI reads
//! with the example's own settings.

use nixos_shell::schema::manifest::{CacheMode, Manifest, MANIFEST_PATH};

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

/// What the eval tells of each example: where its run script runs, where
/// its `system.build.nixos-shell` lands, and the forwards its
/// configuration ends with (qemu-vm.nix renders them into the run script,
/// which the stand-in's does not; the manifest has none).
#[derive(serde::Deserialize)]
struct Evaluated {
    system: String,
    out: String,
    forwards: Vec<serde_json::Value>,
}

/// The settings each example makes of its own, in the manifest its build
/// carries and the run script the stand-in writes (`@cores@` and
/// `@memorySize@` are what qemu-vm.nix gives `-smp` and `-m`); the others
/// keep the module's defaults.
fn assert_own_settings(name: &str, manifest: &Manifest, run_script: &str, eval: &Evaluated) {
    let (memory, cores) = match name {
        "vm-resources" => (1024, 2),
        _ => (500, 1),
    };
    assert_eq!(manifest.memory_size, Some(memory), "{name}");
    // The module shares the guest's memory on a Linux host, of that size.
    let backend = manifest.memory_backend.as_ref();
    assert_eq!(backend.map(|b| b.size), Some(memory), "{name}");
    assert!(
        run_script.contains(&format!("memory {memory} cores {cores}\n")),
        "{name}: {run_script}"
    );
    let mounts = &manifest.mounts;
    if name == "vm-mounts" {
        assert!(mounts.mount_home && mounts.mount_nix_profile, "{name}");
        assert_eq!(mounts.cache, CacheMode::Loose, "{name}");
        let extra: Vec<(&str, &str, CacheMode, bool)> = mounts
            .extra_mounts
            .iter()
            .map(|m| {
                (
                    m.guest_path.as_str(),
                    m.target.as_str(),
                    m.cache,
                    m.read_only,
                )
            })
            .collect();
        assert_eq!(extra.len(), 2, "{name}: {extra:?}");
        // `./.` and `./..` of the example, in the store copy of the flake.
        let (examples, checkout) = (extra[0], extra[1]);
        assert_eq!(examples.0, "/mnt/examples", "{extra:?}");
        assert!(examples.1.ends_with("-source/examples"), "{extra:?}");
        assert_eq!(
            (examples.2, examples.3),
            (CacheMode::Loose, false),
            "{extra:?}"
        );
        assert_eq!(checkout.0, "/mnt/nixos-shell", "{extra:?}");
        assert_eq!(format!("{}/examples", checkout.1), examples.1, "{extra:?}");
        assert_eq!(
            (checkout.2, checkout.3),
            (CacheMode::None, true),
            "{extra:?}"
        );
    } else {
        // The module's defaults.
        assert!(mounts.mount_home && mounts.mount_nix_profile, "{name}");
        assert_eq!(mounts.cache, CacheMode::Loose, "{name}");
        assert!(mounts.extra_mounts.is_empty(), "{name}: {mounts:?}");
    }
    let forwards = match name {
        "vm-forward" => vec![serde_json::json!({
            "from": "host", "proto": "tcp",
            "host": { "address": "127.0.0.1", "port": 2222 },
            "guest": { "address": "", "port": 22 },
        })],
        _ => vec![],
    };
    assert_eq!(eval.forwards, forwards, "{name}");
}

#[test]
fn every_example_builds_its_nixos_shell_in_both_eras_with_its_own_settings() {
    let names = example_names();
    assert!(names.len() >= 10, "{names:?}");
    for era in Era::ALL {
        let world = OurFlake::new(
            PATHS,
            era,
            "#!/bin/sh\n# the run script of @name@: memory @memorySize@ cores @cores@\n",
        );
        let attribute =
            |name: &str| format!("nixosConfigurations.{name}.config.system.build.nixos-shell");
        // A darwin host's run script cannot be built on this machine, only
        // evaluated.
        let evaluated: std::collections::BTreeMap<String, Evaluated> = world.eval_json(
            "nixosConfigurations",
            "builtins.mapAttrs (_: c: { \
               system = c.config.virtualisation.host.pkgs.stdenv.hostPlatform.system; \
               out = c.config.system.build.nixos-shell.outPath; \
               forwards = c.config.virtualisation.forwardPorts; })",
        );
        assert_eq!(
            evaluated.keys().cloned().collect::<Vec<_>>(),
            names,
            "nixosConfigurations are not the examples"
        );
        assert_eq!(evaluated["darwin"].system, "aarch64-darwin");
        let buildable: Vec<&String> = names
            .iter()
            .filter(|name| evaluated[*name].system == host_system())
            .collect();
        let installables: Vec<String> = buildable
            .iter()
            .map(|name| format!("path:{}#{}", world.flake.display(), attribute(name)))
            .collect();
        let mut args = vec!["build", "--no-link"];
        args.extend(installables.iter().map(String::as_str));
        world.nix_ok(&args, &world.root);
        for name in buildable {
            let eval = &evaluated[name];
            let out = std::path::Path::new(&eval.out);
            let text = std::fs::read_to_string(out.join(MANIFEST_PATH))
                .unwrap_or_else(|err| panic!("{name} has no manifest: {err}"));
            let manifest: Manifest = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("unreadable manifest of {name}: {err}"));
            let script = out.join(format!("bin/run-{}-vm", manifest.name));
            let run_script = std::fs::read_to_string(&script)
                .unwrap_or_else(|err| panic!("{name}: {}: {err}", script.display()));
            assert_own_settings(name, &manifest, &run_script, eval);
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
