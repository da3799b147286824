//! Which `nix build` commands realise an [`Installable`], as values.
//!
//! - A flake: first its attribute
//!   `<flake>#nixosConfigurations.<name>.config.system.build.nixos-shell`
//!   (pure, eval-cached: a `lib.mkVm` configuration builds in one nix
//!   process); only when nix says that attribute is missing, the full lookup
//!   of `flake-fallback.nix` (impure, `builtins.getFlake`). With
//!   `--guest-system`/`--host-system` the fixed attribute cannot honour them,
//!   so the full lookup is the only build.
//! - A module file: one impure build of `legacy.nix`.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::nix::NixBuild;
use super::resolve::Installable;
use super::settings::Settings;

/// The legacy-mode expression: a module file with <nixpkgs/nixos>.
pub const LEGACY_NIX: &str = include_str!("legacy.nix");
/// The full flake lookup.
pub const FLAKE_FALLBACK_NIX: &str = include_str!("flake-fallback.nix");

/// The nixos-shell NixOS module and a nixpkgs, as this binary knows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Locations {
    /// `NIXOS_SHELL_MODULE` (run time, else build time).
    pub module: Option<Utf8PathBuf>,
    /// `NIXOS_SHELL_NIXPKGS` (run time, else build time).
    pub nixpkgs: Option<Utf8PathBuf>,
    /// Whether `NIX_PATH` may provide `<nixpkgs>` (`-I` is seen by [`plan`]).
    pub search_path: bool,
}

impl Locations {
    /// From the environment and the values baked in at build time.
    pub fn from_env(env: &BTreeMap<String, String>) -> Locations {
        let pick = |name: &str, baked: Option<&str>| {
            env.get(name)
                .map(String::as_str)
                .or(baked)
                .filter(|v| !v.is_empty())
                .map(Utf8PathBuf::from)
        };
        Locations {
            module: pick("NIXOS_SHELL_MODULE", option_env!("NIXOS_SHELL_MODULE")),
            nixpkgs: pick("NIXOS_SHELL_NIXPKGS", option_env!("NIXOS_SHELL_NIXPKGS")),
            search_path: env.get("NIX_PATH").is_some_and(|p| !p.is_empty()),
        }
    }

    fn module(&self) -> Result<&Utf8Path> {
        match &self.module {
            Some(module) => Ok(module),
            None => bail!(
                "this nixos-shell does not know where its NixOS module is; set NIXOS_SHELL_MODULE \
                 to the nixosModules/nixos-shell directory of nixos-shell (the Nix package sets it)"
            ),
        }
    }
}

/// The builds to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub first: NixBuild,
    /// Run when `first` reports its attribute missing.
    pub fallback: Option<NixBuild>,
}

