//! The real-QEMU harness: Debian's kernel, a busybox initramfs holding the
//! guest role, a fixture of NixOS's run script, and a console driven
//! through a pseudo-terminal.
//!
//! - [`assets`] checks the host tools and builds the initramfs once per test
//!   run (cached under `target/<profile>/vm-harness/`, keyed on the guest
//!   binary's mtime and size, the kernel version and a hash of the harness'
//!   own files, so an unchanged binary is never packed twice).
//! - [`write_run_script`] writes a script that follows the contract of NixOS's
//!   `bin/run-<name>-vm` (nixos/modules/virtualisation/qemu-vm.nix) for that
//!   kernel and initramfs; CLI tests put it into a fixture flake's output.
//! - [`Console`] runs a command (the script, or the CLI) on a fresh
//!   pseudo-terminal, records its output and kills its process group on
//!   drop. At most [`MAX_VMS`] run at once: TCG is slow and the machine small.
//!
//! Every missing tool is a test failure naming the Debian package to install.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// How many VMs may run at once.
pub const MAX_VMS: usize = 2;

/// Generous bound for a TCG boot on a loaded 2-core machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound for one shell command in a booted guest.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Printed by the initramfs' `/etc/profile` once the login shell has sourced
/// the login environment: the console is ready for commands.
pub const SHELL_READY: &str = "nixos-shell-test: login shell ready";

/// The guest's address on QEMU's user network, and its gateway.
const GUEST_IP: &str = "10.0.2.15/24";
const GATEWAY: &str = "10.0.2.2";

/// Kernel modules the guest needs (their dependencies are added from
/// modules.dep): the virtio transport, the console, 9p shares and the NIC.
const MODULES: [&str; 10] = [
    "virtio",
    "virtio_ring",
    "virtio_pci",
    "virtio_console",
    "9pnet",
    "9pnet_virtio",
    "9p",
    "failover",
    "net_failover",
    "virtio_net",
];

/// What every VM test boots.
#[derive(Debug)]
pub struct Assets {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// The kernel and the initramfs, built on first use.
pub fn assets() -> &'static Assets {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    ASSETS.get_or_init(build_assets)
}

fn guest_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nixos-shell"))
}

/// Fails the test unless `program` is on PATH.
pub fn require_program(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is missing: the VM tests need it; install the Debian package {package} \
         (apt-get install {package})"
    );
}

fn build_assets() -> Assets {
    require_program("qemu-system-x86_64", "qemu-system-x86");
    require_program("qemu-img", "qemu-utils");
    require_program("cpio", "cpio");
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: the VM tests need a static busybox; install the Debian \
         package busybox-static"
    );
    let (kernel, version) = find_kernel();
    let binary = guest_binary();
    let meta = std::fs::metadata(&binary)
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
    if !initramfs.is_file() {
        std::fs::create_dir_all(&cache).expect("create the harness cache");
        // Older keys belong to older binaries.
        if let Ok(entries) = std::fs::read_dir(&cache) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                // Staging dirs may belong to a concurrent test run.
                if name != key.as_str() && !name.starts_with("staging-") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let staging = tempfile::Builder::new()
            .prefix("staging-")
            .tempdir_in(&cache)
            .expect("create a staging directory");
        let tree = staging.path().join("root");
        build_tree(&tree, busybox, &binary, &version);
        let archive = staging.path().join("initramfs.cpio");
        pack_cpio(&tree, &archive);
        std::fs::create_dir_all(&dir).expect("create the harness directory");
        std::fs::rename(&archive, &initramfs).expect("move the initramfs into place");
    }
    Assets { kernel, initramfs }
}

