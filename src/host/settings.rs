//! Validated high-level settings: the command line checked and turned into
//! values the rest of the host role uses without checking again. Every parser
//! for a flag's small language (`--forward`, `--mount`, `--memory`,
//! `--cores`) lives here, each returning one-line errors that say what was
//! wrong and what to write instead.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use anyhow::{bail, Context, Result};
use camino::{Utf8Component, Utf8Path, Utf8PathBuf};

use crate::cli::{HostArgs, NixFlags};
use crate::schema::facts;

/// What a run does; the flags that choose it exclude each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Build and start the VM.
    Run,
    /// `--build-only`: build, print the run script.
    BuildOnly,
    /// `--dry-run`: print the commands a run would execute, or with
    /// `--build-only` the build alone.
    DryRun { build_only: bool },
}

/// Everything the host role needs from the command line, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// CONFIG or `--flake`, as typed; resolved by `host::resolve`.
    pub config: Option<Config>,
    /// Flags passed through to every `nix build`.
    pub nix: NixFlags,
    pub guest_system: Option<String>,
    pub host_system: Option<String>,
    pub mode: Mode,
    /// `--out-link`, absolute.
    pub out_link: Option<Utf8PathBuf>,
    /// `--memory` as a QEMU `-m` value.
    pub memory: Option<String>,
    pub cores: Option<u32>,
    pub forwards: Vec<Forward>,
    pub mounts: Vec<MountFlag>,
    pub no_home: bool,
    pub disk: Option<DiskFlag>,
    pub ephemeral: bool,
    pub command: Option<String>,
    pub qemu_args: Vec<String>,
}

/// What names the configuration on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Config {
    /// CONFIG: a module file, a flake reference, or a build result.
    Given(String),
    /// `--flake URI`: a flake reference, with or without `#NAME`.
    Flake(String),
}

/// `--disk`: the path as given (for messages) and absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFlag {
    pub spec: String,
    pub path: Utf8PathBuf,
}

/// One `--forward`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub udp: bool,
    pub address: String,
    pub host_port: u16,
    pub guest_port: u16,
}

impl Forward {
    /// The QEMU user-network option, e.g. `hostfwd=tcp:127.0.0.1:8080-:80`.
    pub fn hostfwd(&self) -> String {
        let proto = if self.udp { "udp" } else { "tcp" };
        format!(
            "hostfwd={proto}:{}:{}-:{}",
            self.address, self.host_port, self.guest_port
        )
    }
}

/// One `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFlag {
    /// The host directory, absolute.
    pub host: Utf8PathBuf,
    /// Where it appears in the guest, absolute.
    pub guest: Utf8PathBuf,
    pub read_only: bool,
}

impl Settings {
    /// Checks the command line; `cwd` resolves relative paths.
    pub fn from_args(args: HostArgs, cwd: &Utf8Path) -> Result<Settings> {
        let mode = if args.dry_run {
            Mode::DryRun {
                build_only: args.build_only,
            }
        } else if args.build_only {
            Mode::BuildOnly
        } else {
            Mode::Run
        };
        let memory = args.memory.as_deref().map(parse_memory).transpose()?;
        let cores = args.cores.as_deref().map(parse_cores).transpose()?;
        let forwards = args
            .forward
            .iter()
            .map(|spec| parse_forward(spec))
            .collect::<Result<Vec<_>>>()?;
        let mounts = args
            .mount
            .iter()
            .map(|spec| parse_mount(spec, cwd))
            .collect::<Result<Vec<MountFlag>>>()?;
        for (n, mount) in mounts.iter().enumerate() {
            if mounts[..n].iter().any(|other| other.guest == mount.guest) {
                bail!(
                    "two --mount flags share to {}; give each its own guest path (HOST:GUEST)",
                    mount.guest
                );
            }
        }
        Ok(Settings {
            config: args
                .flake
                .map(Config::Flake)
                .or(args.config.map(Config::Given)),
            nix: args.nix,
            guest_system: args.guest_system,
            host_system: args.host_system,
            mode,
            out_link: args.out_link.map(|p| absolute(cwd, &p)),
            memory,
            cores,
            forwards,
            mounts,
            no_home: args.no_home,
            disk: args.disk.map(|p| DiskFlag {
                path: absolute(cwd, &p),
                spec: p.into_string(),
            }),
            ephemeral: args.ephemeral,
            command: args.command,
            qemu_args: args.qemu_args,
        })
    }
}

