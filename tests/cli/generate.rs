//! The hidden flags the Nix package runs to install shell
//! completions and the man page. They need no nix and write no file. The
//! man page's text is checked once, by the unit test beside `man_page`.

use std::process::{Command, Output};

use super::assert_only_error;

/// Runs the binary in an empty directory with an empty PATH (so no nix),
/// and checks it left that directory empty.
fn generate(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nixos-shell"))
        .args(args)
        .current_dir(dir.path())
        .env("PATH", dir.path())
        .output()
        .unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{args:?} left files behind: {left:?}");
    out
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn bash_completions_know_the_flags() {
    let script = stdout(&generate(&["--generate-completions", "bash"]));
    assert!(script.contains("nixos-shell"), "{script}");
    assert!(script.contains("--forward"), "{script}");
    assert!(script.contains("--ephemeral"), "{script}");
    assert!(!script.contains("--generate-"), "hidden flags completed");
}

#[test]
fn every_shell_clap_knows_gets_completions() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&generate(&["--generate-completions", shell]));
        assert!(script.contains("forward"), "{shell}: {script}");
    }
}

#[test]
fn help_hides_the_generation_flags() {
    let help = stdout(&generate(&["--help"]));
    assert!(help.contains("--forward"), "{help}");
    assert!(!help.contains("generate"), "{help}");
}

#[test]
fn an_unknown_shell_is_one_line_naming_the_known_ones() {
    let out = generate(&["--generate-completions", "tcsh"]);
    assert!(out.stdout.is_empty());
    assert_only_error(
        &out,
        "invalid value 'tcsh' for '--generate-completions <SHELL>'; use one of bash, elvish, fish",
    );
}
