//! Resolution: from CONFIG (or its absence) to what to build.
//!
//! - no CONFIG: the `vm` attribute of `./flake.nix`, else `./vm.nix`, else
//!   an error saying how to start. With both files the flake comes first and
//!   `./vm.nix` is built only when the flake provides no `vm`;
//! - CONFIG with `#`, or starting with a flake scheme (`github:`, `path:`,
//!   `git+https:`, ...): a flake reference and an attribute (default `vm`);
//! - a build result of `system.build.nixos-shell` (`./result`, a store
//!   path): run as it is, without nix;
//! - otherwise a module file, which must exist.
//!
//! The result, [`Installable`], renders back into what nix is given. A local
//! flake is kept as its directory, so that one configuration has one
//! identity however it was written (`.#vm`, `./#vm`, `path:$PWD#vm`), and so
//! that a directory whose path nix's URL parser refuses (a space, say) is
//! still handed to nix in a form it takes ([`FlakeRef::for_nix`]).

use anyhow::{bail, Result};
use camino::{Utf8Component, Utf8Path, Utf8PathBuf};

use crate::host::settings::path::absolute;
use crate::host::settings::Config;
use crate::schema::manifest::MANIFEST_PATH;

/// The attribute used when a flake reference names none.
pub const DEFAULT_ATTRIBUTE: &str = "vm";

/// URL schemes that make CONFIG a flake reference even without `#`.
const FLAKE_SCHEMES: &[&str] = &[
    "flake:",
    "path:",
    "github:",
    "gitlab:",
    "sourcehut:",
    "git+",
    "hg+",
    "tarball+",
    "file+",
    "http://",
    "https://",
];

/// A stable text naming a configuration (a module file, a flake
/// attribute, a build result), from [`Installable::identity`]: what its
/// per-configuration state (the disk image) is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity(String);

impl Identity {
    /// An identity of this text: tests name one by hand, and a detached
    /// VM's holder gets the one its build was of ([`Identity::as_str`]).
    pub fn new(text: &str) -> Identity {
        Identity(text.to_owned())
    }

    /// Its text, which [`Identity::new`] reads back.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short key of the identity for file names (the disk image's, the
    /// running VM's entry for `--attach`): 64-bit FNV-1a in hex, tiny and
    /// stable across releases (std's hasher is not).
    pub fn key(&self) -> String {
        let hash = self
            .0
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        format!("{hash:016x}")
    }
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installable {
    /// A build result of `system.build.nixos-shell` (a store path, or a
    /// link to one such as `./result`): nothing to build or evaluate.
    Built { path: Utf8PathBuf },
    /// A NixOS module file, evaluated against `<nixpkgs/nixos>`.
    File { path: Utf8PathBuf },
    /// A flake and the name looked up in its outputs; `or_file` is the
    /// module file to build when the flake provides no such name (the
    /// `./vm.nix` beside a `./flake.nix`).
    Flake {
        flake: FlakeRef,
        name: String,
        or_file: Option<Utf8PathBuf>,
    },
}

/// A flake reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlakeRef {
    /// A flake in a directory of this machine (`.`, `./sub`, `/abs`,
    /// `path:...`), absolute and normalised; `query` is `?...` or empty;
    /// `path_scheme` keeps a `path:` (which makes nix ignore git).
    Local {
        dir: Utf8PathBuf,
        query: String,
        path_scheme: bool,
    },
    /// Anything nix locates itself: `github:o/r`, `git+https://...`, a
    /// registry name.
    Url(String),
}

/// How nix is given a flake: the reference, and the directory nix must run
/// in for a relative reference to mean the flake (`None`: anywhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NixFlakeRef {
    pub reference: String,
    pub cwd: Option<Utf8PathBuf>,
}

