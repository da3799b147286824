//! Nix in the guest builds into the host's store (README "Nix in the
//! guest"): a `--command` gets `NIX_REMOTE` naming the guest role's relay,
//! whose socket the relay serves once it has the CLI's host-nix port;
//! `--no-host-nix` leaves both out. And the host's own nix client, run in
//! the guest, builds through the relay into the host's store: once, then
//! not again, and two builds at once; the guest reads what it built through
//! the host's store, shared as qemu-vm.nix shares it. (A client that sends
//! garbage is tested on the host, through both relays:
//! `host::execute::host_nix`.)

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::vm::{Era, BOOT_TIMEOUT};
use crate::support::vm_fixture::Fixture;
use crate::PATHS;

/// Waits (at most 10 s, in the guest) for the relay's socket, then says
/// what the command sees.
const PROBE: &str = "i=0; while [ ! -S /run/nixos-shell/host-nix.sock ] && [ $i -lt 100 ]; do \
sleep 0.1; i=$((i+1)); done; \
if [ -S /run/nixos-shell/host-nix.sock ]; then s=yes; else s=no; fi; \
echo \"remote=[${NIX_REMOTE:-}] socket=$s\"";

#[test]
fn a_command_names_the_relayed_host_nix_and_no_host_nix_leaves_it_out() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = fx.start(&["-c", PROBE]);
    vm.expect(
        "remote=[unix:///run/nixos-shell/host-nix.sock] socket=yes",
        BOOT_TIMEOUT,
    );
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));

    let mut vm = fx.start(&["--no-host-nix", "-c", PROBE]);
    vm.expect("remote=[] socket=no", BOOT_TIMEOUT);
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));
}

/// The host's own nix client, its libraries beside it, in a directory the
/// test shares with the guest (`--mount DIR:/opt/nix:ro`), run through
/// their dynamic loader: a real nix client in the guest, without a nix in
/// the initramfs (`bin/nix-build`, and `bin/nix-store`: nix's programs
/// are one, told apart by their name). Each build file is a derivation no
/// store has yet.
pub(crate) fn stage_nix_client(dir: &Path, nonce: &str) {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let nix = std::fs::canonicalize(on_path("nix-build")).unwrap();
    std::fs::copy(&nix, dir.join("bin/nix-build")).unwrap();
    std::fs::copy(&nix, dir.join("bin/nix-store")).unwrap();
    let ldd = Command::new("ldd").arg(&nix).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libfoo.so => /lib/.../libfoo.so (0x...)" or "/lib64/ld-linux... (0x...)"
        let path = line
            .split_whitespace()
            .find(|word| word.starts_with('/'))
            .map(Path::new);
        if let Some(path) = path {
            std::fs::copy(path, lib.join(path.file_name().unwrap())).unwrap();
        }
    }
    for word in ["once", "left", "right"] {
        std::fs::write(
            dir.join(format!("{word}.nix")),
            format!(
                r#"derivation {{ name = "guest-{word}"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo {word} {nonce} > $out" ]; }}"#
            ),
        )
        .unwrap();
    }
}

fn on_path(program: &str) -> PathBuf {
    std::env::var("PATH")
        .unwrap()
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

/// In the guest: `nix-build` of the build file `$1` through the loader.
const GUEST_NIX_BUILD: &str =
    "nb() { /opt/nix/lib/ld-linux-x86-64.so.2 --library-path /opt/nix/lib \
/opt/nix/bin/nix-build --no-out-link \"/opt/nix/$1.nix\"; }";

#[test]
fn the_guests_nix_builds_into_the_hosts_store_once_two_at_a_time_and_roots_a_home_result() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let staged = fx.path("nix-client");
    stage_nix_client(&staged, &nonce);
    let mount = format!("{}:/opt/nix:ro", staged.display());
    let script = format!(
        "{GUEST_NIX_BUILD}; \
         i=0; while [ ! -S /run/nixos-shell/host-nix.sock ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
         mkdir -p /nix/store && mount -t 9p -o trans=virtio,version=9p2000.L,ro nixstore /nix/store; \
         echo first-begin; nb once 2>&1; echo first-end; \
         echo \"read=$(cat \"$(nb once 2>/dev/null)\")\"; \
         echo again-begin; nb once 2>&1; echo again-end; \
         nb left >/tmp/left 2>&1 & nb right >/tmp/right 2>&1 & wait; \
         echo \"pair=$(tail -n1 /tmp/left) $(tail -n1 /tmp/right)\"; \
         /opt/nix/lib/ld-linux-x86-64.so.2 --library-path /opt/nix/lib /opt/nix/bin/nix-build /opt/nix/left.nix >/dev/null 2>&1; \
         echo rooted=$?"
    );
    // The host's store, read-only at the same path, as qemu-vm.nix shares
    // it (`virtualisation.sharedDirectories.nix-store`, mounted under
    // /nix/.ro-store and bound or overlaid at /nix/store); 9p uncached, so
    // a path built after the mount shows at once.
    let store_share = "local,path=/nix/store,mount_tag=nixstore,security_model=none,readonly=on";
    let out = fx
        .command_with_qemu_args(
            &["--mount", &mount, "-c", &script],
            &["-virtfs", store_share],
        )
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    let between = |begin: &str, end: &str| {
        let from = text
            .find(begin)
            .unwrap_or_else(|| panic!("{begin}: {text}"))
            + begin.len();
        let to = text[from..]
            .find(end)
            .unwrap_or_else(|| panic!("{end}: {text}"))
            + from;
        text[from..to].to_owned()
    };
    let first = between("first-begin", "first-end");
    let again = between("again-begin", "again-end");
    let path = first.lines().last().unwrap().trim().to_owned();
    // Built once, on the host, in the host's store.
    assert!(first.contains("will be built"), "{first}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("once {nonce}\n")
    );
    // And the guest reads it through the shared store.
    assert!(text.contains(&format!("read=once {nonce}\n")), "{text}");
    // The host has it: nothing is built the second time.
    assert!(!again.contains("will be built"), "{again}");
    assert_eq!(again.lines().last().unwrap().trim(), path);
    // A result link the guest made in the shared home is the host's GC
    // root: the daemon made the indirect root to the link's path, which is
    // the same on the host (nix's LocalStore::addIndirectRoot, gcroots/auto).
    assert!(text.contains("rooted=0"), "{text}");
    let link = fx.cwd().join("result");
    let auto = std::fs::read_dir("/nix/var/nix/gcroots/auto").unwrap();
    let rooted = auto
        .flatten()
        .any(|entry| std::fs::read_link(entry.path()).is_ok_and(|target| target == link));
    assert!(rooted, "no indirect root to {}", link.display());
    let pair = between("pair=", "\n");
    let built: Vec<&str> = pair.split_whitespace().collect();
    assert_eq!(built.len(), 2, "{text}");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new(built[0]),
        "the result link names the left build"
    );
    for (word, path) in ["left", "right"].iter().zip(built) {
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            format!("{word} {nonce}\n")
        );
    }
}
