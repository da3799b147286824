//! Shell quoting, for `--dry-run`: what it prints can be pasted into `sh`.

/// `word` quoted for a POSIX shell; plain words stay as they are.
pub fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Words quoted and joined with spaces.
pub fn join<S: AsRef<str>>(words: impl IntoIterator<Item = S>) -> String {
    words
        .into_iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(
            quote("/nix/store/x-y/bin/run-nixos-vm"),
            "/nix/store/x-y/bin/run-nixos-vm"
        );
        assert_eq!(quote("nix-command flakes"), "'nix-command flakes'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(join(["a", "b c"]), "a 'b c'");
    }
}