/// `path` made absolute against `cwd`, with `.` and `..` removed lexically.
pub fn absolute(cwd: &Utf8Path, path: &Utf8Path) -> Utf8PathBuf {
    let joined = cwd.join(path);
    let mut out = Utf8PathBuf::from("/");
    for component in joined.components() {
        match component {
            Utf8Component::ParentDir => {
                out.pop();
            }
            Utf8Component::Normal(part) => out.push(part),
            _ => {}
        }
    }
    out
}

/// `--memory`: `2048` (MiB), `512M`, `2G` (case-insensitive unit) into a
/// QEMU `-m` value.
pub fn parse_memory(spec: &str) -> Result<String> {
    let bad = || {
        anyhow::anyhow!(
            "--memory {spec:?} is not a memory size; write MiB (2048) or a number with M or G (512M, 2G)"
        )
    };
    let (digits, unit) = match spec.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => (&spec[..at], &spec[at..]),
        None => (spec, "M"),
    };
    let unit = match unit {
        "M" | "m" | "MiB" | "MB" => "M",
        "G" | "g" | "GiB" | "GB" => "G",
        _ => return Err(bad()),
    };
    let number: u64 = digits.parse().map_err(|_| bad())?;
    if number == 0 {
        bail!("--memory {spec:?} is zero; give the VM some memory, e.g. 2G");
    }
    // QEMU takes sizes in bytes as 64-bit numbers; far below that, no
    // machine it emulates addresses more than a few PiB.
    let mib = if unit == "G" {
        number.checked_mul(1024)
    } else {
        Some(number)
    };
    if mib.is_none_or(|mib| mib > MAX_MEMORY_MIB) {
        bail!("--memory {spec:?} is more memory than a VM can have; write e.g. 2G");
    }
    Ok(format!("{number}{unit}"))
}

/// The largest `--memory`, in MiB: 4 PiB, the most an x86-64 guest's
/// 52-bit physical addresses reach.
const MAX_MEMORY_MIB: u64 = 4 << 30;

/// `--cores`: a positive integer.
pub fn parse_cores(spec: &str) -> Result<u32> {
    match spec.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("--cores {spec:?} is not a positive number of CPUs; write e.g. --cores 2"),
    }
}

/// `--forward [ADDR:]HOSTPORT:GUESTPORT[/udp]`.
pub fn parse_forward(spec: &str) -> Result<Forward> {
    let usage = "write [ADDR:]HOSTPORT:GUESTPORT[/udp], e.g. --forward 8080:80";
    let (rest, udp) = match spec.rsplit_once('/') {
        Some((rest, "udp")) => (rest, true),
        Some((rest, "tcp")) => (rest, false),
        Some((_, proto)) => {
            bail!("--forward {spec:?}: unknown protocol {proto:?}, only tcp and udp; {usage}")
        }
        None => (spec, false),
    };
    let mut parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    parts.reverse();
    let (address, host, guest) = match parts.as_slice() {
        [host, guest] => ("127.0.0.1", *host, *guest),
        [address, host, guest] => (*address, *host, *guest),
        _ => bail!("--forward {spec:?} lacks a port; {usage}"),
    };
    if address.parse::<Ipv4Addr>().is_err() {
        bail!(
            "--forward {spec:?}: {address:?} is not an IPv4 address (QEMU's user network forwards \
             IPv4 only; names are not resolved); {usage}"
        );
    }
    let port = |text: &str| match text.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(anyhow::anyhow!(
            "--forward {spec:?}: {text:?} is not a port (1-65535); {usage}"
        )),
    };
    Ok(Forward {
        udp,
        address: address.to_owned(),
        host_port: port(host)?,
        guest_port: port(guest)?,
    })
}

impl Forward {
    /// Fails with one line if QEMU could not listen on the host side: the
    /// port is taken, or below 1024 for a user who is not root. Tried with
    /// a bind of our own, before anything is built, rather than learnt from
    /// QEMU after the build.
    pub fn check_free(&self) -> Result<()> {
        let address: SocketAddr = (self.address.parse::<Ipv4Addr>()?, self.host_port).into();
        let bound = if self.udp {
            UdpSocket::bind(address).map(drop)
        } else {
            TcpListener::bind(address).map(drop)
        };
        let proto = if self.udp { "udp" } else { "tcp" };
        match bound {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => bail!(
                "--forward: {proto} port {} on {} is in use; stop what listens there or pick another port",
                self.host_port,
                self.address
            ),
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => bail!(
                "--forward: {proto} port {} is below 1024 and needs root; pick a port from 1024 up",
                self.host_port
            ),
            Err(err) if err.kind() == std::io::ErrorKind::AddrNotAvailable => bail!(
                "--forward: {} is not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of its own",
                self.address
            ),
            Err(err) => {
                Err(err).with_context(|| format!("--forward: cannot listen on {address} ({proto})"))
            }
        }
    }
}

