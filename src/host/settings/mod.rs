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
use crate::host::generate::Page;
use crate::host::read::Host;
use disk::{DiskChoice, DiskFlag};
use forward::Forward;
use memory::Memory;
pub use mount::MountFlag;
use path::absolute;

/// What this invocation does, each mode with only the values it uses; the
/// flags that choose it exclude each other. A mode to come plugs in here
/// with its own values: one that names a running VM by CONFIG without
/// building holds a [`Target`] (as [`Attach`] does); one that builds and
/// then acts on a running VM holds a [`Build`] and a [`Target`]; a run that
/// starts the VM detached is a [`Run`] with one more value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `--generate-completions` or `--generate-man-page`: for packagers.
    Generate(Page),
    /// `--attach`: a session in the running VM; nothing builds.
    Attach(Attach),
    /// `--stop`: the running VM stopped; nothing builds.
    Stop(Target),
    /// `--attach --console`: the console of a detached VM, followed.
    Console(Target),
    /// `--reset`: the configuration's state disk image deleted.
    Reset(Target),
    /// `--list`: the running VMs, as a table or `--json`.
    List { json: bool },
    /// `--detach`: a run whose VM goes on without this terminal.
    Detach(Run),
    /// A detached VM's holder, started by `--detach` (hidden `--hold`).
    Hold(Run, Hold),
    /// `--build-only`: build, print the run script.
    BuildOnly(Build),
    /// `--dry-run`: print what the other mode would execute.
    DryRun(Dry),
    /// Build and start the VM.
    Run(Run),
    /// `--switch`: build, then switch the running VM to what was built.
    Switch(Switch),
}

/// `--switch`'s values: the build, the VM it switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub build: Build,
    pub target: Target,
    /// `--watch`: switch again on each save.
    pub watch: bool,
    /// `--restart`: a build that needs a restart restarts the VM with it.
    pub restart: bool,
}

/// What `--dry-run` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dry {
    /// `--dry-run --build-only`: the builds alone.
    BuildOnly(Build),
    /// The builds and the VM command of this run.
    Run(Run),
}

/// What names the configuration on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Config {
    /// CONFIG: a module file, a flake reference, or a build result.
    Given(String),
    /// `--flake URI`: a flake reference, with or without `#NAME`.
    Flake(String),
}

/// The VM a mode acts on by its CONFIG, found among the running ones
/// without building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// CONFIG or `--flake`, as typed; resolved by `host::nix::resolve`.
    pub config: Option<Config>,
}

/// `--attach`'s values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attach {
    pub target: Target,
    /// `--command`: run this instead of a login shell.
    pub command: Option<String>,
}

/// What a build needs: what to build and nix's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// CONFIG or `--flake`, as typed; resolved by `host::nix::resolve`.
    pub config: Option<Config>,
    /// Flags passed through to every `nix build`.
    pub nix: NixFlags,
    pub guest_system: Option<String>,
    pub host_system: Option<String>,
    /// `--out-link`, absolute.
    pub out_link: Option<Utf8PathBuf>,
}

/// A run: its build and the VM's own values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub build: Build,
    pub vm: VmSettings,
}

/// What a detached VM's holder takes over from the `--detach` that built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The session directory, with the build's out-link in it.
    pub session: Utf8PathBuf,
    /// The text of the identity the build was of.
    pub identity: String,
    /// The inherited write end of the pipe the `--detach` waits on.
    pub ready_fd: i32,
    /// The console's log, which the `--detach` chose and holds locked
    /// (`host::detach`).
    pub console_log: Utf8PathBuf,
}

impl Hold {
    /// The hidden `--hold DIR IDENTITY FD LOG`, when given.
    fn from_args(values: &[String]) -> Result<Option<Hold>> {
        let [session, identity, fd, log] = values else {
            return Ok(None);
        };
        let Ok(ready_fd) = fd.parse() else {
            bail!("--hold is nixos-shell's own: its FD {fd} is not a number");
        };
        Ok(Some(Hold {
            session: session.into(),
            identity: identity.clone(),
            ready_fd,
            console_log: log.into(),
        }))
    }
}

/// The command line's say in the VM's composition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSettings {
    pub memory: Option<Memory>,
    pub cores: Option<u32>,
    pub forwards: Vec<Forward>,
    pub mounts: Vec<MountFlag>,
    pub no_home: bool,
    /// `--no-host-nix`: the guest's nix keeps its own store.
    pub no_host_nix: bool,
    pub disk: DiskChoice,
    pub command: Option<String>,
    pub qemu_args: Vec<String>,
}

/// The variable through which the user chooses the disk image themselves.
pub const DISK_IMAGE_ENV: &str = "NIX_DISK_IMAGE";