impl FlakeRef {
    /// The reference for nix's command line, started in `cwd`. nix 2.x
    /// parses a local flake's absolute path as a URL and refuses one with a
    /// space (and does not decode `%20` in `path:`), but resolves a
    /// relative `.`-path itself: the absolute form when nix takes it, else
    /// the path relative to `cwd`, else `.` with nix started in the flake.
    pub fn for_nix(&self, cwd: &Utf8Path) -> NixFlakeRef {
        let (dir, query, scheme) = match self {
            FlakeRef::Url(url) => {
                return NixFlakeRef {
                    reference: url.clone(),
                    cwd: None,
                }
            }
            FlakeRef::Local {
                dir,
                query,
                path_scheme,
            } => (dir, query, if *path_scheme { "path:" } else { "" }),
        };
        let render = |path: &str| format!("{scheme}{path}{query}");
        let absolute = render(dir.as_str());
        if nix_parses(&absolute) {
            return NixFlakeRef {
                reference: absolute,
                cwd: None,
            };
        }
        let relative = render(relative_path(cwd, dir).as_str());
        if nix_parses(&relative) {
            return NixFlakeRef {
                reference: relative,
                cwd: None,
            };
        }
        NixFlakeRef {
            reference: render("."),
            cwd: Some(dir.clone()),
        }
    }

    /// The URL `builtins.getFlake` takes, or `None` for a local flake whose
    /// path nix's URL parser refuses (the fallback lookup then reads the
    /// directory itself).
    pub fn for_get_flake(&self) -> Option<String> {
        let url = match self {
            FlakeRef::Url(url) => url.clone(),
            FlakeRef::Local {
                dir,
                query,
                path_scheme,
            } => format!("{}{dir}{query}", if *path_scheme { "path:" } else { "" }),
        };
        nix_parses(&url).then_some(url)
    }

    /// How messages name it.
    pub fn display(&self) -> String {
        match self {
            FlakeRef::Url(url) => url.clone(),
            FlakeRef::Local { dir, query, .. } => format!("{dir}{query}"),
        }
    }
}

/// Whether nix's URL parser takes `reference` as it is: RFC 3986's path
/// characters (ASCII letters, digits, `-._~!$&'()*+,;=:@/%`) and `?` for
/// the query.
fn nix_parses(reference: &str) -> bool {
    reference
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%?".contains(c))
}

/// `to` relative to `from`, both absolute and normalised, starting with `.`
/// (`.`, `./sub`, `../x`) as nix wants a relative flake path.
fn relative_path(from: &Utf8Path, to: &Utf8Path) -> Utf8PathBuf {
    let from: Vec<Utf8Component> = from.components().collect();
    let to: Vec<Utf8Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let up = from.len() - common;
    let mut path = Utf8PathBuf::from(if up == 0 { "." } else { ".." });
    for _ in 1..up {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part.as_str());
    }
    path
}

impl Installable {
    /// What names this configuration for per-configuration state: the
    /// same for every spelling of one local flake.
    pub fn identity(&self) -> Identity {
        Identity(match self {
            Installable::File { path } => format!("file:{path}"),
            // The path as given, not where it points: `./result` keeps its
            // disk image across rebuilds.
            Installable::Built { path } => format!("built:{path}"),
            Installable::Flake { flake, name, .. } => format!("{}#{name}", flake.display()),
        })
    }

    /// The identities a run of it may have, in the order the run tries
    /// them: its own, then that of the module file it falls back to (the
    /// `./vm.nix` beside a `./flake.nix` without the configuration).
    pub fn identities(&self) -> Vec<Identity> {
        let fallback = match self {
            Installable::Flake {
                or_file: Some(path),
                ..
            } => Some(Installable::File { path: path.clone() }.identity()),
            _ => None,
        };
        std::iter::once(self.identity()).chain(fallback).collect()
    }
}

/// The flake installable tried first for `name`: a configuration that
/// already includes the module (e.g. made by `lib.mkVm`) builds from here,
/// pure and eval-cached.
pub fn attribute(flake: &FlakeRef, name: &str, cwd: &Utf8Path) -> NixFlakeRef {
    let nix = flake.for_nix(cwd);
    NixFlakeRef {
        reference: format!(
            "{}#nixosConfigurations.{name}.config.system.build.nixos-shell",
            nix.reference
        ),
        cwd: nix.cwd,
    }
}

