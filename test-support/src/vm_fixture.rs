//! The fixture flake of the CLI-driven VM tests: a flake whose
//! `nixosConfigurations.vm` is our flake's `lib.mkVm` with the real NixOS
//! module, evaluated with nixpkgs' real module system against the stand-in
//! nixpkgs of one [`Era`] ([`crate::our_flake`]). So the module's own
//! `system.build.nixos-shell` wraps the harness' run script of that era and
//! writes the manifest the CLI reads: the module-to-CLI contract is tested
//! end to end. The VM shares home and one read-only extra directory. The
//! benchmark's boot figures start the same VM.
//!
//! Beside the [`NixFixture`] tree (`work/` holds the flake, `home/` is HOME,
//! `tmp/` TMPDIR):
//!
//! ```text
//! home/project/    the cwd nixos-shell starts in (inside HOME, as a user's is)
//! data/            an extraMount of the module, read-only at /srv/data
//! extra/           a directory for --mount
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::nix_fixture::NixFixture;
use crate::our_flake::OurFlake;
use crate::template::fill;
use crate::vm::{self, Console, Era, Permit, Piped, Pty, RunScript};
use crate::Paths;

/// The extra mount the module declares.
pub const DATA_GUEST_PATH: &str = "/srv/data";

/// `nixos-shell.mounts.protocol`: how the CLI's shares reach the guest,
/// whatever the run script's era does with its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shares {
    Virtiofs,
    NineP,
}

impl Shares {
    /// The option's value, and the guest's file system type.
    pub fn name(self) -> &'static str {
        match self {
            Shares::Virtiofs => "virtiofs",
            Shares::NineP => "9p",
        }
    }
}

/// How the fixture's module shares: the protocol (`None`: the module's
/// default) and the home's cache mode.
#[derive(Debug, Clone, Copy)]
pub struct ShareOptions {
    pub protocol: Option<Shares>,
    pub cache: &'static str,
}

impl Default for ShareOptions {
    /// The module's default protocol; uncached, so that the host sees the
    /// guest's writes at once.
    fn default() -> ShareOptions {
        ShareOptions {
            protocol: None,
            cache: "none",
        }
    }
}

/// The system of a [`Fixture::switchable`]'s configuration.
#[derive(Debug, Clone)]
pub struct System {
    /// What its switch-to-configuration prints and writes to
    /// /run/switched in the guest; a different mark, a different system.
    pub mark: &'static str,
    /// The status its switch-to-configuration exits with.
    pub status: u8,
    /// Names what its `kernel` links to.
    pub kernel: &'static str,
    /// `virtualisation.mountHostNixStore`.
    pub host_store: bool,
    /// `virtualisation.memorySize` in MiB: the run script's `-m`.
    pub memory: u64,
    /// The configuration fails to evaluate.
    pub broken: bool,
    /// Its switch-to-configuration restarts the guest's attach server
    /// halfway, as `systemctl restart nixos-shell-attach` would: every
    /// process of the server's unit ends (the server, and its sessions'
    /// processes, the guest role's `switch` step among them), then the
    /// server starts again; then it prints a second line.
    pub restarts_attach: bool,
}

impl Default for System {
    fn default() -> System {
        System {
            mark: "first",
            status: 0,
            kernel: "k1",
            host_store: true,
            memory: vm::MEMORY_MIB.into(),
            broken: false,
            restarts_attach: false,
        }
    }
}

/// The harness' `systemctl restart nixos-shell-attach` (its guest has no
/// systemd; the inittab starts the server): ends the server and the
/// processes of its sessions, as systemd ends a unit's cgroup, then
/// starts the server again, and says so after.
const RESTART_ATTACH: &str = "kill $(ps -o pid,args | grep -e '[s]erve-attach' -e '[n]ixos-shell-guest switch' | awk '{print $1}'); sleep 1; /bin/sh -c '/bin/nixos-shell-guest serve-attach 2>/dev/null &'; echo 'after the restart'";

/// `work/system.nix` of a [`Fixture::switchable`] (a template).
const SYSTEM: &str = include_str!("vm_fixture/system.nix.in");

pub struct Fixture {
    /// The fixture underneath: the flake in `work/`, HOME, TMPDIR.
    pub nix: NixFixture,
    /// Our flake and the stand-in nixpkgs the fixture flake builds with.
    world: OurFlake,
}

impl Fixture {
    /// A fixture for the CLI and checkout of `paths` whose run script
    /// starts the VM as NixOS' of `era` would.
    pub fn new(paths: Paths, era: Era) -> Fixture {
        Fixture::with_prelude(paths, era, "")
    }

    /// A fixture whose shares use `protocol`.
    pub fn with_protocol(paths: Paths, era: Era, protocol: Shares) -> Fixture {
        Fixture::with_shares(
            paths,
            era,
            ShareOptions {
                protocol: Some(protocol),
                ..ShareOptions::default()
            },
        )
    }

    /// A fixture whose module shares as `shares` says.
    pub fn with_shares(paths: Paths, era: Era, shares: ShareOptions) -> Fixture {
        Fixture::build(paths, era, "", shares)
    }

