//! Which `nix build` commands realise an [`Installable`], as values.
//!
//! - A flake: first its attribute
//!   `<flake>#nixosConfigurations.<name>.config.system.build.nixos-shell`
//!   (pure, eval-cached: a `lib.mkVm` configuration builds in one nix
//!   process); only when nix says that attribute is missing, the full lookup
//!   of `flake-fallback.nix` (impure, `builtins.getFlake`). With
//!   `--guest-system`/`--host-system` the fixed attribute cannot honour them,
//!   so the full lookup is the only build. When `./vm.nix` stands beside
//!   the `./flake.nix` nixos-shell found by itself, it is built last, if
//!   the flake provides no such configuration.
//! - A module file: one impure build of `legacy.nix`.
//!
//! [`realise`] runs them in order.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::nix::{NixBuild, Outcome};
use super::resolve::Installable;
use super::result::BuildResult;
use super::settings::Settings;
use crate::cli::NixFlags;

/// The legacy-mode expression: a module file with <nixpkgs/nixos>.
pub const LEGACY_NIX: &str = include_str!("legacy.nix");
/// The full flake lookup.
pub const FLAKE_FALLBACK_NIX: &str = include_str!("flake-fallback.nix");

/// The nixos-shell NixOS module and a nixpkgs, as this binary knows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Locations {
    /// `NIXOS_SHELL_MODULE` (the package's wrapper sets it).
    pub module: Option<Utf8PathBuf>,
    /// `NIXOS_SHELL_NIXPKGS` (the package's wrapper sets it).
    pub nixpkgs: Option<Utf8PathBuf>,
    /// Whether `NIX_PATH` may provide `<nixpkgs>` (`-I` is seen by [`plan`]).
    pub search_path: bool,
}

impl Locations {
    /// From the environment. Nothing is compiled in: the same binary runs
    /// in the guest, where a store path in it would pull that path into
    /// every VM's closure.
    pub fn from_env(env: &BTreeMap<String, String>) -> Locations {
        let pick = |name: &str| {
            env.get(name)
                .filter(|v| !v.is_empty())
                .map(Utf8PathBuf::from)
        };
        Locations {
            module: pick("NIXOS_SHELL_MODULE"),
            nixpkgs: pick("NIXOS_SHELL_NIXPKGS"),
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

/// One build to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub build: NixBuild,
    /// The configuration it builds, for per-configuration state (the disk
    /// image): see `Installable::identity`.
    pub identity: String,
    /// Said when this step's result is the one used: which of two
    /// configurations in the directory runs.
    pub note: Option<String>,
    /// Said when this step, the last, finds no configuration and its nix
    /// process did not say why in our words.
    pub if_missing: String,
}

/// What to do to get a build result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The builds to try, in order: each runs only when the ones before it
    /// report their attribute missing.
    Build(Vec<Step>),
    /// A build result given as CONFIG: nothing to build or evaluate.
    Ready {
        result: Utf8PathBuf,
        identity: String,
    },
}

impl Plan {
    /// The builds to try; none for a build result.
    pub fn steps(&self) -> &[Step] {
        match self {
            Plan::Build(steps) => steps,
            Plan::Ready { .. } => &[],
        }
    }
}

/// How the plan ended. Made once per run and taken apart at once, so the
/// size of `Built` (the whole manifest) costs nothing worth a box.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Realised {
    /// The build result, read, and the identity of the configuration it is.
    Built {
        build: BuildResult,
        identity: String,
    },
    /// nix failed and said why; its exit status.
    Failed(u8),
    /// A signal stopped the build; its number.
    Signalled(i32),
}

/// Runs the plan's steps until one builds, and reads what it built; the
/// first nix failure ends it.
pub fn realise(plan: &Plan) -> Result<Realised> {
    if let Plan::Ready { result, identity } = plan {
        return Ok(Realised::Built {
            build: BuildResult::read(result)?,
            identity: identity.clone(),
        });
    }
    let mut missing = None;
    for step in plan.steps() {
        match step.build.run()? {
            Outcome::Built(result) => {
                if let Some(note) = &step.note {
                    eprintln!("nixos-shell: {note}");
                }
                return Ok(Realised::Built {
                    build: BuildResult::read(&result)?,
                    identity: step.identity.clone(),
                });
            }
            Outcome::MissingAttribute(message) => {
                missing = Some(message.unwrap_or_else(|| step.if_missing.clone()))
            }
            Outcome::Failed(code) => return Ok(Realised::Failed(code)),
            Outcome::Signalled(signal) => return Ok(Realised::Signalled(signal)),
        }
    }
    match missing {
        Some(message) => bail!("{message}"),
        None => bail!("nothing to build; report this"),
    }
}