/// Resolves CONFIG or `--flake` (or their absence) in `cwd`.
pub fn resolve(config: Option<&Config>, cwd: &Utf8Path) -> Result<Installable> {
    let config = match config {
        // `--flake .`, the original's commonest invocation: a flake
        // reference, however it is written.
        Some(Config::Flake(reference)) => {
            return match reference.split_once('#') {
                Some((flake_ref, name)) => {
                    flake(reference, flake_ref, attribute_or_default(name), cwd)
                }
                None => flake(reference, reference, DEFAULT_ATTRIBUTE, cwd),
            }
        }
        Some(Config::Given(config)) => Some(config.as_str()),
        None => None,
    };
    let Some(config) = config else {
        return found_in(cwd);
    };
    if let Some((reference, name)) = config.split_once('#') {
        return flake(config, reference, attribute_or_default(name), cwd);
    }
    if FLAKE_SCHEMES.iter().any(|s| config.starts_with(s)) {
        return flake(config, config, DEFAULT_ATTRIBUTE, cwd);
    }
    let path = absolute(cwd, Utf8Path::new(config));
    if path.join(MANIFEST_PATH).is_file() {
        return Ok(Installable::Built { path });
    }
    if path.is_dir() && !path.join("default.nix").exists() {
        if path.join("flake.nix").exists() {
            bail!("{config} is a flake directory, not a module file; run `nixos-shell {config}#{DEFAULT_ATTRIBUTE}`");
        }
        bail!("{config} is a directory without default.nix; pass a module file or a flake reference like .#vm");
    }
    if !path.exists() {
        bail!(
            "{config} not found (looked for {path}); pass an existing module file or a flake reference like .#vm"
        );
    }
    Ok(Installable::File { path })
}

/// What nixos-shell finds by itself in `cwd`: the `vm` attribute of
/// `./flake.nix` (with `./vm.nix` to fall back to), else `./vm.nix`.
fn found_in(cwd: &Utf8Path) -> Result<Installable> {
    let vm_nix = cwd.join("vm.nix");
    let vm_nix = vm_nix.is_file().then_some(vm_nix);
    if cwd.join("flake.nix").is_file() {
        return Ok(Installable::Flake {
            flake: FlakeRef::Local {
                dir: cwd.to_owned(),
                query: String::new(),
                path_scheme: false,
            },
            name: DEFAULT_ATTRIBUTE.to_owned(),
            or_file: vm_nix,
        });
    }
    if let Some(path) = vm_nix {
        return Ok(Installable::File { path });
    }
    bail!(
        "no vm.nix and no flake.nix in {cwd}; write a NixOS module to vm.nix (`echo '{{ }}' > vm.nix` \
         is a plain VM) and run `nixos-shell` again, or name one: `nixos-shell some-module.nix`, \
         `nixos-shell .#vm`"
    );
}

/// The attribute after `#`, or [`DEFAULT_ATTRIBUTE`] for none (`.#`).
fn attribute_or_default(name: &str) -> &str {
    if name.is_empty() {
        DEFAULT_ATTRIBUTE
    } else {
        name
    }
}

