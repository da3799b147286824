//! What a `nix build` that ended means for the run, decided from what nix
//! said: a pure function ([`judge`]) of the kind of target, how nix ended
//! and the lines it held back, tested on outputs captured from nix.

use crate::host::stop::Stop;

/// What nix reports when an installable's attribute path does not exist.
const MISSING_ATTRIBUTE: &str = "does not provide attribute";
/// How NixOS's module system starts its error for a configuration that sets
/// nixos-shell's options without importing the module (lib/modules.nix,
/// `checkUnmatched`: "The option `nixos-shell.mounts.mountHome' does not
/// exist."): it lacks the module as surely as a missing attribute says.
const OUR_OPTION_MISSING: &str = "The option `nixos-shell";
/// How our own Nix expressions' `throw` messages start (see the `.nix` files).
const OWN_ERROR: &str = "error: nixos-shell: ";
/// What flake-fallback.nix says when the flake has none of the attributes
/// it looks for.
const NOT_PROVIDED: &str = " provides none of ";

/// How a `nix build` ended, as [`judge`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Whether it built an installable (an attribute that may be missing)
    /// rather than one of our expressions.
    pub installable: bool,
    /// How nix ended: `None` when it succeeded.
    pub stop: Option<Stop>,
    /// A signal nixos-shell caught meanwhile (and passed on to nix).
    pub caught: Option<i32>,
}

/// What to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Built: show what nix held back (lines such as `error (ignored): ...`
    /// may come before success) and read its JSON.
    Built,
    /// The configuration does not exist: nix said an installable's
    /// attribute is missing (`None`), or our lookup found none and said so.
    /// Nothing nix said is shown: the next build may find it.
    Missing(Option<String>),
    /// Our own expression's `throw`: the one line it is, nix's whole output
    /// first only with `--show-trace`.
    Refused(String),
    /// nix failed (`show`: its message is shown) or a signal stopped it.
    Stopped { stop: Stop, show: bool },
}

/// Judges how a build `ended`, `lines` being what nix held back, as plain
/// lines (`output::held_lines`); pure.
pub fn judge(ended: Ended, lines: &[String]) -> Verdict {
    if let Some(signal) = ended.caught {
        return Verdict::Stopped {
            stop: Stop::Signal(signal),
            show: false,
        };
    }
    let Some(stop) = ended.stop else {
        return Verdict::Built;
    };
    // Ctrl-C typed in the terminal reaches nix directly, and nixos-shell
    // may have missed its own copy.
    if stop == Stop::Signal(signal_hook::consts::SIGINT) {
        return Verdict::Stopped { stop, show: false };
    }
    let missing = |l: &String| {
        l.contains(MISSING_ATTRIBUTE)
            || (l.contains(OUR_OPTION_MISSING) && l.contains("' does not exist"))
    };
    if ended.installable && lines.iter().any(missing) {
        return Verdict::Missing(None);
    }
    match lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(OWN_ERROR))
    {
        Some(own) if own.contains(NOT_PROVIDED) => Verdict::Missing(Some(own.to_owned())),
        Some(own) => Verdict::Refused(own.to_owned()),
        None => Verdict::Stopped { stop, show: true },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nix 2.8's stderr for a flake without the attribute.
    const NO_ATTRIBUTE: &str = "error: flake 'path:/tmp/p' does not provide attribute \
        'packages.x86_64-linux.nixosConfigurations.vm.config.system.build.nixos-shell', \
        'legacyPackages.x86_64-linux.nixosConfigurations.vm.config.system.build.nixos-shell' \
        or 'nixosConfigurations.vm.config.system.build.nixos-shell'\n";
    /// The module system's error for nixos-shell's options without the
    /// module, as nix 2.8 prints it.
    const NO_MODULE: &str = "error: The option `nixos-shell' does not exist. Definition values:\n       \
        - In `<unknown-file>':\n           {\n             mounts = {\n               mountHome = true;\n             };\n           }\n\n       \
        Did you mean `a'?\n(use '--show-trace' to show detailed location information)\n";
    /// flake-fallback.nix's `throw` when the flake has no such configuration.
    const NONE_OF: &str =
        "error: nixos-shell: path:/p provides none of nixosConfigurations.vm, nixosModules.vm\n";
    /// Any other evaluation error.
    const OTHER: &str = "error: value is an integer while a set was expected\n\n       \
        at «string»:1:15:\n\n            1| let x = 1; in x.y\n             |               ^\n";

    fn judged(installable: bool, status: u8, stderr: &str) -> Verdict {
        let ended = Ended {
            installable,
            stop: Some(Stop::Status(status)),
            caught: None,
        };
        judge(
            ended,
            &crate::host::nix::output::held_lines(stderr.as_bytes()),
        )
    }

    #[test]
    fn a_missing_attribute_or_module_of_an_installable_tries_the_next_build() {
        assert_eq!(judged(true, 1, NO_ATTRIBUTE), Verdict::Missing(None));
        assert_eq!(judged(true, 1, NO_MODULE), Verdict::Missing(None));
        // Our expressions' own lookup says it in its own words instead.
        let failed = Verdict::Stopped {
            stop: Stop::Status(1),
            show: true,
        };
        assert_eq!(judged(false, 1, NO_ATTRIBUTE), failed);
    }

    #[test]
    fn our_own_throws_are_one_line_and_a_lookup_that_found_nothing_is_missing() {
        assert_eq!(
            judged(false, 1, NONE_OF),
            Verdict::Missing(Some(
                "path:/p provides none of nixosConfigurations.vm, nixosModules.vm".to_owned()
            ))
        );
        assert_eq!(
            judged(false, 1, "error: nixos-shell: set NIX_PATH\n"),
            Verdict::Refused("set NIX_PATH".to_owned())
        );
    }

    #[test]
    fn other_failures_stop_with_nixs_message_and_signals_without() {
        let stop = Stop::Status(1);
        assert_eq!(
            judged(true, 1, OTHER),
            Verdict::Stopped { stop, show: true }
        );
        let interrupted = Ended {
            installable: true,
            stop: Some(Stop::Signal(2)),
            caught: None,
        };
        let quiet = |stop| Verdict::Stopped { stop, show: false };
        assert_eq!(judge(interrupted, &[]), quiet(Stop::Signal(2)));
        let caught = Ended {
            installable: true,
            stop: None,
            caught: Some(15),
        };
        assert_eq!(judge(caught, &[]), quiet(Stop::Signal(15)));
        let built = Ended {
            installable: true,
            stop: None,
            caught: None,
        };
        assert_eq!(judge(built, &[NO_ATTRIBUTE.to_owned()]), Verdict::Built);
    }
}
