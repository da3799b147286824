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

use crate::support::guest_nix::{GuestNix, MOUNT_HOST_STORE, NB, STORE_SHARE, WAIT_FOR_RELAY};
use crate::support::nix::{fresh_derivation, FreshDerivation};
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

/// The host's GC roots in `gcroots/auto` that name `link`: what the
/// daemon made for a result link at that path (nix's
/// `LocalStore::addIndirectRoot`).
fn auto_roots_to(link: &Path) -> Vec<PathBuf> {
    std::fs::read_dir("/nix/var/nix/gcroots/auto")
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|root| std::fs::read_link(root).is_ok_and(|target| target == link))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes, when the test ends (passed or not), the result link the guest
/// made and the host's roots to it: neither outlives the test.
struct RootsTo(PathBuf);

impl RootsTo {
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.0);
        for root in auto_roots_to(&self.0) {
            let _ = std::fs::remove_file(root);
        }
    }
}

impl Drop for RootsTo {
    fn drop(&mut self) {
        self.remove();
    }
}

#[test]
fn the_guests_nix_builds_into_the_hosts_store_once_two_at_a_time_and_roots_a_home_result() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let client = GuestNix::stage(&fx.path("nix-client"));
    let fresh: Vec<(&str, FreshDerivation)> = ["once", "left", "right"]
        .into_iter()
        .map(|word| (word, fresh_derivation(word)))
        .collect();
    for (word, derivation) in &fresh {
        client.write(word, &derivation.expression);
    }
    let content = |word: &str| {
        fresh
            .iter()
            .find(|(w, _)| *w == word)
            .map(|(_, derivation)| derivation.content.clone())
            .unwrap()
    };
    let link = fx.cwd().join("result");
    let roots = RootsTo(link.clone());
    let mount = client.mount();
    let script = format!(
        "{NB}; {WAIT_FOR_RELAY}; {MOUNT_HOST_STORE}; \
         echo first-begin; nb once --no-out-link 2>&1; echo first-end; \
         echo \"read=$(cat \"$(nb once --no-out-link 2>/dev/null)\")\"; \
         echo again-begin; nb once --no-out-link 2>&1; echo again-end; \
         nb left --no-out-link >/tmp/left 2>&1 & nb right --no-out-link >/tmp/right 2>&1 & wait; \
         echo \"pair=$(tail -n1 /tmp/left) $(tail -n1 /tmp/right)\"; \
         nb left >/dev/null 2>&1; \
         echo rooted=$?"
    );
    let out = fx
        .command_with_qemu_args(
            &["--mount", &mount, "-c", &script],
            &["-virtfs", STORE_SHARE],
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
    assert_eq!(std::fs::read_to_string(&path).unwrap(), content("once"));
    // And the guest reads it through the shared store.
    assert!(
        text.contains(&format!("read={}", content("once"))),
        "{text}"
    );
    // The host has it: nothing is built the second time.
    assert!(!again.contains("will be built"), "{again}");
    assert_eq!(again.lines().last().unwrap().trim(), path);
    // A result link the guest made in the shared home is the host's GC
    // root: the daemon made the indirect root to the link's path, which is
    // the same on the host (nix's LocalStore::addIndirectRoot, gcroots/auto).
    assert!(text.contains("rooted=0"), "{text}");
    assert!(
        !auto_roots_to(&link).is_empty(),
        "no indirect root to {}",
        link.display()
    );
    let pair = between("pair=", "\n");
    let built: Vec<&str> = pair.split_whitespace().collect();
    assert_eq!(built.len(), 2, "{text}");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new(built[0]),
        "the result link names the left build"
    );
    for (word, path) in ["left", "right"].iter().zip(built) {
        assert_eq!(std::fs::read_to_string(path).unwrap(), content(word));
    }
    // The test leaves no root behind: the link and the host's root to it
    // go (a stale auto root would only go at the host's next GC).
    roots.remove();
    assert!(
        auto_roots_to(&link).is_empty(),
        "a root to {} is left",
        link.display()
    );
    assert!(std::fs::symlink_metadata(&link).is_err());
}
