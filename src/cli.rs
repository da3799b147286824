//! The command lines of both roles, as clap structs and nothing else.
//! Validation into high-level settings happens in `host::settings`.

use camino::Utf8PathBuf;
use clap::{ArgAction, Parser};

/// `nixos-shell [OPTIONS] [CONFIG] [-- QEMU_ARGS...]`
#[derive(Debug, Parser)]
#[command(
    name = "nixos-shell",
    version,
    about = "Spawn a headless NixOS VM from a module or a flake in the current directory, \
             with its console in this terminal",
    after_help = "CONFIG: a module file (vm.nix, some-module.nix) or a flake reference with an \
                  attribute (.#vm, path:/x#vm, github:owner/repo#vm). Without CONFIG: the `vm` \
                  attribute of ./flake.nix, else ./vm.nix.\n\
                  End the VM with `Ctrl-a x` or `poweroff`."
)]
pub struct HostArgs {
    /// A module file, a flake reference with an attribute (`.#vm`), or a
    /// build result of `system.build.nixos-shell` (`./result`).
    #[arg(help_heading = "Run a VM", value_name = "CONFIG")]
    pub config: Option<String>,

    /// A flake reference with an attribute, instead of CONFIG.
    #[arg(
        help_heading = "Run a VM",
        long,
        value_name = "URI",
        conflicts_with = "config"
    )]
    pub flake: Option<String>,

    /// Arguments handed to QEMU after everything else (after `--`).
    #[arg(help_heading = "Run a VM", last = true, value_name = "QEMU_ARGS")]
    pub qemu_args: Vec<String>,

    // --- as in the original ------------------------------------------------
    /// The guest's platform, e.g. `x86_64-linux`.
    #[arg(help_heading = "Build", long, value_name = "SYS")]
    pub guest_system: Option<String>,
    /// The host's platform QEMU runs on (a Linux guest from a darwin host).
    #[arg(help_heading = "Build", long, value_name = "SYS")]
    pub host_system: Option<String>,
    /// Build, print the run script's path and start nothing.
    #[arg(help_heading = "Build", long)]
    pub build_only: bool,
    /// Keep the build result as a GC root at PATH.
    #[arg(help_heading = "Build", long, value_name = "PATH")]
    pub out_link: Option<Utf8PathBuf>,

    // --- new ---------------------------------------------------------------
    /// Print the nix command and the VM command with its environment (with
    /// --build-only, the nix command); run nothing.
    #[arg(help_heading = "Build", long)]
    pub dry_run: bool,
    /// The VM's memory: MiB (`2048`) or with a unit (`512M`, `2G`).
    #[arg(help_heading = "Run a VM", long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// The number of virtual CPUs.
    #[arg(help_heading = "Run a VM", long, value_name = "N")]
    pub cores: Option<String>,
    /// Forward a host port to the guest: `[ADDR:]HOSTPORT:GUESTPORT[/udp]`;
    /// binds 127.0.0.1 unless ADDR is given. Repeatable.
    #[arg(help_heading = "Run a VM", long, value_name = "SPEC")]
    pub forward: Vec<String>,
    /// Share a host directory: `HOST[:GUEST][:ro]` (GUEST defaults to HOST). Repeatable.
    #[arg(help_heading = "Run a VM", long, value_name = "SPEC")]
    pub mount: Vec<String>,
    /// Do not share the home directory.
    #[arg(help_heading = "Run a VM", long)]
    pub no_home: bool,
    /// Leave the guest's nix on its own store: no nix-daemon of the host's
    /// for the guest's sessions.
    #[arg(help_heading = "Run a VM", long)]
    pub no_host_nix: bool,
    /// Use this disk image (created when missing).
    #[arg(
        help_heading = "Run a VM",
        long,
        value_name = "PATH",
        conflicts_with = "ephemeral"
    )]
    pub disk: Option<Utf8PathBuf>,
    /// Put the disk image in a private temporary directory, deleted afterwards.
    #[arg(help_heading = "Run a VM", long)]
    pub ephemeral: bool,
    /// Start the VM in the background: build as a run does, return once
    /// the VM answers, and leave it running without a terminal.
    #[arg(
        help_heading = "VMs beside you",
        long,
        conflicts_with_all = ["attach", "stop", "command", "build_only", "dry_run"]
    )]
    pub detach: bool,
    /// List the running VMs: name, configuration, start, whether detached,
    /// disk image, forwards, shares.
    #[arg(
        help_heading = "VMs beside you",
        long,
        conflicts_with_all = [
            "config", "flake", "attach", "stop", "detach", "command", "build_only", "dry_run",
            "out_link", "memory", "cores", "forward", "mount", "no_home", "no_host_nix", "disk",
            "ephemeral", "qemu_args", "guest_system", "host_system",
        ]
    )]
    pub list: bool,
    /// With --list: JSON, for scripts.
    #[arg(help_heading = "VMs beside you", long)]
    pub json: bool,
    /// Stop the running VM of CONFIG: power it off, end QEMU if it does
    /// not in time, and wait until everything is gone.
    #[arg(
        help_heading = "VMs beside you",
        long,
        conflicts_with_all = [
            "attach", "command", "build_only", "dry_run", "out_link", "memory", "cores",
            "forward", "mount", "no_home", "no_host_nix", "disk", "ephemeral", "qemu_args",
            "guest_system", "host_system",
        ]
    )]
    pub stop: bool,
    /// Attach to the running VM of CONFIG: a login shell there, or with -c
    /// CMD that command; leaving it leaves the VM running.
    #[arg(
        help_heading = "VMs beside you",
        long,
        conflicts_with_all = [
            "build_only", "dry_run", "out_link", "memory", "cores", "forward", "mount",
            "no_home", "no_host_nix", "disk", "ephemeral", "qemu_args", "guest_system", "host_system",
        ]
    )]
    pub attach: bool,
    /// Build CONFIG and switch its running VM to the new system, without a
    /// reboot (`switch-to-configuration test`); exits with its status.
    #[arg(
        long,
        help_heading = "Change the running VM",
        conflicts_with_all = [
            "attach", "build_only", "dry_run", "out_link", "memory", "cores", "forward", "mount",
            "no_home", "no_host_nix", "disk", "ephemeral", "qemu_args", "command", "detach",
            "list", "stop", "reset", "console",
        ]
    )]
    pub switch: bool,
    /// With --switch: stay, and switch again on each save of the
    /// configuration's files; Ctrl-C ends the watch, not the VM.
    // Checked in host::settings: clap's own line for a missing `requires`
    // does not name the flag once made one line.
    #[arg(long, help_heading = "Change the running VM")]
    pub watch: bool,
    /// With --switch: when the new build needs a restart (a new kernel,
    /// QEMU's options, ...), restart the VM with it instead, in place (same
    /// terminal or still detached, same disk image and run-time flags); a
    /// build that needs none is switched as usual.
    // Not with --watch: a watch that reboots on a save is a reboot loop
    // nobody asked for; `--switch --restart` once does it.
    #[arg(long, help_heading = "Change the running VM", conflicts_with = "watch")]
    pub restart: bool,
    /// With --attach: the console of the detached VM of CONFIG, its log so
    /// far and then what it adds; a key or Ctrl-C leaves it running.
    #[arg(long, help_heading = "VMs beside you", conflicts_with = "command")]
    pub console: bool,
    /// Delete the disk image of CONFIG in the state directory (with its
    /// lock and records), saying which file; refused while its VM runs.
    #[arg(
        help_heading = "VMs beside you",
        long,
        conflicts_with_all = [
            "attach", "stop", "detach", "list", "command", "build_only", "dry_run", "out_link",
            "memory", "cores", "forward", "mount", "no_home", "no_host_nix", "disk", "ephemeral",
            "qemu_args", "guest_system", "host_system",
        ]
    )]
    pub reset: bool,
    /// Run CMD in the VM in the current directory, power off, exit with its status.
    // Hyphen values: otherwise clap's tip for `-c -x` is `-- -x`, which here
    // would hand `-x` to QEMU.
    #[arg(
        help_heading = "Run a VM",
        short = 'c',
        long,
        value_name = "CMD",
        allow_hyphen_values = true
    )]
    pub command: Option<String>,

    /// Flags passed through to every `nix build` (listed last in --help,
    /// under their own heading).
    #[command(flatten)]
    pub nix: NixFlags,

    // --- hidden: for packagers (host::generate) -----------------------------
    /// Print shell completions for SHELL (bash, zsh, fish, elvish, powershell)
    /// and exit.
    #[arg(long, value_name = "SHELL", hide = true, exclusive = true)]
    pub generate_completions: Option<clap_complete::Shell>,
    /// Print the man page (roff) and exit.
    #[arg(long, hide = true, exclusive = true)]
    pub generate_man_page: bool,

    // --- hidden: a detached VM's holder (host::detach) -----------------------
    /// Hold the VM a `--detach` built: its session directory, the identity
    /// of its build, the pipe to tell it the guest answers on, its console's
    /// log.
    #[arg(long, hide = true, num_args = 4, value_names = ["DIR", "IDENTITY", "FD", "LOG"],
          conflicts_with_all = ["attach", "stop", "detach", "command", "build_only", "dry_run"])]
    pub hold: Vec<String>,
}

