//! What every VM boots: Debian's kernel and a busybox initramfs holding the
//! guest role, checked for and built once per test run (cached under
//! `target/<profile>/vm-harness/`, keyed on the guest binary's mtime and
//! size, the kernel version and a hash of the harness' own files, so an
//! unchanged binary is never packed twice; older keys are removed unless a
//! test run still holds them). Also finds the host tools the
//! run scripts start, failing the test with how to install a missing one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use super::SHELL_READY;
use crate::fs::{on_path, write_executable};
use crate::template::fill;

/// A user of the guest other than root, with a home of their own.
pub const OTHER_USER: &str = "bob";

/// What a stand-in for the services that start after the guest role's
/// early step found mounted: a copy of /proc/mounts at that moment.
pub const MOUNTS_SEEN_BY_SERVICES: &str = "/run/mounts-seen-by-services";

/// The guest's ncurses: `tput` (Debian's ncurses-bin), with one entry of a
/// database of its own, as a NixOS guest's system database would hold
/// (Debian's ncurses-base keeps it in /lib/terminfo, where this `tput`
/// looks). The terminfo tests ask it what the guest knows of `TERM`.
pub const TPUT: &str = "/usr/bin/tput";
pub const GUEST_OWN_TERMINFO: &str = "vt100";
const GUEST_OWN_TERMINFO_FILE: &str = "/lib/terminfo/v/vt100";

/// The guest's address on QEMU's user network, and its gateway.
const GUEST_IP: &str = "10.0.2.15/24";
const GATEWAY: &str = "10.0.2.2";

/// Kernel modules the guest needs (their dependencies are added from
/// modules.dep): the virtio transport, the console, 9p shares (ours, and the
/// run script's in the 9p era), virtiofs shares (the run script's in the
/// virtiofs era; `virtiofs` needs `fuse`) and the NIC.
const MODULES: [&str; 12] = [
    "virtio",
    "virtio_ring",
    "virtio_pci",
    "virtio_console",
    "9pnet",
    "9pnet_virtio",
    "9p",
    "fuse",
    "virtiofs",
    "failover",
    "net_failover",
    "virtio_net",
];

/// What every VM test boots.
#[derive(Debug)]
pub struct Assets {
    /// The binary whose guest role the initramfs holds.
    pub guest: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// A shared lock on the key's lock file, held for the whole test run:
    /// another run (of another build, with a key of its own) prunes only
    /// keys no run holds ([`prune_other_keys`]).
    _in_use: File,
}

/// The kernel and an initramfs holding `guest` (the built nixos-shell),
/// built on first use. One test binary tests one build of nixos-shell, so
/// the first call's `guest` is every call's.
pub fn assets(guest: &Path) -> &'static Assets {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    let assets = ASSETS.get_or_init(|| build_assets(guest));
    assert_eq!(
        assets.guest, guest,
        "the VM harness was asked for two different nixos-shell binaries"
    );
    assets
}

/// Fails the test unless `program` is on PATH.
fn require_program(program: &str, package: &str) {
    assert!(
        on_path(program).is_some(),
        "{program} is missing: the VM tests need it; install the Debian package {package} \
         (apt-get install {package})"
    );
}

fn build_assets(binary: &Path) -> Assets {
    require_program("qemu-system-x86_64", "qemu-system-x86");
    require_program("qemu-img", "qemu-utils");
    require_program("cpio", "cpio");
    require_program("tput", "ncurses-bin");
    assert!(
        Path::new(GUEST_OWN_TERMINFO_FILE).is_file(),
        "{GUEST_OWN_TERMINFO_FILE} is missing: the VM tests give the guest this entry; install \
         the Debian package ncurses-base"
    );
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: the VM tests need a static busybox; install the Debian \
         package busybox-static"
    );
    let (kernel, version) = find_kernel();
    let meta = std::fs::metadata(binary)
        .unwrap_or_else(|err| panic!("cannot stat the guest binary {}: {err}", binary.display()));
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let cache = binary
        .parent()
        .expect("the binary lives in a directory")
        .join("vm-harness");
    let key = format!(
        "{version}-{mtime}-{}-{:016x}",
        meta.len(),
        layout_fingerprint()
    );
    let dir = cache.join(&key);
    let initramfs = dir.join("initramfs.cpio");
    std::fs::create_dir_all(&cache).expect("create the harness cache");
    // Taken before the key's directory is looked at, so that no pruning
    // removes it from under this run.
    let in_use = lock_key(&cache, &key, libc::LOCK_SH)
        .unwrap_or_else(|err| panic!("cannot lock the harness key {key}: {err}"));
    if !initramfs.is_file() {
        prune_other_keys(&cache, &key);
        let staging = tempfile::Builder::new()
            .prefix("staging-")
            .tempdir_in(&cache)
            .expect("create a staging directory");
        let tree = staging.path().join("root");
        build_tree(&tree, busybox, binary, &version);
        let archive = staging.path().join("initramfs.cpio");
        pack_cpio(&tree, &archive);
        std::fs::create_dir_all(&dir).expect("create the harness directory");
        std::fs::rename(&archive, &initramfs).expect("move the initramfs into place");
    }
    Assets {
        guest: binary.to_owned(),
        kernel,
        initramfs,
        _in_use: in_use,
    }
}

