//! What to build and building it: from CONFIG to a [`Built`] result.
//!
//! [`resolve`] turns CONFIG into an [`Installable`]; a [`Request`] plans the
//! `nix build`s that realise it, as values ([`command`] runs each, [`output`]
//! carries nix's stderr to the user), and [`result`] reads what one built:
//!
//! - A flake: first its attribute
//!   `<flake>#nixosConfigurations.<name>.config.system.build.nixos-shell`
//!   (pure, eval-cached: a `lib.mkVm` configuration builds in one nix
//!   process); only when nix says that attribute is missing (or the
//!   configuration sets nixos-shell's options without its module), the full
//!   lookup of `flake-fallback.nix` (impure, `builtins.getFlake`). With
//!   `--guest-system`/`--host-system` the fixed attribute cannot honour them,
//!   so the full lookup is the only build. When `./vm.nix` stands beside
//!   the `./flake.nix` nixos-shell found by itself, it is built last, if
//!   the flake provides no such configuration.
//! - A module file: one impure build of `legacy.nix`.
//! - A build result: nothing to build.

pub mod command;
pub mod outcome;
pub mod output;
pub mod resolve;
pub mod result;

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::cli::NixFlags;
use crate::host::read::Host;
use crate::host::settings::Build;
use command::{NixBuild, Outcome};
use resolve::FlakeRef;
pub use resolve::{resolve, Identity, Installable};
pub use result::BuildResult;

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
    /// Whether `NIX_PATH` may provide `<nixpkgs>` (`-I` is seen by the plan).
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

    /// The built-in nixpkgs for the expressions' argument ("" for none).
    fn nixpkgs(&self) -> String {
        self.nixpkgs
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default()
    }
}

/// One build to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub build: NixBuild,
    /// The configuration it builds, for per-configuration state (the disk
    /// image).
    pub identity: Identity,
    /// Said when this step's result is the one used: which of two
    /// configurations in the directory runs.
    pub note: Option<String>,
    /// Said when this step, the last, finds no configuration and its nix
    /// process did not say why in our words.
    pub if_missing: String,
}

/// What to do to get a build result: the builds of a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Builds {
    /// The builds to try, in order: each runs only when the ones before it
    /// report their attribute missing.
    Build(Vec<Step>),
    /// A build result given as CONFIG: nothing to build or evaluate.
    Ready {
        result: Utf8PathBuf,
        identity: Identity,
    },
}

/// A build result, read, and the configuration it is of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub result: BuildResult,
    pub identity: Identity,
}

impl Builds {
    /// The builds to try; none for a build result.
    pub fn steps(&self) -> &[Step] {
        match self {
            Builds::Build(steps) => steps,
            Builds::Ready { .. } => &[],
        }
    }

    /// Runs the steps until one builds, and reads what it built; the first
    /// nix failure (or a signal) stops it, as a [`Stop`] error.
    pub fn realise(&self) -> Result<Built> {
        if let Builds::Ready { result, identity } = self {
            return Ok(Built {
                result: BuildResult::read(result)?,
                identity: identity.clone(),
            });
        }
        let mut missing = None;
        for step in self.steps() {
            match step.build.run()? {
                Outcome::Built(result) => {
                    if let Some(note) = &step.note {
                        eprintln!("nixos-shell: {note}");
                    }
                    return Ok(Built {
                        result: BuildResult::read(&result)?,
                        identity: step.identity.clone(),
                    });
                }
                Outcome::MissingAttribute(message) => {
                    missing = Some(message.unwrap_or_else(|| step.if_missing.clone()))
                }
            }
        }
        match missing {
            Some(message) => bail!("{message}"),
            None => bail!("nothing to build; report this"),
        }
    }
}

/// What to build, and how: the installable with the command line's flags
/// and this binary's locations. Its [`Builds`] are made for a given out-link.
pub struct Request<'a> {
    installable: &'a Installable,
    settings: &'a Build,
    locations: Locations,
    /// Where nixos-shell runs: a local flake may be handed to nix relative
    /// to it.
    cwd: &'a Utf8Path,
}

impl<'a> Request<'a> {
    pub fn new(installable: &'a Installable, settings: &'a Build, host: &'a Host) -> Self {
        Request {
            installable,
            settings,
            locations: Locations::from_env(&host.env),
            cwd: &host.cwd,
        }
    }

