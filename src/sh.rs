//! Quoting words for a POSIX `sh`, for both roles: the host prints
//! `--dry-run`'s commands for the user to paste into a shell, and the guest
//! writes the login environment, a script the login shell sources. Inside
//! single quotes `sh` expands nothing, so a quoted word reaches the command
//! exactly as it was, whatever it holds.

/// `word` quoted for `sh` only when it needs it: words of letters, digits
/// and `_@%+=:,./-` stay as they are, which keeps commands readable.
pub fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        single_quote(word)
    }
}

/// `word` as one single-quoted `sh` word, always: a `'` inside ends the
/// quotes, is escaped, and opens them again.
pub fn single_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Words [`quote`]d and joined with spaces: one command line.
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

    #[test]
    fn quotes_survive_single_quotes_and_expansions() {
        assert_eq!(single_quote("it's $HOME `x`"), r"'it'\''s $HOME `x`'");
        assert_eq!(single_quote(""), "''");
    }
}
