//! What the run script receives (arguments, environment, host facts), exit
//! statuses, out-links, the disk image, --build-only and --dry-run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::assert_one_line_error;
use crate::support::nix_fixture::{stdout, NixFixture, Record};
use crate::support::terminfo;
use crate::support::vm::Console;
use crate::PATHS;

/// Bound for a run on a terminal (no VM boots; nix builds the fixture).
const TERMINAL_TIMEOUT: Duration = Duration::from_secs(120);

fn mkvm(config: &str) -> String {
    format!(r#"{{ nixosConfigurations.vm = mkVm {{ modules = [ ({config}) ]; }}; }}"#)
}

fn session_share(root: &Path) -> String {
    format!(
        "local,path={}/share,security_model=none,mount_tag=nixos-shell",
        root.display()
    )
}

/// The virtio-serial device and ports that carry a command's streams when
/// nixos-shell's own are not a terminal (as in these tests).
fn stdio_ports(root: &Path) -> Vec<String> {
    let mut args = vec![
        "-device".to_owned(),
        "virtio-serial,id=nixos-shell-ports".to_owned(),
    ];
    for stream in ["stdin", "stdout", "stderr"] {
        args.extend([
            "-chardev".to_owned(),
            format!(
                "socket,id=nixos-shell-{stream},path={}/sockets/{stream}.port",
                root.display()
            ),
            "-device".to_owned(),
            format!(
                "virtserialport,bus=nixos-shell-ports.0,chardev=nixos-shell-{stream},name=org.nixos-shell.{stream}"
            ),
        ]);
    }
    args
}

/// A run with every flag that reaches the run script, under the QEMU
/// variables a user may have set; what the recording run script saw.
struct FullRun {
    fx: NixFixture,
    record: Record,
    /// The session's private directory, gone once the run is over.
    root: PathBuf,
}

fn full_run() -> FullRun {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm(r#"{ system.name = "box"; }"#));
    std::fs::create_dir(fx.work().join("data")).unwrap();
    let mut cli = fx.cli(&[
        "--memory",
        "1G",
        "--cores",
        "2",
        "--forward",
        "8080:80",
        "--forward",
        "0.0.0.0:5353:53/udp",
        "--mount",
        "data:/data:ro",
        "-c",
        "make test",
        "--",
        "-snapshot",
        "-name",
        "x y",
    ]);
    cli.env("QEMU_OPTS", "-nographic")
        .env("QEMU_NET_OPTS", "hostfwd=tcp::2222-:22")
        .env("QEMU_KERNEL_PARAMS", "quiet")
        .env("TERM", "xterm-test");
    let out = fx.run_with(cli);
    assert!(out.status.success());
    let record = fx.record();
    let root = record.session_root();
    assert!(root.starts_with(fx.tmp()), "{root:?}");
    FullRun { fx, record, root }
}

#[test]
fn the_flags_reach_the_run_script_as_its_documented_arguments() {
    let FullRun { fx, record, root } = full_run();
    let home = fx.home();
    let data = fx.work().join("data");
    assert_eq!(
        record.args,
        [
            "-m".to_owned(),
            "1G".to_owned(),
            "-smp".to_owned(),
            "2".to_owned(),
            "-virtfs".to_owned(),
            session_share(&root),
            "-virtfs".to_owned(),
            format!(
                "local,path={},security_model=none,mount_tag=home",
                home.display()
            ),
            "-virtfs".to_owned(),
            format!(
                "local,path={},security_model=none,mount_tag=mount0,readonly=on",
                data.display()
            ),
        ]
        .into_iter()
        .chain(stdio_ports(&root))
        .chain(["-snapshot".to_owned(), "-name".to_owned(), "x y".to_owned()])
        .collect::<Vec<_>>()
    );
}

#[test]
fn the_users_qemu_variables_are_kept_and_forwards_appended() {
    let FullRun { record, root, .. } = full_run();
    let env = &record.env;
    assert_eq!(env["QEMU_OPTS"], "-nographic");
    assert_eq!(env["QEMU_KERNEL_PARAMS"], "quiet");
    assert_eq!(
        env["QEMU_NET_OPTS"],
        "hostfwd=tcp::2222-:22,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:0.0.0.0:5353-:53"
    );
    assert_eq!(Path::new(&env["TMPDIR"]), root.join("tmp"));
    assert_eq!(env["USE_TMPDIR"], "1");
    assert!(!env.contains_key("SHARED_DIR"));
}

#[test]
fn the_run_script_runs_in_the_cwd_with_the_configurations_disk_image() {
    let FullRun { fx, record, .. } = full_run();
    let image = Path::new(&record.env["NIX_DISK_IMAGE"]);
    assert!(
        image.starts_with(fx.home().join(".local/state/nixos-shell")),
        "{image:?}"
    );
    assert!(image
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("box-"));
    assert_eq!(record.cwd, fx.work().display().to_string());
}

#[test]
fn the_host_facts_carry_the_user_the_command_and_the_mounts() {
    let FullRun { fx, record, .. } = full_run();
    let facts = record.facts.expect("facts.json in the session share");
    assert_eq!(facts["version"], 1);
    assert_eq!(facts["user"], "tester");
    assert_eq!(facts["home"], fx.home().display().to_string());
    assert_eq!(facts["cwd"], fx.work().display().to_string());
    assert_eq!(facts["term"], "xterm-test");
    assert_eq!(
        facts["path"],
        format!("{}:/usr/bin:/bin", fx.root.join("bin").display())
    );
    assert_eq!(facts["command"], "make test");
    assert_eq!(
        facts["commandIo"], "ports",
        "the tests run nixos-shell without a terminal"
    );
    assert_eq!(
        facts["ports"],
        serde_json::json!(["stdin", "stdout", "stderr"]),
        "a command's streams on the ports, and no console to resize"
    );
    assert!(
        facts.get("terminal").is_none(),
        "the size has one source, the resize port"
    );
    let mounts = facts["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[0]["tag"], "mount0");
    assert_eq!(mounts[0]["guestPath"], "/data");
    assert_eq!(mounts[0]["readOnly"], true);
    assert_eq!(mounts[1]["tag"], "home");
    assert_eq!(mounts[1]["msize"], 16384);
}

/// The host's compiled entry for `TERM`, where `TERMINFO` names it (as
/// kitty's does): copied, alone, into the session share, and named in the
/// facts; a `TERM` without an entry: nothing.
#[test]
fn the_terminals_terminfo_entry_travels_in_the_session_share() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm("{ }"));
    let terminfo = fx.root.join("terminal-app/terminfo");
    terminfo::compile("xterm-cli-test", "a terminal of this test", &terminfo);
    let mut cli = fx.cli(&[]);
    cli.env("TERM", "xterm-cli-test").env("TERMINFO", &terminfo);
    assert!(fx.run_with(cli).status.success());
    let facts = fx.record().facts.unwrap();
    assert_eq!(facts["terminfoDir"], "terminfo");
    let copied = fx.recorded_terminfo();
    assert_eq!(
        std::fs::read(copied.join("x/xterm-cli-test")).unwrap(),
        std::fs::read(terminfo.join("x/xterm-cli-test")).unwrap()
    );
    let everything: Vec<_> = walk(&copied);
    assert_eq!(everything, ["x/xterm-cli-test"], "only the one entry");

    let mut cli = fx.cli(&[]);
    cli.env("TERM", "xterm-nowhere").env("TERMINFO", &terminfo);
    assert!(fx.run_with(cli).status.success());
    assert!(fx
        .record()
        .facts
        .unwrap()
        .get("terminfoDir")
        .is_none_or(|d| d.is_null()));
    assert!(!fx.recorded_terminfo().exists());
}

/// The files below `dir`, relative, sorted.
fn walk(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut queue = vec![dir.to_owned()];
    while let Some(next) = queue.pop() {
        for entry in std::fs::read_dir(&next).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                queue.push(entry.path());
            } else {
                let rel = entry
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.push(rel);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn a_run_leaves_nothing_private_behind() {
    let FullRun { fx, root, .. } = full_run();
    // The out-link, the session share, TMPDIR: all in the private root.
    assert!(!root.exists());
    assert!(fx.leftovers().is_empty());
}

/// The virtiofs era: NixOS's run script carries a shared memory backend of
/// the configured size, and QEMU refuses a `-m` that differs from it.
#[test]
fn memory_replaces_the_run_scripts_memory_backend_when_the_manifest_names_one() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm(
        r#"{ fixture.memoryBackend = { id = "mem0"; size = 256; }; }"#,
    ));
    let out = fx.run(&["--memory", "512", "--no-home"]);
    assert!(out.status.success());
    let args = fx.record().args;
    assert_eq!(
        args[..6],
        [
            "-m",
            "512M",
            "-object",
            "memory-backend-memfd,id=nixos-shell-mem,size=512M,share=on",
            "-machine",
            "memory-backend=nixos-shell-mem"
        ]
    );
    // Without --memory the script's own backend stands.
    fx.run(&["--no-home"]);
    let args = fx.record().args;
    assert!(
        !args.iter().any(|a| a.contains("memory-backend")),
        "{args:?}"
    );
}

/// `nix build` once, or receive a closure with `nix copy`: the build result
/// runs with every run-time flag and no nix process at all.
#[test]
fn a_build_result_runs_without_nix() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm(r#"{ system.name = "built"; }"#));
    let out = fx.run(&["--build-only", "--out-link", "result"]);
    assert!(out.status.success());
    let calls = fx.nix_calls().0;
    let out = fx.run(&[
        "./result",
        "--memory",
        "1G",
        "--forward",
        "8080:80",
        "-c",
        "true",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fx.nix_calls().0, calls, "nix ran for a build result");
    let record = fx.record();
    assert!(
        record.script.ends_with("/bin/run-built-vm"),
        "{}",
        record.script
    );
    assert_eq!(record.args[..2], ["-m", "1G"]);
    assert_eq!(
        record.env["QEMU_NET_OPTS"],
        "hostfwd=tcp:127.0.0.1:8080-:80"
    );
    // The store path itself works too; flags for nix have nothing to do.
    let store_path = std::fs::canonicalize(fx.work().join("result")).unwrap();
    assert!(fx.run(&[store_path.to_str().unwrap()]).status.success());
    assert_eq!(fx.nix_calls().0, calls);
    super::assert_only_error(
        &fx.run(&["./result", "-L"]),
        "is a build result and needs no nix: drop the flags for nix and --out-link",
    );
}

#[test]
fn module_mounts_no_home_and_the_users_tmpdir() {
    let fx = NixFixture::new(PATHS);
    let srv = fx.work().join("srv");
    std::fs::create_dir(&srv).unwrap();
    fx.flake(&mkvm(&format!(
        r#"{{ system.name = "m"; fixture.diskImage = null; fixture.extraMounts = [
             {{ guestPath = "/var/www"; target = "{}"; tag = "awww"; cache = "none"; readOnly = true; }} ]; }}"#,
        srv.display()
    )));
    let own_tmp = fx.root.join("own-tmp");
    std::fs::create_dir(&own_tmp).unwrap();
    let mut cli = fx.cli(&["--no-home"]);
    cli.env("TMPDIR", &own_tmp).env("USE_TMPDIR", "1");
    assert!(fx.run_with(cli).status.success());
    let record = fx.record();
    assert_eq!(record.env["TMPDIR"], own_tmp.display().to_string());
    assert!(
        !record.env.contains_key("NIX_DISK_IMAGE"),
        "a null diskImage sets no image"
    );
    let virtfs = record.virtfs();
    assert_eq!(virtfs.len(), 2, "{virtfs:?}");
    assert!(virtfs[0].ends_with("mount_tag=nixos-shell"));
    assert_eq!(
        virtfs[1],
        format!(
            "local,path={},security_model=none,mount_tag=awww,readonly=on",
            srv.display()
        )
    );
    assert_eq!(record.facts.unwrap()["mounts"][0]["cache"], "none");
    assert!(std::fs::read_dir(&own_tmp).unwrap().next().is_none());
}

