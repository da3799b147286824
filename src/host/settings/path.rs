//! Paths on the command line are relative to where nixos-shell runs; the
//! rest of the host role sees them absolute.

use camino::{Utf8Component, Utf8Path, Utf8PathBuf};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_absolute_and_normalised() {
        let cwd = Utf8Path::new("/home/a/p");
        assert_eq!(absolute(cwd, "../q/./r".into()), "/home/a/q/r");
        assert_eq!(absolute(cwd, "/x/../y".into()), "/y");
    }
}
