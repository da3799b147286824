//! A real nix client in the harness's guests, for the host-nix tests and
//! figures: the host's own `nix-build` and `nix-store`, their libraries beside them, staged in
//! a directory the guest mounts (`--mount DIR:/opt/nix:ro`) and run
//! through their dynamic loader, so the initramfs needs no nix of its own.
//! Build files (`NAME.nix`) go into the same directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fs::on_path;

/// Where the guest mounts the staged client.
pub const GUEST_DIR: &str = "/opt/nix";

/// Shell for the guest: `nix_build ARGS…` runs the staged `nix-build`;
/// `nb NAME [ARGS…]` runs it on the build file `NAME.nix` (ARGS first,
/// e.g. `--no-out-link`).
pub const NB: &str = "nix_build() { /opt/nix/lib/ld-linux-x86-64.so.2 \
--library-path /opt/nix/lib /opt/nix/bin/nix-build \"$@\"; }; \
nb() { f=$1; shift; nix_build \"$@\" \"/opt/nix/$f.nix\"; }";

/// Shell for the guest: waits (at most 10 s) for the host-nix relay's
/// socket, which the guest role serves once it has the CLI's port.
pub const WAIT_FOR_RELAY: &str = "i=0; while [ ! -S /run/nixos-shell/host-nix.sock ] && \
[ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done";

/// Shell for the guest: the host's store, read-only and uncached at
/// `/nix/store`, from the share of [`STORE_SHARE`], so a path the host
/// builds after the mount shows at once.
pub const MOUNT_HOST_STORE: &str =
    "mkdir -p /nix/store && mount -t 9p -o trans=virtio,version=9p2000.L,ro nixstore /nix/store";

/// QEMU's `-virtfs` for [`MOUNT_HOST_STORE`]: the host's store as
/// qemu-vm.nix shares it (`virtualisation.sharedDirectories.nix-store`,
/// mounted under /nix/.ro-store and bound or overlaid at /nix/store).
pub const STORE_SHARE: &str =
    "local,path=/nix/store,mount_tag=nixstore,security_model=none,readonly=on";

/// Shell for the guest: a store of the guest's own, empty, on a tmpfs at
/// `/nix`, which the staged client builds into as root (`NIX_REMOTE` unset
/// means the local store): no build users, no sandbox and no
/// substituters, as the tests' nix.conf. Debian's build hook
/// (`build-remote`) is not staged, so what is built there must prefer a
/// local build, as [`fresh_derivation`](crate::nix::fresh_derivation)'s do.
pub const OWN_STORE: &str = "mkdir -p /nix && mount -t tmpfs none /nix; unset NIX_REMOTE; \
export NIX_CONFIG=\"$(printf 'build-users-group =\\nsandbox = false\\nsubstituters =\\n')\"";

/// The staged client.
pub struct GuestNix {
    dir: PathBuf,
}

impl GuestNix {
    /// Copies the host's `nix-build` (the `nix` binary it links to) and
    /// the libraries `ldd` names into `dir`.
    pub fn stage(dir: &Path) -> GuestNix {
        let lib = dir.join("lib");
        std::fs::create_dir_all(&lib)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", lib.display()));
        std::fs::create_dir_all(dir.join("bin"))
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        let nix_build = on_path("nix-build").unwrap_or_else(|| {
            panic!("`nix-build` is not on PATH: install nix (Debian: apt-get install nix-bin)")
        });
        let nix = std::fs::canonicalize(&nix_build)
            .unwrap_or_else(|err| panic!("cannot resolve {}: {err}", nix_build.display()));
        // nix's programs are one binary, told apart by the name it runs as.
        copy(&nix, &dir.join("bin/nix-build"));
        copy(&nix, &dir.join("bin/nix-store"));
        let ldd = Command::new("ldd")
            .arg(&nix)
            .output()
            .unwrap_or_else(|err| panic!("cannot run ldd (Debian: libc-bin): {err}"));
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // "libfoo.so => /lib/.../libfoo.so (0x...)" or "/lib64/ld-linux... (0x...)"
            let path = line
                .split_whitespace()
                .find(|word| word.starts_with('/'))
                .map(Path::new);
            if let Some((path, name)) = path.and_then(|path| Some((path, path.file_name()?))) {
                copy(path, &lib.join(name));
            }
        }
        GuestNix {
            dir: dir.to_owned(),
        }
    }

    /// `--mount`'s value that shows the client to the guest.
    pub fn mount(&self) -> String {
        format!("{}:{GUEST_DIR}:ro", self.dir.display())
    }

    /// Writes the build file `NAME.nix` holding `expression`.
    pub fn write(&self, name: &str, expression: &str) {
        let path = self.dir.join(format!("{name}.nix"));
        std::fs::write(&path, expression)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|err| panic!("cannot copy {} to {}: {err}", from.display(), to.display()));
}
