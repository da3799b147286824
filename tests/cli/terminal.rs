//! nixos-shell in a terminal: nix's stderr is a pseudo-terminal too, so nix
//! draws its progress bar, while nixos-shell still reads what nix says (the
//! fallback on a missing attribute, our own errors as one line).

use std::time::Duration;

use crate::support::nix_fixture::NixFixture;
use crate::support::vm::Console;
use crate::PATHS;

const TIMEOUT: Duration = Duration::from_secs(120);

/// What nix writes (before each line) only when its stderr is a terminal:
/// erase the progress bar drawn on the current line.
const ERASE_BAR: &str = "\u{1b}[K";

/// Runs the CLI on a fresh 24x80 pseudo-terminal (no VM slot: nothing
/// boots), with a TERM: nix treats a terminal without one as dumb.
fn in_terminal(fx: &NixFixture, args: &[&str]) -> Console {
    let mut cli = fx.cli(args);
    cli.env("TERM", "xterm");
    Console::spawn_with(cli, 24, 80, None)
}

#[test]
fn a_missing_attribute_still_falls_back_and_nix_draws_on_the_terminal() {
    let fx = NixFixture::new(PATHS);
    // A message only this fixture's build prints, so nix builds it anew.
    let token = format!("built in {}", fx.root.display());
    fx.flake(&format!(
        r#"{{ nixosConfigurations.vm = nixos {{ inherit system; modules = [ {{
             system.name = "tty"; fixture.preBuild = "echo '{token}' >&2";
           }} ]; }}; }}"#
    ));
    let mut console = in_terminal(&fx, &["--print-build-logs"]);
    let seen = console.expect(&token, TIMEOUT);
    let status = console.wait(TIMEOUT);
    assert!(status.success(), "{}", console.transcript());
    let argv = fx.nix_argv();
    assert_eq!(argv.len(), 2, "{argv:?}");
    assert!(argv[1].contains("--argstr flakeRef"), "{argv:?}");
    assert!(
        !seen.contains("does not provide"),
        "the first attempt's error reached the terminal:\n{seen}"
    );
    assert!(
        seen.contains(ERASE_BAR),
        "nix did not write to a terminal:\n{seen:?}"
    );
    assert!(plain(&seen).contains(&format!("nixos-shell-tty> {token}")));
    assert!(fx.record().script.ends_with("/bin/run-tty-vm"));
    assert!(fx.leftovers().is_empty());
}

#[test]
fn a_failed_build_shows_nixs_error_and_our_own_errors_stay_one_line() {
    let fx = NixFixture::new(PATHS);
    fx.flake(r#"{ nixosConfigurations.vm = mkVm { modules = [ { fixture.fail = true; } ]; }; }"#);
    let mut console = in_terminal(&fx, &[]);
    console.expect("fixture build failed on purpose", TIMEOUT);
    let status = console.wait(TIMEOUT);
    let (calls, exits) = fx.nix_calls();
    assert_eq!(calls, 1);
    assert_eq!(status.code(), Some(exits[0]));
    assert_ne!(exits[0], 0);
    assert!(console.transcript().contains(ERASE_BAR));

    let fx = NixFixture::new(PATHS);
    fx.flake(r#"{ nixosConfigurations.vm = { config = (nixos { inherit system; }).config; }; }"#);
    let mut console = in_terminal(&fx, &[]);
    console.expect("lib.makeOverridable", TIMEOUT);
    assert_eq!(console.wait(TIMEOUT).code(), Some(1));
    let shown = console.transcript();
    let lines = screen_lines(&shown);
    assert_eq!(lines.len(), 1, "{lines:?} from {shown:?}");
    assert!(
        lines[0].starts_with("nixos-shell: nixosConfigurations.vm of "),
        "{shown:?}"
    );
    assert!(fx.leftovers().is_empty());
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(char::is_ascii_alphabetic);
        } else {
            out.push(c);
        }
    }
    out
}

/// The non-empty lines a terminal shows for `text`: `\r` returns to the
/// line start, `ESC [ K` erases from there, other sequences are ignored.
fn screen_lines(text: &str) -> Vec<String> {
    let (mut lines, mut line, mut col) = (Vec::new(), Vec::<char>::new(), 0);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.by_ref().find(char::is_ascii_alphabetic) == Some('K') {
                    line.truncate(col);
                }
            }
            '\r' => col = 0,
            '\n' => {
                lines.push(line.drain(..).collect::<String>());
                col = 0;
            }
            c => {
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
    }
    lines.push(line.into_iter().collect());
    lines.retain(|l| !l.trim().is_empty());
    lines
}

#[test]
fn ctrl_c_typed_during_the_build_exits_130_and_leaves_nothing() {
    let fx = NixFixture::new(PATHS);
    let build = fx.waiting_build();
    let mut console = in_terminal(&fx, &[]);
    build.wait_until_started(|| format!(":\n{}", console.transcript()));
    // The terminal turns it into SIGINT for its foreground process group.
    console.send("\u{3}");
    assert_eq!(console.wait(TIMEOUT).code(), Some(130));
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    assert!(!fx.record_path().exists());
}