/// A hash of what the harness itself puts into the initramfs, so that a
/// change to it rebuilds the cached archive.
fn layout_fingerprint() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (init_script(), INITTAB, LOGIN_SHELL, profile(), MODULES).hash(&mut hasher);
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
pub fn module_load_order(modules_dep: &str, builtin: &str, wanted: &[&str]) -> Vec<String> {
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
    for library in shared_libraries(binary) {
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
    write(&tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    write(&tree.join("etc/group"), "root:x:0:\n");
    write(&tree.join("etc/profile"), &profile());
    write(&tree.join("init"), &init_script());
    write(&tree.join("etc/inittab"), INITTAB);
    write(&tree.join("bin/login-shell"), LOGIN_SHELL);
    std::fs::set_permissions(
        tree.join("bin/login-shell"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("make /bin/login-shell executable");
    std::fs::set_permissions(tree.join("init"), std::fs::Permissions::from_mode(0o755))
        .expect("make /init executable");
}

/// The login shell's profile: stands in for the module's shell init.
fn profile() -> String {
    format!(
        "PS1='[guest]# '\n\
         [ -r /run/nixos-shell/login-env.sh ] && . /run/nixos-shell/login-env.sh\n\
         echo '{SHELL_READY}'\n"
    )
}

/// The first process: mount the API file systems, load the modules, wait
/// for the console, configure the network, then hand PID 1 to busybox init
/// (so `poweroff` works as on NixOS). Stands in for NixOS' stage 1 and 2.
fn init_script() -> String {
    format!(
        r#"#!/bin/sh
export PATH=/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
while read -r module; do insmod "/modules/$module" || echo "init: cannot load $module"; done </etc/modules.order
i=0
while [ ! -e /dev/hvc0 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
exec </dev/hvc0 >/dev/hvc0 2>&1
hostname guest
ip link set lo up
ip link set eth0 up && ip addr add {GUEST_IP} dev eth0 && ip route add default via {GATEWAY}
exec /bin/init
"#
    )
}

/// busybox init's table: the guest role first (as the module's unit runs
/// before the getty), then root's login shell on the console, powering off
/// when that shell exits. A `once` action, not `wait`: busybox init handles
/// `poweroff`'s signal only outside `sysinit`/`wait` actions.
const INITTAB: &str = "\
hvc0::sysinit:/bin/nixos-shell-guest --console /dev/hvc0
hvc0::once:/bin/login-shell
::shutdown:/bin/sync
";

/// The console login: a login shell, then power off.
const LOGIN_SHELL: &str = "#!/bin/sh\n/bin/sh -l\nexec /bin/poweroff -f\n";

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

/// `value` as one single-quoted `sh` word.
pub fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The text of a run script for a VM called `name` that boots `kernel` with
/// `initramfs`, following NixOS' `bin/run-<name>-vm` contract.
pub fn run_script_text(name: &str, kernel: &Path, initramfs: &Path) -> String {
    run_script_text_with(name, kernel, initramfs, "")
}

/// [`run_script_text`] with `prelude` (sh code) run first, before anything
/// else; tests use it to tamper with what the CLI handed over.
pub fn run_script_text_with(name: &str, kernel: &Path, initramfs: &Path, prelude: &str) -> String {
    let kernel = sh_quote(&kernel.to_string_lossy());
    let initramfs = sh_quote(&initramfs.to_string_lossy());
    // The default sits inside "${NIX_DISK_IMAGE:-...}", where quotes would
    // stay literal: keep names to characters that need none.
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "VM name {name:?} needs quoting; use letters, digits, -, _ and ."
    );
    let image = format!("./{name}.qcow2");
    let vm_name = sh_quote(name);
    format!(
        r#"#!/bin/sh
# Test fixture standing in for NixOS' VM run script, bin/run-{name}-vm from
# config.system.build.vm (nixos/modules/virtualisation/qemu-vm.nix). It keeps
# that script's interface; only the kernel and initrd are Debian's kernel and
# the tests' busybox initramfs instead of a NixOS system.
set -e
{prelude}

# qemu-vm.nix: NIX_DISK_IMAGE defaults to virtualisation.diskImage
# (./<name>.qcow2), made absolute against the caller's cwd with readlink -f,
# and created with qemu-img when missing.
NIX_DISK_IMAGE=$(readlink -f "${{NIX_DISK_IMAGE:-{image}}}")
if ! test -e "$NIX_DISK_IMAGE"; then
    echo "Disk image do not exist, creating the virtualisation disk image..."
    qemu-img create -f qcow2 "$NIX_DISK_IMAGE" 64M >/dev/null
    echo "Virtualisation disk image created."
fi

# qemu-vm.nix: a private temporary directory unless both TMPDIR and
# USE_TMPDIR are set.
if [ -z "$TMPDIR" ] || [ -z "$USE_TMPDIR" ]; then
    TMPDIR=$(mktemp -d nix-vm.XXXXXXXXXX --tmpdir)
fi

# qemu-vm.nix: $TMPDIR/xchg is shared as tag xchg, SHARED_DIR (default the
# same directory) as tag shared.
mkdir -p "$TMPDIR/xchg"
export TMPDIR

# qemu-vm.nix: QEMU starts in TMPDIR, so relative paths resolve there.
cd "$TMPDIR"

# qemu-vm.nix: QEMU_NET_OPTS is appended to the user netdev's options,
# QEMU_KERNEL_PARAMS to the kernel command line, QEMU_OPTS and then "$@" to
# the command line. The console options are nixos-shell's (virtio console
# on stdio, Ctrl-a prefix); graphics = false gives -nographic. TCG only:
# KVM may be missing or broken where the tests run.
exec qemu-system-x86_64 -accel tcg -cpu max \
    -name {vm_name} \
    -m 256 -smp 1 \
    -net nic,netdev=user.0,model=virtio -netdev user,id=user.0,"$QEMU_NET_OPTS" \
    -virtfs local,path="${{SHARED_DIR:-$TMPDIR/xchg}}",security_model=none,mount_tag=shared \
    -virtfs local,path="$TMPDIR"/xchg,security_model=none,mount_tag=xchg \
    -drive cache=writeback,file="$NIX_DISK_IMAGE",id=drive1,if=none,index=1,werror=report \
    -device virtio-blk-pci,bootindex=1,drive=drive1,serial=root \
    -nographic \
    -serial null -device virtio-serial \
    -chardev stdio,mux=on,id=char0,signal=off \
    -mon chardev=char0,mode=readline \
    -device virtconsole,chardev=char0,nr=0 \
    -kernel {kernel} -initrd {initramfs} \
    -append "console=hvc0 quiet panic=-1 $QEMU_KERNEL_PARAMS" -no-reboot \
    $QEMU_OPTS "$@"
"#
    )
}

/// Writes the run script for the shared kernel and initramfs to `path`,
/// executable.
pub fn write_run_script(path: &Path, name: &str) {
    write_run_script_with(path, name, "");
}

/// [`write_run_script`] with a prelude, see [`run_script_text_with`].
pub fn write_run_script_with(path: &Path, name: &str, prelude: &str) {
    let assets = assets();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create the script's directory");
    }
    write(
        path,
        &run_script_text_with(name, &assets.kernel, &assets.initramfs, prelude),
    );
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("make the run script executable");
}

/// A `-virtfs` argument pair sharing `path` under `tag`.
pub fn virtfs(path: &Path, tag: &str, read_only: bool) -> [String; 2] {
    let ro = if read_only { ",readonly=on" } else { "" };
    [
        "-virtfs".to_owned(),
        format!(
            "local,path={},security_model=none,mount_tag={tag}{ro}",
            path.display()
        ),
    ]
}

/// The global VM slots.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| Slots {
        used: Mutex::new(0),
        freed: Condvar::new(),
    })
}

