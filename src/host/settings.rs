//! Validated high-level settings: the command line checked and turned into
//! values the rest of the host role uses without checking again. Every parser
//! for a flag's small language (`--forward`, `--mount`, `--memory`,
//! `--cores`) lives here, each returning one-line errors that say what was
//! wrong and what to write instead.

use anyhow::{bail, Result};
use camino::{Utf8Component, Utf8Path, Utf8PathBuf};

use crate::cli::{HostArgs, NixFlags};

/// What a run does; the flags that choose it exclude each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Build and start the VM.
    Run,
    /// `--build-only`: build, print the run script.
    BuildOnly,
    /// `--dry-run`: print the commands a run would execute.
    DryRun,
}

/// Everything the host role needs from the command line, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// CONFIG or `--flake`, as typed; resolved by `host::resolve`.
    pub config: Option<String>,
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
    /// `--disk`, absolute.
    pub disk: Option<Utf8PathBuf>,
    pub ephemeral: bool,
    pub command: Option<String>,
    pub qemu_args: Vec<String>,
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
            Mode::DryRun
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
            .collect::<Result<Vec<_>>>()?;
        Ok(Settings {
            config: args.flake.or(args.config),
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
            disk: args.disk.map(|p| absolute(cwd, &p)),
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
    Ok(format!("{number}{unit}"))
}

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
    if address.is_empty() || address.contains([',', ' ']) {
        bail!("--forward {spec:?} has a malformed address {address:?}; {usage}");
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

/// `--mount HOST[:GUEST][:ro]`: HOST must be an existing directory (relative
/// to `cwd`); GUEST, absolute, defaults to HOST's absolute path.
pub fn parse_mount(spec: &str, cwd: &Utf8Path) -> Result<MountFlag> {
    let usage = "write HOST[:GUEST][:ro], e.g. --mount ./src:/src:ro";
    let (rest, read_only) = match spec.strip_suffix(":ro") {
        Some(rest) => (rest, true),
        None => (spec.strip_suffix(":rw").unwrap_or(spec), false),
    };
    let (host, guest) = match rest.split_once(':') {
        Some((host, guest)) => (host, Some(guest)),
        None => (rest, None),
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
    Ok(MountFlag {
        host,
        guest,
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(err(parse_forward(":80:80")).contains("malformed address"));
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
        assert!(err(parse_mount("src:rel", cwd)).contains("is not absolute"));
        assert!(err(parse_mount(":/x", cwd)).contains("names no host directory"));
    }

    #[test]
    fn absolute_paths_are_normalised() {
        let cwd = Utf8Path::new("/home/a/p");
        assert_eq!(absolute(cwd, "../q/./r".into()), "/home/a/q/r");
        assert_eq!(absolute(cwd, "/x/../y".into()), "/y");
    }
}