/// Checks and normalises a flake reference: local paths become absolute
/// directories, the attribute must be a plain name.
fn flake(config: &str, reference: &str, name: &str, cwd: &Utf8Path) -> Result<Installable> {
    let hint = "write FLAKE#NAME, e.g. .#vm or github:owner/repo#vm";
    if reference.is_empty() {
        bail!("malformed flake reference {config:?}: no flake before '#'; {hint}");
    }
    if name.contains('#') {
        bail!("malformed flake reference {config:?}; {hint}");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\''))
        || name.starts_with('-')
    {
        bail!(
            "malformed flake reference {config:?}: {name:?} is not a plain attribute name \
             (letters, digits, _, -, '); {hint}"
        );
    }
    let is_scheme = FLAKE_SCHEMES.iter().any(|s| reference.starts_with(s));
    let local = |path: &str, path_scheme: bool| -> Result<FlakeRef> {
        let (path, query) = split_query(path);
        let dir = absolute(cwd, Utf8Path::new(path));
        if !dir.is_dir() {
            bail!("flake directory {dir} not found (from {config:?}); check the path before '#'");
        }
        Ok(FlakeRef::Local {
            dir,
            query: query.to_owned(),
            path_scheme,
        })
    };
    let url = |reference: &str| -> Result<FlakeRef> {
        if reference.chars().any(char::is_whitespace) {
            bail!("malformed flake reference {config:?}: a URL has no spaces; {hint}");
        }
        Ok(FlakeRef::Url(reference.to_owned()))
    };
    let flake = if let Some(path) = reference.strip_prefix("path:") {
        local(path, true)?
    } else if is_scheme {
        if let Some(missing) = missing_repository(reference) {
            bail!("malformed flake reference {config:?}: {missing}; {hint}");
        }
        url(reference)?
    } else if reference.starts_with(['.', '/']) {
        local(reference, false)?
    } else if let Some((scheme, _)) = reference.split_once(':') {
        bail!("malformed flake reference {config:?}: unknown scheme {scheme:?}; {hint}");
    } else {
        // A registry name such as `nixpkgs`: nix resolves it.
        url(reference)?
    };
    Ok(Installable::Flake {
        flake,
        name: name.to_owned(),
        or_file: None,
    })
}

/// What a forge shorthand (`github:`, `gitlab:`, `sourcehut:`) lacks, if
/// anything: they name `OWNER/REPO`, and nix's own error for a missing part
/// is a bare "URL ... is invalid".
fn missing_repository(reference: &str) -> Option<String> {
    let (scheme, rest) = reference.split_once(':')?;
    if !matches!(scheme, "github" | "gitlab" | "sourcehut") {
        return None;
    }
    let (location, _) = split_query(rest);
    let mut parts = location.split('/');
    let owner = parts.next().unwrap_or_default();
    let repo = parts.next().unwrap_or_default();
    (owner.is_empty() || repo.is_empty()).then(|| format!("{scheme}: needs OWNER/REPO"))
}

