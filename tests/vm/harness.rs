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
        r#"NIX_DISK_IMAGE=$(readlink -f "${NIX_DISK_IMAGE:-'./vm.qcow2'}")"#,
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
