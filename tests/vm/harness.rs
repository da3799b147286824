//! The harness' pure parts: module dependency order and the run script.

use std::path::Path;

use crate::support::vm::{module_load_order, run_script_text};

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
fn the_run_script_keeps_the_nixos_interface() {
    let text = run_script_text("vm", Path::new("/k/vmlinuz"), Path::new("/k/init's.cpio"));
    for expected in [
        r#"NIX_DISK_IMAGE=$(readlink -f "${NIX_DISK_IMAGE:-./vm.qcow2}")"#,
        r#"if [ -z "$TMPDIR" ] || [ -z "$USE_TMPDIR" ]; then"#,
        r#"-netdev user,id=user.0,"$QEMU_NET_OPTS""#,
        r#"-append "console=hvc0 quiet panic=-1 $QEMU_KERNEL_PARAMS""#,
        r#"$QEMU_OPTS "$@""#,
        "-initrd '/k/init'\\''s.cpio'",
        "-chardev stdio,mux=on,id=char0,signal=off",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(text.trim_end().ends_with(r#"$QEMU_OPTS "$@""#));
}

/// Regression: the default image was written `'./vm.qcow2'` inside double
/// quotes, where sh keeps the quotes, so the script died without
/// NIX_DISK_IMAGE. Runs the script's own line with sh.
#[test]
fn the_default_disk_image_is_the_name_in_the_callers_directory() {
    let text = run_script_text("vm", Path::new("/k/vmlinuz"), Path::new("/k/initrd"));
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
        cwd.join("vm.qcow2").to_string_lossy()
    );
}