/// `n` of the [`MAX_VMS`] slots, given back on drop.
pub struct Permit(usize);

impl Permit {
    /// Waits until `n` slots are free at once and takes them.
    pub fn acquire(n: usize) -> Permit {
        assert!(n <= MAX_VMS, "a test may hold at most {MAX_VMS} VM slots");
        let slots = slots();
        let mut used = slots.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used + n > MAX_VMS {
            used = slots.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += n;
        Permit(n)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let slots = slots();
        let mut used = slots.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= self.0;
        slots.freed.notify_all();
    }
}

/// A pseudo-terminal pair.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

impl Pty {
    /// Opens a pair whose window is `rows` x `cols`.
    pub fn open(rows: u16, cols: u16) -> Pty {
        let mut master = -1;
        let mut slave = -1;
        let winsize = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: out-pointers are valid; name and termios may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &winsize,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two fresh descriptors we now own.
        unsafe {
            Pty {
                master: OwnedFd::from_raw_fd(master),
                slave: OwnedFd::from_raw_fd(slave),
            }
        }
    }

    /// The terminal's current settings.
    pub fn termios(&self) -> libc::termios {
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and pointer.
        let rc = unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut termios) };
        assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        termios
    }
}

type Transcript = Arc<(Mutex<Vec<u8>>, Condvar)>;

/// A process running on a pseudo-terminal: a VM's console as the user sees it.
pub struct Console {
    child: Option<Child>,
    pty: Pty,
    writer: File,
    transcript: Transcript,
    /// Where the next [`Console::expect`] starts looking.
    cursor: usize,
    steps: usize,
    status: Option<ExitStatus>,
    _permit: Option<Permit>,
}

