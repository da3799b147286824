//! Small file-system helpers every fixture needs: copying a tree, writing
//! an executable script, finding a program on `PATH`. They panic with the
//! path they concern, which fails the test that called them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Copies the directory `from` to `to` (created), recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", to.display()));
    let entries = std::fs::read_dir(from)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|err| panic!("cannot read {}: {err}", from.display()));
        let target = to.join(entry.file_name());
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap_or_else(|err| {
                panic!(
                    "cannot copy {} to {}: {err}",
                    entry.path().display(),
                    target.display()
                )
            });
        }
    }
}

/// Writes `text` to `path` (its directory created) and makes it executable.
pub fn write_executable(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", parent.display()));
    }
    std::fs::write(path, text)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|err| panic!("cannot make {} executable: {err}", path.display()));
}

/// `program`'s path in the first directory of `PATH` that has it.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
