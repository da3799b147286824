//! Hostile and mistyped input: refused with one line before anything is
//! built or started where it can be known then, and nothing of the user's
//! overwritten.

use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;

use super::{assert_one_line_error, assert_only_error};
use crate::support::nix_fixture::NixFixture;
use crate::PATHS;

const VM: &str = r#"{ nixosConfigurations.vm = mkVm { }; }"#;

/// A fixture with the flake and a directory `data` to share.
fn fixture() -> NixFixture {
    let fx = NixFixture::new(PATHS);
    fx.flake(VM);
    std::fs::create_dir(fx.work().join("data")).unwrap();
    fx
}

/// Nothing ran: no nix process, no VM, nothing left in TMPDIR.
fn assert_nothing_ran(fx: &NixFixture) {
    assert_eq!(fx.nix_calls().0, 0, "nix ran: {:?}", fx.nix_argv());
    assert!(!fx.record_path().exists(), "the VM started");
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
}

/// Regression: `HOST:/data:RO` gave a read-write share at `/data:RO`, and
/// a guest write overwrote the host's file.
#[test]
fn a_mount_with_an_unknown_mode_or_extra_colons_is_refused_before_the_build() {
    let fx = fixture();
    for (spec, says) in [
        ("data:/data:RO", "unknown mode \"RO\""),
        ("data:/data:readonly", "unknown mode \"readonly\""),
        (
            "data:/a:b:ro",
            "a path containing ':' cannot be given to --mount",
        ),
        ("data:data", "neither an absolute guest path nor a mode"),
    ] {
        assert_only_error(&fx.run(&["--mount", spec]), says);
    }
    assert_nothing_ran(&fx);
}

#[test]
fn a_mount_over_the_guests_system_or_on_another_share_is_refused() {
    let fx = fixture();
    for (spec, says) in [
        ("data:/", "holds the guest's own system"),
        ("data:/nix", "holds the guest's own system"),
        (
            "data:/run/nixos-shell",
            "nixos-shell's own directory in the guest",
        ),
        (
            "data:/run/nixos-shell/session",
            "nixos-shell's own directory in the guest",
        ),
    ] {
        assert_only_error(&fx.run(&["--mount", spec]), says);
    }
    assert_only_error(
        &fx.run(&["--mount", "data:/a", "--mount", ".:/a"]),
        "would both be shared at /a in the guest",
    );
    assert_nothing_ran(&fx);
    // The module's home share is known after the build only.
    let home = fx.home().display().to_string();
    let out = fx.run(&["--mount", &format!("data:{home}")]);
    assert_only_error(
        &out,
        &format!("would both be shared at {home} in the guest"),
    );
    assert!(!fx.record_path().exists(), "the VM started");
}

/// Regression: HOME=/ shared the host's whole root, read-write, as home.
#[test]
fn a_home_of_the_root_is_not_shared() {
    let fx = fixture();
    let mut cli = fx.cli(&[]);
    cli.env("HOME", "/")
        .env("XDG_STATE_HOME", fx.root.join("state"));
    assert_only_error(
        &fx.run_with(cli),
        "HOME is /, and sharing it would share the host's whole root",
    );
    assert!(!fx.record_path().exists(), "the VM started");
    let mut cli = fx.cli(&["--no-home"]);
    cli.env("HOME", "/")
        .env("XDG_STATE_HOME", fx.root.join("state"));
    assert!(fx.run_with(cli).status.success());
}

/// Regression: an existing text file, /dev/null or random bytes became the
/// guest's writable raw disk and were overwritten.
#[test]
fn a_disk_that_is_not_a_qcow2_image_is_refused_and_left_alone() {
    let fx = fixture();
    let notes = fx.write("notes.txt", "my notes\n");
    std::fs::write(fx.work().join("random.img"), [0x13u8, 0x37, 0, 1, 2, 3]).unwrap();
    for (disk, says) in [
        ("notes.txt", "is not a qcow2 image and would be overwritten"),
        (
            "random.img",
            "is not a qcow2 image and would be overwritten",
        ),
        ("/dev/null", "is not a qcow2 image and would be overwritten"),
        ("data", "is a directory"),
        ("", "--disk needs a path"),
    ] {
        assert_only_error(&fx.run(&["--disk", disk]), says);
    }
    assert_nothing_ran(&fx);
    assert_eq!(std::fs::read_to_string(notes).unwrap(), "my notes\n");
    // A qcow2 image and a new path are taken.
    std::fs::write(fx.work().join("vm.qcow2"), b"QFI\xfb\0\0\0\x03").unwrap();
    assert!(fx.run(&["--disk", "vm.qcow2"]).status.success());
    assert!(fx.run(&["--disk", "new/vm.qcow2"]).status.success());
}

