//! Reading back what `nixos-shell --dry-run` prints: the argument vector
//! of its `nix build` line, which the benchmark compares with the `nix
//! build` a real run started.

use anyhow::{bail, Result};

use crate::sh::split;

/// The argv of the `nix build` command among the lines `nixos-shell
/// --dry-run` printed: the first line whose first word (after any
/// `NAME=value` assignments) is `nix` or a path ending in `/nix`, and whose
/// subcommand is `build`.
pub fn nix_build_argv(dry_run: &str) -> Result<Vec<String>> {
    for line in dry_run.lines() {
        let Ok(words) = split(line.trim()) else {
            continue;
        };
        let argv: Vec<String> = words.into_iter().skip_while(|w| is_assignment(w)).collect();
        let is_nix = argv
            .first()
            .is_some_and(|w| w == "nix" || w.ends_with("/nix"));
        if is_nix && argv.iter().any(|w| w == "build") {
            return Ok(argv);
        }
    }
    bail!("no `nix build` line in the --dry-run output:\n{dry_run}")
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_nix_build_of_a_dry_run() {
        let printed = "# build\n\
            nix build --extra-experimental-features 'nix-command flakes' --json \
            --out-link '<private-temp-dir>/result' 'path:/x#nixosConfigurations.vm.config.system.build.nixos-shell'\n\
            # run\n\
            QEMU_NET_OPTS=hostfwd=tcp:127.0.0.1:8080-:80 USE_TMPDIR=1 '<result>/bin/run-<name>-vm' -m 1G\n";
        assert_eq!(
            super::nix_build_argv(printed).unwrap(),
            [
                "nix",
                "build",
                "--extra-experimental-features",
                "nix-command flakes",
                "--json",
                "--out-link",
                "<private-temp-dir>/result",
                "path:/x#nixosConfigurations.vm.config.system.build.nixos-shell",
            ]
        );
        assert_eq!(
            super::nix_build_argv("NIX_PATH=x /usr/bin/nix build y").unwrap(),
            ["/usr/bin/nix", "build", "y"]
        );
        assert!(super::nix_build_argv("nix eval x\n").is_err());
    }
}
