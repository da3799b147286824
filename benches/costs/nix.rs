//! The real `nix`, run offline, and a PATH wrapper around it that logs each
//! call so a figure can count the nix processes a run starts and read back
//! the exact arguments it gave them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nixos_shell_test_support::fs::on_path;
use nixos_shell_test_support::nix::NIX_CONF;
use nixos_shell_test_support::sh::quote;

/// The nix commands the wrapper stands in for: `nix` and the legacy ones a
/// script might call instead.
const NIX_COMMANDS: &[&str] = &[
    "nix",
    "nix-build",
    "nix-instantiate",
    "nix-store",
    "nix-env",
    "nix-shell",
];

/// The directory on `PATH` that holds the real `nix`.
pub fn real_nix_dir() -> Result<PathBuf> {
    on_path("nix")
        .and_then(|nix| nix.parent().map(Path::to_owned))
        .context("`nix` is not on PATH: install Nix (Debian: apt-get install nix-bin)")
}

/// `NIX_CONFIG` for every nix the benchmark starts, directly or through a
/// CLI: the tests' settings (flakes on, offline, builds as root without
/// build users) and an empty flake registry.
pub fn offline_config(registry: &Path) -> String {
    format!("{NIX_CONF}flake-registry = {}\n", registry.display())
}

/// Writes the empty flake registry `offline_config` points at.
pub fn write_empty_registry(path: &Path) -> Result<()> {
    fs::write(path, "{\"flakes\": [], \"version\": 2}\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A directory of scripts named like the nix commands that log their
/// arguments and exec the real ones.
pub struct NixWrapper {
    bin: PathBuf,
    log: PathBuf,
}

impl NixWrapper {
    /// Writes the wrappers into `root/bin`, logging into `root/calls`.
    pub fn create(root: &Path, real_dir: &Path) -> Result<NixWrapper> {
        let bin = root.join("bin");
        let log = root.join("calls");
        fs::create_dir_all(&bin)?;
        fs::create_dir_all(&log)?;
        for name in NIX_COMMANDS {
            let real = real_dir.join(name);
            if !real.is_file() {
                continue;
            }
            // One file per call, named by the time it started: arguments
            // NUL-separated, the command's name first.
            let script = format!(
                "#!/bin/sh\nf={log}/$(date +%s%N).$$\nprintf '%s\\0' {name} \"$@\" > \"$f\"\nexec {real} \"$@\"\n",
                log = quote(&log.to_string_lossy()),
                real = quote(&real.to_string_lossy()),
            );
            let file = bin.join(name);
            fs::write(&file, script)?;
            fs::set_permissions(&file, fs::Permissions::from_mode(0o755))?;
        }
        Ok(NixWrapper { bin, log })
    }

    /// `PATH` with the wrappers first.
    pub fn path_env(&self) -> Result<std::ffi::OsString> {
        let rest = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(self.bin.clone()).chain(std::env::split_paths(&rest));
        std::env::join_paths(dirs).context("cannot build PATH with the nix wrapper")
    }

    /// The calls logged since the last `take_calls`, oldest first, each as
    /// its argv (command name first); clears the log.
    pub fn take_calls(&self) -> Result<Vec<Vec<String>>> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.log)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        files.sort();
        let mut calls = Vec::new();
        for file in files {
            let bytes = fs::read(&file)?;
            fs::remove_file(&file)?;
            let text = String::from_utf8_lossy(&bytes);
            let argv: Vec<String> = text
                .strip_suffix('\0')
                .unwrap_or(&text)
                .split('\0')
                .map(str::to_string)
                .collect();
            if argv.is_empty() {
                bail!("empty call log {}", file.display());
            }
            calls.push(argv);
        }
        Ok(calls)
    }
}