/// `--mount HOST[:GUEST][:ro|:rw]`, exactly: HOST must be an existing
/// directory (relative to `cwd`); GUEST, absolute, defaults to HOST's
/// absolute path and must be a place a share may go
/// ([`check_guest_path`]). Anything else is refused, since a misread mode
/// would share a directory writable that the user wanted read-only.
pub fn parse_mount(spec: &str, cwd: &Utf8Path) -> Result<MountFlag> {
    let usage = "write HOST[:GUEST][:ro], e.g. --mount ./src:/src:ro";
    let mode = |mode: &str| {
        match mode {
        "ro" => Ok(true),
        "rw" => Ok(false),
        _ => Err(anyhow::anyhow!(
            "--mount {spec:?}: unknown mode {mode:?}; the mode is ro (read-only) or rw (the default)"
        )),
    }
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, guest, read_only) = match parts.as_slice() {
        [host] => (*host, None, false),
        [host, "ro" | "rw"] => (*host, None, mode(parts[1])?),
        [host, guest] if guest.starts_with('/') => (*host, Some(*guest), false),
        [_, other] => bail!(
            "--mount {spec:?}: {other:?} is neither an absolute guest path nor a mode (ro, rw); {usage}"
        ),
        [host, guest, read_only] => (*host, Some(*guest), mode(read_only)?),
        _ => bail!(
            "--mount {spec:?} has more ':' than HOST:GUEST:MODE; a path containing ':' cannot be \
             given to --mount: share it through a symlink whose path has none, or with \
             nixos-shell.mounts.extraMounts in the VM's module"
        ),
    };
    if host.is_empty() {
        bail!("--mount {spec:?} names no host directory; {usage}");
    }
    let host = absolute(cwd, Utf8Path::new(host));
    let Ok(meta) = std::fs::metadata(&host) else {
        bail!("--mount {spec:?}: {host} does not exist; create it or fix the path");
    };
    if !meta.is_dir() {
        bail!("--mount {spec:?}: {host} is not a directory; only directories can be shared");
    }
    let guest = match guest {
        Some(guest) if guest.starts_with('/') => absolute(Utf8Path::new("/"), Utf8Path::new(guest)),
        Some(guest) => bail!("--mount {spec:?}: the guest path {guest:?} is not absolute; {usage}"),
        None => host.clone(),
    };
    check_guest_path(&guest).with_context(|| format!("--mount {spec:?}"))?;
    Ok(MountFlag {
        host,
        guest,
        read_only,
    })
}

/// Fails if no share may be mounted at `guest`: the root, the Nix store
/// (the guest's own system lives there), or the guest role's directory.
pub fn check_guest_path(guest: &Utf8Path) -> Result<()> {
    let reserved = |dir: &str| guest == dir || guest.starts_with(dir);
    if guest == "/" || guest == "/nix" || reserved("/nix/store") {
        bail!("{guest} holds the guest's own system and cannot be a share's guest path; pick another, e.g. /mnt/NAME");
    }
    if reserved(facts::GUEST_DIR) {
        bail!(
            "{guest} is nixos-shell's own directory in the guest and cannot be a share's guest path; pick another, e.g. /mnt/NAME"
        );
    }
    Ok(())
}

impl Settings {
    /// `--disk`'s absolute path.
    pub fn disk_path(&self) -> Option<&Utf8Path> {
        self.disk.as_ref().map(|d| d.path.as_path())
    }

    /// The checks that look at the machine (ports, files), run before
    /// anything is built so that their errors come first.
    pub fn check_host(&self) -> Result<()> {
        for forward in &self.forwards {
            forward.check_free()?;
        }
        if let Some(disk) = &self.disk {
            check_disk(&disk.path, &disk.spec)?;
        }
        Ok(())
    }
}

