//! Validated high-level settings: the command line checked and turned into
//! typed values the rest of the host role uses without checking again. Each
//! flag with a small language of its own has its parser beside this file
//! ([`forward`], [`memory`], [`mount`], [`disk`]), each returning one-line
//! errors that say what was wrong and what to write instead; [`path`] makes
//! the command line's paths absolute.

pub mod disk;
pub mod forward;
pub mod memory;
pub mod mount;
pub mod path;

use anyhow::{bail, Result};
use camino::Utf8PathBuf;

use crate::cli::{HostArgs, NixFlags};
use crate::host::read::Host;
use crate::host::shares::{self, MountFlag};
use disk::{DiskChoice, DiskFlag};
use forward::Forward;
use memory::Memory;
use path::absolute;

/// What a run does; the flags that choose it exclude each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Build and start the VM.
    Run,
    /// `--build-only`: build, print the run script.
    BuildOnly,
    /// `--dry-run`: print the commands a run would execute, or with
    /// `--build-only` the build alone.
    DryRun { build_only: bool },
    /// `--attach`: a session in the running VM; nothing builds.
    Attach,
}

/// What names the configuration on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Config {
    /// CONFIG: a module file, a flake reference, or a build result.
    Given(String),
    /// `--flake URI`: a flake reference, with or without `#NAME`.
    Flake(String),
}

/// Everything the host role needs from the command line, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// CONFIG or `--flake`, as typed; resolved by `host::build::resolve`.
    pub config: Option<Config>,
    /// Flags passed through to every `nix build`.
    pub nix: NixFlags,
    pub guest_system: Option<String>,
    pub host_system: Option<String>,
    pub mode: Mode,
    /// `--out-link`, absolute.
    pub out_link: Option<Utf8PathBuf>,
    pub memory: Option<Memory>,
    pub cores: Option<u32>,
    pub forwards: Vec<Forward>,
    pub mounts: Vec<MountFlag>,
    pub no_home: bool,
    pub disk: DiskChoice,
    pub command: Option<String>,
    pub qemu_args: Vec<String>,
}

/// The variable through which the user chooses the disk image themselves.
pub const DISK_IMAGE_ENV: &str = "NIX_DISK_IMAGE";

impl Settings {
    /// Checks the command line of a run on `host` (relative paths resolve
    /// against its cwd).
    pub fn from_args(args: HostArgs, host: &Host) -> Result<Settings> {
        let cwd = &host.cwd;
        if args.attach && args.nix != NixFlags::default() {
            bail!("--attach evaluates nothing: drop the flags for nix");
        }
        let mode = if args.attach {
            Mode::Attach
        } else if args.dry_run {
            Mode::DryRun {
                build_only: args.build_only,
            }
        } else if args.build_only {
            Mode::BuildOnly
        } else {
            Mode::Run
        };
        let forwards = args
            .forward
            .iter()
            .map(|spec| Forward::parse(spec))
            .collect::<Result<Vec<_>>>()?;
        let mounts = args
            .mount
            .iter()
            .map(|spec| mount::parse(spec, cwd))
            .collect::<Result<Vec<_>>>()?;
        shares::check_flags(&mounts)?;
        let disk = match (args.ephemeral, args.disk) {
            (true, _) => DiskChoice::Ephemeral,
            (false, Some(path)) => DiskChoice::Given(DiskFlag {
                path: absolute(cwd, &path),
                spec: path.into_string(),
            }),
            (false, None) => DiskChoice::Default,
        };
        // Both choose the image: silently ignoring either would surprise
        // the one who set it.
        if let Some(flag) = disk
            .flag()
            .filter(|_| host.env.contains_key(DISK_IMAGE_ENV))
        {
            bail!("{flag} and {DISK_IMAGE_ENV} both choose the disk image; drop one");
        }
        Ok(Settings {
            config: args
                .flake
                .map(Config::Flake)
                .or(args.config.map(Config::Given)),
            nix: args.nix,
            guest_system: args.guest_system,
            host_system: args.host_system,
            mode,
            out_link: args.out_link.map(|p| absolute(cwd, &p)),
            memory: args.memory.as_deref().map(Memory::parse).transpose()?,
            cores: args.cores.as_deref().map(parse_cores).transpose()?,
            forwards,
            mounts,
            no_home: args.no_home,
            disk,
            command: args.command,
            qemu_args: args.qemu_args,
        })
    }

    /// The checks that look at the machine (ports, files), for a run that
    /// starts a VM, before anything is built so that their errors come
    /// first.
    pub fn check_host(&self) -> Result<()> {
        for forward in &self.forwards {
            forward.check_free()?;
        }
        if let DiskChoice::Given(disk) = &self.disk {
            disk.check()?;
        }
        Ok(())
    }
}

/// `--cores`: a positive integer.
fn parse_cores(spec: &str) -> Result<u32> {
    match spec.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("--cores {spec:?} is not a positive number of CPUs; write e.g. --cores 2"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::test_data::{env, host, try_settings, try_settings_on};

    fn err(args: &[&str]) -> String {
        format!("{:#}", try_settings(args).unwrap_err())
    }

    #[test]
    fn cores_are_a_positive_number() {
        assert_eq!(parse_cores("4").unwrap(), 4);
        for bad in ["0", "-1", "two", ""] {
            assert!(format!("{:#}", parse_cores(bad).unwrap_err())
                .contains("is not a positive number of CPUs"));
        }
    }

    #[test]
    fn the_mode_follows_the_flags_and_dry_run_may_show_a_build_alone() {
        let mode = |args: &[&str]| try_settings(args).unwrap().mode;
        assert_eq!(mode(&[]), Mode::Run);
        assert_eq!(mode(&["--build-only"]), Mode::BuildOnly);
        assert_eq!(mode(&["--dry-run"]), Mode::DryRun { build_only: false });
        assert_eq!(
            mode(&["--dry-run", "--build-only"]),
            Mode::DryRun { build_only: true }
        );
    }

    #[test]
    fn one_disk_choice() {
        let disk = |args: &[&str]| try_settings(args).unwrap().disk;
        assert_eq!(disk(&[]), DiskChoice::Default);
        assert_eq!(disk(&["--ephemeral"]), DiskChoice::Ephemeral);
        assert_eq!(
            disk(&["--disk", "d.qcow2"]),
            DiskChoice::Given(DiskFlag {
                spec: "d.qcow2".to_owned(),
                path: "/w/d.qcow2".into()
            })
        );
        assert!(err(&["--disk", "d", "--ephemeral"]).contains("cannot be used with"));
    }

    #[test]
    fn a_disk_flag_beside_nix_disk_image_is_refused() {
        let user = host(env(&[("NIX_DISK_IMAGE", "/mine.qcow2")]));
        for (args, flag) in [
            (&["--ephemeral"][..], "--ephemeral"),
            (&["--disk", "/d"][..], "--disk"),
        ] {
            assert_eq!(
                format!("{:#}", try_settings_on(&user, args).unwrap_err()),
                format!("{flag} and NIX_DISK_IMAGE both choose the disk image; drop one")
            );
        }
        assert!(try_settings_on(&user, &[]).is_ok());
    }

    #[test]
    fn the_flake_flag_and_config_name_the_configuration_apart() {
        assert_eq!(
            try_settings(&["--flake", "."]).unwrap().config,
            Some(Config::Flake(".".into()))
        );
        assert_eq!(
            try_settings(&[".#vm"]).unwrap().config,
            Some(Config::Given(".#vm".into()))
        );
    }
}
