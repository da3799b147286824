//! `nixos-shell.terminfo.fixFSCaseConflicts`: on by default for a darwin
//! host, and what its fragment of the system profile's build does to a
//! profile whose terminfo has `x/` and `X/`.

use std::path::Path;
use std::process::Command;

use super::standin;
use crate::support::vm::Era;

const DARWIN: &str = r#"{ pkgs, ... }: {
  virtualisation.host.pkgs = import pkgs.path { system = "aarch64-darwin"; };
}"#;

#[test]
fn the_fix_is_on_for_a_darwin_host_and_off_for_a_linux_one() {
    let (_dir, standin) = standin(Era::NineP);
    let expr = "{ on = config.nixos-shell.terminfo.fixFSCaseConflicts; setup = config.environment.extraSetup; }";
    let darwin = standin.eval(DARWIN, expr).unwrap();
    assert_eq!(darwin["on"], true);
    assert!(darwin["setup"].as_str().unwrap().contains("share/terminfo"));
    let linux = standin.eval("{ }", expr).unwrap();
    assert_eq!(linux["on"], false);
    assert_eq!(linux["setup"], "");
}

fn link(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// A profile as buildEnv leaves it when one package (ncurses) provides
/// `share`: `$out/share` a link to it, whose terminfo holds `x/` and `X/`.
/// After the fragment, `X/` holds copies of `x/`'s entries beside its own,
/// the package is untouched, and a profile without terminfo is left alone.
#[test]
fn the_lower_case_entries_are_copied_into_their_upper_case_twin() {
    let (_dir, standin) = standin(Era::NineP);
    let setup = standin
        .eval(DARWIN, "config.environment.extraSetup")
        .unwrap();
    let setup = setup.as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("ncurses/share");
    for (entry, text) in [
        ("terminfo/x/xterm-kitty", "kitty"),
        ("terminfo/X/X-hpterm", "hp"),
    ] {
        let path = package.join(entry);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let out = dir.path().join("profile");
    std::fs::create_dir(&out).unwrap();
    link(&package, &out.join("share"));
    let run = |out: &Path| {
        let status = Command::new("bash")
            .args(["-e", "-c", setup])
            .env("out", out)
            .status()
            .unwrap();
        assert!(status.success());
    };
    run(&out);
    let upper = out.join("share/terminfo/X");
    assert!(!upper.is_symlink(), "X/ is a directory of its own");
    assert_eq!(
        std::fs::read_to_string(upper.join("xterm-kitty")).unwrap(),
        "kitty"
    );
    assert!(
        !upper.join("xterm-kitty").is_symlink(),
        "a copy, not a link into x/"
    );
    assert_eq!(
        std::fs::read_to_string(upper.join("X-hpterm")).unwrap(),
        "hp"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("share/terminfo/x/xterm-kitty")).unwrap(),
        "kitty"
    );
    assert!(
        !package.join("terminfo/X/xterm-kitty").exists(),
        "the package is untouched"
    );

    let bare = dir.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    run(&bare);
    assert_eq!(std::fs::read_dir(&bare).unwrap().count(), 0);
}