    /// A fixture whose run script runs `prelude` (sh) first.
    pub fn with_prelude(paths: Paths, era: Era, prelude: &str) -> Fixture {
        Fixture::build(paths, era, prelude, ShareOptions::default())
    }

    /// A fixture an ordinary user can run: its tree and the VM's kernel and
    /// initramfs (copied into it) are readable by everyone, wherever the
    /// checkout and its build cache lie (a checkout under a mode-0700
    /// directory, as `mktemp -d` makes, is unreadable to other users).
    pub fn for_another_user(paths: Paths, era: Era, protocol: Shares) -> Fixture {
        let shares = ShareOptions {
            protocol: Some(protocol),
            ..ShareOptions::default()
        };
        let nix = NixFixture::new(paths);
        std::fs::set_permissions(&nix.root, std::fs::Permissions::from_mode(0o755))
            .expect("open the fixture's tree to other users");
        let assets = nix.root.join(USER_ASSETS);
        let script = RunScript::new(paths, era, "vm").assets_in(&assets);
        std::fs::copy(paths.cli(), assets.join("nixos-shell")).expect("copy nixos-shell");
        Fixture::build_with(nix, paths, era, script, shares, "[ ]")
    }

    /// The copy of nixos-shell that [`Fixture::for_another_user`] made
    /// beside the VM's kernel, for that user to run.
    pub fn user_cli(&self) -> PathBuf {
        self.path(USER_ASSETS).join("nixos-shell")
    }

    fn build(paths: Paths, era: Era, prelude: &str, shares: ShareOptions) -> Fixture {
        let script = RunScript::new(paths, era, "vm").prelude(prelude);
        Fixture::build_with(NixFixture::new(paths), paths, era, script, shares, "[ ]")
    }

    /// A fixture for `--switch`: the guest sees the host's store (9p, as
    /// qemu-vm.nix shares it), and the configuration's system is
    /// `work/system.nix`, which [`Fixture::set_system`] writes: a toplevel
    /// whose `bin/switch-to-configuration` has effects a test sees.
    pub fn switchable(paths: Paths) -> Fixture {
        let script = RunScript::new(paths, Era::NineP, "vm").with_host_store();
        let fixture = Fixture::build_with(
            NixFixture::new(paths),
            paths,
            Era::NineP,
            script,
            ShareOptions::default(),
            "[ ./system.nix ]",
        );
        fixture.set_system(&System::default());
        fixture
    }

    /// Writes the configuration's system (`work/system.nix`) as `system`
    /// says.
    pub fn set_system(&self, system: &System) {
        let status = system.status.to_string();
        let host_store = system.host_store.to_string();
        let memory = system.memory.to_string();
        self.nix.write(
            "system.nix",
            &fill(
                SYSTEM,
                &[
                    ("mark", system.mark),
                    ("status", &status),
                    ("kernel", system.kernel),
                    ("host_store", &host_store),
                    ("memory", &memory),
                    (
                        "restart_attach",
                        if system.restarts_attach {
                            RESTART_ATTACH
                        } else {
                            ""
                        },
                    ),
                    (
                        "broken",
                        if system.broken {
                            "echo broken on purpose >&2; exit 1"
                        } else {
                            ""
                        },
                    ),
                ],
            ),
        );
    }

    fn build_with(
        nix: NixFixture,
        paths: Paths,
        era: Era,
        script: RunScript,
        shares: ShareOptions,
        modules: &str,
    ) -> Fixture {
        let world = OurFlake::new(paths, era, &script.nix_template());
        let fixture = Fixture { nix, world };
        for dir in ["home/project", "data", "extra"] {
            std::fs::create_dir_all(fixture.path(dir)).expect("create a fixture dir");
        }
        let data = serde_json::Value::from(fixture.path("data").to_string_lossy()).to_string();
        let flake = serde_json::Value::from(format!("path:{}", fixture.world.flake.display()));
        let protocol = shares
            .protocol
            .map(|p| format!("protocol = \"{}\";", p.name()))
            .unwrap_or_default();
        let memory = vm::MEMORY_MIB.to_string();
        fixture.nix.write(
            "flake.nix",
            &fill(
                FLAKE,
                &[
                    ("flake", &flake.to_string()),
                    ("memory", &memory),
                    ("cache", shares.cache),
                    ("protocol", &protocol),
                    ("data_guest_path", DATA_GUEST_PATH),
                    ("data", &data),
                    ("modules", modules),
                ],
            ),
        );
        fixture
            .world
            .nix_ok(&["flake", "lock"], &fixture.nix.work());
        fixture
    }

