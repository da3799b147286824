//! The host's compiled terminfo entry for `TERM`, carried to the guest: a
//! terminal the guest's database lacks (kitty's `xterm-kitty` in kitty's
//! own `TERMINFO`, foot, ghostty, wezterm, one the user compiled with `tic`)
//! is then still known to `less`, `vim` or `htop` in the VM, with no
//! rebuild and no option.
//!
//! [`find`] looks where ncurses looks, in its order (ncurses'
//! `ncurses/tinfo/db_iterator.c`, `_nc_next_db`: `$TERMINFO`, then
//! `~/.terminfo`, then each directory of `$TERMINFO_DIRS`, where an empty
//! element means the system's, then the system directories), in both
//! layouts ncurses writes: `<first letter>/<name>`, and `<two hex
//! digits>/<name>` on file systems that fold case (macOS). Hand-written
//! rather than the `term` crate's searcher: that one reads the process'
//! environment instead of the [`Host`](crate::host::read::Host) nixos-shell
//! read once, and skips `~/.terminfo` and the system directories whenever
//! `TERMINFO_DIRS` is set, which ncurses does not. Hashed (Berkeley DB)
//! databases, which ncurses can be built to use, are not read.
//!
//! [`Entry::install`] writes the one entry (nothing else) into the session
//! share, in the letter layout the guest's Linux ncurses reads.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// Where ncurses looks last, as Debian, Fedora, Arch and macOS build it
/// (NixOS and nix-darwin name their profiles' directories in
/// `TERMINFO_DIRS`).
pub const SYSTEM_DIRS: [&str; 4] = [
    "/etc/terminfo",
    "/lib/terminfo",
    "/usr/share/terminfo",
    "/usr/lib/terminfo",
];

/// The system's directory, which an empty element of `TERMINFO_DIRS` means.
const SYSTEM_DIR: &str = "/usr/share/terminfo";

/// A compiled terminfo entry, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The terminal's name, `TERM`.
    pub name: String,
    /// The compiled entry.
    pub bytes: Vec<u8>,
}

/// The entry for `term` where ncurses finds it on the host with `env` and
/// `home`, searching `system_dirs` last ([`SYSTEM_DIRS`]); `None` for a
/// name no entry can have, or when there is none.
pub fn find(
    term: &str,
    env: &BTreeMap<String, String>,
    home: &Utf8Path,
    system_dirs: &[&str],
) -> Option<Entry> {
    let first = term.chars().next()?;
    if term.contains('/') || term == "." || term == ".." {
        return None;
    }
    let leaves = [first.to_string(), format!("{:02x}", u32::from(first))];
    search_dirs(env, home, system_dirs)
        .into_iter()
        .flat_map(|dir| leaves.iter().map(move |leaf| dir.join(leaf).join(term)))
        .find_map(|path| std::fs::read(path).ok())
        .map(|bytes| Entry {
            name: term.to_owned(),
            bytes,
        })
}

/// The directories ncurses searches, in its order.
fn search_dirs(
    env: &BTreeMap<String, String>,
    home: &Utf8Path,
    system_dirs: &[&str],
) -> Vec<Utf8PathBuf> {
    let set = |name: &str| env.get(name).filter(|value| !value.is_empty());
    let mut dirs: Vec<Utf8PathBuf> = set("TERMINFO").map(Utf8PathBuf::from).into_iter().collect();
    dirs.push(home.join(".terminfo"));
    if let Some(list) = set("TERMINFO_DIRS") {
        dirs.extend(list.split(':').map(|dir| match dir {
            "" => Utf8PathBuf::from(SYSTEM_DIR),
            dir => Utf8PathBuf::from(dir),
        }));
    }
    dirs.extend(system_dirs.iter().map(Utf8PathBuf::from));
    dirs
}

impl Entry {
    /// Writes the entry under `dir` (the session share's
    /// [`TERMINFO_DIR`](crate::schema::facts::TERMINFO_DIR)) in the letter
    /// layout.
    pub fn install(&self, dir: &Utf8Path) -> Result<()> {
        let first = self.name.chars().next().unwrap_or('_');
        let leaf = dir.join(first.to_string());
        std::fs::create_dir_all(&leaf).with_context(|| format!("could not create {leaf}"))?;
        let path = leaf.join(&self.name);
        std::fs::write(&path, &self.bytes).with_context(|| format!("could not write {path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::test_data::env;

    /// A temporary tree to search; `write` puts an entry at a relative path.
    struct Tree(tempfile::TempDir);

    impl Tree {
        fn new() -> Tree {
            Tree(tempfile::tempdir().unwrap())
        }

        fn path(&self, rel: &str) -> Utf8PathBuf {
            Utf8Path::from_path(self.0.path()).unwrap().join(rel)
        }

        fn write(&self, rel: &str, text: &str) {
            let path = self.path(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }

        /// What `find` reads for `term` with these variables, home at
        /// `home/` and the one system directory `system/`.
        fn found(&self, term: &str, vars: &[(&str, &str)]) -> Option<String> {
            let system = self.path("system");
            find(term, &env(vars), &self.path("home"), &[system.as_str()])
                .map(|entry| String::from_utf8(entry.bytes).unwrap())
        }
    }

    #[test]
    fn terminfo_comes_first_then_home_then_the_listed_then_the_system() {
        let tree = Tree::new();
        let terminfo = tree.path("kitty").to_string();
        let listed = tree.path("listed").to_string();
        let vars = [
            ("TERMINFO", terminfo.as_str()),
            ("TERMINFO_DIRS", listed.as_str()),
        ];
        tree.write("system/x/xterm-t", "system");
        assert_eq!(tree.found("xterm-t", &vars).as_deref(), Some("system"));
        tree.write("listed/x/xterm-t", "listed");
        assert_eq!(tree.found("xterm-t", &vars).as_deref(), Some("listed"));
        tree.write("home/.terminfo/x/xterm-t", "home");
        assert_eq!(tree.found("xterm-t", &vars).as_deref(), Some("home"));
        tree.write("kitty/x/xterm-t", "terminfo");
        assert_eq!(tree.found("xterm-t", &vars).as_deref(), Some("terminfo"));
    }

    #[test]
    fn the_hex_layout_is_found_as_the_letter_one() {
        let tree = Tree::new();
        tree.write("home/.terminfo/78/xterm-mac", "hex");
        assert_eq!(tree.found("xterm-mac", &[]).as_deref(), Some("hex"));
    }

    #[test]
    fn an_empty_element_of_terminfo_dirs_is_the_system_directory() {
        let dirs = search_dirs(&env(&[("TERMINFO_DIRS", "/a::/b:")]), "/h".into(), &[]);
        assert_eq!(
            dirs,
            [
                "/h/.terminfo",
                "/a",
                "/usr/share/terminfo",
                "/b",
                "/usr/share/terminfo"
            ]
        );
    }

    #[test]
    fn no_entry_and_names_no_entry_can_have_find_nothing() {
        let tree = Tree::new();
        tree.write("system/s/secret", "outside");
        for term in ["", "nonexistent", "../s/secret", "."] {
            assert_eq!(tree.found(term, &[]), None, "{term:?}");
        }
    }

    #[test]
    fn an_entry_is_installed_in_the_letter_layout() {
        let tree = Tree::new();
        let entry = Entry {
            name: "xterm-kitty".to_owned(),
            bytes: b"compiled".to_vec(),
        };
        entry.install(&tree.path("share/terminfo")).unwrap();
        assert_eq!(
            std::fs::read(tree.path("share/terminfo/x/xterm-kitty")).unwrap(),
            b"compiled"
        );
    }
}