/// Plans the builds; pure. `cwd` is where nixos-shell runs (a local flake
/// may be handed to nix relative to it).
pub fn plan(
    installable: &Installable,
    settings: &Settings,
    locations: &Locations,
    out_link: Option<&Utf8Path>,
    cwd: &Utf8Path,
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
    let legacy = |path: &Utf8Path| -> Result<NixBuild> {
        let module = locations.module()?;
        let search_path = locations.search_path || !settings.nix.include.is_empty();
        if !search_path && locations.nixpkgs.is_none() {
            bail!(
                "no nixpkgs to evaluate {path} with: NIX_PATH has no <nixpkgs> and this nixos-shell \
                 has none built in; set NIX_PATH=nixpkgs=/path/to/nixpkgs, pass -I nixpkgs=..., \
                 or set NIXOS_SHELL_NIXPKGS"
            );
        }
        let build = NixBuild::expr(LEGACY_NIX, out_link)
            .flags(&settings.nix)
            .impure()
            .argstr("configuration", path.as_str())
            .argstr("module", module.as_str())
            .argstr("nixpkgs", nixpkgs.as_str());
        Ok(systems(build))
    };
    match installable {
        Installable::Built { path } => {
            if settings.nix != NixFlags::default() || settings.out_link.is_some() {
                bail!(
                    "{path} is a build result and needs no nix: drop the flags for nix and --out-link"
                );
            }
            Ok(Plan::Ready {
                result: path.clone(),
                identity: installable.identity(),
            })
        }
        Installable::File { path } => Ok(Plan::Build(vec![Step {
            build: legacy(path)?,
            identity: installable.identity(),
            note: None,
            if_missing: format!("{path} builds no system.build.nixos-shell; report this"),
        }])),
        Installable::Flake {
            flake,
            name,
            or_file,
        } => {
            let identity = installable.identity();
            let note = or_file.as_ref().map(|file| {
                format!(
                    "{}/flake.nix and {file} both exist: running the flake's {name} \
                     (`nixos-shell {file}` runs the module file)",
                    flake.display()
                )
            });
            let system = settings.guest_system.as_deref().unwrap_or("<system>");
            let if_missing = format!(
                "{} provides no nixosConfigurations.{name}.config.system.build.nixos-shell, and \
                 this nixos-shell does not know where its NixOS module is to look for \
                 nixosConfigurations.{name}, nixosModules.{name} or \
                 packages.{system}.nixosConfigurations.{name} without it: set NIXOS_SHELL_MODULE, \
                 or make the configuration with nixos-shell's lib.mkVm",
                flake.display()
            );
            let step = |build: NixBuild| Step {
                build,
                identity: identity.clone(),
                note: note.clone(),
                if_missing: if_missing.clone(),
            };
            let fallback = locations.module().map(|module| {
                let build = NixBuild::expr(FLAKE_FALLBACK_NIX, out_link)
                    .flags(&settings.nix)
                    .impure();
                let build = match flake.for_get_flake() {
                    Some(url) => build.argstr("flakeRef", url),
                    None => build.argstr("flakeDir", flake.display()),
                };
                step(systems(
                    build
                        .argstr("name", name.as_str())
                        .argstr("module", module.as_str())
                        .argstr("nixpkgs", nixpkgs.as_str()),
                ))
            });
            let mut steps = if settings.guest_system.is_some() || settings.host_system.is_some() {
                // The fixed attribute cannot honour other platforms.
                vec![fallback?]
            } else {
                let attribute = installable
                    .attribute_installable(cwd)
                    .expect("a flake has an attribute installable");
                let mut build =
                    NixBuild::installable(attribute.reference, out_link).flags(&settings.nix);
                if let Some(dir) = attribute.cwd {
                    build = build.current_dir(dir);
                }
                let mut steps = vec![step(build)];
                steps.extend(fallback.ok());
                steps
            };
            if let Some(file) = or_file {
                if let Ok(build) = legacy(file) {
                    steps.push(Step {
                        build,
                        identity: Installable::File { path: file.clone() }.identity(),
                        note: Some(format!(
                            "{}/flake.nix provides no {name}; running {file}",
                            flake.display()
                        )),
                        if_missing: format!(
                            "{file} builds no system.build.nixos-shell; report this"
                        ),
                    });
                }
            }
            Ok(Plan::Build(steps))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::HostArgs;
    use crate::host::resolve::FlakeRef;
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

    fn flake(dir: &str, or_file: Option<&str>) -> Installable {
        Installable::Flake {
            flake: FlakeRef::Local {
                dir: dir.into(),
                query: String::new(),
                path_scheme: false,
            },
            name: "vm".to_owned(),
            or_file: or_file.map(Utf8PathBuf::from),
        }
    }

    fn plan_for(installable: &Installable, args: &[&str]) -> Plan {
        plan(
            installable,
            &settings(args),
            &located(),
            Some("/t/result".into()),
            "/".into(),
        )
        .unwrap()
    }

    #[test]
    fn a_flake_builds_its_attribute_then_the_full_lookup() {
        let plan = plan_for(&flake("/p", None), &["-L"]);
        assert_eq!(plan.steps().len(), 2);
        assert_eq!(
            tail(&plan.steps()[0].build),
            [
                "--print-build-logs",
                "/p#nixosConfigurations.vm.config.system.build.nixos-shell"
            ]
        );
        assert_eq!(
            tail(&plan.steps()[1].build),
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
        assert!(plan
            .steps()
            .iter()
            .all(|s| s.identity == "/p#vm" && s.note.is_none()));
    }

    #[test]
    fn a_flake_in_a_directory_nix_cannot_parse_is_built_from_inside_and_read_as_a_path() {
        let plan = plan_for(&flake("/my proj", None), &[]);
        let attribute = &plan.steps()[0].build;
        assert_eq!(attribute.cwd(), Some(Utf8Path::new("/my proj")));
        assert_eq!(
            tail(attribute),
            [".#nixosConfigurations.vm.config.system.build.nixos-shell"]
        );
        let argv = plan.steps()[1].build.argv();
        assert!(argv
            .windows(3)
            .any(|w| w == ["--argstr", "flakeDir", "/my proj"]));
        assert_eq!(plan.steps()[1].build.cwd(), None);
    }

    #[test]
    fn a_vm_nix_beside_the_flake_is_built_last_and_says_so() {
        let plan = plan_for(&flake("/p", Some("/p/vm.nix")), &[]);
        assert_eq!(plan.steps().len(), 3);
        assert_eq!(
            plan.steps()[0].note.as_deref(),
            Some(
                "/p/flake.nix and /p/vm.nix both exist: running the flake's vm \
                 (`nixos-shell /p/vm.nix` runs the module file)"
            )
        );
        let last = &plan.steps()[2];
        assert!(last
            .build
            .argv()
            .windows(3)
            .any(|w| w == ["--argstr", "configuration", "/p/vm.nix"]));
        assert_eq!(last.identity, "file:/p/vm.nix");
        assert_eq!(
            last.note.as_deref(),
            Some("/p/flake.nix provides no vm; running /p/vm.nix")
        );
    }

    #[test]
    fn a_build_result_needs_no_nix_and_refuses_flags_for_it() {
        let built = Installable::Built {
            path: "/w/result".into(),
        };
        assert_eq!(
            plan_for(&built, &["--memory", "1G"]),
            Plan::Ready {
                result: "/w/result".into(),
                identity: "built:/w/result".to_owned()
            }
        );
        for args in [&["-L"][..], &["--out-link", "/x"]] {
            let err = plan(
                &built,
                &settings(args),
                &located(),
                Some("/t".into()),
                "/".into(),
            )
            .unwrap_err();
            assert_eq!(
                format!("{err:#}"),
                "/w/result is a build result and needs no nix: drop the flags for nix and --out-link"
            );
        }
    }

    #[test]
    fn guest_system_goes_straight_to_the_full_lookup() {
        let plan = plan_for(&flake("/p", None), &["--guest-system", "aarch64-linux"]);
        assert_eq!(plan.steps().len(), 1);
        let argv = plan.steps()[0].build.argv();
        assert!(argv
            .windows(3)
            .any(|w| w == ["--argstr", "guestSystem", "aarch64-linux"]));
    }

    #[test]
    fn a_file_is_one_legacy_build() {
        let file = Installable::File {
            path: "/p/vm.nix".into(),
        };
        let plan = plan_for(&file, &["--host-system", "x86_64-darwin"]);
        assert_eq!(plan.steps().len(), 1);
        assert_eq!(
            tail(&plan.steps()[0].build),
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
            plan(&file, &settings(&[]), &none, Some("/t".into()), "/".into()).unwrap_err()
        );
        assert!(err.contains("set NIXOS_SHELL_MODULE"), "{err}");
        let no_nixpkgs = Locations {
            module: Some("/m".into()),
            ..Locations::default()
        };
        let err = format!(
            "{:#}",
            plan(
                &file,
                &settings(&[]),
                &no_nixpkgs,
                Some("/t".into()),
                "/".into()
            )
            .unwrap_err()
        );
        assert!(
            err.starts_with("no nixpkgs to evaluate /p/vm.nix with"),
            "{err}"
        );
        assert!(plan(
            &file,
            &settings(&["-I", "nixpkgs=/x"]),
            &no_nixpkgs,
            Some("/t".into()),
            "/".into()
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
