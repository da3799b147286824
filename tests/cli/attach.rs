//! `nixos-shell --attach` against the real nix: what it refuses at once,
//! and the entry a run leaves for it while (and only while) its VM runs.
//! The sessions themselves need a real guest: `vm::attach`.

use std::os::unix::fs::DirBuilderExt;

use super::{assert_one_line_error, assert_only_error};
use crate::support::nix_fixture::NixFixture;
use crate::PATHS;

fn mkvm(config: &str) -> String {
    format!(r#"{{ nixosConfigurations.vm = mkVm {{ modules = [ ({config}) ]; }}; }}"#)
}

/// The registry of running VMs of the fixture's user (its TMPDIR, no
/// XDG_RUNTIME_DIR).
fn registry(fx: &NixFixture) -> std::path::PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    fx.tmp().join(format!("nixos-shell-{uid}"))
}

#[test]
fn without_a_running_vm_it_says_so_in_one_line_and_starts_no_nix() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm("{ }"));
    for (args, says) in [
        (
            &["--attach"][..],
            "no VM of this directory is running; start one with `nixos-shell`",
        ),
        (
            &["--attach", ".#vm", "-c", "true"][..],
            "no VM of .#vm is running; start one with `nixos-shell '.#vm'`",
        ),
        (
            &["--stop", ".#vm"][..],
            "no VM of .#vm is running; start one with `nixos-shell '.#vm'`",
        ),
        (
            &["--attach", "--flake", "."][..],
            "no VM of . is running; start one with `nixos-shell --flake .`",
        ),
        // --switch builds only once it knows the VM it switches.
        (
            &["--switch"][..],
            "no VM of this directory is running; start one with `nixos-shell`",
        ),
        (
            &["--switch", "--watch", ".#vm"][..],
            "no VM of .#vm is running; start one with `nixos-shell '.#vm'`",
        ),
        (
            &["--switch", "--restart", ".#vm"][..],
            "no VM of .#vm is running; start one with `nixos-shell '.#vm'`",
        ),
    ] {
        let out = fx.run(args);
        assert_only_error(&out, says);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
    assert_eq!(fx.nix_calls().0, 0);
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
}

#[test]
fn flags_that_start_or_build_a_vm_are_refused_with_attach() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm("{ }"));
    let out = fx.run(&["--attach", "--memory", "1G"]);
    assert_only_error(
        &out,
        "the argument '--attach' cannot be used with '--memory <SIZE>'",
    );
    let out = fx.run(&["--attach", "-L"]);
    assert_only_error(&out, "--attach evaluates nothing: drop the flags for nix");
    let out = fx.run(&["--attach", "missing.nix"]);
    assert_only_error(&out, "missing.nix not found");
    assert_eq!(fx.nix_calls().0, 0);
}

/// A run of a build whose guest serves attaches offers the attach port and
/// enters its VM for `--attach` while the VM runs; the entry is gone with
/// it, and one left by a nixos-shell killed outright is removed.
#[test]
fn a_run_is_found_while_its_vm_runs_and_only_then() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm("{ fixture.attach = true; }"));
    let registry = registry(&fx);
    let mut cli = fx.cli(&[]);
    cli.env("NIXOS_SHELL_TEST_REGISTRY", &registry);
    assert!(fx.run_with(cli).status.success());
    let record = fx.record();
    assert!(
        record
            .args
            .iter()
            .any(|a| a.ends_with("name=org.nixos-shell.attach")),
        "{:?}",
        record.args
    );
    let facts = record.facts.unwrap();
    assert!(
        facts["ports"]
            .as_array()
            .unwrap()
            .contains(&"attach".into()),
        "{facts}"
    );
    let entries = std::fs::read_to_string(fx.root.join("record.registry")).unwrap();
    let mut names: Vec<&str> = entries.split_whitespace().collect();
    names.sort_unstable();
    // The link, and beside it what `--list` reads and the build its VM
    // runs (for --switch).
    assert_eq!(names.len(), 3, "{entries:?}");
    let entry = names[0];
    assert_eq!(names[1], format!("{entry}.build"), "{entries:?}");
    assert_eq!(names[2], format!("{entry}.json"), "{entries:?}");
    let (key, pid) = entry
        .split_once('.')
        .unwrap_or_else(|| panic!("no entry: {entries:?}"));
    assert_eq!(key.len(), 16, "{entry}");
    assert!(pid.parse::<u32>().is_ok(), "{entry}");
    assert!(!registry.exists(), "the entry outlived the VM");

    // A nixos-shell killed outright leaves its entry: the next attach
    // removes it (and the directory it was alone in) and says no VM runs.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&registry)
        .unwrap();
    let stale = registry.join(format!("{key}.{}", (1 << 22) + 1));
    std::os::unix::fs::symlink("/nonexistent/attach.sock", &stale).unwrap();
    assert_one_line_error(&fx.run(&["--attach"]), "no VM of this directory is running");
    assert!(!registry.exists(), "the stale entry stayed");
}

#[test]
fn a_registry_other_users_may_write_to_is_refused() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm("{ }"));
    let registry = registry(&fx);
    std::fs::create_dir(&registry).unwrap();
    std::fs::set_permissions(
        &registry,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    assert_only_error(
        &fx.run(&["--attach"]),
        "is not a directory of yours alone (mode 0700); remove it and try again",
    );
}

#[test]
fn switch_refuses_the_flags_of_a_run_and_watch_and_restart_need_switch() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm("{ }"));
    let out = fx.run(&["--switch", "--memory", "1G"]);
    assert_only_error(
        &out,
        "the argument '--switch' cannot be used with '--memory <SIZE>'",
    );
    let out = fx.run(&["--watch"]);
    assert_only_error(
        &out,
        "--watch switches the running VM on each save: use it with --switch",
    );
    let out = fx.run(&["--restart"]);
    assert_only_error(
        &out,
        "--restart restarts the running VM with a new build: use it with --switch",
    );
    let out = fx.run(&["--switch", "--watch", "--restart"]);
    assert_only_error(
        &out,
        "the argument '--watch' cannot be used with '--restart'",
    );
    assert_eq!(fx.nix_calls().0, 0);
}

/// The modes beside a running VM evaluate nothing: nix's flags are
/// refused, `--console` goes with `--attach` only, and `--list` without a
/// running VM gives an empty list at once.
#[test]
fn the_modes_beside_a_vm_refuse_what_they_cannot_use_and_run_no_nix() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm("{ }"));
    assert_only_error(
        &fx.run(&["--stop", "-L"]),
        "--stop evaluates nothing: drop the flags for nix",
    );
    assert_only_error(
        &fx.run(&["--reset", "--impure"]),
        "--reset evaluates nothing: drop the flags for nix",
    );
    assert_only_error(
        &fx.run(&["--console"]),
        "--console goes with --attach: nixos-shell --attach --console [CONFIG]",
    );
    assert_only_error(
        &fx.run(&["--json"]),
        "--json goes with --list: nixos-shell --list --json",
    );
    let out = fx.run(&["--list", ".#vm"]);
    assert_one_line_error(&out, "cannot be used with");
    let out = fx.run(&["--list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let out = fx.run(&["--attach", "--console"]);
    assert_only_error(
        &out,
        "no VM of this directory is running; start one with `nixos-shell`",
    );
    assert_eq!(fx.nix_calls().0, 0);
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
}
