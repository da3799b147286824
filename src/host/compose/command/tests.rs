use super::*;
use crate::host::shares::Shares;
use crate::host::test_data::{env, manifest, settings};
use crate::schema::manifest::{MemoryBackend, Protocol};

/// The sample manifest's shares (home at /home/a), exported.
fn exported(manifest: &Manifest) -> Exported {
    Shares::collect(manifest, "/home/a".into(), None, &[], false)
        .unwrap()
        .export()
}

fn virtiofs() -> Manifest {
    let mut manifest = manifest();
    manifest.mounts.protocol = Protocol::Virtiofs;
    manifest
}

/// `manifest` of a run script that brings its own memory backend of the
/// VM's size (nixpkgs since its shares moved to virtiofs).
fn with_backend(mut manifest: Manifest) -> Manifest {
    manifest.memory_backend = Some(MemoryBackend {
        id: "mem0".to_owned(),
        size: 500,
    });
    manifest
}

fn compose_with(
    manifest: &Manifest,
    settings: &VmSettings,
    user_env: &BTreeMap<String, String>,
    disk_image: Option<&Utf8Path>,
) -> VmCommand {
    let shares = exported(manifest);
    compose(&Parts {
        run_script: "/r/bin/run-nixos-vm".into(),
        manifest,
        settings,
        env: user_env,
        session: &Layout::under("/s"),
        shares: &shares,
        socket_dir: "/s/vfs".into(),
        ports: &[],
        disk_image,
    })
}

const FLAGS: [&str; 10] = [
    "--memory",
    "2G",
    "--cores",
    "2",
    "--forward",
    "8080:80",
    "--forward",
    "0.0.0.0:53:53/udp",
    "--",
    "-snapshot",
];

#[test]
fn composes_arguments_in_order() {
    let command = compose_with(&manifest(), &settings(&FLAGS), &env(&[]), None);
    assert_eq!(command.program, "/r/bin/run-nixos-vm");
    assert_eq!(
        command.args,
        [
            "-m",
            "2G",
            "-smp",
            "2",
            "-virtfs",
            "local,path=/s/share,security_model=none,mount_tag=nixos-shell",
            "-virtfs",
            "local,path=/home/a,security_model=none,mount_tag=home",
            "-virtfs",
            "local,path=/srv/www,security_model=none,mount_tag=awww,readonly=on",
            "-snapshot"
        ]
    );
}

#[test]
fn the_environment_appends_to_the_users_net_options_and_names_the_disk() {
    let user = env(&[("QEMU_NET_OPTS", "hostfwd=tcp::2222-:22")]);
    let command = compose_with(
        &manifest(),
        &settings(&FLAGS),
        &user,
        Some("/state/nixos.qcow2".into()),
    );
    assert_eq!(
        command.env,
        env(&[
            ("NIX_DISK_IMAGE", "/state/nixos.qcow2"),
            (
                "QEMU_NET_OPTS",
                "hostfwd=tcp::2222-:22,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:0.0.0.0:53-:53",
            ),
            ("TMPDIR", "/s/tmp"),
            ("USE_TMPDIR", "1"),
        ])
    );
}

#[test]
fn the_users_tmpdir_is_kept_when_both_are_set() {
    let user = env(&[("TMPDIR", "/mine"), ("USE_TMPDIR", "1")]);
    assert!(compose_with(&manifest(), &settings(&[]), &user, None)
        .env
        .is_empty());
}

#[test]
fn memory_brings_a_backend_of_its_size_when_the_run_script_has_one() {
    let manifest = with_backend(manifest());
    let command = compose_with(&manifest, &settings(&FLAGS), &env(&[]), None);
    assert_eq!(
        command.args[..8],
        [
            "-m",
            "2G",
            "-object",
            "memory-backend-memfd,id=nixos-shell-mem,size=2G,share=on",
            "-machine",
            "memory-backend=nixos-shell-mem",
            "-smp",
            "2"
        ]
    );
}

#[test]
fn virtiofs_shares_get_their_devices_and_a_backend_of_the_vms_size() {
    let command = compose_with(&virtiofs(), &settings(&[]), &env(&[]), None);
    assert_eq!(
        command.args,
        [
            "-object",
            "memory-backend-memfd,id=nixos-shell-mem,size=500M,share=on",
            "-machine",
            "memory-backend=nixos-shell-mem",
            "-virtfs",
            "local,path=/s/share,security_model=none,mount_tag=nixos-shell",
            "-chardev",
            "socket,id=vfs-home,path=/s/vfs/home.sock",
            "-device",
            "vhost-user-fs-pci,queue-size=1024,chardev=vfs-home,tag=home",
            "-chardev",
            "socket,id=vfs-awww,path=/s/vfs/awww.sock",
            "-device",
            "vhost-user-fs-pci,queue-size=1024,chardev=vfs-awww,tag=awww",
        ]
    );
}

#[test]
fn the_run_scripts_own_backend_serves_virtiofs_as_it_is() {
    let manifest = with_backend(virtiofs());
    let command = compose_with(&manifest, &settings(&[]), &env(&[]), None);
    assert_eq!(
        command.args[..2],
        [
            "-virtfs",
            "local,path=/s/share,security_model=none,mount_tag=nixos-shell"
        ]
    );
}

#[test]
fn memory_brings_a_backend_of_its_size_for_virtiofs_shares() {
    let command = compose_with(&virtiofs(), &settings(&FLAGS), &env(&[]), None);
    assert_eq!(
        command.args[..6],
        [
            "-m",
            "2G",
            "-object",
            "memory-backend-memfd,id=nixos-shell-mem,size=2G,share=on",
            "-machine",
            "memory-backend=nixos-shell-mem",
        ]
    );
}
