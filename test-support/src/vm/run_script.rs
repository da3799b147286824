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
//! - [`Era::VirtiofsEarly`], the weeks between: virtiofs, but the shared
//!   memory backend only when `virtualisation.qemu.enableSharedMemory` is
//!   set, without which the script's own virtiofsd cannot serve the guest.
//!
//! Both keep the rest of the contract (NIX_DISK_IMAGE, TMPDIR/USE_TMPDIR,
//! `cd "$TMPDIR"`, QEMU_NET_OPTS, QEMU_KERNEL_PARAMS, `$QEMU_OPTS "$@"` last,
//! nixos-shell's console options). The text is `run_script/run-vm.sh`, with
//! each era's start-up lines and QEMU options filled in.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::assets::assets;
use super::virtiofsd::virtiofsd;
use crate::fs::write_executable;
use crate::sh::quote;
use crate::template::fill;
use crate::Paths;

/// The toplevel a script written without nix names (NixOS's script boots
/// `init=${toplevel}/init`): no system, as the harness' initramfs needs none.
const NO_TOPLEVEL: &str = "/nix/store/00000000000000000000000000000000-nixos-system";

/// The guest's memory in MiB as the run script sets it (`-m`), and so the
/// size of the virtiofs era's memory backend.
pub const MEMORY_MIB: u32 = 256;

/// The id of the virtiofs era's memory backend, as qemu-vm.nix names it.
pub const MEMORY_BACKEND_ID: &str = "mem0";

const RUN_VM: &str = include_str!("run_script/run-vm.sh");
const NINE_P_START: &str = include_str!("run_script/9p-start.sh");
/// The host's store and the tag it is shared under (qemu-vm.nix's).
const STORE_DIR: &str = "/nix/store";
const STORE_TAG: &str = "nix-store";

const NINE_P_OPTIONS: &str = include_str!("run_script/9p.options");
const VIRTIOFS_START: &str = include_str!("run_script/virtiofs-start.sh");
const VIRTIOFS_OPTIONS: &str = include_str!("run_script/virtiofs.options");

/// How a run script shares its directories with the guest, and whether
/// its qemu-vm.nix shares the guest's memory by default: the nixpkgs
/// revisions users build with have one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// `-virtfs`, QEMU's own 9p server; shared memory only when asked for.
    NineP,
    /// A `virtiofsd` per directory, started by the script, and nothing
    /// asks for the shared memory it needs (NixOS/nixpkgs#552774, before
    /// #563324).
    VirtiofsEarly,
    /// A `virtiofsd` per directory, and shared memory by default (#563324).
    Virtiofs,
}

impl Era {
    pub const ALL: [Era; 3] = [Era::NineP, Era::VirtiofsEarly, Era::Virtiofs];

    /// How the script's header and the stand-in's qemu-vm.nix name it.
    pub fn name(self) -> &'static str {
        match self {
            Era::NineP => "9p",
            Era::VirtiofsEarly => "virtiofs-early",
            Era::Virtiofs => "virtiofs",
        }
    }

    /// Whether its qemu-vm.nix backs the guest's memory with a shared memfd
    /// unless told otherwise.
    pub fn shared_memory_by_default(self) -> bool {
        self == Era::Virtiofs
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
    /// Share the host's Nix store, read-only, as tag `nix-store`, which the
    /// initramfs binds at /nix/store (qemu-vm.nix's
    /// `sharedDirectories.nix-store` at /nix/.ro-store, bound at
    /// /nix/store without `writableStore`): a system built after the boot
    /// is seen as on NixOS.
    pub host_store: bool,
}

impl RunScript {
    /// The harness' kernel and an initramfs holding the CLI of `paths`,
    /// and in the virtiofs era the host's virtiofsd (the test fails if it
    /// is missing).
    pub fn new(paths: Paths, era: Era, name: &str) -> RunScript {
        let assets = assets(paths.cli());
        RunScript {
            era,
            name: name.to_owned(),
            kernel: assets.kernel.clone(),
            initramfs: assets.initramfs.clone(),
            virtiofsd: match era {
                Era::NineP => PathBuf::new(),
                Era::VirtiofsEarly | Era::Virtiofs => virtiofsd(),
            },
            prelude: String::new(),
            host_store: false,
        }
    }