impl Mode {
    /// Checks the command line of a run on `host` (relative paths resolve
    /// against its cwd) into the mode it asks for.
    pub fn from_args(args: HostArgs, host: &Host) -> Result<Mode> {
        if let Some(page) = Page::requested(&args) {
            return Ok(Mode::Generate(page));
        }
        if args.attach && args.nix != NixFlags::default() {
            bail!("--attach evaluates nothing: drop the flags for nix");
        }
        // Said here, not by clap's `requires`, whose one line would not
        // name the flag that is missing.
        if args.console && !args.attach {
            bail!("--console goes with --attach: nixos-shell --attach --console [CONFIG]");
        }
        if args.json && !args.list {
            bail!("--json goes with --list: nixos-shell --list --json");
        }
        if args.stop && args.nix != NixFlags::default() {
            bail!("--stop evaluates nothing: drop the flags for nix");
        }
        if args.list {
            if args.nix != NixFlags::default() {
                bail!("--list evaluates nothing: drop the flags for nix");
            }
            return Ok(Mode::List { json: args.json });
        }
        let (attach, dry_run, build_only) = (args.attach, args.dry_run, args.build_only);
        let (switch, watch, restart) = (args.switch, args.watch, args.restart);
        if watch && !switch {
            bail!("--watch switches the running VM on each save: use it with --switch");
        }
        if restart && !switch {
            bail!("--restart restarts the running VM with a new build: use it with --switch");
        }
        let vm = VmSettings::from_args(&args, host)?;
        let config = args
            .flake
            .map(Config::Flake)
            .or(args.config.map(Config::Given));
        if args.stop {
            return Ok(Mode::Stop(Target { config }));
        }
        if args.reset {
            if args.nix != NixFlags::default() {
                bail!("--reset evaluates nothing: drop the flags for nix");
            }
            return Ok(Mode::Reset(Target { config }));
        }
        if attach && args.console {
            return Ok(Mode::Console(Target { config }));
        }
        if attach {
            let target = Target { config };
            let command = vm.command;
            return Ok(Mode::Attach(Attach { target, command }));
        }
        let build = Build {
            config,
            nix: args.nix,
            guest_system: args.guest_system,
            host_system: args.host_system,
            out_link: args.out_link.map(|p| absolute(&host.cwd, &p)),
        };
        if switch {
            let target = Target {
                config: build.config.clone(),
            };
            return Ok(Mode::Switch(Switch {
                build,
                target,
                watch,
                restart,
            }));
        }
        let hold = Hold::from_args(&args.hold)?;
        if args.detach || hold.is_some() {
            let run = Run { build, vm };
            return Ok(match hold {
                Some(hold) => Mode::Hold(run, hold),
                None => Mode::Detach(run),
            });
        }
        Ok(match (dry_run, build_only) {
            (true, true) => Mode::DryRun(Dry::BuildOnly(build)),
            (true, false) => Mode::DryRun(Dry::Run(Run { build, vm })),
            (false, true) => Mode::BuildOnly(build),
            (false, false) => Mode::Run(Run { build, vm }),
        })
    }
}

impl VmSettings {
    /// The VM's flags of `args`, checked.
    fn from_args(args: &HostArgs, host: &Host) -> Result<VmSettings> {
        let cwd = &host.cwd;
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
        mount::check_flags(&mounts)?;
        let disk = match (args.ephemeral, &args.disk) {
            (true, _) => DiskChoice::Ephemeral,
            (false, Some(path)) => DiskChoice::Given(DiskFlag {
                path: absolute(cwd, path),
                spec: path.to_string(),
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
        Ok(VmSettings {
            memory: args.memory.as_deref().map(Memory::parse).transpose()?,
            cores: args.cores.as_deref().map(parse_cores).transpose()?,
            forwards,
            mounts,
            no_home: args.no_home,
            no_host_nix: args.no_host_nix,
            disk,
            command: args.command.clone(),
            qemu_args: args.qemu_args.clone(),
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
    use crate::host::test_data::{env, host, run_settings, try_mode, try_mode_on};

    fn err(args: &[&str]) -> String {
        format!("{:#}", try_mode(args).unwrap_err())
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
        let mode = |args: &[&str]| try_mode(args).unwrap();
        let run = run_settings(&[]);
        assert_eq!(mode(&[]), Mode::Run(run.clone()));
        assert_eq!(mode(&["--build-only"]), Mode::BuildOnly(run.build.clone()));
        assert_eq!(mode(&["--dry-run"]), Mode::DryRun(Dry::Run(run.clone())));
        assert_eq!(
            mode(&["--dry-run", "--build-only"]),
            Mode::DryRun(Dry::BuildOnly(run.build))
        );
        assert_eq!(
            mode(&["--attach", "-c", "id"]),
            Mode::Attach(Attach {
                target: Target { config: None },
                command: Some("id".to_owned())
            })
        );
        assert_eq!(
            mode(&["--generate-man-page"]),
            Mode::Generate(Page::ManPage)
        );
    }

    #[test]
    fn restart_goes_with_switch_and_not_with_watch() {
        let Mode::Switch(switch) = try_mode(&["--switch", "--restart"]).unwrap() else {
            panic!("not a switch")
        };
        assert!(switch.restart && !switch.watch);
        assert_eq!(
            err(&["--restart"]),
            "--restart restarts the running VM with a new build: use it with --switch"
        );
        assert!(err(&["--switch", "--watch", "--restart"]).contains("cannot be used with"));
    }

    #[test]
    fn one_disk_choice() {
        let disk = |args: &[&str]| run_settings(args).vm.disk;
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
                format!("{:#}", try_mode_on(&user, args).unwrap_err()),
                format!("{flag} and NIX_DISK_IMAGE both choose the disk image; drop one")
            );
        }
        assert!(try_mode_on(&user, &[]).is_ok());
    }

    #[test]
    fn the_flake_flag_and_config_name_the_configuration_apart() {
        assert_eq!(
            run_settings(&["--flake", "."]).build.config,
            Some(Config::Flake(".".into()))
        );
        assert_eq!(
            run_settings(&[".#vm"]).build.config,
            Some(Config::Given(".#vm".into()))
        );
    }
}
