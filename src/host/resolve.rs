//! Resolution: from CONFIG (or its absence) to what to build.
//!
//! - no CONFIG: `./vm.nix` if it exists, else the `vm` attribute of
//!   `./flake.nix`, else an error saying how to start;
//! - CONFIG with `#`, or starting with a flake scheme (`github:`, `path:`,
//!   `git+https:`, ...): a flake reference and an attribute (default `vm`);
//! - otherwise a module file, which must exist.
//!
//! The result, [`Installable`], renders back into what nix is given.

use anyhow::{bail, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::settings::absolute;

/// Where the project lives, for the "how to start" hint.
pub const TEMPLATE_FLAKE: &str = "github:OWNER/nixos-shell";

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

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installable {
    /// A NixOS module file, evaluated against `<nixpkgs/nixos>`.
    File { path: Utf8PathBuf },
    /// A flake and the name looked up in its outputs.
    Flake { reference: String, name: String },
}

impl Installable {
    /// The flake installable tried first: a configuration that already
    /// includes the module (e.g. made by `lib.mkVm`) builds from here, pure
    /// and eval-cached. `None` for a file.
    pub fn attribute_installable(&self) -> Option<String> {
        match self {
            Installable::File { .. } => None,
            Installable::Flake { reference, name } => Some(format!(
                "{reference}#nixosConfigurations.{name}.config.system.build.nixos-shell"
            )),
        }
    }

    /// A stable text naming this configuration, for per-configuration state.
    pub fn identity(&self) -> String {
        match self {
            Installable::File { path } => format!("file:{path}"),
            Installable::Flake { reference, name } => format!("{reference}#{name}"),
        }
    }
}

/// Resolves CONFIG (or its absence) in `cwd`.
pub fn resolve(config: Option<&str>, cwd: &Utf8Path) -> Result<Installable> {
    let Some(config) = config else {
        let vm_nix = cwd.join("vm.nix");
        if vm_nix.is_file() {
            return Ok(Installable::File { path: vm_nix });
        }
        if cwd.join("flake.nix").is_file() {
            return Ok(Installable::Flake {
                reference: cwd.to_string(),
                name: DEFAULT_ATTRIBUTE.to_owned(),
            });
        }
        bail!(
            "no vm.nix and no flake.nix in {cwd}; start one with `nix flake init -t {TEMPLATE_FLAKE}` \
             (then run `nixos-shell`) or pass a module file: `nixos-shell some-module.nix`"
        );
    };
    if let Some((reference, name)) = config.split_once('#') {
        let name = if name.is_empty() {
            DEFAULT_ATTRIBUTE
        } else {
            name
        };
        return flake(config, reference, name, cwd);
    }
    if FLAKE_SCHEMES.iter().any(|s| config.starts_with(s)) {
        return flake(config, config, DEFAULT_ATTRIBUTE, cwd);
    }
    let path = absolute(cwd, Utf8Path::new(config));
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

/// Checks and normalises a flake reference: local paths become absolute
/// (`builtins.getFlake` needs that), the attribute must be a plain name.
fn flake(config: &str, reference: &str, name: &str, cwd: &Utf8Path) -> Result<Installable> {
    let hint = "write FLAKE#NAME, e.g. .#vm or github:owner/repo#vm";
    if reference.is_empty() {
        bail!("malformed flake reference {config:?}: no flake before '#'; {hint}");
    }
    if reference.chars().any(char::is_whitespace) || name.contains('#') {
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
    let reference = if let Some(path) = reference.strip_prefix("path:") {
        let (path, query) = split_query(path);
        format!("path:{}{query}", absolute(cwd, Utf8Path::new(path)))
    } else if is_scheme {
        if let Some(missing) = missing_repository(reference) {
            bail!("malformed flake reference {config:?}: {missing}; {hint}");
        }
        reference.to_owned()
    } else if reference.starts_with(['.', '/']) {
        let (path, query) = split_query(reference);
        let dir = absolute(cwd, Utf8Path::new(path));
        if !dir.is_dir() {
            bail!("flake directory {dir} not found (from {config:?}); check the path before '#'");
        }
        format!("{dir}{query}")
    } else if let Some((scheme, _)) = reference.split_once(':') {
        bail!("malformed flake reference {config:?}: unknown scheme {scheme:?}; {hint}");
    } else {
        // A registry name such as `nixpkgs`: nix resolves it.
        reference.to_owned()
    };
    Ok(Installable::Flake {
        reference,
        name: name.to_owned(),
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

    fn flake(reference: &str, name: &str) -> Installable {
        Installable::Flake {
            reference: reference.to_owned(),
            name: name.to_owned(),
        }
    }

    fn err(config: Option<&str>, cwd: &Utf8Path) -> String {
        format!("{:#}", resolve(config, cwd).unwrap_err())
    }

    #[test]
    fn no_config_prefers_vm_nix_then_the_flake() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        assert!(err(None, cwd).starts_with(&format!(
            "no vm.nix and no flake.nix in {cwd}; start one with `nix flake init -t "
        )));
        std::fs::write(cwd.join("flake.nix"), "{}").unwrap();
        assert_eq!(resolve(None, cwd).unwrap(), flake(cwd.as_str(), "vm"));
        std::fs::write(cwd.join("vm.nix"), "{}").unwrap();
        assert_eq!(
            resolve(None, cwd).unwrap(),
            Installable::File {
                path: cwd.join("vm.nix")
            }
        );
    }

    #[test]
    fn flake_references() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir(cwd.join("sub")).unwrap();
        assert_eq!(
            resolve(Some(".#vm"), cwd).unwrap(),
            flake(cwd.as_str(), "vm")
        );
        assert_eq!(resolve(Some(".#"), cwd).unwrap(), flake(cwd.as_str(), "vm"));
        assert_eq!(
            resolve(Some("./sub#my-vm"), cwd).unwrap(),
            flake(cwd.join("sub").as_str(), "my-vm")
        );
        assert_eq!(
            resolve(Some("path:sub?dir=x#a"), cwd).unwrap(),
            flake(&format!("path:{cwd}/sub?dir=x"), "a")
        );
        assert_eq!(
            resolve(Some("github:o/r#vm-forward"), cwd).unwrap(),
            flake("github:o/r", "vm-forward")
        );
        assert_eq!(
            resolve(Some("github:o/r"), cwd).unwrap(),
            flake("github:o/r", "vm")
        );
        assert_eq!(
            resolve(Some("git+https://x.org/r.git?ref=main"), cwd).unwrap(),
            flake("git+https://x.org/r.git?ref=main", "vm")
        );
        assert_eq!(
            resolve(Some("nixpkgs#x"), cwd).unwrap(),
            flake("nixpkgs", "x")
        );
        assert_eq!(
            flake(cwd.as_str(), "vm").attribute_installable().unwrap(),
            format!("{cwd}#nixosConfigurations.vm.config.system.build.nixos-shell")
        );
    }

    #[test]
    fn malformed_flake_references() {
        let cwd = Utf8Path::new("/");
        assert!(err(Some("#vm"), cwd)
            .starts_with("malformed flake reference \"#vm\": no flake before '#'"));
        assert!(err(Some(".#a.b"), cwd).contains("is not a plain attribute name"));
        assert!(err(Some(".#a#b"), cwd).starts_with("malformed flake reference"));
        assert!(err(Some("foo:bar#vm"), cwd).contains("unknown scheme \"foo\""));
        // Regression: `github:` alone reached nix, which said only "URL ... is invalid".
        assert!(err(Some("github:"), cwd).contains("github: needs OWNER/REPO"));
        assert!(err(Some("github:owner#vm"), cwd).contains("github: needs OWNER/REPO"));
        assert!(err(Some("gitlab:/repo"), cwd).contains("gitlab: needs OWNER/REPO"));
        assert!(resolve(Some("github:o/r/branch?dir=x#vm"), cwd).is_ok());
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
            resolve(Some("other.nix"), cwd).unwrap(),
            Installable::File {
                path: cwd.join("other.nix")
            }
        );
        std::fs::create_dir(cwd.join("fl")).unwrap();
        std::fs::write(cwd.join("fl/flake.nix"), "{}").unwrap();
        assert!(err(Some("fl"), cwd).contains("run `nixos-shell fl#vm`"));
    }
}