impl Console {
    /// Starts `command` in a new session whose controlling terminal is a
    /// fresh `rows` x `cols` pseudo-terminal. Waits for a VM slot first.
    pub fn spawn(command: Command, rows: u16, cols: u16) -> Console {
        Console::spawn_with(command, rows, cols, Some(Permit::acquire(1)))
    }

    /// [`Console::spawn`] under slots the caller already holds (`None`: a
    /// permit held by another console of the same test covers it).
    pub fn spawn_with(command: Command, rows: u16, cols: u16, permit: Option<Permit>) -> Console {
        Console::spawn_on(Pty::open(rows, cols), command, permit)
    }

    /// [`Console::spawn_with`] on a terminal the caller opened (e.g. to read
    /// its settings before anything ran on it).
    pub fn spawn_on(pty: Pty, mut command: Command, permit: Option<Permit>) -> Console {
        let slave = |pty: &Pty| Stdio::from(pty.slave.try_clone().expect("dup the pty"));
        command
            .stdin(slave(&pty))
            .stdout(slave(&pty))
            .stderr(slave(&pty));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
        let transcript: Transcript = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let mut reader = File::from(pty.master.try_clone().expect("dup the pty master"));
        let writer = File::from(pty.master.try_clone().expect("dup the pty master"));
        let sink = Arc::clone(&transcript);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let (lock, ready) = &*sink;
                        lock.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend_from_slice(&buf[..n]);
                        ready.notify_all();
                    }
                }
            }
        });
        Console {
            child: Some(child),
            pty,
            writer,
            transcript,
            cursor: 0,
            steps: 0,
            status: None,
            _permit: permit,
        }
    }

    /// Everything the terminal showed so far.
    pub fn transcript(&self) -> String {
        let (lock, _) = &*self.transcript;
        String::from_utf8_lossy(&lock.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// The pseudo-terminal, e.g. to compare its settings.
    pub fn pty(&self) -> &Pty {
        &self.pty
    }

    /// Waits until `needle` appears after the previous match and returns the
    /// output up to and including it; fails the test after `timeout`.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, ready) = &*self.transcript;
        let mut data = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(pos) = find(&data[self.cursor..], needle.as_bytes()) {
                let end = self.cursor + pos + needle.len();
                let seen = String::from_utf8_lossy(&data[self.cursor..end]).into_owned();
                self.cursor = end;
                return seen;
            }
            let now = Instant::now();
            if now >= deadline {
                let text = String::from_utf8_lossy(&data).into_owned();
                drop(data);
                panic!(
                    "timed out after {timeout:?} waiting for {needle:?}; the terminal showed:\n{text}"
                );
            }
            data = ready
                .wait_timeout(data, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Types `text` into the terminal.
    pub fn send(&mut self, text: &str) {
        self.writer
            .write_all(text.as_bytes())
            .and_then(|()| self.writer.flush())
            .expect("write to the pty");
    }

    /// Waits for the guest's login shell.
    pub fn wait_for_shell(&mut self) {
        self.expect(SHELL_READY, BOOT_TIMEOUT);
    }

    /// Runs `command` in the guest's shell; returns what it printed and its
    /// exit status.
    pub fn sh(&mut self, command: &str) -> (String, i32) {
        self.steps += 1;
        let n = self.steps;
        // The marker is split in the typed line, so only the output matches.
        self.send(&format!("{command}; printf '@@%s:%s@@\\n' {n} $?\n"));
        let marker_start = format!("@@{n}:");
        let seen = self.expect(&marker_start, STEP_TIMEOUT);
        let rest = self.expect("@@", STEP_TIMEOUT);
        let status = rest
            .trim_end_matches("@@")
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("unexpected status {rest:?} of {command:?}"));
        let output = seen.trim_end_matches(marker_start.as_str()).to_owned();
        (output, status)
    }

    /// Waits for the process to end; fails the test after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("the child is there until drop");
        loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                self.status = Some(status);
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the process did not end within {timeout:?}; the terminal showed:\n{}",
                    self.transcript()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The whole session: the CLI's QEMU lives in it too.
            let pgid = child.id() as libc::pid_t;
            // SAFETY: signals the process group this console started.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