#[test]
fn a_forward_qemu_could_not_listen_on_is_refused_before_the_build() {
    let fx = fixture();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    assert_only_error(
        &fx.run(&["--forward", &format!("{port}:80")]),
        &format!("tcp port {port} on 127.0.0.1 is in use"),
    );
    for spec in ["localhost:8080:80", "[::1]:8080:80"] {
        assert_only_error(&fx.run(&["--forward", spec]), "is not an IPv4 address");
    }
    assert_nothing_ran(&fx);
    // Only a VM that starts needs the port: a build or a dry run does not.
    assert!(fx
        .run(&["--dry-run", "--forward", &format!("{port}:80")])
        .status
        .success());
    assert!(fx
        .run(&["--build-only", "--forward", &format!("{port}:80")])
        .status
        .success());
    drop(taken);
}

/// Ports below 1024 need root: tried as an unprivileged user (uid 65534,
/// which needs no entry in /etc/passwd), in a network namespace of its own
/// whose `net.ipv4.ip_unprivileged_port_start` is the kernel's default,
/// 1024, whatever this machine's is (some set it to 0). The namespace has
/// no loopback up, so the forward listens on 0.0.0.0. Needs root, as the
/// VM tests do.
#[test]
fn a_low_port_without_root_says_it_needs_root() {
    let fx = fixture();
    let mut cli = std::process::Command::new("unshare");
    cli.args(["--net", "--", "sh", "-c"])
        .arg(
            "echo 1024 > /proc/sys/net/ipv4/ip_unprivileged_port_start && \
             exec setpriv --reuid=65534 --regid=65534 --clear-groups -- \"$0\" \"$@\"",
        )
        .arg(PATHS.cli())
        .args(["--forward", "0.0.0.0:80:80"])
        .current_dir(fx.work())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent");
    let out = cli.output().expect("run unshare (util-linux)");
    assert_only_error(&out, "tcp port 80 is below 1024 and needs root");
}

#[test]
fn absurd_sizes_and_non_utf8_homes_get_one_line() {
    let fx = fixture();
    assert_only_error(
        &fx.run(&["--memory", "18446744073709551615G"]),
        "is more memory than a VM can have",
    );
    let mut cli = fx.cli(&[]);
    cli.env("HOME", std::ffi::OsStr::from_bytes(b"/home/\xff"));
    assert_only_error(&fx.run_with(cli), "is not UTF-8; set HOME to a UTF-8 path");
    assert_nothing_ran(&fx);
}

/// Regression: clap's tip for `-c -x` was `-- -x`, which here hands `-x` to
/// QEMU; a command may start with a dash.
#[test]
fn a_command_may_start_with_a_dash() {
    let fx = fixture();
    let out = fx.run(&["-c", "-x"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("-- -x"));
    // The guest's command, not an argument of the run script (QEMU's).
    let record = fx.record();
    let facts = record.facts.expect("facts.json in the session share");
    assert_eq!(facts["command"], "-x");
    assert!(
        !record.args.iter().any(|arg| arg == "-x"),
        "{:?}",
        record.args
    );
}

/// QEMU failing before any guest ran (its own message on the terminal) is
/// not blamed on the module.
#[test]
fn a_vm_that_fails_to_start_says_qemu_failed_not_that_the_module_is_missing() {
    let fx = fixture();
    fx.write_run_script(
        "#!/bin/sh\necho 'qemu-system-x86_64: -drive: Could not open disk' >&2\nexit 1\n",
    );
    let out = fx.run(&["-c", "true"]);
    assert_one_line_error(
        &out,
        "QEMU failed (status 1); its message is above; if it is about the disk image, \
         check it with `qemu-img check ",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Could not open disk"), "{stderr}");
    assert!(stderr.contains("`, or run with --ephemeral"), "{stderr}");
    assert!(!stderr.contains("nixos-shell module"), "{stderr}");
    // Without --command: the same line, and QEMU's status.
    let out = fx.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert_one_line_error(&out, "QEMU failed (status 1); its message is above");
    assert!(fx.leftovers().is_empty());
}

/// Without its module at hand, nixos-shell still names what it looks for.
#[test]
fn a_missing_flake_attribute_lists_the_attributes_looked_for() {
    let fx = fixture();
    let mut cli = fx.cli(&[".#other"]);
    cli.env_remove("NIXOS_SHELL_MODULE");
    let out = fx.run_with(cli);
    assert_only_error(
        &out,
        "provides no nixosConfigurations.other.config.system.build.nixos-shell",
    );
    for attribute in [
        "nixosConfigurations.other",
        "nixosModules.other",
        "packages.<system>.nixosConfigurations.other",
    ] {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(attribute),
            "{attribute}"
        );
    }
}

/// `--detach` starts a VM without a terminal: a command for that terminal,
/// another mode, or a build alone are refused by the parser, before nix.
#[test]
fn detach_with_a_command_or_another_mode_is_refused_before_the_build() {
    let fx = fixture();
    for (flags, other) in [
        (&["--detach", "-c", "true"][..], "--command <CMD>"),
        (&["--detach", "--attach"][..], "--attach"),
        (&["--detach", "--build-only"][..], "--build-only"),
        (&["--detach", "--dry-run"][..], "--dry-run"),
        (&["--detach", "--stop"][..], "--stop"),
    ] {
        let out = fx.run(flags);
        assert_one_line_error(&out, "cannot be used with");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(other), "{flags:?}: {said}");
    }
    assert_nothing_ran(&fx);
}