    /// The same script booting copies of its kernel and initramfs in `dir`
    /// (created), readable by every user: QEMU run by an ordinary user
    /// must read them, and the build cache they come from may lie where
    /// only root can.
    pub fn assets_in(mut self, dir: &Path) -> RunScript {
        std::fs::create_dir_all(dir).expect("create the VM assets' directory");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .expect("open the VM assets' directory");
        for asset in [&mut self.kernel, &mut self.initramfs] {
            let name = asset.file_name().expect("an asset has a file name");
            let copy = dir.join(name);
            std::fs::copy(&*asset, &copy).expect("copy a VM asset");
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644))
                .expect("open a VM asset");
            *asset = copy;
        }
        self
    }

    /// The same script sharing the host's store (see [`RunScript::host_store`]).
    pub fn with_host_store(mut self) -> RunScript {
        self.host_store = true;
        self
    }

    /// The same script with `prelude` run first.
    pub fn prelude(mut self, prelude: &str) -> RunScript {
        self.prelude = prelude.to_owned();
        self
    }

    /// The script's text, with the shared memory its era's qemu-vm.nix
    /// gives by default.
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
        let memory = MEMORY_MIB.to_string();
        let shared_memory = if self.era.shared_memory_by_default() {
            format!(
                "-object memory-backend-memfd,id={MEMORY_BACKEND_ID},size={memory}M,share=on \
                 -machine memory-backend={MEMORY_BACKEND_ID}"
            )
        } else {
            String::new()
        };
        self.render(&self.name, &memory, &shared_memory, NO_TOPLEVEL)
    }

    /// The script as the stand-in nixpkgs' `system.build.vm` takes it: the
    /// configuration's `system.name`, `virtualisation.memorySize` and
    /// shared memory options left as `@name@`, `@memorySize@` and
    /// `@sharedMemory@` for it to fill in, and the system's toplevel as
    /// `@toplevel@`, as qemu-vm.nix writes them into NixOS's script.
    pub fn nix_template(&self) -> String {
        self.render("@name@", "@memorySize@", "@sharedMemory@", "@toplevel@")
    }

    fn render(&self, name: &str, memory: &str, shared_memory: &str, toplevel: &str) -> String {
        let (exec, start, options) = match self.era {
            Era::NineP => ("exec ", NINE_P_START.to_owned(), NINE_P_OPTIONS.to_owned()),
            Era::VirtiofsEarly | Era::Virtiofs => (
                "",
                fill(
                    VIRTIOFS_START,
                    &[("virtiofsd", &quote(&self.virtiofsd.to_string_lossy()))],
                ),
                VIRTIOFS_OPTIONS.to_owned(),
            ),
        };
        // qemu-vm.nix (rev 00008e8e): the store's 9p share is the only one
        // mounted with cache=loose; QEMU refuses writes to it too.
        let options = if self.host_store {
            format!(
                "    -virtfs local,path={STORE_DIR},security_model=none,mount_tag={STORE_TAG},readonly=on \\\n{options}"
            )
        } else {
            options
        };
        fill(
            RUN_VM,
            &[
                ("name", name),
                ("era", self.era.name()),
                ("prelude", &self.prelude),
                ("vm_name", &quote(name)),
                ("memory", memory),
                ("shared_memory", shared_memory),
                ("toplevel", toplevel),
                ("kernel", &quote(&self.kernel.to_string_lossy())),
                ("initrd", &quote(&self.initramfs.to_string_lossy())),
                ("start_shares", &start),
                ("exec", exec),
                // The options' last line continues into the template's next.
                ("share_options", options.trim_end()),
            ],
        )
    }

    /// Writes the script to `path`, executable.
    pub fn write(&self, path: &Path) {
        write_executable(path, &self.text());
    }
}