/// Plans the builds; pure.
pub fn plan(
    installable: &Installable,
    settings: &Settings,
    locations: &Locations,
    out_link: &Utf8Path,
) -> Result<Plan> {
    let systems = |mut build: NixBuild| {
        if let Some(system) = &settings.guest_system {
            build = build.argstr("guestSystem", system);
        }
        if let Some(system) = &settings.host_system {
            build = build.argstr("hostSystem", system);
        }
        build
    };
    let nixpkgs = locations
        .nixpkgs
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    match installable {
        Installable::File { path } => {
            let module = locations.module()?;
            let search_path = locations.search_path || settings.nix_flags.iter().any(|f| f == "-I");
            if !search_path && locations.nixpkgs.is_none() {
                bail!(
                    "no nixpkgs to evaluate {path} with: NIX_PATH has no <nixpkgs> and this nixos-shell \
                     has none built in; set NIX_PATH=nixpkgs=/path/to/nixpkgs, pass -I nixpkgs=..., \
                     or set NIXOS_SHELL_NIXPKGS"
                );
            }
            let build = NixBuild::expr(LEGACY_NIX, out_link)
                .flags(&settings.nix_flags)
                .impure()
                .argstr("configuration", path.as_str())
                .argstr("module", module.as_str())
                .argstr("nixpkgs", nixpkgs);
            Ok(Plan {
                first: systems(build),
                fallback: None,
            })
        }
        Installable::Flake { reference, name } => {
            let fallback = locations.module().map(|module| {
                systems(
                    NixBuild::expr(FLAKE_FALLBACK_NIX, out_link)
                        .flags(&settings.nix_flags)
                        .impure()
                        .argstr("flakeRef", reference.as_str())
                        .argstr("name", name.as_str())
                        .argstr("module", module.as_str())
                        .argstr("nixpkgs", nixpkgs),
                )
            });
            if settings.guest_system.is_some() || settings.host_system.is_some() {
                return Ok(Plan {
                    first: fallback?,
                    fallback: None,
                });
            }
            let attribute = installable
                .attribute_installable()
                .unwrap_or_else(|| reference.clone());
            Ok(Plan {
                first: NixBuild::installable(attribute, out_link).flags(&settings.nix_flags),
                fallback: fallback.ok(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::HostArgs;
    use clap::Parser;

    fn settings(args: &[&str]) -> Settings {
        let args =
            HostArgs::try_parse_from(std::iter::once("nixos-shell").chain(args.iter().copied()))
                .unwrap();
        Settings::from_args(args, "/".into()).unwrap()
    }

    fn located() -> Locations {
        Locations {
            module: Some("/m".into()),
            nixpkgs: Some("/np".into()),
            search_path: false,
        }
    }

    fn tail(build: &NixBuild) -> Vec<String> {
        build.argv()[7..].to_vec()
    }

    #[test]
    fn a_flake_builds_its_attribute_then_the_full_lookup() {
        let flake = Installable::Flake {
            reference: "/p".to_owned(),
            name: "vm".to_owned(),
        };
        let plan = plan(&flake, &settings(&["-L"]), &located(), "/t/result".into()).unwrap();
        assert_eq!(
            tail(&plan.first),
            [
                "--print-build-logs",
                "/p#nixosConfigurations.vm.config.system.build.nixos-shell"
            ]
        );
        let fallback = plan.fallback.unwrap();
        assert_eq!(
            tail(&fallback),
            [
                "--print-build-logs",
                "--impure",
                "--argstr",
                "flakeRef",
                "/p",
                "--argstr",
                "name",
                "vm",
                "--argstr",
                "module",
                "/m",
                "--argstr",
                "nixpkgs",
                "/np",
                "--expr",
                FLAKE_FALLBACK_NIX
            ]
        );
    }

    #[test]
    fn guest_system_goes_straight_to_the_full_lookup() {
        let flake = Installable::Flake {
            reference: "/p".to_owned(),
            name: "vm".to_owned(),
        };
        let plan = plan(
            &flake,
            &settings(&["--guest-system", "aarch64-linux"]),
            &located(),
            "/t/r".into(),
        )
        .unwrap();
        assert!(plan.fallback.is_none());
        let argv = plan.first.argv();
        assert!(argv
            .windows(3)
            .any(|w| w == ["--argstr", "guestSystem", "aarch64-linux"]));
    }

    #[test]
    fn a_file_is_one_legacy_build() {
        let file = Installable::File {
            path: "/p/vm.nix".into(),
        };
        let plan = plan(
            &file,
            &settings(&["--host-system", "x86_64-darwin"]),
            &located(),
            "/t/r".into(),
        )
        .unwrap();
        assert!(plan.fallback.is_none());
        assert_eq!(
            tail(&plan.first),
            [
                "--impure",
                "--argstr",
                "configuration",
                "/p/vm.nix",
                "--argstr",
                "module",
                "/m",
                "--argstr",
                "nixpkgs",
                "/np",
                "--argstr",
                "hostSystem",
                "x86_64-darwin",
                "--expr",
                LEGACY_NIX
            ]
        );
    }

    #[test]
    fn missing_locations_are_explained() {
        let file = Installable::File {
            path: "/p/vm.nix".into(),
        };
        let none = Locations::default();
        let err = format!(
            "{:#}",
            plan(&file, &settings(&[]), &none, "/t".into()).unwrap_err()
        );
        assert!(err.contains("set NIXOS_SHELL_MODULE"), "{err}");
        let no_nixpkgs = Locations {
            module: Some("/m".into()),
            ..Locations::default()
        };
        let err = format!(
            "{:#}",
            plan(&file, &settings(&[]), &no_nixpkgs, "/t".into()).unwrap_err()
        );
        assert!(
            err.starts_with("no nixpkgs to evaluate /p/vm.nix with"),
            "{err}"
        );
        assert!(plan(
            &file,
            &settings(&["-I", "nixpkgs=/x"]),
            &no_nixpkgs,
            "/t".into()
        )
        .is_ok());
    }

    #[test]
    fn locations_prefer_the_environment() {
        let env: BTreeMap<String, String> = [
            ("NIXOS_SHELL_MODULE".to_owned(), "/run/m".to_owned()),
            ("NIX_PATH".to_owned(), "nixpkgs=/x".to_owned()),
        ]
        .into();
        let locations = Locations::from_env(&env);
        assert_eq!(locations.module.as_deref(), Some(Utf8Path::new("/run/m")));
        assert!(locations.search_path);
    }
}
