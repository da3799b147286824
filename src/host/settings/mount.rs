//! `--mount HOST[:GUEST][:ro|:rw]`, exactly: a [`MountFlag`] for the
//! shares (`host::shares`), and the rules of where a share may go in the
//! guest, which the shares apply to the module's too.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::host::settings::path::absolute;
use crate::schema::facts::GUEST_DIR;

/// One `--mount`: a host directory and where it appears in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFlag {
    /// The host directory, absolute.
    pub host: Utf8PathBuf,
    /// Where it appears in the guest, absolute.
    pub guest: Utf8PathBuf,
    pub read_only: bool,
}

/// Parses one `--mount`: HOST must be an existing directory (relative to
/// `cwd`); GUEST, absolute, defaults to HOST's absolute path and must be a
/// place a share may go. Anything else is refused, since a misread mode
/// would share a directory writable that the user wanted read-only.
pub fn parse(spec: &str, cwd: &Utf8Path) -> Result<MountFlag> {
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

/// Refuses `--mount` flags that could never be mounted together, before
/// anything is built (the module's shares come after the build).
pub fn check_flags(flags: &[MountFlag]) -> Result<()> {
    refuse_two_at_one_path(flags.iter().map(|f| (f.host.as_path(), f.guest.as_path())))
}

/// The one rule for two shares, given as (host, guest) directories, at one
/// guest path; `host::shares` applies it to all of a run's.
pub fn refuse_two_at_one_path<'a>(
    shares: impl IntoIterator<Item = (&'a Utf8Path, &'a Utf8Path)>,
) -> Result<()> {
    let shares: Vec<_> = shares.into_iter().collect();
    for (n, (host, guest)) in shares.iter().enumerate() {
        if let Some((other, _)) = shares[..n].iter().find(|(_, other)| other == guest) {
            bail!(
                "{other} and {host} would both be shared at {guest} in the guest; give one of them another guest path (a --mount: HOST:GUEST)"
            );
        }
    }
    Ok(())
}

/// Fails if no share may be mounted at `guest`: the root, the Nix store
/// (the guest's own system lives there), or the guest role's directory.
pub fn check_guest_path(guest: &Utf8Path) -> Result<()> {
    let reserved = |dir: &str| guest == dir || guest.starts_with(dir);
    if guest == "/" || guest == "/nix" || reserved("/nix/store") {
        bail!("{guest} holds the guest's own system and cannot be a share's guest path; pick another, e.g. /mnt/NAME");
    }
    if reserved(GUEST_DIR) {
        bail!(
            "{guest} is nixos-shell's own directory in the guest and cannot be a share's guest path; pick another, e.g. /mnt/NAME"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str, cwd: &Utf8Path) -> String {
        format!("{:#}", parse(spec, cwd).unwrap_err())
    }

    /// A working directory with a directory `src` and a file `file`.
    fn cwd() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        dir
    }

    #[test]
    fn the_guest_path_defaults_to_the_hosts_and_the_mode_to_read_write() {
        let dir = cwd();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        let mount = parse("src", cwd).unwrap();
        assert_eq!(
            (mount.host.clone(), mount.guest, mount.read_only),
            (cwd.join("src"), cwd.join("src"), false)
        );
        let mount = parse("./src:/srv/src:ro", cwd).unwrap();
        assert_eq!(
            (mount.host, mount.guest.as_str(), mount.read_only),
            (cwd.join("src"), "/srv/src", true)
        );
        let mount = parse(&format!("{cwd}/src:ro"), cwd).unwrap();
        assert_eq!((mount.guest, mount.read_only), (cwd.join("src"), true));
        assert!(!parse("src:/x:rw", cwd).unwrap().read_only);
    }

    #[test]
    fn the_host_directory_must_exist() {
        let dir = cwd();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        assert_eq!(
            err("missing:/x", cwd),
            format!(
                "--mount \"missing:/x\": {cwd}/missing does not exist; create it or fix the path"
            )
        );
        assert!(err("file", cwd).contains("is not a directory"));
        assert!(err(":/x", cwd).contains("names no host directory"));
        assert!(err("src:rel:ro", cwd).contains("is not absolute"));
    }

    /// Regression: `HOST:/data:RO` shared HOST read-write at `/data:RO`,
    /// and a guest write overwrote the host's file.
    #[test]
    fn only_the_documented_forms_are_taken() {
        let dir = cwd();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        assert_eq!(
            err("src:/data:RO", cwd),
            "--mount \"src:/data:RO\": unknown mode \"RO\"; the mode is ro (read-only) or rw (the default)"
        );
        assert!(err("src:/data:readonly", cwd).contains("unknown mode \"readonly\""));
        assert!(err("src:data", cwd).contains("neither an absolute guest path nor a mode"));
        assert!(err("src:/a:b:ro", cwd).contains("a path containing ':' cannot be given"));
    }

    #[test]
    fn a_share_stays_out_of_the_guests_system() {
        let dir = cwd();
        let cwd = Utf8Path::from_path(dir.path()).unwrap();
        for guest in ["/", "/nix", "/nix/store", "/nix/store/x"] {
            assert!(
                err(&format!("src:{guest}"), cwd).contains("holds the guest's own system"),
                "{guest}"
            );
        }
        for guest in ["/run/nixos-shell", "/run/nixos-shell/session"] {
            assert!(
                err(&format!("src:{guest}"), cwd).contains("nixos-shell's own directory"),
                "{guest}"
            );
        }
        assert!(parse("src:/nix/var/x", cwd).is_ok());
    }
}