/// The lock file of `key` in `cache`, locked with flock(2) `operation`
/// (`LOCK_SH`, or `LOCK_EX | LOCK_NB`).
fn lock_key(cache: &Path, key: &str, operation: libc::c_int) -> std::io::Result<File> {
    use std::os::fd::AsRawFd;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join(format!("{key}.lock")))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Removes the harness of keys other than `key` (older binaries') that no
/// test run uses. A run still going with an older build holds its key's
/// lock: removing its initramfs would make each VM it boots after that
/// fail at once (QEMU cannot read the initrd), which a test sees as a
/// command whose output ended before it began. The lock files stay: a
/// run waiting on one must find the same file its pruner locked.
fn prune_other_keys(cache: &Path, key: &str) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Staging dirs may belong to a concurrent test run.
        if name == key || name.starts_with("staging-") || name.ends_with(".lock") {
            continue;
        }
        if let Ok(_unused) = lock_key(cache, &name, libc::LOCK_EX | libc::LOCK_NB) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A hash of what the harness itself puts into the initramfs, so that a
/// change to it rebuilds the cached archive.
fn layout_fingerprint() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        init_script(),
        inittab(),
        LOGIN_SHELL,
        profile(),
        MODULES,
        OTHER_USER,
        (TPUT, GUEST_OWN_TERMINFO_FILE),
    )
        .hash(&mut hasher);
    hasher.finish()
}

/// The newest /boot/vmlinuz-* that has its modules in /lib/modules.
fn find_kernel() -> (PathBuf, String) {
    let mut versions: Vec<String> = std::fs::read_dir("/boot")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("vmlinuz-"))
                        .map(str::to_owned)
                })
                .filter(|v| {
                    Path::new("/lib/modules")
                        .join(v)
                        .join("modules.dep")
                        .is_file()
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    let version = versions.pop().unwrap_or_else(|| {
        panic!(
            "no kernel: the VM tests boot /boot/vmlinuz-* with its modules in /lib/modules; \
             install the Debian packages linux-image-amd64 and kmod"
        )
    });
    let kernel = PathBuf::from(format!("/boot/vmlinuz-{version}"));
    assert!(
        File::open(&kernel).is_ok(),
        "cannot read {}: run the VM tests as root (Debian keeps kernels mode 0600)",
        kernel.display()
    );
    (kernel, version)
}

/// A module's name from its path in modules.dep.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The files of `wanted` and their dependencies, dependencies first, from
/// the text of modules.dep; modules listed in `builtin` need no file.
fn module_load_order(modules_dep: &str, builtin: &str, wanted: &[&str]) -> Vec<String> {
    let deps: BTreeMap<String, (String, Vec<String>)> = modules_dep
        .lines()
        .filter_map(|line| {
            let (path, rest) = line.split_once(':')?;
            let deps = rest.split_whitespace().map(str::to_owned).collect();
            Some((module_name(path), (path.to_owned(), deps)))
        })
        .collect();
    let builtin: BTreeSet<String> = builtin.lines().map(module_name).collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        name: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(name.to_owned()) {
            return;
        }
        let (path, requires) = &deps[name];
        for dep in requires {
            visit(&module_name(dep), deps, seen, order);
        }
        order.push(path.clone());
    }
    for name in wanted {
        if deps.contains_key(*name) {
            visit(name, &deps, &mut seen, &mut order);
        } else {
            assert!(
                builtin.contains(*name),
                "kernel module {name} is neither in modules.dep nor built in"
            );
        }
    }
    order
}