fn split_query(reference: &str) -> (&str, &str) {
    match reference.find('?') {
        Some(at) => reference.split_at(at),
        None => (reference, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identitys_key_is_fnv_1a_in_hex() {
        assert_eq!(Identity::new("").key(), "cbf29ce484222325");
        assert_eq!(Identity::new("a").key(), "af63dc4c8601ec8c");
    }

    #[test]
    fn a_flake_with_a_module_file_beside_it_may_run_as_either() {
        let flake = Installable::Flake {
            flake: FlakeRef::Url("github:o/r".into()),
            name: "vm".into(),
            or_file: Some("/p/vm.nix".into()),
        };
        let ids: Vec<String> = flake
            .identities()
            .iter()
            .map(|i| i.as_str().to_owned())
            .collect();
        assert_eq!(ids, ["github:o/r#vm", "file:/p/vm.nix"]);
        let file = Installable::File {
            path: "/p/vm.nix".into(),
        };
        assert_eq!(file.identities(), [file.identity()]);
    }

    fn local(dir: &Utf8Path, name: &str) -> Installable {
        Installable::Flake {
            flake: FlakeRef::Local {
                dir: dir.to_owned(),
                query: String::new(),
                path_scheme: false,
            },
            name: name.to_owned(),
            or_file: None,
        }
    }

    fn url(reference: &str, name: &str) -> Installable {
        Installable::Flake {
            flake: FlakeRef::Url(reference.to_owned()),
            name: name.to_owned(),
            or_file: None,
        }
    }

    /// CONFIG, resolved in `cwd`.
    fn given(config: &str, cwd: &Utf8Path) -> Result<Installable> {
        resolve(Some(&Config::Given(config.to_owned())), cwd)
    }

    fn err(config: Option<&str>, cwd: &Utf8Path) -> String {
        let config = config.map(|c| Config::Given(c.to_owned()));
        format!("{:#}", resolve(config.as_ref(), cwd).unwrap_err())
    }

    #[test]
    fn no_config_prefers_the_flake_then_vm_nix() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        assert_eq!(
            err(None, cwd),
            format!(
                "no vm.nix and no flake.nix in {cwd}; write a NixOS module to vm.nix \
                 (`echo '{{ }}' > vm.nix` is a plain VM) and run `nixos-shell` again, or name one: \
                 `nixos-shell some-module.nix`, `nixos-shell .#vm`"
            )
        );
        std::fs::write(cwd.join("vm.nix"), "{}").unwrap();
        assert_eq!(
            resolve(None, cwd).unwrap(),
            Installable::File {
                path: cwd.join("vm.nix")
            }
        );
        std::fs::write(cwd.join("flake.nix"), "{}").unwrap();
        let Installable::Flake { or_file, .. } = resolve(None, cwd).unwrap() else {
            panic!("the flake should come first");
        };
        assert_eq!(or_file, Some(cwd.join("vm.nix")));
        std::fs::remove_file(cwd.join("vm.nix")).unwrap();
        assert_eq!(resolve(None, cwd).unwrap(), local(cwd, "vm"));
    }

    #[test]
    fn flake_references() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir(cwd.join("sub")).unwrap();
        assert_eq!(given(".#vm", cwd).unwrap(), local(cwd, "vm"));
        assert_eq!(given(".#", cwd).unwrap(), local(cwd, "vm"));
        assert_eq!(
            given("./sub#my-vm", cwd).unwrap(),
            local(&cwd.join("sub"), "my-vm")
        );
        assert_eq!(
            given("path:sub?dir=x#a", cwd).unwrap(),
            Installable::Flake {
                flake: FlakeRef::Local {
                    dir: cwd.join("sub"),
                    query: "?dir=x".to_owned(),
                    path_scheme: true
                },
                name: "a".to_owned(),
                or_file: None,
            }
        );
        assert_eq!(
            given("github:o/r#vm-forward", cwd).unwrap(),
            url("github:o/r", "vm-forward")
        );
        assert_eq!(given("github:o/r", cwd).unwrap(), url("github:o/r", "vm"));
        assert_eq!(
            given("git+https://x.org/r.git?ref=main", cwd).unwrap(),
            url("git+https://x.org/r.git?ref=main", "vm")
        );
        assert_eq!(given("nixpkgs#x", cwd).unwrap(), url("nixpkgs", "x"));
        let Installable::Flake { flake, name, .. } = local(cwd, "vm") else {
            unreachable!("a flake")
        };
        assert_eq!(
            attribute(&flake, &name, cwd),
            NixFlakeRef {
                reference: format!("{cwd}#nixosConfigurations.vm.config.system.build.nixos-shell"),
                cwd: None
            }
        );
    }

    /// Regression: `--flake .`, the original's commonest invocation, was
    /// taken as a module file and refused as a flake directory.
    #[test]
    fn a_flake_flag_is_a_flake_reference_with_or_without_an_attribute() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(cwd.join("flake.nix"), "{}").unwrap();
        let flag = |reference: &str| resolve(Some(&Config::Flake(reference.to_owned())), cwd);
        assert_eq!(flag(".").unwrap(), local(cwd, "vm"));
        assert_eq!(flag(".#dev-vm").unwrap(), local(cwd, "dev-vm"));
        assert_eq!(flag("nixpkgs").unwrap(), url("nixpkgs", "vm"));
        assert!(given(".", cwd).is_err(), "CONFIG . stays a directory");
    }

    /// Regression: the same flake written three ways got three disk images.
    #[test]
    fn every_spelling_of_one_local_flake_has_one_identity() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        let identities: Vec<String> = [
            ".#vm".to_owned(),
            "./#vm".to_owned(),
            format!("path:{cwd}#vm"),
            format!("{cwd}/#vm"),
            "path:.".to_owned(),
        ]
        .iter()
        .map(|config| given(config, cwd).unwrap().identity().as_str().to_owned())
        .collect();
        assert!(
            identities.iter().all(|i| *i == format!("{cwd}#vm")),
            "{identities:?}"
        );
    }

    /// Regression: nix 2.x refuses an absolute flake path with a space as
    /// "not a valid URL", but resolves a relative one itself.
    #[test]
    fn a_local_flake_whose_path_nix_cannot_parse_is_given_relative_or_from_inside() {
        let cwd = Utf8Path::new("/home/a/my proj");
        let flake = |dir: &str, path_scheme: bool| FlakeRef::Local {
            dir: dir.into(),
            query: String::new(),
            path_scheme,
        };
        let plain = |reference: &str| NixFlakeRef {
            reference: reference.to_owned(),
            cwd: None,
        };
        assert_eq!(
            flake("/home/a/plain", false).for_nix(cwd),
            plain("/home/a/plain")
        );
        assert_eq!(flake("/home/a/my proj", false).for_nix(cwd), plain("."));
        assert_eq!(
            flake("/home/a/my proj/sub", true).for_nix(cwd),
            plain("path:./sub")
        );
        assert_eq!(
            flake("/home/a/other dir", false).for_nix(cwd),
            NixFlakeRef {
                reference: ".".to_owned(),
                cwd: Some("/home/a/other dir".into())
            }
        );
        assert_eq!(flake("/home/a/my proj", false).for_get_flake(), None);
        assert_eq!(
            flake("/srv/x", true).for_get_flake().as_deref(),
            Some("path:/srv/x")
        );
        assert_eq!(relative_path("/a/b".into(), "/a/c/d".into()), "../c/d");
        assert_eq!(relative_path("/a".into(), "/a/c".into()), "./c");
    }

    #[test]
    fn malformed_flake_references() {
        let cwd = Utf8Path::new("/");
        assert!(err(Some("#vm"), cwd)
            .starts_with("malformed flake reference \"#vm\": no flake before '#'"));
        assert!(err(Some(".#a.b"), cwd).contains("is not a plain attribute name"));
        assert!(err(Some(".#a#b"), cwd).starts_with("malformed flake reference"));
        assert!(err(Some("foo:bar#vm"), cwd).contains("unknown scheme \"foo\""));
        assert!(err(Some("github:o/r x#vm"), cwd).contains("a URL has no spaces"));
        // Regression: `github:` alone reached nix, which said only "URL ... is invalid".
        assert!(err(Some("github:"), cwd).contains("github: needs OWNER/REPO"));
        assert!(err(Some("github:owner#vm"), cwd).contains("github: needs OWNER/REPO"));
        assert!(err(Some("gitlab:/repo"), cwd).contains("gitlab: needs OWNER/REPO"));
        assert!(given("github:o/r/branch?dir=x#vm", cwd).is_ok());
        assert!(err(Some("./no/such/dir#vm"), cwd)
            .starts_with("flake directory /no/such/dir not found"));
    }

    #[test]
    fn files_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        assert_eq!(
            err(Some("other.nix"), cwd),
            format!("other.nix not found (looked for {cwd}/other.nix); pass an existing module file or a flake reference like .#vm")
        );
        std::fs::write(cwd.join("other.nix"), "{}").unwrap();
        assert_eq!(
            given("other.nix", cwd).unwrap(),
            Installable::File {
                path: cwd.join("other.nix")
            }
        );
        std::fs::create_dir(cwd.join("fl")).unwrap();
        std::fs::write(cwd.join("fl/flake.nix"), "{}").unwrap();
        assert!(err(Some("fl"), cwd).contains("run `nixos-shell fl#vm`"));
    }
}
