use super::*;
use crate::host::settings::mount::check_flags;
use crate::host::test_data::manifest;

fn flag(host: &str, guest: &str, read_only: bool) -> MountFlag {
    MountFlag {
        host: host.into(),
        guest: guest.into(),
        read_only,
    }
}

fn collect(manifest: &Manifest, flags: &[MountFlag], no_home: bool) -> Result<Shares> {
    Shares::collect(
        manifest,
        "/home/a".into(),
        Some("/nix/p".into()),
        flags,
        no_home,
    )
}

fn err(result: Result<Shares>) -> String {
    format!("{:#}", result.unwrap_err())
}

fn tags(shares: &Shares) -> Vec<&str> {
    shares.shares.iter().map(|s| s.tag.as_str()).collect()
}

#[test]
fn the_modules_shares_come_first_then_the_flags() {
    let flags = [flag("/data", "/data", true)];
    let shares = collect(&manifest(), &flags, false).unwrap();
    assert_eq!(tags(&shares), ["home", "nixprofile", "awww", "mount0"]);
    let without_home = collect(&manifest(), &flags, true).unwrap();
    assert_eq!(tags(&without_home), ["nixprofile", "awww", "mount0"]);
}

#[test]
fn a_mount_flag_takes_the_modules_default_cache_mode() {
    let shares = collect(&manifest(), &[flag("/data", "/data", true)], false).unwrap();
    let mount = shares.shares.last().unwrap();
    assert_eq!(
        (mount.source, mount.cache),
        (Source::MountFlag, CacheMode::Loose)
    );
}

#[test]
fn over_9p_each_share_is_a_virtfs_and_the_guest_mounts_parents_first() {
    let shares = collect(&manifest(), &[flag("/data,x", "/data", true)], false).unwrap();
    let exported = shares.export();
    assert!(exported.daemons.is_empty() && !exported.shared_memory);
    let args = exported.qemu_args("/unused".into());
    assert_eq!(args.len(), 8);
    assert_eq!(
        args[6..],
        [
            "-virtfs",
            "local,path=/data,,x,security_model=none,mount_tag=mount0,readonly=on"
        ]
    );
    let mounts = &exported.guest_mounts;
    assert_eq!(mounts[0].guest_path, "/data");
    assert_eq!(mounts[3].guest_path, "/var/www");
    assert_eq!((mounts[3].cache, mounts[3].msize), (CacheMode::None, 16384));
    assert!(mounts.iter().all(|m| m.protocol == Protocol::NineP));
}

#[test]
fn over_virtiofs_each_share_is_a_daemon_and_the_memory_is_shared() {
    let mut manifest = manifest();
    manifest.mounts.protocol = Protocol::Virtiofs;
    manifest.mounts.virtiofsd = Some("/nix/store/v/bin/virtiofsd".into());
    let exported = collect(&manifest, &[], false).unwrap().export();
    assert_eq!(exported.daemons.len(), 3);
    assert!(exported.shared_memory);
    assert_eq!(
        exported.virtiofsd.as_deref(),
        Some(Utf8Path::new("/nix/store/v/bin/virtiofsd"))
    );
    assert_eq!(
        exported.socket_names().collect::<Vec<_>>(),
        ["home.sock", "nixprofile.sock", "awww.sock"]
    );
    let args = exported.qemu_args("/s".into());
    assert!(!args.iter().any(|a| a == "-virtfs"), "{args:?}");
    assert_eq!(
        args[..2],
        ["-chardev", "socket,id=vfs-home,path=/s/home.sock"]
    );
    assert!(exported
        .guest_mounts
        .iter()
        .all(|m| m.protocol == Protocol::Virtiofs));
}

#[test]
fn no_share_at_all_needs_no_shared_memory() {
    let mut manifest = manifest();
    manifest.mounts.protocol = Protocol::Virtiofs;
    manifest.mounts.mount_nix_profile = false;
    manifest.mounts.extra_mounts.clear();
    let exported = collect(&manifest, &[], true).unwrap().export();
    assert!(exported.daemons.is_empty() && !exported.shared_memory);
}

/// Regression: HOME=/ shared the host's whole root, read-write, as home.
#[test]
fn a_home_of_the_root_is_refused_unless_the_home_is_not_shared() {
    let refused = Shares::collect(&manifest(), "/".into(), None, &[], false);
    assert!(err(refused).starts_with("HOME is /, and sharing it would share the host's whole root"));
    assert!(Shares::collect(&manifest(), "/".into(), None, &[], true).is_ok());
}

#[test]
fn two_shares_at_one_guest_path_are_refused_with_one_message() {
    let at_home = [flag("/data", "/home/a", false)];
    assert_eq!(
        err(collect(&manifest(), &at_home, false)),
        "/home/a and /data would both be shared at /home/a in the guest; give one of them another guest path (a --mount: HOST:GUEST)"
    );
    let twice = [flag("/one", "/a", false), flag("/two", "/a", false)];
    assert_eq!(
        format!("{:#}", check_flags(&twice).unwrap_err()),
        "/one and /two would both be shared at /a in the guest; give one of them another guest path (a --mount: HOST:GUEST)"
    );
}

#[test]
fn a_modules_share_at_a_reserved_path_names_the_share() {
    let mut manifest = manifest();
    manifest.mounts.extra_mounts[0].guest_path = "/nix/store/x".into();
    assert!(err(collect(&manifest, &[], false))
        .starts_with("the module's share of /srv/www: /nix/store/x holds the guest's own system"));
}

#[test]
fn a_flakes_store_copy_as_an_extra_mount_gets_one_line() {
    let mut manifest = manifest();
    let notes = |manifest: &Manifest| store_copy_notes(&collect(manifest, &[], false).unwrap());
    assert!(notes(&manifest).is_empty());
    manifest.mounts.extra_mounts[0].target = "/nix/store/abc-source/data".into();
    let lines = notes(&manifest);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with(
            "extraMounts.\"/var/www\" shares /nix/store/abc-source/data, a flake's copy in the Nix store"
        ),
        "{lines:?}"
    );
    manifest.mounts.extra_mounts[0].target = "/nix/store/abc-hello-2.12/share".into();
    assert!(notes(&manifest).is_empty(), "a package is meant");
}
