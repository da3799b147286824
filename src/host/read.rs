//! The host as nixos-shell finds it, read once at start and carried: the
//! environment, the current directory, the user, home, this machine's
//! platform and whether it runs in a terminal. Nothing else reads them again, so
//! every part of a run sees the same values, and tests build one by hand.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::host::terminal;
use crate::schema::facts::CommandIo;

/// What the host is like for this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The environment's UTF-8 variables (others are passed on untouched by
    /// the processes nixos-shell starts, but nixos-shell reads none).
    pub env: BTreeMap<String, String>,
    /// The directory nixos-shell was started in.
    pub cwd: Utf8PathBuf,
    /// `$USER`, else `$LOGNAME`, else `root`.
    pub user: String,
    /// `$HOME`, absolute, else `/root`.
    pub home: Utf8PathBuf,
    /// This machine's Nix platform, e.g. `x86_64-linux`.
    pub system: String,
    /// Whether nixos-shell has a controlling terminal: the VM's console is
    /// then that terminal and follows its size (`compose::ports`).
    pub terminal: bool,
    /// Whether nixos-shell's standard input and output are both a terminal:
    /// then `--command` runs on the console, interactive; otherwise its
    /// streams are nixos-shell's own, byte for byte.
    pub interactive: bool,
}

impl Host {
    /// Reads the host; fails with one line on what nixos-shell cannot work
    /// with (a current directory or HOME that is not UTF-8).
    pub fn read() -> Result<Host> {
        let cwd = std::env::current_dir().context("could not read the current directory")?;
        let cwd = Utf8PathBuf::from_path_buf(cwd).map_err(|p| {
            anyhow::anyhow!(
                "the current directory {} is not UTF-8; run nixos-shell elsewhere",
                p.display()
            )
        })?;
        if let Some(home) = std::env::var_os("HOME") {
            if home.to_str().is_none() {
                bail!(
                    "HOME ({}) is not UTF-8; set HOME to a UTF-8 path",
                    Utf8Path::new(&home.to_string_lossy())
                );
            }
        }
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        Ok(Host::from_parts(env, cwd, terminal::exists(), interactive))
    }

    /// The host of an environment and a directory; pure.
    pub fn from_parts(
        env: BTreeMap<String, String>,
        cwd: Utf8PathBuf,
        terminal: bool,
        interactive: bool,
    ) -> Host {
        let user = env
            .get("USER")
            .or_else(|| env.get("LOGNAME"))
            .filter(|u| !u.is_empty())
            .cloned()
            .unwrap_or_else(|| "root".to_owned());
        let home = env
            .get("HOME")
            .filter(|h| h.starts_with('/'))
            .map_or_else(|| Utf8PathBuf::from("/root"), Utf8PathBuf::from);
        Host {
            env,
            cwd,
            user,
            home,
            system: nix_system(std::env::consts::ARCH, std::env::consts::OS),
            terminal,
            interactive,
        }
    }
}

impl Host {
    /// Where `--command`'s streams go in this run.
    pub fn command_io(&self) -> CommandIo {
        if self.interactive {
            CommandIo::Console
        } else {
            CommandIo::Ports
        }
    }
}

/// Rust's names for a platform in Nix's spelling (macOS is `darwin`).
fn nix_system(arch: &str, os: &str) -> String {
    let os = if os == "macos" { "darwin" } else { os };
    format!("{arch}-{os}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::test_data::env;

    #[test]
    fn user_and_home_have_one_rule_each() {
        let host = |pairs| Host::from_parts(env(pairs), "/w".into(), false, true);
        assert_eq!(host(&[("USER", "a"), ("LOGNAME", "b")]).user, "a");
        assert_eq!(host(&[("LOGNAME", "b")]).user, "b");
        assert_eq!(host(&[("USER", "")]).user, "root");
        assert_eq!(host(&[("HOME", "/home/a")]).home, "/home/a");
        assert_eq!(host(&[("HOME", "relative")]).home, "/root");
        assert_eq!(host(&[]).home, "/root");
    }

    #[test]
    fn platforms_in_nix_spelling() {
        assert_eq!(nix_system("aarch64", "macos"), "aarch64-darwin");
        assert_eq!(nix_system("x86_64", "linux"), "x86_64-linux");
    }
}