/// A fixture whose configuration, `disk`, has a disk image.
fn with_disk() -> NixFixture {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm(r#"{ system.name = "disk"; }"#));
    fx
}

#[test]
fn the_users_nix_disk_image_is_the_disk_image() {
    let fx = with_disk();
    let mut cli = fx.cli(&[]);
    cli.env("NIX_DISK_IMAGE", "/mine.qcow2");
    assert!(fx.run_with(cli).status.success());
    assert_eq!(fx.record().env["NIX_DISK_IMAGE"], "/mine.qcow2");
}

#[test]
fn ephemeral_and_disk_choose_a_session_image_and_a_given_one() {
    let fx = with_disk();
    assert!(fx.run(&["--ephemeral"]).status.success());
    let record = fx.record();
    assert_eq!(
        Path::new(&record.env["NIX_DISK_IMAGE"]),
        record.session_root().join("disk.qcow2")
    );
    assert!(fx.run(&["--disk", "images/d.qcow2"]).status.success());
    assert_eq!(
        Path::new(&fx.record().env["NIX_DISK_IMAGE"]),
        fx.work().join("images/d.qcow2")
    );
}

/// While another nixos-shell holds the per-configuration image's lock, a
/// second VM gets a temporary image instead; once it is free, the image is
/// used again.
#[test]
fn an_image_in_use_gives_the_second_vm_a_temporary_one() {
    let fx = with_disk();
    assert!(fx.run(&[]).status.success());
    let image = fx.record().env["NIX_DISK_IMAGE"].clone();
    let lock = std::fs::File::open(format!("{image}.lock")).unwrap();
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(rc, 0);
    let out = fx.run(&[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is in use by another nixos-shell"));
    let record = fx.record();
    assert_eq!(
        Path::new(&record.env["NIX_DISK_IMAGE"]),
        record.session_root().join("disk.qcow2")
    );
    drop(lock);
    assert!(fx.run(&[]).status.success());
    assert_eq!(fx.record().env["NIX_DISK_IMAGE"], image);
}

/// The same configuration written otherwise keeps its image; another
/// configuration of the same name gets another.
#[test]
fn the_image_belongs_to_the_configuration_however_it_is_written() {
    let fx = with_disk();
    assert!(fx.run(&[]).status.success());
    let image = fx.record().env["NIX_DISK_IMAGE"].clone();
    for same in [
        format!("path:{}#vm", fx.work().display()),
        "./#vm".to_owned(),
    ] {
        assert!(fx.run(&["--flake", &same]).status.success());
        assert_eq!(fx.record().env["NIX_DISK_IMAGE"], image, "{same}");
    }
    fx.flake_in("other", &mkvm(r#"{ system.name = "disk"; }"#));
    assert!(fx.run(&["./other#vm"]).status.success());
    assert_ne!(fx.record().env["NIX_DISK_IMAGE"], image);
}

/// A tmpfs root has no image for a disk flag to choose: refused, rather
/// than silently ignored, before the VM starts.
#[test]
fn a_disk_flag_is_refused_for_a_vm_without_a_disk_image() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm(r#"{ fixture.diskImage = null; }"#));
    // Only the build's manifest says there is no image, so the refusal
    // comes after a build: built here first, so that nix has nothing to
    // say (on a store without it, nix says it builds) and the refusal's
    // line is all of stderr.
    assert!(fx.run(&[]).status.success());
    assert!(!fx.record().env.contains_key("NIX_DISK_IMAGE"));
    std::fs::remove_file(fx.record_path()).unwrap();
    for args in [&["--ephemeral"][..], &["--disk", "d.qcow2"]] {
        let out = fx.run(args);
        super::assert_only_error(&out, "this VM has none (virtualisation.diskImage = null");
        assert!(!fx.record_path().exists(), "the VM started for {args:?}");
        assert!(!fx.work().join("d.qcow2").exists());
    }
}

#[test]
fn exit_status_is_the_run_scripts_or_the_commands() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm("{ }"));
    let mut cli = fx.cli(&[]);
    cli.env("NIXOS_SHELL_TEST_EXIT", "5");
    assert_eq!(fx.run_with(cli).status.code(), Some(5));

    let mut cli = fx.cli(&["--command", "exit 7"]);
    cli.env("NIXOS_SHELL_TEST_GUEST_EXIT", "7")
        .env("NIXOS_SHELL_TEST_EXIT", "0");
    assert_eq!(fx.run_with(cli).status.code(), Some(7));

    let mut cli = fx.cli(&["-c", "true"]);
    cli.env("NIXOS_SHELL_TEST_NO_RESULT", "1");
    let out = fx.run_with(cli);
    assert_one_line_error(&out, "without reporting the command's status");
    assert!(fx.leftovers().is_empty());
}

#[test]
fn a_replaced_run_script_gets_the_terminal_and_decides_the_status() {
    let fx = NixFixture::new(PATHS);
    // Each of its streams a terminal, and that terminal nixos-shell's (its
    // size, which no other terminal here has).
    fx.write_run_script(
        "#!/bin/sh\n\
         for fd in 0 1 2; do [ -t $fd ] || echo \"fd $fd is no terminal\"; done\n\
         echo \"from the vm at $(stty size)\"\n\
         exit 9\n",
    );
    fx.flake(&mkvm("{ }"));
    let mut console = Console::spawn_with(fx.cli(&[]), 27, 91, None);
    console.expect("from the vm at 27 91", TERMINAL_TIMEOUT);
    let status = console.wait(TERMINAL_TIMEOUT);
    assert_eq!(status.code(), Some(9), "{}", console.transcript());
    assert!(
        !console.transcript().contains("is no terminal"),
        "{}",
        console.transcript()
    );
}

#[test]
fn the_out_link_is_private_unless_asked_for() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm(r#"{ system.name = "kept"; }"#));
    // A plain run links nothing into the cwd, as `nix build` would.
    assert!(fx.run(&[]).status.success());
    let result = fx.work().join("result");
    assert!(
        result.symlink_metadata().is_err(),
        "a plain run left {}",
        result.display()
    );
    assert!(fx.leftovers().is_empty());
    assert!(fx.run(&["--out-link", "keep"]).status.success());
    let link = fx.work().join("keep");
    let target = std::fs::read_link(&link).expect("--out-link keeps a link");
    assert!(target.starts_with("/nix/store"));
    assert!(link.join("bin/run-kept-vm").exists());
    assert!(fx.leftovers().is_empty());
}

#[test]
fn build_only_prints_the_run_script_and_starts_nothing() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm(r#"{ system.name = "only"; }"#));
    let out = fx.run(&["--build-only", ".#vm"]);
    assert!(out.status.success());
    let printed = stdout(&out);
    let path = printed.trim_end();
    assert!(
        path.starts_with("/nix/store/") && path.ends_with("/bin/run-only-vm"),
        "{printed}"
    );
    assert!(Path::new(path).exists());
    assert!(!fx.record_path().exists());
    assert!(fx.leftovers().is_empty());
}

#[test]
fn dry_run_prints_the_commands_and_runs_nothing() {
    let fx = NixFixture::new(PATHS);
    fx.flake(&mkvm("{ }"));
    let out = fx.run(&[
        "--dry-run",
        "--forward",
        "8080:80",
        ".#vm",
        "--",
        "-snapshot",
    ]);
    assert!(out.status.success());
    let printed = stdout(&out);
    assert!(printed.contains(&format!(
        "nix build --extra-experimental-features 'nix-command flakes' --json --out-link '<private-temp-dir>/result' '{}#nixosConfigurations.vm.config.system.build.nixos-shell'\n",
        fx.work().display()
    )), "{printed}");
    assert!(printed.contains(
        "QEMU_NET_OPTS=hostfwd=tcp:127.0.0.1:8080-:80 TMPDIR='<private-temp-dir>/tmp' USE_TMPDIR=1 '<result>/bin/run-<name>-vm' -virtfs 'local,path=<private-temp-dir>/share,security_model=none,mount_tag=nixos-shell' -snapshot\n"
    ), "{printed}");
    assert_eq!(fx.nix_calls().0, 0);
    assert!(fx.leftovers().is_empty());
}
