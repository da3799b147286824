//! A build result, `config.system.build.nixos-shell`: the run script
//! `bin/run-<name>-vm` and the manifest `share/nixos-shell/manifest.json`,
//! read together, so that nothing after the build evaluates again.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::schema::manifest::{Manifest, MANIFEST_PATH, MANIFEST_VERSION};

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    /// The result's store path: which build a VM runs.
    pub path: Utf8PathBuf,
    pub run_script: Utf8PathBuf,
    pub manifest: Manifest,
}

impl BuildResult {
    /// Reads the build result at `path`.
    pub fn read(path: &Utf8Path) -> Result<BuildResult> {
        Ok(BuildResult {
            // The store path, also when `path` is a link to it.
            path: path.canonicalize_utf8().unwrap_or_else(|_| path.to_owned()),
            run_script: find_run_script(path)?,
            manifest: read_manifest(path)?,
        })
    }
}

/// The run script `bin/run-*-vm` in a build result.
fn find_run_script(result: &Utf8Path) -> Result<Utf8PathBuf> {
    let bin = result.join("bin");
    let mut found: Vec<Utf8PathBuf> = match bin.read_dir_utf8() {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().to_owned())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.starts_with("run-") && n.ends_with("-vm"))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    found.sort();
    match found.into_iter().next() {
        Some(script) => Ok(script),
        None => bail!(
            "the build result {result} has no bin/run-*-vm; build a configuration that includes the nixos-shell module (system.build.nixos-shell)"
        ),
    }
}

/// The manifest in a build result.
fn read_manifest(result: &Utf8Path) -> Result<Manifest> {
    let path = result.join(MANIFEST_PATH);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("the build result has no {MANIFEST_PATH} ({path}); the nixos-shell module that built it is too old or not nixos-shell's")
    })?;
    let manifest: Manifest = serde_json::from_str(&text).with_context(|| {
        format!("{path} is not a manifest this nixos-shell understands; update nixos-shell")
    })?;
    if manifest.version > MANIFEST_VERSION {
        bail!(
            "{path} is manifest version {}, newer than this nixos-shell reads ({MANIFEST_VERSION}); \
             update nixos-shell to the version of the module that built the VM",
            manifest.version
        );
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::test_data::manifest;

    #[test]
    fn a_manifest_newer_than_this_cli_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("share/nixos-shell")).unwrap();
        let mut newer = serde_json::to_value(manifest()).unwrap();
        newer["version"] = (MANIFEST_VERSION + 1).into();
        std::fs::write(root.join(MANIFEST_PATH), newer.to_string()).unwrap();
        let err = format!("{:#}", read_manifest(root).unwrap_err());
        assert!(err.contains("newer than this nixos-shell reads"), "{err}");
        let mut current = serde_json::to_value(manifest()).unwrap();
        current["version"] = MANIFEST_VERSION.into();
        std::fs::write(root.join(MANIFEST_PATH), current.to_string()).unwrap();
        assert_eq!(read_manifest(root).unwrap().name, "nixos");
    }

    #[test]
    fn finds_the_run_script_or_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        assert!(format!("{:#}", find_run_script(root).unwrap_err()).contains("has no bin/run-*-vm"));
        std::fs::create_dir(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/other"), "").unwrap();
        std::fs::write(root.join("bin/run-box-vm"), "").unwrap();
        assert_eq!(find_run_script(root).unwrap(), root.join("bin/run-box-vm"));
    }
}