/// The flags nixos-shell passes through to `nix build`, typed until the
/// command line is made (`host::nix::command` renders them), so that code asks
/// `flags.impure` instead of searching argument strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "Passed to nix")]
pub struct NixFlags {
    /// Add a path to the Nix search path (nix -I).
    #[arg(short = 'I', value_name = "PATH")]
    pub include: Vec<String>,
    /// Remote builders (nix --builders).
    #[arg(long, value_name = "SPEC")]
    pub builders: Option<String>,
    /// Set a Nix setting (nix --option NAME VALUE); repeatable.
    #[arg(long, num_args = 2, value_names = ["NAME", "VALUE"], action = ArgAction::Append)]
    pub option: Vec<String>,
    /// Show the evaluation trace on errors.
    #[arg(long)]
    pub show_trace: bool,
    /// Print full build logs.
    #[arg(short = 'L', long)]
    pub print_build_logs: bool,
    /// More verbose nix output; repeatable.
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Keep going when some derivations fail.
    #[arg(short = 'k', long)]
    pub keep_going: bool,
    /// Keep the build directories of failed builds.
    #[arg(short = 'K', long)]
    pub keep_failed: bool,
    /// Build from source when a substitute fails.
    #[arg(long)]
    pub fallback: bool,
    /// Repair corrupted store paths.
    #[arg(long)]
    pub repair: bool,
    /// Refetch flake inputs and remote files.
    #[arg(long)]
    pub refresh: bool,
    /// Allow impure evaluation.
    #[arg(long)]
    pub impure: bool,
    /// Do not use the network.
    #[arg(long)]
    pub offline: bool,
}

