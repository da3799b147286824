//! The host CLI driven for real: the built binary, the real `nix` (offline)
//! and fixture flakes, `<nixpkgs>` and run scripts written by
//! `support::nix_fixture`.

mod attach;
mod errors;
mod generate;
mod refusals;
mod resolution;
mod run;
mod terminal;
mod waits;

use std::process::Output;

/// A failed run that said one line `nixos-shell: ...` containing `needle`.
pub fn assert_one_line_error(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "expected a failure, got {}",
        output.status
    );
    let line = stderr
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no error message on stderr"));
    assert!(
        line.starts_with("nixos-shell: "),
        "not our error line: {line:?}"
    );
    assert!(line.contains(needle), "{needle:?} not in {line:?}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

/// A failed run whose whole stderr is that one line.
pub fn assert_only_error(output: &Output, needle: &str) {
    assert_one_line_error(output, needle);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // nix itself warns while it waits for its database, which tests running
    // side by side on a fresh store can make busy; that line is nix's, not
    // ours, and says nothing about the error.
    let lines = stderr
        .trim_end()
        .lines()
        .filter(|line| !(line.starts_with("warning:") && line.contains("is busy")));
    assert_eq!(lines.count(), 1, "more than one line: {stderr}");
}
