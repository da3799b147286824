//! The fixture of NixOS' run script `bin/run-<name>-vm` (qemu-vm.nix), in
//! both eras of its shared directories (the Nix store, `xchg`, `shared`):
//!
//! - [`Era::NineP`], nixpkgs up to August 2026: QEMU serves them itself
//!   over 9p (`-virtfs`), and the script `exec`s QEMU.
//! - [`Era::Virtiofs`], nixpkgs from late August 2026 on: the script starts
//!   one `virtiofsd` per directory, waits for its socket, and gives QEMU a
//!   `vhost-user-fs-pci` device per share plus a shared memory backend of
//!   the script's own memory size, which a later `-m` of another size
//!   conflicts with (the CLI brings its own backend for `--memory`).
//!
//! Both keep the rest of the contract (NIX_DISK_IMAGE, TMPDIR/USE_TMPDIR,
//! `cd "$TMPDIR"`, QEMU_NET_OPTS, QEMU_KERNEL_PARAMS, `$QEMU_OPTS "$@"` last,
//! nixos-shell's console options). The text is `run_script/run-vm.sh`, with
//! each era's start-up lines and QEMU options filled in.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::assets::{assets, virtiofsd};
use super::sh_quote;
use super::template::fill;

/// The guest's memory in MiB as the run script sets it (`-m`), and so the
/// size of the virtiofs era's memory backend.
pub const MEMORY_MIB: u32 = 256;

/// The id of the virtiofs era's memory backend, as qemu-vm.nix names it.
pub const MEMORY_BACKEND_ID: &str = "mem0";

const RUN_VM: &str = include_str!("run_script/run-vm.sh");
const NINE_P_START: &str = include_str!("run_script/9p-start.sh");
const NINE_P_OPTIONS: &str = include_str!("run_script/9p.options");
const VIRTIOFS_START: &str = include_str!("run_script/virtiofs-start.sh");
const VIRTIOFS_OPTIONS: &str = include_str!("run_script/virtiofs.options");

/// How a run script shares its directories with the guest: the nixpkgs
/// revisions users build with have one or the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// `-virtfs`, QEMU's own 9p server.
    NineP,
    /// A `virtiofsd` per directory, started by the script.
    Virtiofs,
}

impl Era {
    pub const ALL: [Era; 2] = [Era::NineP, Era::Virtiofs];

    /// How the script's header names it.
    pub fn name(self) -> &'static str {
        match self {
            Era::NineP => "9p",
            Era::Virtiofs => "virtiofs",
        }
    }
}

/// A run script for a VM called `name`, before it is written.
#[derive(Debug, Clone)]
pub struct RunScript {
    pub era: Era,
    pub name: String,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// The virtiofsd the virtiofs era starts (qemu-vm.nix names its store
    /// path); unused in the 9p era.
    pub virtiofsd: PathBuf,
    /// sh code run first, before anything else; tests use it to tamper
    /// with what the CLI handed over.
    pub prelude: String,
}

impl RunScript {
    /// The harness' kernel and initramfs, and in the virtiofs era the
    /// host's virtiofsd (the test fails if it is missing).
    pub fn new(era: Era, name: &str) -> RunScript {
        let assets = assets();
        RunScript {
            era,
            name: name.to_owned(),
            kernel: assets.kernel.clone(),
            initramfs: assets.initramfs.clone(),
            virtiofsd: match era {
                Era::NineP => PathBuf::new(),
                Era::Virtiofs => virtiofsd(),
            },
            prelude: String::new(),
        }
    }

    /// The same script with `prelude` run first.
    pub fn prelude(mut self, prelude: &str) -> RunScript {
        self.prelude = prelude.to_owned();
        self
    }

    /// The script's text.
    pub fn text(&self) -> String {
        // The default image sits inside "${NIX_DISK_IMAGE:-...}", where
        // quotes would stay literal: keep names to characters that need none.
        assert!(
            self.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "VM name {:?} needs quoting; use letters, digits, -, _ and .",
            self.name
        );
        self.render(&self.name, &MEMORY_MIB.to_string())
    }

    /// The script as the stand-in nixpkgs' `system.build.vm` takes it: the
    /// configuration's `system.name` and `virtualisation.memorySize` left
    /// as `@name@` and `@memorySize@` for it to fill in, as qemu-vm.nix
    /// writes them into NixOS's script.
    pub fn nix_template(&self) -> String {
        self.render("@name@", "@memorySize@")
    }

    fn render(&self, name: &str, memory: &str) -> String {
        let (exec, start, options) = match self.era {
            Era::NineP => ("exec ", NINE_P_START.to_owned(), NINE_P_OPTIONS.to_owned()),
            Era::Virtiofs => (
                "",
                fill(
                    VIRTIOFS_START,
                    &[("virtiofsd", &sh_quote(&self.virtiofsd.to_string_lossy()))],
                ),
                fill(
                    VIRTIOFS_OPTIONS,
                    &[("memory", memory), ("memory_backend_id", MEMORY_BACKEND_ID)],
                ),
            ),
        };
        fill(
            RUN_VM,
            &[
                ("name", name),
                ("era", self.era.name()),
                ("prelude", &self.prelude),
                ("vm_name", &sh_quote(name)),
                ("memory", memory),
                ("kernel", &sh_quote(&self.kernel.to_string_lossy())),
                ("initrd", &sh_quote(&self.initramfs.to_string_lossy())),
                ("start_shares", &start),
                ("exec", exec),
                // The options' last line continues into the template's next.
                ("share_options", options.trim_end()),
            ],
        )
    }

    /// Writes the script to `path`, executable.
    pub fn write(&self, path: &Path) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the script's directory");
        }
        std::fs::write(path, self.text())
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .expect("make the run script executable");
    }
}