/// `nixos-shell-guest`: the guest role, one unit of the module per step.
#[derive(Debug, Parser)]
#[command(
    name = "nixos-shell-guest",
    version,
    about = "Guest role of nixos-shell: applies the host facts the CLI hands the VM when it starts"
)]
pub struct GuestArgs {
    #[command(subcommand)]
    pub step: GuestStep,
}

/// What one unit of the module runs.
#[derive(Debug, clap::Subcommand)]
pub enum GuestStep {
    /// Mount the session share and the shares, install root's keys and
    /// write root's login environment: early in the boot, before any
    /// service that may use a share.
    Prepare,
    /// Run the host's --command (if it gave one) on CONSOLE or on the
    /// virtio ports, hand back its status and power off.
    Command {
        /// The console the command runs on (`nixos-shell.console.device`).
        #[arg(long)]
        console: Utf8PathBuf,
    },
    /// Keep CONSOLE at the host terminal's size while the VM runs.
    FollowResizes {
        /// The console to size (`nixos-shell.console.device`).
        #[arg(long)]
        console: Utf8PathBuf,
    },
    /// Serve `nixos-shell --attach` sessions while the VM runs.
    ServeAttach,
    /// Activate the system TOPLEVEL (`nixos-shell --switch`, through an
    /// attach session): `switch-to-configuration test` in a transient
    /// unit, its output here, its exit status.
    Switch {
        /// The system to switch to, a store path the host has built.
        toplevel: Utf8PathBuf,
        /// Names the activation: one that runs or ran under this name is
        /// followed rather than started again.
        #[arg(long)]
        id: Option<String>,
        /// Follow its standard output from this byte on.
        #[arg(long, default_value_t = 0)]
        stdout: u64,
        /// Follow its standard error from this byte on.
        #[arg(long, default_value_t = 0)]
        stderr: u64,
        /// The registration of TOPLEVEL's closure, loaded into the guest's
        /// Nix database before the activation.
        #[arg(long)]
        registration: Option<Utf8PathBuf>,
    },
    /// Run PROGRAM (a system's switch-to-configuration) as `test`, its
    /// output and exit status recorded in RECORD (what `switch` starts, in
    /// a transient unit, and follows).
    #[command(hide = true)]
    Activate {
        record: Utf8PathBuf,
        program: Utf8PathBuf,
    },
    /// Relay the guest's nix clients to a nix-daemon on the host while the
    /// VM runs.
    ServeHostNix,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_clap_definition_is_consistent() {
        HostArgs::command().debug_assert();
    }

    #[test]
    fn trailing_arguments_go_to_qemu_and_options_take_pairs() {
        let args = HostArgs::try_parse_from([
            "nixos-shell",
            "--option",
            "cores",
            "4",
            "-vv",
            ".#vm",
            "--",
            "-m",
            "1G",
        ])
        .unwrap();
        assert_eq!(args.config.as_deref(), Some(".#vm"));
        assert_eq!(args.nix.option, ["cores", "4"]);
        assert_eq!(args.nix.verbose, 2);
        assert_eq!(args.qemu_args, ["-m", "1G"]);
    }

    #[test]
    fn version_is_a_flag_not_a_file() {
        let err = HostArgs::try_parse_from(["nixos-shell", "--version"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
    }
}
