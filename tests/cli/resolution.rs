//! Resolution rules (README "What nixos-shell builds"): which configuration
//! is built for each CONFIG, by how many nix processes.

use super::{assert_one_line_error, assert_only_error};
use crate::support::nix::host_system;
use crate::support::nix_fixture::NixFixture;
use crate::PATHS;

const MKVM: &str = r#"{
      nixosConfigurations.vm = mkVm { modules = [ { system.name = "flakevm"; } ]; };
      nixosConfigurations.second = mkVm { modules = [ { system.name = "second"; } ]; };
    }"#;

/// The name of the run script the last run started, from the nix store.
fn built(fx: &NixFixture) -> String {
    let script = fx.record().script;
    let name = script.rsplit('/').next().unwrap().to_owned();
    assert!(script.starts_with("/nix/store/"), "{script}");
    name
}

/// Runs the CLI with `args`, which must succeed; [`built`] of that run.
fn built_by(fx: &NixFixture, args: &[&str]) -> String {
    let out = fx.run(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    built(fx)
}

#[test]
fn vm_nix_alone_is_one_legacy_build() {
    let fx = NixFixture::new(PATHS);
    fx.write("vm.nix", r#"{ system.name = "legacy"; }"#);
    let out = fx.run(&[]);
    assert!(out.status.success());
    assert_eq!(built(&fx), "run-legacy-vm");
    let argv = fx.nix_argv();
    assert_eq!(argv.len(), 1, "{argv:?}");
    assert!(argv[0]
        .starts_with("build --extra-experimental-features nix-command flakes --json --out-link "));
    assert!(argv[0].contains("--impure --argstr configuration "));
}

/// `nix flake init -t` writes both files: the flake's vm runs, in one pure
/// nix process, and one line says which of the two ran.
#[test]
fn a_flake_beside_vm_nix_wins_and_says_so() {
    let fx = NixFixture::new(PATHS);
    fx.write("vm.nix", r#"{ system.name = "legacy"; }"#);
    fx.flake(MKVM);
    let out = fx.run(&[]);
    assert!(out.status.success());
    assert_eq!(built(&fx), "run-flakevm-vm");
    assert_eq!(fx.nix_argv().len(), 1, "{:?}", fx.nix_argv());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let work = fx.work().display().to_string();
    // nixos-shell's own lines only: nix says "building ..." or not,
    // depending on what the store already holds.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("nixos-shell:"))
        .collect();
    assert_eq!(
        ours.join("\n"),
        format!(
            "nixos-shell: {work}/flake.nix and {work}/vm.nix both exist: running the flake's vm \
             (`nixos-shell {work}/vm.nix` runs the module file)"
        )
    );
}

/// A project's own flake without a `vm` does not hide the vm.nix beside it.
#[test]
fn a_flake_without_vm_leaves_vm_nix_to_run() {
    let fx = NixFixture::new(PATHS);
    fx.write("vm.nix", r#"{ system.name = "legacy"; }"#);
    fx.flake(r#"{ nixosConfigurations.other = mkVm { modules = [ ]; }; }"#);
    let out = fx.run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(built(&fx), "run-legacy-vm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim_end().ends_with(&format!(
            "nixos-shell: {work}/flake.nix provides no vm; running {work}/vm.nix",
            work = fx.work().display()
        )),
        "{stderr}"
    );
}

#[test]
fn without_vm_nix_the_flakes_vm_builds_by_attribute_in_one_pure_process() {
    let fx = NixFixture::new(PATHS);
    fx.flake(MKVM);
    let out = fx.run(&[]);
    assert!(out.status.success());
    assert_eq!(built(&fx), "run-flakevm-vm");
    let argv = fx.nix_argv();
    assert_eq!(argv.len(), 1, "{argv:?}");
    assert!(
        !argv[0].contains("--impure") && !argv[0].contains("--expr"),
        "{}",
        argv[0]
    );
    assert!(argv[0].ends_with(&format!(
        "{}#nixosConfigurations.vm.config.system.build.nixos-shell ",
        fx.work().display()
    )));
}

#[test]
fn a_file_argument_an_attribute_and_flake_option() {
    let fx = NixFixture::new(PATHS);
    fx.flake(MKVM);
    fx.write(
        "other.nix",
        r#"{ config, ... }: { system.name = "other"; }"#,
    );
    assert_eq!(built_by(&fx, &["other.nix"]), "run-other-vm");
    assert_eq!(built_by(&fx, &[".#second"]), "run-second-vm");
    assert_eq!(built_by(&fx, &["--flake", ".#vm"]), "run-flakevm-vm");
    let path_ref = format!("path:{}#second", fx.work().display());
    assert_eq!(built_by(&fx, &[&path_ref]), "run-second-vm");
    assert_eq!(fx.nix_calls().0, 4);
}

#[test]
fn a_flake_in_a_subdirectory() {
    let fx = NixFixture::new(PATHS);
    fx.flake_in("sub", MKVM);
    assert_eq!(built_by(&fx, &["./sub#second"]), "run-second-vm");
}

#[test]
fn a_configuration_without_the_module_is_extended_with_extend_modules() {
    let fx = NixFixture::new(PATHS);
    fx.flake(r#"{ nixosConfigurations.vm = nixos { inherit system; modules = [ { system.name = "extended"; } ]; }; }"#);
    let out = fx.run(&[]);
    assert!(out.status.success());
    assert_eq!(built(&fx), "run-extended-vm");
    let argv = fx.nix_argv();
    assert_eq!(argv.len(), 2, "{argv:?}");
    assert!(argv[1].contains("--impure") && argv[1].contains("--argstr flakeRef"));
    // The first attempt's "does not provide attribute" is not shown.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("does not provide"));
}

#[test]
fn a_configuration_with_only_override_is_overridden() {
    let fx = NixFixture::new(PATHS);
    fx.flake(
        r#"let
          overridable = args: builtins.removeAttrs (nixos args) [ "extendModules" ]
            // { override = f: overridable (args // f args); };
        in { nixosConfigurations.vm = overridable { inherit system; modules = [ { system.name = "overridden"; } ]; }; }"#,
    );
    assert_eq!(built_by(&fx, &[]), "run-overridden-vm");
    assert_eq!(fx.nix_calls().0, 2);
}

#[test]
fn a_configuration_that_cannot_be_extended_names_mkvm_and_make_overridable() {
    let fx = NixFixture::new(PATHS);
    fx.flake(r#"{ nixosConfigurations.vm = { config = (nixos { inherit system; }).config; }; }"#);
    let out = fx.run(&[]);
    assert_only_error(&out, "nixosConfigurations.vm of ");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lib.mkVm") && err.contains("lib.makeOverridable"),
        "{err}"
    );
    assert!(fx.leftovers().is_empty());
}

#[test]
fn a_nixos_module_is_evaluated_with_nixpkgs() {
    let fx = NixFixture::new(PATHS);
    fx.flake(r#"{ nixosModules.vm = { system.name = "frommodule"; }; }"#);
    assert_eq!(built_by(&fx, &[]), "run-frommodule-vm");
    assert_eq!(fx.nix_calls().0, 2);
}

#[test]
fn packages_system_nixos_configurations() {
    let fx = NixFixture::new(PATHS);
    fx.flake(
        r#"{ packages.${system}.nixosConfigurations.vm = nixos { inherit system; modules = [ { system.name = "packaged"; } ]; }; }"#,
    );
    assert_eq!(built_by(&fx, &[]), "run-packaged-vm");
}

#[test]
fn a_missing_attribute_lists_what_was_tried() {
    let fx = NixFixture::new(PATHS);
    fx.flake(MKVM);
    let out = fx.run(&[".#nope"]);
    assert_only_error(
        &out,
        &format!(
            "provides none of nixosConfigurations.nope, nixosModules.nope, packages.{}.nixosConfigurations.nope",
            host_system()
        ),
    );
    assert_eq!(fx.nix_calls().0, 2);
    assert!(fx.leftovers().is_empty());
}

#[test]
fn without_the_module_path_a_missing_attribute_says_what_to_set() {
    let fx = NixFixture::new(PATHS);
    fx.flake(r#"{ nixosConfigurations.vm = nixos { inherit system; }; }"#);
    let mut cli = fx.cli(&[]);
    cli.env_remove("NIXOS_SHELL_MODULE");
    let out = fx.run_with(cli);
    assert_one_line_error(&out, "set NIXOS_SHELL_MODULE");
}

#[test]
fn legacy_mode_without_nixpkgs_says_what_to_set() {
    let fx = NixFixture::new(PATHS);
    fx.write("vm.nix", "{ }");
    let mut cli = fx.cli(&[]);
    cli.env_remove("NIX_PATH");
    let out = fx.run_with(cli);
    assert_only_error(&out, "set NIX_PATH=nixpkgs=/path/to/nixpkgs");
    assert_eq!(fx.nix_calls().0, 0);
    // -I (and any pass-through flag) reaches nix.
    let include = format!("nixpkgs={}", fx.work().join("fixture/nixpkgs").display());
    let mut cli = fx.cli(&["-I", &include, "--option", "cores", "1", "-L"]);
    cli.env_remove("NIX_PATH");
    assert!(fx.run_with(cli).status.success());
    let argv = fx.nix_argv();
    assert!(
        argv[0].contains(&format!(
            "-I {include} --option cores 1 --print-build-logs --impure"
        )),
        "{argv:?}"
    );
    // The baked-in (here: environment) nixpkgs is the fallback.
    let mut cli = fx.cli(&[]);
    cli.env_remove("NIX_PATH")
        .env("NIXOS_SHELL_NIXPKGS", fx.work().join("fixture/nixpkgs"));
    assert!(fx.run_with(cli).status.success());
}
