//! The harness' pure parts: module dependency order, its templates, and the
//! text of the run script in each era.

use std::path::PathBuf;

use crate::support::vm::{fill, module_load_order, Era, RunScript};

#[test]
fn modules_come_after_their_dependencies_once_each() {
    let dep = "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko\n\
               kernel/net/9p/9pnet.ko:\n\
               kernel/fs/netfs/netfs.ko:\n\
               kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko\n\
               kernel/drivers/virtio/virtio_ring.ko:\n";
    let builtin = "kernel/drivers/virtio/virtio.ko\n";
    assert_eq!(
        module_load_order(dep, builtin, &["virtio", "9pnet_virtio", "9p"]),
        [
            "kernel/net/9p/9pnet.ko",
            "kernel/drivers/virtio/virtio_ring.ko",
            "kernel/net/9p/9pnet_virtio.ko",
            "kernel/fs/netfs/netfs.ko",
            "kernel/fs/9p/9p.ko",
        ]
    );
}

#[test]
fn templates_fill_each_placeholder_and_leave_other_at_signs_alone() {
    assert_eq!(
        fill(
            "exec @cmd@ \"$@\" user@host @cmd@@x@",
            &[("cmd", "qemu @x@"), ("x", "!")]
        ),
        "exec qemu @x@ \"$@\" user@host qemu @x@!"
    );
}

#[test]
#[should_panic(expected = "no value for it")]
fn a_template_placeholder_without_a_value_is_a_harness_error() {
    fill("@missing@", &[]);
}

fn script(era: Era) -> String {
    RunScript {
        era,
        name: "vm".to_owned(),
        kernel: PathBuf::from("/k/vmlinuz"),
        initramfs: PathBuf::from("/k/init's.cpio"),
        virtiofsd: PathBuf::from("/opt/bin/virtiofsd"),
        prelude: String::new(),
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
            r#"-append "console=hvc0 quiet panic=-1 $QEMU_KERNEL_PARAMS""#,
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
