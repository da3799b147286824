//! Flakes in the shapes users wrote for the original nixos-shell
//! (`tests/fixtures/users/`), run with the CLI against the stand-in
//! nixpkgs: a plain `nixosSystem` that never imports the module,
//! `--flake .`, a `nixosModules` output, and a configuration that reads
//! the environment.

use std::path::{Path, PathBuf};
use std::process::Command;

use nixos_shell::schema::manifest::{Manifest, MANIFEST_PATH};

use crate::support::our_flake::OurFlake;
use crate::support::vm::Era;
use crate::PATHS;

fn fixture(name: &str) -> PathBuf {
    PATHS.checkout().join("tests/fixtures/users").join(name)
}

/// The world, with a run script that only names the VM.
fn world() -> OurFlake {
    OurFlake::new(PATHS, Era::NineP, "#!/bin/sh\n# run script of @name@\n")
}

/// `nixos-shell ARGS --build-only` in `project`, as the package runs it:
/// knowing where its module is (the fallback lookup adds it).
fn build_only(world: &OurFlake, project: &Path, args: &[&str]) -> std::process::Output {
    let mut cli: Command = world.cli(args, project);
    cli.arg("--build-only").env(
        "NIXOS_SHELL_MODULE",
        world.flake.join("nixosModules/nixos-shell"),
    );
    cli.output().expect("run nixos-shell")
}

/// The manifest beside the run script a `--build-only` printed.
fn printed_manifest(out: &std::process::Output) -> Manifest {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let result = script
        .parent()
        .and_then(Path::parent)
        .expect("bin/run-*-vm");
    let text = std::fs::read_to_string(result.join(MANIFEST_PATH)).expect("a manifest");
    serde_json::from_str(&text).expect("a manifest the CLI reads")
}

/// Regression: a configuration that sets nixos-shell's options without
/// importing the module failed with "The option `nixos-shell...' does not
/// exist" instead of being extended with it, and `--flake .` was taken as
/// a module file.
#[test]
fn a_plain_nixos_system_setting_our_options_gets_the_module_with_flake_dot() {
    let world = world();
    let project = world.user_flake(&fixture("plain-nixos-system"), "plain");
    let manifest = printed_manifest(&build_only(&world, &project, &["--flake", "."]));
    assert_eq!(manifest.name, "plain");
    assert!(!manifest.mounts.mount_home);
    assert_eq!(manifest.mounts.extra_mounts[0].target, "/srv/data-on-host");
}

#[test]
fn a_nixos_module_output_is_a_vm_made_with_the_flakes_nixpkgs() {
    let world = world();
    let project = world.user_flake(&fixture("module-output"), "module-output");
    let manifest = printed_manifest(&build_only(&world, &project, &["--flake", ".#dev-vm"]));
    assert_eq!(manifest.name, "dev-vm");
    assert!(!manifest.mounts.mount_nix_profile);
}

/// The original evaluated impurely, always; a flake is pure here, so a
/// configuration that reads the environment says why its mount is empty,
/// and runs as before with --impure.
#[test]
fn a_configuration_reading_the_environment_needs_impure_and_says_so() {
    let world = world();
    let project = world.user_flake(&fixture("getenv"), "getenv");
    let terminfo = world.root.join("home/.terminfo");
    std::fs::create_dir_all(&terminfo).unwrap();
    let run = |args: &[&str]| {
        let mut cli = world.cli(args, &project);
        cli.arg("--build-only")
            .env("NIXOS_SHELL_TEST_TERMINFO", &terminfo);
        cli.output().expect("run nixos-shell")
    };
    let pure = run(&[]);
    let stderr = String::from_utf8_lossy(&pure.stderr);
    assert!(!pure.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            r#"nixos-shell.mounts.extraMounts."/terminfo": the host directory (target) is empty; a pure evaluation reads no environment"#
        ) && stderr.contains("--impure"),
        "{stderr}"
    );
    let manifest = printed_manifest(&run(&["--impure"]));
    assert_eq!(
        manifest.mounts.extra_mounts[0].target.as_std_path(),
        terminfo
    );
}