    /// The builds, their results kept as GC roots at `out_link` (none for
    /// `None`); pure.
    pub fn builds(&self, out_link: Option<&Utf8Path>) -> Result<Builds> {
        match self.installable {
            Installable::Built { path } => self.ready(path),
            Installable::File { path } => Ok(Builds::Build(vec![self.file_step(path, out_link)?])),
            Installable::Flake {
                flake,
                name,
                or_file,
            } => self.flake_steps(flake, name, or_file.as_deref(), out_link),
        }
    }

    /// A build result given as CONFIG: refused with flags it cannot use.
    fn ready(&self, path: &Utf8Path) -> Result<Builds> {
        if self.settings.nix != NixFlags::default() || self.settings.out_link.is_some() {
            bail!(
                "{path} is a build result and needs no nix: drop the flags for nix and --out-link"
            );
        }
        Ok(Builds::Ready {
            result: path.to_owned(),
            identity: self.installable.identity(),
        })
    }

    /// The build of a module file.
    fn file_step(&self, path: &Utf8Path, out_link: Option<&Utf8Path>) -> Result<Step> {
        Ok(Step {
            build: self.legacy(path, out_link)?,
            identity: Installable::File {
                path: path.to_owned(),
            }
            .identity(),
            note: None,
            if_missing: format!("{path} builds no system.build.nixos-shell; report this"),
        })
    }

    /// The builds of a flake's `name`: its attribute, then the full lookup
    /// (only the lookup with other platforms); then `or_file`, the vm.nix
    /// beside it, when there is one.
    fn flake_steps(
        &self,
        flake: &FlakeRef,
        name: &str,
        or_file: Option<&Utf8Path>,
        out_link: Option<&Utf8Path>,
    ) -> Result<Builds> {
        let step = |build: NixBuild| Step {
            build,
            identity: self.installable.identity(),
            note: or_file.map(|file| {
                format!(
                    "{}/flake.nix and {file} both exist: running the flake's {name} \
                     (`nixos-shell {file}` runs the module file)",
                    flake.display()
                )
            }),
            if_missing: self.flake_missing(flake, name),
        };
        let fallback = self.fallback(flake, name, out_link).map(step);
        let mut steps =
            if self.settings.guest_system.is_some() || self.settings.host_system.is_some() {
                // The fixed attribute cannot honour other platforms.
                vec![fallback?]
            } else {
                let attribute = resolve::attribute(flake, name, self.cwd);
                let mut build =
                    NixBuild::installable(attribute.reference, out_link).flags(&self.settings.nix);
                if let Some(dir) = attribute.cwd {
                    build = build.current_dir(dir);
                }
                std::iter::once(step(build)).chain(fallback.ok()).collect()
            };
        if let Some(file) = or_file {
            if let Ok(mut last) = self.file_step(file, out_link) {
                last.note = Some(format!(
                    "{}/flake.nix provides no {name}; running {file}",
                    flake.display()
                ));
                steps.push(last);
            }
        }
        Ok(Builds::Build(steps))
    }

    /// What to say when a flake has no `name` and the full lookup cannot run.
    fn flake_missing(&self, flake: &FlakeRef, name: &str) -> String {
        let system = self.settings.guest_system.as_deref().unwrap_or("<system>");
        format!(
            "{} provides no nixosConfigurations.{name}.config.system.build.nixos-shell, and \
             this nixos-shell does not know where its NixOS module is to look for \
             nixosConfigurations.{name}, nixosModules.{name} or \
             packages.{system}.nixosConfigurations.{name} without it: set NIXOS_SHELL_MODULE, \
             or make the configuration with nixos-shell's lib.mkVm",
            flake.display()
        )
    }

    /// The impure build of a module file with `<nixpkgs/nixos>`.
    fn legacy(&self, path: &Utf8Path, out_link: Option<&Utf8Path>) -> Result<NixBuild> {
        let module = self.locations.module()?;
        let search_path = self.locations.search_path || !self.settings.nix.include.is_empty();
        if !search_path && self.locations.nixpkgs.is_none() {
            bail!(
                "no nixpkgs to evaluate {path} with: NIX_PATH has no <nixpkgs> and this nixos-shell \
                 has none built in; set NIX_PATH=nixpkgs=/path/to/nixpkgs, pass -I nixpkgs=..., \
                 or set NIXOS_SHELL_NIXPKGS"
            );
        }
        let build = NixBuild::expr(LEGACY_NIX, out_link)
            .flags(&self.settings.nix)
            .impure()
            .argstr("configuration", path.as_str())
            .argstr("module", module.as_str())
            .argstr("nixpkgs", self.locations.nixpkgs());
        Ok(self.with_systems(build))
    }