/// `--disk PATH`: a path where the run script may create a new image, or
/// an existing qcow2 image. Anything else (a text file, a device, a raw
/// image) would be handed to the guest as a writable disk and overwritten.
pub fn check_disk(disk: &Utf8Path, spec: &str) -> Result<()> {
    if spec.is_empty() {
        bail!("--disk needs a path: a new file (created) or a qcow2 image");
    }
    let meta = match std::fs::metadata(disk) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(err).with_context(|| format!("--disk {spec:?}: cannot read {disk}"))
        }
    };
    if meta.is_dir() {
        bail!("--disk {spec:?}: {disk} is a directory; name an image file in it, e.g. {disk}/vm.qcow2");
    }
    let mut magic = [0u8; 4];
    let is_qcow2 = meta.is_file()
        && std::fs::File::open(disk)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
        && magic == QCOW2_MAGIC;
    if !is_qcow2 {
        bail!(
            "--disk {spec:?}: {disk} is not a qcow2 image and would be overwritten as the VM's disk; \
             pass a new path (it is created) or an image from `qemu-img create -f qcow2`"
        );
    }
    Ok(())
}

/// The first bytes of every qcow2 image: "QFI" and 0xfb.
const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn err<T: std::fmt::Debug>(result: Result<T>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("2048").unwrap(), "2048M");
        assert_eq!(parse_memory("512M").unwrap(), "512M");
        assert_eq!(parse_memory("2g").unwrap(), "2G");
        assert_eq!(parse_memory("4GiB").unwrap(), "4G");
        assert_eq!(
            err(parse_memory("lots")),
            "--memory \"lots\" is not a memory size; write MiB (2048) or a number with M or G (512M, 2G)"
        );
        assert!(err(parse_memory("2T")).contains("not a memory size"));
        assert!(err(parse_memory("G")).contains("not a memory size"));
        assert!(err(parse_memory("0")).contains("is zero"));
    }

    #[test]
    fn cores() {
        assert_eq!(parse_cores("4").unwrap(), 4);
        for bad in ["0", "-1", "two", ""] {
            assert!(err(parse_cores(bad)).contains("is not a positive number of CPUs"));
        }
    }

    #[test]
    fn forwards() {
        let fwd = parse_forward("8080:80").unwrap();
        assert_eq!(fwd.hostfwd(), "hostfwd=tcp:127.0.0.1:8080-:80");
        let fwd = parse_forward("0.0.0.0:53:53/udp").unwrap();
        assert_eq!(fwd.hostfwd(), "hostfwd=udp:0.0.0.0:53-:53");
        assert_eq!(
            parse_forward("2222:22/tcp").unwrap().hostfwd(),
            "hostfwd=tcp:127.0.0.1:2222-:22"
        );
        assert_eq!(
            err(parse_forward("8080")),
            "--forward \"8080\" lacks a port; write [ADDR:]HOSTPORT:GUESTPORT[/udp], e.g. --forward 8080:80"
        );
        assert!(err(parse_forward("80:http")).contains("\"http\" is not a port"));
        assert!(err(parse_forward("0:80")).contains("\"0\" is not a port"));
        assert!(err(parse_forward("70000:80")).contains("is not a port"));
        assert!(err(parse_forward("80:80/sctp")).contains("unknown protocol \"sctp\""));
        assert!(err(parse_forward(":80:80")).contains("\"\" is not an IPv4 address"));
        // Regression: names and IPv6 reached QEMU, which failed after the build.
        assert!(err(parse_forward("localhost:80:80")).contains("is not an IPv4 address"));
        assert!(err(parse_forward("[::1]:80:80")).contains("is not an IPv4 address"));
    }

    #[test]
    fn a_forward_to_a_taken_port_is_refused_before_the_build() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let forward = parse_forward(&format!("{port}:80")).unwrap();
        assert_eq!(
            err(forward.check_free()),
            format!("--forward: tcp port {port} on 127.0.0.1 is in use; stop what listens there or pick another port")
        );
        drop(taken);
        forward.check_free().unwrap();
        let elsewhere = parse_forward("192.0.2.7:8080:80").unwrap();
        assert!(err(elsewhere.check_free()).contains("is not an address of this machine"));
    }

    #[test]
    fn absurd_memory_is_refused() {
        assert!(
            err(parse_memory("18446744073709551615G")).contains("more memory than a VM can have")
        );
        assert!(err(parse_memory("99999999999999999999")).contains("not a memory size"));
        assert_eq!(parse_memory("4096G").unwrap(), "4096G");
    }

    #[test]
    fn mounts() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir(cwd.join("src")).unwrap();
        std::fs::write(cwd.join("file"), "").unwrap();

        let mount = parse_mount("src", cwd).unwrap();
        assert_eq!(mount.host, cwd.join("src"));
        assert_eq!(mount.guest, cwd.join("src"));
        assert!(!mount.read_only);

        let mount = parse_mount("./src:/srv/src:ro", cwd).unwrap();
        assert_eq!(mount.host, cwd.join("src"));
        assert_eq!(mount.guest, "/srv/src");
        assert!(mount.read_only);

        let mount = parse_mount(&format!("{cwd}/src:ro"), cwd).unwrap();
        assert_eq!(mount.guest, cwd.join("src"));
        assert!(mount.read_only);

        assert_eq!(
            err(parse_mount("missing:/x", cwd)),
            format!(
                "--mount \"missing:/x\": {cwd}/missing does not exist; create it or fix the path"
            )
        );
        assert!(err(parse_mount("file", cwd)).contains("is not a directory"));
        assert!(err(parse_mount("src:rel:ro", cwd)).contains("is not absolute"));
        assert!(err(parse_mount(":/x", cwd)).contains("names no host directory"));
        assert!(!parse_mount("src:/x:rw", cwd).unwrap().read_only);
        assert!(parse_mount("src:ro", cwd).unwrap().read_only);
    }

    /// Regression: `HOST:/data:RO` shared HOST read-write at `/data:RO`,
    /// and a guest write overwrote the host's file.
    #[test]
    fn only_the_documented_mount_forms_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir(cwd.join("src")).unwrap();
        assert_eq!(
            err(parse_mount("src:/data:RO", cwd)),
            "--mount \"src:/data:RO\": unknown mode \"RO\"; the mode is ro (read-only) or rw (the default)"
        );
        assert!(err(parse_mount("src:/data:readonly", cwd)).contains("unknown mode \"readonly\""));
        assert!(
            err(parse_mount("src:data", cwd)).contains("neither an absolute guest path nor a mode")
        );
        assert!(
            err(parse_mount("src:/a:b:ro", cwd)).contains("a path containing ':' cannot be given")
        );
    }

    #[test]
    fn shares_stay_out_of_the_guests_system_and_of_each_others_way() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir(cwd.join("src")).unwrap();
        for guest in ["/", "/nix", "/nix/store", "/nix/store/x"] {
            assert!(
                err(parse_mount(&format!("src:{guest}"), cwd))
                    .contains("holds the guest's own system"),
                "{guest}"
            );
        }
        for guest in ["/run/nixos-shell", "/run/nixos-shell/session"] {
            assert!(
                err(parse_mount(&format!("src:{guest}"), cwd))
                    .contains("nixos-shell's own directory"),
                "{guest}"
            );
        }
        assert!(parse_mount("src:/nix/var/x", cwd).is_ok());
        let args = HostArgs::try_parse_from([
            "nixos-shell",
            "--mount",
            &format!("{cwd}/src:/a"),
            "--mount",
            &format!("{cwd}:/a"),
        ])
        .unwrap();
        assert_eq!(
            err(Settings::from_args(args, cwd)),
            "two --mount flags share to /a; give each its own guest path (HOST:GUEST)"
        );
    }

    /// Regression: an existing text file, /dev/null or random bytes were
    /// handed to the guest as a writable raw disk and overwritten.
    #[test]
    fn a_disk_is_a_new_path_or_a_qcow2_image() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(cwd.join("notes.txt"), "my notes").unwrap();
        std::fs::write(cwd.join("vm.qcow2"), b"QFI\xfb\0\0\0\x03").unwrap();
        check_disk(&cwd.join("new.qcow2"), "new.qcow2").unwrap();
        check_disk(&cwd.join("vm.qcow2"), "vm.qcow2").unwrap();
        for (path, spec) in [
            (cwd.join("notes.txt"), "notes.txt"),
            ("/dev/null".into(), "/dev/null"),
        ] {
            assert!(
                err(check_disk(&path, spec)).contains("is not a qcow2 image"),
                "{spec}"
            );
        }
        assert!(err(check_disk(cwd, ".")).contains("is a directory"));
        assert_eq!(
            err(check_disk(cwd, "")),
            "--disk needs a path: a new file (created) or a qcow2 image"
        );
        assert_eq!(
            std::fs::read_to_string(cwd.join("notes.txt")).unwrap(),
            "my notes"
        );
    }

    #[test]
    fn absolute_paths_are_normalised() {
        let cwd = Utf8Path::new("/home/a/p");
        assert_eq!(absolute(cwd, "../q/./r".into()), "/home/a/q/r");
        assert_eq!(absolute(cwd, "/x/../y".into()), "/y");
    }
}
