//! Terminfo entries for the tests, compiled by the host's `tic`.

use std::path::Path;
use std::process::Command;

/// Compiles an entry `name` (with `description` as its long name, and an
/// extended capability, `Xy`, that only `tic -x` takes) into `dir`, which
/// is created. `tic` writes to `~/.terminfo` when it cannot write to `-o`:
/// its HOME is `dir` itself, so nothing outside `dir` is ever written.
pub fn compile(name: &str, description: &str, dir: &Path) {
    std::fs::create_dir_all(dir).expect("create the terminfo directory");
    let source = dir.join(format!("{name}.src"));
    std::fs::write(
        &source,
        format!("{name}|{description},\n\tam, Xy,\n\tcols#80, lines#24,\n\tbel=^G, clear=\\E[H\\E[2J,\n"),
    )
    .expect("write the entry's source");
    let out = Command::new("tic")
        .arg("-x")
        .arg("-o")
        .arg(dir)
        .arg(&source)
        .env("HOME", dir)
        .env_remove("TERMINFO")
        .output()
        .expect("run tic (Debian package ncurses-bin)");
    assert!(
        out.status.success(),
        "tic failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&source).expect("remove the entry's source");
    let first = name.chars().next().expect("a name");
    assert!(
        dir.join(first.to_string()).join(name).is_file(),
        "tic wrote no {name} into {}",
        dir.display()
    );
}