    /// The full flake lookup of `name`, impure.
    fn fallback(
        &self,
        flake: &FlakeRef,
        name: &str,
        out_link: Option<&Utf8Path>,
    ) -> Result<NixBuild> {
        let module = self.locations.module()?;
        let build = NixBuild::expr(FLAKE_FALLBACK_NIX, out_link)
            .flags(&self.settings.nix)
            .impure();
        let build = match flake.for_get_flake() {
            Some(url) => build.argstr("flakeRef", url),
            None => build.argstr("flakeDir", flake.display()),
        };
        Ok(self.with_systems(
            build
                .argstr("name", name)
                .argstr("module", module.as_str())
                .argstr("nixpkgs", self.locations.nixpkgs()),
        ))
    }

    /// `build` for the command line's guest and host platforms.
    fn with_systems(&self, mut build: NixBuild) -> NixBuild {
        if let Some(system) = &self.settings.guest_system {
            build = build.argstr("guestSystem", system);
        }
        if let Some(system) = &self.settings.host_system {
            build = build.argstr("hostSystem", system);
        }
        build
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::settings::Mode;
    use crate::host::test_data::{env, host_in, try_mode_on};

    /// The environment of the package's wrapper: where the module and the
    /// built-in nixpkgs are.
    const LOCATED: [(&str, &str); 2] =
        [("NIXOS_SHELL_MODULE", "/m"), ("NIXOS_SHELL_NIXPKGS", "/np")];

    /// The plan for `installable` with `args`, in an environment of `pairs`.
    fn plan_in(installable: &Installable, args: &[&str], pairs: &[(&str, &str)]) -> Result<Builds> {
        let host = host_in(env(pairs), "/");
        let Mode::Run(run) = try_mode_on(&host, args)? else {
            panic!("{args:?} is no run")
        };
        Request::new(installable, &run.build, &host).builds(Some("/t/result".into()))
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

    fn plan_for(installable: &Installable, args: &[&str]) -> Builds {
        plan_in(installable, args, &LOCATED).unwrap()
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
            .all(|s| s.identity.as_str() == "/p#vm" && s.note.is_none()));
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
        assert_eq!(last.identity.as_str(), "file:/p/vm.nix");
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
            Builds::Ready {
                result: "/w/result".into(),
                identity: Identity::new("built:/w/result")
            }
        );
        for args in [&["-L"][..], &["--out-link", "/x"]] {
            let err = plan_in(&built, args, &LOCATED).unwrap_err();
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
    fn a_missing_module_location_is_explained() {
        let file = Installable::File {
            path: "/p/vm.nix".into(),
        };
        let err = format!("{:#}", plan_in(&file, &[], &[]).unwrap_err());
        assert!(err.contains("set NIXOS_SHELL_MODULE"), "{err}");
    }

    #[test]
    fn a_file_without_a_nixpkgs_is_explained_and_minus_i_gives_one() {
        let file = Installable::File {
            path: "/p/vm.nix".into(),
        };
        let module_only = [("NIXOS_SHELL_MODULE", "/m")];
        let err = format!("{:#}", plan_in(&file, &[], &module_only).unwrap_err());
        assert!(
            err.starts_with("no nixpkgs to evaluate /p/vm.nix with"),
            "{err}"
        );
        assert!(plan_in(&file, &["-I", "nixpkgs=/x"], &module_only).is_ok());
    }

    #[test]
    fn locations_prefer_the_environment() {
        let locations = Locations::from_env(&env(&[
            ("NIXOS_SHELL_MODULE", "/run/m"),
            ("NIX_PATH", "nixpkgs=/x"),
        ]));
        assert_eq!(locations.module.as_deref(), Some(Utf8Path::new("/run/m")));
        assert!(locations.search_path);
    }
}