    /// The run script of the fixture flake's VM (`bin/run-vm-vm` of its
    /// `system.build.nixos-shell`), built with the real nix: the VM
    /// nixos-shell starts, to start without it.
    pub fn built_run_script(&self) -> PathBuf {
        let installable = format!(
            "path:{}#nixosConfigurations.vm.config.system.build.nixos-shell",
            self.nix.work().display()
        );
        let built = self.world.nix_ok(
            &["build", "--no-link", "--json", &installable],
            &self.nix.work(),
        );
        let results: serde_json::Value =
            serde_json::from_slice(&built.stdout).expect("nix build printed JSON");
        let out = results[0]["outputs"]["out"]
            .as_str()
            .unwrap_or_else(|| panic!("no out path in nix build's {results}"));
        let script = Path::new(out).join("bin/run-vm-vm");
        assert!(script.is_file(), "no run script at {}", script.display());
        script
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.nix.root.join(rel)
    }

    pub fn home(&self) -> PathBuf {
        self.nix.home()
    }

    pub fn cwd(&self) -> PathBuf {
        self.path("home/project")
    }

    /// `nixos-shell ARGS path:<flake>#vm`, started in the project directory
    /// with [`NixFixture::cli`]'s clean environment (this fixture's HOME and
    /// TMPDIR, offline nix) and a login's TERM, LOGNAME and SHELL.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = self.nix.cli(args);
        command
            .arg(format!("path:{}#vm", self.nix.work().display()))
            .current_dir(self.cwd())
            .env("LOGNAME", "tester")
            .env("SHELL", "/bin/sh")
            .env("TERM", "xterm-nixos-shell-test");
        command
    }

    /// [`Fixture::command`] with `qemu_args` after `--`, for QEMU.
    pub fn command_with_qemu_args(&self, args: &[&str], qemu_args: &[&str]) -> Command {
        let mut command = self.command(args);
        command.arg("--").args(qemu_args);
        command
    }

    /// Starts nixos-shell on a 30x100 pseudo-terminal.
    pub fn start(&self, args: &[&str]) -> Console {
        Console::spawn(self.command(args), ROWS, COLS)
    }

    /// [`Fixture::start`] under slots the caller holds.
    pub fn start_with(&self, args: &[&str], permit: Option<Permit>) -> Console {
        Console::spawn_with(self.command(args), ROWS, COLS, permit)
    }

    /// Starts nixos-shell with pipes for its streams and no terminal.
    pub fn start_piped(&self, args: &[&str]) -> Piped {
        Piped::spawn(self.command(args))
    }

    /// `nixos-shell --attach ARGS` to the fixture's VM, with pipes for its
    /// streams: it starts no VM, so it takes no VM slot.
    pub fn attach_piped(&self, args: &[&str]) -> Piped {
        Piped::spawn_with(self.attach_command(args), None)
    }

    /// `nixos-shell --attach ARGS` to the fixture's VM on a 30x100
    /// pseudo-terminal of its own, without a VM slot.
    pub fn attach(&self, args: &[&str]) -> Console {
        Console::spawn_with(self.attach_command(args), ROWS, COLS, None)
    }

    /// The command line of `nixos-shell --attach ARGS`, in the fixture's
    /// environment (the same TMPDIR, so the same registry of running VMs).
    pub fn attach_command(&self, args: &[&str]) -> Command {
        let mut attach = vec!["--attach"];
        attach.extend_from_slice(args);
        self.command(&attach)
    }

    /// Fails the test if a virtiofsd the run script started still runs:
    /// call once nixos-shell has ended, when the script must have stopped
    /// them (every path of the fixture is under its root).
    pub fn assert_no_virtiofsd_left(&self) {
        let left = vm::kill_virtiofsd_under(&self.nix.root);
        assert!(left.is_empty(), "virtiofsd outlived the VM: {left:?}");
    }

    /// Fails the test unless the fixture's VM ended cleanly, once its
    /// nixos-shell has ended: no QEMU or virtiofsd of it runs (any found
    /// are killed), nothing of a run is left in its TMPDIR, and, given the
    /// terminal it ran on and that terminal's settings from before, the
    /// settings are those again.
    pub fn assert_ended_cleanly(&self, terminal: Option<(&Pty, &libc::termios)>) {
        let qemu = vm::kill_processes_under(&self.nix.root, "qemu-system-x86_64");
        assert!(qemu.is_empty(), "QEMU outlived its nixos-shell: {qemu:?}");
        self.assert_no_virtiofsd_left();
        let left = self.nix.leftovers();
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
        if let Some((pty, before)) = terminal {
            let after = pty.termios();
            assert!(
                vm::same_settings(before, &after),
                "terminal settings changed: before {before:?}, after {after:?}"
            );
        }
    }
}

/// The fixture flake, `@name@`-templated.
const FLAKE: &str = include_str!("vm_fixture/flake.nix.in");

/// Where [`Fixture::for_another_user`] puts what another user must read.
const USER_ASSETS: &str = "vm-assets";

/// The terminal size nixos-shell sees.
pub const ROWS: u16 = 30;
pub const COLS: u16 = 100;

/// Every `*.qcow2` under `dir`.
pub fn disk_images(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            found.extend(disk_images(&path));
        } else if path.extension().is_some_and(|e| e == "qcow2") {
            found.push(path);
        }
    }
    found.sort();
    found
}
