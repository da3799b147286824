//! Bad input: one line saying what was wrong and what to do, a non-zero
//! status, no panic, nothing left behind.

use super::{assert_one_line_error, assert_only_error};
use crate::support::nix_fixture::NixFixture;
use crate::PATHS;

#[test]
fn an_empty_directory_says_what_was_looked_for_and_how_to_start() {
    let fx = NixFixture::new(PATHS);
    let out = fx.run(&[]);
    assert_only_error(&out, "no vm.nix and no flake.nix in ");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nixos-shell some-module.nix"), "{err}");
    assert!(
        !err.contains("OWNER"),
        "the hint names no placeholder: {err}"
    );
    assert_eq!(fx.nix_calls().0, 0);
    assert!(fx.leftovers().is_empty());
    // The hint, followed as it says, starts a VM.
    assert!(err.contains("`echo '{ }' > vm.nix`"), "{err}");
    fx.write("vm.nix", "{ }\n");
    assert!(fx.run(&[]).status.success());
    assert!(fx.record_path().exists(), "the VM did not start");
}

#[test]
fn bad_arguments_are_refused_before_nix_runs() {
    let fx = NixFixture::new(PATHS);
    fx.flake("{ }");
    let cases: &[(&[&str], &str)] = &[
        (&["missing.nix"], "missing.nix not found"),
        (&["#vm"], "malformed flake reference \"#vm\""),
        (&[".#a.b"], "is not a plain attribute name"),
        (&["nope:x#vm"], "unknown scheme \"nope\""),
        (&["--forward", "80"], "--forward \"80\" lacks a port"),
        (&["--forward", "a:b"], "is not a port"),
        (&["--mount", "no-such-dir"], "no-such-dir does not exist"),
        (&["--mount", "flake.nix"], "is not a directory"),
        (&["--memory", "much"], "is not a memory size"),
        (&["--cores", "0"], "is not a positive number of CPUs"),
    ];
    for (args, needle) in cases {
        let out = fx.run(args);
        assert_only_error(&out, needle);
    }
    assert_eq!(fx.nix_calls().0, 0);
    assert!(fx.leftovers().is_empty());
}

#[test]
fn a_command_line_that_does_not_parse_is_one_line_with_clap_status() {
    let fx = NixFixture::new(PATHS);
    fx.flake("{ }");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--disk", "d.qcow2", "--ephemeral"],
            "the argument '--disk <PATH>' cannot be used with '--ephemeral'; see --help",
        ),
        (
            &["--fowrard", "8080"],
            "unexpected argument '--fowrard' found; did you mean '--forward'?",
        ),
        (
            &["--cores"],
            "a value is required for '--cores <N>' but none was supplied; see --help",
        ),
        (
            &["a.nix", "b.nix"],
            "unexpected argument 'b.nix' found; see --help",
        ),
    ];
    for (args, needle) in cases {
        let out = fx.run(args);
        assert_only_error(&out, needle);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    assert_eq!(fx.nix_calls().0, 0);
    assert!(fx.leftovers().is_empty());
}

#[test]
fn version_is_printed_not_booted() {
    let fx = NixFixture::new(PATHS);
    let out = fx.run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("nixos-shell {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn nix_missing_from_path() {
    let fx = NixFixture::new(PATHS);
    fx.flake("{ }");
    let mut cli = fx.cli(&[]);
    cli.env("PATH", fx.home());
    assert_only_error(&fx.run_with(cli), "`nix` is not on PATH; install Nix");
    assert!(fx.leftovers().is_empty());
}

#[test]
fn a_build_failure_keeps_nixs_message_and_status() {
    let fx = NixFixture::new(PATHS);
    fx.flake(r#"{ nixosConfigurations.vm = mkVm { modules = [ { fixture.fail = true; } ]; }; }"#);
    let out = fx.run(&[]);
    let (calls, exits) = fx.nix_calls();
    assert_eq!(calls, 1);
    assert_ne!(exits[0], 0);
    assert_eq!(out.status.code(), Some(exits[0]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fixture build failed on purpose"), "{err}");
    assert!(!fx.record_path().exists());
    assert!(fx.leftovers().is_empty());
}

#[test]
fn a_result_without_a_run_script() {
    let fx = NixFixture::new(PATHS);
    fx.flake(
        r#"{ nixosConfigurations.vm = mkVm { modules = [ { fixture.runScript = false; } ]; }; }"#,
    );
    assert_one_line_error(&fx.run(&[]), "has no bin/run-*-vm");
    assert!(fx.leftovers().is_empty());
}

#[test]
fn ctrl_c_during_the_build_stops_it_exits_130_and_leaves_nothing() {
    let fx = NixFixture::new(PATHS);
    let build = fx.waiting_build();
    let mut cli = fx.cli(&[]);
    std::os::unix::process::CommandExt::process_group(&mut cli, 0);
    let mut child = cli.spawn().unwrap();
    build.wait_until_started(String::new);
    // What the terminal does on Ctrl-C: SIGINT to the foreground group.
    let pgid = i32::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    // No nix and no builder left, so nothing can write into TMPDIR later.
    let left = build.left(&fx);
    assert!(left.is_empty(), "the build outlived nixos-shell: {left:?}");
    assert!(!build.finished(), "nix was waited for, not stopped");
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    assert!(!fx.record_path().exists());
}

/// Regression: SIGTERM during the build killed nixos-shell and left nix
/// building; it later wrote its out-link (a GC root) into the leaked
/// session directory. Sent to nixos-shell alone, as `kill PID` does.
#[test]
fn term_during_the_build_stops_nix_exits_143_and_nothing_is_written_afterwards() {
    let fx = NixFixture::new(PATHS);
    let build = fx.waiting_build();
    let mut child = fx.cli(&[]).spawn().unwrap();
    build.wait_until_started(String::new);
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: signals the nixos-shell this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    // nix and its builder were stopped and waited for: nothing is left
    // that could write into TMPDIR later.
    let left = build.left(&fx);
    assert!(left.is_empty(), "the build outlived nixos-shell: {left:?}");
    assert!(!build.finished(), "nix was waited for, not stopped");
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    assert!(!fx.record_path().exists());
}

#[test]
fn a_disk_flag_beside_nix_disk_image_is_refused_not_ignored() {
    let fx = NixFixture::new(PATHS);
    fx.flake(r#"{ nixosConfigurations.vm = mkVm { }; }"#);
    let image = fx.root.join("mine.qcow2");
    for (args, flag) in [
        (&["--ephemeral"][..], "--ephemeral"),
        (&["--disk", "d.qcow2"][..], "--disk"),
    ] {
        let mut cli = fx.cli(args);
        cli.env("NIX_DISK_IMAGE", &image);
        assert_only_error(
            &fx.run_with(cli),
            &format!("{flag} and NIX_DISK_IMAGE both choose the disk image; drop one"),
        );
    }
    assert_eq!(fx.nix_calls().0, 0);
    assert!(!fx.record_path().exists());
    assert!(!image.exists() && !fx.work().join("d.qcow2").exists());
    assert!(fx.leftovers().is_empty());
}