fn build_tree(tree: &Path, busybox: &Path, binary: &Path, version: &str) {
    for dir in [
        "bin", "dev", "etc", "proc", "sys", "run", "tmp", "root", "modules",
    ] {
        std::fs::create_dir_all(tree.join(dir)).expect("create the initramfs tree");
    }
    copy(busybox, &tree.join("bin/busybox"));
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("run busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet))
                .expect("link a busybox applet");
        }
    }
    std::os::unix::fs::symlink("bin", tree.join("sbin")).expect("link /sbin");
    copy(binary, &tree.join("bin/nixos-shell-guest"));
    let tput = Path::new(TPUT);
    copy(tput, &tree.join(TPUT.trim_start_matches('/')));
    copy(
        Path::new(GUEST_OWN_TERMINFO_FILE),
        &tree.join(GUEST_OWN_TERMINFO_FILE.trim_start_matches('/')),
    );
    for library in shared_libraries(binary)
        .into_iter()
        .chain(shared_libraries(tput))
    {
        copy(
            &library,
            &tree.join(library.strip_prefix("/").expect("absolute")),
        );
    }

    let moddir = Path::new("/lib/modules").join(version);
    let modules_dep = std::fs::read_to_string(moddir.join("modules.dep"))
        .expect("read modules.dep (Debian package linux-image-amd64)");
    let builtin = std::fs::read_to_string(moddir.join("modules.builtin")).unwrap_or_default();
    let mut order = Vec::new();
    for path in module_load_order(&modules_dep, &builtin, &MODULES) {
        let source = moddir.join(&path);
        let name = format!("{}.ko", module_name(&path));
        let target = tree.join("modules").join(&name);
        if path.ends_with(".ko") {
            copy(&source, &target);
        } else {
            let tool = if path.ends_with(".xz") {
                "xz"
            } else if path.ends_with(".zst") {
                "zstd"
            } else {
                "gzip"
            };
            let out = Command::new(tool)
                .arg("-dc")
                .arg(&source)
                .output()
                .unwrap_or_else(|err| panic!("cannot run {tool} for {path}: {err}"));
            assert!(out.status.success(), "{tool} -dc {path} failed");
            std::fs::write(&target, out.stdout).expect("write a module");
        }
        order.push(name);
    }
    write(&tree.join("etc/modules.order"), &(order.join("\n") + "\n"));
    // Root, and another user for logins that are not root's.
    write(
        &tree.join("etc/passwd"),
        &format!(
            "root:x:0:0:root:/root:/bin/sh\n{OTHER_USER}:x:1000:1000::/home/{OTHER_USER}:/bin/sh\n"
        ),
    );
    write(
        &tree.join("etc/group"),
        &format!("root:x:0:\n{OTHER_USER}:x:1000:\n"),
    );
    std::fs::create_dir_all(tree.join("home").join(OTHER_USER)).expect("create a home");
    write(&tree.join("etc/profile"), &profile());
    write_executable(&tree.join("init"), &init_script());
    write(&tree.join("etc/inittab"), &inittab());
    write_executable(&tree.join("bin/login-shell"), LOGIN_SHELL);
}

/// The initramfs' own files, as `.sh` templates beside this module.
const INIT: &str = include_str!("initramfs/init.sh");
const INITTAB: &str = include_str!("initramfs/inittab");
const LOGIN_SHELL: &str = include_str!("initramfs/login-shell.sh");
const PROFILE: &str = include_str!("initramfs/profile.sh");

/// The first process, `/init`.
fn init_script() -> String {
    fill(INIT, &[("guest_ip", GUEST_IP), ("gateway", GATEWAY)])
}

/// busybox init's table.
fn inittab() -> String {
    fill(INITTAB, &[("mounts_seen", MOUNTS_SEEN_BY_SERVICES)])
}

/// The login shell's `/etc/profile`.
fn profile() -> String {
    fill(PROFILE, &[("shell_ready", SHELL_READY)])
}

/// The absolute paths `ldd` lists for `binary`.
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .expect("run ldd (Debian package libc-bin)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn pack_cpio(tree: &Path, archive: &Path) {
    let out = File::create(archive).expect("create the initramfs");
    let status = Command::new("sh")
        .arg("-c")
        .arg("find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet")
        .current_dir(tree)
        .stdout(out)
        .status()
        .expect("run cpio");
    assert!(status.success(), "cpio failed packing {}", tree.display());
}

fn copy(from: &Path, to: &Path) {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).expect("create a directory");
    }
    std::fs::copy(from, to)
        .unwrap_or_else(|err| panic!("cannot copy {} to {}: {err}", from.display(), to.display()));
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

#[cfg(test)]
mod tests {
    /// A run of a newer build prunes the older builds' harness, but not the
    /// one a run still going holds: its VMs would fail to boot (a flake of
    /// `vm::streams::a_reader_that_goes_away_ends_the_command_as_in_a_pipeline`,
    /// seen once the inittab changed and with it the key).
    #[test]
    fn pruning_keeps_the_harness_a_running_test_run_uses() {
        let cache = tempfile::tempdir().unwrap();
        for key in ["running", "old", "new"] {
            std::fs::create_dir(cache.path().join(key)).unwrap();
            std::fs::write(cache.path().join(key).join("initramfs.cpio"), "").unwrap();
        }
        std::fs::create_dir(cache.path().join("staging-x")).unwrap();
        let _running = super::lock_key(cache.path(), "running", libc::LOCK_SH).unwrap();
        super::prune_other_keys(cache.path(), "new");
        let mut left: Vec<String> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with(".lock"))
            .collect();
        left.sort();
        assert_eq!(left, ["new", "running", "staging-x"]);
    }

    #[test]
    fn modules_come_after_their_dependencies_once_each() {
        let dep = "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko\n\
                   kernel/net/9p/9pnet.ko:\n\
                   kernel/fs/netfs/netfs.ko:\n\
                   kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko\n\
                   kernel/drivers/virtio/virtio_ring.ko:\n";
        let builtin = "kernel/drivers/virtio/virtio.ko\n";
        assert_eq!(
            super::module_load_order(dep, builtin, &["virtio", "9pnet_virtio", "9p"]),
            [
                "kernel/net/9p/9pnet.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/net/9p/9pnet_virtio.ko",
                "kernel/fs/netfs/netfs.ko",
                "kernel/fs/9p/9p.ko",
            ]
        );
    }
}