/// A `-virtfs` argument pair sharing `path` under `tag`, as the CLI passes
/// its own shares to the run script in both eras.
pub fn virtfs(path: &Path, tag: &str, read_only: bool) -> [String; 2] {
    let ro = if read_only { ",readonly=on" } else { "" };
    [
        "-virtfs".to_owned(),
        format!(
            "local,path={},security_model=none,mount_tag={tag}{ro}",
            path.display()
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{Era, RunScript};

    fn script(era: Era) -> String {
        RunScript {
            era,
            name: "vm".to_owned(),
            kernel: PathBuf::from("/k/vmlinuz"),
            initramfs: PathBuf::from("/k/init's.cpio"),
            virtiofsd: PathBuf::from("/opt/bin/virtiofsd"),
            prelude: String::new(),
            host_store: false,
        }
        .text()
    }

    #[test]
    fn the_run_script_keeps_the_nixos_interface_in_both_eras() {
        for era in Era::ALL {
            let text = script(era);
            for expected in [
                r#"NIX_DISK_IMAGE=$(readlink -f "${NIX_DISK_IMAGE:-./vm.qcow2}")"#,
                r#"if [ -z "$TMPDIR" ] || [ -z "$USE_TMPDIR" ]; then"#,
                r#"cd "$TMPDIR""#,
                "-m 256 -smp 1",
                r#"-netdev user,id=user.0,"$QEMU_NET_OPTS""#,
                r#"-append "console=hvc0 quiet panic=-1 init=/nix/store/00000000000000000000000000000000-nixos-system/init $QEMU_KERNEL_PARAMS""#,
                "-initrd '/k/init'\\''s.cpio'",
                "-chardev stdio,mux=on,id=char0,signal=off",
            ] {
                assert!(
                    text.contains(expected),
                    "{era:?}: missing {expected:?} in\n{text}"
                );
            }
            assert!(
                text.trim_end().ends_with(r#"$QEMU_OPTS "$@""#),
                "{era:?}: $QEMU_OPTS \"$@\" is not last in\n{text}"
            );
            assert!(
                !text.contains("\n\n    -"),
                "{era:?}: a broken line in\n{text}"
            );
        }
    }

    #[test]
    fn the_9p_era_shares_with_virtfs_and_execs_qemu() {
        let text = script(Era::NineP);
        for expected in [
            r#"-virtfs local,path="${SHARED_DIR:-$TMPDIR/xchg}",security_model=none,mount_tag=shared"#,
            r#"-virtfs local,path="$TMPDIR"/xchg,security_model=none,mount_tag=xchg"#,
            "\nexec qemu-system-x86_64 ",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        for absent in ["virtiofsd", "vhost-user-fs-pci", "memory-backend"] {
            assert!(!text.contains(absent), "{absent:?} in\n{text}");
        }
    }

    /// Between nixpkgs #552774 and #563324: virtiofs, and no shared
    /// memory unless the configuration asks for it.
    #[test]
    fn the_early_virtiofs_era_starts_virtiofsd_without_shared_memory() {
        let text = script(Era::VirtiofsEarly);
        assert!(
            text.contains(r#"start_virtiofsd xchg "$TMPDIR/xchg""#),
            "{text}"
        );
        assert!(!text.contains("memory-backend"), "{text}");
        let template = RunScript {
            era: Era::VirtiofsEarly,
            name: "vm".to_owned(),
            kernel: PathBuf::from("/k/vmlinuz"),
            initramfs: PathBuf::from("/k/initrd"),
            virtiofsd: PathBuf::from("/opt/bin/virtiofsd"),
            prelude: String::new(),
            host_store: false,
        }
        .nix_template();
        assert!(template.contains("\n    @sharedMemory@ \\\n"), "{template}");
    }

    #[test]
    fn the_virtiofs_era_starts_virtiofsd_and_shares_the_guests_memory() {
        let text = script(Era::Virtiofs);
        for expected in [
            "virtiofsd='/opt/bin/virtiofsd'",
            r#"--socket-path="$sockets/$1.sock" --shared-dir="$2""#,
            "--sandbox=none --cache=auto",
            r#"start_virtiofsd xchg "$TMPDIR/xchg""#,
            r#"start_virtiofsd shared "${SHARED_DIR:-$TMPDIR/xchg}""#,
            "-object memory-backend-memfd,id=mem0,size=256M,share=on",
            "-machine memory-backend=mem0",
            r#"-chardev socket,id=xchg,path="$sockets"/xchg.sock"#,
            "-device vhost-user-fs-pci,queue-size=1024,chardev=xchg,tag=xchg",
            r#"-chardev socket,id=shared,path="$sockets"/shared.sock"#,
            "-device vhost-user-fs-pci,queue-size=1024,chardev=shared,tag=shared",
            // A child, not exec'd: the script stops the daemons after it.
            "\nqemu-system-x86_64 ",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("-virtfs"), "-virtfs in\n{text}");
    }

    /// Regression: the default image was written `'./vm.qcow2'` inside double
    /// quotes, where sh keeps the quotes, so the script died without
    /// NIX_DISK_IMAGE. Runs the script's own line with sh.
    #[test]
    fn the_default_disk_image_is_the_name_in_the_callers_directory() {
        for era in Era::ALL {
            let text = script(era);
            let line = text
                .lines()
                .find(|l| l.starts_with("NIX_DISK_IMAGE="))
                .expect("the script sets NIX_DISK_IMAGE");
            let cwd = tempfile::tempdir().unwrap();
            let output = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("{line}\nprintf %s \"$NIX_DISK_IMAGE\""))
                .current_dir(cwd.path())
                .env_remove("NIX_DISK_IMAGE")
                .output()
                .unwrap();
            let cwd = cwd.path().canonicalize().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&output.stdout),
                cwd.join("vm.qcow2").to_string_lossy(),
                "{era:?}"
            );
        }
    }
}
